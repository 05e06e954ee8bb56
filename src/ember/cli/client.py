"""The CLI's way to Ember's own HTTP routes (`/_ember/...`): GET, decode JSON, clear errors."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"


def get_json(
    endpoint: str, path: str, query: dict[str, Any] | None = None, timeout: float = 30
) -> Any:
    url = endpoint.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc).get("message", str(exc))
        except ValueError:
            message = str(exc)
        raise click.ClickException(message) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach Ember at {endpoint}: {exc}") from None
