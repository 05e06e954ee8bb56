"""The AWS SDK for Python lent to functions, as Lambda's Python runtimes ship boto3.

The platform's own pure-Python boto3 and its dependencies are mounted read-only into every
sandbox under SDK_IN_SANDBOX (each package an overlay made for that sandbox, so no host path
shows: sandbox/zygote/layout.py), which the runtime puts at the end of sys.path (after the code,
layers and the interpreter's site-packages, so a function's own boto3 wins, as on Lambda).
boto3 inside a function reaches Ember through AWS_ENDPOINT_URL and sends the function's
_X_AMZN_TRACE_ID as X-Amzn-Trace-Id, so its calls join the invocation's trace.

The packages are byte-compiled once per runtime interpreter (in the platform's environment, in
the background; `__pycache__` names carry the interpreter's tag, so versions do not clash),
because a sandbox cannot write .pyc files and compiling botocore at every cold start is slow.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

SDK_IN_SANDBOX = "/var/runtime/sdk"
PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


def binds() -> tuple[tuple[str, str], ...]:
    """(source, target in the sandbox) for each SDK package installed with the platform."""
    found: list[tuple[str, str]] = []
    for name in PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        source = origin.parent if spec.submodule_search_locations else origin
        found.append((str(source), f"{SDK_IN_SANDBOX}/{source.name}"))
    return tuple(found)


async def precompile(executables: Iterable[str], sources: Iterable[str]) -> None:
    """Byte-compile the SDK for each interpreter (quick once done: compileall skips fresh .pyc)."""
    paths = list(sources)
    if not paths:
        return
    for executable in executables:
        try:
            process = await asyncio.create_subprocess_exec(
                executable,
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                *paths,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                preexec_fn=lambda: os.nice(10),
            )
            await process.wait()
        except Exception:
            log.exception("could not byte-compile the SDK for %s", executable)
