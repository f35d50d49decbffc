"""Heartbeat counters -> totals since the journal began (pure core)."""

from __future__ import annotations


def counter_deltas(previous: dict[str, int] | None, current: dict[str, int]) -> dict[str, int]:
    """What to add to the persisted totals for one heartbeat of one process instance.

    Counters in a heartbeat are totals since that process started; a new instance starts from zero.
    A counter that went down (should not happen within an instance) is treated as a restart.
    """
    prev = previous or {}
    out: dict[str, int] = {}
    for name, value in current.items():
        before = prev.get(name, 0)
        delta = value - before if value >= before else value
        if delta:
            out[name] = delta
    return out
