"""The official `openai` package against the gateway, every call to a model of another format
(argument 2, by default gemini/gemini-2.5-flash): a chat completion, a stream with usage, a
tool call and, for the default model, embeddings (which the SDK asks for as base64 and
decodes). Argument 1: the gateway's base URL. Prints one JSON object."""

import json
import sys

from openai import OpenAI

client = OpenAI(base_url=f"{sys.argv[1].rstrip('/')}/v1", api_key="unused", max_retries=0)
MODEL = sys.argv[2] if len(sys.argv) > 2 else "gemini/gemini-2.5-flash"

answer = client.chat.completions.create(
    model=MODEL,
    messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello from the openai sdk"},
    ],
)
pieces = []
stream_usage = None
for chunk in client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "streamed to gemini"}],
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage is not None:
        stream_usage = chunk.usage.completion_tokens
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
called = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "weather in Paris?"}],
    tools=[
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ],
)
call = called.choices[0].message.tool_calls[0]
result = {
    "content": answer.choices[0].message.content,
    "prompt_tokens": answer.usage.prompt_tokens,
    "streamed": "".join(pieces),
    "stream_completion_tokens": stream_usage,
    "tool": call.function.name,
    "arguments": json.loads(call.function.arguments),
    "finish_reason": called.choices[0].finish_reason,
}
if len(sys.argv) <= 2:
    embeddings = client.embeddings.create(model="gemini/gemini-embedding-001", input=["a", "b"])
    result["embeddings"] = [len(item.embedding) for item in embeddings.data]
    result["first_value"] = embeddings.data[0].embedding[0]
print(json.dumps(result))
