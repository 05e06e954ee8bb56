"""Which Lambda runtimes this host can run, and where their interpreters live.

Discovered once at start-up from what is actually installed: for each `pythonX.Y` we look
for a real interpreter (pyenv versions, then PATH) and record its executable and prefix, which
sandboxes see read-only at /var/lang (sandbox/zygote/layout.py).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PYTHON_VERSIONS = ("3.10", "3.11", "3.12", "3.13")


@dataclass(frozen=True)
class Runtime:
    name: str  # Lambda's identifier, e.g. "python3.12"
    family: str  # "python"
    executable: str  # real interpreter path (no shims)
    prefix: str  # installation prefix (/var/lang in sandboxes)
    version: str  # full version, e.g. "3.12.1"


def _probe_python(candidate: str) -> Runtime | None:
    code = "import sys;print(sys.executable);print(sys.base_prefix);print(sys.version.split()[0])"
    try:
        out = subprocess.run(
            [candidate, "-I", "-S", "-c", code],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return None
    executable, prefix, version = os.path.realpath(out[0]), out[1], out[2]
    major_minor = ".".join(version.split(".")[:2])
    return Runtime(f"python{major_minor}", "python", executable, prefix, version)


def _python_candidates(minor: str) -> list[str]:
    found: list[str] = []
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    found.extend(
        sorted(glob.glob(f"{pyenv_root}/versions/{minor}.*/bin/python{minor}"), reverse=True)
    )
    for directory in ("/usr/local/bin", "/usr/bin"):
        path = f"{directory}/python{minor}"
        if os.path.exists(path):
            found.append(path)
    on_path = shutil.which(f"python{minor}")
    if on_path and "shims" not in on_path:
        found.append(on_path)
    return found


def discover() -> dict[str, Runtime]:
    """Every runtime this host can run, keyed by Lambda runtime name."""
    runtimes: dict[str, Runtime] = {}
    for minor in PYTHON_VERSIONS:
        for candidate in _python_candidates(minor):
            runtime = _probe_python(candidate)
            if runtime and runtime.name == f"python{minor}":
                runtimes[runtime.name] = runtime
                break
    return runtimes
