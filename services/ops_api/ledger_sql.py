"""The operator's money figures as SQL over the journal (fills, positions, balances, risk's last prices).

Conventions (the same as execution's ledger, which wrote the rows):
- `fills.realized_pnl_usdt` is net of fees: a BUY's fee is in the position's cost, a SELL realizes
  `(price - average_cost) * quantity - fee`. Realized P&L is therefore the sum of that column and fees are
  shown beside it, never subtracted twice.
- Unrealized P&L of a position: `quantity * last_price - cost` (cost includes the entry fees), valued in USDT
  through the quote asset's price when the quote is not USDT.
- A last price is the newest of risk's `kv_state.account_state.last_prices` (dated by the row's `updated_at`)
  and the newest fill of the symbol. No price, no value: an asset without one is listed as unpriced, never
  guessed.
- A round trip ("trade") of a symbol opens with a BUY while the position is flat (worth at most the dust
  threshold) and closes with the fill that brings it back to flat. The running position is the sum of the
  base-quantity changes, clamped at zero like the ledger (a sale beyond the recorded position realizes
  nothing): `clamped_n = S_n - min(0, min_k<=n S_k)` (the reflection of a running sum), so no recursion.
- Periods are UTC; a week starts on Monday.
"""

from __future__ import annotations

# Last price per symbol: the newest of risk's view and the newest fill.
PRICES = """
px AS (
  SELECT DISTINCT ON (symbol) symbol, price, source, ts FROM (
    SELECT e.key AS symbol, e.value::numeric AS price, 'risk' AS source, kv.updated_at AS ts
      FROM kv_state kv, jsonb_each_text(CASE WHEN jsonb_typeof(kv.value->'last_prices') = 'object'
                                             THEN kv.value->'last_prices' ELSE '{}'::jsonb END) e
     WHERE kv.key = 'account_state' AND e.value ~ '^[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?$'
    UNION ALL
    SELECT * FROM (SELECT DISTINCT ON (symbol) symbol, price, 'fill' AS source, ts FROM fills
                    ORDER BY symbol, ts DESC, id DESC) newest
  ) s ORDER BY symbol, ts DESC, source DESC
)"""

# Value of one unit of an asset in USDT (USDT itself is 1).
ASSET_USDT = """
asset_px AS (
  SELECT 'USDT' AS asset, 1::numeric AS price, 'par' AS source, NULL::timestamptz AS ts
  UNION ALL
  SELECT split_part(symbol, '/', 1), price, source, ts FROM px WHERE split_part(symbol, '/', 2) = 'USDT'
)"""

BALANCES = f"""
WITH {PRICES}, {ASSET_USDT}
SELECT b.asset, b.free, b.locked, b.free + b.locked AS total, b.updated_at,
       a.price AS price_usdt, a.source AS price_source, a.ts AS price_ts,
       (b.free + b.locked) * a.price AS value_usdt
  FROM balances b LEFT JOIN asset_px a ON a.asset = b.asset
 ORDER BY (b.free + b.locked) * a.price DESC NULLS LAST, b.asset"""

EQUITY = """
equity AS (
  SELECT sum((b.free + b.locked) * a.price) AS value_usdt FROM balances b JOIN asset_px a ON a.asset = b.asset
)"""

POSITIONS = f"""
WITH {PRICES}, {ASSET_USDT}, {EQUITY}
SELECT p.symbol, p.quantity, p.average_cost, p.cost, p.realized_pnl_usdt, p.updated_at,
       px.price AS last_price, px.source AS price_source, px.ts AS price_ts,
       q.price AS quote_usdt,
       p.quantity * px.price * q.price AS exposure_usdt,
       (p.quantity * px.price - p.cost) * q.price AS unrealized_pnl_usdt,
       CASE WHEN p.cost > 0 THEN (p.quantity * px.price - p.cost) / p.cost END AS unrealized_pnl_ratio,
       CASE WHEN e.value_usdt > 0 THEN p.quantity * px.price * q.price / e.value_usdt END AS exposure_ratio
  FROM positions p
  LEFT JOIN px ON px.symbol = p.symbol
  LEFT JOIN asset_px q ON q.asset = split_part(p.symbol, '/', 2)
  CROSS JOIN equity e
 WHERE p.quantity > 0 AND (%(symbol)s::text IS NULL OR p.symbol = %(symbol)s)
 ORDER BY p.quantity * px.price * q.price DESC NULLS LAST, p.symbol"""

# Fills with their round trip. `dust` (USDT) says when a position is flat.
TRIP_FILLS = """
f AS (
  SELECT id, symbol, side, quantity, price, fee, fee_asset, fee_usdt, realized_pnl_usdt, ts, client_order_id,
         CASE WHEN side = 'BUY'
              THEN quantity - CASE WHEN fee_asset = split_part(symbol, '/', 1) THEN fee ELSE 0 END
              ELSE -(quantity + CASE WHEN fee_asset = split_part(symbol, '/', 1) THEN fee ELSE 0 END) END AS dq
    FROM fills
),
s AS (SELECT *, sum(dq) OVER (PARTITION BY symbol ORDER BY ts, id) AS run FROM f),
m AS (SELECT *, run - least(0, min(run) OVER (PARTITION BY symbol ORDER BY ts, id)) AS pos_after FROM s),
b AS (SELECT *, coalesce(lag(pos_after) OVER (PARTITION BY symbol ORDER BY ts, id), 0) AS pos_before FROM m),
o AS (SELECT *, (side = 'BUY' AND pos_before * price <= %(dust)s) AS opens FROM b),
tf AS (SELECT *, sum(CASE WHEN opens THEN 1 ELSE 0 END) OVER (PARTITION BY symbol ORDER BY ts, id) AS trip FROM o)"""

TRIPS = (
    TRIP_FILLS
    + """,
trips AS (
  SELECT symbol, trip, min(id) AS trade_id, min(ts) AS opened_at, max(ts) AS last_fill_at, count(*) AS fills,
         (array_agg(pos_after ORDER BY ts DESC, id DESC))[1] AS quantity_open,
         (array_agg(price ORDER BY ts DESC, id DESC))[1] AS last_fill_price,
         sum(quantity) FILTER (WHERE side = 'BUY') AS entry_quantity,
         sum(quantity * price) FILTER (WHERE side = 'BUY') / nullif(sum(quantity) FILTER (WHERE side = 'BUY'), 0)
           AS entry_price,
         coalesce(sum(quantity) FILTER (WHERE side = 'SELL'), 0) AS exit_quantity,
         sum(quantity * price) FILTER (WHERE side = 'SELL') / nullif(sum(quantity) FILTER (WHERE side = 'SELL'), 0)
           AS exit_price,
         sum(quantity * price + fee_usdt) FILTER (WHERE side = 'BUY') AS entry_cost,
         sum(fee_usdt) AS fees_usdt, sum(realized_pnl_usdt) AS realized_pnl_usdt,
         array_agg(DISTINCT client_order_id) AS client_order_ids
    FROM tf WHERE trip > 0 GROUP BY symbol, trip
),
t AS (
  SELECT *, quantity_open * last_fill_price <= %(dust)s AS closed,
         CASE WHEN quantity_open * last_fill_price <= %(dust)s THEN last_fill_at END AS closed_at
    FROM trips
)"""
)

TRADES = (
    "WITH "
    + TRIPS.lstrip()
    + """
SELECT t.trade_id, t.symbol, t.opened_at, t.closed_at, NOT t.closed AS is_open, t.fills, t.entry_quantity,
       t.entry_price, t.exit_quantity, t.exit_price, t.quantity_open, t.fees_usdt, t.realized_pnl_usdt,
       CASE WHEN t.entry_cost > 0 THEN t.realized_pnl_usdt / t.entry_cost END AS realized_pnl_ratio,
       extract(epoch FROM coalesce(t.closed_at, t.last_fill_at) - t.opened_at) AS duration_s,
       t.client_order_ids
  FROM t
 WHERE (%(symbol)s::text IS NULL OR t.symbol = %(symbol)s)
   AND (%(state)s = 'all' OR (%(state)s = 'open') = NOT t.closed)
   AND (%(since)s::timestamptz IS NULL OR coalesce(t.closed_at, t.last_fill_at) >= %(since)s)
 ORDER BY t.opened_at DESC, t.trade_id DESC
 LIMIT %(limit)s OFFSET %(offset)s"""
)

# Realized curve since `since`: the drawdown is the largest fall of cumulative realized P&L from its peak
# (the peak starts at 0, the window's opening level).
PROFIT = (
    "WITH "
    + TRIPS.lstrip()
    + """,
win AS (SELECT * FROM fills WHERE %(since)s::timestamptz IS NULL OR ts >= %(since)s),
curve AS (SELECT ts, id, sum(realized_pnl_usdt) OVER (ORDER BY ts, id) AS cum FROM win),
peaks AS (SELECT ts, cum, greatest(0, max(cum) OVER (ORDER BY ts, id)) AS peak FROM curve),
dd AS (SELECT peak - cum AS drawdown, peak, cum, ts FROM peaks ORDER BY peak - cum DESC, ts LIMIT 1),
closed AS (SELECT * FROM t WHERE closed AND (%(since)s::timestamptz IS NULL OR closed_at >= %(since)s))
SELECT
  (SELECT coalesce(sum(realized_pnl_usdt), 0) FROM win) AS realized_pnl_usdt,
  (SELECT coalesce(sum(fee_usdt), 0) FROM win) AS fees_usdt,
  (SELECT count(*) FROM win) AS fills,
  (SELECT coalesce(sum(quantity * price), 0) FROM win) AS volume_quote,
  (SELECT min(ts) FROM win) AS first_fill_at,
  (SELECT max(ts) FROM win) AS last_fill_at,
  (SELECT count(*) FROM closed) AS trades_closed,
  (SELECT count(*) FROM t WHERE NOT closed) AS trades_open,
  (SELECT count(*) FROM closed WHERE realized_pnl_usdt > 0) AS wins,
  (SELECT count(*) FROM closed WHERE realized_pnl_usdt < 0) AS losses,
  (SELECT count(*) FROM closed WHERE realized_pnl_usdt = 0) AS draws,
  (SELECT avg(realized_pnl_usdt) FROM closed) AS average_trade_pnl_usdt,
  (SELECT avg(extract(epoch FROM closed_at - opened_at)) FROM closed) AS average_duration_s,
  (SELECT json_build_object('trade_id', trade_id, 'symbol', symbol, 'realized_pnl_usdt', realized_pnl_usdt::text,
                            'closed_at', closed_at)
     FROM closed ORDER BY realized_pnl_usdt DESC, closed_at LIMIT 1) AS best_trade,
  (SELECT json_build_object('trade_id', trade_id, 'symbol', symbol, 'realized_pnl_usdt', realized_pnl_usdt::text,
                            'closed_at', closed_at)
     FROM closed ORDER BY realized_pnl_usdt, closed_at LIMIT 1) AS worst_trade,
  (SELECT coalesce(max(drawdown), 0) FROM dd) AS max_drawdown_usdt,
  (SELECT peak FROM dd) AS drawdown_peak_usdt,
  (SELECT ts FROM dd WHERE drawdown > 0) AS drawdown_trough_at"""
)

PERFORMANCE = (
    "WITH "
    + TRIPS.lstrip()
    + """,
win AS (SELECT * FROM fills WHERE %(since)s::timestamptz IS NULL OR ts >= %(since)s),
per_fill AS (SELECT symbol, sum(realized_pnl_usdt) AS realized_pnl_usdt, sum(fee_usdt) AS fees_usdt,
                    count(*) AS fills, sum(quantity * price) AS volume_quote, max(ts) AS last_fill_at
               FROM win GROUP BY symbol),
per_trip AS (SELECT symbol, count(*) AS trades_closed, count(*) FILTER (WHERE realized_pnl_usdt > 0) AS wins,
                    count(*) FILTER (WHERE realized_pnl_usdt < 0) AS losses,
                    max(realized_pnl_usdt) AS best_trade_pnl_usdt, min(realized_pnl_usdt) AS worst_trade_pnl_usdt
               FROM t WHERE closed AND (%(since)s::timestamptz IS NULL OR closed_at >= %(since)s) GROUP BY symbol)
SELECT pf.symbol, pf.realized_pnl_usdt, pf.fees_usdt, pf.fills, pf.volume_quote, pf.last_fill_at,
       coalesce(pt.trades_closed, 0) AS trades_closed, coalesce(pt.wins, 0) AS wins,
       coalesce(pt.losses, 0) AS losses,
       CASE WHEN pt.trades_closed > 0 THEN pt.wins::numeric / pt.trades_closed END AS win_rate,
       pt.best_trade_pnl_usdt, pt.worst_trade_pnl_usdt
  FROM per_fill pf LEFT JOIN per_trip pt ON pt.symbol = pf.symbol
 ORDER BY pf.realized_pnl_usdt DESC, pf.symbol"""
)

# One row per period (empty periods included), the newest last. `unit`: day | week | month.
PERIODS = (
    "WITH "
    + TRIPS.lstrip()
    + """,
p AS (SELECT generate_series(date_trunc(%(unit)s, %(until)s::timestamptz, 'UTC')
                               - (%(count)s - 1) * (('1 ' || %(unit)s)::interval),
                             date_trunc(%(unit)s, %(until)s::timestamptz, 'UTC'),
                             ('1 ' || %(unit)s)::interval) AS start),
pf AS (SELECT date_trunc(%(unit)s, ts, 'UTC') AS start, sum(realized_pnl_usdt) AS realized_pnl_usdt,
              sum(fee_usdt) AS fees_usdt, count(*) AS fills, sum(quantity * price) AS volume_quote
         FROM fills GROUP BY 1),
pt AS (SELECT date_trunc(%(unit)s, closed_at, 'UTC') AS start, count(*) AS trades_closed,
              count(*) FILTER (WHERE realized_pnl_usdt > 0) AS wins
         FROM t WHERE closed GROUP BY 1)
SELECT (p.start AT TIME ZONE 'UTC')::date AS period_start,
       coalesce(pf.realized_pnl_usdt, 0) AS realized_pnl_usdt, coalesce(pf.fees_usdt, 0) AS fees_usdt,
       coalesce(pf.fills, 0) AS fills, coalesce(pf.volume_quote, 0) AS volume_quote,
       coalesce(pt.trades_closed, 0) AS trades_closed, coalesce(pt.wins, 0) AS wins
  FROM p LEFT JOIN pf ON pf.start = p.start LEFT JOIN pt ON pt.start = p.start
 ORDER BY p.start"""
)

# Same as POSITIONS' totals, for /profit's unrealized part.
UNREALIZED = f"""
WITH {PRICES}, {ASSET_USDT}
SELECT coalesce(sum((p.quantity * px.price - p.cost) * q.price), 0) AS unrealized_pnl_usdt,
       count(*) FILTER (WHERE px.price IS NULL OR q.price IS NULL) AS unpriced_positions,
       count(*) AS open_positions
  FROM positions p LEFT JOIN px ON px.symbol = p.symbol LEFT JOIN asset_px q ON q.asset = split_part(p.symbol, '/', 2)
 WHERE p.quantity > 0"""

# What is blocked and why: ops_api's own per-minute record of refused verdicts, and the breaker log.
REFUSALS = """
SELECT reason, sum(n) AS n FROM refusal_minutes WHERE minute >= date_trunc('minute', %(since)s::timestamptz)
 GROUP BY reason ORDER BY sum(n) DESC, reason"""

BREAKER_TRIPS = """
SELECT breaker, count(*) AS trips, max(ts) AS last_at FROM breaker_log
 WHERE kind = 'tripped' AND ts >= %(since)s GROUP BY breaker ORDER BY count(*) DESC, breaker"""
