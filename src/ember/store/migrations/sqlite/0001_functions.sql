-- Functions and their versions. A row per (function, version); '$LATEST' is the mutable one.
CREATE TABLE functions (
    name        TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    revision_id TEXT    NOT NULL,
    code_sha256 TEXT    NOT NULL,
    code_size   INTEGER NOT NULL,
    config      TEXT    NOT NULL,  -- FunctionRecord as JSON
    PRIMARY KEY (name, version)
) STRICT;

-- Content-addressed code packages, counted by the function versions that use them.
CREATE TABLE code_packages (
    sha256      TEXT    PRIMARY KEY,
    size        INTEGER NOT NULL,
    unzipped    INTEGER NOT NULL,
    created_at  REAL    NOT NULL
) STRICT;
