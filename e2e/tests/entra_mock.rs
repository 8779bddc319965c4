//! The mock provider as Microsoft Entra ID's token endpoint (OAuth2 client credentials) and as an
//! Azure OpenAI resource that takes the tokens it issues, on raw requests: a registered client
//! gets a token, every refusal has Entra's error body, and the Azure routes take the token as a
//! bearer until it expires, then answer Azure's 401.

use std::time::Duration;

use bifrost_e2e::harness::{wait_until, Deadline, MockProvider};
use bifrost_e2e::mock::{KEY_HEADER, TOKEN_ERROR_HEADER};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{json, Value};

const TENANT: &str = "tenant-1";
const CLIENT: &str = "tenant-1:app-1:s3cret";
const SCOPE: &str = "https://cognitiveservices.azure.com/.default";
const CHAT: &str = "/openai/deployments/d/chat/completions?api-version=2024-10-21";

/// Azure OpenAI's message for any bearer token it refuses.
const AZURE_TOKEN_REFUSED: &str = "Unauthorized. Access token is missing, invalid, audience is \
                                   incorrect (https://cognitiveservices.azure.com), or have \
                                   expired.";

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

/// How a chat request authenticates.
#[derive(Clone, Copy)]
enum Credential<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
}

async fn answer(request: RequestBuilder) -> Answer {
    let response = request.send().await.expect("answered");
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap_or_default(),
    }
}

async fn start(extra: &[&str]) -> MockProvider {
    let args = [
        &["--entra-client", CLIENT, "--entra-token-ttl-secs", "1"],
        extra,
    ]
    .concat();
    MockProvider::start(&args).await
}

/// `POST /{tenant}/oauth2/v2.0/token`, its body still to add.
fn token_request(mock: &MockProvider, tenant: &str) -> RequestBuilder {
    reqwest::Client::new().post(format!("{}/{tenant}/oauth2/v2.0/token", mock.base))
}

/// The fields of a token request the mock grants.
fn granted() -> Vec<(&'static str, &'static str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", "app-1"),
        ("client_secret", "s3cret"),
        ("scope", SCOPE),
    ]
}

/// [`granted`] with field `name` set to `value`.
fn with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut fields = without(name);
    fields.push((name, value));
    fields
}

/// [`granted`] without field `name`.
fn without(name: &str) -> Vec<(&'static str, &'static str)> {
    let mut fields = granted();
    fields.retain(|&(field, _)| field != name);
    fields
}

/// A token issued to `app-1` for `scope`.
async fn token_for(mock: &MockProvider, scope: &'static str) -> String {
    let issued = answer(token_request(mock, TENANT).form(&with("scope", scope))).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    let body = issued.json();
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {body}"))
        .to_owned()
}

/// A chat completion on deployment `d`.
async fn chat(mock: &MockProvider, credential: Credential<'_>) -> Answer {
    let request = reqwest::Client::new()
        .post(format!("{}{CHAT}", mock.base))
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}));
    let request = match credential {
        Credential::Bearer(token) => request.bearer_auth(token),
        Credential::ApiKey(key) => request.header("api-key", key),
    };
    answer(request).await
}

/// Asserts `answer` is Azure's 401 for a refused token, for `reason`.
fn assert_token_refused(answer: &Answer, reason: &str) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert_eq!(
        answer.json(),
        json!({"statusCode": 401, "message": AZURE_TOKEN_REFUSED})
    );
    assert_eq!(answer.header(TOKEN_ERROR_HEADER), reason);
}

#[tokio::test]
async fn an_issued_token_is_a_bearer_on_the_azure_routes_until_it_expires() {
    let mock = start(&[]).await;
    let issued = answer(token_request(&mock, TENANT).form(&granted())).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    assert_eq!(issued.header("cache-control"), "no-store, no-cache");
    let body = issued.json();
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["expires_in"], 1, "{body}");
    assert_eq!(body["ext_expires_in"], 1, "{body}");
    let token = body["access_token"].as_str().unwrap_or_default().to_owned();
    assert!(token.starts_with("entra-mock-tenant-1-app-1-"), "{body}");

    let accepted = chat(&mock, Credential::Bearer(&token)).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    assert_eq!(
        accepted.json()["choices"][0]["message"]["content"],
        "mock reply to: hi"
    );
    assert_eq!(accepted.header(KEY_HEADER), "entra:app-1");

    let expired = wait_until(
        "the 1 s token to be refused (observed: the chat answer)",
        Deadline::after(Duration::from_secs(10)).polling_every(Duration::from_millis(100)),
        async || chat(&mock, Credential::Bearer(&token)).await,
        |answer| answer.status != StatusCode::OK,
    )
    .await;
    assert_token_refused(&expired, "expired");
    assert_eq!(expired.header(KEY_HEADER), "entra:app-1");

    let renewed = token_for(&mock, SCOPE).await;
    assert_ne!(renewed, token, "every token is new");
    let accepted = chat(&mock, Credential::Bearer(&renewed)).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);

    let stats = mock.stats().await;
    assert_eq!(stats["token_requests"], 2, "{stats}");
    assert_eq!(stats["token_failures"], 0, "{stats}");
    assert_eq!(stats["by_key"]["entra:app-1"], stats["requests"], "{stats}");
    assert_eq!(stats["by_deployment"]["d"], stats["requests"], "{stats}");
}

#[tokio::test]
async fn each_refused_token_request_gets_entras_error() {
    let mock = start(&[]).await;
    let cases = [
        (
            TENANT,
            with("grant_type", "password"),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70_003,
            "The access grant 'password' is not supported.",
        ),
        (
            "tenant-9",
            granted(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90_002,
            "Tenant 'tenant-9' not found.",
        ),
        (
            TENANT,
            with("client_id", "app-9"),
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700_016,
            "Application with identifier 'app-9' was not found in the directory 'tenant-1'.",
        ),
        (
            TENANT,
            with("client_secret", "wrong"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7_000_215,
            "Invalid client secret provided.",
        ),
        (
            TENANT,
            without("client_secret"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7_000_218,
            "The request body must contain the following parameter: 'client_assertion' or \
             'client_secret'.",
        ),
        (
            TENANT,
            without("scope"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900_144,
            "The request body must contain the following parameter: 'scope'.",
        ),
        (
            TENANT,
            with("scope", "https://cognitiveservices.azure.com"),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1_002_012,
            "The provided value for scope https://cognitiveservices.azure.com is not valid. \
             Client credential flows must have a scope value with /.default suffixed",
        ),
        (
            TENANT,
            with(
                "scope",
                "https://cognitiveservices.azure.com/user_impersonation",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1_002_012,
            "The provided value for scope https://cognitiveservices.azure.com/user_impersonation",
        ),
    ];
    for (tenant, form, status, error, code, message) in &cases {
        let refused = answer(token_request(&mock, tenant).form(form)).await;
        assert_eq!(refused.status, *status, "{}", refused.body);
        assert_eq!(refused.header("cache-control"), "no-store, no-cache");
        let body = refused.json();
        assert_eq!(body["error"], *error, "{body}");
        assert_eq!(body["error_codes"], json!([code]), "{body}");
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(
            description.starts_with(&format!("AADSTS{code}: {message}")),
            "{description}"
        );
        let trace_id = body["trace_id"].as_str().unwrap_or_default();
        let correlation_id = body["correlation_id"].as_str().unwrap_or_default();
        let timestamp = body["timestamp"].as_str().unwrap_or_default();
        assert_eq!((trace_id.len(), correlation_id.len()), (36, 36), "{body}");
        assert!(
            timestamp.len() == 20 && timestamp.ends_with('Z') && &timestamp[10..11] == " ",
            "{body}"
        );
        for detail in [
            format!("\r\nTrace ID: {trace_id}"),
            format!("\r\nCorrelation ID: {correlation_id}"),
            format!("\r\nTimestamp: {timestamp}"),
        ] {
            assert!(description.contains(&detail), "{detail:?} in {description}");
        }
        assert_eq!(
            body["error_uri"],
            format!("https://login.microsoftonline.com/error?code={code}")
        );
    }

    let json_body = answer(
        token_request(&mock, TENANT)
            .header("client-request-id", "0000aaaa-11bb-cccc-dd22-eeeeee333333")
            .json(&json!({"grant_type": "client_credentials"})),
    )
    .await;
    assert_eq!(json_body.status, StatusCode::BAD_REQUEST);
    let body = json_body.json();
    assert_eq!(
        body["error_codes"],
        json!([900_144]),
        "only forms are read: {body}"
    );
    assert_eq!(
        body["correlation_id"], "0000aaaa-11bb-cccc-dd22-eeeeee333333",
        "{body}"
    );

    let stats = mock.stats().await;
    assert_eq!(stats["token_failures"], cases.len() + 1, "{stats}");
    assert_eq!(stats["token_requests"], 0, "{stats}");
    assert_eq!(
        stats["requests"], 0,
        "token requests are no inference: {stats}"
    );
}

#[tokio::test]
async fn unknown_and_misdirected_tokens_get_azures_401_and_api_keys_still_work() {
    let mock = start(&["--require-key", "sk-azure"]).await;
    let unknown = chat(&mock, Credential::Bearer("not-issued")).await;
    assert_token_refused(&unknown, "unknown");
    assert_eq!(unknown.header(KEY_HEADER), "not-issued");
    let key_as_bearer = chat(&mock, Credential::Bearer("sk-azure")).await;
    assert_token_refused(&key_as_bearer, "unknown");

    let graph = token_for(&mock, "https://graph.microsoft.com/.default").await;
    let misdirected = chat(&mock, Credential::Bearer(&graph)).await;
    assert_token_refused(&misdirected, "audience");
    assert_eq!(misdirected.header(KEY_HEADER), "entra:app-1");

    let token = token_for(&mock, SCOPE).await;
    let accepted = chat(&mock, Credential::Bearer(&token)).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);

    let keyed = chat(&mock, Credential::ApiKey("sk-azure")).await;
    assert_eq!(keyed.status, StatusCode::OK, "{}", keyed.body);
    assert_eq!(keyed.header(KEY_HEADER), "sk-azure");
    let wrong_key = chat(&mock, Credential::ApiKey("sk-wrong")).await;
    assert_eq!(
        wrong_key.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        wrong_key.body
    );
    assert!(wrong_key.header(TOKEN_ERROR_HEADER).is_empty());

    let stats = mock.stats().await;
    assert_eq!(
        stats["by_key"],
        json!({"not-issued": 1, "sk-azure": 2, "entra:app-1": 2, "sk-wrong": 1}),
        "{stats}"
    );
    assert_eq!(stats["token_requests"], 2, "{stats}");
}

#[tokio::test]
async fn without_entra_clients_a_bearer_is_a_key_and_no_tenant_exists() {
    let mock = MockProvider::start(&[]).await;
    let keyed = chat(&mock, Credential::Bearer("sk-plain")).await;
    assert_eq!(keyed.status, StatusCode::OK, "{}", keyed.body);
    assert_eq!(keyed.header(KEY_HEADER), "sk-plain");
    let refused = answer(token_request(&mock, TENANT).form(&granted())).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.json()["error_codes"], json!([90_002]));
}
