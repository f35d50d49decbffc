"""Build the Grafana dashboards (JSON under deploy/grafana/dashboards/) from the panel lists below.

    .venv/bin/python deploy/grafana/build_dashboards.py          # rewrite the JSON files
    .venv/bin/python deploy/grafana/build_dashboards.py --check  # exit 1 if a JSON file is out of date

Every PromQL query uses metric names the services export (`bnml_<service>_<thing>_<unit>`, or one name with a
`service` label where every service measures the same thing); tests/integration/test_deploy_stack.py runs each
one against a real Prometheus scraping the suite and fails on a query that errors or returns nothing. The macros
used are Grafana's `$__rate_interval` and the `$symbol` template variable (a regex of the symbols picked).

The SQL panels and annotations read the read-only Postgres datasource (deploy/grafana/provisioning/datasources/
postgres.yml, role bnml_readonly); the macros used there are `$__timeFilter(column)` and `${symbol:sqlstring}`.
tests/unit/deploy/test_dashboards.py runs each one, as that role, against a migrated database.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "bnml-prometheus"}
PG = {"type": "grafana-postgresql-datasource", "uid": "bnml-postgres"}
SYMBOL = 'symbol=~"$symbol"'  # the label matcher of the `symbol` template variable
SYMBOL_SQL = "${symbol:sqlstring}"  # the same selection as a quoted SQL list: symbol IN (...)


class Board:
    def __init__(self, uid: str, title: str, description: str, tags: list[str]):
        self.uid, self.title, self.description, self.tags = uid, title, description, tags
        self.panels: list[dict] = []
        self.variables: list[dict] = []
        self.annotations: list[dict] = []
        self.x = self.y = self.row_h = 0

    def _place(self, w: int, h: int) -> dict:
        if self.x + w > 24:
            self.x, self.y = 0, self.y + self.row_h
            self.row_h = 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "id": len(self.panels) + 1, "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}})
        self.y += 1

    def panel(self, kind: str, title: str, targets: list[tuple[str, str]], *, w: int = 8, h: int = 7,
              unit: str = "short", description: str = "", thresholds: list[tuple[float | None, str]] | None = None,
              mappings: list[dict] | None = None, decimals: int | None = None, stack: bool = False,
              text: str = "value_and_name") -> None:
        steps = [{"value": v, "color": c} for v, c in (thresholds or [(None, "green")])]
        defaults: dict = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps},
                          "mappings": mappings or []}
        if decimals is not None:
            defaults["decimals"] = decimals
        if kind == "timeseries":
            defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                                  "spanNulls": True, "stacking": {"mode": "normal" if stack else "none"}}
        else:
            defaults["color"] = {"mode": "thresholds"}
        options: dict = {}
        if kind == "stat":
            options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                       "colorMode": "background", "graphMode": "none", "textMode": text,
                       "justifyMode": "auto", "orientation": "auto"}
        elif kind == "timeseries":
            options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                       "tooltip": {"mode": "multi", "sort": "desc"}}
        elif kind == "table":
            options = {"showHeader": True}
        self.panels.append({
            "id": len(self.panels) + 1, "type": kind, "title": title, "description": description, "datasource": DS,
            "gridPos": self._place(w, h), "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options,
            "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend,
                         "instant": kind in ("stat", "table"), "range": kind == "timeseries"}
                        for i, (expr, legend) in enumerate(targets)],
        })

    def symbol_variable(self) -> None:
        """A `symbol` picker (multi, All by default) from the universe market_data exports; the per-symbol panels
        filter on it with SYMBOL (PromQL) or SYMBOL_SQL."""
        query = "label_values(bnml_market_data_symbol_age_seconds, symbol)"
        self.variables.append({
            "name": "symbol", "label": "Symbol", "type": "query", "datasource": DS, "refresh": 2, "sort": 1,
            "query": {"query": query, "refId": "symbol"}, "definition": query, "multi": True, "includeAll": True,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [], "hide": 0,
        })

    def annotate(self, name: str, color: str, sql: str) -> None:
        """Events from the journal drawn on every time axis: `sql` returns time, text and tags."""
        self.annotations.append({
            "name": name, "datasource": PG, "enable": True, "hide": False, "iconColor": color,
            "target": {"refId": "Anno", "datasource": PG, "format": "table", "rawQuery": True,
                       "editorMode": "code", "rawSql": sql},
        })

    def sql_table(self, title: str, sql: str, *, w: int = 24, h: int = 8, description: str = "") -> None:
        """A table over the read-only Postgres datasource (one table-format query)."""
        self.panels.append({
            "id": len(self.panels) + 1, "type": "table", "title": title, "description": description, "datasource": PG,
            "gridPos": self._place(w, h), "fieldConfig": {"defaults": {"custom": {"align": "auto"}}, "overrides": []},
            "options": {"showHeader": True, "cellHeight": "sm"},
            "targets": [{"refId": "A", "datasource": PG, "format": "table", "rawQuery": True, "editorMode": "code",
                         "rawSql": sql}],
        })

    def json(self) -> dict:
        return {
            "uid": self.uid, "title": self.title, "description": self.description, "tags": self.tags,
            "timezone": "utc", "editable": False, "graphTooltip": 1, "refresh": "10s", "schemaVersion": 39,
            "version": 1, "time": {"from": "now-1h", "to": "now"}, "templating": {"list": self.variables},
            "annotations": {"list": self.annotations}, "links": [
                {"title": t, "type": "link", "url": f"/d/{u}", "targetBlank": False}
                for u, t in (("bnml-overview", "Overview"), ("bnml-pipeline", "Pipeline"),
                             ("bnml-risk-model", "Risk and model health")) if u != self.uid],
            "panels": self.panels,
        }


UP_MAP = [{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"}, "1": {"text": "UP", "color": "green"}}}]
RED_GREEN = [(None, "red"), (1, "green")]
STATE_COLORS = [{"type": "value", "options": {"ACTIVE": {"color": "green"}, "REDUCING": {"color": "orange"},
                                              "HALTED": {"color": "red"}}}]


def events(expr: str) -> str:
    """An event counter has no series before its first event (a quiet hour is 0, not "no data")."""
    return f"({expr}) or vector(0)"


def quantiles(metric: str, by: str = "") -> list[tuple[str, str]]:
    group = f"le{', ' + by if by else ''}"
    legend = f"{{{{{by}}}}} " if by else ""
    return [(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[$__rate_interval])))", f"{legend}p{n}")
            for q, n in ((0.5, "50"), (0.99, "99"))]


KILL_SWITCH_EVENTS = """SELECT ts AS time,
  'kill switch ' || action || ' by ' || actor || ': ' || reason || CASE WHEN flatten THEN ' (flatten)' ELSE '' END
    AS text,
  'kill-switch,' || action AS tags
FROM kill_switch_audit WHERE $__timeFilter(ts) ORDER BY ts"""
BREAKER_EVENTS = """SELECT ts AS time,
  breaker || ' ' || event || coalesce(' ' || symbol, '') || coalesce(' (' || effect || ')', '') || ': ' || reason
    AS text,
  'breaker,' || breaker || ',' || event AS tags
FROM risk_breaker_events WHERE $__timeFilter(ts) ORDER BY ts"""
TRADING_STATE_EVENTS = """SELECT ts AS time, 'trading state ' || previous || ' -> ' || state || ': ' || reason AS text,
  'trading-state,' || state AS tags
FROM risk_trading_state_events WHERE $__timeFilter(ts) ORDER BY ts"""
KILL_SWITCH_NOW = """SELECT CASE WHEN engaged THEN 'ENGAGED' ELSE 'released' END AS kill_switch, ts AS since, reason,
  actor, flatten
FROM kill_switch_audit ORDER BY ts DESC, id DESC LIMIT 1"""
TRADING_STATE_NOW = """SELECT state, ts AS since, previous, reason
FROM risk_trading_state_events ORDER BY ts DESC, id DESC LIMIT 1"""
RECENT_FILLS = f"""SELECT f.ts AS time, f.symbol, f.side, f.quantity, f.price, f.quantity * f.price AS notional,
  f.fee, f.fee_asset, f.realized_pnl_usdt, o.mode, o.reason, f.client_order_id, f.trade_id
FROM fills f JOIN orders o ON o.client_order_id = f.client_order_id
WHERE $__timeFilter(f.ts) AND f.symbol IN ({SYMBOL_SQL})
ORDER BY f.ts DESC, f.id DESC LIMIT 200"""
RECENT_ORDERS = f"""SELECT created_at AS time, symbol, side, order_type, quantity, filled_quantity, average_price,
  status, fee_usdt, mode, reason, updated_at, client_order_id
FROM orders WHERE $__timeFilter(created_at) AND symbol IN ({SYMBOL_SQL})
ORDER BY created_at DESC LIMIT 200"""
ENGAGED_MAP = [{"type": "value", "options": {"0": {"text": "released", "color": "green"},
                                             "1": {"text": "ENGAGED", "color": "red"}}}]


def journal_annotations(b: Board) -> Board:
    """Kill-switch, breaker and trading-state events from the journal, on every time axis of the board."""
    b.annotate("Kill switch", "red", KILL_SWITCH_EVENTS)
    b.annotate("Breakers", "orange", BREAKER_EVENTS)
    b.annotate("Trading state", "purple", TRADING_STATE_EVENTS)
    return b


def overview() -> Board:
    b = Board("bnml-overview", "BN-ML overview", "Kill switch, trading state, P&L, equity, positions, trades.",
              ["bnml"])
    b.symbol_variable()
    journal_annotations(b)
    b.row("Kill switch and trading state")
    b.panel("stat", "Kill switch", [("bnml_ops_api_kill_switch_engaged", "journal (ops_api)"),
                                    ("bnml_risk_kill_switch_engaged", "risk's latch")], w=6, h=5,
            mappings=ENGAGED_MAP, thresholds=[(None, "green"), (1, "red")],
            description="1 while engaged; ops_api also reads 1 when it cannot tell (fail closed). Stopping is "
                        "`bnml kill-switch engage` or the console, never this board")
    b.sql_table("Kill switch: last command (since, reason, by)", KILL_SWITCH_NOW, w=10, h=5,
                description="the latest row of kill_switch_audit; empty if it was never engaged")
    b.sql_table("Trading state: since, reason", TRADING_STATE_NOW, w=8, h=5,
                description="the latest row of risk_trading_state_events; empty while it has never changed")
    b.row("State")
    b.panel("stat", "Trading state", [("bnml_risk_trading_state == 1", "{{state}}")], w=4, h=5, text="name",
            mappings=STATE_COLORS, thresholds=[(None, "green")],
            description="risk's trading state: ACTIVE, REDUCING (only reducing orders) or HALTED")
    b.panel("stat", "Kill-switch sweeps (execution, total)", [("bnml_execution_kill_switch_sweeps_total", "sweeps")],
            w=4, h=5, thresholds=[(None, "green"), (1, "orange")],
            description="cancel-all sweeps run because the kill switch was engaged")
    b.panel("stat", "Equity (USDT)", [("bnml_risk_equity_usdt", "equity")], w=4, h=5, unit="currencyUSD",
            decimals=2)
    b.panel("stat", "Realized P&L today / this week (USDT)",
            [("bnml_risk_daily_realized_usdt", "today"), ("bnml_risk_weekly_realized_usdt", "week")], w=4, h=5,
            unit="currencyUSD", decimals=2, thresholds=[(None, "red"), (0, "green")])
    b.panel("stat", "Drawdown from peak", [("bnml_risk_drawdown_pct", "drawdown")], w=4, h=5, unit="percent",
            decimals=2, thresholds=[(None, "green"), (2, "orange"), (5, "red")])
    b.panel("stat", "Exposure (USDT)", [("bnml_risk_exposure_usdt", "exposure")], w=4, h=5, unit="currencyUSD",
            decimals=2)
    b.panel("timeseries", "Equity and exposure (USDT)",
            [("bnml_risk_equity_usdt", "equity"), ("bnml_risk_exposure_usdt", "exposure")], w=12, unit="currencyUSD")
    b.panel("timeseries", "Realized P&L (USDT) and drawdown (%)",
            [("bnml_risk_daily_realized_usdt", "today USDT"), ("bnml_risk_weekly_realized_usdt", "week USDT"),
             ("bnml_risk_drawdown_pct", "drawdown %")], w=12)
    b.row("Positions (ops_api, from the journal)")
    b.panel("timeseries", "Position quantity per symbol",
            [(f"bnml_ops_api_position_quantity{{{SYMBOL}}}", "{{symbol}}")], w=8)
    b.panel("timeseries", "Position exposure per symbol (USDT)",
            [(f"bnml_ops_api_position_exposure_usdt{{{SYMBOL}}}", "{{symbol}}")], w=8, unit="currencyUSD",
            stack=True)
    b.panel("timeseries", "Unrealized P&L per symbol (USDT)",
            [(f"bnml_ops_api_position_unrealized_pnl_usdt{{{SYMBOL}}}", "{{symbol}}")], w=8, unit="currencyUSD")
    b.panel("stat", "Realized P&L and fees per symbol (USDT, since the journal began)",
            [(f"bnml_ops_api_realized_pnl_usdt{{{SYMBOL}}}", "{{symbol}} realized"),
             (f"bnml_ops_api_fees_usdt{{{SYMBOL}}}", "{{symbol}} fees")], w=12, unit="currencyUSD", decimals=2,
            thresholds=[(None, "blue")])
    b.panel("timeseries", "Balances per asset (valued in USDT)", [("bnml_ops_api_balance_value_usdt", "{{asset}}")],
            w=12, unit="currencyUSD", stack=True)
    b.row("Trades (journal, read-only)")
    b.sql_table("Recent fills", RECENT_FILLS, w=24, h=8,
                description="the last 200 fills in the time range, with their order's mode and reason")
    b.sql_table("Recent orders", RECENT_ORDERS, w=24, h=8,
                description="the last 200 journaled orders in the time range, whatever their outcome")
    b.row("Orders")
    b.panel("timeseries", "Order events by status (per minute)",
            [(events("sum by (status) (rate(bnml_execution_orders_total[$__rate_interval])) * 60"), "{{status}}")],
            w=12)
    b.panel("timeseries", "Fills (per minute)",
            [(events("sum by (liquidity) (rate(bnml_execution_fills_total[$__rate_interval])) * 60"),
              "{{liquidity}}")], w=6)
    b.panel("stat", "Open orders / symbols held (unknown outcome)",
            [("bnml_execution_open_orders", "open"), ("bnml_execution_held_symbols", "held")], w=6,
            thresholds=[(None, "green"), (1, "orange"), (20, "red")])
    b.row("Suite")
    b.panel("stat", "Services up", [('up{job="bnml"}', "{{service}}")], w=12, h=4, mappings=UP_MAP,
            thresholds=RED_GREEN, description="Prometheus can scrape the service's /metrics")
    b.panel("stat", "NATS connected", [("bnml_nats_connected", "{{service}}")], w=12, h=4,
            mappings=UP_MAP, thresholds=RED_GREEN)
    return b


def pipeline() -> Board:
    b = Board("bnml-pipeline", "BN-ML pipeline", "Rates and latencies per hop, DLQ, staleness per symbol.",
              ["bnml"])
    b.symbol_variable()
    journal_annotations(b)
    b.row("Rates")
    b.panel("timeseries", "Ticks published per second (market_data)",
            [(f"sum by (symbol) (rate(bnml_market_data_ticks_published_total{{{SYMBOL}}}[$__rate_interval]))", "{{symbol}}")],
            stack=True)
    b.panel("timeseries", "Ticks and candles in (signal), signals out by side",
            [("sum(rate(bnml_signal_ticks_received_total[$__rate_interval]))", "ticks in"),
             ("sum(rate(bnml_signal_candles_received_total[$__rate_interval]))", "candles in"),
             (events("sum by (side) (rate(bnml_signal_signals_published_total[$__rate_interval]))"),
              "signals {{side}}")])
    b.panel("timeseries", "Verdicts (risk), orders and fills (execution) per second",
            [(events("sum by (outcome) (rate(bnml_risk_verdicts_total[$__rate_interval]))"), "verdicts {{outcome}}"),
             (events("sum(rate(bnml_execution_orders_total[$__rate_interval]))"), "order events"),
             (events("sum(rate(bnml_execution_fills_total[$__rate_interval]))"), "fills")])
    b.row("Latency per hop")
    b.panel("timeseries", "Tick -> order (journaled and paper-filled), p50 / p99",
            quantiles("bnml_execution_tick_to_order_seconds"), w=12, unit="s",
            description="market_data tick event time to the paper fill committed by execution: the whole chain")
    b.panel("timeseries", "Verdict -> fill (execution), p50 / p99",
            quantiles("bnml_execution_verdict_to_fill_seconds"), w=12, unit="s")
    b.panel("timeseries", "Tick -> signal (signal), p50 / p99",
            quantiles("bnml_signal_tick_to_signal_seconds"), w=8, unit="s",
            description="tick event time to the BUY/SELL signal made: market_data, the bus hop, features")
    b.panel("timeseries", "Tick -> verdict (risk), p50 / p99",
            quantiles("bnml_risk_tick_to_verdict_seconds"), w=8, unit="s",
            description="tick event time to the verdict made: the path up to and through risk")
    b.panel("timeseries", "Signal -> verdict (risk), p50 / p99",
            quantiles("bnml_risk_signal_to_verdict_seconds"), w=8, unit="s",
            description="signal made to its verdict made: the bus hop and risk's queueing and decision")
    b.panel("timeseries", "Signal: inference per batch, p50 / p99", quantiles("bnml_signal_inference_seconds"),
            w=12, unit="s")
    b.panel("timeseries", "Risk: decision per signal, p50 / p99", quantiles("bnml_risk_decision_seconds"),
            w=12, unit="s")
    b.row("Dead letters, errors and staleness")
    b.panel("timeseries", "Dead-lettered messages (per minute) by service and subject",
            [(events("sum by (service, subject) (rate(bnml_dlq_messages_total[$__rate_interval])) * 60"),
              "{{service}} {{subject}}")], w=8)
    b.panel("timeseries", "Handler errors, NATS client errors, dropped publishes (per minute)",
            [(events("sum by (service) (rate(bnml_handler_errors_total[$__rate_interval])) * 60"),
              "handler {{service}}"),
             (events("sum by (service) (rate(bnml_nats_errors_total[$__rate_interval])) * 60"), "nats {{service}}"),
             (events("sum by (reason) (rate(bnml_market_data_publish_dropped_total[$__rate_interval])) * 60"),
              "market_data dropped {{reason}}")], w=8)
    b.panel("timeseries", "Market-data source errors (per minute) and back-off state",
            [(events("sum by (kind) (rate(bnml_market_data_source_errors_total[$__rate_interval])) * 60"),
              "errors {{kind}}"), ("bnml_market_data_backoff_state", "back-off (0 ok, 1 wait, 2 limited, 3 banned)")],
            w=8)
    b.panel("timeseries", "Market data age per symbol", [(f"bnml_market_data_symbol_age_seconds{{{SYMBOL}}}", "{{symbol}}")],
            w=12, unit="s")
    b.panel("stat", "Stale symbols / universe", [("bnml_market_data_stale_symbols", "stale"),
                                                 ("bnml_market_data_universe_symbols", "universe")], w=6,
            thresholds=[(None, "green")])
    b.panel("table", "Staleness per symbol (1 = stale)", [(f"bnml_market_data_symbol_stale{{{SYMBOL}}}", "{{symbol}}")], w=6)
    b.row("NATS server (prometheus-nats-exporter)")
    b.panel("timeseries", "NATS messages in/out per second",
            [("rate(gnatsd_varz_in_msgs[$__rate_interval])", "in"),
             ("rate(gnatsd_varz_out_msgs[$__rate_interval])", "out")], w=12)
    b.panel("timeseries", "NATS connections and slow consumers",
            [("gnatsd_varz_connections", "connections"), ("gnatsd_varz_slow_consumers", "slow consumers")], w=12)
    return b


def risk_model() -> Board:
    b = Board("bnml-risk-model", "BN-ML risk and model health",
              "Breakers, refusals, volatility, model and drift, alerting and backups.", ["bnml"])
    journal_annotations(b)
    b.row("Risk")
    b.panel("timeseries", "Breakers in force", [("bnml_risk_breakers_active", "{{breaker}}")], w=8, stack=True)
    b.panel("timeseries", "Breaker trips (per hour) by breaker",
            [(events("sum by (breaker) (increase(bnml_risk_breaker_trips_total[1h]))"), "{{breaker}}")], w=8)
    b.panel("stat", "Risk database writes / volatility ratio",
            [("bnml_risk_database_ok", "database ok"), ("bnml_risk_market_volatility_ratio", "volatility ratio")],
            w=8, thresholds=[(None, "red"), (1, "green")], decimals=2)
    b.panel("timeseries", "Refused verdicts by reason (per minute)",
            [(events('sum by (reason) (rate(bnml_risk_verdicts_total{outcome!="approved"}[$__rate_interval])) * 60'),
              "{{reason}}")], w=12)
    b.panel("timeseries", "Verdicts execution did not send, by reason (per minute)",
            [(events("sum by (reason) (rate(bnml_execution_verdicts_refused_total[$__rate_interval])) * 60"),
              "{{reason}}")], w=12)
    b.row("Model")
    b.panel("stat", "Model loaded / drift detected",
            [("bnml_signal_model_loaded", "model loaded"), ("bnml_signal_drift_detected", "drift detected")], w=6,
            mappings=[{"type": "value", "options": {"0": {"text": "no"}, "1": {"text": "yes"}}}])
    b.panel("stat", "Model age", [("bnml_signal_model_age_seconds", "age")], w=6, unit="s")
    b.panel("timeseries", "Drift scores", [("bnml_signal_drift_score", "{{score}}")], w=12)
    b.panel("timeseries", "Resolved signals by outcome (per hour)",
            [(events("sum by (outcome) (increase(bnml_signal_signal_outcomes_total[1h]))"), "{{outcome}}")], w=12)
    b.panel("stat", "Model artefacts refused (total)", [("bnml_signal_model_refusals_total", "refused")], w=12,
            thresholds=[(None, "green"), (1, "red")])
    b.row("Alerting and backups")
    b.panel("timeseries", "Alerts received by severity (per hour)",
            [(events("sum by (severity) (increase(bnml_ops_api_alerts_total[1h]))"), "{{severity}}")], w=8)
    b.panel("timeseries", "Alert deliveries by channel and outcome (per hour)",
            [(events("sum by (channel, outcome) (increase(bnml_ops_api_alert_deliveries_total[1h]))"),
              "{{channel}} {{outcome}}")], w=8)
    b.panel("stat", "Last successful backup (age)",
            [("time() - bnml_ops_api_backup_last_success_timestamp_seconds", "age")], w=8, unit="s",
            thresholds=[(None, "green"), (7200, "red")],
            description="a huge value means no backup has succeeded yet")
    b.panel("timeseries", "Backups by outcome (per day)",
            [(events("sum by (outcome) (increase(bnml_ops_api_backups_total[1d]))"), "{{outcome}}")], w=12)
    b.panel("timeseries", "Incidents opened (per day) by severity and kind",
            [(events("sum by (severity, kind) (increase(bnml_ops_api_incidents_opened_total[1d]))"),
              "{{severity}} {{kind}}")], w=12)
    return b


BOARDS = {"bnml-overview.json": overview, "bnml-pipeline.json": pipeline, "bnml-risk-model.json": risk_model}


def render() -> dict[str, str]:
    return {name: json.dumps(build().json(), indent=2) + "\n" for name, build in BOARDS.items()}


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [n for n, text in files.items() if not (OUT / n).exists() or (OUT / n).read_text() != text]
        if stale:
            print(f"out of date: {', '.join(stale)}; run: python deploy/grafana/build_dashboards.py")
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(files)} dashboards to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
