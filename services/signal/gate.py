"""Model governance (pure core): the promotion gate, and whether a model may be served in a given mode.

`evaluate_gate` judges a model's out-of-sample result against `signal.gate` and returns a decision value
(`passed`, `reasons`); it changes nothing. `bnml train` and `bnml models promote` make a model `current`
only when it passed (or on a forced promotion, paper only, audited). `serving_decision` is what the signal
service applies when it loads a model: in live mode only a model whose stored gate record passed, trained
on market data, not forced, not retired; in paper mode anything trusted, with a warning when ungated.

For now the gate judges the simplified walk-forward simulation of `training.py` (long-only, close to
close). When the full-stack backtest feeds it, the gate record's `basis` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GATE_BASIS = (
    "walk-forward, net of fees; p-value: circular-shift null over the simplified simulation (training.py)"
)


def gate_basis(evaluation: str) -> str:
    """What the gate judged: the net return and trades of `evaluation` (the full-stack backtest for `bnml train`),
    the p-value of the simplified simulation's null (a full-stack null per shift would take minutes)."""
    return f"{GATE_BASIS}; net return and trades: {evaluation}"


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # why it failed (empty when it passed)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {passed, value, threshold}

    def record(self, **extra: Any) -> dict[str, Any]:
        """The `gate` record of `metadata.json`."""
        return {"passed": self.passed, "reasons": list(self.reasons), "checks": self.checks, **extra}


def evaluate_gate(
    *,
    net_return_pct: float,
    no_trade_return_pct: float,
    p_value: float | None,
    n_trades: int,
    data_kind: str,
    min_excess_return_pct: float,
    max_p_value: float,
    min_trades: int,
) -> GateDecision:
    """Every check runs (so every reason is reported); the gate passes only when all pass."""
    checks: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []

    def check(name: str, ok: bool, value: object, threshold: object, why: str) -> None:
        checks[name] = {"passed": bool(ok), "value": value, "threshold": threshold}
        if not ok:
            reasons.append(why)

    excess = net_return_pct - no_trade_return_pct
    check(
        "market_data",
        data_kind == "file",
        data_kind,
        "file",
        f"trained and evaluated on {data_kind} data, not on a market",
    )
    check(
        "net_return_above_no_trade",
        excess > min_excess_return_pct,
        round(excess, 4),
        min_excess_return_pct,
        f"out-of-sample net return {net_return_pct:+.2f}% does not beat not trading "
        f"({no_trade_return_pct:+.2f}%) by more than {min_excess_return_pct:g}%",
    )
    check(
        "null_p_value",
        p_value is not None and p_value < max_p_value,
        p_value,
        max_p_value,
        "no null p-value"
        if p_value is None
        else f"null p-value {p_value:.3f} is not below {max_p_value:g} (timing indistinguishable from chance)",
    )
    check(
        "min_trades",
        n_trades >= min_trades,
        n_trades,
        min_trades,
        f"{n_trades} out-of-sample trades, fewer than {min_trades}",
    )
    return GateDecision(passed=not reasons, reasons=reasons, checks=checks)


@dataclass(frozen=True)
class ServingDecision:
    allowed: bool
    gate_passed: bool
    reason: str = ""  # why it is refused (allowed=False)
    warning: str = ""  # allowed, but a person should know (paper mode, ungated model)


def gate_passed(meta: dict[str, Any]) -> bool:
    """The stored gate record passed, on market data, without a forced promotion."""
    gate = meta.get("gate")
    return (
        isinstance(gate, dict)
        and gate.get("passed") is True
        and (meta.get("data") or {}).get("kind") == "file"
        and not (meta.get("promotion") or {}).get("forced", False)
    )


def serving_decision(meta: dict[str, Any], mode: str) -> ServingDecision:
    """May the signal service serve this (already hash-verified) model in `mode`?"""
    version = meta.get("version", "?")
    passed = gate_passed(meta)
    if meta.get("retired"):
        return ServingDecision(
            False, passed, f"model {version} is retired ({meta['retired'].get('reason') or '-'})"
        )
    if passed:
        return ServingDecision(True, True)
    why = _why_ungated(meta)
    if mode == "live":
        return ServingDecision(
            False, False, f"live mode serves only a model that passed the promotion gate; {version}: {why}"
        )
    return ServingDecision(
        True,
        False,
        warning=f"model {version} has not passed the promotion gate ({why}); "
        f"paper trading only, live mode would refuse it",
    )


def _why_ungated(meta: dict[str, Any]) -> str:
    kind = (meta.get("data") or {}).get("kind", "unknown")
    if kind != "file":
        return f"trained on {kind} data"
    if (meta.get("promotion") or {}).get("forced"):
        return (
            "force-promoted past a failed gate"
            if not (meta.get("gate") or {}).get("passed")
            else "force-promoted"
        )
    gate = meta.get("gate")
    if not isinstance(gate, dict):
        return "no gate record (trained before the gate existed)"
    return "; ".join(gate.get("reasons") or ["gate failed"])


def regate(
    meta: dict[str, Any], *, min_excess_return_pct: float, max_p_value: float, min_trades: int
) -> GateDecision:
    """The same gate, re-run on a stored model's recorded out-of-sample figures (for `bnml models promote`,
    under the thresholds configured now). A model without a gate record fails."""
    gate = meta.get("gate")
    if not isinstance(gate, dict) or "net_return" not in gate:
        return GateDecision(False, ["no gate record (trained before the gate existed): retrain it"], {})
    return evaluate_gate(
        net_return_pct=float(gate["net_return"]),
        no_trade_return_pct=float(gate.get("no_trade_return", 0.0)),
        p_value=gate.get("p_value"),
        n_trades=int(gate.get("n_trades", 0)),
        data_kind=str((meta.get("data") or {}).get("kind", "unknown")),
        min_excess_return_pct=min_excess_return_pct,
        max_p_value=max_p_value,
        min_trades=min_trades,
    )


def live_config_refusal(mode: str, every_nth_tick: int) -> str:
    """Why this signal configuration must not start in `mode` ("" = fine). Measurement mode sends BUY/SELL
    without any model: a benchmark tool, never a way to trade real money."""
    if mode == "live" and every_nth_tick > 0:
        return "signal.every_nth_tick (measurement mode: BUY/SELL with no model) is refused in mode: live"
    return ""
