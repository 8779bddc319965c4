//! OpenAI embeddings on Bedrock: `POST /v1/embeddings` becomes one InvokeModel call
//! (`/model/{modelId}/invoke`) whose body is the model family's own: Amazon Titan's
//! `{"inputText"}` (one text per call) or Cohere's `{"texts", "input_type"}`. The caller's body
//! is checked and reduced to its texts first, before the model is known
//! ([`embeddings_request_to_bedrock`]); each target's family then shapes it
//! ([`bedrock_embeddings_body`]). Both answers come back as OpenAI's `data` list.

use super::embeddings_to_gemini::vector_value;
use super::{positive_integer, present, request_error, response_error, TranslateError};
use serde_json::{json, Map, Value};

/// Most texts one Cohere embedding call takes (Bedrock's limit).
pub const COHERE_MAX_TEXTS: usize = 96;

/// The embedding model families Bedrock's InvokeModel is spoken to in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingFamily {
    /// `amazon.titan-embed-text-v1`, `amazon.titan-embed-text-v2:0`, ...
    Titan,
    /// `cohere.embed-english-v3`, `cohere.embed-multilingual-v3`, ...
    Cohere,
}

impl EmbeddingFamily {
    /// The family of a Bedrock model id (a plain id, a cross-region profile such as
    /// `us.cohere.embed-...`, or an ARN ending in one); `None` for any other model.
    pub fn of(model_id: &str) -> Option<Self> {
        let id = model_id.rsplit('/').next().unwrap_or(model_id);
        // A cross-region inference profile puts a geography before the provider.
        let id = ["us.", "eu.", "apac.", "us-gov.", "global."]
            .iter()
            .find_map(|geo| id.strip_prefix(geo))
            .unwrap_or(id);
        if id.starts_with("amazon.titan-embed-text") {
            Some(Self::Titan)
        } else if id.starts_with("cohere.embed-") {
            Some(Self::Cohere)
        } else {
            None
        }
    }
}

/// Checks an OpenAI embeddings body for Bedrock and reduces it to `{"texts": [...]}` (with
/// `dimensions` when set), which [`bedrock_embeddings_body`] turns into a family's body.
pub fn embeddings_request_to_bedrock(
    body: &Map<String, Value>,
    _model: &str,
) -> Result<Value, TranslateError> {
    let texts: Vec<Value> = match present(body, "input") {
        Some(Value::String(text)) => vec![Value::String(text.clone())],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(_) => Ok(item.clone()),
                _ => Err(request_error(
                    format!("input[{i}]"),
                    "must be a string (Bedrock's embedding models embed text, not token arrays)",
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(request_error(
                "input",
                "must be a string or a non-empty array of strings",
            ))
        }
    };
    if let Some(format) = present(body, "encoding_format") {
        if !matches!(format.as_str(), Some("float" | "base64")) {
            return Err(request_error(
                "encoding_format",
                "must be \"float\" or \"base64\"",
            ));
        }
    }
    let mut reduced = json!({ "texts": texts });
    if let Some(dimensions) = present(body, "dimensions") {
        reduced["dimensions"] = positive_integer(dimensions, "dimensions")?.into();
    }
    Ok(reduced)
}

/// The InvokeModel body of `family` (for model `model_id`) for a body reduced by
/// [`embeddings_request_to_bedrock`].
pub fn bedrock_embeddings_body(
    reduced: &Map<String, Value>,
    family: EmbeddingFamily,
    model_id: &str,
) -> Result<Value, TranslateError> {
    let texts = reduced
        .get("texts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let dimensions = reduced.get("dimensions");
    match family {
        EmbeddingFamily::Titan => {
            let [text] = texts else {
                return Err(request_error(
                    "input",
                    format!(
                        "Amazon Titan ({model_id}) embeds one text per request (this one has {}): send them one by one, or use a Cohere embedding model",
                        texts.len()
                    ),
                ));
            };
            let mut body = json!({ "inputText": text });
            if let Some(dimensions) = dimensions {
                if model_id.contains("titan-embed-text-v1") {
                    return Err(request_error(
                        "dimensions",
                        format!("{model_id} has a fixed size (1536); Titan Text Embeddings V2 takes 256, 512 or 1024"),
                    ));
                }
                body["dimensions"] = dimensions.clone();
            }
            Ok(body)
        }
        EmbeddingFamily::Cohere => {
            if texts.len() > COHERE_MAX_TEXTS {
                return Err(request_error(
                    "input",
                    format!(
                        "Cohere on Bedrock ({model_id}) embeds at most {COHERE_MAX_TEXTS} texts per request (this one has {})",
                        texts.len()
                    ),
                ));
            }
            if dimensions.is_some() {
                return Err(request_error(
                    "dimensions",
                    format!(
                        "{model_id} has a fixed size; Cohere's embed v3 models take no dimensions"
                    ),
                ));
            }
            Ok(json!({ "texts": texts, "input_type": "search_document" }))
        }
    }
}

/// Translates an InvokeModel answer of either family into an OpenAI embeddings response for
/// `model`: Titan's `{"embedding", "inputTextTokenCount"}` or Cohere's `{"embeddings"}` (whose
/// token count is only in Bedrock's `x-amzn-bedrock-input-token-count` header, `input_tokens`).
/// `base64`: the caller asked for `encoding_format: "base64"`.
pub fn bedrock_embeddings_to_openai(
    response: &Value,
    model: &str,
    base64: bool,
    input_tokens: Option<u64>,
) -> Result<Value, TranslateError> {
    let (vectors, path, prompt_tokens): (Vec<&Value>, &str, Option<u64>) =
        match (response.get("embedding"), response.get("embeddings")) {
            (Some(embedding), _) => (
                vec![embedding],
                "embedding",
                response.get("inputTextTokenCount").and_then(Value::as_u64),
            ),
            (None, Some(Value::Array(embeddings))) => {
                (embeddings.iter().collect(), "embeddings", None)
            }
            _ => {
                return Err(response_error(
                    "embedding",
                    "missing (neither Titan's embedding nor Cohere's embeddings)",
                ))
            }
        };
    let mut data = Vec::with_capacity(vectors.len());
    for (i, vector) in vectors.into_iter().enumerate() {
        let at = match path {
            "embedding" => path.to_owned(),
            _ => format!("{path}[{i}]"),
        };
        let embedding = vector_value(vector, &at, base64)?;
        data.push(json!({"object": "embedding", "index": i, "embedding": embedding}));
    }
    let prompt_tokens = prompt_tokens.or(input_tokens).unwrap_or(0);
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reduce(body: Value) -> Result<Map<String, Value>, TranslateError> {
        let body = body.as_object().expect("test body is an object").clone();
        match embeddings_request_to_bedrock(&body, "")? {
            Value::Object(map) => Ok(map),
            other => panic!("not an object: {other}"),
        }
    }

    fn message(result: Result<Value, TranslateError>) -> String {
        match result {
            Err(TranslateError::InvalidRequest(message)) => message,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn families_are_told_by_the_model_id() {
        for (id, family) in [
            ("amazon.titan-embed-text-v1", Some(EmbeddingFamily::Titan)),
            ("amazon.titan-embed-text-v2:0", Some(EmbeddingFamily::Titan)),
            ("cohere.embed-english-v3", Some(EmbeddingFamily::Cohere)),
            (
                "us.cohere.embed-multilingual-v3",
                Some(EmbeddingFamily::Cohere),
            ),
            (
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/cohere.embed-english-v3",
                Some(EmbeddingFamily::Cohere),
            ),
            ("anthropic.claude-3-5-haiku-20241022-v1:0", None),
            ("amazon.titan-text-express-v1", None),
        ] {
            assert_eq!(EmbeddingFamily::of(id), family, "{id}");
        }
    }

    #[test]
    fn titan_takes_one_text_and_v2_its_dimensions() {
        let one = reduce(json!({"input": "hi", "dimensions": 256})).expect("reduces");
        assert_eq!(
            bedrock_embeddings_body(&one, EmbeddingFamily::Titan, "amazon.titan-embed-text-v2:0")
                .expect("translates"),
            json!({"inputText": "hi", "dimensions": 256})
        );
        let fixed = message(bedrock_embeddings_body(
            &one,
            EmbeddingFamily::Titan,
            "amazon.titan-embed-text-v1",
        ));
        assert!(
            fixed.starts_with("dimensions: amazon.titan-embed-text-v1 has a fixed size"),
            "{fixed}"
        );
        let two = reduce(json!({"input": ["a", "b"]})).expect("reduces");
        assert_eq!(
            message(bedrock_embeddings_body(&two, EmbeddingFamily::Titan, "amazon.titan-embed-text-v2:0")),
            "input: Amazon Titan (amazon.titan-embed-text-v2:0) embeds one text per request (this one has 2): send them one by one, or use a Cohere embedding model"
        );
    }

    #[test]
    fn cohere_takes_up_to_96_texts_as_search_documents() {
        let two =
            reduce(json!({"input": ["a", "b"], "encoding_format": "base64"})).expect("reduces");
        assert_eq!(
            bedrock_embeddings_body(&two, EmbeddingFamily::Cohere, "cohere.embed-english-v3")
                .expect("translates"),
            json!({"texts": ["a", "b"], "input_type": "search_document"})
        );
        let many = reduce(json!({"input": vec!["x"; 97]})).expect("reduces");
        assert!(
            message(bedrock_embeddings_body(&many, EmbeddingFamily::Cohere, "c"))
                .contains("at most 96 texts per request (this one has 97)")
        );
    }

    #[test]
    fn token_arrays_and_bad_fields_are_refused_naming_them() {
        for (body, expected) in [
            (json!({"input": [[1, 2]]}), "input[0]: must be a string"),
            (
                json!({"input": []}),
                "input: must be a string or a non-empty array",
            ),
            (
                json!({"input": "a", "dimensions": 0}),
                "dimensions: must be a positive integer",
            ),
            (
                json!({"input": "a", "encoding_format": "int8"}),
                "encoding_format: must be",
            ),
        ] {
            match reduce(body.clone()) {
                Err(TranslateError::InvalidRequest(message)) => {
                    assert!(message.starts_with(expected), "{body}: {message}")
                }
                other => panic!("{body}: expected InvalidRequest, got {other:?}"),
            }
        }
    }

    #[test]
    fn both_answers_become_openai_lists_with_usage() {
        let titan = json!({"embedding": [0.5, -1.0], "inputTextTokenCount": 3});
        assert_eq!(
            bedrock_embeddings_to_openai(&titan, "t", false, Some(9)).expect("translates"),
            json!({"object": "list", "model": "t",
                   "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}],
                   "usage": {"prompt_tokens": 3, "total_tokens": 3}})
        );
        let cohere = json!({"embeddings": [[0.25], [0.5]], "id": "x",
                            "response_type": "embeddings_floats", "texts": ["a", "b"]});
        let answer = bedrock_embeddings_to_openai(&cohere, "c", true, Some(2)).expect("translates");
        assert_eq!(answer["data"][1]["index"], 1);
        assert_eq!(
            answer["data"][1]["embedding"], "AAAAPw==",
            "0.5f32 little-endian"
        );
        assert_eq!(answer["usage"]["prompt_tokens"], 2, "from Bedrock's header");
        assert!(matches!(
            bedrock_embeddings_to_openai(&json!({"embeddings": [["x"]]}), "c", false, None),
            Err(TranslateError::InvalidResponse(_))
        ));
    }
}
