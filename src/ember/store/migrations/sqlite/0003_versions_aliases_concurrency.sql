-- Published versions are rows of `functions` (version '1', '2', ...). Version numbers are never
-- reused, even after a version is deleted: the last number handed out is kept here.
CREATE TABLE version_counters (
    function TEXT    PRIMARY KEY,
    last     INTEGER NOT NULL
) STRICT;

-- Aliases: a name pointing at a version, optionally sending a share of traffic to one more.
CREATE TABLE aliases (
    function    TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    description TEXT NOT NULL,
    weights     TEXT NOT NULL,  -- {"<version>": <weight 0-1>} as JSON; {} without routing
    revision_id TEXT NOT NULL,
    PRIMARY KEY (function, name)
) STRICT;

-- Reserved concurrency per function (PutFunctionConcurrency).
CREATE TABLE reserved_concurrency (
    function TEXT    PRIMARY KEY,
    reserved INTEGER NOT NULL
) STRICT;

-- Provisioned concurrency per function version or alias.
CREATE TABLE provisioned_concurrency (
    function      TEXT    NOT NULL,
    qualifier     TEXT    NOT NULL,
    requested     INTEGER NOT NULL,
    last_modified REAL    NOT NULL,
    PRIMARY KEY (function, qualifier)
) STRICT;
