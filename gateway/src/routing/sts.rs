//! AWS STS `AssumeRole` for Bedrock keys with a `role_arn`: the key's own IAM credentials sign
//! a Query API call (`POST` of `Action=AssumeRole&Version=2011-06-15&...`, SigV4 for `sts`)
//! to `https://sts.{region}.amazonaws.com` (or `AWS_ENDPOINT_URL_STS`, as the AWS SDKs read
//! it), and the temporary credentials of its XML answer sign the key's Bedrock requests. They
//! are cached per key and fetched again 5 minutes (at most half their lifetime) before they
//! expire, one fetch at a time (`routing/tokens.rs`).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::identity::Identity;

use super::sigv4::sign_request;
use super::tokens::{Fetched, TokenCache, FETCH_TIMEOUT};
use crate::config::BedrockKeyConfig;

/// The environment variable naming the STS endpoint instead of the region's (the AWS SDKs'
/// service-specific endpoint variable).
pub const STS_ENDPOINT_VAR: &str = "AWS_ENDPOINT_URL_STS";

/// The session name when the key sets none.
pub const DEFAULT_SESSION_NAME: &str = "bifrost-gateway";

/// The lifetime asked for (STS's default for a role session: an hour).
const DURATION_SECONDS: &str = "3600";

/// The service STS's signatures are scoped to.
const STS_SERVICE: &str = "sts";

/// The STS API version of the Query API.
const STS_VERSION: &str = "2011-06-15";

/// An IAM role a key assumes, and its cached temporary credentials.
pub struct AssumedRole {
    url: String,
    role_arn: String,
    external_id: Option<String>,
    session_name: String,
    cache: TokenCache<Identity>,
}

impl AssumedRole {
    /// The role `role_arn` of `config`'s key, assumed at `endpoint` (or the STS endpoint of
    /// `region`).
    pub fn new(
        config: &BedrockKeyConfig,
        role_arn: &str,
        region: &str,
        endpoint: Option<&str>,
    ) -> Self {
        let url = match endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
            None => format!("https://sts.{region}.amazonaws.com"),
        };
        Self {
            url,
            role_arn: role_arn.to_owned(),
            external_id: config.external_id.clone(),
            session_name: config
                .session_name
                .clone()
                .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned()),
            cache: TokenCache::default(),
        }
    }

    /// The STS endpoint from the environment (`AWS_ENDPOINT_URL_STS`), when set.
    pub fn endpoint_from_env() -> Option<String> {
        std::env::var(STS_ENDPOINT_VAR)
            .ok()
            .filter(|url| !url.trim().is_empty())
    }

    /// The role's temporary credentials: cached, or assumed again with `own` (the key's
    /// credentials) in `region` when due.
    pub async fn credentials(
        &self,
        client: &reqwest::Client,
        own: &Identity,
        region: &str,
    ) -> Result<Identity, String> {
        self.cache
            .get(|| async {
                self.assume(client, own, region).await.map_err(|why| {
                    format!("STS AssumeRole of {} at {}: {why}", self.role_arn, self.url)
                })
            })
            .await
    }

    /// One `AssumeRole` call.
    async fn assume(
        &self,
        client: &reqwest::Client,
        own: &Identity,
        region: &str,
    ) -> Result<Fetched<Identity>, String> {
        let mut form = vec![
            ("Action", "AssumeRole"),
            ("Version", STS_VERSION),
            ("RoleArn", self.role_arn.as_str()),
            ("RoleSessionName", self.session_name.as_str()),
            ("DurationSeconds", DURATION_SECONDS),
        ];
        if let Some(external_id) = &self.external_id {
            form.push(("ExternalId", external_id.as_str()));
        }
        let mut request = client
            .post(format!("{}/", self.url))
            .form(&form)
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the request: {e}"))?;
        sign_request(&mut request, own, region, STS_SERVICE)?;
        let response = client
            .execute(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(format!("{status}: {}", sts_error(&text)));
        }
        let assumed = parse_credentials(&text)?;
        tracing::debug!(
            role_arn = %self.role_arn,
            access_key = %assumed.access_key_id,
            expires_in = assumed.lifetime.as_secs(),
            "assumed an IAM role"
        );
        let credentials = Credentials::new(
            assumed.access_key_id,
            assumed.secret_access_key,
            Some(assumed.session_token),
            Some(SystemTime::now() + assumed.lifetime),
            "sts-assume-role",
        );
        Ok(Fetched {
            value: credentials.into(),
            lifetime: assumed.lifetime,
        })
    }
}

/// Temporary credentials as `AssumeRoleResponse` carries them.
#[derive(Debug, PartialEq)]
struct AssumedCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    /// From now until `Expiration`.
    lifetime: Duration,
}

/// The `Credentials` of an `AssumeRoleResponse`; the lifetime is counted from now.
fn parse_credentials(xml: &str) -> Result<AssumedCredentials, String> {
    let credentials = element(xml, "Credentials")
        .ok_or("the answer has no Credentials element (not an AssumeRoleResponse)")?;
    let field = |name: &str| {
        element(credentials, name)
            .map(unescape)
            .filter(|value| !value.trim().is_empty())
            .ok_or(format!("the answer's Credentials have no {name}"))
    };
    let expiration = field("Expiration")?;
    let expires_at: jiff::Timestamp = expiration.trim().parse().map_err(|e| {
        format!("the answer's Expiration \"{expiration}\" is not an ISO 8601 time: {e}")
    })?;
    let left = expires_at.as_millisecond() - jiff::Timestamp::now().as_millisecond();
    let lifetime = u64::try_from(left)
        .ok()
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
        .ok_or(format!(
            "the credentials STS answered expired already ({expiration}); is the clock right?"
        ))?;
    Ok(AssumedCredentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: field("SessionToken")?,
        lifetime,
    })
}

/// STS's `<Error>`: `Code: Message`, else the answer's start as text.
fn sts_error(xml: &str) -> String {
    let error = element(xml, "Error");
    let part = |name: &str| error.and_then(|e| element(e, name)).map(unescape);
    match (part("Code"), part("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => xml.trim().chars().take(500).collect(),
    }
}

/// The text inside the first `<name>...</name>` of `xml`. STS's answers are flat, element-only
/// XML without attributes on these elements, which is all this reads.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(&xml[start..end])
}

/// XML's predefined entities and numeric character references replaced.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let entity = rest.find(';').map(|end| (&rest[1..end], end));
        let decoded = entity.and_then(|(name, end)| {
            let c = match name {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                _ => {
                    let code = match name.strip_prefix("#x") {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => name.strip_prefix('#')?.parse().ok()?,
                    };
                    char::from_u32(code)?
                }
            };
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(expiration: &str) -> String {
        format!(
            r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn></AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>wJal/K7+MDENG&amp;x</SecretAccessKey>
      <SessionToken>FwoG&#x2F;token&#61;&#61;</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
  </AssumeRoleResult>
</AssumeRoleResponse>"#
        )
    }

    #[test]
    fn the_credentials_of_an_answer_are_read_and_unescaped() {
        let expiration = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(900);
        let parsed = parse_credentials(&answer(&expiration.to_string())).expect("parses");
        assert_eq!(parsed.access_key_id, "ASIAEXAMPLE");
        assert_eq!(parsed.secret_access_key, "wJal/K7+MDENG&x");
        assert_eq!(parsed.session_token, "FwoG/token==");
        let secs = parsed.lifetime.as_secs();
        assert!((890..=900).contains(&secs), "{secs}");
    }

    #[test]
    fn expired_or_incomplete_answers_say_what_is_wrong() {
        let expired = parse_credentials(&answer("2020-01-01T00:00:00Z")).expect_err("expired");
        assert!(
            expired.contains("expired already (2020-01-01T00:00:00Z)"),
            "{expired}"
        );
        let bad = parse_credentials(&answer("tomorrow")).expect_err("no time");
        assert!(
            bad.starts_with("the answer's Expiration \"tomorrow\""),
            "{bad}"
        );
        let missing = parse_credentials("<ErrorResponse/>").expect_err("no credentials");
        assert!(missing.contains("no Credentials element"), "{missing}");
        let no_token = answer("2099-01-01T00:00:00Z").replace("<SessionToken>", "<X>");
        assert_eq!(
            parse_credentials(&no_token).expect_err("no token"),
            "the answer's Credentials have no SessionToken"
        );
    }

    #[test]
    fn sts_errors_are_code_and_message() {
        let xml = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>AccessDenied</Code>
    <Message>User: arn:aws:iam::1:user/u is not authorized &amp; so on</Message></Error>
  <RequestId>r</RequestId></ErrorResponse>"#;
        assert_eq!(
            sts_error(xml),
            "AccessDenied: User: arn:aws:iam::1:user/u is not authorized & so on"
        );
        assert_eq!(sts_error("  plain text  "), "plain text");
        assert_eq!(unescape("a &unknown; b & c &#65;"), "a &unknown; b & c A");
    }
}
