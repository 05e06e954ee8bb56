"""`ember usage`: requests, billed time, GB-seconds and what they would cost on Lambda."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import click

from ember.cli.client import get_json
from ember.cli.console import console

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90s`, `10m`, `24h`, `1d` (a bare number is seconds)."""
    found = _DURATION.match(text.lower())
    if found is None:
        raise click.BadParameter(
            f"{text!r} is not a duration such as 10m, 24h or 1d", param_hint="'--since'"
        )
    return float(found.group(1)) * _UNIT_S[found.group(2)]


@dataclass(frozen=True)
class Prices:
    per_million_requests: float = 0.20
    per_gb_second: float = 0.0000166667
    free_requests: int = 1_000_000
    free_gb_seconds: float = 400_000.0

    def gross(self, requests: int, gb_seconds: float) -> float:
        return requests / 1e6 * self.per_million_requests + gb_seconds * self.per_gb_second

    def net(self, requests: int, gb_seconds: float) -> float:
        """The cost once the (monthly) free tier has been taken off, as Lambda bills it."""
        billable_requests = max(0, requests - self.free_requests)
        billable_gb_s = max(0.0, gb_seconds - self.free_gb_seconds)
        return (
            billable_requests / 1e6 * self.per_million_requests + billable_gb_s * self.per_gb_second
        )


def _price(value: float) -> str:
    return f"{value:.10f}".rstrip("0").rstrip(".")


def _money(value: float) -> str:
    return f"${value:,.6f}" if value < 1 else f"${value:,.2f}"


@click.command("usage")
@click.option(
    "--since",
    default="24h",
    show_default=True,
    help="How far back (at most 24h: the series Ember keeps).",
)
@click.option(
    "--by", type=click.Choice(["function", "version"]), default="function", show_default=True
)
@click.option(
    "--endpoint", envvar="EMBER_ENDPOINT", default="http://127.0.0.1:9000", show_default=True
)
@click.option(
    "--request-price", type=float, default=0.20, show_default=True, help="$ per million requests."
)
@click.option(
    "--gb-second-price",
    type=float,
    default=0.0000166667,
    show_default=True,
    help="$ per GB-second.",
)
@click.option(
    "--free-requests",
    type=int,
    default=1_000_000,
    show_default=True,
    help="Free requests per month.",
)
@click.option(
    "--free-gb-seconds",
    type=float,
    default=400_000.0,
    show_default=True,
    help="Free GB-seconds per month.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def usage(
    since: str,
    by: str,
    endpoint: str,
    request_price: float,
    gb_second_price: float,
    free_requests: int,
    free_gb_seconds: float,
    as_json: bool,
) -> None:
    """Requests, billed milliseconds and GB-seconds per function (or version), with a cost.

    GB-seconds are billed ms / 1000 x memory MB / 1024, per invocation. Each row's cost is before
    the free tier; the total applies the free tier once, as a monthly bill does.
    """
    prices = Prices(request_price, gb_second_price, free_requests, free_gb_seconds)
    answer = get_json(endpoint, "/_ember/usage", {"since": parse_duration(since), "by": by})
    rows: list[dict[str, Any]] = answer["rows"]
    for row in rows:
        row["cost"] = prices.gross(row["requests"], row["gb_seconds"])
    requests = sum(r["requests"] for r in rows)
    billed = sum(r["billed_ms"] for r in rows)
    gb_s = sum(r["gb_seconds"] for r in rows)
    total = {
        "requests": requests,
        "billed_ms": billed,
        "gb_seconds": gb_s,
        "cost": prices.gross(requests, gb_s),
        "cost_after_free_tier": prices.net(requests, gb_s),
    }
    if as_json:
        click.echo(
            json.dumps(
                {
                    "since": answer["since"],
                    "until": answer["until"],
                    "by": by,
                    "rows": rows,
                    "total": total,
                },
                indent=2,
            )
        )
        return
    from rich.table import Table

    view = Table(title=f"Usage, last {since}")
    columns = [
        "function",
        *(["version"] if by == "version" else []),
        "requests",
        "billed ms",
        "GB-seconds",
        "cost",
    ]
    for column in columns:
        view.add_column(
            column, justify="left" if column in ("function", "version") else "right", no_wrap=True
        )
    for row in rows:
        cells = [
            row["function"],
            *([row["version"]] if by == "version" else []),
            f"{row['requests']:,}",
            f"{row['billed_ms']:,}",
            f"{row['gb_seconds']:,.3f}",
            _money(row["cost"]),
        ]
        view.add_row(*cells)
    view.add_section()
    view.add_row(
        "total",
        *([""] if by == "version" else []),
        f"{requests:,}",
        f"{billed:,}",
        f"{gb_s:,.3f}",
        _money(total["cost"]),
    )
    out = console()
    out.print(view)
    out.print(
        f"After the free tier ({free_requests:,} requests and {free_gb_seconds:,.0f} GB-s a month): "
        f"{_money(total['cost_after_free_tier'])}  "
        f"(${_price(request_price)}/M requests, ${_price(gb_second_price)}/GB-s)"
    )
