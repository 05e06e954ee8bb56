"""The request guard over plain HTTP (api/request_guard.py): each rule, what real clients send,
and a server with its own host names and AWS's function URL shape. Browser attacks are in
test_request_guard_browser.py."""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
import requests
from botocore import UNSIGNED
from botocore.exceptions import ClientError
from test_function_urls import curl, url_id_of

from conftest import LiveServer, free_port, make_zip
from invoking import deploy, public_url, unique

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
SIGNED = "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0"
ECHO = """
def handler(event, context):
    return {"statusCode": 200, "body": "hello from " + context.function_name}
"""
# Changes its own Description through the API when invoked: an invocation leaves a mark.
MARKER = """
import json, os, urllib.request

def handler(event, context):
    url = "%s/2015-03-31/functions/%s/configuration" % (os.environ["AWS_ENDPOINT_URL"], context.function_name)
    request = urllib.request.Request(url, data=json.dumps({"Description": "invoked"}).encode(),
                                     method="PUT", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()
    return "ok"
"""


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def refused(self) -> bool:
        return self.status == 403 and self.header("x-amzn-errortype") == "AccessDeniedException"


def send(
    server: LiveServer,
    method: str,
    path: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    host: str | None = None,
) -> Answer:
    """One request exactly as given: `host` None sends 127.0.0.1:<port>, '' sends no Host."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is None:
            host = f"127.0.0.1:{server.port}"
        if host:
            conn.putheader("Host", host)
        for name, value in headers or []:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        reply = conn.getresponse()
        return Answer(reply.status, reply.getheaders(), reply.read())
    finally:
        conn.close()


def create_body(name: str) -> bytes:
    return json.dumps(
        {
            "FunctionName": name,
            "Runtime": "python3.12",
            "Handler": "app.handler",
            "Role": "arn:aws:iam::000000000000:role/lambda-role",
            "Code": {"ZipFile": base64.b64encode(make_zip({"app.py": ECHO})).decode()},
        }
    ).encode()


def exists(lam: Any, name: str) -> bool:
    try:
        lam.get_function(FunctionName=name)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "ResourceNotFoundException"
        return False
    return True


def public(lam: Any, code: str = ECHO) -> tuple[str, str]:
    """A function with a public (AuthType NONE) URL: (name, url)."""
    name = deploy(lam, code, prefix="guard")
    return name, public_url(lam, name)


@pytest.fixture(scope="module")
def url_function(server: LiveServer) -> tuple[str, str]:
    return public(server.client("lambda"))


# -- rule 1: Host --------------------------------------------------------------------------------


def test_ember_answers_to_its_own_names(server: LiveServer, url_function: tuple[str, str]) -> None:
    url_id = url_id_of(url_function[1])
    for host in (
        f"127.0.0.1:{server.port}",
        "127.0.0.1",
        f"localhost:{server.port}",
        "LocalHost.",
        f"[::1]:{server.port}",
        "10.1.2.3:9000",
        "",
    ):  # "": no Host at all (HTTP/1.0)
        assert send(server, "GET", "/health", host=host).status == 200, host
        reply = send(server, "GET", f"/_ember/url/{url_id}/", host=host)
        assert reply.status == 200 and reply.body == f"hello from {url_function[0]}".encode(), host
    function_host = f"{url_id}.lambda-url.us-east-1.localhost:{server.port}"
    assert send(server, "GET", "/", host=function_host).status == 200


def test_other_host_names_are_refused_everywhere(
    server: LiveServer, lam: Any, url_function: tuple[str, str]
) -> None:
    url_id = url_id_of(url_function[1])
    location = lam.get_function(FunctionName=url_function[0])["Code"]["Location"]
    code_path = location.split(str(server.port), 1)[1]
    paths = [
        "/health",
        "/metrics",
        "/_ember/async",
        "/2015-03-31/functions",
        code_path,
        f"/_ember/url/{url_id}/",
    ]
    for host in (
        "evil.example",
        f"evil.example:{server.port}",
        "rebind.localhost",
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        f"{url_id}.lambda-url.us-east-1.evil.example",
    ):
        for path in paths:
            reply = send(server, "GET", path, host=host)
            assert reply.refused, (host, path, reply)
            assert (
                "DNS rebinding" in reply.json["message"]
                and "--allowed-host" in reply.json["message"]
            )
            assert not any(k.lower().startswith("access-control-") for k, _ in reply.headers)
    # The function-URL name on a foreign domain is refused too, not served as a URL.
    reply = send(server, "GET", "/", host=f"{url_id}.lambda-url.us-east-1.evil.example")
    assert reply.refused
    # Two Host headers: which one is meant?
    reply = send(server, "GET", "/health", [("Host", "evil.example")])
    assert reply.refused and "one Host" in reply.json["message"]


@pytest.mark.parametrize("service", ["lambda", "logs", "cloudwatch"])
def test_sdk_clients_read_the_refusal(server: LiveServer, service: str) -> None:
    """A refused name reaches SDK users as an AccessDeniedException that says what to do."""
    client = server.client(service)

    def rename(request: Any, **_: Any) -> None:
        request.headers["Host"] = f"ember.example:{server.port}"

    client.meta.events.register("before-send", rename)
    call = {
        "lambda": lambda: client.list_functions(),
        "logs": lambda: client.describe_log_groups(),
        "cloudwatch": lambda: client.list_metrics(),
    }[service]
    with pytest.raises(ClientError) as excinfo:
        call()
    error = excinfo.value.response["Error"]
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["Code"] == "AccessDeniedException", error
    assert "'ember.example'" in error["Message"] and "--allowed-host" in error["Message"]


# -- rule 2: cross-origin requests ---------------------------------------------------------------


def test_requests_from_other_origins_are_refused(server: LiveServer, lam: Any) -> None:
    json_type = ("Content-Type", "application/json")
    for marks in (
        [("Origin", "http://evil.example")],
        [("Origin", "null")],
        [("Origin", f"http://127.0.0.1:{server.port + 1}")],  # same site, another port
        [("Origin", f"https://127.0.0.1:{server.port}.evil.example")],
        [("Sec-Fetch-Site", "cross-site")],
        [("Sec-Fetch-Site", "same-site")],
        [("Origin", f"http://127.0.0.1:{server.port}"), ("Sec-Fetch-Site", "cross-site")],
    ):
        name = unique("cross")
        reply = send(
            server, "POST", "/2015-03-31/functions", [json_type, *marks], create_body(name)
        )
        assert reply.refused and "other origins" in reply.json["message"], (marks, reply)
        assert not exists(lam, name), marks
        assert send(server, "GET", "/2015-03-31/functions", marks).refused, marks
        assert send(server, "GET", "/_ember/async", marks).refused, marks
    # A preflight is refused and answers no CORS: the browser never sends the request.
    reply = send(
        server,
        "OPTIONS",
        "/2015-03-31/functions",
        [
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
    )
    assert reply.refused and not any(
        k.lower().startswith("access-control-") for k, _ in reply.headers
    )


def test_same_origin_and_non_browser_requests_pass(server: LiveServer, lam: Any) -> None:
    json_type = ("Content-Type", "application/json")
    for marks in (
        [],
        [("Origin", f"http://127.0.0.1:{server.port}")],
        [("Sec-Fetch-Site", "same-origin")],
        [("Sec-Fetch-Mode", "cors")],
    ):  # Node's fetch sends Sec-Fetch-Mode only
        name = unique("same")
        reply = send(
            server, "POST", "/2015-03-31/functions", [json_type, *marks], create_body(name)
        )
        assert reply.status == 201, (marks, reply)
        assert exists(lam, name)
        assert not any(k.lower().startswith("access-control-") for k, _ in reply.headers)
    reply = send(
        server,
        "GET",
        "/health",
        [("Origin", f"http://localhost:{server.port}")],
        host=f"localhost:{server.port}",
    )
    assert reply.status == 200
    assert send(server, "GET", "/health", [("Sec-Fetch-Site", "none")]).status == 200  # typed in


def test_function_urls_skip_the_origin_and_content_type_rules(
    server: LiveServer, url_function: tuple[str, str]
) -> None:
    url_id = url_id_of(url_function[1])
    reply = send(
        server,
        "POST",
        f"/_ember/url/{url_id}/",
        [
            ("Origin", "http://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
            ("Content-Type", "text/plain"),
        ],
        b"hi",
    )
    assert reply.status == 200 and reply.body.startswith(b"hello from")
    assert reply.header("content-security-policy") is not None  # served by path: sandboxed


# -- rule 3: content types -----------------------------------------------------------------------


def test_unsigned_requests_need_a_protocol_content_type(server: LiveServer, lam: Any) -> None:
    for content_type in (
        "text/plain",
        "text/plain;charset=UTF-8",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/jsonx",
    ):
        name = unique("ctype")
        reply = send(
            server,
            "POST",
            "/2015-03-31/functions",
            [("Content-Type", content_type)],
            create_body(name),
        )
        assert reply.refused and "unsigned request" in reply.json["message"], (content_type, reply)
        assert not exists(lam, name), content_type
    # Two content types (a page's text/plain and a JSON one): refused.
    name = unique("ctype")
    reply = send(
        server,
        "POST",
        "/2015-03-31/functions",
        [("Content-Type", "text/plain"), ("Content-Type", "application/json")],
        create_body(name),
    )
    assert reply.refused and not exists(lam, name)
    for content_type in ("application/json", "application/json; charset=utf-8", "APPLICATION/JSON"):
        name = unique("ctype")
        reply = send(
            server,
            "POST",
            "/2015-03-31/functions",
            [("Content-Type", content_type)],
            create_body(name),
        )
        assert reply.status == 201, (content_type, reply)
    reply = send(
        server,
        "POST",
        "/",
        [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "Logs_20140328.DescribeLogGroups"),
        ],
        b"{}",
    )
    assert reply.status == 200 and "logGroups" in reply.json


def test_unsigned_posts_without_a_content_type_are_refused(server: LiveServer, lam: Any) -> None:
    """What `fetch(url, {mode: "no-cors", body: blob})` sends: no content type."""
    name = deploy(lam, MARKER, prefix="marker", Timeout=30)
    invocations = f"/2015-03-31/functions/{name}/invocations"
    assert send(server, "POST", invocations, body=b'{"a": 1}').refused
    assert send(server, "POST", invocations).refused
    assert send(server, "POST", f"/2015-03-31/functions/{name}/versions").refused
    assert send(
        server,
        "PUT",
        f"/2017-10-31/functions/{name}/concurrency",
        body=b'{"ReservedConcurrentExecutions": 1}',
    ).refused
    config = lam.get_function(FunctionName=name)
    assert config["Configuration"]["Description"] == "" and "Concurrency" not in config
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == [
        "$LATEST"
    ]
    # Reads and deletes need no content type (a page cannot send a DELETE without a preflight).
    assert send(server, "GET", f"/2015-03-31/functions/{name}").status == 200
    # Node's SDK sends Invoke's payload as application/octet-stream.
    reply = send(server, "POST", invocations, [("Content-Type", "application/octet-stream")], b"{}")
    assert reply.status == 200 and reply.body == b'"ok"'
    assert lam.get_function(FunctionName=name)["Configuration"]["Description"] == "invoked"
    assert send(server, "DELETE", f"/2015-03-31/functions/{name}").status == 204
    assert not exists(lam, name)


def test_signed_requests_need_no_content_type(server: LiveServer, lam: Any) -> None:
    """A page cannot send an Authorization header without a preflight: SigV4-signed requests
    pass whatever their content type (boto3 and the AWS CLI send Invoke's payload without one)."""
    name = unique("signed")
    reply = send(
        server,
        "POST",
        "/2015-03-31/functions",
        [("Content-Type", "text/plain"), ("Authorization", SIGNED)],
        create_body(name),
    )
    assert reply.status == 201, reply
    reply = send(
        server,
        "POST",
        f"/2015-03-31/functions/{name}/invocations",
        [("Authorization", SIGNED)],
        b"{}",
    )
    assert reply.status == 200, reply
    # An Authorization header that is not SigV4 is no signature.
    assert send(
        server,
        "POST",
        f"/2015-03-31/functions/{name}/invocations",
        [("Authorization", "Bearer x")],
        b"{}",
    ).refused
    # Presigned-looking query strings are: anyone can write one into a URL.
    assert send(
        server,
        "POST",
        f"/2015-03-31/functions/{name}/invocations?X-Amz-Signature=0&"
        "X-Amz-Credential=test%2F20250101%2Fus-east-1%2Flambda%2Faws4_request",
        body=b"{}",
    ).refused


# -- real clients ----------------------------------------------------------------------------------


def aws(
    cli: str, server: LiveServer, *args: str, signed: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_PAGER": "",
    }
    extra = [] if signed else ["--no-sign-request"]
    return subprocess.run(
        [str(BIN / cli), "--endpoint-url", server.endpoint, *extra, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("cli", ["aws", "aws2"])
def test_the_aws_cli_is_not_refused(server: LiveServer, lam: Any, cli: str, tmp_path: Path) -> None:
    if not (BIN / cli).exists():
        pytest.skip(f"{cli} is not installed (scripts/bootstrap installs it)")
    name = deploy(lam, ECHO, prefix=cli)
    out = tmp_path / "out.json"
    done = aws(
        cli, server, "lambda", "invoke", "--function-name", name, str(out)
    )  # no content type
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["body"] == f"hello from {name}"
    # Unsigned, they send each protocol's content type (signed ones send the same).
    for args in (
        ["lambda", "get-function", "--function-name", name],
        ["logs", "describe-log-groups"],
        ["cloudwatch", "list-metrics", "--namespace", "AWS/Lambda"],
    ):
        done = aws(cli, server, *args, signed=False)
        assert done.returncode == 0, (args, done.stderr)
    # Unsigned, Invoke's payload carries no content type: what a page's no-cors fetch sends.
    done = aws(cli, server, "lambda", "invoke", "--function-name", name, str(out), signed=False)
    assert done.returncode != 0 and "AccessDeniedException" in done.stderr, done.stderr


def test_boto3_unsigned_sends_json_and_is_not_refused(server: LiveServer) -> None:
    lam = boto3.client(
        "lambda",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        config=botocore.config.Config(signature_version=UNSIGNED, retries={"max_attempts": 0}),
    )
    name = deploy(lam, ECHO, prefix="unsigned")
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    lam.tag_resource(
        Resource=lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"],
        Tags={"a": "b"},
    )
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName=name, Payload=b"{}")
    assert excinfo.value.response["Error"]["Code"] == "AccessDeniedException"


def test_code_location_downloads(
    server: LiveServer, lam: Any, url_function: tuple[str, str]
) -> None:
    location = lam.get_function(FunctionName=url_function[0])["Code"]["Location"]
    with urllib.request.urlopen(location, timeout=30) as response:
        data = response.read()
    assert data.startswith(b"PK")
    got = requests.get(location, timeout=30)
    assert got.status_code == 200 and got.content == data
    assert curl(location).body == data


# -- a server with names of its own and AWS's URL shape ------------------------------------------


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("named") / "data",
        free_port(),
        extra_env={
            "EMBER_ALLOWED_HOSTS": "ember.test, *.apps.test",
            "EMBER_FUNCTION_URL_FORM": "host",
        },
    )
    live.start()
    yield live
    live.stop()


def test_configured_names_and_the_host_form(named: LiveServer) -> None:
    for host in (f"ember.test:{named.port}", "EMBER.TEST", "one.apps.test", "a.b.apps.test"):
        assert send(named, "GET", "/health", host=host).status == 200, host
    for host in ("apps.test", "ember.test.evil.example", "evil.example"):
        assert send(named, "GET", "/health", host=host).refused, host
    lam = named.client("lambda")
    name, url = public(lam)
    url_id = url_id_of(url)
    assert url == f"http://{url_id}.lambda-url.us-east-1.localhost:{named.port}/"
    reply = curl(url + "x")  # curl resolves *.localhost itself
    assert reply.status == 200 and reply.body == f"hello from {name}".encode()
    assert reply.header("content-security-policy") is None
    # the same function under a configured name, and by path
    reply = send(named, "GET", "/", host=f"{url_id}.lambda-url.us-east-1.ember.test:{named.port}")
    assert reply.status == 200 and reply.body == f"hello from {name}".encode()
    with urllib.request.urlopen(f"{named.endpoint}/_ember/url/{url_id}/", timeout=30) as response:
        assert response.read() == f"hello from {name}".encode()
