"""The signal engine (pure core, time passed in): running candles, per-symbol buffers, batched inference,
gates, drift and hit-rate bookkeeping, and the measurement mode.

Per tick only O(1) work happens (the running candle, the quoted spread, the measurement counter). Features
and the model run when candles close, batched across the symbols that close together.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np

from libs.common.contracts import Signal
from libs.common.contracts.base import SignalSide
from libs.common.contracts.market import CandleView, TickView
from libs.common.settings import SignalSettings
from services.signal.decision import BUY, HOLD, SELL, SIDE_NAMES, Decisions, decide
from services.signal.drift import DriftMonitor, DriftResult, HitRateTracker, QuietDrift
from services.signal.features import last_row_features, timeframe_seconds
from services.signal.registry import LoadedModel
from services.signal.training import prediction_score

MEASUREMENT_VERSION = "measurement-every-nth-tick"
NO_MODEL_VERSION = "no-model"


@dataclass
class Bar:
    """A closed candle and what triggered its close (for latency tracing)."""

    symbol: str
    open_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    close_price: Decimal
    trigger_id: str | None
    trigger_ts: datetime | None


@dataclass(frozen=True, slots=True)
class SignalDraft:
    """A decision with the fields of a `Signal`, unvalidated and without an id: what the backtest takes from
    the engine (`SignalEngine.signal_factory`), which publishes nothing; `to_signal` is the validated contract."""

    ts: datetime
    symbol: str
    side: SignalSide
    probability: float
    expected_edge_bps: float
    model_version: str
    price: Decimal
    reason: str
    tick_id: str | None
    tick_ts: datetime | None

    def to_signal(self) -> Signal:
        return Signal(
            ts=self.ts,
            symbol=self.symbol,
            side=self.side,
            probability=self.probability,
            expected_edge_bps=self.expected_edge_bps,
            model_version=self.model_version,
            price=self.price,
            reason=self.reason,
            tick_id=self.tick_id,
            tick_ts=self.tick_ts,
        )


class CandleBuilder:
    """The running candle of one symbol, built from ticks in O(1); a bar closes on the first later tick."""

    __slots__ = ("tf_s", "start", "o", "h", "l", "c", "v", "c_dec")
    # the running bar, set by its first tick (read only once `start` is set)
    o: float
    h: float
    l: float  # noqa: E741 (the L of OHLC, as the slot is named)
    c: float
    v: float
    c_dec: Decimal

    def __init__(self, tf_s: int):
        self.tf_s = tf_s
        self.start: float | None = None

    def on_tick(self, tick: TickView) -> Bar | None:
        t = tick.ts.timestamp()
        bucket = math.floor(t / self.tf_s) * self.tf_s
        price, vol = float(tick.last), float(tick.volume)
        closed = None
        if self.start is not None and bucket < self.start:
            return None  # late tick for a bar already closed
        if self.start is not None and bucket > self.start:
            closed = Bar(
                tick.symbol,
                datetime.fromtimestamp(self.start, UTC),
                self.o,
                self.h,
                self.l,
                self.c,
                self.v,
                self.c_dec,
                tick.id,
                tick.ts,
            )
            self.start = None
        if self.start is None:
            self.start, self.o, self.h, self.l, self.v = bucket, price, price, price, 0.0
        self.h = max(self.h, price)
        self.l = min(self.l, price)
        self.c, self.c_dec = price, tick.last
        self.v += vol
        return closed


@dataclass
class SymbolState:
    cap: int
    builder: CandleBuilder
    buf: np.ndarray = field(init=False)
    n: int = 0
    last_open: datetime | None = None
    from_bus: bool = False
    stale: bool = False
    quote: tuple[Decimal, Decimal] | None = None

    @property
    def spread_bps(self) -> float | None:
        if self.quote is None:
            return None
        bid, ask = self.quote
        mid = (bid + ask) / 2
        return float((ask - bid) / mid) * 1e4 if mid > 0 else None

    ticks: int = 0
    gaps: int = 0
    last_measure_side: SignalSide = "SELL"
    last_trade_at: datetime | None = None

    def __post_init__(self) -> None:
        self.buf = np.zeros((self.cap, 5))

    def append(self, bar: Bar, tf_s: float | None = None) -> bool:
        if self.last_open is not None and bar.open_time <= self.last_open:
            return False  # duplicate or out of order
        if (
            tf_s is not None
            and self.last_open is not None
            and (bar.open_time - self.last_open).total_seconds() > tf_s * 1.5
        ):
            # a gap: features over the buffer would span missing time, so start over (never glue)
            self.n = 0
            self.gaps += 1
        row = (bar.open, bar.high, bar.low, bar.close, bar.volume)
        if self.n < self.cap:
            self.buf[self.n] = row
            self.n += 1
        else:
            self.buf[:-1] = self.buf[1:]
            self.buf[-1] = row
        self.last_open = bar.open_time
        return True


@dataclass
class BatchResult:
    signals: list[Signal]
    drift: DriftResult | None
    outcomes: list[bool]
    inference_s: float = (
        0.0  # features + predict + decide, summed over the rounds (for metrics and benchmarks)
    )
    predicted: int = 0


def effective_rule(cfg: SignalSettings, model: LoadedModel) -> tuple[float, float | None]:
    """(probability threshold, minimum edge bps) to serve `model` with: the model's own rule, which the
    configuration may only tighten (the stricter of the two wins)."""
    threshold = (
        cfg.probability_threshold
        if model.probability_threshold is None
        else max(cfg.probability_threshold, model.probability_threshold)
    )
    edges = [e for e in (cfg.min_expected_edge_bps, model.min_expected_edge_bps) if e is not None]
    return threshold, (max(edges) if edges else None)


@dataclass(frozen=True)
class QuietBars:
    """A run of bars `SignalEngine.quiet_bars` found quiet: the first `n` of them. `drift`: the drift
    monitor's plan of them (`DriftMonitor.plan_quiet`: what its due checks found, so `take_quiet` runs none
    again), None without a monitor."""

    symbols: list[str]
    open_ms: np.ndarray
    ohlcv: list[np.ndarray]
    n: int
    drift: QuietDrift | None = None


class Precomputed:
    """Features, probabilities, decisions and drift bins of every bar of a known history, computed in one
    batch by the same kernels (`last_row_features` over each bar's last `warmup_bars` bars, exactly the live
    buffer; the same model; `decide` under the engine's rule; the drift monitor's `bin_index`). The backtest
    installs it so that a year of bars costs one call of each instead of one per bar; a bar it does not know
    (another history, a gap in the buffer) or another rule falls back to the live computation."""

    CHUNK = 65_536  # rows binned at once (bounds the temporary (rows, columns, edges) comparison)
    # values of the (rows, warm-up bars, 5) windows whose features are computed at once: each row's features
    # read only its own window, so chunks give the same rows, and a year of 1-minute bars (or context
    # features' warm-up of thousands of bars) needs no copy of every window at once
    WINDOW_VALUES = 4_000_000

    def __init__(
        self,
        model: LoadedModel,
        histories: dict[str, tuple[list[datetime], np.ndarray]],
        cfg: SignalSettings | None = None,
        drift: DriftMonitor | None = None,
    ):
        self.version = model.version
        self.rule = effective_rule(cfg, model) if cfg is not None else None
        self._model = model
        self._rows: dict[str, tuple[dict[datetime, int], np.ndarray, np.ndarray]] = {}
        self._complete: dict[str, np.ndarray] = {}
        self._decisions: dict[tuple[str, bool], Decisions] = {}
        self._bins: dict[str, np.ndarray] = {}
        self._open_ms: dict[str, np.ndarray] = {}  # `open_ms`, built on first use
        self._drift = drift
        warm = model.spec.warmup_bars
        for sym, (times, ohlcv) in histories.items():
            n = len(times)
            x = np.full((n, len(model.spec.names)), np.nan)
            if n >= warm:
                windows = np.lib.stride_tricks.sliding_window_view(ohlcv, (warm, 5)).reshape(
                    n - warm + 1, warm, 5
                )
                step = max(1, self.WINDOW_VALUES // (warm * 5))
                for i in range(0, n - warm + 1, step):
                    x[warm - 1 + i : warm - 1 + i + step] = last_row_features(
                        np.ascontiguousarray(windows[i : i + step]), model.spec
                    )
            complete = np.isfinite(x).all(axis=1)
            proba = np.zeros((n, 3))
            if complete.any():
                proba[complete] = model.predict_proba(x[complete])
            self._rows[sym] = ({t: i for i, t in enumerate(times)}, x, proba)
            self._complete[sym] = complete
            if drift is not None:
                score = prediction_score(proba)
                self._bins[sym] = (
                    np.concatenate(
                        [
                            drift.bin_index(x[i : i + self.CHUNK], score[i : i + self.CHUNK])
                            for i in range(0, n, self.CHUNK)
                        ]
                    )
                    if n
                    else np.zeros((0, len(model.spec.names) + 1), dtype=np.int64)
                )

    def open_ms(self, symbol: str) -> np.ndarray | None:
        """The open times (epoch ms) of `symbol`'s known history, row by row (None: not known)."""
        out = self._open_ms.get(symbol)
        known = self._rows.get(symbol)
        if out is None and known is not None:
            out = self._open_ms[symbol] = np.array(
                [round(t.timestamp() * 1000) for t in known[0]], dtype=np.int64
            )
        return out

    def quiet_rows(self, symbol: str, first: int, n: int, allow_buy: bool) -> np.ndarray:
        """Which of rows first..first+n of `symbol` decide HOLD on complete features (`decisions`' side)."""
        self.decisions([(symbol, first)], allow_buy)  # the whole history's decisions, computed once
        side = self._decisions[(symbol, allow_buy)].side[first : first + n]
        quiet: np.ndarray = (side == HOLD) & self._complete[symbol][first : first + n]
        return quiet

    def lookup(self, bars: list[Bar]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        rows = self.rows(bars)
        if rows is None:
            return None
        return self.arrays(rows)

    def rows(self, bars: list[Bar]) -> list[tuple[str, int]] | None:
        """(symbol, row) of each bar, or None if one is not in the known histories."""
        out = []
        for b in bars:
            known = self._rows.get(b.symbol)
            i = known[0].get(b.open_time) if known is not None else None
            if i is None:
                return None
            out.append((b.symbol, i))
        return out

    def arrays(self, rows: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, probabilities, complete) of `rows`, as the live path computes them."""
        if len(rows) == 1:
            sym, i = rows[0]
            _, x, proba = self._rows[sym]
            return x[i : i + 1], proba[i : i + 1], self._complete[sym][i : i + 1]
        x = np.stack([self._rows[s][1][i] for s, i in rows])
        proba = np.stack([self._rows[s][2][i] for s, i in rows])
        return x, proba, np.array([self._complete[s][i] for s, i in rows])

    def decisions(self, rows: list[tuple[str, int]], allow_buy: bool) -> Decisions:
        """`decide` of `rows` under `rule` (computed over each whole history once, on first use)."""
        assert self.rule is not None
        out = []
        for sym, i in rows:
            d = self._decisions.get((sym, allow_buy))
            if d is None:
                m = self._model
                d = self._decisions[(sym, allow_buy)] = decide(
                    self._rows[sym][2],
                    m.class_mean_returns,
                    m.fee_rate,
                    self.rule[0],
                    self.rule[1],
                    allow_buy=allow_buy,
                )
            out.append((d, i))
        if len(out) == 1:
            d, i = out[0]
            return Decisions(
                d.side[i : i + 1], d.probability[i : i + 1], d.edge_bps[i : i + 1], [d.reason[i]]
            )
        return Decisions(
            np.array([d.side[i] for d, i in out]),
            np.array([d.probability[i] for d, i in out]),
            np.array([d.edge_bps[i] for d, i in out]),
            [d.reason[i] for d, i in out],
        )

    def bins(self, rows: list[tuple[str, int]]) -> np.ndarray | None:
        """The drift monitor's `bin_index` of `rows` (None without a monitor)."""
        if self._drift is None:
            return None
        if len(rows) == 1:
            sym, i = rows[0]
            return self._bins[sym][i : i + 1]
        return np.stack([self._bins[s][i] for s, i in rows])


class SignalEngine:
    def __init__(self, cfg: SignalSettings, model: LoadedModel | None = None, bars_from_ticks: bool = True):
        """`cfg` is the frozen `signal` settings section itself (what is logged is what decides).
        `bars_from_ticks`: build the model's bars from ticks until market_data sends candles? Only where ticks
        carry the real traded volume (the synthetic feed). Live ticker snapshots carry a rolling 24h volume:
        there the model's bars are the exchange's klines, published by market_data, or nothing."""
        self.cfg = cfg
        self.bars_from_ticks = bars_from_ticks
        self.model: LoadedModel | None = None
        self.no_model_reason = "no trusted model loaded"
        self.states: dict[str, SymbolState] = {}
        self.ticks_seen = 0  # measurement mode's counter, over all symbols
        self.drift: DriftMonitor | None = None
        self.hits: HitRateTracker | None = None
        self.precomputed: Precomputed | None = None
        # What a decision is handed out as: the bus contract, validated (the service publishes it). The
        # backtest, which publishes nothing, takes a plain record of the same fields (`SignalDraft`) and
        # validates only what it trades.
        self.signal_factory: Callable[..., Signal] = Signal
        self._tf_s: tuple[str, int] | None = None
        self.set_model(model)

    # -- model ---------------------------------------------------------------------------------
    @property
    def timeframe(self) -> str:
        return self.model.timeframe if self.model else self.cfg.train.synthetic_timeframe

    @property
    def warmup(self) -> int:
        return self.model.spec.warmup_bars if self.model else 1

    def set_model(self, model: LoadedModel | None, reason: str = "") -> None:
        """Use `model`; candle buffers survive when its timeframe and feature windows are unchanged. With
        None every decision is HOLD, with `reason` (why no model is served) as the signals' reason."""
        self.no_model_reason = reason or "no trusted model loaded"
        old = self.model
        same_inputs = (
            old is not None
            and model is not None
            and old.timeframe == model.timeframe
            and old.spec == model.spec
        )
        self.model = model
        if not same_inputs:
            self.states = {}
        if model is not None:
            ref = model.metadata["reference"]
            self.drift = DriftMonitor(model.spec.names, ref["features"], ref["prediction"], self.cfg.drift)
            self.hits = HitRateTracker(model.horizon, model.fee_rate)
        else:
            self.drift, self.hits = None, None

    def state(self, symbol: str) -> SymbolState:
        st = self.states.get(symbol)
        if st is None:
            st = self.states[symbol] = SymbolState(
                max(self.warmup, 1), CandleBuilder(timeframe_seconds(self.timeframe))
            )
        return st

    # -- inputs --------------------------------------------------------------------------------
    def on_tick(self, tick: TickView, now: datetime) -> tuple[Bar | None, Signal | None]:
        """O(1): the running candle, the spread, measurement mode. Returns (closed bar, measurement signal)."""
        st = self.state(tick.symbol)
        st.quote = (tick.bid, tick.ask)  # the spread is computed only when a decision needs it
        measure = None
        if self.cfg.every_nth_tick > 0:
            # counted over every symbol's ticks, so decisions spread evenly instead of arriving in bursts
            # when the symbols tick together (each symbol still alternates BUY/SELL)
            st.ticks += 1
            self.ticks_seen += 1
            if self.ticks_seen % self.cfg.every_nth_tick == 0:
                st.last_measure_side = "BUY" if st.last_measure_side == "SELL" else "SELL"
                measure = Signal(
                    ts=now,
                    symbol=tick.symbol,
                    side=st.last_measure_side,
                    probability=1.0,
                    expected_edge_bps=0.0,
                    model_version=MEASUREMENT_VERSION,
                    price=tick.last,
                    reason=f"measurement mode: every {self.cfg.every_nth_tick}th tick",
                    tick_id=tick.id,
                    tick_ts=tick.ts,
                )
            return None, measure  # measurement mode bypasses the model entirely
        bar = None if st.from_bus or not self.bars_from_ticks else st.builder.on_tick(tick)
        return bar, measure

    def on_candle(self, candle: CandleView) -> Bar | None:
        """A closed candle from market_data for the model's timeframe (then ticks no longer build bars)."""
        if candle.timeframe != self.timeframe or not candle.closed or self.cfg.every_nth_tick > 0:
            return None
        st = self.state(candle.symbol)
        st.from_bus = True
        return Bar(
            candle.symbol,
            candle.open_time,
            float(candle.open),
            float(candle.high),
            float(candle.low),
            float(candle.close),
            float(candle.volume),
            candle.close,
            candle.id,
            candle.ts,
        )

    def set_stale(self, symbol: str, stale: bool) -> None:
        self.state(symbol).stale = stale

    # -- decisions -----------------------------------------------------------------------------
    def on_bars(self, bars: list[Bar], now: datetime) -> BatchResult:
        """Append closed bars and decide for each, one model call per round of distinct symbols."""
        out = BatchResult([], None, [])
        pending = list(bars)
        while pending:
            seen: set[str] = set()
            this_round: list[Bar] = []
            later: list[Bar] = []
            for b in pending:
                (later if b.symbol in seen else this_round).append(b)
                seen.add(b.symbol)
            self._round(this_round, now, out)
            pending = later
        return out

    def _round(self, bars: list[Bar], now: datetime, out: BatchResult) -> None:
        model = self.model
        fresh: list[Bar] = []
        tf = self.timeframe
        if self._tf_s is None or self._tf_s[0] != tf:
            self._tf_s = (tf, timeframe_seconds(tf))
        tf_s = self._tf_s[1]
        for b in bars:
            st = self.state(b.symbol)
            if st.append(b, tf_s):
                fresh.append(b)
                if self.hits is not None:
                    for hit in self.hits.on_bar(b.symbol, b.close):
                        out.outcomes.append(hit)
                        if self.drift is not None:
                            self.drift.record_outcome(hit)
        if not fresh:
            return
        if model is None:
            out.signals += [self._hold(b, now, self.no_model_reason, NO_MODEL_VERSION) for b in fresh]
            return
        warm = model.spec.warmup_bars
        ready = []
        for b in fresh:
            st = self.states[b.symbol]
            if not model.covers(b.symbol):
                out.signals.append(
                    self._hold(
                        b,
                        now,
                        f"model {model.version} was not evaluated on {b.symbol} "
                        f"(only {', '.join(sorted(model.symbols or ()))})",
                        model.version,
                    )
                )
            elif st.n < warm:
                why = " after a gap in candles" if st.gaps else ""
                out.signals.append(self._hold(b, now, f"warming up{why} ({st.n}/{warm} bars)", model.version))
            else:
                ready.append(b)
        if not ready:
            return
        t0 = time.perf_counter()
        pre = self.precomputed
        rows = pre.rows(ready) if pre is not None and pre.version == model.version else None
        x, proba, complete = (
            pre.arrays(rows) if pre is not None and rows is not None else self._infer(ready, model)
        )
        out.predicted += int(complete.sum())
        # expiry by the age of the data it learned from (not by when it was trained)
        model_fresh = model.data_age_h(now) <= self.cfg.max_model_age_h
        threshold, min_edge = effective_rule(self.cfg, model)
        if pre is not None and rows is not None and pre.rule == (threshold, min_edge):
            dec = pre.decisions(rows, model_fresh)
        else:
            dec = decide(
                proba, model.class_mean_returns, model.fee_rate, threshold, min_edge, allow_buy=model_fresh
            )
        out.inference_s += time.perf_counter() - t0
        if complete.any() and self.drift is not None:
            key = max(b.open_time for b in ready)
            bins = (
                pre.bins(rows) if pre is not None and rows is not None and pre._drift is self.drift else None
            )
            if bins is not None:
                res = self.drift.observe_binned(bins[complete], key)
            else:
                res = self.drift.observe(x[complete], prediction_score(proba[complete]), key)
            out.drift = res or out.drift
        for i, b in enumerate(ready):
            st = self.states[b.symbol]
            side, reason = int(dec.side[i]), dec.reason[i]
            if not complete[i]:
                side, reason = HOLD, "features incomplete"
            elif st.stale:
                side, reason = HOLD, "market data stale"
            elif side == BUY and not model_fresh:
                side, reason = (
                    HOLD,
                    (
                        f"model data {model.data_age_h(now):.0f} h old (limit "
                        f"{self.cfg.max_model_age_h:g} h): no BUY"
                    ),
                )
            elif side != HOLD and (spread := st.spread_bps) is not None and spread > self.cfg.max_spread_bps:
                side, reason = HOLD, f"spread {spread:.1f} bps above {self.cfg.max_spread_bps:g}"
            elif (
                side != HOLD
                and st.last_trade_at is not None
                and (now - st.last_trade_at).total_seconds() < self.cfg.min_interval_s
            ):
                side, reason = HOLD, f"within min_interval_s {self.cfg.min_interval_s:g}"
            if side != HOLD:
                st.last_trade_at = now
                if self.hits is not None:
                    self.hits.record(b.symbol, SIDE_NAMES[side], b.close)
            out.signals.append(
                self.signal_factory(
                    ts=now,
                    symbol=b.symbol,
                    side=SIDE_NAMES[side],
                    probability=min(1.0, max(0.0, float(dec.probability[i]))),
                    expected_edge_bps=float(dec.edge_bps[i]),
                    model_version=model.version,
                    price=b.close_price,
                    reason=reason,
                    tick_id=b.trigger_id,
                    tick_ts=b.trigger_ts,
                )
            )

    def quiet_bars(
        self,
        symbols: list[str],
        open_ms: np.ndarray,
        ohlcv: list[np.ndarray],
        first: datetime,
        last: datetime,
    ) -> QuietBars | None:
        """How many of these bars `on_candle` + `on_bars` would take deciding HOLD and changing nothing but the
        candle buffers and the drift window (no check changing the drift state, no hit to resolve, no gate
        to pass): a run the caller may hand over at once (`take_quiet`). The bars: every one of `symbols`
        closing at each of `open_ms` (epoch ms, each a bar time, the batches of one round), their OHLCV rows
        (`ohlcv`, per symbol (bars, 5), what their candles carry), decided between `first` and `last` (the
        first and last closes). Known only from the precomputed rows; None: take them one by one. Changes
        nothing."""
        model, pre = self.model, self.precomputed
        m = len(open_ms)
        if (
            model is None
            or pre is None
            or pre.version != model.version
            or self.cfg.every_nth_tick > 0
            or m == 0
        ):
            return None
        if pre.rule != effective_rule(self.cfg, model) or (
            self.drift is not None and pre._drift is not self.drift
        ):
            return None
        # model age grows with time: fresh (BUY allowed) at both ends means fresh throughout
        fresh = model.data_age_h(first) <= self.cfg.max_model_age_h
        if fresh != (model.data_age_h(last) <= self.cfg.max_model_age_h):
            return None
        tf_ms = int(timeframe_seconds(self.timeframe)) * 1000
        starts, quiet = [], np.ones(m, dtype=bool)
        for sym in symbols:
            st = self.states.get(sym)
            hist = pre.open_ms(sym)
            if (
                st is None
                or not st.from_bus
                or st.n < model.spec.warmup_bars
                or st.last_open is None
                or not model.covers(sym)
                or (self.hits is not None and self.hits.pending(sym))
                or hist is None
            ):
                return None
            # each bar one timeframe after the one before (after the buffer's last): neither a repeat nor a
            # gap for `SymbolState.append`, so each is appended to a full buffer
            if round(st.last_open.timestamp() * 1000) + tf_ms != int(open_ms[0]) or np.any(
                np.diff(open_ms) != tf_ms
            ):
                return None
            i = int(np.searchsorted(hist, open_ms[0]))
            if i + m > hist.size or not np.array_equal(hist[i : i + m], open_ms):
                return None
            starts.append(i)
            quiet &= pre.quiet_rows(sym, i, m, fresh)
        n = m if quiet.all() else int(np.argmin(quiet))
        drift = None
        if n and self.drift is not None:
            bins = np.stack(
                [pre._bins[sym][i : i + n] for sym, i in zip(symbols, starts, strict=True)], axis=1
            )
            drift = self.drift.plan_quiet(bins)
            n = drift.n
        return QuietBars(symbols, open_ms[:n], [rows[:n] for rows in ohlcv], n, drift)

    def take_quiet(self, run: QuietBars, n: int) -> None:
        """What the first `n` bars of `run` (from `quiet_bars`) leave: each symbol's candle buffer and last bar
        time, the drift window and the state its due checks leave (found when the run was planned: none
        runs again). Each bar is a new bar time for the monitor: one timeframe after the one before, the
        first after every symbol's last bar (`quiet_bars` checks it), so none joins the bar before."""
        if n <= 0:
            return
        last_open = datetime.fromtimestamp(int(run.open_ms[n - 1]) / 1000, UTC)
        for sym, rows in zip(run.symbols, run.ohlcv, strict=True):
            st = self.states[sym]
            st.buf[:] = np.concatenate([st.buf[: st.n], rows[:n]])[-st.cap :]
            st.last_open = last_open
        if self.drift is not None and run.drift is not None:
            keys: list[object] = [datetime.fromtimestamp(t / 1000, UTC) for t in run.open_ms[:n].tolist()]
            self.drift.take_quiet(run.drift, n, keys)

    def _infer(self, ready: list[Bar], model: LoadedModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, probabilities, complete rows) of the newest bar of each symbol, from the buffers."""
        x = self.features_for([b.symbol for b in ready])
        complete = np.isfinite(x).all(axis=1)
        proba = np.zeros((len(ready), 3))
        if complete.any():
            proba[complete] = model.predict_proba(x[complete])
        return x, proba, complete

    def features_for(self, symbols: list[str]) -> np.ndarray:
        """Features of the newest bar of each symbol, from its full buffer (exactly `warmup_bars` bars, the
        longest history any feature reads), vectorised across symbols. Tests hold these equal to the
        polars features training computes over the whole history."""
        assert self.model is not None
        spec = self.model.spec
        if any(self.states[s].n != spec.warmup_bars for s in symbols):
            raise ValueError("features_for needs full buffers")
        return last_row_features(np.stack([self.states[s].buf for s in symbols]), spec)

    def _hold(self, b: Bar, now: datetime, reason: str, version: str) -> Signal:
        return self.signal_factory(
            ts=now,
            symbol=b.symbol,
            side="HOLD",
            probability=0.0,
            expected_edge_bps=0.0,
            model_version=version,
            price=b.close_price,
            reason=reason,
            tick_id=b.trigger_id,
            tick_ts=b.trigger_ts,
        )


__all__ = [
    "Bar",
    "CandleBuilder",
    "Precomputed",
    "SignalDraft",
    "SignalEngine",
    "SELL",
    "BUY",
    "HOLD",
]
