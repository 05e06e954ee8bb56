"""Short-lived signed URLs for downloading a code package (GetFunction's Code.Location)."""

from __future__ import annotations

import hashlib
import hmac
import time

VALID_SECONDS = 600


def _signature(secret: bytes, sha256: str, expires: int) -> str:
    return hmac.new(secret, f"{sha256}:{expires}".encode(), hashlib.sha256).hexdigest()


def signed_path(secret: bytes, sha256: str, now: float | None = None) -> str:
    expires = int(now if now is not None else time.time()) + VALID_SECONDS
    return f"/_ember/code/{sha256}.zip?expires={expires}&signature={_signature(secret, sha256, expires)}"


def verify(secret: bytes, sha256: str, expires: str, signature: str) -> bool:
    # ASCII digits, and few enough for int() (it refuses 4,300); the signature compared as bytes
    # (compare_digest refuses non-ASCII text).
    if (
        not (expires.isascii() and expires.isdigit())
        or len(expires) > 20
        or int(expires) < time.time()
    ):
        return False
    return hmac.compare_digest(
        _signature(secret, sha256, int(expires)).encode(), signature.encode()
    )
