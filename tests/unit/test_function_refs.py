"""How a function is named: by name, name:qualifier, partial ARN or full ARN."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ember.errors import ResourceNotFound, ValidationError
from ember.functions.packages import PackageStore
from ember.functions.service import FunctionRef, FunctionService, timestamp
from ember.settings import Settings
from ember.store.sqlite import SqliteStore


def service_for(tmp_path: Path, **settings: object) -> Iterator[FunctionService]:
    config = Settings(data_dir=tmp_path / "data", **settings)
    config.data_dir.mkdir(parents=True)
    store = SqliteStore(config.db_path)
    try:
        yield FunctionService(config, store, PackageStore(config.code_dir, config.limits), {})
    finally:
        store.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[FunctionService]:
    yield from service_for(tmp_path)


@pytest.mark.parametrize(
    "identifier, name, qualifier",
    [
        ("my-function", "my-function", None),
        ("my_function-2", "my_function-2", None),
        ("my-function:$LATEST", "my-function", "$LATEST"),
        ("my-function:7", "my-function", "7"),
        ("my-function:prod", "my-function", "prod"),
        ("000000000000:function:my-function", "my-function", None),
        ("000000000000:function:my-function:$LATEST", "my-function", "$LATEST"),
        ("000000000000:function:my-function:live", "my-function", "live"),
        ("arn:aws:lambda:us-east-1:000000000000:function:my-function", "my-function", None),
        (
            "arn:aws:lambda:us-east-1:000000000000:function:my-function:$LATEST",
            "my-function",
            "$LATEST",
        ),
        ("arn:aws:lambda:us-east-1:000000000000:function:my-function:3", "my-function", "3"),
        ("f" * 64, "f" * 64, None),
    ],
)
def test_accepted_forms(
    service: FunctionService, identifier: str, name: str, qualifier: str | None
) -> None:
    assert service.parse_ref(identifier) == FunctionRef(name, qualifier)


@pytest.mark.parametrize(
    "identifier",
    [
        "arn:aws:lambda:eu-west-1:000000000000:function:my-function",  # another region
        "arn:aws:lambda:us-east-1:123456789012:function:my-function",  # another account
        "123456789012:function:my-function",
    ],
)
def test_other_regions_and_accounts_are_not_found(
    service: FunctionService, identifier: str
) -> None:
    with pytest.raises(ResourceNotFound):
        service.parse_ref(identifier)


@pytest.mark.parametrize(
    "identifier",
    ["bad name!", "", "f" * 65, "a/b", "arn:aws:lambda:us-east-1:000000000000:function:bad name"],
)
def test_malformed_names_are_validation_errors(service: FunctionService, identifier: str) -> None:
    with pytest.raises(ValidationError) as caught:
        service.parse_ref(identifier)
    assert caught.value.status == 400
    assert "at 'functionName' failed to satisfy constraint" in caught.value.message


def test_configured_region_and_account(tmp_path: Path) -> None:
    for service in service_for(tmp_path, region="eu-west-1", account_id="123456789012"):
        assert service.arn("f") == "arn:aws:lambda:eu-west-1:123456789012:function:f"
        assert service.arn("f", "3") == "arn:aws:lambda:eu-west-1:123456789012:function:f:3"
        assert service.parse_ref("arn:aws:lambda:eu-west-1:123456789012:function:f") == FunctionRef(
            "f", None
        )
        assert service.parse_ref("123456789012:function:f:live") == FunctionRef("f", "live")
        with pytest.raises(ResourceNotFound):
            service.parse_ref("arn:aws:lambda:us-east-1:000000000000:function:f")


def test_arn_round_trips(service: FunctionService) -> None:
    assert (
        service.arn("my-function") == "arn:aws:lambda:us-east-1:000000000000:function:my-function"
    )
    for qualifier in (None, "$LATEST", "12", "prod"):
        assert service.parse_ref(service.arn("my-function", qualifier)) == FunctionRef(
            "my-function", qualifier
        )


def test_get_by_any_form_of_a_missing_function_is_404(service: FunctionService) -> None:
    for identifier in ("ghost", "000000000000:function:ghost", service.arn("ghost")):
        with pytest.raises(ResourceNotFound) as caught:
            service.get(identifier)
        assert (
            caught.value.message
            == "Function not found: arn:aws:lambda:us-east-1:000000000000:function:ghost"
        )


def test_last_modified_format() -> None:
    assert timestamp(0) == "1970-01-01T00:00:00.000+0000"
    assert timestamp(1709296496.789) == "2024-03-01T12:34:56.789+0000"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", timestamp(1_800_000_000.5))


@pytest.mark.parametrize(
    "identifier",
    [
        "arn:aws-cn:lambda:us-east-1:000000000000:function:my-function",  # another partition
        "arn:aws-us-gov:lambda:us-east-1:000000000000:function:my-function:live",
        "arn::lambda:us-east-1:000000000000:function:my-function",  # the model allows it empty
        "arn:aws:lambda:us-east-1:000000000000:function:my-function:live:extra",
        "arn:aws:lambda:us-east-1:000000000000:layer:my-function:1",
        "function:my-function:live",  # no form Lambda documents
        "us-east-1:000000000000:function:my-function",
    ],
)
def test_arns_that_name_nothing_here_are_not_found(
    service: FunctionService, identifier: str
) -> None:
    # Never read as a local function (`arn` with qualifier `aws-cn:lambda:...`, say).
    with pytest.raises(ResourceNotFound):
        service.parse_ref(identifier)


def test_another_region_is_answered_in_aws_words(service: FunctionService) -> None:
    with pytest.raises(ResourceNotFound) as caught:
        service.parse_ref("arn:aws:lambda:eu-west-1:000000000000:function:my-function")
    assert (
        caught.value.message
        == "Functions from 'eu-west-1' are not reachable in this region ('us-east-1')"
    )
