"""Builders for market_data tests: the ports a `BinanceSource` is given by its shell, without a service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from libs.common.clock import WALL, Clock
from libs.common.metrics import ServiceMetrics
from services.market_data.live import SourcePorts


async def _no_alert(severity: Any, title: str, detail: str = "", dedup_key: str = "") -> None:
    return None


async def _no_subscription(handler: Any) -> None:
    return None


async def _no_universe(symbols: list[str], reason: str) -> None:
    return None


def source_ports(
    metrics: ServiceMetrics,
    *,
    log: Any,
    symbols: Callable[[], list[str]],
    errors: Any,
    backoff_state: Any,
    clock: Clock = WALL,
    alert: Any = _no_alert,
    set_universe: Any = _no_universe,
    owned: Callable[[list[str]], list[str]] = lambda s: list(s),
) -> SourcePorts:
    return SourcePorts(
        clock=clock,
        log=log,
        metrics=metrics,
        alert=alert,
        subscribe_heartbeats=_no_subscription,
        symbols=symbols,
        set_universe=set_universe,
        owned=owned,
        errors=errors,
        backoff_state=backoff_state,
    )
