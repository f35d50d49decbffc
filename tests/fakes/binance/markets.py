"""The fake's market universe: real Binance spot `exchangeInfo` entries plus a few synthetic ones.

The real entries come unchanged from `data/binance_markets_ccxt.json` (vendored, see `data/README.md`) (the `info` of every spot
market: Binance's raw exchangeInfo symbol with its real filters). Synthetic entries are cloned from the
BTCUSDT entry with their own tick/step sizes so a universe scan has something to filter: more USDT
pairs, a leveraged token (BTCUPUSDT), stablecoin pairs (USDCUSDT, FDUSDUSDT), a non-TRADING symbol
(LUNAUSDT, status BREAK), a non-USDT quote (ETHBTC) and XRPETH (for the XRP_ETH replay data).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

D = Decimal

_HERE = Path(__file__).resolve()
_REPO = _HERE.parents[3]  # tests/fakes/binance/markets.py -> repo root


def vendored_data_dir() -> Path:
    """The repository's vendored market data, `<repo>/data` (provenance in `data/README.md`)."""
    d = _REPO / "data"
    if not (d / MARKETS_FILE).exists():
        raise FileNotFoundError(f"vendored market data missing: {d / MARKETS_FILE} (see data/README.md)")
    return d


MARKETS_FILE = "binance_markets_ccxt.json"
BTCUSDT_1H_CSV = Path("ohlcv") / "BTCUSDT-1h.csv"

# Synthetic spot symbols: (base, quote, tickSize, stepSize, initial price, 24h quote volume, status)
SYNTHETIC: list[tuple[str, str, str, str, str, str, str]] = [
    ("BNB", "USDT", "0.1", "0.001", "310.5", "95000000", "TRADING"),
    ("SOL", "USDT", "0.01", "0.01", "62.37", "410000000", "TRADING"),
    ("DOT", "USDT", "0.001", "0.01", "5.432", "38000000", "TRADING"),
    ("LINK", "USDT", "0.001", "0.01", "14.215", "61000000", "TRADING"),
    ("AVAX", "USDT", "0.01", "0.01", "21.84", "52000000", "TRADING"),
    ("MATIC", "USDT", "0.0001", "0.1", "0.7612", "44000000", "TRADING"),
    ("ATOM", "USDT", "0.001", "0.01", "9.871", "21000000", "TRADING"),
    ("PEPE", "USDT", "0.00000001", "1", "0.00000112", "120000000", "TRADING"),
    ("BTCUP", "USDT", "0.001", "0.01", "8.123", "7000000", "TRADING"),  # leveraged token
    ("USDC", "USDT", "0.0001", "1", "1.0001", "800000000", "TRADING"),  # stable pair
    ("FDUSD", "USDT", "0.0001", "1", "0.9998", "600000000", "TRADING"),  # stable pair
    ("LUNA", "USDT", "0.0001", "0.01", "0.6123", "0", "BREAK"),  # not trading
    ("ETH", "BTC", "0.00001", "0.0001", "0.05612", "3000000", "TRADING"),  # non-USDT quote (volume in BTC)
    ("XRP", "ETH", "0.00000001", "1", "0.00027100", "500", "TRADING"),  # replay data pair
]

# Initial prices / 24h quote volumes of the real spot markets (deterministic, tick-aligned).
REAL_DEFAULTS: dict[str, tuple[str, str]] = {
    "BTCUSDT": ("20490.74", "1500000000"),  # last close in BTCUSDT-1h.csv
    "ETHUSDT": ("1582.35", "700000000"),
    "ADAUSDT": ("0.3512", "90000000"),
    "LTCUSDT": ("64.91", "80000000"),
    "XRPUSDT": ("0.4712", "150000000"),
    "DOGEUSDT": ("0.07123", "110000000"),
    "TRXUSDT": ("0.06321", "40000000"),
}


@dataclass
class SymbolSpec:
    """One symbol as exchangeInfo lists it, plus the fake's starting state."""

    info: dict
    price: Decimal
    quote_volume: Decimal
    filters: dict[str, dict] = field(default_factory=dict)

    @property
    def symbol(self) -> str:
        return self.info["symbol"]

    @property
    def status(self) -> str:
        return self.info["status"]

    @property
    def base(self) -> str:
        return self.info["baseAsset"]

    @property
    def quote(self) -> str:
        return self.info["quoteAsset"]

    @property
    def tick(self) -> Decimal:
        return D(self.filters["PRICE_FILTER"]["tickSize"])

    @property
    def step(self) -> Decimal:
        return D(self.filters["LOT_SIZE"]["stepSize"])

    def round_price(self, p: Decimal) -> Decimal:
        t = self.tick
        return (p / t).to_integral_value() * t if t > 0 else p

    def round_qty(self, q: Decimal) -> Decimal:
        s = self.step
        return (q / s).to_integral_value(rounding="ROUND_DOWN") * s if s > 0 else q


def _fmt8(x: Decimal) -> str:
    return f"{x:.8f}"


def _synthetic_info(template: dict, base: str, quote: str, tick: str, step: str, status: str) -> dict:
    info = copy.deepcopy(template)
    info.update(symbol=base + quote, status=status, baseAsset=base, quoteAsset=quote)
    if base.endswith("UP") or base.endswith("DOWN"):
        info["isMarginTradingAllowed"] = False
        info["permissions"] = ["SPOT"]
    for f in info["filters"]:
        if f["filterType"] == "PRICE_FILTER":
            f["tickSize"] = _fmt8(D(tick))
            f["minPrice"] = _fmt8(D(tick))
        elif f["filterType"] == "LOT_SIZE":
            f["stepSize"] = _fmt8(D(step))
            f["minQty"] = _fmt8(D(step))
        elif f["filterType"] == "NOTIONAL" and quote != "USDT":
            f["minNotional"] = "0.00010000" if quote == "BTC" else "0.00100000"
    return info


def load_specs(data_dir: Path | None = None) -> dict[str, SymbolSpec]:
    """All symbols of the fake, keyed by Binance id (BTCUSDT)."""
    data_dir = data_dir or vendored_data_dir()
    raw = json.loads((data_dir / MARKETS_FILE).read_text())
    specs: dict[str, SymbolSpec] = {}
    template = None
    for m in raw.values():
        if not m.get("spot") or not m.get("info"):
            continue
        info = copy.deepcopy(m["info"])
        price, qv = REAL_DEFAULTS.get(info["symbol"], ("1", "1000000"))
        specs[info["symbol"]] = SymbolSpec(info=info, price=D(price), quote_volume=D(qv))
        if info["symbol"] == "BTCUSDT":
            template = info
    assert template is not None, "BTCUSDT missing from the markets file"
    for base, quote, tick, step, price, qv, status in SYNTHETIC:
        info = _synthetic_info(template, base, quote, tick, step, status)
        specs[info["symbol"]] = SymbolSpec(info=info, price=D(price), quote_volume=D(qv))
    for s in specs.values():
        s.filters = {f["filterType"]: f for f in s.info["filters"]}
    return specs


def exchange_info(
    specs: dict[str, SymbolSpec], server_time_ms: int, symbols: list[str] | None = None
) -> dict:
    chosen = [specs[s].info for s in symbols] if symbols else [s.info for s in specs.values()]
    return {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ],
        "exchangeFilters": [],
        "symbols": chosen,
    }
