"""Which start-up modes may run together: no switch weakens enforcement on SEV-SNP hardware.

Development modes (the simulated secure processor, allow-all without a policy, userspace layer
verification) exist for machines with no SEV-SNP interface. Where /dev/sev-guest or
configfs-tsm exists the agent refuses to start in any of them: a host that controls the
agent's command line (or the kernel command line that builds it) gains nothing by asking.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from guestagent.errors import AgentError, ErrorCode

if TYPE_CHECKING:
    from guestagent.server.agent import AgentConfig

__all__ = ["check_modes", "real_snp_interface"]


def real_snp_interface(device_path: str, tsm_root: str) -> str | None:
    """The SEV-SNP guest interface this machine has, or None."""
    if os.path.exists(device_path):
        return device_path
    if os.path.isdir(tsm_root):
        return tsm_root
    return None


def _refuse(message: str) -> AgentError:
    return AgentError(message, code=ErrorCode.MODE_REFUSED)


def check_modes(config: AgentConfig, storage_mode: str) -> None:
    """Raise (the agent does not start) when the requested modes may not run here."""
    if config.insecure_allow_all and config.snp != "none":
        raise _refuse(
            "--insecure-allow-all needs --snp none: an allow-all agent must not hold the "
            "secure processor (reports or derived keys would vouch for an unenforced guest)"
        )
    interface = real_snp_interface(config.snp_device, config.tsm_root)
    if interface is None:
        return
    if config.snp == "sim":
        raise _refuse(f"--snp sim refused: this machine has a real SEV-SNP interface ({interface})")
    if config.insecure_allow_all:
        raise _refuse(
            f"--insecure-allow-all refused: this machine has a real SEV-SNP interface ({interface})"
        )
    if storage_mode != "dm-verity":
        raise _refuse(
            f"storage mode {storage_mode} refused: on SEV-SNP hardware ({interface}) layers "
            "are mounted only as dm-verity devices (is dm_verity in the guest kernel?)"
        )
