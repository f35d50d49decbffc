"""The real `python -m services.signal` on NATS: candles in, signals out; stale holds; drift published;
a new `current` is picked up; a tampered model is refused."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from libs.common import subjects
from libs.common.contracts import Alert, Candle, DriftStatus, MarketStatus, Signal, utcnow
from services.signal.registry import read_current, set_current, update_metadata
from services.signal.synthetic import synthetic_candles
from services.signal.train import ensure_model, run_training
from tests.helpers import wait_heartbeat, wait_until
from tests.kit.signal import make_settings

pytestmark = pytest.mark.integration
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _candles(symbol: str, n: int, seed: int, start: int = 0, vol_scale: float = 1.0) -> list[Candle]:
    df = synthetic_candles(n, seed=seed, start=T0 + timedelta(seconds=start))
    out = []
    for r in df.iter_rows(named=True):
        c = r["close"] if vol_scale == 1.0 else r["open"] * (1 + (r["close"] / r["open"] - 1) * vol_scale)
        hi, lo = max(r["high"], c, r["open"]), min(r["low"], c, r["open"])
        out.append(
            Candle(
                ts=r["open_time"] + timedelta(seconds=1),
                symbol=symbol,
                timeframe="1s",
                open_time=r["open_time"],
                close_time=r["open_time"] + timedelta(seconds=1),
                open=Decimal(f"{r['open']:.6f}"),
                high=Decimal(f"{hi:.6f}"),
                low=Decimal(f"{lo:.6f}"),
                close=Decimal(f"{c:.6f}"),
                volume=Decimal(f"{r['volume']:.4f}"),
            )
        )
    return out


async def _collect(bus, subject, model):
    got = []

    async def on(msg, subj):
        got.append(msg)

    await bus.subscribe(subject, model, on)
    return got


async def test_candles_in_become_signals_out_a_stale_symbol_holds_and_a_new_model_is_picked_up(
    services, bus, tmp_path
):
    models = tmp_path / "models"
    # the model's own rule is threshold 0, no edge gate: the YAML (the same here) may only tighten it
    path = ensure_model(make_settings(models, probability_threshold=0.0, min_expected_edge_bps=None))
    services.configure(
        {
            "signal": {
                "models_dir": str(models),
                "probability_threshold": 0.0,
                "min_expected_edge_bps": None,
                "batch_window_ms": 5,
                "reload_check_s": 0.2,
                "drift": {"window": 20, "check_every": 5, "publish_every_s": 0.5},
            }
        }
    )
    services.start("signal")
    signals = await _collect(bus, subjects.ALL_SIGNALS, Signal)
    drift = await _collect(bus, subjects.drift(), DriftStatus)
    await bus.publish(
        subjects.market_status("AAA/USDT"),
        MarketStatus(ts=utcnow(), symbol="AAA/USDT", status="stale", age_s=30, reason="test"),
    )
    await bus.publish(
        subjects.market_status("BBB/USDT"),
        MarketStatus(ts=utcnow(), symbol="BBB/USDT", status="fresh", age_s=0),
    )
    a, b = _candles("AAA/USDT", 40, seed=1), _candles("BBB/USDT", 40, seed=2)
    for ca, cb in zip(a, b, strict=True):
        await bus.publish(subjects.candle("AAA/USDT", "1s"), ca)
        await bus.publish(subjects.candle("BBB/USDT", "1s"), cb)
    await wait_until(lambda: len(signals) >= 80, timeout=30, message="a signal per candle")
    by_id = {c.id: c for c in a + b}
    assert all(s.tick_id in by_id and s.tick_ts == by_id[s.tick_id].ts for s in signals)
    warm = [s for s in signals if "warming up" not in s.reason]
    assert len(warm) == 2 * (40 - 24)
    assert {s.side for s in warm if s.symbol == "AAA/USDT"} == {"HOLD"}
    assert all(s.reason == "market data stale" for s in warm if s.symbol == "AAA/USDT")
    assert {s.side for s in warm if s.symbol == "BBB/USDT"} <= {"BUY", "SELL"}  # threshold 0: always a side
    assert all(s.model_version == path.name for s in warm)

    # promote a copy under a new version: the service reloads it (hash verified) without a restart
    shutil.copytree(path, models / "v-next")
    set_current(models, "v-next")
    await wait_until(lambda: read_current(models) == "v-next", message="promotion")
    more_b = _candles("BBB/USDT", 80, seed=2)[40:]

    async def sent_and_seen():
        await bus.publish(subjects.candle("BBB/USDT", "1s"), more_b.pop(0))
        return any(s.model_version == "v-next" for s in signals)

    await wait_until(sent_and_seen, timeout=20, interval=0.3, message="signals from the new model")

    # violent candles move every feature: drift detected is published on drift.status
    wild = _candles("BBB/USDT", 200, seed=9, start=500, vol_scale=40.0)
    for c in wild[:120]:
        await bus.publish(subjects.candle("BBB/USDT", "1s"), c)
    await wait_until(lambda: any(d.detected for d in drift), timeout=30, message="drift detected")


async def test_a_tampered_model_is_refused_and_everything_holds(services, bus, tmp_path):
    models = tmp_path / "models"
    path = ensure_model(make_settings(models))
    blob = bytearray((path / "model.pkl").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (path / "model.pkl").write_bytes(bytes(blob))
    services.configure({"signal": {"models_dir": str(models), "probability_threshold": 0.0}})
    svc = services.start("signal")
    signals = await _collect(bus, subjects.ALL_SIGNALS, Signal)
    for c in _candles("AAA/USDT", 30, seed=1):
        await bus.publish(subjects.candle("AAA/USDT", "1s"), c)
    await wait_until(lambda: len(signals) >= 30, timeout=30, message="HOLD signals")
    assert {s.side for s in signals} == {"HOLD"}
    assert all("no trusted model" in s.reason for s in signals)
    hb = await wait_heartbeat(bus, "signal")
    assert hb.status == "degraded" and "sha256 mismatch" in hb.detail
    assert hb.model["version"] is None and "sha256 mismatch" in hb.model["warning"]  # what it serves: nothing
    assert "model refused" in svc.logs()
    assert read_current(models) == path.name  # never trained over it


async def test_fresh_setup_with_the_demo_rule_trades_on_synthetic_data_within_a_minute_and_warns_ungated(
    services, bus, tmp_path
):
    """A newcomer's paper setup with the demo rule (no edge gate): no model yet (the service trains a synthetic
    bootstrap one), synthetic market data, and real model BUY/SELL decisions (not measurement mode) well
    inside a minute, with the ungated-model warning in health and metrics. (The shipped default,
    `min_expected_edge_bps: 0`, makes that model abstain: it has no edge; see the unit tests.)"""
    models = tmp_path / "models"
    services.configure({"signal": {"models_dir": str(models), "min_expected_edge_bps": None}})
    services.start("signal", wait=False)
    signals = await _collect(bus, subjects.ALL_SIGNALS, Signal)
    services.start("market_data")
    await wait_until(
        lambda: any(s.side != "HOLD" for s in signals),
        timeout=90,
        interval=0.5,
        message="a BUY or SELL from the model",
    )  # a bound for a loaded machine, not a timing claim
    decided = [s for s in signals if s.side != "HOLD"]
    assert read_current(models) is not None
    assert all(s.model_version == read_current(models) and s.tick_id for s in decided)
    hb = await wait_heartbeat(bus, "signal")  # the tick -> signal time of those decisions is measured
    assert hb.status == "ok" and "UNGATED" in hb.detail and "paper trading only" in hb.detail
    assert hb.model["version"] == read_current(models) and hb.model["gate_passed"] is False
    assert "has not passed the promotion gate" in hb.model["warning"]
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{hb.metrics_port}/metrics")).text
    assert re.search(r"^bnml_signal_tick_to_signal_seconds_count [1-9]", text, re.M), text[-2000:]
    assert re.search(r"^bnml_signal_model_ungated 1", text, re.M), text[-2000:]


LIVE = {"mode": "live", "live": {"confirm": True}}
LIVE_ENV = {"BNML_LIVE__API_KEY": "test-key", "BNML_LIVE__API_SECRET": "test-secret"}


def _gated_copy(models, src: Path, version: str, symbol: str, data_end: datetime | None = None) -> None:
    """A copy of `src` as if it had passed the gate on `symbol`'s market data ending at `data_end` (default now;
    rule: always a side)."""
    meta = json.loads((src / "metadata.json").read_text())
    meta.update(
        data={"kind": "file", "path": "test", "sha256": "-"},
        symbols=[symbol],
        data_span={"from": "2021-10-01T00:00:00+00:00", "to": (data_end or utcnow()).isoformat()},
        decision={"probability_threshold": 0.0, "min_expected_edge_bps": None},
        gate={"passed": True, "reasons": [], "p_value": 0.01, "net_return": 5.0},
        promotion={"forced": False, "kind": "gate"},
    )
    shutil.copytree(src, models / version)
    (models / version / "metadata.json").write_text(json.dumps(meta))


async def test_live_mode_never_bootstraps_holds_with_a_sev2_and_serves_only_a_gated_model(
    services, bus, tmp_path
):
    models = tmp_path / "models"
    services.configure(
        {
            **LIVE,
            "signal": {
                "models_dir": str(models),
                "probability_threshold": 0.0,
                "min_expected_edge_bps": None,
                "reload_check_s": 0.2,
            },
        }
    )
    signals = await _collect(bus, subjects.ALL_SIGNALS, Signal)
    alerts = await _collect(bus, subjects.ALL_ALERTS, Alert)
    await bus.nc.flush()
    svc = services.start("signal", env=LIVE_ENV)
    for c in _candles("AAA/USDT", 30, seed=1):
        await bus.publish(subjects.candle("AAA/USDT", "1s"), c)
    await wait_until(lambda: len(signals) >= 30, timeout=30, message="HOLD signals")
    assert {s.side for s in signals} == {"HOLD"} and all("holding: no model" in s.reason for s in signals)
    assert not models.exists() or not any(models.iterdir())  # nothing trained, nothing promoted
    await wait_until(
        lambda: any(a.severity == "SEV-2" and a.source == "signal" for a in alerts),
        timeout=10,
        message="a SEV-2 alert",
    )
    hb = await wait_heartbeat(bus, "signal")
    assert hb.status == "degraded" and "no servable model" in hb.detail

    # an ungated (synthetic bootstrap) model becomes current: live refuses it and keeps holding
    quick = make_settings(models, probability_threshold=0.0, min_expected_edge_bps=None)
    boot = run_training(
        quick,
        train=quick.signal.train.model_copy(update={"synthetic_bars": 3000, "folds": 2}),
        bootstrap=True,
        drift_replay=False,
        progress=lambda m: None,
    )  # what paper would bootstrap
    more = _candles("AAA/USDT", 90, seed=1)[30:]

    async def refused():
        if more:
            await bus.publish(subjects.candle("AAA/USDT", "1s"), more.pop(0))
        return any(
            "live mode serves only a model that passed the promotion gate" in s.reason for s in signals
        )

    await wait_until(refused, timeout=20, interval=0.05, message="HOLDs saying the model is refused")
    assert {s.side for s in signals} == {"HOLD"}
    assert "no model served: every decision HOLD" in svc.logs()

    # the same version, re-judged after a governance change to its metadata (as `bnml models promote` records
    # a gate that passes under the thresholds configured now): the service judges it again and serves it
    update_metadata(
        models,
        boot.name,
        data={"kind": "file", "path": "test", "sha256": "-"},
        gate={"passed": True, "reasons": []},
        promotion={"forced": False, "kind": "gate"},
    )
    regated = _candles("AAA/USDT", 150, seed=2, start=100)

    async def served():
        if regated:
            await bus.publish(subjects.candle("AAA/USDT", "1s"), regated.pop(0))
        return any(s.side != "HOLD" and s.model_version == boot.name for s in signals)

    await wait_until(served, timeout=30, interval=0.05, message="decisions from the re-gated version")
    hb = await wait_heartbeat(bus, "signal")
    assert hb.model == {"version": boot.name, "gate_passed": True, "warning": ""}

    # gated, but trained (today) on data that ends in 2022: served, and never a BUY (SELL = exit only)
    _gated_copy(models, boot, "gated-2022", "AAA/USDT", data_end=datetime(2022, 10, 31, 23, tzinfo=UTC))
    set_current(models, "gated-2022")
    # loaded: the process serves it (its heartbeat's model), not a log line naming it
    await wait_heartbeat(
        bus, "signal", timeout=15, where=lambda hb: (hb.model or {}).get("version") == "gated-2022"
    )
    old = _candles("AAA/USDT", 150, seed=4, start=200)

    async def expired():
        if old:
            await bus.publish(subjects.candle("AAA/USDT", "1s"), old.pop(0))
        mine = [s for s in signals if s.model_version == "gated-2022"]
        return sum("model data" in s.reason and "no BUY" in s.reason for s in mine) >= 5

    await wait_until(expired, timeout=30, interval=0.05, message="BUYs withheld by the data age")
    assert not any(s.side == "BUY" and s.model_version == "gated-2022" for s in signals)

    # control: the same artefact on data that ends now is served, and BUYs
    _gated_copy(models, boot, "gated-v1", "AAA/USDT")
    set_current(models, "gated-v1")
    # loaded: the process serves it (its heartbeat's model), not a log line naming it
    await wait_heartbeat(
        bus, "signal", timeout=15, where=lambda hb: (hb.model or {}).get("version") == "gated-v1"
    )
    burst = _candles("AAA/USDT", 150, seed=4, start=400)

    async def decided():
        if burst:
            await bus.publish(subjects.candle("AAA/USDT", "1s"), burst.pop(0))
        return any(s.side == "BUY" and s.model_version == "gated-v1" for s in signals)

    await wait_until(decided, timeout=30, interval=0.05, message="a live BUY from the gated model")
