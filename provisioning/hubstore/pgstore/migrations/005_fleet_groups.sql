-- Fleet groups stored at the hub (kioskctl fleet group set), beside the
-- static [fleet.groups] of kioskhub's configuration; a stored group of
-- the same name wins.

CREATE TABLE fleet_groups (
    name    text   PRIMARY KEY,
    devices text[] NOT NULL
);
