"""Who may do what on the ops API (pure core): token -> role in constant time, and failure throttling."""

from __future__ import annotations

import hmac
from collections import deque
from dataclasses import dataclass, field

ROLE_RANK = {"viewer": 1, "operator": 2}


def role_for(token: str, operator_token: str, viewer_token: str) -> str | None:
    """The role a bearer token grants, or None. Both comparisons always run (no timing hint of which matched)."""
    given = token.encode()
    is_op = hmac.compare_digest(given, operator_token.encode()) if operator_token else False
    is_view = hmac.compare_digest(given, viewer_token.encode()) if viewer_token else False
    if not token:
        return None
    return "operator" if is_op else ("viewer" if is_view else None)


def allows(role: str | None, needed: str) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[needed]


@dataclass(frozen=True)
class ThrottleDecision:
    allowed: bool
    retry_after_s: float = 0.0


@dataclass
class FailureThrottle:
    """After `max_failures` refused attempts within `window_s`, a client gets 429 for `block_s`. Time in seconds."""

    max_failures: int = 5
    window_s: float = 60.0
    block_s: float = 60.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _blocked_until: dict[str, float] = field(default_factory=dict)

    def check(self, client: str, now: float) -> ThrottleDecision:
        until = self._blocked_until.get(client)
        if until is not None:
            if now < until:
                return ThrottleDecision(False, round(until - now, 3))
            del self._blocked_until[client]
        return ThrottleDecision(True)

    def failure(self, client: str, now: float) -> ThrottleDecision:
        q = self._failures.setdefault(client, deque())
        q.append(now)
        while q and now - q[0] > self.window_s:
            q.popleft()
        if len(q) >= self.max_failures:
            self._blocked_until[client] = now + self.block_s
            q.clear()
            return ThrottleDecision(False, self.block_s)
        if len(self._failures) > 10_000:  # bounded memory under a spray of clients
            self._failures = {c: d for c, d in self._failures.items() if d and now - d[-1] <= self.window_s}
        return ThrottleDecision(True)

    def success(self, client: str) -> None:
        self._failures.pop(client, None)
