"""Risk decisions (pure core): every check returns a small result; `decide` turns a signal into a verdict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from libs.common.contracts import RiskVerdict, Signal
from libs.common.settings import RiskSettings


@dataclass(frozen=True)
class CheckResult:
    allowed: bool
    reason: str = ""
    until: datetime | None = None


ALLOW = CheckResult(True)


def kill_switch_check(engaged: bool) -> CheckResult:
    return CheckResult(False, "kill_switch_engaged") if engaged else ALLOW


def size_order(signal: Signal, equity: Decimal, cfg: RiskSettings, step: Decimal = Decimal("0.00001")) -> Decimal:
    """Notional = min(fraction of equity, max notional); quantity rounded down to the lot step."""
    notional = min(equity * cfg.order_fraction_of_equity, cfg.max_notional_usdt)
    return (notional / signal.price).quantize(step, rounding=ROUND_DOWN)


def max_notional_check(qty: Decimal, price: Decimal, cfg: RiskSettings) -> CheckResult:
    if qty <= 0:
        return CheckResult(False, "size_below_step")
    if qty * price > cfg.max_notional_usdt:
        return CheckResult(False, "max_notional_exceeded")
    return ALLOW


def decide(signal: Signal, *, kill_switch_engaged: bool, equity: Decimal, cfg: RiskSettings,
           now: datetime) -> RiskVerdict:
    """Approve or refuse one BUY/SELL signal. Refusals carry every reason that applied."""
    assert signal.side in ("BUY", "SELL")
    qty = size_order(signal, equity, cfg)
    results = [kill_switch_check(kill_switch_engaged), max_notional_check(qty, signal.price, cfg)]
    reasons = [r.reason for r in results if not r.allowed]
    approved = not reasons
    collar = Decimal("1.005") if signal.side == "BUY" else Decimal("0.995")
    return RiskVerdict(
        ts=now, signal_id=signal.id, symbol=signal.symbol, side=signal.side, approved=approved,
        quantity=qty if approved else Decimal("0"),
        price_limit=(signal.price * collar).quantize(Decimal("0.00000001")) if approved else Decimal("0"),
        reasons=reasons, expires_at=now + timedelta(seconds=cfg.verdict_ttl_s),
        trading_state="HALTED" if kill_switch_engaged else "ACTIVE", tick_ts=signal.tick_ts,
    )
