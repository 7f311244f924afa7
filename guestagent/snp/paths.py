"""Where the kernel exposes the SEV-SNP guest interfaces (a leaf module: importing it loads
no backend)."""

from __future__ import annotations

__all__ = ["DEFAULT_DEVICE", "DEFAULT_ROOT"]

DEFAULT_DEVICE = "/dev/sev-guest"  # the sev-guest driver's ioctl device
DEFAULT_ROOT = "/sys/kernel/config/tsm/report"  # configfs-tsm reports
