#!/usr/bin/env bash
# Sets up a fresh machine for the test suite and runs it: the README's test command.
# Installs the distribution packages the tests use for real (runc, veritysetup as an oracle,
# mkfs.erofs, busybox for container root filesystems, systemd-analyze), the package with its
# test and measure extras, then runs the host tier and the whole-VM tier.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(runc cryptsetup-bin erofs-utils busybox-static iproute2 e2fsprogs kmod cpio openssl
  python3 systemd protobuf-compiler golang-go golang-github-containerd-ttrpc-dev)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: not root or no apt-get; tests needing ${missing[*]} will skip" >&2
  fi
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test,measure]'
python3 -m ruff check guestagent tests benches
python3 -m pytest -q -m "not vm" "$@"

# The whole-VM tier: builds the guest image (debootstrap, kernel, initramfs), boots it under
# QEMU's software emulation and drives the agent inside. Needs root.
if [[ $(id -u) -eq 0 ]]; then
  bash tests/vm/prepare
  python3 -m pytest -q -m vm tests/vm
else
  echo "skipping the whole-VM tier: it needs root" >&2
fi
