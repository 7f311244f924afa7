"""Seeding: waits for the kernel CRNG, mixes extra material, writes (never credits) the pool."""

from __future__ import annotations

from pathlib import Path

from guestagent.init.entropy import crng_ready, seed_entropy


def test_writes_a_fresh_mix_to_the_pool_each_time(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    first = seed_entropy(pool=str(pool))
    one = pool.read_bytes()
    seed_entropy(pool=str(pool))
    two = pool.read_bytes()
    assert len(one) == len(two) == 64 and one != two
    assert first.mixed_sources == 0
    assert first.ready_before == crng_ready() is True  # this host's CRNG is long initialised


def test_extra_sources_are_counted_and_empty_ones_skipped(tmp_path: Path) -> None:
    report = seed_entropy([lambda: b"derived-key", lambda: b""], pool=str(tmp_path / "pool"))
    assert report.mixed_sources == 1
