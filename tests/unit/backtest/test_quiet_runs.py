"""Runs of quiet bars taken at once change nothing: the drift monitor's `quiet_bars` / `observe_quiet`, risk's
`quiet_run` and the signal core's `quiet_bars` / `take_quiet` (what the backtest's `_quiet_steps` is made of)
against the same bars one by one, over random sequences (drift detected and cleared, volatility trips,
silences, heartbeats missing, midnights, fills, decisions)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from libs.common.settings.signal import DriftSettings
from services.risk.core import RiskEngine
from services.signal.drift import DriftMonitor, reference_bins
from tests.kit.signal import drift_state
from tests.unit.risk.conftest import PRICES, feed, fill, make_engine, signal

SYMS = list(PRICES)


# -- the drift monitor -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_drift_quiet_bars_stop_before_the_first_check_that_changes_and_leave_what_one_by_one_leaves(seed):
    rng = np.random.default_rng(seed)
    names = ("a", "b", "c")
    refs = {n: reference_bins(rng.normal(size=400)) for n in names}
    pred = reference_bins(rng.normal(size=400))
    cfg = DriftSettings(
        window=int(rng.integers(20, 45)),
        check_every=int(rng.integers(1, 6)),
        clear_after_checks=int(rng.integers(1, 4)),
        psi_detect=0.3,
        psi_clear=0.15,
    )
    rows = int(rng.integers(1, 4))
    full, fast = (DriftMonitor(names, refs, pred, cfg) for _ in range(2))
    key, shift, changes, taken = 0, 0.0, 0, 0
    for _block in range(40):
        m = int(rng.integers(1, 120))  # longer than the window at times
        bars = []
        for _ in range(m):
            if rng.random() < 0.05:
                shift = rng.choice([0.0, 0.0, 2.0, -1.5])  # drift comes and goes
            x = rng.normal(shift, 1, size=(rows, 3))
            if rng.random() < 0.1:
                x[0, int(rng.integers(3))] = np.nan  # dropped
            bars.append(full.bin_index(x, rng.normal(shift, 1, size=rows)))
        idx = np.stack(bars)
        keys: list[object] = list(range(key, key + m))
        before = drift_state(fast)
        plan = fast.plan_quiet(idx)
        n = plan.n
        assert drift_state(fast) == before  # it changes nothing
        at_n = drift_state(full) if n == 0 else None
        first_change = m
        for j in range(m):  # one by one: the first bar whose check changes is bar n
            res = full.observe_binned(idx[j], keys[j])
            if j == n - 1:
                at_n = drift_state(full)
            if res is not None and res.changed:
                first_change = j
                break
        assert n == first_change
        fast.take_quiet(plan, n, keys[:n])
        assert drift_state(fast) == at_n
        taken += n
        if n < m:  # the changing bar, then the rest of the block, one by one on both
            changes += 1
            fast.observe_binned(idx[n], keys[n])
            assert drift_state(fast) == drift_state(full)
            for j in range(n + 1, m):
                assert full.observe_binned(idx[j], keys[j]) == fast.observe_binned(idx[j], keys[j])
        key += m
        assert drift_state(fast) == drift_state(full)
    assert changes > 0 and taken > 0  # both happened


# -- the risk core ---------------------------------------------------------------------------------
def _risk_state(e: RiskEngine, last_prices: bool = True) -> tuple:
    """Everything risk decides from; `last_prices=False`: without the last prices, which a run leaves to the
    next bar's ticks (`quiet_run`)."""
    b = e.book
    return (
        sorted((k, a.reason, a.until, a.since) for k, a in e.board.active.items()),
        e.sm.state,
        e.sm.since,
        dict(b.positions),
        b.cash,
        b.day_start,
        b.week_start,
        b.daily_own,
        dict(b.last_price) if last_prices else None,
        dict(e.last_tick_at),
        dict(e.heartbeats),
        {s: vars(st) for s, st in e.vol._s.items()},
        list(e.seen_signals.items()),
        e.last_breaker_clear_at,
    )


def _events(evs) -> list[tuple]:
    return [tuple(sorted((k, str(v)) for k, v in e.model_dump().items() if k != "id")) for e in evs]


def _bar_ticks(rng: random.Random, start_ms: int, prices: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """One 1-minute bar of every symbol: replay's 4 ticks each, every symbol's tick k before tick k + 1."""
    times, px = [], []
    for k in range(4):
        for s in SYMS:
            if k:
                prices[s] *= 1 + rng.gauss(0, 0.05 if rng.random() < 0.003 else 0.0005)
            times.append(start_ms + 59_999 * k // 3)
            px.append(round(prices[s], 4))
    return np.array(times, dtype=np.int64), np.array(px)


def _one_by_one(e: RiskEngine, times: np.ndarray, prices: np.ndarray, alive: list[str]) -> list:
    """A bar as the backtest's folded step feeds it: passing ticks, the closes, heartbeats, evaluate."""
    n = len(SYMS)
    for c, (t, p) in enumerate(zip(times.tolist(), prices.tolist(), strict=True)):
        now = datetime.fromtimestamp(t / 1000, UTC)
        sym = SYMS[c % n]
        if c < len(times) - n:
            e.on_passing_tick(sym, p, now)
        else:
            e.on_tick(sym, Decimal(repr(p)), now, now)
    for svc in alive:
        e.on_heartbeat(svc, now)
    return e.evaluate(now)


@pytest.mark.parametrize("seed", range(5))
def test_risk_quiet_run_takes_exactly_the_bars_that_change_nothing(seed):
    rng = random.Random(seed)
    t0 = datetime(2026, 1, 7, 22, 0, tzinfo=UTC)  # midnights come (Europe/Berlin's and UTC's)
    cfg = {"vol_min_samples": 5, "vol_trip_ratio": 2.5, "vol_min_hold_s": 120, "stale_after_s": 90}
    fast, full = make_engine(t0, **cfg), make_engine(t0, **cfg)
    full.quiet_path = False  # every breaker at every close
    services = list(fast.cfg.heartbeat_services)
    prices = {s: float(p) for s, p in PRICES.items()}
    ms = int(t0.timestamp() * 1000)
    taken, broke, tripped, under_drift = 0, 0, 0, 0
    for e in (fast, full):
        _one_by_one(e, *_bar_ticks(random.Random(0), ms, dict(prices)), services)
    for _block in range(60):
        m = rng.randint(1, 80)
        alive = services if rng.random() < 0.8 else services[:1]  # a service falls silent
        bars = []
        for _ in range(m):
            ms += 60_000 * (1 if rng.random() < 0.97 else rng.choice([2, 3]))  # sometimes a silence
            bars.append(_bar_ticks(rng, ms, prices))
        times, px = np.stack([b[0] for b in bars]), np.stack([b[1] for b in bars])
        n = fast.quiet_run([SYMS[c % len(SYMS)] for c in range(times.shape[1])], times, px, alive)
        for j in range(m):
            evs = _one_by_one(full, times[j], px[j], alive)
            if j < n:
                assert evs == []  # the bars taken changed nothing
            else:
                assert _events(_one_by_one(fast, times[j], px[j], alive)) == _events(evs)
                tripped += bool(evs)
            if j >= n - 1:  # the run's end, then bar by bar
                assert _risk_state(fast, last_prices=j >= n) == _risk_state(full, last_prices=j >= n)
        taken += n
        broke += n < m
        under_drift += n if "drift" in full.board.active else 0
        if (
            n == m
        ):  # a run is followed by a bar one by one (the backtest's rule): its ticks set the last prices
            ms += 60_000
            times1, px1 = _bar_ticks(rng, ms, prices)
            assert _events(_one_by_one(fast, times1, px1, alive)) == _events(
                _one_by_one(full, times1, px1, alive)
            )
        # other inputs between runs: a fill (a position: no run until it is gone), a decision
        r = rng.random()
        now = datetime.fromtimestamp(ms / 1000, UTC)
        held_syms = sorted(s for s, q in full.book.positions.items() if q > 0)
        if held_syms or r < 0.1:  # a position is closed at the next pause, so runs come back
            s = held_syms[0] if held_syms else rng.choice(SYMS)
            held = full.book.positions.get(s)
            px_s = Decimal(f"{prices[s]:.4f}")
            f = (
                fill(s, "SELL", str(held), str(px_s), ts=now)
                if held is not None and held > 0
                else fill(s, "BUY", str((Decimal(50) / px_s).quantize(Decimal("0.0001"))), str(px_s), ts=now)
            )
            assert _events(fast.on_fill(f, now)[1]) == _events(full.on_fill(f, now)[1])
        elif r < 0.2:
            s = rng.choice(SYMS)
            sig = signal(s, rng.choice(["BUY", "SELL"]), Decimal(f"{prices[s]:.4f}"), ts=now)
            a, b = fast.decide(sig, now), full.decide(sig, now)
            assert (a.verdict.approved, a.verdict.reasons) == (b.verdict.approved, b.verdict.reasons)
        elif r < 0.4:  # drift comes or goes: in force it holds (runs go on), cleared it starts a cooldown
            detected = rng.random() < 0.6
            for e in (fast, full):
                e.on_drift(None, detected, "psi" if detected else "")
        assert _risk_state(fast) == _risk_state(full)
    assert taken > 0 and broke > 0 and tripped > 0, (taken, broke, tripped, _risk_state(full)[:4])
    assert under_drift > 0  # positive control: runs were taken with drift in force


def test_risk_quiet_run_takes_nothing_while_something_time_moves_is_in_force():
    """A drift in force holds (its result is the drift state's): runs are taken. Its clearing starts the
    cooldown after a breaker, which time ends: no run until a full evaluation has seen it expire."""
    e = make_engine(vol_min_samples=1000, cooldown_after_breaker_s=300)  # no volatility ratio here
    alive = list(e.cfg.heartbeat_services)
    e.evaluate(e.started_at)
    e.on_drift(None, True, "psi")
    e.evaluate(e.started_at + timedelta(seconds=1))
    assert e.sm.state == "REDUCING" and e.may_run_quiet()  # positive control: drift in force, runs taken
    ms = int((e.started_at + timedelta(seconds=2)).timestamp() * 1000)
    times, px = _bar_ticks(random.Random(1), ms, {s: float(p) for s, p in PRICES.items()})
    assert e.quiet_run([SYMS[c % 3] for c in range(times.size)], times[None], px[None], alive) == 1
    e.on_drift(None, False, "")
    now = e.started_at + timedelta(seconds=120)
    feed(e, now, {sym: Decimal(repr(p)) for sym, p in zip(SYMS, px[-3:].tolist(), strict=True)})
    e.evaluate(now)
    assert list(e.board.active) == ["cooldown_after_breaker"] and not e.may_run_quiet()
    ms = int((now + timedelta(seconds=1)).timestamp() * 1000)
    times, px = _bar_ticks(random.Random(2), ms, {s: float(p) for s, p in PRICES.items()})
    assert e.quiet_run([SYMS[c % 3] for c in range(times.size)], times[None], px[None], alive) == 0


# -- the signal core -------------------------------------------------------------------------------
def _signal_state(e) -> tuple:
    d = e.drift
    return (
        {s: (st.buf.tolist(), st.n, st.last_open, st.last_trade_at, st.gaps) for s, st in e.states.items()},
        None
        if d is None
        else (
            d._window_flat.tolist(),
            [(k, rows, flat.tolist()) for k, rows, flat in list(d._chunks)[-3:]],
            len(d._chunks),
            d.rows_seen,
            d.rows_in_window,
            d._since_check,
            d.detected,
            d._calm,
            d.last,
        ),
        {k: list(map(tuple, q)) for k, q in e.hits._pending.items()} if e.hits is not None else None,
    )


def test_signal_quiet_bars_take_exactly_the_bars_that_decide_hold_and_change_no_drift(btc_model, btc_1h):
    """The real BTCUSDT 1h bars through a model trained on them (BUY/SELL about one bar in seven, drift
    detected and cleared): from every bar, `quiet_bars` + `take_quiet` against `on_candle` + `on_bars`."""
    from backtest.engine import ReplayCandle, Series
    from services.signal.core import Precomputed, SignalDraft, SignalEngine

    settings, model = btc_model
    s = Series.from_ohlcv(btc_1h, "BTC/USDT")
    times = [datetime.fromtimestamp(t / 1000, UTC) for t in s.open_ms.tolist()]
    engines = []
    for _ in range(2):
        e = SignalEngine(settings.signal, model)
        e.signal_factory = SignalDraft  # type: ignore[assignment]  # reason: a draft stands in for a Signal
        e.precomputed = Precomputed(model, {"BTC/USDT": (times, s.ohlcv)}, e.cfg, e.drift)
        engines.append(e)
    fast, full = engines

    def one(e, i):
        o, h, lo, c, v = (Decimal(repr(x)) for x in s.ohlcv[i].tolist())
        now = times[i] + timedelta(hours=1)
        cd = ReplayCandle(f"c{i}", now, "BTC/USDT", "1h", times[i], now, o, h, lo, c, v)
        return e.on_bars([e.on_candle(cd)], now)  # type: ignore[arg-type]  # reason: a ReplayCandle has the fields

    i, taken, stops, n_bars = 0, 0, 0, min(s.open_ms.size, 4000)
    while i < n_bars - 1:
        L = min(n_bars - 1 - i, 200)
        first, last = times[i] + timedelta(hours=1), times[i + L - 1] + timedelta(hours=1)
        plan = fast.quiet_bars(["BTC/USDT"], s.open_ms[i : i + L], [s.ohlcv[i : i + L]], first, last)
        before = _signal_state(fast)
        n = plan.n if plan is not None else 0
        assert _signal_state(fast) == before  # asking changes nothing
        if plan is not None:
            fast.take_quiet(plan, n)
        for j in range(i, i + n):
            res = one(full, j)
            assert [x.side for x in res.signals] == ["HOLD"] and not (res.drift and res.drift.changed)
        assert _signal_state(fast) == _signal_state(full)
        taken += n
        i += n
        # the bar that stops a run (or any bar, when there is none), one by one on both
        a, b = one(fast, i), one(full, i)
        assert [(x.side, x.reason) for x in a.signals] == [(x.side, x.reason) for x in b.signals]
        assert (a.drift and (a.drift.changed, a.drift.detected)) == (
            b.drift and (b.drift.changed, b.drift.detected)
        )
        if plan is not None and n < L:  # a run stops only at a decision or a drift change
            assert b.signals[0].side != "HOLD" or (b.drift is not None and b.drift.changed)
            stops += 1
        i += 1
    assert taken > n_bars // 4 and stops > 10


def _feed_bar(
    e: RiskEngine, symbols: list[str], row_t: list[int], row_p: list[float], alive: list[str]
) -> list:
    """A bar tick by tick through `on_tick`, the heartbeats of `alive`, then `evaluate` at the last tick."""
    now = e.started_at
    for sym, t, p in zip(symbols, row_t, row_p, strict=True):
        now = datetime.fromtimestamp(t / 1000, UTC)
        e.on_tick(sym, Decimal(repr(p)), now, now)
    for svc in alive:
        e.on_heartbeat(svc, now)
    return e.evaluate(now)


@pytest.mark.parametrize(
    "case", ["a close tick lagging in one bar", "a symbol silent through the run", "a service silent"]
)
def test_risk_quiet_run_stops_at_the_first_close_where_data_or_a_heartbeat_is_too_old(case):
    """Stale data and heartbeats are tested at the close of each prefix's largest age: a run stops exactly at
    the first close where one refuses, wherever in the run that age is (not only at its end)."""
    t0 = datetime(2026, 1, 7, 10, 0, tzinfo=UTC)
    cfg = {"vol_min_samples": 1000, "stale_after_s": 90, "heartbeat_timeout_s": 200}
    fast, full = make_engine(t0, **cfg), make_engine(t0, **cfg)
    full.quiet_path = False
    services = list(fast.cfg.heartbeat_services)
    btc, eth, xrp = SYMS
    symbols = [btc, eth, eth, xrp] if case != "a symbol silent through the run" else [btc, eth, btc, eth]
    alive = services if case != "a service silent" else services[:1]
    base = int(t0.timestamp() * 1000) + 1000
    lagging = case == "a close tick lagging in one bar"
    rows_t, rows_p = [], []
    for j in range(12):
        start = base + (100_000 if lagging else 30_000) * j
        lag = 95_000 if lagging and j == 6 else 3  # BTC's close tick 95 s before the bar's last tick
        rows_t.append([start, start + 1, start + 2, start + 2 + lag])
        rows_p.append([float(PRICES[s]) for s in symbols])
    before = datetime.fromtimestamp((base - 1000) / 1000, UTC)
    for e in (fast, full):
        feed(e, before)  # every symbol and service heard once before the run
        e.evaluate(before)
    assert fast.may_run_quiet()  # positive control: the run starts
    n = fast.quiet_run(symbols, np.array(rows_t), np.array(rows_p), alive)
    first_refusal = next(
        (j for j in range(12) if _feed_bar(full, symbols, rows_t[j], rows_p[j], alive)), None
    )
    assert first_refusal is not None and 0 < first_refusal < 11, first_refusal  # the case has one, mid-run
    assert n == first_refusal
