#!/usr/bin/env bash
# Install this package into a debootstrap tree and pack it as erofs with an appended dm-verity
# tree. Reproducible given the same tree and sources: every mtime is SOURCE_DATE_EPOCH, the
# erofs and verity UUIDs are fixed, the salt is derived from the image, .pyc files use
# unchecked-hash invalidation (no source mtimes inside), erofs sorts directory entries.
# Usage: pack-rootfs.sh TREEDIR REPO OUTDIR
#   OUTDIR/rootfs.img: erofs data followed by the verity hash area (superblock first)
#   OUTDIR/rootfs.env: ROOT_HASH, ROOT_SALT, ROOT_BLOCKS (what the kernel command line carries)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tree=$(cd "${1:?usage: pack-rootfs.sh TREEDIR REPO OUTDIR}" && pwd)
repo=$(cd "${2:?}" && pwd)
out=${3:?}
epoch=${SOURCE_DATE_EPOCH:-1700000000}
erofs_uuid=6f0c2f3a-6761-4000-8000-726f6f746673    # fixed: reproducible images
verity_uuid=6f0c2f3a-6761-4000-8000-766572697479

command -v mkfs.erofs >/dev/null || apt-get install -y -qq erofs-utils >/dev/null
command -v veritysetup >/dev/null || apt-get install -y -qq cryptsetup-bin >/dev/null

mkdir -p "$out"
stage=$out/stage
rm -rf "$stage"
cp -al "$tree" "$stage"    # hard links: the cached tree is never modified in place below

site=$stage/usr/lib/python3/dist-packages
rm -rf "$site/guestagent"
cp -r "$repo/guestagent" "$site/guestagent"
find "$site/guestagent" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
# Every module the guest imports needs bytecode that is valid on this read-only root. Debian
# compiles its packages' .pyc against the source mtimes of the install (timestamp checks), and
# the times set below (and erofs -T) change those mtimes: each such .pyc would be stale, and the
# guest would recompile every standard-library module at every boot. Hash-based, unchecked
# bytecode never looks at the source again; dm-verity vouches for both.
chroot "$stage" python3 -m compileall -q -f --invalidation-mode unchecked-hash \
    /usr/lib/python3.11 /usr/lib/python3/dist-packages >/dev/null
install -D -m 0644 "$repo/systemd/agent.env" "$stage/etc/guestagent/agent.env"
echo guestagent >"$stage/etc/hostname.new" && mv "$stage/etc/hostname.new" "$stage/etc/hostname"

find "$stage" -exec touch -h -d "@$epoch" {} +
img=$out/rootfs.img
rm -f "$img"
mkfs.erofs --quiet -zlz4hc -T "$epoch" -U "$erofs_uuid" "$img" "$stage"
size=$(stat -c %s "$img")
((size % 4096 == 0)) || { echo "pack-rootfs: erofs image not 4 KiB aligned" >&2; exit 1; }
blocks=$((size / 4096))
salt=$(sha256sum "$img" | cut -d' ' -f1)
root_hash=$(veritysetup format "$img" "$img" --hash-offset="$size" --data-blocks="$blocks" \
    --salt="$salt" --uuid="$verity_uuid" | awk '/^Root hash:/ {print $3}')
[[ "$root_hash" =~ ^[0-9a-f]{64}$ ]] || { echo "pack-rootfs: no root hash" >&2; exit 1; }
printf 'ROOT_HASH=%s\nROOT_SALT=%s\nROOT_BLOCKS=%s\n' "$root_hash" "$salt" "$blocks" >"$out/rootfs.env"
rm -rf "$stage"
echo "pack-rootfs: $img blocks=$blocks root_hash=$root_hash"
