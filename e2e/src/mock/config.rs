//! Start-up configuration of the mock provider: command-line flags, also readable from `MOCK_*`.

use std::fmt;
use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::Args;

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_CHUNKS: u32 = 5;
const DEFAULT_FAIL_STATUSES: &str = "500";
const DEFAULT_EMBEDDING_DIMS: usize = 8;
const DEFAULT_MODELS: &str = "gpt-4o-mini,gpt-4o,text-embedding-3-small,claude-3-5-haiku-20241022";
/// Entra ID's default access token lifetime is about an hour.
const DEFAULT_ENTRA_TOKEN_TTL_SECS: u64 = 3600;

/// Longest token lifetime `--entra-token-ttl-secs` takes: a day, Entra's own upper bound for a
/// configured access token lifetime.
const MAX_ENTRA_TOKEN_TTL_SECS: u64 = 86_400;

/// Google's OAuth2 access tokens live an hour.
const DEFAULT_GOOGLE_TOKEN_TTL_SECS: u64 = 3600;

/// Longest token lifetime `--google-token-ttl-secs` takes: 12 hours, the most an organization
/// policy lets Google's service-account tokens live.
const MAX_GOOGLE_TOKEN_TTL_SECS: u64 = 43_200;

/// STS's default role session lifetime: an hour.
const DEFAULT_STS_TTL_SECS: u64 = 3600;

/// Longest lifetime `--sts-ttl-secs` takes: 12 hours, STS's own maximum for a role session.
const MAX_STS_TTL_SECS: u64 = 43_200;

/// Largest embedding a request may ask for, so one request cannot make the mock allocate gigabytes.
pub const MAX_EMBEDDING_DIMS: usize = 65_536;

/// How the mock provider listens and behaves when it starts; the behaviour knobs can be changed
/// later through `POST /mock/config`.
#[derive(Debug, Clone, Args)]
pub struct MockConfig {
    /// Address to listen on.
    #[arg(long, env = "MOCK_HOST", default_value = DEFAULT_HOST)]
    pub host: String,

    /// Port to listen on; 0 picks a free port (printed on start).
    #[arg(long, env = "MOCK_PORT", default_value_t = 0)]
    pub port: u16,

    /// Delay before answering an inference request, in milliseconds.
    #[arg(long, env = "MOCK_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,

    /// Uniform random extra delay of 0..=jitter milliseconds on top of the latency.
    #[arg(long, env = "MOCK_JITTER_MS", default_value_t = 0)]
    pub jitter_ms: u64,

    /// Number of content chunks in a streamed answer (capped at the answer's length in characters).
    #[arg(long, env = "MOCK_CHUNKS", default_value_t = DEFAULT_CHUNKS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub chunks: u32,

    /// Delay between two content chunks of a stream, in milliseconds.
    #[arg(long, env = "MOCK_CHUNK_DELAY_MS", default_value_t = 0)]
    pub chunk_delay_ms: u64,

    /// Percentage (0-100) of inference requests that fail with one of `--fail-status`.
    #[arg(long, env = "MOCK_FAIL_PERCENT", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub fail_percent: u32,

    /// Statuses an injected failure picks from at random (comma-separated, 400-599).
    #[arg(long = "fail-status", env = "MOCK_FAIL_STATUS", value_delimiter = ',',
          default_value = DEFAULT_FAIL_STATUSES,
          value_parser = clap::value_parser!(u16).range(400..=599))]
    pub fail_statuses: Vec<u16>,

    /// API key a request must carry (repeatable or comma-separated); without any, every key is accepted.
    #[arg(long = "require-key", env = "MOCK_REQUIRE_KEY", value_delimiter = ',')]
    pub require_keys: Vec<String>,

    /// AWS access key whose SigV4 signatures the Bedrock routes accept, as `ACCESS_KEY_ID:SECRET`
    /// (repeatable or comma-separated). With any of these or `--require-key`, a Bedrock request
    /// must be signed by one of them or carry one of the keys as a bearer token.
    #[arg(long = "aws-credentials", env = "MOCK_AWS_CREDENTIALS", value_delimiter = ',',
          value_parser = parse_aws_credential)]
    pub aws_credentials: Vec<AwsCredential>,

    /// Microsoft Entra ID app registration whose client-credentials token requests
    /// (`POST /{tenant}/oauth2/v2.0/token`) the mock grants, as `TENANT:CLIENT_ID:CLIENT_SECRET`
    /// (repeatable or comma-separated). With any of these, a bearer token on the Azure routes
    /// must be one the mock issued and not expired.
    #[arg(long = "entra-client", env = "MOCK_ENTRA_CLIENT", value_delimiter = ',',
          value_parser = parse_entra_client)]
    pub entra_clients: Vec<EntraClient>,

    /// Lifetime of the access tokens the Entra token endpoint issues, in seconds (1 to 86400).
    #[arg(long, env = "MOCK_ENTRA_TOKEN_TTL_SECS", default_value_t = DEFAULT_ENTRA_TOKEN_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(1..=MAX_ENTRA_TOKEN_TTL_SECS))]
    pub entra_token_ttl_secs: u64,

    /// Google service account whose signed JWTs the token endpoint (`POST /token`) exchanges for
    /// access tokens, as `EMAIL=PATH` (repeatable or comma-separated): its `client_email` and its
    /// RSA public key, PKCS#1 DER (`openssl rsa -RSAPublicKey_out -outform DER`) or PEM
    /// (`BEGIN RSA PUBLIC KEY`); an email given twice has two keys. With any of these, a bearer
    /// token on the Vertex AI routes must be one the mock issued and not expired.
    #[arg(long = "google-service-account", env = "MOCK_GOOGLE_SERVICE_ACCOUNT",
          value_delimiter = ',', value_parser = parse_google_service_account)]
    pub google_service_accounts: Vec<GoogleServiceAccount>,

    /// Lifetime of the access tokens the Google token endpoint issues, in seconds (1 to 43200).
    #[arg(long, env = "MOCK_GOOGLE_TOKEN_TTL_SECS", default_value_t = DEFAULT_GOOGLE_TOKEN_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(1..=MAX_GOOGLE_TOKEN_TTL_SECS))]
    pub google_token_ttl_secs: u64,

    /// IAM role the STS endpoint (`POST /`, `AssumeRole`) lets `--aws-credentials` callers
    /// assume, as `ROLE_ARN=ACCESS_KEY_ID:SECRET[:EXTERNAL_ID]` (repeatable): the temporary
    /// credentials it grants (with a fresh session token each time) and, when given, the external
    /// id the role's trust policy requires. The Bedrock routes accept signatures by them.
    #[arg(long = "sts-role", env = "MOCK_STS_ROLE", value_parser = parse_sts_role)]
    pub sts_roles: Vec<StsRole>,

    /// Longest lifetime of the credentials STS grants, in seconds (1 to 43200); a shorter
    /// `DurationSeconds` wins.
    #[arg(long, env = "MOCK_STS_TTL_SECS", default_value_t = DEFAULT_STS_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(1..=MAX_STS_TTL_SECS))]
    pub sts_ttl_secs: u64,

    /// Length of embedding vectors when the request does not set `dimensions`.
    #[arg(long, env = "MOCK_EMBEDDING_DIMS", default_value_t = DEFAULT_EMBEDDING_DIMS,
          value_parser = clap::value_parser!(u64).range(1..=MAX_EMBEDDING_DIMS as u64).map(|dims| dims as usize))]
    pub embedding_dims: usize,

    /// Models listed by `GET /v1/models` (comma-separated).
    #[arg(long, env = "MOCK_MODELS", value_delimiter = ',', default_value = DEFAULT_MODELS)]
    pub models: Vec<String>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            host: DEFAULT_HOST.to_owned(),
            port: 0,
            latency_ms: 0,
            jitter_ms: 0,
            chunks: DEFAULT_CHUNKS,
            chunk_delay_ms: 0,
            fail_percent: 0,
            fail_statuses: DEFAULT_FAIL_STATUSES
                .split(',')
                .filter_map(|code| code.parse().ok())
                .collect(),
            require_keys: Vec::new(),
            aws_credentials: Vec::new(),
            entra_clients: Vec::new(),
            entra_token_ttl_secs: DEFAULT_ENTRA_TOKEN_TTL_SECS,
            google_service_accounts: Vec::new(),
            google_token_ttl_secs: DEFAULT_GOOGLE_TOKEN_TTL_SECS,
            sts_roles: Vec::new(),
            sts_ttl_secs: DEFAULT_STS_TTL_SECS,
            embedding_dims: DEFAULT_EMBEDDING_DIMS,
            models: DEFAULT_MODELS.split(',').map(str::to_owned).collect(),
        }
    }
}

/// An AWS access key pair of `--aws-credentials`; `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredential {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for AwsCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredential")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// `ACCESS_KEY_ID:SECRET`, split at the first `:`; both parts must be non-empty.
fn parse_aws_credential(value: &str) -> Result<AwsCredential, String> {
    match value.trim().split_once(':') {
        Some((id, secret)) if !id.is_empty() && !secret.is_empty() => Ok(AwsCredential {
            access_key_id: id.to_owned(),
            secret_access_key: secret.to_owned(),
        }),
        _ => Err("expected ACCESS_KEY_ID:SECRET".to_owned()),
    }
}

/// An IAM role of `--sts-role`: its ARN, the temporary access key STS grants for it and the
/// external id it requires, if any; `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct StsRole {
    pub arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub external_id: Option<String>,
}

impl fmt::Debug for StsRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StsRole")
            .field("arn", &self.arn)
            .field("access_key_id", &self.access_key_id)
            .field("external_id", &self.external_id)
            .finish_non_exhaustive()
    }
}

/// `ROLE_ARN=ACCESS_KEY_ID:SECRET[:EXTERNAL_ID]`: split at the first `=`, then at the first two
/// `:`s (the external id may hold more); the ARN, key id and secret must be non-empty.
fn parse_sts_role(value: &str) -> Result<StsRole, String> {
    let expected = "expected ROLE_ARN=ACCESS_KEY_ID:SECRET[:EXTERNAL_ID]";
    let (arn, credentials) = value.trim().split_once('=').ok_or(expected)?;
    let mut parts = credentials.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(id), Some(secret), external_id)
            if !arn.is_empty() && !id.is_empty() && !secret.is_empty() =>
        {
            Ok(StsRole {
                arn: arn.to_owned(),
                access_key_id: id.to_owned(),
                secret_access_key: secret.to_owned(),
                external_id: external_id.filter(|id| !id.is_empty()).map(str::to_owned),
            })
        }
        _ => Err(expected.to_owned()),
    }
}

/// An Entra ID app registration of `--entra-client`: the tenant it lives in, its application
/// (client) id and a client secret; `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct EntraClient {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
}

impl fmt::Debug for EntraClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraClient")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// `TENANT:CLIENT_ID:CLIENT_SECRET`, split at the first two `:`s (the secret may hold more);
/// all three parts must be non-empty.
fn parse_entra_client(value: &str) -> Result<EntraClient, String> {
    let mut parts = value.trim().splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(tenant), Some(client_id), Some(secret))
            if !tenant.is_empty() && !client_id.is_empty() && !secret.is_empty() =>
        {
            Ok(EntraClient {
                tenant: tenant.to_owned(),
                client_id: client_id.to_owned(),
                client_secret: secret.to_owned(),
            })
        }
        _ => Err("expected TENANT:CLIENT_ID:CLIENT_SECRET".to_owned()),
    }
}

/// A Google service account of `--google-service-account`: its email and the RSA public key its
/// JWTs are checked with; `Debug` shows the file, not the key.
#[derive(Clone, PartialEq, Eq)]
pub struct GoogleServiceAccount {
    pub client_email: String,
    pub public_key_path: PathBuf,
    /// The key as PKCS#1 `RSAPublicKey` DER, what `ring` verifies with.
    pub public_key: Vec<u8>,
}

impl fmt::Debug for GoogleServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleServiceAccount")
            .field("client_email", &self.client_email)
            .field("public_key_path", &self.public_key_path)
            .finish_non_exhaustive()
    }
}

/// `EMAIL=PATH`, split at the first `=`, with the key file read; both parts must be non-empty.
fn parse_google_service_account(value: &str) -> Result<GoogleServiceAccount, String> {
    let (email, path) = value
        .trim()
        .split_once('=')
        .filter(|(email, path)| !email.is_empty() && !path.is_empty())
        .ok_or("expected EMAIL=PATH_TO_PUBLIC_KEY")?;
    let contents = std::fs::read(path).map_err(|error| format!("cannot read {path}: {error}"))?;
    Ok(GoogleServiceAccount {
        client_email: email.to_owned(),
        public_key_path: PathBuf::from(path),
        public_key: rsa_public_key_der(&contents).map_err(|error| format!("{path}: {error}"))?,
    })
}

/// The PEM label of a PKCS#1 RSA public key.
const RSA_PUBLIC_KEY_PEM: &str = "RSA PUBLIC KEY";

/// A key file's PKCS#1 DER: the file itself, or the body of its `BEGIN RSA PUBLIC KEY` PEM.
fn rsa_public_key_der(contents: &[u8]) -> Result<Vec<u8>, String> {
    let Some(text) = std::str::from_utf8(contents)
        .ok()
        .filter(|text| text.trim_start().starts_with("-----BEGIN "))
    else {
        return Ok(contents.to_vec());
    };
    pem_body(text, RSA_PUBLIC_KEY_PEM).ok_or_else(|| {
        "expected a PKCS#1 RSA public key, DER or PEM (BEGIN RSA PUBLIC KEY): \
         `openssl rsa -in key.pem -RSAPublicKey_out -outform DER`"
            .to_owned()
    })
}

/// The decoded body of the PEM block labelled `label` in `text`, if it has one.
pub(super) fn pem_body(text: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let (_, rest) = text.split_once(&begin)?;
    let (body, _) = rest.split_once(&end)?;
    let body: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mock: MockConfig,
    }

    #[test]
    fn flag_defaults_match_the_default_impl() {
        let parsed = Cli::try_parse_from(["mock-provider"])
            .expect("no flags parse")
            .mock;
        let default = MockConfig::default();
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }

    #[test]
    fn list_flags_accept_commas_and_repeats() {
        let cli = Cli::try_parse_from([
            "mock-provider",
            "--fail-status",
            "429,503",
            "--require-key",
            "k1",
            "--require-key",
            "k2,k3",
        ])
        .expect("flags parse");
        assert_eq!(cli.mock.fail_statuses, [429, 503]);
        assert_eq!(cli.mock.require_keys, ["k1", "k2", "k3"]);
    }

    #[test]
    fn aws_credentials_split_at_the_first_colon_and_hide_the_secret() {
        let cli = Cli::try_parse_from([
            "mock-provider",
            "--aws-credentials",
            "AKID1:s3cr/et+1,AKID2:two",
            "--aws-credentials",
            "AKID3:a:b",
        ])
        .expect("flags parse");
        let ids: Vec<&str> = cli
            .mock
            .aws_credentials
            .iter()
            .map(|credential| credential.access_key_id.as_str())
            .collect();
        assert_eq!(ids, ["AKID1", "AKID2", "AKID3"]);
        assert_eq!(cli.mock.aws_credentials[0].secret_access_key, "s3cr/et+1");
        assert_eq!(cli.mock.aws_credentials[2].secret_access_key, "a:b");
        assert!(!format!("{:?}", cli.mock.aws_credentials).contains("s3cr"));
        for bad in ["AKID", "AKID:", ":secret"] {
            assert!(
                Cli::try_parse_from(["mock-provider", "--aws-credentials", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn entra_clients_split_at_the_first_two_colons_and_hide_the_secret() {
        let cli = Cli::try_parse_from([
            "mock-provider",
            "--entra-client",
            "tenant-1:app-1:s3cret~1,tenant-2:app-2:a:b",
            "--entra-client",
            "tenant-1:app-3:three",
        ])
        .expect("flags parse");
        let clients: Vec<(&str, &str, &str)> = cli
            .mock
            .entra_clients
            .iter()
            .map(|client| {
                (
                    client.tenant.as_str(),
                    client.client_id.as_str(),
                    client.client_secret.as_str(),
                )
            })
            .collect();
        assert_eq!(
            clients,
            [
                ("tenant-1", "app-1", "s3cret~1"),
                ("tenant-2", "app-2", "a:b"),
                ("tenant-1", "app-3", "three"),
            ]
        );
        assert!(!format!("{:?}", cli.mock.entra_clients).contains("s3cret"));
        for bad in ["tenant", "tenant:app", "tenant:app:", ":app:s", "tenant::s"] {
            assert!(
                Cli::try_parse_from(["mock-provider", "--entra-client", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn google_service_accounts_read_their_key_in_der_or_pem() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let der = dir.path().join("key.der");
        let pem = dir.path().join("key.pem");
        let spki = dir.path().join("spki.pem");
        std::fs::write(&der, [0x30, 0x03, 0x02, 0x01, 0x05]).expect("written");
        let body = base64::engine::general_purpose::STANDARD.encode([0x30, 0x00]);
        let pem_text =
            format!("-----BEGIN RSA PUBLIC KEY-----\n{body}\n-----END RSA PUBLIC KEY-----\n");
        std::fs::write(&pem, pem_text).expect("written");
        std::fs::write(
            &spki,
            "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n",
        )
        .expect("written");
        let account = |email: &str, path: &std::path::Path| format!("{email}={}", path.display());
        let cli = Cli::try_parse_from([
            "mock-provider",
            "--google-service-account",
            &account("a@p.iam.gserviceaccount.com", &der),
            "--google-service-account",
            &account("b@p.iam.gserviceaccount.com", &pem),
        ])
        .expect("flags parse");
        let accounts = &cli.mock.google_service_accounts;
        assert_eq!(accounts[0].client_email, "a@p.iam.gserviceaccount.com");
        assert_eq!(accounts[0].public_key, [0x30, 0x03, 0x02, 0x01, 0x05]);
        assert_eq!(accounts[1].public_key, [0x30, 0x00]);
        assert!(!format!("{accounts:?}").contains("public_key:"));
        let missing = dir.path().join("missing.der");
        for bad in [
            "no-equals".to_owned(),
            format!("={}", der.display()),
            "a@p=".to_owned(),
            account("a@p", &missing),
            account("a@p", &spki),
        ] {
            assert!(
                Cli::try_parse_from(["mock-provider", "--google-service-account", &bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn sts_roles_split_at_the_equals_sign_and_the_colons() {
        let cli = Cli::try_parse_from([
            "mock-provider",
            "--sts-role",
            "arn:aws:iam::123456789012:role/a=ASIAA:sec/ret",
            "--sts-role",
            "arn:aws:iam::123456789012:role/b=ASIAB:two:ext:with:colons",
        ])
        .expect("flags parse");
        let roles = &cli.mock.sts_roles;
        assert_eq!(roles[0].arn, "arn:aws:iam::123456789012:role/a");
        assert_eq!(roles[0].secret_access_key, "sec/ret");
        assert_eq!(roles[0].external_id, None);
        assert_eq!(roles[1].external_id.as_deref(), Some("ext:with:colons"));
        assert!(!format!("{roles:?}").contains("sec/ret"));
        for bad in ["arn", "arn=ASIA", "=ASIA:s", "arn=:s", "arn=ASIA:"] {
            assert!(
                Cli::try_parse_from(["mock-provider", "--sts-role", bad]).is_err(),
                "{bad}"
            );
        }
        assert!(Cli::try_parse_from(["mock-provider", "--sts-ttl-secs", "0"]).is_err());
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        assert!(Cli::try_parse_from(["mock-provider", "--google-token-ttl-secs", "0"]).is_err());
        assert!(
            Cli::try_parse_from(["mock-provider", "--google-token-ttl-secs", "43201"]).is_err()
        );
        assert!(Cli::try_parse_from(["mock-provider", "--entra-token-ttl-secs", "0"]).is_err());
        assert!(Cli::try_parse_from(["mock-provider", "--entra-token-ttl-secs", "86401"]).is_err());
        assert!(Cli::try_parse_from(["mock-provider", "--fail-percent", "101"]).is_err());
        assert!(Cli::try_parse_from(["mock-provider", "--fail-status", "200"]).is_err());
        assert!(Cli::try_parse_from(["mock-provider", "--chunks", "0"]).is_err());
    }
}
