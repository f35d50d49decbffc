"""What risk has approved but its book does not hold yet (pure): one reservation per approved verdict.

A reservation counts against the per-symbol, total-exposure, open-positions and cash caps (BUY) or the
sellable quantity (SELL) from the approval until the order is terminal AND every fill execution reported
for it has reached risk's book. It is keyed by verdict id; execution's order events (`exec.order.*`) name
the verdict and its client order id, fills name the client order id. It releases exactly what was not
filled: a live order holds its unfilled quantity; a terminal order holds only the fills risk has not
applied yet (0 once they arrive).

A verdict execution never journaled (it expired, execution refused it) has no order event. After
`confirm_by` (its expiry plus a grace) the shell asks the journal (`orders.verdict_id`): no row means it
never will be an order, and the reservation goes; a row is adopted like an order event. Unknown means keep.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from libs.common.contracts import TERMINAL_ORDER_STATUSES

ZERO = Decimal("0")
TERMINAL = frozenset(TERMINAL_ORDER_STATUSES)  # UNKNOWN is not: it may still fill
MAX_ORPHANS = 2000  # fills of orders risk never approved (flatten orders, tests), remembered briefly


@dataclass
class Reservation:
    verdict_id: str
    symbol: str
    side: str
    quantity: Decimal  # the approved quantity
    price: Decimal  # the verdict's limit: what one unit holds against the caps
    confirm_by: datetime  # no order seen by then: ask the journal whether it was ever journaled
    client_order_id: str | None = None
    status: str | None = None  # execution's last status (None: not known to be journaled yet)
    exec_filled: Decimal = ZERO  # filled quantity by execution's account
    applied: Decimal = ZERO  # fills applied to risk's book

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def open_quantity(self) -> Decimal:
        """What may still move risk's book: the unfilled part of a live order, or a terminal order's fills
        not yet applied."""
        target = self.exec_filled if self.terminal else self.quantity
        return max(target - self.applied, ZERO)

    @property
    def notional(self) -> Decimal:
        return self.open_quantity() * self.price

    @property
    def done(self) -> bool:
        return self.terminal and self.applied >= self.exec_filled


@dataclass
class Reservations:
    by_verdict: dict[str, Reservation] = field(default_factory=dict)
    verdict_by_coid: dict[str, str] = field(default_factory=dict)
    orphan_fills: OrderedDict[str, Decimal] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self.by_verdict)

    def __contains__(self, verdict_id: str) -> bool:
        return verdict_id in self.by_verdict

    def values(self) -> list[Reservation]:
        return list(self.by_verdict.values())

    def reserve(
        self, verdict_id: str, symbol: str, side: str, quantity: Decimal, price: Decimal, confirm_by: datetime
    ) -> None:
        self.by_verdict[verdict_id] = Reservation(verdict_id, symbol, side, quantity, price, confirm_by)

    def forget(self, verdict_id: str) -> None:
        """The verdict was never published (the writer was fenced): nothing can come of it."""
        r = self.by_verdict.pop(verdict_id, None)
        if r is not None and r.client_order_id:
            self.verdict_by_coid.pop(r.client_order_id, None)

    def on_order(
        self,
        verdict_id: str | None,
        client_order_id: str,
        status: str,
        filled: Decimal,
        quantity: Decimal | None = None,
    ) -> bool:
        """Execution's news of an order (event or journal row). Monotonic: a terminal order never reopens and
        the filled quantity never shrinks, so a replayed or reordered event changes nothing. True if it was ours."""
        r = self.by_verdict.get(verdict_id or "")
        if r is None:
            return False
        if r.client_order_id is None:
            r.client_order_id = client_order_id
            self.verdict_by_coid[client_order_id] = r.verdict_id
            r.applied += self.orphan_fills.pop(client_order_id, ZERO)
        if status == "FILLED":
            filled = max(filled, quantity if quantity is not None else r.quantity)
        r.exec_filled = max(r.exec_filled, filled)
        if not r.terminal:
            r.status = status
        self._drop_if_done(r)
        return True

    def on_fill(self, client_order_id: str, quantity: Decimal) -> None:
        """A fill applied to risk's book: its order holds that much less."""
        vid = self.verdict_by_coid.get(client_order_id)
        r = self.by_verdict.get(vid) if vid else None
        if r is None:  # its order event has not arrived yet (or it is not risk's order): keep it for later
            self.orphan_fills[client_order_id] = self.orphan_fills.get(client_order_id, ZERO) + quantity
            while len(self.orphan_fills) > MAX_ORPHANS:
                self.orphan_fills.popitem(last=False)
            return
        r.applied += quantity
        r.exec_filled = max(r.exec_filled, r.applied)
        self._drop_if_done(r)

    def unconfirmed(self, now: datetime) -> list[str]:
        """Verdicts past `confirm_by` with no order known: the shell asks the journal about them."""
        return [v for v, r in self.by_verdict.items() if r.status is None and r.confirm_by <= now]

    def never_journaled(self, verdict_id: str) -> None:
        """The journal has no order for it after its expiry: it never will; release all of it."""
        r = self.by_verdict.get(verdict_id)
        if r is not None and r.status is None:
            del self.by_verdict[verdict_id]

    def pending(self, symbol: str | None, side: str) -> tuple[Decimal, Decimal, int]:
        """(open quantity, notional at the limit, orders) held for `side`, on `symbol` or on all symbols."""
        qty = notional = ZERO
        n = 0
        for r in self.by_verdict.values():
            if r.side == side and (symbol is None or r.symbol == symbol):
                q = r.open_quantity()
                if q > 0:
                    qty += q
                    notional += q * r.price
                    n += 1
        return qty, notional, n

    def buying_symbols(self) -> set[str]:
        return {r.symbol for r in self.by_verdict.values() if r.side == "BUY" and r.open_quantity() > 0}

    def _drop_if_done(self, r: Reservation) -> None:
        if r.done:
            del self.by_verdict[r.verdict_id]
            if r.client_order_id:
                self.verdict_by_coid.pop(r.client_order_id, None)
