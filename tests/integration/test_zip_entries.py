"""A million-entry zip (a legal 47 MB upload) is refused by a real server without building its
central directory (zipfile alone would take ~300 MB and ~8 s of CPU for it)."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Callable
from pathlib import Path

from conftest import ROLE, LiveServer
from zips import many_entry_zip


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def growth_kb(pid: int, request: Callable[[], object]) -> int:
    """How far above its resident size before the request the server's peak went during it
    (the peak is reset first: `clear_refs` 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = _status_kb(pid, "VmRSS")
    request()
    return _status_kb(pid, "VmHWM") - before


def create(server: LiveServer, name: str, zip_bytes: bytes) -> tuple[int, dict[str, str]]:
    body = json.dumps(
        {
            "FunctionName": name,
            "Runtime": "python3.12",
            "Role": ROLE,
            "Handler": "app.handler",
            "Code": {"ZipFile": base64.b64encode(zip_bytes).decode()},
        }
    )
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    conn.request(
        "POST", "/2015-03-31/functions", body=body, headers={"Content-Type": "application/json"}
    )
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    return response.status, answer


def test_a_million_entries_are_refused_without_building_the_directory(server: LiveServer) -> None:
    assert server.process is not None
    pid = server.process.pid
    data = many_entry_zip(1_000_000)
    broken = data[:-22] + b"\0" * 22  # refused as soon as it is read: what a 63 MB request costs
    reading, refusing = [], []
    answers: list[tuple[int, dict[str, str]]] = []
    for _ in range(2):
        refusing.append(growth_kb(pid, lambda: answers.append(create(server, "zip-million", data))))
        reading.append(growth_kb(pid, lambda: create(server, "zip-broken", broken)))
    for status, answer in answers:
        assert status == 400 and "more than 100000 entries" in answer["message"], answer
    print(f"peak growth, KiB: reading {reading}, refusing a million entries {refusing}")
    # zipfile's directory would add ~300 MB to the first refusal (later ones reuse its arenas)
    assert max(refusing) - max(reading) < 32 * 1024
