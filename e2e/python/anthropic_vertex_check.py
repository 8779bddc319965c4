"""The official `anthropic` package's Vertex AI client (`AnthropicVertex`) against a base URL
(argument 1) with an access token (argument 2): Claude's `:rawPredict` (a message, a tool call)
and `:streamRawPredict` (a stream) on project `mock-project` in `us-east5`. The SDK puts the
model in the URL, takes it out of the body and adds `anthropic_version`; the mock refuses a
body that does not. Prints one JSON object."""

import json
import sys

from anthropic import AnthropicVertex

base = sys.argv[1].rstrip("/")
client = AnthropicVertex(
    region="us-east5",
    project_id="mock-project",
    access_token=sys.argv[2],
    base_url=f"{base}/v1",
)
model = "claude-sonnet-4@20250514"
answer = client.messages.create(
    model=model,
    max_tokens=64,
    messages=[{"role": "user", "content": "hello from vertex"}],
)
with client.messages.stream(
    model=model,
    max_tokens=64,
    messages=[{"role": "user", "content": "streamed through vertex"}],
) as stream:
    streamed = "".join(stream.text_stream)
    final = stream.get_final_message()
weather = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
called = client.messages.create(
    model=model,
    max_tokens=64,
    tools=[weather],
    messages=[{"role": "user", "content": "weather in Paris?"}],
)
call = next(block for block in called.content if block.type == "tool_use")
print(
    json.dumps(
        {
            "content": answer.content[0].text,
            "input_tokens": answer.usage.input_tokens,
            "streamed": streamed,
            "stream_stop_reason": final.stop_reason,
            "stream_output_tokens": final.usage.output_tokens,
            "tool_stop_reason": called.stop_reason,
            "tool_name": call.name,
            "tool_input": call.input,
        }
    )
)
