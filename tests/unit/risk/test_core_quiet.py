"""`RiskEngine.evaluate`'s quiet path (nothing in force, no input but time, prices and liveness changed since
the last full evaluation: only volatility, stale data and heartbeats are run) decides exactly as running
every breaker: the same events, breakers in force, trading state and book, step by step, over random
sequences of ticks, silences, heartbeats, fills, drift, market status, the kill switch, decisions and
midnights."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest

from services.risk.core import RiskEngine
from tests.unit.risk.conftest import PRICES, T0, feed, fill, make_engine, signal

SYMS = list(PRICES)


def _events(evs) -> list[tuple]:
    out = []
    for e in evs:
        d = e.model_dump()
        d.pop("id", None)
        out.append(tuple(sorted((k, str(v)) for k, v in d.items())))
    return out


def _state(e: RiskEngine) -> tuple:
    b = e.book
    return (
        sorted((k, a.reason, a.until, a.since) for k, a in e.board.active.items()),
        e.sm.state,
        e.sm.reason,
        e.sm.since,
        b.peak_equity,
        b.cash,
        dict(b.positions),
        b.day_start,
        b.daily_own,
        e.last_breaker_clear_at,
        list(e.attempts),
        list(e.approvals),
        list(e.seen_signals.items()),
    )


def _count(seen: dict[str, int], events) -> None:
    for ev in events:
        key = f"{type(ev).__name__}:{getattr(ev, 'breaker', None) or ev.state}"
        seen[key] = seen.get(key, 0) + 1


def _pair(**cfg) -> tuple[RiskEngine, RiskEngine]:
    fast, full = make_engine(**cfg), make_engine(**cfg)
    full.quiet_path = False
    return fast, full


def _run(seed: int, steps: int = 700, **cfg) -> dict[str, int]:
    rng = random.Random(seed)
    fast, full = _pair(**cfg)
    quiet = {"taken": 0}
    still = fast._quiet_still

    def counted(now):
        ok = still(now)
        quiet["taken"] += ok
        return ok

    fast._quiet_still = counted  # type: ignore[method-assign]
    now = T0
    prices = {s: float(p) for s, p in PRICES.items()}
    held: dict[str, Decimal] = {}
    seen: dict[str, int] = {}
    for _ in range(steps):
        op = rng.random() if rng.random() < 0.4 else 1.0  # calm spells between events
        now += timedelta(seconds=rng.choice([0.5, 1, 1, 2, 3, 7, 15, 60, 600, 3600]))
        execution_alive = rng.random() < 0.98
        for e in (fast, full):
            e.on_heartbeat("market_data", now)
            if execution_alive:
                e.on_heartbeat("execution", now)
        # ticks: most symbols, sometimes silent ones, sometimes a jump (volatility)
        for s in SYMS:
            if rng.random() < 0.985:
                prices[s] *= 1 + rng.gauss(0, 0.03 if rng.random() < 0.004 else 0.0005)
                px = Decimal(f"{prices[s]:.4f}")
                for e in (fast, full):
                    e.on_tick(s, px, now, now)
        if op < 0.08:
            s = rng.choice(sorted(held) if held and rng.random() < 0.8 else SYMS)
            px = Decimal(f"{prices[s]:.4f}")
            if s in held:
                f = fill(s, "SELL", str(held.pop(s)), str(px * Decimal("0.97")), ts=now)
            else:
                q = (Decimal("50") / px).quantize(Decimal("0.0001"))
                held[s] = held.get(s, Decimal(0)) + q
                f = fill(s, "BUY", str(q), str(px), ts=now)
            a, b = fast.on_fill(f, now), full.on_fill(f, now)
            assert _events(a[1]) == _events(b[1])
            _count(seen, b[1])
        elif op < 0.12:
            detected = rng.random() < 0.3
            sym = rng.choice([None, *SYMS]) if detected else rng.choice([None, *SYMS, *fast.drift])
            for e in (fast, full):
                e.on_drift(sym, detected, "psi" if detected else "")
        elif op < 0.14:
            s, stale = rng.choice(SYMS), rng.random() < 0.5
            for e in (fast, full):
                e.on_market_status(s, stale, "feed" if stale else "")
        elif op < 0.15:
            engaged = rng.random() < 0.5
            assert _events(fast.set_kill_switch(engaged, True, now)) == _events(
                full.set_kill_switch(engaged, True, now)
            )
        elif op < 0.17:
            a, b = fast.release(now), full.release(now)
            assert _events(a[0]) == _events(b[0]) and a[1] == b[1]
        elif op < 0.27:
            s = rng.choice(SYMS)
            sig = signal(s, rng.choice(["BUY", "SELL"]), Decimal(f"{prices[s]:.4f}"), ts=now)
            da, db = fast.decide(sig, now), full.decide(sig, now)
            va, vb = da.verdict, db.verdict
            assert (va.approved, va.reasons, va.quantity, va.price_limit) == (
                vb.approved,
                vb.reasons,
                vb.quantity,
                vb.price_limit,
            )
            assert _events(da.events) == _events(db.events)
            _count(seen, db.events)
            seen[va.reasons[0] if va.reasons else "approved"] = 1
        ev_a, ev_b = fast.evaluate(now), full.evaluate(now)
        assert _events(ev_a) == _events(ev_b)
        assert _state(fast) == _state(full)
        _count(seen, ev_b)
    seen["quiet"] = quiet["taken"]
    return seen


@pytest.mark.parametrize("seed", range(6))
def test_the_quiet_path_decides_as_every_breaker(seed):
    seen = _run(seed)
    assert seen["quiet"] > 20  # positive control: the quiet path was taken, often


def test_the_sequences_trip_and_clear_the_breakers_the_quiet_path_skips_or_runs():
    """Positive control of the comparison: over the seeds, the breakers the quiet path runs (volatility, stale
    data, heartbeats) and those it skips (budgets, cooldowns, drift) trip and clear, and orders are approved."""
    seen: dict[str, int] = {}
    for seed in range(6):
        for k, v in _run(seed).items():
            seen[k] = seen.get(k, 0) + v
    for breaker in ("volatility", "stale_data", "heartbeat_missing", "drift", "cooldown_after_loss"):
        assert seen.get(f"BreakerTripped:{breaker}", 0) > 0, breaker
        assert seen.get(f"BreakerCleared:{breaker}", 0) > 0, breaker
    assert seen.get("approved", 0) > 0


def test_the_quiet_path_is_not_taken_across_midnight_or_with_a_position():
    e = make_engine()
    e.evaluate(T0)  # clears "no market data yet" (the engine was made before its first ticks)
    assert e.evaluate(T0) == [] and e._quiet is not None
    assert e._quiet_still(T0 + timedelta(seconds=1))  # positive control
    midnight = T0.replace(hour=0) + timedelta(days=1)
    feed(e, midnight - timedelta(seconds=1))
    assert e._quiet_still(midnight - timedelta(seconds=1))
    feed(e, midnight)
    assert not e._quiet_still(midnight)  # the day's budget window rolls: a full evaluation
    assert not e._quiet_still(T0 - timedelta(seconds=1))  # time went back
    e.on_fill(fill("BTC/USDT", "BUY", "0.001", "60000", ts=T0), T0)
    assert e.book.positions and not e._quiet_still(T0 + timedelta(seconds=2))
