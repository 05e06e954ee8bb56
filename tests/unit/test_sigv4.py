"""The SigV4 verifier of AWS_IAM function URLs, on requests botocore signs at a fixed time."""

from __future__ import annotations

import calendar
import dataclasses
import datetime
from typing import Any
from urllib.parse import urlsplit

import botocore.auth
import pytest
from botocore.auth import S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ember.api.sigv4 import HttpRequest, Refused, authenticate
from ember.functions.access_keys import FUNCTION, USER, AccessKey

REGION = "us-east-1"
SIGNED_AT = datetime.datetime(2026, 3, 14, 15, 9, 26)
NOW = calendar.timegm(SIGNED_AT.timetuple()) + 30.0
USER_KEY = AccessKey("AKIAEMBERTESTKEY0001", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", USER)
ROLE_KEY = AccessKey(
    "ASIAEMBERTESTKEY0002", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY", FUNCTION, "the-token"
)
BASE = "http://abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.localhost:9000"


@pytest.fixture(autouse=True)
def frozen_signing_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: SIGNED_AT)


def find(access_key_id: str) -> AccessKey | None:
    return {k.access_key_id: k for k in (USER_KEY, ROLE_KEY)}.get(access_key_id)


def received(request: AWSRequest) -> HttpRequest:
    """The request as the server receives it."""
    assert request.url is not None and request.method is not None
    parts = urlsplit(request.url)
    headers = [(b"host", parts.netloc.encode())]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in request.headers.items()]
    body = request.body.encode() if isinstance(request.body, str) else request.body or b""
    return HttpRequest(request.method, parts.path.encode(), parts.query.encode(), headers, body)


def signed(
    method: str = "GET",
    url: str = BASE + "/",
    body: bytes = b"",
    key: AccessKey = USER_KEY,
    headers: dict[str, str] | None = None,
    region: str = REGION,
    service: str = "lambda",
) -> HttpRequest:
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    credentials = Credentials(key.access_key_id, key.secret_access_key, key.session_token)
    SigV4Auth(credentials, service, region).add_auth(request)
    return received(request)


def presigned(
    url: str = BASE + "/",
    expires: int = 300,
    key: AccessKey = USER_KEY,
    signer: type[SigV4QueryAuth] = SigV4QueryAuth,
) -> HttpRequest:
    request = AWSRequest(method="GET", url=url)
    credentials = Credentials(key.access_key_id, key.secret_access_key, key.session_token)
    signer(credentials, "lambda", REGION, expires=expires).add_auth(request)
    return received(request)


def check(request: HttpRequest, now: float = NOW) -> AccessKey:
    return authenticate(request, find, REGION, now=now)


def tampered(request: HttpRequest, **changes: Any) -> HttpRequest:
    return dataclasses.replace(request, **changes)


# -- accepted ------------------------------------------------------------------------------------


def test_a_signed_get_verifies() -> None:
    assert check(signed()) == USER_KEY


def test_a_signed_post_with_a_body_and_a_query_verifies() -> None:
    request = signed(
        "POST",
        BASE + "/orders/7?b=2&a=1&empty=",
        b'{"n": 1}',
        headers={"Content-Type": "application/json", "X-Custom": "  spaced   out  "},
    )
    assert b"content-type" in dict(request.headers)
    assert check(request) == USER_KEY


def test_paths_and_queries_are_canonicalized_as_aws_does() -> None:
    # botocore encodes the already-encoded path once more and signs the query as sent.
    request = signed("GET", BASE + "/a%20b/./c//d/?q=x%2Fy&z=%E2%9C%93")
    assert check(request) == USER_KEY


def test_the_path_style_url_signs_its_whole_path() -> None:
    assert check(
        signed(url="http://127.0.0.1:9000/_ember/url/abcdefghijklmnopqrstuvwxyz012345/hi?x=1")
    )


def test_presigned_urls_verify_with_the_body_hash_or_unsigned_payload() -> None:
    assert check(presigned(BASE + "/report?format=csv")) == USER_KEY
    assert check(presigned(BASE + "/report", signer=S3SigV4QueryAuth)) == USER_KEY


def test_an_unsigned_payload_header_is_honoured() -> None:
    request = signed(
        "POST", BASE + "/", b"anything", headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    )
    assert check(tampered(request, body=b"something else")) == USER_KEY


def test_the_function_key_needs_its_session_token() -> None:
    assert check(signed(key=ROLE_KEY)) == ROLE_KEY
    assert check(presigned(key=ROLE_KEY)) == ROLE_KEY
    with pytest.raises(Refused, match="security token"):
        check(signed(key=AccessKey(ROLE_KEY.access_key_id, ROLE_KEY.secret_access_key, FUNCTION)))
    with pytest.raises(Refused, match="security token"):
        check(
            signed(
                key=AccessKey(
                    ROLE_KEY.access_key_id, ROLE_KEY.secret_access_key, FUNCTION, "forged"
                )
            )
        )
    with pytest.raises(Refused, match="long-term"):
        check(
            signed(
                key=AccessKey(USER_KEY.access_key_id, USER_KEY.secret_access_key, USER, "a-token")
            )
        )


# -- refused -------------------------------------------------------------------------------------


def test_a_wrong_secret_or_an_unknown_key_is_refused() -> None:
    with pytest.raises(Refused, match="does not match"):
        check(signed(key=AccessKey(USER_KEY.access_key_id, "not-the-secret", USER)))
    with pytest.raises(Refused, match="unknown"):
        check(signed(key=AccessKey("AKIANOBODYKNOWSTHIS0", "whatever", USER)))


def test_changes_after_signing_are_refused() -> None:
    request = signed("POST", BASE + "/pay?amount=10", b'{"to": "alice"}', headers={"X-Custom": "1"})
    assert check(request)
    headers = [(k, b"2" if k == b"x-custom" else v) for k, v in request.headers]
    for changed in (
        tampered(request, body=b'{"to": "mallory"}'),
        tampered(request, raw_query=b"amount=1000"),
        tampered(request, raw_path=b"/refund"),
        tampered(request, method="PUT"),
        tampered(request, headers=headers),
    ):
        with pytest.raises(Refused, match="does not match"):
            check(changed)


def test_a_content_hash_that_is_not_the_bodys_is_refused() -> None:
    request = signed("POST", BASE + "/", b"payload", headers={"X-Amz-Content-SHA256": "0" * 64})
    with pytest.raises(Refused, match="x-amz-content-sha256"):
        check(request)


def test_a_missing_signed_header_is_refused() -> None:
    request = signed(headers={"X-Custom": "1"})
    with pytest.raises(Refused, match="'x-custom' is missing"):
        check(tampered(request, headers=[(k, v) for k, v in request.headers if k != b"x-custom"]))


def test_stale_and_expired_signatures_are_refused() -> None:
    assert check(signed(), now=NOW + 14 * 60)
    with pytest.raises(Refused, match="too old"):
        check(signed(), now=NOW + 16 * 60)
    with pytest.raises(Refused, match="from the future"):
        check(signed(), now=NOW - 16 * 60)
    assert check(presigned(expires=3600), now=NOW + 3000)
    with pytest.raises(Refused, match="expired"):
        check(presigned(expires=60), now=NOW + 60)


def test_the_scope_must_be_this_region_and_lambda() -> None:
    with pytest.raises(Refused, match="region us-east-1 and service lambda"):
        check(signed(region="eu-west-1"))
    with pytest.raises(Refused, match="region us-east-1 and service lambda"):
        check(signed(service="s3"))


def test_unsigned_and_malformed_requests_are_refused() -> None:
    bare = HttpRequest("GET", b"/", b"", [(b"host", b"example")], b"")
    with pytest.raises(Refused, match="not signed"):
        check(bare)
    with pytest.raises(Refused, match="not an AWS4-HMAC-SHA256"):
        check(tampered(bare, headers=[(b"authorization", b"Bearer nope")]))
    request = signed()
    forged = [
        (k, v.replace(b"Signature=", b"Signature=zz") if k == b"authorization" else v)
        for k, v in request.headers
    ]
    with pytest.raises(Refused, match="malformed"):
        check(tampered(request, headers=forged))
