-- The fill outbox: a journaled fill is published to risk until JetStream has acknowledged it. NULL means
-- "not acknowledged yet"; execution (the writer) republishes those, and risk applies each fill once.
-- Fills journaled before this migration are taken as delivered (republishing years of fills would be a
-- storm; risk's ledger had its own chance to see them).
ALTER TABLE fills ADD COLUMN IF NOT EXISTS published_at timestamptz;
UPDATE fills SET published_at = ts WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS fills_unpublished_idx ON fills (id) WHERE published_at IS NULL;
