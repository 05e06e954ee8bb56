"""`ember logs <function>`: a function's logs, one invocation per block, through the Logs API.

A client of Ember's public HTTP API like any other (botocore's `logs` client, the same one boto3
and the AWS CLI use): FilterLogEvents pages for listing, searching and `--follow` (polling, as
`aws logs tail --follow` does), GetFunctionConfiguration to find a custom log group.

Lines are grouped per invocation: within a log stream (one instance, one invocation at a time)
everything up to and including a REPORT line belongs to that invocation. Ember's event ids are
increasing integers in the order the platform emitted the lines, so a block is shown in that
order even when the timestamps of a function's output and of its START line interleave.

Only the platform's own records count as START/END/REPORT: Ember marks them in its Logs API
answers (`"emberPlatform": true`, which botocore drops, so an after-call hook copies it back).
A function that prints "REPORT RequestId: …" neither ends a block nor looks like a REPORT: such
output is shown with an `[output]` prefix.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"
_RELATIVE = re.compile(r"(\d+)\s*(s|m|h|d|w)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_REQUEST_ID = re.compile(r"RequestId: ([0-9A-Za-z-]+)")
_DURATION = re.compile(r"\tDuration: ([\d.]+) ms")
_INIT_DURATION = re.compile(r"\tInit Duration: ([\d.]+) ms")
# What platform records start with: function output that does too is shown marked.
_LOOKS_PLATFORM = (
    "START RequestId:",
    "END RequestId:",
    "REPORT RequestId:",
    "INIT_START ",
    "EXTENSION\t",
    "TELEMETRY\t",
    "[ember] ",
    '{"time":',
)
PLATFORM_MEMBER = "emberPlatform"  # api/logs_api.py sets it on the events the platform wrote
HOLD_S = 3.0  # how long --follow keeps an unfinished invocation back before showing it


def parse_since(text: str, now: float | None = None) -> int | None:
    """`30s`, `10m`, `2h`, `1d`, `1w`, an ISO 8601 time, or `all`: a start time in ms."""
    now = time.time() if now is None else now
    value = text.strip()
    if value.lower() in ("all", "0", ""):
        return None
    found = _RELATIVE.fullmatch(value)
    if found:
        return int((now - int(found.group(1)) * _UNIT_S[found.group(2)]) * 1000)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: use a relative time (30s, 10m, 2h, 1d, 1w), an ISO 8601 time, or 'all'",
            param_hint="'--since'",
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a naive time is local time
    return int(moment.timestamp() * 1000)


def _client(service: str, endpoint: str, region: str) -> Any:
    import botocore.config
    import botocore.session

    session = botocore.session.get_session()
    client = session.create_client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "ember"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "ember"),
        config=botocore.config.Config(retries={"max_attempts": 2}, read_timeout=30),
    )
    if service == "logs":
        keep_platform_marks(client)
    return client


def keep_platform_marks(client: Any) -> None:
    """Make a botocore `logs` client keep Ember's `emberPlatform` member on the events of
    GetLogEvents / FilterLogEvents (botocore drops members its model does not have)."""
    client.meta.events.register(
        "after-call.cloudwatch-logs", _copy_platform_marks, unique_id="ember-platform-marks"
    )


def _copy_platform_marks(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
    events = parsed.get("events") if isinstance(parsed, dict) else None
    if not events:
        return
    try:
        raw = json.loads(http_response.content)["events"]
    except (ValueError, KeyError, TypeError):
        return
    if not isinstance(raw, list) or len(raw) != len(events):
        return
    for event, original in zip(events, raw, strict=True):
        if isinstance(original, dict) and original.get(PLATFORM_MEMBER) is True:
            event[PLATFORM_MEMBER] = True


def is_platform(event: dict[str, Any]) -> bool:
    """Whether the platform wrote this event (START, END, REPORT, ...): never function output."""
    return event.get(PLATFORM_MEMBER) is True


def _is_report(event: dict[str, Any]) -> bool:
    return is_platform(event) and str(event["message"]).startswith("REPORT ")


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code"))
    return None


def _log_group(function: str, endpoint: str, region: str) -> str:
    """The function's log group: LoggingConfig.LogGroup if set, else /aws/lambda/<name>.

    A name starting with '/' is taken as a log group itself."""
    if function.startswith("/"):
        return function
    default = f"/aws/lambda/{function.split(':')[-1] if function.startswith('arn:') else function}"
    try:
        config = _client("lambda", endpoint, region).get_function_configuration(
            FunctionName=function
        )
    except Exception as exc:  # a deleted function may still have logs
        if _error_code(exc) is None:
            raise click.ClickException(f"cannot reach Ember at {endpoint}: {exc}") from None
        return default
    return str((config.get("LoggingConfig") or {}).get("LogGroup") or default)


# -- rendering ---------------------------------------------------------------------------------


def _style(message: str, platform: bool = False) -> str:
    if platform:
        if message.startswith("REPORT "):
            failed = "\tStatus: " in message and "Status: success" not in message
            return "bold red" if failed else "bold cyan"
        if message.startswith("[ember] "):
            return "yellow"
        return "dim"
    head = message[:200]
    if (
        "[ERROR]" in head
        or '"level": "ERROR"' in head
        or '"level":"ERROR"' in head
        or "Task timed out" in head
    ):
        return "red"
    if (
        "[WARNING]" in head
        or "[WARN]" in head
        or '"level": "WARN' in head
        or '"level":"WARN' in head
    ):
        return "yellow"
    return ""


def _event_order(event: dict[str, Any]) -> tuple[int, int]:
    event_id = str(event.get("eventId", ""))
    return (int(event_id), 0) if event_id.isdigit() else (0, int(event["timestamp"]))


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


class Printer:
    def __init__(self, color: bool | None = None) -> None:
        from rich.console import Console

        self.console = Console(
            highlight=False,
            soft_wrap=True,
            force_terminal=color,
            no_color=color is False,
        )
        self.blocks = 0

    def line(self, event: dict[str, Any], show_stream: bool = False) -> None:
        from rich.text import Text

        message = str(event["message"]).rstrip("\n")
        platform = is_platform(event)
        text = Text()
        text.append(_clock(int(event["timestamp"])) + " ", style="dim green")
        if show_stream:
            text.append(_short_stream(str(event.get("logStreamName", ""))) + " ", style="cyan")
        if not platform and message.lstrip().startswith(_LOOKS_PLATFORM):
            text.append("[output] ", style="magenta")  # the function's, whatever it looks like
        text.append(message, style=_style(message, platform))
        self.console.print(text)

    def block(self, events: list[dict[str, Any]], complete: bool = True) -> None:
        from rich.text import Text

        if not events:
            return
        first = events[0]
        request_id = next(
            (
                m.group(1)
                for e in events
                if is_platform(e) and (m := _REQUEST_ID.search(str(e["message"])))
            ),
            None,
        )
        stamp = datetime.fromtimestamp(int(first["timestamp"]) / 1000, UTC).strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        )
        title = " · ".join(
            part
            for part in (stamp, request_id, _short_stream(str(first.get("logStreamName", ""))))
            if part
        )
        if not complete:
            title += " · (running…)"
        if self.blocks:
            self.console.print()
        self.console.print(Text(f"── {title} ──", style="dim"))
        self.blocks += 1
        for event in events:
            self.line(event)


def _short_stream(name: str) -> str:
    return name.rsplit("/", 1)[-1] if name else ""


@dataclass
class Grouper:
    """Collects events per stream and prints an invocation's block once its REPORT arrives."""

    printer: Printer
    pending: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)
    shown_open: set[str] = field(default_factory=set)  # streams whose running block is on screen

    def feed(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            stream = str(event.get("logStreamName", ""))
            if stream in self.shown_open:
                self.printer.line(event)
                if _is_report(event):
                    self.shown_open.discard(stream)
                continue
            self.pending.setdefault(stream, []).append(event)
            self.since.setdefault(stream, time.monotonic())
            if _is_report(event):
                self._emit(stream, complete=True)

    def _emit(self, stream: str, complete: bool) -> None:
        events = sorted(self.pending.pop(stream, []), key=_event_order)
        self.since.pop(stream, None)
        self.printer.block(events, complete=complete)
        if not complete:
            self.shown_open.add(stream)

    def flush_stale(self, hold_s: float) -> None:
        now = time.monotonic()
        for stream in [s for s, t in self.since.items() if now - t >= hold_s]:
            self._emit(stream, complete=False)

    def flush_all(self) -> None:
        for stream in list(self.pending):
            events = self.pending[stream]
            has_start = any(
                is_platform(e) and str(e["message"]).startswith("START ") for e in events
            )
            self._emit(stream, complete=not has_start)


# -- reading -----------------------------------------------------------------------------------


def _pages(client: Any, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
    while True:
        response = client.filter_log_events(**kwargs)
        yield list(response.get("events", []))
        token = response.get("nextToken")
        if not token:
            return
        kwargs["nextToken"] = token


def _follow(client: Any, interval: float, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
    """Poll FilterLogEvents forever; each call yields new events (possibly none)."""
    newest = int(kwargs.get("startTime") or 0)
    seen_at_newest: set[str] = set()
    while True:
        try:
            response = client.filter_log_events(**kwargs)
        except Exception as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
            response = {"events": []}
        fresh = []
        for event in response.get("events", []):
            ts, event_id = int(event["timestamp"]), str(event["eventId"])
            if ts < newest or (ts == newest and event_id in seen_at_newest):
                continue
            if ts > newest:
                newest, seen_at_newest = ts, set()
            seen_at_newest.add(event_id)
            fresh.append(event)
        yield fresh
        if response.get("nextToken"):
            kwargs["nextToken"] = response["nextToken"]
            continue
        kwargs.pop("nextToken", None)
        if newest:
            kwargs["startTime"] = newest
        time.sleep(interval)


def _invocation(
    client: Any, group: str, request_id: str, start: int | None
) -> list[dict[str, Any]]:
    """Every line of one invocation: found by its START/END/REPORT lines, then read back from
    its log stream between the previous invocation's REPORT and its own."""
    marked: list[dict[str, Any]] = []
    query: dict[str, Any] = {"logGroupName": group, "filterPattern": f'"RequestId: {request_id}"'}
    if start is not None:
        query["startTime"] = start
    for page in _pages(client, **query):
        marked.extend(page)
    marked = [e for e in marked if is_platform(e)]  # a function may print "RequestId: <id>"
    if not marked:
        return []
    stream = str(marked[0]["logStreamName"])
    marked = [e for e in marked if e["logStreamName"] == stream]
    report = next((e for e in marked if str(e["message"]).startswith("REPORT ")), None)
    start_line = next((e for e in marked if str(e["message"]).startswith("START ")), None)
    anchor = report or start_line or marked[0]
    anchor_ts = int(anchor["timestamp"])
    if report is not None:
        message = str(report["message"])
        spent = sum(
            float(m.group(1))
            for m in (_DURATION.search(message), _INIT_DURATION.search(message))
            if m
        )
        low, high = anchor_ts - int(spent) - 1000, anchor_ts
    else:
        low, high = anchor_ts - 1000, anchor_ts + 900_000
    window: list[dict[str, Any]] = []
    for page in _pages(
        client, logGroupName=group, logStreamNames=[stream], startTime=max(low, 0), endTime=high
    ):
        window.extend(page)
    window.sort(key=_event_order)
    anchor_key = _event_order(anchor)
    ours: list[dict[str, Any]] = []
    for event in window:
        message = str(event["message"])
        other = _REQUEST_ID.search(message) if is_platform(event) else None
        mine = other is not None and other.group(1) == request_id
        if _event_order(event) <= anchor_key or report is None:
            if other and not mine and message.startswith(("REPORT ", "END ")):
                ours = []  # the previous invocation ended here
                continue
            if report is None and other and not mine and message.startswith("START "):
                break  # the next invocation began
            ours.append(event)
    return ours


# -- the command -------------------------------------------------------------------------------


@click.command("logs")
@click.argument("function")
@click.option("--follow", "-f", is_flag=True, help="Keep polling for new lines (Ctrl-C to stop).")
@click.option(
    "--filter",
    "filter_pattern",
    metavar="PATTERN",
    help='A CloudWatch filter pattern: ERROR, "a phrase", ?a ?b, -term, { $.level = "ERROR" }.',
)
@click.option(
    "--since",
    default=None,
    metavar="WHEN",
    help="Start from 30s, 10m, 2h, 1d, 1w ago, an ISO 8601 time, or 'all'. "
    "[default: 10m; all with --request-id]",
)
@click.option("--request-id", metavar="ID", help="Only the lines of this invocation.")
@click.option("--endpoint", envvar="EMBER_ENDPOINT", default=DEFAULT_ENDPOINT, show_default=True)
@click.option("--region", envvar="AWS_REGION", default="us-east-1", show_default=True)
@click.option(
    "--interval",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds between polls with --follow.",
)
@click.option(
    "--color/--no-color", default=None, help="Force colours on or off (default: when a terminal)."
)
def logs(
    function: str,
    follow: bool,
    filter_pattern: str | None,
    since: str | None,
    request_id: str | None,
    endpoint: str,
    region: str,
    interval: float,
    color: bool | None,
) -> None:
    """Show FUNCTION's logs, one invocation per block (or a log group, if FUNCTION starts with /)."""
    group = _log_group(function, endpoint, region)
    start = parse_since(since if since is not None else ("all" if request_id else "10m"))
    client = _client("logs", endpoint, region)
    printer = Printer(color)
    try:
        if request_id:
            lines = _invocation(client, group, request_id, start)
            if not lines:
                raise click.ClickException(f"no invocation {request_id} in {group}")
            printer.block(lines, complete=any(_is_report(e) for e in lines))
            return
        query: dict[str, Any] = {"logGroupName": group, "interleaved": True}
        if start is not None:
            query["startTime"] = start
        if filter_pattern:
            query["filterPattern"] = filter_pattern
        grouper = Grouper(printer)
        if follow:
            for page in _follow(client, interval, **query):
                if filter_pattern:
                    for event in page:
                        printer.line(event, show_stream=True)
                else:
                    grouper.feed(page)
                    grouper.flush_stale(HOLD_S)
            return
        try:
            for page in _pages(client, **query):
                if filter_pattern:
                    for event in page:
                        printer.line(event, show_stream=True)
                else:
                    grouper.feed(page)
        except Exception as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                print(
                    f"ember: no logs for {function} yet (log group {group} does not exist)",
                    file=sys.stderr,
                )
                raise SystemExit(1) from None
            raise
        grouper.flush_all()
    except KeyboardInterrupt:
        return
    except click.ClickException:
        raise
    except Exception as exc:
        code = _error_code(exc)
        if code is None and "Could not connect" in str(exc):
            raise click.ClickException(f"cannot reach Ember at {endpoint}: {exc}") from None
        raise click.ClickException(str(exc)) from None
