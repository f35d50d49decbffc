"""Every SQL statement of risk (Postgres): its own tables (`kv_state`, the event tables, the fill ledger,
`kill_switch_audit`) and the journal tables of execution it reads (`orders`, `fills`, `positions`,
`balances`; docs/interfaces.md, "Tables read across services"). Writes that carry risk's decisions run
under the writer-lock check (`WriterLock.check_on`), so a fenced writer's write rolls back."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

from libs.common.contracts import (
    OPEN_ORDER_STATUSES,
    AccountState,
    BreakerTripped,
    Fill,
    KillSwitchCommand,
    TradingStateChanged,
)
from libs.common.db import Pool
from libs.common.writer_lock import WriterLock
from services.risk.book import FillOutcome
from services.risk.core import Event
from services.risk.journal_view import (
    ExchangeAccount,
    JournalOrder,
    account_from_rows,
    order_from_row,
    still_moving,
)
from services.risk.reconcile import AuditRecord
from services.risk.state import TradingStateMachine

QUICK_S = 3.0  # connection wait for the periodic reads and writes (the loop goes on without them)

KV_SQL = (
    "INSERT INTO kv_state (key, value, updated_at) VALUES (%s, %s::jsonb, now())"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
)
ACCOUNT_SQL = (
    "SELECT value, extract(epoch FROM now() - updated_at) AS age FROM kv_state WHERE key = 'account_state'"
)
STATE_EVENT_SQL = (
    "INSERT INTO risk_trading_state_events (event_id, ts, state, previous, reason)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING"
)
BREAKER_EVENT_SQL = (
    "INSERT INTO risk_breaker_events (event_id, ts, breaker, symbol, event, effect, reason, until)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING"
)
FILL_SEEN_SQL = "SELECT 1 FROM risk_fill_ledger WHERE exchange = %s AND symbol = %s AND trade_id = %s"
FILL_LEDGER_SQL = (
    "INSERT INTO risk_fill_ledger (exchange, trade_id, client_order_id, symbol, side, quantity,"
    " price, fee, fee_asset, realized_own_usdt, realized_reported_usdt, ts)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
LAST_AUDIT_SQL = (
    "SELECT command_id, action, reason, actor, ts FROM kill_switch_audit ORDER BY id DESC LIMIT 1"
)
AUDIT_SQL = (
    "INSERT INTO kill_switch_audit (command_id, ts, action, engaged, reason, actor, flatten, recorded_by)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, 'risk') ON CONFLICT (command_id) DO NOTHING"
)
POSITIONS_SQL = "SELECT symbol, quantity FROM positions"
ORDERS_FOR_SQL = (
    "SELECT verdict_id, client_order_id, symbol, side, quantity, price_limit, status, filled_quantity"
    " FROM orders WHERE verdict_id = ANY(%s)"
)
# Orders from verdicts that can still move risk's book: open ones, and terminal ones whose journaled fills
# risk has not applied yet (the fill is on its way on FILLS). Open orders use the partial index on status.
# the literal list (not a parameter) so the planner can prove the partial index's predicate
OPEN_IN = ", ".join(f"'{s}'" for s in OPEN_ORDER_STATUSES)
REBUILD_SQL = f"""
SELECT o.verdict_id, o.client_order_id, o.symbol, o.side, o.quantity, o.price_limit, o.status, o.filled_quantity,
       coalesce((SELECT sum(l.quantity) FROM risk_fill_ledger l WHERE l.client_order_id = o.client_order_id), 0)
         AS applied
FROM orders o
WHERE o.purpose = 'verdict'
  AND (o.status IN ({OPEN_IN}) OR o.updated_at > now() - interval '1 day')
"""
BALANCES_SQL = "SELECT asset, free, locked, extract(epoch FROM now() - updated_at) AS age FROM balances"
# Journaled fills risk has not applied yet: while there are any, the balances (which include them) and
# risk's book (which does not) describe different moments, so the balances are not adopted.
UNAPPLIED_FILLS_SQL = """
SELECT count(*) AS n FROM fills f
WHERE f.ts > now() - interval '2 days'
  AND NOT EXISTS (SELECT 1 FROM risk_fill_ledger l
                  WHERE l.exchange = f.exchange AND l.trade_id = f.trade_id AND l.symbol = f.symbol)
"""


def trading_state_value(sm: TradingStateMachine) -> dict[str, Any]:
    """`kv_state.trading_state` as persisted (docs/interfaces.md)."""
    return {"state": sm.state, "reason": sm.reason, "since": sm.since.isoformat() if sm.since else None}


def event_row(ev: Event) -> tuple[str, tuple[Any, ...]]:
    """The statement and parameters that record one risk event."""
    if isinstance(ev, TradingStateChanged):
        return STATE_EVENT_SQL, (ev.id, ev.ts, ev.state, ev.previous, ev.reason)
    tripped = isinstance(ev, BreakerTripped)
    return BREAKER_EVENT_SQL, (
        ev.id,
        ev.ts,
        ev.breaker,
        ev.symbol,
        "tripped" if tripped else "cleared",
        ev.effect if isinstance(ev, BreakerTripped) else None,
        ev.reason,
        ev.until if isinstance(ev, BreakerTripped) else None,
    )


class RiskStore:
    def __init__(self, pool: Pool, lock: WriterLock) -> None:
        self.pool, self.lock = pool, lock

    # -- risk's own state ---------------------------------------------------------------------------
    async def account_state(self) -> tuple[AccountState | None, float | None]:
        """`kv_state.account_state` and its age in seconds by the database's clock (None, None: none yet)."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(ACCOUNT_SQL)).fetchone()
        if row is None:
            return None, None
        return AccountState.model_validate(row["value"]), float(row["age"])

    async def write_state(self, snap: AccountState, sm: TradingStateMachine) -> None:
        async with self.pool.connection(timeout=QUICK_S) as conn, conn.transaction():
            await self.lock.check_on(cast(Any, conn))  # never overwrite a successor's state
            await conn.execute(KV_SQL, ("account_state", snap.model_dump_json()))
            await conn.execute(KV_SQL, ("trading_state", json.dumps(trading_state_value(sm))))

    async def write_events(
        self, events: list[Event], sm: TradingStateMachine, snapshot: Callable[[], AccountState]
    ) -> AccountState:
        """The events, the trading state and the account state (taken last, in the transaction) in one
        transaction; returns the account state written."""
        async with self.pool.connection() as conn, conn.transaction():
            await self.lock.check_on(cast(Any, conn))
            for ev in events:
                await conn.execute(*event_row(ev))
            await conn.execute(KV_SQL, ("trading_state", json.dumps(trading_state_value(sm))))
            snap = snapshot()
            await conn.execute(KV_SQL, ("account_state", snap.model_dump_json()))
        return snap

    async def fill_applied(self, fill: Fill) -> bool:
        async with self.pool.connection() as conn:
            seen = await (
                await conn.execute(FILL_SEEN_SQL, (fill.exchange, fill.symbol, fill.trade_id))
            ).fetchone()
        return seen is not None

    async def write_fill(self, fill: Fill, outcome: FillOutcome, snap: AccountState) -> None:
        """The ledger row and the new account state in one transaction (a fenced writer's rolls back)."""
        row = (
            fill.exchange,
            fill.trade_id,
            fill.client_order_id,
            fill.symbol,
            fill.side,
            fill.quantity,
            fill.price,
            fill.fee,
            fill.fee_asset,
            outcome.realized_own,
            outcome.realized_reported,
            fill.ts,
        )
        async with self.pool.connection() as conn, conn.transaction():
            await self.lock.check_on(cast(Any, conn))
            await conn.execute(FILL_LEDGER_SQL, row)
            await conn.execute(KV_SQL, ("account_state", snap.model_dump_json()))

    # -- kill-switch audit ----------------------------------------------------------------------------
    async def last_audit(self) -> AuditRecord | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(LAST_AUDIT_SQL)).fetchone()
        if row is None:
            return None
        return AuditRecord(row["command_id"], row["action"], row["reason"], row["actor"], row["ts"])

    async def audit(self, cmd: KillSwitchCommand) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                AUDIT_SQL,
                (cmd.id, cmd.ts, cmd.action, cmd.action == "engage", cmd.reason, cmd.actor, cmd.flatten),
            )

    # -- execution's journal (read only) ----------------------------------------------------------------
    async def execution_positions(self) -> dict[str, Decimal]:
        async with self.pool.connection(timeout=QUICK_S) as conn:
            rows = await (await conn.execute(POSITIONS_SQL)).fetchall()
        return {r["symbol"]: Decimal(r["quantity"]) for r in rows}

    async def orders_to_reserve(self, timeout: float | None = None) -> list[JournalOrder]:
        """Orders whose outcome is not yet all in risk's book: open, or with fills risk has not applied."""
        async with self.pool.connection(timeout=timeout) as conn:
            rows = await (await conn.execute(REBUILD_SQL)).fetchall()
        return still_moving(order_from_row(r) for r in rows)

    async def orders_for(self, verdict_ids: list[str]) -> dict[str, JournalOrder]:
        """The journal's rows for these verdicts (a verdict with no row was never journaled)."""
        async with self.pool.connection(timeout=QUICK_S) as conn:
            rows = await (await conn.execute(ORDERS_FOR_SQL, (verdict_ids,))).fetchall()
        return {r["verdict_id"]: order_from_row(r) for r in rows}

    async def exchange_account(self) -> tuple[ExchangeAccount | None, int]:
        """(the balances with their age by the database's clock, journaled fills risk has not applied),
        read in one snapshot so the two agree."""
        async with self.pool.connection(timeout=QUICK_S) as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows = await (await conn.execute(BALANCES_SQL)).fetchall()
            count = await (await conn.execute(UNAPPLIED_FILLS_SQL)).fetchone()
        unapplied = count["n"] if count is not None else 0
        return account_from_rows(rows), int(unapplied)
