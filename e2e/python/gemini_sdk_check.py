"""The official `google-genai` package against a base URL (argument 1) as the Gemini API
(v1beta): a generation, a streamed one, one with a function declaration, two embeddings and the
model list. Prints one JSON object."""

import json
import sys

from google import genai
from google.genai import types

client = genai.Client(
    api_key="gm-sdk-key",
    http_options=types.HttpOptions(base_url=sys.argv[1]),
)
answer = client.models.generate_content(
    model="gemini-2.5-flash",
    contents="hello from the gemini sdk",
)
streamed = "".join(
    chunk.text or ""
    for chunk in client.models.generate_content_stream(
        model="gemini-2.5-flash",
        contents="streamed to gemini",
    )
)
weather = types.FunctionDeclaration(
    name="get_weather",
    description="The weather in a city.",
    parameters=types.Schema(
        type="OBJECT",
        properties={"city": types.Schema(type="STRING")},
        required=["city"],
    ),
)
called = client.models.generate_content(
    model="gemini-2.5-flash",
    contents="what is the weather in Paris?",
    config=types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[weather])],
    ),
)
call = called.function_calls[0] if called.function_calls else None
embedded = client.models.embed_content(
    model="gemini-embedding-001",
    contents=["first text", "second text"],
)
print(
    json.dumps(
        {
            "content": answer.text,
            "prompt_tokens": answer.usage_metadata.prompt_token_count,
            "streamed": streamed,
            "function_call": call.name if call else None,
            "function_args": call.args if call else None,
            "embeddings": len(embedded.embeddings),
            "dimensions": len(embedded.embeddings[0].values),
            "models": [model.name for model in client.models.list()],
        }
    )
)
