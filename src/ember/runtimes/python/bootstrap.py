"""Ember's Python runtime: runs inside the sandbox as its PID 1. Standard library only.

It is pre-imported by the zygote (`preload`), then `main` runs in each sandbox: it imports the
function's handler, reports `ready` (or `init_error`) to the worker, and serves invocations one
at a time over the instance socket. Frames are `!II` (header length, body length) followed by
a JSON header and an opaque body. Messages:

  worker → runtime  {"type": "invoke", "request_id", "deadline_ms", "invoked_arn",
                     "client_context", "identity", "trace_id"} + event bytes
  runtime → worker  {"type": "ready"} | {"type": "init_error", "error": {...}}
                    {"type": "result", "error": null | {...}} + response bytes

Everything the function prints goes to fd 1/2 (the log pipe); before each result the runtime
writes `<marker> <request id>` there (`<marker> init` after start-up) so the worker knows the invocation's output is complete.
The Lambda Runtime API (for custom runtimes) will translate to the same frames.
"""

import base64
import contextlib
import decimal
import importlib
import json
import logging
import os
import selectors
import socket
import struct
import sys
import threading
import time
import traceback

_HEADER = struct.Struct("!II")


class _InitError(Exception):
    def __init__(self, error_type, message, stack=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack = stack or []


def preload():
    """Work done once in the zygote, shared by every sandbox it forks."""
    import email.utils  # noqa: F401 - common in handlers, cheap to share
    import urllib.parse  # noqa: F401
    import uuid  # noqa: F401


# -- framing -------------------------------------------------------------------------------


class _Channel:
    def __init__(self, fd):
        self.sock = socket.socket(fileno=fd)
        self.rfile = self.sock.makefile("rb", buffering=1 << 16)

    def read(self):
        head = self.rfile.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return None, b""
        hlen, blen = _HEADER.unpack(head)
        header = json.loads(self.rfile.read(hlen))
        body = self.rfile.read(blen) if blen else b""
        return header, body

    def write(self, header, body=b""):
        data = json.dumps(header).encode()
        self.sock.sendall(_HEADER.pack(len(data), len(body)) + data + body)


# -- the context object --------------------------------------------------------------------


class CognitoIdentity:
    def __init__(self, data):
        data = data or {}
        self.cognito_identity_id = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")


class Client:
    def __init__(self, data):
        data = data or {}
        self.installation_id = data.get("installation_id")
        self.app_title = data.get("app_title")
        self.app_version_name = data.get("app_version_name")
        self.app_version_code = data.get("app_version_code")
        self.app_package_name = data.get("app_package_name")


class ClientContext:
    def __init__(self, data):
        self.client = Client(data.get("client"))
        self.custom = data.get("custom")
        self.env = data.get("env")


class LambdaContext:
    def __init__(self, header, spec):
        self.aws_request_id = header["request_id"]
        self.function_name = spec["function_name"]
        self.function_version = spec["function_version"]
        self.invoked_function_arn = header["invoked_arn"]
        self.memory_limit_in_mb = str(spec["memory_mb"])
        self.log_group_name = spec["log_group"]
        self.log_stream_name = spec["log_stream"]
        self.identity = CognitoIdentity(header.get("identity"))
        self.client_context = None
        self.tenant_id = header.get("tenant_id")
        self._deadline_ms = header["deadline_ms"]
        raw = header.get("client_context")
        if raw:
            try:
                self.client_context = ClientContext(json.loads(base64.b64decode(raw)))
            except (ValueError, TypeError):
                self.client_context = None

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def log(self, message):
        sys.stdout.write(str(message))
        sys.stdout.flush()


# -- logging -------------------------------------------------------------------------------

_current = {"request_id": ""}


class _RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _current["request_id"]
        return True


class _LambdaLogHandler(logging.Handler):
    """Lambda's Text log format; one record is one log event (newlines become \\r)."""

    def emit(self, record):
        try:
            text = self.format(record).replace("\n", "\r")
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except Exception:
            self.handleError(record)


def _install_logging():
    handler = _LambdaLogHandler()
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
        root.setLevel(level.upper())


# -- handler loading -----------------------------------------------------------------------


def _load_handler(name):
    try:
        module_path, function_name = name.rsplit(".", 1)
    except ValueError as exc:
        raise _InitError(
            "Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (name, exc)
        ) from None
    module_name = module_path.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _InitError(
            "Runtime.ImportModuleError", "Unable to import module '%s': %s" % (module_name, exc)
        ) from None
    except SyntaxError as exc:
        raise _InitError(
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module '%s': %s" % (module_name, exc),
            _stack(exc.__traceback__),
        ) from None
    except Exception as exc:
        raise _InitError(type(exc).__name__, str(exc), _stack(exc.__traceback__)) from None
    handler = getattr(module, function_name, None)
    if handler is None:
        raise _InitError(
            "Runtime.HandlerNotFound",
            "Handler '%s' missing on module '%s'" % (function_name, module_name),
        )
    return handler


def _stack(tb):
    return traceback.format_list(traceback.extract_tb(tb))


def _error_document(error_type, message, stack, request_id):
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": stack,
    }


def _log_error(doc):
    lines = ["[ERROR] %s: %s" % (doc["errorType"], doc["errorMessage"])]
    if doc["stackTrace"]:
        lines.append("Traceback (most recent call last):")
        lines.extend(frame.rstrip("\n") for frame in doc["stackTrace"])
    sys.stdout.write("\r".join(lines).replace("\n", "\r") + "\n")


def _json_default(value):
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)


# -- the Ember API, reachable from inside the network namespace ----------------------------


def _start_api_proxy(port, path):
    """Relay 127.0.0.1:<port> inside the sandbox to Ember's API socket (bound in read-only)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)

    def relay():
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ)
        peers = {}
        while True:
            for key, _ in sel.select():
                sock = key.fileobj
                if sock is listener:
                    client, _ = listener.accept()
                    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    try:
                        upstream.connect(path)
                    except OSError:
                        client.close()
                        upstream.close()
                        continue
                    peers[client], peers[upstream] = upstream, client
                    sel.register(client, selectors.EVENT_READ)
                    sel.register(upstream, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(1 << 16)
                except OSError:
                    data = b""
                other = peers.get(sock)
                if data and other is not None:
                    try:
                        other.sendall(data)
                        continue
                    except OSError:
                        pass
                for s in (sock, other):
                    if s is not None:
                        peers.pop(s, None)
                        with contextlib.suppress(KeyError, ValueError):
                            sel.unregister(s)
                        s.close()

    threading.Thread(target=relay, name="ember-api-proxy", daemon=True).start()


# -- the loop ------------------------------------------------------------------------------


def main(fd, spec):
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    channel = _Channel(fd)
    marker = spec["marker"].encode()
    if spec.get("api_socket"):
        _start_api_proxy(spec["api_port"], spec["api_socket"])
    sys.path[:0] = ["/var/task", "/opt/python"]
    _install_logging()
    try:
        handler = _load_handler(spec["handler"])
    except _InitError as exc:
        doc = _error_document(exc.error_type, exc.message, exc.stack, "")
        _log_error(doc)
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(1, marker + b" init\n")
        channel.write({"type": "init_error", "error": doc})
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(1, marker + b" init\n")
    channel.write({"type": "ready"})
    while True:
        header, body = channel.read()
        if header is None or header.get("type") != "invoke":
            return
        request_id = header["request_id"]
        _current["request_id"] = request_id
        if header.get("trace_id"):
            os.environ["_X_AMZN_TRACE_ID"] = header["trace_id"]
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        error = None
        payload = b""
        try:
            event = json.loads(body) if body else {}
            result = handler(event, LambdaContext(header, spec))
        except Exception as exc:
            error = _error_document(
                type(exc).__name__, str(exc), _stack(exc.__traceback__)[1:], request_id
            )
            _log_error(error)
        else:
            try:
                payload = json.dumps(result, default=_json_default).encode()
            except (TypeError, ValueError) as exc:
                error = _error_document(
                    "Runtime.MarshalError", "Unable to marshal response: %s" % exc, [], request_id
                )
                _log_error(error)
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(1, marker + b" " + request_id.encode() + b"\n")
        if error is not None:
            payload = json.dumps(error).encode()
        channel.write({"type": "result", "error": error is not None}, payload)
