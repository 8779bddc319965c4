"""The official `boto3` package against a base URL (argument 1) as AWS Bedrock Runtime, signing
with SigV4 for us-west-2 as AKIDMOCKEXAMPLE: `invoke_model` on Titan Text Embeddings V2 and on
Cohere Embed, and a ConverseStream throttled mid-stream (`[[throttle]]`), which boto3 raises
as an EventStreamError once the first text has arrived. Prints one JSON object."""

import json
import math
import sys

import boto3
import botocore.config
from botocore.exceptions import EventStreamError

CONFIG = botocore.config.Config(retries={"max_attempts": 1})
bedrock = boto3.client(
    "bedrock-runtime",
    region_name="us-west-2",
    endpoint_url=sys.argv[1],
    aws_access_key_id="AKIDMOCKEXAMPLE",
    aws_secret_access_key="mock-secret",
    config=CONFIG,
)


def invoke(model, body):
    response = bedrock.invoke_model(
        modelId=model,
        body=json.dumps(body),
        contentType="application/json",
        accept="application/json",
    )
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    return json.loads(response["body"].read()), headers


titan, titan_headers = invoke(
    "amazon.titan-embed-text-v2:0", {"inputText": "hello titan", "dimensions": 512}
)
cohere, cohere_headers = invoke(
    "cohere.embed-english-v3",
    {"texts": ["one", "two words"], "input_type": "search_document"},
)

streamed = ""
throttled = None
try:
    for event in bedrock.converse_stream(
        modelId="anthropic.claude-3-5-haiku-20241022-v1:0",
        messages=[{"role": "user", "content": [{"text": "slow [[throttle]] down now"}]}],
    )["stream"]:
        if "contentBlockDelta" in event:
            streamed += event["contentBlockDelta"]["delta"].get("text", "")
except EventStreamError as error:
    throttled = {
        "code": error.response["Error"]["Code"],
        "message": error.response["Error"]["Message"],
    }

vector = cohere["embeddings"][1]
print(
    json.dumps(
        {
            "titan_dims": len(titan["embedding"]),
            "titan_tokens": titan["inputTextTokenCount"],
            "titan_header_tokens": titan_headers.get("x-amzn-bedrock-input-token-count"),
            "cohere_count": len(cohere["embeddings"]),
            "cohere_dims": len(vector),
            "cohere_norm": math.sqrt(sum(x * x for x in vector)),
            "cohere_response_type": cohere["response_type"],
            "cohere_texts": cohere["texts"],
            "cohere_header_tokens": cohere_headers.get("x-amzn-bedrock-input-token-count"),
            "streamed_before_throttle": streamed,
            "throttled": throttled,
        }
    )
)
