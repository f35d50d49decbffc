"""Every NATS subject, built by functions (never typed inline), and which JetStream stream keeps it.

Symbols on subjects use the exchange id form (`BTCUSDT`); messages carry the ccxt form (`BTC/USDT`).

| subject                          | message                 | kept by stream                         |
|----------------------------------|-------------------------|----------------------------------------|
| md.tick.<SYM>                    | Tick                    | - (core NATS: ticks are cheap and rebuilt) |
| md.last.<SYM>                    | Tick                    | - (the newest tick, at most every `last_interval_ms`) |
| md.candle.<SYM>.<tf>             | Candle                  | -                                      |
| md.status.<SYM>                  | MarketStatus            | -                                      |
| md.universe                      | UniverseChanged         | MD_UNIVERSE (last value)               |
| signal.<SYM>                     | Signal                  | -                                      |
| drift.status                     | DriftStatus             | SIGNAL_DRIFT                           |
| risk.verdict.<SYM>               | RiskVerdict             | VERDICTS (work for execution)          |
| risk.breaker.tripped / .cleared  | BreakerTripped/Cleared  | RISK_EVENTS                            |
| risk.trading_state               | TradingStateChanged     | RISK_EVENTS                            |
| risk.account                     | AccountState            | RISK_EVENTS                            |
| exec.order.<SYM>                 | OrderEvent              | ORDERS                                 |
| exec.fill.<SYM>                  | Fill                    | FILLS                                  |
| control.kill_switch              | KillSwitchCommand       | KILL_SWITCH (last value: the standing state) |
| control.kill_switch_ack.<svc>    | KillSwitchAcknowledged  | -                                      |
| control.kill_switch_latched.<svc>| KillSwitchAcknowledged  | -                                      |
| control.trading                  | TradingControlCommand   | - (core NATS: applied now or answered as not applied) |
| control.trading_result.<svc>     | TradingControlResult    | -                                      |
| svc.heartbeat.<service>          | Heartbeat               | -                                      |
| alert.<severity>                 | Alert                   | ALERTS                                 |
| dlq.<original subject>           | DeadLetter              | DLQ                                    |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from libs.common.contracts import (
    AccountState,
    Alert,
    BreakerCleared,
    BreakerTripped,
    Candle,
    DeadLetter,
    DriftStatus,
    Fill,
    Heartbeat,
    KillSwitchAcknowledged,
    KillSwitchCommand,
    MarketStatus,
    Message,
    OrderEvent,
    RiskVerdict,
    Signal,
    Tick,
    TradingControlCommand,
    TradingControlResult,
    TradingStateChanged,
    UniverseChanged,
)


def exchange_symbol(symbol: str) -> str:
    """`BTC/USDT` -> `BTCUSDT` (the Binance id form used on subjects)."""
    return symbol.split(":")[0].replace("/", "").upper()


def _token(sym: str) -> str:
    tok = exchange_symbol(sym) if "/" in sym else sym.upper()
    if not tok or any(c in tok for c in ".*> \t"):
        raise ValueError(f"invalid symbol token for a subject: {sym!r}")
    return tok


def tick(sym: str) -> str:
    return f"md.tick.{_token(sym)}"


def last(sym: str) -> str:
    """The symbol's newest tick, conflated at the source (market_data.last_interval_ms): for services that
    need the last price, not every tick (risk, execution)."""
    return f"md.last.{_token(sym)}"


def candle(sym: str, timeframe: str) -> str:
    return f"md.candle.{_token(sym)}.{timeframe}"


def market_status(sym: str) -> str:
    return f"md.status.{_token(sym)}"


def universe() -> str:
    return "md.universe"


def signal(sym: str) -> str:
    return f"signal.{_token(sym)}"


def drift() -> str:
    return "drift.status"


def verdict(sym: str) -> str:
    return f"risk.verdict.{_token(sym)}"


def breaker_tripped() -> str:
    return "risk.breaker.tripped"


def breaker_cleared() -> str:
    return "risk.breaker.cleared"


def trading_state() -> str:
    return "risk.trading_state"


def account() -> str:
    return "risk.account"


def order(sym: str) -> str:
    return f"exec.order.{_token(sym)}"


def fill(sym: str) -> str:
    return f"exec.fill.{_token(sym)}"


def kill_switch() -> str:
    return "control.kill_switch"


def kill_switch_ack(service: str) -> str:
    return f"control.kill_switch_ack.{service}"


def kill_switch_latched(service: str) -> str:
    """Sent by execution the instant an engage latches (before its cancel sweep), so the time to
    "no order can be sent any more" is visible apart from the sweep's confirmation (the ack)."""
    return f"control.kill_switch_latched.{service}"


def trading_control() -> str:
    """Pause / resume new entries, exit one symbol (operator, via ops_api); risk applies it."""
    return "control.trading"


def trading_control_result(service: str) -> str:
    return f"control.trading_result.{service}"


def heartbeat(service: str) -> str:
    return f"svc.heartbeat.{service}"


def alert(severity: str) -> str:
    """`SEV-1` -> `alert.sev1`."""
    return f"alert.{severity.lower().replace('-', '')}"


def dlq(subject: str) -> str:
    return f"dlq.{subject}"


# Wildcards for subscribers.
ALL_TICKS = "md.tick.*"
ALL_LAST = "md.last.*"
ALL_CANDLES = "md.candle.*.*"
ALL_STATUS = "md.status.*"
ALL_SIGNALS = "signal.*"
ALL_VERDICTS = "risk.verdict.*"
ALL_ORDERS = "exec.order.*"
ALL_FILLS = "exec.fill.*"
ALL_HEARTBEATS = "svc.heartbeat.*"
ALL_ALERTS = "alert.*"
ALL_KILL_SWITCH_ACKS = "control.kill_switch_ack.*"
ALL_KILL_SWITCH_LATCHED = "control.kill_switch_latched.*"
ALL_DLQ = "dlq.>"
ALL_TRADING_CONTROL_RESULTS = "control.trading_result.*"


@dataclass(frozen=True)
class StreamSpec:
    """A JetStream stream, provisioned idempotently at start-up by `Bus.ensure_streams`."""

    name: str
    subjects: tuple[str, ...]
    max_msgs_per_subject: int = -1
    max_age_s: float = 0  # 0 = forever
    duplicate_window_s: float = 120
    max_bytes: int = -1
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # an acknowledged write must survive nodes crashing together (docs/design.md, "Durability per stream"): never
    # fewer replicas than the configured default (settings nats.replicas), and on a cluster the servers fsync
    # every write before acknowledging it (deploy/nats/cluster.conf `sync_interval: always`)
    critical: bool = False


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(
        "KILL_SWITCH",
        (kill_switch(),),
        max_msgs_per_subject=1,
        description="Last value: the standing kill-switch command",
        critical=True,
    ),
    StreamSpec(
        "VERDICTS",
        (ALL_VERDICTS,),
        max_age_s=7 * 86400,
        max_bytes=1 << 30,
        description="Risk verdicts, consumed by execution with explicit acks",
        critical=True,
    ),
    StreamSpec(
        "ORDERS",
        (ALL_ORDERS,),
        max_age_s=30 * 86400,
        max_bytes=1 << 30,
        description="Order events",
        critical=True,
    ),
    StreamSpec(
        "FILLS", (ALL_FILLS,), max_age_s=30 * 86400, max_bytes=1 << 30, description="Fills", critical=True
    ),
    StreamSpec(
        "RISK_EVENTS",
        ("risk.breaker.*", trading_state(), account()),
        max_age_s=30 * 86400,
        max_bytes=256 << 20,
        description="Breakers, trading state, account snapshots",
    ),
    StreamSpec("MD_UNIVERSE", (universe(),), max_msgs_per_subject=1, description="Current universe"),
    StreamSpec("SIGNAL_DRIFT", (drift(),), max_msgs_per_subject=100, description="Drift status"),
    StreamSpec("ALERTS", (ALL_ALERTS,), max_age_s=30 * 86400, max_bytes=256 << 20, description="Alerts"),
    StreamSpec("DLQ", (ALL_DLQ,), max_age_s=14 * 86400, max_bytes=256 << 20, description="Dead letters"),
)


def stream_for(subject: str) -> StreamSpec | None:
    """The stream that keeps `subject`, if any (so publishers know to await a PubAck)."""
    for spec in STREAMS:
        for pattern in spec.subjects:
            if matches(pattern, subject):
                return spec
    return None


def matches(pattern: str, subject: str) -> bool:
    """NATS wildcard match (`*` one token, `>` the rest)."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


# Which contract travels on which subject family (for `bnml contracts` and for integrators).
CATALOG: dict[str, type[Message]] = {
    "md.tick.<SYM>": Tick,
    "md.last.<SYM>": Tick,
    "md.candle.<SYM>.<tf>": Candle,
    "md.status.<SYM>": MarketStatus,
    "md.universe": UniverseChanged,
    "signal.<SYM>": Signal,
    "drift.status": DriftStatus,
    "risk.verdict.<SYM>": RiskVerdict,
    "risk.breaker.tripped": BreakerTripped,
    "risk.breaker.cleared": BreakerCleared,
    "risk.trading_state": TradingStateChanged,
    "risk.account": AccountState,
    "exec.order.<SYM>": OrderEvent,
    "exec.fill.<SYM>": Fill,
    "control.kill_switch": KillSwitchCommand,
    "control.kill_switch_ack.<service>": KillSwitchAcknowledged,
    "control.kill_switch_latched.<service>": KillSwitchAcknowledged,
    "control.trading": TradingControlCommand,
    "control.trading_result.<service>": TradingControlResult,
    "svc.heartbeat.<service>": Heartbeat,
    "alert.<severity>": Alert,
    "dlq.<subject>": DeadLetter,
}
