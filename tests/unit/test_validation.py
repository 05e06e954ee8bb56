"""Request validation against botocore's real Lambda model, in AWS's words."""

from __future__ import annotations

from typing import Any

import pytest

from ember.api.service_model import ServiceModel, load
from ember.api.validation import drop_nulls, validate
from ember.errors import ValidationError

ROLE = "arn:aws:iam::000000000000:role/lambda-role"
FN_ARN = "arn:aws:lambda:us-east-1:000000000000:function:my-function"


@pytest.fixture(scope="module")
def model() -> ServiceModel:
    return load("lambda")


def create_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "FunctionName": "my-function",
        "Runtime": "python3.12",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": b"PK\x05\x06"},
    }
    params.update(overrides)
    return params


def problems(model: ServiceModel, shape: str, params: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        validate(model, shape, params)
    assert caught.value.error_type == "ValidationException"
    assert caught.value.status == 400
    return caught.value.message


def test_valid_create_passes(model: ServiceModel) -> None:
    validate(
        model,
        "CreateFunctionRequest",
        create_params(
            Timeout=900,
            MemorySize=10240,
            Description="",
            Publish=False,
            Environment={"Variables": {"STAGE": "prod", "A1_B": ""}},
            EphemeralStorage={"Size": 512},
            Architectures=["x86_64"],
            Tags={"team": "ember", "café": "naïve value: 1+1=2"},
            TracingConfig={"Mode": "Active"},
            LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "INFO"},
        ),
    )


def test_none_members_are_treated_as_absent(model: ServiceModel) -> None:
    validate(model, "CreateFunctionRequest", create_params(Description=None, Timeout=None))


def test_unknown_members_are_ignored(model: ServiceModel) -> None:
    validate(model, "CreateFunctionRequest", create_params(NotAMember=object()))


def test_missing_required_members(model: ServiceModel) -> None:
    message = problems(model, "CreateFunctionRequest", {"FunctionName": "f", "Handler": "a.b"})
    assert message.startswith("2 validation errors detected: ")
    assert "Value null at 'role' failed to satisfy constraint: Member must not be null" in message
    assert "Value null at 'code' failed to satisfy constraint: Member must not be null" in message


def test_minimum_in_aws_words(model: ServiceModel) -> None:
    message = problems(model, "CreateFunctionRequest", create_params(MemorySize=127))
    assert message == (
        "1 validation error detected: Value '127' at 'memorySize' failed to satisfy constraint: "
        "Member must have value greater than or equal to 128"
    )


def test_maximum_comes_from_the_model(model: ServiceModel) -> None:
    # The model allows up to 32768 MB / 5400 s (Managed Instances); Ember's own, lower limits are
    # enforced by the functions service, not here.
    validate(model, "CreateFunctionRequest", create_params(MemorySize=32768, Timeout=5400))
    message = problems(model, "CreateFunctionRequest", create_params(MemorySize=32769))
    assert "Member must have value less than or equal to 32768" in message


def test_nested_members_are_named_by_path(model: ServiceModel) -> None:
    message = problems(
        model, "CreateFunctionRequest", create_params(EphemeralStorage={"Size": 511})
    )
    assert "Value '511' at 'ephemeralStorage.size' failed to satisfy constraint" in message


def test_nested_required_member(model: ServiceModel) -> None:
    message = problems(model, "CreateFunctionRequest", create_params(EphemeralStorage={}))
    assert "Value null at 'ephemeralStorage.size'" in message


def test_every_violation_is_reported(model: ServiceModel) -> None:
    message = problems(
        model,
        "CreateFunctionRequest",
        create_params(MemorySize=1, Timeout=0, Handler="a b", Description="x" * 257),
    )
    assert message.startswith("4 validation errors detected: ")
    for member in ("memorySize", "timeout", "handler", "description"):
        assert f"at '{member}'" in message
    assert message.count("; ") == 3


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (
            {"FunctionName": "bad name!"},
            "at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern",
        ),
        (
            {"FunctionName": ""},
            "at 'functionName' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ),
        ({"FunctionName": "f" * 141}, "Member must have length less than or equal to 140"),
        (
            {"Handler": "a b"},
            "Value 'a b' at 'handler' failed to satisfy constraint: Member must satisfy regular expression pattern: [^\\s]+",
        ),
        (
            {"Handler": "h" * 129},
            "at 'handler' failed to satisfy constraint: Member must have length less than or equal to 128",
        ),
        (
            {"Role": "not-a-role"},
            "Value 'not-a-role' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern",
        ),
        (
            {"Description": "d" * 257},
            "at 'description' failed to satisfy constraint: Member must have length less than or equal to 256",
        ),
        (
            {"Runtime": "cobol85"},
            "Value 'cobol85' at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [",
        ),
        (
            {"PackageType": "Tarball"},
            "at 'packageType' failed to satisfy constraint: Member must satisfy enum value set: [Zip, Image]",
        ),
        (
            {"Architectures": ["x86_64", "arm64"]},
            "at 'architectures' failed to satisfy constraint: Member must have length less than or equal to 1",
        ),
        (
            {"Architectures": []},
            "at 'architectures' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ),
        (
            {"Architectures": ["sparc"]},
            "Value 'sparc' at 'architectures' failed to satisfy constraint: Member must satisfy enum value set",
        ),
        ({"TracingConfig": {"Mode": "Sometimes"}}, "at 'tracingConfig.mode'"),
    ],
)
def test_constraints(model: ServiceModel, overrides: dict[str, Any], fragment: str) -> None:
    assert fragment in problems(model, "CreateFunctionRequest", create_params(**overrides))


def test_a_runtime_in_the_enum_passes_validation(model: ServiceModel) -> None:
    # Whether this host can run it is the functions service's question, not the model's.
    validate(model, "CreateFunctionRequest", create_params(Runtime="nodejs20.x"))


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"MemorySize": "256"}, "Member must be a number"),
        ({"MemorySize": 256.5}, "Member must be a number"),
        ({"Timeout": True}, "Member must be a number"),
        ({"Publish": "yes"}, "Member must be a boolean"),
        ({"FunctionName": 42}, "Member must be a string"),
        ({"Code": "zip"}, "Member must be an object"),
        ({"Code": {"ZipFile": "not bytes"}}, "Member must be binary data"),
        ({"Architectures": "x86_64"}, "Member must be a list"),
        ({"Environment": {"Variables": ["A"]}}, "Member must be a map"),
    ],
)
def test_types(model: ServiceModel, overrides: dict[str, Any], fragment: str) -> None:
    assert fragment in problems(model, "CreateFunctionRequest", create_params(**overrides))


def test_map_keys_are_checked_and_sensitive_values_are_not_echoed(model: ServiceModel) -> None:
    message = problems(
        model,
        "CreateFunctionRequest",
        create_params(Environment={"Variables": {"1SECRET": "hunter2"}}),
    )
    assert message == (
        "1 validation error detected: Value at 'environment.variables' failed to satisfy constraint: "
        "Map keys must satisfy constraint: [Member must satisfy regular expression pattern: "
        "[a-zA-Z]([a-zA-Z0-9_])+]"
    )
    assert "hunter2" not in message and "1SECRET" not in message


def test_tag_patterns_with_unicode_properties(model: ServiceModel) -> None:
    # TagKey/TagValue use Java's \\p{L}\\p{Z}\\p{N}: letters, separators and numbers of any script.
    validate(
        model,
        "TagResourceRequest",
        {"Resource": FN_ARN, "Tags": {"Größe": "名前 ٣ ok", "a_b.c:d/e=f+g-h@i": ""}},
    )
    message = problems(model, "TagResourceRequest", {"Resource": FN_ARN, "Tags": {"bad#key": "v"}})
    assert "at 'tags' failed to satisfy constraint: Map keys must satisfy constraint" in message
    message = problems(
        model, "TagResourceRequest", {"Resource": FN_ARN, "Tags": {"k": "tab\there"}}
    )
    assert (
        "Member must satisfy regular expression pattern: ([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)"
        in message
    )


def test_other_operations(model: ServiceModel) -> None:
    validate(model, "ListFunctionsRequest", {"MaxItems": 50, "Marker": "abc"})
    assert "at 'maxItems'" in problems(model, "ListFunctionsRequest", {"MaxItems": 0})
    validate(
        model, "UpdateFunctionCodeRequest", {"FunctionName": "f", "ZipFile": b"z", "DryRun": True}
    )
    assert "at 'functionName'" in problems(model, "GetFunctionRequest", {"FunctionName": "a b"})
    assert "at 'qualifier'" in problems(
        model, "GetFunctionRequest", {"FunctionName": "f", "Qualifier": "no spaces"}
    )


# -- a value must fit its shape's type; nulls -----------------------------------------------


@pytest.mark.parametrize(
    "shape, params, fragment",
    [
        # `integer` is 32 bits, `long` 64 (SQLite's INTEGER): past them fails like a max/min trait.
        (
            "PutFunctionConcurrencyRequest",
            {"FunctionName": "f", "ReservedConcurrentExecutions": 2**31},
            "Value '2147483648' at 'reservedConcurrentExecutions' failed to satisfy constraint: "
            "Member must have value less than or equal to 2147483647",
        ),
        (
            "GetLayerVersionRequest",
            {"LayerName": "l", "VersionNumber": 2**63},
            "Value '9223372036854775808' at 'versionNumber' failed to satisfy constraint: "
            "Member must have value less than or equal to 9223372036854775807",
        ),
        (
            "GetLayerVersionRequest",
            {"LayerName": "l", "VersionNumber": -(2**63) - 1},
            "Member must have value greater than or equal to -9223372036854775808",
        ),
        # JSON parsers hand integers past 64 bits over as floats: still out of range.
        (
            "GetLayerVersionRequest",
            {"LayerName": "l", "VersionNumber": 1e20},
            "at 'versionNumber' failed to satisfy constraint: Member must have value less than or equal to",
        ),
        # A model max below the type's wins.
        (
            "ListFunctionsRequest",
            {"MaxItems": 2**63},
            "Member must have value less than or equal to 10000",
        ),
    ],
)
def test_integers_must_fit_their_type(
    model: ServiceModel, shape: str, params: dict[str, Any], fragment: str
) -> None:
    assert fragment in problems(model, shape, params)


def test_the_largest_values_of_each_type_pass(model: ServiceModel) -> None:
    validate(model, "GetLayerVersionRequest", {"LayerName": "l", "VersionNumber": 2**63 - 1})
    validate(
        model,
        "PutFunctionConcurrencyRequest",
        {"FunctionName": "f", "ReservedConcurrentExecutions": 2**31 - 1},
    )


def test_doubles_must_be_finite(model: ServiceModel) -> None:
    weights = {"AdditionalVersionWeights": {"2": float("nan")}}
    message = problems(
        model,
        "CreateAliasRequest",
        {"FunctionName": "f", "Name": "a", "FunctionVersion": "1", "RoutingConfig": weights},
    )
    assert "Member must be a number" in message


def test_nulls_in_lists_and_maps_are_violations(model: ServiceModel) -> None:
    message = problems(model, "TagResourceRequest", {"Resource": FN_ARN, "Tags": {"k": None}})
    assert (
        "Value null at 'tags' failed to satisfy constraint: Map value must not be null" in message
    )
    message = problems(model, "UntagResourceRequest", {"Resource": FN_ARN, "TagKeys": ["k", None]})
    assert (
        "Value null at 'tagKeys' failed to satisfy constraint: Member must not be null" in message
    )


def test_drop_nulls_reads_null_members_as_absent_at_every_depth(model: ServiceModel) -> None:
    params = {
        "FunctionName": "f",
        "Description": None,
        "Environment": {"Variables": None},
        "Layers": [None],
        "Tags": {"k": None},
    }
    assert drop_nulls(model, "CreateFunctionRequest", params) == {
        "FunctionName": "f",
        "Environment": {},
        "Layers": [None],
        "Tags": {"k": None},
    }


def test_patterns_are_ascii_as_in_java(model: ServiceModel) -> None:
    # \d in the model's patterns is Java's: ASCII digits only (Python's takes Arabic-Indic ones).
    arn = "arn:aws:lambda:us-east-1:" + "\u0660" * 12 + ":function:f"
    assert "at 'functionName'" in problems(model, "GetFunctionRequest", {"FunctionName": arn})
