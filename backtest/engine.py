"""The backtest engine (pure: arrays and settings in, a record of what happened out; no files, no clock).

It runs the services' own cores, in one process, on a `ManualClock` moved to each event's data time:
- the signal core (`services.signal.core.SignalEngine`: candles, features, model, decision and its gates),
- the risk core (`services.risk.core.RiskEngine`: every breaker, budgets, sizing, pre-trade checks,
  throttles, cooldowns, trading states),
- the execution gate and the paper broker (`services.execution.core.may_send`, `services.execution.paper`:
  fees, slippage, partial fills, balances, resting limits and their expiry).

Events come in the order the suite sees them in replay mode: each bar becomes market_data's four replay
ticks (`services.market_data.replay.bar_path`: open, the nearer extreme, the other, close), every symbol's
tick k before any symbol's tick k+1; then each symbol's closed candle; the candles that close together are
decided as one batch (the signal service's batch window), each BUY/SELL goes to risk, each approval to the
execution gate and the paper book; fills go back to risk. The services' processes, the bus and Postgres
are left out: they move these values, they do not decide anything (see docs/backtest.md for what that
leaves out: latency, the conflation of ticks between services, restarts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, cast

import numpy as np

from libs.common.clock import ManualClock
from libs.common.contracts import BreakerTripped, Fill, Signal, TradingStateChanged
from libs.common.markets import Markets
from libs.common.ohlcv import Ohlcv
from services.execution.core import client_order_id, may_send
from services.execution.ledger import Ledger, split_symbol
from services.execution.paper import (
    FeeSchedule,
    PaperExchange,
    PaperResult,
    SlippageModel,
    exchange_rounder,
    fill_row,
    new_paper_order,
    usable_tick,
)
from services.market_data.candles import Bar as MdBar
from services.market_data.replay import bar_path, bar_path_last, path_arrays
from services.risk.core import RiskEngine
from services.signal.core import Precomputed, SignalDraft, SignalEngine
from services.signal.decision import BUY, HOLD, SELL
from services.signal.registry import LoadedModel

Side = Literal["BUY", "SELL"]
SIDE_CODE = {"BUY": BUY, "SELL": SELL, "HOLD": HOLD}
N_TICKS = 4  # market_data's replay ticks per bar
# the most steps one run of quiet bars takes (bounds the arrays a run prepares; a step by step follows)
QUIET_RUN_MAX = 2048
# a recorded fill's columns (trades.csv), from the paper broker's journal row
FILL_COLUMNS = (
    "ts",
    "client_order_id",
    "trade_id",
    "symbol",
    "side",
    "quantity",
    "price",
    "fee",
    "fee_asset",
    "is_maker",
    "realized_pnl_usdt",
)


@dataclass
class Series:
    """One symbol's bars: open times (epoch ms), float OHLCV (n, 5) and the file's price decimals."""

    symbol: str
    timeframe: str
    tf_ms: int
    open_ms: np.ndarray
    ohlcv: np.ndarray
    price_places: int

    @classmethod
    def from_ohlcv(cls, data: Ohlcv, symbol: str) -> Series:
        arr = data.frame.select("open", "high", "low", "close", "volume").to_numpy().astype(np.float64)
        return cls(
            symbol,
            data.timeframe,
            data.tf_ms,
            data.frame["open_time"].to_numpy().astype(np.int64),
            arr,
            price_places(arr[:, :4]),
        )


def price_places(prices: np.ndarray, max_places: int = 12) -> int:
    """The decimals the prices are written with (what market_data's replay reads from the file's text)."""
    for p in range(max_places + 1):
        scaled = prices * 10.0**p
        if np.all(np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, np.abs(scaled)) * 1e-3):
            return p
    return max_places


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


@dataclass(frozen=True, slots=True)
class ReplayTick:
    """A replay tick with the fields of the `Tick` contract the cores read (what market_data would publish
    for this point of the bar's path), without the bus contract's validation: the backtest moves values
    between cores in one process, it publishes nothing. Its values are the path's own (`bar_path`)."""

    id: str
    ts: datetime
    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    volume: Decimal
    source_ts: datetime
    source: str = "replay"
    schema_version: int = 1


@dataclass(frozen=True, slots=True)
class ReplayCandle:
    """A closed replay candle with the fields of the `Candle` contract (see `ReplayTick`)."""

    id: str
    ts: datetime
    symbol: str
    timeframe: str
    open_time: datetime
    close_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    closed: bool = True
    source: str = "replay"
    schema_version: int = 1


@dataclass
class Record:
    """Everything that happened, as values (the report is computed from this)."""

    times: list[int] = field(default_factory=list)  # bar open time of each step (ms)
    equity: list[float] = field(default_factory=list)  # marked at each step's closes, quote (USDT)
    exposure: list[float] = field(default_factory=list)  # position value at each step, USDT
    fills: list[dict] = field(default_factory=list)
    signals: Counter = field(default_factory=Counter)  # BUY / SELL / HOLD
    approved: int = 0
    refusals: Counter = field(default_factory=Counter)  # every reason of every refused verdict
    refusals_first: Counter = field(default_factory=Counter)  # the first reason only (one per verdict)
    not_sent: Counter = field(default_factory=Counter)  # execution's gate
    rejected: Counter = field(default_factory=Counter)  # the paper exchange's rejections
    orders: list[dict] = field(default_factory=list)
    breaker_events: list[dict] = field(default_factory=list)
    state_changes: list[dict] = field(default_factory=list)
    sides: dict[str, np.ndarray] = field(default_factory=dict)  # per symbol, per bar: the signal's side
    start_equity: float = 0.0
    bars: int = 0


class Backtest:
    """One run over `series` with `settings` (a BotSettings) and `model`.

    `scripted`: per symbol, a side per bar (BUY/SELL/HOLD codes) to trade instead of the model's signals
    (the null baseline: the model's own sides circularly shifted); risk and execution are unchanged."""

    def __init__(
        self,
        settings,
        series: list[Series],
        model: LoadedModel | None,
        markets: Markets,
        *,
        precompute: bool = True,
        scripted: dict[str, np.ndarray] | None = None,
    ):
        if not series:
            raise ValueError("no series to backtest")
        tfs = {s.timeframe for s in series}
        if len(tfs) != 1:
            raise ValueError(f"every series needs the same timeframe, got {sorted(tfs)}")
        self.tf = series[0].timeframe
        if model is not None and scripted is None and model.timeframe != self.tf:
            raise ValueError(
                f"model {model.version} decides on {model.timeframe} candles but the data is {self.tf}; "
                f"train on this data first (bnml train --data <file>)"
            )
        self.settings = settings
        self.series = series
        self.model = model
        self.markets = markets
        self.scripted = scripted
        first = min(int(s.open_ms[0]) for s in series)
        self.clock = ManualClock(datetime.fromtimestamp(first / 1000, UTC))
        now = self.clock.now()
        self.risk = RiskEngine(settings.risk, markets, [s.symbol for s in series], now)
        # a fresh suite: no standing kill switch, no account state yet (the configured equity), no drift
        self.risk.account_known = True
        self.risk.set_kill_switch(False, True, now)
        self.risk.on_drift(None, False, "")
        self.signal = SignalEngine(settings.signal, model)
        # validated into a `Signal` only when traded (`_step`); a draft has every field of a `Signal` the
        # engine reads
        self.signal.signal_factory = SignalDraft  # type: ignore[assignment]  # reason: a draft stands in for a Signal
        if model is not None and precompute and scripted is None:
            self.signal.precomputed = Precomputed(
                model,
                {
                    s.symbol: ([datetime.fromtimestamp(t / 1000, UTC) for t in s.open_ms.tolist()], s.ohlcv)
                    for s in series
                },
                self.signal.cfg,
                self.signal.drift,
            )
        ecfg = settings.execution
        self.ecfg = ecfg
        self.ledger = Ledger()
        for asset, amount in ecfg.starting_balances.items():
            self.ledger.balance(asset).free = Decimal(amount)
        self.paper = PaperExchange(
            self.ledger,
            FeeSchedule(ecfg.taker_fee_rate, ecfg.maker_fee_rate, ecfg.bnb_fee_discount),
            SlippageModel(ecfg.slippage_bps, ecfg.slippage_bps_per_10k_usdt),
            ecfg.limit_participation,
            exchange_rounder(markets),
        )
        self.stale_after_s = settings.market_data.stale_after_s
        self.spread = Decimal(str(settings.market_data.replay.spread_bps))
        self.heartbeat_services = list(settings.risk.heartbeat_services)
        self.last_tick: dict[str, ReplayTick] = {}
        self.rec = Record()
        self._verdict_of: dict[str, str] = {}  # client order id -> verdict id (what order events carry)
        self._n = 0
        self.fold_ticks = True  # False: every tick through every core (the tests hold both runs equal)
        self.folded = 0  # steps whose ticks before the close were folded
        # False: every step through the cores one by one (the tests hold both equal); `quiet` counts the steps
        # taken in runs (`_quiet_steps`)
        self.quiet_runs = True
        self.quiet = 0

    # -- the run -------------------------------------------------------------------------------
    def run(self, on_progress: Callable[[int], None] | None = None, progress_every: int = 2000) -> Record:
        rec = self.rec
        rec.start_equity = float(self._equity({}))
        grid = np.unique(np.concatenate([s.open_ms for s in self.series]))
        index = [dict(zip(s.open_ms.tolist(), range(s.open_ms.size), strict=True)) for s in self.series]
        for s in self.series:
            rec.sides[s.symbol] = np.zeros(s.open_ms.size, dtype=np.int8)
        closes: dict[str, float] = {}
        self._paths = {
            s.symbol: path_arrays(s.open_ms, s.open_ms + (s.tf_ms - 1), s.ohlcv[:, :4], N_TICKS)
            for s in self.series
        }
        # the grid steps every series has a bar at (the runs of quiet bars are taken only there), each series'
        # row at each step
        rows = np.stack([np.searchsorted(s.open_ms, grid) for s in self.series], axis=1)
        full = np.ones(grid.size, dtype=bool)
        for j, s in enumerate(self.series):
            r = np.minimum(rows[:, j], s.open_ms.size - 1)
            full &= s.open_ms[r] == grid
        self._grid, self._rows, self._full = grid, rows, full
        # for each step, the first step at or after it that not every series has (the end of a full stretch)
        breaks = np.flatnonzero(~full)
        self._stretch_end = np.append(breaks, grid.size)[np.searchsorted(breaks, np.arange(grid.size))]
        done = 0
        grid_ms = grid.tolist()
        p = 0
        while p < len(grid_ms):
            t = grid_ms[p]
            here = [(s, idx[t]) for s, idx in zip(self.series, index, strict=True) if t in idx]
            self._step(here, closes)
            rec.times.append(t)
            done += len(here)
            p += 1
            if on_progress is not None and len(rec.times) % progress_every == 0:
                on_progress(done)
            k = self._quiet_steps(p, closes) if self.quiet_runs else 0
            if k:
                before = len(rec.times)
                rec.times.extend(grid_ms[p : p + k])
                done += k * len(self.series)
                p += k
                if on_progress is not None and len(rec.times) // progress_every > before // progress_every:
                    on_progress(done)
        rec.bars = done
        if on_progress is not None:
            on_progress(done)
        return rec

    def _quiet_steps(self, p: int, closes: dict[str, float]) -> int:
        """Take the steps from `p` on that change nothing but what time and prices move (`RiskEngine.quiet_run`,
        `SignalEngine.quiet_bars`: every decision HOLD, no breaker moving, nothing on the paper book, no
        drift change), at once, and return how many. Runs only over steps every series has a bar at (a
        gap's silence is risk's to judge, its restart of the buffers the signal core's), and never to the
        last of them: the step after a run goes tick by tick, and its ticks set what the run does not (the
        last prices, quotes and ticks, which nothing reads before them)."""
        end = int(self._stretch_end[p]) - 1 if p < self._grid.size else p
        end = min(end, p + QUIET_RUN_MAX)
        if (
            end - p < 1
            or self.paper.book
            or not self.fold_ticks
            or not self.risk.may_run_quiet()
            or not self._ticks_fold_all()
        ):
            return 0
        grid, series = self._grid, self.series
        steps = grid[p:end]
        rows = self._rows[p:end]
        sl = [rows[:, j] for j in range(len(series))]
        symbols = [s.symbol for s in series]
        n = len(steps)
        close_ms = [self._paths[sym][0][r, N_TICKS - 1] for sym, r in zip(symbols, sl, strict=True)]
        first = datetime.fromtimestamp(int(max(c[0] for c in close_ms)) / 1000, UTC)
        last = datetime.fromtimestamp(int(max(c[-1] for c in close_ms)) / 1000, UTC)
        if self.scripted is not None:  # the null baseline's sides, not the model's: HOLD is no trade
            hold = np.all([self.scripted[sym][r] == HOLD for sym, r in zip(symbols, sl, strict=True)], axis=0)
            n = n if hold.all() else int(np.argmin(hold))
            plan = None
        else:
            plan = self.signal.quiet_bars(
                symbols, steps, [s.ohlcv[r] for s, r in zip(series, sl, strict=True)], first, last
            )
            if plan is None:
                return 0
            n = plan.n
        if n == 0:
            return 0
        # the ticks, in the suite's order: every symbol's tick k before any symbol's tick k + 1
        times = np.stack([self._paths[sym][0][r[:n]] for sym, r in zip(symbols, sl, strict=True)], axis=2)
        prices = np.stack([self._paths[sym][1][r[:n]] for sym, r in zip(symbols, sl, strict=True)], axis=2)
        times, prices = times.reshape(n, -1), prices.reshape(n, -1)
        if int(times[0, 0]) < self._clock_ms() or np.any(np.diff(times.ravel()) < 0):
            return 0
        n = self.risk.quiet_run(
            [sym for _k in range(N_TICKS) for sym in symbols], times, prices, self.heartbeat_services
        )
        if n == 0:
            return 0
        if plan is not None:
            self.signal.take_quiet(plan, n)
        self.clock.set(datetime.fromtimestamp(int(times[n - 1, -1]) / 1000, UTC))
        self._n += N_TICKS * len(symbols) * n
        if plan is not None:  # the model's HOLDs are counted (a script's sides are not signals)
            self.rec.signals["HOLD"] += len(symbols) * n
        marks = {s.symbol: s.ohlcv[r[:n], 3] for s, r in zip(series, sl, strict=True)}
        self._mark(marks, n)
        closes.update({sym: float(c[-1]) for sym, c in marks.items()})
        self.quiet += n
        return n

    def _clock_ms(self) -> int:
        return round(self.clock.now().timestamp() * 1000)

    def _ticks_fold_all(self) -> bool:
        if self.signal.cfg.every_nth_tick > 0:
            return False
        states = self.signal.states
        return all((st := states.get(s.symbol)) is not None and st.from_bus for s in self.series)

    def _step(self, here: list[tuple[Series, int]], closes: dict[str, float]) -> None:
        paths = []
        # Nothing rests on the paper book and the signal core builds no bar from ticks: then the ticks before
        # the close change nothing that the close's tick does not overwrite (the last price, its time, the
        # quote, the heartbeats), except risk's volatility samples, which they get (`_passing_ticks`).
        fold = self.fold_ticks and not self.paper.book and self._ticks_fold(here)
        self.folded += fold
        for s, i in here:
            o, h, lo, c, v = (_dec(x) for x in s.ohlcv[i].tolist())
            t = int(s.open_ms[i])
            bar = MdBar(s.symbol, s.timeframe, t, t + s.tf_ms - 1, o, h, lo, c, v)
            paths.append(
                (
                    s,
                    i,
                    bar,
                    [bar_path_last(bar, N_TICKS, self.spread, s.price_places)]
                    if fold
                    else bar_path(bar, N_TICKS, self.spread, s.price_places),
                )
            )
        if fold:
            self._passing_ticks(here)
        n_ticks = len(paths[0][3])
        clock, signal, risk, paper = self.clock, self.signal, self.risk, self.paper
        for k in range(n_ticks):
            ticks = []
            for s, _i, _bar, path in paths:
                pt = path[k]
                ts = datetime.fromtimestamp(pt.ts_ms / 1000, UTC)
                if ts > clock.now():
                    clock.set(ts)
                now = clock.now()
                self._n += 1
                tick = ReplayTick(
                    f"bt{self._n:010d}",
                    ts,
                    s.symbol,
                    Decimal(pt.bid),
                    Decimal(pt.ask),
                    pt.last_d,
                    Decimal(pt.volume),
                    ts,
                )
                self.last_tick[s.symbol] = tick
                signal.on_tick(tick, now)
                risk.on_tick(s.symbol, tick.last, ts, now)
                ticks.append(tick)
            now = clock.now()
            for svc in self.heartbeat_services:  # the simulated services are alive
                risk.on_heartbeat(svc, now)
            if paper.book:
                self._match(ticks, now)
        now = clock.now()
        bars = []
        for s, _i, bar, _path in paths:
            candle = ReplayCandle(
                f"bc{self._n:010d}{s.symbol}",
                now,
                s.symbol,
                s.timeframe,
                datetime.fromtimestamp(bar.open_time_ms / 1000, UTC),
                datetime.fromtimestamp(bar.close_time_ms / 1000, UTC),
                bar.open,
                bar.high,
                bar.low,
                bar.close,
                bar.volume,
            )
            closes[s.symbol] = float(bar.close)
            b = signal.on_candle(candle)
            if b is not None:
                bars.append(b)
        if self.scripted is not None:
            signals: list = self._scripted(paths, now)
        else:
            result = signal.on_bars(bars, now) if bars else None
            signals = result.signals if result is not None else []
            if result is not None and result.drift is not None and result.drift.changed:
                risk.on_drift(None, result.drift.detected, result.drift.reason)
                self._events(risk.evaluate(now))
        trading = [sig for sig in signals if sig.side != "HOLD"]
        if not trading:
            # risk re-evaluates its breakers at every close (as its shell does on a timer); a decision at this
            # same instant evaluates first anyway, so once is enough (same inputs, same results)
            self._events(risk.evaluate(now))
        counts = self.rec.signals
        for sig in signals:
            counts[sig.side] += 1
        if trading:
            where = {s.symbol: i for s, i, _b, _p in paths}
            for sig in trading:
                self.rec.sides[sig.symbol][where[sig.symbol]] = SIDE_CODE[sig.side]
                self._trade(sig.to_signal() if isinstance(sig, SignalDraft) else sig, now)
        self._mark(closes)

    def _ticks_fold(self, here: list[tuple[Series, int]]) -> bool:
        """The signal core takes each tick only as its quote (no measurement mode, candles from market_data)."""
        if self.signal.cfg.every_nth_tick > 0:
            return False
        states = self.signal.states
        return all((st := states.get(s.symbol)) is not None and st.from_bus for s, _i in here)

    def _passing_ticks(self, here: list[tuple[Series, int]]) -> None:
        """The bar's ticks before its close, in the suite's order (every symbol's tick k before any tick k+1),
        as what they leave behind: the clock, the tick ids, risk's volatility samples (`on_passing_tick`)."""
        clock, risk = self.clock, self.risk
        paths = [(s.symbol, self._paths[s.symbol], i) for s, i in here]
        for k in range(N_TICKS - 1):
            for sym, (times, prices), i in paths:
                ts = datetime.fromtimestamp(int(times[i, k]) / 1000, UTC)
                if ts > clock.now():
                    clock.set(ts)
                self._n += 1
                risk.on_passing_tick(sym, float(prices[i, k]), clock.now())

    # -- risk, execution ----------------------------------------------------------------------
    def _scripted(self, paths, now: datetime) -> list[Signal]:
        scripted = self.scripted
        assert scripted is not None  # called only for a scripted run
        out = []
        for s, i, bar, _path in paths:
            side = int(scripted[s.symbol][i])
            if side == HOLD:
                continue
            tick = self.last_tick[s.symbol]
            out.append(
                Signal.model_construct(
                    schema_version=1,
                    id=f"bs{self._n:010d}{s.symbol}",
                    ts=now,
                    symbol=s.symbol,
                    side="BUY" if side == BUY else "SELL",
                    probability=1.0,
                    expected_edge_bps=0.0,
                    model_version="null-baseline",
                    price=bar.close,
                    reason="scripted",
                    tick_id=tick.id,
                    tick_ts=tick.ts,
                )
            )
        return out

    def _trade(self, sig: Signal, now: datetime) -> None:
        decision = self.risk.decide(sig, now)
        self._events(decision.events)
        v = decision.verdict
        if not v.approved:
            for r in v.reasons:
                self.rec.refusals[r] += 1
            self.rec.refusals_first[v.reasons[0] if v.reasons else "unknown"] += 1
            return
        self.rec.approved += 1
        gate = may_send(v, kill_switch_blocks=False, now=now, is_writer=True, symbol_held="")
        if not gate.allowed:
            self.rec.not_sent[gate.reason] += 1
            self.risk.forget(v.id)  # never journaled: the suite's risk releases it on confirming that
            return
        coid = client_order_id(v.id)
        self._verdict_of[coid] = v.id
        order = new_paper_order(
            coid,
            v.symbol,
            v.side,
            self.ecfg.order_type.upper(),
            v.quantity,
            v.price_limit,
            now,
            self.ecfg.limit_order_ttl_s,
        )
        self.rec.orders.append(
            {
                "ts": now,
                "client_order_id": coid,
                "symbol": v.symbol,
                "side": v.side,
                "order_type": order.order_type,
                "quantity": v.quantity,
                "limit": v.price_limit,
            }
        )
        res = self.paper.submit(
            order, usable_tick(self.last_tick.get(v.symbol), now, self.stale_after_s), now
        )
        self._apply(res, now)

    def _match(self, ticks: list[ReplayTick], now: datetime) -> None:
        for res in self.paper.expire(now):
            self._apply(res, now)
        resting = {o.symbol for o in self.paper.book.values()}
        for tick in ticks:
            if tick.symbol in resting:
                for res in self.paper.on_tick(tick, now):
                    self._apply(res, now)

    def _apply(self, res: PaperResult, now: datetime) -> None:
        if res.status == "REJECTED":
            self.rec.rejected[res.reason.split(":")[0]] += 1
        for t in res.trades:
            row = fill_row(t, now)  # what the paper broker journals
            fill = Fill.model_construct(
                schema_version=1,
                id=f"bf{row.trade_id}",
                ts=row.ts,
                client_order_id=row.client_order_id,
                exchange=row.exchange,
                trade_id=row.trade_id,
                symbol=row.symbol,
                side=cast(Side, row.side),  # a paper trade is a BUY or a SELL
                quantity=row.quantity,
                price=row.price,
                fee=row.fee,
                fee_asset=row.fee_asset,
                is_maker=row.is_maker,
                realized_pnl_usdt=row.realized_pnl_usdt,
            )
            _outcome, events = self.risk.on_fill(fill, now)
            self._events(events)
            self.rec.fills.append({k: getattr(row, k) for k in FILL_COLUMNS})
        # what execution's order event tells the suite's risk: a reservation lives until its order is terminal
        o = res.order
        self.risk.on_order(
            self._verdict_of.get(o.client_order_id), o.client_order_id, res.status, o.filled, o.quantity
        )

    def _events(self, events) -> None:
        for ev in events:
            if isinstance(ev, TradingStateChanged):
                self.rec.state_changes.append(
                    {"ts": ev.ts, "state": ev.state, "previous": ev.previous, "reason": ev.reason}
                )
            else:
                self.rec.breaker_events.append(
                    {
                        "ts": ev.ts,
                        "event": "tripped" if isinstance(ev, BreakerTripped) else "cleared",
                        "breaker": ev.breaker,
                        "symbol": ev.symbol,
                        "reason": ev.reason,
                    }
                )

    # -- marks --------------------------------------------------------------------------------
    def _equity(self, closes: dict[str, Any]) -> Any:
        eq = 0.0
        for asset, bal in self.ledger.balances.items():
            if asset == "USDT":
                eq += float(bal.total)
        for s in self.series:
            base, _ = split_symbol(s.symbol)
            qty = self.ledger.balances.get(base)
            if qty is not None and qty.total and s.symbol in closes:
                eq += float(qty.total) * closes[s.symbol]
        return eq

    def _mark(self, closes: dict[str, Any], n: int = 0) -> None:
        """Equity and exposure at the closes: one step's (float closes), or `n` steps' (arrays of closes)."""
        eq = self._equity(closes)
        cash = float(self.ledger.balances["USDT"].total) if "USDT" in self.ledger.balances else 0.0
        if not n:
            self.rec.equity.append(eq)
            self.rec.exposure.append(eq - cash)
            return
        eqs = np.broadcast_to(np.asarray(eq, dtype=np.float64), (n,))
        self.rec.equity.extend(eqs.tolist())
        self.rec.exposure.extend((eqs - cash).tolist())
