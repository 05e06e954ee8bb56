"""Entry point of the `ember` command."""

from __future__ import annotations

from pathlib import Path

import click

from ember.cli.logs import logs
from ember.cli.metrics import metrics
from ember.cli.queue import queue
from ember.cli.trace import trace
from ember.cli.usage import usage
from ember.settings import Settings


@click.group(
    context_settings={"auto_envvar_prefix": "EMBER", "help_option_names": ["-h", "--help"]}
)
@click.version_option(package_name="ember")
def main() -> None:
    """Ember: a self-hosted, AWS Lambda-compatible function platform."""


# Flags are EMBER_<NAME> (not Click's derived EMBER_SERVER_<NAME>), as the docs promise.
@main.command(context_settings={"auto_envvar_prefix": "EMBER"})
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path(".ember"),
    show_default=True,
    help="Where SQLite and code packages live.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=9000, show_default=True)
@click.option("--region", default="us-east-1", show_default=True)
@click.option("--account-id", default="000000000000", show_default=True)
@click.option(
    "--idle-timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="Seconds before an idle warm instance is destroyed.",
)
@click.option(
    "--concurrency", type=int, default=1000, show_default=True, help="Account concurrency limit."
)
@click.option(
    "--sandbox-pool",
    type=int,
    default=2,
    show_default=True,
    help="Blank sandboxes kept ready per runtime (cold starts claim them).",
)
@click.option(
    "--tmp-storage",
    type=click.Choice(["disk", "memory"]),
    default="disk",
    show_default=True,
    help="Each instance's /tmp: a file system of its own on disk, as on Lambda, or a tmpfs "
    "counted against its MemorySize.",
)
@click.option(
    "--async-concurrency",
    type=int,
    default=64,
    show_default=True,
    help="Asynchronous invocations running at once.",
)
@click.option(
    "--async-retry-base",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds before the first retry of a failed asynchronous event (then 2x).",
)
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--otlp-endpoint",
    default=None,
    help="Export traces over OTLP/HTTP to this collector (e.g. http://127.0.0.1:4318); "
    "else OTEL_EXPORTER_OTLP_ENDPOINT if set.",
)
@click.option(
    "--hooks/--no-hooks",
    default=True,
    show_default=True,
    help="Invocation hooks (metrics, traces); off only to measure their cost (EMBER_HOOKS=off).",
)
@click.option(
    "--access-key-id",
    default=None,
    help="An access key of your own that AWS_IAM function URLs accept too (with --secret-access-key).",
)
@click.option("--secret-access-key", default=None, help="The secret of --access-key-id.")
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    envvar="EMBER_ALLOWED_HOSTS",
    help="A host name the API answers to besides IP addresses, localhost and --host "
    "(repeatable; '*.example.com' for subdomains; EMBER_ALLOWED_HOSTS is space- or "
    "comma-separated). Requests naming any other host are refused (DNS rebinding).",
)
@click.option(
    "--function-url-form",
    type=click.Choice(["path", "host"]),
    default="path",
    show_default=True,
    help="URLs CreateFunctionUrlConfig returns: 'path' (http://<host>:<port>/_ember/url/<id>/, "
    "every client opens it) or 'host' (AWS's shape, http://<id>.lambda-url.<region>.localhost:<port>/).",
)
def server(
    data_dir: Path,
    host: str,
    port: int,
    region: str,
    account_id: str,
    idle_timeout: float,
    concurrency: int,
    sandbox_pool: int,
    tmp_storage: str,
    async_concurrency: int,
    async_retry_base: float,
    log_level: str,
    hooks: bool,
    otlp_endpoint: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    allowed_hosts: tuple[str, ...] = (),
    function_url_form: str = "path",
) -> None:
    """Start the platform (every flag is also EMBER_<NAME>, e.g. EMBER_PORT)."""
    from ember.server import run
    from ember.settings import Limits

    if bool(access_key_id) != bool(secret_access_key):
        raise click.UsageError("--access-key-id and --secret-access-key go together")

    settings = Settings(
        data_dir=data_dir,
        host=host,
        port=port,
        region=region,
        account_id=account_id,
        idle_timeout_s=idle_timeout,
        sandbox_pool=sandbox_pool,
        tmp_storage=tmp_storage,
        async_concurrency=async_concurrency,
        async_retry_base_s=async_retry_base,
        log_level=log_level,
        otlp_endpoint=otlp_endpoint or None,
        hooks=hooks,
        access_key_id=access_key_id or None,
        secret_access_key=secret_access_key or None,
        allowed_hosts=tuple(
            name for value in allowed_hosts for name in value.replace(",", " ").split()
        ),
        function_url_form=function_url_form,
        limits=Limits(account_concurrency=concurrency),
    )
    raise SystemExit(run(settings))


main.add_command(queue)
main.add_command(logs)
main.add_command(trace)
main.add_command(usage)
main.add_command(metrics)

if __name__ == "__main__":
    main()
