"""Operational contracts: heartbeats, alerts and dead letters."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from libs.common.contracts.base import Message

Severity = Literal["SEV-1", "SEV-2", "SEV-3", "INFO"]


class ShardInfo(BaseModel):
    """A sharded instance's part of the universe (libs/common/shard.py): it owns the symbols whose
    `shard_of(symbol, count) == index`; `symbols` are those it serves now (ccxt form), `digest` their fingerprint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0)
    count: int = Field(ge=1)
    symbols: list[str] = Field(default_factory=list, max_length=10_000)
    digest: str = ""


class Heartbeat(Message):
    service: str
    instance: str = Field(description="Process instance id; changes on restart")
    status: Literal["ok", "degraded", "halted", "stopping"] = "ok"
    uptime_s: float = Field(ge=0)
    counters: dict[str, int] = Field(default_factory=dict, description="Totals since the process started")
    detail: str = ""
    metrics_port: int | None = None
    model: dict[str, str | bool | None] | None = Field(
        default=None,
        description="signal only: the model this process serves {version, gate_passed, warning} "
        "(version null when it holds); not the registry's `current`",
    )
    shard: ShardInfo | None = Field(
        default=None, description="signal and market_data: the shard this instance owns"
    )
    writer_epoch: int | None = Field(
        default=None,
        description="risk and execution: the single-writer epoch this instance decides (risk) or sends "
        "(execution) under, once it takes work (subscribed, its consumers bound); null on a standby, a "
        "writer still starting or one that lost its lock",
    )


class Alert(Message):
    severity: Severity
    source: str = Field(description="Service that raised it")
    title: str = Field(min_length=1, max_length=200)
    detail: str = ""
    dedup_key: str = Field(default="", description="Alerts with the same key are delivered once per window")


class DeadLetter(Message):
    """An invalid message, set aside with the reason. `payload` is the raw text (truncated)."""

    subject: str
    service: str
    reason: str
    payload: str = ""
    payload_size: int = 0
