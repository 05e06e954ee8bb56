"""Synchronous Invoke on a live `ember server`, end to end through real sandboxes.

Each test deploys its own function (unique names) and drives it with boto3 or the AWS CLI, as a
user would: results, function errors, the log tail and its REPORT line, the context object and
environment, warm and cold instances, limits, concurrency and freezing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import LiveServer, free_port, make_zip
from invoking import Invoked, deploy, invoke, ok, unique

HELLO = 'def handler(event, context):\n    return "Hello, " + event["username"]\n'

COUNTER = """
count = 0

def handler(event, context):
    global count
    count += 1
    return count
"""

SLEEPER = """
import os
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
"""

PYTHON_RUNTIMES = ("python3.10", "python3.11", "python3.12", "python3.13")
SIX_MB = 6 * 1024 * 1024


def client_error(call: Any, **params: Any) -> tuple[int, str, dict[str, Any]]:
    """Make a call that must fail; returns (HTTP status, error code, the parsed response)."""
    with pytest.raises(ClientError) as caught:
        call(**params)
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response


# -- hello world -------------------------------------------------------------------------------


def test_hello_world_from_boto3(lam: Any) -> None:
    name = deploy(lam, HELLO, "hello")
    response = lam.invoke(FunctionName=name, Payload=json.dumps({"username": "Sally"}))
    assert response["StatusCode"] == 200
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    assert "LogResult" not in response  # only with LogType Tail
    assert json.loads(response["Payload"].read()) == "Hello, Sally"


def test_hello_world_from_the_aws_cli(lam: Any, server: LiveServer, tmp_path: Path) -> None:
    name = deploy(lam, HELLO, "hello-cli")
    aws = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "aws"
    if not aws.exists():
        pytest.skip("the AWS CLI is not installed in the venv")
    out = tmp_path / "out.json"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    version = subprocess.run(
        [str(aws), "--version"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    # AWS CLI v2 base64-decodes blobs unless told otherwise; v1 sends them raw and has no flag.
    binary_format = (
        []
        if "aws-cli/1." in version.stdout + version.stderr
        else ["--cli-binary-format", "raw-in-base64-out"]
    )
    done = subprocess.run(
        [
            str(aws),
            "lambda",
            "invoke",
            "--endpoint-url",
            server.endpoint,
            "--function-name",
            name,
            *binary_format,
            "--payload",
            '{"username":"Sally"}',
            "--log-type",
            "Tail",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["StatusCode"] == 200
    assert summary["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in summary
    assert "REPORT RequestId: " in base64.b64decode(summary["LogResult"]).decode()
    assert json.loads(out.read_text()) == "Hello, Sally"


# -- the log tail ------------------------------------------------------------------------------


def test_tail_has_start_output_end_and_report_with_init_duration_on_cold_starts_only(
    lam: Any,
) -> None:
    code = """
import logging

def handler(event, context):
    print("printed", event["n"])
    logging.getLogger().warning("warned %s", event["n"])
    return event["n"]
"""
    name = deploy(lam, code, "tail", MemorySize=192)
    first = invoke(lam, name, {"n": 1})
    second = invoke(lam, name, {"n": 2})
    for result, n in ((first, 1), (second, 2)):
        assert result.payload == n
        lines = result.log.splitlines()
        request_id = result.request_id
        start = lines.index(f"START RequestId: {request_id} Version: $LATEST")
        end = lines.index(f"END RequestId: {request_id}")
        between = lines[start + 1 : end]
        assert f"printed {n}" in between
        warned = [line for line in between if line.startswith("[WARNING]\t")]
        assert len(warned) == 1
        assert warned[0].endswith(f"\t{request_id}\twarned {n}")
        report = result.report
        assert lines[end + 1] == report[0]
        assert report["id"] == request_id
        assert float(report["duration"]) > 0
        assert int(report["billed"]) >= float(report["duration"])  # rounded up
        assert report["size"] == "192"
        assert int(report["used"]) > 0  # the cgroup's real peak
        assert report["status"] is None
    assert first.cold and float(first.report["init"]) > 0
    assert not second.cold


def test_tail_is_the_last_4_kb_of_the_invocations_log(lam: Any) -> None:
    code = "def handler(event, context):\n    for i in range(2000):\n        print('line', i)\n"
    name = deploy(lam, code, "tail-4k")
    result = invoke(lam, name)
    assert result.status == 200
    assert len(base64.b64decode(result.headers["x-amz-log-result"])) <= 4096
    assert "line 1999" in result.log
    assert "line 0\n" not in result.log
    assert result.log.rstrip("\n").splitlines()[-1].startswith("REPORT RequestId: ")


def test_output_without_a_final_newline_stays_the_functions_own(lam: Any) -> None:
    code = """
import sys

def handler(event, context):
    print("no newline", end="")
    sys.stderr.write("partial on stderr")
    return "done"
"""
    name = deploy(lam, code, "partial")
    for _ in range(2):
        result = invoke(lam, name)
        assert result.payload == "done"
        lines = result.log.splitlines()
        start = lines.index(f"START RequestId: {result.request_id} Version: $LATEST")
        end = lines.index(f"END RequestId: {result.request_id}")
        output = "\n".join(lines[start + 1 : end])
        assert "no newline" in output and "partial on stderr" in output
        assert "\x1e" not in result.log  # the runtime's end-of-output marker never shows


def test_a_child_processs_unterminated_output_stays_the_functions_own(lam: Any) -> None:
    code = """
import subprocess

def handler(event, context):
    subprocess.run(["printf", "child without newline"], check=True)
    return "done"
"""
    name = deploy(lam, code, "child-partial")
    result = invoke(lam, name)
    assert result.payload == "done"
    assert "child without newline" in result.log
    assert "\x1e" not in result.log


def test_print_logging_and_dev_stdout_all_reach_the_log(lam: Any) -> None:
    code = """
import logging
import os
import subprocess
import sys

logger = logging.getLogger("app")
logger.setLevel(logging.INFO)

def handler(event, context):
    print("from print")
    logger.info("from logging")
    with open("/dev/stdout", "w") as f:
        f.write("from /dev/stdout\\n")
    subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
    os.write(2, b"from fd 2\\n")
    return "ok"
"""
    name = deploy(lam, code, "outputs")
    result = invoke(lam, name)
    assert result.function_error is None, result.payload
    for text in (
        "from print",
        "from logging",
        "from /dev/stdout",
        "from a child process",
        "from fd 2",
    ):
        assert text in result.log, text


# -- invocation types --------------------------------------------------------------------------


def test_dry_run_answers_204_and_runs_nothing(lam: Any) -> None:
    name = deploy(lam, COUNTER, "dry")
    response = lam.invoke(FunctionName=name, InvocationType="DryRun")
    assert response["StatusCode"] == 204
    assert response["Payload"].read() == b""
    first = invoke(lam, name)
    assert first.payload == 1  # the module never ran before
    assert first.cold


def test_dry_run_of_a_missing_function_is_404(lam: Any) -> None:
    status, code, _ = client_error(
        lam.invoke, FunctionName=unique("missing"), InvocationType="DryRun"
    )
    assert (status, code) == (404, "ResourceNotFoundException")


MARK_MYSELF = """
import json
import os
import urllib.request

def handler(event, context):
    url = "%s/2015-03-31/functions/%s/configuration" % (
        os.environ["AWS_ENDPOINT_URL"], context.function_name)
    body = json.dumps({"Description": event["mark"]}).encode()
    request = urllib.request.Request(url, data=body, method="PUT",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    return event["mark"]
"""


def test_event_invocations_are_never_a_fake_202(lam: Any) -> None:
    """Either an honest client error, or a 202 for an event that then really runs."""
    name = deploy(lam, MARK_MYSELF, "event")
    mark = unique("ran")
    try:
        response = lam.invoke(
            FunctionName=name, InvocationType="Event", Payload=json.dumps({"mark": mark})
        )
    except ClientError as error:
        status = error.response["ResponseMetadata"]["HTTPStatusCode"]
        assert 400 <= status < 500
        assert error.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"]
        assert lam.get_function_configuration(FunctionName=name)["Description"] != mark
        return
    assert response["StatusCode"] == 202
    deadline = time.monotonic() + 60
    while lam.get_function_configuration(FunctionName=name).get("Description") != mark:
        assert time.monotonic() < deadline, "the accepted event never ran"
        time.sleep(0.1)


# -- function errors ---------------------------------------------------------------------------


def test_a_raised_exception_is_a_function_error(lam: Any) -> None:
    code = """
class ValidationFailed(Exception):
    pass


def check(value):
    raise ValidationFailed("bad input: " + value)


def handler(event, context):
    check(event["x"])
"""
    name = deploy(lam, code, "raises")
    result = invoke(lam, name, {"x": "y"})
    assert result.status == 200
    assert result.function_error == "Unhandled"
    assert result.headers["x-amz-function-error"] == "Unhandled"
    assert result.executed_version == "$LATEST"
    error = result.payload
    assert error["errorType"] == "ValidationFailed"
    assert error["errorMessage"] == "bad input: y"
    assert error["requestId"] == result.request_id
    trace = error["stackTrace"]
    assert isinstance(trace, list) and all(isinstance(frame, str) for frame in trace)
    assert any('"/var/task/app.py"' in frame and "in handler" in frame for frame in trace)
    assert any("in check" in frame and "raise ValidationFailed" in frame for frame in trace)
    assert not any("bootstrap" in frame for frame in trace)  # the runtime's own frames are hidden
    assert "[ERROR] ValidationFailed: bad input: y" in result.log
    assert result.report["status"] is None  # a handled function error, not a crash
    again = invoke(lam, name, {"x": "z"})
    assert again.payload["errorMessage"] == "bad input: z"
    assert not again.cold  # a function error leaves the instance warm


def test_the_invoke_response_carries_the_invocations_request_id(lam: Any) -> None:
    name = deploy(lam, "def handler(event, context):\n    return context.aws_request_id\n", "reqid")
    result = invoke(lam, name)
    assert result.payload == result.request_id
    assert result.headers["x-amzn-requestid"] == result.request_id


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        pytest.param(
            {"app.py": HELLO},
            "nosuch.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'nosuch': No module named 'nosuch'",
            id="missing-module",
        ),
        pytest.param(
            {"app.py": "import not_installed_anywhere\n\ndef handler(e, c):\n    return 1\n"},
            "app.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'app': No module named 'not_installed_anywhere'",
            id="missing-dependency",
        ),
        pytest.param(
            {"app.py": HELLO},
            "app.nothere",
            "Runtime.HandlerNotFound",
            "Handler 'nothere' missing on module 'app'",
            id="missing-handler",
        ),
        pytest.param(
            {"app.py": "def handler(event, context)\n    return 1\n"},
            "app.handler",
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module 'app': ",
            id="syntax-error",
        ),
    ],
)
def test_init_errors(
    lam: Any, files: dict[str, str], handler: str, error_type: str, message: str
) -> None:
    name = deploy(lam, files, "init-error", handler=handler)
    for _ in range(2):  # every call retries the init, and fails the same way
        result = invoke(lam, name)
        assert result.status == 200
        assert result.function_error == "Unhandled"
        error = result.payload
        assert error["errorType"] == error_type
        assert error["errorMessage"].startswith(message)
        assert isinstance(error["stackTrace"], list)
        assert f"[ERROR] {error_type}: {message}" in result.log
        assert result.report["status"] == "error"
        assert result.report["error_type"] == error_type


def test_a_syntax_error_names_the_file_and_line(lam: Any) -> None:
    name = deploy(lam, "x = 1\n\ndef handler(event, context)\n    return 1\n", "syntax")
    error = invoke(lam, name).payload
    assert error["errorType"] == "Runtime.UserCodeSyntaxError"
    assert "(app.py, line 3)" in error["errorMessage"]


def test_an_unserializable_result_is_a_marshal_error(lam: Any) -> None:
    name = deploy(lam, "def handler(event, context):\n    return {1, 2}\n", "marshal")
    result = invoke(lam, name)
    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "Runtime.MarshalError"
    assert result.payload["errorMessage"] == (
        "Unable to marshal response: Object of type set is not JSON serializable"
    )
    assert result.payload["requestId"] == result.request_id


@pytest.mark.parametrize("handler", ["pkg/handlers/mod.func", "pkg.handlers.mod.func"])
def test_a_handler_in_a_subfolder(lam: Any, handler: str) -> None:
    files: dict[str, str | bytes] = {
        "pkg/__init__.py": "",
        "pkg/handlers/mod.py": "from pkg import helper\n\ndef func(event, context):\n"
        "    return [__name__, helper.VALUE]\n",
        "pkg/helper.py": "VALUE = 42\n",
    }
    name = deploy(lam, files, "subfolder", handler=handler)
    assert ok(lam, name) == ["pkg.handlers.mod", 42]


@pytest.mark.parametrize("runtime", PYTHON_RUNTIMES)
def test_every_python_runtime_runs_hello_world(lam: Any, server: LiveServer, runtime: str) -> None:
    with urllib.request.urlopen(server.endpoint + "/health", timeout=10) as response:
        available = json.loads(response.read())["runtimes"]
    if runtime not in available:
        pytest.skip(f"{runtime} is not installed on this host")
    code = HELLO + (
        "\nimport sys\n\ndef version(event, context):\n    return '%d.%d' % sys.version_info[:2]\n"
    )
    name = deploy(lam, code, "rt-" + runtime.replace(".", ""), runtime=runtime)
    assert ok(lam, name, {"username": "Sally"}) == "Hello, Sally"
    lam.update_function_configuration(FunctionName=name, Handler="app.version")
    assert ok(lam, name) == runtime.removeprefix("python")
    # Errors take the same path on every interpreter (the runtime is stdlib-only, 3.10+).
    lam.update_function_configuration(FunctionName=name, Handler="app.handler")
    error = invoke(lam, name, {}).payload
    assert error["errorType"] == "KeyError"
    assert error["errorMessage"] == "'username'"


def test_results_are_serialized_as_aws_does(lam: Any) -> None:
    code = """
import decimal

def handler(event, context):
    if event.get("raw"):
        return b"raw bytes, not JSON"
    return {"price": decimal.Decimal("12.50"), "big": decimal.Decimal("1E+3"), "text": "café"}
"""
    name = deploy(lam, code, "marshal-ok")
    result = invoke(lam, name)
    assert json.loads(result.raw) == {"price": 12.5, "big": 1000, "text": "café"}
    assert b'"price": 12.50' in result.raw  # a JSON number, digits kept
    assert invoke(lam, name, {"raw": True}).raw == b"raw bytes, not JSON"


def test_sys_exit_in_a_handler_ends_the_instance_with_an_exit_error(lam: Any) -> None:
    code = """
import sys

def handler(event, context):
    if event.get("exit"):
        print("leaving", end="")
        sys.exit(3)
    return "fine"
"""
    name = deploy(lam, code, "exit")
    assert ok(lam, name) == "fine"
    result = invoke(lam, name, {"exit": True})
    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "Runtime.ExitError"
    assert "leaving" in result.log
    assert "ember" not in result.log.lower().replace("ember-", "")  # no platform internals
    after = invoke(lam, name)
    assert after.payload == "fine"
    assert after.cold


def test_the_interpreter_shows_no_host_paths(lam: Any) -> None:
    code = """
import sys

def handler(event, context):
    return {"path": sys.path, "argv": sys.argv}
"""
    name = deploy(lam, code, "paths")
    seen = ok(lam, name)
    assert seen["path"][:3] == [
        "/var/task",
        "/opt/python/lib/python3.12/site-packages",
        "/opt/python",
    ]
    assert not [p for p in seen["path"] if "ember" in p]
    assert seen["argv"] == ["/var/runtime/bootstrap.py"]


# -- what the handler sees ---------------------------------------------------------------------

CONTEXT = """
import time

def handler(event, context):
    first = context.get_remaining_time_in_millis()
    time.sleep(0.05)
    second = context.get_remaining_time_in_millis()
    cc = context.client_context
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "memory_type": type(context.memory_limit_in_mb).__name__,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "identity": [context.identity.cognito_identity_id,
                     context.identity.cognito_identity_pool_id],
        "client_context": None if cc is None else {
            "installation_id": cc.client.installation_id,
            "app_title": cc.client.app_title,
            "custom": cc.custom,
            "env": cc.env,
        },
        "remaining": [first, second],
    }
"""


def test_the_context_object(lam: Any) -> None:
    name = deploy(lam, CONTEXT, "context", MemorySize=256, Timeout=7)
    client_context = {
        "client": {"installation_id": "inst-1", "app_title": "Demo"},
        "custom": {"tenant": "blue"},
        "env": {"locale": "en_GB"},
    }
    result = invoke(
        lam,
        name,
        ClientContext=base64.b64encode(json.dumps(client_context).encode()).decode(),
    )
    seen = result.payload
    assert seen["aws_request_id"] == result.request_id
    assert seen["function_name"] == name
    assert seen["function_version"] == "$LATEST"
    assert seen["invoked_function_arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert seen["memory_limit_in_mb"] == "256"
    assert seen["memory_type"] == "str"
    assert seen["log_group_name"] == f"/aws/lambda/{name}"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", seen["log_stream_name"])
    assert seen["identity"] == [None, None]
    assert seen["client_context"] == {
        "installation_id": "inst-1",
        "app_title": "Demo",
        "custom": {"tenant": "blue"},
        "env": {"locale": "en_GB"},
    }
    first, second = seen["remaining"]
    assert 0 < second < first <= 7000

    again = invoke(lam, name, Qualifier="$LATEST").payload
    assert again["invoked_function_arn"].endswith(f":function:{name}:$LATEST")
    assert again["client_context"] is None
    assert again["aws_request_id"] != seen["aws_request_id"]
    assert again["log_stream_name"] == seen["log_stream_name"]  # the same warm instance


def test_reserved_and_own_environment_variables(lam: Any, server: LiveServer) -> None:
    code = "import os\n\ndef handler(event, context):\n    return dict(os.environ)\n"
    name = deploy(
        lam,
        code,
        "env",
        MemorySize=320,
        Environment={"Variables": {"MY_SETTING": "on", "GREETING": "hi there"}},
    )
    env = ok(lam, name)
    expected = {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "320",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_REGION": "us-east-1",
        "LAMBDA_TASK_ROOT": "/var/task",
        "_HANDLER": "app.handler",
        "AWS_ENDPOINT_URL": server.endpoint,
        "MY_SETTING": "on",
        "GREETING": "hi there",
    }
    assert {key: env.get(key) for key in expected} == expected
    assert env["TZ"]
    assert re.fullmatch(
        r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", env["AWS_LAMBDA_LOG_STREAM_NAME"]
    )
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
    # Nothing of the host's environment leaks in.
    leaked = {k for k in env if k.startswith(("EMBER_", "PYTEST", "VIRTUAL_ENV"))}
    assert not leaked


def test_a_function_reaches_ember_from_inside_without_boto3(lam: Any) -> None:
    code = """
import json
import os
import urllib.request

def handler(event, context):
    base = os.environ["AWS_ENDPOINT_URL"]
    with urllib.request.urlopen(base + "/health", timeout=10) as r:
        health = json.loads(r.read())
    url = base + "/2015-03-31/functions/" + context.function_name
    with urllib.request.urlopen(url, timeout=10) as r:
        me = json.loads(r.read())
    return {"health": health["status"], "me": me["Configuration"]["FunctionName"]}
"""
    name = deploy(lam, code, "inside")
    assert ok(lam, name) == {"health": "ok", "me": name}


# -- warm and cold -----------------------------------------------------------------------------


def test_warm_instances_keep_module_state(lam: Any) -> None:
    name = deploy(lam, COUNTER, "warm")
    results = [invoke(lam, name) for _ in range(3)]
    assert [r.payload for r in results] == [1, 2, 3]
    assert [r.cold for r in results] == [True, False, False]


def test_a_code_update_retires_old_instances(lam: Any) -> None:
    name = deploy(lam, "def handler(event, context):\n    return 'v1'\n", "update")
    assert ok(lam, name) == "v1"
    lam.update_function_code(
        FunctionName=name,
        ZipFile=make_zip({"app.py": "def handler(event, context):\n    return 'v2'\n"}),
    )
    first = invoke(lam, name)
    assert first.payload == "v2"
    assert first.cold


def test_a_configuration_update_retires_old_instances(lam: Any) -> None:
    code = "import os\n\ndef handler(event, context):\n    return os.environ.get('COLOR')\n"
    name = deploy(lam, code, "reconf", Environment={"Variables": {"COLOR": "red"}})
    assert ok(lam, name) == "red"
    lam.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"COLOR": "blue"}}
    )
    assert ok(lam, name) == "blue"


def test_background_threads_do_not_run_while_the_instance_is_frozen(lam: Any) -> None:
    code = """
import threading
import time

PATH = "/tmp/ticks"
started = False


def tick():
    while True:
        with open(PATH, "a") as f:
            f.write("%f\\n" % time.time())
        time.sleep(0.01)


def count():
    with open(PATH) as f:
        return sum(1 for _ in f)


def handler(event, context):
    global started
    if not started:
        started = True
        threading.Thread(target=tick, daemon=True).start()
        time.sleep(0.3)
    return count()
"""
    name = deploy(lam, code, "frozen")
    at_end_of_first = ok(lam, name)
    assert at_end_of_first > 5  # the thread ran while the invocation did
    time.sleep(0.5)  # ~50 ticks if the thread kept running
    at_start_of_second = ok(lam, name)
    assert at_start_of_second - at_end_of_first <= 10


# -- limits ------------------------------------------------------------------------------------


def test_payload_up_to_6_mb_is_accepted(lam: Any) -> None:
    name = deploy(
        lam, "def handler(event, context):\n    return len(event)\n", "big-ok", MemorySize=512
    )
    payload = json.dumps("x" * (SIX_MB - 100))
    assert ok(lam, name, Payload=payload, LogType="None") == SIX_MB - 100


def test_payload_over_6_mb_is_413(lam: Any) -> None:
    name = deploy(lam, COUNTER, "big-in")
    status, code, _ = client_error(lam.invoke, FunctionName=name, Payload=json.dumps("x" * SIX_MB))
    assert (status, code) == (413, "RequestEntityTooLargeException")
    assert ok(lam, name) == 1  # nothing ran


def test_a_payload_that_is_not_json_is_400(lam: Any) -> None:
    name = deploy(lam, COUNTER, "not-json")
    status, code, _ = client_error(lam.invoke, FunctionName=name, Payload=b"{not json")
    assert (status, code) == (400, "InvalidRequestContentException")
    assert ok(lam, name) == 1


def test_a_response_over_6_mb_is_a_function_error(lam: Any) -> None:
    code = "def handler(event, context):\n    return 'x' * event['size']\n"
    name = deploy(lam, code, "big-out", MemorySize=512)
    result = invoke(lam, name, {"size": SIX_MB})
    assert result.status == 200
    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "Function.ResponseSizeTooLarge"
    assert len(result.raw) < 4096
    assert ok(lam, name, {"size": 3}) == "xxx"


def test_a_timeout_kills_the_instance_and_the_next_call_works(lam: Any) -> None:
    name = deploy(lam, SLEEPER, "timeout", Timeout=1)
    result = invoke(lam, name, {"sleep": 5})
    assert result.status == 200
    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in result.payload["errorMessage"]
    assert result.report["status"] == "timeout"
    assert "Task timed out after 1.00 seconds" in result.log
    after = invoke(lam, name, {"sleep": 0})
    assert after.function_error is None
    assert after.cold  # the timed-out instance was destroyed


# -- concurrency -------------------------------------------------------------------------------


def test_concurrent_invokes_scale_out_to_separate_instances(lam: Any, server: LiveServer) -> None:
    name = deploy(lam, SLEEPER, "fanout")

    def call(_: int) -> Invoked:
        return invoke(server.client("lambda"), name, {"sleep": 1})

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(call, range(6)))
    assert all(r.status == 200 and r.function_error is None for r in results)
    streams = {r.payload for r in results}
    assert len(streams) == 6
    assert all(r.cold for r in results)


# -- servers of their own (kept last: starting a server is the slowest thing here) --------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with an account concurrency of 2 and a 1-second idle timeout."""
    live = LiveServer(
        tmp_path_factory.mktemp("small") / "data",
        free_port(),
        extra_env={"EMBER_CONCURRENCY": "2", "EMBER_IDLE_TIMEOUT": "1"},
    )
    live.start()
    yield live
    live.stop()


def _raw_invoke(endpoint: str, name: str) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        f"{endpoint}/2015-03-31/functions/{name}/invocations",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json"},  # urllib's default (a form) is refused
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        headers = {k.lower(): v for k, v in error.headers.items()}
        return error.code, headers, json.loads(error.read())


def test_over_the_account_concurrency_limit_is_429(small: LiveServer) -> None:
    lam = small.client("lambda")
    slow = deploy(lam, SLEEPER, "slow", Timeout=30)
    fast = deploy(lam, COUNTER, "fast")

    def call(_: int) -> Invoked:
        client = small.client("lambda")
        while True:  # a poll below may hold a slot for a moment: retry until admitted
            try:
                return invoke(client, slow, {"sleep": 2})
            except ClientError as error:
                if error.response["Error"]["Code"] != "TooManyRequestsException":
                    raise

    throttled = None
    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(call, i) for i in range(2)]
        # The third concurrent call is refused while both slow calls are in flight.
        while not all(f.done() for f in running):
            status, headers, body = _raw_invoke(small.endpoint, fast)
            if status == 429:
                throttled = headers, body
                break
            time.sleep(0.02)
        results = [f.result() for f in running]
    assert all(r.function_error is None for r in results)
    assert throttled is not None, "no third call was refused while two were running"
    headers, body = throttled
    assert headers["x-amzn-errortype"] == "TooManyRequestsException"
    assert body["Reason"] == "ConcurrentInvocationLimitExceeded"
    assert body["Type"] == "User"
    assert body["message"]
    # With the slots free again, calls succeed.
    assert ok(lam, fast) >= 1


def test_idle_instances_expire(small: LiveServer) -> None:
    lam = small.client("lambda")
    name = deploy(lam, COUNTER, "idle")
    first, second = invoke(lam, name), invoke(lam, name)
    assert (first.cold, second.cold) == (True, False)
    assert (first.payload, second.payload) == (1, 2)
    time.sleep(3)  # three idle timeouts
    third = invoke(lam, name)
    assert third.cold
    assert third.payload == 1


def test_another_server_on_the_host_leaves_this_servers_instances_alone(
    lam: Any, small: LiveServer
) -> None:
    """`small` started after the session server; the session server's warm instances survive it."""
    name = deploy(lam, COUNTER, "neighbour")
    assert ok(lam, name) == 1
    small.stop()
    small.start()
    assert ok(lam, name) == 2
