-- Fencing epochs of the single writers (libs/common/writer_lock.py). Taking a role's writer lock increments
-- its epoch on the lock's own session, so every holder of the lock has an epoch no earlier holder had.
-- Execution's journal writes check, inside the statement that makes them, that its own epoch is still the
-- current one, and the journal insert of a verdict's order that the verdict's `risk_epoch` is still risk's:
-- a writer deposed while paused (SIGSTOP) can neither journal nor send once it resumes.
-- `fenced_verdicts`: approvals refused because a later risk writer had taken over (issued by a deposed one).
-- depends: 0300_execution
CREATE TABLE IF NOT EXISTS writer_epochs (
    role      text PRIMARY KEY,
    epoch     bigint NOT NULL CHECK (epoch > 0),
    holder    text NOT NULL DEFAULT '',
    pid       integer,
    taken_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS fenced_verdicts (
    id             bigserial PRIMARY KEY,
    verdict_id     text NOT NULL,
    signal_id      text,
    symbol         text NOT NULL,
    risk_epoch     bigint NOT NULL,
    current_epoch  bigint NOT NULL,
    issued_by      text NOT NULL DEFAULT '',
    refused_by     text NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
