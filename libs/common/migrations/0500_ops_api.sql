-- depends: 0001_foundation
-- ops_api: what the DoD reports are computed from (heartbeat coverage, market staleness, alerts and their
-- delivery, breakers, trading state, kill-switch events, refusals), incidents, backups, the API audit
-- trail and the stored DoD reports.

-- Heartbeats arrive ~1/s per service: one row per (service, UTC minute) keeps 7 days at ~50k rows.
CREATE TABLE IF NOT EXISTS heartbeat_minutes (
    service   text NOT NULL,
    minute    timestamptz NOT NULL,
    beats     integer NOT NULL DEFAULT 0,
    ok_beats  integer NOT NULL DEFAULT 0,
    last_ts   timestamptz NOT NULL,
    PRIMARY KEY (service, minute)
);
CREATE INDEX IF NOT EXISTS heartbeat_minutes_minute_idx ON heartbeat_minutes (minute);

-- Market data freshness transitions (fresh <-> stale) per symbol, not every status message.
CREATE TABLE IF NOT EXISTS market_status_events (
    id      bigserial PRIMARY KEY,
    symbol  text NOT NULL,
    status  text NOT NULL CHECK (status IN ('fresh', 'stale')),
    age_s   double precision NOT NULL DEFAULT 0,
    reason  text NOT NULL DEFAULT '',
    ts      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS market_status_events_ts_idx ON market_status_events (ts);
CREATE INDEX IF NOT EXISTS market_status_events_symbol_idx ON market_status_events (symbol, ts);

CREATE TABLE IF NOT EXISTS alerts (
    id         text PRIMARY KEY,
    ts         timestamptz NOT NULL,
    severity   text NOT NULL,
    source     text NOT NULL,
    title      text NOT NULL,
    detail     text NOT NULL DEFAULT '',
    dedup_key  text NOT NULL DEFAULT '',
    delivered  text NOT NULL DEFAULT 'pending',  -- pending | sent | suppressed | failed | no_channel
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alerts_ts_idx ON alerts (ts);

CREATE TABLE IF NOT EXISTS alert_deliveries (
    id        bigserial PRIMARY KEY,
    alert_id  text NOT NULL,
    channel   text NOT NULL,
    ok        boolean NOT NULL,
    error     text NOT NULL DEFAULT '',
    ts        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alert_deliveries_ts_idx ON alert_deliveries (ts);

CREATE TABLE IF NOT EXISTS breaker_log (
    id       bigserial PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    kind     text NOT NULL CHECK (kind IN ('tripped', 'cleared')),
    breaker  text NOT NULL,
    effect   text,
    symbol   text,
    reason   text NOT NULL DEFAULT '',
    ts       timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS breaker_log_ts_idx ON breaker_log (ts);

CREATE TABLE IF NOT EXISTS trading_state_log (
    id       bigserial PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    state    text NOT NULL,
    previous text NOT NULL,
    reason   text NOT NULL DEFAULT '',
    ts       timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS trading_state_log_ts_idx ON trading_state_log (ts);

CREATE TABLE IF NOT EXISTS kill_switch_log (
    id         bigserial PRIMARY KEY,
    command_id text NOT NULL UNIQUE,
    action     text NOT NULL,
    reason     text NOT NULL,
    actor      text NOT NULL,
    flatten    boolean NOT NULL DEFAULT false,
    ts         timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS kill_switch_log_ts_idx ON kill_switch_log (ts);

-- Refused verdicts counted per minute and reason (ops_api listens to risk.verdict.*).
CREATE TABLE IF NOT EXISTS refusal_minutes (
    minute  timestamptz NOT NULL,
    reason  text NOT NULL,
    n       integer NOT NULL,
    PRIMARY KEY (minute, reason)
);

CREATE TABLE IF NOT EXISTS incidents (
    id          bigserial PRIMARY KEY,
    severity    text NOT NULL CHECK (severity IN ('SEV-1', 'SEV-2', 'SEV-3')),
    kind        text NOT NULL,
    key         text NOT NULL,
    title       text NOT NULL,
    opened_at   timestamptz NOT NULL,
    resolved_at timestamptz,
    resolution  text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS incidents_opened_idx ON incidents (opened_at);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_open_key_idx ON incidents (kind, key) WHERE resolved_at IS NULL;

CREATE TABLE IF NOT EXISTS incident_events (
    id          bigserial PRIMARY KEY,
    incident_id bigint NOT NULL REFERENCES incidents (id),
    ts          timestamptz NOT NULL,
    source      text NOT NULL,
    summary     text NOT NULL
);
CREATE INDEX IF NOT EXISTS incident_events_incident_idx ON incident_events (incident_id, ts);

CREATE TABLE IF NOT EXISTS backups (
    id          bigserial PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    ok          boolean NOT NULL,
    path        text NOT NULL DEFAULT '',
    size_bytes  bigint NOT NULL DEFAULT 0,
    error       text NOT NULL DEFAULT '',
    trigger     text NOT NULL DEFAULT 'schedule'
);
CREATE INDEX IF NOT EXISTS backups_started_idx ON backups (started_at);

-- Every control action and every refused attempt on the ops API. Append-only (trigger below).
CREATE TABLE IF NOT EXISTS api_audit (
    id          bigserial PRIMARY KEY,
    ts          timestamptz NOT NULL DEFAULT now(),
    role        text NOT NULL,
    client      text NOT NULL,
    method      text NOT NULL,
    path        text NOT NULL,
    action      text NOT NULL,
    outcome     text NOT NULL,
    status_code integer NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS api_audit_ts_idx ON api_audit (ts);

CREATE OR REPLACE FUNCTION api_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'api_audit is append-only';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS api_audit_no_change ON api_audit;
CREATE TRIGGER api_audit_no_change BEFORE UPDATE OR DELETE ON api_audit
    FOR EACH ROW EXECUTE FUNCTION api_audit_append_only();

CREATE TABLE IF NOT EXISTS dod_reports (
    day          date PRIMARY KEY,
    passed       boolean NOT NULL,
    report       jsonb NOT NULL,
    generated_at timestamptz NOT NULL DEFAULT now()
);
