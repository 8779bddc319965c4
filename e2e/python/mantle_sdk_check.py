"""The official `openai` package against a base URL (argument 1) as AWS Bedrock Mantle, its
requests signed by botocore's own SigV4 (`SigV4Auth`, signing name `bedrock-mantle`, region
us-west-2) with the access key given as argument 2 (`AKID:SECRET`), as AWS documents for IAM
callers of Mantle: a chat completion, a stream, and a request signed with a wrong secret (which
must be refused). Prints one JSON object."""

import json
import sys

import httpx
import openai
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


class MantleAuth(httpx.Auth):
    """Signs each request as botocore signs AWS requests."""

    requires_request_body = True

    def __init__(self, access_key, secret_key):
        self.credentials = Credentials(access_key, secret_key)

    def auth_flow(self, request):
        signed = AWSRequest(
            method=request.method,
            url=str(request.url),
            data=request.content,
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
        SigV4Auth(self.credentials, "bedrock-mantle", "us-west-2").add_auth(signed)
        del request.headers["authorization"]
        for name, value in signed.headers.items():
            request.headers[name] = value
        yield request


def client(access_key, secret_key):
    return openai.OpenAI(
        base_url=f"{sys.argv[1].rstrip('/')}/v1",
        api_key="unused",
        max_retries=0,
        http_client=httpx.Client(auth=MantleAuth(access_key, secret_key)),
    )


access_key, secret_key = sys.argv[2].split(":", 1)
mantle = client(access_key, secret_key)
answer = mantle.chat.completions.create(
    model="openai.gpt-oss-120b-1:0",
    messages=[{"role": "user", "content": "hello from mantle"}],
)
streamed = "".join(
    choice.delta.content or ""
    for chunk in mantle.chat.completions.create(
        model="openai.gpt-oss-120b-1:0",
        messages=[{"role": "user", "content": "streamed from mantle"}],
        stream=True,
    )
    for choice in chunk.choices
)
try:
    client(access_key, "wrong-secret").chat.completions.create(
        model="openai.gpt-oss-120b-1:0",
        messages=[{"role": "user", "content": "refused"}],
    )
    refused = None
except openai.PermissionDeniedError as error:
    refused = error.status_code
print(
    json.dumps(
        {
            "content": answer.choices[0].message.content,
            "prompt_tokens": answer.usage.prompt_tokens,
            "streamed": streamed,
            "refused": refused,
        }
    )
)
