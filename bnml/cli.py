"""`bnml`: one command for operators. Each subcommand lives in `bnml/commands/<name>.py` with `register()`."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module registers its subcommands; add a module here to add a command.
COMMAND_MODULES = [
    "bnml.commands.suite",
    "bnml.commands.kill_switch",
    "bnml.commands.contracts",
    "bnml.commands.dod",
    "bnml.commands.backup",
    "bnml.commands.incident",
    "bnml.commands.alert",
    "bnml.commands.migrate",
    "bnml.commands.train",
    "bnml.commands.state",
    "bnml.commands.data",
    "bnml.commands.backtest",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bnml", description="BN-ML trading suite")
    parser.add_argument("--config", default=None, help="YAML config (default: configs/bot.yaml or $BNML_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "up":
        from libs.common.logging import configure_logging

        configure_logging("cli", level="WARNING")
    code = args.func(args)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
