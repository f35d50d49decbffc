"""Operator controls applied by risk (pure: the engine's state and `now` in, values out; no I/O).

- pause: a breaker of risk's own board, `operator_pause`, effect REDUCING, until resumed. Trading state is the
  most severe effect in force, so a pause under a halt stays a halt, and it survives a restart like any breaker.
- resume: clears `operator_pause`; trading goes back to what the other breakers say (maybe still REDUCING).
- exit: a SELL signal for the symbol handed to `RiskEngine.decide`, so it passes every gate a model's SELL
  does (kill switch, database, account known, market data, collar, rate limits, exchange filters, the
  max_notional cap per order); the verdict goes out like any other and execution never sees anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from libs.common.contracts import (
    RiskVerdict,
    Signal,
    TradingControlCommand,
    TradingControlResult,
    TradingState,
)
from services.risk.breakers import BreakerResult
from services.risk.core import Event, RiskEngine
from services.risk.state import Evaluated

PAUSE = "operator_pause"
EXIT_MODEL = "operator_exit"


@dataclass(frozen=True)
class ControlOutcome:
    accepted: bool
    detail: str
    events: list[Event] = field(default_factory=list)
    verdict: RiskVerdict | None = None
    remaining: Decimal | None = None


def apply_control(engine: RiskEngine, cmd: TradingControlCommand, now: datetime) -> ControlOutcome:
    if cmd.action == "pause":
        return pause(engine, cmd, now)
    if cmd.action == "resume":
        return resume(engine, cmd, now)
    return exit_position(engine, cmd, now)


def _state_events(engine: RiskEngine, events: list[Event], now: datetime) -> list[Event]:
    st = engine.sm.evaluate(engine.kill_engaged, engine.board, now)
    return events + ([st] if st else [])


def pause(engine: RiskEngine, cmd: TradingControlCommand, now: datetime) -> ControlOutcome:
    if PAUSE in engine.board.active:
        return ControlOutcome(True, f"already paused: {engine.board.active[PAUSE].reason}")
    why = BreakerResult(False, f"paused by {cmd.actor}: {cmd.reason}")
    events: list[Event] = list(engine.board.apply([Evaluated(PAUSE, PAUSE, "REDUCING", why)], now))
    return ControlOutcome(True, "new entries paused; exits still allowed", _state_events(engine, events, now))


def resume(engine: RiskEngine, cmd: TradingControlCommand, now: datetime) -> ControlOutcome:
    if PAUSE not in engine.board.active:
        return ControlOutcome(True, "not paused")
    events: list[Event] = list(
        engine.board.apply([Evaluated(PAUSE, PAUSE, "REDUCING", BreakerResult(True))], now)
    )
    events = _state_events(engine, events, now)
    state, reason = engine.sm.state, engine.sm.reason
    detail = "entries resumed" if state == "ACTIVE" else f"pause lifted; trading stays {state}: {reason}"
    return ControlOutcome(True, detail, events)


def exit_position(engine: RiskEngine, cmd: TradingControlCommand, now: datetime) -> ControlOutcome:
    symbol = cmd.symbol or ""
    held = engine.book.positions.get(symbol, Decimal(0))
    last = engine.book.last_price.get(symbol)
    if held <= 0:
        return ControlOutcome(False, f"no_position: risk's book holds no {symbol}")
    if last is None:
        return ControlOutcome(False, f"no_market_data: no price for {symbol} yet")
    sig = Signal(
        ts=now,
        id=cmd.id,
        symbol=symbol,
        side="SELL",
        probability=1.0,
        model_version=EXIT_MODEL,
        price=last,
        reason=f"operator exit by {cmd.actor}: {cmd.reason}"[:500],
    )
    decision = engine.decide(sig, now)
    v = decision.verdict
    if not v.approved:
        return ControlOutcome(False, ", ".join(v.reasons), decision.events, v, held)
    remaining = held - v.quantity
    detail = f"SELL {v.quantity} {symbol} at worst {v.price_limit}" + (
        f"; {remaining} left (one order is capped by max_notional): exit again" if remaining > 0 else ""
    )
    return ControlOutcome(True, detail, decision.events, v, remaining)


def control_result(
    service: str, cmd: TradingControlCommand, out: ControlOutcome, trading_state: TradingState, now: datetime
) -> TradingControlResult:
    v = out.verdict
    return TradingControlResult(
        ts=now,
        command_id=cmd.id,
        service=service,
        action=cmd.action,
        accepted=out.accepted,
        detail=out.detail[:1000],
        trading_state=trading_state,
        verdict_id=v.id if v is not None and v.approved else None,
        quantity=v.quantity if v is not None and v.approved else None,
        remaining=out.remaining,
    )
