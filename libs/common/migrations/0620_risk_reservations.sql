-- risk: reservations are rebuilt from the journal by client order id (the fills risk applied per order).
-- depends: 0200_risk

CREATE INDEX IF NOT EXISTS risk_fill_ledger_client_order_id_idx ON risk_fill_ledger (client_order_id);
