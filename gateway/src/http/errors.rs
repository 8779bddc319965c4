//! Errors rendered in the caller's wire format: the one place a [`GatewayError`] becomes an
//! HTTP response, and the one builder of error bodies per dialect (also used for the error
//! event that ends a broken stream).

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde_json::{Map, Value};

use super::observe::Served;
use crate::config::ProviderKind;
use crate::error::{GatewayError, LimitMetric};

/// The API dialect a caller speaks, which decides the error body shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{"error": {"message", "type", "param", "code"}}`
    OpenAi,
    /// `{"type": "error", "error": {"type", "message"}}`
    Anthropic,
}

impl Dialect {
    /// The dialect of a request path where no route says it: Anthropic under `/anthropic/`.
    pub fn for_path(path: &str) -> Self {
        if path.starts_with("/anthropic/") {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        }
    }

    /// The provider format that speaks this dialect.
    pub fn provider_kind(self) -> ProviderKind {
        match self {
            Dialect::OpenAi => ProviderKind::Openai,
            Dialect::Anthropic => ProviderKind::Anthropic,
        }
    }
}

/// A [`GatewayError`] on its way to a caller who speaks `dialect`: what the inference
/// handlers and their extractor fail with.
#[derive(Debug)]
pub struct ApiError {
    /// Caller's dialect.
    pub dialect: Dialect,
    /// The error.
    pub error: GatewayError,
    /// What the request was routed to when it failed (none before a target was resolved),
    /// for the request metrics.
    pub served: Option<Served>,
}

impl ApiError {
    /// `error` for a caller speaking `dialect`, failed before any target was chosen.
    pub fn new(dialect: Dialect, error: GatewayError) -> Self {
        Self {
            dialect,
            error,
            served: None,
        }
    }

    /// The same error, recorded as served by `served`.
    pub fn served_by(self, served: Served) -> Self {
        Self {
            served: Some(served),
            ..self
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = error_response(self.dialect, &self.error);
        if let Some(served) = self.served {
            response.extensions_mut().insert(served);
        }
        response
    }
}

/// What an error body says, before it is put in a dialect's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// The status the error stands for; it decides the `type` in both dialects.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// Machine-readable code (OpenAI bodies only).
    pub code: &'static str,
    /// Whether an OpenAI body carries `"param": null`: response bodies do, the error event
    /// ending a stream does not.
    pub openai_param: bool,
}

impl ErrorBody {
    /// The body of an error response for `error`.
    pub fn of(error: &GatewayError) -> Self {
        Self {
            status: error.status(),
            message: error.to_string(),
            code: error.code(),
            openai_param: true,
        }
    }

    /// The body in `dialect`'s shape.
    pub fn to_json(&self, dialect: Dialect) -> Value {
        let mut error = Map::new();
        match dialect {
            Dialect::OpenAi => {
                error.insert("message".into(), self.message.as_str().into());
                error.insert("type".into(), openai_type(self.status).into());
                if self.openai_param {
                    error.insert("param".into(), Value::Null);
                }
                error.insert("code".into(), self.code.into());
                let mut body = Map::new();
                body.insert("error".into(), Value::Object(error));
                Value::Object(body)
            }
            Dialect::Anthropic => {
                error.insert("type".into(), anthropic_type(self.status).into());
                error.insert("message".into(), self.message.as_str().into());
                let mut body = Map::new();
                body.insert("type".into(), "error".into());
                body.insert("error".into(), Value::Object(error));
                Value::Object(body)
            }
        }
    }
}

/// Render `error` for a caller speaking `dialect`.
pub fn error_response(dialect: Dialect, error: &GatewayError) -> Response {
    let status = error.status();
    // An upstream's own error body in the caller's format is passed on untouched.
    if let GatewayError::UpstreamRejected { kind, body, .. } = error {
        if *kind == dialect.provider_kind()
            && serde_json::from_slice::<serde_json::Value>(body).is_ok()
        {
            return (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                body.clone(),
            )
                .into_response();
        }
    }
    let body = ErrorBody::of(error).to_json(dialect);
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    match error {
        GatewayError::CircuitOpen { retry_after, .. } => {
            insert(
                headers,
                header::RETRY_AFTER.as_str(),
                retry_after.as_secs().max(1).to_string(),
            );
        }
        GatewayError::RateLimited {
            metric,
            limit,
            reset_after,
            ..
        } => {
            let seconds = reset_after.as_secs_f64().ceil().max(1.0) as u64;
            insert(headers, header::RETRY_AFTER.as_str(), seconds.to_string());
            if *metric != LimitMetric::InFlight {
                rate_limit_headers(headers, metric.as_str(), *limit, 0, seconds);
            }
        }
        _ => {}
    }
    response
}

/// `x-ratelimit-limit-<metric>`, `x-ratelimit-remaining-<metric>` and
/// `x-ratelimit-reset-<metric>` (seconds, as `17s`), as OpenAI sends them, for `requests` or
/// `tokens`.
pub fn rate_limit_headers(
    headers: &mut http::HeaderMap,
    metric: &str,
    limit: u64,
    remaining: u64,
    reset_seconds: u64,
) {
    let [limit_name, remaining_name, reset_name] = match metric {
        "requests" => [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ],
        "tokens" => [
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ],
        _ => return,
    };
    headers.insert(
        http::HeaderName::from_static(limit_name),
        HeaderValue::from(limit),
    );
    headers.insert(
        http::HeaderName::from_static(remaining_name),
        HeaderValue::from(remaining),
    );
    insert(headers, reset_name, format!("{reset_seconds}s"));
}

/// Set a header from computed text (names and values here are always valid).
pub fn insert(headers: &mut http::HeaderMap, name: &str, value: String) {
    if let (Ok(name), Ok(value)) = (
        http::HeaderName::try_from(name),
        HeaderValue::try_from(value),
    ) {
        headers.insert(name, value);
    }
}

fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "insufficient_quota",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn openai_callers_get_openai_error_json() {
        let response = error_response(
            Dialect::OpenAi,
            &GatewayError::NotFound("no such model".into()),
        );
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = body_json(response).await;
        assert_eq!(body["error"]["message"], "no such model");
        assert_eq!(body["error"]["type"], "not_found_error");
        assert_eq!(body["error"]["code"], "model_not_found");
    }

    #[tokio::test]
    async fn anthropic_callers_get_anthropic_error_json() {
        let response = error_response(
            Dialect::Anthropic,
            &GatewayError::PayloadTooLarge { limit_mb: 1 },
        );
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = body_json(response).await;
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "request_too_large");
    }

    #[tokio::test]
    async fn rate_limits_carry_openai_style_headers() {
        let response = error_response(
            Dialect::OpenAi,
            &GatewayError::RateLimited {
                message: "slow down".into(),
                metric: LimitMetric::Requests,
                limit: 10,
                reset_after: std::time::Duration::from_millis(12_300),
            },
        );
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let headers = response.headers();
        assert_eq!(headers[header::RETRY_AFTER], "13");
        assert_eq!(headers["x-ratelimit-limit-requests"], "10");
        assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
        assert_eq!(headers["x-ratelimit-reset-requests"], "13s");
    }

    #[tokio::test]
    async fn open_circuits_carry_retry_after() {
        let response = error_response(
            Dialect::OpenAi,
            &GatewayError::CircuitOpen {
                provider: "p".into(),
                retry_after: std::time::Duration::from_millis(2500),
            },
        );
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }
}
