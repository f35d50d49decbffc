"""Per-symbol freshness (pure core): age of the last update, stale/fresh transitions, frozen prices.

Time is a monotonic number of seconds passed in by the caller (the receipt clock, not the event time:
a replayed bar from 2021 is fresh if it arrived a second ago). A symbol is stale when

- it never had an update since it was tracked and `stale_after_s` has passed since tracking began, or
- its last update is older than `stale_after_s`, or
- its price has not changed for `frozen_after_s` while updates keep coming (a frozen feed; 0 = off).

`evaluate(now)` returns only the transitions; `snapshot(now)` returns every symbol's current state
(re-published periodically so a service that starts late learns it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["fresh", "stale"]


@dataclass(frozen=True)
class StatusChange:
    symbol: str
    status: Status
    age_s: float
    reason: str
    frozen: bool = False


@dataclass
class _Sym:
    since: float
    last_update: float | None = None
    last_price: object = None
    price_since: float | None = None
    status: Status = "stale"
    reason: str = "no data yet"
    frozen: bool = False


class StalenessTracker:
    def __init__(self, stale_after_s: float, frozen_after_s: float = 0.0):
        if stale_after_s <= 0:
            raise ValueError("stale_after_s must be > 0")
        self.stale_after_s = stale_after_s
        self.frozen_after_s = frozen_after_s
        self._syms: dict[str, _Sym] = {}

    @property
    def symbols(self) -> list[str]:
        return list(self._syms)

    def track(self, symbol: str, now: float) -> None:
        if symbol not in self._syms:
            self._syms[symbol] = _Sym(since=now)

    def untrack(self, symbol: str) -> None:
        self._syms.pop(symbol, None)

    def on_update(self, symbol: str, now: float, price: object = None) -> None:
        s = self._syms.get(symbol)
        if s is None:
            s = self._syms[symbol] = _Sym(since=now)
        s.last_update = now
        if price is not None and price != s.last_price:
            s.last_price = price
            s.price_since = now

    def age(self, symbol: str, now: float) -> float:
        s = self._syms[symbol]
        return max(0.0, now - (s.last_update if s.last_update is not None else s.since))

    def _judge(self, s: _Sym, now: float) -> tuple[Status, str, bool]:
        if s.last_update is None:
            return "stale", "no data yet", False
        age = now - s.last_update
        if age > self.stale_after_s:
            return "stale", f"no update for {age:.1f}s (> {self.stale_after_s:g}s)", False
        if (
            self.frozen_after_s > 0
            and s.price_since is not None
            and now - s.price_since > self.frozen_after_s
        ):
            return "stale", f"price frozen for {now - s.price_since:.0f}s (> {self.frozen_after_s:g}s)", True
        return "fresh", "", False

    def evaluate(self, now: float) -> list[StatusChange]:
        """The symbols whose status changed since the last call (a new symbol starts stale, silently)."""
        out = []
        for sym, s in self._syms.items():
            status, reason, frozen = self._judge(s, now)
            changed = status != s.status or frozen != s.frozen
            s.status, s.reason, s.frozen = status, reason, frozen
            if changed:
                out.append(StatusChange(sym, status, self.age(sym, now), reason, frozen))
        return out

    def snapshot(self, now: float) -> list[StatusChange]:
        out = []
        for sym, s in self._syms.items():
            out.append(StatusChange(sym, s.status, self.age(sym, now), s.reason, s.frozen))
        return out

    def status(self, symbol: str) -> Status:
        return self._syms[symbol].status

    def counts(self) -> tuple[int, int]:
        """(fresh, stale)."""
        fresh = sum(1 for s in self._syms.values() if s.status == "fresh")
        return fresh, len(self._syms) - fresh


# -- alerting (pure): status changes and counts in, alert/log actions out --------------------------------------
@dataclass(frozen=True)
class StaleAlert:
    """An alert the shell raises (`rt.alert`)."""

    severity: Literal["SEV-2"]
    title: str
    detail: str
    dedup_key: str


@dataclass(frozen=True)
class StaleNote:
    """A line the shell logs (`level` is `info` or `warning`), with its fields."""

    level: Literal["info", "warning"]
    event: str
    fields: tuple[tuple[str, object], ...] = ()


StaleAction = StaleAlert | StaleNote


class StalenessAlerts:
    """When market data's freshness deserves an alert (SEV-2, each once until it clears):

    - a symbol's price froze (once per symbol until it is fresh again);
    - symbols that had been fresh went stale (once until none of them is stale; then an info line);
    - no symbol at all has been fresh `3 * stale_after_s` after the start (once; not after a replay ended).

    Also what `health()` reports: degraded while a known symbol is stale, the stale count once any symbol has
    been fresh or the start grace has passed. Time is a monotonic number of seconds passed in."""

    def __init__(self, stale_after_s: float, started: float, mode: str) -> None:
        self.stale_after_s = stale_after_s
        self.started = started
        self.mode = mode
        self.ever_fresh: set[str] = set()
        self._stale_alerted = False
        self._frozen_alerted: set[str] = set()
        self._no_data_alerted = False

    def forget(self, symbol: str) -> None:
        """The symbol left the universe."""
        self.ever_fresh.discard(symbol)

    def on_change(self, ch: StatusChange) -> list[StaleAction]:
        out: list[StaleAction] = []
        if ch.status == "fresh":
            self.ever_fresh.add(ch.symbol)
            self._frozen_alerted.discard(ch.symbol)
            out.append(StaleNote("info", "symbol fresh", (("symbol", ch.symbol),)))
        else:
            out.append(
                StaleNote(
                    "warning",
                    "symbol stale",
                    (("symbol", ch.symbol), ("age_s", round(ch.age_s, 2)), ("reason", ch.reason)),
                )
            )
        if ch.frozen and ch.symbol not in self._frozen_alerted:
            self._frozen_alerted.add(ch.symbol)
            out.append(
                StaleAlert(
                    "SEV-2", f"market data frozen: {ch.symbol}", ch.reason, f"market_data:frozen:{ch.symbol}"
                )
            )
        return out

    def on_pass(
        self, stale_now: list[str], now: float, *, has_symbols: bool, replay_done: bool
    ) -> list[StaleAction]:
        """After a status pass: `stale_now` the symbols currently stale."""
        out: list[StaleAction] = []
        stale_known = [s for s in stale_now if s in self.ever_fresh]
        if stale_known and not self._stale_alerted:
            self._stale_alerted = True
            out.append(
                StaleAlert(
                    "SEV-2",
                    "market data stale",
                    f"{len(stale_known)} symbol(s) without fresh data for > {self.stale_after_s:g}s "
                    f"(e.g. {', '.join(sorted(stale_known)[:5])}); risk holds them",
                    "market_data:stale",
                )
            )
        elif not stale_known and self._stale_alerted:
            self._stale_alerted = False
            out.append(StaleNote("info", "market data fresh again"))
        if (
            not self.ever_fresh
            and not self._no_data_alerted
            and has_symbols
            and not replay_done
            and now - self.started > 3 * self.stale_after_s
        ):
            self._no_data_alerted = True
            out.append(
                StaleAlert(
                    "SEV-2",
                    "no market data since start",
                    f"mode {self.mode}: no symbol has had a fresh update in {now - self.started:.0f}s",
                    "market_data:no_data",
                )
            )
        return out

    def health(
        self, fresh: int, stale: int, now: float, source_state: str, replay_done: bool
    ) -> tuple[str, str]:
        """(`ok` | `degraded`, detail) for the heartbeat."""
        details = []
        if source_state != "ok":
            details.append(f"source {source_state}")
        if stale and (self.ever_fresh or now - self.started > self.stale_after_s):
            details.append(f"{stale}/{fresh + stale} symbols stale")
        if replay_done:
            details.append("replay finished")
        degraded = source_state != "ok" or (stale and self.ever_fresh)
        return ("degraded" if degraded else "ok"), "; ".join(details)
