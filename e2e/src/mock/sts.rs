//! AWS STS's `AssumeRole` as the AWS SDKs call it (the Query API: `POST /` with a form-encoded
//! body, `Action=AssumeRole&Version=2011-06-15&RoleArn=..&RoleSessionName=..`), and the check
//! of the temporary credentials it issued when Bedrock requests are signed with them.
//!
//! A call is checked in this order, each refusal as STS answers it (XML `ErrorResponse` with
//! `Type`, `Code`, `Message` and a `RequestId`): the SigV4 signature ([`sigv4`], service `sts`)
//! by one of `--aws-credentials` (403 `MissingAuthenticationToken`, `IncompleteSignature`,
//! `InvalidClientTokenId`, `SignatureDoesNotMatch`); `Action` and `Version` (400
//! `InvalidAction`); the parameters, strictly: one AssumeRole does not have is refused (400
//! `InvalidParameterValue`, a mock message), `RoleArn` and `RoleSessionName` must be there and
//! `DurationSeconds` within 900..=43200 (400 `ValidationError`); the role one of `--sts-role`
//! and, when it names an external id, the call's `ExternalId` that one (403 `AccessDenied`).
//!
//! A granted call gets the role's access key id and secret with a fresh session token
//! (`mock-sts-session-<n>-<random>`), valid for `DurationSeconds` (default 3600) or
//! `--sts-ttl-secs`, whichever is shorter. The Bedrock routes accept a signature by the role's
//! access key id only with a session token the mock issued for it, and refuse it once expired
//! (403 `ExpiredTokenException`). Issued tokens are remembered for as long as the mock runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::config::{MockConfig, StsRole};
use super::entra::{civil_date, form_fields, guid};
use super::error::ApiError;
use super::sigv4::{self, Authorization};
use super::{unix_now, MockState};

/// The service STS's signatures are scoped to.
pub const SERVICE: &str = "sts";

/// The API version of STS's Query API.
const VERSION: &str = "2011-06-15";

/// The XML namespace of STS's answers.
const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The parameters of `AssumeRole` (list members as their Query API prefixes).
const PARAMETERS: &[&str] = &[
    "Action",
    "Version",
    "RoleArn",
    "RoleSessionName",
    "DurationSeconds",
    "ExternalId",
    "Policy",
    "SerialNumber",
    "TokenCode",
    "SourceIdentity",
];

/// Prefixes of `AssumeRole`'s list parameters (`PolicyArns.member.1.arn`, ...).
const LIST_PARAMETERS: &[&str] = &[
    "PolicyArns.member.",
    "Tags.member.",
    "TransitiveTagKeys.member.",
    "ProvidedContexts.member.",
];

/// AWS's message for temporary credentials past their expiration.
const EXPIRED_TOKEN: &str = "The security token included in the request is expired";

/// AWS's message for an access key id or session token it does not know.
const INVALID_TOKEN: &str = "The security token included in the request is invalid.";

/// The roles of `--sts-role` and the session tokens issued for them.
#[derive(Debug)]
pub struct Sts {
    /// `Debug` shows no secrets: [`StsRole`]'s leaves them out.
    roles: Vec<StsRole>,
    ttl: Duration,
    /// Every issued session token with its access key id and expiry, expired ones too.
    issued: Mutex<HashMap<String, (String, Instant)>>,
}

/// A refusal as STS answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StsError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl StsError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// STS's `ErrorResponse`; `Sender` for a 4xx, as every refusal here is.
    fn render(&self) -> Response {
        let body = format!(
            "<ErrorResponse xmlns=\"{NAMESPACE}\">\n  <Error>\n    <Type>Sender</Type>\n    \
             <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n\
             </ErrorResponse>\n",
            self.code,
            escape(&self.message),
            guid()
        );
        (self.status, [(CONTENT_TYPE, "text/xml")], body).into_response()
    }
}

/// The Bedrock-style refusal of the SigV4 verifier as STS names it.
impl From<ApiError> for StsError {
    fn from(error: ApiError) -> Self {
        let code = match error.kind {
            Some("InvalidSignatureException") => "SignatureDoesNotMatch",
            Some("IncompleteSignatureException") => "IncompleteSignature",
            Some("UnrecognizedClientException") => "InvalidClientTokenId",
            Some("MissingAuthenticationTokenException") => "MissingAuthenticationToken",
            _ => "InvalidRequest",
        };
        Self::new(error.status, code, error.message.into_owned())
    }
}

impl Sts {
    /// The roles and credential lifetime of `config`.
    pub fn new(config: &MockConfig) -> Self {
        Self {
            roles: config.sts_roles.clone(),
            ttl: Duration::from_secs(config.sts_ttl_secs),
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// The secret of `access_key_id` when it is a role's and `headers` carry a session token
    /// the mock issued for it that has not expired; `None` when it is no role's key; AWS's 403
    /// otherwise.
    pub fn temporary_secret(
        &self,
        access_key_id: &str,
        headers: &HeaderMap,
    ) -> Option<Result<String, ApiError>> {
        let role = self
            .roles
            .iter()
            .find(|role| role.access_key_id == access_key_id)?;
        let token = headers
            .get("x-amz-security-token")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let issued = self
            .issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned();
        Some(match issued {
            Some((key, expires_at)) if key == access_key_id => {
                if Instant::now() < expires_at {
                    Ok(role.secret_access_key.clone())
                } else {
                    Err(ApiError::aws_forbidden(
                        "ExpiredTokenException",
                        EXPIRED_TOKEN,
                    ))
                }
            }
            _ => Err(ApiError::aws_forbidden(
                "UnrecognizedClientException",
                INVALID_TOKEN,
            )),
        })
    }

    /// STS's checks of an `AssumeRole` call by `caller` with `form`, in the order of the
    /// module's documentation (the signature already checked); the role and the lifetime
    /// granted.
    fn authorize<'a>(
        &'a self,
        caller: &str,
        form: &HashMap<String, String>,
    ) -> Result<(&'a StsRole, Duration, String), StsError> {
        let action = form.get("Action").map(String::as_str).unwrap_or_default();
        let version = form.get("Version").map(String::as_str).unwrap_or_default();
        if action != "AssumeRole" || version != VERSION {
            return Err(StsError::new(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                format!("Could not find operation {action} for version {version}"),
            ));
        }
        let mut names: Vec<&String> = form.keys().collect();
        names.sort();
        if let Some(unknown) = names.into_iter().find(|name| {
            !PARAMETERS.contains(&name.as_str())
                && !LIST_PARAMETERS
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
        }) {
            return Err(StsError::new(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                format!("mock: AssumeRole has no parameter {unknown}"),
            ));
        }
        let required = |name: &str, member: &str| {
            form.get(name)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| {
                    StsError::new(
                        StatusCode::BAD_REQUEST,
                        "ValidationError",
                        format!(
                            "1 validation error detected: Value null at '{member}' failed to \
                         satisfy constraint: Member must not be null"
                        ),
                    )
                })
        };
        let role_arn = required("RoleArn", "roleArn")?;
        let session_name = required("RoleSessionName", "roleSessionName")?;
        let duration = match form.get("DurationSeconds") {
            None => 3600,
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|secs| (900..=43_200).contains(secs))
                .ok_or_else(|| {
                    StsError::new(
                        StatusCode::BAD_REQUEST,
                        "ValidationError",
                        format!(
                            "1 validation error detected: Value '{text}' at 'durationSeconds' \
                             failed to satisfy constraint: Member must have value greater \
                             than or equal to 900 and less than or equal to 43200"
                        ),
                    )
                })?,
        };
        let denied = || {
            StsError::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                format!(
                    "User: arn:aws:iam::123456789012:user/{caller} is not authorized to perform: \
                     sts:AssumeRole on resource: {role_arn}"
                ),
            )
        };
        let role = self
            .roles
            .iter()
            .find(|role| role.arn == *role_arn)
            .ok_or_else(denied)?;
        if role
            .external_id
            .as_ref()
            .is_some_and(|expected| form.get("ExternalId") != Some(expected))
        {
            return Err(denied());
        }
        let lifetime = Duration::from_secs(duration).min(self.ttl);
        Ok((role, lifetime, session_name.clone()))
    }

    /// A new session token for `role`, valid for `lifetime`, numbered `number`.
    fn issue(&self, role: &StsRole, lifetime: Duration, number: u64) -> String {
        let token = format!("mock-sts-session-{number}-{:016x}", fastrand::u64(..));
        self.issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                token.clone(),
                (role.access_key_id.clone(), Instant::now() + lifetime),
            );
        token
    }
}

/// `POST /`: STS's Query API, of which the mock serves `AssumeRole`. Every call is counted,
/// refused ones apart too.
pub async fn query(
    State(state): State<Arc<MockState>>,
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
    let answer = authenticate(&state, &request).and_then(|caller| {
        let form = form_fields(&headers, &body);
        let (role, lifetime, session_name) = state.sts.authorize(&caller, &form)?;
        let token = state.sts.issue(role, lifetime, state.next_id());
        Ok(granted(role, &session_name, &token, lifetime))
    });
    let granted = answer.is_ok();
    state.stats.record_sts_call(granted);
    tracing::debug!(granted, "sts AssumeRole");
    answer.unwrap_or_else(|error| error.render())
}

/// The caller's access key id once its signature checks out against `--aws-credentials`.
fn authenticate(state: &MockState, request: &sigv4::Request) -> Result<String, StsError> {
    let Some(value) = request.headers.get(AUTHORIZATION) else {
        return Err(StsError::new(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        ));
    };
    let value = value.to_str().unwrap_or_default();
    let auth = Authorization::parse(value)
        .map_err(|message| StsError::new(StatusCode::FORBIDDEN, "IncompleteSignature", message))?;
    let Some(secret) = state.aws_credentials.get(auth.access_key_id) else {
        return Err(StsError::new(
            StatusCode::FORBIDDEN,
            "InvalidClientTokenId",
            INVALID_TOKEN,
        ));
    };
    sigv4::verify(request, &auth, secret, SERVICE)?;
    Ok(auth.access_key_id.to_owned())
}

/// STS's `AssumeRoleResponse`.
fn granted(role: &StsRole, session_name: &str, token: &str, lifetime: Duration) -> Response {
    let account = role.arn.split(':').nth(4).unwrap_or("123456789012");
    let role_name = role.arn.rsplit('/').next().unwrap_or_default();
    let expiration = iso8601(unix_now() + lifetime.as_secs());
    let body = format!(
        "<AssumeRoleResponse xmlns=\"{NAMESPACE}\">\n  <AssumeRoleResult>\n    \
         <AssumedRoleUser>\n      <AssumedRoleId>AROAMOCK{id}:{session}</AssumedRoleId>\n      \
         <Arn>arn:aws:sts::{account}:assumed-role/{role_name}/{session}</Arn>\n    \
         </AssumedRoleUser>\n    <Credentials>\n      <AccessKeyId>{akid}</AccessKeyId>\n      \
         <SecretAccessKey>{secret}</SecretAccessKey>\n      <SessionToken>{token}</SessionToken>\n      \
         <Expiration>{expiration}</Expiration>\n    </Credentials>\n  </AssumeRoleResult>\n  \
         <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n\
         </AssumeRoleResponse>\n",
        id = fastrand::u32(..),
        session = escape(session_name),
        account = escape(account),
        role_name = escape(role_name),
        akid = escape(&role.access_key_id),
        secret = escape(&role.secret_access_key),
        token = escape(token),
        request_id = guid(),
    );
    ([(CONTENT_TYPE, "text/xml")], body).into_response()
}

/// `unix` seconds as STS writes times: `2024-01-31T12:00:00Z`.
fn iso8601(unix: u64) -> String {
    let (year, month, day) = civil_date(unix / 86_400);
    let seconds = unix % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// `text` with XML's special characters escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(external_id: Option<&str>) -> Sts {
        Sts::new(&MockConfig {
            sts_roles: vec![StsRole {
                arn: "arn:aws:iam::123456789012:role/r".into(),
                access_key_id: "ASIAROLE".into(),
                secret_access_key: "role-secret".into(),
                external_id: external_id.map(str::to_owned),
            }],
            sts_ttl_secs: 60,
            ..MockConfig::default()
        })
    }

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn call(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut pairs = vec![
            ("Action", "AssumeRole"),
            ("Version", VERSION),
            ("RoleArn", "arn:aws:iam::123456789012:role/r"),
            ("RoleSessionName", "s"),
        ];
        pairs.extend_from_slice(extra);
        form(&pairs)
    }

    fn code(sts: &Sts, form: &HashMap<String, String>) -> &'static str {
        sts.authorize("AKIDCALLER", form).expect_err("refused").code
    }

    #[test]
    fn each_check_refuses_with_stss_code() {
        let sts = sts(Some("ext-1"));
        assert_eq!(
            code(&sts, &form(&[("Action", "GetCallerIdentity")])),
            "InvalidAction"
        );
        assert_eq!(
            code(&sts, &call(&[("Bogus", "1")])),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(&sts, &call(&[("DurationSeconds", "60")])),
            "ValidationError"
        );
        let no_name = form(&[
            ("Action", "AssumeRole"),
            ("Version", VERSION),
            ("RoleArn", "x"),
        ]);
        assert_eq!(code(&sts, &no_name), "ValidationError");
        assert_eq!(code(&sts, &call(&[])), "AccessDenied", "no external id");
        assert_eq!(
            code(&sts, &call(&[("ExternalId", "wrong")])),
            "AccessDenied"
        );
        let other = call(&[
            ("ExternalId", "ext-1"),
            ("RoleArn", "arn:aws:iam::1:role/o"),
        ]);
        let other = sts
            .authorize("AKIDCALLER", &other)
            .expect_err("unknown role");
        assert!(
            other
                .message
                .ends_with("on resource: arn:aws:iam::1:role/o"),
            "{other:?}"
        );
        let (role, lifetime, _) = sts
            .authorize(
                "AKIDCALLER",
                &call(&[("ExternalId", "ext-1"), ("PolicyArns.member.1.arn", "p")]),
            )
            .expect("granted");
        assert_eq!(role.access_key_id, "ASIAROLE");
        assert_eq!(
            lifetime,
            Duration::from_secs(60),
            "capped by --sts-ttl-secs"
        );
    }

    #[test]
    fn issued_tokens_sign_for_their_role_until_they_expire() {
        let sts = sts(None);
        let headers = |token: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-amz-security-token", token.parse().expect("header"));
            headers
        };
        assert!(sts.temporary_secret("AKIDOTHER", &headers("t")).is_none());
        let refused = sts.temporary_secret("ASIAROLE", &headers("unknown"));
        assert_eq!(
            refused.and_then(Result::err).and_then(|e| e.kind),
            Some("UnrecognizedClientException")
        );
        let role = sts.roles[0].clone();
        let token = sts.issue(&role, Duration::from_secs(60), 1);
        assert_eq!(
            sts.temporary_secret("ASIAROLE", &headers(&token)),
            Some(Ok("role-secret".to_owned()))
        );
        let expired = sts.issue(&role, Duration::ZERO, 2);
        assert_eq!(
            sts.temporary_secret("ASIAROLE", &headers(&expired))
                .and_then(Result::err)
                .and_then(|e| e.kind),
            Some("ExpiredTokenException")
        );
    }

    #[test]
    fn times_and_text_are_written_as_sts_writes_them() {
        assert_eq!(iso8601(1_706_702_400), "2024-01-31T12:00:00Z");
        assert_eq!(escape("a<b&'\""), "a&lt;b&amp;&apos;&quot;");
    }
}
