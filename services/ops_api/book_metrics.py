"""Prometheus gauges of the account from the journal (the same SQL as the API): per symbol position,
exposure, unrealized and realized P&L and fees; per asset balances; the kill switch (0/1) and the trading
state (one series per state, 1 for the current one). Refreshed by ops_api every `REFRESH_S`."""

from __future__ import annotations

import asyncio

from services.ops_api import ledger_sql

REFRESH_S = 15.0
STATES = ("ACTIVE", "REDUCING", "HALTED")

PER_SYMBOL = """
SELECT symbol, sum(realized_pnl_usdt) AS realized, sum(fee_usdt) AS fees FROM fills GROUP BY symbol"""


def _f(v) -> float:
    return float(v) if v is not None else float("nan")


class BookMetrics:
    def __init__(self, metrics) -> None:
        m = metrics
        self.qty = m.gauge("position_quantity", "Base quantity held, from the journal", ["symbol"])
        self.exposure = m.gauge(
            "position_exposure_usdt", "Position value at the last price, USDT", ["symbol"]
        )
        self.unrealized = m.gauge(
            "position_unrealized_pnl_usdt", "Unrealized P&L at the last price, USDT", ["symbol"]
        )
        self.realized = m.gauge(
            "realized_pnl_usdt", "Realized P&L since the journal began, net of fees", ["symbol"]
        )
        self.fees = m.gauge("fees_usdt", "Fees paid since the journal began, USDT", ["symbol"])
        self.balance = m.gauge("balance_total", "Free + locked, in the asset", ["asset"])
        self.balance_value = m.gauge(
            "balance_value_usdt", "Balance valued at the last price, USDT", ["asset"]
        )
        self.kill = m.gauge("kill_switch_engaged", "1 while the kill switch is engaged or unknown, else 0")
        self.state = m.gauge("trading_state", "1 for the current trading state", ["state"])
        self._symbols: set[str] = set()

    async def refresh(self, pool, latch) -> None:
        async with pool.connection() as conn:
            positions = await (await conn.execute(ledger_sql.POSITIONS, {"symbol": None})).fetchall()
            balances = await (await conn.execute(ledger_sql.BALANCES)).fetchall()
            per_symbol = await (await conn.execute(PER_SYMBOL)).fetchall()
            row = await (
                await conn.execute("SELECT value FROM kv_state WHERE key = 'trading_state'")
            ).fetchone()
        held = {p["symbol"] for p in positions}
        for sym in self._symbols - held:  # closed since the last refresh: flat, not stale
            for g in (self.qty, self.exposure, self.unrealized):
                g.labels(symbol=sym).set(0)
        for p in positions:
            self.qty.labels(symbol=p["symbol"]).set(_f(p["quantity"]))
            self.exposure.labels(symbol=p["symbol"]).set(_f(p["exposure_usdt"]))
            self.unrealized.labels(symbol=p["symbol"]).set(_f(p["unrealized_pnl_usdt"]))
        self._symbols |= held
        for r in per_symbol:
            self.realized.labels(symbol=r["symbol"]).set(_f(r["realized"]))
            self.fees.labels(symbol=r["symbol"]).set(_f(r["fees"]))
        for b in balances:
            self.balance.labels(asset=b["asset"]).set(_f(b["total"]))
            self.balance_value.labels(asset=b["asset"]).set(_f(b["value_usdt"]))
        engaged = latch.blocks
        self.kill.set(1 if engaged else 0)
        stored = row["value"].get("state") if row and isinstance(row["value"], dict) else "ACTIVE"
        current = "HALTED" if engaged else stored
        for s in STATES:
            self.state.labels(state=s).set(1 if s == current else 0)

    async def run(self, pool, latch, log) -> None:
        while True:
            try:
                await self.refresh(pool, latch)
            except Exception as exc:  # the database may be restarting
                log.warning("book metrics not refreshed", error=str(exc))
            await asyncio.sleep(REFRESH_S)
