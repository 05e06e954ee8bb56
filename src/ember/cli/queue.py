"""`ember queue`: asynchronous invocation queues per function."""

from __future__ import annotations

import json

import click

from ember.cli.client import get_json
from ember.cli.console import console


def _age(seconds: float) -> str:
    if seconds < 1:
        return "-" if seconds == 0 else f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}m"


@click.command("queue")
@click.option(
    "--endpoint", envvar="EMBER_ENDPOINT", default="http://127.0.0.1:9000", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw figures as JSON.")
def queue(endpoint: str, as_json: bool) -> None:
    """Queued events, oldest age, in-flight, retries and failures per function."""
    table = get_json(endpoint, "/_ember/async")
    if as_json:
        click.echo(json.dumps(table, indent=2))
        return
    from rich.table import Table

    view = Table(title="Asynchronous invocations")
    for column in (
        "function",
        "queued",
        "oldest",
        "in-flight",
        "succeeded",
        "retries",
        "failed",
        "expired",
    ):
        view.add_column(column, justify="left" if column == "function" else "right", no_wrap=True)
    for name, row in table.items():
        view.add_row(
            name,
            str(row["queued"]),
            _age(row["oldest_age_s"]),
            str(row["in_flight"]),
            str(row["succeeded"]),
            str(row["retries"]),
            str(row["failures"]),
            str(row["expired"]),
        )
    console().print(view)
