"""Risk decisions (pure core): `RiskEngine.decide(signal, now)` turns a signal into a verdict.

Why did risk say no? Read it here, top to bottom:
1. duplicate signal id; a signal older than its useful life (`max_signal_age_s`, `verdict_ttl_s`);
2. breakers (`breakers.py`) re-evaluated at `now` and applied by the manager (`state.py`);
3. gates: kill switch, trading state (HALTED; REDUCING lets only exposure-reducing orders through),
   database and account state known, market known, per-symbol holds, price collar vs the last price;
4. sizing: a fraction of equity, divided by the volatility ratio, capped by max notional, exposure per
   symbol and in total, free cash; a SELL never exceeds the held quantity (spot);
5. exchange filters (`libs.common.markets`, the one place rounding happens);
6. order-rate: attempts feed the order-loop breaker, approvals are throttled per symbol and globally.
No I/O and no clock here: the shell passes `now` and does the publishing and persisting.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np

from libs.common.contracts import (
    AccountState,
    BreakerCleared,
    BreakerTripped,
    Fill,
    RiskVerdict,
    Signal,
    TradingStateChanged,
)
from libs.common.contracts.base import AccountSource, BreakerEffect, Side, new_id
from libs.common.contracts.risk import verdict_id_for
from libs.common.markets import Markets, UnknownMarketError
from libs.common.settings import RiskSettings
from services.risk import breakers as B
from services.risk.book import Book, FillOutcome
from services.risk.reservations import Reservations
from services.risk.state import BreakerBoard, Evaluated, TradingStateMachine, breaker_key
from services.risk.volatility import VolatilityRatio, epoch_us

ZERO = Decimal("0")
BPS_TO_FRACTION = Decimal("0.0001")  # basis points x this = a fraction (100 bps = 0.01)
RATE_WINDOW_S = 10.0
DEFAULT_FEE = Decimal("0.001")
# breakers after whose clearing trading stays REDUCING for `cooldown_after_breaker_s`
COOLDOWN_ON_CLEAR = frozenset(
    {"daily_loss", "weekly_loss", "max_drawdown", "volatility", "drift", "loss_streak", "order_loop"}
)

# breakers whose result, once in force, is a function of `_quiet_inputs` alone (drift: the signal service's
# word): while those inputs are unchanged each stays in force as it is (the same reason, no `until`), so the
# quiet path may answer with them in force
HOLDING_BREAKERS = frozenset({"drift"})

Event = BreakerTripped | BreakerCleared | TradingStateChanged


def order_side(sig: Signal) -> Side:
    """The side of the order `sig` asks for (a HOLD asks for none: `RiskEngine.decide` takes BUY and SELL)."""
    side = sig.side
    if side == "HOLD":
        raise ValueError(f"signal {sig.id} is a HOLD: it carries no order")
    return side


@dataclass(frozen=True)
class CheckResult:
    allowed: bool
    reason: str = ""
    until: datetime | None = None


@dataclass(frozen=True)
class Decision:
    verdict: RiskVerdict
    events: list[Event]


@dataclass
class RiskEngine:
    cfg: RiskSettings
    markets: Markets
    symbols: list[str]
    started_at: datetime
    book: Book = field(init=False)
    board: BreakerBoard = field(default_factory=BreakerBoard)
    sm: TradingStateMachine = field(default_factory=TradingStateMachine)
    kill_engaged: bool = True  # unknown = engaged until the shell has read the standing state
    kill_known: bool = False
    db_ok: bool = True
    account_known: bool = False
    is_writer: bool = True  # the shell clears it when it loses the single-writer lock
    instance: str = ""  # stamped on every verdict (`issued_by`)
    epoch: int = 0  # the writer lock's fencing epoch, stamped on every verdict (`risk_epoch`)
    account_source: AccountSource = "configured"  # "exchange" once live balances are the book
    last_breaker_clear_at: datetime | None = None
    # `evaluate` may answer "nothing changed" from the breakers that move with time and prices alone when
    # nothing that time moves is in force and no other input has changed since the last full evaluation (see
    # `_quiet_still`);
    # False always runs every breaker (the tests hold both equal)
    quiet_path: bool = True

    def __post_init__(self) -> None:
        for key in ("stale_after_s", "heartbeat_timeout_s"):
            if getattr(self.cfg, key) is None:  # fail closed: no freshness limit is made up here
                raise ValueError(f"risk.{key} is unresolved: take risk's section from a BotSettings")
        self.tz = ZoneInfo(self.cfg.timezone)
        self.book = Book(cash=self.cfg.starting_equity_usdt, peak_equity=self.cfg.starting_equity_usdt)
        self.vol = VolatilityRatio(
            self.cfg.vol_sample_s,
            self.cfg.vol_short_samples,
            self.cfg.vol_long_samples,
            self.cfg.vol_min_samples,
        )
        self.last_tick_at: dict[str, datetime] = {}
        self.status_stale: dict[str, tuple[bool, str]] = {}
        self.heartbeats: dict[str, datetime] = {}
        self.drift: dict[str | None, tuple[bool, str]] = {}
        self.attempts: deque[datetime] = deque()
        self.approvals: deque[tuple[datetime, str]] = deque()
        self.approvals_by_symbol: dict[str, deque[datetime]] = {}
        self.seen_signals: OrderedDict[str, datetime] = OrderedDict()
        self.reservations = Reservations()  # approved, not yet in the book: until the order is terminal
        # execution's own positions (Postgres `positions`), when read: a SELL never exceeds the smaller view
        self.external_positions: dict[str, Decimal] | None = None
        self._known_symbols = list(dict.fromkeys(self.symbols))
        self._known_set = set(self._known_symbols)
        self._windows: tuple[datetime, datetime, datetime, datetime] | None = None
        self._keys: dict[tuple[str, str | None, str | None], tuple[str, BreakerEffect]] = {}
        # (time of the last full evaluation, its day window's end, the inputs it saw) while it left nothing that
        # time moves in force (`_settled`); None otherwise
        self._quiet: tuple[datetime, datetime, tuple[object, ...]] | None = None

    # -- inputs ---------------------------------------------------------------------------------
    def on_tick(self, symbol: str, last: Decimal, event_ts: datetime, now: datetime) -> None:
        self.book.last_price[symbol] = last
        self.last_tick_at[symbol] = min(event_ts, now)
        self.vol.on_price(symbol, float(last), now)
        if symbol not in self._known_set:
            self._known_set.add(symbol)
            self._known_symbols.append(symbol)

    def on_passing_tick(self, symbol: str, last: float, now: datetime) -> None:
        """A tick whose price and time a later tick of the same symbol replaces before anything reads them (the
        backtest's ticks inside a bar while no order rests): of `on_tick`, only its volatility sample stays."""
        self.vol.on_price(symbol, last, now)

    def on_market_status(self, symbol: str, stale: bool, reason: str) -> None:
        self.status_stale[symbol] = (stale, reason)

    def on_heartbeat(self, service: str, now: datetime) -> None:
        self.heartbeats[service] = now

    def on_drift(self, symbol: str | None, detected: bool, reason: str) -> None:
        self.drift[symbol] = (detected, reason)

    def on_fill(self, fill: Fill, now: datetime) -> tuple[FillOutcome, list[Event]]:
        out = self.book.apply_fill(fill, now, self.tz)
        self.reservations.on_fill(fill.client_order_id, fill.quantity)  # now in the book, no longer pending
        return out, self.evaluate(now)

    def on_order(
        self,
        verdict_id: str | None,
        client_order_id: str,
        status: str,
        filled: Decimal,
        quantity: Decimal | None = None,
    ) -> bool:
        """Execution's news of an order (`exec.order.*` or its journal row): a terminal order releases what
        did not fill. True if it was one of risk's reservations."""
        return self.reservations.on_order(verdict_id, client_order_id, status, filled, quantity)

    def forget(self, verdict_id: str) -> None:
        """An approved verdict that was never published."""
        self.reservations.forget(verdict_id)

    def sync_account(self, balances: dict[str, Decimal]) -> None:
        """Live: the exchange's balances (as execution last reconciled them) become the book's cash and
        positions. The first sync after the book was the configured paper equity re-bases the peak, so the
        drawdown is measured on the real account; later syncs keep the peak (it only rises). The breakers see
        it at the next `evaluate` (the shell runs it every quarter second)."""
        b = self.book
        b.cash = balances.get("USDT", ZERO)
        positions: dict[str, Decimal] = {}
        for sym in self._known_symbols:
            base, _, quote = sym.partition("/")
            if quote == "USDT" and balances.get(base, ZERO) > 0:
                positions[sym] = balances[base]
        for sym in positions:
            # a holding risk has no cost for (bought outside the bot): its cost is its price when first seen,
            # so a SELL of it realizes only what moved since
            if sym not in b.avg_cost and sym in b.last_price:
                b.avg_cost[sym] = b.last_price[sym]
        b.avg_cost = {s: c for s, c in b.avg_cost.items() if s in positions}
        b.positions = positions
        if self.account_source != "exchange":
            b.peak_equity = b.equity()
            self.account_source = "exchange"
        b.mark()
        self.account_known = True

    def set_kill_switch(self, engaged: bool, known: bool, now: datetime) -> list[Event]:
        self.kill_engaged, self.kill_known = engaged, known
        return self.evaluate(now)

    def release(self, now: datetime) -> tuple[list[Event], str]:
        """An operator release. Returns the events and, if trading stays HALTED, why."""
        if self.cfg.drawdown_rebase_on_release and not self.kill_engaged:
            self.book.peak_equity = self.book.equity()
        events = self.evaluate(now)
        ev, refused = self.sm.release(self.kill_engaged, self.board, now)
        if ev:
            events.append(ev)
        return events, refused

    # -- breakers -------------------------------------------------------------------------------
    def _effect(self, name: str, symbol: str | None) -> BreakerEffect:
        eff = self.cfg.effect(name)
        if symbol is None and eff.endswith("_SYMBOL"):
            return "REDUCING"
        if symbol is not None and name == "drift" and eff == "REDUCING":
            return "REDUCING_SYMBOL"
        return eff

    def _ev(
        self, name: str, result: B.BreakerResult, symbol: str | None = None, scope: str | None = None
    ) -> Evaluated | None:
        """The result as the board needs it; None for a breaker that allows and is not in force (most of them)."""
        ident = (name, symbol, scope)
        cached = self._keys.get(ident)
        if cached is None:
            cached = self._keys[ident] = (breaker_key(name, symbol, scope), self._effect(name, symbol))
        key, effect = cached
        if result.allowed and key not in self.board.active:
            return None
        return Evaluated(key, name, effect, result, symbol, scope)

    def windows(self, now: datetime) -> tuple[datetime, datetime, datetime, datetime]:
        """(day start, day end, week start, week end) around `now`; recomputed only when `now` leaves them."""
        w = self._windows
        if w is None or not (w[0] <= now < w[1]):
            d0, d1 = B.day_window(now, self.tz)
            w0, w1 = B.week_window(now, self.tz)
            w = self._windows = (d0, d1, w0, w1)
        return w

    def evaluate(self, now: datetime) -> list[Event]:
        """Run every breaker at `now`, apply the results, move the trading state. Returns what changed."""
        if self.quiet_path and self._quiet_still(now):
            return []
        events = self._evaluate(now)
        self._quiet = (now, self.windows(now)[1], self._quiet_inputs()) if self._settled() else None
        return events

    def _settled(self) -> bool:
        """Nothing in force that time, prices or liveness can move: no position, no order attempt in the window,
        no breaker but those of `HOLDING_BREAKERS` (whose results, like the trading state they set, stay as
        they are while `_quiet_inputs` do)."""
        return (
            not self.book.positions
            and not self.attempts
            and all(b.breaker in HOLDING_BREAKERS for b in self.board.active.values())
        )

    def _quiet_inputs(self) -> tuple[object, ...]:
        """Every input of the breakers other than time, prices and liveness (`_quiet_still`)."""
        b = self.book
        return (
            self.cfg,
            self.kill_engaged,
            self.kill_known,
            self.started_at,
            b.cash,
            b.peak_equity,
            b.fills_applied,
            b.loss_streak,
            b.last_loss_any,
            tuple(b.last_loss_at.items()),
            b.day_start,
            b.week_start,
            b.daily_own,
            b.daily_reported,
            b.weekly_own,
            b.weekly_reported,
            self.last_breaker_clear_at,
            tuple(self.drift.items()),
            tuple(self.status_stale.items()),
            tuple(self._known_symbols),
            tuple((k, a.reason, a.until) for k, a in self.board.active.items()),
            self.sm.state,
            self.sm.reason,
        )

    def _quiet_still(self, now: datetime) -> bool:
        """True when a full `evaluate` at `now` would change nothing and return no event, known without running
        every breaker: the last full evaluation left nothing in force that time moves (`_settled`: no
        position, no order attempt in the window, no breaker but drift) and since then no input but time,
        prices and liveness has changed (the breakers in force and the trading state among them), in the
        same calendar day, with time not going back. Then every breaker that allowed stays allowed (the loss
        budgets, drawdown, loss streak, order loop and drift do not depend on time once they allow; the
        cooldowns only expire), a drift in force stays as it is (its result is the drift state's), and so does
        the trading state (the breakers and the kill switch it follows are unchanged; out of HALTED the full
        evaluation has already said it awaits a release), except the breakers that move with time, prices and
        liveness: volatility, stale data and heartbeats, which are run here by the same methods `evaluate`
        runs (any of them refusing means a full evaluation)."""
        q = self._quiet
        if q is None or not self._settled():
            return False
        since, day_end, inputs = q
        if not (since <= now < day_end) or inputs != self._quiet_inputs():
            return False
        if not self._moving_allow(now, self.vol.market_ratio()):
            return False
        self._prune(now)
        return True

    def _moving_allow(self, now: datetime, vol_ratio: float | None) -> bool:
        """The breakers that move with time, prices and liveness alone (volatility at the market's `vol_ratio`,
        stale data, heartbeats) all allow at `now` and none is in force: the part of `_quiet_still` that must
        run at every close."""
        return self._volatility_at(vol_ratio, now) is None and self._fresh(now)

    def _fresh(self, now: datetime) -> bool:
        """Neither stale data nor a missing heartbeat refuses at `now` (nor is in force)."""
        for sym in self._known_symbols:
            if self._stale(sym, now) is not None:
                return False
        for svc in self.cfg.heartbeat_services:
            if self._heartbeat(svc, now) is not None:
                return False
        return True

    def may_run_quiet(self) -> bool:
        """Whether `quiet_run` may take any bar: the last full evaluation left nothing in force that time
        moves (the cheap part of its test, for a caller to ask before preparing a run)."""
        return self.quiet_path and self._quiet is not None and self._settled()

    def quiet_run(
        self, symbols: Sequence[str], times_ms: np.ndarray, prices: np.ndarray, alive: Sequence[str] = ()
    ) -> int:
        """How many of these bars `evaluate` answers from the quiet path at their closes, with what they leave
        applied: a run of bars taken at once instead of tick by tick (the backtest's bars between events).

        Bar j is its ticks, in the suite's order: column c of `times_ms[j]` / `prices[j]` (epoch ms, in time
        order, none before the last input; float prices) is a tick of `symbols[c]`, the last ticks of a bar its
        closes (the ticked symbols' last columns); then the `alive` services heard at the close; then
        `evaluate` at the close. Every tick gives its volatility sample (`on_passing_tick`), each close tick
        its time (`on_tick`), the heartbeats their time; each close must pass `_quiet_still`'s test, whose
        inputs other than time, prices and liveness cannot change here (no fill, decision or message comes in
        between), so it is compared once. Stops before the first bar whose close needs a full evaluation (a
        breaker moving, a midnight): that bar is the caller's, tick by tick. What it does not apply: the last
        prices (`book.last_price`, read by decisions and fills only); the caller's next bar, sent through
        `on_tick`, sets them before anything reads them."""
        q = self._quiet
        if q is None or len(times_ms) == 0 or not self.may_run_quiet():
            return 0
        since, day_end, inputs = q
        if inputs != self._quiet_inputs() or any(sym not in self._known_set for sym in symbols):
            return 0
        closes = {sym: c for c, sym in enumerate(symbols)}  # each symbol's last column: its close tick
        # the closes in the same day as the last full evaluation, time not going back (exact in microseconds:
        # a close's datetime is its millisecond time)
        close_us = times_ms[:, -1] * 1000
        window = (epoch_us(since) <= close_us) & (close_us < epoch_us(day_end))
        m = int(np.argmin(window)) if not window.all() else len(times_ms)
        m = self._fresh_bars(closes, times_ms[:m], alive)
        close_ms = times_ms[:m, -1].tolist()

        def allow(j: int, vol_ratio: float | None) -> bool:
            return self._volatility_at(vol_ratio, datetime.fromtimestamp(close_ms[j] / 1000, UTC)) is None

        # the volatility samples of every tick, bar by bar, while each close passes (the bar that breaks the
        # run is put back: it is the caller's, tick by tick)
        done = self.vol.take_bars(symbols, times_ms[:m], prices[:m], allow)
        if done:
            self._prune(self._close_of(closes, times_ms[done - 1].tolist(), alive))
        return done

    def _fresh_bars(self, closes: dict[str, int], times_ms: np.ndarray, alive: Sequence[str]) -> int:
        """How many of `quiet_run`'s first bars stale data and heartbeats allow at every close (`_fresh`). Each
        of them refuses past an age alone (at the close: a symbol's last tick's, a service's last heartbeat's;
        the other inputs do not change in a run), so it allows at every close of the first m bars if and only
        if it allows at the close where its age is largest among them: m is found by bisection, each test run
        by `_stale` and `_heartbeat` at that close (the times put in place, then put back)."""
        n = len(times_ms)
        if n == 0:
            return 0
        now_ms = times_ms[:, -1]
        idx = np.arange(n)
        # (kind, name, the bar of the largest age of each prefix)
        worst: list[tuple[str, str, np.ndarray]] = []
        ages: list[tuple[str, str, np.ndarray]] = [
            ("stale", sym, now_ms - times_ms[:, closes[sym]] if sym in closes else now_ms)
            for sym in self._known_symbols
        ]
        ages += [
            ("heartbeat", svc, np.zeros(n, dtype=np.int64) if svc in alive else now_ms)
            for svc in self.cfg.heartbeat_services
        ]
        for kind, name, age in ages:
            record = np.where(age == np.maximum.accumulate(age), idx, 0)
            worst.append((kind, name, np.maximum.accumulate(record)))
        saved = (dict(self.last_tick_at), dict(self.heartbeats))

        def allows(m: int) -> bool:
            for kind, name, at in worst:
                now = self._close_of(closes, times_ms[int(at[m - 1])].tolist(), alive)
                if (self._stale(name, now) if kind == "stale" else self._heartbeat(name, now)) is not None:
                    return False
            return True

        try:
            if allows(n):
                return n
            lo, hi = 0, n  # allows(lo) (none taken), not allows(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if allows(mid) else (lo, mid)
            return lo
        finally:
            self.last_tick_at, self.heartbeats = saved

    def _close_of(self, closes: dict[str, int], row_t: list[int], alive: Sequence[str]) -> datetime:
        """A bar of `quiet_run` at its close: its symbols' last tick times (their close ticks, columns `closes`:
        `on_tick`'s min(tick time, now) is the tick's time, ticks coming in time order), the heartbeats of the
        `alive` services; returns the close's time (its last tick's)."""
        last_at = self.last_tick_at
        for sym, c in closes.items():
            last_at[sym] = datetime.fromtimestamp(row_t[c] / 1000, UTC)
        now = datetime.fromtimestamp(row_t[-1] / 1000, UTC)
        for svc in alive:
            self.heartbeats[svc] = now
        return now

    def _volatility(self, now: datetime) -> Evaluated | None:
        return self._volatility_at(self.vol.market_ratio(), now)

    def _volatility_at(self, ratio: float | None, now: datetime) -> Evaluated | None:
        cfg = self.cfg
        return self._ev(
            "volatility",
            B.volatility(
                ratio,
                cfg.vol_trip_ratio,
                cfg.vol_clear_ratio,
                cfg.vol_min_hold_s,
                now,
                self.board.prev("volatility"),
            ),
        )

    def _stale(self, sym: str, now: datetime) -> Evaluated | None:
        stale, why = self.status_stale.get(sym, (False, ""))
        assert self.cfg.stale_after_s is not None  # `__post_init__` refuses a section without it
        return self._ev(
            "stale_data",
            B.stale_data(self.last_tick_at.get(sym), stale, why, now, self.cfg.stale_after_s),
            sym,
        )

    def _heartbeat(self, svc: str, now: datetime) -> Evaluated | None:
        assert self.cfg.heartbeat_timeout_s is not None  # `__post_init__` refuses a section without it
        return self._ev(
            "heartbeat_missing",
            B.heartbeat_missing(
                svc, self.heartbeats.get(svc), self.started_at, now, self.cfg.heartbeat_timeout_s
            ),
            scope=svc,
        )

    def _evaluate(self, now: datetime) -> list[Event]:
        cfg, book, board = self.cfg, self.book, self.board
        day_start, day_end, week_start, week_end = self.windows(now)
        book.roll_to(day_start, week_start)
        equity = book.mark()
        self._prune(now)
        res = [
            self._ev(
                "daily_loss",
                B.loss_budget(
                    "daily",
                    book.daily_realized,
                    cfg.daily_loss_budget_usdt,
                    day_end,
                    now,
                    board.prev("daily_loss"),
                ),
            ),
            self._ev(
                "weekly_loss",
                B.loss_budget(
                    "weekly",
                    book.weekly_realized,
                    cfg.weekly_loss_budget_usdt,
                    week_end,
                    now,
                    board.prev("weekly_loss"),
                ),
            ),
            self._ev(
                "max_drawdown",
                B.drawdown(equity, book.peak_equity, cfg.max_drawdown_pct, board.prev("max_drawdown")),
            ),
            self._volatility(now),
            self._ev(
                "loss_streak",
                B.loss_streak(
                    book.loss_streak, cfg.loss_streak_limit, book.last_loss_any, cfg.loss_streak_lock_s, now
                ),
            ),
            self._ev(
                "order_loop", B.order_loop(len(self.attempts), cfg.order_loop_trip_per_10s, RATE_WINDOW_S)
            ),
        ]
        for sym in self._known_symbols:
            res.append(self._stale(sym, now))
            res.append(
                self._ev(
                    "cooldown_after_loss",
                    B.cooldown("a losing trade", book.last_loss_at.get(sym), cfg.cooldown_after_loss_s, now),
                    sym,
                )
            )
        for svc in cfg.heartbeat_services:
            res.append(self._heartbeat(svc, now))
        for drift_sym, (detected, why) in self.drift.items():  # None: drift of the whole market
            res.append(self._ev("drift", B.drift(detected, why), drift_sym))
        events: list[Event] = list(board.apply([r for r in res if r is not None], now))
        if any(isinstance(e, BreakerCleared) and e.breaker in COOLDOWN_ON_CLEAR for e in events):
            self.last_breaker_clear_at = now
        cd = self._ev(
            "cooldown_after_breaker",
            B.cooldown("a breaker cleared", self.last_breaker_clear_at, cfg.cooldown_after_breaker_s, now),
        )
        if cd is not None:
            events += board.apply([cd], now)
        st = self.sm.evaluate(self.kill_engaged, board, now)
        if st:
            events.append(st)
        return events

    def _prune(self, now: datetime) -> None:
        edge = now - timedelta(seconds=RATE_WINDOW_S)
        while self.attempts and self.attempts[0] <= edge:
            self.attempts.popleft()
        while self.approvals and self.approvals[0][0] <= edge:
            _, sym = self.approvals.popleft()
            dq = self.approvals_by_symbol.get(sym)
            while dq and dq[0] <= edge:
                dq.popleft()
        while self.seen_signals:
            sid, until = next(iter(self.seen_signals.items()))
            if until > now:
                break
            del self.seen_signals[sid]

    # -- the decision ---------------------------------------------------------------------------
    def decide(self, sig: Signal, now: datetime) -> Decision:
        """Approve (sized, priced, on the exchange's filters) or refuse with every reason that applied."""
        assert sig.side in ("BUY", "SELL"), "HOLD signals carry no order"
        events = self.evaluate(now)
        if sig.id in self.seen_signals:
            return Decision(self._refuse(sig, now, ["duplicate_signal"]), events)
        self.seen_signals[sig.id] = now + timedelta(seconds=self.cfg.duplicate_signal_window_s)
        origin = sig.tick_ts or sig.ts
        if (now - origin).total_seconds() > min(self.cfg.max_signal_age_s, self.cfg.verdict_ttl_s):
            return Decision(
                self._refuse(sig, now, ["stale_signal"]), events
            )  # it waited too long to be traded
        reasons = self._gates(sig)
        if reasons:
            return Decision(self._refuse(sig, now, reasons), events)
        qty, limit, reasons = self._size(sig)
        if reasons:
            return Decision(self._refuse(sig, now, reasons), events)
        # A would-be order: it counts toward the order-loop breaker before the throttle says anything.
        self.attempts.append(now)
        if len(self.attempts) >= self.cfg.order_loop_trip_per_10s:
            events += self.evaluate(now)
        if self.sm.state == "HALTED":
            return Decision(
                self._refuse(
                    sig, now, ["order_loop" if "order_loop" in self.board.active else "trading_halted"]
                ),
                events,
            )
        if len(self.approvals) >= self.cfg.max_orders_per_10s:
            return Decision(self._refuse(sig, now, ["order_rate_limited"]), events)
        per_sym = self.approvals_by_symbol.setdefault(sig.symbol, deque())
        if len(per_sym) >= self.cfg.max_orders_per_10s_per_symbol:
            return Decision(self._refuse(sig, now, ["order_rate_limited_symbol"]), events)
        self.approvals.append((now, sig.symbol))
        per_sym.append(now)
        expires = now + timedelta(seconds=self.cfg.verdict_ttl_s)
        verdict = RiskVerdict(
            id=verdict_id_for(sig.id),
            ts=now,
            signal_id=sig.id,
            symbol=sig.symbol,
            side=sig.side,
            approved=True,
            quantity=qty,
            price_limit=limit,
            reasons=[],
            expires_at=expires,
            trading_state=self.sm.state,
            tick_ts=sig.tick_ts,
            issued_by=self.instance,
            risk_epoch=self.epoch,
        )
        # Held against cash/exposure/position until its order is terminal and filled into the book; if no
        # order shows up, the journal is asked after its expiry (plus a grace) whether it ever became one.
        self.reservations.reserve(
            verdict.id,
            sig.symbol,
            sig.side,
            qty,
            limit,
            expires + timedelta(seconds=max(5.0, self.cfg.verdict_ttl_s)),
        )
        return Decision(verdict, events)

    def _gates(self, sig: Signal) -> list[str]:
        reasons: list[str] = []
        if not self.kill_known:
            reasons.append("kill_switch_unknown")
        elif self.kill_engaged:
            reasons.append("kill_switch_engaged")
        if self.sm.state == "HALTED":
            reasons.append("trading_halted")
        if not self.db_ok:
            reasons.append("database_unavailable")
        if not self.account_known:
            reasons.append("account_state_unknown")
        if not self.is_writer:
            reasons.append("not_writer")
        if sig.symbol not in self.markets:
            reasons.append("unknown_market")
        reduces = sig.side == "SELL"  # spot: a SELL can only close what is held
        if self.sm.state == "REDUCING" and not reduces:
            reasons.append("trading_reducing")
        for b in self.board.for_symbol(sig.symbol):
            if b.effect == "HOLD_SYMBOL" or not reduces:
                reasons.append(b.breaker)
        last = self.book.last_price.get(sig.symbol)
        if last is None:
            reasons.append("no_market_data")
        elif abs(sig.price - last) / last > Decimal(str(self.cfg.price_collar_bps)) * BPS_TO_FRACTION:
            reasons.append("price_collar")
        return list(dict.fromkeys(reasons))

    def _pending(self, symbol: str | None, side: str) -> tuple[Decimal, Decimal, int]:
        return self.reservations.pending(symbol, side)

    def _size(self, sig: Signal) -> tuple[Decimal, Decimal, list[str]]:
        cfg, book, mk, sym = self.cfg, self.book, self.markets, sig.symbol
        try:
            f = mk.get(sym)
        except UnknownMarketError:
            return ZERO, ZERO, ["unknown_market"]
        last = book.last_price[sym]
        slip = Decimal(str(cfg.limit_slippage_bps)) * BPS_TO_FRACTION
        _, _, open_orders = self._pending(sym, sig.side)
        if sig.side == "BUY":
            limit = mk.round_price(sym, last * (1 + slip), "BUY")
            fee = f.taker_fee if f.taker_fee is not None else DEFAULT_FEE
            target = book.equity() * cfg.order_fraction_of_equity
            ratio = self.vol.ratio(sym)
            if cfg.vol_sizing and ratio is not None and ratio > 1:
                target = target / Decimal(str(round(ratio, 6)))
            _, pend_sym, _ = self._pending(sym, "BUY")
            _, pend_all, _ = self._pending(None, "BUY")
            held_syms = set(book.open_positions(cfg.dust_usdt)) | self.reservations.buying_symbols()
            if sym not in held_syms and len(held_syms) >= cfg.max_open_positions:
                return ZERO, ZERO, ["max_open_positions"]
            caps = {
                "size": target,
                "max_notional": cfg.max_notional_usdt,
                "max_exposure_symbol": cfg.max_exposure_per_symbol_usdt - book.exposure(sym) - pend_sym,
                "max_exposure_total": cfg.max_total_exposure_usdt - book.total_exposure() - pend_all,
                "insufficient_balance": (book.cash - pend_all) / (1 + fee),
            }
            binding = min(caps, key=lambda k: caps[k])
            qty = mk.quantity_for_notional(sym, max(caps[binding], ZERO), limit)
        else:
            limit = mk.round_price(sym, last * (1 - slip), "SELL")
            pend_qty, _, _ = self._pending(sym, "SELL")
            held = book.positions.get(sym, ZERO)
            if self.external_positions is not None and sym in self.external_positions:
                # both views: the smaller (a missing row leaves risk's own; a persistent gap raises a SEV-2)
                held = min(held, self.external_positions[sym])
            available = held - pend_qty
            if available <= 0:
                return ZERO, ZERO, ["no_position"]
            binding = "max_notional" if available * limit > cfg.max_notional_usdt else "position_dust"
            qty = mk.round_quantity(sym, min(available, cfg.max_notional_usdt / limit))
        check = mk.check_order(
            sym, order_side(sig), qty, limit, open_orders=open_orders, reference_price=last
        )
        if check.allowed:
            return qty, limit, []
        too_small = {"quantity_not_positive", "quantity_below_min", "notional_below_min"}
        if binding != "size" and too_small & set(check.reasons):
            return ZERO, ZERO, [binding]
        return ZERO, ZERO, list(check.reasons)

    def _refuse(self, sig: Signal, now: datetime, reasons: list[str]) -> RiskVerdict:
        # A fenced instance's refusal must not take the signal's verdict id: published first, JetStream would
        # drop its successor's answer to the same signal as a duplicate.
        vid = verdict_id_for(sig.id) if self.is_writer else new_id()
        return RiskVerdict(
            id=vid,
            ts=now,
            signal_id=sig.id,
            symbol=sig.symbol,
            side=order_side(sig),
            approved=False,
            quantity=ZERO,
            price_limit=ZERO,
            reasons=reasons,
            expires_at=now + timedelta(seconds=self.cfg.verdict_ttl_s),
            trading_state=self.sm.state,
            tick_ts=sig.tick_ts,
            issued_by=self.instance,
            risk_epoch=self.epoch,
        )

    def refusal_of(self, verdict: RiskVerdict, reasons: list[str]) -> RiskVerdict:
        """The verdict refused, under an id of its own (see `_refuse`: it must not shadow a successor's)."""
        return verdict.model_copy(
            update={
                "id": new_id(),
                "approved": False,
                "quantity": ZERO,
                "price_limit": ZERO,
                "reasons": reasons,
            }
        )

    def position_mismatches(self, external: dict[str, Decimal]) -> dict[str, tuple[Decimal, Decimal]]:
        """Symbols where risk's book and execution's positions differ by more than dust: {sym: (risk, exec)}."""
        out = {}
        for sym in set(self.book.positions) | set(external):
            mine, theirs = self.book.positions.get(sym, ZERO), external.get(sym, ZERO)
            if abs(mine - theirs) * self.book.price_of(sym) >= max(self.cfg.dust_usdt, Decimal("0.01")):
                out[sym] = (mine, theirs)
        return out

    # -- persistence (values only; the shell writes them) ---------------------------------------
    def snapshot(self, now: datetime) -> AccountState:
        b = self.book
        exposures = b.exposures()
        return AccountState(
            ts=now,
            equity_usdt=b.equity(),
            peak_equity_usdt=b.peak_equity,
            drawdown_pct=round(b.drawdown_pct(), 6),
            daily_realized_usdt=b.daily_realized,
            weekly_realized_usdt=b.weekly_realized,
            market_volatility_ratio=round(self.vol.market_ratio() or 0.0, 6),
            market_drift_detected=any(d for d, _ in self.drift.values())
            or any(k.startswith("drift") for k in self.board.active),
            positions={s: q for s, q in b.positions.items() if q > 0},
            exposure_usdt=exposures,
            active_breakers={k: a.reason for k, a in self.board.active.items()},
            trading_state=self.sm.state,
            cash_usdt=b.cash,
            average_cost=dict(b.avg_cost),
            last_prices=dict(b.last_price),
            total_exposure_usdt=sum(exposures.values(), ZERO),
            open_positions=len(b.open_positions(self.cfg.dust_usdt)),
            realized_total_usdt=b.realized_total,
            reported_daily_realized_usdt=b.daily_reported,
            reported_weekly_realized_usdt=b.weekly_reported,
            day_start=b.day_start,
            week_start=b.week_start,
            loss_streak=b.loss_streak,
            last_loss_at=dict(b.last_loss_at),
            last_breaker_clear_at=self.last_breaker_clear_at,
            breakers=list(self.board.active.values()),
            trading_state_reason=self.sm.reason,
            trading_state_since=self.sm.since,
            fills_applied=b.fills_applied,
            account_source=self.account_source,
        )

    def restore(self, st: AccountState) -> None:
        """Come back exactly as persisted: book, budgets, breakers in force, trading state."""
        b = self.book
        b.cash = st.cash_usdt if st.cash_usdt is not None else st.equity_usdt or self.cfg.starting_equity_usdt
        b.positions = {s: Decimal(q) for s, q in st.positions.items()}
        b.avg_cost = {s: Decimal(p) for s, p in st.average_cost.items()}
        b.last_price = {s: Decimal(p) for s, p in st.last_prices.items()}
        b.realized_total = st.realized_total_usdt
        b.day_start, b.week_start = st.day_start, st.week_start
        b.daily_own = st.daily_realized_usdt
        b.weekly_own = st.weekly_realized_usdt
        b.daily_reported = st.reported_daily_realized_usdt
        b.weekly_reported = st.reported_weekly_realized_usdt
        b.peak_equity = st.peak_equity_usdt or b.equity()
        b.loss_streak = st.loss_streak
        b.last_loss_at = dict(st.last_loss_at)
        b.last_loss_any = max(st.last_loss_at.values()) if st.last_loss_at else None
        b.fills_applied = st.fills_applied
        self.account_source = st.account_source
        self.last_breaker_clear_at = st.last_breaker_clear_at
        self.board.active = {breaker_key(a.breaker, a.symbol, a.scope): a for a in st.breakers}
        self.sm.state, self.sm.reason, self.sm.since = (
            st.trading_state,
            st.trading_state_reason,
            st.trading_state_since,
        )
        self.account_known = True
