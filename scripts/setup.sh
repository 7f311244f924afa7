#!/usr/bin/env bash
# Sets up this checkout on a fresh Debian machine, as root: the distribution packages the agent
# uses for real (the OCI runtime, mkfs.erofs, veritysetup, busybox for container root
# filesystems) and a virtual environment, .venv, with the package installed into it (a stock
# Debian python refuses system-wide pip installs, PEP 668). The README's first command:
#     bash scripts/setup.sh && .venv/bin/guestagent demo
# --test also installs what the host test tier needs (scripts/test.sh passes it).
# Fails, naming what is missing, when it cannot install something: nothing is skipped quietly.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME_PACKAGES=(python3 python3-venv runc erofs-utils busybox-static cryptsetup-bin util-linux
  iproute2 kmod)
# What the host test tier runs for real besides the runtime packages (extend, don't fork).
TEST_PACKAGES=(e2fsprogs cpio openssl systemd crun protobuf-compiler golang-go
  golang-github-containerd-ttrpc-dev)
EXTRAS=""

for arg in "$@"; do
  case "$arg" in
    --test) RUNTIME_PACKAGES+=("${TEST_PACKAGES[@]}"); EXTRAS="[test,measure]" ;;
    *) echo "setup.sh: error: unknown argument $arg (usage: setup.sh [--test])" >&2; exit 2 ;;
  esac
done

missing=()
for pkg in "${RUNTIME_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "setup.sh: error: ${missing[*]} not installed and cannot install (needs root and apt-get)" >&2
    exit 1
  fi
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A venv that no longer runs (python upgraded or moved) is rebuilt rather than patched.
if ! .venv/bin/python -c "" 2>/dev/null; then
  rm -rf .venv
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${EXTRAS}"
echo "setup.sh: ready: .venv/bin/guestagent ($(.venv/bin/python --version))"
