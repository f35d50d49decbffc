"""signal settings: features, label, training, live inference gates and drift thresholds.

Feature windows and the label horizon are counted in bars of the model's timeframe. The live service
uses the feature spec stored in the model's metadata (what the model was trained on), not these values:
these drive training. The decision rule (threshold, edge gate) is the model's too: the values here may
only tighten it at serving time.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from libs.common.settings.base import Section
from libs.common.settings.shard import ShardSettings


class FeatureSettings(Section):
    return_horizons: list[int] = Field(
        default_factory=lambda: [1, 3, 6, 12], min_length=1, description="Log-return horizons, bars"
    )
    vol_short: int = Field(default=6, ge=2, description="Short realized-volatility window, bars")
    vol_long: int = Field(default=24, ge=3, description="Long realized-volatility window, bars")
    rsi: int = Field(default=14, ge=2, description="RSI window (simple averages), bars")
    ma: int = Field(default=20, ge=2, description="Moving-average window for the price z-score, bars")
    volume: int = Field(default=20, ge=2, description="Window for the volume z-score, bars")
    context_timeframes: list[str] = Field(
        default_factory=list,
        description="Coarser timeframes (multiples of the data's, e.g. [4h, 1d] on 1h) for "
        "context features; each adds context_bars x its length to the warm-up",
    )
    context_bars: int = Field(
        default=6, ge=2, description="Context-timeframe bars behind the context features"
    )

    @field_validator("context_timeframes")
    @classmethod
    def _timeframes(cls, v: list[str]) -> list[str]:
        for tf in v:
            if not re.fullmatch(r"[1-9]\d*[smhdw]", tf):
                raise ValueError(f"{tf!r} is not a timeframe like 1m, 4h, 1d")
        return v

    @field_validator("return_horizons")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(h < 1 for h in v) or len(set(v)) != len(v):
            raise ValueError("return horizons must be distinct positive integers")
        return sorted(v)

    @model_validator(mode="after")
    def _short_below_long(self) -> FeatureSettings:
        if self.vol_short >= self.vol_long:
            raise ValueError("vol_short must be smaller than vol_long")
        return self


class LabelSettings(Section):
    horizon_bars: int = Field(default=10, ge=1, description="Forward-return horizon of the label, bars")
    fee_rate: float = Field(default=0.001, ge=0, lt=0.05, description="Exchange fee per side (0.001 = 0.1 %)")


class TrainSettings(Section):
    data: str = Field(
        default="synthetic",
        description="'synthetic' or an OHLCV file (csv/json/parquet), relative to the repo root",
    )
    synthetic_timeframe: str = Field(
        default="1s",
        pattern=r"^\d+[smhdw]$",
        description="Timeframe the synthetic training candles stand for",
    )
    synthetic_bars: int = Field(default=20_000, ge=500, description="Synthetic candles to train on")
    seed: int = 7
    folds: int = Field(default=5, ge=1, le=50, description="Walk-forward test folds")
    initial_train_fraction: float = Field(
        default=0.4, gt=0.05, lt=0.95, description="Share of the data only ever used for training"
    )
    model: str = Field(default="logistic", pattern=r"^(logistic|hgb)$", description="logistic | hgb")
    c: float = Field(default=0.5, gt=0, description="Inverse regularisation strength (logistic)")
    drift_replay_train_fraction: float = Field(
        default=0.3,
        gt=0.05,
        lt=0.95,
        description="Report only: train on this first share, replay the rest through the drift monitor",
    )


class DriftSettings(Section):
    window: int = Field(
        default=300,
        ge=20,
        description="Bars (of every symbol, pooled) in the live window compared with the reference",
    )
    check_every: int = Field(default=10, ge=1, description="Check drift every N bars")
    psi_detect: float = Field(
        default=0.25, gt=0, description="Mean PSI over features at/above which drift is detected"
    )
    psi_clear: float = Field(
        default=0.15, gt=0, description="Mean feature PSI below which a check counts as calm"
    )
    prediction_psi_detect: float = Field(
        default=0.25, gt=0, description="PSI of the prediction score that detects"
    )
    prediction_psi_clear: float = Field(
        default=0.10, gt=0, description="Prediction PSI below which a check is calm"
    )
    hit_rate_min: float = Field(
        default=0.25, ge=0, le=1, description="Live hit rate below this detects drift"
    )
    hit_rate_window: int = Field(
        default=100, ge=5, description="Resolved signals the live hit rate is computed on"
    )
    hit_rate_min_count: int = Field(default=50, ge=5, description="Resolved signals needed before judging it")
    clear_after_checks: int = Field(default=3, ge=1, description="Consecutive calm checks needed to clear")
    publish_every_s: float = Field(default=30.0, gt=0, description="Republish the standing status this often")

    @model_validator(mode="after")
    def _hysteresis(self) -> DriftSettings:
        if self.psi_clear >= self.psi_detect or self.prediction_psi_clear >= self.prediction_psi_detect:
            raise ValueError("clear thresholds must be below detect thresholds (hysteresis)")
        return self


class GateSettings(Section):
    """The promotion gate a model's out-of-sample result must pass before it becomes `current` (and before
    live mode will serve it)."""

    min_excess_return_pct: float = Field(
        default=0.0, description="Out-of-sample net return must beat not trading (0 %) by more than this, %"
    )
    max_p_value: float = Field(
        default=0.05, gt=0, le=1, description="Circular-shift null p-value must be below this"
    )
    null_shifts: int = Field(
        default=200,
        ge=19,
        le=10_000,
        description="Circular shifts of the model's own out-of-sample signals in the null",
    )
    min_trades: int = Field(
        default=10, ge=0, description="Fewer out-of-sample trades than this fail the gate"
    )


class SignalSettings(Section):
    models_dir: str = Field(
        default="artifacts/models", description="Model registry, relative to the repo root"
    )
    probability_threshold: float = Field(
        default=0.42, ge=0, le=1, description="Minimum model probability of a side for BUY/SELL"
    )
    min_expected_edge_bps: float | None = Field(
        default=0.0,
        description="Also require this expected edge net of fees, bps (null = not required). The "
        "model's own value (metadata.decision) wins unless this one is stricter",
    )
    max_model_age_h: float = Field(
        default=168.0,
        gt=0,
        description="Data age: hours from the newest bar a model was trained on to the bar "
        "being decided; older = no BUY (synthetic models: hours since training)",
    )
    max_spread_bps: float = Field(
        default=50.0, gt=0, description="HOLD when the live quoted spread is wider, bps"
    )
    reload_check_s: float = Field(
        default=2.0, gt=0, description="How often `current` is checked for a new model"
    )
    batch_window_ms: float = Field(
        default=2.0, ge=0, description="Closes arriving within this window run as one batch"
    )
    min_interval_s: float = Field(
        default=0.0, ge=0, description="Minimum seconds between non-HOLD signals per symbol"
    )
    every_nth_tick: int = Field(
        default=0,
        ge=0,
        description="Measurement mode: a BUY/SELL every Nth tick received (all symbols counted together), "
        "no model (0 = off)",
    )
    features: FeatureSettings = FeatureSettings()
    label: LabelSettings = LabelSettings()
    train: TrainSettings = TrainSettings()
    drift: DriftSettings = DriftSettings()
    gate: GateSettings = GateSettings()
    metrics_port: int = Field(
        default=9102,
        ge=0,
        le=65535,
        description="Sharded: each instance serves metrics_port + 100 x shard.index (0 = any free port)",
    )
    shard: ShardSettings = Field(
        default_factory=ShardSettings,
        description="The part of the universe this instance signals (libs/common/shard.py)",
    )
