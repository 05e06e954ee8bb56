-- Resource-based policies: one document per function and qualifier ('' = the unqualified function).
CREATE TABLE function_policies (
    function    TEXT NOT NULL,
    qualifier   TEXT NOT NULL,
    revision_id TEXT NOT NULL,
    statements  TEXT NOT NULL,  -- JSON list of statements, in AWS's form and order
    PRIMARY KEY (function, qualifier)
) STRICT;

-- Tags belong to the function (never to a version snapshot), so they survive every update.
CREATE TABLE function_tags (
    function TEXT NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (function, key)
) STRICT;

-- Tags stored on function records before this migration move to their own table.
INSERT INTO function_tags (function, key, value)
SELECT f.name, t.key, CAST(t.value AS TEXT)
FROM functions AS f, json_each(f.config, '$.tags') AS t
WHERE f.version = '$LATEST' AND json_type(f.config, '$.tags') = 'object';

-- Function URLs: at most one per function and qualifier ('' = $LATEST, else an alias).
CREATE TABLE function_urls (
    url_id        TEXT PRIMARY KEY,  -- 32 lowercase alphanumerics, the URL's host label
    function      TEXT NOT NULL,
    qualifier     TEXT NOT NULL,
    config        TEXT NOT NULL,     -- {"AuthType", "Cors", "InvokeMode"}
    created       REAL NOT NULL,
    last_modified REAL NOT NULL,
    UNIQUE (function, qualifier)
) STRICT;
