"""`bnml data download` and `bnml data list`: OHLCV candles from Binance (ccxt `fetch_ohlcv`) into Parquet.

Files: `<dir>/<exchange>/<SYMBOL>-<timeframe>.parquet` (default `artifacts/data/binance/BTCUSDT-1h.parquet`),
columns open_time (epoch ms UTC), open, high, low, close, volume (float), close_time; read back by the one
OHLCV reader (`libs.common.ohlcv`), which replay, training and the backtest use too.

- Paginated: up to 1000 bars per request (Binance's maximum), from the first missing bar onwards.
- Rate-limit aware: ccxt's own pacing (`enableRateLimit`), plus the project's back-off on errors
  (`services.market_data.backoff`: 429 waits at least `Retry-After`; 418 waits out the ban when it is
  short, else stops with the reason; temporary errors back off with jitter; a bad symbol stops at once).
- Resumable: what the file already holds is not fetched again; only the missing head, tail and holes of
  the requested range are; the file is rewritten atomically after every few pages, so an interrupted run
  keeps what it got.
- Gap-checked: after the download the file is validated; bars the exchange itself does not have (outages)
  are reported as gaps (they stay gaps: nothing is invented), and the command says so.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

SAVE_EVERY_PAGES = 10
MAX_CONSECUTIVE_ERRORS = 8
MAX_BAN_WAIT_S = 300.0
PAGE_LIMIT = 1000


def register(sub) -> None:
    p = sub.add_parser("data", help="download and list OHLCV candles (artifacts/data/)")
    dsub = p.add_subparsers(dest="data_command", required=True)
    d = dsub.add_parser("download", help="fetch OHLCV from Binance (resumable) into Parquet")
    d.add_argument("--symbols", nargs="+", required=True, help="ccxt symbols, e.g. BTC/USDT ETH/USDT")
    d.add_argument("--timeframe", default="1h", help="1m, 5m, 1h, 1d, ... (default 1h)")
    d.add_argument(
        "--from", dest="start", required=True, help="start (UTC), e.g. 2024-01-01 or 2024-01-01T06:00"
    )
    d.add_argument("--to", dest="end", default=None, help="end, exclusive (UTC; default: now)")
    d.add_argument("--dir", default=None, help="data directory (default: <storage.artifacts_dir>/data)")
    d.add_argument("--exchange", default="binance", choices=["binance"])
    d.add_argument("--no-progress", action="store_true", help="no progress bar (logs and CI)")
    d.set_defaults(func=_download)
    ls = dsub.add_parser("list", help="the downloaded files: symbol, timeframe, bars, span, gaps")
    ls.add_argument("--dir", default=None)
    ls.set_defaults(func=_list)


def parse_time(text: str) -> int:
    """`2024-01-01`, `2024-01-01T06:00`, `2024-01-01T06:00:00+00:00` or epoch ms -> epoch ms (UTC)."""
    if text.isdigit():
        return int(text)
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def data_dir(settings, given: str | None) -> Path:
    from libs.common.markets import ROOT

    p = Path(given) if given else Path(settings.storage.artifacts_dir) / "data"
    return p if p.is_absolute() else ROOT / p


def missing_ranges(have: list[int], start: int, end: int, tf_ms: int) -> list[tuple[int, int]]:
    """[a, b) ranges of open times in [start, end) that `have` (sorted open times) lacks."""
    first = -(-start // tf_ms) * tf_ms
    out: list[tuple[int, int]] = []
    inside = [t for t in have if first <= t < end]
    cursor = first
    for t in inside:
        if t > cursor:
            out.append((cursor, t))
        cursor = t + tf_ms
    if cursor < end:
        out.append((cursor, end))
    return out


class DownloadError(RuntimeError):
    pass


async def _fetch_range(ex, symbol: str, timeframe: str, tf_ms: int, a: int, b: int, policy, on_page) -> None:
    """Pages of up to 1000 bars over [a, b); `on_page(rows)` gets each page's rows (open < b)."""
    from libs.common.errors import InvalidInputError, OperationalError, TemporaryError
    from services.market_data.backoff import backoff_kind
    from services.market_data.ccxt_adapter import ExchangeBanned, call

    since = a
    while since < b:
        now = time.monotonic()
        if not policy.allowed(now):
            await asyncio.sleep(policy.wait_s(now))
        try:
            rows = await call(
                ex,
                functools.partial(
                    ex.fetch_ohlcv, symbol, timeframe, since=since, limit=PAGE_LIMIT, params={"until": b - 1}
                ),
                lambda: int(time.time() * 1000),
            )
        except InvalidInputError as exc:
            raise DownloadError(f"{symbol}: the exchange refused the request: {exc}") from None
        except ExchangeBanned as exc:
            wait = exc.retry_after_s if exc.retry_after_s is not None else policy.ban_default_s
            if wait > MAX_BAN_WAIT_S:
                raise DownloadError(
                    f"{symbol}: IP banned by the exchange (418) for {wait:.0f}s; stopped, "
                    "run again after the ban (what was fetched is kept)"
                ) from None
            policy.on_error("banned", time.monotonic(), wait)
            continue
        except TemporaryError as exc:
            d = policy.on_error(backoff_kind(exc), time.monotonic(), getattr(exc, "retry_after_s", None))
            if d.consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                raise DownloadError(
                    f"{symbol}: {d.consecutive_errors} errors in a row, last: {exc}"
                ) from None
            continue
        except OperationalError as exc:
            raise DownloadError(f"{symbol}: {exc}") from None
        policy.on_success(time.monotonic())
        page = [r for r in rows if a <= int(r[0]) < b]
        if page:
            on_page(page)
        if not rows or int(rows[-1][0]) + tf_ms <= since:
            break  # nothing more from here on (the exchange has no later bars in the range)
        since = int(rows[-1][0]) + tf_ms


async def download(
    settings,
    symbols: list[str],
    timeframe: str,
    start: int,
    end: int,
    root: Path,
    progress=None,
    exchange_id: str = "binance",
) -> dict[str, dict]:
    """Fetch what is missing for each symbol; returns per-symbol {path, fetched, rows, gaps, span}."""
    from libs.common import ohlcv
    from services.market_data.backoff import BackoffPolicy
    from services.market_data.ccxt_adapter import call, make_exchange

    tf_ms = ohlcv.timeframe_ms(timeframe)
    end = min(end, int(time.time() * 1000) // tf_ms * tf_ms)  # never the candle still forming
    if end <= start:
        raise DownloadError("empty date range (is --to before --from, or in the future?)")
    bcfg = settings.market_data.binance
    ex = make_exchange(bcfg)
    results: dict[str, dict] = {}
    try:
        try:
            await call(ex, ex.load_markets, lambda: int(time.time() * 1000))
        except Exception as exc:
            raise DownloadError(f"cannot load the exchange's markets: {exc}") from None
        for symbol in symbols:
            if symbol not in ex.markets:
                raise DownloadError(f"{symbol}: not a market on {exchange_id}")
            path = ohlcv.data_path(root, exchange_id, symbol, timeframe)
            policy = BackoffPolicy(bcfg.backoff_initial_s, bcfg.backoff_max_s, bcfg.ban_default_s)
            results[symbol] = await _download_symbol(
                ex, symbol, timeframe, start, end, path, policy, progress
            )
    finally:
        await ex.close()
    return results


async def _download_symbol(
    ex, symbol: str, timeframe: str, start: int, end: int, path: Path, policy, progress
) -> dict:
    import polars as pl

    from libs.common import ohlcv

    tf_ms = ohlcv.timeframe_ms(timeframe)
    frame = pl.DataFrame(schema={"open_time": pl.Int64, **{c: pl.Float64 for c in ohlcv.COLUMNS[1:]}})
    if path.exists():  # noqa: ASYNC240 - a stat on a local file, once per symbol
        frame = ohlcv.load(path, timeframe=timeframe, allow_gaps=True).frame
    todo = missing_ranges(frame["open_time"].to_list(), start, end, tf_ms)
    total = sum((b - a) // tf_ms for a, b in todo)
    task = progress.add_task(f"{symbol} {timeframe}", total=max(total, 1)) if progress else None
    pages: list[list] = []
    fetched = 0

    def save() -> None:
        nonlocal frame
        if not pages:
            return
        new = pl.DataFrame([r[:6] for page in pages for r in page], orient="row", schema=list(ohlcv.COLUMNS))
        new = new.with_columns(
            pl.col("open_time").cast(pl.Int64), *[pl.col(c).cast(pl.Float64) for c in ohlcv.COLUMNS[1:]]
        )
        frame = pl.concat([frame, new]).unique("open_time", keep="last").sort("open_time")
        ohlcv.to_parquet(frame.with_columns((pl.col("open_time") + tf_ms - 1).alias("close_time")), path)
        pages.clear()

    def on_page(rows: list) -> None:
        nonlocal fetched
        pages.append(rows)
        fetched += len(rows)
        if progress is not None:
            progress.update(task, advance=len(rows))
        if len(pages) >= SAVE_EVERY_PAGES:
            save()

    try:
        for a, b in todo:
            await _fetch_range(ex, symbol, timeframe, tf_ms, a, b, policy, on_page)
    finally:
        save()  # keep what was fetched, even when stopped
    if progress is not None:
        progress.update(task, completed=max(total, 1))
    if frame.height == 0:
        raise DownloadError(f"{symbol}: the exchange has no {timeframe} bars in the range")
    inside = ohlcv.load(path, symbol=symbol, timeframe=timeframe, allow_gaps=True).between(start, end)
    return {
        "path": str(path),
        "fetched": fetched,
        "rows": inside.rows,
        "gaps": inside.gaps,
        "span": inside.span(),
    }


def _fmt_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _download(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from libs.common.errors import ConfigurationError
    from libs.common.ohlcv import OhlcvError
    from libs.common.settings import load_settings

    err = Console(stderr=True)
    try:
        settings = load_settings(args.config)
        start = parse_time(args.start)
        end = parse_time(args.end) if args.end else int(time.time() * 1000)
        root = data_dir(settings, args.dir)
    except (ConfigurationError, ValueError) as exc:
        err.print(f"data download: {exc}")
        return 2
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("bars"),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=err, disable=args.no_progress) as progress:
            results = asyncio.run(
                download(
                    settings, list(args.symbols), args.timeframe, start, end, root, progress, args.exchange
                )
            )
    except (DownloadError, OhlcvError, ValueError) as exc:
        err.print(f"data download: {exc}")
        return 1
    for sym, r in results.items():
        gaps = r["gaps"]
        line = (
            f"{sym} {args.timeframe}: {r['rows']} bars {_fmt_ms(r['span'][0])} .. {_fmt_ms(r['span'][1])}, "
            f"{r['fetched']} fetched now -> {r['path']}"
        )
        print(line)
        if gaps:
            first = ", ".join(f"{_fmt_ms(a)} .. {_fmt_ms(b)}" for a, b in gaps[:5])
            print(
                f"  {len(gaps)} gap(s) the exchange has no bars for (kept as gaps): {first}"
                + (" ..." if len(gaps) > 5 else "")
            )
    return 0


def list_files(root: Path) -> list[dict]:
    from libs.common import ohlcv

    out = []
    for path in sorted(root.glob("*/*.parquet")):
        try:
            s = ohlcv.load(path, allow_gaps=True)
            a, b = s.span()
            out.append(
                {
                    "exchange": path.parent.name,
                    "file": path.name,
                    "timeframe": s.timeframe,
                    "rows": s.rows,
                    "from": _fmt_ms(a),
                    "to": _fmt_ms(b),
                    "gaps": len(s.gaps),
                    "error": "",
                }
            )
        except ohlcv.OhlcvError as exc:
            out.append(
                {
                    "exchange": path.parent.name,
                    "file": path.name,
                    "timeframe": "",
                    "rows": 0,
                    "from": "",
                    "to": "",
                    "gaps": 0,
                    "error": str(exc),
                }
            )
    return out


def _list(args) -> int:
    from libs.common.settings import load_settings

    root = data_dir(load_settings(args.config), args.dir)
    rows = list_files(root)
    if not rows:
        print(
            f"no data under {root} (bnml data download --symbols BTC/USDT --timeframe 1h --from 2024-01-01)"
        )
        return 0
    print(f"{'exchange':<9} {'file':<26} {'tf':<4} {'bars':>8}  {'from':<16}  {'to':<16}  gaps")
    for r in rows:
        if r["error"]:
            print(f"{r['exchange']:<9} {r['file']:<26} unreadable: {r['error']}", file=sys.stdout)
            continue
        print(
            f"{r['exchange']:<9} {r['file']:<26} {r['timeframe']:<4} {r['rows']:>8}  {r['from']:<16}  "
            f"{r['to']:<16}  {r['gaps']}"
        )
    return 0
