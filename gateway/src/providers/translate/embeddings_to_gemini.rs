//! OpenAI embeddings on Gemini: `POST /v1/embeddings` becomes `batchEmbedContents` (one
//! request per input), and Gemini's vectors come back as OpenAI's `data` list.

use super::{positive_integer, present, request_error, response_error, TranslateError};
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// Translates an OpenAI embeddings body into a Gemini `batchEmbedContents` body. Each request
/// must also name the model (`models/{model}`); that is added per target when the body is
/// encoded, as the model differs between targets.
pub fn embeddings_request_to_gemini(
    body: &Map<String, Value>,
    _model: &str,
) -> Result<Value, TranslateError> {
    let texts: Vec<&str> = match present(body, "input") {
        Some(Value::String(text)) => vec![text.as_str()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().ok_or_else(|| {
                    request_error(
                        format!("input[{i}]"),
                        "must be a string (Gemini embeds text, not token arrays)",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(request_error(
                "input",
                "must be a string or a non-empty array of strings",
            ))
        }
    };
    let dimensions = present(body, "dimensions")
        .map(|value| positive_integer(value, "dimensions"))
        .transpose()?;
    if let Some(format) = present(body, "encoding_format") {
        if !matches!(format.as_str(), Some("float" | "base64")) {
            return Err(request_error(
                "encoding_format",
                "must be \"float\" or \"base64\"",
            ));
        }
    }
    let requests: Vec<Value> = texts
        .into_iter()
        .map(|text| {
            let mut request = json!({"content": {"parts": [{"text": text}]}});
            if let Some(dimensions) = dimensions {
                request["outputDimensionality"] = dimensions.into();
            }
            request
        })
        .collect();
    Ok(json!({"requests": requests}))
}

/// Translates a Gemini `batchEmbedContents` answer into an OpenAI embeddings response for
/// `model`; `base64` when the caller asked for `encoding_format: "base64"` (little-endian
/// float32, as OpenAI sends it). Gemini reports no token counts for embeddings: usage is 0.
pub fn gemini_embeddings_to_openai(
    response: &Value,
    model: &str,
    base64: bool,
) -> Result<Value, TranslateError> {
    let Some(Value::Array(embeddings)) = response.get("embeddings") else {
        return Err(response_error("embeddings", "missing or not an array"));
    };
    let mut data = Vec::with_capacity(embeddings.len());
    for (i, embedding) in embeddings.iter().enumerate() {
        let values = embedding
            .get("values")
            .ok_or_else(|| response_error(format!("embeddings[{i}].values"), "must be an array"))?;
        let vector = vector_value(values, &format!("embeddings[{i}].values"), base64)?;
        data.push(json!({"object": "embedding", "index": i, "embedding": vector}));
    }
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }))
}

/// An upstream's vector (a JSON array of numbers, at `at` in its answer) as OpenAI sends it:
/// the numbers, or with `base64` their little-endian float32 bytes in base64.
pub(super) fn vector_value(
    values: &Value,
    at: &str,
    base64: bool,
) -> Result<Value, TranslateError> {
    let floats = values
        .as_array()
        .ok_or_else(|| response_error(at, "must be an array"))?
        .iter()
        .map(Value::as_f64)
        .collect::<Option<Vec<f64>>>()
        .ok_or_else(|| response_error(at, "must hold numbers only"))?;
    Ok(if base64 {
        let bytes: Vec<u8> = floats
            .iter()
            .flat_map(|&value| (value as f32).to_le_bytes())
            .collect();
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        json!(floats)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Result<Value, TranslateError> {
        let body = body.as_object().expect("test body is an object").clone();
        embeddings_request_to_gemini(&body, "gemini-embedding-001")
    }

    #[test]
    fn each_input_becomes_one_request_with_the_dimensions() {
        let request = translate(
            json!({"model": "gemini/gemini-embedding-001", "input": ["a", "b"], "dimensions": 256}),
        )
        .expect("translates");
        assert_eq!(
            request,
            json!({"requests": [
                {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 256},
                {"content": {"parts": [{"text": "b"}]}, "outputDimensionality": 256},
            ]})
        );
        let request = translate(json!({"input": "one"})).expect("translates");
        assert_eq!(
            request,
            json!({"requests": [{"content": {"parts": [{"text": "one"}]}}]})
        );
    }

    #[test]
    fn token_arrays_and_bad_fields_are_refused_naming_them() {
        for (body, expected) in [
            (
                json!({"input": [[1, 2]]}),
                "input[0]: must be a string (Gemini embeds text, not token arrays)",
            ),
            (
                json!({"input": []}),
                "input: must be a string or a non-empty array of strings",
            ),
            (
                json!({"input": "a", "dimensions": 0}),
                "dimensions: must be a positive integer",
            ),
            (
                json!({"input": "a", "encoding_format": "int8"}),
                "encoding_format: must be \"float\" or \"base64\"",
            ),
        ] {
            match translate(body.clone()) {
                Err(TranslateError::InvalidRequest(message)) => {
                    assert_eq!(message, expected, "{body}")
                }
                other => panic!("{body}: expected InvalidRequest, got {other:?}"),
            }
        }
    }

    #[test]
    fn vectors_come_back_as_floats_or_little_endian_base64() {
        let answer = json!({"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25]}]});
        let floats = gemini_embeddings_to_openai(&answer, "gemini-embedding-001", false)
            .expect("translates");
        assert_eq!(
            floats,
            json!({"object": "list", "model": "gemini-embedding-001",
                   "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
                            {"object": "embedding", "index": 1, "embedding": [0.25]}],
                   "usage": {"prompt_tokens": 0, "total_tokens": 0}})
        );
        let encoded = gemini_embeddings_to_openai(&answer, "m", true).expect("translates");
        let text = encoded["data"][0]["embedding"]
            .as_str()
            .expect("base64 text");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("valid base64");
        assert_eq!(
            bytes,
            [0.5f32.to_le_bytes(), (-1.0f32).to_le_bytes()].concat()
        );
    }

    #[test]
    fn answers_without_vectors_are_invalid_responses() {
        for answer in [
            json!({}),
            json!({"embeddings": [{"values": ["x"]}]}),
            json!({"embeddings": [{}]}),
        ] {
            assert!(
                matches!(
                    gemini_embeddings_to_openai(&answer, "m", false),
                    Err(TranslateError::InvalidResponse(_))
                ),
                "{answer}"
            );
        }
    }
}
