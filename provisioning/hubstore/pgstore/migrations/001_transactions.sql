-- The hub's transaction state (hubstore.Store). Primary keys carry the
-- correctness: one row per (terminal, tx id) however many instances
-- receive a report, one answer per authorization request, one share of the
-- daily limit per transaction.

CREATE TABLE transactions (
    terminal    text        NOT NULL,
    tx_id       text        NOT NULL,
    amount      bigint      NOT NULL,
    currency    text        NOT NULL,
    decision    text        NOT NULL,
    auth_mode   text        NOT NULL,
    received    timestamptz NOT NULL,
    applied_by  text        NOT NULL,
    duplicates  integer     NOT NULL DEFAULT 0,
    report      jsonb       NOT NULL,
    envelope    bytea       NOT NULL, -- the signed evidence, byte for byte as received
    cert        text        NOT NULL,
    PRIMARY KEY (terminal, tx_id)
);
-- List order and retention.
CREATE INDEX transactions_received ON transactions (received, terminal, tx_id);

CREATE TABLE authorizations (
    terminal  text        NOT NULL,
    tx_id     text        NOT NULL,
    merchant  text        NOT NULL,
    amount    bigint      NOT NULL,
    currency  text        NOT NULL,
    approved  boolean     NOT NULL,
    reason    text        NOT NULL,
    ref       text        NOT NULL,
    decided   timestamptz NOT NULL,
    day       date, -- the day whose limit an approval counts against
    PRIMARY KEY (terminal, tx_id)
);
CREATE INDEX authorizations_decided ON authorizations (decided);

CREATE TABLE daily_usage (
    terminal text   NOT NULL,
    day      date   NOT NULL,
    tx_id    text   NOT NULL,
    amount   bigint NOT NULL,
    PRIMARY KEY (terminal, day, tx_id)
);
CREATE INDEX daily_usage_day ON daily_usage (day);
