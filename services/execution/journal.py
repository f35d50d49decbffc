"""The order journal in Postgres (shell): orders, fills, positions, balances, fenced by the writer epochs.

Every write that changes the books is one transaction: order totals, the fill (unique by exchange,
symbol and trade id), the position and the balances it moved. Journal commits are durable (no synchronous_commit=off).

Fencing (libs/common/writer_lock.py): with `epoch` set (the execution shell sets it to its writer lock's
epoch), every write below checks in its own statement that this epoch is still execution's current one
(`writer_epochs`) and raises LockLostError otherwise: a writer deposed while paused journals nothing, and so
sends nothing (an order is journaled before it is sent; the paper exchange's record of a request is written
by the same statement as its outcome). The order insert of a verdict also checks the verdict's `risk_epoch`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from libs.common.db import DictConnection, Pool
from libs.common.errors import ConfigurationError
from libs.common.writer_lock import LockLostError
from services.execution.core import OPEN_STATUSES
from services.execution.ledger import Balance, Ledger, Position
from services.execution.records import FillRow, NewOrder, OrderRow, PaperRequest, fill_from_db, row_from_db

__all__ = [
    "DUPLICATE",
    "INSERTED",
    "STALE_RISK_EPOCH",
    "WRITER_LOCK_NAME",
    "FillRow",
    "Insert",
    "Journal",
    "NewOrder",
    "OrderRow",
    "PaperRequest",
]

# An order's journaled change, as one statement: fills (skipping any already journaled), the order's totals,
# the position, the balances and (paper) the paper exchange's record of the request it received. `inserted_trade_ids` says which fills are new; the order's columns follow
# (NULL when no such order exists).
_ORDER_UPDATE_SQL = """
WITH g AS (SELECT %(epoch)s::bigint IS NULL OR EXISTS (
    SELECT 1 FROM writer_epochs WHERE role = 'execution' AND epoch = %(epoch)s::bigint) AS ok
), f AS (
    INSERT INTO fills (exchange, trade_id, client_order_id, symbol, side, quantity, price, fee, fee_asset,
                       realized_pnl_usdt, ts, is_maker, fee_usdt)
    SELECT * FROM unnest(%(f_exchange)s::text[], %(f_trade_id)s::text[], %(f_coid)s::text[], %(f_symbol)s::text[],
                         %(f_side)s::text[], %(f_qty)s::numeric[], %(f_price)s::numeric[], %(f_fee)s::numeric[],
                         %(f_fee_asset)s::text[], %(f_pnl)s::numeric[], %(f_ts)s::timestamptz[],
                         %(f_maker)s::boolean[], %(f_fee_usdt)s::numeric[])
    WHERE (SELECT ok FROM g)
    ON CONFLICT (exchange, symbol, trade_id) DO NOTHING
    RETURNING trade_id
), o AS (
    UPDATE orders SET status = %(status)s, reason = COALESCE(%(reason)s, reason), filled_quantity = %(filled)s,
        average_price = COALESCE(%(avg)s, average_price), fee_usdt = fee_usdt + %(fee_add)s, locked = %(locked)s,
        trades = COALESCE(%(trades)s, trades), exchange_order_id = COALESCE(%(xid)s, exchange_order_id),
        resting_expires_at = COALESCE(%(rest)s, resting_expires_at), updated_at = now()
    WHERE client_order_id = %(coid)s AND (SELECT ok FROM g)
    RETURNING *
), p AS (
    INSERT INTO positions (symbol, quantity, average_cost, realized_pnl_usdt, cost, updated_at)
    SELECT %(p_symbol)s, %(p_qty)s, %(p_avg)s, %(p_pnl)s, %(p_cost)s, now() WHERE (SELECT ok FROM g)
    ON CONFLICT (symbol) DO UPDATE SET quantity = EXCLUDED.quantity, average_cost = EXCLUDED.average_cost,
        realized_pnl_usdt = EXCLUDED.realized_pnl_usdt, cost = EXCLUDED.cost, updated_at = now()
), r AS (
    INSERT INTO paper_requests (client_order_id, symbol, side, quantity, received_at, instance)
    SELECT * FROM unnest(%(r_coid)s::text[], %(r_symbol)s::text[], %(r_side)s::text[], %(r_qty)s::numeric[],
                         %(r_at)s::timestamptz[], %(r_instance)s::text[])
    WHERE (SELECT ok FROM g)
), b AS (
    INSERT INTO balances (asset, free, locked, updated_at)
    SELECT a, fr, lo, now() FROM unnest(%(b_asset)s::text[], %(b_free)s::numeric[], %(b_locked)s::numeric[])
        AS t (a, fr, lo) WHERE (SELECT ok FROM g)
    ON CONFLICT (asset) DO UPDATE SET free = EXCLUDED.free, locked = EXCLUDED.locked, updated_at = now()
)
SELECT (SELECT ok FROM g) AS epoch_ok, ids.inserted_trade_ids, o.*
FROM (SELECT array_agg(trade_id) AS inserted_trade_ids FROM f) AS ids LEFT JOIN o ON true
"""

# The order row of a verdict (or a flatten), committed before anything is sent, in one statement that checks
# execution's epoch and (for a verdict) that the risk epoch it was issued under is still risk's current one
# (0: no risk writer ever took the lock on this database). A verdict from a deposed risk writer is recorded in
# `fenced_verdicts` instead, by the same statement.
_INSERT_ORDER_SQL = """
WITH g AS (
    SELECT (%(epoch)s::bigint IS NULL OR EXISTS (
                SELECT 1 FROM writer_epochs WHERE role = 'execution' AND epoch = %(epoch)s::bigint)) AS exec_ok,
           COALESCE((SELECT epoch FROM writer_epochs WHERE role = 'risk'), 0) AS risk_now
), i AS (
    INSERT INTO orders (client_order_id, verdict_id, signal_id, symbol, side, order_type, quantity, price_limit,
                        status, mode, exchange, tick_ts, expires_at, purpose, sent_by)
    SELECT %(coid)s, %(vid)s, %(sid)s, %(symbol)s, %(side)s, %(otype)s, %(qty)s, %(limit)s, 'SUBMITTED', %(mode)s,
           %(exchange)s, %(tick_ts)s, %(expires_at)s, %(purpose)s, %(instance)s
    FROM g WHERE g.exec_ok AND (%(risk_epoch)s::bigint IS NULL OR g.risk_now = %(risk_epoch)s::bigint)
    ON CONFLICT DO NOTHING RETURNING client_order_id
), r AS (
    INSERT INTO fenced_verdicts (verdict_id, signal_id, symbol, risk_epoch, current_epoch, issued_by, refused_by)
    SELECT %(vid)s, %(sid)s, %(symbol)s, %(risk_epoch)s::bigint, g.risk_now, %(issued_by)s, %(instance)s
    FROM g WHERE g.exec_ok AND %(risk_epoch)s::bigint IS NOT NULL AND g.risk_now <> %(risk_epoch)s::bigint
)
SELECT g.exec_ok, g.risk_now, (SELECT count(*) FROM i) AS inserted FROM g
"""

# One writer per database: every execution instance competes for this lock (libs/common/writer_lock.py).
WRITER_LOCK_NAME = "bnml.execution.writer"
LEDGER_MODE_KEY = "execution.ledger_mode"


class Insert(str):
    """What became of an order insert: INSERTED, DUPLICATE (journaled already) or STALE_RISK_EPOCH."""


INSERTED, DUPLICATE, STALE_RISK_EPOCH = Insert("inserted"), Insert("duplicate"), Insert("stale_risk_epoch")

# appended to an UPDATE's WHERE clause: the statement changes nothing once this writer is deposed
_EPOCH_GUARD = (
    " AND (%(epoch)s::bigint IS NULL OR EXISTS (SELECT 1 FROM writer_epochs WHERE role = 'execution'"
    " AND epoch = %(epoch)s::bigint))"
)


def _one(row: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """The row a statement that always answers one (an aggregate, a CTE's final SELECT) answered."""
    if row is None:
        raise RuntimeError(f"{what}: the statement answered no row")
    return row


class Journal:
    def __init__(self, pool: Pool, mode: str, epoch: int | None = None):
        self.pool = pool
        self.mode = mode
        # this writer's execution epoch (None: unfenced, for tools and tests that write without the lock)
        self.epoch = epoch
        self.last_row: OrderRow | None = None  # the order row as the last commit_order_update left it
        self.last_risk_epoch = 0  # risk's current epoch as the last refused insert saw it

    def _deposed(self) -> LockLostError:
        return LockLostError(
            f"execution epoch {self.epoch} is no longer current: another execution instance "
            "took the writer lock; journaling (and sending) nothing"
        )

    async def _check_epoch(self, conn: DictConnection) -> None:
        """For a write that found nothing to change: was it the fence?"""
        if self.epoch is None:
            return
        row = await (
            await conn.execute("SELECT epoch FROM writer_epochs WHERE role = 'execution'")
        ).fetchone()
        if row is None or int(row["epoch"]) != self.epoch:
            raise self._deposed()

    # -- orders ---------------------------------------------------------------------------------
    async def insert_order(self, o: NewOrder, instance: str) -> Insert:
        """Commit the order row before anything is sent: INSERTED, or DUPLICATE if this verdict (or client id)
        is journaled already, or STALE_RISK_EPOCH if a later risk writer took over after the verdict's issuer
        decided it (recorded in `fenced_verdicts`). Raises LockLostError once this writer is deposed."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    _INSERT_ORDER_SQL,
                    {
                        "epoch": self.epoch,
                        "coid": o.client_order_id,
                        "vid": o.verdict_id,
                        "sid": o.signal_id,
                        "symbol": o.symbol,
                        "side": o.side,
                        "otype": o.order_type,
                        "qty": o.quantity,
                        "limit": o.price_limit,
                        "mode": o.mode,
                        "exchange": "paper" if o.mode == "paper" else "binance",
                        "tick_ts": o.tick_ts,
                        "expires_at": o.expires_at,
                        "purpose": o.purpose,
                        "instance": instance,
                        "risk_epoch": o.risk_epoch,
                        "issued_by": o.issued_by,
                    },
                )
            ).fetchone()
        row = _one(row, "insert_order")
        if not row["exec_ok"]:
            raise self._deposed()
        if row["inserted"]:
            return INSERTED
        if o.risk_epoch is not None and int(row["risk_now"]) != o.risk_epoch:
            self.last_risk_epoch = int(row["risk_now"])
            return STALE_RISK_EPOCH
        return DUPLICATE

    async def mark_sent(self, coid: str, instance: str, sent: bool = True) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE orders SET sent_at = CASE WHEN %(sent)s THEN now() END, sent_by = %(instance)s,"
                " updated_at = now() WHERE client_order_id = %(coid)s" + _EPOCH_GUARD,
                {"sent": sent, "instance": instance, "coid": coid, "epoch": self.epoch},
            )
            if cur.rowcount == 0:
                await self._check_epoch(conn)

    async def set_status(
        self,
        coid: str,
        status: str,
        *,
        reason: str | None = None,
        exchange_order_id: str | None = None,
        filled: Decimal | None = None,
        average_price: Decimal | None = None,
    ) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE orders SET status = %(status)s, reason = COALESCE(%(reason)s, reason),"
                " exchange_order_id = COALESCE(%(xid)s, exchange_order_id),"
                " filled_quantity = COALESCE(%(filled)s, filled_quantity),"
                " average_price = COALESCE(%(avg)s, average_price),"
                " locked = CASE WHEN %(status)s IN ('FILLED', 'CANCELLED', 'REJECTED') THEN 0 ELSE locked END,"
                " updated_at = now() WHERE client_order_id = %(coid)s" + _EPOCH_GUARD + " RETURNING *",
                {
                    "status": status,
                    "reason": reason,
                    "xid": exchange_order_id,
                    "filled": filled,
                    "avg": average_price,
                    "coid": coid,
                    "epoch": self.epoch,
                },
            )
            row = await cur.fetchone()
            if row is None:
                await self._check_epoch(conn)
            return row

    async def get_order(self, coid: str) -> OrderRow | None:
        async with self.pool.connection() as conn:
            return row_from_db(
                await (
                    await conn.execute("SELECT * FROM orders WHERE client_order_id = %s", (coid,))
                ).fetchone()
            )

    async def open_orders(self) -> list[OrderRow]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM orders WHERE status = ANY(%s) AND mode = %s ORDER BY created_at",
                (list(OPEN_STATUSES), self.mode),
            )
            return [OrderRow.from_db(r) for r in await cur.fetchall()]

    async def count_open(self) -> int:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) AS n FROM orders WHERE status = ANY(%s) AND mode = %s",
                    (list(OPEN_STATUSES), self.mode),
                )
            ).fetchone()
        return int(_one(row, "count_open")["n"])

    async def known_trade_ids(self, exchange: str, coids: list[str]) -> set[str]:
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT trade_id FROM fills WHERE exchange = %s AND client_order_id = ANY(%s)",
                    (exchange, coids),
                )
            ).fetchall()
        return {r["trade_id"] for r in rows}

    async def find_by_exchange_id(self, exchange_order_id: str) -> OrderRow | None:
        async with self.pool.connection() as conn:
            return row_from_db(
                await (
                    await conn.execute(
                        "SELECT * FROM orders WHERE exchange_order_id = %s AND mode = %s",
                        (exchange_order_id, self.mode),
                    )
                ).fetchone()
            )

    # -- the fill outbox ------------------------------------------------------------------------
    async def unpublished_fills(self, older_than_s: float, limit: int = 500) -> list[FillRow]:
        """Journaled fills JetStream has not acknowledged yet (oldest first), journaled at least
        `older_than_s` ago (younger ones are still being published by the path that journaled them)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT f.* FROM fills f JOIN orders o USING (client_order_id) WHERE f.published_at IS NULL"
                " AND o.mode = %s AND f.ts < now() - make_interval(secs => %s) ORDER BY f.id LIMIT %s",
                (self.mode, older_than_s, limit),
            )
            return [fill_from_db(r) for r in await cur.fetchall()]

    async def mark_published(self, keys: list[tuple[str, str, str]]) -> None:
        """Record JetStream's acknowledgement of these fills, by (exchange, symbol, trade_id)."""
        if not keys:
            return
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE fills SET published_at = now() WHERE published_at IS NULL AND (exchange, symbol, trade_id)"
                " IN (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))",
                ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
            )

    # -- the books ------------------------------------------------------------------------------
    async def commit_order_update(
        self,
        coid: str,
        *,
        status: str,
        reason: str | None,
        filled: Decimal,
        average_price: Decimal | None,
        fee_usdt_add: Decimal,
        locked: Decimal,
        trades: int | None,
        fills: list[FillRow],
        ledger: Ledger,
        symbol: str,
        assets: set[str],
        exchange_order_id: str | None = None,
        resting_expires_at: datetime | None = None,
        request: PaperRequest | None = None,
    ) -> list[FillRow]:
        """One statement, so one round trip and one durable commit: the order's totals, its new fills, the
        position and the balances they moved (data-modifying CTEs; the statement is its own transaction).

        Returns the fills actually inserted (a fill already journaled by (exchange, symbol, trade id) is skipped).
        """
        position = ledger.position(symbol)
        balances = [(a, ledger.balance(a)) for a in sorted(assets)]
        params = {
            "f_exchange": [f.exchange for f in fills],
            "f_trade_id": [f.trade_id for f in fills],
            "f_coid": [f.client_order_id for f in fills],
            "f_symbol": [f.symbol for f in fills],
            "f_side": [f.side for f in fills],
            "f_qty": [f.quantity for f in fills],
            "f_price": [f.price for f in fills],
            "f_fee": [f.fee for f in fills],
            "f_fee_asset": [f.fee_asset for f in fills],
            "f_pnl": [f.realized_pnl_usdt for f in fills],
            "f_ts": [f.ts for f in fills],
            "f_maker": [f.is_maker for f in fills],
            "f_fee_usdt": [f.fee_usdt for f in fills],
            "status": status,
            "reason": reason,
            "filled": filled,
            "avg": average_price,
            "fee_add": fee_usdt_add,
            "locked": locked,
            "trades": trades,
            "xid": exchange_order_id,
            "rest": resting_expires_at,
            "coid": coid,
            "p_symbol": symbol,
            "p_qty": position.quantity,
            "p_avg": position.average_cost,
            "p_pnl": position.realized_pnl_usdt,
            "p_cost": position.cost,
            "r_coid": [request.client_order_id] if request else [],
            "r_symbol": [request.symbol] if request else [],
            "r_side": [request.side] if request else [],
            "r_qty": [request.quantity] if request else [],
            "r_at": [request.received_at] if request else [],
            "r_instance": [request.instance] if request else [],
            "b_asset": [a for a, _ in balances],
            "b_free": [max(b.free, Decimal(0)) for _, b in balances],
            "b_locked": [max(b.locked, Decimal(0)) for _, b in balances],
            "epoch": self.epoch,
        }
        async with self.pool.connection() as conn:
            row = _one(
                await (await conn.execute(_ORDER_UPDATE_SQL, params)).fetchone(), "commit_order_update"
            )
        if not row.pop("epoch_ok"):
            raise self._deposed()
        new_ids = set(row.pop("inserted_trade_ids") or ())
        self.last_row = OrderRow.from_db(row) if row.get("client_order_id") is not None else None
        return [f for f in fills if f.trade_id in new_ids]

    async def write_books(self, ledger: Ledger, symbols: set[str], assets: set[str]) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await self._check_epoch(
                conn
            )  # the transaction's first statement; a successor's bump waits on no lock
            await self._write_books(conn, ledger, symbols, assets)

    async def _write_books(
        self, conn: DictConnection, ledger: Ledger, symbols: set[str], assets: set[str]
    ) -> None:
        for symbol in symbols:
            p = ledger.position(symbol)
            await conn.execute(
                "INSERT INTO positions (symbol, quantity, average_cost, realized_pnl_usdt, cost, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (symbol) DO UPDATE SET quantity = EXCLUDED.quantity,"
                " average_cost = EXCLUDED.average_cost, realized_pnl_usdt = EXCLUDED.realized_pnl_usdt,"
                " cost = EXCLUDED.cost, updated_at = now()",
                (symbol, p.quantity, p.average_cost, p.realized_pnl_usdt, p.cost),
            )
        for asset in assets:
            b = ledger.balance(asset)
            await conn.execute(
                "INSERT INTO balances (asset, free, locked, updated_at) VALUES (%s, %s, %s, now())"
                " ON CONFLICT (asset) DO UPDATE SET free = EXCLUDED.free, locked = EXCLUDED.locked, updated_at = now()",
                (asset, max(b.free, Decimal(0)), max(b.locked, Decimal(0))),
            )

    async def load_ledger(self) -> tuple[Ledger, bool]:
        """The books as journaled; the flag says whether any balance was ever journaled."""
        ledger = Ledger()
        async with self.pool.connection() as conn:
            for r in await (await conn.execute("SELECT * FROM balances")).fetchall():
                ledger.balances[r["asset"]] = Balance(Decimal(r["free"]), Decimal(r["locked"]))
            for r in await (await conn.execute("SELECT * FROM positions")).fetchall():
                qty = Decimal(r["quantity"])
                cost = Decimal(r.get("cost") or 0)
                if cost == 0 and qty > 0:
                    cost = qty * Decimal(r["average_cost"])
                ledger.positions[r["symbol"]] = Position(qty, cost, Decimal(r["realized_pnl_usdt"]))
        return ledger, bool(ledger.balances)

    async def open_books(self, starting_balances: Mapping[str, Decimal] | None) -> Ledger:
        """The books of this database for this mode: refuses (ConfigurationError) a database whose books
        belong to the other mode, records the mode, and seeds `starting_balances` (paper) when no balance
        was ever journaled."""
        mode = await self.ledger_mode()
        if mode is not None and mode != self.mode:
            raise ConfigurationError(
                "mode",
                f"this database's books belong to {mode} mode; use a separate database for {self.mode} mode",
            )
        await self.set_ledger_mode(self.mode)
        ledger, has_balances = await self.load_ledger()
        if starting_balances is not None and not has_balances:
            for asset, amount in starting_balances.items():
                ledger.balance(asset).free = Decimal(amount)
            await self.write_books(ledger, set(), set(starting_balances))
        return ledger

    async def ledger_mode(self) -> str | None:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute("SELECT value FROM kv_state WHERE key = %s", (LEDGER_MODE_KEY,))
            ).fetchone()
        return row["value"].get("mode") if row else None

    async def set_ledger_mode(self, mode: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO kv_state (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value ="
                " EXCLUDED.value, updated_at = now()",
                (LEDGER_MODE_KEY, Jsonb({"mode": mode})),
            )

    async def record_reconciliation(self, instance: str, ok: bool, findings: list[dict[str, Any]]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO exec_reconciliations (mode, instance, ok, findings) VALUES (%s, %s, %s, %s)",
                (self.mode, instance, ok, Jsonb(findings)),
            )
