"""Subcommands of `bnml`: each module has `register(sub)`; `bnml/cli.py` lists the modules."""

from __future__ import annotations

import argparse


def add_json_option(p: argparse.ArgumentParser, help: str = "one JSON object instead of the table") -> None:
    """Declare `--json` on a command (it may then also be given before the subcommand: `bnml --json ...`)."""
    p.add_argument("--json", action="store_true", help=help)
