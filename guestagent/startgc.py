"""Cyclic garbage collection held off while a long-lived process starts.

Starting allocates almost only objects that live as long as the process: modules, classes,
the policy. CPython's collector runs again and again as they pile up, walks them all and
frees nothing (about a seventh of the agent's start to ready on 3.11). The entry points
hold collection (`hold`); the agent resumes it once it is ready, and init before it starts
the agent (`resume`). Resuming first moves everything alive into the permanent generation
(`gc.freeze`, as CPython's documentation advises before forking), so later collections do
not walk the start-up objects again and a forked child does not copy their pages for the
collector's sake. A process that never held collection is left as it is (tests that run
an agent in process).
"""

from __future__ import annotations

import gc

__all__ = ["hold", "resume"]

_held = False


def hold() -> None:
    """Stop automatic collection until `resume`, if it is running now."""
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


def resume() -> None:
    """Freeze what is alive and collect automatically again, if `hold` stopped it."""
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()
