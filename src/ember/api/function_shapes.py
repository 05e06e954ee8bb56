"""FunctionRecord ↔ Lambda's wire shapes (FunctionConfiguration, CreateFunctionRequest fields)."""

from __future__ import annotations

import base64
import re
from typing import Any

from ember.errors import InvalidParameterValue
from ember.functions.model import FunctionRecord
from ember.functions.service import timestamp

# Request members that map straight onto record fields.
_SCALARS = {
    "Runtime": "runtime",
    "Role": "role",
    "Handler": "handler",
    "Description": "description",
    "Timeout": "timeout",
    "MemorySize": "memory_size",
}

# Accepted only when empty: features later issues bring. Anything else is refused honestly.
_NOT_YET = (
    "FileSystemConfigs",
    "ImageConfig",
    "CodeSigningConfigArn",
    "KMSKeyArn",
    "CapacityProviderConfig",
    "DurableConfig",
    "TenancyConfig",
)


def record_fields(params: dict[str, Any]) -> dict[str, Any]:
    """Record fields from CreateFunction / UpdateFunctionConfiguration parameters."""
    for name in _NOT_YET:
        if params.get(name):
            raise InvalidParameterValue(f"{name} is not supported by Ember yet.")
    vpc = params.get("VpcConfig") or {}
    if vpc.get("SubnetIds") or vpc.get("SecurityGroupIds"):
        raise InvalidParameterValue(
            "VpcConfig is not supported by Ember: functions reach the host network through Ember only."
        )
    if (params.get("SnapStart") or {}).get("ApplyOn", "None") != "None":
        raise InvalidParameterValue("SnapStart is not supported by Ember yet.")
    fields: dict[str, Any] = {
        field: params[member] for member, field in _SCALARS.items() if member in params
    }
    if "Environment" in params:
        fields["environment"] = dict((params["Environment"] or {}).get("Variables") or {})
    if "EphemeralStorage" in params:
        fields["ephemeral_storage"] = params["EphemeralStorage"]["Size"]
    if "Architectures" in params:
        fields["architectures"] = tuple(params["Architectures"])
    if "Layers" in params:  # version ARNs; the function service resolves them
        fields["layers"] = tuple(params["Layers"] or ())
    if "DeadLetterConfig" in params:
        target = (params["DeadLetterConfig"] or {}).get("TargetArn") or None
        if target and not _DLQ_ARN.fullmatch(target):
            raise InvalidParameterValue(
                f"The provided DeadLetterConfig target {target} is not an Amazon SQS queue or "
                "Amazon SNS topic ARN."
            )
        fields["dead_letter_target"] = target
    if "TracingConfig" in params:
        fields["tracing_mode"] = params["TracingConfig"].get("Mode", "PassThrough")
    if "LoggingConfig" in params:
        logging = params["LoggingConfig"]
        fields["log_format"] = logging.get("LogFormat", "Text")
        fields["application_log_level"] = logging.get("ApplicationLogLevel")
        fields["system_log_level"] = logging.get("SystemLogLevel")
        fields["log_group"] = logging.get("LogGroup")
    return fields


_DLQ_ARN = re.compile(r"arn:aws[a-zA-Z-]*:(sqs|sns):[a-z0-9-]+:\d{12}:[a-zA-Z0-9_.-]{1,256}")


def code_sha256_b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def configuration(record: FunctionRecord, arn: str) -> dict[str, Any]:
    """The FunctionConfiguration document AWS returns."""
    logging: dict[str, Any] = {
        "LogFormat": record.log_format,
        "LogGroup": record.effective_log_group,
    }
    if record.log_format == "JSON":
        logging["ApplicationLogLevel"] = record.application_log_level or "INFO"
        logging["SystemLogLevel"] = record.system_log_level or "INFO"
    doc: dict[str, Any] = {
        "FunctionName": record.name,
        "FunctionArn": arn,
        "Runtime": record.runtime,
        "Role": record.role,
        "Handler": record.handler,
        "CodeSize": record.code_size,
        "Description": record.description,
        "Timeout": record.timeout,
        "MemorySize": record.memory_size,
        "LastModified": timestamp(record.last_modified),
        "CodeSha256": code_sha256_b64(record.code_sha256),
        "Version": record.version,
        "TracingConfig": {"Mode": record.tracing_mode},
        "RevisionId": record.revision_id,
        "State": record.state,
        "LastUpdateStatus": record.last_update_status,
        "PackageType": "Zip",
        "Architectures": list(record.architectures),
        "EphemeralStorage": {"Size": record.ephemeral_storage},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "LoggingConfig": logging,
    }
    if record.dead_letter_target:
        doc["DeadLetterConfig"] = {"TargetArn": record.dead_letter_target}
    if record.environment:
        doc["Environment"] = {"Variables": dict(record.environment)}
    if record.layers:
        doc["Layers"] = [{"Arn": layer.arn, "CodeSize": layer.code_size} for layer in record.layers]
    return doc
