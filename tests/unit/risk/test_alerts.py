"""Which risk event raises which alert at which severity (services/risk/alerts.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from libs.common.contracts import BreakerTripped, TradingStateChanged
from services.risk import alerts
from services.risk.book import FillOutcome
from tests.unit.risk.conftest import T0, fill

D = Decimal


def state(to: str, reason: str, previous: str = "ACTIVE") -> TradingStateChanged:
    return TradingStateChanged(ts=T0, state=to, previous=previous, reason=reason)


def trip(breaker: str, reason: str = "over budget", effect: str = "HALTED", symbol: str | None = None):
    return BreakerTripped(ts=T0, breaker=breaker, effect=effect, reason=reason, symbol=symbol)


@pytest.mark.parametrize(
    ("to", "reason", "severity"),
    [
        ("ACTIVE", "breakers cleared", "INFO"),
        ("HALTED", "max_drawdown: 12 % from peak", "SEV-1"),
        ("HALTED", "order_loop: 31 attempts", "SEV-1"),
        ("HALTED", "kill switch engaged", "SEV-2"),
        ("REDUCING", "daily_loss: budget spent", "SEV-2"),
        ("REDUCING", "max_drawdown: 12 % from peak", "SEV-2"),  # a SEV-1 breaker only makes a halt SEV-1
    ],
)
def test_trading_state_severity(to, reason, severity):
    a = alerts.trading_state(state(to, reason, previous="REDUCING" if to == "ACTIVE" else "ACTIVE"))
    assert a.severity == severity
    assert a.title == f"trading {to}"
    assert a.dedup_key == f"risk:trading_state:{to}"
    assert reason in a.detail


def test_order_loop_trip_is_sev1_with_its_own_title():
    a = alerts.breaker_tripped(trip("order_loop", "31 attempts in 10 s"))
    assert a == alerts.AlertAction(
        "SEV-1", "order loop: trading HALTED (boucle ordres)", "31 attempts in 10 s", "risk:order_loop"
    )


def test_breaker_trips_sev1_sev2_and_quiet():
    dd = alerts.breaker_tripped(trip("max_drawdown"))
    assert dd is not None and dd.severity == "SEV-1" and dd.dedup_key == "risk:breaker:max_drawdown:"
    sym = alerts.breaker_tripped(trip("stale_data", "no tick for 6 s", "HOLD_SYMBOL", "BTC/USDT"))
    assert sym is not None and sym.severity == "SEV-2"
    assert (
        sym.title == "breaker stale_data tripped (HOLD_SYMBOL)" and sym.detail == "BTC/USDT: no tick for 6 s"
    )
    assert sym.dedup_key == "risk:breaker:stale_data:BTC/USDT"
    assert alerts.breaker_tripped(trip("daily_loss")).detail == "all symbols: over budget"
    assert alerts.breaker_tripped(trip("cooldown_after_loss")) is None  # quiet by design
    assert alerts.breaker_tripped(trip("stale_data", alerts.NO_DATA_YET, "HOLD_SYMBOL", "BTC/USDT")) is None


def test_fill_alerts_oversold_and_pnl_divergence():
    sell = fill("BTC/USDT", "SELL", "0.2", "60000", reported="5")
    ok = FillOutcome(realized_own=D("5.5"), realized_reported=D("5"), losing_trade=False, closed_qty=D("0.2"))
    assert alerts.fill_alerts(sell, ok, D("1")) == []
    far = FillOutcome(D("9"), D("5"), False, D("0.1"), oversold=D("0.1"))
    sev = [(a.severity, a.title) for a in alerts.fill_alerts(sell, far, D("1"))]
    assert sev == [
        ("SEV-1", "SELL fill above the held quantity"),
        ("SEV-2", "realized P&L disagrees with execution"),
    ]
    buy = fill("BTC/USDT", "BUY", "0.2", "60000")  # reports 0 realized: never compared
    assert alerts.fill_alerts(buy, FillOutcome(D("-3"), D("0"), False, D("0")), D("1")) == []


def test_the_other_alerts():
    assert alerts.writer_lock_lost("risk-1", "gone").severity == "SEV-1"
    assert alerts.release_refused("drawdown").severity == "SEV-2"
    assert alerts.account_unknown("stale").dedup_key == "risk:account-unknown"
    assert alerts.positions_disagree("BTC/USDT: risk 1, execution 0").severity == "SEV-2"


def test_breaker_refusals_are_told_apart():
    assert alerts.is_breaker_refusal(["daily_loss"])
    assert alerts.is_breaker_refusal(["price_collar", "kill_switch_engaged"])
    assert not alerts.is_breaker_refusal(["price_collar", "max_notional"])
