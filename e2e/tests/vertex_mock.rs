//! The mock provider as Google Vertex AI with Google's OAuth2 token endpoint for service accounts:
//! the official `google-genai` SDK in Vertex AI mode, with `google-auth` credentials from the
//! test service account of `e2e/testdata/vertex`, gets its token and its answers from the mock;
//! on raw requests, a JWT signed by another key is refused as Google refuses it, the Vertex AI
//! routes answer Google's 401 to a missing, unknown or expired token, and a content without
//! `role` gets Vertex AI's 400.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bifrost_e2e::harness::{
    run_python_check_with, skip_unless_ci, wait_until, Deadline, MockProvider,
};
use bifrost_e2e::mock::{CLOUD_PLATFORM_SCOPE, KEY_HEADER, TOKEN_ERROR_HEADER};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::{json, Value};

const EMAIL: &str = "gateway@mock-project.iam.gserviceaccount.com";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const GENERATE: &str = "/v1/projects/mock-project/locations/us-central1/publishers/google/models/\
                        gemini-2.5-flash:generateContent";

/// Google's message for a bearer token it does not accept.
const CREDENTIALS_INVALID: &str = "Request had invalid authentication credentials. Expected \
                                   OAuth 2 access token, login cookie or other valid \
                                   authentication credential. See \
                                   https://developers.google.com/identity/sign-in/web/devconsole-project.";

/// An answer: status, headers and body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// Header `name`, empty when absent.
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("{error}: {}", self.body))
    }
}

async fn answer(request: RequestBuilder) -> Answer {
    let response = request.send().await.expect("answered");
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap_or_default(),
    }
}

/// `e2e/testdata/vertex/<name>`.
fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/vertex")
        .join(name)
}

/// A mock that knows the test service account, with `extra` flags.
async fn start(extra: &[&str]) -> MockProvider {
    let account = format!("{EMAIL}={}", testdata("public-key.der").display());
    let args = [&["--google-service-account", account.as_str()], extra].concat();
    MockProvider::start(&args).await
}

/// The DER body of the PEM block labelled `label` in `pem`.
fn pem_der(pem: &str, label: &str) -> Vec<u8> {
    let body = pem
        .split(&format!("-----BEGIN {label}-----"))
        .nth(1)
        .and_then(|rest| rest.split(&format!("-----END {label}-----")).next())
        .unwrap_or_else(|| panic!("no {label} PEM block"));
    let body: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body is base64")
}

/// An RSA key pair from a PKCS#8 PEM.
fn key_pair(pem: &str) -> RsaKeyPair {
    RsaKeyPair::from_pkcs8(&pem_der(pem, "PRIVATE KEY")).expect("an RSA key")
}

/// The private key of the test service account.
fn service_account_key() -> RsaKeyPair {
    let text = std::fs::read_to_string(testdata("service-account.json")).expect("key file");
    let info: Value = serde_json::from_str(&text).expect("key file JSON");
    key_pair(info["private_key"].as_str().expect("a private key"))
}

/// Unpadded base64url.
fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT of `claims` signed with `key`, with the header `google-auth` sends.
fn sign(key: &RsaKeyPair, claims: &Value) -> String {
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "mock-key-1"});
    let signed = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signed.as_bytes(),
        &mut signature,
    )
    .expect("signed");
    format!("{signed}.{}", b64url(&signature))
}

/// The claims `google-auth` sends, issued now for `aud`.
fn claims(aud: &str) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    json!({"iat": now, "exp": now + 3600, "iss": EMAIL, "aud": aud, "scope": CLOUD_PLATFORM_SCOPE})
}

/// `POST /token` with `assertion` as the JWT bearer grant.
async fn exchange(mock: &MockProvider, assertion: &str) -> Answer {
    let form = [("grant_type", JWT_BEARER), ("assertion", assertion)];
    answer(
        reqwest::Client::new()
            .post(format!("{}/token", mock.base))
            .form(&form),
    )
    .await
}

/// A token for the test service account, its JWT addressed to the mock's own `/token`, as
/// libraries that take the key file's `token_uri` for the audience address it.
async fn token(mock: &MockProvider) -> String {
    let jwt = sign(
        &service_account_key(),
        &claims(&format!("{}/token", mock.base)),
    );
    let issued = exchange(mock, &jwt).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    let body = issued.json();
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {body}"))
        .to_owned()
}

/// `POST {path}` with `body` and, when given, a bearer token.
async fn post(mock: &MockProvider, path: &str, token: Option<&str>, body: &Value) -> Answer {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", mock.base))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    answer(request).await
}

fn user_says(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

/// A second RSA key, made by `openssl` in `dir`: `None` (a skip) without `openssl` outside CI.
fn other_key(dir: &Path) -> Option<RsaKeyPair> {
    let path = dir.join("other-key.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .output();
    match made {
        Ok(output) if output.status.success() => {}
        _ => {
            return skip_unless_ci(
                "openssl could not make a second RSA key",
                "install openssl (Debian's `openssl`)",
            )
        }
    }
    Some(key_pair(
        &std::fs::read_to_string(&path).expect("key written"),
    ))
}

/// The mock is what Google's clients speak for Vertex AI: `google-auth` exchanges the service
/// account's JWT at the mock's `/token`, and `google-genai` (installed by `make test-deps`) calls
/// the Vertex AI routes with the token.
#[tokio::test]
async fn the_vertex_sdk_gets_its_token_and_answers_from_the_mock() {
    let mock = start(&["--chunks", "3", "--google-token-ttl-secs", "1800"]).await;
    let key_file = testdata("service-account.json");
    let key_file = key_file.to_str().expect("a UTF-8 path");
    let result = run_python_check_with("vertex_sdk_check.py", &[&mock.base, key_file]).await;
    assert_eq!(
        result["content"], "mock reply to: hello from vertex",
        "{result}"
    );
    assert_eq!(result["prompt_tokens"], 3, "{result}");
    assert_eq!(
        result["streamed"], "mock reply to: streamed through vertex",
        "{result}"
    );
    let token = result["token"].as_str().unwrap_or_default();
    assert!(token.starts_with("ya29.mock-"), "{result}");
    let left = result["token_seconds_left"].as_i64().unwrap_or(0);
    assert!(
        (1700..=1800).contains(&left),
        "expires_in is the TTL: {result}"
    );

    let stats = mock.stats().await;
    assert_eq!(stats["google_token_requests"], 1, "{stats}");
    assert_eq!(stats["google_token_failures"], 0, "{stats}");
    assert_eq!(stats["token_requests"], 0, "Entra's are apart: {stats}");
    assert_eq!(stats["by_key"][format!("sa:{EMAIL}")], 2, "{stats}");
    assert_eq!(stats["by_location"]["us-central1"], 2, "{stats}");
    assert_eq!(stats["by_project"]["mock-project"], 2, "{stats}");
    assert_eq!(stats["by_model"]["gemini-2.5-flash"], 2, "{stats}");
    let prefix = "/{version}/projects/{project}/locations/{location}/publishers/google/models/\
                  {model}";
    let by_route = &stats["by_route"];
    assert_eq!(by_route[format!("{prefix}:generateContent")], 1, "{stats}");
    assert_eq!(
        by_route[format!("{prefix}:streamGenerateContent")],
        1,
        "{stats}"
    );
}

#[tokio::test]
async fn the_token_endpoint_refuses_as_google_does() {
    let mock = start(&[]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(other) = other_key(dir.path()) else {
        return;
    };
    let refused = exchange(
        &mock,
        &sign(&other, &claims("https://oauth2.googleapis.com/token")),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(
        refused.json(),
        json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    );

    let mut stranger = claims("https://oauth2.googleapis.com/token");
    stranger["iss"] = json!("stranger@mock-project.iam.gserviceaccount.com");
    let refused = exchange(&mock, &sign(&service_account_key(), &stranger)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(
        refused.json(),
        json!({"error": "invalid_grant",
               "error_description": "Invalid grant: account not found"})
    );

    let mut long_lived = claims("https://oauth2.googleapis.com/token");
    long_lived["exp"] = json!(long_lived["iat"].as_u64().unwrap_or(0) + 7200);
    let refused = exchange(&mock, &sign(&service_account_key(), &long_lived)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    let description = refused.json()["error_description"].clone();
    assert!(
        description
            .as_str()
            .is_some_and(|text| text.starts_with("Invalid JWT: Token must be a short-lived token")),
        "{description}"
    );

    let form = [("grant_type", "client_credentials"), ("client_id", "x")];
    let url = format!("{}/token", mock.base);
    let refused = answer(reqwest::Client::new().post(&url).form(&form)).await;
    assert_eq!(
        refused.json(),
        json!({"error": "unsupported_grant_type",
               "error_description": "Invalid grant_type: client_credentials"})
    );

    let jwt = sign(
        &service_account_key(),
        &claims("https://oauth2.googleapis.com/token"),
    );
    let issued = exchange(&mock, &jwt).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    assert_eq!(issued.header("cache-control"), "no-store, no-cache");
    let body = issued.json();
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["expires_in"], 3600, "the default TTL: {body}");
    let stats = mock.stats().await;
    assert_eq!(stats["google_token_requests"], 1, "{stats}");
    assert_eq!(stats["google_token_failures"], 4, "{stats}");
}

#[tokio::test]
async fn a_missing_unknown_or_expired_token_gets_googles_401() {
    let mock = start(&["--google-token-ttl-secs", "1"]).await;
    let body = user_says("hi");

    let missing = post(&mock, GENERATE, None, &body).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{}", missing.body);
    let error = missing.json();
    assert_eq!(error["error"]["status"], "UNAUTHENTICATED", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|text| text.starts_with("Request is missing required authentication")),
        "{error}"
    );
    assert_eq!(missing.header(TOKEN_ERROR_HEADER), "missing");

    let unknown = post(&mock, GENERATE, Some("ya29.made-up"), &body).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED, "{}", unknown.body);
    assert_eq!(
        unknown.json(),
        json!({"error": {"code": 401, "message": CREDENTIALS_INVALID,
                         "status": "UNAUTHENTICATED"}})
    );
    assert_eq!(unknown.header(TOKEN_ERROR_HEADER), "unknown");
    assert_eq!(
        unknown.header("www-authenticate"),
        "Bearer realm=\"https://accounts.google.com/\""
    );

    let token = token(&mock).await;
    let expired = wait_until(
        "the 1 s token to be refused (observed: the generateContent answer)",
        Deadline::after(Duration::from_secs(10)).polling_every(Duration::from_millis(100)),
        async || post(&mock, GENERATE, Some(&token), &body).await,
        |answer| answer.status != StatusCode::OK,
    )
    .await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED, "{}", expired.body);
    assert_eq!(expired.json()["error"]["message"], CREDENTIALS_INVALID);
    assert_eq!(expired.header(TOKEN_ERROR_HEADER), "expired");
    assert_eq!(expired.header(KEY_HEADER), format!("sa:{EMAIL}"));

    let stats = mock.stats().await;
    assert_eq!(stats["by_key"]["ya29.made-up"], 1, "{stats}");
}

#[tokio::test]
async fn vertex_requires_a_role_on_every_content_and_serves_v1beta1_and_global() {
    let mock = start(&[]).await;
    let token = token(&mock).await;

    let no_role = json!({"contents": [{"parts": [{"text": "hi"}]}]});
    let refused = post(&mock, GENERATE, Some(&token), &no_role).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(
        refused.json(),
        json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                         "message": "Please use a valid role: user, model."}})
    );

    let global = "/v1beta1/projects/p-2/locations/global/publishers/google/models/\
                  gemini-2.5-pro:streamGenerateContent?alt=sse";
    let streamed = post(&mock, global, Some(&token), &user_says("hi there")).await;
    assert_eq!(streamed.status, StatusCode::OK, "{}", streamed.body);
    assert!(streamed.body.starts_with("data: "), "{}", streamed.body);
    assert!(
        streamed.body.contains("\"finishReason\":\"STOP\""),
        "{}",
        streamed.body
    );

    let embed = "/v1/projects/mock-project/locations/us-central1/publishers/google/models/\
                 gemini-embedding-001:embedContent";
    let missing = post(&mock, embed, Some(&token), &json!({})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    assert_eq!(missing.json()["error"]["status"], "NOT_FOUND");

    let stats = mock.stats().await;
    assert_eq!(
        stats["requests"], 2,
        "the unknown method is not counted: {stats}"
    );
    assert_eq!(stats["by_location"]["global"], 1, "{stats}");
    assert_eq!(stats["by_project"]["p-2"], 1, "{stats}");
    assert_eq!(stats["by_model"]["gemini-2.5-pro"], 1, "{stats}");
}

/// Claude on Vertex AI: the official `anthropic` SDK's `AnthropicVertex` client (the model in
/// the URL, `anthropic_version` in the body) gets its message, stream and tool call from the
/// mock's `publishers/anthropic` routes with a token the mock issued.
#[tokio::test]
async fn the_anthropic_vertex_sdk_gets_claude_answers_from_the_mock() {
    let mock = start(&["--chunks", "3"]).await;
    let token = token(&mock).await;
    let result = run_python_check_with("anthropic_vertex_check.py", &[&mock.base, &token]).await;
    assert_eq!(
        result["content"], "mock reply to: hello from vertex",
        "{result}"
    );
    assert_eq!(result["input_tokens"], 3, "{result}");
    assert_eq!(
        result["streamed"], "mock reply to: streamed through vertex",
        "{result}"
    );
    assert_eq!(result["stream_stop_reason"], "end_turn", "{result}");
    assert_eq!(result["stream_output_tokens"], 3, "{result}");
    assert_eq!(result["tool_stop_reason"], "tool_use", "{result}");
    assert_eq!(result["tool_name"], "get_weather", "{result}");
    assert_eq!(result["tool_input"], json!({"city": "mock"}), "{result}");

    let stats = mock.stats().await;
    let prefix = "/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{model}";
    let by_route = &stats["by_route"];
    assert_eq!(by_route[format!("{prefix}:rawPredict")], 2, "{stats}");
    assert_eq!(by_route[format!("{prefix}:streamRawPredict")], 1, "{stats}");
    assert_eq!(stats["by_model"]["claude-sonnet-4@20250514"], 3, "{stats}");
    assert_eq!(stats["by_location"]["us-east5"], 3, "{stats}");
    assert_eq!(stats["by_key"][format!("sa:{EMAIL}")], 3, "{stats}");
}

/// Claude's routes refuse what Vertex AI refuses: a body naming the model or lacking Vertex's
/// `anthropic_version` (Anthropic's 400), a missing token (Google's 401).
#[tokio::test]
async fn claude_on_the_mock_refuses_bodies_vertex_refuses() {
    let mock = start(&[]).await;
    let token = token(&mock).await;
    let path = "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-x:rawPredict";
    let message = json!([{"role": "user", "content": "hi"}]);
    let good =
        json!({"anthropic_version": "vertex-2023-10-16", "max_tokens": 8, "messages": message});
    let answered = post(&mock, path, Some(&token), &good).await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);
    assert_eq!(answered.json()["model"], "claude-x", "{}", answered.body);

    let with_model = json!({"anthropic_version": "vertex-2023-10-16", "model": "claude-x",
                            "max_tokens": 8, "messages": message});
    let refused = post(&mock, path, Some(&token), &with_model).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.json()["error"]["type"], "invalid_request_error");
    let unversioned = json!({"max_tokens": 8, "messages": message});
    let refused = post(&mock, path, Some(&token), &unversioned).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused.body.contains("anthropic_version"),
        "{}",
        refused.body
    );
    let stream_path = path.replace(":rawPredict", ":streamRawPredict");
    let refused = post(&mock, &stream_path, Some(&token), &good).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);

    let anonymous = post(&mock, path, None, &good).await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        anonymous.body
    );
    assert_eq!(anonymous.json()["error"]["status"], "UNAUTHENTICATED");
}

/// The mock as a Google Cloud machine's metadata server: `google-auth`'s compute-engine
/// credentials (Application Default Credentials there) get the account and a token from it,
/// and the Vertex routes take that token; without `Metadata-Flavor: Google` it refuses, as
/// Google's does.
#[tokio::test]
async fn google_auth_gets_adc_tokens_from_the_mock_metadata_server() {
    let mock = start(&["--chunks", "2"]).await;
    let result = run_python_check_with("vertex_adc_check.py", &[&mock.base]).await;
    assert_eq!(
        result["content"], "mock reply to: hello from adc",
        "{result}"
    );
    assert_eq!(result["email"], EMAIL, "{result}");
    assert!(
        result["token"]
            .as_str()
            .unwrap_or_default()
            .starts_with("ya29.mock-"),
        "{result}"
    );
    let stats = mock.stats().await;
    assert_eq!(stats["metadata_token_requests"], 1, "{stats}");
    assert_eq!(stats["google_token_requests"], 0, "no assertion: {stats}");
    assert_eq!(stats["by_key"][format!("sa:{EMAIL}")], 1, "{stats}");

    let path = "/computeMetadata/v1/instance/service-accounts/default/token";
    let bare = answer(reqwest::Client::new().get(format!("{}{path}", mock.base))).await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN, "{}", bare.body);
    assert_eq!(bare.header("metadata-flavor"), "Google");
    let other = answer(
        reqwest::Client::new()
            .get(format!(
                "{}/computeMetadata/v1/instance/service-accounts/x@y/token",
                mock.base
            ))
            .header("Metadata-Flavor", "Google"),
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.body);
}
