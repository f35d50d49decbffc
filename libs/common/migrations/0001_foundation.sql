-- Foundation schema: account/state store, kill-switch audit, the order journal, fills, positions,
-- and the service records that `bnml status` reads.
-- depends:

CREATE TABLE IF NOT EXISTS kv_state (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Append-only: every engage/release, who, why and when.
CREATE TABLE IF NOT EXISTS kill_switch_audit (
    id          bigserial PRIMARY KEY,
    command_id  text NOT NULL UNIQUE,
    ts          timestamptz NOT NULL,
    action      text NOT NULL CHECK (action IN ('engage', 'release')),
    engaged     boolean NOT NULL,
    reason      text NOT NULL,
    actor       text NOT NULL,
    flatten     boolean NOT NULL DEFAULT false,
    recorded_by text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- The order journal: a row is committed before anything is sent; the client order id is the idempotency key.
CREATE TABLE IF NOT EXISTS orders (
    client_order_id   text PRIMARY KEY,
    verdict_id        text NOT NULL UNIQUE,
    signal_id         text,
    symbol            text NOT NULL,
    side              text NOT NULL CHECK (side IN ('BUY', 'SELL')),
    order_type        text NOT NULL DEFAULT 'MARKET',
    quantity          numeric NOT NULL CHECK (quantity > 0),
    price_limit       numeric,
    status            text NOT NULL,
    filled_quantity   numeric NOT NULL DEFAULT 0,
    average_price     numeric,
    fee_usdt          numeric NOT NULL DEFAULT 0,
    exchange          text NOT NULL DEFAULT 'paper',
    exchange_order_id text,
    mode              text NOT NULL DEFAULT 'paper',
    reason            text NOT NULL DEFAULT '',
    tick_ts           timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_created_at_idx ON orders (created_at);
CREATE INDEX IF NOT EXISTS orders_open_idx ON orders (status) WHERE status IN ('SUBMITTED', 'ACCEPTED', 'PARTIALLY_FILLED', 'UNKNOWN');

CREATE TABLE IF NOT EXISTS fills (
    id               bigserial PRIMARY KEY,
    exchange         text NOT NULL,
    trade_id         text NOT NULL,
    client_order_id  text NOT NULL REFERENCES orders (client_order_id),
    symbol           text NOT NULL,
    side             text NOT NULL,
    quantity         numeric NOT NULL,
    price            numeric NOT NULL,
    fee              numeric NOT NULL,
    fee_asset        text NOT NULL,
    realized_pnl_usdt numeric NOT NULL DEFAULT 0,
    ts               timestamptz NOT NULL,
    UNIQUE (exchange, trade_id)
);
CREATE INDEX IF NOT EXISTS fills_ts_idx ON fills (ts);

CREATE TABLE IF NOT EXISTS positions (
    symbol        text PRIMARY KEY,
    quantity      numeric NOT NULL DEFAULT 0,
    average_cost  numeric NOT NULL DEFAULT 0,
    realized_pnl_usdt numeric NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS balances (
    asset       text PRIMARY KEY,
    free        numeric NOT NULL CHECK (free >= 0),
    locked      numeric NOT NULL DEFAULT 0 CHECK (locked >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Totals since the journal began, fed from heartbeats (ops_api), read by `bnml status`.
CREATE TABLE IF NOT EXISTS service_counters (
    service   text NOT NULL,
    name      text NOT NULL,
    value     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (service, name)
);

CREATE TABLE IF NOT EXISTS service_instances (
    service       text NOT NULL,
    instance      text NOT NULL,
    last_counters jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_seen     timestamptz NOT NULL,
    status        text NOT NULL,
    PRIMARY KEY (service, instance)
);
