//! AWS Bedrock Runtime's InvokeModel (`POST /model/{modelId}/invoke`) for the embedding models
//! the gateway speaks: Amazon Titan Text Embeddings (`amazon.titan-embed-text-v1`, `-v2:0`) and
//! Cohere Embed (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`). Callers are checked
//! as on the Converse routes (SigV4, STS's temporary credentials, Bedrock API keys). The family
//! is the model id's (the last segment of an ARN, after a cross-region profile's geography);
//! another model is AWS's 400 "The provided model identifier is invalid."
//!
//! Bodies are checked as strictly as Bedrock checks them (400 `ValidationException`
//! "Malformed input request: ..."): Titan V1 takes `inputText` only, V2 also `dimensions` (256,
//! 512 or 1024, default 1024), `normalize` and `embeddingTypes`; Cohere takes `texts` (1 to 96),
//! a required `input_type`, `truncate`, `images` and `embedding_types` (`float` only here).
//! Vectors are the deterministic unit vectors of `/v1/embeddings` (seeded by the text), of the
//! model's size (Titan V1 1536, V2 `dimensions`, Cohere 1024). Titan answers
//! `{"embedding", "inputTextTokenCount"}`, Cohere `{"embeddings", "id", "response_type",
//! "texts"}`; both carry the prompt's words as `x-amzn-bedrock-input-token-count`, as Bedrock
//! reports usage in its headers.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::bedrock::{authenticate, check_fields, malformed, model_id, sigv4_authorization};
use super::embeddings::text_vector;
use super::entra::guid;
use super::error::{ApiError, Wire};
use super::sigv4;
use super::stats::Route;
use super::MockState;

/// The header Bedrock reports an invocation's input tokens in.
const INPUT_TOKENS_HEADER: HeaderName = HeaderName::from_static("x-amzn-bedrock-input-token-count");

/// AWS's answer to a model id it does not have.
const INVALID_MODEL: &str = "The provided model identifier is invalid.";

/// The fields of a Titan Text Embeddings V1 body.
const TITAN_V1_FIELDS: &[&str] = &["inputText"];

/// The fields of a Titan Text Embeddings V2 body.
const TITAN_V2_FIELDS: &[&str] = &["inputText", "dimensions", "normalize", "embeddingTypes"];

/// The fields of a Cohere Embed body.
const COHERE_FIELDS: &[&str] = &[
    "texts",
    "images",
    "input_type",
    "truncate",
    "embedding_types",
];

/// Cohere's `input_type` values.
const COHERE_INPUT_TYPES: &[&str] = &[
    "search_document",
    "search_query",
    "classification",
    "clustering",
];

/// Most texts one Cohere call embeds.
const COHERE_MAX_TEXTS: usize = 96;

/// The embedding models InvokeModel serves here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    TitanV1,
    TitanV2,
    Cohere,
}

impl Model {
    /// The model of a decoded model id, if it is one of the embedding models.
    fn of(model_id: &str) -> Option<Self> {
        let id = model_id.rsplit('/').next().unwrap_or(model_id);
        let id = ["us.", "eu.", "apac.", "us-gov.", "global."]
            .iter()
            .find_map(|geo| id.strip_prefix(geo))
            .unwrap_or(id);
        if id.starts_with("amazon.titan-embed-text-v1") {
            Some(Self::TitanV1)
        } else if id.starts_with("amazon.titan-embed-text-v2") {
            Some(Self::TitanV2)
        } else if id.starts_with("cohere.embed-english-v3")
            || id.starts_with("cohere.embed-multilingual-v3")
        {
            Some(Self::Cohere)
        } else {
            None
        }
    }
}

/// `POST /model/{modelId}/invoke`: counted by route, key, model and signing region, the caller
/// checked, then answered.
pub async fn invoke(
    State(state): State<Arc<MockState>>,
    model: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = sigv4::Request {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    let key = Wire::Bedrock.api_key(&headers);
    if let Some(auth) = sigv4_authorization(&headers) {
        state.stats.record_region(auth.region);
    }
    let model = model_id(model);
    if let Ok(model) = &model {
        state.stats.record_model(model);
    }
    let checked = authenticate(&state, &request);
    state
        .serve_checked(
            Wire::Bedrock,
            Route::BedrockInvokeModel,
            key,
            checked,
            |_| embed(&model?, &body),
        )
        .await
}

/// The answer of `model_id` to `body`.
fn embed(model_id: &str, body: &[u8]) -> Result<Response, ApiError> {
    let Some(model) = Model::of(model_id) else {
        return Err(ApiError::invalid_request(INVALID_MODEL));
    };
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(malformed("", "expected type: JSONObject")),
        Err(error) => return Err(malformed("", error)),
    };
    let (answer, tokens) = match model {
        Model::TitanV1 | Model::TitanV2 => titan(model, &object)?,
        Model::Cohere => cohere(&object)?,
    };
    let mut response = Json(answer).into_response();
    response
        .headers_mut()
        .insert(INPUT_TOKENS_HEADER, tokens.into());
    Ok(response)
}

/// The words of `text`, at least 1: the mock's token count.
fn tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as u64).max(1)
}

/// A Titan body's answer and its token count.
fn titan(model: Model, object: &Map<String, Value>) -> Result<(Value, u64), ApiError> {
    let fields = match model {
        Model::TitanV1 => TITAN_V1_FIELDS,
        _ => TITAN_V2_FIELDS,
    };
    check_fields(object, fields, "")?;
    let text = match object.get("inputText") {
        Some(Value::String(text)) if !text.is_empty() => text,
        Some(Value::String(_)) => {
            return Err(malformed("/inputText", "expected minLength: 1, actual: 0"))
        }
        Some(other) => {
            return Err(malformed(
                "/inputText",
                format_args!("expected type: String, found: {}", json_type(other)),
            ))
        }
        None => return Err(malformed("", "required key [inputText] not found")),
    };
    let dims = match (model, object.get("dimensions")) {
        (Model::TitanV1, _) => 1536,
        (_, None) => 1024,
        (_, Some(value)) => match value.as_u64() {
            Some(dims @ (256 | 512 | 1024)) => dims as usize,
            _ => {
                return Err(malformed(
                    "/dimensions",
                    format_args!("{value} is not a valid enum value"),
                ))
            }
        },
    };
    let count = tokens(text);
    let answer = json!({"embedding": text_vector(text, dims), "inputTextTokenCount": count});
    Ok((answer, count))
}

/// A Cohere body's answer and its token count.
fn cohere(object: &Map<String, Value>) -> Result<(Value, u64), ApiError> {
    check_fields(object, COHERE_FIELDS, "")?;
    let texts: Vec<&str> = match object.get("texts") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().ok_or_else(|| {
                    malformed(
                        &format!("/texts/{i}"),
                        format_args!("expected type: String, found: {}", json_type(item)),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(malformed(
                "/texts",
                format_args!("expected type: JSONArray, found: {}", json_type(other)),
            ))
        }
        None => return Err(malformed("", "required key [texts] not found")),
    };
    if texts.is_empty() || texts.len() > COHERE_MAX_TEXTS {
        return Err(malformed(
            "/texts",
            format_args!(
                "expected between 1 and {COHERE_MAX_TEXTS} items, found: {}",
                texts.len()
            ),
        ));
    }
    match object.get("input_type").and_then(Value::as_str) {
        Some(kind) if COHERE_INPUT_TYPES.contains(&kind) => {}
        Some(kind) => {
            return Err(malformed(
                "/input_type",
                format_args!("{kind} is not a valid enum value"),
            ))
        }
        None => return Err(malformed("", "required key [input_type] not found")),
    }
    let vectors: Vec<Vec<f32>> = texts.iter().map(|text| text_vector(text, 1024)).collect();
    let (response_type, embeddings) = match object.get("embedding_types") {
        None => ("embeddings_floats", json!(vectors)),
        Some(kinds) if kinds == &json!(["float"]) => {
            ("embeddings_by_type", json!({ "float": vectors }))
        }
        Some(kinds) => {
            return Err(ApiError::invalid_request(format!(
                "mock: embedding_types {kinds} is not served (only [\"float\"])"
            )))
        }
    };
    let count = texts.iter().map(|text| tokens(text)).sum();
    let answer = json!({
        "embeddings": embeddings,
        "id": guid(),
        "response_type": response_type,
        "texts": texts,
    });
    Ok((answer, count))
}

/// The JSON type name AWS's validation messages use.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "Boolean",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "JSONArray",
        Value::Object(_) => "JSONObject",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(model: &str, body: Value) -> String {
        match embed(model, body.to_string().as_bytes()) {
            Err(error) => error.message.into_owned(),
            Ok(_) => panic!("{body} was accepted by {model}"),
        }
    }

    async fn answer(model: &str, body: Value) -> (Value, String) {
        let response = embed(model, body.to_string().as_bytes()).expect("answered");
        let tokens = response.headers()[INPUT_TOKENS_HEADER]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (serde_json::from_slice(&bytes).expect("JSON"), tokens)
    }

    #[test]
    fn models_are_told_by_their_id() {
        assert_eq!(
            Model::of("amazon.titan-embed-text-v2:0"),
            Some(Model::TitanV2)
        );
        assert_eq!(Model::of("us.cohere.embed-english-v3"), Some(Model::Cohere));
        assert_eq!(
            Model::of("arn:aws:bedrock:x:1:p/amazon.titan-embed-text-v1"),
            Some(Model::TitanV1)
        );
        assert_eq!(
            message("anthropic.claude-3-5-haiku", json!({})),
            INVALID_MODEL
        );
    }

    #[test]
    fn bodies_are_checked_as_bedrock_checks_them() {
        let titan = "amazon.titan-embed-text-v2:0";
        assert!(message(
            "amazon.titan-embed-text-v1",
            json!({"inputText": "a", "dimensions": 256})
        )
        .contains("extraneous key [dimensions]"));
        assert!(message(titan, json!({"inputText": ["a"]}))
            .contains("#/inputText: expected type: String, found: JSONArray"));
        assert!(message(titan, json!({"inputText": "a", "dimensions": 300}))
            .contains("300 is not a valid enum value"));
        assert!(message(titan, json!({})).contains("required key [inputText]"));
        let cohere = "cohere.embed-english-v3";
        assert!(message(cohere, json!({"texts": ["a"]})).contains("required key [input_type]"));
        assert!(
            message(cohere, json!({"texts": [], "input_type": "search_query"}))
                .contains("between 1 and 96")
        );
        assert!(message(cohere, json!({"texts": ["a"], "input_type": "x"}))
            .contains("x is not a valid enum value"));
        assert!(message(cohere, json!({"inputText": "a"})).contains("extraneous key [inputText]"));
    }

    #[tokio::test]
    async fn answers_are_each_familys_with_the_token_count_in_a_header() {
        let (titan, tokens) = answer(
            "amazon.titan-embed-text-v2:0",
            json!({"inputText": "two words", "dimensions": 256}),
        )
        .await;
        assert_eq!(titan["embedding"].as_array().map(Vec::len), Some(256));
        assert_eq!(titan["inputTextTokenCount"], 2);
        assert_eq!(tokens, "2");
        let (cohere, tokens) = answer(
            "cohere.embed-multilingual-v3",
            json!({"texts": ["a b", "c"], "input_type": "search_document"}),
        )
        .await;
        assert_eq!(cohere["response_type"], "embeddings_floats");
        assert_eq!(cohere["embeddings"][1].as_array().map(Vec::len), Some(1024));
        assert_eq!(cohere["texts"], json!(["a b", "c"]));
        assert_eq!(tokens, "3");
    }
}
