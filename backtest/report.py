"""Backtest figures (pure): returns, fees, turnover, exposure, drawdown, Sharpe and Sortino, per-symbol
results, breaker trips and refusals, the buy-and-hold and no-trade references, the null baseline's p-value;
and the renderings (report.md, equity.png, trades.csv)."""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np

from backtest.engine import Record, Series
from services.signal.train import _fmt as _f
from services.signal.training import buy_and_hold, max_drawdown

YEAR_S = 365 * 86400


def _ms(t: int) -> str:
    return datetime.fromtimestamp(t / 1000, UTC).isoformat()


def ratios(equity: np.ndarray, bars_per_year: float) -> tuple[float | None, float | None]:
    """Annualised Sharpe and Sortino of per-bar simple returns (risk-free 0)."""
    if equity.size < 3:
        return None, None
    r = np.diff(equity) / equity[:-1]
    sd = float(r.std(ddof=1))
    down = r[r < 0]
    dd = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))) if down.size else 0.0
    mean = float(r.mean())
    k = math.sqrt(bars_per_year)
    return (round(mean / sd * k, 4) if sd > 0 else None), (round(mean / dd * k, 4) if dd > 0 else None)


def summarize_equity(equity: np.ndarray, start: float, bars_per_year: float) -> dict:
    eq = equity / start
    sharpe, sortino = ratios(equity, bars_per_year)
    return {
        "net_return_pct": round((float(eq[-1]) - 1.0) * 100, 4),
        "max_drawdown_pct": round(max_drawdown(eq) * 100, 4),
        "sharpe": sharpe,
        "sortino": sortino,
    }


def strategy_figures(rec: Record, tf_ms: int) -> dict:
    eq = np.asarray(rec.equity)
    bars_per_year = YEAR_S * 1000 / tf_ms
    out = summarize_equity(eq, rec.start_equity, bars_per_year)
    fees = float(sum((f["fee"] for f in rec.fills), Decimal(0)))
    notional = float(sum((f["quantity"] * f["price"] for f in rec.fills), Decimal(0)))
    out.update(
        {
            "gross_return_pct": round((eq[-1] + fees - rec.start_equity) / rec.start_equity * 100, 4),
            "fees_usdt": round(fees, 6),
            "turnover": round(notional / rec.start_equity, 6),
            "traded_notional_usdt": round(notional, 4),
            "exposure_avg_pct": round(
                float(np.mean(np.asarray(rec.exposure) / np.maximum(eq, 1e-12))) * 100, 4
            ),
            "exposure_time_pct": round(float(np.mean(np.asarray(rec.exposure) > 1e-9)) * 100, 4),
            "fills": len(rec.fills),
            "orders": len(rec.orders),
            "start_equity_usdt": round(rec.start_equity, 4),
            "end_equity_usdt": round(float(eq[-1]), 4),
        }
    )
    return out


def per_symbol(rec: Record, series: list[Series], fee_rate: float) -> dict:
    out = {}
    for s in series:
        fills = [f for f in rec.fills if f["symbol"] == s.symbol]
        buys = [f for f in fills if f["side"] == "BUY"]
        sells = [f for f in fills if f["side"] == "SELL"]
        held = sum((f["quantity"] for f in buys), Decimal(0)) - sum(
            (f["quantity"] for f in sells), Decimal(0)
        )
        realized = sum((f["realized_pnl_usdt"] for f in fills), Decimal(0))
        cost = sum((f["quantity"] * f["price"] + f["fee"] for f in buys), Decimal(0))
        proceeds = sum((f["quantity"] * f["price"] - f["fee"] for f in sells), Decimal(0))
        last = float(s.ohlcv[-1, 3])
        out[s.symbol] = {
            "bars": int(s.open_ms.size),
            "buy_fills": len(buys),
            "sell_fills": len(sells),
            "fees_usdt": round(float(sum((f["fee"] for f in fills), Decimal(0))), 6),
            "realized_pnl_usdt": round(float(realized), 6),
            "net_pnl_usdt": round(float(proceeds - cost) + float(held) * last, 6),
            "position_at_end": str(held),
            "buy_and_hold_pct": round((float(buy_and_hold(s.ohlcv[:, 3], fee_rate)[-1]) - 1) * 100, 4),
        }
    return out


def buy_and_hold_figures(series: list[Series], fee_rate: float, tf_ms: int, start_equity: float) -> dict:
    """Equal weights in every symbol at the first close, sold at the last, fees both sides (training's rule)."""
    grid = np.unique(np.concatenate([s.open_ms for s in series]))
    eq = np.zeros(grid.size)
    for s in series:
        e = buy_and_hold(s.ohlcv[:, 3], fee_rate)
        pos = np.searchsorted(s.open_ms, grid, side="right") - 1
        eq += np.where(pos >= 0, e[np.clip(pos, 0, None)], 1.0)  # cash before the symbol's first bar
    eq = eq / len(series) * start_equity
    return summarize_equity(eq, start_equity, YEAR_S * 1000 / tf_ms) | {"fees_usdt": None, "turnover": 2.0}


def no_trade_figures() -> dict:
    return {
        "net_return_pct": 0.0,
        "gross_return_pct": 0.0,
        "max_drawdown_pct": 0.0,
        "sharpe": None,
        "sortino": None,
        "fees_usdt": 0.0,
        "turnover": 0.0,
        "exposure_avg_pct": 0.0,
    }


def breakers(rec: Record) -> dict:
    trips = [e for e in rec.breaker_events if e["event"] == "tripped"]
    return {
        "trips_by_breaker": dict(Counter(e["breaker"] for e in trips)),
        "events": [{**e, "ts": e["ts"].isoformat()} for e in rec.breaker_events],
        "trading_state_changes": [{**e, "ts": e["ts"].isoformat()} for e in rec.state_changes],
    }


def null_p_value(model_return: float, null_returns: list[float]) -> float | None:
    """Share of shifted runs doing at least as well as the model (with the model counted once)."""
    if not null_returns:
        return None
    return round((1 + sum(r >= model_return for r in null_returns)) / (1 + len(null_returns)), 4)


def build_report(
    bt_id: str,
    rec: Record,
    series: list[Series],
    *,
    fee_rate: float,
    model_version: str | None,
    null: dict | None,
    config: dict,
    elapsed_s: float,
) -> dict:
    tf_ms = series[0].tf_ms
    model = strategy_figures(rec, tf_ms)
    report = {
        "id": bt_id,
        "model_version": model_version,
        "timeframe": series[0].timeframe,
        "symbols": [s.symbol for s in series],
        "window": {
            "from": _ms(min(int(s.open_ms[0]) for s in series)),
            "to": _ms(max(int(s.open_ms[-1]) for s in series)),
            "bars": rec.bars,
            "steps": len(rec.times),
        },
        "model": model,
        "buy_and_hold": buy_and_hold_figures(series, fee_rate, tf_ms, rec.start_equity),
        "no_trade": no_trade_figures(),
        "per_symbol": per_symbol(rec, series, fee_rate),
        "signals": dict(rec.signals),
        "verdicts": {
            "approved": rec.approved,
            "refused": sum(rec.refusals_first.values()),
            "refusals_by_reason": dict(rec.refusals.most_common()),
            "refusals_by_first_reason": dict(rec.refusals_first.most_common()),
        },
        "execution": {"not_sent_by_reason": dict(rec.not_sent), "rejected_by_reason": dict(rec.rejected)},
        "breakers": breakers(rec),
        "null_baseline": null,
        "config": config,
        "elapsed_s": round(elapsed_s, 3),
        "bars_per_s": round(rec.bars / elapsed_s, 1) if elapsed_s > 0 else None,
        "stack": "services.signal.core.SignalEngine + services.risk.core.RiskEngine + services.execution "
        "(may_send, PaperExchange, Ledger) on a ManualClock at data time; ticks from "
        "services.market_data.replay.bar_path",
    }
    return report


def render_markdown(r: dict) -> str:
    m, bh, nt = r["model"], r["buy_and_hold"], r["no_trade"]
    nb = r.get("null_baseline")
    lines = [
        f"# Backtest {r['id']}",
        "",
        f"Model `{r['model_version']}` on {', '.join(r['symbols'])} ({r['timeframe']}), {r['window']['from']} .. "
        f"{r['window']['to']}, {r['window']['bars']} bars. The full stack: {r['stack']}.",
        "",
        "| strategy | net % | gross % | fees USDT | turnover x | exposure % | max DD % | Sharpe | Sortino |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| model | {_f(m['net_return_pct'])} | {_f(m['gross_return_pct'])} | {_f(m['fees_usdt'], False)} | "
        f"{_f(m['turnover'], False)} | {_f(m['exposure_avg_pct'], False)} | {_f(m['max_drawdown_pct'], False)} | "
        f"{_f(m['sharpe'])} | {_f(m['sortino'])} |",
        f"| buy and hold | {_f(bh['net_return_pct'])} | - | - | 2.00 | 100.00 | {_f(bh['max_drawdown_pct'], False)} | "
        f"{_f(bh['sharpe'])} | {_f(bh['sortino'])} |",
        f"| no trade | {_f(nt['net_return_pct'])} | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 | - | - |",
        "",
    ]
    if nb:
        lines += [
            f"**Null baseline:** the model's own signals circularly shifted {nb['runs']} times through the same "
            f"stack: median {_f(nb['median_net_return_pct'])} %, the model {_f(m['net_return_pct'])} %, "
            f"p-value {nb['p_value']} (share of shifts doing at least as well).",
            "",
        ]
    lines += [
        "## Per symbol",
        "",
        "| symbol | buys | sells | fees USDT | realized USDT | net USDT | buy & hold % |",
        "|---|---|---|---|---|---|---|",
    ]
    for sym, p in r["per_symbol"].items():
        lines.append(
            f"| {sym} | {p['buy_fills']} | {p['sell_fills']} | {p['fees_usdt']:.4f} | "
            f"{p['realized_pnl_usdt']:+.4f} | {p['net_pnl_usdt']:+.4f} | {p['buy_and_hold_pct']:+.2f} |"
        )
    v = r["verdicts"]
    lines += [
        "",
        "## Signals, verdicts, refusals",
        "",
        f"Signals: {r['signals']}. Verdicts approved {v['approved']}, refused {v['refused']}.",
        "",
    ]
    if v["refusals_by_reason"]:
        lines += ["| refusal reason | verdicts |", "|---|---|"]
        lines += [f"| {k} | {n} |" for k, n in v["refusals_by_reason"].items()]
        lines.append("")
    ex = r["execution"]
    if ex["not_sent_by_reason"] or ex["rejected_by_reason"]:
        lines += [
            f"Execution: not sent {ex['not_sent_by_reason']}, rejected by the paper exchange "
            f"{ex['rejected_by_reason']}.",
            "",
        ]
    b = r["breakers"]
    lines += ["## Breakers", ""]
    if not b["trips_by_breaker"]:
        lines.append("No breaker tripped.")
    else:
        lines += ["| breaker | trips |", "|---|---|"] + [
            f"| {k} | {n} |" for k, n in b["trips_by_breaker"].items()
        ]
        lines += ["", "First events:", ""]
        lines += [
            f"- {e['ts']} {e['event']} {e['breaker']} {e['symbol'] or ''}: {e['reason']}"
            for e in b["events"][:20]
        ]
    for e in b["trading_state_changes"][:10]:
        lines.append(f"- {e['ts']} trading {e['previous']} -> {e['state']}: {e['reason']}")
    lines += ["", f"Ran in {r['elapsed_s']} s ({r['bars_per_s']} bars/s)."]
    return "\n".join(lines) + "\n"


def trades_csv(rec: Record) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        [
            "ts",
            "symbol",
            "side",
            "quantity",
            "price",
            "notional",
            "fee",
            "fee_asset",
            "is_maker",
            "realized_pnl_usdt",
            "client_order_id",
            "trade_id",
        ]
    )
    for f in rec.fills:
        w.writerow(
            [
                f["ts"].isoformat(),
                f["symbol"],
                f["side"],
                f["quantity"],
                f["price"],
                f["quantity"] * f["price"],
                f["fee"],
                f["fee_asset"],
                f["is_maker"],
                f["realized_pnl_usdt"],
                f["client_order_id"],
                f["trade_id"],
            ]
        )
    return buf.getvalue()


def equity_png(rec: Record, series: list[Series], fee_rate: float, title: str) -> bytes:
    from libs.common.plots import equity_png as render

    times = [datetime.fromtimestamp(t / 1000, UTC) for t in rec.times]
    eq = np.asarray(rec.equity) / rec.start_equity
    grid = np.asarray(rec.times)
    bh = np.zeros(grid.size)
    for s in series:
        e = buy_and_hold(s.ohlcv[:, 3], fee_rate)
        pos = np.clip(np.searchsorted(s.open_ms, grid, side="right") - 1, 0, None)
        bh += e[pos]
    bh /= len(series)
    return render(
        times,
        [
            (eq.tolist(), "model, full stack (net of fees)", 1.2),
            (bh.tolist(), "buy and hold (net of fees)", 1.0),
        ],
        title,
    )
