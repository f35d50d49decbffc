"""What a fill moves in the engine, saved before it is applied and put back if its database write fails
(pure), so memory never runs ahead of what is durable: the fill is redelivered and applied again."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.risk.book import Book
from services.risk.core import RiskEngine
from services.risk.reservations import Reservations


@dataclass(frozen=True)
class Checkpoint:
    book: Book
    reservations: Reservations
    breakers: dict[str, Any]
    state: tuple[Any, str, datetime | None]
    last_breaker_clear_at: datetime | None

    @classmethod
    def take(cls, engine: RiskEngine) -> Checkpoint:
        return cls(
            copy.deepcopy(engine.book),
            copy.deepcopy(engine.reservations),
            dict(engine.board.active),
            (engine.sm.state, engine.sm.reason, engine.sm.since),
            engine.last_breaker_clear_at,
        )

    def restore(self, engine: RiskEngine) -> None:
        engine.book, engine.reservations = self.book, self.reservations
        engine.board.active = dict(self.breakers)
        engine.sm.state, engine.sm.reason, engine.sm.since = self.state
        engine.last_breaker_clear_at = self.last_breaker_clear_at
