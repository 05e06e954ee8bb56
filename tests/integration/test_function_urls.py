"""Function URLs: config operations, and real HTTP requests (curl and urllib to the path-form URL
the API returns, and to the `*.localhost` host-name form) mapped to payload 2.0 events and back."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import LiveServer
from invoking import deploy

AWS_CLI = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "aws"

HANDLER = """
import base64, json

def handler(event, context):
    q = event.get("queryStringParameters") or {}
    mode = q.get("mode", "echo")
    if mode == "bare":
        return "hello"
    if mode == "dict":
        return {"message": "hi", "n": 1}
    if mode == "error":
        raise ValueError("boom")
    if mode == "teapot":
        return {"statusCode": 418, "headers": {"x-teapot": "yes", "content-type": "text/plain"},
                "multiValueHeaders": {"x-multi": ["a", "b"]},
                "cookies": ["a=1; Path=/", "b=2"], "body": "short and stout"}
    if mode == "roundtrip":
        body = event.get("body", "")
        data = base64.b64decode(body) if event["isBase64Encoded"] else body.encode()
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "isBase64Encoded": True, "body": base64.b64encode(data[::-1]).decode()}
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"event": event, "version": context.function_version,
                                "arn": context.invoked_function_arn})}
"""


@dataclass
class Reply:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return ",".join(values) if values else None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def curl(url: str, *args: str, data: bytes | None = None) -> Reply:
    """One request with the real curl (which resolves every *.localhost name to loopback)."""
    with tempfile.NamedTemporaryFile() as body_file:
        command = ["curl", "-sS", "-D", "-", "-o", body_file.name, "--max-time", "60", *args]
        if data is not None:
            command += ["--data-binary", "@-"]
        done = subprocess.run([*command, url], input=data or b"", capture_output=True, timeout=90)
        assert done.returncode == 0, done.stderr.decode()
        body = Path(body_file.name).read_bytes()
    blocks = [b for b in done.stdout.decode("latin-1").split("\r\n\r\n") if b.strip()]
    lines = blocks[-1].split("\r\n")  # the last block: after any `100 Continue`
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return Reply(int(lines[0].split()[1]), headers, body)


def cli(server: LiveServer, *args: str) -> Any:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    out = subprocess.run(
        [str(AWS_CLI), "--endpoint-url", server.endpoint, "lambda", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout) if out.stdout.strip() else None


def allow_public_with_cli(server: LiveServer, name: str) -> None:
    """The two statements AWS documents for a public (AuthType NONE) URL, with the AWS CLI."""
    cli(
        server,
        "add-permission",
        "--function-name",
        name,
        "--statement-id",
        "FunctionURLAllowPublicAccess",
        "--action",
        "lambda:InvokeFunctionUrl",
        "--principal",
        "*",
        "--function-url-auth-type",
        "NONE",
    )
    cli(
        server,
        "add-permission",
        "--function-name",
        name,
        "--statement-id",
        "FunctionURLInvokeAllowPublicAccess",
        "--action",
        "lambda:InvokeFunction",
        "--principal",
        "*",
        "--invoked-via-function-url",
    )


def allow_public(lam: Any, name: str, qualifier: str | None = None) -> None:
    """The same two statements with boto3."""
    extra = {"Qualifier": qualifier} if qualifier else {}
    lam.add_permission(
        FunctionName=name,
        StatementId="FunctionURLAllowPublicAccess",
        Principal="*",
        Action="lambda:InvokeFunctionUrl",
        FunctionUrlAuthType="NONE",
        **extra,
    )
    lam.add_permission(
        FunctionName=name,
        StatementId="FunctionURLInvokeAllowPublicAccess",
        Principal="*",
        Action="lambda:InvokeFunction",
        InvokedViaFunctionUrl=True,
        **extra,
    )


PATH_URL = r"http://127\.0\.0\.1:{port}/_ember/url/(?P<id>[a-z0-9]{{32}})/"
HOST_URL = r"http://(?P<id>[a-z0-9]{{32}})\.lambda-url\.us-east-1\.localhost:{port}/"


def url_id_of(url: str) -> str:
    """The url-id in a function URL of either form."""
    found = re.match(r"http://[^/]+/_ember/url/([a-z0-9]{32})/", url) or re.match(
        r"http://([a-z0-9]{32})\.lambda-url\.", url
    )
    assert found, url
    return found[1]


def host_form(url: str, port: int) -> str:
    """The `<url-id>.lambda-url.us-east-1.localhost` form of a function URL."""
    return f"http://{url_id_of(url)}.lambda-url.us-east-1.localhost:{port}/"


@dataclass
class Endpoint:
    name: str
    url: str

    @property
    def url_id(self) -> str:
        return url_id_of(self.url)


@pytest.fixture(scope="module")
def public(server: LiveServer) -> Iterator[Endpoint]:
    lam = server.client("lambda")
    name = deploy(lam, HANDLER, prefix="url")
    config = lam.create_function_url_config(
        FunctionName=name,
        AuthType="NONE",
        Cors={
            "AllowOrigins": ["http://app.example"],
            "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["content-type", "x-custom"],
            "ExposeHeaders": ["x-teapot"],
            "MaxAge": 300,
            "AllowCredentials": True,
        },
    )
    allow_public_with_cli(server, name)
    yield Endpoint(name, config["FunctionUrl"])


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response: Any = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


# -- configuration -----------------------------------------------------------------------------


def test_url_config_lifecycle(server: LiveServer, lam: Any) -> None:
    name = deploy(lam, HANDLER, prefix="url")
    created = lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert re.fullmatch(PATH_URL.format(port=server.port), created["FunctionUrl"])
    assert created["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert created["AuthType"] == "AWS_IAM" and created["InvokeMode"] == "BUFFERED"
    with pytest.raises(ClientError) as excinfo:
        lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert error_of(excinfo) == ("ResourceConflictException", 409)

    updated = lam.update_function_url_config(
        FunctionName=name, AuthType="NONE", Cors={"AllowOrigins": ["*"]}
    )
    assert updated["FunctionUrl"] == created["FunctionUrl"]  # a URL never changes
    assert updated["AuthType"] == "NONE" and updated["Cors"] == {"AllowOrigins": ["*"]}
    got = lam.get_function_url_config(FunctionName=name)
    assert got["CreationTime"] == created["CreationTime"]
    assert got["LastModifiedTime"] >= got["CreationTime"]
    listed = lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert [c["FunctionUrl"] for c in listed] == [created["FunctionUrl"]]

    with pytest.raises(ClientError) as excinfo:
        lam.update_function_url_config(FunctionName=name, InvokeMode="RESPONSE_STREAM")
    assert error_of(excinfo) == ("InvalidParameterValueException", 400)

    lam.delete_function_url_config(FunctionName=name)
    with pytest.raises(ClientError) as excinfo:
        lam.get_function_url_config(FunctionName=name)
    assert error_of(excinfo) == ("ResourceNotFoundException", 404)
    assert curl(created["FunctionUrl"]).status == 404
    with pytest.raises(ClientError) as excinfo:
        lam.create_function_url_config(FunctionName="no-such-function-url", AuthType="NONE")
    assert error_of(excinfo) == ("ResourceNotFoundException", 404)


def test_url_on_an_alias_runs_the_alias(server: LiveServer, lam: Any) -> None:
    name = deploy(lam, HANDLER, prefix="url")
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    config = lam.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")
    assert config["FunctionArn"].endswith(f":function:{name}:live")
    allow_public(lam, name, "live")
    reply = curl(config["FunctionUrl"])
    assert reply.status == 200, reply
    assert reply.json["version"] == version
    assert reply.json["arn"].endswith(f":function:{name}:live")
    # the unqualified function has no URL of its own
    with pytest.raises(ClientError) as excinfo:
        lam.get_function_url_config(FunctionName=name)
    assert error_of(excinfo) == ("ResourceNotFoundException", 404)


# -- requests and responses --------------------------------------------------------------------


def test_get_with_query_and_cookies(public: Endpoint) -> None:
    reply = curl(
        public.url + "items/42?a=1&a=2&q=hello%20world&flag",
        "-H",
        "Cookie: session=abc; theme=dark",
        "-H",
        "X-Custom: one",
        "-H",
        "X-Custom: two",
        "-A",
        "ember-test/1.0",
    )
    assert reply.status == 200, reply
    assert reply.header("content-type") == "application/json"
    assert reply.header("x-amzn-requestid")
    event = reply.json["event"]
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/items/42"
    assert event["rawQueryString"] == "a=1&a=2&q=hello%20world&flag"
    assert event["queryStringParameters"] == {"a": "1,2", "q": "hello world", "flag": ""}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-custom"] == "one,two"
    assert event["headers"]["user-agent"] == "ember-test/1.0"
    assert event["isBase64Encoded"] is False and "body" not in event
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/items/42",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "ember-test/1.0",
    }
    assert context["apiId"] == context["domainPrefix"] == public.url_id
    assert context["domainName"] == f"{public.url_id}.lambda-url.us-east-1.localhost"
    assert context["stage"] == "$default" and context["routeKey"] == "$default"
    assert context["requestId"] == reply.header("x-amzn-requestid")
    assert isinstance(context["timeEpoch"], int) and re.fullmatch(
        r"\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000", context["time"]
    )


def test_post_json_and_binary_round_trip(public: Endpoint) -> None:
    reply = curl(
        public.url + "submit",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        data=b'{"name": "Sally"}',
    )
    event = reply.json["event"]
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["body"] == '{"name": "Sally"}' and event["isBase64Encoded"] is False

    blob = bytes(range(256)) * 64
    reply = curl(public.url + "upload", "-H", "Content-Type: application/octet-stream", data=blob)
    event = reply.json["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == blob

    reply = curl(public.url + "?mode=roundtrip", "-H", "Content-Type: image/png", data=blob)
    assert reply.status == 200
    assert reply.header("content-type") == "application/octet-stream"
    assert reply.body == blob[::-1]  # base64 in the function's result, raw bytes on the wire


def test_result_mapping(public: Endpoint) -> None:
    reply = curl(public.url + "?mode=teapot")
    assert reply.status == 418
    assert reply.body == b"short and stout"
    assert reply.header("x-teapot") == "yes"
    assert reply.headers["x-multi"] == ["a", "b"]
    assert reply.headers["set-cookie"] == ["a=1; Path=/", "b=2"]

    reply = curl(public.url + "?mode=bare")  # a bare value: 200, JSON of the value
    assert reply.status == 200
    assert reply.header("content-type") == "application/json"
    assert reply.json == "hello"
    reply = curl(public.url + "?mode=dict")  # a dict without statusCode: the same
    assert reply.status == 200 and reply.json == {"message": "hi", "n": 1}

    reply = curl(public.url + "?mode=error")
    assert reply.status == 502
    assert reply.json == {"Message": "Internal Server Error"}


def test_path_and_host_forms(public: Endpoint, server: LiveServer) -> None:
    url = f"{public.url}deep/path?x=1"
    assert url.startswith(f"{server.endpoint}/_ember/url/{public.url_id}/")
    request = urllib.request.Request(
        url, data=b"plain text", method="PUT", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        event = json.loads(response.read())["event"]
    assert event["rawPath"] == "/deep/path" and event["rawQueryString"] == "x=1"
    assert event["requestContext"]["http"]["method"] == "PUT"
    assert event["body"] == "plain text"
    # the host-name form answers too: curl resolves *.localhost itself...
    reply = curl(host_form(public.url, server.port) + "by-name?y=2")
    assert reply.status == 200, reply
    assert reply.json["event"]["rawPath"] == "/by-name"
    assert reply.header("content-security-policy") is None  # an origin of its own: no sandbox
    # ...and clients that can't resolve it can keep the name in the Host header
    host = host_form(public.url, server.port).split("//", 1)[1].rstrip("/")
    request = urllib.request.Request(f"{server.endpoint}/by-host", headers={"Host": host})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert json.loads(response.read())["event"]["rawPath"] == "/by-host"
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(f"{server.endpoint}/_ember/url/{'0' * 32}/", timeout=60)
    assert excinfo.value.code == 404


# -- CORS --------------------------------------------------------------------------------------


def test_cors_preflight_and_response_headers(public: Endpoint) -> None:
    # what a browser on http://app.example sends before a cross-origin POST with a JSON body
    reply = curl(
        public.url + "api",
        "-X",
        "OPTIONS",
        "-H",
        "Origin: http://app.example",
        "-H",
        "Access-Control-Request-Method: POST",
        "-H",
        "Access-Control-Request-Headers: content-type,x-custom",
    )
    assert reply.status == 200
    assert reply.header("access-control-allow-origin") == "http://app.example"
    assert reply.header("access-control-allow-methods") == "GET,POST"
    assert reply.header("access-control-allow-headers") == "content-type,x-custom"
    assert reply.header("access-control-max-age") == "300"
    assert reply.header("access-control-allow-credentials") == "true"
    assert reply.body == b""  # answered from the config: the function did not run

    reply = curl(public.url + "?mode=teapot", "-H", "Origin: http://app.example")
    assert reply.status == 418
    assert reply.header("access-control-allow-origin") == "http://app.example"
    assert reply.header("access-control-expose-headers") == "x-teapot"
    assert reply.header("access-control-allow-credentials") == "true"

    reply = curl(public.url, "-H", "Origin: http://evil.example")
    assert reply.status == 200 and reply.header("access-control-allow-origin") is None
    reply = curl(
        public.url + "api",
        "-X",
        "OPTIONS",
        "-H",
        "Origin: http://evil.example",
        "-H",
        "Access-Control-Request-Method: POST",
    )
    assert reply.header("access-control-allow-origin") is None


# -- authorization -----------------------------------------------------------------------------


def test_none_auth_needs_both_permissions(server: LiveServer, lam: Any) -> None:
    name = deploy(lam, HANDLER, prefix="url")
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    reply = curl(url)  # CreateFunctionUrlConfig adds no permission by itself
    assert reply.status == 403 and reply.json == {"Message": "Forbidden"}

    lam.add_permission(
        FunctionName=name,
        StatementId="url",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    assert curl(url).status == 403  # since October 2025 lambda:InvokeFunction is needed too
    lam.add_permission(
        FunctionName=name,
        StatementId="invoke",
        Action="lambda:InvokeFunction",
        Principal="*",
        InvokedViaFunctionUrl=True,
    )
    assert curl(url).status == 200

    lam.remove_permission(FunctionName=name, StatementId="url")
    assert curl(url).status == 403
    lam.add_permission(
        FunctionName=name,
        StatementId="other-account",
        Principal="123456789012",
        Action="lambda:InvokeFunctionUrl",
        FunctionUrlAuthType="NONE",
    )
    assert curl(url).status == 403  # granted to an account, not to everyone
    lam.add_permission(
        FunctionName=name,
        StatementId="iam-only",
        Principal="*",
        Action="lambda:InvokeFunctionUrl",
        FunctionUrlAuthType="AWS_IAM",
    )
    assert curl(url).status == 403  # granted for AWS_IAM URLs only


def _signed_headers(
    url: str, credentials: Credentials, region: str = "us-east-1", service: str = "lambda"
) -> list[str]:
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(credentials, service, region).add_auth(request)
    return [
        arg
        for k, v in request.headers.items()
        if k.lower() != "host"
        for arg in ("-H", f"{k}: {v}")
    ]


def test_aws_iam_requires_a_sigv4_signature(server: LiveServer, lam: Any) -> None:
    """More in test_function_url_iam.py."""
    name = deploy(lam, HANDLER, prefix="url")
    url = lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
    credentials = server.credentials()
    reply = curl(url + "whoami")
    assert reply.status == 403 and reply.json == {"Message": "Forbidden"}
    assert curl(url + "whoami", "-H", "Authorization: Bearer nope").status == 403
    assert (
        curl(
            url + "whoami", *_signed_headers(url + "whoami", credentials, region="eu-west-1")
        ).status
        == 403
    )
    assert (
        curl(url + "whoami", *_signed_headers(url + "whoami", credentials, service="s3")).status
        == 403
    )
    assert (
        curl(
            url + "whoami", *_signed_headers(url + "whoami", Credentials("AKIDEXAMPLE", "secret"))
        ).status
        == 403
    )

    reply = curl(url + "whoami", *_signed_headers(url + "whoami", credentials))
    assert reply.status == 200, reply
    context = reply.json["event"]["requestContext"]
    assert context["authorizer"]["iam"]["accessKey"] == credentials.access_key
    assert context["accountId"] == "000000000000"


def test_deleted_function_url_is_gone(server: LiveServer, lam: Any) -> None:
    name = deploy(lam, HANDLER, prefix="url")
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    allow_public(lam, name)
    assert curl(url).status == 200
    lam.delete_function(FunctionName=name)
    assert curl(url).status == 404


def test_throttled_and_oversized_requests(server: LiveServer, lam: Any) -> None:
    name = deploy(lam, HANDLER, prefix="url")
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    allow_public(lam, name)
    reply = curl(
        url, "-H", "Content-Type: application/octet-stream", data=b"x" * (6 * 1024 * 1024 + 1)
    )
    assert reply.status == 413
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    reply = curl(url)
    assert reply.status == 429 and "Message" in reply.json
    lam.delete_function_concurrency(FunctionName=name)
    assert curl(url).status == 200
