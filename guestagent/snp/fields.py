"""Bit fields inside the attestation report: TCB_VERSION, guest policy, platform info, signer info.

Pure: every decoder takes the raw integer and keeps it, so encoding never loses bits.
Layouts follow the SNP ABI spec (AMD 56860) as summarised in anchors.md §4.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import Any

from guestagent.records import record

__all__ = [
    "SUPPORTED_VERSIONS",
    "GuestPolicy",
    "PlatformInfo",
    "Product",
    "SignerInfo",
    "SigningKey",
    "TcbLayout",
    "TcbVersion",
    "product_from_cpuid",
    "product_from_name",
]

SUPPORTED_VERSIONS = (2, 3, 5)  # attestation report versions parsed (report.py) and simulated


class Product(StrEnum):
    MILAN = "milan"
    GENOA = "genoa"
    TURIN = "turin"

    @property
    def tcb_layout(self) -> TcbLayout:
        return TcbLayout.TURIN if self is Product.TURIN else TcbLayout.LEGACY

    @property
    def title(self) -> str:
        return self.value.capitalize()


def product_from_name(name: str) -> Product:
    """Map a VCEK product-name extension ("Milan-B0", "Genoa", "Turin") or CLI name to a product."""
    base = name.split("-", 1)[0].strip().lower()
    try:
        return Product(base)
    except ValueError:
        raise ValueError(f"unknown SEV-SNP product {name!r}") from None


def product_from_cpuid(family: int, model: int) -> Product | None:
    """The product for a report's CPUID family/model (v3+); None when they are zero or unknown."""
    if family == 0x19 and model <= 0x0F:
        return Product.MILAN
    if family == 0x19 and (0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF):
        return Product.GENOA
    if family == 0x1A:
        return Product.TURIN
    return None


class TcbLayout(StrEnum):
    LEGACY = "milan/genoa"
    TURIN = "turin"


# Byte index of each SPL inside the little-endian u64 (anchors.md §4 TCB_VERSION table).
_LEGACY_INDEX = {"bl_spl": 0, "tee_spl": 1, "snp_spl": 6, "ucode_spl": 7}
_TURIN_INDEX = {"fmc_spl": 0, "bl_spl": 1, "tee_spl": 2, "snp_spl": 3, "ucode_spl": 7}


@record
class TcbVersion:
    """A decoded TCB_VERSION. `raw` is authoritative; the SPLs are views of its bytes."""

    raw: int
    layout: TcbLayout

    def _index(self) -> dict[str, int]:
        return _TURIN_INDEX if self.layout is TcbLayout.TURIN else _LEGACY_INDEX

    def spl(self, name: str) -> int:
        return (self.raw >> (8 * self._index()[name])) & 0xFF

    @property
    def components(self) -> dict[str, int]:
        """The named SPLs of this layout (fmc_spl only on Turin)."""
        return {name: self.spl(name) for name in self._index()}

    @classmethod
    def build(cls, layout: TcbLayout, **spls: int) -> TcbVersion:
        index = _TURIN_INDEX if layout is TcbLayout.TURIN else _LEGACY_INDEX
        raw = 0
        for name, value in spls.items():
            if name not in index:
                raise ValueError(f"{name} is not a TCB component of the {layout.value} layout")
            if not 0 <= value <= 0xFF:
                raise ValueError(f"{name}={value} does not fit in one byte")
            raw |= value << (8 * index[name])
        return cls(raw, layout)

    def at_least(self, minimum: TcbVersion) -> list[str]:
        """Names of the components that fall below `minimum` (empty when all are at least it)."""
        mine = self.components
        return [name for name, value in minimum.components.items() if mine.get(name, 0) < value]

    def to_json(self) -> dict[str, Any]:
        return {"raw": f"0x{self.raw:016x}", "layout": self.layout.value, **self.components}


def _bits_json(raw: int, width: int, named: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"raw": f"0x{raw:0{width // 4}x}"}
    for name, bit in named.items():
        out[name] = bool(raw >> bit & 1)
    return out


_POLICY_BITS = {
    "smt": 16,
    "reserved_must_be_one": 17,
    "migrate_ma": 18,
    "debug": 19,
    "single_socket": 20,
    "cxl_allow": 21,
    "mem_aes_256_xts": 22,
    "rapl_dis": 23,
    "ciphertext_hiding": 24,
    "page_swap_disable": 25,
}


@record
class GuestPolicy:
    """The guest policy set at launch (u64). Bit 17 is reserved and set by every valid policy."""

    raw: int

    def flag(self, name: str) -> bool:
        return bool(self.raw >> _POLICY_BITS[name] & 1)

    @property
    def abi_minor(self) -> int:
        return self.raw & 0xFF

    @property
    def abi_major(self) -> int:
        return self.raw >> 8 & 0xFF

    @property
    def debug(self) -> bool:
        return self.flag("debug")

    @property
    def smt(self) -> bool:
        return self.flag("smt")

    @property
    def migrate_ma(self) -> bool:
        return self.flag("migrate_ma")

    @property
    def single_socket(self) -> bool:
        return self.flag("single_socket")

    @classmethod
    def build(cls, *, abi_major: int = 0, abi_minor: int = 0, **flags: bool) -> GuestPolicy:
        raw = abi_minor & 0xFF | (abi_major & 0xFF) << 8 | 1 << _POLICY_BITS["reserved_must_be_one"]
        for name, value in flags.items():
            if name not in _POLICY_BITS:
                raise ValueError(f"unknown policy flag {name!r}")
            bit = 1 << _POLICY_BITS[name]
            raw = raw | bit if value else raw & ~bit
        return cls(raw)

    def to_json(self) -> dict[str, Any]:
        out = _bits_json(self.raw, 64, _POLICY_BITS)
        out.update(abi_major=self.abi_major, abi_minor=self.abi_minor)
        return out


_PLATFORM_BITS = {
    "smt_en": 0,
    "tsme_en": 1,
    "ecc_en": 2,
    "rapl_dis": 3,
    "ciphertext_hiding_dram_en": 4,
    "alias_check_complete": 5,
    "tio_en": 7,
}


@record
class PlatformInfo:
    raw: int

    def flag(self, name: str) -> bool:
        return bool(self.raw >> _PLATFORM_BITS[name] & 1)

    @property
    def smt_enabled(self) -> bool:
        return self.flag("smt_en")

    def to_json(self) -> dict[str, Any]:
        return _bits_json(self.raw, 64, _PLATFORM_BITS)


class SigningKey(int, Enum):
    VCEK = 0
    VLEK = 1
    NONE = 7


SIGNER_INFO_RESERVED_MASK = 0xFFFFFFE0


@record
class SignerInfo:
    """The u32 at 0x48: AUTHOR_KEY_EN bit 0, MASK_CHIP_KEY bit 1, SIGNING_KEY bits 4:2."""

    raw: int

    @property
    def author_key_en(self) -> bool:
        return bool(self.raw & 1)

    @property
    def mask_chip_key(self) -> bool:
        return bool(self.raw >> 1 & 1)

    @property
    def signing_key_bits(self) -> int:
        return self.raw >> 2 & 0x7

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.signing_key_bits)

    def problem(self) -> str | None:
        """Why this value is invalid per the spec, or None when it is valid."""
        if self.raw & SIGNER_INFO_RESERVED_MASK:
            return f"signer info reserved bits [31:5] must be zero (0x{self.raw:08x})"
        if self.signing_key_bits not in {k.value for k in SigningKey}:
            return f"signer info SIGNING_KEY {self.signing_key_bits} is reserved"
        return None

    @classmethod
    def build(
        cls, *, signing_key: SigningKey, mask_chip_key: bool = False, author_key_en: bool = False
    ) -> SignerInfo:
        return cls(int(author_key_en) | int(mask_chip_key) << 1 | signing_key.value << 2)

    def to_json(self) -> dict[str, Any]:
        return {
            "raw": f"0x{self.raw:08x}",
            "author_key_en": self.author_key_en,
            "mask_chip_key": self.mask_chip_key,
            "signing_key": self.signing_key.name.lower()
            if self.problem() is None
            else self.signing_key_bits,
        }
