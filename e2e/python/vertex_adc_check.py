"""Application Default Credentials on a Google Cloud machine, against the mock as its metadata
server (argument 1, the mock's base URL, becomes GCE_METADATA_HOST): `google-auth`'s
compute-engine credentials ask the metadata server for the account and a token, then
`google-genai` in Vertex AI mode calls the mock's Vertex routes with it. Prints one JSON
object."""

import json
import os
import sys

base = sys.argv[1].rstrip("/")
# google-auth reads the metadata server's address when it is imported.
os.environ["GCE_METADATA_HOST"] = base.split("://", 1)[1]
os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)

import google.auth.transport.requests  # noqa: E402
from google import genai  # noqa: E402
from google.auth import compute_engine  # noqa: E402
from google.genai import types  # noqa: E402

credentials = compute_engine.Credentials()
credentials.refresh(google.auth.transport.requests.Request())
client = genai.Client(
    vertexai=True,
    project="mock-project",
    location="us-central1",
    credentials=credentials,
    http_options=types.HttpOptions(base_url=base, api_version="v1"),
)
answer = client.models.generate_content(model="gemini-2.5-flash", contents="hello from adc")
print(
    json.dumps(
        {
            "content": answer.text,
            "token": credentials.token,
            "email": credentials.service_account_email,
        }
    )
)
