"""The Grafana boards the builder makes: the symbol variable, the journal annotations, the kill switch, positions and
trades on the overview, and every SQL query run as the read-only role against the migrated schema."""

from __future__ import annotations

import importlib.util
import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from tests.unit.deploy.tooling import GRAFANA_DIR

PROM = {"type": "prometheus", "uid": "bnml-prometheus"}
PG = {"type": "grafana-postgresql-datasource", "uid": "bnml-postgres"}
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _builder():
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA_DIR / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILDER = _builder()
BOARDS = {name: build().json() for name, build in BUILDER.BOARDS.items()}


def panels(board: dict) -> list[dict]:
    return [p for p in board["panels"] if p["type"] != "row"]


def by_title(board: dict, title: str) -> dict:
    found = [p for p in panels(board) if p["title"] == title]
    assert len(found) == 1, f"{board['uid']}: {title!r} found {len(found)} times"
    return found[0]


def sql_queries() -> list[tuple[str, str]]:
    """(where, SQL) for every Postgres panel target and annotation of every board."""
    out = []
    for name, board in BOARDS.items():
        for p in panels(board):
            out += [(f"{name} / {p['title']}", t["rawSql"]) for t in p["targets"] if p["datasource"] == PG]
        out += [
            (f"{name} / annotation {a['name']}", a["target"]["rawSql"]) for a in board["annotations"]["list"]
        ]
    return out


def expand(query: str, symbols: list[str]) -> sql.Composed:
    """What Grafana sends for `query` with the time range NOW-1h..NOW and `symbols` picked: its two macros."""
    parts = re.split(r"(\$__timeFilter\(\s*[\w.]+\s*\)|\$\{symbol:sqlstring\})", query)
    out = []
    for part in parts:
        if part.startswith("$__timeFilter("):
            column = part[len("$__timeFilter(") : -1].strip()
            out.append(
                sql.SQL("{} BETWEEN {} AND {}").format(
                    sql.SQL(column), sql.Literal(NOW - timedelta(hours=1)), sql.Literal(NOW)
                )
            )
        elif part == "${symbol:sqlstring}":
            out.append(sql.SQL(", ").join(sql.Literal(s) for s in symbols))
        else:
            assert "$" not in part, f"a macro this test does not know: {part}"
            out.append(sql.SQL(part))
    return sql.Composed(out)


def test_the_per_symbol_boards_have_a_symbol_variable_and_every_per_symbol_query_uses_it():
    for name in ("bnml-overview.json", "bnml-pipeline.json"):
        variables = {v["name"]: v for v in BOARDS[name]["templating"]["list"]}
        assert "symbol" in variables, name
        var = variables["symbol"]
        assert var["datasource"] == PROM and var["multi"] and var["includeAll"], name
        assert re.fullmatch(r"label_values\(bnml_\w+, symbol\)", var["query"]["query"]), var["query"]
        per_symbol = [
            (p["title"], t)
            for p in panels(BOARDS[name])
            for t in p["targets"]
            if "{{symbol}}" in t.get("legendFormat", "")
        ]
        assert per_symbol, name
        for title, t in per_symbol:
            assert 'symbol=~"$symbol"' in t["expr"], (
                f"{name} / {title} ignores the symbol picked: {t['expr']}"
            )
        for title, t in [
            (p["title"], t) for p in panels(BOARDS[name]) for t in p["targets"] if "rawSql" in t
        ]:
            if re.search(r"\bFROM (fills|orders)\b", t["rawSql"]):
                assert "${symbol:sqlstring}" in t["rawSql"], f"{name} / {title} ignores the symbol picked"


def test_every_board_annotates_kill_switch_breaker_and_trading_state_events_from_the_journal():
    for name, board in BOARDS.items():
        annotations = {a["name"]: a for a in board["annotations"]["list"]}
        assert set(annotations) >= {"Kill switch", "Breakers", "Trading state"}, name
        for a in annotations.values():
            assert a["datasource"] == PG and a["target"]["datasource"] == PG and a["enable"], (
                name,
                a["name"],
            )
        for label, table in (
            ("Kill switch", "kill_switch_audit"),
            ("Breakers", "risk_breaker_events"),
            ("Trading state", "risk_trading_state_events"),
        ):
            assert re.search(rf"\bFROM {table}\b", annotations[label]["target"]["rawSql"]), (name, label)
            assert "$__timeFilter(" in annotations[label]["target"]["rawSql"], (name, label)


def test_the_overview_shows_the_kill_switch_trading_state_positions_and_trades():
    board = BOARDS["bnml-overview.json"]
    first_row = board["panels"][0]
    assert first_row["type"] == "row" and "Kill switch" in first_row["title"], "the kill switch comes first"
    kill = by_title(board, "Kill switch")
    assert {t["expr"] for t in kill["targets"]} == {
        "bnml_ops_api_kill_switch_engaged",
        "bnml_risk_kill_switch_engaged",
    }
    assert kill["fieldConfig"]["defaults"]["mappings"][0]["options"]["1"]["text"] == "ENGAGED"
    since = by_title(board, "Kill switch: last command (since, reason, by)")
    assert since["datasource"] == PG and "kill_switch_audit" in since["targets"][0]["rawSql"]
    assert (
        "risk_trading_state_events" in by_title(board, "Trading state: since, reason")["targets"][0]["rawSql"]
    )
    assert by_title(board, "Trading state")["targets"][0]["expr"] == "bnml_risk_trading_state == 1"
    for title, metric in (
        ("Position quantity per symbol", "bnml_ops_api_position_quantity"),
        ("Position exposure per symbol (USDT)", "bnml_ops_api_position_exposure_usdt"),
        ("Unrealized P&L per symbol (USDT)", "bnml_ops_api_position_unrealized_pnl_usdt"),
    ):
        assert by_title(board, title)["targets"][0]["expr"].startswith(metric + "{"), title
    for title, table in (("Recent fills", "fills"), ("Recent orders", "orders")):
        panel = by_title(board, title)
        assert panel["type"] == "table" and panel["datasource"] == PG
        assert re.search(rf"\bFROM {table}\b", panel["targets"][0]["rawSql"]), title


def _journal_one_of_each(conn: psycopg.Connection) -> None:
    """One kill-switch command, breaker trip, trading-state change, order and fill, 10 minutes before NOW."""
    ts = NOW - timedelta(minutes=10)
    conn.execute(
        "INSERT INTO kill_switch_audit (command_id, ts, action, engaged, reason, actor, recorded_by) "
        "VALUES ('k1', %s, 'engage', true, 'operator test', 'ops', 'risk')",
        (ts,),
    )
    conn.execute(
        "INSERT INTO risk_breaker_events (event_id, ts, breaker, symbol, event, effect, reason) "
        "VALUES ('b1', %s, 'volatility', 'BTC/USDT', 'tripped', 'REDUCING', 'range 3x')",
        (ts,),
    )
    conn.execute(
        "INSERT INTO risk_trading_state_events (event_id, ts, state, previous, reason) "
        "VALUES ('s1', %s, 'HALTED', 'ACTIVE', 'kill switch')",
        (ts,),
    )
    conn.execute(
        "INSERT INTO orders (client_order_id, verdict_id, symbol, side, quantity, status, filled_quantity, "
        "average_price, reason, created_at) VALUES ('c1', 'v1', 'BTC/USDT', 'BUY', 0.01, 'FILLED', 0.01, "
        "60000, 'p=0.9', %s)",
        (ts,),
    )
    conn.execute(
        "INSERT INTO fills (exchange, trade_id, client_order_id, symbol, side, quantity, price, fee, "
        "fee_asset, ts) VALUES ('paper', 't1', 'c1', 'BTC/USDT', 'BUY', 0.01, 60000, 0.6, 'USDT', %s)",
        (ts,),
    )


def test_every_sql_query_runs_as_the_read_only_role_against_the_migrated_schema(database_url):
    queries = sql_queries()
    assert len(queries) >= 3 * 3 + 4, [
        w for w, _ in queries
    ]  # three annotations a board, the overview's tables
    with psycopg.connect(database_url, autocommit=True) as conn:
        _journal_one_of_each(conn)
        conn.execute("SET ROLE bnml_readonly")
        with pytest.raises(
            psycopg.errors.InsufficientPrivilege
        ):  # the role the datasource uses: it only reads
            conn.execute("INSERT INTO kv_state (key, value) VALUES ('x', '1')")
        for where, query in queries:
            cur = conn.execute(expand(query, ["BTC/USDT", "ETH/USDT"]))
            rows = cur.fetchall()
            assert len(rows) == 1, f"{where}: {len(rows)} rows for one journaled event"
            columns = [c.name for c in cur.description]
            if "annotation" in where:
                assert columns == ["time", "text", "tags"], (where, columns)
                assert rows[0][0] is not None and rows[0][1] and rows[0][2], (where, rows[0])
            assert all(
                v is not None for c, v in zip(columns, rows[0], strict=True) if c in ("time", "since")
            ), where
        # the symbol picked does filter: the same fills and orders are not shown for another symbol, nor out of range
        for where, query in queries:
            if re.search(r"\bFROM (fills|orders)\b", query):
                assert conn.execute(expand(query, ["ETH/USDT"])).fetchall() == [], where
        text = conn.execute(expand(BUILDER.BREAKER_EVENTS, [])).fetchone()[1]
        assert text == "volatility tripped BTC/USDT (REDUCING): range 3x", text


def test_the_dashboard_json_on_disk_is_the_builders_output():
    for name, text in BUILDER.render().items():
        assert (GRAFANA_DIR / "dashboards" / name).read_text() == text, (
            f"{name}: run deploy/grafana/build_dashboards.py"
        )
