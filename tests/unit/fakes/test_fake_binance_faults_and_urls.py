"""Fault matching rules and the URL rebasing that keeps ccxt off the real exchange."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes.binance.client import make_exchange, override_urls
from tests.fakes.binance.faults import Faults


def test_fault_matches_method_and_path_fires_count_times_in_order():
    f = Faults()
    f.next("POST /api/v3/order", "429", count=2)
    f.next("/api/v3/order", "5xx")
    assert f.take("GET", "/api/v3/depth", {}) is None
    assert f.take("POST", "/api/v3/order", {}).kind == "429"
    assert f.take("GET", "/api/v3/order", {}).kind == "5xx"  # any method; the 429 is POST-only
    assert f.take("POST", "/api/v3/order", {}).kind == "429"
    assert f.take("POST", "/api/v3/order", {}) is None
    assert [k for k, _, _ in f.fired] == ["429", "5xx", "429"]


def test_always_and_where_and_clear():
    f = Faults()
    f.always("*", "delay", seconds=0.1)
    f.next("POST /api/v3/order", "insufficient_balance", where=lambda p: p.get("newClientOrderId") == "b")
    assert f.take("POST", "/api/v3/order", {"newClientOrderId": "a"}).kind == "delay"  # first match wins
    for _ in range(5):
        assert f.take("GET", "/api/v3/time", {}).kind == "delay"
    f.clear()
    assert f.take("GET", "/api/v3/time", {}) is None and f.pending() == []
    with pytest.raises(ValueError, match="unknown fault kind"):
        f.next("*", "explode")


def test_override_urls_leaves_no_binance_host_behind():
    ex = make_exchange(None, http_base="http://127.0.0.1:1", api_key="k", secret="s")
    ex_pro = make_exchange(None, http_base="http://127.0.0.1:1", pro=True)
    try:
        for e in (ex, ex_pro):
            seen = []

            def walk(v, out=seen):
                if isinstance(v, dict):
                    for x in v.values():
                        walk(x)
                elif isinstance(v, str):
                    out.append(v)

            walk(e.urls["api"])
            assert seen and not [u for u in seen if "binance" in u]
            assert e.enableRateLimit is True
        assert ex.urls["api"]["public"] == "http://127.0.0.1:1/api/v3"
        assert ex_pro.urls["api"]["ws"]["spot"] == "ws://127.0.0.1:1/ws"
        assert ex_pro.urls["api"]["ws"]["ws-api"]["spot"] == "ws://127.0.0.1:1/ws-api/v3"
        assert override_urls({"x": "https://fapi.binance.com/fapi/v1"}, "http://h:2") == {
            "x": "http://h:2/fapi/v1"
        }
    finally:
        asyncio.run(ex.close())
        asyncio.run(ex_pro.close())
