"""The SigV4 credential scope of a request: who (access key), where (region) and which service.

The scope routes requests to the service they were signed for, as AWS endpoints do. Signatures
are verified for function URLs with AuthType AWS_IAM (api/sigv4.py, against the access keys of
functions/access_keys.py); the Lambda management API and the other services still accept any
signature: authenticating them is a later issue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.datastructures import Headers, QueryParams

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request")


@dataclass(frozen=True)
class CredentialScope:
    access_key: str
    date: str
    region: str
    service: str


def scope_of(headers: Headers, query: QueryParams) -> CredentialScope | None:
    text = headers.get("authorization", "")
    if not text and "X-Amz-Credential" in query:
        text = "Credential=" + query["X-Amz-Credential"]
    found = _CREDENTIAL.search(text)
    if found is None:
        return None
    return CredentialScope(*found.groups())
