"""The request guard's rules on hand-made ASGI scopes (the live-server tests are
tests/integration/test_request_guard*.py)."""

from __future__ import annotations

import pytest

from ember.api.request_guard import RequestGuard, Seen, host_name

URL_ID = "0123456789abcdefghijklmnopqrstuv"


def scope(method: str = "GET", *headers: tuple[str, str]) -> dict[str, object]:
    return {
        "type": "http",
        "method": method,
        "path": "/2015-03-31/functions",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }


def verdict(
    guard: RequestGuard, method: str, *headers: tuple[str, str], function_url: bool = False
) -> str:
    made = scope(method, *headers)
    refusal = guard.check(made, Seen.of(made), function_url)
    return "ok" if refusal is None else refusal.rule


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:9000", "127.0.0.1"),
        ("[::1]:9000", "::1"),
        ("[::1]", "::1"),
        ("LocalHost.:9000", "localhost"),
        ("example.com", "example.com"),
        ("example.com:", "example.com:"),
    ],
)
def test_host_name(header: str, name: str) -> None:
    assert host_name(header.encode()) == name


def test_allowed_hosts() -> None:
    guard = RequestGuard("myhost", ["ember.lan", "*.corp.example", " Other.Name. ", "10.0.0.1"])
    for host in (
        "127.0.0.1",
        "127.0.0.1:1",
        "10.9.8.7:9000",
        "[::1]:9000",
        "[fe80::1]",
        "localhost",
        "localhost:9000",
        "myhost:9000",
        "ember.lan",
        "EMBER.LAN:80",
        "other.name",
        "a.corp.example",
        f"{URL_ID}.lambda-url.us-east-1.localhost:9000",
        f"{URL_ID}.lambda-url.eu-west-1.ember.lan",
    ):
        assert guard.host_allowed(host.encode()), host
    for host in (
        "evil.example",
        "localhost.evil.example",
        "rebind.localhost",
        "corp.example",
        "127.0.0.1.evil.example",
        "0x7f.1",
        "2130706433",
        "[::1",
        "",
        "ember.lan.evil.example",
        f"{URL_ID}.lambda-url.us-east-1.evil.example",
        f"{URL_ID[:-1]}.lambda-url.us-east-1.localhost",
        f"x{URL_ID}.lambda-url.us-east-1.localhost",
    ):
        assert not guard.host_allowed(host.encode()), host
    assert not RequestGuard("0.0.0.0").host_allowed(b"0.0.0.0.evil.example")


def test_rules() -> None:
    guard = RequestGuard("127.0.0.1")
    host = ("Host", "127.0.0.1:9000")
    json_type = ("Content-Type", "application/json")
    signed = (
        "Authorization",
        "AWS4-HMAC-SHA256 Credential=x/20250101/us-east-1/lambda/aws4_request",
    )
    assert verdict(guard, "POST", host, json_type, ("Content-Length", "2")) == "ok"
    assert verdict(guard, "POST", ("Host", "evil.example"), json_type) == "host"
    assert verdict(guard, "GET", host, ("Host", "127.0.0.1")) == "host"  # two of them
    assert verdict(guard, "GET") == "ok"  # no Host: HTTP/1.0, never a browser
    # cross-origin
    assert verdict(guard, "POST", host, json_type, ("Origin", "http://127.0.0.1:9000")) == "ok"
    assert (
        verdict(guard, "POST", ("Host", "localhost"), json_type, ("Origin", "http://localhost"))
        == "ok"
    )
    assert (
        verdict(guard, "POST", ("Host", "localhost:80"), json_type, ("Origin", "http://localhost"))
        == "ok"
    )
    assert verdict(guard, "POST", host, json_type, ("Origin", "https://127.0.0.1:9000")) == "ok"
    for origin in (
        "null",
        "http://127.0.0.1:9001",
        "http://evil.example",
        "http://127.0.0.1:9000.evil",
        "file://",
        "chrome-extension://abc",
    ):
        assert verdict(guard, "POST", host, json_type, ("Origin", origin)) == "origin", origin
        assert verdict(guard, "POST", host, json_type, signed, ("Origin", origin)) == "origin", (
            origin
        )
    for site, expected in (
        ("same-origin", "ok"),
        ("none", "ok"),
        ("same-site", "origin"),
        ("cross-site", "origin"),
    ):
        assert verdict(guard, "GET", host, ("Sec-Fetch-Site", site)) == expected, site
    # content types
    for content_type in (
        "application/json; charset=utf-8",
        "application/x-amz-json-1.1",
        "application/x-amz-json-1.0",
        "application/cbor",
        "application/xml",
        "text/xml",
        "application/octet-stream",
        "binary/octet-stream",
    ):
        assert verdict(guard, "POST", host, ("Content-Type", content_type)) == "ok", content_type
    for content_type in (
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plain; application/json",
        "application/json, text/plain",
        "",
    ):
        assert verdict(guard, "POST", host, ("Content-Type", content_type)) == "content-type", (
            content_type
        )
        assert verdict(guard, "POST", host, ("Content-Type", content_type), signed) == "ok", (
            content_type
        )
    assert verdict(guard, "POST", host) == "content-type"
    assert verdict(guard, "POST", host, ("Content-Length", "3")) == "content-type"
    assert verdict(guard, "PUT", host, ("Transfer-Encoding", "chunked")) == "content-type"
    assert verdict(guard, "POST", host, signed) == "ok"
    assert verdict(guard, "POST", host, ("Authorization", "Bearer abc")) == "content-type"
    for method in ("GET", "HEAD", "DELETE", "OPTIONS"):
        assert verdict(guard, method, host) == "ok", method
        assert verdict(guard, method, host, ("Content-Length", "0")) == "ok", method
    assert (
        verdict(guard, "GET", host, ("Content-Length", "4")) == "content-type"
    )  # a GET with a body
    # function URLs: the Host rule only
    assert (
        verdict(
            guard,
            "POST",
            host,
            ("Content-Type", "text/plain"),
            ("Origin", "null"),
            function_url=True,
        )
        == "ok"
    )
    assert verdict(guard, "POST", ("Host", "evil.example"), function_url=True) == "host"


def test_refusal_forms() -> None:
    guard = RequestGuard("127.0.0.1")
    made = scope(
        "POST",
        ("Host", "evil.example"),
        ("Content-Type", "application/x-www-form-urlencoded"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=x/20250101/us-east-1/monitoring/aws4_request",
        ),
    )
    refusal = guard.check(made, Seen.of(made), False)
    assert refusal is not None and refusal.form  # the query protocol's: XML
    response = refusal.response("req-1")
    assert response.status_code == 403 and response.body.startswith(b"<ErrorResponse>")
    made = scope("POST", ("Host", "evil.example"), ("Content-Type", "application/json"))
    refusal = guard.check(made, Seen.of(made), False)
    assert refusal is not None and not refusal.form
    response = refusal.response("req-2")
    assert response.headers["x-amzn-errortype"] == "AccessDeniedException"
    assert response.headers["x-amzn-requestid"] == "req-2"
