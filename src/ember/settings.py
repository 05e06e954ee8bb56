"""The one frozen Settings object: built once from CLI flags and EMBER_* variables, passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """Lambda's documented limits; every one is operator-configurable."""

    memory_min_mb: int = 128
    memory_max_mb: int = 10240
    timeout_max_s: int = 900
    ephemeral_min_mb: int = 512
    ephemeral_max_mb: int = 10240
    zip_upload_bytes: int = 50 * 1024 * 1024
    unzipped_bytes: int = 250 * 1024 * 1024
    zip_max_entries: int = 100_000
    create_request_bytes: int = 70_167_211  # what AWS names for CreateFunction / UpdateFunctionCode
    env_vars_bytes: int = 4 * 1024
    sync_payload_bytes: int = 6 * 1024 * 1024
    sync_response_bytes: int = 6 * 1024 * 1024
    async_payload_bytes: int = 1024 * 1024
    account_concurrency: int = 1000
    # Reservations must leave this much unreserved (AWS: 100); None: min(100, account / 10).
    unreserved_concurrency_min: int | None = None
    pids_max: int = 1024
    nofile: int = 1024

    @property
    def min_unreserved_concurrency(self) -> int:
        if self.unreserved_concurrency_min is not None:
            return self.unreserved_concurrency_min
        return min(100, self.account_concurrency // 10)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".ember")
    host: str = "127.0.0.1"
    port: int = 9000
    region: str = "us-east-1"
    account_id: str = "000000000000"
    idle_timeout_s: float = 600.0
    sandbox_pool: int = 2  # blank sandboxes kept ready per runtime
    tmp_storage: str = (
        "disk"  # each sandbox's /tmp: "disk" (a file system of its own) or "memory" (a tmpfs)
    )
    freeze_delay_s: float = 0.005  # idle instances are frozen this long after an invocation
    async_concurrency: int = 64  # asynchronous invocations running at once (within the account's)
    async_retry_base_s: float = 60.0  # retry n waits n x this (Lambda: about 1, then 2 minutes)
    log_level: str = "info"
    hooks: bool = True  # invocation hooks (metrics, traces); off only to measure their cost
    otlp_endpoint: str | None = None  # OTLP/HTTP traces (else OTEL_EXPORTER_OTLP_ENDPOINT, if set)
    # An access key of the operator's own, accepted for AWS_IAM function URLs besides the generated ones.
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    # Host names Ember answers to besides IP literals, localhost and `host` ("*.name": its
    # subdomains); any other Host header is refused (DNS rebinding), see api/request_guard.py.
    allowed_hosts: tuple[str, ...] = ()
    # The URLs CreateFunctionUrlConfig returns: "path" (http://<host>:<port>/_ember/url/<id>/,
    # opens in every client) or "host" (AWS's shape, http://<id>.lambda-url.<region>.localhost:<port>/).
    function_url_form: str = "path"
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        # Zygotes and sandboxes do not share the server's working directory: every path they
        # are given must be absolute.
        object.__setattr__(self, "data_dir", Path(self.data_dir).absolute())

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ember.sqlite3"

    @property
    def code_dir(self) -> Path:
        return self.data_dir / "code"
