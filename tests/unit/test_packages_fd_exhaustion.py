"""Out of file descriptors (EMFILE) while storing code: a 503-style StorageUnavailable, and no
staging file outlives the request (what a failed removal leaves, the next collection sweeps)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ember.functions.package_gc import PackageCollector
from ember.functions.packages import STAGING_PREFIXES, PackageStore
from ember.settings import Limits
from ember.store.sqlite import SqliteStore

CHILD = r"""
import io, json, os, resource, sys, zipfile
from pathlib import Path
from ember.functions.packages import PackageStore
from ember.settings import Limits

def zip_of(n, tag):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(n):
            archive.writestr(f"pkg/m{i}.py", f"# {tag} {i}\n")
    return buffer.getvalue()

store = PackageStore(Path(sys.argv[1]), Limits())
sha = store.put(zip_of(40, "stored")).sha256
fresh = zip_of(40, "fresh")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
results = {}
for free in (0, 1, 2, 3):
    hog = []
    try:
        while True:
            hog.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    for _ in range(free):
        os.close(hog.pop())
    for what, call in (("unpack", lambda: store.unpack(sha, "python3.12", None)),
                       ("put", lambda: store.put(fresh)),
                       ("verify", lambda: store.verify_extract(sha))):
        try:
            call()
            outcome = "ok"
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        results[f"{what} with {free} free"] = outcome
    for fd in hog:
        os.close(fd)
print(json.dumps(results))
"""


def test_running_out_of_descriptors_leaves_nothing_behind(tmp_path: Path) -> None:
    code = tmp_path / "code"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(code)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    failed = {k: v for k, v in results.items() if v != "ok"}
    assert failed, results  # the descriptor limit did bite
    for outcome in failed.values():
        assert outcome.startswith("StorageUnavailable: Ember has too many open files"), results
    packages = PackageStore(code, Limits())
    PackageCollector(packages, SqliteStore(tmp_path / "ember.sqlite3")).collect()
    left = [
        p.name
        for d in (packages.zips, packages.tasks)
        for p in d.iterdir()
        if p.name.startswith(STAGING_PREFIXES)
    ]
    assert left == []
