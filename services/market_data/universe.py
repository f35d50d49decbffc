"""The traded universe (pure core): top-N spot pairs by 24h quote volume, filtered; and the diff of two.

Kept: spot, active, Binance status TRADING, the configured quote (USDT). Dropped: stablecoin-to-
stablecoin pairs (USDC/USDT moves by basis points, nothing to trade), leveraged tokens (BTCUP,
ETHDOWN, BNBBULL, XRPBEAR: a base that ends in UP/DOWN/BULL/BEAR whose stem is itself a listed
asset, so JUP or SUPER are not caught), and anything in `exclude`. Ties in volume are broken by
symbol so the same inputs always give the same list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STABLECOINS = frozenset(
    {
        "USDT",
        "USDC",
        "BUSD",
        "TUSD",
        "FDUSD",
        "USDP",
        "DAI",
        "PAX",
        "USDS",
        "USDD",
        "UST",
        "SUSD",
        "GUSD",
        "EUR",
        "EURI",
        "AEUR",
        "EURT",
        "EURC",
        "GBP",
        "TRY",
        "BRL",
        "PYUSD",
        "USD1",
        "BFUSD",
        "XUSD",
        "USDE",
        "RLUSD",
    }
)
LEVERAGED_SUFFIXES = ("UP", "DOWN", "BULL", "BEAR")


def is_leveraged_token(base: str, known_assets: set[str] | frozenset[str]) -> bool:
    for suffix in LEVERAGED_SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            stem = base[: -len(suffix)]
            if stem in known_assets:
                return True
    return False


def market_tradable(m: Mapping[str, Any], quote: str) -> bool:
    """A spot market in the quote asset that Binance says is TRADING (and ccxt says is active)."""
    if not m.get("spot") or m.get("quote") != quote:
        return False
    if m.get("active") is False:
        return False
    status = (m.get("info") or {}).get("status")
    return status in (None, "TRADING")


@dataclass(frozen=True)
class UniverseResult:
    symbols: list[str]
    considered: int
    dropped: dict[str, str]


def select_universe(
    markets: Mapping[str, Mapping[str, Any]],
    tickers: Mapping[str, Mapping[str, Any]],
    *,
    top_n: int,
    quote: str = "USDT",
    min_quote_volume: float = 0.0,
    exclude: list[str] | tuple[str, ...] = (),
) -> UniverseResult:
    """Top-N by 24h quote volume among tradable markets. `tickers` are ccxt tickers (`quoteVolume`)."""
    known: set[str] = {str(m["base"]) for m in markets.values() if m.get("base")}
    dropped: dict[str, str] = {}
    ranked: list[tuple[float, str]] = []
    considered = 0
    for sym, m in markets.items():
        if not market_tradable(m, quote):
            continue
        considered += 1
        base = m.get("base") or ""
        if sym in exclude:
            dropped[sym] = "excluded by config"
        elif base in STABLECOINS:
            dropped[sym] = "stablecoin to stablecoin"
        elif is_leveraged_token(base, known):
            dropped[sym] = "leveraged token"
        else:
            t = tickers.get(sym) or {}
            qv = _quote_volume(t)
            if qv is None:
                dropped[sym] = "no 24h ticker"
            elif qv < min_quote_volume:
                dropped[sym] = f"24h quote volume {qv:.0f} below {min_quote_volume:.0f}"
            else:
                ranked.append((qv, sym))
    ranked.sort(key=lambda x: (-x[0], x[1]))
    return UniverseResult([s for _, s in ranked[:top_n]], considered, dropped)


def _quote_volume(t: Mapping[str, Any]) -> float | None:
    qv = t.get("quoteVolume")
    if qv is None:
        bv, last = t.get("baseVolume"), t.get("last") or t.get("close")
        if bv is None or last is None:
            return None
        qv = float(bv) * float(last)
    try:
        return float(qv)
    except (TypeError, ValueError):
        return None


def diff_universe(old: list[str], new: list[str]) -> tuple[list[str], list[str]]:
    """(added, removed), each in the order of the list it comes from."""
    old_set, new_set = set(old), set(new)
    return [s for s in new if s not in old_set], [s for s in old if s not in new_set]
