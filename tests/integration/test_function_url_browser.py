"""Function URLs from a real browser: a page on another origin `fetch`es the URL exactly as
CreateFunctionUrlConfig returned it (`http://127.0.0.1:<port>/_ember/url/<url-id>/`), and the
host-name form (`http://<url-id>.lambda-url.us-east-1.localhost:<port>/`) too.

The browser is Debian's `chromium-headless-shell` (scripts/test installs it when it runs as root).
The page is served by a small HTTP server on `http://127.0.0.1:<port>`, so every request to the
URL is cross-origin; its POST carries a custom header and a JSON body, so Chromium must send a
CORS preflight first and read Ember's answer (from the URL's `Cors` config) before the POST.
`--dump-dom` prints the page once it has settled (with a virtual time budget, virtual time does
not advance while network requests are pending) and the page writes its result into the DOM.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_function_urls import PATH_URL, host_form

from conftest import LiveServer
from invoking import deploy, public_url

BROWSER_NAMES = ("chromium-headless-shell", "chromium", "google-chrome", "chrome-headless-shell")
BROWSER_TIMEOUT_S = 60
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")

HANDLER = """
import json

def handler(event, context):
    http = event["requestContext"]["http"]
    seen = {"method": http["method"], "path": http["path"], "demo": event["headers"].get("x-demo"),
            "origin": event["headers"].get("origin"), "body": event.get("body"),
            "isBase64Encoded": event["isBase64Encoded"]}
    return {"statusCode": 200,
            "headers": {"content-type": "application/json", "x-demo-reply": "echo:" + str(seen["demo"])},
            "body": json.dumps(seen)}
"""

# The page's script: one cross-origin POST that needs a preflight (a custom header and a
# non-simple content type); the outcome, or the error, goes into <pre id="out"> as JSON.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>function URL from another origin</title></head>
<body><pre id="out" data-state="pending">pending</pre>
<script>
const out = document.getElementById("out");
function show(state, value) {{
  out.dataset.state = state;
  out.textContent = JSON.stringify(value);
}}
fetch({url}, {{
  method: "POST",
  headers: {{"x-demo": {demo}, "content-type": "application/json"}},
  body: {body},
}}).then(async (response) => {{
  show("done", {{status: response.status, exposed: response.headers.get("x-demo-reply"),
                 json: await response.json()}});
}}).catch((error) => {{
  show("failed", {{error: String(error), name: error.name}});
}});
</script></body></html>
"""

PAYLOAD = {"hello": "from the page", "n": 42}
DEMO = "demo-value-7"
_OUT = re.compile(r'<pre id="out" data-state="(?P<state>[a-z]+)">(?P<text>.*?)</pre>', re.DOTALL)


def find_browser() -> str | None:
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser() -> str:
    """The headless Chromium to drive; fails (as root or in CI) or skips the test without one."""
    found = find_browser()
    if found:
        return found
    if IN_CI or os.geteuid() == 0:
        pytest.fail(
            "chromium-headless-shell is not installed; scripts/test installs it "
            "(apt-get install chromium-headless-shell) when run as root"
        )
    pytest.skip(
        "no headless Chromium (apt-get install chromium-headless-shell, or run scripts/test as root)"
    )


@pytest.fixture(scope="module")
def browser() -> str:
    return require_browser()


@dataclass
class PageServer:
    """Serves HTML pages from memory on its own origin, http://127.0.0.1:<port>."""

    pages: dict[str, str]
    origin: str

    def add(self, path: str, text: str) -> str:
        self.pages[path] = text
        return self.origin + path


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    pages: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            text = pages.get(self.path.split("?", 1)[0])
            data = (text or "not found").encode()
            self.send_response(200 if text is not None else 404)
            self.send_header("content-type", "text/html; charset=utf-8" if text else "text/plain")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, name="page-server", daemon=True)
    thread.start()
    try:
        yield PageServer(pages, f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@dataclass
class Exchange:
    """One request the browser made, from its net log, and the response's status line and headers."""

    method: str
    url: str
    status_line: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names


@dataclass
class Outcome:
    state: str  # "done" (the fetch resolved), "failed" (it rejected) or "pending"
    value: Any
    netlog: list[Exchange]  # in the order the browser started them

    def requests(self, method: str) -> list[Exchange]:
        return [r for r in self.netlog if r.method == method]

    def urls(self, method: str) -> list[str]:
        return [r.url for r in self.requests(method)]


def run_page(browser: str, page_url: str, tmp_path: Path, extra: Sequence[str] = ()) -> Outcome:
    """Load the page in a fresh headless Chromium (with `extra` flags) and read what its script
    wrote."""
    netlog = tmp_path / "netlog.json"
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-proxy-server",
        f"--user-data-dir={tmp_path / 'profile'}",
        *extra,
        f"--log-net-log={netlog}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page_url,
    ]
    # Its own process group: /usr/bin/chromium-headless-shell is a shell wrapper, and Chromium
    # starts helper processes; none of them may outlive the test.
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=BROWSER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{browser} did not finish {page_url} in {BROWSER_TIMEOUT_S}s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 0, f"{command} exited {process.returncode}:\n{stderr[-4000:]}"
    found = _OUT.search(stdout)
    assert found, f"no result element in the dumped DOM:\n{stdout}\n{stderr[-4000:]}"
    text = html.unescape(found["text"])
    value = json.loads(text) if found["state"] != "pending" else text
    return Outcome(found["state"], value, _url_requests(netlog))


def _url_requests(path: Path) -> list[Exchange]:
    """The URL requests in a Chromium net log (--log-net-log), empty if there is none."""
    try:
        log = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    kinds = {v: k for k, v in log.get("constants", {}).get("logEventTypes", {}).items()}
    by_source: dict[int, Exchange] = {}
    for event in log.get("events", []):
        kind, params = kinds.get(event.get("type")), event.get("params") or {}
        source = event.get("source", {}).get("id")
        if kind == "URL_REQUEST_START_JOB" and "method" in params:
            by_source[source] = Exchange(params["method"], params["url"])
        elif kind == "HTTP_TRANSACTION_READ_RESPONSE_HEADERS" and source in by_source:
            status_line, *lines = params.get("headers", [""])
            by_source[source].status_line = status_line
            for line in lines:
                name, _, value = line.partition(":")
                by_source[source].headers[name.strip().lower()] = value.strip()
    return list(by_source.values())


def make_page(pages: PageServer, name: str, function_url: str) -> str:
    text = PAGE.format(
        url=json.dumps(function_url), demo=json.dumps(DEMO), body=json.dumps(json.dumps(PAYLOAD))
    )
    return pages.add(f"/{name}.html", text)


def cors_for(origin: str) -> dict[str, Any]:
    return {
        "AllowOrigins": [origin],
        "AllowMethods": ["GET", "POST"],
        "AllowHeaders": ["content-type", "x-demo"],
        "ExposeHeaders": ["x-demo-reply"],
        "MaxAge": 60,
    }


@pytest.fixture(scope="module")
def function_name(server: LiveServer) -> str:
    return deploy(server.client("lambda"), HANDLER, prefix="browser")


@pytest.fixture(scope="module")
def allowed_url(server: LiveServer, page_server: PageServer, function_name: str) -> str:
    """The function's URL, allowing the page server's origin, as CreateFunctionUrlConfig returns it."""
    url = public_url(server.client("lambda"), function_name, cors_for(page_server.origin))
    assert re.fullmatch(PATH_URL.format(port=server.port), url)
    return url


@pytest.mark.parametrize("form", ["path", "host"])
def test_browser_page_on_another_origin_calls_the_url(
    server: LiveServer,
    browser: str,
    page_server: PageServer,
    allowed_url: str,
    form: str,
    tmp_path: Path,
) -> None:
    url = allowed_url if form == "path" else host_form(allowed_url, server.port)
    page = make_page(page_server, f"allowed-{form}", url)

    outcome = run_page(browser, page, tmp_path)

    assert outcome.state == "done", outcome
    assert outcome.value["status"] == 200, outcome
    assert outcome.value["exposed"] == f"echo:{DEMO}"  # readable only because it is exposed
    seen = outcome.value["json"]
    assert seen["method"] == "POST" and seen["path"] == "/"
    assert seen["demo"] == DEMO
    assert seen["origin"] == page_server.origin
    assert json.loads(seen["body"]) == PAYLOAD and seen["isBase64Encoded"] is False
    # The browser asked first (the preflight Ember answered from the Cors config), then posted.
    assert outcome.urls("OPTIONS") == [url] and outcome.urls("POST") == [url], outcome.netlog
    [preflight] = outcome.requests("OPTIONS")
    assert preflight.status_line == "HTTP/1.1 200 OK", preflight
    assert preflight.headers["access-control-allow-origin"] == page_server.origin, preflight
    assert preflight.headers["access-control-allow-headers"] == "content-type,x-demo", preflight


def test_browser_enforces_the_urls_cors_config(
    server: LiveServer,
    lam: Any,
    browser: str,
    page_server: PageServer,
    function_name: str,
    tmp_path: Path,
) -> None:
    # The same function behind an alias whose URL allows another origin only.
    version = lam.publish_version(FunctionName=function_name)["Version"]
    lam.create_alias(FunctionName=function_name, Name="other-origin", FunctionVersion=version)
    url = public_url(lam, function_name, cors_for("http://app.example"), qualifier="other-origin")
    page = make_page(page_server, "denied", url)

    outcome = run_page(browser, page, tmp_path)

    assert outcome.state == "failed", outcome
    assert outcome.value["name"] == "TypeError", outcome  # "Failed to fetch": blocked by CORS
    assert outcome.urls("OPTIONS") == [url], outcome.netlog
    assert outcome.urls("POST") == [], outcome.netlog  # the preflight stopped it
    [preflight] = outcome.requests("OPTIONS")
    assert preflight.status_line == "HTTP/1.1 200 OK", preflight  # answered, but not allowed:
    assert "access-control-allow-origin" not in preflight.headers, preflight
