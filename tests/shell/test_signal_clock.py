"""Signal's candle-starvation rule on the test clock: where bars come only from market_data's candles, a shell
that has had none of its model's timeframe for two bar lengths plus a minute says so in its health (and its
heartbeat), and the first candle of that timeframe clears it."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.common import subjects
from services.signal.features import timeframe_seconds
from services.signal.shell import SignalService
from services.signal.train import ensure_model
from tests.helpers import wait_heartbeat, wait_until
from tests.kit.builders import marker_candle
from tests.kit.harness import in_process

pytestmark = pytest.mark.integration  # on this test's NATS and Postgres


async def test_no_candles_for_two_bars_and_a_minute_on_the_clock_degrades_and_a_candle_clears_it(
    settings_for, bus, tmp_path: Path
):
    # live market data in paper mode: bars come from md.candle.*.<tf> only (synthetic ticks would build them)
    settings = settings_for(
        {"paper_market_data_mode": "live", "signal": {"models_dir": str(tmp_path / "models")}}
    )
    ensure_model(settings)  # a servable model before start (paper would bootstrap one anyway)
    async with in_process(SignalService(), settings) as shell:
        app = shell.app
        assert app.engine is not None and app.engine.model is not None
        tf = app.engine.timeframe
        patience = 2 * timeframe_seconds(tf) + 60

        assert app.health()[0] == "ok"
        shell.advance(patience - 1)  # a second short: still waiting quietly
        assert app.health()[0] == "ok", app.health()

        shell.advance(2)
        status, detail = app.health()
        assert status == "degraded" and f"no md.candle.*.{tf} received" in detail, detail
        hb = await wait_heartbeat(bus, "signal", where=lambda h: h.status == "degraded", timeout=30)
        assert f"no md.candle.*.{tf}" in hb.detail

        candle = marker_candle(tf)
        await bus.publish(subjects.candle(candle.symbol, tf), candle)
        await wait_until(
            lambda: app.health()[0] == "ok", timeout=30, message="the first candle clears the starvation"
        )
