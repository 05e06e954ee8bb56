"""`ember trace`: one trace as a tree with timings, or the recent traces of a function."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import click

from ember.cli.client import get_json
from ember.cli.console import console

BAR_WIDTH = 20


def _ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def _bar(span: dict[str, Any], start: float, total: float) -> str:
    """Where the span lies within the whole trace, as a strip of BAR_WIDTH characters."""
    if total <= 0:
        return "█".ljust(BAR_WIDTH, "·")
    begin: float = span["start"]
    end: float = span["end"]
    left = int((begin - start) / total * BAR_WIDTH)
    width = max(1, round((end - begin) / total * BAR_WIDTH))
    left = min(left, BAR_WIDTH - 1)
    width = min(width, BAR_WIDTH - left)
    return "·" * left + "█" * width + "·" * (BAR_WIDTH - left - width)


def _label(span: dict[str, Any], start: float, total: float) -> str:
    offset = (span["start"] - start) * 1000
    text = f"[dim]{_bar(span, start, total)}[/dim] [cyan]{_ms(span['durationMs']):>9}[/cyan]  "
    if span["phase"] == "invocation":
        attributes = span["attributes"]
        text += (
            f"[bold]{span['name']}[/bold] [dim]{attributes.get('faas.version', '')} "
            f"{attributes.get('ember.invocation_type', '')} {span['requestId'][:8]}[/dim]"
        )
        if attributes.get("faas.coldstart"):
            text += " [yellow]cold[/yellow]"
    else:
        text += span["name"]
    if span.get("error"):
        text += f" [red]{span['error']}[/red]"
    return text + f" [dim]+{_ms(offset)}[/dim]"


def render(trace: dict[str, Any]) -> None:
    from rich.tree import Tree

    spans: list[dict[str, Any]] = trace["spans"]
    ids = {s["spanId"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parentId"] if span["parentId"] in ids else None
        children.setdefault(parent, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: (s["start"], s["phase"] != "invocation"))
    start = min(s["start"] for s in spans)
    total = max(s["end"] for s in spans) - start
    invocations = sum(1 for s in spans if s["phase"] == "invocation")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start))
    tree = Tree(
        f"[bold]trace {trace['xrayTraceId']}[/bold] [dim]· {when} · "
        f"{invocations} invocation{'s' if invocations != 1 else ''} · {_ms(total * 1000)}\n"
        f"W3C trace id {trace['traceId']}[/dim]"
    )

    def add(node: Tree, parent: str | None) -> None:
        for span in children.get(parent, []):
            add(node.add(_label(span, start, total)), span["spanId"])

    add(tree, None)
    console(highlight=False).print(tree)


def _recent_table(traces: list[dict[str, Any]]) -> None:
    from rich.table import Table

    view = Table(title="Recent traces")
    for column in ("trace id", "started", "took", "calls", "errors", "functions"):
        view.add_column(
            column,
            justify="right" if column in ("took", "calls", "errors") else "left",
            no_wrap=column != "functions",
            min_width=10 if column == "functions" else None,
        )
    for row in traces:
        view.add_row(
            row["xrayTraceId"],
            time.strftime("%H:%M:%S", time.localtime(row["start"])),
            _ms(row["durationMs"]),
            str(row["invocations"]),
            str(row["errors"]),
            " → ".join(row["functions"]),
        )
    console(highlight=False).print(view)


@click.command("trace")
@click.argument("trace_id", required=False)
@click.option("--function", "-f", "function", help="Traces this function took part in.")
@click.option("--last", is_flag=True, help="Show the most recent trace (of --function) as a tree.")
@click.option(
    "--limit", type=int, default=20, show_default=True, help="How many recent traces to list."
)
@click.option("--json", "as_json", is_flag=True, help="Print what the API returned, as JSON.")
@click.option(
    "--endpoint", envvar="EMBER_ENDPOINT", default="http://127.0.0.1:9000", show_default=True
)
def trace(
    trace_id: str | None, function: str | None, last: bool, limit: int, as_json: bool, endpoint: str
) -> None:
    """A trace as a tree of invocations and their phases (queue wait, claim or cold start, init,
    handler) with timings. TRACE_ID is an X-Ray root (1-…-…) or a W3C trace id (32 hex)."""
    if trace_id is None:
        query = {"limit": str(1 if last else limit)}
        if function:
            query["function"] = function
        found = get_json(endpoint, "/_ember/traces?" + urllib.parse.urlencode(query))["traces"]
        if not found:
            raise click.ClickException(
                f"no traces of {function} are stored" if function else "no traces are stored"
            )
        if not last:
            if as_json:
                click.echo(json.dumps(found, indent=2))
            else:
                _recent_table(found)
            return
        trace_id = found[0]["traceId"]
    document = get_json(endpoint, "/_ember/traces/" + urllib.parse.quote(trace_id, safe=""))
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        render(document)
