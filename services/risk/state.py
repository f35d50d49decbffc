"""The manager (pure): applies breaker results, keeps what is in force, and runs the trading-state machine.

Trading state is the most severe effect in force: HALTED (kill switch or a HALTED breaker) > REDUCING
> ACTIVE. HALTED latches: no sequence of events leaves it except an operator release, and a release
is refused while the kill switch or a HALTED breaker is still in force.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from libs.common.contracts import BreakerCleared, BreakerTripped, TradingState, TradingStateChanged
from libs.common.contracts.base import BreakerEffect
from libs.common.contracts.risk import ActiveBreaker
from services.risk.breakers import BreakerResult, Prev

GLOBAL_EFFECTS = ("HALTED", "REDUCING")
AWAITING = "awaiting operator release"


def breaker_key(name: str, symbol: str | None = None, scope: str | None = None) -> str:
    return ":".join(x for x in (name, scope, symbol) if x)


@dataclass(frozen=True)
class Evaluated:
    """One breaker's result, with what it would do if it trips."""

    key: str
    name: str
    effect: BreakerEffect
    result: BreakerResult
    symbol: str | None = None
    scope: str | None = None


@dataclass
class BreakerBoard:
    active: dict[str, ActiveBreaker] = field(default_factory=dict)

    def prev(self, key: str) -> Prev | None:
        b = self.active.get(key)
        return Prev(b.since, b.until) if b else None

    def apply(
        self, results: list[Evaluated], now: datetime, evaluated_keys: set[str] | None = None
    ) -> list[BreakerTripped | BreakerCleared]:
        """Trip what newly refuses, clear what now allows; a key not evaluated this round is left alone."""
        events: list[BreakerTripped | BreakerCleared] = []
        for ev in results:
            cur = self.active.get(ev.key)
            if not ev.result.allowed:
                if cur is None:
                    self.active[ev.key] = ActiveBreaker(
                        breaker=ev.name,
                        effect=ev.effect,
                        reason=ev.result.reason,
                        symbol=ev.symbol,
                        scope=ev.scope,
                        since=now,
                        until=ev.result.until,
                    )
                    events.append(
                        BreakerTripped(
                            ts=now,
                            breaker=ev.name,
                            effect=ev.effect,
                            reason=ev.result.reason,
                            symbol=ev.symbol,
                            until=ev.result.until,
                        )
                    )
                elif cur.reason != ev.result.reason or cur.until != ev.result.until:
                    self.active[ev.key] = cur.model_copy(
                        update={"reason": ev.result.reason, "until": ev.result.until}
                    )
            elif cur is not None:
                del self.active[ev.key]
                events.append(
                    BreakerCleared(ts=now, breaker=ev.name, symbol=ev.symbol, reason=f"cleared: {cur.reason}")
                )
        return events

    def global_effect(self) -> TradingState | None:
        effects = {b.effect for b in self.active.values() if b.effect in GLOBAL_EFFECTS}
        return "HALTED" if "HALTED" in effects else ("REDUCING" if "REDUCING" in effects else None)

    def halting(self) -> list[ActiveBreaker]:
        return [b for b in self.active.values() if b.effect == "HALTED"]

    def for_symbol(self, symbol: str) -> list[ActiveBreaker]:
        return [b for b in self.active.values() if b.symbol == symbol and b.effect.endswith("_SYMBOL")]


@dataclass
class TradingStateMachine:
    state: TradingState = "ACTIVE"
    reason: str = ""
    since: datetime | None = None

    def desired(self, kill_engaged: bool, board: BreakerBoard) -> tuple[TradingState, str]:
        if kill_engaged:
            return "HALTED", "kill switch engaged"
        halting = board.halting()
        if halting:
            return "HALTED", "; ".join(sorted(f"{b.breaker}: {b.reason}" for b in halting))
        reducing = [b for b in board.active.values() if b.effect == "REDUCING"]
        if reducing:
            return "REDUCING", "; ".join(sorted(f"{b.breaker}: {b.reason}" for b in reducing))
        return "ACTIVE", ""

    def evaluate(self, kill_engaged: bool, board: BreakerBoard, now: datetime) -> TradingStateChanged | None:
        """Follow the breakers, except out of HALTED: that needs `release`."""
        state, reason = self.desired(kill_engaged, board)
        if self.state == "HALTED" and state != "HALTED":
            if not self.reason.startswith(AWAITING):
                self.reason = f"{AWAITING}; was: {self.reason}"
            return None
        return self._move(state, reason, now)

    def release(
        self, kill_engaged: bool, board: BreakerBoard, now: datetime
    ) -> tuple[TradingStateChanged | None, str]:
        """An operator release: leave HALTED if nothing halting is in force. Returns (event, refusal reason)."""
        state, reason = self.desired(kill_engaged, board)
        if state == "HALTED":
            return None, reason
        return self._move(state, reason or "released by operator", now), ""

    def _move(self, state: TradingState, reason: str, now: datetime) -> TradingStateChanged | None:
        if state == self.state:
            self.reason = reason or self.reason
            return None
        ev = TradingStateChanged(
            ts=now, state=state, previous=self.state, reason=reason or "conditions cleared"
        )
        self.state, self.reason, self.since = state, ev.reason, now
        return ev
