"""The URL CreateFunctionUrlConfig returns opens as given in every client: Python's urllib and
requests, Node's fetch, curl and Chromium, on a host whose resolver knows nothing of
`*.localhost` (glibc without nss-myhostname: the host form would not resolve for the first
three)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from test_function_url_browser import require_browser, run_page
from test_function_urls import PATH_URL, curl

from conftest import LiveServer
from invoking import deploy, public_url

HANDLER = """
import json
import re

def handler(event, context):
    http = event["requestContext"]["http"]
    if http["method"] == "GET" and "text/html" in event["headers"].get("accept", ""):
        return {"statusCode": 200, "headers": {"content-type": "text/html; charset=utf-8"},
                "body": '<pre id="out" data-state="done">{"opened": "' + http["path"] + '"}</pre>'}
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"method": http["method"], "path": http["path"],
                                "query": event.get("queryStringParameters"), "body": event.get("body"),
                                "agent": http["userAgent"]})}
"""
NODE = """
const [url, body] = process.argv.slice(2);
const get = await fetch(url + "from-node?x=1");
const post = await fetch(url + "from-node", {method: "POST", body, headers: {"content-type": "application/json"}});
console.log(JSON.stringify({get: [get.status, await get.json()], post: [post.status, await post.json()]}));
"""


@pytest.fixture(scope="module")
def name(server: LiveServer) -> str:
    return deploy(server.client("lambda"), HANDLER, prefix="clients")


@pytest.fixture(scope="module")
def url(server: LiveServer, name: str) -> str:
    lam = server.client("lambda")
    url = public_url(lam, name)
    assert re.fullmatch(PATH_URL.format(port=server.port), url), url
    return url


def test_urllib(url: str) -> None:
    with urllib.request.urlopen(url + "from-urllib?x=1", timeout=60) as response:
        got = json.loads(response.read())
    assert got["method"] == "GET" and got["path"] == "/from-urllib" and got["query"] == {"x": "1"}
    request = urllib.request.Request(
        url + "from-urllib",
        data=b'{"n": 1}',
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert json.loads(response.read())["body"] == '{"n": 1}'


def test_requests(url: str) -> None:
    got = requests.get(url + "from-requests", params={"x": "1"}, timeout=60)
    assert got.status_code == 200 and got.json()["path"] == "/from-requests"
    posted = requests.post(url + "from-requests", json={"n": 2}, timeout=60)
    assert posted.status_code == 200 and json.loads(posted.json()["body"]) == {"n": 2}


def test_node_fetch(url: str, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = tmp_path / "fetch.mjs"
    script.write_text(NODE)
    done = subprocess.run(
        [node, str(script), url, '{"n": 3}'], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["get"][0] == 200 and result["get"][1]["path"] == "/from-node"
    assert result["post"][0] == 200 and result["post"][1]["body"] == '{"n": 3}'


def test_curl(url: str) -> None:
    reply = curl(url + "from-curl?x=1")
    assert reply.status == 200 and reply.json["path"] == "/from-curl"
    reply = curl(url + "from-curl", "-H", "Content-Type: application/json", data=b'{"n": 4}')
    assert reply.json["method"] == "POST" and reply.json["body"] == '{"n": 4}'


def test_chromium(url: str, tmp_path: Path) -> None:
    outcome = run_page(require_browser(), url + "from-chromium", tmp_path)
    assert outcome.state == "done", outcome
    assert outcome.value == {"opened": "/from-chromium"}


def test_the_url_follows_the_address_the_caller_used(
    server: LiveServer, name: str, url: str
) -> None:
    """Like GetFunction's Code.Location: a client that reaches Ember as localhost (or through a
    port mapping, or by a configured name) gets a URL with that host and port."""
    lam = boto3.client(
        "lambda",
        endpoint_url=f"http://localhost:{server.port}",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    listed = lam.list_function_url_configs(FunctionName=name)
    [config] = listed["FunctionUrlConfigs"]
    assert config["FunctionUrl"] == url.replace("127.0.0.1", "localhost")
    with urllib.request.urlopen(config["FunctionUrl"] + "via-localhost", timeout=60) as response:
        assert json.loads(response.read())["path"] == "/via-localhost"


def test_a_client_gone_mid_body_is_not_a_failure(server: LiveServer, url: str) -> None:
    """A caller that closes before sending the body it announced is simply gone: no 500, no
    traceback in the server's log."""
    parts = urllib.parse.urlsplit(url)
    before = server.log().count("function URL request")
    for _ in range(3):
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 80), timeout=10
        ) as sock:
            sock.sendall(
                f"POST {parts.path}gone HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"a":'.encode()
            )
    assert requests.get(url + "after", timeout=30).status_code == 200  # served in between
    time.sleep(0.3)
    assert server.log().count("function URL request") == before, server.log()[-2000:]
