"""A process that stores what observability produces: log events and trace rows.

Turning every invocation's log lines and report into rows and binding them into INSERTs is
Python work that, on a thread of the platform's process, competes with the event loop for the
GIL. The platform sends it here instead: length-prefixed JSON frames `[kind, seq, payload]` on
the child's stdin; after storing a frame the child writes `kind seq` and a newline to its
stdout. Kinds: "logs" (LogStore batches) and "traces" (InvocationReports as objects).

If the process cannot start or dies, every frame it has not acknowledged is handed back to its
kind's fallback, which stores it in the platform's process: nothing sent is lost.

Child: `python -m ember.observe.store_writer '{"logs": "<path>", "traces": "<path>"}'`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

FRAME = struct.Struct("!I")


class StoreWriter:
    """The platform's handle on the writer process."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths
        self._lock = threading.Lock()
        self._handlers: dict[str, tuple[Callable[[int], None], Callable[[Any], None]]] = {}
        self._unacked: collections.deque[tuple[str, int, Any]] = collections.deque()
        self._child: subprocess.Popen[bytes] | None = None
        self._acker: threading.Thread | None = None
        self._closing = False

    def register(
        self, kind: str, stored: Callable[[int], None], fallback: Callable[[Any], None]
    ) -> None:
        """`stored(seq)` when the process acknowledges; `fallback(payload)` to store it here."""
        self._handlers[kind] = (stored, fallback)

    def start(self) -> bool:
        try:
            self._child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ember.observe.store_writer",
                    orjson.dumps({k: str(v) for k, v in self.paths.items()}).decode(),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
            )
        except OSError:
            log.exception("could not start the store writer process; storing in-process")
            return False
        self._acker = threading.Thread(target=self._acks, name="ember-store-acks", daemon=True)
        self._acker.start()
        return True

    def send(self, kind: str, seq: int, payload: Any) -> bool:
        """Hand a frame to the process; False if there is none (the caller stores it itself)."""
        with self._lock:
            child = self._child
            if child is None or child.stdin is None:
                return False
            self._unacked.append((kind, seq, payload))
        data = orjson.dumps([kind, seq, payload])
        try:
            child.stdin.write(FRAME.pack(len(data)) + data)
            child.stdin.flush()
        except (OSError, ValueError):
            log.exception("the store writer process went away; storing in-process")
            self._lost()
        return True

    def _acks(self) -> None:
        child = self._child
        assert child is not None and child.stdout is not None
        for line in child.stdout:
            kind, _, text = line.decode().partition(" ")
            seq = int(text)
            with self._lock:  # the process stores and acknowledges frames in the order sent
                if self._unacked:
                    self._unacked.popleft()
            handler = self._handlers.get(kind)
            if handler is not None:
                handler[0](seq)
        if not self._closing:
            log.error("the store writer process exited; storing in-process")
            self._lost()

    def _lost(self) -> None:
        with self._lock:
            self._child = None
            backlog = list(self._unacked)
            self._unacked.clear()
        for kind, _, payload in backlog:
            handler = self._handlers.get(kind)
            if handler is not None:
                handler[1](payload)

    def close(self) -> None:
        child = self._child
        if child is None or child.stdin is None:
            return
        self._closing = True
        with contextlib.suppress(OSError):
            child.stdin.close()  # the process stores what it has, acknowledges, exits
        if self._acker is not None:
            self._acker.join(timeout=10)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# -- the child ------------------------------------------------------------------------------


def _read_exactly(stream: Any, size: int) -> bytes:
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def main(config: str) -> int:
    from ember.dispatch.invoker import InvocationReport
    from ember.observe.logs import connect_writer, write_batches
    from ember.observe.traces import TraceStore, invocation_of

    paths = orjson.loads(config)
    logs = connect_writer(Path(paths["logs"])) if "logs" in paths else None
    traces = TraceStore(Path(paths["traces"])) if "traces" in paths else None
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            (size,) = FRAME.unpack(_read_exactly(stdin, FRAME.size))
            kind, seq, payload = orjson.loads(_read_exactly(stdin, size))
        except EOFError:
            return 0
        try:
            if kind == "logs" and logs is not None:
                write_batches(logs, payload)  # lists where Batch says tuples: it only iterates
            elif kind == "traces" and traces is not None:
                rows = [invocation_of(InvocationReport(**report)) for report in payload]
                traces.add([row for row in rows if row is not None])
        except Exception:
            traceback.print_exc(file=sys.stderr)
        stdout.write(f"{kind} {seq}\n".encode())
        stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
