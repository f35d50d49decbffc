"""Risk's Prometheus metrics (`bnml_risk_*`): declared once, set from the values the core returns."""

from __future__ import annotations

from libs.common.contracts import AccountState, RiskVerdict, Signal, TradingStateChanged
from libs.common.metrics import ServiceMetrics
from libs.common.settings import RiskSettings
from libs.common.settings.risk import DEFAULT_EFFECTS

STATES = ("ACTIVE", "REDUCING", "HALTED")


class RiskMetrics:
    def __init__(self, m: ServiceMetrics, cfg: RiskSettings) -> None:
        self.m = m
        self.verdicts = m.counter("verdicts_total", "Verdicts published", ["outcome", "reason"])
        self.decision = m.histogram("decision_seconds", "Time to decide one signal (core)")
        self.signal_to_verdict = m.histogram(
            "signal_to_verdict_seconds", "Signal made to its verdict made (queueing in risk included)"
        )
        self.tick_to_verdict = m.histogram(
            "tick_to_verdict_seconds", "Event time of the signal's tick to its verdict made"
        )
        self.state = m.gauge("trading_state", "1 for the current trading state", ["state"])
        self.state_changes = m.counter("trading_state_changes_total", "Trading-state changes", ["state"])
        self.trips = m.counter("breaker_trips_total", "Breaker trips", ["breaker"])
        self.active = m.gauge("breakers_active", "Breakers in force", ["breaker"])
        self.equity = m.gauge("equity_usdt", "Equity by risk's own accounting, USDT")
        self.drawdown = m.gauge("drawdown_pct", "Drawdown from peak equity, percent")
        self.daily = m.gauge("daily_realized_usdt", "Realized P&L today, USDT")
        self.weekly = m.gauge("weekly_realized_usdt", "Realized P&L this week, USDT")
        self.vol = m.gauge("market_volatility_ratio", "Short over long realized volatility (highest symbol)")
        self.exposure = m.gauge("exposure_usdt", "Total position value, USDT")
        self.db_ok = m.gauge("database_ok", "1 while the last state write succeeded")
        self.kill = m.gauge(
            "kill_switch_engaged", "1 while the kill switch blocks trading (engaged or unknown)"
        )
        m.gauge(
            "daily_loss_budget_usdt", "risk.daily_loss_budget_usdt (the daily-loss breaker's budget)"
        ).set(float(cfg.daily_loss_budget_usdt))
        self.fills = m.counter("fills_applied_total", "Fills applied to risk's book", ["side"])
        self.writer = m.gauge("writer", "1 while this instance holds the single-writer lock")

    def trading_state(self, state: str) -> None:
        for s in STATES:
            self.state.labels(state=s).set(1 if s == state else 0)

    def state_changed(self, ev: TradingStateChanged) -> None:
        self.state_changes.labels(state=ev.state).inc()
        self.trading_state(ev.state)

    def account(self, snap: AccountState, kill_blocks: bool) -> None:
        self.equity.set(float(snap.equity_usdt))
        self.drawdown.set(snap.drawdown_pct)
        self.daily.set(float(snap.daily_realized_usdt))
        self.weekly.set(float(snap.weekly_realized_usdt))
        self.vol.set(snap.market_volatility_ratio)
        self.exposure.set(float(snap.total_exposure_usdt))
        self.kill.set(1 if kill_blocks else 0)
        self.trading_state(snap.trading_state)
        for name in DEFAULT_EFFECTS:  # every breaker, so a cleared one goes back to 0
            self.active.labels(breaker=name).set(sum(1 for b in snap.breakers if b.breaker == name))

    def verdict(self, sig: Signal, verdict: RiskVerdict) -> None:
        self.signal_to_verdict.observe((verdict.ts - sig.ts).total_seconds())
        if verdict.tick_ts is not None:
            self.tick_to_verdict.observe((verdict.ts - verdict.tick_ts).total_seconds())
        outcome = "approved" if verdict.approved else "refused"
        self.verdicts.labels(outcome=outcome, reason=verdict.reasons[0] if verdict.reasons else "").inc()
        self.m.count(f"verdicts_{outcome}")
