//! Google OAuth2 tokens for Vertex AI keys: the service account's JSON key signs a JWT
//! (RS256, by `ring`) that its `token_uri` exchanges for an access token (the JWT-bearer
//! grant, RFC 7523), scoped to `cloud-platform`; without a key (Application Default
//! Credentials on Google Cloud), the metadata server's token for the machine's service
//! account.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::json;

use super::tokens::{request_token, Token, TokenCache};
use crate::config::ServiceAccountKey;

/// The scope Vertex AI's API needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A signed assertion is valid this long (Google's maximum: an hour).
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// One service account's signing key and its cached token.
pub struct GoogleTokens {
    key_pair: RsaKeyPair,
    client_email: String,
    key_id: Option<String>,
    token_uri: String,
    pub(super) cache: TokenCache,
}

impl GoogleTokens {
    /// The token source for a service account's JSON key, or why it cannot sign.
    pub fn for_key(text: &str) -> Result<Self, String> {
        let key = ServiceAccountKey::parse(text)?;
        let der = pem_body(&key.private_key)
            .ok_or_else(|| "private_key is not a PEM block".to_owned())?;
        let key_pair = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("private_key is not an RSA PKCS#8 key: {e}"))?;
        Ok(Self {
            key_pair,
            client_email: key.client_email,
            key_id: key.private_key_id,
            token_uri: key.token_uri,
            cache: TokenCache::default(),
        })
    }

    pub(super) async fn fetch(&self, client: &reqwest::Client) -> Result<Token, String> {
        let failed = |why: String| {
            format!(
                "Google token for {} from {}: {why}",
                self.client_email, self.token_uri
            )
        };
        let assertion = self.assertion().map_err(failed)?;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ];
        let token = request_token(client, &self.token_uri, &form)
            .await
            .map_err(failed)?;
        tracing::debug!(account = %self.client_email, expires_in = token.expires_in, "fetched a Google token");
        Ok(token)
    }

    /// The signed JWT asking `token_uri` for a `cloud-platform` token.
    fn assertion(&self) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| "the clock is before 1970".to_owned())?
            .as_secs();
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = kid.as_str().into();
        }
        let claims = json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key_pair.public().modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the assertion failed".to_owned())?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// The environment variable Google's libraries read for the metadata server's address
/// (`host[:port]`).
pub const METADATA_HOST_VARIABLE: &str = "GCE_METADATA_HOST";

/// The metadata server's address on Google Cloud.
const METADATA_HOST: &str = "metadata.google.internal";

/// The machine's service account's tokens, from the metadata server (GCE, GKE Workload
/// Identity, Cloud Run).
pub struct MetadataTokens {
    url: String,
    pub(super) cache: TokenCache,
}

impl MetadataTokens {
    /// The metadata server at `GCE_METADATA_HOST`, else Google Cloud's.
    pub fn from_env() -> Self {
        let host = std::env::var(METADATA_HOST_VARIABLE)
            .ok()
            .map(|host| host.trim().trim_end_matches('/').to_owned())
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| METADATA_HOST.to_owned());
        let host = host
            .strip_prefix("http://")
            .map(str::to_owned)
            .unwrap_or(host);
        Self {
            url: format!(
                "http://{host}/computeMetadata/v1/instance/service-accounts/default/token?scopes={SCOPE}"
            ),
            cache: TokenCache::default(),
        }
    }

    pub(super) async fn fetch(&self, client: &reqwest::Client) -> Result<Token, String> {
        let failed =
            |why: String| format!("Google token from the metadata server {}: {why}", self.url);
        let response = client
            .get(&self.url)
            .header("Metadata-Flavor", "Google")
            .timeout(METADATA_TIMEOUT)
            .send()
            .await
            .map_err(|e| failed(format!("request failed: {e} (not on Google Cloud? give the key's auth_credentials or GOOGLE_APPLICATION_CREDENTIALS)")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(format!("reading the answer: {e}")))?;
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            return Err(failed(format!("{status}: {text}")));
        }
        let token: Token = serde_json::from_slice(&body)
            .map_err(|e| failed(format!("the answer is not a token: {e}")))?;
        tracing::debug!(
            expires_in = token.expires_in,
            "fetched a Google token from the metadata server"
        );
        Ok(token)
    }
}

/// The metadata server answers at once or not at all.
const METADATA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The bytes of a PEM block's base64 body.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("-----"))
        .collect();
    STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(private_key: &str) -> String {
        json!({"type": "service_account", "client_email": "a@p.iam.gserviceaccount.com",
               "private_key": private_key, "token_uri": "https://oauth2.googleapis.com/token"})
        .to_string()
    }

    fn refusal(text: &str) -> String {
        match GoogleTokens::for_key(text) {
            Err(why) => why,
            Ok(_) => panic!("{text} was accepted"),
        }
    }

    #[test]
    fn keys_that_cannot_sign_are_refused_saying_why() {
        assert!(refusal("not json").starts_with("not a service account's JSON key"));
        assert!(
            refusal(r#"{"type": "authorized_user", "client_email": "x", "private_key": "y"}"#)
                .starts_with("type must be \"service_account\"")
        );
        assert!(refusal(&key(
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"
        ))
        .starts_with("private_key must be a PKCS#8 PEM key"));
        assert_eq!(
            refusal(&key(
                "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----"
            )),
            "private_key is not a PEM block"
        );
        assert!(refusal(&key(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
        ))
        .starts_with("private_key is not an RSA PKCS#8 key"));
    }
}
