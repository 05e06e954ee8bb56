"""The CloudWatch metrics subset for the AWS/Lambda namespace: GetMetricStatistics, GetMetricData.

Wire protocols: what boto3 1.44, AWS CLI v1 and v2 actually send to `monitoring` — AWS JSON 1.0
(`POST /`, `X-Amz-Target: GraniteServiceVersion20100801.<Operation>`, JSON body with epoch-second
timestamps, `x-amzn-query-mode: true`). Answers are JSON 1.0; errors carry `__type` and, since
CloudWatch is "awsQueryCompatible", `x-amzn-query-error: <Code>;Sender`, from which botocore
takes the error code (InvalidParameterValue, MissingParameter, ...). Older SDKs (botocore before
the `protocols` trait, aws-sdk-go v1, Java v1) send the query protocol — a form-encoded POST with
`Action=<Operation>` — and get XML; both are decoded by the model into the same parameters.
Smithy RPCv2 CBOR (which botocore ranks after JSON) is not served.

Data comes from the one-minute series (observe/series.py): the last 24 hours, periods that are
multiples of 60 s, statistics SampleCount, Average, Sum, Minimum, Maximum; dimensions
FunctionName, Resource (`name` or `name:version`) and ExecutedVersion. ListMetrics lists the
metrics that have data in those 24 hours. Deviation: a Resource of `name:alias` has no data
(the series are kept per executed version, not per alias used to invoke).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ember.api import wire
from ember.api.service_model import ServiceModel, load
from ember.api.validation import drop_nulls, validate
from ember.errors import EmberError, ValidationError
from ember.observe.series import METRIC_UNITS, RETENTION_MINUTES, MinuteSeries
from ember.platform import Platform

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/x-amz-json-1.0"
BODY_LIMIT = 1024 * 1024
NAMESPACE = "AWS/Lambda"
MAX_DATAPOINTS = 1440
MAX_METRIC_DATA_POINTS = 100_800
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
TARGET_PREFIX = "GraniteServiceVersion20100801"
XML_NAMESPACE = "http://monitoring.amazonaws.com/doc/2010-08-01/"
FORM_TYPE = "application/x-www-form-urlencoded"


class CloudWatchError(EmberError):
    status = 400
    code = "InvalidParameterValue"


class InvalidParameterValue(CloudWatchError):
    error_type = "InvalidParameterValueException"


class InvalidParameterCombination(CloudWatchError):
    error_type = "InvalidParameterCombinationException"
    code = "InvalidParameterCombination"


class MissingParameter(CloudWatchError):
    error_type = "MissingRequiredParameterException"
    code = "MissingParameter"


class UnknownOperation(CloudWatchError):
    error_type = "UnknownOperationException"
    code = "InvalidAction"


class SerializationError(CloudWatchError):
    error_type = "SerializationException"
    code = "MalformedInput"


class InternalServiceFault(CloudWatchError):
    error_type = "InternalServiceFault"
    code = "InternalServiceError"
    status = 500


def error_response(error: EmberError) -> Response:
    if isinstance(error, CloudWatchError):
        error_type, code, status = error.error_type, error.code, error.status
    elif isinstance(error, ValidationError):
        error_type, code, status = "InvalidParameterValueException", "InvalidParameterValue", 400
    else:
        error_type, code, status = error.error_type, error.error_type, error.status
    fault = "Sender" if status < 500 else "Receiver"
    return Response(
        orjson.dumps({"__type": error_type, "message": error.message}),
        status_code=status,
        media_type=CONTENT_TYPE,
        headers={"x-amzn-query-error": f"{code};{fault}"},
    )


def xml_error_response(error: EmberError, request_id: str) -> Response:
    json_form = error_response(error)
    code, _, fault = json_form.headers["x-amzn-query-error"].partition(";")
    xml = (
        f'<ErrorResponse xmlns="{XML_NAMESPACE}"><Error><Type>{fault}</Type><Code>{code}</Code>'
        f"<Message>{escape(error.message)}</Message></Error><RequestId>{request_id}</RequestId>"
        "</ErrorResponse>"
    )
    return Response(xml.encode(), status_code=json_form.status_code, media_type="text/xml")


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def _present(flat: dict[str, str], key: str) -> bool:
    prefix = key + "."
    return key in flat or any(k.startswith(prefix) for k in flat)


def _from_query(model: ServiceModel, shape_name: str, flat: dict[str, str], key: str) -> Any:
    """Query-protocol parameters (`Dimensions.member.1.Name=...`) as the model's JSON shape."""
    shape = model.shapes[shape_name]
    kind = shape["type"]
    if kind == "structure":
        out: dict[str, Any] = {}
        for member, ref in shape.get("members", {}).items():
            child = f"{key}.{member}" if key else member
            if _present(flat, child):
                out[member] = _from_query(model, ref["shape"], flat, child)
        return out
    if kind == "list":
        items = []
        index = 1
        while _present(flat, f"{key}.member.{index}"):
            items.append(
                _from_query(model, shape["member"]["shape"], flat, f"{key}.member.{index}")
            )
            index += 1
        return items
    raw = flat.get(key, "")
    try:
        if kind in ("integer", "long"):
            return int(raw)
        if kind in ("double", "float"):
            return float(raw)
    except ValueError:
        raise InvalidParameterValue(f"The parameter {key} must be a number.") from None
    if kind == "boolean":
        return raw.lower() == "true"
    return raw  # strings, and timestamps (ISO 8601, read by _timestamp)


def _to_xml(model: ServiceModel, shape_name: str, value: Any) -> str:
    shape = model.shapes[shape_name]
    kind = shape["type"]
    if kind == "structure":
        parts = []
        for member, ref in shape.get("members", {}).items():
            if value.get(member) is not None:
                parts.append(f"<{member}>{_to_xml(model, ref['shape'], value[member])}</{member}>")
        return "".join(parts)
    if kind == "list":
        return "".join(
            f"<member>{_to_xml(model, shape['member']['shape'], v)}</member>" for v in value
        )
    if kind == "timestamp":
        return dt.datetime.fromtimestamp(float(value), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "boolean":
        return "true" if value else "false"
    return escape(str(value))


def _timestamp(value: Any, name: str) -> float:
    """JSON protocol timestamps are epoch seconds; ISO 8601 strings are accepted too."""
    if isinstance(value, bool):
        raise InvalidParameterValue(f"The parameter {name} must be a timestamp.")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidParameterValue(f"The parameter {name} must be a timestamp.") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    raise MissingParameter(f"The parameter {name} is required.")


def _selection(dimensions: list[dict[str, str]]) -> tuple[str | None, str | None] | None:
    """Which series a dimension set names: (function, version), or None for no series."""
    dims = {d.get("Name"): d.get("Value", "") for d in dimensions}
    if len(dims) != len(dimensions):
        raise InvalidParameterValue("The collection Dimensions must not contain duplicate names.")
    if not dims:
        return None, None  # account-wide
    function = dims.pop("FunctionName", None)
    if function is None:
        return None  # AWS/Lambda metrics always name the function
    if not dims:
        return function, None
    if set(dims) == {"ExecutedVersion"}:
        return function, dims["ExecutedVersion"]
    if set(dims) == {"Resource"}:
        name, _, qualifier = dims["Resource"].partition(":")
        if name != function:
            return None
        return function, qualifier or "$LATEST"
    return None


def _check_period(period: Any, name: str = "Period") -> int:
    if not isinstance(period, int) or isinstance(period, bool) or period < 1:
        raise InvalidParameterValue(f"The parameter {name} must be a positive integer.")
    if period % 60:
        raise InvalidParameterValue(
            f"The parameter {name} must be a multiple of 60 (Ember keeps one-minute series)."
        )
    return period


class CloudWatchApi:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.model: ServiceModel = load("cloudwatch")

    @property
    def series(self) -> MinuteSeries:
        return self.platform.metrics.series

    async def __call__(self, request: Request) -> Response:
        query = request.headers.get("content-type", "").startswith(FORM_TYPE)
        try:
            if query:
                return await self._handle_query(request)
            return await self._handle(request)
        except EmberError as error:
            if query:
                return xml_error_response(error, _request_id(request))
            return error_response(error)
        except Exception:
            log.exception("the CloudWatch API failed on %s", request.headers.get("x-amz-target"))
            fault = InternalServiceFault("The service cannot complete the request.")
            return (
                xml_error_response(fault, _request_id(request)) if query else error_response(fault)
            )

    def _operation(self, name: str) -> Any:
        return {
            "GetMetricStatistics": self.get_metric_statistics,
            "GetMetricData": self.get_metric_data,
            "ListMetrics": self.list_metrics,
        }.get(name)

    async def _handle_query(self, request: Request) -> Response:
        body = await wire.read_body(request, BODY_LIMIT, "CloudWatch")
        flat = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        name = flat.pop("Action", "")
        flat.pop("Version", None)
        handler = self._operation(name)
        if request.method != "POST" or handler is None:
            raise UnknownOperation(
                f"The action {name or '(none)'} is not valid for this web service."
            )
        shape = (self.model.operations[name].get("input") or {}).get("shape")
        params: dict[str, Any] = _from_query(self.model, shape, flat, "") if shape else {}
        if shape:
            validate(self.model, shape, params)
        result = handler(params)
        output = self.model.operations[name]["output"]["shape"]
        xml = (
            f'<{name}Response xmlns="{XML_NAMESPACE}"><{name}Result>'
            f"{_to_xml(self.model, output, result)}</{name}Result>"
            f"<ResponseMetadata><RequestId>{_request_id(request)}</RequestId></ResponseMetadata>"
            f"</{name}Response>"
        )
        return Response(xml.encode(), media_type="text/xml")

    async def _handle(self, request: Request) -> Response:
        target = request.headers.get("x-amz-target", "")
        prefix, _, name = target.partition(".")
        if request.method != "POST" or prefix != TARGET_PREFIX:
            raise UnknownOperation(
                "Ember serves CloudWatch over the AWS JSON 1.0 protocol (X-Amz-Target "
                f"{TARGET_PREFIX}.<Operation>) only."
            )
        handler = self._operation(name)
        if handler is None:
            raise UnknownOperation(f"The {name or '(no)'} operation is not supported by Ember.")
        body = await wire.read_body(request, BODY_LIMIT, name)
        try:
            params = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError:
            raise SerializationError("The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise SerializationError("The request body must be a JSON object.")
        shape = (self.model.operations[name].get("input") or {}).get("shape")
        if shape:
            params = drop_nulls(self.model, shape, params)
            validate(self.model, shape, params)
        return Response(orjson.dumps(handler(params)), media_type=CONTENT_TYPE)

    # -- operations --------------------------------------------------------------------------

    def list_metrics(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("NextToken"):
            raise InvalidParameterValue("The NextToken is not valid (Ember answers in one page).")
        if params.get("Namespace") not in (None, NAMESPACE):
            return {"Metrics": []}
        names = [params["MetricName"]] if params.get("MetricName") else list(METRIC_UNITS)
        recent = params.get("RecentlyActive") == "PT3H"
        since_minute = int(time.time() // 60) - (180 if recent else RETENTION_MINUTES)
        dimension_sets: list[list[dict[str, str]]] = []
        versions = sorted(self.series.versions(since_minute))
        if versions:
            dimension_sets.append([])
        for function in sorted({fn for fn, _ in versions}):
            dimension_sets.append([{"Name": "FunctionName", "Value": function}])
        for function, version in versions:
            resource = function if version == "$LATEST" else f"{function}:{version}"
            dimension_sets.append(
                [
                    {"Name": "FunctionName", "Value": function},
                    {"Name": "Resource", "Value": resource},
                ]
            )
            if version != "$LATEST":
                dimension_sets.append(
                    [
                        {"Name": "FunctionName", "Value": function},
                        {"Name": "ExecutedVersion", "Value": version},
                    ]
                )
        filters: list[dict[str, str]] = params.get("Dimensions") or []

        def matches(dims: list[dict[str, str]]) -> bool:
            have = {d["Name"]: d["Value"] for d in dims}
            return all(
                f["Name"] in have and f.get("Value", have[f["Name"]]) == have[f["Name"]]
                for f in filters
            )

        metrics = [
            {"Namespace": NAMESPACE, "MetricName": name, "Dimensions": dims}
            for dims in dimension_sets
            if matches(dims)
            for name in names
            if name in METRIC_UNITS
        ]
        return {"Metrics": metrics}

    def get_metric_statistics(self, params: dict[str, Any]) -> dict[str, Any]:
        start = _timestamp(params.get("StartTime"), "StartTime")
        end = _timestamp(params.get("EndTime"), "EndTime")
        period = _check_period(params.get("Period"))
        statistics: list[str] = params.get("Statistics") or []
        if params.get("ExtendedStatistics"):
            raise InvalidParameterValue("Ember does not keep percentiles: use Statistics.")
        if not statistics:
            raise InvalidParameterCombination(
                "Must specify either Statistics or ExtendedStatistics."
            )
        if end <= start:
            raise InvalidParameterValue(
                "The parameter StartTime must be less than the parameter EndTime."
            )
        start = math.floor(start / 60) * 60
        wanted = math.ceil((end - start) / period)
        if wanted > MAX_DATAPOINTS:
            raise InvalidParameterCombination(
                f"You have requested up to {wanted} datapoints, which exceeds the limit of "
                f"{MAX_DATAPOINTS}. You may reduce the datapoints requested by increasing Period, "
                "or decreasing the time range."
            )
        metric = params["MetricName"]
        unit = METRIC_UNITS.get(metric)
        datapoints: list[dict[str, Any]] = []
        selection = _selection(params.get("Dimensions") or [])
        if (
            params["Namespace"] == NAMESPACE
            and unit is not None
            and selection is not None
            and params.get("Unit") in (None, unit)
        ):
            function, version = selection
            for point in self.series.datapoints(metric, function, version, start, end, period):
                item: dict[str, Any] = {"Timestamp": point.timestamp, "Unit": unit}
                for statistic in statistics:
                    item[statistic] = point.statistic(statistic)
                datapoints.append(item)
        return {"Label": metric, "Datapoints": datapoints}

    def get_metric_data(self, params: dict[str, Any]) -> dict[str, Any]:
        start = _timestamp(params.get("StartTime"), "StartTime")
        end = _timestamp(params.get("EndTime"), "EndTime")
        if end <= start:
            raise InvalidParameterValue(
                "The parameter StartTime must be less than the parameter EndTime."
            )
        start = math.floor(start / 60) * 60
        descending = params.get("ScanBy", "TimestampDescending") == "TimestampDescending"
        queries: list[dict[str, Any]] = params["MetricDataQueries"]
        ids = [q["Id"] for q in queries]
        if len(set(ids)) != len(ids):
            raise InvalidParameterValue(
                "The values for parameter Id in MetricDataQueries are not unique."
            )
        results = []
        for query in queries:
            stat = query.get("MetricStat")
            if query.get("Expression") is not None or stat is None:
                raise InvalidParameterValue(
                    f"Query {query['Id']}: Ember answers MetricStat queries only (no Expression)."
                )
            if stat["Stat"] not in STATISTICS:
                raise InvalidParameterValue(
                    f"Query {query['Id']}: the statistic {stat['Stat']} is not supported "
                    f"(use one of {', '.join(STATISTICS)})."
                )
            period = _check_period(stat["Period"], "MetricStat.Period")
            wanted = math.ceil((end - start) / period)
            if wanted > MAX_METRIC_DATA_POINTS:
                raise InvalidParameterCombination(
                    f"Query {query['Id']} asks for {wanted} datapoints; at most "
                    f"{MAX_METRIC_DATA_POINTS} are returned per call."
                )
            metric = stat["Metric"]
            name = metric.get("MetricName", "")
            unit = METRIC_UNITS.get(name)
            selection = _selection(metric.get("Dimensions") or [])
            points = []
            if (
                metric.get("Namespace") == NAMESPACE
                and unit is not None
                and selection is not None
                and stat.get("Unit") in (None, unit)
            ):
                points = self.series.datapoints(
                    name, selection[0], selection[1], start, end, period
                )
            if descending:
                points.reverse()
            if query.get("ReturnData", True) is False:
                continue
            results.append(
                {
                    "Id": query["Id"],
                    "Label": query.get("Label") or name,
                    "Timestamps": [p.timestamp for p in points],
                    "Values": [p.statistic(stat["Stat"]) for p in points],
                    "StatusCode": "Complete",
                }
            )
        return {"MetricDataResults": results, "Messages": []}
