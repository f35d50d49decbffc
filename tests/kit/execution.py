"""Builders for the tests that drive execution (fault scenarios, live and cluster tests): verdicts and ticks as
risk and market_data would send them, kill-switch commands and their acks, journal queries, risk's book
against the journal."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from decimal import Decimal

import psycopg

from libs.common import subjects
from libs.common.bus import Bus
from libs.common.contracts import KillSwitchAcknowledged, KillSwitchCommand, RiskVerdict, Tick, utcnow
from libs.common.kill_switch import sign
from services.execution.core import client_order_id
from tests.helpers import RELEASE_KEY, publish_tick, wait_until

SYMBOL = "BTC/USDT"
PRICE = Decimal("60000")
QTY = Decimal("0.0002")  # 12 USDT: above Binance's 5 USDT minimum notional, on the 0.00001 step

# Execution on paper with room for thousands of small orders; the test plays risk and market_data.
EXECUTION_CONFIG = {"execution": {"starting_balances": {"USDT": "100000000", "BTC": "1000"}}}


def risk_epoch(database_url: str, timeout_s: float = 30.0) -> int:
    return _current_risk_epoch(database_url, timeout_s)


def _current_risk_epoch(database_url: str, timeout_s: float = 30.0) -> int:
    """The fencing epoch of the risk writer that holds the lock now (`writer_epochs`), waiting until one does.

    A test that plays risk while a real risk service runs (for its book) stamps this on the verdicts it
    publishes, as that writer would: execution refuses a verdict of an earlier epoch (docs/design.md, rule 7)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT epoch FROM writer_epochs WHERE role = 'risk'").fetchone()
        if row is not None:
            return int(row[0])
        if time.monotonic() > deadline:
            raise AssertionError(f"no risk writer took the lock within {timeout_s}s (writer_epochs is empty)")
        time.sleep(0.05)  # a poll's interval (this waits on the table, not on time)


def stamp_risk_writer(database_url: str) -> int:
    """Take risk's next fencing epoch in `writer_epochs` as a risk writer taking its lock would (the same
    statement as `libs/common/writer_lock.py`), for a test that plays risk with no risk service running: live
    execution refuses a verdict no fenced risk writer stamped (risk_epoch 0). Returns the epoch to stamp."""
    from libs.common.writer_lock import TAKE_EPOCH_SQL

    with psycopg.connect(database_url) as conn:
        row = conn.execute(TAKE_EPOCH_SQL, ("risk", "test-plays-risk")).fetchone()
    assert row is not None
    return int(row[0])


def make_verdict(
    side: str = "BUY",
    *,
    ttl_s: float = 60.0,
    qty: Decimal = QTY,
    symbol: str = SYMBOL,
    approved: bool = True,
    epoch_of: str | None = None,
    risk_epoch: int | None = None,
) -> RiskVerdict:
    """A verdict as risk would publish it. `epoch_of`: the database whose current risk writer it impersonates
    (its `risk_epoch`; needed whenever a risk service runs beside the test); else epoch 0, which execution
    accepts only where no risk writer ever took the lock (and only on paper). `risk_epoch`: stamp this epoch
    (from `stamp_risk_writer`) without asking the database."""
    now = utcnow()
    limit = PRICE * (Decimal("1.01") if side == "BUY" else Decimal("0.99"))
    return RiskVerdict(
        ts=now,
        signal_id=f"sig-{now.timestamp():.6f}-{id(object())}",
        symbol=symbol,
        side=side,
        approved=approved,
        quantity=qty if approved else Decimal(0),
        price_limit=limit if approved else Decimal(0),
        reasons=[] if approved else ["test_refusal"],
        expires_at=now + timedelta(seconds=ttl_s),
        tick_ts=now,
        risk_epoch=risk_epoch
        if risk_epoch is not None
        else (_current_risk_epoch(epoch_of) if epoch_of else 0),
    )


def make_tick(symbol: str = SYMBOL, price: Decimal = PRICE) -> Tick:
    return Tick(
        ts=utcnow(),
        symbol=symbol,
        bid=price - Decimal("0.5"),
        ask=price + Decimal("0.5"),
        last=price,
        volume=Decimal("5"),
        source="synthetic",
    )


async def publish_with_retry(bus: Bus, subject: str, msg, attempts: int = 100) -> None:
    """Publish through an outage: retry with the same message id (JetStream drops the duplicate)."""
    for _ in range(attempts):
        try:
            await bus.publish(subject, msg, timeout=1.0)
            return
        except Exception:
            await asyncio.sleep(0.1)  # a retry's back-off while the server is away
    raise AssertionError(f"could not publish {msg.id} on {subject}")


@contextlib.asynccontextmanager
async def ticking(bus: Bus, symbol: str = SYMBOL, every_s: float = 0.1):
    """Keep a fresh price on the bus (market_data's job) while the block runs."""

    async def loop() -> None:
        while True:
            with contextlib.suppress(Exception):
                if bus.connected:
                    await publish_tick(bus, make_tick(symbol))
            await asyncio.sleep(every_s)  # a price feed's pace

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()


class Acks:
    """Collects kill-switch acknowledgements by command id."""

    def __init__(self, subject: str = subjects.ALL_KILL_SWITCH_ACKS) -> None:
        self.subject = subject
        self.by_command: dict[str, dict[str, KillSwitchAcknowledged]] = {}
        self._arrived = asyncio.Event()

    async def attach(self, bus: Bus) -> Acks:
        await bus.subscribe(self.subject, KillSwitchAcknowledged, self._on)
        return self

    async def _on(self, ack: KillSwitchAcknowledged, subject: str) -> None:
        self.by_command.setdefault(ack.command_id, {})[ack.service] = ack
        self._arrived.set()

    async def wait(self, command_id: str, services: tuple[str, ...], timeout: float = 10.0) -> dict:
        """Woken by each arrival (no polling: a race test's own loop stays out of the way)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            got = self.by_command.get(command_id, {})
            if all(s in got for s in services):
                return got
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(
                    f"no ack for {command_id} from {services}: {self.by_command.get(command_id)}"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)


async def kill_switch(
    bus: Bus, action: str, reason: str = "fault test", signed: bool = True
) -> KillSwitchCommand:
    """Publish a command as the operators' tools do: a release carries operator authority unless `signed` is False."""
    cmd = KillSwitchCommand(ts=utcnow(), action=action, reason=reason, actor="fault-test")
    if action == "release" and signed:
        cmd = sign(cmd, RELEASE_KEY)
    await publish_with_retry(bus, subjects.kill_switch(), cmd)
    return cmd


def query(database_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(database_url: str, sql: str, params: tuple = ()):
    return query(database_url, sql, params)[0][0]


def orders_by_verdict(database_url: str) -> dict[str, int]:
    return dict(query(database_url, "SELECT verdict_id, count(*) FROM orders GROUP BY verdict_id"))


def paper_sends(database_url: str) -> dict[str, int]:
    """Order requests the paper exchange received, per client order id (its own record, no unique key)."""
    return dict(
        query(database_url, "SELECT client_order_id, count(*) FROM paper_requests GROUP BY client_order_id")
    )


def exchange_sends(fake) -> dict[str, int]:
    """Order requests the fake Binance processed (its own log), per client order id. A request it refused
    before execution (429, -1021, a ban) is not a send: the same order may be retried after one."""
    out: dict[str, int] = {}
    for r in list(fake.requests):
        if (
            r.method == "POST"
            and r.path == "/api/v3/order"
            and r.status not in (418, 429)
            and r.fault not in ("clock_skew", "banned", "weight_limit", "order_limit", "429", "418", "5xx")
        ):
            coid = r.params.get("newClientOrderId", "")
            out[coid] = out.get(coid, 0) + 1
    return out


def assert_one_order_per_verdict(database_url: str, verdict_ids: list[str], fake=None) -> None:
    """One journaled order per verdict, and at most one send per order counted where sends happen: the
    paper exchange's own record (paper mode) or the fake Binance's request log (live, `fake`). An order
    the journal says FILLED was sent exactly once."""
    counts = orders_by_verdict(database_url)
    missing = [v for v in verdict_ids if v not in counts]
    dupes = {v: n for v, n in counts.items() if n > 1}
    assert not dupes, f"verdicts with more than one order: {dupes}"
    assert not missing, f"{len(missing)} verdicts lost (no order journaled), e.g. {missing[:3]}"
    sends = exchange_sends(fake) if fake is not None else paper_sends(database_url)
    coids = {client_order_id(v): v for v in verdict_ids}
    twice = {c: n for c, n in sends.items() if c in coids and n > 1}
    assert not twice, f"orders sent more than once (counted at the exchange): {twice}"
    filled = [c for (c,) in query(database_url, "SELECT client_order_id FROM orders WHERE status = 'FILLED'")]
    unsent = [c for c in filled if c in coids and sends.get(c, 0) != 1]
    assert not unsent, f"orders journaled FILLED that the exchange never received: {unsent[:3]}"
    fills_per_order = query(
        database_url,
        "SELECT o.client_order_id, count(f.id), sum(f.quantity), o.quantity"
        " FROM orders o LEFT JOIN fills f USING (client_order_id)"
        " WHERE o.status = 'FILLED' GROUP BY o.client_order_id, o.quantity",
    )
    overfilled = [r for r in fills_per_order if r[2] is not None and r[2] > r[3]]
    assert not overfilled, f"orders filled beyond their quantity: {overfilled[:3]}"


# -- risk's book against the journal ------------------------------------------------------------------
# Execution starts with USDT only and risk with the same equity, so their cash can be compared as it is.
BOOK_CONFIG = {
    "execution": {"starting_balances": {"USDT": "10000"}},
    "risk": {"starting_equity_usdt": "10000"},
}
BOOK_TOLERANCE = Decimal("0.000001")


def journal_book(database_url: str) -> dict:
    """Execution's journal: positions, USDT cash, realized P&L, and the identity of every fill."""
    positions = {
        s: Decimal(q) for s, q in query(database_url, "SELECT symbol, quantity FROM positions") if q != 0
    }
    cash = query(database_url, "SELECT free + locked FROM balances WHERE asset = 'USDT'")
    realized = scalar(database_url, "SELECT coalesce(sum(realized_pnl_usdt), 0) FROM fills")
    fills = set(query(database_url, "SELECT exchange, symbol, trade_id FROM fills"))
    return {
        "positions": positions,
        "cash": Decimal(cash[0][0]) if cash else Decimal(0),
        "realized": Decimal(realized),
        "fills": fills,
    }


def risk_book(database_url: str) -> dict:
    """Risk's book as it persisted it (`kv_state.account_state`) and the fills its ledger applied."""
    rows = query(database_url, "SELECT value FROM kv_state WHERE key = 'account_state'")
    state = rows[0][0] if rows else {}
    positions = {s: Decimal(q) for s, q in (state.get("positions") or {}).items() if Decimal(q) != 0}
    fills = set(query(database_url, "SELECT exchange, symbol, trade_id FROM risk_fill_ledger"))
    return {
        "positions": positions,
        "cash": Decimal(state.get("cash_usdt") or 0),
        "realized": Decimal(state.get("realized_total_usdt") or 0),
        "daily": Decimal(state.get("daily_realized_usdt") or 0),
        "fills": fills,
    }


def book_differences(database_url: str) -> list[str]:
    """What differs between risk's book and the journal (empty: they agree)."""
    j, r = journal_book(database_url), risk_book(database_url)
    out = []
    if j["fills"] != r["fills"]:
        out.append(
            f"fills: journal only {sorted(j['fills'] - r['fills'])[:3]}, risk only "
            f"{sorted(r['fills'] - j['fills'])[:3]}"
        )
    for s in set(j["positions"]) | set(r["positions"]):
        if abs(j["positions"].get(s, Decimal(0)) - r["positions"].get(s, Decimal(0))) > BOOK_TOLERANCE:
            out.append(f"position {s}: journal {j['positions'].get(s)}, risk {r['positions'].get(s)}")
    # risk books a BUY's fee as realized at once, execution capitalises it into the position's cost: the two
    # realized figures agree whenever the positions are flat (cash agrees always)
    for k in ("cash", "realized") if not j["positions"] else ("cash",):
        if abs(j[k] - r[k]) > BOOK_TOLERANCE:
            out.append(f"{k}: journal {j[k]}, risk {r[k]}")
    return out


async def wait_books_agree(database_url: str, timeout: float = 30.0) -> None:
    last: list[str] = []

    def agree() -> bool:
        nonlocal last
        last = book_differences(database_url)
        return not last

    try:
        await wait_until(agree, timeout=timeout, message="risk's book to equal the journal")
    except AssertionError:
        raise AssertionError(f"risk's book differs from the journal: {last}") from None
