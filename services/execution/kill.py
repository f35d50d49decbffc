"""execution's kill-switch shell: latch first, wait for the requests past the gate, say "latched", cancel
every open order through the broker (flatten if asked), acknowledge with what is left, keep sweeping.

The latch (`libs/common/kill_switch.py`) is set synchronously before any await, so no send can pass the gate
after the command's first line; the sweep runs under the service lock. What the acknowledgement says and
what a flatten sells are `rules.py`'s decisions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from libs.common import subjects
from libs.common.contracts import KillSwitchAcknowledged, KillSwitchCommand
from libs.common.kill_switch import KillSwitchLatch, alert_unreadable, record_refusal, refresh_latch
from libs.common.service import Runtime
from services.execution.broker import Broker
from services.execution.core import client_order_id, flatten_order_key
from services.execution.fence import SendFence
from services.execution.journal import DUPLICATE, Journal, NewOrder
from services.execution.ledger import Ledger
from services.execution.publish import Publisher
from services.execution.rules import (
    OPEN_ORDERS_REMAIN,
    SWEEP_CONFIRMED,
    flatten_sizes,
    standing_sweep_report,
    sweep_report,
)

NAME = "execution"


class KillSwitch:
    def __init__(
        self,
        rt: Runtime,
        latch: KillSwitchLatch,
        lock: asyncio.Lock,
        fence: SendFence,
        journal: Journal,
        publisher: Publisher,
        open_gauge: Any,
        is_writer: Callable[[], bool],
    ) -> None:
        self.rt, self.latch, self.lock, self.fence = rt, latch, lock, fence
        self.journal, self.publisher, self.open_gauge = journal, publisher, open_gauge
        self._is_writer = is_writer
        self.cfg = rt.settings.execution
        self.sweeps = rt.metrics.counter(
            "kill_switch_sweeps_total", "Cancel-all sweeps run for the kill switch"
        )
        self.broker: Broker | None = None  # set once this instance became the writer
        self.ledger = Ledger()
        self.unacked: KillSwitchCommand | None = None  # seen while not the writer
        self.sweeper: asyncio.Task[None] | None = None

    async def attach(self) -> None:
        """Read the standing kill-switch state, then follow the switch (in stream order with each command's
        sequence, from the standing one on: libs/common/kill_switch.py)."""
        rt = self.rt
        self.latch.release_key = rt.settings.kill_switch.release_key.get_secret_value()
        await refresh_latch(rt.bus, self.latch, rt.log, rt.clock.now())
        rt.bus.on_disconnect.append(lambda: self.latch.set_unknown("lost NATS connection"))
        rt.bus.on_reconnect.append(self.on_reconnect)
        await rt.bus.follow(
            "KILL_SWITCH", subjects.kill_switch(), KillSwitchCommand, self.on_command, self.on_unreadable
        )

    async def on_unreadable(self, reason: str, seq: int) -> None:
        """Something unreadable on the kill-switch subject: the standing state is unknown, so block, and say so."""
        if self.latch.on_unreadable(reason, seq, self.rt.clock.now()).outcome == "unreadable":
            self.rt.log.error(
                "unreadable kill-switch command; treating as engaged", reason=reason[:200], seq=seq
            )
            await alert_unreadable(self.rt, self.latch)

    async def on_reconnect(self) -> None:
        """Re-read the standing kill switch; one engaged while we were away still gets its sweep."""
        await refresh_latch(self.rt.bus, self.latch, self.rt.log, self.rt.clock.now())
        if self.writer and self.latch.engaged and self.latch.known:
            self.rt.spawn(self.sweep_locked(), "kill-switch-sweep-after-reconnect")

    async def await_known(self, until: datetime) -> None:
        """The kill-switch state is unknown (e.g. just after a NATS reconnect): 'unknown' is not a 'no'
        from the operator, so read it again, up to `until` (a verdict's expiry), before deciding. Nothing is
        sent meanwhile; a verdict that expires waiting is refused as expired."""
        while not self.latch.known and self.rt.clock.now() < until:
            await refresh_latch(self.rt.bus, self.latch, self.rt.log)
            if not self.latch.known:
                await asyncio.sleep(0.2)

    async def armed(self, broker: Broker, ledger: Ledger) -> None:
        """This instance became the writer: a standing engaged switch gets its sweep (and its ack) now."""
        self.broker, self.ledger = broker, ledger
        if self.latch.engaged and self.latch.known:
            async with self.lock:  # a standing kill switch: nothing may stay open
                left = await self.sweep()
            cmd, self.unacked = self.unacked, None
            if cmd is not None and cmd.id == self.latch.command_id:
                await self.ack(cmd, left, standing_sweep_report(left))

    @property
    def writer(self) -> bool:
        return self.broker is not None and self._is_writer()

    async def on_command(self, cmd: KillSwitchCommand, seq: int) -> None:
        out = self.latch.on_command(cmd, seq)  # first, before any await: no send may start after this line
        if out.outcome == "refused":  # a release without operator authority: nothing changed
            await record_refusal(self.rt, cmd, out.reason)
            if self.writer:
                await self.ack(cmd, await self.journal.count_open(), out.reason, engaged=self.latch.blocks)
            return
        if not out.applied:  # older than what the latch holds, or the standing command again
            return
        if self.writer and cmd.action == "engage":
            # Requests that passed the gate before the line above may still be in ccxt's rate limiter, the
            # HTTP connect or the paper latency: wait for them, so that once the notice is out no order
            # request can reach the exchange. Nothing in flight (the usual case): no wait at all.
            in_flight = await self.fence.drained()
            try:  # then say so: from here no order is sent; the ack below confirms the cancel sweep
                await self.rt.bus.publish(
                    subjects.kill_switch_latched(NAME),
                    KillSwitchAcknowledged(
                        ts=self.rt.clock.now(),
                        command_id=cmd.id,
                        service=NAME,
                        engaged=True,
                        detail="latched: no order is sent from now on; "
                        f"{in_flight} order request(s) already past the gate finished first; "
                        "cancel sweep under way",
                    ),
                )
            except Exception as exc:  # a lost notice must never stop the sweep
                self.rt.log.warning("kill-switch latch notice not sent", error=str(exc))
        self.rt.log.warning("kill switch latched", action=cmd.action, reason=cmd.reason, writer=self.writer)
        if self.broker is None or not self.writer:
            # a standby never sends, so it has nothing to cancel; the writer acknowledges. Should this
            # instance become the writer, it sweeps and acknowledges then.
            self.unacked = cmd
            return
        if cmd.action == "release":
            await self.ack(cmd, await self.journal.count_open(), "released")
            return
        flattened: str | None = None
        async with self.lock:
            left = await self.sweep()
            if left == 0 and (cmd.flatten or self.cfg.flatten_on_kill_switch):
                flattened = await self.flatten(cmd)
                left = await self.sweep()
        # only a live order can have an unknown outcome (the paper book always knows)
        unknown = (
            0
            if self.broker.knows_every_outcome
            else sum(r.status == "UNKNOWN" for r in await self.journal.open_orders())
        )
        report = sweep_report(left, unknown, flattened)
        if report.orders_remain:
            await self.rt.alert(*OPEN_ORDERS_REMAIN, report.headline)
            if self.sweeper is None or self.sweeper.done():
                self.sweeper = self.rt.spawn(self._keep_sweeping(), "kill-switch-sweeper")
        await self.ack(cmd, left, report.detail)

    async def ack(
        self, cmd: KillSwitchCommand, open_orders: int, detail: str, engaged: bool | None = None
    ) -> None:
        ack = KillSwitchAcknowledged(
            ts=self.rt.clock.now(),
            command_id=cmd.id,
            service=NAME,
            engaged=cmd.action == "engage" if engaged is None else engaged,
            open_orders=open_orders,
            detail=detail[:1000],
        )
        await self.rt.bus.publish(subjects.kill_switch_ack(NAME), ack)

    async def sweep(self) -> int:
        """Cancel every open order, retrying until the exchange (or the paper book) shows none. Returns what is left."""
        assert self.broker is not None
        left = -1
        for attempt in range(self.cfg.cancel_max_sweeps):
            self.sweeps.inc()
            left = await self.broker.sweep()
            if left == 0:
                break
            self.rt.log.warning("open orders remain after a cancel sweep", left=left, attempt=attempt + 1)
            await asyncio.sleep(self.cfg.cancel_retry_interval_s)
        self.open_gauge.set(max(left, 0))
        return left

    async def sweep_locked(self) -> None:
        async with self.lock:
            if await self.sweep() != 0:
                await self.rt.alert(*OPEN_ORDERS_REMAIN, "after a NATS reconnect")

    async def _keep_sweeping(self) -> None:
        while self.latch.engaged:
            async with self.lock:
                if await self.sweep() == 0:
                    await self.rt.alert(*SWEEP_CONFIRMED, "after retries")
                    return
            await asyncio.sleep(self.cfg.cancel_retry_interval_s)

    async def flatten(self, cmd: KillSwitchCommand) -> str:
        """Sell every long position at market (spot: nothing to buy back). Journaled like any order."""
        assert self.broker is not None
        done: list[str] = []
        for symbol, qty in flatten_sizes(self.ledger, self.broker.markets):
            key = flatten_order_key(cmd.id, symbol)
            order = NewOrder(
                client_order_id=client_order_id(key),
                verdict_id=key,
                signal_id=None,
                symbol=symbol,
                side="SELL",
                order_type="MARKET",
                quantity=qty,
                price_limit=None,
                mode=self.rt.settings.mode,
                purpose="flatten",
            )
            if await self.journal.insert_order(order, self.rt.instance) == DUPLICATE:
                continue  # this command already flattened this symbol
            self.rt.metrics.count("orders")
            await self.publisher.order(order, "SUBMITTED")
            status = await self.broker.place(order, None)
            row = await self.journal.get_order(order.client_order_id)
            reason = row.reason if row is not None else ""
            done.append(f"{symbol} {status.lower()} {qty}" + (f" ({reason})" if reason else ""))
        return "flattened: " + (", ".join(done) if done else "nothing held")
