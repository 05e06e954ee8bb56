"""Helpers shared by the Invoke and containment tests: deploy a function, invoke it, read its tail."""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from conftest import create

DEFAULT_RUNTIME = "python3.12"

REPORT = re.compile(
    r"REPORT RequestId: (?P<id>[0-9a-f-]{36})\tDuration: (?P<duration>\d+\.\d\d) ms"
    r"\tBilled Duration: (?P<billed>\d+) ms\tMemory Size: (?P<size>\d+) MB"
    r"\tMax Memory Used: (?P<used>\d+) MB(?:\tInit Duration: (?P<init>\d+\.\d\d) ms)?"
    r"(?:\tStatus: (?P<status>\w+))?(?:\tError Type: (?P<error_type>[\w.]+))?$",
    re.MULTILINE,
)


def unique(prefix: str = "fn") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def deploy(
    lam: Any,
    code: str | dict[str, str | bytes],
    prefix: str = "fn",
    runtime: str = DEFAULT_RUNTIME,
    **kwargs: Any,
) -> str:
    """Create a function with a fresh name; returns the name."""
    name = unique(prefix)
    create(lam, name, code, runtime=runtime, **kwargs)
    return name


@dataclass
class Invoked:
    status: int  # the HTTP status
    raw: bytes
    function_error: str | None
    executed_version: str | None
    log: str  # the decoded `X-Amz-Log-Result` tail
    headers: dict[str, str]

    @property
    def payload(self) -> Any:
        return json.loads(self.raw) if self.raw else None

    @property
    def report(self) -> re.Match[str]:
        """The platform's REPORT: always the tail's last line (a function may print look-alikes
        anywhere before it)."""
        found = REPORT.fullmatch(self.log.rstrip("\n").rsplit("\n", 1)[-1])
        assert found is not None, f"no REPORT line at the end of the tail:\n{self.log}"
        return found

    @property
    def cold(self) -> bool:
        return self.report["init"] is not None

    @property
    def request_id(self) -> str:
        """The invocation's request id, as the Invoke response's header gives it (never read from
        output, which a function controls)."""
        return self.headers["x-amzn-requestid"]


def invoke(lam: Any, name: str, event: Any = None, **kwargs: Any) -> Invoked:
    """Invoke synchronously with `LogType: Tail` (unless told otherwise)."""
    kwargs.setdefault("LogType", "Tail")
    if "Payload" not in kwargs:
        kwargs["Payload"] = json.dumps({} if event is None else event)
    response = lam.invoke(FunctionName=name, **kwargs)
    tail = response.get("LogResult")
    return Invoked(
        status=response["StatusCode"],
        raw=response["Payload"].read(),
        function_error=response.get("FunctionError"),
        executed_version=response.get("ExecutedVersion"),
        log=base64.b64decode(tail).decode() if tail else "",
        headers=dict(response["ResponseMetadata"]["HTTPHeaders"]),
    )


def ok(lam: Any, name: str, event: Any = None, **kwargs: Any) -> Any:
    """Invoke; the call must succeed without a function error. Returns the decoded result."""
    result = invoke(lam, name, event, **kwargs)
    assert result.status == 200, result
    assert result.function_error is None, f"{result.payload}\n{result.log}"
    return result.payload


def public_url(
    lam: Any, name: str, cors: dict[str, Any] | None = None, qualifier: str | None = None
) -> str:
    """A function URL anyone may call (AuthType NONE and the two statements AWS's console adds)."""
    extra: dict[str, Any] = {"Qualifier": qualifier} if qualifier else {}
    config = {"Cors": cors} if cors is not None else {}
    url: str = lam.create_function_url_config(
        FunctionName=name, AuthType="NONE", **config, **extra
    )["FunctionUrl"]
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
    return url
