"""Choosing the SNP backend. `auto` never falls back to the simulator.

`auto` takes /dev/sev-guest (reports, extended reports and derived keys) when present, else
configfs-tsm (reports and certificates), and otherwise refuses with `snp.unavailable`. The
simulator is used only when `kind="sim"` is asked for explicitly, with a state directory.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from guestagent.errors import InvalidArgumentError
from guestagent.snp.errors import SnpUnavailableError
from guestagent.snp.paths import DEFAULT_DEVICE, DEFAULT_ROOT

if TYPE_CHECKING:
    from guestagent.snp.backend import SnpBackend
    from guestagent.snp.sim import SimConfig

__all__ = ["BACKEND_KINDS", "BackendKind", "open_backend"]

BackendKind = Literal["auto", "sev-guest", "configfs-tsm", "sim"]
BACKEND_KINDS: tuple[str, ...] = ("auto", "sev-guest", "configfs-tsm", "sim")


def open_backend(
    kind: str = "auto",
    *,
    device_path: str = DEFAULT_DEVICE,
    tsm_root: str = DEFAULT_ROOT,
    sim_state: str | os.PathLike[str] | None = None,
    sim_config: SimConfig | None = None,
    sim_sign_in_child: bool = False,
) -> SnpBackend:
    """The backend for `kind`; raises SnpUnavailableError when it cannot be used here. Only
    the chosen backend's module is imported. `sim_sign_in_child`: the simulator signs in a
    short-lived child process (the agent: cryptography never loads into it to sign)."""
    if kind not in BACKEND_KINDS:
        raise InvalidArgumentError(
            f"unknown SNP backend {kind!r} (choose from {', '.join(BACKEND_KINDS)})"
        )
    if kind == "sim":
        if sim_state is None:
            raise InvalidArgumentError("the simulator needs a state directory (--sim-state)")
        from guestagent.snp.sim import SimBackend

        return SimBackend(sim_state, sim_config, sign_in_child=sim_sign_in_child)
    if sim_config is not None:
        raise InvalidArgumentError("simulator options given without choosing the sim backend")
    has_device = os.path.exists(device_path)
    has_tsm = os.path.isdir(tsm_root)
    if kind == "sev-guest" or (kind == "auto" and has_device):
        if not has_device:
            raise SnpUnavailableError(f"{device_path} does not exist (no sev-guest driver)")
        from guestagent.snp.sevguest import SevGuestBackend

        return SevGuestBackend(device_path)
    if kind == "configfs-tsm" or (kind == "auto" and has_tsm):
        if not has_tsm:
            raise SnpUnavailableError(f"{tsm_root} does not exist (configfs-tsm not available)")
        from guestagent.snp.configfs import ConfigfsTsmBackend

        return ConfigfsTsmBackend(tsm_root)
    raise SnpUnavailableError(
        f"no SEV-SNP guest interface: neither {device_path} nor {tsm_root} exists. "
        "Refusing to run without attestation; the simulator is used only when asked for "
        "explicitly (backend 'sim')."
    )
