-- Layers. Version numbers count per layer from 1 and are never reused, even after a deletion:
-- the last number handed out is kept here.
CREATE TABLE layers (
    name TEXT    PRIMARY KEY,
    last INTEGER NOT NULL
) STRICT;

-- Published layer versions (their zips live in the content-addressed package store).
CREATE TABLE layer_versions (
    name            TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    config          TEXT    NOT NULL,  -- LayerVersion as JSON
    policy          TEXT    NOT NULL DEFAULT '[]',  -- the statements, as JSON
    policy_revision TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (name, version)
) STRICT;
