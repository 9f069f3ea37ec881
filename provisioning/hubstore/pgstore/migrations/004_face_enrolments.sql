-- The bank's enrolled face references (hubstore.EnrolmentStore): one per
-- eID identity (the document driver's holder id, one eID per person),
-- written by staff (kioskctl hub face enroll/remove) and answered to
-- kiosks encrypted to their one-time key (docs/mqtt.md, "Face reference").
-- Personal data: never logged, not pruned with the transactions.

CREATE TABLE face_enrolments (
    identity text        PRIMARY KEY,
    face     bytea       NOT NULL, -- a JPEG of at most 40 KiB (hub.MaxFaceRef)
    enrolled timestamptz NOT NULL
);
