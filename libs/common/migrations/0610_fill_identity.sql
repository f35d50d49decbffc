-- Binance trade ids are unique per symbol only: a fill is identified by (exchange, symbol, trade_id),
-- in execution's journal and in risk's fill ledger alike (two symbols may report the same trade id).
ALTER TABLE fills DROP CONSTRAINT IF EXISTS fills_exchange_trade_id_key;
ALTER TABLE fills ADD CONSTRAINT fills_exchange_symbol_trade_id_key UNIQUE (exchange, symbol, trade_id);

ALTER TABLE risk_fill_ledger DROP CONSTRAINT IF EXISTS risk_fill_ledger_pkey;
ALTER TABLE risk_fill_ledger ADD CONSTRAINT risk_fill_ledger_pkey PRIMARY KEY (exchange, symbol, trade_id);
