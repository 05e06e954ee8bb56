"""Shared pieces of the benchmarks: servers on 127.0.0.1, a cheap HTTP client, stats, tables.

Everything here is real: `ember server` and the uvicorn baseline run as subprocesses on a
free port of 127.0.0.1, and the client talks HTTP/1.1 over TCP to them. The client is a raw
keep-alive socket with the request bytes built once, so that what is measured is the server,
not the client (boto3 signs every request, which alone costs 1-2 ms).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime as dt
import importlib.util
import io
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

HANDLER_SOURCE = 'def handler(event, context):\n    return "Hello, " + event["username"]\n'
HANDLER = "app.handler"
EVENT: dict[str, str] = {"username": "Sally"}
EVENT_BYTES = json.dumps(EVENT).encode()
EXPECTED_BODY = b'"Hello, Sally"'
ROLE = "arn:aws:iam::000000000000:role/lambda-role"
INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"


# --------------------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buf.getvalue()


def write_handler(directory: Path) -> Path:
    """The benchmark handler as `app.py` in `directory` (created); returns the file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "app.py"
    path.write_text(HANDLER_SOURCE)
    return path


def load_handler(path: Path, module_name: str) -> Callable[[dict[str, Any], Any], Any]:
    """Import `path` as a brand-new module (no sys.modules cache) and return its handler."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Callable[[dict[str, Any], Any], Any] = module.handler
    return handler


def die_with_parent() -> None:
    """preexec_fn for servers a benchmark starts: SIGTERM them when the benchmark process dies
    (killed by `timeout`, Ctrl-C twice, a crash outside the `with`), so no server is left behind
    to slow every later run on the machine."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def wait_http_ok(
    url: str, process: subprocess.Popen[bytes], timeout: float, what: str, log: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early (status {process.returncode}):\n{log()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer {url} in {timeout}s:\n{log()}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def process_tree(root_pid: int) -> dict[int, str]:
    """The live descendants of `root_pid` (pid -> command line), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    todo = list(children.get(root_pid, []))
    while todo:
        pid = todo.pop()
        try:
            cmd = (
                Path(f"/proc/{pid}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:
            continue
        found[pid] = cmd.strip()
        todo.extend(children.get(pid, []))
    return found


def still_alive(pids: dict[int, str]) -> list[str]:
    """Those of `pids` still alive, with their state (D = stuck, e.g. in a frozen cgroup)."""
    alive = []
    for pid, cmd in pids.items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        state = next(
            (
                line.split(None, 1)[1].strip()
                for line in status.splitlines()
                if line.startswith("State:")
            ),
            "?",
        )
        if state.startswith("Z"):  # exited, only waiting to be reaped
            continue
        alive.append(f"pid {pid} [{state}] {cmd[:100]}")
    return alive


# --------------------------------------------------------------------------- servers


@dataclass
class EmberServer:
    """`python -m ember server` on a temporary data dir and a free port of 127.0.0.1.

    It runs whichever `ember` the interpreter imports: the project's (editable install) or,
    with PYTHONPATH=<tree>/src in the environment, another tree such as a clean snapshot.
    """

    extra_args: Sequence[str] = ()
    keep_log_as: str | None = None  # file name under bench/results/ for the server log
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ember-bench-")))
    process: subprocess.Popen[bytes] | None = None
    leftovers: list[str] = field(default_factory=list)
    _lambda: Any = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        argv = [
            sys.executable,
            "-m",
            "ember",
            "server",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                preexec_fn=die_with_parent,
            )
        wait_http_ok(self.endpoint + "/health", self.process, timeout, "ember server", self.log)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 20 s; says so if the server needed killing or left
        sandbox processes behind (both are Ember bugs worth reporting)."""
        if self.process is None:
            return None
        tree = process_tree(self.process.pid)
        t0 = time.monotonic()
        status = stop_process(self.process)
        took = time.monotonic() - t0
        if status != 0:
            print(
                f"warning: ember server exited with status {status} after {took:.1f}s "
                f"(log: {self.log_path})",
                file=sys.stderr,
            )
        time.sleep(0.5)
        leftovers = still_alive(tree)
        if leftovers:
            print(
                f"warning: {len(leftovers)} processes of this ember server are still alive "
                f"after it stopped, e.g. {leftovers[:3]}",
                file=sys.stderr,
            )
        self.leftovers = leftovers
        return status

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self.keep_log_as is not None:
            RESULTS_DIR.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copyfile(self.log_path, RESULTS_DIR / self.keep_log_as)
        if exc_type is None:
            self.cleanup()
        else:
            print(f"(ember server data and log kept in {self.root})", file=sys.stderr)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def lambda_client(self) -> Any:
        if self._lambda is None:
            import boto3
            import botocore.config

            self._lambda = boto3.client(
                "lambda",
                endpoint_url=self.endpoint,
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
                config=botocore.config.Config(retries={"max_attempts": 0}, read_timeout=120),
            )
        return self._lambda

    def create_function(
        self,
        name: str,
        runtime: str = "python3.11",
        memory_mb: int = 128,
        zip_bytes: bytes | None = None,
    ) -> dict[str, Any]:
        """CreateFunction with boto3, as a user would (never inside a timed section)."""
        reply: dict[str, Any] = self.lambda_client().create_function(
            FunctionName=name,
            Runtime=runtime,
            Role=ROLE,
            Handler=HANDLER,
            MemorySize=memory_mb,
            Code={"ZipFile": zip_bytes or make_zip({"app.py": HANDLER_SOURCE})},
        )
        return reply


@dataclass
class UvicornBaseline:
    """The server model: bare uvicorn (uvloop + httptools) + Starlette calling the handler in-process.

    Same path shape as Ember's Invoke API, so the same prebuilt requests hit both.
    """

    task_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.log_path = self.task_dir.parent / "uvicorn.log"
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "uvicorn_baseline:app",
            "--app-dir",
            str(BENCH_DIR),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
            "--workers",
            "1",
        ]
        env = {**os.environ, "BENCH_TASK_DIR": str(self.task_dir)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent
            )
        wait_http_ok(self.endpoint + "/health", self.process, timeout, "uvicorn baseline", self.log)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def log(self) -> str:
        return (
            self.log_path.read_text(errors="replace")
            if self.log_path and self.log_path.exists()
            else ""
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- HTTP client


def build_request(
    path: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST"
) -> bytes:
    """An HTTP/1.1 keep-alive request, as bytes, built once and sent many times."""
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def invoke_request(name: str, body: bytes = EVENT_BYTES, tail: bool = False) -> bytes:
    headers = {"X-Amz-Invocation-Type": "RequestResponse"}
    if tail:
        headers["X-Amz-Log-Type"] = "Tail"
    return build_request(INVOKE_PATH.format(name=name), body, headers)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class HttpClient:
    """One persistent HTTP/1.1 connection over a raw socket (TCP_NODELAY), one thread's own.

    About 10-20 µs of Python per request, against ~100 µs for http.client and 1-2 ms for boto3.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 60.0) -> None:
        self.address = (host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._buf = b""

    def connect(self) -> None:
        self.close()
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self._buf = b""

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def request(self, raw: bytes) -> Response:
        """Send prebuilt request bytes and read one response. On any error the connection is
        dropped (the next request reconnects) and the error propagates."""
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        try:
            self.sock.sendall(raw)
            return self._read_response(self.sock)
        except BaseException:
            self.close()
            raise

    def _fill(self, sock: socket.socket, buf: bytes) -> bytes:
        chunk = sock.recv(262144)
        if not chunk:
            raise ConnectionError("server closed the connection")
        return buf + chunk

    def _read_response(self, sock: socket.socket) -> Response:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            buf = self._fill(sock, buf)
            end = buf.find(b"\r\n\r\n")
        head, rest = buf[:end], buf[end + 4 :]
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(b":")
            headers[key.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(rest) < length:
                rest = self._fill(sock, rest)
            body, self._buf = rest[:length], rest[length:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body, self._buf = self._read_chunked(sock, rest)
        else:  # HTTP/1.1 without a length: the body runs to the end of the connection
            while True:
                try:
                    rest = self._fill(sock, rest)
                except ConnectionError:
                    break
            body, self._buf = rest, b""
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, body)

    def _read_chunked(self, sock: socket.socket, rest: bytes) -> tuple[bytes, bytes]:
        body = b""
        while True:
            eol = rest.find(b"\r\n")
            while eol < 0:
                rest = self._fill(sock, rest)
                eol = rest.find(b"\r\n")
            size = int(rest[:eol].split(b";")[0], 16)
            rest = rest[eol + 2 :]
            while len(rest) < size + 2:
                rest = self._fill(sock, rest)
            body += rest[:size]
            rest = rest[size + 2 :]
            if size == 0:
                return body, rest


def log_tail(response: Response) -> str:
    value = response.headers.get("x-amz-log-result")
    return base64.b64decode(value).decode(errors="replace") if value else ""


_REPORT_DURATION = re.compile(r"REPORT RequestId: \S+\s+Duration: ([\d.]+) ms")
_REPORT_INIT = re.compile(r"Init Duration: ([\d.]+) ms")


def parse_report(log: str) -> dict[str, float | None]:
    """Duration and Init Duration (ms) from the REPORT line of a Tail log."""
    duration = _REPORT_DURATION.search(log)
    init = _REPORT_INIT.search(log)
    return {
        "duration_ms": float(duration.group(1)) if duration else None,
        "init_ms": float(init.group(1)) if init else None,
    }


# --------------------------------------------------------------------------- load generation


@dataclass
class LoadResult:
    concurrency: int
    duration_s: float
    ok: int
    errors: int
    latencies_ns: list[int]
    error_samples: list[str]
    client_cpu_s: float
    machine_busy_cores: float
    server_cpu_s: float | None = None  # the server's main process
    children_cpu_s: float | None = None  # its descendants (Ember: zygotes and sandboxes)

    @property
    def rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one live process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def tree_cpu(root_pid: int) -> dict[int, float]:
    """CPU seconds of `root_pid` and each of its live descendants."""
    pids = [root_pid, *process_tree(root_pid)]
    return {pid: cpu_seconds(pid) for pid in pids}


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_load(
    port: int,
    raw: bytes,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 1.0,
    expected: bytes = EXPECTED_BODY,
    server_pid: int | None = None,
) -> LoadResult:
    """Closed-loop load: `concurrency` threads, one persistent connection each, for `duration_s`.

    Each thread warms up for `warmup_s` (not recorded: lets Ember scale out to `concurrency`
    warm instances), then all record together. A response counts as OK when it is 200 with the
    expected body; anything else (status, body, socket error, timeout) is an error.
    """
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1, timeout=warmup_s + 300)
    go = threading.Event()
    per_thread: list[list[int]] = [[] for _ in range(concurrency)]
    ok_counts = [0] * concurrency
    err_counts = [0] * concurrency
    samples: list[str] = []
    window: dict[str, float] = {}

    def note_error(text: str) -> None:
        with lock:
            if len(samples) < 20:
                samples.append(text)

    def one(client: HttpClient) -> tuple[bool, str]:
        try:
            response = client.request(raw)
        except Exception as exc:  # every failure is a data point, never a crash
            return False, f"{type(exc).__name__}: {exc}"
        if response.status == 200 and response.body == expected:
            return True, ""
        return False, f"HTTP {response.status}: {response.body[:300]!r}"

    def worker(index: int) -> None:
        client = HttpClient(port)
        try:
            warm_end = time.monotonic() + warmup_s
            while time.monotonic() < warm_end:
                good, text = one(client)
                if not good:
                    note_error("(warm-up) " + text)
            barrier.wait()
            go.wait()
            end = window["end"]
            lats = per_thread[index]
            clock = time.perf_counter_ns
            ok = err = 0
            while True:
                t0 = clock()
                good, text = one(client)
                t1 = clock()
                if good:
                    ok += 1
                    lats.append(t1 - t0)
                else:
                    err += 1
                    note_error(text)
                if t1 >= end:
                    break
            ok_counts[index], err_counts[index] = ok, err
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()  # every worker is warm; the window starts now
    tree0 = tree_cpu(server_pid) if server_pid else {}
    busy0, total0 = _cpu_times()
    cpu0 = _self_cpu()
    start = time.perf_counter_ns()
    window["end"] = start + int(duration_s * 1e9)
    go.set()
    for t in threads:
        t.join()
    elapsed = (time.perf_counter_ns() - start) / 1e9
    cpu1 = _self_cpu()
    busy1, total1 = _cpu_times()
    tree1 = tree_cpu(server_pid) if server_pid else {}
    server_cpu = children_cpu = None
    if server_pid:
        server_cpu = tree1.get(server_pid, 0.0) - tree0.get(server_pid, 0.0)
        children_cpu = sum(v - tree0.get(pid, 0.0) for pid, v in tree1.items() if pid != server_pid)
    ncpu = os.cpu_count() or 1
    busy_cores = (busy1 - busy0) / (total1 - total0) * ncpu if total1 > total0 else 0.0
    return LoadResult(
        concurrency=concurrency,
        duration_s=elapsed,
        ok=sum(ok_counts),
        errors=sum(err_counts),
        latencies_ns=[x for lats in per_thread for x in lats],
        error_samples=samples,
        client_cpu_s=cpu1 - cpu0,
        machine_busy_cores=busy_cores,
        server_cpu_s=server_cpu,
        children_cpu_s=children_cpu,
    )


def sequential(
    client: HttpClient, raw: bytes, n: int, expected: bytes = EXPECTED_BODY
) -> tuple[list[int], list[str]]:
    """n requests one after the other on one connection: (latencies of the OK ones, errors)."""
    lats: list[int] = []
    errors: list[str] = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        try:
            response = client.request(raw)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        t1 = clock()
        if response.status == 200 and response.body == expected:
            lats.append(t1 - t0)
        else:
            errors.append(f"HTTP {response.status}: {response.body[:300]!r}")
    return lats, errors


# --------------------------------------------------------------------------- baselines


FRESH_PROCESS_SNIPPET = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); import app; "
    "sys.stdout.write(json.dumps(app.handler(json.loads(sys.argv[2]), None)))"
)


def base_python() -> str:
    """The real interpreter behind the venv (what a naive platform would exec: no venv, no
    pyenv shim script in front of it)."""
    return os.path.realpath(sys.executable)


def fresh_process_call(python: str, task_dir: Path) -> int:
    """`python3 -c` importing app.py from task_dir and calling the handler: elapsed ns."""
    t0 = time.perf_counter_ns()
    out = subprocess.run(
        [python, "-c", FRESH_PROCESS_SNIPPET, str(task_dir), EVENT_BYTES.decode()],
        capture_output=True,
        check=True,
    )
    elapsed = time.perf_counter_ns() - t0
    if out.stdout != EXPECTED_BODY:
        raise RuntimeError(f"fresh process answered {out.stdout!r} ({out.stderr!r})")
    return elapsed


# --------------------------------------------------------------------------- stats and output


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), numpy's default method."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize_ms(values_ns: Sequence[int]) -> dict[str, float | int]:
    """n, p50, p90, p99, mean, min, max in milliseconds from nanosecond samples."""
    ms = [v / 1e6 for v in values_ns]
    if not ms:
        return {
            "n": 0,
            "p50_ms": math.nan,
            "p90_ms": math.nan,
            "p99_ms": math.nan,
            "mean_ms": math.nan,
            "min_ms": math.nan,
            "max_ms": math.nan,
        }
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "mean_ms": sum(ms) / len(ms),
        "min_ms": min(ms),
        "max_ms": max(ms),
    }


def fmt(value: float | int | str | None, digits: int = 3) -> str:
    """Numbers for tables: thousands separators for big ones, significant digits for tiny ones."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if value != 0 and abs(value) < 0.01:  # two significant digits, never scientific notation
        return f"{value:.{1 - math.floor(math.log10(abs(value)))}f}"
    return f"{value:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return "-"
    r = a / b
    if r >= 100:
        return f"{r:,.0f}x"
    if r < 0.01:
        return f"1/{b / a:,.0f}"
    return f"{r:.2f}x"


def print_table(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1
) -> None:
    """A GitHub-flavoured Markdown table (readable in a terminal, pasteable in a README).

    The first `text_columns` columns are left-aligned, the rest (numbers) right-aligned.
    """
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        out = [
            c.ljust(w) if i < text_columns else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(out) + " |"

    print(f"\n{title}\n")
    print(line(headers))
    rule = [
        ":" + "-" * (w + 1) if i < text_columns else "-" * (w + 1) + ":"
        for i, w in enumerate(widths)
    ]
    print("|" + "|".join(rule) + "|")
    for row in rows:
        print(line(row))
    print()


def git_describe() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_DIR), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def ember_source() -> str:
    """Where the server subprocess will import `ember` from (honours PYTHONPATH)."""
    out = subprocess.run(
        [sys.executable, "-c", "import ember; print(ember.__file__)"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or out.stderr.strip()[-200:]


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for row in f:
            if row.startswith("model name"):
                model = row.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }


def warn_if_busy() -> None:
    load1 = os.getloadavg()[0]
    if load1 > 0.5:
        print(
            f"warning: the machine is not idle (1-min load average {load1:.2f}); "
            "numbers will be noisier than usual",
            file=sys.stderr,
        )


def results_name(base: str, memory_mb: int, default_mb: int = 128) -> str:
    """`base` for the default MemorySize, `base-<N>mb` otherwise (so runs don't overwrite)."""
    return base if memory_mb == default_mb else f"{base}-{memory_mb}mb"


def write_results(name: str, results: dict[str, Any], argv: Sequence[str]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        "benchmark": name,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": list(argv),
        "git": git_describe(),
        "ember_imported_from": ember_source(),
        "machine": machine_info(),
        "results": results,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def scan_log_for_problems(text: str, limit: int = 40) -> list[str]:
    """Lines of a server log that look like trouble (tracebacks, errors, warnings)."""
    keys = ("Traceback", "ERROR", "Error", "error", "WARNING", "Exception", "exception")
    return [line for line in text.splitlines() if any(k in line for k in keys)][:limit]
