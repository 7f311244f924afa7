#!/usr/bin/env bash
# Build the minimal Debian tree of the guest root filesystem with debootstrap into TREEDIR.
# Not bit-reproducible by itself (package versions move, maintainer scripts write caches and
# logs); pack-rootfs.sh makes the packed image reproducible given the same tree.
# Usage: rootfs-tree.sh TREEDIR   (env: SUITE=bookworm, MIRROR=<from apt sources>)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tree=${1:?usage: rootfs-tree.sh TREEDIR}
suite=${SUITE:-bookworm}
mirror=${MIRROR:-$("$here/apt-mirror.sh" "$suite")}

command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null

# The guest's userland: Python, the OCI runtime and storage tools from Debian; the agent's
# Python dependencies come pinned from PyPI (rootfs-requirements.txt), see below.
packages=$(paste -sd, "$here/rootfs-packages.txt")

rm -rf "$tree"
debootstrap --variant=minbase --include="$packages" "$suite" "$tree" "$mirror" >"$tree.log" 2>&1 ||
    { tail -n 30 "$tree.log" >&2; exit 1; }

# Binary wheels for the guest's CPython 3.11 (same as bookworm's), no .pyc from pip: they are
# compiled below with hash-based invalidation, so the tree carries no build timestamps.
site=$tree/usr/local/lib/python3.11/dist-packages
python3 -m pip install -q --disable-pip-version-check --no-compile --target "$site" \
    --only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --python-version 3.11 --implementation cp \
    -r "$here/rootfs-requirements.txt"
rm -rf "$site/bin"
chroot "$tree" python3 -m compileall -q --invalidation-mode unchecked-hash \
    /usr/local/lib/python3.11/dist-packages >/dev/null

# Drop what a read-only guest never needs: package caches, lists, logs, docs.
rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/lib/apt/lists/* "$tree"/var/log/* \
    "$tree"/usr/share/doc "$tree"/usr/share/man "$tree"/usr/share/info "$tree"/usr/share/locale \
    "$tree"/var/cache/debconf/*-old "$tree"/var/lib/dpkg/*-old
: >"$tree/etc/machine-id"
echo "rootfs-tree: $(du -sh "$tree" | cut -f1) in $tree (mirror $mirror)"
