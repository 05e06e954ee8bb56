"""What the HTTP protocol class costs per request, alone: two trees' api/http_protocol.py A/B.

One process, uvloop, a socketpair: a client sends an Invoke-shaped request (headers and body
in one send) and reads the response of a trivial ASGI app, `--n` times per round, alternating
the two protocol classes over `--rounds`. Prints CPU µs per request (client included, so only
differences mean anything). On a busy machine prefer instructions, which do not drift:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python \\
        bench/http_protocol_cost.py --only new --n 3000 --rounds 1   (and --n 0; subtract)

Usage: .venv/bin/python bench/http_protocol_cost.py --old /tmp/snap/src/ember/api/http_protocol.py
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import socket
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from uvicorn.server import ServerState

NEW = Path(__file__).resolve().parent.parent / "src" / "ember" / "api" / "http_protocol.py"
REQUEST = (
    b"POST /2015-03-31/functions/f/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
)


def protocol_class(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CoalescingHttpProtocol


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


async def per_request_us(cls: Any, n: int) -> float:
    loop = asyncio.get_running_loop()
    config = uvicorn.Config(app, loop="none", http=cls, lifespan="off", log_level="warning")
    config.load()
    state = ServerState()
    ours, theirs = socket.socketpair()
    await loop.connect_accepted_socket(
        lambda: cls(config=config, server_state=state, app_state={}), ours
    )
    theirs.setblocking(False)

    async def round_trip() -> None:
        await loop.sock_sendall(theirs, REQUEST)
        data = b""
        while not data.endswith(b"{}"):
            data += await loop.sock_recv(theirs, 65536)

    for _ in range(200):
        await round_trip()
    start = time.process_time()
    for _ in range(n):
        await round_trip()
    spent = time.process_time() - start
    theirs.close()
    return spent / max(n, 1) * 1e6


async def main(args: argparse.Namespace) -> None:
    classes = {"new": protocol_class(NEW, "new_protocol")}
    if args.old:
        classes["old"] = protocol_class(Path(args.old), "old_protocol")
    if args.only:
        classes = {args.only: classes[args.only]}
    results: dict[str, list[float]] = {name: [] for name in classes}
    for _ in range(args.rounds):
        for name, cls in classes.items():
            results[name].append(await per_request_us(cls, args.n))
    for name, values in results.items():
        values.sort()
        print(
            f"{name}: min {values[0]:.1f} µs, median {values[len(values) // 2]:.1f} µs per request"
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", help="another tree's src/ember/api/http_protocol.py")
    p.add_argument("--only", choices=["new", "old"])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=9)
    uvloop.run(main(p.parse_args(sys.argv[1:])))
