"""`bnml`: one command for operators. Each subcommand lives in `bnml/commands/<name>.py` with `register()`.

The common options (`--config`, `--json`) are accepted before or after the subcommand, and every command
ends with one of the exit codes below (`EXIT_CODES`, also in `bnml --help` and docs/interfaces.md).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib import metadata

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
    "bnml.commands.models",
    "bnml.commands.state",
    "bnml.commands.data",
    "bnml.commands.backtest",
]

# The exit codes every command keeps to. Scripts and cron jobs rely on them: extend, never renumber.
OK, NOT_OK, USAGE, REFUSED = 0, 1, 2, 3
INTERRUPTED, CLOSED_PIPE = 130, 141  # the shell's conventions: 128 + SIGINT, 128 + SIGPIPE
EXIT_CODES = {
    OK: "ok",
    NOT_OK: "the thing checked or asked for is not ok (no running suite, a violation, a failed backup, ...)",
    USAGE: "usage or configuration error (bad option, unreadable config, missing setting)",
    REFUSED: "refused (e.g. a kill-switch release without operator authority)",
    INTERRUPTED: "interrupted (Ctrl-C)",
    CLOSED_PIPE: "the reader closed the pipe (`bnml contracts | head`); output stops quietly",
}


def version() -> str:
    try:
        return metadata.version("bn-ml")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


class CommandParser(argparse.ArgumentParser):
    """Every subcommand's parser (argparse makes nested ones of the parent's class) also takes the common
    options, so `bnml status --config x` means `bnml --config x status`. Their defaults are SUPPRESS so
    that an option given before the subcommand is not reset by the subcommand's parser; a command that
    declares an option of the same name itself wins (conflict_handler="resolve")."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("conflict_handler", "resolve")
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--config",
            default=argparse.SUPPRESS,
            dest="config_after",
            metavar="FILE",
            help="YAML config (as `bnml --config FILE`)",
        )


def _epilog() -> str:
    codes = "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items())
    return (
        "Options --config and --json may be given before or after the subcommand.\n\n"
        f"exit codes:\n{codes}\n\n"
        "Design: docs/design.md. What tools rely on (status JSON, files, exit codes): docs/interfaces.md."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bnml",
        description="BN-ML trading suite",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bnml {version()}")
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="YAML config (default: $BNML_CONFIG, else configs/bot.yaml)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        dest="json_first",
        help="machine-readable output, for the commands that have one (status, state, ...)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse `argv`, merging the common options given before and after the subcommand (after wins)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    after = vars(args).pop("config_after", None)
    if after is not None:
        args.config = after
    if vars(args).pop("json_first", False):
        if "json" not in vars(args):  # only a command that declares --json has a JSON form
            parser.error(f"`bnml {_command_path(args)}` has no --json output")
        args.json = True
    return args


def _command_path(args: argparse.Namespace) -> str:
    parts = [args.command] + [v for k, v in sorted(vars(args).items()) if k.endswith("_action") and v]
    return " ".join(parts)


def run(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code; never lets a traceback reach the operator for the
    ordinary ways a command ends early (bad configuration, Ctrl-C, a closed pipe)."""
    from libs.common.errors import ConfigurationError

    args = parse(argv)
    if args.command != "up":
        from libs.common.logging import configure_logging

        configure_logging("cli", level="WARNING")
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return OK if code is None else int(code)
    except BrokenPipeError:
        _silence_stdout()
        return CLOSED_PIPE
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return INTERRUPTED
    except ConfigurationError as exc:
        print(f"bnml {_command_path(args)}: {exc}", file=sys.stderr)
        return USAGE


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so Python's final flush does not print a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
