"""The backtest's shell: settings and overrides, data files, the model, the null baseline, the artefacts.

`run_backtest(...)` is what `bnml backtest` and `bnml train`'s walk-forward call; the decisions are all in
`backtest.engine` (the services' cores) and the figures in `backtest.report`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from backtest.engine import Backtest, Record, Series
from backtest.report import (
    build_report,
    equity_png,
    null_p_value,
    render_markdown,
    strategy_figures,
    trades_csv,
)
from libs.common import ohlcv
from libs.common.markets import ROOT, Markets
from libs.common.ohlcv import OhlcvError

DEFAULT_NULL_RUNS = 20


class BacktestError(ValueError):
    """A backtest that cannot run as asked (bad data, no model, a setting it cannot take)."""


def apply_overrides(settings, overrides: list[str]):
    """`section.key=value` (value read as YAML) on top of the loaded settings; a bad key or value raises."""
    from pydantic import ValidationError

    if not overrides:
        return settings
    data = settings.model_dump()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise BacktestError(f"--set {item!r}: expected section.key=value")
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node, dict) or p not in node:
                raise BacktestError(f"--set {key}: no such setting")
            node = node[p]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise BacktestError(f"--set {key}: no such setting")
        node[parts[-1]] = yaml.safe_load(raw)
    try:
        return type(settings).model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BacktestError(f"--set: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def symbol_for_file(path: Path, markets: Markets) -> str:
    """`BTCUSDT-1h.parquet` -> `BTC/USDT` (by the markets' exchange ids); `XRP_ETH-1m.json` -> `XRP/ETH`."""
    stem = path.stem.split("-")[0].upper()
    for sym, f in markets.filters.items():
        if f.id.upper() == stem:
            return sym
    if "_" in stem:
        return stem.replace("_", "/")
    raise BacktestError(f"{path.name}: cannot tell the symbol from the file name; give it as FILE=SYMBOL")


def resolve_inputs(
    data: list[str], symbols: list[str], timeframe: str | None, data_dir: Path, markets: Markets
) -> list[tuple[Path, str]]:
    """(file, symbol) pairs from `--data FILE[=SYMBOL]` and/or `--symbols` (files of `bnml data download`)."""
    out: list[tuple[Path, str]] = []
    for item in data:
        file, _, sym = item.partition("=")
        p = Path(file)
        p = p if p.is_absolute() else ROOT / p
        out.append((p, sym or symbol_for_file(p, markets)))
    for sym in symbols:
        if not timeframe:
            raise BacktestError("--symbols needs --timeframe (which downloaded files to read)")
        out.append((ohlcv.data_path(data_dir, "binance", sym, timeframe), sym))
    if not out:
        raise BacktestError("no data: give --data FILE[=SYMBOL] or --symbols with --timeframe")
    return out


def load_series(
    inputs: list[tuple[Path, str]],
    markets: Markets,
    *,
    timeframe: str | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    allow_gaps: bool = False,
) -> list[Series]:
    """Each file through the one OHLCV validator (clear errors naming file and row), cut to the window."""
    out = []
    for path, sym in inputs:
        data = ohlcv.load(
            path, symbol=sym, timeframe=timeframe, allow_gaps=allow_gaps, known_symbols=markets.filters
        )
        out.append(Series.from_ohlcv(data.between(start_ms, end_ms), sym))
    return out


def load_model_for(settings, version: str | None):
    from services.signal.registry import load_current, load_model, models_dir

    root = models_dir(settings)
    model = load_model(root, version) if version else load_current(root)
    if model is None:
        raise BacktestError(
            f"no model in {root} (no `current`): train one first, e.g. "
            "bnml train --data data/ohlcv/BTCUSDT-1h.csv"
        )
    return model


@dataclass
class Outcome:
    record: Record
    report: dict
    null_records: list[Record]


def null_shifts(n: int, runs: int) -> list[int]:
    """`runs` circular shifts spread evenly over the series (never 0: that is the model itself)."""
    if n < 2 or runs <= 0:
        return []
    return sorted({max(1, round((i + 1) * n / (runs + 1))) % n or 1 for i in range(runs)})


def run_null(
    settings,
    series: list[Series],
    model,
    markets: Markets,
    sides: dict[str, np.ndarray],
    runs: int,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict | None, list[Record]]:
    """The model's own sides, circularly shifted, traded through the same risk and execution cores."""
    n = max(s.open_ms.size for s in series)
    shifts = null_shifts(n, runs)
    if not shifts:
        return None, []
    recs, rets = [], []
    for k, shift in enumerate(shifts, 1):
        scripted = {sym: np.roll(a, shift) for sym, a in sides.items()}
        rec = Backtest(settings, series, model, markets, scripted=scripted).run()
        recs.append(rec)
        rets.append(strategy_figures(rec, series[0].tf_ms)["net_return_pct"])
        if progress is not None:
            progress(f"null baseline {k}/{len(shifts)}: shift {shift} bars -> {rets[-1]:+.2f}%")
    return {
        "runs": len(shifts),
        "shifts": shifts,
        "net_returns_pct": rets,
        "median_net_return_pct": round(float(np.median(rets)), 4),
        "p5_net_return_pct": round(float(np.percentile(rets, 5)), 4),
        "p95_net_return_pct": round(float(np.percentile(rets, 95)), 4),
    }, recs


def config_snapshot(settings) -> dict:
    d = settings.effective()
    return {k: d[k] for k in ("symbols", "signal", "risk", "execution") if k in d} | {
        "market_data": {
            "stale_after_s": d["market_data"]["stale_after_s"],
            "replay": {"spread_bps": d["market_data"]["replay"]["spread_bps"]},
        }
    }


def run_backtest(
    settings,
    series: list[Series],
    model,
    markets: Markets,
    *,
    null_runs: int = DEFAULT_NULL_RUNS,
    bt_id: str | None = None,
    out_root: Path | None = None,
    on_bars: Callable[[int], None] | None = None,
    progress: Callable[[str], None] | None = None,
    write: bool = True,
) -> Outcome:
    """Run, add the null baseline, build the report; write `<out_root>/<id>/` unless `write` is false."""
    t0 = time.perf_counter()
    rec = Backtest(settings, series, model, markets).run(on_bars)
    elapsed = time.perf_counter() - t0
    null, null_recs = (
        run_null(settings, series, model, markets, rec.sides, null_runs, progress) if model else (None, [])
    )
    if null is not None:
        null["p_value"] = null_p_value(
            strategy_figures(rec, series[0].tf_ms)["net_return_pct"], null["net_returns_pct"]
        )
    fee = float(settings.execution.taker_fee_rate)
    version = model.version if model is not None else None
    if bt_id is None:
        syms = "_".join(ohlcv.file_symbol(s.symbol) for s in series)[:40]
        bt_id = f"{version or 'nomodel'}-{syms}-{series[0].timeframe}-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    bt_id = re.sub(r"[^A-Za-z0-9._-]", "_", bt_id)[:120]
    report = build_report(
        bt_id,
        rec,
        series,
        fee_rate=fee,
        model_version=version,
        null=null,
        config=config_snapshot(settings),
        elapsed_s=elapsed,
    )
    if write:
        root = out_root or Path(settings.storage.artifacts_dir) / "backtests"
        root = root if root.is_absolute() else ROOT / root
        d = root / bt_id
        d.mkdir(parents=True, exist_ok=True)
        (d / "report.json").write_text(json.dumps(report, indent=1, default=str))
        (d / "report.md").write_text(render_markdown(report))
        (d / "trades.csv").write_text(trades_csv(rec))
        (d / "equity.png").write_bytes(equity_png(rec, series, fee, f"Backtest {bt_id}"))
        report["path"] = str(d)
    return Outcome(rec, report, null_recs)


def summary_lines(r: dict) -> list[str]:
    """The one-screen summary printed at the end."""
    m, bh = r["model"], r["buy_and_hold"]
    nb = r.get("null_baseline")
    v = r["verdicts"]
    out = [
        f"backtest {r['id']}",
        f"  {', '.join(r['symbols'])} {r['timeframe']}  {r['window']['from'][:16]} .. {r['window']['to'][:16]}  "
        f"{r['window']['bars']} bars  model {r['model_version']}",
        f"  model       net {m['net_return_pct']:+.2f}%  gross {m['gross_return_pct']:+.2f}%  fees "
        f"{m['fees_usdt']:.2f} USDT  turnover {m['turnover']:.2f}x  exposure {m['exposure_avg_pct']:.1f}%",
        f"              max DD {m['max_drawdown_pct']:.2f}%  Sharpe {m['sharpe']}  Sortino {m['sortino']}  "
        f"fills {m['fills']}",
        f"  buy & hold  net {bh['net_return_pct']:+.2f}%  max DD {bh['max_drawdown_pct']:.2f}%",
        "  no trade    net +0.00%",
    ]
    if nb:
        out.append(
            f"  null        {nb['runs']} shifts: median {nb['median_net_return_pct']:+.2f}%, "
            f"p-value {nb['p_value']}"
        )
    out.append(f"  signals {r['signals']}  approved {v['approved']}  refused {v['refused']}")
    if v["refusals_by_first_reason"]:
        out.append(
            "  refusals: " + ", ".join(f"{k} {n}" for k, n in list(v["refusals_by_first_reason"].items())[:6])
        )
    trips = r["breakers"]["trips_by_breaker"]
    out.append("  breaker trips: " + (", ".join(f"{k} {n}" for k, n in trips.items()) if trips else "none"))
    out.append(f"  {r['bars_per_s']} bars/s" + (f"  -> {r['path']}" if r.get("path") else ""))
    return out


def cli_error(exc: Exception) -> str:
    if isinstance(exc, OhlcvError | BacktestError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


__all__: list[Any] = [
    "BacktestError",
    "Outcome",
    "apply_overrides",
    "load_model_for",
    "load_series",
    "resolve_inputs",
    "run_backtest",
    "summary_lines",
]
