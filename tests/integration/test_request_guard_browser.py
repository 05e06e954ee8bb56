"""Web pages cannot drive Ember's API: real attacks from headless Chromium (api/request_guard.py).

1. A page on another site (`http://attacker.test:<port>`, mapped to 127.0.0.1 by Chromium's
   resolver rules) and one on another origin of the same site (`http://127.0.0.1:<other
   port>`) try every request a page can send without a CORS preflight — a `text/plain` fetch,
   a body-less POST, a blob without a type, `sendBeacon`, a `text/plain` form and an urlencoded
   form — plus a JSON POST and a PUT (which need a preflight) and a read. Ember refuses all of
   them and nothing changes: no function created, invoked, tagged or published.
2. DNS rebinding: a page whose own name (`rebind.test`) now points at Ember. Its requests are
   same-origin, so the browser lets it send JSON and read the answers; the page server relays
   them to Ember with the page's Host header, as the rebound name would. Ember refuses them by
   that Host: the secret in the function's environment is never read.
3. A function URL page served by path shares Ember's origin; the CSP sandbox Ember adds runs
   it in an opaque origin, so its same-host requests to the API are cross-origin and refused.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_function_url_browser import Outcome, public_url, require_browser, run_page

from conftest import LiveServer, make_zip
from invoking import deploy, unique

# Changes its own Description through the API when invoked: an invocation leaves a mark.
VICTIM = """
import json, os, urllib.request

def handler(event, context):
    url = "%s/2015-03-31/functions/%s/configuration" % (os.environ["AWS_ENDPOINT_URL"], context.function_name)
    request = urllib.request.Request(url, data=json.dumps({"Description": "invoked"}).encode(),
                                     method="PUT", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()
    return "ok"
"""
PAGE_SHELL = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title></head>
<body><pre id="out" data-state="pending">pending</pre>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<script>
const out = document.getElementById("out");
function show(state, value) {{
  out.dataset.state = state;
  out.textContent = JSON.stringify(value);
}}
async function attempt(results, name, run) {{
  try {{ results[name] = await run(); }}
  catch (error) {{ results[name] = {{error: error.name}}; }}
}}
{script}
main().then((results) => show("done", results), (error) => show("failed", String(error)));
</script></body></html>
"""
# Everything a page on another origin can send to the API at API (a JS string literal).
ATTACK = """
function submitForm(target, action, enctype, fields) {
  return new Promise((resolve) => {
    const frame = document.querySelector(`iframe[name=${target}]`);
    frame.onload = () => resolve("submitted");
    const form = document.createElement("form");
    Object.assign(form, {method: "POST", action, enctype, target});
    for (const [name, value] of fields) {
      const input = document.createElement("input");
      Object.assign(input, {type: "hidden", name, value});
      form.appendChild(input);
    }
    document.body.appendChild(form);
    form.submit();
  });
}
const opaque = (response) => ({type: response.type, status: response.status});
async function main() {
  const r = {};
  const fn = API + "/2015-03-31/functions";
  await attempt(r, "createTextPlain", async () => opaque(await fetch(fn, {method: "POST",
    mode: "no-cors", headers: {"content-type": "text/plain"}, body: CREATE})));
  await attempt(r, "invokeBlob", async () => opaque(await fetch(`${fn}/${VICTIM}/invocations`,
    {method: "POST", mode: "no-cors", body: new Blob(['{"from": "a blob"}'])})));
  await attempt(r, "publishNoBody", async () => opaque(await fetch(`${fn}/${VICTIM}/versions`,
    {method: "POST", mode: "no-cors"})));
  r.beacon = navigator.sendBeacon(`${fn}/${VICTIM}/invocations`, '{"from": "a beacon"}');
  await attempt(r, "createJson", async () => (await fetch(fn, {method: "POST",
    headers: {"content-type": "application/json"}, body: CREATE})).status);
  await attempt(r, "putConcurrency", async () => (await fetch(
    API + `/2017-10-31/functions/${VICTIM}/concurrency`, {method: "PUT",
    headers: {"content-type": "application/json"}, body: '{"ReservedConcurrentExecutions": 0}'})).status);
  await attempt(r, "read", async () => (await fetch(`${fn}/${VICTIM}`)).status);
  // text/plain form: body `{"Tags": {"pwned": "yes", "pad": "="}}` (JSON the API would accept)
  r.tagForm = await submitForm("sink1", API + "/2017-03-31/tags/" + encodeURIComponent(ARN),
    "text/plain", [['{"Tags": {"pwned": "yes", "pad": "', '"}}']]);
  r.publishForm = await submitForm("sink2", `${fn}/${VICTIM}/versions`,
    "application/x-www-form-urlencoded", []);
  return r;
}
"""
# Same-origin requests after a DNS rebinding: the page may send anything and read the answers.
REBIND = """
async function main() {
  const r = {};
  await attempt(r, "read", async () => {
    const response = await fetch(`/2015-03-31/functions/${VICTIM}`);
    return {status: response.status, text: await response.text()};
  });
  await attempt(r, "create", async () => {
    const response = await fetch("/2015-03-31/functions", {method: "POST",
      headers: {"content-type": "application/json"}, body: CREATE});
    return {status: response.status, text: await response.text()};
  });
  return r;
}
"""
# A function URL's page, served by path on Ember's own host and port.
FUNCTION_PAGE = """
async function main() {
  const r = {origin: self.origin};
  await attempt(r, "createJson", async () => (await fetch("/2015-03-31/functions", {method: "POST",
    headers: {"content-type": "application/json"}, body: CREATE})).status);
  await attempt(r, "createTextPlain", async () => (await fetch("/2015-03-31/functions", {
    method: "POST", mode: "no-cors", headers: {"content-type": "text/plain"}, body: CREATE})).type);
  await attempt(r, "storage", async () => { localStorage.setItem("x", "1"); return "allowed"; });
  return r;
}
"""
FUNCTION_PAGE_HANDLER = """
PAGE = {page!r}

def handler(event, context):
    return {{"statusCode": 200, "headers": {{"content-type": "text/html; charset=utf-8"}}, "body": PAGE}}
"""


def page(title: str, script: str, **values: str) -> str:
    constants = "".join(f"const {name} = {json.dumps(value)};\n" for name, value in values.items())
    return PAGE_SHELL.format(title=title, script=constants + script)


def create_body(name: str) -> str:
    """A CreateFunction request the API would accept (had it not refused it)."""
    return json.dumps(
        {
            "FunctionName": name,
            "Runtime": "python3.12",
            "Handler": "app.handler",
            "Role": "arn:aws:iam::000000000000:role/lambda-role",
            "Code": {
                "ZipFile": base64.b64encode(
                    make_zip({"app.py": "def handler(e, c): return 1"})
                ).decode()
            },
        }
    )


@dataclass
class Relayed:
    method: str
    path: str
    host: str
    status: int
    body: bytes


@dataclass
class AttackServer:
    """Serves pages from memory; every other request is relayed to Ember with the Host header it
    came with (what Ember sees once a rebound name points at it)."""

    port: int
    pages: dict[str, str]
    relayed: list[Relayed] = field(default_factory=list)

    def add(self, path: str, text: str) -> None:
        self.pages[path] = text


@pytest.fixture(scope="module")
def attack_server(server: LiveServer) -> Iterator[AttackServer]:
    state = AttackServer(0, {})

    class Handler(BaseHTTPRequestHandler):
        def handle_any(self) -> None:
            text = state.pages.get(self.path.split("?", 1)[0])
            if text is not None:
                self.answer(200, [("content-type", "text/html; charset=utf-8")], text.encode())
                return
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    conn.putheader(name, value)
                conn.endheaders(body)
                reply = conn.getresponse()
                data = reply.read()
            finally:
                conn.close()
            state.relayed.append(
                Relayed(self.command, self.path, self.headers.get("host", ""), reply.status, data)
            )
            self.answer(
                reply.status,
                [
                    (k, v)
                    for k, v in reply.getheaders()
                    if k.lower() not in ("content-length", "connection")
                ],
                data,
            )

        def answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = handle_any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, name="attack-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def browser() -> str:
    return require_browser()


def resolving(name: str) -> list[str]:
    """Chromium flags: `name` resolves to 127.0.0.1 (as a rebound or attacker's name would)."""
    return [f"--host-resolver-rules=MAP {name} 127.0.0.1"]


def assert_gone(lam: Any, name: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        lam.get_function(FunctionName=name)
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"


def assert_untouched(lam: Any, victim: str) -> None:
    """No invocation (it would have set the Description), version, tag or concurrency."""
    config = lam.get_function(FunctionName=victim)
    assert config["Configuration"]["Description"] == "", config["Configuration"]
    assert config.get("Tags", {}) == {}
    assert "Concurrency" not in config
    versions = lam.list_versions_by_function(FunctionName=victim)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST"]


def to_ember(outcome: Outcome, port: int) -> list[Any]:
    return [r for r in outcome.netlog if r.url.startswith(f"http://127.0.0.1:{port}/")]


@pytest.mark.parametrize("site", ["attacker.test", "127.0.0.1"])
def test_a_page_on_another_origin_cannot_drive_the_api(
    server: LiveServer,
    lam: Any,
    browser: str,
    attack_server: AttackServer,
    site: str,
    tmp_path: Path,
) -> None:
    victim = deploy(lam, VICTIM, prefix="victim", Timeout=30)
    created = unique("csrf")
    arn = lam.get_function(FunctionName=victim)["Configuration"]["FunctionArn"]
    attack_server.add(
        f"/attack-{site}.html",
        page(
            "attack",
            ATTACK,
            API=server.endpoint,
            VICTIM=victim,
            ARN=arn,
            CREATE=create_body(created),
        ),
    )
    url = f"http://{site}:{attack_server.port}/attack-{site}.html"

    outcome = run_page(browser, url, tmp_path, resolving("attacker.test"))

    assert outcome.state == "done", outcome
    results = outcome.value
    # What the page saw: opaque answers to its no-cors requests, failures for the others.
    assert results["createTextPlain"] == {"type": "opaque", "status": 0}, results
    assert results["invokeBlob"] == results["publishNoBody"] == {"type": "opaque", "status": 0}
    assert results["beacon"] is True  # queued by the browser (and refused by Ember)
    for name in ("createJson", "putConcurrency", "read"):
        assert results[name] == {"error": "TypeError"}, (name, results)  # no CORS from Ember
    assert results["tagForm"] == results["publishForm"] == "submitted"
    # What Ember answered: every request that reached it was refused, preflights included, so
    # the PUT and the JSON POST were never sent.
    sent = to_ember(outcome, server.port)
    methods = sorted(r.method for r in sent)
    # POSTs: text/plain, blob, no body, beacon, two forms; GET: the read; OPTIONS: two preflights.
    assert methods == ["GET"] + ["OPTIONS"] * 2 + ["POST"] * 6, sent
    for request in sent:
        assert request.status_line.startswith("HTTP/1.1 403"), request
        assert not any(k.startswith("access-control-") for k in request.headers), request
    # And nothing changed.
    assert_gone(lam, created)
    assert_untouched(lam, victim)


def test_dns_rebinding_cannot_read_or_change_anything(
    server: LiveServer, lam: Any, browser: str, attack_server: AttackServer, tmp_path: Path
) -> None:
    secret = "s3cr3t-" + unique("value")
    victim = deploy(lam, VICTIM, prefix="rebound", Environment={"Variables": {"API_TOKEN": secret}})
    created = unique("rebound-created")
    attack_server.add(
        "/rebind.html", page("rebinding", REBIND, VICTIM=victim, CREATE=create_body(created))
    )
    before = len(attack_server.relayed)

    outcome = run_page(
        browser,
        f"http://rebind.test:{attack_server.port}/rebind.html",
        tmp_path,
        resolving("rebind.test"),
    )

    assert outcome.state == "done", outcome
    results = outcome.value
    assert results["read"]["status"] == 403 and results["create"]["status"] == 403, results
    assert secret not in json.dumps(results)
    # The requests did reach Ember, with the rebound name, and were refused for it.
    relayed = attack_server.relayed[before:]
    assert sorted(r.method for r in relayed) == ["GET", "POST"], relayed
    for request in relayed:
        assert request.host == f"rebind.test:{attack_server.port}"
        assert request.status == 403
        refusal = json.loads(request.body)
        assert (
            refusal["__type"] == "AccessDeniedException" and "DNS rebinding" in refusal["message"]
        )
    assert_gone(lam, created)
    # The same read with a name Ember answers to does return the secret: the refusal was the guard.
    assert lam.get_function(FunctionName=victim)["Configuration"]["Environment"]["Variables"] == {
        "API_TOKEN": secret
    }


def test_a_function_page_served_by_path_runs_in_an_opaque_origin(
    server: LiveServer, lam: Any, browser: str, tmp_path: Path
) -> None:
    created = unique("from-page")
    script = page("function page", FUNCTION_PAGE, CREATE=create_body(created))
    name = deploy(lam, FUNCTION_PAGE_HANDLER.format(page=script), prefix="page")
    url = public_url(lam, name, {"AllowOrigins": ["*"]})
    assert url.startswith(f"{server.endpoint}/_ember/url/")  # the API's own host and port

    outcome = run_page(browser, url, tmp_path)

    assert outcome.state == "done", outcome
    results = outcome.value
    assert results["origin"] == "null", results  # sandboxed: not Ember's origin
    assert results["createJson"] == {"error": "TypeError"}, results  # a preflight, refused
    assert results["createTextPlain"] == "opaque", results
    assert results["storage"] == {"error": "SecurityError"}, results
    [document] = [r for r in outcome.requests("GET") if r.url == url]
    assert document.headers["content-security-policy"].startswith("sandbox allow-scripts"), document
    api = [r for r in outcome.netlog if "/2015-03-31/functions" in r.url]
    assert sorted(r.method for r in api) == ["OPTIONS", "POST"], api
    assert all(r.status_line.startswith("HTTP/1.1 403") for r in api), api
    assert_gone(lam, created)
