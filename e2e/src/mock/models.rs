//! `GET /v1/models` in both formats, the model lists (Gemini's too), and the 404 for unknown
//! paths.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use super::error::{ApiError, Wire, GEMINI_KEY_HEADER};
use super::{gemini, with_key_header, MockState};

/// `created` of every listed model (2024-10-22, the day the Anthropic default model shipped).
const MODEL_CREATED: u64 = 1_729_555_200;
const MODEL_CREATED_AT: &str = "2024-10-22T00:00:00Z";

/// The model list bodies, encoded once at start-up, and the ids they list.
#[derive(Debug)]
pub struct ModelLists {
    openai: Bytes,
    anthropic: Bytes,
    gemini: Bytes,
    ids: Vec<String>,
}

impl ModelLists {
    /// The lists for `models`.
    pub fn new(models: &[String]) -> Self {
        let openai = json!({
            "object": "list",
            "data": models.iter().map(|id| json!({
                "id": id, "object": "model", "created": MODEL_CREATED, "owned_by": "mock",
            })).collect::<Vec<_>>(),
        });
        let anthropic = json!({
            "data": models.iter().map(|id| json!({
                "type": "model", "id": id, "display_name": id, "created_at": MODEL_CREATED_AT,
            })).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": models.first(),
            "last_id": models.last(),
        });
        let gemini =
            json!({"models": models.iter().map(|id| gemini::model(id)).collect::<Vec<_>>()});
        Self {
            openai: Bytes::from(openai.to_string()),
            anthropic: Bytes::from(anthropic.to_string()),
            gemini: Bytes::from(gemini.to_string()),
            ids: models.to_vec(),
        }
    }

    /// `GET /v1beta/models`'s body.
    pub fn gemini(&self) -> Bytes {
        self.gemini.clone()
    }

    /// Whether `id` is one of the configured models.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.iter().any(|known| known == id)
    }
}

/// The wire a request outside the inference routes speaks: Anthropic when it sends the
/// `anthropic-version` header its SDKs always send.
fn wire_of(headers: &HeaderMap) -> Wire {
    if headers.contains_key("anthropic-version") {
        Wire::Anthropic
    } else {
        Wire::OpenAi
    }
}

/// `GET /v1/models`: OpenAI's list, or Anthropic's when the request has `anthropic-version`.
pub async fn list_models(State(state): State<Arc<MockState>>, headers: HeaderMap) -> Response {
    let wire = wire_of(&headers);
    let key = wire.api_key(&headers);
    let response = match state.authenticate(wire, key) {
        Ok(()) => {
            let body = match wire {
                Wire::OpenAi | Wire::Azure | Wire::Bedrock => state.models.openai.clone(),
                Wire::Anthropic => state.models.anthropic.clone(),
                Wire::Gemini => state.models.gemini(),
            };
            ([(CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(error) => error.render(wire),
    };
    with_key_header(response, key)
}

/// Unknown paths: 404 in the caller's provider format, as the real APIs answer; Google's for
/// `/v1beta/...`, Vertex AI's `/v1/projects/...` and `/v1beta1/...`, or a request with
/// `x-goog-api-key`, AWS's for Bedrock's `/model/...`.
pub async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    let google = ["/v1beta/", "/v1/projects/", "/v1beta1/"];
    let wire = if google.iter().any(|prefix| uri.path().starts_with(prefix))
        || headers.contains_key(GEMINI_KEY_HEADER)
    {
        Wire::Gemini
    } else if uri.path().starts_with("/model/") {
        Wire::Bedrock
    } else {
        wire_of(&headers)
    };
    let error = ApiError::not_found("mock: unknown path");
    with_key_header(error.render(wire), wire.api_key(&headers))
}
