"""docs/runbook.md's compose section: every command it gives names a real compose service and a real `bnml`
subcommand, and the bot is stopped with compose, never with pkill."""

from __future__ import annotations

import re

import yaml

from bnml.cli import build_parser
from tests.unit.deploy.tooling import COMPOSE_FILE, ROOT

RUNBOOK = (ROOT / "docs/runbook.md").read_text()


def compose_section() -> str:
    assert "\n## With docker compose\n" in RUNBOOK
    return RUNBOOK.split("\n## With docker compose\n", 1)[1].split("\n## ", 1)[0]


def test_the_compose_section_covers_start_stop_kill_switch_reports_backups_and_logs():
    section = compose_section()
    for topic in (
        "### Start and stop",
        "### Kill switch",
        "### Reports",
        "### Backups",
        "### Logs",
        "### Alerts",
    ):
        assert topic in section, topic
    assert "alias dc='docker compose -f deploy/docker-compose.yml'" in section
    assert "pkill" not in section and "killall" not in section
    assert "dc stop market-data signal risk execution" in section
    assert "pkill" not in RUNBOOK, "the local run is stopped by its launcher's pid, not by a name"


def test_every_compose_command_names_a_service_of_the_compose_file():
    services = set(yaml.safe_load(COMPOSE_FILE.read_text())["services"])
    named = []
    for verb, rest in re.findall(r"\bdc (exec|logs|restart|stop|cp|up)\b([^\n`]*)", compose_section()):
        words = [w for w in re.split(r"\s+", rest.strip()) if w and not w.startswith("-")]
        if verb == "exec":
            named.append(words[0])
        elif verb == "cp":
            named += [w.split(":")[0] for w in words if ":" in w]
        elif verb in ("logs", "restart", "stop", "up"):
            named += [w for w in words if re.fullmatch(r"[a-z][a-z-]+", w) and w not in ("since", "h")]
    assert named
    unknown = sorted({n for n in named if n not in services})
    assert not unknown, f"the runbook names services the compose file does not have: {unknown}"


def test_every_bnml_command_of_the_section_parses():
    parser = build_parser()
    commands = re.findall(r"\bbnml ((?:[a-z-]+ ?)+)", compose_section())
    assert len(commands) >= 8
    for cmd in commands:
        words = cmd.split()
        argv = (
            words[:2]
            if len(words) > 1 and words[0] in ("kill-switch", "dod", "incident", "alert")
            else words[:1]
        )
        extra = {
            "engage": ["--reason", "x"],
            "release": ["--reason", "x"],
            "new": ["--id", "1"],
            "restore": ["/tmp/x"],
        }.get(argv[-1], [])
        parser.parse_args(argv + extra)  # SystemExit (a test error) on an unknown subcommand
