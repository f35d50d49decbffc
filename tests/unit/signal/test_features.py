"""Features: warm-up, no look-ahead, and the live path computing exactly what training computes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.signal.core import Bar, SignalEngine
from services.signal.features import (
    FeatureSpec,
    complete_rows,
    compute_features,
    feature_matrix,
    infer_timeframe,
    last_row_features,
    load_ohlcv,
)
from services.signal.synthetic import synthetic_candles
from tests.helpers import DATA

SPEC = FeatureSpec()
SMALL = FeatureSpec(
    return_horizons=(1, 2), vol_short=2, vol_long=4, rsi=3, ma=3, volume=3, context=(2, 3), context_bars=3
)
CTX = FeatureSpec(context=(4,), context_bars=5)  # warm-up 25 bars either way


@pytest.mark.parametrize("spec", [SPEC, CTX, FeatureSpec(context=(10,), context_bars=4)])
def test_warmup_rows_are_null_then_every_feature_is_defined(spec):
    df = compute_features(synthetic_candles(200, seed=1), spec)
    x = feature_matrix(df, spec)
    complete = complete_rows(x)
    assert not complete[: spec.warmup_bars - 1].any()
    assert complete[spec.warmup_bars - 1 :].all()


def test_default_warmup_is_25_bars_and_context_timeframes_lengthen_it():
    assert SPEC.warmup_bars == 25
    assert FeatureSpec(context=(10,), context_bars=4).warmup_bars == 41
    assert "ctx10_trend" in FeatureSpec(context=(10,)).names


def test_context_timeframes_are_bar_multiples_of_the_data_timeframe():
    from libs.common.settings.signal import FeatureSettings

    spec = FeatureSpec.from_settings(FeatureSettings(context_timeframes=["4h", "1d"]), "1h")
    assert spec.context == (4, 24) and spec.warmup_bars == 24 * 6 + 1
    with pytest.raises(ValueError, match="multiple"):
        FeatureSpec.from_settings(FeatureSettings(context_timeframes=["90m"]), "1h")
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


def test_flat_prices_give_defined_neutral_features_not_nan():
    n = 40
    flat = pl.DataFrame(
        {
            "open_time": [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=i) for i in range(n)],
            "open": [10.0] * n,
            "high": [10.0] * n,
            "low": [10.0] * n,
            "close": [10.0] * n,
            "volume": [1.0] * n,
        }
    )
    row = compute_features(flat, SPEC).row(n - 1, named=True)
    assert (
        row["rsi_14"] == 50.0
        and row["ma_z_20"] == 0.0
        and row["vol_ratio"] == 1.0
        and row["close_pos"] == 0.5
    )


candle_values = st.lists(
    st.tuples(st.floats(0.5, 2.0), st.floats(0.0, 0.05), st.floats(0.0, 0.05), st.floats(0.0, 100.0)),
    min_size=12,
    max_size=40,
)


def _frame(values) -> pl.DataFrame:
    close = np.cumprod([v[0] for v in values]) * 100
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.array([v[1] for v in values]))
    low = np.minimum(open_, close) * (1 - np.array([v[2] for v in values]))
    return pl.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": [v[3] for v in values]}
    )


@settings(max_examples=60, deadline=None)
@given(values=candle_values, data=st.data())
def test_changing_candles_after_t_never_changes_a_feature_at_or_before_t(values, data):
    df = _frame(values)
    t = data.draw(st.integers(0, df.height - 2))
    factor = data.draw(st.floats(0.3, 3.0))
    changed = df.with_columns(
        [
            pl.when(pl.int_range(pl.len()) > t).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c)
            for c in ("open", "high", "low", "close", "volume")
        ]
    )
    before = feature_matrix(compute_features(df, SMALL), SMALL)[: t + 1]
    after = feature_matrix(compute_features(changed, SMALL), SMALL)[: t + 1]
    np.testing.assert_array_equal(np.nan_to_num(before, nan=-999.0), np.nan_to_num(after, nan=-999.0))


@pytest.mark.parametrize("spec", [SPEC, CTX])
def test_grouped_features_equal_features_of_each_symbol_alone(spec):
    a, b = synthetic_candles(80, seed=1), synthetic_candles(60, seed=2)
    both = pl.concat([a.with_columns(sym=pl.lit("A")), b.with_columns(sym=pl.lit("B"))])
    grouped = compute_features(both, spec, by="sym")
    for name, alone in (("A", a), ("B", b)):
        np.testing.assert_allclose(
            feature_matrix(grouped.filter(pl.col("sym") == name), spec),
            feature_matrix(compute_features(alone, spec), spec),
            equal_nan=True,
        )


def test_live_engine_features_equal_training_features_bar_by_bar(trained):
    settings_, model = trained
    engine = SignalEngine(settings_.signal, model)
    candles = {
        s: synthetic_candles(90, seed=i + 3) for i, s in enumerate(("AAA/USDT", "BBB/USDT", "CCC/USDT"))
    }
    expected = {s: feature_matrix(compute_features(df, model.spec), model.spec) for s, df in candles.items()}
    warm = model.spec.warmup_bars
    for k in range(90):
        bars = []
        for s, df in candles.items():
            r = df.row(k, named=True)
            bars.append(
                Bar(
                    s,
                    r["open_time"],
                    r["open"],
                    r["high"],
                    r["low"],
                    r["close"],
                    r["volume"],
                    Decimal(f"{r['close']:.8f}"),
                    None,
                    None,
                )
            )
        engine.on_bars(bars, r["open_time"])
        if k >= warm - 1:
            live = engine.features_for(list(candles))
            for i, s in enumerate(candles):
                np.testing.assert_allclose(live[i], expected[s][k], rtol=1e-9, atol=1e-12)


def test_real_btcusdt_file_loads_as_contiguous_hourly_bars():
    df = load_ohlcv(DATA / "ohlcv" / "BTCUSDT-1h.csv")
    assert df.height == 9504 and infer_timeframe(df) == "1h"
    assert df["open_time"][0] == datetime(2021, 10, 1, tzinfo=UTC)
    assert df["open"][0] == pytest.approx(43820.01)


def test_a_timeframe_is_not_inferred_from_fewer_than_two_bars():
    one = pl.DataFrame({"open_time": [datetime(2024, 1, 1, tzinfo=UTC)]})
    with pytest.raises(ValueError, match="from 1 bar"):
        infer_timeframe(one)
    two = pl.DataFrame(
        {"open_time": [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 0, 15, tzinfo=UTC)]}
    )
    assert infer_timeframe(two) == "15m"


def test_unsupported_file_type_is_refused(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("nope")
    with pytest.raises(ValueError, match="unsupported"):
        load_ohlcv(p)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.tuples(
            st.floats(0.9, 1.1),
            st.floats(0.0, 0.02),
            st.floats(0.0, 0.02),
            st.sampled_from([0.0, 1.0, 5.5, 1000.0]),
        ),
        min_size=25,
        max_size=60,
    ),
    flat_tail=st.integers(0, 25),
)
def test_numpy_live_kernel_equals_polars_training_features_on_the_last_row(values, flat_tail):
    df = _frame(values)
    if flat_tail:  # degenerate windows: constant prices and volumes
        n = df.height
        last = df.row(n - flat_tail - 1, named=True)["close"]
        df = df.with_columns(
            [
                pl.when(pl.int_range(pl.len()) >= n - flat_tail).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
                for c, v in (("open", last), ("high", last), ("low", last), ("close", last), ("volume", 1.0))
            ]
        )
    for spec in (SPEC, CTX):
        expected = feature_matrix(compute_features(df, spec), spec)[-1]
        buf = df.select("open", "high", "low", "close", "volume").to_numpy()[-spec.warmup_bars :]
        live = last_row_features(buf[None, :, :], spec)[0]
        np.testing.assert_allclose(live, expected, rtol=1e-7, atol=1e-9)
