"""FakeBinance: an aiohttp app on 127.0.0.1 that speaks Binance Spot REST + websocket streams.

    async with FakeBinance() as fake:            # inside a running loop (pytest-asyncio)
        ex = make_exchange(fake)                  # the real ccxt.async_support.binance, URLs pointed here
        ...
    fake = FakeBinance.run_in_thread()            # from sync code / for a service subprocess
    fake.close()

See README.md in this package for the whole API.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from tests.fakes.binance.engine import INTERVALS_MS, BinanceError, Engine, Order, PublicTrade, fmt, mandatory
from tests.fakes.binance.faults import Fault, Faults
from tests.fakes.binance.markets import exchange_info

DEFAULT_API_KEY = "fake-binance-api-key-0123456789"
DEFAULT_SECRET = "fake-binance-secret-0123456789"

GATEWAY_5XX_BODY = (
    "<html><head><title>{s} Error</title></head><body><center><h1>{s} Error</h1></center></body></html>"
)


def request_weight(method: str, path: str, params: dict) -> int:
    """Binance's request weights for the endpoints the fake serves (others count 1)."""
    one = bool(params.get("symbol"))
    if path == "/api/v3/exchangeInfo":
        return 20
    if path == "/api/v3/ticker/24hr":
        return 2 if one else (40 if params.get("symbols") else 80)
    if path in ("/api/v3/ticker/bookTicker", "/api/v3/ticker/price"):
        return 2 if one else 4
    if path == "/api/v3/depth":
        limit = int(params.get("limit") or 100) if str(params.get("limit") or "100").isdigit() else 100
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    if path in ("/api/v3/klines", "/api/v3/uiKlines"):
        return 2
    if path in ("/api/v3/account", "/api/v3/myTrades", "/api/v3/allOrders"):
        return 20
    if path == "/api/v3/openOrders":
        return 6 if one else 80
    if path == "/api/v3/order" and method == "GET":
        return 4
    return 1


def signed_payload(raw_query: str, raw_body: str) -> str:
    """What Binance signs: the raw query string concatenated with the raw body, without `signature`."""

    def strip(s: str) -> str:
        return "&".join(part for part in s.split("&") if part and not part.startswith("signature="))

    return strip(raw_query) + strip(raw_body)


def expected_signature(secret: str, raw_query: str, raw_body: str = "") -> str:
    return hmac.new(secret.encode(), signed_payload(raw_query, raw_body).encode(), hashlib.sha256).hexdigest()


@dataclass
class RequestRecord:
    """One REST request as the fake saw it (for backoff / rate assertions)."""

    ts_ms: int
    monotonic: float
    method: str
    path: str
    params: dict
    status: int = 0
    fault: str | None = None
    received_at: float = field(
        default_factory=time.time
    )  # wall clock (s): compare with a service's timestamps


class _WsClient:
    def __init__(self, ws: web.WebSocketResponse, transport, combined: bool) -> None:
        self.ws, self.transport, self.combined = ws, transport, combined
        self.streams: set[str] = set()
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.sent = 0
        self.api = False
        self.user_sub: int | None = None


def _norm_stream(s: str) -> str:
    """Stream names are case-insensitive for the symbol; `@100ms`/`@1000ms` speed suffixes are dropped."""
    sym, _, rest = s.partition("@")
    for suffix in ("@100ms", "@1000ms", "@1s"):
        if rest.endswith(suffix):
            rest = rest[: -len(suffix)]
    return f"{sym.lower()}@{rest}" if rest else sym.lower()


class FakeBinance:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        balances: dict | None = None,
        api_key: str = DEFAULT_API_KEY,
        secret: str = DEFAULT_SECRET,
        data_dir: Path | None = None,
        stream_interval: float | None = None,
        book_levels: int = 20,
        weight_limit_1m: int | None = None,
        order_limit_10s: int | None = None,
        real_klines: bool = True,
    ) -> None:
        self.engine = Engine(
            data_dir=data_dir, balances=balances, book_levels=book_levels, real_klines=real_klines
        )
        self.engine.listener = self._on_event
        self.faults = Faults()
        self.api_keys: dict[str, str] = {api_key: secret}
        self.api_key, self.secret = api_key, secret
        self.host, self._want_port = host, port
        self.port = 0
        self.requests: list[RequestRecord] = []
        self.internal_errors: list[str] = []
        self.stream_interval = stream_interval
        self.refuse_websockets = False
        self.mute_streams = False
        self.weight_limit_1m = weight_limit_1m
        self.order_limit_10s = order_limit_10s
        # klines the exchange does not have (its outages): [start_ms, end_ms) of open times left out, as
        # Binance does: a page skips the hole and still holds up to `limit` bars
        self.kline_gaps: list[tuple[int, int]] = []
        self._order_times: deque[float] = deque()
        self._next_subscription_id = 0
        self.ws_connections_total = 0
        self._clients: set[_WsClient] = set()
        self._weight: deque[tuple[float, int]] = deque()
        self._depth_state: dict[str, tuple[int, dict[str, str], dict[str, str]]] = {}
        for sym in self.engine.specs:
            self._remember_depth(sym)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._bg: list[asyncio.Task] = []
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> FakeBinance:
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._want_port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._bg.append(asyncio.ensure_future(self._ticker_loop()))
        return self

    async def stop(self) -> None:
        if self._runner is None:
            return
        assert self._closing is not None
        self._closing.set()
        for t in self._bg:
            t.cancel()
        for c in list(self._clients):
            c.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await c.ws.close()
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> FakeBinance:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @classmethod
    def run_in_thread(cls, **kwargs) -> FakeBinance:
        """Start a fake in its own thread and event loop (for sync code or a service subprocess)."""
        fake = cls(**kwargs)
        ready = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(fake.start())
            except BaseException as e:  # noqa: BLE001 - reported to the caller
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(fake.stop())
            loop.close()

        fake._thread = threading.Thread(target=main, name="fake-binance", daemon=True)
        fake._thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]
        return fake

    def close(self) -> None:
        """Stop a fake started with `run_in_thread()`."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)
        self._thread = None

    # -- addresses ----------------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # -- control API (any thread) -------------------------------------------------------------------
    @property
    def clock(self):
        return self.engine.clock

    @property
    def orders(self) -> list[Order]:
        return self.engine.orders

    @property
    def orders_received(self) -> list[dict]:
        return self.engine.orders_received

    @property
    def my_trades(self) -> list[dict]:
        return self.engine.my_trades

    def set_book(self, symbol: str, bid, ask, bid_qty=None, ask_qty=None) -> None:
        self.engine.set_book(symbol, bid, ask, bid_qty, ask_qty)

    def set_price(self, symbol: str, price, qty=None) -> None:
        self.engine.set_price(symbol, price, qty)

    def add_trade(self, symbol: str, price, qty, buyer_maker: bool = False) -> PublicTrade:
        return self.engine.add_trade(symbol, price, qty, buyer_maker)

    def set_ticker(self, symbol: str, **fields) -> None:
        self.engine.set_ticker(symbol, **fields)

    def set_balance(self, asset: str, free, locked=0) -> None:
        self.engine.set_balance(asset, free, locked)

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        return self.engine.balance(asset)

    def orders_for(self, client_order_id: str) -> list[Order]:
        return self.engine.orders_for(client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return self.engine.open_orders(symbol)

    def requests_to(self, path: str, method: str | None = None) -> list[RequestRecord]:
        return [r for r in list(self.requests) if r.path == path and (method is None or r.method == method)]

    def subscriptions(self) -> set[str]:
        out: set[str] = set()
        for c in list(self._clients):
            out |= c.streams
        return out

    @property
    def ws_client_count(self) -> int:
        return len(self._clients)

    async def wait_subscribed(self, stream: str, timeout: float = 10.0) -> None:
        """Wait until some websocket client is subscribed to `stream` (e.g. "btcusdt@bookTicker")."""
        want = _norm_stream(stream)
        deadline = time.monotonic() + timeout
        while want not in self.subscriptions():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nobody subscribed to {want}; subscriptions: {sorted(self.subscriptions())}"
                )
            await asyncio.sleep(0.02)

    def drop_websockets(self, abrupt: bool = True) -> int:
        """Close every websocket (abrupt: TCP abort, else a 1001 close frame). Returns how many."""
        clients = list(self._clients)

        def do() -> None:
            for c in clients:
                if abrupt and c.transport is not None:
                    c.transport.abort()
                else:
                    c.queue.put_nowait(None)
                self._clients.discard(c)

        self._call_in_loop(do)
        return len(clients)

    def _call_in_loop(self, fn, *args) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    # -- HTTP ---------------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if path == "/ws" or path.startswith("/ws/") or path == "/stream":
                return await self._ws_handler(request)
            if path == "/ws-api/v3":
                return await self._ws_handler(request, api=True)
        method = request.method
        if path.startswith("/fake/"):
            return await self._control(request)
        raw_query = request.rel_url.raw_query_string
        raw_body = ""
        if method in ("POST", "PUT", "DELETE") and request.can_read_body:
            raw_body = await request.text()
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        if raw_body and "json" not in request.content_type:
            params.update(parse_qsl(raw_body, keep_blank_values=True))
        rec = RequestRecord(self.clock.now_ms(), time.monotonic(), method, path, params)
        self.requests.append(rec)
        if len(self.requests) > 200_000:  # long soak runs: keep the recent history only
            del self.requests[:50_000]
        weight = self._add_weight(request_weight(method, path, params))
        headers = {"X-MBX-USED-WEIGHT-1M": str(weight), "Content-Type": "application/json;charset=UTF-8"}
        is_new_order = (method, path) == ("POST", "/api/v3/order")
        if is_new_order:
            mono = time.monotonic()
            self._order_times.append(mono)
            while self._order_times and self._order_times[0] < mono - 10:
                self._order_times.popleft()
            headers["X-MBX-ORDER-COUNT-10S"] = str(len(self._order_times))

        def answer(status: int, body, extra: dict | None = None) -> web.Response:
            rec.status = status
            text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
            return web.Response(status=status, text=text, headers={**headers, **(extra or {})})

        now = self.clock.now_ms()
        if self.faults.banned_until_ms > now:
            rec.fault = "banned"
            return answer(
                418,
                self._ban_body(self.faults.banned_until_ms),
                {"Retry-After": str(max(1, (self.faults.banned_until_ms - now + 999) // 1000))},
            )
        if self.weight_limit_1m is not None and weight > self.weight_limit_1m:
            rec.fault = "weight_limit"
            retry = max(1, int(60 - (time.monotonic() - self._weight[0][0])) + 1)
            return answer(
                429,
                {
                    "code": -1003,
                    "msg": f"Too much request weight used; current limit is "
                    f"{self.weight_limit_1m} request weight per 1 MINUTE. Please use WebSocket Streams "
                    "for live updates to avoid polling the API.",
                },
                {"Retry-After": str(retry)},
            )
        if (
            is_new_order
            and self.order_limit_10s is not None
            and len(self._order_times) > self.order_limit_10s
        ):
            rec.fault = "order_limit"
            return answer(
                429,
                {
                    "code": -1015,
                    "msg": f"Too many new orders; current limit is "
                    f"{self.order_limit_10s} orders per TEN_SECONDS.",
                },
                {"Retry-After": "10"},
            )
        fault = self.faults.take(method, path, params)
        post_fault: Fault | None = None
        if fault is not None:
            rec.fault = fault.kind
            fp, k = fault.params, fault.kind
            if k == "429":
                return answer(
                    429,
                    {
                        "code": -1003,
                        "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 "
                        "requests per minute. Please use WebSocket Streams for live updates to avoid "
                        "polling the API.",
                    },
                    {"Retry-After": str(fp.get("retry_after", 1))},
                )
            if k == "418":
                ban = int(fp.get("ban_seconds", 0))
                until = now + max(ban, int(fp.get("retry_after", 1))) * 1000
                if ban:
                    self.faults.banned_until_ms = until
                return answer(
                    418, self._ban_body(until), {"Retry-After": str(fp.get("retry_after", max(ban, 1)))}
                )
            if k == "5xx":
                return self._answer_5xx(answer, fp)
            if k == "clock_skew":
                return answer(
                    400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
                )
            if k == "insufficient_balance":
                return answer(
                    400, {"code": -2010, "msg": "Account has insufficient balance for requested action."}
                )
            if k == "filter_failure":
                return answer(400, {"code": -1013, "msg": f"Filter failure: {fp.get('filter', 'LOT_SIZE')}"})
            if k == "order_not_found":
                return answer(400, {"code": -2013, "msg": "Order does not exist."})
            if k == "error":
                return answer(
                    int(fp.get("status", 400)),
                    {
                        "code": int(fp.get("code", -1000)),
                        "msg": fp.get("msg", "An unknown error occurred while processing the request."),
                    },
                )
            if k == "delay":
                await self._sleep(float(fp.get("seconds", 2)))
            elif k == "disconnect" and not fp.get("accept", False):
                return self._disconnect(request, rec)
            elif k == "unknown_status" and not fp.get("accept", True):
                return self._answer_unknown(answer, fp)
            else:
                post_fault = fault
        try:
            status, body = await self._dispatch_rest(request, method, path, params, raw_query, raw_body)
        except BinanceError as e:
            status, body = e.status, e.body()
        except (ValueError, ArithmeticError) as e:  # a malformed number in a parameter
            status, body = 400, {"code": -1100, "msg": f"Illegal characters found in a parameter. ({e})"}
        except Exception as e:  # a bug in the fake: visible to tests through fake.internal_errors
            self.internal_errors.append(f"{method} {path}: {e!r}")
            status, body = (
                500,
                {"code": -1000, "msg": "An unknown error occurred while processing the request."},
            )
        if post_fault is not None:
            k, fp = post_fault.kind, post_fault.params
            if k == "malformed":
                text = json.dumps(body, separators=(",", ":"))
                return answer(200, text[: max(1, len(text) // 2)])
            if k == "result_only" and isinstance(body, dict):  # Binance's RESULT answer: no `fills`
                body = {key: v for key, v in body.items() if key != "fills"}
            if k == "accept_timeout":
                await self._sleep(float(fp.get("seconds", 60)))
            elif k == "accept_5xx":
                return self._answer_5xx(answer, fp)
            elif k == "unknown_status":
                return self._answer_unknown(answer, fp)
            elif k == "disconnect":
                return self._disconnect(request, rec)
        return answer(status, body)

    async def _control(self, request: web.Request) -> web.Response:
        """Control endpoints for a fake running in another process (`python -m tests.fakes.binance`)."""
        body = await request.json() if request.can_read_body else {}
        name, m = request.path[len("/fake/") :], request.method
        out: object = {"ok": True}
        try:
            if (m, name) == ("POST", "book"):
                self.set_book(
                    body["symbol"], body["bid"], body["ask"], body.get("bid_qty"), body.get("ask_qty")
                )
            elif (m, name) == ("POST", "price"):
                self.set_price(body["symbol"], body["price"], body.get("qty"))
            elif (m, name) == ("POST", "trade"):
                self.add_trade(
                    body["symbol"], body["price"], body["qty"], bool(body.get("buyer_maker", False))
                )
            elif (m, name) == ("POST", "ticker"):
                self.set_ticker(body.pop("symbol"), **body)
            elif (m, name) == ("POST", "balance"):
                self.set_balance(body["asset"], body["free"], body.get("locked", 0))
            elif (m, name) == ("POST", "faults"):
                self.faults.next(body.pop("endpoint"), body.pop("kind"), body.pop("count", 1), **body)
            elif (m, name) == ("DELETE", "faults"):
                self.faults.clear()
            elif (m, name) == ("POST", "drop_websockets"):
                out = {"dropped": self.drop_websockets(bool(body.get("abrupt", True)))}
            elif (m, name) == ("POST", "refuse_websockets"):
                self.refuse_websockets = bool(body.get("refuse", True))
            elif (m, name) == ("POST", "clock"):
                if "offset_ms" in body:
                    self.clock.offset_ms = int(body["offset_ms"])
                if "freeze_ms" in body:
                    self.clock.freeze(body["freeze_ms"])
                if "advance_ms" in body:
                    self.clock.advance(int(body["advance_ms"]))
            elif (m, name) == ("GET", "orders"):
                out = [o.as_query() for o in list(self.orders)]
            elif (m, name) == ("GET", "orders_received"):
                out = list(self.orders_received)
            elif (m, name) == ("GET", "requests"):
                out = [
                    {
                        "ts_ms": r.ts_ms,
                        "method": r.method,
                        "path": r.path,
                        "status": r.status,
                        "fault": r.fault,
                        "received_at": r.received_at,
                    }
                    for r in list(self.requests)
                ]
            else:
                return web.json_response({"error": f"no control endpoint {m} /fake/{name}"}, status=404)
        except (KeyError, ValueError, AttributeError, BinanceError) as e:
            return web.json_response({"error": repr(e)}, status=400)
        return web.json_response(out)

    def _answer_5xx(self, answer, fp: dict) -> web.Response:
        status = int(fp.get("status", 503))
        body = fp.get("body")
        if body is None:
            body = GATEWAY_5XX_BODY.format(s=status)
        r = answer(status, body)
        if isinstance(body, str) and not body.startswith("{"):
            r.content_type = "text/html"
        return r

    def _answer_unknown(self, answer, fp: dict) -> web.Response:
        code = int(fp.get("code", -1006))
        msg = (
            "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
            if code == -1007
            else "An unexpected response was received from the message bus. Execution status unknown."
        )
        return answer(int(fp.get("status", 503)), {"code": code, "msg": msg})

    @staticmethod
    def _ban_body(until_ms: int) -> dict:
        return {
            "code": -1003,
            "msg": f"Way too much request weight used; IP banned until {until_ms}. "
            "Please use WebSocket Streams for live updates to avoid bans.",
        }

    def _disconnect(self, request: web.Request, rec: RequestRecord) -> web.Response:
        rec.status = -1
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)

    async def _sleep(self, seconds: float) -> None:
        assert self._closing is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _add_weight(self, w: int = 1) -> int:
        now = time.monotonic()
        self._weight.append((now, w))
        while self._weight and self._weight[0][0] < now - 60:
            self._weight.popleft()
        return sum(x for _, x in self._weight)

    # -- REST routes ----------------------------------------------------------------------------------
    async def _dispatch_rest(
        self, request: web.Request, method: str, path: str, params: dict, raw_query: str, raw_body: str
    ) -> tuple[int, object]:
        e = self.engine
        route = (method, path)
        public = PUBLIC_ROUTES.get(route)
        if public is not None:
            return 200, public(self, params)
        private = PRIVATE_ROUTES.get(route)
        if private is not None:
            self._authenticate(request, params, raw_query, raw_body)
            return 200, private(self, params)
        if path.startswith(("/fapi/", "/dapi/", "/eapi/")) and path.endswith("/exchangeInfo"):
            return 200, {
                "timezone": "UTC",
                "serverTime": e.clock.now_ms(),
                "rateLimits": [],
                "exchangeFilters": [],
                "assets": [],
                "symbols": [],
                "optionSymbols": [],
            }
        return 404, {"code": -1000, "msg": f"fake binance: no route for {method} {path}"}

    def _authenticate(self, request: web.Request, params: dict, raw_query: str, raw_body: str) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise BinanceError(-2014, "API-key format invalid.", 401)
        secret = self.api_keys.get(key)
        if secret is None:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        sig = params.get("signature")
        if not sig:
            raise mandatory("signature")

        if not hmac.compare_digest(expected_signature(secret, raw_query, raw_body), sig.lower()):
            raise BinanceError(-1022, "Signature for this request is not valid.")
        self._check_timestamp(params)

    def _check_timestamp(self, params: dict) -> None:
        ts = str(params.get("timestamp") or "")
        if not ts.isdigit():
            raise mandatory("timestamp")
        recv = int(params.get("recvWindow") or 5000)
        if recv > 60000:
            raise BinanceError(-1131, "recvWindow must be less than 60000")
        now = self.clock.now_ms()
        if int(ts) > now + 1000:
            raise BinanceError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - int(ts) > recv:
            raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")

    # public
    def _ping(self, p: dict) -> object:
        return {}

    def _time(self, p: dict) -> object:
        return {"serverTime": self.clock.now_ms()}

    def _symbols_param(self, p: dict) -> list[str] | None:
        if p.get("symbol"):
            self.engine.spec(p["symbol"])
            return [p["symbol"]]
        if p.get("symbols"):
            try:
                syms = json.loads(p["symbols"])
                assert isinstance(syms, list)
            except Exception:
                raise BinanceError(
                    -1100,
                    "Illegal characters found in parameter 'symbols'; legal range is "
                    '\'^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$\'.',
                ) from None
            for s in syms:
                self.engine.spec(s)
            return syms
        return None

    def _exchange_info(self, p: dict) -> object:
        return exchange_info(self.engine.specs, self.clock.now_ms(), self._symbols_param(p))

    def _each(self, p: dict, fn) -> object:
        syms = self._symbols_param(p)
        if p.get("symbol"):
            return fn(p["symbol"])
        return [fn(s) for s in (syms or list(self.engine.specs))]

    def _ticker_24hr(self, p: dict) -> object:
        return self._each(p, self.engine.ticker_24hr)

    def _book_ticker(self, p: dict) -> object:
        return self._each(p, self.engine.book_ticker)

    def _price(self, p: dict) -> object:
        return self._each(p, lambda s: {"symbol": s, "price": fmt(self.engine.tickers[s].last)})

    def _avg_price(self, p: dict) -> object:
        if not p.get("symbol"):
            raise mandatory("symbol")
        b = self.engine.books[self.engine.spec(p["symbol"]).symbol]
        return {"mins": 5, "price": fmt((b.bid + b.ask) / 2), "closeTime": self.clock.now_ms()}

    def _klines(self, p: dict) -> object:
        if not p.get("symbol"):
            raise mandatory("symbol")
        if not p.get("interval"):
            raise mandatory("interval")
        start = int(p["startTime"]) if p.get("startTime") else None
        end = int(p["endTime"]) if p.get("endTime") else None
        limit = max(1, min(int(p.get("limit") or 500), 1000))  # Binance: default 500, at most 1000
        rows = self.engine.klines(p["symbol"], p["interval"], start, end, limit)
        if not self.kline_gaps:
            return rows
        out = [r for r in rows if not self._in_kline_gap(r[0])]
        while start is not None and len(out) < limit and len(rows) == limit:
            rows = self.engine.klines(p["symbol"], p["interval"], rows[-1][0] + 1, end, limit)
            out += [r for r in rows if not self._in_kline_gap(r[0])]
        return out[:limit]

    def _in_kline_gap(self, open_ms: int) -> bool:
        return any(a <= open_ms < b for a, b in self.kline_gaps)

    def _depth(self, p: dict) -> object:
        if not p.get("symbol"):
            raise mandatory("symbol")
        return self.engine.depth(p["symbol"], min(int(p.get("limit") or 100), 5000))

    def _trades(self, p: dict) -> object:
        if not p.get("symbol"):
            raise mandatory("symbol")
        sym = self.engine.spec(p["symbol"]).symbol
        limit = min(int(p.get("limit") or 500), 1000)
        return [
            {
                "id": t.id,
                "price": fmt(t.price),
                "qty": fmt(t.qty),
                "quoteQty": fmt(t.price * t.qty),
                "time": t.time,
                "isBuyerMaker": t.buyer_maker,
                "isBestMatch": True,
            }
            for t in self.engine.trades[sym][-limit:]
        ]

    def _agg_trades(self, p: dict) -> object:
        if not p.get("symbol"):
            raise mandatory("symbol")
        sym = self.engine.spec(p["symbol"]).symbol
        limit = min(int(p.get("limit") or 500), 1000)
        rows = self.engine.trades[sym]
        if p.get("startTime"):
            rows = [t for t in rows if t.time >= int(p["startTime"])]
        if p.get("endTime"):
            rows = [t for t in rows if t.time <= int(p["endTime"])]
        return [
            {
                "a": t.id,
                "p": fmt(t.price),
                "q": fmt(t.qty),
                "f": t.id,
                "l": t.id,
                "T": t.time,
                "m": t.buyer_maker,
                "M": True,
            }
            for t in rows[-limit:]
        ]

    def _system_status(self, p: dict) -> object:
        return {"status": 0, "msg": "normal"}

    # private
    def _coins(self, p: dict) -> object:
        assets = sorted(
            {s.base for s in self.engine.specs.values()} | {s.quote for s in self.engine.specs.values()}
        )
        out = []
        for a in assets:
            free, locked = self.engine.balance(a)
            out.append(
                {
                    "coin": a,
                    "depositAllEnable": True,
                    "withdrawAllEnable": True,
                    "name": a,
                    "free": fmt(free),
                    "locked": fmt(locked),
                    "freeze": "0",
                    "withdrawing": "0",
                    "ipoing": "0",
                    "ipoable": "0",
                    "storage": "0",
                    "isLegalMoney": False,
                    "trading": True,
                    "networkList": [
                        {
                            "network": a,
                            "coin": a,
                            "withdrawIntegerMultiple": "0.00000001",
                            "isDefault": True,
                            "depositEnable": True,
                            "withdrawEnable": True,
                            "depositDesc": "",
                            "withdrawDesc": "",
                            "specialTips": "",
                            "name": a,
                            "resetAddressStatus": False,
                            "addressRegex": "",
                            "memoRegex": "",
                            "withdrawFee": "0.0001",
                            "withdrawMin": "0.001",
                            "withdrawMax": "10000000",
                            "minConfirm": 1,
                            "unLockConfirm": 1,
                            "sameAddress": False,
                            "estimatedArrivalTime": 5,
                            "busy": False,
                            "contractAddressUrl": "",
                            "contractAddress": "",
                        }
                    ],
                }
            )
        return out

    def _margin_pairs(self, p: dict) -> object:
        return [
            {
                "id": 351637150141315861 + i,
                "symbol": s.symbol,
                "base": s.base,
                "quote": s.quote,
                "isMarginTrade": True,
                "isBuyAllowed": True,
                "isSellAllowed": True,
            }
            for i, s in enumerate(self.engine.specs.values())
            if s.info.get("isMarginTradingAllowed")
        ]

    def _order_ref(self, p: dict, id_key: str = "origClientOrderId") -> tuple[str, int | None, str | None]:
        if not p.get("symbol"):
            raise mandatory("symbol")
        sym = self.engine.spec(p["symbol"]).symbol
        oid = int(p["orderId"]) if p.get("orderId") else None
        cid = p.get(id_key) or None
        if oid is None and cid is None:
            raise BinanceError(
                -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        return sym, oid, cid

    def _new_order(self, p: dict) -> object:
        order = self.engine.place_order(p)
        rt = p.get("newOrderRespType") or ("FULL" if order.type == "MARKET" else "FULL")
        return order.as_new_order_response(rt)

    def _test_order(self, p: dict) -> object:
        return {}

    def _get_order(self, p: dict) -> object:
        sym, oid, cid = self._order_ref(p)
        return self.engine.find_order(sym, oid, cid).as_query()

    def _cancel_order(self, p: dict) -> object:
        sym, oid, cid = self._order_ref(p)
        o = self.engine.cancel_order(sym, oid, cid)
        q = o.as_query()
        return {
            "symbol": o.symbol,
            "origClientOrderId": o.client_order_id,
            "orderId": o.order_id,
            "orderListId": -1,
            "clientOrderId": p.get("newClientOrderId") or ("cancel-" + str(o.order_id)),
            "transactTime": o.update_time,
            "price": q["price"],
            "origQty": q["origQty"],
            "executedQty": q["executedQty"],
            "origQuoteOrderQty": q["origQuoteOrderQty"],
            "cummulativeQuoteQty": q["cummulativeQuoteQty"],
            "status": o.status,
            "timeInForce": o.time_in_force,
            "type": o.type,
            "side": o.side,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def _open_orders(self, p: dict) -> object:
        sym = self.engine.spec(p["symbol"]).symbol if p.get("symbol") else None
        return [o.as_query() for o in self.engine.open_orders(sym)]

    def _cancel_open_orders(self, p: dict) -> object:
        if not p.get("symbol"):
            raise mandatory("symbol")
        sym = self.engine.spec(p["symbol"]).symbol
        opened = self.engine.open_orders(sym)
        if not opened:
            raise BinanceError(-2011, "Unknown order sent.")
        return [self._cancel_order({"symbol": sym, "orderId": str(o.order_id)}) for o in opened]

    def _all_orders(self, p: dict) -> object:
        if not p.get("symbol"):
            raise mandatory("symbol")
        sym = self.engine.spec(p["symbol"]).symbol
        limit = min(int(p.get("limit") or 500), 1000)
        return [o.as_query() for o in self.engine.orders if o.symbol == sym][-limit:]

    def _my_trades(self, p: dict) -> object:
        if not p.get("symbol"):
            raise mandatory("symbol")
        sym = self.engine.spec(p["symbol"]).symbol
        rows = self.engine.trades_for(sym, int(p["orderId"]) if p.get("orderId") else None)
        if p.get("startTime"):
            rows = [t for t in rows if t["time"] >= int(p["startTime"])]
        if p.get("endTime"):
            rows = [t for t in rows if t["time"] <= int(p["endTime"])]
        if p.get("fromId"):
            rows = [t for t in rows if t["id"] >= int(p["fromId"])]
        return rows[-min(int(p.get("limit") or 500), 1000) :]

    def _account(self, p: dict) -> object:
        acc = self.engine.account()
        if p.get("omitZeroBalances") == "true":
            acc["balances"] = [b for b in acc["balances"] if Decimal(b["free"]) or Decimal(b["locked"])]
        return acc

    # -- websockets ------------------------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request, api: bool = False) -> web.StreamResponse:
        if self.refuse_websockets:
            return web.Response(status=503, text="websockets refused by the fake")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        combined = request.path == "/stream"
        client = _WsClient(ws, request.transport, combined)
        client.api = api
        self.ws_connections_total += 1
        initial: list[str] = []
        if combined:
            initial = [s for s in request.query.get("streams", "").split("/") if s]
        elif request.path.startswith("/ws/"):
            tail = request.path[len("/ws/") :]
            initial = [s for s in tail.split("/") if "@" in s or s.startswith("!")]
        self._subscribe(client, initial)
        self._clients.add(client)
        writer = asyncio.ensure_future(self._ws_writer(client))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    reply = (
                        self._ws_api_method(client, msg.data) if api else self._ws_method(client, msg.data)
                    )
                    if reply is not None:
                        client.queue.put_nowait(json.dumps(reply))
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self._clients.discard(client)
            client.queue.put_nowait(None)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(writer, 2)
        return ws

    async def _ws_writer(self, client: _WsClient) -> None:
        while True:
            item = await client.queue.get()
            if item is None:
                with contextlib.suppress(Exception):
                    await client.ws.close(code=1001, message=b"fake binance closed the stream")
                return
            try:
                await client.ws.send_str(item)
                client.sent += 1
            except Exception:
                return

    def _subscribe(self, client: _WsClient, streams: list[str]) -> None:
        for s in streams:
            n = _norm_stream(s)
            client.streams.add(n)

    def _ws_method(self, client: _WsClient, data: str) -> dict | None:
        try:
            msg = json.loads(data)
            method, mid = msg.get("method"), msg.get("id")
        except Exception:
            return {"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}}
        if method == "SUBSCRIBE":
            self._subscribe(client, list(msg.get("params") or []))
            return {"result": None, "id": mid}
        if method == "UNSUBSCRIBE":
            for s in msg.get("params") or []:
                client.streams.discard(_norm_stream(s))
            return {"result": None, "id": mid}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(client.streams), "id": mid}
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            return {"result": None if method == "SET_PROPERTY" else client.combined, "id": mid}
        return {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": mid}

    def _ws_api_method(self, client: _WsClient, data: str) -> dict:
        """The WebSocket API (`/ws-api/v3`): ping, time, and the signed user-data-stream subscription
        that ccxt.pro uses for watch_orders / watch_balance on spot."""
        try:
            msg = json.loads(data)
            mid, method, params = msg.get("id"), msg.get("method"), dict(msg.get("params") or {})
        except Exception:
            return {"id": None, "status": 400, "error": {"code": -1100, "msg": "Malformed request."}}

        def ok(result: object) -> dict:
            return {"id": mid, "status": 200, "result": result, "rateLimits": []}

        try:
            if method == "ping":
                return ok({})
            if method == "time":
                return ok({"serverTime": self.clock.now_ms()})
            if method == "userDataStream.subscribe.signature":
                secret = self.api_keys.get(str(params.get("apiKey")))
                if secret is None:
                    raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
                payload = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
                want = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
                if not hmac.compare_digest(want, str(params.get("signature", "")).lower()):
                    raise BinanceError(-1022, "Signature for this request is not valid.")
                self._check_timestamp(params)
                client.user_sub = self._next_subscription_id
                self._next_subscription_id += 1
                return ok({"subscriptionId": client.user_sub})
            if method == "userDataStream.unsubscribe":
                client.user_sub = None
                return ok({})
            raise BinanceError(
                -1100, f"Illegal characters found in parameter 'method'; unknown method {method!r}."
            )
        except BinanceError as e:
            return {"id": mid, "status": e.status, "error": e.body(), "rateLimits": []}

    def user_data_sessions(self) -> int:
        """How many websocket sessions are subscribed to the user data stream."""
        return sum(1 for c in list(self._clients) if c.user_sub is not None)

    async def wait_user_data(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.user_data_sessions():
            if time.monotonic() > deadline:
                raise TimeoutError("no user data stream subscription")
            await asyncio.sleep(0.02)

    # -- pushing updates ---------------------------------------------------------------------------------
    def _on_event(self, kind: str, symbol: str, payload: object) -> None:
        self._call_in_loop(self._dispatch, kind, symbol, payload)

    def _remember_depth(self, symbol: str) -> None:
        b = self.engine.books[symbol]
        self._depth_state[symbol] = (
            b.update_id,
            {fmt(p): fmt(q) for p, q in b.side("bids")},
            {fmt(p): fmt(q) for p, q in b.side("asks")},
        )

    def _depth_update(self, symbol: str, now: int) -> dict | None:
        with self.engine.lock:
            prev_id, prev_b, prev_a = self._depth_state[symbol]
            b = self.engine.books[symbol]
            if b.update_id == prev_id:
                return None
            self._remember_depth(symbol)
            new_id, new_b, new_a = self._depth_state[symbol]

        def diff(old: dict, new: dict) -> list[list[str]]:
            out = [[p, q] for p, q in new.items() if old.get(p) != q]
            out += [[p, fmt(Decimal(0))] for p in old if p not in new]
            return out

        return {
            "e": "depthUpdate",
            "E": now,
            "s": symbol,
            "U": prev_id + 1,
            "u": new_id,
            "b": diff(prev_b, new_b),
            "a": diff(prev_a, new_a),
        }

    def _ticker_event(self, symbol: str, now: int) -> dict:
        t = self.engine.ticker_24hr(symbol)
        return {
            "e": "24hrTicker",
            "E": now,
            "s": symbol,
            "p": t["priceChange"],
            "P": t["priceChangePercent"],
            "w": t["weightedAvgPrice"],
            "x": t["prevClosePrice"],
            "c": t["lastPrice"],
            "Q": t["lastQty"],
            "b": t["bidPrice"],
            "B": t["bidQty"],
            "a": t["askPrice"],
            "A": t["askQty"],
            "o": t["openPrice"],
            "h": t["highPrice"],
            "l": t["lowPrice"],
            "v": t["volume"],
            "q": t["quoteVolume"],
            "O": t["openTime"],
            "C": t["closeTime"],
            "F": t["firstId"],
            "L": t["lastId"],
            "n": t["count"],
        }

    def _mini_ticker_event(self, symbol: str, now: int) -> dict:
        t = self.engine.ticker_24hr(symbol)
        return {
            "e": "24hrMiniTicker",
            "E": now,
            "s": symbol,
            "c": t["lastPrice"],
            "o": t["openPrice"],
            "h": t["highPrice"],
            "l": t["lowPrice"],
            "v": t["volume"],
            "q": t["quoteVolume"],
        }

    def _kline_event(self, symbol: str, interval: str, now: int) -> dict:
        r = self.engine.live_kline(symbol, interval)
        trades = self.engine.trades[symbol]
        return {
            "e": "kline",
            "E": now,
            "s": symbol,
            "k": {
                "t": r[0],
                "T": r[6],
                "s": symbol,
                "i": interval,
                "f": trades[0].id if trades else -1,
                "L": trades[-1].id if trades else -1,
                "o": fmt(r[1]),
                "c": fmt(r[4]),
                "h": fmt(r[2]),
                "l": fmt(r[3]),
                "v": fmt(r[5]),
                "n": r[8],
                "x": False,
                "q": fmt(r[7]),
                "V": fmt(r[5] / 2),
                "Q": fmt(r[7] / 2),
                "B": "0",
            },
        }

    def _dispatch(self, kind: str, symbol: str, payload: object) -> None:
        if kind in ("order", "account"):  # user data: to every subscribed WebSocket API session
            text = None
            for c in list(self._clients):
                if c.user_sub is not None:
                    text = json.dumps(
                        {"subscriptionId": c.user_sub, "event": {**payload, "E": self.clock.now_ms()}},  # type: ignore[dict-item]
                        separators=(",", ":"),
                    )
                    c.queue.put_nowait(text)
            return
        if self.mute_streams:  # sockets stay open but go silent (a frozen feed); depth diffs resume gap-free
            return
        now = self.clock.now_ms()
        lower = symbol.lower()
        cache: dict[str, object] = {}
        depth_ev = self._depth_update(symbol, now) if kind == "book" else None

        def event_for(stream: str) -> object | None:
            if stream in cache:
                return cache[stream]
            ev: object | None = None
            if stream.startswith(lower + "@"):
                ch = stream[len(lower) + 1 :]
                if ch == "bookTicker" and kind in ("book", "tick"):
                    bt = self.engine.book_ticker(symbol)
                    ev = {
                        "u": self.engine.books[symbol].update_id,
                        "s": symbol,
                        "b": bt["bidPrice"],
                        "B": bt["bidQty"],
                        "a": bt["askPrice"],
                        "A": bt["askQty"],
                    }
                elif ch == "depth" and depth_ev is not None:
                    ev = depth_ev
                elif ch.startswith("depth") and ch[5:].isdigit() and kind == "book":
                    d = self.engine.depth(symbol, int(ch[5:]))
                    ev = {"lastUpdateId": d["lastUpdateId"], "bids": d["bids"], "asks": d["asks"]}
                elif ch == "trade" and kind == "trade" and isinstance(payload, PublicTrade):
                    t = payload
                    ev = {
                        "e": "trade",
                        "E": now,
                        "s": symbol,
                        "t": t.id,
                        "p": fmt(t.price),
                        "q": fmt(t.qty),
                        "T": t.time,
                        "m": t.buyer_maker,
                        "M": True,
                    }
                elif ch == "aggTrade" and kind == "trade" and isinstance(payload, PublicTrade):
                    t = payload
                    ev = {
                        "e": "aggTrade",
                        "E": now,
                        "s": symbol,
                        "a": t.id,
                        "p": fmt(t.price),
                        "q": fmt(t.qty),
                        "f": t.id,
                        "l": t.id,
                        "T": t.time,
                        "m": t.buyer_maker,
                        "M": True,
                    }
                elif (
                    ch.startswith("kline_") and ch[6:] in INTERVALS_MS and kind in ("trade", "tick", "ticker")
                ):
                    ev = self._kline_event(symbol, ch[6:], now)
                elif ch == "ticker" and kind in ("book", "trade", "tick", "ticker"):
                    ev = self._ticker_event(symbol, now)
                elif ch == "miniTicker" and kind in ("trade", "tick", "ticker"):
                    ev = self._mini_ticker_event(symbol, now)
            elif stream == "!ticker@arr" and kind in ("book", "trade", "ticker"):
                ev = [self._ticker_event(symbol, now)]
            elif stream == "!miniticker@arr" and kind in ("trade", "ticker"):
                ev = [self._mini_ticker_event(symbol, now)]
            cache[stream] = ev
            return ev

        for c in list(self._clients):
            for stream in list(c.streams):
                ev = event_for(stream)
                if ev is None:
                    continue
                key = ("C:" if c.combined else "R:") + stream
                if key not in cache:
                    cache[key] = json.dumps(
                        {"stream": stream, "data": ev} if c.combined else ev, separators=(",", ":")
                    )
                c.queue.put_nowait(cache[key])  # type: ignore[arg-type]

    async def _ticker_loop(self) -> None:
        """With `stream_interval` set, re-push bookTicker/ticker/kline of every subscribed symbol periodically
        (a live market keeps streams ticking; leave it None to control every update yourself)."""
        while True:
            await asyncio.sleep(self.stream_interval or 0.25)
            if not self.stream_interval:
                continue
            if self.mute_streams:
                continue
            subs = self.subscriptions()
            syms = {s.partition("@")[0].upper() for s in subs if "@" in s and not s.startswith("!")}
            for sym in syms:
                if sym in self.engine.specs:
                    self._dispatch("tick", sym, None)
            # the all-market arrays come as one message per tick, like Binance's 1 s array streams
            now = self.clock.now_ms()
            arrays = {"!ticker@arr": self._ticker_event, "!miniticker@arr": self._mini_ticker_event}
            for stream, make in arrays.items():
                if stream not in subs:
                    continue
                ev = [make(sym, now) for sym, spec in self.engine.specs.items() if spec.status == "TRADING"]
                for c in list(self._clients):
                    if stream in c.streams:
                        c.queue.put_nowait(
                            json.dumps(
                                {"stream": stream, "data": ev} if c.combined else ev, separators=(",", ":")
                            )
                        )


PUBLIC_ROUTES = {
    ("GET", "/api/v3/ping"): FakeBinance._ping,
    ("GET", "/api/v3/time"): FakeBinance._time,
    ("GET", "/api/v3/exchangeInfo"): FakeBinance._exchange_info,
    ("GET", "/api/v3/ticker/24hr"): FakeBinance._ticker_24hr,
    ("GET", "/api/v3/ticker/bookTicker"): FakeBinance._book_ticker,
    ("GET", "/api/v3/ticker/price"): FakeBinance._price,
    ("GET", "/api/v3/avgPrice"): FakeBinance._avg_price,
    ("GET", "/api/v3/klines"): FakeBinance._klines,
    ("GET", "/api/v3/uiKlines"): FakeBinance._klines,
    ("GET", "/api/v3/depth"): FakeBinance._depth,
    ("GET", "/api/v3/trades"): FakeBinance._trades,
    ("GET", "/api/v3/aggTrades"): FakeBinance._agg_trades,
    ("GET", "/sapi/v1/system/status"): FakeBinance._system_status,
}

PRIVATE_ROUTES = {
    ("GET", "/sapi/v1/capital/config/getall"): FakeBinance._coins,
    ("GET", "/sapi/v1/margin/allPairs"): FakeBinance._margin_pairs,
    ("GET", "/sapi/v1/margin/isolated/allPairs"): lambda self, p: [],
    ("POST", "/api/v3/order"): FakeBinance._new_order,
    ("POST", "/api/v3/order/test"): FakeBinance._test_order,
    ("GET", "/api/v3/order"): FakeBinance._get_order,
    ("DELETE", "/api/v3/order"): FakeBinance._cancel_order,
    ("GET", "/api/v3/openOrders"): FakeBinance._open_orders,
    ("DELETE", "/api/v3/openOrders"): FakeBinance._cancel_open_orders,
    ("GET", "/api/v3/allOrders"): FakeBinance._all_orders,
    ("GET", "/api/v3/myTrades"): FakeBinance._my_trades,
    ("GET", "/api/v3/account"): FakeBinance._account,
}
