"""Drive the gateway with the official `openai` Python SDK and print what came back as JSON.

Usage: python openai_sdk_check.py <gateway base URL>
"""

import json
import sys

from openai import OpenAI


def main() -> None:
    base = sys.argv[1].rstrip("/")
    # The SDK sends its api_key as `Authorization: Bearer`: here, the gateway's virtual key.
    client = OpenAI(base_url=f"{base}/v1", api_key="sk-bf-python-sdk-key", max_retries=0)

    completion = client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "hello from the python sdk"}],
    )

    pieces = []
    usage = None
    stream = client.chat.completions.create(
        model="anthropic/claude-3-5-haiku-20241022",
        messages=[{"role": "user", "content": "stream through translation"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)

    models = [m.id for m in client.models.list()]
    print(
        json.dumps(
            {
                "content": completion.choices[0].message.content,
                "prompt_tokens": completion.usage.prompt_tokens,
                "streamed": "".join(pieces),
                "stream_completion_tokens": usage,
                "models": models,
            }
        )
    )


if __name__ == "__main__":
    main()
