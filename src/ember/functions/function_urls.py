"""Function URLs: an HTTP endpoint per function ($LATEST) or alias.

Each URL has a random 32-character id. The URL returned (Settings.function_url_form) is by
default the path form `http://<host>:<port>/_ember/url/<url-id>/`, which every client opens:
Python's urllib and requests, Node's fetch and curl resolve names through the system resolver,
and glibc resolves `*.localhost` only with nss-myhostname, which stock hosts lack. The host form
`http://<url-id>.lambda-url.<region>.localhost:<port>/` (AWS's shape; browsers and curl map
every `.localhost` name to loopback themselves) is returned when asked for, and both forms
always answer.
"""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass
from typing import Any

from ember.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from ember.functions.model import LATEST
from ember.functions.service import FunctionService
from ember.store.base import Store

URL_ID_ALPHABET = string.ascii_lowercase + string.digits
URL_ID_LENGTH = 32
PATH_PREFIX = "/_ember/url/"
AUTH_TYPES = ("NONE", "AWS_IAM")


@dataclass(frozen=True)
class FunctionUrl:
    url_id: str
    function: str
    qualifier: str  # '' for the unqualified function ($LATEST), else an alias name
    auth_type: str
    cors: dict[str, Any] | None
    invoke_mode: str
    created: float
    last_modified: float

    @property
    def invoke_qualifier(self) -> str | None:
        return self.qualifier or None


def advertised_host(bind_host: str) -> str:
    """The host to put in URLs for a server bound to `bind_host` (a wildcard: loopback)."""
    if bind_host in ("", "0.0.0.0", "::", "[::]"):
        return "127.0.0.1"
    if ":" in bind_host and not bind_host.startswith("["):
        return f"[{bind_host}]"  # an IPv6 literal
    return bind_host


def iso_time(seconds: float) -> str:
    """Function URL timestamps: ISO-8601 with microseconds, as AWS returns them."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int(seconds * 1_000_000) % 1_000_000:06d}Z"


def _from_row(row: tuple[str, str, str, dict[str, Any], float, float]) -> FunctionUrl:
    url_id, function, qualifier, config, created, modified = row
    return FunctionUrl(
        url_id=url_id,
        function=function,
        qualifier=qualifier,
        auth_type=config["AuthType"],
        cors=config.get("Cors"),
        invoke_mode=config.get("InvokeMode", "BUFFERED"),
        created=created,
        last_modified=modified,
    )


def _check(auth_type: str, invoke_mode: str, cors: dict[str, Any] | None) -> None:
    if auth_type not in AUTH_TYPES:
        raise InvalidParameterValue(f"AuthType must be one of {', '.join(AUTH_TYPES)}.")
    if invoke_mode == "RESPONSE_STREAM":
        raise InvalidParameterValue(
            "InvokeMode RESPONSE_STREAM is not supported by Ember yet: use BUFFERED."
        )
    for method in (cors or {}).get("AllowMethods") or []:
        if method != "*" and method.upper() not in (
            "GET",
            "PUT",
            "HEAD",
            "POST",
            "PATCH",
            "DELETE",
        ):
            raise InvalidParameterValue(f"Invalid method in Cors AllowMethods: {method}")


class FunctionUrlService:
    def __init__(self, functions: FunctionService, store: Store) -> None:
        self.functions = functions
        self.store = store
        self.settings = functions.settings
        self._by_id: dict[str, FunctionUrl | None] = {}  # read on every URL request

    # -- naming --------------------------------------------------------------------------

    def url(self, config: FunctionUrl, authority: str | None = None) -> str:
        """The URL to return. `authority`: the Host header the caller reached Ember with (the
        request guard has vetted it); the path form uses it, as GetFunction's Code.Location
        does, so a client behind a port mapping or using a configured name gets a URL it can
        open. Without one: `--host` (loopback for a wildcard address) and `--port`."""
        s = self.settings
        if s.function_url_form == "host":
            return f"http://{config.url_id}.lambda-url.{s.region}.localhost:{s.port}/"
        authority = authority or f"{advertised_host(s.host)}:{s.port}"
        return f"http://{authority}{PATH_PREFIX}{config.url_id}/"

    def arn(self, config: FunctionUrl) -> str:
        return self.functions.arn(config.function, config.qualifier or None)

    def _key(self, identifier: str, qualifier: str | None) -> tuple[str, str]:
        """(function, '' or alias) for a request; 404 for unknown functions and aliases."""
        ref = self.functions.parse_ref(identifier)
        if ref.qualifier and qualifier and ref.qualifier != qualifier:
            raise InvalidParameterValue(
                "The derived qualifier from the function name does not match the specified qualifier."
            )
        chosen = qualifier or ref.qualifier or ""
        if chosen == LATEST:
            chosen = ""
        if chosen.isdigit():
            raise InvalidParameterValue(
                "Function URLs can point at $LATEST or an alias, not a version."
            )
        self.functions.get(ref.name, chosen or None)
        return ref.name, chosen

    def _not_found(self, function: str, qualifier: str) -> ResourceNotFound:
        return ResourceNotFound(
            f"The resource you requested does not exist. (Function URL config for "
            f"{self.functions.arn(function, qualifier or None)})"
        )

    # -- operations ------------------------------------------------------------------------

    def create(
        self,
        identifier: str,
        qualifier: str | None,
        auth_type: str,
        cors: dict[str, Any] | None,
        invoke_mode: str | None,
    ) -> FunctionUrl:
        function, chosen = self._key(identifier, qualifier)
        mode = invoke_mode or "BUFFERED"
        _check(auth_type, mode, cors)
        if self.store.find_function_urls(function, chosen):
            raise ResourceConflict(
                f"Failed to create function url config for [functionArn = "
                f"{self.functions.arn(function, chosen or None)}]. Error message:  FunctionUrlConfig "
                "exists for this Lambda function"
            )
        now = time.time()
        url_id = "".join(secrets.choice(URL_ID_ALPHABET) for _ in range(URL_ID_LENGTH))
        config = FunctionUrl(url_id, function, chosen, auth_type, cors or None, mode, now, now)
        self._store(config)
        return config

    def get(self, identifier: str, qualifier: str | None) -> FunctionUrl:
        function, chosen = self._key(identifier, qualifier)
        rows = self.store.find_function_urls(function, chosen)
        if not rows:
            raise self._not_found(function, chosen)
        return _from_row(rows[0])

    def update(
        self, identifier: str, qualifier: str | None, changes: dict[str, Any]
    ) -> FunctionUrl:
        current = self.get(identifier, qualifier)
        auth_type = changes.get("AuthType") or current.auth_type
        mode = changes.get("InvokeMode") or current.invoke_mode
        cors = changes.get("Cors", current.cors)
        _check(auth_type, mode, cors)
        config = FunctionUrl(
            current.url_id,
            current.function,
            current.qualifier,
            auth_type,
            cors or None,
            mode,
            current.created,
            time.time(),
        )
        self._store(config)
        return config

    def delete(self, identifier: str, qualifier: str | None) -> None:
        current = self.get(identifier, qualifier)
        self.store.delete_function_url(current.function, current.qualifier)
        self._by_id.pop(current.url_id, None)

    def list(self, identifier: str) -> list[FunctionUrl]:
        ref = self.functions.parse_ref(identifier)
        self.functions.get(ref.name)
        return [_from_row(r) for r in self.store.find_function_urls(ref.name)]

    def by_id(self, url_id: str) -> FunctionUrl | None:
        """The URL a request's host name or path names (cached)."""
        if url_id not in self._by_id:
            row = self.store.get_function_url(url_id)
            if len(self._by_id) > 10_000:
                self._by_id.clear()
            self._by_id[url_id] = _from_row(row) if row else None
        return self._by_id[url_id]

    def forget(self, function: str, version: str | None = None) -> None:
        """Drop cached URLs of `function` (after it changed or was deleted)."""
        for url_id in [k for k, v in self._by_id.items() if v is None or v.function == function]:
            del self._by_id[url_id]

    def removed(self, function: str, qualifier: str | None) -> None:
        """A function (qualifier None) or one of its versions or aliases was deleted."""
        if qualifier is not None and not qualifier.isdigit():
            self.store.delete_function_url(function, qualifier)  # an alias's URL goes with it
        self.forget(function)

    def _store(self, config: FunctionUrl) -> None:
        document: dict[str, Any] = {"AuthType": config.auth_type, "InvokeMode": config.invoke_mode}
        if config.cors:
            document["Cors"] = config.cors
        self.store.put_function_url(
            (
                config.url_id,
                config.function,
                config.qualifier,
                document,
                config.created,
                config.last_modified,
            )
        )
        self._by_id.pop(config.url_id, None)
