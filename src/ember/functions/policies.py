"""Resource-based policies: AddPermission / RemovePermission / GetPolicy, and a small evaluator.

Each function has one policy per qualifier (the unqualified function, a version or an alias),
kept as the list of statements AWS would show, in AWS's form: `Sid`, `Effect`, `Principal`,
`Action`, `Resource`, `Condition`. The evaluator answers "does this policy allow principal P to
do action A (in this context) on this function or qualifier?" — function URLs ask it now; every
caller will once requests are authenticated.
"""

from __future__ import annotations

import fnmatch
import re
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from ember.errors import (
    InvalidParameterValue,
    PolicyLengthExceeded,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from ember.functions.model import LATEST
from ember.functions.service import FunctionService
from ember.store.base import Store

POLICY_VERSION = "2012-10-17"
MAX_POLICY_BYTES = 20 * 1024

_ACCOUNT = re.compile(r"\d{12}")
_SERVICE = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)+")


@dataclass(frozen=True)
class Caller:
    """Who is asking. `anonymous` (an unauthenticated function URL request), `aws` (an account id
    or an IAM ARN in `identity`) or `service` (a service principal such as s3.amazonaws.com)."""

    kind: str
    identity: str = ""

    @property
    def account(self) -> str | None:
        if self.kind != "aws":
            return None
        if _ACCOUNT.fullmatch(self.identity):
            return self.identity
        parts = self.identity.split(":")
        return parts[4] if len(parts) > 5 and parts[0] == "arn" else None


ANONYMOUS = Caller("anonymous")


def principal_document(principal: str, account_id: str) -> Any:
    """AddPermission's Principal as AWS writes it in the policy."""
    if principal == "*":
        return "*"
    if _ACCOUNT.fullmatch(principal):
        return {"AWS": f"arn:aws:iam::{principal}:root"}
    if principal.startswith("arn:"):
        return {"AWS": principal}
    if _SERVICE.fullmatch(principal):
        return {"Service": principal}
    raise InvalidParameterValue(
        "The provided principal was invalid. Please check the principal and try again."
    )


def statement_of(params: dict[str, Any], resource: str, account_id: str) -> dict[str, Any]:
    """The statement one AddPermission request adds, keys and conditions in AWS's order."""
    statement: dict[str, Any] = {
        "Sid": params["StatementId"],
        "Effect": "Allow",
        "Principal": principal_document(params["Principal"], account_id),
        "Action": params["Action"],
        "Resource": resource,
    }
    equals: dict[str, str] = {}
    if params.get("SourceAccount"):
        equals["AWS:SourceAccount"] = params["SourceAccount"]
    if params.get("PrincipalOrgID"):
        equals["aws:PrincipalOrgID"] = params["PrincipalOrgID"]
    if params.get("EventSourceToken"):
        equals["lambda:EventSourceToken"] = params["EventSourceToken"]
    if params.get("FunctionUrlAuthType"):
        equals["lambda:FunctionUrlAuthType"] = params["FunctionUrlAuthType"]
    condition: dict[str, dict[str, str]] = {}
    if equals:
        condition["StringEquals"] = equals
    if params.get("SourceArn"):
        condition["ArnLike"] = {"AWS:SourceArn": params["SourceArn"]}
    if params.get("InvokedViaFunctionUrl"):
        condition["Bool"] = {"lambda:InvokedViaFunctionUrl": "true"}
    if condition:
        statement["Condition"] = condition
    return statement


def policy_document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": POLICY_VERSION, "Id": "default", "Statement": statements}


# -- evaluation --------------------------------------------------------------------------------


def _values(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _principal_matches(principal: Any, caller: Caller) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    for kind, value in principal.items():
        for item in _values(value):
            if kind == "AWS":
                if item == "*":
                    return True
                if caller.kind != "aws":
                    continue
                if item == caller.identity:
                    return True
                root = re.fullmatch(r"arn:aws[a-zA-Z-]*:iam::(\d{12}):root", item)
                if root and root[1] == caller.account:
                    return True
            elif kind == "Service" and caller.kind == "service" and item == caller.identity:
                return True
    return False


def _action_matches(action: Any, wanted: str) -> bool:
    return any(fnmatch.fnmatchcase(wanted.lower(), a.lower()) for a in _values(action))


def _resource_matches(resource: Any, arn: str) -> bool:
    return any(fnmatch.fnmatchcase(arn, r) for r in _values(resource))


def _condition_holds(condition: dict[str, Any], context: dict[str, str]) -> bool:
    lowered = {k.lower(): v for k, v in context.items()}
    for operator, tests in condition.items():
        negated = "Not" in operator
        for key, expected in tests.items():
            actual = lowered.get(key.lower())
            if actual is None:
                if negated:
                    continue
                return False
            options = _values(expected)
            if operator in ("StringEquals", "StringNotEquals", "ArnEquals", "ArnNotEquals"):
                hit = actual in options
            elif operator in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
                hit = actual.lower() in [o.lower() for o in options]
            elif operator in ("StringLike", "StringNotLike", "ArnLike", "ArnNotLike"):
                hit = any(fnmatch.fnmatchcase(actual, o) for o in options)
            elif operator == "Bool":
                hit = actual.lower() in [o.lower() for o in options]
            else:
                return False  # an operator Ember does not know never grants anything
            if hit == negated:
                return False
    return True


def evaluate(
    statements: list[dict[str, Any]], caller: Caller, action: str, arn: str, context: dict[str, str]
) -> bool:
    """True when some Allow statement matches and no Deny statement does."""
    allowed = False
    for statement in statements:
        if not (
            _principal_matches(statement.get("Principal"), caller)
            and _action_matches(statement.get("Action", []), action)
            and _resource_matches(statement.get("Resource", []), arn)
            and _condition_holds(statement.get("Condition") or {}, context)
        ):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = True
    return allowed


# -- the service -------------------------------------------------------------------------------


class PolicyService:
    def __init__(self, functions: FunctionService, store: Store) -> None:
        self.functions = functions
        self.store = store
        # Read on every function URL request; every change goes through this service.
        self._cache: dict[tuple[str, str], tuple[list[dict[str, Any]], str] | None] = {}

    def _target(self, identifier: str, qualifier: str | None) -> tuple[str, str, str]:
        """(function, qualifier or '', revision id of the function or alias) — 404 when absent."""
        ref = self.functions.parse_ref(identifier)
        if ref.qualifier and qualifier and ref.qualifier != qualifier:
            raise InvalidParameterValue(
                "The derived qualifier from the function name does not match the specified qualifier."
            )
        chosen = qualifier or ref.qualifier or ""
        record = self.functions.get(ref.name, chosen or None)
        return ref.name, chosen, record.revision_id

    def arn(self, function: str, qualifier: str) -> str:
        return self.functions.arn(function, qualifier or None)

    def _policy(self, function: str, qualifier: str) -> tuple[list[dict[str, Any]], str] | None:
        key = (function, qualifier)
        if key not in self._cache:
            self._cache[key] = self.store.get_policy(function, qualifier)
        return self._cache[key]

    def _save(self, function: str, qualifier: str, statements: list[dict[str, Any]]) -> str:
        revision = str(uuid.uuid4())
        self.store.put_policy(function, qualifier, statements, revision)
        self._cache.pop((function, qualifier), None)
        return revision

    @staticmethod
    def _check_revision(
        expected: str | None, policy_revision: str | None, function_revision: str
    ) -> None:
        # AWS compares with the function's (or alias's) revision; Ember also accepts the policy's
        # own RevisionId (GetPolicy), which changes with every AddPermission / RemovePermission.
        if expected is not None and expected not in (policy_revision, function_revision):
            raise PreconditionFailed(
                "The RevisionId provided does not match the latest RevisionId for the Lambda function "
                "or alias. Call the GetFunction or the GetAlias API to retrieve the latest RevisionId "
                "for your resource."
            )

    def add(self, identifier: str, qualifier: str | None, params: dict[str, Any]) -> dict[str, Any]:
        ref_qualifier = qualifier or self.functions.parse_ref(identifier).qualifier
        if ref_qualifier == LATEST:
            raise InvalidParameterValue("We currently do not support adding policies for $LATEST.")
        function, chosen, function_revision = self._target(identifier, qualifier)
        current = self._policy(function, chosen)
        statements, revision = (list(current[0]), current[1]) if current else ([], None)
        self._check_revision(params.get("RevisionId"), revision, function_revision)
        sid = params["StatementId"]
        if any(s.get("Sid") == sid for s in statements):
            raise ResourceConflict(
                "The statement id ("
                + sid
                + ") provided already exists. Please provide a new statement "
                "id, or remove the existing statement."
            )
        statement = statement_of(
            params, self.arn(function, chosen), self.functions.settings.account_id
        )
        statements.append(statement)
        size = len(orjson.dumps(policy_document(statements)))
        if size > MAX_POLICY_BYTES:
            raise PolicyLengthExceeded(
                f"The final policy size ({size}) is bigger than the limit ({MAX_POLICY_BYTES})."
            )
        self._save(function, chosen, statements)
        return statement

    def remove(
        self, identifier: str, qualifier: str | None, sid: str, revision_id: str | None
    ) -> None:
        function, chosen, function_revision = self._target(identifier, qualifier)
        current = self._policy(function, chosen)
        if current is None or not any(s.get("Sid") == sid for s in current[0]):
            raise ResourceNotFound(f"Statement {sid} is not found in resource policy.")
        self._check_revision(revision_id, current[1], function_revision)
        self._save(function, chosen, [s for s in current[0] if s.get("Sid") != sid])

    def get(self, identifier: str, qualifier: str | None) -> tuple[dict[str, Any], str]:
        """(policy document, its RevisionId); 404 when there is no policy."""
        function, chosen, _ = self._target(identifier, qualifier)
        current = self._policy(function, chosen)
        if current is None:
            raise ResourceNotFound("The resource you requested does not exist.")
        return policy_document(current[0]), current[1]

    def allows(
        self,
        function: str,
        qualifier: str | None,
        caller: Caller,
        action: str,
        context: dict[str, str],
    ) -> bool:
        """Does the policy of `function` (at `qualifier`) allow `caller` to do `action`?"""
        chosen = "" if qualifier in (None, LATEST) else str(qualifier)
        current = self._policy(function, chosen)
        if current is None:
            return False
        return evaluate(current[0], caller, action, self.arn(function, chosen), context)

    def forget(self, function: str, version: str | None = None) -> None:
        """Drop cached policies of `function` (after it changed or was deleted)."""
        for key in [k for k in self._cache if k[0] == function]:
            del self._cache[key]

    def removed(self, function: str, qualifier: str | None) -> None:
        """A function (qualifier None), one of its versions or an alias was deleted: so is its
        policy there."""
        if qualifier is not None:
            self.store.put_policy(function, qualifier, [], "")
        self.forget(function)
