#!/usr/bin/env bash
# Builds the OVMF firmware that can measure our guest's direct boot: edk2's AmdSevX64 platform
# (OvmfPkg/AmdSev/AmdSevX64.dsc) from Debian's edk2 source package, reproducibly.
#
#   scripts/build-ovmf.sh OUT_DIR      build; writes OUT_DIR/OVMF.fd and OUT_DIR/ovmf.manifest
#   scripts/build-ovmf.sh --install-deps   (root) install the build dependencies from apt
#   scripts/build-ovmf.sh --inputs     print what the firmware depends on (a cache key)
#
# No Debian binary can measure a direct boot: bookworm's ovmf has no SEV metadata, trixie's
# AmdSev-less build has an all-zero hashes-table entry. The AmdSev platform declares the
# SNP_KERNEL_HASHES page where QEMU puts the hashes of kernel, initrd and command line, so the
# launch digest covers them. Reproducible given the same inputs: the source is pinned by
# version and sha256 (checked against Debian's signed Sources index too), the toolchain is
# bookworm's (its versions are printed and recorded), SOURCE_DATE_EPOCH is the source's
# changelog date, and the tree always sits at one absolute path (edk2 reserves a debug entry
# sized by the build path in each module, so another path gives other bytes). Builds
# serialize on a lock beside that path. About 2 minutes on 2 cores; peak 0.7 GiB of disk.
set -euo pipefail

EDK2_VERSION=2025.02-8+deb13u1
EDK2_SUITE=trixie
ORIG_TARBALL=edk2_2025.02.orig.tar.xz
ORIG_SHA256=b63b6053d6d89c74d9291f9e96fde1584be99e6fb9c169ba9511505129d6b049
DEBIAN_TARBALL=edk2_2025.02-8+deb13u1.debian.tar.xz
DEBIAN_SHA256=e2a7f6fc58640818416a028d6d5e9dfc255697a7cdc60c14566c236df6bd9b08
# Grub is embedded in the AmdSev firmware; bookworm's grub-mkimage builds it.
GRUB_VERSION=2.06-13+deb12u2
BUILD_DEPS=(build-essential nasm acpica-tools uuid-dev python3-venv mtools dosfstools)
TOOLCHAIN_PACKAGES=(gcc-12 binutils make nasm acpica-tools uuid-dev mtools dosfstools)
# The fixed build path (see above). Not configurable: another path is another firmware.
BUILD_ROOT=/var/tmp/guestagent-ovmf
TREE="$BUILD_ROOT/edk2-2025.02"
PLATFORM=OvmfPkg/AmdSev/AmdSevX64.dsc
# What these inputs built with the toolchain below (bookworm, 2026-11); a different toolchain
# gives a different firmware, the same one must give this.
EXPECTED_SHA256=707a61285310d325cc702e4033a1d690f7fb588844c98b4eac260b5275e6fad0
EXPECTED_TOOLCHAIN="gcc-12=12.2.0-14+deb12u1 binutils=2.40-2 make=4.3-4.1 nasm=2.16.01-1 \
acpica-tools=20200925-8 uuid-dev=2.38.1-5+deb12u3 mtools=4.0.33-1+really4.0.32-1 \
dosfstools=4.2-1 python3=3.11.7 grub=$GRUB_VERSION"

say() { echo "build-ovmf: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

toolchain() {
    local pkg version out=()
    for pkg in "${TOOLCHAIN_PACKAGES[@]}"; do
        version=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null) || version=missing
        out+=("$pkg=$version")
    done
    # edk2's BaseTools run on the python3 first on PATH, whichever package it came from.
    version=$(python3 -c 'import platform; print(platform.python_version())' 2>/dev/null) \
        || version=missing
    echo "${out[*]} python3=$version grub=$GRUB_VERSION"
}

inputs() {
    echo "edk2=$EDK2_VERSION $ORIG_TARBALL=$ORIG_SHA256 $DEBIAN_TARBALL=$DEBIAN_SHA256"
    echo "platform=$PLATFORM build_root=$TREE"
    echo "toolchain: $(toolchain)"
}

install_deps() {
    local missing=() pkg
    for pkg in "${BUILD_DEPS[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    [[ $(id -u) -eq 0 ]] || die "missing build dependencies: ${missing[*]} (run as root)"
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade --no-install-recommends \
        "${missing[@]}" >/dev/null
}

check_tools() {
    local tool
    for tool in gcc make nasm iasl mkfs.msdos mcopy dpkg-deb apt-get python3 patch flock; do
        command -v "$tool" >/dev/null || die "missing $tool: run $0 --install-deps as root"
    done
    python3 -c "import sevsnpmeasure" 2>/dev/null \
        || die "python3 cannot import sevsnpmeasure (pip install sev-snp-measure)"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

gone() {
    die "edk2 $EDK2_VERSION: $1.
  The firmware is pinned to Debian's edk2 $EDK2_VERSION ($EDK2_SUITE):
    $ORIG_TARBALL     sha256 $ORIG_SHA256
    $DEBIAN_TARBALL  sha256 $DEBIAN_SHA256
  Debian drops a version from $EDK2_SUITE's Sources after a point release. Put these two files
  (Debian's snapshot archive keeps them) in a directory and rerun with OVMF_SOURCE_DIR=DIR, or
  move the pin in $0 to a served version (the firmware and every launch digest then change)."
}

# A scratch apt configuration with a deb-src line for the pinned suite: the system's own apt
# sources, lists and cache stay as they are.
fetch_source() {
    local dest=$1 apt=$BUILD_ROOT/apt
    rm -rf "$apt"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/parts" "$apt/prefs"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
        "http://deb.debian.org/debian $EDK2_SUITE main" >"$apt/sources.list"
    cat >"$apt/apt.conf" <<EOF
Dir::Etc::sourcelist "$apt/sources.list";
Dir::Etc::sourceparts "$apt/parts";
Dir::Etc::preferencesparts "$apt/prefs";
Dir::State::lists "$apt/lists";
Dir::Cache "$apt/cache";
Dir::Cache::archives "$apt/cache/archives";
EOF
    export APT_CONFIG=$apt/apt.conf
    apt-get update -qq >"$apt/update.log" 2>&1 || gone "apt-get update of $EDK2_SUITE's Sources failed: $(tail -1 "$apt/update.log")"
    # The signed Sources index must list this version with these hashes.
    local record
    record=$(apt-cache showsrc edk2 2>/dev/null | awk -v v="$EDK2_VERSION" \
        'BEGIN{RS=""} index($0 "\n", "\nVersion: " v "\n") {print}')
    [[ -n $record ]] || gone "no longer listed in $EDK2_SUITE's Sources index"
    grep -q " $ORIG_SHA256 [0-9]* $ORIG_TARBALL\$" <<<"$record" \
        || die "$EDK2_SUITE's Sources index gives $ORIG_TARBALL another sha256 than $ORIG_SHA256"
    grep -q " $DEBIAN_SHA256 [0-9]* $DEBIAN_TARBALL\$" <<<"$record" \
        || die "$EDK2_SUITE's Sources index gives $DEBIAN_TARBALL another sha256 than $DEBIAN_SHA256"
    # The .dsc may 404 (apt then exits non-zero); the tarballs are what we check and use.
    (cd "$dest" && apt-get source --download-only -qq -o APT::Sandbox::User=root \
        "edk2=$EDK2_VERSION" >"$apt/source.log" 2>&1) || true
    unset APT_CONFIG
    [[ -f $dest/$ORIG_TARBALL && -f $dest/$DEBIAN_TARBALL ]] \
        || gone "the tarballs could not be downloaded: $(grep -m1 -E '^(E|Err):' "$apt/source.log" || true)"
}

unpack_source() {
    local src=$1
    [[ $(sha256_of "$src/$ORIG_TARBALL") == "$ORIG_SHA256" ]] || die "$ORIG_TARBALL: sha256 mismatch"
    [[ $(sha256_of "$src/$DEBIAN_TARBALL") == "$DEBIAN_SHA256" ]] || die "$DEBIAN_TARBALL: sha256 mismatch"
    tar -C "$BUILD_ROOT" -xf "$src/$ORIG_TARBALL"
    [[ -d $TREE ]] || die "$ORIG_TARBALL did not unpack to $TREE"
    tar -C "$TREE" -xf "$src/$DEBIAN_TARBALL"
    local patch
    while read -r patch _; do
        [[ -z $patch || $patch == \#* ]] && continue
        patch -d "$TREE" -p1 -s --no-backup-if-mismatch <"$TREE/debian/patches/$patch"
    done <"$TREE/debian/patches/series"
}

# AmdSev embeds a Grub made by OvmfPkg/AmdSev/Grub/grub.sh with grub-mkimage; bookworm's grub
# (unpacked, not installed) builds it. Its `sevsecret` module exists in no Debian grub and only
# unlocks LUKS with an injected secret, unused with measured direct boot: dropped. The memdisk
# is made with fixed FAT serial and dates, or grub.efi changes on every run.
prepare_grub() {
    local grub=$BUILD_ROOT/grub
    mkdir -p "$grub/debs" "$grub/root" "$BUILD_ROOT/bin"
    (cd "$grub/debs" && apt-get download -qq -o APT::Sandbox::User=root \
        "grub-efi-amd64-bin=$GRUB_VERSION" "grub-common=$GRUB_VERSION") \
        || die "bookworm no longer serves grub $GRUB_VERSION (the firmware embeds it): move the pin"
    local deb
    for deb in "$grub"/debs/*.deb; do dpkg-deb -x "$deb" "$grub/root"; done
    # The unpacked packages' own grub-mkimage and x86_64-efi modules, found inside $grub/root.
    local mkimage moddir
    mkimage=$(find "$grub/root" -type f -name grub-mkimage -perm -u+x | head -n1)
    moddir=$(dirname "$(find "$grub/root" -type f -path '*/x86_64-efi/moddep.lst' | head -n1)")
    [[ -x $mkimage && -f $moddir/moddep.lst ]] || die "grub $GRUB_VERSION: no grub-mkimage or x86_64-efi modules"
    cat >"$BUILD_ROOT/bin/grub-mkimage" <<EOF
#!/bin/sh
exec "$mkimage" -d "$moddir" "\$@"
EOF
    chmod 755 "$BUILD_ROOT/bin/grub-mkimage"
    local script=$TREE/OvmfPkg/AmdSev/Grub/grub.sh
    sed -i -e '/^ *sevsecret$/d' -e 's/mkfs\.msdos -C/mkfs.msdos --invariant -C/' "$script"
    grep -q sevsecret "$script" && die "grub.sh: could not drop the sevsecret module"
    grep -q 'mkfs.msdos --invariant -C' "$script" || die "grub.sh: could not make mkfs.msdos invariant"
}

build_firmware() {
    local log=$BUILD_ROOT/build.log
    : >"$log"
    (
        cd "$TREE"
        export PATH="$BUILD_ROOT/bin:$PATH"
        set +u
        set -- # edksetup.sh reads the caller's arguments
        # shellcheck disable=SC1091
        . ./edksetup.sh >>"$log" 2>&1
        set -u
        make -C BaseTools ARCH=X64 >>"$log" 2>&1
        build -a X64 -t GCC5 -b RELEASE -n 2 -p "$PLATFORM" >>"$log" 2>&1
    ) || { tail -40 "$log" >&2; die "the edk2 build failed (log: $log)"; }
}

# The metadata sev-snp-measure reads: the firmware must declare an SNP_KERNEL_HASHES page.
check_firmware() {
    python3 - "$1" <<'PY'
import sys
from sevsnpmeasure.ovmf import OVMF, SectionType

ovmf = OVMF(sys.argv[1])
sections = [s for s in ovmf.metadata_items() if s.section_type() == SectionType.SNP_KERNEL_HASHES]
if not sections:
    sys.exit(f"build-ovmf: ERROR: {sys.argv[1]} has no SNP_KERNEL_HASHES section")
if not ovmf.is_sev_hashes_table_supported():
    sys.exit(f"build-ovmf: ERROR: {sys.argv[1]} has no SEV hashes table entry")
for s in sections:
    print(f"build-ovmf: SNP_KERNEL_HASHES at 0x{s.gpa:x}, 0x{s.size:x} bytes; hashes table at "
          f"0x{ovmf.sev_hashes_table_gpa():x}", file=sys.stderr)
PY
}

build_ovmf() {
    local out=$1
    mkdir -p "$out" "$BUILD_ROOT"
    out=$(cd "$out" && pwd)
    [[ $(. /etc/os-release && echo "$VERSION_CODENAME") == bookworm ]] \
        || say "note: not Debian bookworm: the toolchain differs, so will the firmware"
    exec 9>"$BUILD_ROOT.lock"
    flock -n 9 || { say "waiting for another build in $BUILD_ROOT"; flock 9; }
    rm -rf "$TREE" "$BUILD_ROOT/grub" "$BUILD_ROOT/bin" "$BUILD_ROOT/src"
    local src=${OVMF_SOURCE_DIR:-}
    if [[ -z $src ]]; then
        src=$BUILD_ROOT/src
        mkdir -p "$src"
        fetch_source "$src"
    fi
    unpack_source "$src"
    SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$TREE/debian/changelog" -STimestamp)
    export SOURCE_DATE_EPOCH TZ=UTC LC_ALL=C
    umask 022
    prepare_grub
    local started=$SECONDS
    build_firmware
    local fd=$TREE/Build/AmdSev/RELEASE_GCC5/FV/OVMF.fd
    [[ -f $fd ]] || die "the build made no $fd"
    check_firmware "$fd"
    cp "$fd" "$out/OVMF.fd"
    local sha toolchain_now
    sha=$(sha256_of "$out/OVMF.fd")
    toolchain_now=$(toolchain)
    { inputs; echo "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"; echo "OVMF.fd sha256 $sha"; } \
        >"$out/ovmf.manifest"
    rm -rf "$TREE" "$BUILD_ROOT/grub" "$BUILD_ROOT/src"
    say "built in $((SECONDS - started)) s: $out/OVMF.fd"
    echo "OVMF.fd sha256 $sha"
    if [[ $sha != "$EXPECTED_SHA256" ]]; then
        [[ $toolchain_now == "$EXPECTED_TOOLCHAIN" ]] && die "not reproducible: the pinned" \
            "source and toolchain gave $sha, expected $EXPECTED_SHA256"
        say "note: the toolchain is not the one $EXPECTED_SHA256 was built with:"
        say "  expected: $EXPECTED_TOOLCHAIN"
        say "  here:     $toolchain_now"
    fi
}

[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0 # sourced (the tests call its functions)
case ${1:-} in
    --install-deps) install_deps ;;
    --inputs) inputs ;;
    -* | "") sed -n '2,7p' "$0" >&2; exit 2 ;;
    *) check_tools; build_ovmf "$1" ;;
esac
