"""The official `openai` package's embeddings against the gateway (argument 1: its base URL),
on Bedrock's Titan (`bedrock/titan-v2`) and Cohere (`bedrock/cohere-en`) models: the SDK asks for
base64 and decodes it; several texts to Titan are refused. Prints one JSON object."""

import json
import math
import sys

import openai
from openai import OpenAI

client = OpenAI(base_url=f"{sys.argv[1].rstrip('/')}/v1", api_key="unused", max_retries=0)

titan = client.embeddings.create(
    model="bedrock/titan-v2", input="embedded by titan", dimensions=512
)
cohere = client.embeddings.create(model="bedrock/cohere-en", input=["a", "b c", "d"])
vector = cohere.data[2].embedding

try:
    client.embeddings.create(model="bedrock/titan-v2", input=["a", "b"])
    titan_many = None
except openai.BadRequestError as error:
    titan_many = {"status": error.status_code, "message": error.message}

print(
    json.dumps(
        {
            "titan_dims": len(titan.data[0].embedding),
            "titan_tokens": titan.usage.prompt_tokens,
            "cohere_count": len(cohere.data),
            "cohere_dims": len(vector),
            "cohere_norm": math.sqrt(sum(x * x for x in vector)),
            "titan_many": titan_many,
        }
    )
)
