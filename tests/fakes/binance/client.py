"""Point the real ccxt Binance classes at a fake (or at any base URL): only their API URLs change."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

_REST_HOSTS = (
    "api.binance.com",
    "fapi.binance.com",
    "dapi.binance.com",
    "eapi.binance.com",
    "papi.binance.com",
)


def _rebase(url: str, http_base: str, ws_base: str) -> str:
    parts = urlsplit(url)
    if parts.scheme in ("ws", "wss"):
        return ws_base.rstrip("/") + parts.path
    return http_base.rstrip("/") + parts.path


def override_urls(urls_api: dict, http_base: str, ws_base: str | None = None) -> dict:
    """A copy of ccxt's `exchange.urls['api']` with every Binance host replaced by the fake's.

    REST urls keep their path (`https://api.binance.com/api/v3` -> `http://127.0.0.1:PORT/api/v3`,
    `https://fapi.binance.com/fapi/v1` -> `.../fapi/v1`, ...), websocket urls too
    (`wss://stream.binance.com:9443/ws` -> `ws://127.0.0.1:PORT/ws`).
    """
    ws_base = ws_base or http_base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    out: dict[str, Any] = {}
    for k, v in urls_api.items():
        if isinstance(v, str):
            out[k] = _rebase(v, http_base, ws_base)
        elif isinstance(v, dict):
            out[k] = override_urls(v, http_base, ws_base)
        else:
            out[k] = v
    return out


def make_exchange(
    fake=None,
    *,
    pro: bool = False,
    api_key: str | None = None,
    secret: str | None = None,
    http_base: str | None = None,
    ws_base: str | None = None,
    timeout_ms: int | None = None,
    config: dict | None = None,
    **options: Any,
):
    """A real `ccxt.async_support.binance` (or `ccxt.pro.binance` with pro=True) pointed at `fake`.

    - api_key/secret: `make_exchange(fake, api_key=fake.api_key, secret=fake.secret)` for signed calls.
    - options: merged into `exchange.options` (e.g. recvWindow=5000). By default
      `options['fetchMarkets'] = {'types': ['spot']}` so load_markets makes one request; the fake also
      answers the fapi/dapi exchangeInfo calls (with no symbols) if you set other types.
    - timeout_ms: ccxt's request timeout (default 10000 ms); set it low to test accept-then-timeout.
    - config: extra ccxt constructor config (e.g. {'rateLimit': 10}).
    The caller must `await exchange.close()`.
    """
    if pro:
        import ccxt.pro as ccxt_mod
    else:
        import ccxt.async_support as ccxt_mod
    if fake is not None:
        http_base = http_base or fake.http_url
        ws_base = ws_base or fake.ws_url
    if http_base is None:
        raise ValueError("give a fake or an http_base")
    cfg: dict[str, Any] = {"enableRateLimit": True, **(config or {})}
    if api_key is not None:
        cfg["apiKey"] = api_key
    if secret is not None:
        cfg["secret"] = secret
    if timeout_ms is not None:
        cfg["timeout"] = timeout_ms
    ex = ccxt_mod.binance(cfg)
    ex.urls["api"] = override_urls(ex.urls["api"], http_base, ws_base)
    ex.options["fetchMarkets"] = {"types": ["spot"]}
    ex.options.update(options)
    return ex
