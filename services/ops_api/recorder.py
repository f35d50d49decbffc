"""Records heartbeats into Postgres: per-instance last counters and the running totals."""

from __future__ import annotations

import json

from psycopg_pool import AsyncConnectionPool

from libs.common.contracts import Heartbeat
from services.ops_api.counters import counter_deltas


class HeartbeatRecorder:
    def __init__(self, pool: AsyncConnectionPool):
        self.pool = pool
        self._last: dict[tuple[str, str], dict[str, int]] = {}

    async def record(self, hb: Heartbeat) -> None:
        key = (hb.service, hb.instance)
        async with self.pool.connection() as conn, conn.transaction():
            previous = self._last.get(key)
            if previous is None:
                row = await (await conn.execute(
                    "SELECT last_counters FROM service_instances WHERE service = %s AND instance = %s", key)).fetchone()
                previous = dict(row["last_counters"]) if row else {}
            deltas = counter_deltas(previous, hb.counters)
            for name, delta in deltas.items():
                await conn.execute(
                    "INSERT INTO service_counters (service, name, value) VALUES (%s, %s, %s)"
                    " ON CONFLICT (service, name) DO UPDATE SET value = service_counters.value + EXCLUDED.value",
                    (hb.service, name, delta))
            await conn.execute(
                "INSERT INTO service_instances (service, instance, last_counters, last_seen, status)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (service, instance) DO UPDATE SET"
                " last_counters = EXCLUDED.last_counters, last_seen = EXCLUDED.last_seen, status = EXCLUDED.status",
                (hb.service, hb.instance, json.dumps(hb.counters), hb.ts, hb.status))
        self._last[key] = dict(hb.counters)
