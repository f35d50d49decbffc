"""Records the bus into Postgres so the DoD reports need nothing else: heartbeats (totals and per-minute
coverage), market-data freshness transitions, breakers, trading state, kill-switch commands, refusals
per reason, and the incidents the rules open."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime

from libs.common.contracts import Heartbeat
from libs.common.db import Pool
from services.ops_api.counters import counter_deltas
from services.ops_api.incidents import IncidentAction


def minute_of(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


class HeartbeatRecorder:
    def __init__(self, pool: Pool):
        self.pool = pool
        self._last: dict[tuple[str, str], dict[str, int]] = {}

    async def record(self, hb: Heartbeat) -> None:
        key = (hb.service, hb.instance)
        async with self.pool.connection() as conn, conn.transaction():
            previous = self._last.get(key)
            if previous is None:
                row = await (
                    await conn.execute(
                        "SELECT last_counters FROM service_instances WHERE service = %s AND instance = %s",
                        key,
                    )
                ).fetchone()
                previous = dict(row["last_counters"]) if row else {}
            deltas = counter_deltas(previous, hb.counters)
            for name, delta in deltas.items():
                await conn.execute(
                    "INSERT INTO service_counters (service, name, value) VALUES (%s, %s, %s)"
                    " ON CONFLICT (service, name) DO UPDATE SET value = service_counters.value + EXCLUDED.value",
                    (hb.service, name, delta),
                )
            await conn.execute(
                "INSERT INTO service_instances (service, instance, last_counters, last_seen, status)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (service, instance) DO UPDATE SET"
                " last_counters = EXCLUDED.last_counters, last_seen = EXCLUDED.last_seen, status = EXCLUDED.status",
                (hb.service, hb.instance, json.dumps(hb.counters), hb.ts, hb.status),
            )
            ok = 1 if hb.status in ("ok", "degraded", "halted") else 0
            await conn.execute(
                "INSERT INTO heartbeat_minutes (service, minute, beats, ok_beats, last_ts) VALUES (%s, %s, 1, %s, %s)"
                " ON CONFLICT (service, minute) DO UPDATE SET beats = heartbeat_minutes.beats + 1,"
                " ok_beats = heartbeat_minutes.ok_beats + EXCLUDED.ok_beats,"
                " last_ts = greatest(heartbeat_minutes.last_ts, EXCLUDED.last_ts)",
                (hb.service, minute_of(hb.ts), ok, hb.ts),
            )
        self._last[key] = dict(hb.counters)


class EventRecorder:
    """Everything else ops_api keeps from the bus. Idempotent on redelivery (message ids are unique keys)."""

    def __init__(self, pool: Pool):
        self.pool = pool
        self._md_status: dict[str, str] = {}
        self._refusals: Counter[tuple[datetime, str]] = Counter()

    async def market_status(self, symbol: str, status: str, age_s: float, reason: str, ts: datetime) -> bool:
        """Store transitions only; returns True when the status changed."""
        previous = self._md_status.get(symbol)
        if previous is None:
            async with self.pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "SELECT status FROM market_status_events WHERE symbol = %s ORDER BY ts DESC, id DESC LIMIT 1",
                        (symbol,),
                    )
                ).fetchone()
            previous = row["status"] if row else None
        self._md_status[symbol] = status
        if previous == status:
            return False
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO market_status_events (symbol, status, age_s, reason, ts)"
                " VALUES (%s, %s, %s, %s, %s)",
                (symbol, status, age_s, reason[:500], ts),
            )
        return True

    async def breaker(
        self,
        event_id: str,
        tripped: bool,
        breaker: str,
        effect: str | None,
        symbol: str | None,
        reason: str,
        ts: datetime,
    ) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO breaker_log (event_id, kind, breaker, effect, symbol, reason, ts)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
                (event_id, "tripped" if tripped else "cleared", breaker, effect, symbol, reason[:500], ts),
            )

    async def trading_state(
        self, event_id: str, state: str, previous: str, reason: str, ts: datetime
    ) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO trading_state_log (event_id, state, previous, reason, ts) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (event_id) DO NOTHING",
                (event_id, state, previous, reason[:500], ts),
            )

    async def kill_switch(
        self, command_id: str, action: str, reason: str, actor: str, flatten: bool, ts: datetime
    ) -> bool:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO kill_switch_log (command_id, action, reason, actor, flatten, ts)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (command_id) DO NOTHING RETURNING id",
                    (command_id, action, reason, actor, flatten, ts),
                )
            ).fetchone()
        return row is not None

    def refusal(self, reasons: list[str], ts: datetime) -> None:
        for r in reasons or ["unspecified"]:
            # the reason family (before any ':' detail) keeps the label set small
            self._refusals[(minute_of(ts), r.split(":")[0].strip()[:80] or "unspecified")] += 1

    async def flush_refusals(self) -> int:
        if not self._refusals:
            return 0
        batch, self._refusals = self._refusals, Counter()
        try:
            async with self.pool.connection() as conn, conn.transaction():
                for (minute, reason), n in batch.items():
                    await conn.execute(
                        "INSERT INTO refusal_minutes (minute, reason, n) VALUES (%s, %s, %s) ON CONFLICT (minute, reason)"
                        " DO UPDATE SET n = refusal_minutes.n + EXCLUDED.n",
                        (minute, reason, n),
                    )
        except Exception:
            self._refusals.update(batch)  # keep them for the next flush
            raise
        return len(batch)

    async def open_incidents(self) -> list[tuple[str, str, str]]:
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT kind, key, severity FROM incidents WHERE resolved_at IS NULL")
            ).fetchall()
        return [(r["kind"], r["key"], r["severity"]) for r in rows]

    async def apply_incidents(self, actions: list[IncidentAction]) -> list[int]:
        """Open / note / resolve in Postgres; returns ids of incidents opened."""
        opened: list[int] = []
        if not actions:
            return opened
        async with self.pool.connection() as conn, conn.transaction():
            for a in actions:
                if a.op == "open":
                    row = await (
                        await conn.execute(
                            "INSERT INTO incidents (severity, kind, key, title, opened_at) VALUES (%s, %s, %s, %s, %s)"
                            " ON CONFLICT (kind, key) WHERE resolved_at IS NULL DO NOTHING RETURNING id",
                            (a.severity, a.kind, a.key, a.title[:300], a.ts),
                        )
                    ).fetchone()
                    if row is not None:
                        opened.append(row["id"])
                row = await (
                    await conn.execute(
                        "SELECT id FROM incidents WHERE kind = %s AND key = %s ORDER BY (resolved_at IS NULL) DESC,"
                        " opened_at DESC LIMIT 1",
                        (a.kind, a.key),
                    )
                ).fetchone()
                if row is None:
                    continue
                await conn.execute(
                    "INSERT INTO incident_events (incident_id, ts, source, summary) VALUES (%s, %s, %s, %s)",
                    (row["id"], a.ts, a.source, a.summary[:1000]),
                )
                if a.op == "resolve":
                    await conn.execute(
                        "UPDATE incidents SET resolved_at = %s, resolution = %s WHERE id = %s"
                        " AND resolved_at IS NULL",
                        (a.ts, a.summary[:500], row["id"]),
                    )
        return opened
