-- risk: the trading-state history, breaker events, and the ledger of fills risk has applied to its book.
-- depends: 0001_foundation

-- Append-only: every trading-state change (ACTIVE / REDUCING / HALTED), why and when.
CREATE TABLE IF NOT EXISTS risk_trading_state_events (
    id        bigserial PRIMARY KEY,
    event_id  text NOT NULL UNIQUE,
    ts        timestamptz NOT NULL,
    state     text NOT NULL CHECK (state IN ('ACTIVE', 'REDUCING', 'HALTED')),
    previous  text NOT NULL CHECK (previous IN ('ACTIVE', 'REDUCING', 'HALTED')),
    reason    text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS risk_trading_state_events_ts_idx ON risk_trading_state_events (ts);

-- Append-only: every breaker trip and clear.
CREATE TABLE IF NOT EXISTS risk_breaker_events (
    id        bigserial PRIMARY KEY,
    event_id  text NOT NULL UNIQUE,
    ts        timestamptz NOT NULL,
    breaker   text NOT NULL,
    symbol    text,
    event     text NOT NULL CHECK (event IN ('tripped', 'cleared')),
    effect    text,
    reason    text NOT NULL,
    until     timestamptz,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS risk_breaker_events_ts_idx ON risk_breaker_events (ts);

-- Each fill applied to risk's book exactly once (a redelivered fill is recognised here), with risk's own
-- realized P&L beside execution's, so the two can be compared afterwards.
CREATE TABLE IF NOT EXISTS risk_fill_ledger (
    exchange          text NOT NULL,
    trade_id          text NOT NULL,
    client_order_id   text NOT NULL,
    symbol            text NOT NULL,
    side              text NOT NULL,
    quantity          numeric NOT NULL,
    price             numeric NOT NULL,
    fee               numeric NOT NULL,
    fee_asset         text NOT NULL,
    realized_own_usdt numeric NOT NULL,
    realized_reported_usdt numeric NOT NULL,
    ts                timestamptz NOT NULL,
    applied_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, trade_id)
);
