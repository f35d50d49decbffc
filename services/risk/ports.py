"""What risk's wiring objects share (the writer seat, the handlers, the upkeep): each is given these ports at
construction, never the service, so that no object reaches into another through a shared `self`."""

from __future__ import annotations

from dataclasses import dataclass

from libs.common.kill_switch import KillSwitchLatch
from libs.common.service import Runtime
from libs.common.settings import RiskSettings
from services.risk.core import RiskEngine
from services.risk.health import DbHealth
from services.risk.metrics import RiskMetrics
from services.risk.store import RiskStore


@dataclass(frozen=True)
class RiskPorts:
    rt: Runtime
    cfg: RiskSettings
    live: bool  # mode live: the exchange's account, not a configured or persisted one
    engine: RiskEngine
    store: RiskStore
    latch: KillSwitchLatch
    m: RiskMetrics
    db: DbHealth
