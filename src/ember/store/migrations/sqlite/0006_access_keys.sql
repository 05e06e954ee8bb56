-- Access keys: the secrets SigV4 signatures on AWS_IAM function URLs are verified with.
-- 'user' keys are for callers outside (the first is written to <data_dir>/credentials), the
-- 'function' key is what every function finds in its environment, with its session token.
CREATE TABLE access_keys (
    access_key_id     TEXT PRIMARY KEY,
    secret_access_key TEXT NOT NULL,
    session_token     TEXT,              -- required with the key when set (temporary credentials)
    kind              TEXT NOT NULL CHECK (kind IN ('user', 'function')),
    created           REAL NOT NULL
) STRICT;
