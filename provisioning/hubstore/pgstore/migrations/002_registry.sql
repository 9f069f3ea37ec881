-- The device registry (hubstore.Registry): enrollment tokens (hashes only),
-- certificates the device CA issued, revocations. Shared by every hub
-- instance; a revocation one instance records is seen by all on their
-- next refresh.

CREATE TABLE enrollment_tokens (
    hash     text        PRIMARY KEY, -- hex SHA-256 of the token
    device   text        NOT NULL,
    created  timestamptz NOT NULL,
    expires  timestamptz NOT NULL,
    used     timestamptz
);

CREATE TABLE device_certs (
    fingerprint text        PRIMARY KEY, -- hex SHA-256 of the DER
    serial      text        NOT NULL UNIQUE,
    device      text        NOT NULL,
    not_after   timestamptz NOT NULL,
    issued      timestamptz NOT NULL,
    der         bytea       NOT NULL
);
CREATE INDEX device_certs_device ON device_certs (device, issued);

CREATE TABLE revocations (
    serial  text        PRIMARY KEY,
    device  text        NOT NULL,
    reason  text        NOT NULL,
    revoked timestamptz NOT NULL
);
