"""The CloudWatch Logs API subset (2014-03-28) that Lambda users touch, over AWS's JSON 1.1.

`POST /` with `X-Amz-Target: Logs_20140328.<Operation>` and a JSON body; answers are JSON with
content type `application/x-amz-json-1.1`, errors `{"__type": "<Name>", "message": "..."}` with
status 400 (500 for faults). Parameters are validated against botocore's `logs` model; model
violations come back as InvalidParameterException, as CloudWatch Logs sends them.

Storage and search live in observe/logs.py; this module only maps wire shapes onto them.

Events the platform wrote (START, END, REPORT, ...) carry one member AWS does not send,
`"emberPlatform": true` (PLATFORM_MEMBER): messages stay plain text as CloudWatch returns them,
SDKs ignore members they do not know, and Ember's own readers (`ember logs`) use it to tell
platform records from function output that imitates them.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ember.api import wire
from ember.api.service_model import ServiceModel, load
from ember.api.validation import drop_nulls, validate
from ember.errors import EmberError, ValidationError
from ember.functions.naming import PARTITION
from ember.observe.filter_pattern import InvalidFilterPattern, compile_pattern
from ember.observe.logs import (
    DAY_MS,
    EVENT_OVERHEAD,
    MAX_EVENT_BYTES,
    GroupInfo,
    LogEvent,
    LogStore,
    Position,
    StreamInfo,
)
from ember.platform import Platform

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/x-amz-json-1.1"
BODY_LIMIT = 2 * 1024 * 1024
MAX_BATCH_BYTES = 1_048_576  # PutLogEvents, and a page of GetLogEvents / FilterLogEvents
MAX_BATCH_SPAN_MS = DAY_MS
TOO_NEW_MS = 2 * 3600 * 1000
TOO_OLD_MS = 14 * DAY_MS
PLATFORM_MEMBER = "emberPlatform"
RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


class LogsError(EmberError):
    status = 400


class ResourceNotFoundException(LogsError):
    error_type = "ResourceNotFoundException"


class InvalidParameterException(LogsError):
    error_type = "InvalidParameterException"


class ResourceAlreadyExistsException(LogsError):
    error_type = "ResourceAlreadyExistsException"


class ServiceUnavailableException(LogsError):
    error_type = "ServiceUnavailableException"
    status = 500


class UnknownOperationException(LogsError):
    error_type = "UnknownOperationException"


class SerializationException(LogsError):
    error_type = "SerializationException"


def error_response(error: EmberError) -> Response:
    status = error.status
    error_type = error.error_type
    if isinstance(error, ValidationError):
        error_type, status = "InvalidParameterException", 400
    body = {"__type": error_type, "message": error.message}
    return Response(orjson.dumps(body), status_code=status, media_type=CONTENT_TYPE)


Handler = Callable[["LogsApi", dict[str, Any]], dict[str, Any] | None]
HANDLERS: dict[str, Handler] = {}


def operation(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


class LogsApi:
    """Reads the target, validates the body against the model, runs the operation."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.model: ServiceModel = load("logs")
        self.prefix: str = self.model.metadata["targetPrefix"]
        settings = platform.settings
        self.arn_prefix = f"arn:aws:logs:{settings.region}:{settings.account_id}:log-group:"
        self.arn_scope = (PARTITION, settings.region, settings.account_id)

    @property
    def store(self) -> LogStore:
        return self.platform.logs

    async def __call__(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except EmberError as error:
            return error_response(error)
        except Exception:
            log.exception("the Logs API failed on %s", request.headers.get("x-amz-target"))
            return error_response(
                ServiceUnavailableException("The service cannot complete the request.")
            )

    async def _handle(self, request: Request) -> Response:
        target = request.headers.get("x-amz-target", "")
        prefix, _, name = target.partition(".")
        if request.method != "POST" or prefix != self.prefix or name not in self.model.operations:
            raise UnknownOperationException(f"Unknown operation {target or '(no X-Amz-Target)'}")
        handler = HANDLERS.get(name)
        if handler is None:
            raise UnknownOperationException(f"The {name} operation is not supported by Ember yet.")
        body = await wire.read_body(request, BODY_LIMIT, name)
        try:
            params = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError:
            raise SerializationException("The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise SerializationException("The request body must be a JSON object.")
        shape = (self.model.operations[name].get("input") or {}).get("shape")
        if shape:
            params = drop_nulls(self.model, shape, params)
            validate(self.model, shape, params)
        result = await run_in_threadpool(handler, self, params)
        return Response(orjson.dumps(result) if result else b"{}", media_type=CONTENT_TYPE)

    # -- helpers ---------------------------------------------------------------------------

    def group_name(self, params: dict[str, Any]) -> str:
        name = params.get("logGroupName")
        identifier = params.get("logGroupIdentifier")
        if name and identifier:
            raise InvalidParameterException(
                "LogGroup name and LogGroup ARN are mutually exclusive parameters."
            )
        if identifier:
            name = self.name_from_identifier(identifier)
        if not name:
            raise InvalidParameterException(
                "Either logGroupName or logGroupIdentifier is required."
            )
        return str(name)

    def name_from_identifier(self, identifier: str) -> str:
        if not identifier.startswith("arn:"):
            return identifier
        found = re.fullmatch(
            r"arn:([^:]+):logs:([^:]*):([^:]*):log-group:(.+?)(?::\*)?", identifier
        )
        if found is None:
            raise InvalidParameterException(f"Invalid log group ARN: {identifier}")
        if found.group(1, 2, 3) != self.arn_scope:  # another partition, region or account
            raise ResourceNotFoundException("The specified log group does not exist.")
        return found.group(4)

    def existing_group(self, name: str) -> GroupInfo:
        group = self.store.group(name)
        if group is None:
            raise ResourceNotFoundException("The specified log group does not exist.")
        return group

    def existing_stream(self, group: str, name: str) -> StreamInfo:
        self.existing_group(group)
        stream = self.store.stream(group, name)
        if stream is None:
            raise ResourceNotFoundException("The specified log stream does not exist.")
        return stream

    def group_shape(self, group: GroupInfo) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "logGroupName": group.name,
            "creationTime": group.created,
            "metricFilterCount": 0,
            "arn": f"{self.arn_prefix}{group.name}:*",
            "storedBytes": group.stored_bytes,
            "logGroupClass": "STANDARD",
            "logGroupArn": f"{self.arn_prefix}{group.name}",
        }
        if group.retention_days is not None:
            shape["retentionInDays"] = group.retention_days
        return shape

    def stream_shape(self, stream: StreamInfo) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "logStreamName": stream.name,
            "creationTime": stream.created,
            "arn": f"{self.arn_prefix}{stream.log_group}:log-stream:{stream.name}",
            "storedBytes": 0,  # deprecated for streams: AWS always reports 0
        }
        if stream.first_event is not None:
            shape["firstEventTimestamp"] = stream.first_event
        if stream.last_event is not None:
            shape["lastEventTimestamp"] = stream.last_event
        if stream.last_ingestion is not None:
            shape["lastIngestionTime"] = stream.last_ingestion
        return shape


# -- tokens -----------------------------------------------------------------------------------


def _encode_token(kind: str, value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([kind, value])).decode().rstrip("=")


def _decode_token(token: str, kind: str) -> Any:
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        decoded = None
    if not isinstance(decoded, list) or len(decoded) != 2 or decoded[0] != kind:
        raise InvalidParameterException("The specified nextToken is invalid.")
    return decoded[1]


def _position_token(direction: str, position: Position) -> str:
    """GetLogEvents tokens in AWS's look: `f/<56 digits>/s` (forward) or `b/…/s` (backward)."""
    return f"{direction}/{position[0]:020d}{position[1]:036d}/s"


_POSITION_TOKEN = re.compile(r"([fb])/([0-9]{20})([0-9]{36})/s")
_STORED = range(
    -(2**63), 2**63
)  # what a SQLite INTEGER holds: positions and times outside it are forged


def _stored(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value in _STORED


def _parse_position_token(token: str) -> tuple[str, Position]:
    found = _POSITION_TOKEN.fullmatch(token)
    if found is None or not all(_stored(int(part)) for part in found.group(2, 3)):
        raise InvalidParameterException("The specified nextToken is invalid.")
    return found.group(1), (int(found.group(2)), int(found.group(3)))


def _event_key(kind: str, value: Any) -> Position:
    if not isinstance(value, list) or len(value) != 2 or not all(_stored(v) for v in value):
        raise InvalidParameterException("The specified nextToken is invalid.")
    return (value[0], value[1])


# -- operations -------------------------------------------------------------------------------


@operation("CreateLogGroup")
def create_log_group(api: LogsApi, params: dict[str, Any]) -> None:
    if not api.store.create_group(params["logGroupName"]):
        raise ResourceAlreadyExistsException("The specified log group already exists")


@operation("DeleteLogGroup")
def delete_log_group(api: LogsApi, params: dict[str, Any]) -> None:
    if not api.store.delete_group(params["logGroupName"]):
        raise ResourceNotFoundException("The specified log group does not exist.")


@operation("CreateLogStream")
def create_log_stream(api: LogsApi, params: dict[str, Any]) -> None:
    api.existing_group(params["logGroupName"])
    if not api.store.create_stream(params["logGroupName"], params["logStreamName"]):
        raise ResourceAlreadyExistsException("The specified log stream already exists")


@operation("DeleteLogStream")
def delete_log_stream(api: LogsApi, params: dict[str, Any]) -> None:
    group, name = params["logGroupName"], params["logStreamName"]
    api.existing_group(group)
    if not api.store.delete_stream(group, name):
        raise ResourceNotFoundException("The specified log stream does not exist.")


@operation("PutRetentionPolicy")
def put_retention_policy(api: LogsApi, params: dict[str, Any]) -> None:
    days = params["retentionInDays"]
    if days not in RETENTION_DAYS:
        raise InvalidParameterException(
            f"1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy "
            f"constraint: Member must satisfy enum value set: [{', '.join(map(str, RETENTION_DAYS))}]"
        )
    if not api.store.set_retention(params["logGroupName"], days):
        raise ResourceNotFoundException("The specified log group does not exist.")


@operation("DeleteRetentionPolicy")
def delete_retention_policy(api: LogsApi, params: dict[str, Any]) -> None:
    if not api.store.set_retention(params["logGroupName"], None):
        raise ResourceNotFoundException("The specified log group does not exist.")


@operation("DescribeLogGroups")
def describe_log_groups(api: LogsApi, params: dict[str, Any]) -> dict[str, Any]:
    prefix = params.get("logGroupNamePrefix")
    pattern = params.get("logGroupNamePattern")
    if prefix and pattern:
        raise InvalidParameterException(
            "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters."
        )
    identifiers = params.get("logGroupIdentifiers")
    if identifiers and (prefix or pattern):
        raise InvalidParameterException(
            "logGroupIdentifiers cannot be used with logGroupNamePrefix or logGroupNamePattern."
        )
    names = [api.name_from_identifier(i) for i in identifiers] if identifiers else None
    limit = int(params.get("limit", 50))
    after = _decode_token(params["nextToken"], "groups") if params.get("nextToken") else None
    if after is not None and not isinstance(after, str):
        raise InvalidParameterException("The specified nextToken is invalid.")
    groups = api.store.groups(prefix, pattern, names, after, limit + 1)
    result: dict[str, Any] = {"logGroups": [api.group_shape(g) for g in groups[:limit]]}
    if len(groups) > limit:
        result["nextToken"] = _encode_token("groups", groups[limit - 1].name)
    return result


@operation("DescribeLogStreams")
def describe_log_streams(api: LogsApi, params: dict[str, Any]) -> dict[str, Any]:
    group = api.existing_group(api.group_name(params)).name
    prefix = params.get("logStreamNamePrefix")
    by_last_event = params.get("orderBy", "LogStreamName") == "LastEventTime"
    if by_last_event and prefix:
        raise InvalidParameterException("Cannot order by LastEventTime with a logStreamNamePrefix.")
    descending = bool(params.get("descending", False))
    limit = int(params.get("limit", 50))
    after: tuple[int, str] | None = None
    if params.get("nextToken"):
        raw = _decode_token(params["nextToken"], "streams")
        if not (
            isinstance(raw, list) and len(raw) == 2 and _stored(raw[0]) and isinstance(raw[1], str)
        ):
            raise InvalidParameterException("The specified nextToken is invalid.")
        after = (raw[0], raw[1])
    streams = api.store.streams(group, prefix, by_last_event, descending, after, limit + 1)
    result: dict[str, Any] = {"logStreams": [api.stream_shape(s) for s in streams[:limit]]}
    if len(streams) > limit:
        last = streams[limit - 1]
        key = (last.last_event or 0) if by_last_event else 0
        result["nextToken"] = _encode_token("streams", [key, last.name])
    return result


def _output_event(event: LogEvent) -> dict[str, Any]:
    shape = {
        "timestamp": event.timestamp,
        "message": event.message,
        "ingestionTime": event.ingestion,
    }
    if event.platform:
        shape[PLATFORM_MEMBER] = True
    return shape


def _filtered_event(event: LogEvent) -> dict[str, Any]:
    shape = {
        "logStreamName": event.log_stream,
        "timestamp": event.timestamp,
        "message": event.message,
        "ingestionTime": event.ingestion,
        "eventId": str(event.id),
    }
    if event.platform:
        shape[PLATFORM_MEMBER] = True
    return shape


@operation("GetLogEvents")
def get_log_events(api: LogsApi, params: dict[str, Any]) -> dict[str, Any]:
    """AWS's token semantics: a forward token reads on from the last event returned (and comes
    back unchanged when nothing new arrived); a backward token reads the page before."""
    group = api.group_name(params)
    stream = params["logStreamName"]
    api.existing_stream(group, stream)
    start, end = params.get("startTime"), params.get("endTime")
    limit = int(params.get("limit", 10_000))
    common: dict[str, Any] = {
        "streams": [stream],
        "start": start,
        "end": end,
        "limit": limit,
        "max_bytes": MAX_BATCH_BYTES,
    }
    token = params.get("nextToken")
    if token:
        direction, position = _parse_position_token(token)
    else:
        direction = "f" if params.get("startFromHead") else "b"
        position = None
    if direction == "f":
        events = api.store.events(group, after=position, **common)
    else:
        events = api.store.events(group, before=position, newest_first=True, **common)
    if events:
        forward = _position_token("f", events[-1].position)
        backward = _position_token("b", events[0].position)
    elif token and position is not None:
        # Nothing (more) in that direction: the same token comes back, and the other
        # direction turns around at the same place.
        ts, event_id = position
        if direction == "f":
            forward, backward = token, _position_token("b", (ts, event_id + 1))
        else:
            forward, backward = _position_token("f", (ts, max(event_id - 1, 0))), token
    else:
        forward, backward = _position_token("f", (0, 0)), _position_token("b", (0, 0))
    return {
        "events": [_output_event(e) for e in events],
        "nextForwardToken": forward,
        "nextBackwardToken": backward,
    }


@operation("FilterLogEvents")
def filter_log_events(api: LogsApi, params: dict[str, Any]) -> dict[str, Any]:
    group = api.existing_group(api.group_name(params)).name
    names = params.get("logStreamNames")
    prefix = params.get("logStreamNamePrefix")
    if names and prefix:
        raise InvalidParameterException(
            "logStreamNames and logStreamNamePrefix are mutually exclusive parameters."
        )
    try:
        pattern = compile_pattern(params.get("filterPattern"))
    except InvalidFilterPattern as exc:
        raise InvalidParameterException(str(exc)) from None
    start = params.get("startTime")
    end = params.get("endTime")
    after = (
        _event_key("events", _decode_token(params["nextToken"], "events"))
        if params.get("nextToken")
        else None
    )
    page = api.store.search(
        group,
        pattern,
        streams=names,
        stream_prefix=prefix,
        start=start,
        end=None if end is None or end + 1 not in _STORED else end + 1,  # endTime is inclusive here
        after=after,
        limit=int(params.get("limit", 10_000)),
        max_bytes=MAX_BATCH_BYTES,
    )
    events = [_filtered_event(e) for e in page.events]
    searched = names or list(dict.fromkeys(e.log_stream for e in page.events))
    result: dict[str, Any] = {
        "events": events,
        "searchedLogStreams": [
            {"logStreamName": s, "searchedCompletely": page.next is None} for s in searched
        ],
    }
    if page.next is not None:
        result["nextToken"] = _encode_token("events", list(page.next))
    return result


@operation("PutLogEvents")
def put_log_events(api: LogsApi, params: dict[str, Any]) -> dict[str, Any]:
    group, stream = params["logGroupName"], params["logStreamName"]
    info = api.existing_group(group)
    if api.store.stream(group, stream) is None:
        raise ResourceNotFoundException("The specified log stream does not exist.")
    events = params["logEvents"]
    total = 0
    for event in events:
        size = len(event["message"].encode()) + EVENT_OVERHEAD
        if size - EVENT_OVERHEAD > MAX_EVENT_BYTES:
            raise InvalidParameterException(
                f"Log event too large: {size - EVENT_OVERHEAD} bytes exceeds limit of {MAX_EVENT_BYTES}"
            )
        total += size
    if total > MAX_BATCH_BYTES:
        raise InvalidParameterException(
            f"Upload too large: {total} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )
    stamps = [int(e["timestamp"]) for e in events]
    if max(stamps) - min(stamps) > MAX_BATCH_SPAN_MS:
        raise InvalidParameterException(
            "The batch of log events in a single PutLogEvents request cannot span more than 24 hours."
        )
    now = int(time.time() * 1000)
    expired_before = now - info.retention_days * DAY_MS if info.retention_days else None
    accepted: list[tuple[int, str]] = []
    too_new: list[int] = []
    too_old: list[int] = []
    expired: list[int] = []
    for index, (ts, event) in enumerate(zip(stamps, events, strict=True)):
        if ts > now + TOO_NEW_MS:
            too_new.append(index)
        elif ts < now - TOO_OLD_MS:
            too_old.append(index)
        elif expired_before is not None and ts < expired_before:
            expired.append(index)
        else:
            accepted.append((ts, event["message"]))
    api.store.put(group, stream, accepted)
    result: dict[str, Any] = {"nextSequenceToken": f"{now:056d}"}
    rejected: dict[str, int] = {}
    if too_new:
        rejected["tooNewLogEventStartIndex"] = min(too_new)
    if too_old:
        rejected["tooOldLogEventEndIndex"] = max(too_old)
    if expired:
        rejected["expiredLogEventEndIndex"] = max(expired)
    if rejected:
        result["rejectedLogEventsInfo"] = rejected
    return result
