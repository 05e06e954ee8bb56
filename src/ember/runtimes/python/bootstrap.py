"""Ember's Python runtime: runs inside the sandbox as its PID 1. Standard library only.

It must run on every Python a function may use (3.10 and later), so it uses no newer syntax or
APIs; annotations stay unevaluated (`from __future__ import annotations`).

It is pre-imported by the zygote (`preload`), then `main` runs in each sandbox: it imports the
function's handler, reports `ready` (or `init_error`) to the worker, and serves invocations one
at a time over the instance socket. Frames are `!II` (header length, body length) followed by
a JSON header and an opaque body. Messages:

  worker → runtime  {"type": "invoke", "request_id", "deadline_ms", "invoked_arn",
                     "client_context", "identity", "trace_id"} + event bytes
  runtime → worker  {"type": "ready"} | {"type": "init_error", "error": {...}}
                    {"type": "result", "request_id", "error": false | true} + response bytes

The worker accepts exactly one frame per question (`ready`/`init_error` after start, one
`result` naming the request per `invoke`); any other frame ends the instance.

Everything the function prints goes to fd 1/2 (the log pipe); before each result the runtime
writes `<marker> <request id>` there, on a line of its own (`<marker> init` after start-up), so
the worker knows the invocation's output is complete. The Lambda Runtime API (for custom
runtimes) will translate to the same frames.

Results are serialized as AWS's Python runtime does: `Decimal` as a JSON number, `bytes`
returned as they are, non-ASCII text unescaped from python3.12 on.
"""

from __future__ import annotations

import base64
import contextlib
import decimal
import importlib
import io
import json
import logging
import os
import re
import socket
import struct
import sys
import time
import traceback
from types import TracebackType
from typing import Any, Callable

_HEADER = struct.Struct("!II")
_THIS_FILE = os.path.abspath(__file__)
_ENSURE_ASCII = sys.version_info < (3, 12)  # AWS's runtimes stopped escaping with python3.12
_SDK = "/var/runtime/sdk"  # boto3 and its dependencies, bound read-only by the platform

Header = dict[str, Any]  # a frame's JSON header
ErrorDocument = dict[str, Any]  # {errorMessage, errorType, requestId, stackTrace}
Handler = Callable[[Any, "LambdaContext"], Any]


class _InitError(Exception):
    def __init__(self, error_type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack: list[str] = stack or []


def preload() -> None:
    """Work done once in the zygote, shared by every sandbox it forks."""
    import email.utils  # noqa: F401 - common in handlers, cheap to share
    import urllib.parse  # noqa: F401
    import uuid  # noqa: F401


# -- framing -------------------------------------------------------------------------------


class _Channel:
    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.rfile = self.sock.makefile("rb", buffering=1 << 16)

    def read(self) -> tuple[Header | None, bytes]:
        head = self.rfile.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return None, b""
        hlen, blen = _HEADER.unpack(head)
        header: Header = json.loads(self.rfile.read(hlen))
        body = self.rfile.read(blen) if blen else b""
        return header, body

    def write(self, header: Header, body: bytes = b"") -> None:
        data = json.dumps(header).encode()
        self.sock.sendall(_HEADER.pack(len(data), len(body)) + data + body)


# -- output --------------------------------------------------------------------------------


class _LogPipe(io.RawIOBase):
    """fd 1 or 2 (both the log pipe), remembering whether the pipe's last byte was a newline.

    The end-of-output marker must start a line of its own even when the function printed a
    partial line (`print(x, end="")`), or the worker would not recognise it.
    """

    at_line_start = True  # shared by stdout and stderr: they are the same pipe

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = os.write(self._fd, view)
        if written:
            _LogPipe.at_line_start = view[written - 1] == 0x0A
        return written


def _log_stream(fd: int, errors: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(
        io.BufferedWriter(_LogPipe(fd)), encoding="utf-8", errors=errors, line_buffering=True
    )


class _Output:
    """The runtime's own handles on the log pipe (the function may replace sys.stdout)."""

    stdout: io.TextIOWrapper
    stderr: io.TextIOWrapper

    @classmethod
    def install(cls) -> None:
        cls.stdout = _log_stream(1, "strict")
        cls.stderr = _log_stream(2, "backslashreplace")
        sys.stdout = cls.stdout
        sys.stderr = cls.stderr

    @classmethod
    def flush(cls) -> None:
        for stream in (cls.stdout, cls.stderr):
            with contextlib.suppress(Exception):  # closed or broken by the function
                stream.flush()

    @classmethod
    def write_line(cls, text: str) -> None:
        with contextlib.suppress(Exception):
            cls.stdout.write(text + "\n")
            cls.stdout.flush()

    @classmethod
    def end_of_output(cls, marker: bytes, token: str) -> None:
        """Everything printed so far is in the pipe; then the marker, on a line of its own."""
        cls.flush()
        prefix = b"" if _LogPipe.at_line_start else b"\n"
        os.write(1, prefix + marker + b" " + token.encode() + b"\n")
        _LogPipe.at_line_start = True


# -- the context object --------------------------------------------------------------------


class CognitoIdentity:
    def __init__(self, data: dict[str, Any] | None) -> None:
        data = data or {}
        self.cognito_identity_id: str | None = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id: str | None = data.get("cognitoIdentityPoolId")


class Client:
    def __init__(self, data: dict[str, Any] | None) -> None:
        data = data or {}
        self.installation_id: str | None = data.get("installation_id")
        self.app_title: str | None = data.get("app_title")
        self.app_version_name: str | None = data.get("app_version_name")
        self.app_version_code: str | None = data.get("app_version_code")
        self.app_package_name: str | None = data.get("app_package_name")


class ClientContext:
    def __init__(self, data: dict[str, Any]) -> None:
        self.client = Client(data.get("client"))
        self.custom: Any = data.get("custom")
        self.env: Any = data.get("env")


class LambdaContext:
    def __init__(self, header: Header, spec: dict[str, Any]) -> None:
        self.aws_request_id: str = header["request_id"]
        self.function_name: str = spec["function_name"]
        self.function_version: str = spec["function_version"]
        self.invoked_function_arn: str = header["invoked_arn"]
        self.memory_limit_in_mb = str(spec["memory_mb"])
        self.log_group_name: str = spec["log_group"]
        self.log_stream_name: str = spec["log_stream"]
        self.identity = CognitoIdentity(header.get("identity"))
        self.client_context: ClientContext | None = None
        self.tenant_id: str | None = header.get("tenant_id")
        self._deadline_ms: int = header["deadline_ms"]
        raw = header.get("client_context")
        if raw:
            try:
                data = json.loads(base64.b64decode(raw))
                if isinstance(data, dict):
                    self.client_context = ClientContext(data)
            except (ValueError, TypeError):
                self.client_context = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def log(self, message: object) -> None:
        _Output.stdout.write(str(message))
        _Output.stdout.flush()


# -- logging -------------------------------------------------------------------------------


class _Current:
    request_id = ""


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _Current.request_id
        return True


class _LambdaLogHandler(logging.Handler):
    """Lambda's Text log format; one record is one log event (newlines become \\r)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record).replace("\n", "\r")
            _Output.stdout.write(text + "\n")
            _Output.stdout.flush()
        except Exception:
            self.handleError(record)


class _JsonFormatter(logging.Formatter):
    """Lambda's JSON log format: one object per record (LoggingConfig.LogFormat = JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "timestamp": _iso(record.created),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "requestId": getattr(record, "aws_request_id", ""),
        }
        if record.exc_info and record.exc_info[0] is not None:
            doc["errorType"] = record.exc_info[0].__name__
            doc["errorMessage"] = str(record.exc_info[1])
            doc["stackTrace"] = traceback.format_tb(record.exc_info[2])
        return json.dumps(doc, default=str)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%03dZ" % (
        int(seconds * 1000) % 1000
    )


def _json_logs() -> bool:
    return os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"


def _install_logging() -> None:
    handler = _LambdaLogHandler()
    formatter: logging.Formatter
    if _json_logs():
        formatter = _JsonFormatter()
    else:
        formatter = logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
        formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL")
    if level:
        with contextlib.suppress(ValueError):
            root.setLevel(level.upper())


# -- handler loading -----------------------------------------------------------------------

_MISSING = object()


def _load_handler(name: str) -> Handler:
    """`module.function`, where module may be a path (`pkg/mod`) or dotted (`pkg.mod`)."""
    try:
        module_path, function_name = name.rsplit(".", 1)
    except ValueError as exc:
        raise _InitError(
            "Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (name, exc)
        ) from None
    module_name = module_path.replace("/", ".")
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise _InitError(
            "Runtime.BuiltInModuleConflict",
            "Cannot use built-in module %s as a handler module" % module_path,
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _InitError(
            "Runtime.ImportModuleError", "Unable to import module '%s': %s" % (module_path, exc)
        ) from None
    except SyntaxError as exc:
        raise _InitError(
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module '%s': %s" % (module_path, exc),
            ['  File "%s" Line %s\n    %s' % (exc.filename, exc.lineno, exc.text)],
        ) from None
    except Exception as exc:
        raise _InitError(type(exc).__name__, str(exc), _user_stack(exc.__traceback__)) from None
    handler: Any = getattr(module, function_name, _MISSING)
    if handler is _MISSING:
        raise _InitError(
            "Runtime.HandlerNotFound",
            "Handler '%s' missing on module '%s'" % (function_name, module_path),
        )
    loaded: Handler = handler
    return loaded


def _user_stack(tb: TracebackType | None) -> list[str]:
    """The traceback without the runtime's own leading frames (as AWS's runtime trims it)."""
    frames = traceback.extract_tb(tb)
    while frames and frames[0].filename == _THIS_FILE:
        frames.pop(0)
    return traceback.format_list(frames)


def _error_document(
    error_type: str, message: str, stack: list[str], request_id: str
) -> ErrorDocument:
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": stack,
    }


def _log_error(doc: ErrorDocument) -> None:
    """`[ERROR] Type: message` and the traceback, as one log event (lines joined by \\r);
    in the JSON log format, one JSON object."""
    if _json_logs():
        _Output.write_line(
            json.dumps(
                {
                    "timestamp": _iso(time.time()),
                    "level": "ERROR",
                    "message": doc["errorMessage"],
                    "errorType": doc["errorType"],
                    "errorMessage": doc["errorMessage"],
                    "stackTrace": doc["stackTrace"],
                    "requestId": doc["requestId"],
                }
            )
        )
        return
    description = "[ERROR]"
    if doc["errorType"]:
        description += " " + doc["errorType"]
    if doc["errorMessage"]:
        description += (":" if doc["errorType"] else "") + " " + doc["errorMessage"]
    lines = [description, "Traceback (most recent call last):"]
    for frame in doc["stackTrace"]:
        lines.extend(frame.splitlines() or [""])
    _Output.write_line("\r".join(lines).replace("\n", "\r"))


# -- results -------------------------------------------------------------------------------

_DECIMAL_TAG = "\x00ember-decimal-%s:" % os.urandom(6).hex()
_DECIMAL_TAGGED = re.compile('"%s([^"\\\\]*)\\\\u0000"' % re.escape(json.dumps(_DECIMAL_TAG)[1:-1]))


class _Encoder(json.JSONEncoder):
    """Decimals are tagged strings first, turned into raw JSON numbers afterwards."""

    def __init__(self) -> None:
        super().__init__(ensure_ascii=_ENSURE_ASCII)
        self.saw_decimal = False

    def default(self, o: Any) -> Any:
        if isinstance(o, decimal.Decimal):
            self.saw_decimal = True
            return _DECIMAL_TAG + ("NaN" if o.is_nan() else str(o)) + "\x00"
        return super().default(o)


def _marshal(result: Any) -> bytes:
    """A handler's return value as the response body (raises TypeError/ValueError)."""
    if isinstance(result, bytes):
        return result
    encoder = _Encoder()
    text = encoder.encode(result)
    if encoder.saw_decimal:
        text = _DECIMAL_TAGGED.sub(lambda m: m.group(1), text)
    return text.encode()


# -- the loop ------------------------------------------------------------------------------


def _python_path() -> list[str]:
    """Where handler code is imported from, in AWS's order: the code, then layers."""
    version = "python%d.%d" % sys.version_info[:2]
    paths = ["/var/task", "/opt/python/lib/%s/site-packages" % version, "/opt/python"]
    extra = os.environ.get("PYTHONPATH", "")
    paths.extend(p for p in extra.split(os.pathsep) if p and p not in paths)
    return paths


def main(fd: int, spec: dict[str, Any]) -> None:
    _Output.install()
    channel = _Channel(fd)
    marker = spec["marker"].encode()
    sys.path[:0] = _python_path()
    if os.path.isdir(_SDK):  # the platform's boto3, last (a function's own boto3 wins)
        sys.path.append(_SDK)
    _install_logging()
    timings: dict[str, float] = dict(spec.get("timings") or {})
    timings["importing"] = time.monotonic()
    try:
        handler = _load_handler(spec["handler"])
    except _InitError as exc:
        doc = _error_document(exc.error_type, exc.message, exc.stack, "")
        _log_error(doc)
        _Output.end_of_output(marker, "init")
        channel.write({"type": "init_error", "error": doc})
        return
    _Output.end_of_output(marker, "init")
    timings["ready"] = time.monotonic()
    channel.write({"type": "ready", "timings": timings})
    while True:
        header, body = channel.read()
        if header is None or header.get("type") != "invoke":
            return
        request_id: str = header["request_id"]
        _Current.request_id = request_id
        if header.get("trace_id"):
            os.environ["_X_AMZN_TRACE_ID"] = header["trace_id"]
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        error: ErrorDocument | None = None
        payload = b""
        try:
            event = json.loads(body) if body else {}
            result = handler(event, LambdaContext(header, spec))
        except Exception as exc:
            error = _error_document(
                type(exc).__name__, str(exc), _user_stack(exc.__traceback__), request_id
            )
            _log_error(error)
        else:
            try:
                payload = _marshal(result)
            except (TypeError, ValueError) as exc:
                error = _error_document(
                    "Runtime.MarshalError", "Unable to marshal response: %s" % exc, [], request_id
                )
                _log_error(error)
        _Output.end_of_output(marker, request_id)
        if error is not None:
            payload = json.dumps(error).encode()
        channel.write(
            {"type": "result", "request_id": request_id, "error": error is not None}, payload
        )
