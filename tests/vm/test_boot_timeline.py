"""The boot timeline in the VM tier: every stage from QEMU start to a container's first output
byte is stamped and placed, in order, on one clock (table printed; JSON kept beside the image
cache for benches/bench_boot.py and docs/performance.md)."""

from __future__ import annotations

import pytest
from boot_timeline import markdown_table
from guest_images import cache_dir
from timeline_flow import as_json, make_layer, run_flow

from guestagent.errors import AgentError

pytestmark = [pytest.mark.vm, pytest.mark.slow]

# Anchoring guest stamps on the host clock is good to the console poll; allow a little more.
CLOCK_SLACK_MS = 50


def test_boot_timeline_from_qemu_start_to_first_output(make_guest, tmp_path) -> None:
    try:
        layer = make_layer(tmp_path)
    except AgentError as exc:
        pytest.fail(exc.message)
    result = run_flow(make_guest, layer)
    print("\n" + markdown_table(result.stages))
    (cache_dir() / "timeline.json").write_text(as_json(result))
    names = [stage.name for stage in result.stages]
    assert len(names) == len(set(names)) and len(names) >= 20
    for stage in result.stages:
        assert stage.ms >= -CLOCK_SLACK_MS, (stage, names)
    for before, after in zip(result.stages, result.stages[1:], strict=False):
        assert abs(after.start - before.end) * 1000 <= CLOCK_SLACK_MS, (before, after)
    assert 0 < result.handshake < result.first_output
    assert result.forked  # init's default agent command runs in a fork of init
    assert result.runtime == "crun"  # chosen on the guest's pure cgroup v2 (runc: test_full_flow)
