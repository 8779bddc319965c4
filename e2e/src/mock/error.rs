//! Errors in each provider's wire format, rendered in exactly one place.

use std::borrow::Cow;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::google_oauth::Refusal;
use super::{sigv4, TOKEN_ERROR_HEADER};

/// The provider API a route imitates; decides where the key is read and how errors look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
    /// Azure OpenAI: OpenAI's bodies, the key in `api-key` (or an Entra token as a bearer).
    Azure,
    /// Google's Gemini API: the key in `x-goog-api-key` (the `?key=` query form is moved into
    /// that header by the Gemini routes), errors as `google.rpc.Status`. Vertex AI's routes
    /// answer in it too; they read their OAuth2 bearer token themselves.
    Gemini,
    /// AWS Bedrock Runtime: SigV4-signed requests (the key is the access key id of the
    /// credential) or a Bedrock API key as a bearer token; errors as `{"message"}` with the type
    /// in `x-amzn-ErrorType`.
    Bedrock,
}

impl Wire {
    /// The API key the request carries: `Authorization: Bearer` for OpenAI; `x-api-key` for
    /// Anthropic, or a bearer token as newer Anthropic SDKs send; `x-goog-api-key` for Gemini;
    /// the bearer token or the SigV4 credential's access key id for Bedrock. Empty when absent
    /// or not visible ASCII.
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
            Wire::Bedrock => bearer_token(headers).or_else(|| {
                let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
                Some(sigv4::Authorization::parse(value).ok()?.access_key_id)
            }),
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

/// Google's message for a bearer token it does not accept, unknown or expired (401
/// `UNAUTHENTICATED`).
const GOOGLE_CREDENTIALS_INVALID: &str = "Request had invalid authentication credentials. \
     Expected OAuth 2 access token, login cookie or other valid authentication credential. See \
     https://developers.google.com/identity/sign-in/web/devconsole-project.";

/// Google's message for a request without credentials to an API that needs OAuth2 (401
/// `UNAUTHENTICATED`).
const GOOGLE_CREDENTIALS_MISSING: &str = "Request is missing required authentication credential. \
     Expected OAuth 2 access token, login cookie or other valid authentication credential. See \
     https://developers.google.com/identity/sign-in/web/devconsole-project.";

/// Google's message for a token issued without the scope the API needs (403
/// `PERMISSION_DENIED`).
const GOOGLE_SCOPES_INSUFFICIENT: &str = "Request had insufficient authentication scopes.";

/// What Google's 401s tell clients about the credentials they want.
const GOOGLE_WWW_AUTHENTICATE: &str = "Bearer realm=\"https://accounts.google.com/\"";

/// The header AWS names an error's type in (boto3 reads the error code from it).
pub const AWS_ERROR_TYPE_HEADER: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// AWS's answer to a request without any credentials (403 `MissingAuthenticationTokenException`).
const BEDROCK_KEY_MISSING: &str = "Missing Authentication Token";

/// Bedrock's answer to a bearer token that is not a valid API key (403).
const BEDROCK_KEY_INVALID: &str = "Authentication failed: Please make sure your API Key is valid.";

/// Azure OpenAI's answer to a bearer token it does not accept, whether unknown, for another
/// audience or expired (401, in the body `{"statusCode": 401, "message": ...}`).
const AZURE_TOKEN_REFUSED: &str = "Unauthorized. Access token is missing, invalid, audience \
     is incorrect (https://cognitiveservices.azure.com), or have expired.";

/// The token of an `Authorization: Bearer` header; `None` without one or when it is not text.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A failed request: the status and a human-readable message; the error `type` follows from the
/// status and the wire, unless `kind` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    /// AWS's error type when it is not the status's (Bedrock's authentication failures are all
    /// 403s of different types); on Azure and Gemini (Vertex AI), why a bearer token was refused,
    /// which makes the error that wire's token refusal (see [`Self::azure_token_refused`] and
    /// [`Self::google_token_refused`]); the other wires ignore it.
    pub kind: Option<&'static str>,
}

impl ApiError {
    /// An error of `status` whose type follows from the status.
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            message: message.into(),
            kind: None,
        }
    }

    /// 403 of AWS's type `kind`: how AWS answers requests it cannot authenticate.
    pub fn aws_forbidden(kind: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: Some(kind),
            ..Self::new(StatusCode::FORBIDDEN, message)
        }
    }

    /// 401 with Azure's body for a bearer token it does not accept, whatever `reason` (named only
    /// in the mock's [`TOKEN_ERROR_HEADER`]).
    pub fn azure_token_refused(reason: &'static str) -> Self {
        Self {
            kind: Some(reason),
            ..Self::new(StatusCode::UNAUTHORIZED, AZURE_TOKEN_REFUSED)
        }
    }

    /// Google's refusal of an OAuth2 bearer token (the reason named only in the mock's
    /// [`TOKEN_ERROR_HEADER`]): 401 `UNAUTHENTICATED` when it is missing, unknown or expired,
    /// 403 `PERMISSION_DENIED` when it lacks the API's scope.
    pub fn google_token_refused(refusal: Refusal) -> Self {
        let (status, message) = match refusal {
            Refusal::Missing => (StatusCode::UNAUTHORIZED, GOOGLE_CREDENTIALS_MISSING),
            Refusal::Unknown | Refusal::Expired => {
                (StatusCode::UNAUTHORIZED, GOOGLE_CREDENTIALS_INVALID)
            }
            Refusal::Scope => (StatusCode::FORBIDDEN, GOOGLE_SCOPES_INSUFFICIENT),
        };
        Self {
            kind: Some(refusal.reason()),
            ..Self::new(status, message)
        }
    }

    /// 400: the request body is not what the API accepts.
    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400: the body is not JSON or does not have the fields the API requires.
    pub fn invalid_body(error: serde_json::Error) -> Self {
        Self::invalid_request(format!("mock: invalid request body: {error}"))
    }

    /// The key is missing or not one of `--require-key`: 401, except on Gemini, where Google
    /// answers a wrong key with 400 `INVALID_ARGUMENT` ("API key not valid") and a missing one
    /// with 403 `PERMISSION_DENIED`, and on Bedrock, where a missing one is AWS's 403
    /// `MissingAuthenticationTokenException` and a wrong API key a 403 `AccessDeniedException`.
    pub fn unauthorized(wire: Wire, key: &str) -> Self {
        let (status, message) = match (wire, key.is_empty()) {
            (Wire::Gemini, true) => (StatusCode::FORBIDDEN, GEMINI_KEY_MISSING),
            (Wire::Gemini, false) => (StatusCode::BAD_REQUEST, GEMINI_KEY_INVALID),
            (Wire::Bedrock, true) => {
                return Self::aws_forbidden(
                    "MissingAuthenticationTokenException",
                    BEDROCK_KEY_MISSING,
                )
            }
            (Wire::Bedrock, false) => (StatusCode::FORBIDDEN, BEDROCK_KEY_INVALID),
            (_, true) => (StatusCode::UNAUTHORIZED, "mock: no API key provided"),
            (_, false) => (StatusCode::UNAUTHORIZED, "mock: invalid API key"),
        };
        Self::new(status, message)
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// A failure injected by `--fail-percent` or `fail_next`.
    pub fn injected(status: StatusCode) -> Self {
        Self::new(
            status,
            format!("mock: injected failure ({})", status.as_u16()),
        )
    }

    /// 500: the mock could not encode its own response (a bug in the mock).
    pub fn encoding(error: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("mock: failed to encode the response: {error}"),
        )
    }

    /// The response body and status in `wire`'s error format.
    pub fn render(&self, wire: Wire) -> Response {
        let body = match wire {
            Wire::Azure if self.kind.is_some() => return self.azure_token_refusal(),
            Wire::OpenAi | Wire::Azure => {
                let (kind, code) = openai_kind(self.status);
                json!({"error": {"message": self.message, "type": kind, "param": null, "code": code}})
            }
            Wire::Anthropic => json!({
                "type": "error",
                "error": {"type": anthropic_kind(self.status), "message": self.message},
            }),
            Wire::Gemini if self.kind.is_some() => return self.google_token_refusal(),
            Wire::Gemini => self.google_status(),
            Wire::Bedrock => {
                let kind = self.kind.unwrap_or_else(|| bedrock_kind(self.status));
                let body = axum::Json(json!({ "message": self.message }));
                return (self.status, [(AWS_ERROR_TYPE_HEADER, kind)], body).into_response();
            }
        };
        (self.status, axum::Json(body)).into_response()
    }

    /// Azure's `{"statusCode", "message"}` for a refused token, the reason in
    /// [`TOKEN_ERROR_HEADER`].
    fn azure_token_refusal(&self) -> Response {
        let body = axum::Json(json!({"statusCode": self.status.as_u16(), "message": self.message}));
        let reason = self.kind.unwrap_or_default();
        (self.status, [(TOKEN_ERROR_HEADER, reason)], body).into_response()
    }

    /// Google's `google.rpc.Status` for a refused token, the reason in [`TOKEN_ERROR_HEADER`] and,
    /// on a 401, the `WWW-Authenticate` challenge Google sends.
    fn google_token_refusal(&self) -> Response {
        let body = axum::Json(self.google_status());
        let reason = self.kind.unwrap_or_default();
        let mut response = (self.status, [(TOKEN_ERROR_HEADER, reason)], body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(GOOGLE_WWW_AUTHENTICATE),
            );
        }
        response
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

/// Bedrock Runtime's error type for a status, as its API reference lists them (424 is a model
/// error, 408 a model timeout).
fn bedrock_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        500.. => "InternalServerException",
        _ => "ValidationException",
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

    #[tokio::test]
    async fn google_token_refusals_name_their_reason() {
        let rendered = ApiError::google_token_refused(Refusal::Expired).render(Wire::Gemini);
        assert_eq!(rendered.status(), StatusCode::UNAUTHORIZED);
        let headers = rendered.headers();
        assert_eq!(headers[TOKEN_ERROR_HEADER], "expired");
        assert_eq!(headers[header::WWW_AUTHENTICATE], GOOGLE_WWW_AUTHENTICATE);
        let body = axum::body::to_bytes(rendered.into_body(), usize::MAX)
            .await
            .expect("body reads");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            body,
            json!({"error": {"code": 401, "message": GOOGLE_CREDENTIALS_INVALID,
                             "status": "UNAUTHENTICATED"}})
        );
        let missing = ApiError::google_token_refused(Refusal::Missing);
        assert_eq!(missing.message, GOOGLE_CREDENTIALS_MISSING);
        let scope = ApiError::google_token_refused(Refusal::Scope).render(Wire::Gemini);
        assert_eq!(scope.status(), StatusCode::FORBIDDEN);
        assert!(!scope.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(scope.headers()[TOKEN_ERROR_HEADER], "scope");
    }

    #[test]
    fn bedrock_key_is_the_bearer_token_or_the_sigv4_access_key_id() {
        let signed = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/bedrock/\
                      aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        let mut sigv4 = HeaderMap::new();
        sigv4.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(signed).expect("ASCII"),
        );
        assert_eq!(Wire::Bedrock.api_key(&sigv4), "AKIDEXAMPLE");
        assert_eq!(Wire::OpenAi.api_key(&sigv4), "");
        assert_eq!(
            Wire::Bedrock.api_key(&headers("authorization", "Bearer bk-1")),
            "bk-1"
        );
    }

    #[tokio::test]
    async fn bedrock_errors_name_their_type_in_a_header() {
        let rendered = |error: ApiError| {
            let response = error.render(Wire::Bedrock);
            let kind = response
                .headers()
                .get(AWS_ERROR_TYPE_HEADER)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            (response.status().as_u16(), kind)
        };
        for (status, kind) in [
            (400, "ValidationException"),
            (403, "AccessDeniedException"),
            (404, "ResourceNotFoundException"),
            (408, "ModelTimeoutException"),
            (424, "ModelErrorException"),
            (429, "ThrottlingException"),
            (500, "InternalServerException"),
            (503, "ServiceUnavailableException"),
        ] {
            let status = StatusCode::from_u16(status).expect("valid status");
            let (code, named) = rendered(ApiError::injected(status));
            assert_eq!((code, named.as_deref()), (status.as_u16(), Some(kind)));
        }
        let (code, named) = rendered(ApiError::unauthorized(Wire::Bedrock, ""));
        assert_eq!(
            (code, named.as_deref()),
            (403, Some("MissingAuthenticationTokenException"))
        );
        let response = ApiError::unauthorized(Wire::Bedrock, "").render(Wire::Bedrock);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body reads");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).expect("JSON"),
            json!({"message": "Missing Authentication Token"})
        );
    }

    #[tokio::test]
    async fn refused_azure_tokens_get_azures_body_and_the_reason_in_a_header() {
        let response = ApiError::azure_token_refused("expired").render(Wire::Azure);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response
                .headers()
                .get(TOKEN_ERROR_HEADER)
                .and_then(|value| value.to_str().ok()),
            Some("expired")
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body reads");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).expect("JSON"),
            json!({"statusCode": 401, "message": AZURE_TOKEN_REFUSED})
        );
        let key_refused = ApiError::unauthorized(Wire::Azure, "k").render(Wire::Azure);
        assert!(key_refused.headers().get(TOKEN_ERROR_HEADER).is_none());
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
