"""Incident rules (pure core): bus events in, open/note/resolve actions out. Time is passed in.

SEV-1 capital at risk: kill switch engaged, order loop, incoherent orders (journal/exchange mismatch,
over-fills), abnormal loss, any SEV-1 alert. SEV-2 degraded trading: stale market data, breakers stuck
on, external alerting down, any SEV-2 alert. SEV-3 observability: backup failed, dashboard, SEV-3 alerts.
One open incident per (kind, key); later events are attached to it as notes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal


@dataclass(frozen=True)
class IncidentAction:
    op: str  # open | note | resolve
    kind: str
    key: str
    severity: str
    title: str
    summary: str
    ts: datetime
    source: str = ""


@dataclass
class Rules:
    order_loop_max_orders: int = 30
    order_loop_window_s: float = 60.0
    abnormal_loss_usdt: Decimal = Decimal("100")
    stale_incident_s: float = 120.0
    breaker_stuck_s: float = 3600.0


@dataclass
class IncidentBook:
    rules: Rules = field(default_factory=Rules)
    open_keys: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, key) -> severity
    _orders: dict[str, deque[datetime]] = field(default_factory=dict)  # symbol -> submit times
    _seen_orders: dict[str, datetime] = field(default_factory=dict)
    _stale_since: dict[str, datetime] = field(default_factory=dict)
    _breakers_since: dict[str, datetime] = field(default_factory=dict)

    # -- plumbing ---------------------------------------------------------------------------
    def _open(
        self, kind: str, key: str, severity: str, title: str, summary: str, ts: datetime, source: str
    ) -> IncidentAction:
        if (kind, key) in self.open_keys:
            return IncidentAction("note", kind, key, self.open_keys[(kind, key)], title, summary, ts, source)
        self.open_keys[(kind, key)] = severity
        return IncidentAction("open", kind, key, severity, title, summary, ts, source)

    def _resolve(self, kind: str, key: str, summary: str, ts: datetime, source: str) -> list[IncidentAction]:
        sev = self.open_keys.pop((kind, key), None)
        return [] if sev is None else [IncidentAction("resolve", kind, key, sev, "", summary, ts, source)]

    def load_open(self, rows: list[tuple[str, str, str]]) -> None:
        """Open incidents from Postgres at start: (kind, key, severity)."""
        for kind, key, sev in rows:
            self.open_keys[(kind, key)] = sev

    # -- rules ------------------------------------------------------------------------------
    def on_kill_switch(self, action: str, reason: str, actor: str, ts: datetime) -> list[IncidentAction]:
        if action == "engage":
            return [
                self._open(
                    "kill_switch",
                    "global",
                    "SEV-1",
                    f"kill switch engaged: {reason}",
                    f"engaged by {actor}: {reason}",
                    ts,
                    "control.kill_switch",
                )
            ]
        return self._resolve(
            "kill_switch", "global", f"released by {actor}: {reason}", ts, "control.kill_switch"
        )

    def on_kill_switch_readable(self, action: str, actor: str, ts: datetime) -> list[IncidentAction]:
        """A valid command after an unreadable one: the "state unknown" incident is over."""
        return self._resolve(
            "alert",
            "kill_switch:unreadable",
            f"state known again: {action} by {actor}",
            ts,
            "control.kill_switch",
        )

    def on_order(
        self, client_order_id: str, symbol: str, status: str, quantity: Decimal, filled: Decimal, ts: datetime
    ) -> list[IncidentAction]:
        out: list[IncidentAction] = []
        if filled > quantity:
            out.append(
                self._open(
                    "incoherent_orders",
                    client_order_id,
                    "SEV-1",
                    f"incoherent order {client_order_id}: filled {filled} > quantity {quantity}",
                    f"{symbol} {status} filled {filled} of {quantity}",
                    ts,
                    "exec.order",
                )
            )
        if status == "SUBMITTED" and client_order_id not in self._seen_orders:
            self._seen_orders[client_order_id] = ts
            window = self._orders.setdefault(symbol, deque())
            window.append(ts)
            horizon = ts - timedelta(seconds=self.rules.order_loop_window_s)
            while window and window[0] < horizon:
                window.popleft()
            if len(window) > self.rules.order_loop_max_orders:
                out.append(
                    self._open(
                        "order_loop",
                        symbol,
                        "SEV-1",
                        f"order loop on {symbol}: {len(window)} orders in "
                        f"{self.rules.order_loop_window_s:.0f} s",
                        f"{len(window)} orders submitted on {symbol} within the window",
                        ts,
                        "exec.order",
                    )
                )
        if len(self._seen_orders) > 50_000:  # bounded memory: forget the oldest half
            for k in list(self._seen_orders)[:25_000]:
                del self._seen_orders[k]
        return out

    def on_fill(
        self, symbol: str, realized_pnl: Decimal, client_order_id: str, ts: datetime
    ) -> list[IncidentAction]:
        if realized_pnl < -self.rules.abnormal_loss_usdt:
            return [
                self._open(
                    "abnormal_loss",
                    symbol,
                    "SEV-1",
                    f"abnormal loss on {symbol}: {realized_pnl} USDT on one fill",
                    f"fill of {client_order_id} realized {realized_pnl} USDT",
                    ts,
                    "exec.fill",
                )
            ]
        return []

    def on_market_status(self, symbol: str, status: str, ts: datetime) -> list[IncidentAction]:
        if status == "stale":
            self._stale_since.setdefault(symbol, ts)
            return []
        self._stale_since.pop(symbol, None)
        return self._resolve("stale_data", symbol, f"{symbol} fresh again", ts, "md.status")

    def on_breaker(
        self, tripped: bool, breaker: str, symbol: str | None, reason: str, ts: datetime
    ) -> list[IncidentAction]:
        key = f"{breaker}:{symbol}" if symbol else breaker
        if tripped:
            self._breakers_since.setdefault(key, ts)
            return []
        self._breakers_since.pop(key, None)
        return self._resolve("breaker_stuck", key, f"breaker {key} cleared: {reason}", ts, "risk.breaker")

    def on_alert(
        self, severity: str, source: str, title: str, detail: str, dedup_key: str, ts: datetime
    ) -> list[IncidentAction]:
        if severity not in ("SEV-1", "SEV-2", "SEV-3"):
            return []
        key = dedup_key or f"{source}:{title}"
        low = f"{key} {title}".lower()
        if "mismatch" in low:
            kind, severity = "journal_mismatch", "SEV-1"
        elif "alerting_down" in low or "alerting externe" in low:
            kind, severity = "alerting_down", "SEV-2"
        elif "backup" in low:
            kind, severity = "backup_failed", "SEV-3"
        elif "dashboard" in low:
            kind, severity = "dashboard_down", "SEV-3"
        else:
            kind = "alert"
        return [
            self._open(
                kind, key, severity, title, f"{source}: {title} {detail}".strip(), ts, f"alert:{source}"
            )
        ]

    def on_mismatch_resolved(self, key: str, ts: datetime, summary: str) -> list[IncidentAction]:
        return self._resolve("journal_mismatch", key, summary, ts, "operator")

    def on_delivery(self, channel: str, ok: bool, error: str, ts: datetime) -> list[IncidentAction]:
        key = f"ops_api:alerting_down:{channel}"
        if ok:
            return self._resolve("alerting_down", key, f"{channel} delivers again", ts, "ops_api")
        return [
            self._open(
                "alerting_down",
                key,
                "SEV-2",
                f"alerting externe KO: {channel}",
                f"{channel} delivery failed: {error}",
                ts,
                "ops_api",
            )
        ]

    def on_backup(self, ok: bool, detail: str, ts: datetime) -> list[IncidentAction]:
        if ok:
            return self._resolve("backup_failed", "backup", f"backup ok: {detail}", ts, "ops_api")
        return [self._open("backup_failed", "backup", "SEV-3", "backup failed", detail, ts, "ops_api")]

    def tick(self, now: datetime) -> list[IncidentAction]:
        """Time-based rules: stale data and breakers that stay on too long."""
        out: list[IncidentAction] = []
        for symbol, since in self._stale_since.items():
            age = (now - since).total_seconds()
            if age >= self.rules.stale_incident_s and ("stale_data", symbol) not in self.open_keys:
                out.append(
                    self._open(
                        "stale_data",
                        symbol,
                        "SEV-2",
                        f"market data stale on {symbol}",
                        f"stale for {age:.0f} s since {since.isoformat()}",
                        now,
                        "md.status",
                    )
                )
        for key, since in self._breakers_since.items():
            age = (now - since).total_seconds()
            if age >= self.rules.breaker_stuck_s and ("breaker_stuck", key) not in self.open_keys:
                out.append(
                    self._open(
                        "breaker_stuck",
                        key,
                        "SEV-2",
                        f"breaker {key} on for {age / 60:.0f} min",
                        f"tripped at {since.isoformat()}",
                        now,
                        "risk.breaker",
                    )
                )
        return out
