-- Execution: what the journal needs beyond the foundation tables (never edits 0001).
-- depends: 0001_foundation

-- When the order left (NULL: journaled, never sent), who sent it, what for, and until when it may be sent.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS sent_at timestamptz;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS sent_by text;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS expires_at timestamptz;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS purpose text NOT NULL DEFAULT 'verdict';
ALTER TABLE orders ADD COLUMN IF NOT EXISTS locked numeric NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS trades integer NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS resting_expires_at timestamptz;
CREATE INDEX IF NOT EXISTS orders_symbol_status_idx ON orders (symbol, status);

ALTER TABLE fills ADD COLUMN IF NOT EXISTS is_maker boolean NOT NULL DEFAULT false;
ALTER TABLE fills ADD COLUMN IF NOT EXISTS fee_usdt numeric NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS fills_client_order_id_idx ON fills (client_order_id);

-- The total cost of the quantity held (fees included): average_cost = cost / quantity without rounding drift.
ALTER TABLE positions ADD COLUMN IF NOT EXISTS cost numeric NOT NULL DEFAULT 0;

-- Every reconciliation with the exchange and what it found.
CREATE TABLE IF NOT EXISTS exec_reconciliations (
    id          bigserial PRIMARY KEY,
    ts          timestamptz NOT NULL DEFAULT now(),
    mode        text NOT NULL,
    instance    text NOT NULL,
    ok          boolean NOT NULL,
    findings    jsonb NOT NULL DEFAULT '[]'::jsonb
);
