"""`bnml backtest`: the services' own signal, risk and paper-execution cores over recorded candles, in
simulated time; writes `artifacts/backtests/<id>/{report.json, report.md, equity.png, trades.csv}`."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("backtest", help="backtest the model through the full risk and paper-execution stack")
    p.add_argument(
        "--data",
        nargs="*",
        default=[],
        metavar="FILE[=SYMBOL]",
        help="OHLCV files (csv/json/parquet; symbol from the file name unless given)",
    )
    p.add_argument("--symbols", nargs="*", default=[], help="symbols downloaded by `bnml data download`")
    p.add_argument("--timeframe", default=None, help="timeframe of the data (checked against the files)")
    p.add_argument("--from", dest="start", default=None, help="first bar (UTC date or ISO time)")
    p.add_argument("--to", dest="end", default=None, help="end, exclusive (UTC)")
    p.add_argument("--model", default=None, help="model version (default: artifacts/models/current)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a setting, e.g. --set risk.max_notional_usdt=50 (repeatable)",
    )
    p.add_argument(
        "--null-runs", type=int, default=None, help="circular shifts for the null baseline (default 20)"
    )
    p.add_argument("--allow-gaps", action="store_true", help="accept files with missing bars (reported)")
    p.add_argument("--dir", default=None, help="data directory of downloaded files (default artifacts/data)")
    p.add_argument("--id", default=None, help="backtest id (directory name under artifacts/backtests/)")
    p.add_argument("--json", action="store_true", help="print report.json instead of the summary")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_backtest)


def _backtest(args) -> int:
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from backtest.run import (
        DEFAULT_NULL_RUNS,
        apply_overrides,
        cli_error,
        load_model_for,
        load_series,
        resolve_inputs,
        run_backtest,
        summary_lines,
    )
    from bnml.commands.data import data_dir, parse_time
    from libs.common.errors import ConfigurationError
    from libs.common.markets import ROOT, Markets
    from libs.common.settings import load_settings

    err = Console(stderr=True)
    try:
        settings = apply_overrides(load_settings(args.config), args.overrides)
        mpath = settings.risk.markets_path
        markets = Markets.load(mpath if mpath.startswith("/") else ROOT / mpath)
        inputs = resolve_inputs(
            args.data, args.symbols, args.timeframe, data_dir(settings, args.dir), markets
        )
        series = load_series(
            inputs,
            markets,
            timeframe=args.timeframe,
            start_ms=parse_time(args.start) if args.start else None,
            end_ms=parse_time(args.end) if args.end else None,
            allow_gaps=args.allow_gaps,
        )
        settings = settings.model_copy(update={"symbols": [s.symbol for s in series]})
        model = load_model_for(settings, args.model)
    except (ConfigurationError, ValueError, OSError) as exc:
        err.print(f"backtest: {cli_error(exc)}")
        return 2
    total = sum(int(s.open_ms.size) for s in series)
    columns = (
        TextColumn("backtest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("bars"),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=err, disable=args.no_progress, transient=True) as progress:
            task = progress.add_task("bars", total=total)
            out = run_backtest(
                settings,
                series,
                model,
                markets,
                null_runs=DEFAULT_NULL_RUNS if args.null_runs is None else args.null_runs,
                bt_id=args.id,
                on_bars=lambda n: progress.update(task, completed=n),
                progress=lambda msg: progress.console.log(msg) if not args.no_progress else None,
            )
    except ValueError as exc:
        err.print(f"backtest: {cli_error(exc)}")
        return 1
    if args.json:
        print(json.dumps(out.report, indent=1, default=str))
    else:
        print("\n".join(summary_lines(out.report)), file=sys.stdout)
    return 0
