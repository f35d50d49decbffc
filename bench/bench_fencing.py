"""Writer fencing: what the per-verdict lock round trip cost, and what the epoch check in the order insert costs.

Embedded Postgres with fsync on; one async psycopg connection per role, as the services hold them. Each
operation runs after `gap_s` idle (verdicts arrive at about 20 per second in the tick -> order benchmark, so
each step wakes an idle backend), and is timed alone:
- `fence_still_held_*`: `WriterLock.still_held()`, the round trip risk used to make before publishing every
  approved verdict (removed from the hot path: the verdict now carries the writer's epoch).
- `order_insert_fenced_*`: execution's journal insert of a verdict's order as it is now (one statement that
  also checks the execution and the risk epoch and would record a fenced verdict).
- `order_insert_plain_*`: the same insert without the epoch checks (the statement before fencing), so the
  difference is what the fence adds inside the statement (no extra round trip).
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from bench.bench_pipeline import percentile
from bench.stack import embedded_stack
from libs.common.db import open_pool
from libs.common.writer_lock import WriterLock
from services.execution.journal import INSERTED, Journal, NewOrder

PLAIN_INSERT_SQL = (
    "INSERT INTO orders (client_order_id, verdict_id, signal_id, symbol, side, order_type, quantity,"
    " price_limit, status, mode, exchange, tick_ts, expires_at, purpose, sent_by)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'SUBMITTED', %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT DO NOTHING RETURNING client_order_id"
)


def _order(i: int, tag: str, risk_epoch: int) -> NewOrder:
    return NewOrder(
        client_order_id=f"bnml-{tag}-{i}",
        verdict_id=f"v-{tag}-{i}",
        signal_id=f"s-{tag}-{i}",
        symbol="BTC/USDT",
        side="BUY",
        order_type="MARKET",
        quantity=Decimal("0.001"),
        price_limit=Decimal("60000"),
        mode="paper",
        risk_epoch=risk_epoch,
        issued_by="bench",
    )


def _figures(name: str, lat_ms: list[float]) -> dict[str, float]:
    return {f"{name}_p50_ms": percentile(lat_ms, 50), f"{name}_p99_ms": percentile(lat_ms, 99)}


async def _measure(url: str, n: int, gap_s: float) -> dict[str, float]:
    risk_lock = WriterLock(url, "bnml.risk.writer", "risk", holder="bench", session_timeout_s=60)
    exec_lock = WriterLock(url, "bnml.execution.writer", "execution", holder="bench", session_timeout_s=60)
    pool = await open_pool(url)
    try:
        assert await risk_lock.try_acquire() and await exec_lock.try_acquire()
        journal = Journal(pool, "paper", epoch=exec_lock.epoch)
        held, fenced, plain = [], [], []
        for i in range(n):  # interleaved, so that load on the machine colours all three alike
            await asyncio.sleep(gap_s)
            t0 = time.perf_counter()
            assert await risk_lock.still_held()
            held.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(gap_s)
            t0 = time.perf_counter()
            assert await journal.insert_order(_order(i, "f", risk_lock.epoch), "bench") == INSERTED
            fenced.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(gap_s)
            o = _order(i, "p", risk_lock.epoch)
            t0 = time.perf_counter()
            async with pool.connection() as conn:
                cur = await conn.execute(
                    PLAIN_INSERT_SQL,
                    (
                        o.client_order_id,
                        o.verdict_id,
                        o.signal_id,
                        o.symbol,
                        o.side,
                        o.order_type,
                        o.quantity,
                        o.price_limit,
                        o.mode,
                        "paper",
                        o.tick_ts,
                        o.expires_at,
                        o.purpose,
                        "bench",
                    ),
                )
                assert await cur.fetchone() is not None
            plain.append((time.perf_counter() - t0) * 1000)
    finally:
        await risk_lock.release()
        await exec_lock.release()
        await pool.close()
    out = _figures("fence_still_held", held)
    out.update(_figures("order_insert_fenced", fenced))
    out.update(_figures("order_insert_plain", plain))
    return out


def run(quick: bool = False) -> dict[str, float]:
    with embedded_stack("bnml-bench-fencing-") as st:
        url = st.fresh_db("fencing")
        return asyncio.run(_measure(url, 40 if quick else 300, 0.05))


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1, sort_keys=True))
