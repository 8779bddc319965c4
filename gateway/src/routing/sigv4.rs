//! AWS Signature Version 4 for Bedrock keys with IAM credentials, by the AWS SDK's own
//! `aws-sigv4` crate: every attempt's request is signed as built (method, URL, headers, body),
//! just before it is sent. A key with a `role_arn` signs with the role's temporary credentials
//! (`routing/sts.rs`), which its own credentials get from STS.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderName, HeaderValue};

use super::sts::AssumedRole;
use crate::config::BedrockKeyConfig;

/// The service name Bedrock Runtime's signatures are scoped to.
pub const BEDROCK_SERVICE: &str = "bedrock";

/// The service name Bedrock Mantle's (OpenAI-compatible API) signatures are scoped to.
pub const MANTLE_SERVICE: &str = "bedrock-mantle";

/// One key's IAM credentials and region, and the role it assumes, if any.
pub struct AwsSigner {
    /// The key's own credentials: what Bedrock requests are signed with, or with a role what
    /// the STS calls are signed with.
    own: Identity,
    region: String,
    /// The service the signatures are scoped to.
    service: &'static str,
    /// The access key id, for logs (never the secret).
    access_key: String,
    /// `role_arn`: requests are signed with the role's temporary credentials.
    role: Option<AssumedRole>,
}

impl AwsSigner {
    /// The signer for `config`'s IAM credentials; `None` when it has none (an API key is
    /// used instead). Its signatures are scoped to `service` ([`BEDROCK_SERVICE`] or
    /// [`MANTLE_SERVICE`]); `sts_endpoint` is where a `role_arn` is assumed (`None`: the key's
    /// region's `https://sts.{region}.amazonaws.com`).
    pub fn for_key(
        config: &BedrockKeyConfig,
        service: &'static str,
        sts_endpoint: Option<&str>,
    ) -> Option<Self> {
        let (access_key, secret_key) = (config.access_key.as_ref()?, config.secret_key.as_ref()?);
        let credentials = Credentials::new(
            access_key,
            secret_key,
            config.session_token.clone(),
            None,
            "bifrost-config",
        );
        let region = config.region().to_owned();
        Some(Self {
            own: credentials.into(),
            role: config
                .role_arn
                .as_ref()
                .map(|role_arn| AssumedRole::new(config, role_arn, &region, sts_endpoint)),
            region,
            service,
            access_key: access_key.clone(),
        })
    }

    /// The credentials this attempt signs with: the key's own, or the assumed role's (cached,
    /// fetched from STS when due; why not, naming the role and STS's error).
    pub async fn credentials(&self, client: &reqwest::Client) -> Result<Identity, String> {
        match &self.role {
            Some(role) => role.credentials(client, &self.own, &self.region).await,
            None => Ok(self.own.clone()),
        }
    }

    /// Sign a Bedrock (or Mantle) `request` in place with `identity` (from
    /// [`AwsSigner::credentials`]).
    pub fn sign(&self, request: &mut reqwest::Request, identity: &Identity) -> Result<(), String> {
        sign_request(request, identity, &self.region, self.service)
            .map_err(|e| format!("{e} (key {})", self.access_key))
    }
}

/// Sign `request` in place for `service` in `region` (its body's hash is part of the
/// signature): adds `x-amz-date`, `x-amz-security-token` for temporary credentials, and
/// `authorization`.
pub fn sign_request(
    request: &mut reqwest::Request,
    identity: &Identity,
    region: &str,
    service: &str,
) -> Result<(), String> {
    let body = request
        .body()
        .and_then(reqwest::Body::as_bytes)
        .unwrap_or_default();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let signable = SignableRequest::new(
        request.method().as_str(),
        request.url().as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("cannot sign the request to {}: {e}", request.url()))?;
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("SigV4 signing parameters: {e}"))?
        .into();
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("SigV4 signing failed: {e}"))?
        .into_parts();
    let mut signed = Vec::new();
    for (name, value) in instructions.headers() {
        let name = HeaderName::try_from(name).map_err(|e| format!("signed header name: {e}"))?;
        let mut value =
            HeaderValue::try_from(value).map_err(|e| format!("signed header value: {e}"))?;
        value.set_sensitive(true);
        signed.push((name, value));
    }
    for (name, value) in signed {
        request.headers_mut().insert(name, value);
    }
    Ok(())
}
