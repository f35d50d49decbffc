"""`python -m services.signal.train` (and `bnml train`): train, evaluate walk-forward, write the artefact.

Reads an OHLCV file (or makes synthetic candles), computes features and labels net of fees, evaluates
the model walk-forward against buy-and-hold and not trading, trains the final model on everything,
stores reference distributions for drift, replays the data through the drift monitor, and writes
`<models_dir>/<version>/{model.pkl, metadata.json, report.json, report.md, equity.png}`. The promotion gate
(`signal.gate`, `gate.py`) then decides: `current` names the new version only when it passed (or on
`--force-promote`, paper only, recorded in the metadata and in `<models_dir>/audit.jsonl`).

Exit codes: 0 promoted (or written with --no-promote), 1 error, 2 bad configuration, 3 written but NOT
promoted because the gate failed, 4 --force-promote refused (live mode).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from services.signal.cli_args import EPILOG, add_arguments
from services.signal.features import FeatureSpec, infer_timeframe, load_ohlcv, timeframe_seconds
from services.signal.gate import evaluate_gate, gate_basis
from services.signal.model_card import permutation_importance_oos, provenance, sharpe
from services.signal.registry import REPO_ROOT, audit, load_current, models_dir, read_current, save_model
from services.signal.synthetic import synthetic_candles
from services.signal.training import (
    build_dataset,
    circular_shift_null,
    class_mean_returns,
    fit_model,
    label_definition,
    predict_proba,
    prediction_score,
    reference_distributions,
    walk_forward,
)
from services.signal.training import drift_replay as replay_drift

IMPORTANCE_REPEATS = 5
IMPORTANCE_MAX_ROWS = 2000  # per fold: a seeded sample of its labelled out-of-sample rows beyond this
IMPORTANCE_METHOD = (
    f"sklearn.inspection.permutation_importance on each walk-forward fold's own out-of-sample rows "
    f"(at most {IMPORTANCE_MAX_ROWS} per fold, a seeded sample beyond; {IMPORTANCE_REPEATS} "
    f"shuffles per feature), score: out-of-sample log-loss; the rise in log-loss when the feature "
    f"is shuffled, row-weighted mean over folds"
)
EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_GATE_FAILED, EXIT_FORCE_REFUSED = 0, 1, 2, 3, 4
QUOTES = ("USDT", "FDUSD", "USDC", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY")


def symbol_from_name(stem: str) -> str | None:
    """`BTCUSDT-1h` -> `BTC/USDT`, `XRP_ETH-5m` -> `XRP/ETH`; None when the name does not say."""
    head = stem.split("-")[0].upper()
    if "_" in head:
        base, _, quote = head.partition("_")
        return f"{base}/{quote}" if base and quote else None
    for q in QUOTES:
        if head.endswith(q) and len(head) > len(q):
            return f"{head[: -len(q)]}/{q}"
    return None


def _resolve(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


class ForcePromoteRefused(ValueError):
    """--force-promote in live mode."""


def run_training(
    settings,
    *,
    train=None,
    promote: bool = True,
    progress=print,
    version_prefix: str | None = None,
    drift_replay: bool = True,
    out_root: Path | None = None,
    force_promote: bool = False,
    bootstrap: bool = False,
    symbol: str | None = None,
    full_stack: bool = False,
    allow_gaps: bool = False,
    importance: bool = True,
) -> Path:
    """Train per `settings.signal` (with `train` replacing `settings.signal.train`); returns the version dir.

    `full_stack`: the walk-forward folds are traded by the backtest (signal, risk and paper-execution cores),
    so the report's out-of-sample `model` figures are the traded policy's (what `bnml train` does); without
    it (the signal service's quick bootstrap model) they come from the simplified simulation, labelled so.

    With `promote`, the version becomes `current` only if the gate passed, or with `force_promote` (paper
    mode only), or as the paper-mode `bootstrap` model. The outcome is in `metadata.json` (`gate`,
    `promotion`)."""
    if (force_promote or bootstrap) and settings.mode == "live":
        raise ForcePromoteRefused(
            "--force-promote is refused in mode: live (only a model that passed the gate may be promoted)"
        )
    t0 = time.monotonic()  # the machine's clock by design: how long this training run took
    s = settings.signal
    tcfg = train or s.train
    horizon, fee = s.label.horizon_bars, s.label.fee_rate
    if tcfg.data == "synthetic":
        candles = synthetic_candles(tcfg.synthetic_bars, seed=tcfg.seed, timeframe=tcfg.synthetic_timeframe)
        source = {"kind": "synthetic", "bars": tcfg.synthetic_bars, "seed": tcfg.seed}
        name = "synthetic"
        symbols = ["*"]  # stands for no market in particular
    else:
        path = _resolve(tcfg.data)
        candles = load_ohlcv(path, allow_gaps=allow_gaps)
        source = {"kind": "file", "path": tcfg.data, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        name = re.sub(r"[^a-z0-9]+", "", path.stem.split("-")[0].lower())[:16] or "data"
        sym = symbol or symbol_from_name(path.stem)
        if sym is None:
            raise ValueError(f"cannot tell the symbol of {path.name}: pass --symbol BASE/QUOTE")
        symbols = [sym]
    timeframe = infer_timeframe(candles)
    spec = FeatureSpec.from_settings(s.features, timeframe)
    progress(
        f"data: {name} {timeframe}, {candles.height} candles "
        f"{candles['open_time'][0]} .. {candles['open_time'][-1]}"
    )
    ds = build_dataset(candles, spec, horizon, fee)
    progress(
        f"features: {len(spec.names)} ({', '.join(spec.names)}), warm-up {spec.warmup_bars} bars; "
        f"label: {horizon}-bar return net of {fee:.2%} per side"
    )
    fold_backtest = None
    if full_stack:
        from backtest.folds import fold_backtester, traded_symbol

        symbol = traded_symbol(settings, path if tcfg.data != "synthetic" else None)
        progress(f"walk-forward folds through the full stack (backtest) as {symbol}")
        fold_backtest = fold_backtester(settings, candles, symbol, spec, timeframe, horizon, fee)
    ev = walk_forward(
        ds,
        horizon=horizon,
        fee_rate=fee,
        threshold=s.probability_threshold,
        min_edge_bps=s.min_expected_edge_bps,
        folds=tcfg.folds,
        initial_fraction=tcfg.initial_train_fraction,
        kind=tcfg.model,
        c=tcfg.c,
        seed=tcfg.seed,
        progress=progress,
        full_stack=fold_backtest,
    )
    imp_rows: list = []
    if importance:
        progress("permutation feature importance on the out-of-sample folds")
        rng = np.random.default_rng(tcfg.seed)
        oos_sets = []
        for model_k, te in zip(ev.fold_models, ev.fold_test, strict=True):
            rows = te[~np.isnan(ds.y[te])]
            if rows.size > IMPORTANCE_MAX_ROWS:  # a seeded sample bounds the cost (each shuffle is a predict)
                rows = np.sort(rng.choice(rows, IMPORTANCE_MAX_ROWS, replace=False))
            oos_sets.append((model_k, ds.x[rows], ds.y[rows]))
        imp_rows = permutation_importance_oos(
            oos_sets, spec.names, repeats=IMPORTANCE_REPEATS, seed=tcfg.seed
        )
    bars_per_year = 365 * 86400 / timeframe_seconds(timeframe)
    ev.report["model"]["sharpe"] = sharpe(ev.equity_model, bars_per_year)
    ev.report["buy_and_hold"]["sharpe"] = sharpe(ev.equity_bh, bars_per_year)
    prov = provenance(REPO_ROOT)
    progress("final model on all labelled rows")
    usable = np.flatnonzero(ds.usable)
    final = fit_model(ds.x[usable], ds.y[usable], tcfg.model, tcfg.c, tcfg.seed)
    means = class_mean_returns(ds.fwd[usable], ds.y[usable])
    ref = reference_distributions(
        ds.x[usable], prediction_score(predict_proba(final, ds.x[usable])), spec.names
    )
    replay = None
    if drift_replay:
        progress("drift replay: train on the first part, replay the rest through the drift monitor")
        replay = replay_drift(
            ds,
            spec,
            train_fraction=tcfg.drift_replay_train_fraction,
            kind=tcfg.model,
            c=tcfg.c,
            seed=tcfg.seed,
            thresholds=s.drift,
            horizon=horizon,
        )
        for p in replay["periods"]:
            progress(f"  drift detected {p['from']} .. {p['to'] or 'end'}: {p['reason']}")
    g = s.gate
    progress(f"null baseline: the model's out-of-sample signals circularly shifted {g.null_shifts} times")
    null = circular_shift_null(
        ev.fold_close, ev.fold_side, horizon=horizon, fee_rate=fee, shifts=g.null_shifts, seed=tcfg.seed
    )
    msum = ev.report["model"]
    decision = evaluate_gate(
        net_return_pct=msum["total_return_pct"],
        no_trade_return_pct=ev.report["no_trade"]["total_return_pct"],
        p_value=null.p_value,
        n_trades=msum["n_trades"],
        data_kind=source["kind"],
        min_excess_return_pct=g.min_excess_return_pct,
        max_p_value=g.max_p_value,
        min_trades=g.min_trades,
    )
    gate = decision.record(
        p_value=null.p_value,
        net_return=msum["total_return_pct"],
        no_trade_return=ev.report["no_trade"]["total_return_pct"],
        buy_and_hold_return=ev.report["buy_and_hold"]["total_return_pct"],
        n_trades=msum["n_trades"],
        basis=gate_basis(ev.report["out_of_sample"]["evaluation"]),
        null={
            "kind": "circular shift of the model's own out-of-sample signals, per fold",
            "shifts": null.shifts,
            "quantiles_pct": null.null_quantiles_pct,
            "simulation": null.basis,
        },
        config=g.model_dump(),
    )
    progress("gate: " + ("PASSED" if decision.passed else "FAILED: " + "; ".join(decision.reasons)))
    now = datetime.now(UTC)  # wall time by design: a training run's version id and trained_at say when it ran
    version = f"{version_prefix or name}-{timeframe}-{now:%Y%m%dT%H%M%SZ}"
    train_window = {
        "from": str(ds.times[int(usable[0])]),
        "to": str(ds.times[int(usable[-1])]),
        "rows": int(usable.size),
    }
    elapsed = time.monotonic() - t0
    report = {
        "version": version,
        **{k: ev.report[k] for k in ("model", "buy_and_hold", "no_trade")},
        "out_of_sample": ev.report["out_of_sample"],
        "folds": ev.report["folds"],
        "decision": {
            "probability_threshold": s.probability_threshold,
            "min_expected_edge_bps": s.min_expected_edge_bps,
            "simulation": ev.report["out_of_sample"]["evaluation"],
        },
        "simplified_simulation": ev.report.get("simplified_simulation"),
        "gate": gate,
        "quality": ev.report["quality"],
        "importance": imp_rows,
        "importance_method": IMPORTANCE_METHOD if importance else "not computed (bootstrap model)",
        "provenance": prov,
        "drift_replay": None if replay is None else {k: replay[k] for k in ("train", "replay", "periods")},
        "training_seconds": round(elapsed, 3),
    }
    metadata = {
        "version": version,
        "trained_at": now.isoformat(),
        "timeframe": timeframe,
        "data": source,
        "symbols": symbols,
        "data_span": {"from": _iso(ds.times[0]), "to": _iso(ds.times[-1]), "bars": len(ds.times)},
        "decision": {
            "probability_threshold": s.probability_threshold,
            "min_expected_edge_bps": s.min_expected_edge_bps,
        },
        "gate": gate,
        "features": {"names": list(spec.names), "spec": spec.to_dict(), "warmup_bars": spec.warmup_bars},
        "train_window": train_window,
        "label": {**label_definition(horizon, fee), "class_mean_returns": means.tolist()},
        "model": {"kind": tcfg.model, "c": tcfg.c, "classes": [-1, 0, 1], "sklearn_pipeline": str(final)},
        "metrics": {k: ev.report[k] for k in ("model", "buy_and_hold", "no_trade", "out_of_sample")},
        "reference": ref,
        "provenance": prov,
    }
    extra = {
        "report.json": json.dumps(report, indent=1, default=str).encode(),
        "report.md": render_markdown(report, metadata).encode(),
        "equity.png": render_equity_png(ds, ev, replay, version),
    }
    root = out_root or models_dir(settings)
    promote_now, promotion = _promotion(
        promote, decision.passed, force_promote, bootstrap, settings.mode, now
    )
    if promotion:
        metadata["promotion"] = promotion
    previous = read_current(root) if promote_now else None
    path = save_model(root, version, final, metadata, extra, promote=promote_now)
    if promote_now:
        audit(
            root,
            "force_promote"
            if force_promote and not decision.passed
            else "bootstrap_promote"
            if bootstrap and not decision.passed
            else "promote",
            version,
            mode=settings.mode,
            gate_passed=decision.passed,
            previous=previous,
            via="train",
            reasons=decision.reasons,
        )
    m, bh = report["model"], report["buy_and_hold"]
    progress(
        f"out-of-sample net of fees: model {m['total_return_pct']:+.2f}% ({m['n_trades']} trades, hit rate "
        f"{m['hit_rate']}), buy&hold {bh['total_return_pct']:+.2f}%, no trade +0.00%, null p-value "
        f"{null.p_value:.3f}"
    )
    progress(f"wrote {path} in {elapsed:.1f}s" + (" and made it current" if promote_now else ""))
    if promote and not promote_now:
        progress(
            "NOT promoted: the gate failed (" + "; ".join(decision.reasons) + "); `current` is unchanged"
        )
    elif promote_now and not decision.passed:
        progress(
            "WARNING: promoted without passing the gate ("
            + promotion.get("kind", "forced")
            + "): paper trading only, live mode refuses this model"
        )
    if promote_now:
        progress(
            f"note: the signal service now decides on {timeframe} candles ({spec.warmup_bars} bars of warm-up)"
        )
    return path


def ensure_model(settings, progress=None) -> Path | None:
    """The path of the `current` model. In paper mode, when none exists, trains a small synthetic one
    (seconds) and promotes it (a bootstrap, audited; it never passes the gate, and the service warns).

    In live mode nothing is ever trained or promoted here: with no `current` it returns None and the signal
    service holds. An existing but untrustworthy model is never trained over: it raises ModelRefused.
    """
    root = models_dir(settings)
    model = load_current(root)
    if model is not None:
        return model.path
    if settings.mode == "live":
        return None
    s = settings.signal
    quick = s.train.model_copy(
        update={
            "data": "synthetic",
            "synthetic_bars": min(s.train.synthetic_bars, 12_000),
            "folds": min(s.train.folds, 3),
        }
    )
    return run_training(
        settings,
        train=quick,
        promote=True,
        bootstrap=True,
        progress=progress or (lambda m: None),
        version_prefix="bootstrap",
        drift_replay=False,
        importance=False,
    )


def _iso(t) -> str:
    return t.isoformat() if hasattr(t, "isoformat") else str(t)


def _promotion(
    promote: bool, passed: bool, force: bool, bootstrap: bool, mode: str, now: datetime
) -> tuple[bool, dict]:
    """(make it current?, the `promotion` record for the metadata)."""
    if not promote:
        return False, {}
    if passed:
        return True, {"forced": False, "kind": "gate", "at": now.isoformat(), "mode": mode}
    if force or bootstrap:
        return True, {
            "forced": True,
            "kind": "force_promote" if force else "bootstrap",
            "at": now.isoformat(),
            "mode": mode,
        }
    return False, {}


def _fmt(v, signed: bool = True) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:+.2f}" if signed else f"{v:.2f}"
    return str(v)


def _describe(data: dict) -> str:
    if data["kind"] == "file":
        return f"`{data['path']}` (sha256 {data['sha256'][:12]}...)"
    return f"synthetic ({data['bars']} bars, seed {data['seed']})"


def _num(v, places: int = 4) -> str:
    return "-" if v is None else f"{v:.{places}f}"


def _model_card_sections(report: dict) -> list[str]:
    """Null distribution, probabilistic quality against the prior, reliability, importance, provenance."""
    lines: list[str] = []
    g = report.get("gate")
    if g and g.get("null"):
        q = g["null"]["quantiles_pct"]
        lines += [
            "## Null distribution",
            "",
            f"{g['null']['kind']} ({g['null']['shifts']} shifts; {g['null']['simulation']}).",
            "",
            "| | 5 % | 25 % | 50 % | 75 % | 95 % | model (same simulation) | p-value |",
            "|---|---|---|---|---|---|---|---|",
            f"| null net return % | {q['p5']:+.2f} | {q['p25']:+.2f} | {q['p50']:+.2f} | {q['p75']:+.2f} | "
            f"{q['p95']:+.2f} | {_fmt((report.get('simplified_simulation') or report['model'])['total_return_pct'])}"
            f" | {g['p_value']:.3f} |",
            "",
            "p = (1 + #{null >= model}) / (1 + shifts): the chance that signals without timing do as well. "
            "It is one configuration's p-value; a search over many configurations needs its own correction "
            "(`docs/edge-search.md`).",
            "",
        ]
    qa = report.get("quality")
    if qa and qa.get("rows"):
        lines += [
            "## Probabilistic quality (out of sample)",
            "",
            f"{qa['rows']} labelled out-of-sample rows; the prior is {qa['prior']}. Skill = 1 - model / prior "
            "(> 0: better than the prior).",
            "",
            "| score | model | prior | skill |",
            "|---|---|---|---|",
            f"| log-loss | {qa['log_loss']:.4f} | {qa['log_loss_prior']:.4f} | {qa['log_loss_skill']:+.4f} |",
            f"| Brier (3 classes) | {qa['brier']:.4f} | {qa['brier_prior']:.4f} | {qa['brier_skill']:+.4f} |",
            "",
        ]
        rel = qa.get("reliability_up") or {}
        if rel.get("rows"):
            lines += [
                "### Reliability, BUY class (predicted p(up) vs observed frequency of 'up')",
                "",
                f"Expected calibration error {rel['ece']:.4f} over {rel['n']} rows.",
                "",
                "| p(up) bin | rows | mean predicted | observed |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {r['bin'][0]:.1f} - {r['bin'][1]:.1f} | {r['n']} | {r['mean_predicted']:.4f} | "
                f"{r['observed']:.4f} |"
                for r in rel["rows"]
            ]
            lines.append("")
    imp = report.get("importance")
    if imp:
        lines += [
            "## Permutation feature importance (out of sample)",
            "",
            report.get("importance_method", "") + ".",
            "",
            "| feature | importance (log-loss rise) | std |",
            "|---|---|---|",
        ]
        lines += [f"| {r['feature']} | {r['importance']:+.5f} | {r['std']:.5f} |" for r in imp]
        lines.append("")
    elif "importance_method" in report:
        lines += [
            "## Permutation feature importance (out of sample)",
            "",
            report["importance_method"] + ".",
            "",
        ]
    prov = report.get("provenance")
    if prov:
        libs = ", ".join(f"{k} {v}" for k, v in prov["libraries"].items())
        lines += [
            "## Provenance",
            "",
            f"- git commit: `{prov['git_commit']}`",
            f"- feature code (`{prov['feature_code']}`) sha256: `{prov['feature_code_sha256']}`",
            f"- libraries: {libs}",
            "",
        ]
    return lines


def render_markdown(report: dict, meta: dict) -> str:
    m, bh, nt = report["model"], report["buy_and_hold"], report["no_trade"]
    oos = report["out_of_sample"]
    lines = [
        f"# Training report: {report['version']}",
        "",
        f"Data: {_describe(meta['data'])}, timeframe {meta['timeframe']}; train window {meta['train_window']['from']} .. "
        f"{meta['train_window']['to']} ({meta['train_window']['rows']} rows).",
        f"Label: {meta['label']['horizon_bars']}-bar forward return, net of {meta['label']['fee_rate_per_side']:.2%} "
        f"per side ({meta['label']['round_trip_cost_bps']:.1f} bps round trip). Model: {meta['model']['kind']}.",
        "",
        f"## Out of sample, walk-forward ({oos['folds']} folds, {oos['bars']} bars, {oos['from']} .. {oos['to']})",
        "",
        "Net of fees over the same windows. " + report["decision"]["simulation"] + ".",
        "",
        "| strategy | net return % | gross return % | max drawdown % | Sharpe | exposure (time) % | turnover | "
        "trades | hit rate | precision (BUY) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| model | {_fmt(m['total_return_pct'])} | {_fmt(m.get('gross_return_pct'))} | "
        f"{_fmt(m['max_drawdown_pct'], False)} | {_fmt(m.get('sharpe'))} | {_fmt(m.get('exposure_time_pct'), False)} | "
        f"{_fmt(m.get('turnover'), False)} | {m['n_trades']} | {_fmt(m['hit_rate'], False)} | "
        f"{_fmt(m['precision_buy'], False)} |",
        f"| buy and hold | {_fmt(bh['total_return_pct'])} | - | {_fmt(bh['max_drawdown_pct'], False)} | "
        f"{_fmt(bh.get('sharpe'))} | 100.00 | 2.00 | - | - | - |",
        f"| no trade | {_fmt(nt['total_return_pct'])} | +0.00 | 0.00 | - | 0.00 | 0.00 | 0 | - | - |",
        "",
        "Gross = the same decisions without fees; turnover = traded notional / starting equity; Sharpe annualised "
        "from per-bar returns."
        + (
            f" Average exposure (notional held / equity): {m['exposure_avg_pct']:.2f} %."
            if m.get("exposure_avg_pct") is not None
            else ""
        ),
        "",
        f"BUY signals {m['buy_signals']}, SELL signals {m['sell_signals']}; base rate of 'up' labels "
        f"{m['base_rate_up']}; threshold {report['decision']['probability_threshold']}.",
        "",
        "### Per fold",
        "",
        "| fold | train rows | test window | model net % | trades | buy & hold % | log-loss | log-loss prior | "
        "Brier | Brier prior |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in report["folds"]:
        q = f.get("quality") or {}
        lines.append(
            f"| {f['fold']} | {f['train_rows']} | {f['test'][0]} .. {f['test'][1]} | "
            f"{_fmt(f['model']['total_return_pct'])} | {f['model']['n_trades']} | "
            f"{_fmt(f['buy_and_hold']['total_return_pct'])} | {_num(q.get('log_loss'))} | "
            f"{_num(q.get('log_loss_prior'))} | {_num(q.get('brier'))} | {_num(q.get('brier_prior'))} |"
        )
    verdict = "beats" if m["total_return_pct"] > max(bh["total_return_pct"], 0.0) else "does NOT beat"
    lines += [
        "",
        f"**Verdict:** out of sample, net of fees, the model {verdict} both buy-and-hold and not trading"
        + ("; whether by more than chance is the gate's question (below)." if verdict == "beats" else "."),
        "",
    ]
    g = report.get("gate")
    if g:
        q = g["null"]["quantiles_pct"]
        lines += [
            "## Promotion gate",
            "",
            f"**{'PASSED' if g['passed'] else 'FAILED'}** ({g['basis']}). Null baseline: "
            f"{g['null']['kind']}, {g['null']['shifts']} shifts; p-value {g['p_value']:.3f}; null net returns "
            f"5/50/95 %: {q['p5']:+.2f} / {q['p50']:+.2f} / {q['p95']:+.2f} %.",
            "",
            "| check | value | threshold | passed |",
            "|---|---|---|---|",
        ]
        for name, c in g["checks"].items():
            lines.append(f"| {name} | {c['value']} | {c['threshold']} | {'yes' if c['passed'] else 'NO'} |")
        lines += [""] + [f"- {r}" for r in g["reasons"]] + ([""] if g["reasons"] else [])
        lines += [
            "Only a model that passed is made `current` (and only such a model is served in live mode).",
            "",
        ]
    lines += _model_card_sections(report)
    simple = report.get("simplified_simulation")
    if simple:
        lines += [
            f"For comparison only, the {simple['what']}: {_fmt(simple['total_return_pct'])} %, "
            f"{simple['n_trades']} trades.",
            "",
        ]
    dr = report.get("drift_replay")
    if dr:
        lines += [
            "## Drift replay",
            "",
            f"A model trained on {dr['train'][0]} .. {dr['train'][1]} watched the rest ({dr['replay'][0]} .. "
            f"{dr['replay'][1]}) with the live drift monitor:",
            "",
        ]
        if not dr["periods"]:
            lines.append("- no drift detected")
        for p in dr["periods"]:
            lines.append(f"- drift detected {p['from']} .. {p['to'] or 'end'}: {p['reason']}")
        lines.append("")
    lines.append(f"Training took {report['training_seconds']} s.")
    return "\n".join(lines) + "\n"


def render_equity_png(ds, ev, replay: dict | None, version: str) -> bytes:
    from libs.common.plots import equity_png

    times = [ds.times[i] for i in ev.oos_index]
    spans = [
        (datetime.fromisoformat(p["from"]), datetime.fromisoformat(p["to"]) if p["to"] else times[-1])
        for p in (replay or {}).get("periods", [])
    ]
    return equity_png(
        times,
        [(ev.equity_model, "model (net of fees)", 1.2), (ev.equity_bh, "buy and hold (net of fees)", 1.0)],
        f"Walk-forward out-of-sample equity - {version}",
        spans=spans,
        span_label="drift detected (replay)",
    )


def run_from_args(args, config: str | None = None) -> int:
    from libs.common.errors import ConfigurationError
    from libs.common.settings import load_settings

    try:
        settings = load_settings(config)
    except ConfigurationError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.force_promote and settings.mode == "live":
        print("train: --force-promote is refused in mode: live", file=sys.stderr)
        return EXIT_FORCE_REFUSED
    sig = settings.signal
    train = sig.train.model_copy(
        update={
            k: v
            for k, v in {"data": args.data, "folds": args.folds, "model": args.model}.items()
            if v is not None
        }
    )
    upd: dict = {}
    if args.horizon is not None:
        upd["label"] = sig.label.model_copy(update={"horizon_bars": args.horizon})
    if args.threshold is not None:
        upd["probability_threshold"] = args.threshold
    if args.models_dir is not None:
        upd["models_dir"] = args.models_dir
    if upd:
        settings = settings.model_copy(update={"signal": sig.model_copy(update=upd)})

    def progress(msg: str) -> None:
        # wall time by design: a console line for the person watching
        print(f"[train {datetime.now(UTC):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)

    try:
        path = run_training(
            settings,
            train=train,
            promote=not args.no_promote,
            progress=progress,
            force_promote=args.force_promote,
            symbol=args.symbol,
            full_stack=True,
            allow_gaps=getattr(args, "allow_gaps", False),
        )
    except ForcePromoteRefused as exc:
        print(f"train: {exc}", file=sys.stderr)
        return EXIT_FORCE_REFUSED
    except (ValueError, OSError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(path)
    meta = json.loads((path / "metadata.json").read_text())
    if not args.no_promote and not (meta.get("promotion") or {}):
        print(
            f"train: {meta['version']} NOT promoted, the gate failed: " + "; ".join(meta["gate"]["reasons"]),
            file=sys.stderr,
        )
        return EXIT_GATE_FAILED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m services.signal.train", description=__doc__.splitlines()[0], epilog=EPILOG
    )
    p.add_argument("--config", default=None)
    add_arguments(p)
    args = p.parse_args(argv)
    return run_from_args(args, args.config)


if __name__ == "__main__":
    sys.exit(main())
