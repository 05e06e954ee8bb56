"""Tags on functions: stored apart from the function's records, so they survive every update
and never ride on a published version's snapshot."""

from __future__ import annotations

from ember.errors import InvalidParameterValue, ResourceNotFound
from ember.functions.model import LATEST
from ember.functions.service import FunctionService
from ember.store.base import Store

MAX_TAGS = 50
MAX_KEY = 128
MAX_VALUE = 256
RESERVED_PREFIX = "aws:"


class TagService:
    def __init__(self, functions: FunctionService, store: Store) -> None:
        self.functions = functions
        self.store = store

    def function_of(self, resource_arn: str) -> str:
        """The function a taggable ARN names (tags belong to the function, not to a version)."""
        if ":function:" not in resource_arn:
            raise InvalidParameterValue(
                f"Ember supports tags on functions only; {resource_arn} is not a function ARN."
            )
        ref = self.functions.parse_ref(resource_arn)
        if ref.qualifier is not None:
            raise InvalidParameterValue(
                "Tags apply to the function: use the unqualified function ARN "
                f"({self.functions.arn(ref.name)}), not a version or alias ARN."
            )
        if self.functions.store.get_function(ref.name, LATEST) is None:
            raise ResourceNotFound(f"Function not found: {self.functions.arn(ref.name)}")
        return ref.name

    @staticmethod
    def checked(tags: dict[str, str], existing: dict[str, str] | None = None) -> dict[str, str]:
        """Refuse tags AWS refuses: reserved `aws:` keys, keys over 128 or values over 256
        characters, more than 50 tags on the function once merged."""
        for key, value in tags.items():
            if key.lower().startswith(RESERVED_PREFIX):
                raise InvalidParameterValue(
                    f"Tag key '{key}' is reserved: keys starting with 'aws:' are for AWS use."
                )
            if not 1 <= len(key) <= MAX_KEY:
                raise InvalidParameterValue(
                    f"Tag keys must be 1-{MAX_KEY} characters long: '{key}'"
                )
            if len(value) > MAX_VALUE:
                raise InvalidParameterValue(
                    f"Tag values must be at most {MAX_VALUE} characters long (key '{key}')"
                )
        merged = {**(existing or {}), **tags}
        if len(merged) > MAX_TAGS:
            raise InvalidParameterValue(
                f"A function can have at most {MAX_TAGS} tags; this request would leave it with {len(merged)}."
            )
        return dict(tags)

    def get(self, function: str) -> dict[str, str]:
        return self.store.get_tags(function)

    def put(self, function: str, tags: dict[str, str]) -> None:
        if tags:
            self.store.tag(function, self.checked(tags, self.store.get_tags(function)))

    def tag(self, resource_arn: str, tags: dict[str, str]) -> None:
        self.put(self.function_of(resource_arn), tags)

    def untag(self, resource_arn: str, keys: list[str]) -> None:
        function = self.function_of(resource_arn)
        for key in keys:
            if key.lower().startswith(RESERVED_PREFIX):
                raise InvalidParameterValue(f"Tag key '{key}' is reserved and cannot be removed.")
        self.store.untag(function, keys)

    def list(self, resource_arn: str) -> dict[str, str]:
        return self.store.get_tags(self.function_of(resource_arn))
