"""Client and platform errors raised below the API layer.

Each class names the Lambda error it becomes on the wire; the API layer (api/errors.py) turns
it into the status code, the `X-Amzn-ErrorType` header and the JSON body AWS sends.
"""

from __future__ import annotations


class EmberError(Exception):
    """A request that cannot be served. `error_type` is Lambda's exception shape name."""

    error_type = "ServiceException"
    status = 500
    # Whether `status` stands even where the service model gives the error type another one.
    fixed_status = False

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class ValidationError(EmberError):
    error_type = "ValidationException"
    status = 400


class InvalidParameterValue(EmberError):
    error_type = "InvalidParameterValueException"
    status = 400


class InvalidRequestContent(EmberError):
    error_type = "InvalidRequestContentException"
    status = 400


class ResourceNotFound(EmberError):
    error_type = "ResourceNotFoundException"
    status = 404


class ResourceConflict(EmberError):
    error_type = "ResourceConflictException"
    status = 409


class PreconditionFailed(EmberError):
    error_type = "PreconditionFailedException"
    status = 412


class RequestEntityTooLarge(EmberError):
    error_type = "RequestEntityTooLargeException"
    status = 413


class TooManyRequests(EmberError):
    error_type = "TooManyRequestsException"
    status = 429


class NotImplementedOperation(EmberError):
    error_type = "NotImplementedException"
    status = 501


class ServiceError(EmberError):
    error_type = "ServiceException"
    status = 500


def raise_if_any(problems: list[str]) -> None:
    if problems:
        count = len(problems)
        noun = "error" if count == 1 else "errors"
        raise ValidationError(f"{count} validation {noun} detected: " + "; ".join(problems))


def range_problem(value: int, member: str, low: int, high: int) -> str | None:
    """An operator limit in the same words as a model constraint (e.g. MemorySize 128-10240)."""
    if value < low:
        return f"Value '{value}' at '{member}' failed to satisfy constraint: Member must have value greater than or equal to {low}"
    if value > high:
        return f"Value '{value}' at '{member}' failed to satisfy constraint: Member must have value less than or equal to {high}"
    return None


class PolicyLengthExceeded(EmberError):
    error_type = "PolicyLengthExceededException"
    status = 400


class ProvisionedConcurrencyConfigNotFound(EmberError):
    error_type = "ProvisionedConcurrencyConfigNotFoundException"
    status = 404


class CodeStorageExceeded(EmberError):
    """No room for more code: Lambda's error for an account over its code storage; Ember's code
    storage is its disk, so a full disk under `code/` is reported this way."""

    error_type = "CodeStorageExceededException"
    status = 400


class StorageUnavailable(EmberError):
    """Ember cannot store what the request needs right now (its disk is full, or a data file
    was deleted or replaced while running): 503, so clients see a server-side condition that
    may pass, never an acknowledgement of a write that was not kept."""

    error_type = "ServiceException"
    status = 503
    fixed_status = True


class DiskFull(StorageUnavailable):
    """A write failed because the disk holding the data directory is full (ENOSPC, SQLITE_FULL)."""
