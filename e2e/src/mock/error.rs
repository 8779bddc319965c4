//! Errors in each provider's wire format, rendered in exactly one place.

use std::borrow::Cow;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The provider API a route imitates; decides where the key is read and how errors look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
    /// Azure OpenAI: OpenAI's bodies, the key in `api-key` (or an Entra token as a bearer).
    Azure,
    /// Google's Gemini API: the key in `x-goog-api-key` (the `?key=` query form is moved into
    /// that header by the Gemini routes), errors as `google.rpc.Status`.
    Gemini,
}

impl Wire {
    /// The API key the request carries: `Authorization: Bearer` for OpenAI; `x-api-key` for
    /// Anthropic, or a bearer token as newer Anthropic SDKs send; `x-goog-api-key` for Gemini.
    /// Empty when absent or not visible ASCII.
    pub fn api_key(self, headers: &HeaderMap) -> &str {
        let x_api_key = || {
            headers
                .get("x-api-key")
                .and_then(|value| value.to_str().ok())
        };
        let key = match self {
            Wire::OpenAi => bearer_token(headers),
            Wire::Anthropic => x_api_key().or_else(|| bearer_token(headers)),
            Wire::Azure => headers
                .get("api-key")
                .and_then(|value| value.to_str().ok())
                .or_else(|| bearer_token(headers)),
            Wire::Gemini => headers
                .get(GEMINI_KEY_HEADER)
                .and_then(|value| value.to_str().ok()),
        };
        key.unwrap_or("")
    }
}

/// The header Google's SDKs send the API key in.
pub const GEMINI_KEY_HEADER: &str = "x-goog-api-key";

/// Google's message for a key it does not know (with status 400 `INVALID_ARGUMENT`).
const GEMINI_KEY_INVALID: &str = "API key not valid. Please pass a valid API key.";

/// Google's message for a request without any key (with status 403 `PERMISSION_DENIED`).
const GEMINI_KEY_MISSING: &str = "Method doesn't allow unregistered callers (callers without \
     established identity). Please use API Key or other form of API consumer identity to call \
     this API.";

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A failed request: the status and a human-readable message; the error `type` follows from the
/// status and the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
}

impl ApiError {
    /// 400: the request body is not what the API accepts.
    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 400: the body is not JSON or does not have the fields the API requires.
    pub fn invalid_body(error: serde_json::Error) -> Self {
        Self::invalid_request(format!("mock: invalid request body: {error}"))
    }

    /// The key is missing or not one of `--require-key`: 401, except on Gemini, where Google
    /// answers a wrong key with 400 `INVALID_ARGUMENT` ("API key not valid") and a missing one
    /// with 403 `PERMISSION_DENIED`.
    pub fn unauthorized(wire: Wire, key: &str) -> Self {
        let (status, message) = match (wire, key.is_empty()) {
            (Wire::Gemini, true) => (StatusCode::FORBIDDEN, GEMINI_KEY_MISSING),
            (Wire::Gemini, false) => (StatusCode::BAD_REQUEST, GEMINI_KEY_INVALID),
            (_, true) => (StatusCode::UNAUTHORIZED, "mock: no API key provided"),
            (_, false) => (StatusCode::UNAUTHORIZED, "mock: invalid API key"),
        };
        Self {
            status,
            message: Cow::Borrowed(message),
        }
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// A failure injected by `--fail-percent` or `fail_next`.
    pub fn injected(status: StatusCode) -> Self {
        Self {
            status,
            message: Cow::Owned(format!("mock: injected failure ({})", status.as_u16())),
        }
    }

    /// 500: the mock could not encode its own response (a bug in the mock).
    pub fn encoding(error: serde_json::Error) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: Cow::Owned(format!("mock: failed to encode the response: {error}")),
        }
    }

    /// The response body and status in `wire`'s error format.
    pub fn render(&self, wire: Wire) -> Response {
        let body = match wire {
            Wire::OpenAi | Wire::Azure => {
                let (kind, code) = openai_kind(self.status);
                json!({"error": {"message": self.message, "type": kind, "param": null, "code": code}})
            }
            Wire::Anthropic => json!({
                "type": "error",
                "error": {"type": anthropic_kind(self.status), "message": self.message},
            }),
            Wire::Gemini => self.google_status(),
        };
        (self.status, axum::Json(body)).into_response()
    }

    /// Google's `{"error": {code, message, status}}`; a wrong key also gets the `ErrorInfo`
    /// detail (reason `API_KEY_INVALID`) that clients use to tell it from other 400s.
    fn google_status(&self) -> serde_json::Value {
        let mut error = json!({
            "code": self.status.as_u16(),
            "message": self.message,
            "status": google_code(self.status),
        });
        if self.message == GEMINI_KEY_INVALID {
            error["details"] = json!([{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }]);
        }
        json!({ "error": error })
    }
}

/// The `google.rpc.Code` name Google's HTTP mapping gives a status.
fn google_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500.. => "INTERNAL",
        _ => "INVALID_ARGUMENT",
    }
}

/// OpenAI's error `type` and `code` for a status.
fn openai_kind(status: StatusCode) -> (&'static str, Option<&'static str>) {
    match status.as_u16() {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        429 => ("rate_limit_error", Some("rate_limit_exceeded")),
        500.. => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

/// Anthropic's error `type` for a status, as listed in its API errors page.
fn anthropic_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn openai_key_comes_from_the_bearer_token() {
        assert_eq!(
            Wire::OpenAi.api_key(&headers("authorization", "Bearer sk-one")),
            "sk-one"
        );
    }

    #[test]
    fn anthropic_key_comes_from_x_api_key_or_a_bearer_token() {
        let mut both = headers("x-api-key", "sk-ant");
        assert_eq!(Wire::Anthropic.api_key(&both), "sk-ant");
        assert_eq!(Wire::OpenAi.api_key(&both), "");
        both.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-b"),
        );
        assert_eq!(Wire::Anthropic.api_key(&both), "sk-ant");
        assert_eq!(
            Wire::Anthropic.api_key(&headers("authorization", "Bearer sk-b")),
            "sk-b"
        );
    }

    #[test]
    fn gemini_key_comes_from_x_goog_api_key_only() {
        assert_eq!(
            Wire::Gemini.api_key(&headers("x-goog-api-key", "gm-1")),
            "gm-1"
        );
        assert_eq!(
            Wire::Gemini.api_key(&headers("authorization", "Bearer gm-1")),
            ""
        );
    }

    #[test]
    fn gemini_errors_are_google_rpc_statuses() {
        let body = |error: ApiError| {
            let rendered = error.google_status();
            (
                error.status.as_u16(),
                rendered["error"]["status"].as_str().map(str::to_owned),
                rendered,
            )
        };
        let (code, status, wrong) = body(ApiError::unauthorized(Wire::Gemini, "bad"));
        assert_eq!((code, status.as_deref()), (400, Some("INVALID_ARGUMENT")));
        assert_eq!(wrong["error"]["code"], 400);
        assert_eq!(wrong["error"]["details"][0]["reason"], "API_KEY_INVALID");
        let (code, status, _) = body(ApiError::unauthorized(Wire::Gemini, ""));
        assert_eq!((code, status.as_deref()), (403, Some("PERMISSION_DENIED")));
        for (status, name) in [
            (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            (StatusCode::NOT_FOUND, "NOT_FOUND"),
            (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
            (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
            (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        ] {
            let rendered = ApiError::injected(status).google_status();
            assert_eq!(rendered["error"]["status"], name, "{status}");
            assert!(rendered["error"].get("details").is_none());
        }
    }

    #[test]
    fn non_bearer_authorization_is_no_key() {
        assert_eq!(
            Wire::OpenAi.api_key(&headers("authorization", "Basic abc")),
            ""
        );
    }

    #[test]
    fn error_types_follow_the_status_per_wire() {
        let overloaded = StatusCode::from_u16(529).expect("valid status");
        assert_eq!(anthropic_kind(overloaded), "overloaded_error");
        assert_eq!(anthropic_kind(StatusCode::SERVICE_UNAVAILABLE), "api_error");
        assert_eq!(
            anthropic_kind(StatusCode::TOO_MANY_REQUESTS),
            "rate_limit_error"
        );
        assert_eq!(
            openai_kind(StatusCode::TOO_MANY_REQUESTS).0,
            "rate_limit_error"
        );
        assert_eq!(openai_kind(overloaded).0, "server_error");
        assert_eq!(
            openai_kind(StatusCode::BAD_REQUEST),
            ("invalid_request_error", None)
        );
    }
}
