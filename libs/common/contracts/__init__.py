"""Every message on the bus, as frozen pydantic v2 models (see `libs.common.subjects` for where each goes)."""

from libs.common.contracts.base import SERVICES, Message, Money, new_id, utcnow
from libs.common.contracts.control import TradingControlCommand, TradingControlResult
from libs.common.contracts.execution import Fill, OrderEvent, OrderStatus
from libs.common.contracts.market import Candle, MarketStatus, Tick, UniverseChanged
from libs.common.contracts.ops import Alert, DeadLetter, Heartbeat, Severity, ShardInfo
from libs.common.contracts.risk import (
    AccountState,
    BreakerCleared,
    BreakerTripped,
    KillSwitchAcknowledged,
    KillSwitchCommand,
    RiskVerdict,
    TradingState,
    TradingStateChanged,
)
from libs.common.contracts.signal import DriftStatus, Signal

__all__ = [
    "SERVICES",
    "AccountState",
    "Alert",
    "BreakerCleared",
    "BreakerTripped",
    "Candle",
    "DeadLetter",
    "DriftStatus",
    "Fill",
    "Heartbeat",
    "KillSwitchAcknowledged",
    "KillSwitchCommand",
    "MarketStatus",
    "Message",
    "Money",
    "OrderEvent",
    "OrderStatus",
    "RiskVerdict",
    "Severity",
    "ShardInfo",
    "Signal",
    "Tick",
    "TradingControlCommand",
    "TradingControlResult",
    "TradingState",
    "TradingStateChanged",
    "UniverseChanged",
    "new_id",
    "utcnow",
]
