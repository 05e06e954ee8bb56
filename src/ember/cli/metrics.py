"""`ember metrics NAME`: a function's recent one-minute series, as a table with sparklines."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from ember.cli.client import get_json
from ember.cli.console import console

_BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    top = max(values, default=0)
    if top <= 0:
        return _BARS[0] * len(values)
    return "".join(_BARS[min(8, round(v / top * 8))] if v > 0 else _BARS[0] for v in values)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@click.command("metrics")
@click.argument("name")
@click.option("--version", "version", default=None, help="One version (default: all of them).")
@click.option("--minutes", type=click.IntRange(1, 1440), default=30, show_default=True)
@click.option("--all-rows", is_flag=True, help="Also list minutes without invocations.")
@click.option(
    "--endpoint", envvar="EMBER_ENDPOINT", default="http://127.0.0.1:9000", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print the series as JSON.")
def metrics(
    name: str, version: str | None, minutes: int, all_rows: bool, endpoint: str, as_json: bool
) -> None:
    """Invocations, errors, throttles, duration and concurrency per minute for NAME."""
    query: dict[str, Any] = {"function": name, "minutes": minutes}
    if version:
        query["version"] = version
    rows: list[dict[str, Any]] = get_json(endpoint, "/_ember/metrics", query)["rows"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    out = console()
    for label, key in (
        ("invocations", "invocations"),
        ("errors", "errors"),
        ("throttles", "throttles"),
        ("max duration", "duration_max_ms"),
        ("concurrency", "concurrency"),
    ):
        values = [float(r[key] or 0) for r in rows]
        out.print(f"{label:>13} {sparkline(values)}  max {max(values, default=0):g}")
    view = Table(title=f"{name}{':' + version if version else ''}, last {minutes} min (UTC)")
    for column in (
        "minute",
        "invocations",
        "errors",
        "throttles",
        "cold",
        "avg ms",
        "max ms",
        "concurrency",
    ):
        view.add_column(column, justify="left" if column == "minute" else "right", no_wrap=True)
    for r in rows:
        if not all_rows and not (r["invocations"] or r["throttles"]):
            continue
        view.add_row(
            time.strftime("%H:%M", time.gmtime(r["minute"])),
            str(r["invocations"]),
            str(r["errors"]),
            str(r["throttles"]),
            str(r["cold_starts"]),
            _ms(r["duration_avg_ms"]),
            _ms(r["duration_max_ms"]),
            str(r["concurrency"]),
        )
    out.print(view)
