"""`policy show` risk call-outs and the `policy hash|show|check` commands."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from guestagent.cli import main
from guestagent.policy.document import parse_policy
from guestagent.policy.summary import summarize
from tests.policy import world

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def test_summary_calls_out_risky_grants() -> None:
    doc = json.loads(json.dumps(world.MAIN_POLICY))
    doc["containers"][0]["exec_processes"].append({"command": ["/bin/busybox", "sh"]})
    doc["containers"][0]["env_rules"].append({"pattern": "K=.*", "strategy": "re2"})
    doc["containers"][1]["env_rules"].append({"pattern": ".*", "strategy": "re2"})
    risks = "\n".join(summarize(parse_policy(json.dumps(doc).encode()))["risks"])
    for phrase in [
        '"priv": may run privileged',
        'shell allowed for exec: ["/bin/busybox", "sh"]',
        "catch-all env rule K=.* admits any value of K",
        "catch-all env rule .* admits any variable",
        "writable mount /data",
        'external process: ["/bin/dmesg"]',
        "network changes allowed",
        "debug console enabled",
        "stack dumps allowed",
        '"web": may use the attestation service',
    ]:
        assert phrase in risks, phrase
    assert "unencrypted scratch" not in risks
    locked = summarize(world.load_policy("locked"))["risks"]
    assert "unencrypted scratch space allowed" in locked
    assert not any("PORT" in r for r in locked)  # PORT=[0-9]{1,5} is not a catch-all


def test_summary_calls_out_runtime_fields_that_loosen_the_defaults() -> None:
    risks = summarize(world.load_policy("runtime"))["risks"]
    assert '"web-runtime": the host may mask or make read-only: /app/secrets' in risks
    assert '"web-runtime": oomScoreAdj down to -997 (shielded from the OOM killer)' in risks
    assert not any(
        "oomScoreAdj" in r or "mask" in r for r in summarize(world.load_policy("main"))["risks"]
    )


def test_hash_prints_host_data(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "hash", str(EXAMPLES / "busybox.json")]) == 0
    raw = (EXAMPLES / "busybox.json").read_bytes()
    assert capsys.readouterr().out.strip() == hashlib.sha256(raw).hexdigest()
    assert main(["policy", "hash", str(EXAMPLES / "initdata.toml")]) == 0
    raw = (EXAMPLES / "initdata.toml").read_bytes()
    assert capsys.readouterr().out.strip() == hashlib.sha384(raw).hexdigest()[:64]


def test_hash_and_show_reject_unreadable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "hash", str(tmp_path / "missing.json")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "containers": [], "x": 1}')
    assert main(["policy", "show", str(bad)]) == 2
    assert "$.x: unknown field" in capsys.readouterr().err


def test_show_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "show", str(EXAMPLES / "multi-container.json")]) == 0
    text = capsys.readouterr().out
    assert 'container "web"\n  layers (3,' in text and "writable mount /var/cache/nginx" in text
    assert main(["policy", "show", "--json", str(EXAMPLES / "busybox.json")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["containers"][0]["name"] == "busybox"


def _trace(tmp_path: Path, steps: list) -> Path:
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps({"point": p, "input": i}) + "\n" for p, i in steps))
    return path


def test_check_replays_and_fails_on_denials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(world.MAIN_POLICY))
    good = _trace(tmp_path, world.SCENARIOS["exec"])
    assert main(["policy", "check", str(policy), "--trace", str(good)]) == 0
    assert "0 denied" in capsys.readouterr().out
    bad = _trace(
        tmp_path,
        [
            *world.SCENARIOS["started"],
            ("exec_in_container", {**world.TEMPLATES["exec_web"], "argv": ["/bin/sh"]}),
        ],
    )
    assert main(["policy", "check", str(policy), "--trace", str(bad), "--details"]) == 1
    out = capsys.readouterr().out
    assert "DENY  exec_in_container: exec_in_container.argv" in out and "1 denied" in out
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("{not json\n")
    assert main(["policy", "check", str(policy), "--trace", str(garbage)]) == 2


def test_example_trace_passes_against_busybox_policy(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "policy",
            "check",
            str(EXAMPLES / "initdata.toml"),
            "--trace",
            str(EXAMPLES / "busybox.trace.jsonl"),
        ]
    )
    assert code == 0, capsys.readouterr().out


# C0 and C1 controls are refused at load (one test below); what remains unprintable (bidi
# overrides, zero-width and line-separator characters, tab and newline in argv) is escaped.
HOSTILE = "evil\u202egood\u200b"


def _hostile_policy() -> dict:
    doc = json.loads(json.dumps(world.MAIN_POLICY))
    web = doc["containers"][0]
    web["name"] = HOSTILE
    web["command"] = ["/bin/sh", "-c", "curl x | sh\n\tRISKS: none found"]
    web["env_rules"].append({"pattern": "K=\u2028title", "strategy": "string"})
    web["exec_processes"].append({"command": ["/app/x\u2066"]})
    web["mounts"][0]["destination"] = "/data\u2067"
    web["capabilities"] = dict(world.CAPS, ambient=["CAP_SYS_ADMIN"], inheritable=["CAP_BPF"])
    priv = doc["containers"][2]
    priv["devices"] = ["/dev/fuse\u202d"]
    priv["sysctls"] = {"kernel.x\u200c": "1\u200b"}
    return doc


def test_show_of_a_hostile_policy_prints_no_raw_control_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from guestagent.console.render import render

    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(_hostile_policy()))
    assert main(["policy", "show", str(path)]) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    summary = summarize(parse_policy(path.read_bytes()))
    for out in (text, render("policy", summary)):
        unprintable = {ch for ch in out if not ch.isprintable() and ch != "\n"}
        assert not unprintable, unprintable
        assert 'container "evil\\u202egood\\u200b"' in out
        assert '["/bin/sh", "-c", "curl x | sh\\n\\tRISKS: none found"]' in out
        assert "\n\tRISKS" not in out and "\nRISKS: none found" not in out
    # argv is a JSON list, every set is shown and every grant beyond the default flagged
    assert "CAP_SYS_ADMIN (mounts, namespaces, most of root's powers) in the ambient set" in text
    assert "CAP_BPF (loads BPF programs) in the inheritable set" in text
    assert "    ambient:     CAP_SYS_ADMIN!" in text
    assert f"    1. {world.L1}" in text and f"    2. {world.L2}" in text
    assert "additional gids: 10" in text and "15 (SIGTERM)" in text
    assert 'devices: "/dev/fuse\\u202d"' in text
    assert 'sysctls: "kernel.x\\u200c"="1\\u200b"' in text
    assert "K=\\u2028title [string]" in text and "/data\\u2067 <- bind" in text
    assert main(["policy", "show", "--json", str(path)]) == 0
    as_json = capsys.readouterr().out
    assert all(ch.isprintable() or ch == "\n" for ch in as_json)
    assert json.loads(as_json)["containers"][0]["name"] == HOSTILE


def test_show_refuses_a_policy_with_terminal_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(json.dumps(world.MAIN_POLICY))
    doc["containers"][0]["name"] = "evil\x1b[2K\rgood"
    path = tmp_path / "escapes.json"
    path.write_text(json.dumps(doc))
    assert main(["policy", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert "must not contain control characters (U+001B" in err and "\x1b" not in err


def test_initdata_wraps_a_policy_byte_for_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import base64
    import tomllib

    from guestagent.policy.initdata import wrap_initdata
    from guestagent.policy.measure import measure

    out = tmp_path / "initdata.toml"
    assert main(["policy", "initdata", str(EXAMPLES / "busybox.json"), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    raw = (EXAMPLES / "busybox.json").read_bytes()
    toml = tomllib.loads(out.read_text())
    assert toml["data"]["policy.json"].encode() == raw and toml["algorithm"] == "sha384"
    host_data = hashlib.sha384(out.read_bytes()).digest()[:32]
    assert f"HOST_DATA {host_data.hex()}" in printed
    assert main(["policy", "hash", "--qemu", str(out)]) == 0
    assert capsys.readouterr().out.strip() == base64.b64encode(host_data).decode()
    # Bytes a literal TOML string cannot hold still come back unchanged.
    awkward = json.dumps({"version": 1, "containers": [], "x": "'''\x7f\\"}).encode()
    assert measure(wrap_initdata(awkward, "sha512")).policy_bytes == awkward
    assert main(["policy", "initdata", str(out), "-o", str(tmp_path / "again.toml")]) == 2
    assert "already an initdata document" in capsys.readouterr().err
    missing = str(tmp_path / "nodir" / "x.toml")
    assert main(["policy", "initdata", str(EXAMPLES / "busybox.json"), "-o", missing]) == 2
