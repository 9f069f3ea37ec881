-- Fleet jobs (provisioning/fleet.Store): the operator's jobs and one
-- execution per target device, shared by every hub instance. A status
-- update locks its execution row, so two instances handling statuses of one
-- execution apply the same rule (provisioning/fleet.Apply) one after the
-- other.

CREATE TABLE jobs (
    id            text        PRIMARY KEY,
    kind          text        NOT NULL,
    doc           text        NOT NULL DEFAULT '',
    grp           text        NOT NULL DEFAULT '',
    devices       text[]      NOT NULL,
    created       timestamptz NOT NULL,
    expires       timestamptz NOT NULL,
    per_minute    integer     NOT NULL DEFAULT 0,
    in_flight     integer     NOT NULL DEFAULT 0,
    abort_percent integer     NOT NULL DEFAULT 0,
    min_finished  integer     NOT NULL DEFAULT 0,
    state         text        NOT NULL
);
CREATE INDEX jobs_created ON jobs (created);

CREATE TABLE job_executions (
    job_id   text        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    device   text        NOT NULL,
    status   text        NOT NULL,
    reason   text        NOT NULL DEFAULT '',
    result   text        NOT NULL DEFAULT '',
    seq      integer     NOT NULL DEFAULT 0,
    offers   integer     NOT NULL DEFAULT 0,
    updated  timestamptz NOT NULL,
    warnings text[]      NOT NULL DEFAULT '{}',
    PRIMARY KEY (job_id, device)
);
-- Re-offers on reconnect look up a device's unfinished executions.
CREATE INDEX job_executions_device ON job_executions (device, status);
