"""Alert delivery decisions (pure core): severity floor, deduplication window, per-channel rate limit."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

SEVERITY_RANK = {"SEV-1": 3, "SEV-2": 2, "SEV-3": 1, "INFO": 0}


@dataclass(frozen=True)
class GateDecision:
    deliver: bool
    reason: str  # ok | below_min_severity | duplicate | rate_limited


@dataclass
class AlertGate:
    """`decide(key, severity, channel, now)`; `now` in seconds (monotonic). Remembers what it let through."""

    dedup_window_s: float = 300.0
    rate_limit_per_min: int = 20
    min_severity: str = "SEV-3"
    _last_sent: dict[str, float] = field(default_factory=dict)
    _channel_sends: dict[str, deque[float]] = field(default_factory=dict)

    def is_duplicate(self, key: str, now: float) -> bool:
        last = self._last_sent.get(key)
        return last is not None and now - last < self.dedup_window_s

    def admit(self, key: str, severity: str, now: float) -> GateDecision:
        """Once per alert, before the channels: severity floor and dedup."""
        if SEVERITY_RANK.get(severity, 0) < SEVERITY_RANK.get(self.min_severity, 1):
            return GateDecision(False, "below_min_severity")
        if key and self.is_duplicate(key, now):
            return GateDecision(False, "duplicate")
        if key:
            self._last_sent[key] = now
            if len(self._last_sent) > 10_000:
                horizon = now - self.dedup_window_s
                self._last_sent = {k: t for k, t in self._last_sent.items() if t >= horizon}
        return GateDecision(True, "ok")

    def channel_allows(self, channel: str, severity: str, now: float) -> GateDecision:
        """Per channel: at most `rate_limit_per_min` sends in any 60 s. SEV-1 is never rate-limited."""
        sends = self._channel_sends.setdefault(channel, deque())
        while sends and now - sends[0] >= 60.0:
            sends.popleft()
        if severity != "SEV-1" and len(sends) >= self.rate_limit_per_min:
            return GateDecision(False, "rate_limited")
        sends.append(now)
        return GateDecision(True, "ok")
