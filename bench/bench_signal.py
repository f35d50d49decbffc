"""signal benchmark: per-candle inference for 200 symbols closing at once, and training on BTCUSDT-1h.

- `signal_inference_p50_ms_200sym`, `signal_inference_p99_ms_200sym`: features + predict + decide for 200
  symbols whose candles close together (features of all 200 in one vectorised pass, one scikit-learn
  predict), on the model trained on the BTCUSDT file. In process: the model's cost, not the bus's.
- `signal_on_close_p50_ms_200sym`, `signal_on_close_p99_ms_200sym`: the whole `SignalEngine.on_bars` call for
  that batch (buffers, inference, gates, drift and hit-rate bookkeeping, 200 validated `Signal` messages).
- `train_btcusdt_1h_s`: `run_training` on `data/ohlcv/BTCUSDT-1h.csv` (features, walk-forward
  evaluation, final model, drift replay, report, chart, artefact).
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

from libs.common.settings import BotSettings
from services.signal.core import Bar, SignalEngine
from services.signal.registry import load_current
from services.signal.synthetic import synthetic_candles
from services.signal.train import run_training

SYMBOLS = 200
BTC_FILE = "data/ohlcv/BTCUSDT-1h.csv"


def run(quick: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bnml-bench-signal-") as d:
        root = Path(d)
        base = BotSettings()
        settings = base.model_copy(
            update={"signal": base.signal.model_copy(update={"models_dir": str(root)})}
        )
        train = settings.signal.train.model_copy(update={"data": BTC_FILE})
        t0 = time.perf_counter()
        run_training(settings, train=train, progress=lambda m: None)
        train_s = time.perf_counter() - t0
        model = load_current(root)

    engine = SignalEngine(settings.signal, model)
    rounds = 60 if quick else 400
    warm = model.spec.warmup_bars
    n = warm + rounds
    frames = [
        synthetic_candles(n, seed=100 + i, timeframe="1h", start_price=50.0 + i).to_numpy()
        for i in range(SYMBOLS)
    ]
    symbols = [f"S{i:03d}/USDT" for i in range(SYMBOLS)]
    t_start = datetime(2026, 1, 1, tzinfo=UTC)
    lat, inf = [], []
    for k in range(n):
        ts = t_start + timedelta(hours=k)
        bars = [
            Bar(s, ts, *map(float, f[k, 1:6]), Decimal(f"{f[k, 4]:.6f}"), f"t{k}", ts)
            for s, f in zip(symbols, frames, strict=True)
        ]
        a = time.perf_counter()
        res = engine.on_bars(bars, model.trained_at)
        b = time.perf_counter()
        if k >= warm:
            assert res.predicted == SYMBOLS
            lat.append(b - a)
            inf.append(res.inference_s)
    ms, inf_ms = np.asarray(lat) * 1000, np.asarray(inf) * 1000
    return {
        "signal_inference_p50_ms_200sym": float(np.percentile(inf_ms, 50)),
        "signal_inference_p99_ms_200sym": float(np.percentile(inf_ms, 99)),
        "signal_on_close_p50_ms_200sym": float(np.percentile(ms, 50)),
        "signal_on_close_p99_ms_200sym": float(np.percentile(ms, 99)),
        "train_btcusdt_1h_s": train_s,
    }


if __name__ == "__main__":
    print(run(quick=True))
