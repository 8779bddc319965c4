//! Microsoft Entra ID's token endpoint for the OAuth2 client-credentials grant,
//! `POST /{tenant}/oauth2/v2.0/token` with a form-encoded body (`grant_type=client_credentials`,
//! `client_id`, `client_secret`, `scope`), and the check of the tokens it issued when Azure
//! requests bring them as bearer tokens.
//!
//! A token request is checked in this order, each refusal as Entra answers it: the tenant of the
//! path (400 `invalid_request`, AADSTS90002), `grant_type` (400 `invalid_request`, AADSTS900144,
//! when missing; 400 `unsupported_grant_type`, AADSTS70003, when not `client_credentials`),
//! `client_id` and `scope` present (AADSTS900144), the client registered in the tenant (400
//! `unauthorized_client`, AADSTS700016), its secret (401 `invalid_client`: AADSTS7000218 when
//! missing, AADSTS7000215 when wrong), and the scope one resource's `/.default` (400
//! `invalid_scope`, AADSTS1002012). A body that is not `application/x-www-form-urlencoded` has no
//! fields. Refusals have Entra's body: `error`, `error_description` (`AADSTS<code>: <message>`,
//! then the trace id, correlation id and timestamp), `error_codes`, `timestamp`, `trace_id`,
//! `correlation_id` (the request's `client-request-id` when it has one) and `error_uri`.
//!
//! Issued tokens are opaque, `entra-mock-<tenant>-<client_id>-<n>`, and remembered with their
//! client, scope and expiry for as long as the mock runs (`/mock/reset` does not forget them).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::config::{EntraClient, MockConfig};
use super::sigv4::percent_decode;
use super::{unix_now, MockState};

/// The scope a token must have been issued for to be accepted by the Azure routes: Azure
/// OpenAI's resource, `https://cognitiveservices.azure.com`, with `/.default`.
pub const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// The only grant type the mock's token endpoint serves.
const CLIENT_CREDENTIALS: &str = "client_credentials";

/// The only body type Entra's token endpoint reads.
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// The header MSAL sends a request id in; Entra answers with it as the correlation id.
const CLIENT_REQUEST_ID: &str = "client-request-id";

/// The app registrations of `--entra-client` and the tokens issued to them.
#[derive(Debug)]
pub struct Entra {
    /// `Debug` shows no secrets: [`EntraClient`]'s leaves them out.
    clients: Vec<EntraClient>,
    ttl: Duration,
    /// Every issued token, expired ones too (so that they are refused as expired).
    issued: Mutex<HashMap<String, Issued>>,
}

/// What the mock remembers of an access token it issued.
#[derive(Debug, Clone)]
struct Issued {
    client_id: String,
    scope: String,
    expires_at: Instant,
}

/// Why the Azure routes refused a bearer token: Azure answers every case alike, so the mock names
/// it in [`super::TOKEN_ERROR_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a token the mock issued.
    Unknown,
    /// Issued for another resource than [`COGNITIVE_SERVICES_SCOPE`].
    Audience,
    /// Past its `expires_in`.
    Expired,
}

impl Refusal {
    /// The value of [`super::TOKEN_ERROR_HEADER`]: `unknown`, `audience` or `expired`.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown",
            Refusal::Audience => "audience",
            Refusal::Expired => "expired",
        }
    }
}

/// A granted token request: the registration and the scope it asked for.
struct Grant<'a> {
    client: &'a EntraClient,
    scope: &'a str,
}

/// The token endpoint's answer to a granted request, fields in Entra's order.
#[derive(Debug, Serialize)]
struct TokenResponse {
    token_type: &'static str,
    expires_in: u64,
    ext_expires_in: u64,
    access_token: String,
}

impl Entra {
    /// The registrations and token lifetime of `config`.
    pub fn new(config: &MockConfig) -> Self {
        Self {
            clients: config.entra_clients.clone(),
            ttl: Duration::from_secs(config.entra_token_ttl_secs),
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any `--entra-client` was given: only then are bearer tokens on the Azure routes
    /// checked as Entra tokens.
    pub fn is_enabled(&self) -> bool {
        !self.clients.is_empty()
    }

    /// Who a bearer token is from, for the stats (`entra:<client_id>`, or the token itself when
    /// the mock did not issue it), and whether Azure accepts it.
    pub fn check<'t>(&self, token: &'t str) -> (Cow<'t, str>, Result<(), Refusal>) {
        let issued = self
            .issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned();
        let Some(issued) = issued else {
            return (Cow::Borrowed(token), Err(Refusal::Unknown));
        };
        let label = Cow::Owned(format!("entra:{}", issued.client_id));
        let checked = if issued.scope != COGNITIVE_SERVICES_SCOPE {
            Err(Refusal::Audience)
        } else if Instant::now() >= issued.expires_at {
            Err(Refusal::Expired)
        } else {
            Ok(())
        };
        (label, checked)
    }

    /// Entra's checks of a token request to `tenant` with `form`'s fields, in the order of the
    /// module's documentation.
    fn authenticate<'a>(
        &'a self,
        tenant: &str,
        form: &'a HashMap<String, String>,
    ) -> Result<Grant<'a>, EntraError> {
        if !self.clients.iter().any(|client| client.tenant == tenant) {
            return Err(EntraError::unknown_tenant(tenant));
        }
        let field = |name: &'static str| {
            form.get(name)
                .map(String::as_str)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| EntraError::missing(name))
        };
        let grant_type = field("grant_type")?;
        if grant_type != CLIENT_CREDENTIALS {
            return Err(EntraError::unsupported_grant(grant_type));
        }
        let client_id = field("client_id")?;
        let scope = field("scope")?;
        let client = self
            .clients
            .iter()
            .find(|client| client.tenant == tenant && client.client_id == client_id)
            .ok_or_else(|| EntraError::unknown_client(client_id, tenant))?;
        let secret = form
            .get("client_secret")
            .filter(|secret| !secret.is_empty())
            .ok_or_else(EntraError::missing_secret)?;
        if *secret != client.client_secret {
            return Err(EntraError::wrong_secret(client_id));
        }
        if !is_default_scope(scope) {
            return Err(EntraError::invalid_scope(scope));
        }
        Ok(Grant { client, scope })
    }

    /// A new token for `grant`, numbered `number`, remembered until the mock stops.
    fn issue(&self, grant: &Grant, number: u64) -> TokenResponse {
        let client = grant.client;
        let token = format!("entra-mock-{}-{}-{number}", client.tenant, client.client_id);
        let issued = Issued {
            client_id: client.client_id.clone(),
            scope: grant.scope.to_owned(),
            expires_at: Instant::now() + self.ttl,
        };
        self.issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), issued);
        TokenResponse {
            token_type: "Bearer",
            expires_in: self.ttl.as_secs(),
            ext_expires_in: self.ttl.as_secs(),
            access_token: token,
        }
    }
}

/// `POST /{tenant}/oauth2/v2.0/token`: a token, or Entra's refusal; either counted in the stats.
/// A tenant the path cannot carry (not UTF-8) is one Entra does not know.
pub async fn token(
    State(state): State<Arc<MockState>>,
    tenant: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let tenant = tenant.map(|Path(tenant)| tenant).unwrap_or_default();
    let form = form_fields(&headers, &body);
    let response = match state.entra.authenticate(&tenant, &form) {
        Ok(grant) => {
            let granted = state.entra.issue(&grant, state.next_id());
            state.stats.record_token_issued();
            tracing::debug!(client_id = %grant.client.client_id, "entra token issued");
            axum::Json(granted).into_response()
        }
        Err(error) => {
            state.stats.record_token_failure();
            tracing::debug!(code = error.code, "entra token refused");
            error.render(&correlation_id(&headers))
        }
    };
    no_store(response)
}

/// Marks a token endpoint answer as not to be cached, as OAuth2 (RFC 6749, section 5.1), Entra
/// and Google do.
pub(super) fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Whether a client-credentials `scope` is what Entra takes: one value, a resource identifier
/// followed by `/.default`.
fn is_default_scope(scope: &str) -> bool {
    let mut values = scope.split_whitespace();
    match (values.next(), values.next()) {
        (Some(value), None) => value
            .strip_suffix("/.default")
            .is_some_and(|resource| !resource.is_empty()),
        _ => false,
    }
}

/// The fields of a form-encoded body (`a=1&b=2`, `+` for a space, `%XX` escapes); none unless the
/// body is `application/x-www-form-urlencoded`, the only kind Entra and Google read. A field given
/// twice keeps its first value.
pub(super) fn form_fields(headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(FORM_CONTENT_TYPE));
    let mut fields = HashMap::new();
    if !is_form {
        return fields;
    }
    for pair in String::from_utf8_lossy(body).split('&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        fields
            .entry(form_decode(name))
            .or_insert_with(|| form_decode(value));
    }
    fields
}

/// One name or value of a form: `+` is a space, then `%XX` escapes are decoded.
fn form_decode(text: &str) -> String {
    String::from_utf8_lossy(&percent_decode(&text.replace('+', " "))).into_owned()
}

/// The correlation id Entra answers with: the request's `client-request-id`, else a fresh one.
fn correlation_id(headers: &HeaderMap) -> String {
    headers
        .get(CLIENT_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty())
        .map_or_else(guid, str::to_owned)
}

/// A refused token request: the status, OAuth2's `error`, the AADSTS code and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntraError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    message: String,
}

impl EntraError {
    fn new(status: StatusCode, error: &'static str, code: u32, message: String) -> Self {
        Self {
            status,
            error,
            code,
            message,
        }
    }

    /// 400 AADSTS900144: a required field is missing.
    fn missing(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900_144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    /// 400 AADSTS70003: a grant type other than `client_credentials`.
    fn unsupported_grant(grant_type: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70_003,
            format!("The access grant '{grant_type}' is not supported."),
        )
    }

    /// 400 AADSTS90002: no `--entra-client` of the path's tenant.
    fn unknown_tenant(tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90_002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID \
                 and are signing into the correct cloud. Check with your subscription \
                 administrator, this may happen if there are no active subscriptions for the \
                 tenant."
            ),
        )
    }

    /// 400 AADSTS700016: the client id is not registered in the tenant.
    fn unknown_client(client_id: &str, tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700_016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory \
                 '{tenant}'. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant. You may \
                 have sent your authentication request to the wrong tenant."
            ),
        )
    }

    /// 401 AADSTS7000218: a confidential client's request without a credential.
    fn missing_secret() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7_000_218,
            "The request body must contain the following parameter: 'client_assertion' or \
             'client_secret'."
                .to_owned(),
        )
    }

    /// 401 AADSTS7000215: the secret is not the client's.
    fn wrong_secret(client_id: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7_000_215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is \
                 the client secret value, not the client secret ID, for a secret added to app \
                 '{client_id}'."
            ),
        )
    }

    /// 400 AADSTS1002012: a client-credentials scope that is not one resource's `/.default`.
    fn invalid_scope(scope: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1_002_012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must \
                 have a scope value with /.default suffixed to the resource identifier \
                 (application ID URI)."
            ),
        )
    }

    /// Entra's JSON error body, timestamped now, with a fresh trace id.
    fn render(&self, correlation_id: &str) -> Response {
        let timestamp = entra_timestamp(unix_now());
        let trace_id = guid();
        let description = format!(
            "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\n\
             Timestamp: {timestamp}",
            self.code, self.message
        );
        let body = json!({
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        (self.status, axum::Json(body)).into_response()
    }
}

/// A random GUID in its textual form, for trace and correlation ids.
pub(super) fn guid() -> String {
    let hex = format!("{:032x}", fastrand::u128(..));
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Entra's timestamp of an instant `unix` seconds after the epoch: `2024-01-31 12:00:00Z`.
fn entra_timestamp(unix: u64) -> String {
    let (year, month, day) = civil_date(unix / 86_400);
    let seconds = unix % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// The Gregorian year, month and day `days` days after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for dates from 1970 on).
pub(super) fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entra(ttl_secs: u64) -> Entra {
        let client = EntraClient {
            tenant: "tenant-1".to_owned(),
            client_id: "app-1".to_owned(),
            client_secret: "s3cret".to_owned(),
        };
        Entra::new(&MockConfig {
            entra_clients: vec![client],
            entra_token_ttl_secs: ttl_secs,
            ..MockConfig::default()
        })
    }

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|&(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    fn granted() -> HashMap<String, String> {
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app-1"),
            ("client_secret", "s3cret"),
            ("scope", COGNITIVE_SERVICES_SCOPE),
        ])
    }

    /// The AADSTS code a request to `tenant` with `form` is refused with.
    fn refusal(entra: &Entra, tenant: &str, form: &HashMap<String, String>) -> Option<u32> {
        entra
            .authenticate(tenant, form)
            .err()
            .map(|error| error.code)
    }

    #[test]
    fn each_check_refuses_with_its_aadsts_code() {
        let entra = entra(60);
        let with = |name: &str, value: &str| {
            let mut fields = granted();
            fields.insert(name.to_owned(), value.to_owned());
            fields
        };
        let without = |name: &str| {
            let mut fields = granted();
            fields.remove(name);
            fields
        };
        assert_eq!(refusal(&entra, "tenant-1", &granted()), None);
        assert_eq!(refusal(&entra, "tenant-2", &granted()), Some(90_002));
        assert_eq!(
            refusal(&entra, "tenant-1", &without("grant_type")),
            Some(900_144)
        );
        assert_eq!(
            refusal(&entra, "tenant-1", &with("grant_type", "password")),
            Some(70_003)
        );
        assert_eq!(
            refusal(&entra, "tenant-1", &without("scope")),
            Some(900_144)
        );
        assert_eq!(
            refusal(&entra, "tenant-1", &with("client_id", "app-2")),
            Some(700_016)
        );
        assert_eq!(
            refusal(&entra, "tenant-1", &without("client_secret")),
            Some(7_000_218)
        );
        assert_eq!(
            refusal(&entra, "tenant-1", &with("client_secret", "wrong")),
            Some(7_000_215)
        );
        for scope in [
            "https://cognitiveservices.azure.com",
            "/.default",
            "https://a/.default https://b/.default",
        ] {
            assert_eq!(
                refusal(&entra, "tenant-1", &with("scope", scope)),
                Some(1_002_012),
                "{scope}"
            );
        }
    }

    #[test]
    fn issued_tokens_are_accepted_until_they_expire() {
        let entra = entra(60);
        let fields = granted();
        let grant = entra.authenticate("tenant-1", &fields).expect("granted");
        let answer = entra.issue(&grant, 7);
        assert_eq!(answer.access_token, "entra-mock-tenant-1-app-1-7");
        assert_eq!((answer.expires_in, answer.ext_expires_in), (60, 60));
        let (label, checked) = entra.check(&answer.access_token);
        assert_eq!((label.as_ref(), checked), ("entra:app-1", Ok(())));
        let (label, checked) = entra.check("made-up");
        assert_eq!(
            (label.as_ref(), checked),
            ("made-up", Err(Refusal::Unknown))
        );

        let expired = entra.issue(&grant, 8);
        if let Some(issued) = entra
            .issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&expired.access_token)
        {
            issued.expires_at = Instant::now();
        }
        let (_, checked) = entra.check(&expired.access_token);
        assert_eq!(checked, Err(Refusal::Expired));
    }

    #[test]
    fn a_token_for_another_resource_is_refused_for_its_audience() {
        let entra = entra(60);
        let mut fields = granted();
        fields.insert(
            "scope".to_owned(),
            "https://graph.microsoft.com/.default".to_owned(),
        );
        let grant = entra.authenticate("tenant-1", &fields).expect("granted");
        let answer = entra.issue(&grant, 1);
        let (label, checked) = entra.check(&answer.access_token);
        assert_eq!(
            (label.as_ref(), checked),
            ("entra:app-1", Err(Refusal::Audience))
        );
    }

    #[test]
    fn form_bodies_are_decoded_only_when_declared() {
        let mut headers = HeaderMap::new();
        let body = b"grant_type=client_credentials&scope=https%3A%2F%2Fx%2F.default&a=b+c&a=d&e";
        assert!(form_fields(&headers, body).is_empty());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        let fields = form_fields(&headers, body);
        assert_eq!(fields["grant_type"], "client_credentials");
        assert_eq!(fields["scope"], "https://x/.default");
        assert_eq!(fields["a"], "b c");
        assert_eq!(fields["e"], "");
        assert_eq!(form_decode("%2B+%zz"), "+ %zz");
    }

    #[test]
    fn timestamps_are_entras_utc_format() {
        assert_eq!(entra_timestamp(0), "1970-01-01 00:00:00Z");
        assert_eq!(entra_timestamp(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(entra_timestamp(1_700_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(entra_timestamp(1_735_689_599), "2024-12-31 23:59:59Z");
    }

    #[tokio::test]
    async fn refusals_have_entras_body() {
        let response = EntraError::wrong_secret("app-1").render("corr-1");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body reads");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_codes"], json!([7_000_215]));
        assert_eq!(body["correlation_id"], "corr-1");
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(
            description.starts_with("AADSTS7000215: Invalid client secret provided."),
            "{description}"
        );
        assert!(
            description.contains("\r\nCorrelation ID: corr-1\r\n"),
            "{description}"
        );
        let trace_id = body["trace_id"].as_str().unwrap_or_default();
        assert_eq!(trace_id.len(), 36, "{trace_id}");
        assert!(description.contains(trace_id), "{description}");
        assert_eq!(
            body["error_uri"],
            "https://login.microsoftonline.com/error?code=7000215"
        );
    }
}
