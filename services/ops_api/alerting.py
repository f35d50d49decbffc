"""Alert delivery shell: Telegram, webhook and email through apprise, one isolated channel each.

Every alert is logged locally and recorded in Postgres whatever happens. External delivery goes through
the gate (severity floor, dedup, per-channel rate limit); each channel has its own apprise object and
timeout, so one failing channel never blocks another. A failed delivery is recorded, counted and itself
raised as "alerting externe KO" (the runbook's SEV-2).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import apprise

from libs.common.settings.ops import AlertingSettings

TITLE_PREFIX = "[BN-ML]"


@dataclass(frozen=True)
class Channel:
    name: str
    url: str
    secrets: tuple[str, ...] = ()

    def scrub(self, text: str) -> str:
        for s in self.secrets:
            if s:
                text = text.replace(s, "***")
        return text


def build_channels(cfg: AlertingSettings) -> list[Channel]:
    """Apprise URLs for the enabled channels (secrets kept out of anything printed)."""
    out: list[Channel] = []
    if cfg.telegram.enabled:
        token = cfg.telegram.bot_token.get_secret_value()
        out.append(Channel("telegram", f"tgram://{token}/{cfg.telegram.chat_id}", (token,)))
    if cfg.webhook.enabled:
        parts = urlsplit(cfg.webhook.url)
        scheme = {"http": "json", "https": "jsons"}.get(parts.scheme, parts.scheme)
        out.append(
            Channel(
                "webhook",
                f"{scheme}://{parts.netloc}{parts.path}{'?' + parts.query if parts.query else ''}",
                (parts.password or "",),
            )
        )
    if cfg.email.enabled:
        e = cfg.email
        password = e.password.get_secret_value()
        auth = f"{quote(e.username, safe='')}:{quote(password, safe='')}@" if e.username else ""
        to = ",".join(e.recipients)
        out.append(
            Channel(
                "email",
                f"mailto://{auth}{e.smtp_host}:{e.smtp_port}?from={quote(e.sender, safe='@')}"
                f"&to={quote(to, safe='@,')}&mode={e.secure_mode}&smtp={e.smtp_host}&format=text",
                (password,),
            )
        )
    return out


def _send_blocking(channel: Channel, title: str, body: str) -> tuple[bool, str]:
    ap = apprise.Apprise()
    if not ap.add(channel.url):
        return False, f"{channel.name}: configuration not understood by apprise"
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        ok = ap.notify(title=title, body=body)
    text = captured.getvalue().strip().splitlines()
    return bool(ok), "" if ok else channel.scrub(text[-1] if text else "delivery failed")


async def send(channel: Channel, title: str, body: str, timeout_s: float) -> tuple[bool, str]:
    """(ok, error) for one channel; never raises."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(_send_blocking, channel, title, body), timeout_s)
    except TimeoutError:
        return False, f"timed out after {timeout_s} s"
    except Exception as exc:
        return False, channel.scrub(f"{type(exc).__name__}: {exc}")


async def send_all(
    channels: list[Channel], title: str, body: str, timeout_s: float
) -> dict[str, tuple[bool, str]]:
    results = await asyncio.gather(*(send(c, title, body, timeout_s) for c in channels))
    return {c.name: r for c, r in zip(channels, results, strict=True)}


def format_alert(severity: str, source: str, title: str, detail: str) -> tuple[str, str]:
    return f"{TITLE_PREFIX} {severity} {title}"[
        :250
    ], f"{severity} from {source}: {title}\n\n{detail}".strip()


class Dispatcher:
    """Records, gates and delivers alerts; `on_result(channel, ok, error)` lets the shell raise failures."""

    def __init__(self, cfg: AlertingSettings, pool, log, metrics, on_result=None, clock=time.monotonic):
        from services.ops_api.alert_gate import AlertGate

        self.cfg, self.pool, self.log, self.clock = cfg, pool, log, clock
        self.channels = build_channels(cfg)
        self.gate = AlertGate(cfg.dedup_window_s, cfg.rate_limit_per_min, cfg.min_severity)
        self.on_result = on_result
        self.deliveries = metrics.counter(
            "alert_deliveries_total", "Alert deliveries by channel and outcome", ["channel", "outcome"]
        )
        self.failures = metrics.counter(
            "alert_delivery_failures_total", "Failed alert deliveries", ["channel"]
        )
        self.alerts_in = metrics.counter("alerts_total", "Alerts received", ["severity"])

    async def handle(self, alert, *, max_age_s: float = 900.0) -> str:
        """Returns what happened: duplicate_record | stale | suppressed:<why> | no_channel | sent | failed."""
        self.alerts_in.labels(severity=alert.severity).inc()
        self.log.warning(
            "alert",
            severity=alert.severity,
            source=alert.source,
            title=alert.title,
            detail=alert.detail[:500],
            alert_id=alert.id,
        )
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO alerts (id, ts, severity, source, title, detail, dedup_key) VALUES (%s,%s,%s,%s,%s,%s,%s)"
                    " ON CONFLICT (id) DO NOTHING RETURNING id",
                    (
                        alert.id,
                        alert.ts,
                        alert.severity,
                        alert.source,
                        alert.title,
                        alert.detail,
                        alert.dedup_key,
                    ),
                )
            ).fetchone()
        if row is None:
            return "duplicate_record"
        from libs.common.contracts import utcnow

        # wall time by design: alerts are stamped on the wall clock (Runtime.alert), so they age on it
        if (utcnow() - alert.ts).total_seconds() > max_age_s:
            return await self._mark(alert.id, "stale")
        decision = self.gate.admit(alert.dedup_key, alert.severity, self.clock())
        if not decision.deliver:
            return await self._mark(alert.id, f"suppressed:{decision.reason}")
        if not self.channels:
            return await self._mark(alert.id, "no_channel")
        now = self.clock()
        allowed = []
        for c in self.channels:
            d = self.gate.channel_allows(c.name, alert.severity, now)
            if d.deliver:
                allowed.append(c)
            else:
                self.deliveries.labels(channel=c.name, outcome="rate_limited").inc()
        if not allowed:
            return await self._mark(alert.id, "suppressed:rate_limited")
        title, body = format_alert(alert.severity, alert.source, alert.title, alert.detail)
        results = await send_all(allowed, title, body, self.cfg.timeout_s)
        async with self.pool.connection() as conn:
            for name, (ok, error) in results.items():
                await conn.execute(
                    "INSERT INTO alert_deliveries (alert_id, channel, ok, error) VALUES (%s,%s,%s,%s)",
                    (alert.id, name, ok, error[:1000]),
                )
        for name, (ok, error) in results.items():
            self.deliveries.labels(channel=name, outcome="ok" if ok else "failed").inc()
            if not ok:
                self.failures.labels(channel=name).inc()
                self.log.error("alert delivery failed", channel=name, error=error, alert_id=alert.id)
            if self.on_result is not None:
                await self.on_result(name, ok, error, alert)
        outcome = "sent" if all(ok for ok, _ in results.values()) else "failed"
        return await self._mark(alert.id, outcome)

    async def _mark(self, alert_id: str, outcome: str) -> str:
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE alerts SET delivered = %s WHERE id = %s", (outcome[:40], alert_id))
        return outcome
