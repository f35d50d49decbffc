"""Which risk event raises which alert, at which severity (pure: events in, `AlertAction` values out).

SEV-1 capital at risk: trading HALTED by the order loop or the drawdown breaker, the order-loop trip, the
drawdown trip, a SELL fill above the held quantity, the writer lock lost. SEV-2 degraded trading: any
other halt or REDUCING, any other breaker trip (except the quiet ones and the "no market data yet" hold
at start), a refused release, the live account unknown, risk's positions or realized P&L disagreeing
with execution's. INFO: trading ACTIVE again. The shell sends what these return (`Runtime.alert`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from libs.common.contracts import BreakerTripped, Fill, Severity, TradingStateChanged
from libs.common.settings.risk import DEFAULT_EFFECTS
from services.risk.book import FillOutcome

SEV1_BREAKERS = frozenset({"order_loop", "max_drawdown"})
QUIET_BREAKERS = frozenset({"cooldown_after_loss"})  # trips often by design: logged, not alerted
NO_DATA_YET = "no market data yet"  # the stale-data hold every start begins with
# verdict refusals that mean "a breaker or the trading state said no" (the runbook's symptom line)
BREAKER_REASONS = frozenset(DEFAULT_EFFECTS) | {"trading_reducing", "trading_halted", "kill_switch_engaged"}


@dataclass(frozen=True)
class AlertAction:
    severity: Severity
    title: str
    detail: str = ""
    dedup_key: str = ""


def trading_state(ev: TradingStateChanged) -> AlertAction:
    sev: Severity
    if ev.state == "ACTIVE":
        sev = "INFO"
    elif ev.state == "HALTED" and any(b in ev.reason for b in SEV1_BREAKERS):
        sev = "SEV-1"
    else:
        sev = "SEV-2"
    return AlertAction(
        sev,
        f"trading {ev.state}",
        f"{ev.previous} -> {ev.state}: {ev.reason}",
        f"risk:trading_state:{ev.state}",
    )


def breaker_tripped(ev: BreakerTripped) -> AlertAction | None:
    if ev.breaker == "order_loop":
        return AlertAction(
            "SEV-1", "order loop: trading HALTED (boucle ordres)", ev.reason, "risk:order_loop"
        )
    if ev.breaker in QUIET_BREAKERS or ev.reason == NO_DATA_YET:
        return None
    return AlertAction(
        "SEV-1" if ev.breaker in SEV1_BREAKERS else "SEV-2",
        f"breaker {ev.breaker} tripped ({ev.effect})",
        f"{ev.symbol or 'all symbols'}: {ev.reason}",
        f"risk:breaker:{ev.breaker}:{ev.symbol or ''}",
    )


def writer_lock_lost(instance: str, why: str) -> AlertAction:
    return AlertAction("SEV-1", "risk lost its writer lock", f"{instance}: {why}", "risk:writer-lock-lost")


def release_refused(refused: str) -> AlertAction:
    return AlertAction("SEV-2", "release refused: trading stays HALTED", refused)


def fill_alerts(fill: Fill, outcome: FillOutcome, pnl_divergence_usdt: Decimal) -> list[AlertAction]:
    """A SELL above what risk held (SEV-1); execution's realized P&L further than `pnl_divergence_usdt`
    from risk's own (SEV-2; a fill reporting 0 realized, e.g. a BUY, is not compared)."""
    out: list[AlertAction] = []
    if outcome.oversold > 0:
        out.append(
            AlertAction(
                "SEV-1",
                "SELL fill above the held quantity",
                f"{fill.symbol}: sold {fill.quantity}, risk held {outcome.closed_qty}",
            )
        )
    if (
        fill.realized_pnl_usdt != 0
        and abs(fill.realized_pnl_usdt - outcome.realized_own) > pnl_divergence_usdt
    ):
        out.append(
            AlertAction(
                "SEV-2",
                "realized P&L disagrees with execution",
                f"{fill.trade_id}: risk {outcome.realized_own}, execution {fill.realized_pnl_usdt}",
                "risk:pnl-divergence",
            )
        )
    return out


def account_unknown(why: str) -> AlertAction:
    return AlertAction("SEV-2", "risk: exchange account state unknown (HOLD)", why, "risk:account-unknown")


def positions_disagree(detail: str) -> AlertAction:
    return AlertAction("SEV-2", "risk and execution disagree on positions", detail, "risk:positions-mismatch")


def is_breaker_refusal(reasons: list[str]) -> bool:
    """A refusal the runbook lists as "risk budget/circuit breaker active"."""
    return not BREAKER_REASONS.isdisjoint(reasons)
