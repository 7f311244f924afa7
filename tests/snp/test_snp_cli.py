"""`guestagent report ...`: exit 0 when every check passes, 1 when one fails, 2 on bad input."""

from __future__ import annotations

import json
import os

import pytest

from guestagent.cli import main

TRUSTEE = ("trustee/test-report.bin", "trustee/test-vcek.der", "trustee/milan_ask_ark.pem")


def _verify_args(vectors, files=TRUSTEE):
    report, cert, chain = (str(vectors / name) for name in files)
    return ["report", "verify", report, "--cert", cert, "--chain", chain]


def test_show_prints_every_field(snp_vectors, capsys):
    assert main(["report", "show", str(snp_vectors / TRUSTEE[0])]) == 0
    out = capsys.readouterr().out
    for name in ("version", "measurement", "host_data", "reported_tcb", "chip_id", "signature"):
        assert name in out


def test_show_json(snp_vectors, capsys):
    path = snp_vectors / TRUSTEE[0]
    assert main(["report", "show", str(path), "--json"]) == 0
    decoded = json.loads(capsys.readouterr().out)
    data = path.read_bytes()
    assert decoded["measurement"] == data[0x90:0xC0].hex()
    assert decoded["host_data"] == "00" * 32
    assert decoded["version"] == 2


def test_show_unreadable_or_malformed_input_exits_2(tmp_path, capsys):
    assert main(["report", "show", str(tmp_path / "absent")]) == 2
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(100))
    assert main(["report", "show", str(bad)]) == 2
    assert "must be 1184 bytes" in capsys.readouterr().err


def test_verify_real_report_passes(snp_vectors, capsys):
    assert main(_verify_args(snp_vectors)) == 0
    assert "verification PASSED" in capsys.readouterr().out


def test_verify_failure_names_the_check_and_both_values(snp_vectors, capsys):
    files = (
        "go-sev-guest/attestation.bin",
        "go-sev-guest/vcek.testcer",
        "go-sev-guest/milan.testcer",
    )
    assert main(_verify_args(snp_vectors, files)) == 1
    err = capsys.readouterr().err
    assert "policy.debug" in err and "expected False, got True" in err
    assert main([*_verify_args(snp_vectors, files), "--allow-debug"]) == 0


def test_verify_expectations(snp_vectors, capsys):
    args = _verify_args(snp_vectors)
    assert main([*args, "--expect-host-data", "00" * 32, "--expect-vmpl", "0"]) == 0
    assert main([*args, "--expect-host-data", "ab" * 32]) == 1
    err = capsys.readouterr().err
    assert f"report.host_data: FAILED (expected {'ab' * 32}, got {'00' * 32})" in err
    assert main([*args, "--min-tcb", "bl=3,snp=8,ucode=115"]) == 0
    assert main([*args, "--min-tcb", "snp=9"]) == 1
    assert main([*args, "--product", "genoa"]) == 1


@pytest.mark.parametrize(
    "extra",
    [["--expect-host-data", "zz"], ["--expect-host-data", "00"], ["--min-tcb", "snp"]],
)
def test_verify_bad_usage_exits_2(snp_vectors, extra):
    assert main([*_verify_args(snp_vectors), *extra]) == 2


def test_verify_unreadable_certificate_exits_2(snp_vectors, tmp_path):
    args = _verify_args(snp_vectors)
    args[args.index("--cert") + 1] = str(tmp_path / "absent.der")
    assert main(args) == 2
    garbage = tmp_path / "garbage.der"
    garbage.write_bytes(b"not a certificate")
    args[args.index("--cert") + 1] = str(garbage)
    assert main(args) == 2


def test_verify_json_output(snp_vectors, capsys):
    assert main([*_verify_args(snp_vectors), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True
    assert any(check["name"] == "report.signature" for check in result["checks"])


def test_tampered_report_fails_verification(snp_vectors, tmp_path):
    data = bytearray((snp_vectors / TRUSTEE[0]).read_bytes())
    data[0x90] ^= 1
    tampered = tmp_path / "tampered.bin"
    tampered.write_bytes(bytes(data))
    args = _verify_args(snp_vectors)
    args[2] = str(tampered)
    assert main(args) == 1


@pytest.mark.skipif(
    os.path.exists("/dev/sev-guest") or os.path.isdir("/sys/kernel/config/tsm/report"),
    reason="this machine has an SNP guest interface",
)
def test_get_auto_refuses_without_hardware(capsys):
    assert main(["report", "get"]) == 1
    assert "snp.unavailable" in capsys.readouterr().err


def test_sim_get_certs_and_verify_round_trip(milan_state, tmp_path, capsys):
    report = tmp_path / "report.bin"
    host_data = "5a" * 32
    nonce = "01" * 64
    get = ["report", "get", "--backend", "sim", "--sim-state", str(milan_state)]
    assert (
        main([*get, "--sim-host-data", host_data, "--report-data", nonce, "-o", str(report)]) == 0
    )
    out = capsys.readouterr().out
    assert "backend: sim (SIMULATED)" in out and host_data in out
    certs = tmp_path / "certs"
    assert main(["report", "sim-certs", "--sim-state", str(milan_state), "-o", str(certs)]) == 0
    assert "SIMULATED" in capsys.readouterr().out
    verify = ["report", "verify", str(report), "--cert", str(certs / "vcek.der")]
    verify += ["--chain", str(certs / "ask_ark.pem")]
    trusted = [*verify, "--trust-sim-root", str(certs / "ark.pem")]
    assert main([*trusted, "--expect-host-data", host_data, "--expect-report-data", nonce]) == 0
    assert main(verify) == 1  # AMD roots pinned: the simulator's root is not AMD's
    assert "chain.root_pinned" in capsys.readouterr().err


def test_get_json_says_simulated(milan_state, capsys):
    args = ["report", "get", "--backend", "sim", "--sim-state", str(milan_state), "--json"]
    assert main(args) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert decoded["backend"]["simulated"] is True
    assert decoded["report"]["version"] == 3


def test_sim_options_need_the_sim_backend(milan_state, capsys):
    assert main(["report", "get", "--sim-state", str(milan_state)]) == 2
    assert main(["report", "get", "--backend", "auto", "--sim-host-data", "00" * 32]) == 2


def test_verify_at_a_time_checks_validity_then(snp_vectors, capsys):
    args = _verify_args(snp_vectors)  # the VCEK is valid 2023-01-24 .. 2030-01-24
    assert main([*args, "--at", "2025-06-01T12:00:00+02:00"]) == 0
    assert "verification PASSED" in capsys.readouterr().out
    for before_or_after in ("2022-01-01", "2031-01-01T00:00:00Z"):
        assert main([*args, "--at", before_or_after]) == 1
        err = capsys.readouterr().err
        assert "chain.validity: FAILED" in err and "valid 2023-01-24" in err
    assert main([*args, "--at", "last tuesday"]) == 2
    assert "is not an ISO 8601 time" in capsys.readouterr().err


@pytest.mark.parametrize(
    "launch",
    [
        ["--sim-kernel", "K"],  # a launch names all four
        ["--sim-ovmf", "F", "--sim-kernel", "K", "--sim-initrd", "I"],
        ["--sim-ovmf", "F", "--sim-kernel", "K", "--sim-initrd", "I", "--sim-append", "x",
         "--sim-measurement", "00" * 48],  # two launches
    ],
)  # fmt: skip
def test_sim_launch_as_an_image_needs_the_whole_image(milan_state, launch, capsys):
    get = ["report", "get", "--backend", "sim", "--sim-state", str(milan_state)]
    assert main([*get, *launch]) == 2
    err = capsys.readouterr().err
    assert "--sim-ovmf, --sim-kernel, --sim-initrd and --sim-append" in err or "choose one" in err


def test_sim_launch_refuses_a_firmware_that_cannot_measure(milan_state, tmp_path, capsys):
    pytest.importorskip("sevsnpmeasure", reason="the optional extra `measure` is not installed")
    files = {name: tmp_path / name for name in ("ovmf", "kernel", "initrd")}
    for name, path in files.items():
        path.write_bytes(name.encode() * 4096)
    get = ["report", "get", "--backend", "sim", "--sim-state", str(milan_state)]
    launch = [arg for name, path in files.items() for arg in (f"--sim-{name}", str(path))]
    assert main([*get, *launch, "--sim-append", "console=ttyS0"]) == 2
    assert "no SNP_KERNEL_HASHES section" in capsys.readouterr().err
    assert main([*get, *launch[:-1], str(tmp_path / "absent"), "--sim-append", "x"]) == 2
    assert "--sim-initrd: no such file" in capsys.readouterr().err
