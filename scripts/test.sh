#!/usr/bin/env bash
# The README's test command: sets the machine up (scripts/setup.sh --test: Debian packages and
# the .venv), then runs ruff, the host tier and, as root, the whole-VM tier, all with .venv's
# python. Arguments go to the host tier's pytest. --host-only leaves the whole-VM tier out
# (refused in CI). In CI (CI=true) a skipped test fails the run (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."

host_only=0
pytest_args=()
for arg in "$@"; do
  if [[ $arg == --host-only ]]; then host_only=1; else pytest_args+=("$arg"); fi
done
ci=0
[[ ${CI:-} =~ ^(1|true|yes)$ ]] && ci=1
if ((host_only && ci)); then
  echo "test.sh: error: --host-only in CI: every tier must run" >&2
  exit 1
fi

bash scripts/setup.sh --test
PYTHON=$PWD/.venv/bin/python
export PYTHON

.venv/bin/python -m ruff check guestagent tests benches
.venv/bin/python -m pytest -q -m "not vm" "${pytest_args[@]}"

if ((host_only)); then
  echo "test.sh: the whole-VM tier was left out (--host-only)"
  exit 0
fi
# The whole-VM tier: builds the guest image (debootstrap, kernel, initramfs), boots it under
# QEMU's software emulation and drives the agent inside. Needs root.
if [[ $(id -u) -ne 0 ]]; then
  echo "test.sh: error: the whole-VM tier needs root (or pass --host-only outside CI)" >&2
  exit 1
fi
bash tests/vm/prepare
.venv/bin/python -m pytest -q -m vm tests/vm
