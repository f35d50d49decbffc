"""Risk's health and its database freshness (pure: the shell passes its clock's monotonic seconds)."""

from __future__ import annotations

from dataclasses import dataclass

from services.risk.core import RiskEngine


@dataclass
class DbHealth:
    """Fail closed: the database counts as available only within `stale_after_s` of the last write that
    succeeded; none yet, or a failure since, means every verdict is refused."""

    stale_after_s: float
    last_ok: float | None = None

    def failed(self) -> None:
        self.last_ok = None

    def succeeded(self, mono: float) -> None:
        self.last_ok = mono

    def fresh(self, mono: float) -> bool:
        return self.last_ok is not None and mono - self.last_ok < self.stale_after_s


def service_health(
    writer: bool,
    fenced: bool,
    standby_reason: str,
    kill_blocks: bool,
    kill_reason: str,
    engine: RiskEngine | None,
) -> tuple[str, str]:
    """(status, detail) for the heartbeat: a standby is ok, a fenced writer halted; then the kill switch,
    the trading state and the database."""
    if not writer:
        return ("halted", standby_reason) if fenced else ("ok", standby_reason)
    if kill_blocks:
        return "halted", kill_reason
    if engine is None:
        return "degraded", "starting"
    state = engine.sm.state
    if state == "HALTED":
        return "halted", engine.sm.reason
    if not engine.db_ok:
        return "degraded", "database unavailable"
    if state == "REDUCING":  # risk works as designed; the trading state is reported on its own
        return "ok", f"trading REDUCING: {engine.sm.reason}"[:200]
    return "ok", ""
