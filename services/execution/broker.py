"""The broker port: what the execution shell asks of an exchange, paper (`paper_broker.py`) or live
(`live.py`), and what a broker is given to do it (`BrokerPorts`), instead of a reference to the service.

Rules every broker keeps (the shell relies on them):
- `place` is called under the service lock with a journaled order (committed before anything is sent); with
  a gate it checks it immediately before the request leaves and counts the request in the send fence;
  without one (a flatten) the kill switch itself asked for it. It journals the outcome, publishes it, and
  returns the journal status.
- `sweep` cancels every open order and returns how many are still open (any doubt counts as open).
- `start` resolves what a previous run left open before the first verdict is consumed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from libs.common.clock import Clock
from libs.common.contracts import RiskVerdict, Severity, Tick
from libs.common.markets import Markets
from libs.common.settings.execution import ExecutionSettings
from services.execution.core import Gate
from services.execution.fence import SendFence
from services.execution.journal import Journal, NewOrder
from services.execution.ledger import Ledger
from services.execution.publish import Publisher

GateCheck = Callable[[], Gate]
"""The order's gate, checked again right before the request leaves (`may_send` on the current state)."""


class Holds:
    """Symbols held by an order with an unknown outcome (no new order on them until the exchange answers)."""

    def __init__(self, gauge: Any) -> None:
        self.held: dict[str, str] = {}  # symbol -> why
        self._gauge = gauge

    def hold(self, symbol: str, coid: str) -> None:
        self.held[symbol] = f"unknown outcome of {coid}"
        self._gauge.set(len(self.held))

    def release(self, symbol: str, coid: str) -> None:
        if self.held.get(symbol, "").endswith(coid):
            self.held.pop(symbol, None)
        self._gauge.set(len(self.held))

    def why(self, symbol: str) -> str:
        return self.held.get(symbol, "")


@dataclass
class BrokerPorts:
    """Everything a broker uses, passed in by the shell."""

    journal: Journal
    ledger: Ledger
    cfg: ExecutionSettings
    clock: Clock
    log: Any
    instance: str
    lock: asyncio.Lock  # the service lock: every send, fill, cancel and sweep happens under it
    fence: SendFence
    publisher: Publisher
    holds: Holds
    alert: Callable[[Severity, str, str], Awaitable[None]]
    spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]]
    metrics: Any  # the service's ServiceMetrics (brokers declare their own counters on it)
    kill_switch_blocks: Callable[[], bool]
    is_writer: Callable[[], bool]
    tick_for: Callable[[str], Tick | None]
    symbols: list[str] = field(default_factory=list)
    markets: Markets | None = None


class Broker(Protocol):
    markets: (
        Markets | None
    )  # the exchange filters the broker sends with (flatten sizes are rounded with them)
    knows_every_outcome: bool  # paper: always; live: an order may have an unknown outcome

    async def start(self) -> None: ...

    async def place(
        self, order: NewOrder, gate: GateCheck | None, verdict: RiskVerdict | None = None
    ) -> str: ...

    async def sweep(self) -> int: ...

    async def close(self) -> None: ...
