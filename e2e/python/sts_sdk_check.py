"""The official `boto3` package against a base URL (argument 1) as AWS STS and then Bedrock
Runtime: AKIDMOCKEXAMPLE assumes the role ROLE (external id ext-42) with `assume_role`, the
temporary credentials it gets sign a Converse call, and a wrong external id is refused.
Prints one JSON object."""

import json
import sys
from datetime import datetime, timezone

import boto3
import botocore.config
from botocore.exceptions import ClientError

ROLE = "arn:aws:iam::123456789012:role/bedrock-caller"
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
CONFIG = botocore.config.Config(retries={"max_attempts": 1})

sts = boto3.client(
    "sts",
    region_name="us-west-2",
    endpoint_url=sys.argv[1],
    aws_access_key_id="AKIDMOCKEXAMPLE",
    aws_secret_access_key="mock-secret",
    config=CONFIG,
)
assumed = sts.assume_role(
    RoleArn=ROLE, RoleSessionName="boto3-check", ExternalId="ext-42", DurationSeconds=900
)
credentials = assumed["Credentials"]

bedrock = boto3.client(
    "bedrock-runtime",
    region_name="us-west-2",
    endpoint_url=sys.argv[1],
    aws_access_key_id=credentials["AccessKeyId"],
    aws_secret_access_key=credentials["SecretAccessKey"],
    aws_session_token=credentials["SessionToken"],
    config=CONFIG,
)
answer = bedrock.converse(
    modelId=MODEL, messages=[{"role": "user", "content": [{"text": "as the role"}]}]
)

try:
    sts.assume_role(RoleArn=ROLE, RoleSessionName="boto3-check", ExternalId="wrong")
    wrong_external_id = None
except ClientError as error:
    wrong_external_id = {
        "code": error.response["Error"]["Code"],
        "status": error.response["ResponseMetadata"]["HTTPStatusCode"],
        "message": error.response["Error"]["Message"],
    }

print(
    json.dumps(
        {
            "access_key_id": credentials["AccessKeyId"],
            "has_session_token": bool(credentials["SessionToken"]),
            "lifetime_secs": round(
                (credentials["Expiration"] - datetime.now(timezone.utc)).total_seconds()
            ),
            "expiration": credentials["Expiration"].isoformat(),
            "assumed_arn": assumed["AssumedRoleUser"]["Arn"],
            "content": answer["output"]["message"]["content"][0]["text"],
            "wrong_external_id": wrong_external_id,
        }
    )
)
