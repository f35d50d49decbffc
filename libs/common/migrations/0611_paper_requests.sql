-- The paper exchange's own record of every order request it received: one row per request and no unique
-- key, so a second send of one order is a second row (the journal's unique keys cannot hide it). Written
-- in the same statement as the request's result (the paper book lives in memory: an interrupted request
-- never reached it).
CREATE TABLE IF NOT EXISTS paper_requests (
    id               bigserial PRIMARY KEY,
    client_order_id  text NOT NULL,
    symbol           text NOT NULL,
    side             text NOT NULL,
    quantity         numeric NOT NULL,
    received_at      timestamptz NOT NULL,
    instance         text NOT NULL
);
CREATE INDEX IF NOT EXISTS paper_requests_client_order_id_idx ON paper_requests (client_order_id);
