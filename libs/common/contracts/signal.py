"""Signal contracts: the model's decision per symbol and drift of its inputs."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from libs.common.contracts.base import Message, Money, Side, SignalSide

__all__ = ["DriftStatus", "Side", "Signal", "SignalSide"]


class Signal(Message):
    """What the signal service thinks of a symbol now. HOLD is a decision too."""

    symbol: str = Field(min_length=3, max_length=32)
    side: SignalSide
    probability: float = Field(ge=0, le=1, description="Model probability of the predicted side")
    expected_edge_bps: float = Field(default=0.0, description="Expected return net of fees, basis points")
    model_version: str = Field(min_length=1, max_length=64)
    price: Money = Field(gt=0, description="Reference price (last) the signal was computed at")
    reason: str = ""
    tick_id: str | None = Field(
        default=None, description="Id of the tick that triggered it (latency tracing)"
    )
    tick_ts: AwareDatetime | None = Field(default=None, description="Event time of that tick")


class DriftStatus(Message):
    """Drift of live features/predictions against the training reference."""

    detected: bool
    symbol: str | None = Field(default=None, description="None when the drift is global")
    model_version: str = ""
    scores: dict[str, float] = Field(
        default_factory=dict, description="PSI per feature, prediction shift, hit rate"
    )
    reason: str = ""
