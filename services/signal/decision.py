"""From model probabilities to BUY/SELL/HOLD (pure core, vectorised): the same rule in training and live.

The model has three classes over the label horizon: down (a round trip short of the move would beat the
fees, i.e. holding loses more than exiting costs), flat (fees eat the move), up (a long beats the fees).
The expected log return is the probability-weighted mean return of each class in training; the expected
edge of a side is that return minus the round-trip fees, in basis points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HOLD, BUY, SELL = 0, 1, -1
SIDE_NAMES = {HOLD: "HOLD", BUY: "BUY", SELL: "SELL"}
CLASSES = (-1, 0, 1)  # proba columns are always ordered down, flat, up


def round_trip_cost(fee_rate: float) -> float:
    """Log-return cost of buying and selling once (fee on both sides)."""
    return -2.0 * math.log(1.0 - fee_rate)


@dataclass(frozen=True)
class Decisions:
    side: np.ndarray  # int: BUY / SELL / HOLD
    probability: np.ndarray  # probability of the side (for HOLD: of the likelier side)
    edge_bps: np.ndarray  # expected return net of fees of the side, bps
    reason: list[str]


def decide(
    proba: np.ndarray,
    class_mean_returns: np.ndarray,
    fee_rate: float,
    threshold: float,
    min_edge_bps: float | None = None,
    allow_buy: bool = True,
) -> Decisions:
    """Decide for each row of `proba` (n, 3: down, flat, up)."""
    proba = np.atleast_2d(proba)
    p_down, p_up = proba[:, 0], proba[:, 2]
    exp_ret = proba @ np.asarray(class_mean_returns, dtype=np.float64)
    cost = round_trip_cost(fee_rate)
    edge_buy = (exp_ret - cost) * 1e4
    edge_sell = (-exp_ret - cost) * 1e4
    up_wins = p_up >= p_down
    prob = np.where(up_wins, p_up, p_down)
    edge = np.where(up_wins, edge_buy, edge_sell)
    confident = prob >= threshold
    edge_ok = np.ones_like(confident) if min_edge_bps is None else edge >= min_edge_bps
    buy = confident & up_wins & edge_ok & allow_buy
    sell = confident & ~up_wins & edge_ok
    side = np.where(buy, BUY, np.where(sell, SELL, HOLD))
    reasons = []
    for i in range(side.size):
        name = "up" if up_wins[i] else "down"
        if side[i] != HOLD:
            reasons.append(f"p({name})={prob[i]:.3f} >= {threshold:.2f}, edge {edge[i]:.1f} bps net of fees")
        elif not confident[i]:
            reasons.append(f"p({name})={prob[i]:.3f} below threshold {threshold:.2f}")
        elif not edge_ok[i]:
            reasons.append(f"edge {edge[i]:.1f} bps below minimum {min_edge_bps}")
        else:
            reasons.append("model data too old: no BUY")
    return Decisions(side=side, probability=prob, edge_bps=edge, reason=reasons)
