"""The log writer process: stores batches of log events that the platform sends it.

Inserting every invocation's log lines costs Python work (rows, sizes, statement binding) that,
on a thread, competes with the event loop for the GIL. Here it runs in a process of its own:
the platform writes length-prefixed JSON frames `[[seq, group, stream, [[ts, message], ...]],
...]` to its stdin; after each committed frame it writes the frame's highest sequence number
and a newline to its stdout. It exits at end of input.

Run as `python -m ember.observe.log_writer <logs.sqlite3>`; the platform has already applied
the migrations.
"""

from __future__ import annotations

import struct
import sys
import traceback
from pathlib import Path

import orjson

from ember.observe.logs import Batch, write_batches
from ember.store.sqlite import connect

FRAME = struct.Struct("!I")


def _read_exactly(stream: object, size: int) -> bytes:
    chunks = []
    while size:
        chunk = stream.read(size)  # type: ignore[attr-defined]
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def main(path: str) -> int:
    conn = connect(Path(path))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            (size,) = FRAME.unpack(_read_exactly(stdin, FRAME.size))
            frame = orjson.loads(_read_exactly(stdin, size))
        except EOFError:
            return 0
        batches: list[Batch] = frame  # lists where Batch says tuples: write_batches only iterates
        try:
            write_batches(conn, batches)
        except Exception:
            # Counted as dropped by the platform's log store only in-process; here, say so.
            traceback.print_exc(file=sys.stderr)
        stdout.write(b"%d\n" % max(b[0] for b in batches))
        stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
