"""market_data settings: defaults a newcomer can run with, bad values refused naming the key."""

import pytest

from libs.common.errors import ConfigurationError
from libs.common.settings import load_settings


def test_defaults_include_short_timeframes_for_a_quick_warm_up(tmp_path):
    cfg = tmp_path / "bot.yaml"
    cfg.write_text("{}\n")
    md = load_settings(cfg).market_data
    assert "1s" in md.candle_timeframes and "1m" in md.candle_timeframes
    assert md.replay.path == "data/ohlcv/BTCUSDT-1h.csv"


@pytest.mark.parametrize(
    "text,key",
    [
        ("market_data: {candle_timeframes: [1x]}\n", "market_data.candle_timeframes"),
        ("market_data: {replay: {symbols: [BTC.USDT]}}\n", "market_data.replay.symbols"),
        ("market_data: {replay: {speed: -1}}\n", "market_data.replay.speed"),
        ("market_data: {universe: {mode: all}}\n", "market_data.universe.mode"),
        ("market_data: {binance: {poll_interval_s: 0}}\n", "market_data.binance.poll_interval_s"),
        ("market_data: {synthetic: {correlation: 1.5}}\n", "market_data.synthetic.correlation"),
    ],
)
def test_bad_market_data_value_names_the_key(tmp_path, text, key):
    cfg = tmp_path / "bot.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigurationError) as err:
        load_settings(cfg)
    assert err.value.key.startswith(key)
