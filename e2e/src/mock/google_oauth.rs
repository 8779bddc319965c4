//! Google's OAuth2 token endpoint for service accounts (the JWT bearer grant of RFC 7523, as
//! `oauth2.googleapis.com/token` serves it): `POST /token` with a form-encoded body
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`, and the check of
//! the access tokens it issued when Vertex AI requests bring them as bearer tokens.
//!
//! The assertion is a JWT signed by the service account's private key, as `google-auth` makes
//! it: header `{"typ": "JWT", "alg": "RS256", "kid": <private_key_id>}`, claims `iss` (the
//! account's `client_email`), `aud` (`https://oauth2.googleapis.com/token`; other libraries send
//! their `token_uri`, so the mock's own `http://<host>/token` is taken too), `scope`, `iat` and
//! `exp` (an hour later). A request is checked in this order, each refusal a 400 with Google's
//! `{"error", "error_description"}`: `grant_type` (`unsupported_grant_type`), the assertion
//! present (`invalid_request`) and a JWT with `alg` RS256 (`invalid_grant`, "Invalid JWT
//! Signature."), `iss` one of `--google-service-account` (`invalid_grant`, "Invalid grant:
//! account not found"), the RSASSA-PKCS1-v1_5 SHA-256 signature by one of the account's keys
//! (the `kid` is not matched), `iat` and `exp` (the token must be short-lived and current),
//! `aud`, and `scope` (`invalid_scope` when absent or not Google's). A token for other scopes
//! than [`CLOUD_PLATFORM_SCOPE`] is issued, as Google does, and refused by Vertex AI.
//!
//! The metadata server of a Google Cloud machine ([`metadata_token`]) issues tokens for the
//! first account the same way, without an assertion.
//!
//! Issued tokens are opaque, `ya29.mock-<n>`, and remembered with their account, scopes and
//! expiry for as long as the mock runs (`/mock/reset` does not forget them).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::config::{GoogleServiceAccount, MockConfig};
use super::entra::{form_fields, no_store};
use super::{unix_now, MockState};

/// The scope a token must have been issued for to be accepted by the Vertex AI routes.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The grant type of a service account's signed JWT.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The audiences Google's token endpoint takes besides its caller's view of the mock's URL: its
/// own URL, and the older one some libraries still send.
const TOKEN_AUDIENCES: &[&str] = &[
    "https://oauth2.googleapis.com/token",
    "https://www.googleapis.com/oauth2/v4/token",
];

/// The longest lifetime Google takes for an assertion, from `iat` to `exp`.
const MAX_ASSERTION_SECS: u64 = 3600;

/// How far in the future `iat` may be: clocks differ.
const CLOCK_SKEW_SECS: u64 = 300;

/// The prefix of Google's OAuth scopes; `openid`, `email` and `profile` are the short ones.
const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";

/// The service accounts of `--google-service-account` and the tokens issued to them.
#[derive(Debug)]
pub struct GoogleOAuth {
    /// `Debug` shows no keys: [`GoogleServiceAccount`]'s leaves them out.
    accounts: Vec<GoogleServiceAccount>,
    ttl: Duration,
    /// Every issued token, expired ones too (so that they are refused as expired).
    issued: Mutex<HashMap<String, Issued>>,
}

/// What the mock remembers of an access token it issued.
#[derive(Debug, Clone)]
struct Issued {
    client_email: String,
    scope: String,
    expires_at: Instant,
}

/// Why the Vertex AI routes refused a bearer token: Google answers most cases alike, so the mock
/// names it in [`super::TOKEN_ERROR_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` at all.
    Missing,
    /// Not a token the mock issued.
    Unknown,
    /// Issued without [`CLOUD_PLATFORM_SCOPE`].
    Scope,
    /// Past its `expires_in`.
    Expired,
}

impl Refusal {
    /// The value of [`super::TOKEN_ERROR_HEADER`]: `missing`, `unknown`, `scope` or `expired`.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Unknown => "unknown",
            Refusal::Scope => "scope",
            Refusal::Expired => "expired",
        }
    }
}

/// The JWT claims the mock reads; the times stay JSON so that a wrong type is a time error.
#[derive(Debug, Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<Value>,
    scope: Option<String>,
    iat: Option<Value>,
    exp: Option<Value>,
}

/// The JWT header field the mock checks.
#[derive(Debug, Deserialize)]
struct JwtHeader {
    alg: Option<String>,
}

/// An assertion split and decoded: what was signed, the signature, and the two JSON parts.
struct Jwt<'a> {
    signed: &'a str,
    signature: Vec<u8>,
    header: JwtHeader,
    claims: Claims,
}

/// A granted token request: the account and the scopes it asked for.
struct Grant<'a> {
    account: &'a GoogleServiceAccount,
    scope: String,
}

/// The token endpoint's answer to a granted request, fields in Google's order.
#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
    token_type: &'static str,
}

impl GoogleOAuth {
    /// The service accounts and token lifetime of `config`.
    pub fn new(config: &MockConfig) -> Self {
        Self {
            accounts: config.google_service_accounts.clone(),
            ttl: Duration::from_secs(config.google_token_ttl_secs),
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any `--google-service-account` was given: only then are bearer tokens on the
    /// Vertex AI routes checked as tokens of the mock.
    pub fn is_enabled(&self) -> bool {
        !self.accounts.is_empty()
    }

    /// Who a bearer token is from, for the stats (`sa:<client_email>`, or the token itself when
    /// the mock did not issue it), and whether Vertex AI accepts it.
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
        let label = Cow::Owned(format!("sa:{}", issued.client_email));
        let checked = if Instant::now() >= issued.expires_at {
            Err(Refusal::Expired)
        } else if !issued
            .scope
            .split(' ')
            .any(|scope| scope == CLOUD_PLATFORM_SCOPE)
        {
            Err(Refusal::Scope)
        } else {
            Ok(())
        };
        (label, checked)
    }

    /// Google's checks of a token request with `form`'s fields, `host` being the mock's address
    /// as the caller named it, in the order of the module's documentation.
    fn authenticate(
        &self,
        form: &HashMap<String, String>,
        host: &str,
        now: u64,
    ) -> Result<Grant<'_>, GoogleTokenError> {
        let grant_type = form.get("grant_type").map_or("", String::as_str);
        if grant_type != JWT_BEARER {
            return Err(GoogleTokenError::unsupported_grant(grant_type));
        }
        let assertion = form
            .get("assertion")
            .filter(|assertion| !assertion.is_empty())
            .ok_or_else(GoogleTokenError::missing_assertion)?;
        let jwt = Jwt::parse(assertion).ok_or_else(GoogleTokenError::bad_signature)?;
        if jwt.header.alg.as_deref() != Some("RS256") {
            return Err(GoogleTokenError::bad_signature());
        }
        let iss = jwt.claims.iss.as_deref().unwrap_or_default();
        let mut keys = self
            .accounts
            .iter()
            .filter(|account| account.client_email == iss)
            .peekable();
        if keys.peek().is_none() {
            return Err(GoogleTokenError::account_not_found());
        }
        let account = keys
            .find(|account| jwt.is_signed_by(&account.public_key))
            .ok_or_else(GoogleTokenError::bad_signature)?;
        if !jwt.claims.is_current(now) {
            return Err(GoogleTokenError::not_short_lived());
        }
        if !jwt.claims.is_for(host) {
            return Err(GoogleTokenError::wrong_audience());
        }
        let scope = jwt.claims.scope.as_deref().unwrap_or_default();
        if !is_google_scope(scope) {
            return Err(GoogleTokenError::invalid_scope());
        }
        Ok(Grant {
            account,
            scope: scope.split_whitespace().collect::<Vec<_>>().join(" "),
        })
    }

    /// A new token for `grant`, numbered `number`, remembered until the mock stops.
    fn issue(&self, grant: Grant, number: u64) -> TokenResponse {
        self.issue_to(grant.account.client_email.clone(), grant.scope, number)
    }

    /// A new token for `client_email` with `scope`, numbered `number`.
    fn issue_to(&self, client_email: String, scope: String, number: u64) -> TokenResponse {
        let token = format!("ya29.mock-{number}");
        let issued = Issued {
            client_email,
            scope,
            expires_at: Instant::now() + self.ttl,
        };
        self.issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), issued);
        TokenResponse {
            access_token: token,
            expires_in: self.ttl.as_secs(),
            token_type: "Bearer",
        }
    }
}

impl<'a> Jwt<'a> {
    /// `header.claims.signature`, each part unpadded base64url; `None` when it is not that or a
    /// part is not the JSON it should be.
    fn parse(assertion: &'a str) -> Option<Self> {
        let (signed, signature) = assertion.rsplit_once('.')?;
        let (header, claims) = signed.split_once('.')?;
        Some(Self {
            signed,
            signature: base64url(signature)?,
            header: serde_json::from_slice(&base64url(header)?).ok()?,
            claims: serde_json::from_slice(&base64url(claims)?).ok()?,
        })
    }

    /// Whether the signature is RS256's (RSASSA-PKCS1-v1_5 with SHA-256) by `public_key`
    /// (PKCS#1 DER).
    fn is_signed_by(&self, public_key: &[u8]) -> bool {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
            .verify(self.signed.as_bytes(), &self.signature)
            .is_ok()
    }
}

impl Claims {
    /// Whether `iat` and `exp` are whole seconds that make a short-lived assertion valid `now`:
    /// issued at most [`CLOCK_SKEW_SECS`] ahead, not expired, living at most an hour.
    fn is_current(&self, now: u64) -> bool {
        let (Some(iat), Some(exp)) = (
            self.iat.as_ref().and_then(Value::as_u64),
            self.exp.as_ref().and_then(Value::as_u64),
        ) else {
            return false;
        };
        iat <= now + CLOCK_SKEW_SECS && exp > now && exp > iat && exp - iat <= MAX_ASSERTION_SECS
    }

    /// Whether `aud` is Google's token endpoint or the mock's own, `http://<host>/token` as the
    /// caller reached it (`https` too, behind a TLS front).
    fn is_for(&self, host: &str) -> bool {
        let Some(aud) = self.aud.as_ref().and_then(Value::as_str) else {
            return false;
        };
        TOKEN_AUDIENCES.contains(&aud)
            || ["http://", "https://"].iter().any(|scheme| {
                aud.strip_prefix(scheme)
                    .and_then(|rest| rest.strip_suffix("/token"))
                    .is_some_and(|authority| !host.is_empty() && authority == host)
            })
    }
}

/// Unpadded base64url, as JWTs have it (trailing `=` tolerated).
fn base64url(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
}

/// Whether `scope` is one or more space-separated scopes Google knows the form of: its
/// `https://www.googleapis.com/auth/...` URLs, `openid`, `email` and `profile`.
fn is_google_scope(scope: &str) -> bool {
    let mut scopes = scope.split_whitespace().peekable();
    scopes.peek().is_some()
        && scopes.all(|scope| {
            matches!(scope, "openid" | "email" | "profile")
                || scope
                    .strip_prefix(SCOPE_PREFIX)
                    .is_some_and(|name| !name.is_empty())
        })
}

/// `POST /token`: a token, or Google's refusal; either counted in the stats.
pub async fn token(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_fields(&headers, &body);
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let response = match state.google.authenticate(&form, host, unix_now()) {
        Ok(grant) => {
            let email = grant.account.client_email.clone();
            let granted = state.google.issue(grant, state.next_id());
            state.stats.record_google_token_issued();
            tracing::debug!(%email, "google token issued");
            axum::Json(granted).into_response()
        }
        Err(error) => {
            state.stats.record_google_token_failure();
            tracing::debug!(error = error.error, "google token refused");
            error.render()
        }
    };
    no_store(response)
}

/// The machine's service account on the mock's metadata server: the first
/// `--google-service-account`, named `default` or by its email. `Err` is the metadata server's
/// refusal: 403 without `Metadata-Flavor: Google` (as Google's answers), 404 for another
/// account or when the mock has none.
fn metadata_account<'s>(
    state: &'s MockState,
    account: &str,
    headers: &HeaderMap,
) -> Result<&'s GoogleServiceAccount, (StatusCode, &'static str)> {
    let flavored = headers
        .get("metadata-flavor")
        .and_then(|value| value.to_str().ok())
        == Some("Google");
    if !flavored {
        let refusal = "Missing required header: \"Metadata-Flavor: Google\"\n";
        return Err((StatusCode::FORBIDDEN, refusal));
    }
    state
        .google
        .accounts
        .first()
        .filter(|first| account == "default" || account == first.client_email)
        .ok_or((StatusCode::NOT_FOUND, "no such service account\n"))
}

/// An answer of the metadata server, which always says `Metadata-Flavor: Google`.
fn from_metadata(mut response: Response) -> Response {
    response.headers_mut().insert(
        "metadata-flavor",
        header::HeaderValue::from_static("Google"),
    );
    response
}

/// `GET /computeMetadata/v1/instance/service-accounts/{account}/token`: the metadata server of
/// a Google Cloud machine (see [`metadata_account`]): a token for the `?scopes=` asked
/// (comma-separated; `cloud-platform` when absent), in the token endpoint's JSON.
pub async fn metadata_token(
    State(state): State<Arc<MockState>>,
    Path(account): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let account = match metadata_account(&state, &account, &headers) {
        Ok(account) => account,
        Err(refusal) => return from_metadata(refusal.into_response()),
    };
    let scope = query
        .get("scopes")
        .map(|scopes| scopes.split(',').collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| CLOUD_PLATFORM_SCOPE.to_owned());
    let email = account.client_email.clone();
    let granted = state.google.issue_to(email, scope, state.next_id());
    state.stats.record_metadata_token_issued();
    from_metadata(no_store(axum::Json(granted).into_response()))
}

/// `GET /computeMetadata/v1/instance/service-accounts/{account}/?recursive=true`: the account's
/// email, aliases and scopes, as `google-auth` asks before its first token.
pub async fn metadata_account_info(
    State(state): State<Arc<MockState>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    match metadata_account(&state, &account, &headers) {
        Ok(account) => from_metadata(
            axum::Json(json!({
                "aliases": ["default"],
                "email": account.client_email,
                "scopes": [CLOUD_PLATFORM_SCOPE],
            }))
            .into_response(),
        ),
        Err(refusal) => from_metadata(refusal.into_response()),
    }
}

/// A refused token request: OAuth2's `error` and Google's description of it (always a 400).
#[derive(Debug, Clone, PartialEq, Eq)]
struct GoogleTokenError {
    error: &'static str,
    description: Cow<'static, str>,
}

impl GoogleTokenError {
    fn new(error: &'static str, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }

    /// `grant_type` missing or not the JWT bearer grant.
    fn unsupported_grant(grant_type: &str) -> Self {
        Self::new(
            "unsupported_grant_type",
            format!("Invalid grant_type: {grant_type}"),
        )
    }

    /// No `assertion`.
    fn missing_assertion() -> Self {
        Self::new("invalid_request", "Missing required parameter: assertion")
    }

    /// A JWT that is not one, not RS256, or not signed by the account's key.
    fn bad_signature() -> Self {
        Self::new("invalid_grant", "Invalid JWT Signature.")
    }

    /// `iss` is no `--google-service-account`.
    fn account_not_found() -> Self {
        Self::new("invalid_grant", "Invalid grant: account not found")
    }

    /// `iat` and `exp` are missing, too far apart, or not around now.
    fn not_short_lived() -> Self {
        Self::new(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim.",
        )
    }

    /// `aud` is not the token endpoint.
    fn wrong_audience() -> Self {
        Self::new(
            "invalid_grant",
            "Invalid JWT: Failed audience check. The right audience is \
             https://oauth2.googleapis.com/token",
        )
    }

    /// No scope, or one Google does not know.
    fn invalid_scope() -> Self {
        Self::new(
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        )
    }

    /// Google's JSON error body.
    fn render(&self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};

    use super::*;
    use crate::mock::config::pem_body;

    const EMAIL: &str = "gateway@mock-project.iam.gserviceaccount.com";
    const NOW: u64 = 1_800_000_000;
    const HOST: &str = "127.0.0.1:9090";

    /// The test key pair of `e2e/testdata/vertex`.
    fn key_pair() -> RsaKeyPair {
        let info: Value =
            serde_json::from_str(include_str!("../../testdata/vertex/service-account.json"))
                .expect("service account JSON");
        let pem = info["private_key"].as_str().expect("a private key");
        let der = pem_body(pem, "PRIVATE KEY").expect("a PKCS#8 PEM");
        RsaKeyPair::from_pkcs8(&der).expect("an RSA key")
    }

    fn google(ttl_secs: u64) -> GoogleOAuth {
        let account = GoogleServiceAccount {
            client_email: EMAIL.to_owned(),
            public_key_path: "public-key.der".into(),
            public_key: include_bytes!("../../testdata/vertex/public-key.der").to_vec(),
        };
        GoogleOAuth::new(&MockConfig {
            google_service_accounts: vec![account],
            google_token_ttl_secs: ttl_secs,
            ..MockConfig::default()
        })
    }

    fn encode(value: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    /// A JWT of `header` and `claims` signed by the test key.
    fn sign(header: &Value, claims: &Value) -> String {
        let signed = format!("{}.{}", encode(header), encode(claims));
        let key = key_pair();
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signed.as_bytes(),
            &mut signature,
        )
        .expect("signed");
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature);
        format!("{signed}.{signature}")
    }

    /// The claims `google-auth` sends.
    fn claims() -> Value {
        json!({"iat": NOW, "exp": NOW + 3600, "iss": EMAIL,
               "aud": "https://oauth2.googleapis.com/token", "scope": CLOUD_PLATFORM_SCOPE})
    }

    fn header() -> Value {
        json!({"typ": "JWT", "alg": "RS256", "kid": "mock-key-1"})
    }

    fn form(assertion: &str) -> HashMap<String, String> {
        HashMap::from([
            ("grant_type".to_owned(), JWT_BEARER.to_owned()),
            ("assertion".to_owned(), assertion.to_owned()),
        ])
    }

    /// The description a request with `claims` (and `header`) is refused with.
    fn refusal(google: &GoogleOAuth, header: &Value, claims: &Value) -> Option<String> {
        google
            .authenticate(&form(&sign(header, claims)), HOST, NOW)
            .err()
            .map(|error| error.description.into_owned())
    }

    fn with(name: &str, value: Value) -> Value {
        let mut claims = claims();
        claims[name] = value;
        claims
    }

    #[test]
    fn a_jwt_signed_by_the_account_gets_a_token() {
        let google = google(60);
        assert_eq!(refusal(&google, &header(), &claims()), None);
        let grant = google
            .authenticate(&form(&sign(&header(), &claims())), HOST, NOW)
            .expect("granted");
        let answer = google.issue(grant, 7);
        assert_eq!(answer.access_token, "ya29.mock-7");
        assert_eq!(answer.expires_in, 60);
        let (label, checked) = google.check(&answer.access_token);
        assert_eq!(
            (label.as_ref(), checked),
            (format!("sa:{EMAIL}").as_str(), Ok(()))
        );
        let (label, checked) = google.check("ya29.made-up");
        assert_eq!(
            (label.as_ref(), checked),
            ("ya29.made-up", Err(Refusal::Unknown))
        );
    }

    #[test]
    fn each_check_refuses_as_google_does() {
        let google = google(60);
        let signature = Some("Invalid JWT Signature.".to_owned());
        let timeframe = refusal(&google, &header(), &with("exp", json!(NOW + 3601)));
        assert!(timeframe.is_some_and(|text| text.contains("short-lived token")));
        for claims in [
            with("exp", json!(NOW)),
            with("iat", json!(NOW + 600)),
            with("iat", json!("now")),
            with("exp", Value::Null),
        ] {
            let refused = refusal(&google, &header(), &claims).unwrap_or_default();
            assert!(refused.contains("short-lived token"), "{claims}: {refused}");
        }
        assert_eq!(
            refusal(
                &google,
                &header(),
                &with("iss", json!("other@p.iam.gserviceaccount.com"))
            ),
            Some("Invalid grant: account not found".to_owned())
        );
        let hs256 = json!({"typ": "JWT", "alg": "HS256"});
        assert_eq!(refusal(&google, &hs256, &claims()), signature);
        let refused = refusal(
            &google,
            &header(),
            &with("aud", json!("https://example.com/token")),
        );
        assert!(refused.is_some_and(|text| text.contains("Failed audience check")));
        for scope in [json!(""), json!("cloud-platform"), Value::Null] {
            assert_eq!(
                refusal(&google, &header(), &with("scope", scope.clone())),
                Some("Invalid OAuth scope or ID token audience provided.".to_owned()),
                "{scope}"
            );
        }
        let own = with("aud", json!(format!("http://{HOST}/token")));
        assert_eq!(refusal(&google, &header(), &own), None);
    }

    #[test]
    fn a_tampered_or_malformed_jwt_has_an_invalid_signature() {
        let google = google(60);
        let signed = sign(&header(), &claims());
        let (_, signature) = signed.rsplit_once('.').unwrap_or_default();
        let forged = format!(
            "{}.{}.{signature}",
            encode(&header()),
            encode(&with("exp", json!(NOW + 60)))
        );
        for assertion in [forged.as_str(), "abc", "a.b.c", &signed[..signed.len() - 4]] {
            let refused = google.authenticate(&form(assertion), HOST, NOW).err();
            assert_eq!(
                refused,
                Some(GoogleTokenError::bad_signature()),
                "{assertion}"
            );
        }
        let mut fields = form(&signed);
        fields.insert("grant_type".to_owned(), "client_credentials".to_owned());
        let refused = google.authenticate(&fields, HOST, NOW).err();
        assert_eq!(
            refused.map(|error| (error.error, error.description.into_owned())),
            Some((
                "unsupported_grant_type",
                "Invalid grant_type: client_credentials".to_owned()
            ))
        );
        fields.insert("grant_type".to_owned(), JWT_BEARER.to_owned());
        fields.remove("assertion");
        let refused = google.authenticate(&fields, HOST, NOW).err();
        assert_eq!(refused.map(|error| error.error), Some("invalid_request"));
    }

    #[test]
    fn tokens_without_cloud_platform_or_expired_are_refused() {
        let google = google(60);
        let email = with("scope", json!("email"));
        let grant = google
            .authenticate(&form(&sign(&header(), &email)), HOST, NOW)
            .expect("other Google scopes get tokens");
        let token = google.issue(grant, 1).access_token;
        assert_eq!(google.check(&token).1, Err(Refusal::Scope));

        let grant = google
            .authenticate(&form(&sign(&header(), &claims())), HOST, NOW)
            .expect("granted");
        let token = google.issue(grant, 2).access_token;
        if let Some(issued) = google
            .issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&token)
        {
            issued.expires_at = Instant::now();
        }
        assert_eq!(google.check(&token).1, Err(Refusal::Expired));
    }
}
