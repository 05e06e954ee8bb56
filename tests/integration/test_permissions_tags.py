"""Resource policies (AddPermission, RemovePermission, GetPolicy) and tags, through boto3 and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import LiveServer, make_zip
from invoking import deploy

CODE = "def handler(event, context):\n    return event\n"
ACCOUNT = "000000000000"
AWS_CLI = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "aws"


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response: Any = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def arn_of(name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


# -- resource policies -------------------------------------------------------------------------


def test_add_permission_statements_are_formatted_as_aws_does(lam: Any) -> None:
    name = deploy(lam, CODE, prefix="policy")
    arn = arn_of(name)
    added = [
        lam.add_permission(
            FunctionName=name,
            StatementId="public",
            Action="lambda:InvokeFunctionUrl",
            Principal="*",
            FunctionUrlAuthType="NONE",
        ),
        lam.add_permission(
            FunctionName=name,
            StatementId="via-url",
            Action="lambda:InvokeFunction",
            Principal="*",
            InvokedViaFunctionUrl=True,
        ),
        lam.add_permission(
            FunctionName=name,
            StatementId="s3",
            Action="lambda:InvokeFunction",
            Principal="s3.amazonaws.com",
            SourceArn="arn:aws:s3:::photos",
            SourceAccount="123456789012",
        ),
        lam.add_permission(
            FunctionName=arn,
            StatementId="xaccount",
            Action="lambda:GetFunction",
            Principal="210987654321",
            PrincipalOrgID="o-a1b2c3d4e5",
        ),
        lam.add_permission(
            FunctionName=name,
            StatementId="role",
            Action="lambda:*",
            Principal="arn:aws:iam::210987654321:role/caller",
        ),
    ]
    expected = [
        {
            "Sid": "public",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "lambda:InvokeFunctionUrl",
            "Resource": arn,
            "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}},
        },
        {
            "Sid": "via-url",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "lambda:InvokeFunction",
            "Resource": arn,
            "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}},
        },
        {
            "Sid": "s3",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "lambda:InvokeFunction",
            "Resource": arn,
            "Condition": {
                "StringEquals": {"AWS:SourceAccount": "123456789012"},
                "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::photos"},
            },
        },
        {
            "Sid": "xaccount",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
            "Action": "lambda:GetFunction",
            "Resource": arn,
            "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}},
        },
        {
            "Sid": "role",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::210987654321:role/caller"},
            "Action": "lambda:*",
            "Resource": arn,
        },
    ]
    for response, statement in zip(added, expected, strict=True):
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 201
        # the same keys in the same order as AWS: Sid, Effect, Principal, Action, Resource, Condition
        assert list(json.loads(response["Statement"]).items()) == list(statement.items())
    policy = lam.get_policy(FunctionName=name)
    document = json.loads(policy["Policy"])
    assert list(document) == ["Version", "Id", "Statement"]
    assert document["Version"] == "2012-10-17" and document["Id"] == "default"
    assert document["Statement"] == expected
    assert policy["RevisionId"]


def test_policy_revisions_conflicts_and_removal(lam: Any) -> None:
    name = deploy(lam, CODE, prefix="policy")
    with pytest.raises(ClientError) as excinfo:
        lam.get_policy(FunctionName=name)
    assert error_of(excinfo) == ("ResourceNotFoundException", 404)

    lam.add_permission(
        FunctionName=name,
        StatementId="one",
        Action="lambda:InvokeFunction",
        Principal="sns.amazonaws.com",
    )
    first = lam.get_policy(FunctionName=name)["RevisionId"]
    with pytest.raises(ClientError) as excinfo:
        lam.add_permission(
            FunctionName=name, StatementId="one", Action="lambda:InvokeFunction", Principal="*"
        )
    assert error_of(excinfo) == ("ResourceConflictException", 409)

    with pytest.raises(ClientError) as excinfo:  # a stale RevisionId changes nothing
        lam.add_permission(
            FunctionName=name,
            StatementId="two",
            Action="lambda:InvokeFunction",
            Principal="*",
            RevisionId="00000000-0000-0000-0000-000000000000",
        )
    assert error_of(excinfo) == ("PreconditionFailedException", 412)
    lam.add_permission(
        FunctionName=name,
        StatementId="two",
        Action="lambda:InvokeFunction",
        Principal="*",
        RevisionId=first,
    )
    second = lam.get_policy(FunctionName=name)["RevisionId"]
    assert second != first

    with pytest.raises(ClientError) as excinfo:
        lam.remove_permission(FunctionName=name, StatementId="two", RevisionId=first)
    assert error_of(excinfo) == ("PreconditionFailedException", 412)
    lam.remove_permission(FunctionName=name, StatementId="two", RevisionId=second)
    statements = json.loads(lam.get_policy(FunctionName=name)["Policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["one"]
    with pytest.raises(ClientError) as excinfo:
        lam.remove_permission(FunctionName=name, StatementId="two")
    assert error_of(excinfo) == ("ResourceNotFoundException", 404)
    lam.remove_permission(FunctionName=name, StatementId="one")
    with pytest.raises(ClientError) as excinfo:  # the last statement gone: no policy at all
        lam.get_policy(FunctionName=name)
    assert error_of(excinfo) == ("ResourceNotFoundException", 404)


def test_policy_limits_and_refusals(lam: Any, lam_raw: Any) -> None:
    name = deploy(lam, CODE, prefix="policy")
    long_arn = "arn:aws:s3:::" + "b" * 900
    added = 0
    with pytest.raises(ClientError) as excinfo:
        for i in range(40):  # ~1 KB per statement: the 20 KB limit is hit on the way
            lam.add_permission(
                FunctionName=name,
                StatementId=f"s{i}",
                Action="lambda:InvokeFunction",
                Principal="s3.amazonaws.com",
                SourceArn=long_arn,
            )
            added += 1
    assert error_of(excinfo) == ("PolicyLengthExceededException", 400)
    assert "20480" in excinfo.value.response["Error"]["Message"]
    policy = lam.get_policy(FunctionName=name)["Policy"]
    assert len(json.loads(policy)["Statement"]) == added
    assert len(policy.encode()) <= 20 * 1024

    with pytest.raises(ClientError) as excinfo:
        lam.add_permission(
            FunctionName=name,
            StatementId="latest",
            Action="lambda:InvokeFunction",
            Principal="*",
            Qualifier="$LATEST",
        )
    assert error_of(excinfo) == ("InvalidParameterValueException", 400)
    with pytest.raises(ClientError) as excinfo:
        lam.add_permission(
            FunctionName=name,
            StatementId="bad",
            Action="lambda:InvokeFunction",
            Principal="not a principal!",
        )
    assert error_of(excinfo)[1] == 400
    with pytest.raises(ClientError) as excinfo:
        lam_raw.add_permission(
            FunctionName=name, StatementId="bad sid", Action="lambda:InvokeFunction", Principal="*"
        )
    assert error_of(excinfo) == ("ValidationException", 400)
    with pytest.raises(ClientError) as excinfo:
        lam.add_permission(
            FunctionName="no-such-function-here",
            StatementId="x",
            Action="lambda:InvokeFunction",
            Principal="*",
        )
    assert error_of(excinfo) == ("ResourceNotFoundException", 404)


def test_qualified_policy_belongs_to_the_version(lam: Any) -> None:
    name = deploy(lam, CODE, prefix="policy")
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.add_permission(
        FunctionName=name,
        Qualifier=version,
        StatementId="v",
        Principal="*",
        Action="lambda:InvokeFunction",
    )
    statement = json.loads(lam.get_policy(FunctionName=name, Qualifier=version)["Policy"])[
        "Statement"
    ][0]
    assert statement["Resource"] == arn_of(name, version)
    with pytest.raises(ClientError) as excinfo:  # the unqualified function's policy is separate
        lam.get_policy(FunctionName=name)
    assert error_of(excinfo) == ("ResourceNotFoundException", 404)


def test_policy_with_the_aws_cli(server: LiveServer, lam: Any) -> None:
    name = deploy(lam, CODE, prefix="policy")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }

    def cli(*args: str) -> Any:
        out = subprocess.run(
            [str(AWS_CLI), "--endpoint-url", server.endpoint, "lambda", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(out.stdout) if out.stdout.strip() else None

    added = cli(
        "add-permission",
        "--function-name",
        name,
        "--statement-id",
        "cli",
        "--action",
        "lambda:InvokeFunction",
        "--principal",
        "123456789012",
    )
    assert json.loads(added["Statement"])["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    policy = json.loads(cli("get-policy", "--function-name", name)["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["cli"]
    cli("remove-permission", "--function-name", name, "--statement-id", "cli")


# -- tags --------------------------------------------------------------------------------------


def test_tags_at_create_and_through_the_tag_api(lam: Any) -> None:
    name = deploy(lam, CODE, prefix="tags", Tags={"team": "blue", "cost-center": "42"})
    arn = arn_of(name)
    assert lam.get_function(FunctionName=name)["Tags"] == {"team": "blue", "cost-center": "42"}
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "blue", "cost-center": "42"}

    lam.tag_resource(Resource=arn, Tags={"team": "green", "env": "dev"})
    assert lam.list_tags(Resource=arn)["Tags"] == {
        "team": "green",
        "cost-center": "42",
        "env": "dev",
    }
    lam.untag_resource(Resource=arn, TagKeys=["cost-center", "not-there"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "green", "env": "dev"}

    # tags belong to the function: they survive code and configuration updates and publishing
    lam.update_function_configuration(FunctionName=name, Description="changed")
    lam.update_function_code(FunctionName=name, ZipFile=_zip("def handler(e, c):\n    return 2\n"))
    lam.publish_version(FunctionName=name)
    assert lam.get_function(FunctionName=name)["Tags"] == {"team": "green", "env": "dev"}
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "green", "env": "dev"}

    lam.delete_function(FunctionName=name)
    with pytest.raises(ClientError) as excinfo:
        lam.list_tags(Resource=arn)
    assert error_of(excinfo) == ("ResourceNotFoundException", 404)
    deploy_again = lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Handler="app.handler",
        Role="arn:aws:iam::000000000000:role/lambda-role",
        Code={"ZipFile": _zip(CODE)},
    )
    assert deploy_again["FunctionName"] == name
    assert "Tags" not in lam.get_function(FunctionName=name)
    assert lam.list_tags(Resource=arn)["Tags"] == {}


def test_tag_limits(lam: Any, lam_raw: Any) -> None:
    name = deploy(lam, CODE, prefix="tags")
    arn = arn_of(name)
    for tags in ({"aws:reserved": "x"}, {f"k{i}": "v" for i in range(51)}):
        with pytest.raises(ClientError) as excinfo:
            lam.tag_resource(Resource=arn, Tags=tags)
        assert error_of(excinfo) == ("InvalidParameterValueException", 400)
    lam.tag_resource(Resource=arn, Tags={f"k{i}": "v" for i in range(50)})
    with pytest.raises(ClientError) as excinfo:  # 50 is the most a function can carry
        lam.tag_resource(Resource=arn, Tags={"one-more": "v"})
    assert error_of(excinfo) == ("InvalidParameterValueException", 400)
    assert len(lam.list_tags(Resource=arn)["Tags"]) == 50
    for tags in ({"k" * 129: "v"}, {"key": "v" * 257}):
        with pytest.raises(ClientError) as excinfo:
            lam_raw.tag_resource(Resource=arn, Tags=tags)
        assert error_of(excinfo) == ("ValidationException", 400)
    with pytest.raises(ClientError) as excinfo:  # a refused create leaves no function behind
        deploy(lam, CODE, prefix="tags", Tags={"aws:cloudformation:stack-name": "x"})
    assert error_of(excinfo) == ("InvalidParameterValueException", 400)
    with pytest.raises(ClientError) as excinfo:
        lam.list_tags(Resource=arn_of("no-such-function-tags"))
    assert error_of(excinfo) == ("ResourceNotFoundException", 404)


def _zip(code: str) -> bytes:
    return make_zip({"app.py": code})
