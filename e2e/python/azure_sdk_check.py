"""The official `openai` package's AzureOpenAI client against a base URL (argument 1): a chat
completion, a streamed one and an embedding, each to a deployment. Prints one JSON object."""

import json
import sys

from openai import AzureOpenAI

client = AzureOpenAI(
    azure_endpoint=sys.argv[1],
    api_key="sk-azure-sdk",
    api_version="2024-10-21",
)
answer = client.chat.completions.create(
    model="prod-4o",
    messages=[{"role": "user", "content": "hello from the azure sdk"}],
)
streamed = "".join(
    chunk.choices[0].delta.content or ""
    for chunk in client.chat.completions.create(
        model="prod-4o",
        messages=[{"role": "user", "content": "streamed to azure"}],
        stream=True,
    )
    if chunk.choices
)
embedding = client.embeddings.create(model="embed-small", input="hi")
print(
    json.dumps(
        {
            "content": answer.choices[0].message.content,
            "streamed": streamed,
            "dimensions": len(embedding.data[0].embedding),
        }
    )
)
