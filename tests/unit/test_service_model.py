"""Routing driven by botocore's Lambda model: every operation is found by its own method and path."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ember.api.service_model import ServiceModel, load


@pytest.fixture(scope="module")
def model() -> ServiceModel:
    return load("lambda")


def concrete(uri: str) -> tuple[str, dict[str, list[str]], dict[str, str]]:
    """A request for a model URI: labels filled with sample values, literal query kept."""
    path, _, query = uri.partition("?")
    expected: dict[str, str] = {}

    def fill(found: re.Match[str]) -> str:
        label = found.group(1)
        greedy = label.endswith("+")
        value = f"sample/{label.rstrip('+').lower()}" if greedy else f"sample-{label.lower()}"
        expected[label.rstrip("+")] = value
        return value

    filled = re.sub(r"\{([^}]+)\}", fill, path)
    literal = {k: [v] for k, _, v in (part.partition("=") for part in query.split("&") if part)}
    return filled, literal, expected


def operations() -> list[tuple[str, dict[str, Any]]]:
    return sorted(load("lambda").operations.items())


@pytest.mark.parametrize("name, operation", operations(), ids=[name for name, _ in operations()])
def test_every_operation_is_found_by_its_own_method_and_path(
    model: ServiceModel, name: str, operation: dict[str, Any]
) -> None:
    path, query, expected = concrete(operation["http"]["requestUri"])
    found = model.find_route(operation["http"]["method"], path, query)
    assert found is not None, f"{name}: nothing matches {operation['http']['method']} {path}"
    route, params = found
    assert route.operation == name
    assert params == expected
    assert route.status == operation["http"].get("responseCode", 200)
    assert route.input_shape == (operation.get("input") or {}).get("shape")


def test_model_has_the_functions_api(model: ServiceModel) -> None:
    for name in (
        "CreateFunction",
        "GetFunction",
        "GetFunctionConfiguration",
        "UpdateFunctionCode",
        "UpdateFunctionConfiguration",
        "DeleteFunction",
        "ListFunctions",
        "GetAccountSettings",
    ):
        assert name in model.operations


@pytest.mark.parametrize(
    "method, path, operation, params",
    [
        ("POST", "/2015-03-31/functions", "CreateFunction", {}),
        ("GET", "/2015-03-31/functions", "ListFunctions", {}),
        ("GET", "/2015-03-31/functions/", "ListFunctions", {}),
        ("GET", "/2015-03-31/functions/my-fn", "GetFunction", {"FunctionName": "my-fn"}),
        (
            "GET",
            "/2015-03-31/functions/my-fn/configuration",
            "GetFunctionConfiguration",
            {"FunctionName": "my-fn"},
        ),
        (
            "PUT",
            "/2015-03-31/functions/my-fn/configuration",
            "UpdateFunctionConfiguration",
            {"FunctionName": "my-fn"},
        ),
        (
            "PUT",
            "/2015-03-31/functions/my-fn/code",
            "UpdateFunctionCode",
            {"FunctionName": "my-fn"},
        ),
        ("DELETE", "/2015-03-31/functions/my-fn", "DeleteFunction", {"FunctionName": "my-fn"}),
        ("GET", "/2016-08-19/account-settings", "GetAccountSettings", {}),
        ("GET", "/2016-08-19/account-settings/", "GetAccountSettings", {}),
        (
            "GET",
            "/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:my-fn/configuration",
            "GetFunctionConfiguration",
            {"FunctionName": "arn:aws:lambda:us-east-1:000000000000:function:my-fn"},
        ),
        ("GET", "/2015-03-31/functions/my%2Dfn", "GetFunction", {"FunctionName": "my-fn"}),
        ("POST", "/2015-03-31/functions/my-fn/invocations", "Invoke", {"FunctionName": "my-fn"}),
    ],
)
def test_functions_api_routes(
    model: ServiceModel, method: str, path: str, operation: str, params: dict[str, str]
) -> None:
    found = model.find_route(method, path, {})
    assert found is not None
    assert found[0].operation == operation
    assert found[1] == params


def test_create_function_answers_201_and_delete_204_from_the_model(model: ServiceModel) -> None:
    create = model.find_route("POST", "/2015-03-31/functions", {})
    assert create is not None and create[0].status == 201
    delete = model.find_route("DELETE", "/2015-03-31/functions/f", {})
    assert delete is not None and delete[0].output_shape is not None


def test_get_layer_version_by_arn_is_told_from_list_layers_by_find(model: ServiceModel) -> None:
    arn = "arn:aws:lambda:us-east-1:000000000000:layer:my-layer:1"
    by_arn = model.find_route("GET", "/2018-10-31/layers", {"find": ["LayerVersion"], "Arn": [arn]})
    assert by_arn is not None and by_arn[0].operation == "GetLayerVersionByArn"
    assert by_arn[0].literal_query == (("find", "LayerVersion"),)
    listed = model.find_route("GET", "/2018-10-31/layers", {})
    assert listed is not None and listed[0].operation == "ListLayers"
    other = model.find_route("GET", "/2018-10-31/layers", {"find": ["Something"]})
    assert other is not None and other[0].operation == "ListLayers"
    paged = model.find_route("GET", "/2018-10-31/layers", {"Marker": ["m"], "MaxItems": ["2"]})
    assert paged is not None and paged[0].operation == "ListLayers"


def test_unknown_paths_and_methods(model: ServiceModel) -> None:
    assert model.find_route("GET", "/nope", {}) is None
    assert not model.path_exists("/nope")
    assert model.find_route("PATCH", "/2015-03-31/functions/f", {}) is None
    assert model.path_exists("/2015-03-31/functions/f")  # the path exists, the method does not
    assert model.find_route("GET", "/2015-03-31/functions/a/b/c/d", {}) is None


def test_error_statuses_come_from_the_model(model: ServiceModel) -> None:
    assert model.error_status("ResourceNotFoundException") == 404
    assert model.error_status("ResourceConflictException") == 409
    assert model.error_status("InvalidParameterValueException") == 400
    assert model.error_status("InvalidRequestContentException") == 400
    assert model.error_status("PreconditionFailedException") == 412
    assert model.error_status("RequestTooLargeException") == 413
    assert model.error_status("TooManyRequestsException") == 429
    assert model.error_status("ServiceException") == 500
    assert model.error_status("NoSuchThing") is None
    assert model.error_status("FunctionConfiguration") is None  # a shape, but not an exception


def test_load_is_cached() -> None:
    assert load("lambda") is load("lambda")
