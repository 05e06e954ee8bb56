"""Access keys: the secrets that requests to AWS_IAM function URLs are signed with (SigV4).

Two kinds, kept in the `access_keys` table:

- `user` keys are for callers outside Ember. One is created on the first start and written to
  `<data_dir>/credentials`, an AWS CLI credentials file with the profile `ember`; the access key
  id and secret declared in Settings (EMBER_ACCESS_KEY_ID / EMBER_SECRET_ACCESS_KEY), if any,
  are accepted as well.
- the `function` key, one per server and created once, comes with a session token: every
  function gets it as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, the way
  Lambda hands a function its execution role's temporary credentials. Requests it signs come
  from the role `ember-function` (session `ember`).

There are no identity policies: any known key may call any AWS_IAM URL, as an account's root
user may on AWS.
"""

from __future__ import annotations

import os
import secrets
import string
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ember.settings import Settings

if TYPE_CHECKING:
    from ember.store.base import Store

USER = "user"
FUNCTION = "function"
PROFILE = "ember"
ROLE_NAME = "ember-function"
ROLE_SESSION = "ember"

_ID_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
# AWS's prefixes: AKIA for long-term keys, ASIA for temporary ones (which need their token).
_ID_PREFIX = {USER: "AKIA", FUNCTION: "ASIA"}


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    kind: str
    session_token: str | None = field(default=None, repr=False)  # required with the key when set
    created: float = 0.0


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_key(kind: str) -> AccessKey:
    """A fresh key pair: an id of 4 + 16 uppercase letters and digits, a 40-character secret."""
    token = secrets.token_urlsafe(96) if kind == FUNCTION else None
    return AccessKey(
        _ID_PREFIX[kind] + _random(_ID_ALPHABET, 16),
        _random(_SECRET_ALPHABET, 40),
        kind,
        token,
        time.time(),
    )


def credentials_text(key: AccessKey, region: str) -> str:
    """`key` as an AWS CLI credentials file (profile `ember`)."""
    return (
        f"[{PROFILE}]\n"
        f"aws_access_key_id = {key.access_key_id}\n"
        f"aws_secret_access_key = {key.secret_access_key}\n"
        f"region = {region}\n"
    )


def _write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by its owner only (mode 0600)."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(fd, 0o600)
        out.write(text)
    os.replace(partial, path)


class AccessKeys:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.account_id = settings.account_id
        self.credentials_file = settings.data_dir / "credentials"
        self.declared = (
            AccessKey(settings.access_key_id, settings.secret_access_key, USER)
            if settings.access_key_id and settings.secret_access_key
            else None
        )
        user, created = self._ensure(USER)
        if created or not self.credentials_file.exists():
            _write_private(self.credentials_file, credentials_text(user, settings.region))
        self.function_key, _ = self._ensure(FUNCTION)

    def _ensure(self, kind: str) -> tuple[AccessKey, bool]:
        """The first key of `kind`, created when there is none yet (and whether it was)."""
        existing = self.store.first_access_key(kind)
        if existing is not None:
            return existing, False
        key = new_key(kind)
        self.store.add_access_key(key)
        return key, True

    def find(self, access_key_id: str) -> AccessKey | None:
        if self.declared is not None and self.declared.access_key_id == access_key_id:
            return self.declared
        return self.store.get_access_key(access_key_id)

    def function_environment(self) -> dict[str, str]:
        """The credentials every function finds in its environment."""
        key = self.function_key
        return {
            "AWS_ACCESS_KEY_ID": key.access_key_id,
            "AWS_SECRET_ACCESS_KEY": key.secret_access_key,
            "AWS_SESSION_TOKEN": key.session_token or "",
        }

    def identity(self, key: AccessKey) -> dict[str, Any]:
        """requestContext.authorizer.iam of a function URL request signed with `key`: the
        account's root for user keys, the assumed role `ember-function` for the function key."""
        account = self.account_id
        if key.kind == FUNCTION:
            caller = f"AROA{key.access_key_id[4:]}:{ROLE_SESSION}"
            arn = f"arn:aws:sts::{account}:assumed-role/{ROLE_NAME}/{ROLE_SESSION}"
        else:
            caller, arn = account, f"arn:aws:iam::{account}:root"
        return {
            "accessKey": key.access_key_id,
            "accountId": account,
            "callerId": caller,
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": arn,
            "userId": caller,
        }
