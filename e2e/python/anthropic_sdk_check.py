"""The official `anthropic` package against the gateway's Anthropic endpoint, for one model
(argument 2, e.g. gemini/gemini-2.5-flash) whose provider speaks another format: a message, a
streamed message and a tool use. Argument 1: the gateway's base URL. Prints one JSON object."""

import json
import sys

from anthropic import Anthropic

client = Anthropic(base_url=f"{sys.argv[1].rstrip('/')}/anthropic", api_key="unused", max_retries=0)
MODEL = sys.argv[2]

message = client.messages.create(
    model=MODEL,
    max_tokens=64,
    system="Be brief.",
    messages=[{"role": "user", "content": "hello from the anthropic sdk"}],
)
with client.messages.stream(
    model=MODEL,
    max_tokens=64,
    messages=[{"role": "user", "content": "streamed through the anthropic sdk"}],
) as stream:
    streamed = "".join(stream.text_stream)
    final = stream.get_final_message()
tool_use = client.messages.create(
    model=MODEL,
    max_tokens=64,
    tools=[
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ],
    messages=[{"role": "user", "content": "weather in Paris?"}],
)
call = next(block for block in tool_use.content if block.type == "tool_use")
print(
    json.dumps(
        {
            "content": message.content[0].text,
            "input_tokens": message.usage.input_tokens,
            "streamed": streamed,
            "stream_output_tokens": final.usage.output_tokens,
            "stop_reason": tool_use.stop_reason,
            "tool": call.name,
            "input": call.input,
        }
    )
)
