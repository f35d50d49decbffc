"""How `bnml` shows things to a person: tables, coloured states and progress, through `rich`.

One rule for every command: colour and live progress bars only on a terminal; when the output is piped or
redirected it is plain text that `grep` and `awk` can read (no escape codes, no box drawing, no line cut at
80 columns). `NO_COLOR` (https://no-color.org) turns colour off on a terminal too; `TERM=dumb` likewise.
Commands print machine output (`--json`) with `print`, never through here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence, Sized
from contextlib import contextmanager
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

# Width for output that is not a terminal: wide enough that no line is wrapped or cut.
PIPE_WIDTH = 10_000

# The colour of a value wherever it appears (service status, trading state, kill switch, check result).
STYLES = {
    "ok": "green",
    "ACTIVE": "green",
    "off": "green",
    "PASS": "green",
    "stale": "yellow",
    "starting": "yellow",
    "REDUCING": "yellow",
    "PAUSED": "yellow",
    "degraded": "yellow",
    "down": "red",
    "missing": "red",
    "HALTED": "red",
    "ENGAGED": "bold red",
    "FAIL": "bold red",
    "FAILED": "bold red",
    "UNKNOWN": "bold red",
}


def _isatty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def colour_allowed(stream: IO[str]) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (non-empty, as no-color.org says) or TERM
    is dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return _isatty(stream)


def console(stream: IO[str] | None = None) -> Console:
    """A console on `stream` (default stdout): styled on a terminal, plain and unwrapped otherwise."""
    stream = stream or sys.stdout
    if _isatty(stream):
        # NO_COLOR / TERM=dumb: no colour and no bold either (no escape codes at all); still boxed tables
        colour = colour_allowed(stream)
        return Console(
            file=stream,
            highlight=False,
            soft_wrap=True,
            emoji=False,
            no_color=not colour,
            color_system="auto" if colour else None,
        )
    # Not a terminal: plain text, never wrapped or cut at a guessed width; FORCE_COLOR does not apply.
    return Console(
        file=stream,
        force_terminal=False,
        color_system=None,
        no_color=True,
        highlight=False,
        soft_wrap=True,
        emoji=False,
        width=PIPE_WIDTH,
    )


def styled(value: Any, style: str | None = None) -> Text:
    """`value` as text, in `style` or the colour its meaning has (`STYLES`); never read as markup."""
    s = str(value)
    return Text(s, style=style if style is not None else STYLES.get(s, ""))


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    plain: bool | None = None,
) -> Table:
    """A table of `rows` (cells are values or `Text`); boxed on a terminal, aligned columns when `plain`."""
    t = Table(
        title=title,
        title_justify="left",
        box=None if plain else box.SIMPLE_HEAD,
        header_style="bold",
        pad_edge=False,
        padding=(0, 2, 0, 0) if plain else (0, 1),
    )
    for c in columns:
        t.add_column(c, no_wrap=True, overflow="fold")
    for row in rows:
        t.add_row(*(cell if isinstance(cell, Text) else Text(str(cell)) for cell in row))
    return t


def print_table(
    out: Console, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> None:
    """Print a table on `out`: boxed and coloured on a terminal, plain aligned columns otherwise."""
    if out.is_terminal:
        out.print(table(columns, rows, title=title))
        return
    with out.capture() as captured:  # plain: drop the padding rich puts after the last column
        out.print(table(columns, rows, title=title, plain=True))
    out.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


@contextmanager
def progress(description: str, total: float | None = None, *, stream: IO[str] | None = None) -> Iterator[Any]:
    """A progress reporter for long work (training, backtests, downloads); yields `advance(n=1, note="")`.

    On a terminal (stderr by default, so stdout stays clean for results) it is a live bar; otherwise it
    prints one line at the start and one at the end, so a log file gets no control characters.
    """
    stream = stream or sys.stderr
    out = console(stream)
    if out.is_terminal:
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"),
        ]
        with Progress(*columns, console=out, transient=False) as bar:
            task = bar.add_task(description, total=total, note="")

            def advance(n: float = 1, note: str = "") -> None:
                bar.update(task, advance=n, note=note)

            yield advance
        return
    done = {"n": 0.0}

    def advance_plain(n: float = 1, note: str = "") -> None:
        done["n"] += n

    out.print(Text(f"{description}: started" + (f" ({total:g} to do)" if total else "")))
    yield advance_plain
    out.print(Text(f"{description}: done ({done['n']:g}" + (f"/{total:g})" if total else ")")))


def track(
    items: Iterable[Any], description: str, total: float | None = None, *, stream: IO[str] | None = None
) -> Iterator[Any]:
    """Iterate over `items` with a progress bar on a terminal (see `progress`)."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    with progress(description, total, stream=stream) as advance:
        for item in items:
            yield item
            advance()
