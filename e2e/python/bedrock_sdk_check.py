"""The official `boto3` package against a base URL (argument 1) as AWS Bedrock Runtime, signing
with SigV4 for us-west-2 as the access key AKIDMOCKEXAMPLE: a conversation, a streamed one, one
with a tool, one whose model is an inference-profile ARN, and one signed with a wrong secret.
(boto3 sends Bedrock API keys only over HTTPS, so the bearer tokens are left to raw requests.)
Prints one JSON object."""

import json
import sys

import boto3
import botocore.config
from botocore.exceptions import ClientError

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
PROFILE_ARN = (
    "arn:aws:bedrock:us-west-2:123456789012:inference-profile/"
    "us.anthropic.claude-3-5-haiku-20241022-v1:0"
)
CONFIG = botocore.config.Config(retries={"max_attempts": 1})


def client(secret="mock-secret"):
    return boto3.client(
        "bedrock-runtime",
        region_name="us-west-2",
        endpoint_url=sys.argv[1],
        aws_access_key_id="AKIDMOCKEXAMPLE",
        aws_secret_access_key=secret,
        config=CONFIG,
    )


def user(text):
    return [{"role": "user", "content": [{"text": text}]}]


bedrock = client()
answer = bedrock.converse(
    modelId=MODEL,
    messages=user("hello from boto3"),
    system=[{"text": "be brief"}],
)

streamed = ""
stream_usage = None
stop_reason = None
for event in bedrock.converse_stream(
    modelId=MODEL, messages=user("streamed through bedrock")
)["stream"]:
    if "contentBlockDelta" in event:
        streamed += event["contentBlockDelta"]["delta"].get("text", "")
    elif "messageStop" in event:
        stop_reason = event["messageStop"]["stopReason"]
    elif "metadata" in event:
        stream_usage = event["metadata"]["usage"]

weather = {
    "toolSpec": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "inputSchema": {
            "json": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            }
        },
    }
}
called = bedrock.converse(
    modelId=MODEL,
    messages=user("what is the weather in Paris?"),
    toolConfig={"tools": [weather]},
)
tool_use = next(
    (
        block["toolUse"]
        for block in called["output"]["message"]["content"]
        if "toolUse" in block
    ),
    None,
)

profiled = bedrock.converse(modelId=PROFILE_ARN, messages=user("through a profile"))

try:
    client(secret="wrong-secret").converse(modelId=MODEL, messages=user("wrong"))
    wrong_secret = None
except ClientError as error:
    wrong_secret = {
        "code": error.response["Error"]["Code"],
        "status": error.response["ResponseMetadata"]["HTTPStatusCode"],
        "message": error.response["Error"]["Message"],
    }

print(
    json.dumps(
        {
            "content": answer["output"]["message"]["content"][0]["text"],
            "stop_reason": answer["stopReason"],
            "usage": answer["usage"],
            "streamed": streamed,
            "stream_stop_reason": stop_reason,
            "stream_usage": stream_usage,
            "tool_name": tool_use["name"] if tool_use else None,
            "tool_input": tool_use["input"] if tool_use else None,
            "tool_stop_reason": called["stopReason"],
            "profile_content": profiled["output"]["message"]["content"][0]["text"],
            "wrong_secret": wrong_secret,
        }
    )
)
