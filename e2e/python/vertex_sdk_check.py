"""The official `google-genai` package in Vertex AI mode against a base URL (argument 1), with a
service account's credentials from `google-auth`: the key file (argument 2) is read and its
`token_uri` pointed at the base URL's `/token`, so the access token comes from there too. A
generation and a streamed one, through API version v1 (the SDK's default for Vertex AI is
v1beta1). Prints one JSON object."""

import datetime
import json
import sys

from google import genai
from google.genai import types
from google.oauth2 import service_account

base = sys.argv[1].rstrip("/")
with open(sys.argv[2], encoding="utf-8") as key_file:
    info = json.load(key_file)
info["token_uri"] = f"{base}/token"
credentials = service_account.Credentials.from_service_account_info(
    info, scopes=["https://www.googleapis.com/auth/cloud-platform"]
)
client = genai.Client(
    vertexai=True,
    project="mock-project",
    location="us-central1",
    credentials=credentials,
    http_options=types.HttpOptions(base_url=base, api_version="v1"),
)
answer = client.models.generate_content(
    model="gemini-2.5-flash",
    contents="hello from vertex",
)
streamed = "".join(
    chunk.text or ""
    for chunk in client.models.generate_content_stream(
        model="gemini-2.5-flash",
        contents="streamed through vertex",
    )
)
# google-auth keeps the expiry as a naive UTC datetime.
now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
print(
    json.dumps(
        {
            "content": answer.text,
            "prompt_tokens": answer.usage_metadata.prompt_token_count,
            "streamed": streamed,
            "token": credentials.token,
            "token_expiry": credentials.expiry.isoformat() + "Z",
            "token_seconds_left": round((credentials.expiry - now).total_seconds()),
        }
    )
)
