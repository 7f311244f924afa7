#!/usr/bin/env bash
# Build the guestagent initramfs reproducibly: busybox-static, dmsetup with its libraries (from
# Debian packages via apt-get download), the kernel modules the agent needs (load order from
# modprobe --show-depends) and ./init. Same inputs => same bytes: fixed mtimes
# (SOURCE_DATE_EPOCH), sorted cpio input, owner 0:0, `cpio --reproducible`, `gzip -n`.
# Usage: build-initramfs.sh KERNELDIR OUTPUT   (KERNELDIR from fetch-kernel.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kdir=$(cd "${1:?usage: build-initramfs.sh KERNELDIR OUTPUT}" && pwd)
output=${2:?usage: build-initramfs.sh KERNELDIR OUTPUT}
epoch=${SOURCE_DATE_EPOCH:-1700000000}
version=$(cat "$kdir/version")

need=()
command -v cpio >/dev/null || need+=(cpio)
command -v modprobe >/dev/null || need+=(kmod)
[[ -x /bin/busybox ]] && /bin/busybox --list | grep -qx switch_root || need+=(busybox-static)
((${#need[@]} == 0)) || apt-get install -y -qq "${need[@]}" >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"  # apt-get download drops to _apt, which must reach the target dir
root=$work/root
mkdir -p "$root"/{bin,sbin,etc,lib64,usr/lib/x86_64-linux-gnu,proc,sys,dev,run,newroot,mnt}

# busybox and the applets init uses, as relative symlinks.
cp /bin/busybox "$root/bin/busybox"
for applet in sh mount mkdir cat grep sleep insmod switch_root poweroff sync echo; do
    ln -s busybox "$root/bin/$applet"
done

# dmsetup and the shared libraries it needs, unpacked from the Debian packages.
debs=$work/debs
mkdir -p "$debs" && chmod 0777 "$debs"
(cd "$debs" && apt-get download -qq dmsetup libdevmapper1.02.1 libselinux1 libudev1 libpcre2-8-0 libc6)
for deb in "$debs"/*.deb; do dpkg -x "$deb" "$work/pkgroot"; done
(cd "$debs" && for deb in *.deb; do dpkg-deb --show --showformat '${Package}=${Version}\n' "$deb"; done) |
    LC_ALL=C sort >"$root/etc/packages"
cp "$work/pkgroot/sbin/dmsetup" "$root/sbin/dmsetup"
copy_libs() {  # the NEEDED closure of $1, found inside the unpacked packages
    local lib path
    for lib in $(readelf -d "$1" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
        [[ -e "$root/usr/lib/x86_64-linux-gnu/$lib" ]] && continue
        path=$(find "$work/pkgroot" -name "$lib" | LC_ALL=C sort | head -n1)
        [[ -n "$path" ]] || { echo "build-initramfs: $lib not found" >&2; exit 1; }
        cp -L "$path" "$root/usr/lib/x86_64-linux-gnu/$lib"
        copy_libs "$root/usr/lib/x86_64-linux-gnu/$lib"
    done
}
copy_libs "$root/sbin/dmsetup"
cp -L "$(find "$work/pkgroot" -name ld-linux-x86-64.so.2 | head -n1)" "$root/lib64/ld-linux-x86-64.so.2"
ln -s usr/lib "$root/lib"

# Kernel modules, in dependency order, deduplicated.
: >"$root/etc/modules.load"
while read -r module; do
    for path in $(modprobe -d "$kdir" -S "$version" --show-depends "$module" | awk '$1 == "insmod" {print $2}'); do
        rel=${path#"$kdir"/}
        grep -qx "/$rel" "$root/etc/modules.load" && continue
        mkdir -p "$root/$(dirname "$rel")"
        cp "$path" "$root/$rel"
        echo "/$rel" >>"$root/etc/modules.load"
    done
done < <(grep -v '^#' "$here/modules.txt")

install -m 0755 "$here/init" "$root/init"
echo "$version" >"$root/etc/kernel-version"

# Reproducible archive: fixed times, sorted names, root ownership, no gzip timestamp.
find "$root" -exec touch -h -d "@$epoch" {} +
(cd "$root" && find . -print0 | LC_ALL=C sort -z |
    cpio --quiet -o -H newc --null --reproducible -R 0:0) | gzip -n -9 >"$output.tmp"
mv "$output.tmp" "$output"
echo "build-initramfs: $output $(sha256sum "$output" | cut -d' ' -f1)"
