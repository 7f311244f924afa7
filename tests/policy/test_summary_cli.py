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
        "priv: may run privileged",
        "shell allowed for exec: /bin/busybox sh",
        "catch-all env rule 'K=.*' admits any value of K",
        "catch-all env rule '.*' admits any variable",
        "writable mount /data",
        "external process: /bin/dmesg",
        "network changes allowed",
        "debug console enabled",
        "stack dumps allowed",
        "web: may use the attestation service",
    ]:
        assert phrase in risks, phrase
    assert "unencrypted scratch" not in risks
    locked = summarize(world.load_policy("locked"))["risks"]
    assert "unencrypted scratch space allowed" in locked
    assert not any("PORT" in r for r in locked)  # PORT=[0-9]{1,5} is not a catch-all


def test_summary_calls_out_runtime_fields_that_loosen_the_defaults() -> None:
    risks = summarize(world.load_policy("runtime"))["risks"]
    assert "web-runtime: the host may mask or make read-only: /app/secrets" in risks
    assert "web-runtime: oomScoreAdj down to -997 (shielded from the OOM killer)" in risks
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
    assert "container web (3 layers)" in text and "writable mount /var/cache/nginx" in text
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
