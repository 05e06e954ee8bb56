"""Which HTTP requests Ember answers at all: the guard against web pages driving the API.

A browser will send a page's requests to any address, Ember's included: a page on another
site can POST "simple" requests (no preflight) to `http://127.0.0.1:9000`, and a page whose
name is rebound to 127.0.0.1 (DNS rebinding) is even same-origin with it and can read the
answers. Ember authenticates nothing yet, so three rules keep pages out; `EmberApp` applies
them to every request before any routing (the invoke hot path: one pass over the headers).

1. **Host** (every request, function URLs and Ember's own routes included): an IP literal (a
   rebound name never is one), `localhost`, the bind host, a configured name (`--allowed-host`,
   `*.name` for its subdomains) or a function URL's `<url-id>.lambda-url.<region>.<one of those
   names>`. A request without a Host header (HTTP/1.0; no browser omits it) passes; two Host
   headers never do.
2. **Cross-origin** (everything but function URLs): an `Origin` other than the request's own
   (`http(s)://<Host>`; `null`, which sandboxed and opaque documents send, included) or a
   `Sec-Fetch-Site` other than `same-origin` / `none` is refused. Browsers send `Origin` with
   every non-GET request and `Sec-Fetch-Site` with every request; SDKs, curl and Node's `fetch`
   send neither.
3. **Content type** (everything but function URLs): a request that is not SigV4-signed (an
   `Authorization: AWS4-...` header, which no page can send cross-origin without a preflight
   that Ember never grants) must carry a content type an AWS protocol sends (JSON, AWS JSON
   1.0/1.1, CBOR, XML, octet-stream), or be a GET/HEAD/DELETE/OPTIONS without a body. So the
   types a page can send without a preflight — `text/plain`, `multipart/form-data`,
   `application/x-www-form-urlencoded` (the query protocol's, but its unsigned requests have
   no route anyway) — and body-less-type POSTs (`fetch(url, {mode: "no-cors", body: blob})`)
   are refused unless signed. Every SDK signs (boto3 and the AWS CLI send Invoke's payload
   without a content type), so only `--no-sign-request` / `UNSIGNED` Invoke calls are refused.

Refusals are `403 AccessDeniedException` in the JSON form every AWS JSON protocol parses (and
XML for a form-encoded query-protocol request), with no CORS headers; management APIs never
answer CORS, so a preflight always fails in the browser.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape

import orjson
from starlette.responses import Response
from starlette.types import Scope

log = logging.getLogger(__name__)

ERROR_TYPE = "AccessDeniedException"
# What AWS protocols send: rest-json (JSON; Node's SDK sends octet-stream for Invoke), AWS JSON
# 1.0/1.1, RPCv2 CBOR, rest-xml; none of these is a type a page can send without a preflight.
PROTOCOL_TYPES = frozenset(
    {
        b"application/json",
        b"application/x-amz-json-1.0",
        b"application/x-amz-json-1.1",
        b"application/cbor",
        b"application/x-amz-cbor-1.1",
        b"application/xml",
        b"text/xml",
        b"application/octet-stream",
        b"binary/octet-stream",
    }
)
BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
FORM_TYPE = b"application/x-www-form-urlencoded"
_CACHE_SIZE = 1024
_LOGGED_MAX = 256


@dataclass(frozen=True)
class Refusal:
    rule: str  # "host", "origin" or "content-type"
    message: str
    form: bool = False  # a form-encoded (query protocol) request: answer in XML

    def response(self, request_id: str) -> Response:
        if self.form:
            body = (
                "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                f"<Message>{escape(self.message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>"
            ).encode()
            return Response(
                body,
                status_code=403,
                media_type="text/xml",
                headers={"x-amzn-RequestId": request_id},
            )
        document = {"__type": ERROR_TYPE, "Type": "User", "message": self.message}
        return Response(
            orjson.dumps(document),
            status_code=403,
            media_type="application/json",
            headers={"X-Amzn-ErrorType": ERROR_TYPE, "x-amzn-RequestId": request_id},
        )


@dataclass(slots=True)
class Seen:
    """The headers the guard reads, from one pass over a request's."""

    host: bytes | None = None
    hosts: int = 0
    origin: bytes | None = None
    fetch_site: bytes | None = None
    content_type: bytes | None = None
    content_types: int = 0
    signed: bool = False
    body: bool = False

    @classmethod
    def of(cls, scope: Scope) -> Seen:
        host = origin = fetch_site = content_type = None
        hosts = content_types = 0
        signed = body = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
                hosts += 1
            elif name == b"content-type":
                content_type = value
                content_types += 1
            elif name == b"authorization":
                signed = value[:5].upper() == b"AWS4-"
            elif name == b"content-length":
                body = body or value.strip() not in (b"0", b"")
            elif name == b"transfer-encoding":
                body = True
            elif name == b"origin":
                origin = value
            elif name == b"sec-fetch-site":
                fetch_site = value
        return cls(host, hosts, origin, fetch_site, content_type, content_types, signed, body)


def host_name(host: bytes) -> str:
    """The name (or IP literal, IPv6 without brackets) in a Host header, lower-cased."""
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    name, colon, port = text.rpartition(":")
    if colon and port.isdigit():
        text = name
    return text[:-1] if text.endswith(".") else text


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class RequestGuard:
    """The three rules above, built once from the settings."""

    def __init__(self, bind_host: str, extra_hosts: Iterable[str] = ()) -> None:
        names = {"localhost"}
        suffixes: list[str] = []
        for raw in (bind_host, *extra_hosts):
            entry = raw.strip().lower().rstrip(".")
            if not entry or is_ip_literal(entry.strip("[]")):
                continue
            if entry.startswith("*."):
                suffixes.append(entry[1:])
            else:
                names.add(entry)
        self.names = frozenset(names)
        self.suffixes = tuple(suffixes)
        bases = "|".join(re.escape(n) for n in sorted(self.names))
        self.function_url_host = re.compile(rf"[a-z0-9]{{32}}\.lambda-url\.[a-z0-9-]+\.(?:{bases})")
        self._hosts: dict[bytes, bool] = {}
        self._logged: set[tuple[str, bytes]] = set()

    # -- rule 1 ------------------------------------------------------------------------------

    def host_allowed(self, host: bytes) -> bool:
        known = self._hosts.get(host)
        if known is None:
            known = self._name_allowed(host_name(host))
            if len(self._hosts) >= _CACHE_SIZE:
                self._hosts.clear()
            self._hosts[host] = known
        return known

    def _name_allowed(self, name: str) -> bool:
        if name in self.names or is_ip_literal(name):
            return True
        if any(name.endswith(suffix) for suffix in self.suffixes):
            return True
        return self.function_url_host.fullmatch(name) is not None

    # -- all three ---------------------------------------------------------------------------

    def check(self, scope: Scope, seen: Seen, function_url: bool) -> Refusal | None:
        """None when the request may go on, else why not."""
        if seen.hosts > 1:
            return self._refuse("host", b"", "A request must carry one Host header.")
        if seen.host is not None and not self.host_allowed(seen.host):
            return self._refuse(
                "host",
                seen.host,
                f"Ember does not answer to the host name '{host_name(seen.host)}' (DNS rebinding "
                "protection): use 127.0.0.1 or localhost, or start the server with "
                "--allowed-host NAME.",
                seen,
            )
        if function_url:
            return None
        if not self._same_origin(seen):
            culprit = seen.origin if seen.origin is not None else seen.fetch_site or b""
            return self._refuse(
                "origin",
                culprit,
                "Ember's management API does not accept requests from web pages on other "
                "origins (cross-site request forgery protection).",
                seen,
            )
        if not seen.signed and not self._content_ok(scope["method"], seen):
            kind = (seen.content_type or b"no content type").decode("latin-1")
            return self._refuse(
                "content-type",
                seen.content_type or b"(none)",
                f"An unsigned request with {kind} is refused (cross-site request forgery "
                "protection): sign it with SigV4 (any access key works, as SDKs and the AWS CLI "
                "do by default) or send the protocol's content type, e.g. application/json.",
                seen,
            )
        return None

    def _same_origin(self, seen: Seen) -> bool:
        site = seen.fetch_site
        if site is not None and site not in (b"same-origin", b"none"):
            return False
        origin = seen.origin
        if origin is None:
            return True
        host = (seen.host or b"").lower()
        origin = origin.lower()
        for scheme, port in ((b"http://", b":80"), (b"https://", b":443")):
            if origin.startswith(scheme):
                own = origin[len(scheme) :]
                return own == host or own + port == host or own == host.removesuffix(port)
        return False  # "null", or not an http(s) origin

    @staticmethod
    def _content_ok(method: str, seen: Seen) -> bool:
        content_type = seen.content_type
        if content_type is None:
            return method in BODYLESS_METHODS and not seen.body
        return seen.content_types == 1 and _essence(content_type) in PROTOCOL_TYPES

    def _refuse(self, rule: str, culprit: bytes, message: str, seen: Seen | None = None) -> Refusal:
        key = (rule, culprit[:200])
        if key not in self._logged and len(self._logged) < _LOGGED_MAX:
            self._logged.add(key)  # once per host / origin, so a hostile page cannot flood the log
            log.warning(
                "refused a request (%s rule): %s", rule, culprit.decode("latin-1")[:200] or message
            )
        # A signed form-encoded request is the query protocol (CloudWatch from older SDKs): XML.
        form = seen is not None and seen.signed and _essence(seen.content_type) == FORM_TYPE
        return Refusal(rule, message, form=form)


def _essence(content_type: bytes | None) -> bytes:
    return (content_type or b"").split(b";", 1)[0].strip().lower()
