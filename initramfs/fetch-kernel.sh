#!/usr/bin/env bash
# Fetch Debian's cloud kernel and its modules into OUTDIR:
#   OUTDIR/vmlinuz, OUTDIR/version, OUTDIR/package (name=version), OUTDIR/lib/modules/<version>/
# The package is resolved through the linux-image-cloud-amd64 metapackage (its name moves with
# security updates) and fetched with `apt-get download`, never from a hard-coded host.
# Usage: fetch-kernel.sh OUTDIR [PACKAGE]   (PACKAGE defaults to the resolved one)
set -euo pipefail

out=${1:?usage: fetch-kernel.sh OUTDIR [PACKAGE]}
pkg=${2:-$("$(dirname "$0")/resolve-kernel.sh")}
version=${pkg#linux-image-}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"  # apt-get download drops to _apt, which must reach the target dir
mkdir -p "$work/dl" && chmod 0777 "$work/dl"
(cd "$work/dl" && apt-get download -qq "$pkg")
deb=$(ls "$work"/dl/*.deb)
dpkg -x "$deb" "$work/unpacked"
# The .deb ships no modules.dep: generate it so modprobe can resolve load order.
depmod -b "$work/unpacked" "$version"

mkdir -p "$out/lib/modules"
rm -rf "${out:?}/lib/modules/$version"
cp "$work/unpacked/boot/vmlinuz-$version" "$out/vmlinuz"
cp -a "$work/unpacked/lib/modules/$version" "$out/lib/modules/$version"
echo "$version" >"$out/version"
dpkg-deb --show --showformat '${Package}=${Version}\n' "$deb" >"$out/package"
echo "fetch-kernel: $(cat "$out/package")"
