"""TCB_VERSION layouts, policy / platform-info / signer-info bits and product names."""

from __future__ import annotations

import pytest

from guestagent.snp.fields import (
    GuestPolicy,
    PlatformInfo,
    Product,
    SignerInfo,
    SigningKey,
    TcbLayout,
    TcbVersion,
    product_from_cpuid,
    product_from_name,
)


def test_legacy_tcb_example_from_the_reference():
    tcb = TcbVersion(0x7308000000000003, TcbLayout.LEGACY)
    assert tcb.components == {"bl_spl": 3, "tee_spl": 0, "snp_spl": 8, "ucode_spl": 115}


def test_turin_tcb_layout_bytes():
    raw = bytes([0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0x55])
    tcb = TcbVersion(int.from_bytes(raw, "little"), TcbLayout.TURIN)
    assert tcb.components == {
        "fmc_spl": 0x11,
        "bl_spl": 0x22,
        "tee_spl": 0x33,
        "snp_spl": 0x44,
        "ucode_spl": 0x55,
    }


@pytest.mark.parametrize("layout", list(TcbLayout))
def test_tcb_build_inverts_decode(layout):
    names = TcbVersion(0, layout).components
    spls = {name: index + 1 for index, name in enumerate(names)}
    tcb = TcbVersion.build(layout, **spls)
    assert tcb.components == spls
    assert TcbVersion(tcb.raw, layout).components == spls


def test_tcb_build_rejects_foreign_components():
    with pytest.raises(ValueError, match="fmc_spl is not a TCB component"):
        TcbVersion.build(TcbLayout.LEGACY, fmc_spl=1)
    with pytest.raises(ValueError, match="does not fit"):
        TcbVersion.build(TcbLayout.LEGACY, bl_spl=256)


def test_tcb_at_least_names_the_low_components():
    tcb = TcbVersion.build(TcbLayout.LEGACY, bl_spl=3, tee_spl=0, snp_spl=8, ucode_spl=115)
    assert tcb.at_least(TcbVersion.build(TcbLayout.LEGACY, bl_spl=3, snp_spl=8)) == []
    low = tcb.at_least(TcbVersion.build(TcbLayout.LEGACY, snp_spl=9, ucode_spl=200))
    assert low == ["snp_spl", "ucode_spl"]


def test_policy_bits():
    policy = GuestPolicy(0x3001F)
    assert (policy.abi_major, policy.abi_minor) == (0, 0x1F)
    assert policy.smt and policy.flag("reserved_must_be_one")
    assert not (policy.debug or policy.migrate_ma or policy.single_socket)
    assert GuestPolicy(1 << 19).debug and GuestPolicy(1 << 18).migrate_ma
    built = GuestPolicy.build(
        abi_major=1, abi_minor=2, smt=True, debug=True, page_swap_disable=True
    )
    assert built.raw == 2 | 1 << 8 | 1 << 16 | 1 << 17 | 1 << 19 | 1 << 25
    assert built.to_json()["page_swap_disable"] is True
    with pytest.raises(ValueError, match="unknown policy flag"):
        GuestPolicy.build(bogus=True)


def test_platform_info_bits():
    info = PlatformInfo(0b10100101)
    decoded = info.to_json()
    assert decoded["smt_en"] and decoded["ecc_en"] and decoded["alias_check_complete"]
    assert decoded["tio_en"] and not decoded["tsme_en"] and not decoded["rapl_dis"]
    assert info.smt_enabled


def test_signer_info_bits():
    info = SignerInfo.build(signing_key=SigningKey.VLEK, mask_chip_key=True, author_key_en=True)
    assert info.raw == 0b111
    assert info.signing_key is SigningKey.VLEK and info.mask_chip_key and info.author_key_en
    assert info.problem() is None
    assert "reserved" in SignerInfo(1 << 5).problem()
    assert SignerInfo(7 << 2).signing_key is SigningKey.NONE


@pytest.mark.parametrize(
    ("name", "product"),
    [
        ("Milan-B0", Product.MILAN),
        ("Milan", Product.MILAN),
        ("Genoa", Product.GENOA),
        ("Turin", Product.TURIN),
        ("turin", Product.TURIN),
    ],
)
def test_product_names(name, product):
    assert product_from_name(name) is product


def test_unknown_product_name():
    with pytest.raises(ValueError, match="unknown SEV-SNP product"):
        product_from_name("Rome")


def test_products_from_cpuid():
    assert product_from_cpuid(0x19, 0x01) is Product.MILAN  # Milan VLEK vector
    assert product_from_cpuid(0x19, 0x11) is Product.GENOA  # Genoa vector
    assert product_from_cpuid(0x1A, 0x02) is Product.TURIN
    assert product_from_cpuid(0, 0) is None
    assert product_from_cpuid(0x19, 0x21) is None  # a desktop model: not an SNP product
