"""AWS_IAM function URLs verify SigV4 signatures against Ember's access keys: the key written to
<data_dir>/credentials (signed by curl's own --aws-sigv4 and by botocore), presigned URLs, a key
declared in settings, and the function key that boto3 inside a function signs with."""

from __future__ import annotations

import configparser
import json
import re
import stat
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from test_function_urls import curl, host_form, url_id_of

from conftest import LiveServer, free_port
from invoking import deploy

REGION = "us-east-1"
FORBIDDEN = {"Message": "Forbidden"}

WHOAMI = """
import json

def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"iam": event["requestContext"]["authorizer"]["iam"],
                                "path": event["rawPath"], "query": event["rawQueryString"],
                                "body": event.get("body")})}
"""

# Signs with the credentials Lambda-style environment variables give it (botocore's default
# chain), as code running under an execution role does; then once more with a forged token.
CALLER = """
import json, os, urllib.error, urllib.request
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import Session

def call(url, credentials):
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(credentials, "lambda", os.environ["AWS_REGION"]).add_auth(request)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=dict(request.headers))) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())

def handler(event, context):
    url = os.environ["AWS_ENDPOINT_URL"] + "/_ember/url/" + event["url_id"] + "/from-a-function"
    role = Session().get_credentials().get_frozen_credentials()
    forged = Credentials(role.access_key, role.secret_key, "forged-token")
    return {"role": call(url, role), "forged": call(url, forged)}
"""


@dataclass
class Reply:
    status: int
    json: Any


@dataclass
class IamUrl:
    url: str  # the host-name form, for curl
    path_url: str  # the path form on 127.0.0.1 (as CreateFunctionUrlConfig returns it), for urllib

    @property
    def url_id(self) -> str:
        return url_id_of(self.path_url)


def iam_url(server: LiveServer, lam: Any) -> IamUrl:
    name = deploy(lam, WHOAMI, prefix="iam")
    url = lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
    assert url == f"{server.endpoint}/_ember/url/{url_id_of(url)}/"
    return IamUrl(host_form(url, server.port), url)


@pytest.fixture(scope="module")
def whoami(server: LiveServer) -> IamUrl:
    return iam_url(server, server.client("lambda"))


def send(request: AWSRequest) -> Reply:
    assert request.url is not None
    prepared = request.prepare()
    sent = urllib.request.Request(
        request.url, data=prepared.body, method=request.method, headers=dict(prepared.headers)
    )
    try:
        with urllib.request.urlopen(sent, timeout=60) as response:
            return Reply(response.status, json.loads(response.read()))
    except urllib.error.HTTPError as error:
        return Reply(error.code, json.loads(error.read()))


def signed(
    url: str, credentials: Credentials, method: str = "GET", body: bytes | None = None
) -> AWSRequest:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(credentials, "lambda", REGION).add_auth(request)
    return request


def presigned(url: str, credentials: Credentials, expires: int = 300) -> AWSRequest:
    request = AWSRequest(method="GET", url=url)
    SigV4QueryAuth(credentials, "lambda", REGION, expires=expires).add_auth(request)
    return request


def curl_signed(url: str, credentials: Credentials, *args: str, data: bytes | None = None) -> Reply:
    reply = curl(
        url,
        "--aws-sigv4",
        f"aws:amz:{REGION}:lambda",
        "--user",
        f"{credentials.access_key}:{credentials.secret_key}",
        *args,
        data=data,
    )
    return Reply(reply.status, reply.json)


# -- accepted --------------------------------------------------------------------------------------


def test_curl_signs_with_the_credentials_file(server: LiveServer, whoami: IamUrl) -> None:
    credentials = server.credentials()
    reply = curl_signed(whoami.url + "whoami?x=1", credentials)
    assert reply.status == 200, reply
    assert reply.json["iam"] == {
        "accessKey": credentials.access_key,
        "accountId": "000000000000",
        "callerId": "000000000000",
        "cognitoIdentity": None,
        "principalOrgId": None,
        "userArn": "arn:aws:iam::000000000000:root",
        "userId": "000000000000",
    }
    reply = curl_signed(
        whoami.url + "orders", credentials, "-H", "Content-Type: text/plain", data=b"one pizza"
    )
    assert reply.status == 200, reply
    assert reply.json["body"] == "one pizza"


def test_botocore_signs_a_post_with_the_ember_profile(
    server: LiveServer, whoami: IamUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(server.data_dir / "credentials"))
    monkeypatch.setenv("AWS_PROFILE", "ember")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    credentials = boto3.Session().get_credentials()
    assert credentials is not None and credentials.access_key == server.credentials().access_key
    reply = send(
        signed(
            whoami.path_url + "orders?size=large&extra=olives%20and%20basil",
            credentials,
            "POST",
            b'{"pizza": "margherita"}',
        )
    )
    assert reply.status == 200, reply
    assert reply.json["path"] == "/orders"
    assert reply.json["query"] == "size=large&extra=olives%20and%20basil"
    assert reply.json["body"] == '{"pizza": "margherita"}'


def test_a_presigned_url_works(server: LiveServer, whoami: IamUrl) -> None:
    request = presigned(whoami.path_url + "report?format=csv", server.credentials())
    assert "X-Amz-Signature=" in str(request.url)
    reply = send(request)
    assert reply.status == 200, reply
    assert reply.json["iam"]["accessKey"] == server.credentials().access_key


def test_a_function_signs_with_its_role_credentials(
    server: LiveServer, lam: Any, whoami: IamUrl
) -> None:
    caller = deploy(lam, CALLER, prefix="iam-caller", Timeout=60)
    result = lam.invoke(FunctionName=caller, Payload=json.dumps({"url_id": whoami.url_id}))
    payload = json.loads(result["Payload"].read())
    assert "FunctionError" not in result, payload
    status, body = payload["role"]
    assert status == 200, body
    iam = body["iam"]
    assert re.fullmatch(r"ASIA[A-Z0-9]{16}", iam["accessKey"])
    assert iam["userArn"] == "arn:aws:sts::000000000000:assumed-role/ember-function/ember"
    assert iam["callerId"] == iam["userId"] == f"AROA{iam['accessKey'][4:]}:ember"
    assert payload["forged"] == [403, FORBIDDEN]


# -- refused ---------------------------------------------------------------------------------------


def test_wrong_or_unknown_keys_are_refused(server: LiveServer, whoami: IamUrl) -> None:
    mine = server.credentials()
    for credentials in (
        Credentials(mine.access_key, "x" * 40),
        Credentials("AKIA" + "X" * 16, mine.secret_key),
    ):
        assert send(signed(whoami.path_url, credentials)) == Reply(403, FORBIDDEN)
        assert curl_signed(whoami.url, credentials) == Reply(403, FORBIDDEN)


def test_a_request_changed_after_signing_is_refused(server: LiveServer, whoami: IamUrl) -> None:
    original = signed(
        whoami.path_url + "pay?amount=10", server.credentials(), "POST", b'{"to": "alice"}'
    )
    assert send(original).status == 200
    changed_body = signed(
        whoami.path_url + "pay?amount=10", server.credentials(), "POST", b'{"to": "alice"}'
    )
    changed_body.data = b'{"to": "mallory"}'
    assert send(changed_body) == Reply(403, FORBIDDEN)
    changed_query = signed(
        whoami.path_url + "pay?amount=10", server.credentials(), "POST", b'{"to": "alice"}'
    )
    changed_query.url = whoami.path_url + "pay?amount=1000"
    assert send(changed_query) == Reply(403, FORBIDDEN)
    changed_path = signed(
        whoami.path_url + "pay?amount=10", server.credentials(), "POST", b'{"to": "alice"}'
    )
    changed_path.url = whoami.path_url + "refund?amount=10"
    assert send(changed_path) == Reply(403, FORBIDDEN)


def test_expired_and_unsigned_requests_are_refused(server: LiveServer, whoami: IamUrl) -> None:
    expiring = presigned(whoami.path_url, server.credentials(), expires=1)
    time.sleep(2.1)
    assert send(expiring) == Reply(403, FORBIDDEN)
    assert send(AWSRequest(method="GET", url=whoami.path_url)) == Reply(403, FORBIDDEN)


# -- the credentials file --------------------------------------------------------------------------


def test_the_credentials_file_is_private_and_survives_a_restart(tmp_path: Path) -> None:
    own = Credentials("AKIAOWNKEYFROMSETTIN", "my-own-secret-of-forty-characters-000000")
    live = LiveServer(
        tmp_path / "data",
        free_port(),
        extra_env={
            "EMBER_ACCESS_KEY_ID": own.access_key,
            "EMBER_SECRET_ACCESS_KEY": own.secret_key,
        },
    )
    live.start()
    try:
        path = live.data_dir / "credentials"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert str(path) in live.log()
        profile = configparser.ConfigParser()
        profile.read(path)
        assert re.fullmatch(r"AKIA[A-Z0-9]{16}", profile["ember"]["aws_access_key_id"])
        assert len(profile["ember"]["aws_secret_access_key"]) == 40
        assert profile["ember"]["region"] == REGION
        written = path.read_text()
        url = iam_url(live, live.client("lambda"))
        assert send(signed(url.path_url, live.credentials())).status == 200
        assert send(signed(url.path_url, own)).status == 200  # the key declared in settings
        live.stop()
        live.start()
        assert path.read_text() == written
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert send(signed(url.path_url, live.credentials())).status == 200
    finally:
        live.stop()
