-- Kill switch: releases refused where they were to be applied (no valid operator authority), one row per
-- (command, refusing service). Kept apart from kill_switch_audit, whose last row is the standing state
-- risk reconciles with the bus: a refused release never was the state.
-- depends: 0001_foundation
CREATE TABLE IF NOT EXISTS kill_switch_refusals (
    id          bigserial PRIMARY KEY,
    command_id  text NOT NULL,
    ts          timestamptz NOT NULL,
    action      text NOT NULL,
    reason      text NOT NULL,
    actor       text NOT NULL,
    refused_by  text NOT NULL,
    why         text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (command_id, refused_by)
);
