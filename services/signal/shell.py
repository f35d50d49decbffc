"""signal shell: ticks, candles and market status in; signals and drift status out; the model hot-reloaded.

Start: in paper mode make sure a model exists (train a small synthetic bootstrap one if none; live mode
never trains), load `current` (sha256 verified) if the serving policy allows it in this mode (`gate.py`:
live serves only a model that passed the promotion gate), subscribe. With no servable model every
decision is HOLD with the reason, health is degraded and a SEV-2 alert says why. Closed bars are queued and decided in batches: the first close opens a short window
(`batch_window_ms`) so symbols closing together share one feature pass and one model call.
"""

from __future__ import annotations

import asyncio
import time  # perf_counter only: how long a batch took is the machine's business
from pathlib import Path

from libs.common import subjects
from libs.common.contracts import Candle, DriftStatus, MarketStatus, ShardInfo, Tick
from libs.common.errors import ConfigurationError
from libs.common.service import Runtime
from libs.common.shard import Shard, SubjectOwnership, digest
from services.signal.core import Bar, SignalEngine
from services.signal.features import timeframe_seconds
from services.signal.gate import gate_passed as model_gate_passed
from services.signal.gate import live_config_refusal, serving_decision
from services.signal.registry import ModelRefused, load_model, models_dir, read_current
from services.signal.train import ensure_model

INFERENCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class SignalService:
    name = "signal"
    needs_db = False

    def __init__(self) -> None:
        self.rt: Runtime | None = None
        self.engine: SignalEngine | None = None
        self._queue: list[Bar] = []
        self._wake = asyncio.Event()
        self._model_error = ""
        self._loaded_version: str | None = None
        self._serving_refusal = ""  # why the `current` model is not served in this mode ("" = none)
        self._serving_warning = ""  # served, but ungated (paper)
        # (version, metadata mtime) last judged: a governance change to the same version (a re-gated promotion,
        # a retirement) is judged again
        self._seen_current: tuple[str, int] | None = None
        self._candle_sub = None
        self._last_drift_publish = 0.0
        self._candles_since = 0.0  # since when (the runtime clock's monotonic seconds) we wait for candles
        self._candle_seen = False
        self.shard = Shard()
        self._accept: SubjectOwnership | None = (
            None  # sharded: the filter on subjects (None = owns every symbol)
        )
        self._served: set[str] = set()  # symbols this instance has had data for (its heartbeat lists them)
        self._shard_digest: tuple[int, str] = (0, digest(()))

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        s = rt.settings.signal
        refusal = live_config_refusal(rt.settings.mode, s.every_nth_tick)
        if refusal:
            raise ConfigurationError("signal.every_nth_tick", refusal)
        self.root: Path = models_dir(rt.settings)
        # A sharded instance decides only the symbols it owns (libs/common/shard.py); the others' messages are
        # dropped by subject, before they are decoded. Two instances never signal one symbol.
        self.shard = s.shard.shard()
        self._accept = SubjectOwnership(self.shard) if self.shard.sharded else None
        if self.shard.sharded:
            rt.log.info("signal shard", shard=self.shard.label(), scheme="crc32(exchange symbol) % count")
        m = rt.metrics
        self.ticks_in = m.counter("ticks_received_total", "Ticks received")
        self.candles_in = m.counter("candles_received_total", "Closed candles received from market_data")
        self.signals_out = m.counter("signals_published_total", "Signals published", ["side"])
        self.inference = m.histogram(
            "inference_seconds",
            "Features + predict + decide for one batch of closes",
            buckets=INFERENCE_BUCKETS,
        )
        self.batch_seconds = m.histogram(
            "batch_seconds",
            "A whole batch of closes: append, infer, drift, messages",
            buckets=INFERENCE_BUCKETS,
        )
        self.tick_to_signal = m.histogram(
            "tick_to_signal_seconds", "Event time of the triggering tick to the BUY/SELL signal made"
        )
        self.batch_size = m.histogram(
            "inference_batch_symbols",
            "Symbols per inference batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
        )
        self.drift_score = m.gauge(
            "drift_score", "Latest drift scores (PSI per feature, prediction, hit rate)", ["score"]
        )
        self.drift_detected = m.gauge("drift_detected", "1 while drift is detected")
        self.model_age = m.gauge("model_age_seconds", "Age of the loaded model")
        self.model_loaded = m.gauge("model_loaded", "1 while a verified model is loaded")
        self.refusals = m.counter("model_refusals_total", "Model artefacts refused (hash or metadata)")
        self.serving_refusals = m.counter(
            "model_serving_refused_total", "Models not served in this mode (live: gate not passed, retired)"
        )
        self.gate_passed = m.gauge(
            "model_gate_passed",
            "1 while the served model passed the promotion gate, "
            "0 while it did not (paper only) or none is served",
        )
        self.ungated = m.gauge(
            "model_ungated", "1 while a model that has NOT passed the promotion gate is served"
        )
        self.hits = m.counter("signal_outcomes_total", "Resolved BUY/SELL signals by outcome", ["outcome"])
        synthetic_ticks = rt.settings.mode == "paper" and rt.settings.paper_market_data_mode == "synthetic"
        self.engine = SignalEngine(s, bars_from_ticks=synthetic_ticks)
        try:
            missing = read_current(self.root) is None
        except ModelRefused:
            missing = False  # a `current` we cannot trust is reported by _load, never trained over
        if missing and rt.settings.mode != "live":
            rt.log.info(
                "no model yet: training a small synthetic one (paper only)", models_dir=str(self.root)
            )
            path = await asyncio.to_thread(ensure_model, rt.settings)
            rt.log.info("model trained", path=str(path))
        await self._load(initial=True)
        await rt.bus.subscribe(subjects.ALL_TICKS, Tick, self.on_tick, accept=self._accept)
        await rt.bus.subscribe(subjects.ALL_STATUS, MarketStatus, self.on_status, accept=self._accept)
        await self._subscribe_candles()
        rt.spawn(self._batcher(), "signal-batcher")
        rt.spawn(self._watch_model(), "model-watch")

    async def _subscribe_candles(self) -> None:
        assert self.rt is not None and self.engine is not None
        if self._candle_sub is not None:
            await self._candle_sub.unsubscribe()
        # one timeframe, every symbol: md.candle.*.<tf>
        pattern = subjects.ALL_CANDLES.rsplit(".", 1)[0] + "." + self.engine.timeframe
        self._candle_sub = await self.rt.bus.subscribe(pattern, Candle, self.on_candle, accept=self._accept)
        self._candle_tf = self.engine.timeframe
        self._candles_since, self._candle_seen = self.rt.clock.monotonic(), False

    # -- model registry ---------------------------------------------------------------------------
    async def _load(self, initial: bool = False) -> None:
        assert self.rt is not None and self.engine is not None
        rt = self.rt
        try:
            version = read_current(self.root)
            if version is None:
                self._seen_current = None
                await self._unserve(
                    "no model: `current` names none"
                    + (
                        " (live mode never trains one; promote a model that passed the gate)"
                        if rt.settings.mode == "live"
                        else ""
                    ),
                    initial,
                )
                return
            seen = (version, self._metadata_mtime(version))
            if seen == self._seen_current:
                return
            model = await asyncio.to_thread(load_model, self.root, version)
        except ModelRefused as exc:
            self.refusals.inc()
            detail = str(exc)
            if detail != self._model_error:
                self._model_error = detail
                rt.log.error("model refused", error=detail)
                await rt.alert(
                    "SEV-1" if self.engine.model is None else "SEV-2", "model artefact refused", detail
                )
            return
        self._seen_current = seen
        verdict = serving_decision(model.metadata, rt.settings.mode)
        if not verdict.allowed:
            await self._unserve(verdict.reason, initial)
            return
        self.engine.set_model(model)
        self._loaded_version, self._model_error, self._serving_refusal = model.version, "", ""
        self._serving_warning = verdict.warning
        self.model_loaded.set(1)
        self.gate_passed.set(1 if verdict.gate_passed else 0)
        self.ungated.set(0 if verdict.gate_passed else 1)
        self.model_age.set(model.age_h(self.rt.clock.now()) * 3600)
        rt.log.info(
            "model loaded",
            version=model.version,
            timeframe=model.timeframe,
            gate_passed=verdict.gate_passed,
            warmup_bars=model.spec.warmup_bars,
            trained_at=model.trained_at.isoformat(),
            initial=initial,
        )
        if verdict.warning:
            rt.log.warning("serving an ungated model", version=model.version, warning=verdict.warning)
        if not initial and getattr(self, "_candle_tf", None) != self.engine.timeframe:
            await self._subscribe_candles()

    def _metadata_mtime(self, version: str) -> int:
        try:
            return (self.root / version / "metadata.json").stat().st_mtime_ns
        except OSError:
            return -1

    async def _unserve(self, reason: str, initial: bool) -> None:
        """Serve no model (every decision HOLD, with `reason`), say so once: log, metric, SEV-2."""
        assert self.rt is not None and self.engine is not None
        if reason == self._serving_refusal and (self.engine.model is None):
            return
        had = self.engine.model is not None
        self.engine.set_model(None, reason=f"holding: {reason}")
        self._loaded_version, self._serving_refusal, self._serving_warning = None, reason, ""
        self.model_loaded.set(0)
        self.gate_passed.set(0)
        self.ungated.set(0)
        self.serving_refusals.inc()
        self.rt.log.error("no model served: every decision HOLD", reason=reason, was_serving=had)
        await self.rt.alert(
            "SEV-2", "signal holds: no servable model", reason, dedup_key="signal:no_servable_model"
        )
        if not initial and getattr(self, "_candle_tf", None) != self.engine.timeframe:
            await self._subscribe_candles()

    async def _watch_model(self) -> None:
        assert self.rt is not None and self.engine is not None
        period = self.rt.settings.signal.reload_check_s
        while True:
            await asyncio.sleep(period)
            await self._load()
            if self.engine.model is not None:
                self.model_age.set(self.engine.model.age_h(self.rt.clock.now()) * 3600)
            await self._maybe_republish_drift()

    # -- inputs -----------------------------------------------------------------------------------
    async def on_tick(self, tick: Tick, subject: str) -> None:
        assert self.engine is not None and self.rt is not None
        self.ticks_in.inc()
        if tick.symbol not in self._served:
            self._served.add(tick.symbol)
        self.rt.clock.observe(tick.ts)  # a data clock (replay) moves on the data; the wall clock ignores it
        bar, measure = self.engine.on_tick(tick, self.rt.clock.now())
        if measure is not None:
            await self._publish(measure)
        if bar is not None:
            self._enqueue(bar)

    async def on_candle(self, candle: Candle, subject: str) -> None:
        assert self.engine is not None and self.rt is not None
        self.candles_in.inc()
        if candle.symbol not in self._served:
            self._served.add(candle.symbol)
        self.rt.clock.observe(candle.ts)
        bar = self.engine.on_candle(candle)
        if bar is not None:
            self._candle_seen = True
            self._enqueue(bar)

    async def on_status(self, status: MarketStatus, subject: str) -> None:
        assert self.engine is not None and self.rt is not None
        was = self.engine.state(status.symbol).stale
        self.engine.set_stale(status.symbol, status.status == "stale")
        if was != (status.status == "stale"):
            self.rt.log.info(
                "market status", symbol=status.symbol, status=status.status, reason=status.reason
            )

    def _enqueue(self, bar: Bar) -> None:
        self._queue.append(bar)
        self._wake.set()

    # -- batched decisions ------------------------------------------------------------------------
    async def _batcher(self) -> None:
        assert self.rt is not None and self.engine is not None
        window = self.rt.settings.signal.batch_window_ms / 1000
        while True:
            await self._wake.wait()
            if window > 0:
                await asyncio.sleep(window)  # let the other symbols closing now join this batch
            self._wake.clear()
            bars, self._queue = self._queue, []
            if not bars:
                continue
            t0 = time.perf_counter()
            result = self.engine.on_bars(bars, self.rt.clock.now())
            if result.predicted:
                self.inference.observe(result.inference_s)
                self.batch_seconds.observe(time.perf_counter() - t0)
                self.batch_size.observe(result.predicted)
            for hit in result.outcomes:
                self.hits.labels(outcome="hit" if hit else "miss").inc()
            for sig in result.signals:
                await self._publish(sig)
            if result.drift is not None:
                await self._on_drift(result.drift)

    async def _publish(self, sig) -> None:
        assert self.rt is not None
        # sent at once, not after the rest of the tick burst this handler is working through
        await self.rt.bus.publish(subjects.signal(sig.symbol), sig, flush_now=True)
        self.signals_out.labels(side=sig.side).inc()
        self.rt.metrics.count("signals")
        if sig.side != "HOLD":
            if sig.tick_ts is not None:
                self.tick_to_signal.observe((sig.ts - sig.tick_ts).total_seconds())
            self.rt.log.info(
                "signal",
                symbol=sig.symbol,
                side=sig.side,
                probability=round(sig.probability, 4),
                edge_bps=round(sig.expected_edge_bps, 1),
                model=sig.model_version,
                reason=sig.reason,
            )

    async def _on_drift(self, res) -> None:
        assert self.rt is not None
        for k, v in res.scores.items():
            self.drift_score.labels(score=k).set(v)
        self.drift_detected.set(1 if res.detected else 0)
        if res.changed:
            self.rt.log.warning("drift " + ("detected" if res.detected else "cleared"), reason=res.reason)
            await self._publish_drift(res)

    async def _publish_drift(self, res) -> None:
        assert self.rt is not None and self.engine is not None
        model = self.engine.model
        await self.rt.bus.publish(
            subjects.drift(),
            DriftStatus(
                ts=self.rt.clock.now(),
                detected=res.detected,
                model_version=model.version if model else "",
                scores=res.scores,
                reason=res.reason,
            ),
        )
        self._last_drift_publish = self.rt.clock.monotonic()

    async def _maybe_republish_drift(self) -> None:
        assert self.rt is not None and self.engine is not None
        drift = self.engine.drift
        if drift is None or drift.last is None:
            return
        if (
            self.rt.clock.monotonic() - self._last_drift_publish
            >= self.rt.settings.signal.drift.publish_every_s
        ):
            await self._publish_drift(drift.last)

    async def stop(self) -> None:
        return None

    def _no_candles(self) -> str:
        """Where bars come only from market_data's candles: say so when none of the model's timeframe came
        within two bar lengths (plus a minute), instead of silently deciding nothing."""
        assert self.engine is not None and self.rt is not None
        if self.engine.bars_from_ticks or self._candle_seen or self.engine.cfg.every_nth_tick:
            return ""
        tf = self.engine.timeframe
        if self.rt.clock.monotonic() - self._candles_since < 2 * timeframe_seconds(tf) + 60:
            return ""
        return (
            f"no md.candle.*.{tf} received: the model decides on exchange klines only (market_data: "
            f"binance.klines true and {tf} in candle_timeframes)"
        )

    def served_model(self) -> dict:
        """The heartbeat's `model`: what this process serves now (not the registry's `current`)."""
        m = self.engine.model if self.engine is not None else None
        if m is None:
            return {
                "version": None,
                "gate_passed": False,
                "warning": self._model_error or self._serving_refusal or "no model loaded",
            }
        return {
            "version": m.version,
            "gate_passed": model_gate_passed(m.metadata),
            "warning": self._serving_warning,
        }

    def shard_info(self) -> ShardInfo:
        """This instance's shard for its heartbeat: index, count and the symbols it has served."""
        served = sorted(self._served)
        if self._shard_digest[0] != len(served):
            self._shard_digest = (len(served), digest(served))
        return ShardInfo(
            index=self.shard.index, count=self.shard.count, symbols=served, digest=self._shard_digest[1]
        )

    def health(self) -> tuple[str, str]:
        if self.engine is None:
            return "degraded", "starting"
        if self.engine.model is None:
            why = self._model_error or self._serving_refusal or "none loaded"
            return "degraded", f"holding, no servable model: {why}"
        if self._model_error:
            return (
                "degraded",
                f"serving {self.engine.model.version}; newer model refused: {self._model_error}",
            )
        detail = f"model {self.engine.model.version}"
        starved = self._no_candles()
        if starved:
            return "degraded", f"{detail}; {starved}"
        if self._serving_warning:
            detail += f"; UNGATED: {self._serving_warning}"
        if self.engine.drift is not None and self.engine.drift.detected:
            return "ok", f"{detail}; drift detected"
        return "ok", detail
