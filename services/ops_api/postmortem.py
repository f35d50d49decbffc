"""Postmortem skeleton (pure): an incident and its timeline in, the markdown the runbook asks for out."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def render(incident: dict[str, Any], timeline: list[dict[str, Any]], generated_at: datetime) -> str:
    """`timeline` rows: ts, source, summary (oldest first). Sections: timeline, impact, cause, corrective, preventive."""
    opened = incident.get("opened_at")
    resolved = incident.get("resolved_at")
    lines = [
        f"# Postmortem: incident {incident.get('id', '-')} ({incident.get('severity', '?')}) {incident.get('title', '')}",
        "",
        f"- Kind: `{incident.get('kind', 'manual')}`, key `{incident.get('key', '')}`",
        f"- Opened: {opened.isoformat() if isinstance(opened, datetime) else opened}",
        f"- Resolved: {resolved.isoformat() if isinstance(resolved, datetime) else (resolved or 'not yet')}",
        f"- Written: {generated_at.isoformat()} (skeleton from `bnml incident new`; complete every TODO)",
        "",
        "## Timeline (UTC)",
        "",
    ]
    if timeline:
        lines += [
            f"- {r['ts'].isoformat() if isinstance(r['ts'], datetime) else r['ts']} [{r['source']}] "
            f"{r['summary']}"
            for r in timeline
        ]
    else:
        lines.append("- (no recorded event in the window; add what operators saw)")
    lines += [
        "",
        "## Impact",
        "",
        "- Capital: TODO (realized P&L over the incident: `GET /fills?since=...`, DoD figures)",
        "- Trading: TODO (time halted/reducing, orders refused or cancelled)",
        "",
        "## Cause",
        "",
        "- TODO: root cause, not the symptom",
        "",
        "## Corrective action",
        "",
        "- TODO: what was done to stop it (kill switch, restart, config change) and by whom",
        "",
        "## Preventive action",
        "",
        "- TODO: the patch + test (`python3 -m pytest -q`), the rule or alert that catches it next time",
        "",
    ]
    return "\n".join(lines)
