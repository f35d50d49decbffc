"""DoD v1 checks (pure core): every check can fail, n/a is never a silent pass."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.ops_api.dod import (
    DayFacts,
    Thresholds,
    day_bounds,
    evaluate,
    loss_breach,
    minutes_in,
    stale_union,
    summary_markdown,
)

DAY = date(2026, 11, 20)
START, END = day_bounds(DAY)
SERVICES = ("market_data", "risk")


def healthy(**over) -> DayFacts:
    f = DayFacts(
        day=DAY,
        window_start=START,
        window_end=END,
        services=SERVICES,
        covered_minutes={"market_data": 1440, "risk": 1440},
        orders_total=100,
        orders_error=1,
        backups_ok=1,
        deliveries_total=10,
        deliveries_ok=10,
    )
    for k, v in over.items():
        setattr(f, k, v)
    return f


def checks(report) -> dict:
    return {c.name: c for c in report.checks}


def test_a_healthy_day_passes_with_no_violation():
    r = evaluate(healthy(), Thresholds())
    assert r.status == "pass" and r.violations == []


def test_heartbeat_coverage_below_99_pct_fails_for_that_service_only():
    r = evaluate(healthy(covered_minutes={"market_data": 1440, "risk": 1420}), Thresholds())
    c = checks(r)
    assert c["heartbeat_coverage.risk"].passed is False and c["heartbeat_coverage.market_data"].passed is True
    assert r.status == "fail" and any("risk heartbeats in 1420/1440" in v for v in r.violations)


def test_coverage_counts_only_the_part_of_the_day_after_the_suite_first_ran():
    first = START + timedelta(hours=12)
    r = evaluate(healthy(window_start=first, covered_minutes={"market_data": 720, "risk": 720}), Thresholds())
    assert checks(r)["heartbeat_coverage.risk"].value == 100.0


def test_a_day_before_the_suite_ever_ran_is_no_data_not_a_pass():
    r = evaluate(healthy(window_start=None, window_end=None), Thresholds())
    assert r.status == "no_data" and not r.passed and "not running" in r.violations[0]


def test_stale_share_and_longest_gap_are_judged_separately():
    # 6 min in one stretch: share 0.42 % passes, gap > 5 min fails
    r = evaluate(healthy(stale_intervals=[(START, START + timedelta(minutes=6))]), Thresholds())
    c = checks(r)
    assert c["stale_share"].passed is True and c["stale_gap"].passed is False
    # 20 stretches of 4 min: gap ok, share 5.6 % fails
    many = [(START + timedelta(hours=i), START + timedelta(hours=i, minutes=4)) for i in range(20)]
    c = checks(evaluate(healthy(stale_intervals=many), Thresholds()))
    assert c["stale_share"].passed is False and c["stale_gap"].passed is True


def test_order_error_rate_over_2_pct_fails_and_no_orders_is_not_applicable():
    assert (
        checks(evaluate(healthy(orders_total=100, orders_error=3), Thresholds()))["order_error_rate"].passed
        is False
    )
    c = checks(evaluate(healthy(orders_total=0, orders_error=0), Thresholds()))["order_error_rate"]
    assert c.passed is None


def test_any_sev1_incident_fails_the_day():
    r = evaluate(healthy(sev1_incidents=["kill switch engaged: drill"]), Thresholds())
    assert r.status == "fail" and "kill switch engaged" in checks(r)["no_sev1_incident"].detail


def test_loss_beyond_budget_passes_only_if_trading_halted_in_time_and_no_buys_after():
    breach = START + timedelta(hours=3)
    base = dict(loss_breach_at=breach, realized_pnl_usdt=Decimal("-250"))
    assert checks(evaluate(healthy(**base), Thresholds()))["daily_loss_budget"].passed is False
    halted = healthy(**base, halt_events=[breach + timedelta(seconds=5)])
    assert checks(evaluate(halted, Thresholds()))["daily_loss_budget"].passed is True
    late = healthy(**base, halt_events=[breach + timedelta(minutes=10)])
    assert checks(evaluate(late, Thresholds()))["daily_loss_budget"].passed is False
    leaky = healthy(**base, halt_events=[breach], buys_after_breach=2)
    assert "2 buy order(s)" in checks(evaluate(leaky, Thresholds()))["daily_loss_budget"].detail


def test_backup_required_only_when_backups_are_on():
    assert checks(evaluate(healthy(backups_ok=0), Thresholds()))["backup_done"].passed is False
    off = Thresholds(backups_enabled=False)
    assert checks(evaluate(healthy(backups_ok=0), off))["backup_done"].passed is None


def test_alert_delivery_below_99_pct_fails():
    c = checks(evaluate(healthy(deliveries_total=100, deliveries_ok=98), Thresholds()))["alert_delivery"]
    assert c.passed is False and c.value == 98.0


def test_an_unresolved_mismatch_fails():
    assert (
        checks(evaluate(healthy(unresolved_mismatches=1), Thresholds()))["no_unresolved_mismatch"].passed
        is False
    )


def test_minutes_in_counts_touched_minute_buckets():
    assert minutes_in(START, END) == 1440
    assert minutes_in(START + timedelta(seconds=30), START + timedelta(minutes=2)) == 2
    assert minutes_in(START + timedelta(seconds=30), START + timedelta(minutes=2, seconds=1)) == 3
    assert minutes_in(END, START) == 0


def test_stale_union_merges_overlapping_symbols_and_carries_initial_state():
    t = lambda m: START + timedelta(minutes=m)  # noqa: E731
    events = [
        (t(10), "BTC/USDT", "stale"),
        (t(12), "ETH/USDT", "stale"),
        (t(15), "BTC/USDT", "fresh"),
        (t(20), "ETH/USDT", "fresh"),
    ]
    assert stale_union(events, {}, START, END) == [(t(10), t(20))]
    assert stale_union([(t(5), "SOL/USDT", "fresh")], {"SOL/USDT": "stale"}, START, END) == [(START, t(5))]
    assert stale_union([(t(5), "SOL/USDT", "stale")], {}, START, t(8)) == [(t(5), t(8))]


@given(
    st.lists(
        st.tuples(
            st.integers(0, 1439), st.sampled_from(["A", "B", "C"]), st.sampled_from(["stale", "fresh"])
        ),
        max_size=40,
    )
)
def test_stale_intervals_are_disjoint_sorted_and_inside_the_window(raw):
    events = sorted((START + timedelta(minutes=m), s, st_) for m, s, st_ in raw)
    out = stale_union(events, {}, START, END)
    for a, b in out:
        assert START <= a < b <= END
    for (_, b1), (a2, _) in zip(out, out[1:], strict=False):
        assert b1 <= a2


@given(st.lists(st.decimals(min_value=-50, max_value=50, places=2), max_size=60))
def test_drawdown_is_never_negative_and_breach_is_the_first_crossing(pnls):
    ts = [START + timedelta(seconds=i) for i in range(len(pnls))]
    breach, dd = loss_breach(zip(ts, pnls, strict=True), Decimal("100"))
    assert dd >= 0
    cum = Decimal(0)
    first = None
    for t_, p in zip(ts, pnls, strict=True):
        cum += p
        if first is None and cum < -100:
            first = t_
    assert breach == first


def test_report_dict_and_summary_name_each_day_and_violation():
    r = evaluate(healthy(orders_total=10, orders_error=5), Thresholds())
    d = r.as_dict(datetime(2026, 11, 21, tzinfo=UTC))
    assert (
        d["schema"] == "dod_v1"
        and d["day"] == "2026-11-20"
        and d["checks"]["order_error_rate"]["passed"] is False
    )
    md = summary_markdown([d], datetime(2026, 11, 21, tzinfo=UTC))
    assert "| 2026-11-20 | FAIL | 1 |" in md and "order_error_rate" in md
