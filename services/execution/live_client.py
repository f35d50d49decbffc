"""The live broker's exchange client (shell): Binance Spot through ccxt async, every call through the one
adapter (`adapter.py` maps ccxt's errors and normalises its answers). The keys never reach a log line or an
error message.

An order's request checks its gate once more right before it leaves (after ccxt's rate limiter, which can
hold a request for a while) and is counted in the send fence (`fence.py`) until it finishes."""

from __future__ import annotations

import contextvars
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt
import tenacity

from libs.common.errors import TemporaryError
from libs.common.markets import Markets
from libs.common.settings.execution import ExecutionSettings
from services.execution.adapter import (
    ClockSkew,
    ExchangeOrder,
    ExchangeTrade,
    balances_from_ccxt,
    is_retryable,
    map_ccxt_error,
    order_from_ccxt,
    trade_from_ccxt,
)
from services.execution.broker import GateCheck
from services.execution.fence import SendFence

# The gate of the order being sent by this task, read again by the HTTP layer right before each request
# of `create_order` (after ccxt's rate limiter, which can hold a request for a while).
_ORDER_GATE: contextvars.ContextVar[GateCheck | None] = contextvars.ContextVar("order_gate", default=None)


class NotSent(Exception):
    """The gate closed while the request waited in ccxt (rate limiter): nothing left for the exchange."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def rebase_urls(urls_api: dict[str, Any], base: str) -> dict[str, Any]:
    """ccxt's `urls['api']` with every Binance host replaced by `base` (paths kept). Used only with
    `execution.live_api_url` (tests point it at the fake Binance server)."""
    out: dict[str, Any] = {}
    for k, v in urls_api.items():
        if isinstance(v, str):
            parts = urlsplit(v)
            if parts.scheme in ("http", "https"):
                out[k] = base.rstrip("/") + parts.path
            else:
                out[k] = v
        elif isinstance(v, dict):
            out[k] = rebase_urls(v, base)
        else:
            out[k] = v
    return out


class BinanceClient:
    """The ccxt exchange, the query retries and the typed answers; no journal, no decision."""

    def __init__(
        self, cfg: ExecutionSettings, secrets: tuple[str, str], fence: SendFence, metrics: Any
    ) -> None:
        self.cfg = cfg
        self._secrets = secrets
        self.ex = ccxt.binance(
            {
                "apiKey": secrets[0],
                "secret": secrets[1],
                "enableRateLimit": True,
                "timeout": cfg.request_timeout_ms,
                **({"rateLimit": cfg.live_rate_limit_ms} if cfg.live_rate_limit_ms is not None else {}),
            }
        )
        self.ex.options.update(
            {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
                "recvWindow": cfg.recv_window_ms,
                "warnOnFetchOpenOrdersWithoutSymbol": False,
                "defaultType": "spot",
            }
        )
        if cfg.live_api_url:
            self.ex.urls["api"] = rebase_urls(self.ex.urls["api"], cfg.live_api_url)
        self._guard_order_requests(fence)
        self.errors = metrics.counter("exchange_errors_total", "Exchange errors by kind", ["kind"])

    def _guard_order_requests(self, fence: SendFence) -> None:
        """Every HTTP request ccxt makes for an order send checks the order's gate once more, after the rate
        limiter and right before the request goes out, and is counted in the send fence until it finishes
        (the kill switch's notice waits for the fence; see fence.py). No await between check and entry."""
        plain = self.ex.fetch

        async def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
            gate = _ORDER_GATE.get()
            if gate is None or method.upper() != "POST":  # only a POST places an order
                return await plain(url, method, headers, body)
            g = gate()
            if not g.allowed:
                raise NotSent(g.reason)
            with fence.sending():
                return await plain(url, method, headers, body)

        self.ex.fetch = fetch

    # -- ccxt calls, through the one adapter -------------------------------------------------------
    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self.ex, method)(*args, **kwargs)
        except ccxt.BaseError as exc:
            err = map_ccxt_error(
                exc, secrets=self._secrets, headers=getattr(self.ex, "last_response_headers", None)
            )
            self.errors.labels(kind=type(err).__name__).inc()
            raise err from None

    async def call_retrying(self, method: str, *args: Any, attempts: int = 5, **kwargs: Any) -> Any:
        """For queries (never for sending an order): retry temporary errors (`adapter.is_retryable`) with
        exponential backoff and jitter, or the server's Retry-After; -1021 resynchronises the clock first."""

        async def once() -> Any:
            try:
                return await self.call(method, *args, **kwargs)
            except ClockSkew:
                await self.call("load_time_difference")
                raise

        async for attempt in tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=self._query_wait,
            retry=tenacity.retry_if_exception(is_retryable),
            reraise=True,
        ):
            with attempt:
                return await once()
        raise TemporaryError(f"{method} failed after {attempts} attempts")  # pragma: no cover (reraise)

    def _query_wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, ClockSkew):
            return 0.0  # resynchronised already: ask again at once
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after:
            return float(retry_after)
        cap = self.cfg.unknown_backoff_max_s
        return float(tenacity.wait_exponential_jitter(initial=0.25, max=cap, jitter=0.25)(state))

    async def create_order(self, gate: GateCheck | None, *args: Any) -> Any:
        """`create_order` with the order's gate visible to the HTTP layer for this call only (reset before
        the caller handles the outcome, so tasks it spawns, such as a resolver, never see it)."""
        if gate is None:  # a flatten order: the kill switch itself asked for it
            return await self.call("create_order", *args)
        token = _ORDER_GATE.set(gate)
        try:
            return await self.call("create_order", *args)
        finally:
            _ORDER_GATE.reset(token)

    # -- typed answers (adapter.py normalises ccxt's dicts once) -----------------------------------
    async def connect(self) -> Markets:
        """Markets and the clock offset; the live filters come from the exchange itself."""
        await self.call_retrying("load_markets")
        markets = Markets.from_ccxt(self.ex.markets, source="exchange")
        await self.call_retrying("load_time_difference")
        self.ex.options["adjustForTimeDifference"] = True
        return markets

    def listed(self, symbol: str) -> bool:
        return symbol in self.ex.markets

    async def order_by_client_id(self, symbol: str, coid: str, *, retrying: bool = False) -> ExchangeOrder:
        call = self.call_retrying if retrying else self.call
        return order_from_ccxt(await call("fetch_order", "", symbol, {"origClientOrderId": coid}))

    async def order_by_id(self, symbol: str, exchange_order_id: str) -> ExchangeOrder:
        return order_from_ccxt(await self.call_retrying("fetch_order", exchange_order_id, symbol))

    async def cancel_by_client_id(self, symbol: str, coid: str) -> ExchangeOrder:
        return order_from_ccxt(await self.call("cancel_order", "", symbol, {"origClientOrderId": coid}))

    async def cancel_by_id(self, symbol: str, exchange_order_id: str) -> ExchangeOrder:
        return order_from_ccxt(await self.call("cancel_order", exchange_order_id, symbol))

    async def open_orders(self, symbol: str) -> list[ExchangeOrder]:
        return [order_from_ccxt(o) for o in await self.call_retrying("fetch_open_orders", symbol)]

    async def trades(self, symbol: str, *args: Any) -> list[ExchangeTrade]:
        return [trade_from_ccxt(t) for t in await self.call_retrying("fetch_my_trades", symbol, *args)]

    async def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        return balances_from_ccxt(await self.call_retrying("fetch_balance"))

    async def resync_clock(self) -> None:
        await self.call_retrying("load_time_difference")

    async def close(self) -> None:
        await self.ex.close()
