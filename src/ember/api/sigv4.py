"""SigV4 verification of requests to AWS_IAM function URLs.

A request is signed in its Authorization header or in its query string (a presigned URL).
`authenticate` checks, in order:

1. the form: algorithm `AWS4-HMAC-SHA256`, credential scope
   `<key>/<yyyymmdd>/<this region>/lambda/aws4_request`, `host` among the signed headers, a
   64-hex-digit signature;
2. the time: X-Amz-Date on the scope's day and within 15 minutes of now (presigned URLs: from
   15 minutes before X-Amz-Date until X-Amz-Expires seconds after it);
3. the key: known, with the session token exactly when the key has one (the function key);
4. the payload: `x-amz-content-sha256`, when sent, is the body's SHA-256 or `UNSIGNED-PAYLOAD`;
5. the signature, recomputed with botocore's signer over the request as received and compared
   in constant time.

The canonical request is built from the raw path as sent (dot segments and empty segments
removed, then percent-encoded once more, as AWS does for every service but S3), the query
decoded and re-encoded per the spec and sorted (without X-Amz-Signature), exactly the
SignedHeaders with their received values, and the payload hash: `x-amz-content-sha256` when
sent, else the body's SHA-256. A presigned URL may also have been signed over
`UNSIGNED-PAYLOAD` (S3's convention, which many presigning tools follow for every service),
while botocore's SigV4QueryAuth hashes the body; either verifies.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from botocore.auth import UNSIGNED_PAYLOAD, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from ember.functions.access_keys import AccessKey

SERVICE = "lambda"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 15 * 60

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*SignedHeaders=(?P<signed>[^,\s]+)"
    r"\s*,\s*Signature=(?P<signature>[^,\s]+)"
)
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")


class Refused(Exception):
    """Why a request's signature is not accepted (for the server's log, never for the caller)."""


@dataclass(frozen=True)
class HttpRequest:
    """A request as received: the raw path and query exactly as sent."""

    method: str
    raw_path: bytes
    raw_query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any], body: bytes) -> HttpRequest:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        return cls(
            scope["method"], raw_path, scope.get("query_string", b""), list(scope["headers"]), body
        )

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower().encode("latin-1")
        return [value.decode("latin-1") for key, value in self.headers if key.lower() == wanted]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    def query(self) -> list[tuple[str, str]]:
        """The query's (name, value) pairs, percent-decoded (a `+` stays a `+`)."""
        pairs = []
        for part in self.raw_query.decode("latin-1").split("&"):
            if part:
                name, _, value = part.partition("=")
                pairs.append((unquote(name), unquote(value)))
        return pairs


@dataclass(frozen=True)
class Signature:
    """The SigV4 parameters a request carries."""

    access_key: str
    scope_date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    value: str
    amz_date: str
    expires: int | None  # seconds; presigned URLs only
    security_token: str | None

    @property
    def presigned(self) -> bool:
        return self.expires is not None


def parse(request: HttpRequest) -> Signature:
    """The request's signature parameters, from its Authorization header or its query."""
    query = dict(request.query())
    header = request.header("authorization")
    if header:
        found = _AUTHORIZATION.fullmatch(header.strip())
        if found is None:
            raise Refused("the Authorization header is not an AWS4-HMAC-SHA256 signature")
        credential, signed, value = found["credential"], found["signed"], found["signature"]
        amz_date = request.header("x-amz-date") or ""
        expires = None
        token = request.header("x-amz-security-token")
    elif "X-Amz-Signature" in query:
        if query.get("X-Amz-Algorithm") != ALGORITHM:
            raise Refused(f"X-Amz-Algorithm must be {ALGORITHM}")
        credential = query.get("X-Amz-Credential", "")
        signed = query.get("X-Amz-SignedHeaders", "")
        value = query["X-Amz-Signature"]
        amz_date = query.get("X-Amz-Date", "")
        try:
            expires = int(query.get("X-Amz-Expires", str(MAX_SKEW_S)))
        except ValueError:
            raise Refused("X-Amz-Expires is not a number") from None
        token = query.get("X-Amz-Security-Token")
    else:
        raise Refused("the request is not signed")
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise Refused("the credential scope is malformed")
    return Signature(
        parts[0],
        parts[1],
        parts[2],
        parts[3],
        tuple(signed.lower().split(";")),
        value,
        amz_date,
        expires,
        token,
    )


def check_form(signature: Signature, region: str, now: float) -> None:
    """Refuse a signature that is not for `lambda` in `region`, malformed, or out of date."""
    if signature.region != region or signature.service != SERVICE:
        raise Refused(f"the credential scope must be for region {region} and service {SERVICE}")
    if "host" not in signature.signed_headers:
        raise Refused("the host header must be signed")
    if not _SIGNATURE.fullmatch(signature.value):
        raise Refused("the signature is malformed")
    if (
        not _AMZ_DATE.fullmatch(signature.amz_date)
        or signature.amz_date[:8] != signature.scope_date
    ):
        raise Refused("X-Amz-Date is missing or does not match the credential scope")
    signed_at = calendar.timegm(time.strptime(signature.amz_date, "%Y%m%dT%H%M%SZ"))
    if signature.expires is None:
        if abs(now - signed_at) > MAX_SKEW_S:
            raise Refused("the signature is too old or from the future")
    elif not signed_at - MAX_SKEW_S <= now <= signed_at + signature.expires:
        raise Refused("the presigned URL has expired")


def check_token(signature: Signature, key: AccessKey) -> None:
    """Temporary credentials need their session token; long-term keys take none."""
    sent = signature.security_token
    if key.session_token is None:
        if sent is not None:
            raise Refused("a security token was sent with a long-term access key")
    elif sent is None or not hmac.compare_digest(sent.encode(), key.session_token.encode()):
        raise Refused("the security token is missing or does not belong to the access key")


def payload_hashes(request: HttpRequest, signature: Signature) -> list[str]:
    """The payload hashes the request may have been signed over."""
    body_hash = hashlib.sha256(request.body).hexdigest()
    declared = request.header("x-amz-content-sha256")
    if declared is not None:
        if declared != UNSIGNED_PAYLOAD and declared.lower() != body_hash:
            raise Refused("x-amz-content-sha256 is not the SHA-256 of the body")
        return [declared]
    return [UNSIGNED_PAYLOAD, body_hash] if signature.presigned else [body_hash]


def canonical_query(request: HttpRequest) -> str:
    """The query as SigV4 signs it: names and values URI-encoded, sorted, no X-Amz-Signature."""
    pairs = sorted(
        (quote(name, safe="-_.~"), quote(value, safe="-_.~"))
        for name, value in request.query()
        if name != "X-Amz-Signature"
    )
    return "&".join(f"{name}={value}" for name, value in pairs)


def signed_header_values(request: HttpRequest, signature: Signature) -> HTTPHeaders:
    headers = HTTPHeaders()
    for name in dict.fromkeys(signature.signed_headers):
        values = request.header_values(name)
        if not values:
            raise Refused(f"the signed header {name!r} is missing")
        for value in values:
            headers[name] = value
    return headers


class _Signer(SigV4Auth):
    """botocore's SigV4 signer, given the request's own signed headers, query and payload hash
    instead of choosing them as it does for requests it sends."""

    def __init__(
        self, key: AccessKey, region: str, headers: HTTPHeaders, query: str, payload_hash: str
    ) -> None:
        super().__init__(Credentials(key.access_key_id, key.secret_access_key), SERVICE, region)
        self._headers = headers
        self._query = query
        self._payload_hash = payload_hash

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return self._headers

    def canonical_query_string(self, request: AWSRequest) -> str:
        return self._query

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash

    def sign(self, request: AWSRequest) -> str:
        return self.signature(
            self.string_to_sign(request, self.canonical_request(request)), request
        )


def expected_signatures(
    request: HttpRequest, signature: Signature, key: AccessKey, region: str
) -> list[str]:
    """What `key` signs `request` to, for each payload hash the request may use."""
    headers = signed_header_values(request, signature)
    query = canonical_query(request)
    unsigned = AWSRequest(
        method=request.method, url="http://ember" + request.raw_path.decode("latin-1")
    )
    unsigned.context["timestamp"] = signature.amz_date
    return [
        _Signer(key, region, headers, query, payload_hash).sign(unsigned)
        for payload_hash in payload_hashes(request, signature)
    ]


def authenticate(
    request: HttpRequest,
    find_key: Callable[[str], AccessKey | None],
    region: str,
    now: float | None = None,
) -> AccessKey:
    """The access key `request` is validly signed with; raises Refused otherwise."""
    signature = parse(request)
    check_form(signature, region, time.time() if now is None else now)
    key = find_key(signature.access_key)
    if key is None:
        raise Refused(f"the access key {signature.access_key} is unknown")
    check_token(signature, key)
    expected = expected_signatures(request, signature, key, region)
    if not any(hmac.compare_digest(candidate, signature.value) for candidate in expected):
        raise Refused(f"the signature does not match (access key {signature.access_key})")
    return key
