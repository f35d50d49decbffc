"""`bnml` as an operator and a script meet it: --version, options after the subcommand, exit codes, a closed pipe."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bnml import cli
from tests.helpers import ROOT

F_SETPIPE_SZ = 1031  # Linux fcntl: shrink a pipe's buffer so that a reader that stops early is felt at once


def _env() -> dict[str, str]:
    """No running suite, no database, no NATS: what a user has before `bnml up`."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BNML_") and k not in ("NATS_URL", "DATABASE_URL", "NO_COLOR", "FORCE_COLOR")
    }


def bnml(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`bnml ARGS` as a process, from a directory with no `artifacts/run/suite.json` (no suite running)."""
    return subprocess.run(
        [sys.executable, "-m", "bnml.cli", *args],
        cwd=tmp_path,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _config(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "bot.yaml"
    path.write_text((ROOT / "configs" / "bot.yaml").read_text() + text)
    return path


def test_version_prints_the_installed_version_and_exits_0(tmp_path):
    res = bnml(tmp_path, "--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"bnml {cli.version()}" and cli.version()[0].isdigit()


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "x.yaml", "status"],
        ["status", "--config", "x.yaml"],
        ["kill-switch", "status", "--config", "x.yaml"],
        [
            "--config",
            "other.yaml",
            "dod",
            "check",
            "--config",
            "x.yaml",
        ],  # the later one wins, as argparse does
    ],
)
def test_config_is_the_same_before_or_after_the_subcommand(argv):
    assert cli.parse(argv).config == "x.yaml"


def test_config_before_the_subcommand_is_not_reset_by_the_subcommand_parser():
    args = cli.parse(["--config", "x.yaml", "kill-switch", "engage", "--reason", "r"])
    assert args.config == "x.yaml" and args.reason == "r"
    assert cli.parse(["status"]).config is None


@pytest.mark.parametrize(
    "argv", [["--json", "status"], ["status", "--json"], ["--json", "state", "--events", "0"]]
)
def test_json_is_accepted_before_or_after_the_subcommand(argv):
    assert cli.parse(argv).json is True
    assert cli.parse([a for a in argv if a != "--json"]).json is False


def test_config_after_the_subcommand_reaches_the_command(tmp_path):
    # `bnml state --config FILE` reads FILE: a config with no database URL is a configuration error (2)
    res = bnml(tmp_path, "state", "--config", str(_config(tmp_path)))
    assert res.returncode == 2, res.stderr
    assert "database.url" in res.stderr and "Traceback" not in res.stderr
    missing = bnml(tmp_path, "state", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr and "Traceback" not in missing.stderr


def test_json_on_a_command_without_a_json_form_is_a_usage_error(tmp_path):
    res = bnml(tmp_path, "--json", "incident", "list")
    assert res.returncode == 2 and "has no --json output" in res.stderr
    assert bnml(tmp_path, "incident", "list", "--json").returncode == 2  # argparse: unrecognized argument


def test_usage_errors_exit_2(tmp_path):
    for argv in ([], ["no-such-command"], ["status", "--no-such-option"], ["kill-switch"]):
        res = bnml(tmp_path, *argv)
        assert res.returncode == 2, (argv, res.stdout, res.stderr)
        assert "usage:" in res.stderr


def test_status_without_a_running_suite_exits_1_with_one_line(tmp_path):
    for argv in (["status"], ["status", "--json"]):
        res = bnml(tmp_path, *argv)
        assert res.returncode == 1
        assert res.stdout == "" and res.stderr.count("\n") == 1 and "no running suite" in res.stderr


def test_kill_switch_release_without_operator_authority_exits_3(tmp_path):
    res = bnml(tmp_path, "kill-switch", "release", "--reason", "try", "--config", str(_config(tmp_path)))
    assert res.returncode == 3 and "refused" in res.stderr


def test_help_documents_the_exit_codes_and_points_to_the_docs(tmp_path):
    res = bnml(tmp_path, "--help")
    assert res.returncode == 0
    for code, meaning in cli.EXIT_CODES.items():
        assert f"  {code:<4} {meaning}" in res.stdout
    assert "docs/design.md" in res.stdout and "docs/interfaces.md" in res.stdout
    assert "docs/interfaces.md" in bnml(tmp_path, "status", "--help").stdout


def test_exit_codes_are_the_documented_ones():
    assert (cli.OK, cli.NOT_OK, cli.USAGE, cli.REFUSED) == (0, 1, 2, 3)
    doc = (ROOT / "docs" / "interfaces.md").read_text()
    for code in cli.EXIT_CODES:
        assert f"| {code} |" in doc, f"exit code {code} is not in docs/interfaces.md"


def test_a_closed_pipe_ends_quietly_without_a_traceback(tmp_path):
    # `bnml contracts | head -c1`: head reads one byte and exits while bnml is still writing (~46 KB into
    # a pipe shrunk to one page, so the write is still going on when head goes).
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    producer = subprocess.Popen(
        [sys.executable, "-m", "bnml.cli", "contracts"],
        cwd=tmp_path,
        env=_env(),
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    head = subprocess.Popen(["head", "-c1"], stdin=read_end, stdout=subprocess.PIPE)
    os.close(read_end)
    os.close(write_end)
    first, _ = head.communicate(timeout=60)
    _, err = producer.communicate(timeout=60)
    assert first == b"{"
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert err == b""
    assert producer.returncode == cli.CLOSED_PIPE


def test_contracts_complete_output_is_json_and_exits_0(tmp_path):
    res = bnml(tmp_path, "contracts")
    assert res.returncode == 0, res.stderr
    assert "md.tick.<SYM>" in json.loads(res.stdout)


@pytest.mark.parametrize(
    "argv",
    [
        ["state"],
        ["incident", "list"],
        ["incident", "new"],
        ["backup"],
        ["restore", "nowhere"],
        ["dod", "check"],
        ["migrate", "--wait", "0"],
    ],
)
def test_a_command_with_no_database_configured_exits_2_with_one_line(tmp_path, argv):
    res = bnml(tmp_path, *argv, "--config", str(_config(tmp_path)))
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr, res.stderr


@pytest.mark.parametrize("argv", [["state"], ["incident", "list"]])
def test_an_unreachable_database_exits_1_with_the_password_masked(tmp_path, argv):
    env = {**_env(), "DATABASE_URL": "postgresql://bnml:s3cret-pw@127.0.0.1:1/bnml"}
    res = bnml(tmp_path, *argv, env=env)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "s3cret-pw" not in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0, res.stderr
