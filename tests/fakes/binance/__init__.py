"""A local fake Binance Spot server for tests: real ccxt is pointed at it. See README.md."""

from tests.fakes.binance.client import make_exchange, override_urls
from tests.fakes.binance.engine import BinanceError, Order
from tests.fakes.binance.faults import Faults
from tests.fakes.binance.server import DEFAULT_API_KEY, DEFAULT_SECRET, FakeBinance

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_SECRET",
    "BinanceError",
    "FakeBinance",
    "Faults",
    "Order",
    "make_exchange",
    "override_urls",
]
