"""Builders for the backtest tests: the real BTCUSDT 1h bars' path and settings that train on them."""

from __future__ import annotations

from pathlib import Path

from libs.common.settings import BotSettings

DATA = Path(__file__).resolve().parents[2] / "data" / "ohlcv"
BTC_1H = DATA / "BTCUSDT-1h.csv"


def settings_for(models_dir: Path, **risk) -> BotSettings:
    base = BotSettings()
    sig = base.signal.model_copy(update={"models_dir": str(models_dir)})
    train = sig.train.model_copy(update={"data": str(BTC_1H), "folds": 2})
    sig = sig.model_copy(update={"train": train})
    return base.model_copy(
        update={"signal": sig, "symbols": ["BTC/USDT"], "risk": base.risk.model_copy(update=risk)}
    )
