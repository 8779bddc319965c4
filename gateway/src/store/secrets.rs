//! Secrets at rest: provider key values, providers' extra headers and virtual key values.
//!
//! AES-256-GCM under a key derived with Argon2id from the configured encryption key and a
//! random salt generated once per store and kept in `meta`, so every replica sharing the
//! database derives the same key. A key-check value in `meta` (a known plaintext encrypted at
//! first use) makes a wrong key fail at start-up instead of sending garbage upstream.
//!
//! Stored form: `v1:` + base64(nonce || ciphertext+tag), or `plain:` + the value when the
//! store runs without a key (SQLite, or PostgreSQL with `plaintext_secrets`).

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sqlx::AnyConnection;
use tracing::{info, warn};

use super::error::{QueryContext, StoreError};
use super::meta;
use crate::config::StoreType;

const ENCRYPTED_PREFIX: &str = "v1:";
const PLAINTEXT_PREFIX: &str = "plain:";
const NONCE_LEN: usize = 12;
const SALT_LEN: usize = 16;
const KEY_CHECK_PLAINTEXT: &str = "bifrost config store key check";

/// How secret values are written and read back.
#[derive(Clone)]
pub(crate) enum Secrets {
    /// AES-256-GCM with the derived key.
    Encrypted(Arc<Aes256Gcm>),
    /// No key configured: values are stored as `plain:<value>`.
    Plaintext,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secrets::Encrypted(_) => f.write_str("Secrets::Encrypted(<key>)"),
            Secrets::Plaintext => f.write_str("Secrets::Plaintext"),
        }
    }
}

impl Secrets {
    /// Whether values are encrypted.
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Secrets::Encrypted(_))
    }

    /// The stored form of `value`.
    pub fn seal(&self, value: &str) -> Result<String, StoreError> {
        match self {
            Secrets::Plaintext => Ok(format!("{PLAINTEXT_PREFIX}{value}")),
            Secrets::Encrypted(cipher) => {
                let mut nonce = [0u8; NONCE_LEN];
                getrandom::fill(&mut nonce).map_err(|err| StoreError::Crypto {
                    reason: format!("the OS random number generator failed: {err}"),
                })?;
                let ciphertext = cipher
                    .encrypt(&Nonce::from(nonce), value.as_bytes())
                    .map_err(|_| StoreError::Crypto {
                        reason: "AES-256-GCM refused the value".to_string(),
                    })?;
                let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
                sealed.extend_from_slice(&nonce);
                sealed.extend_from_slice(&ciphertext);
                Ok(format!("{ENCRYPTED_PREFIX}{}", BASE64.encode(sealed)))
            }
        }
    }

    /// The value behind a stored form; `location` names the column for errors.
    pub fn reveal(
        &self,
        stored: &str,
        location: impl Fn() -> String,
    ) -> Result<String, StoreError> {
        if let Some(value) = stored.strip_prefix(PLAINTEXT_PREFIX) {
            return Ok(value.to_string());
        }
        let Some(encoded) = stored.strip_prefix(ENCRYPTED_PREFIX) else {
            return Err(StoreError::corrupt(
                location(),
                "not a stored secret (expected a v1: or plain: prefix)",
            ));
        };
        let Secrets::Encrypted(cipher) = self else {
            return Err(StoreError::MissingEncryptionKey);
        };
        let sealed = BASE64
            .decode(encoded)
            .map_err(|err| StoreError::corrupt(location(), format!("bad base64: {err}")))?;
        if sealed.len() < NONCE_LEN {
            return Err(StoreError::corrupt(location(), "encrypted value too short"));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce)
            .map_err(|_| StoreError::corrupt(location(), "bad nonce length"))?;
        let plaintext = cipher.decrypt(&nonce, ciphertext).map_err(|_| {
            StoreError::corrupt(
                location(),
                "does not decrypt under the configured encryption key (altered, or written with another key)",
            )
        })?;
        String::from_utf8(plaintext)
            .map_err(|_| StoreError::corrupt(location(), "decrypted value is not UTF-8"))
    }
}

/// Argon2id cost parameters, kept in `meta` beside the salt so that changing the defaults
/// later never locks out an existing store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KdfParams {
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
}

impl KdfParams {
    /// OWASP's recommended Argon2id minimum (19 MiB, 2 passes, 1 lane).
    const DEFAULT: KdfParams = KdfParams {
        m_cost: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };

    fn encode(&self) -> String {
        format!(
            "argon2id:m={},t={},p={}",
            self.m_cost, self.t_cost, self.p_cost
        )
    }

    fn decode(text: &str) -> Option<KdfParams> {
        let rest = text.strip_prefix("argon2id:")?;
        let mut params = KdfParams::DEFAULT;
        for part in rest.split(',') {
            let (name, value) = part.split_once('=')?;
            let value = value.parse().ok()?;
            match name {
                "m" => params.m_cost = value,
                "t" => params.t_cost = value,
                "p" => params.p_cost = value,
                _ => return None,
            }
        }
        Some(params)
    }
}

fn derive_cipher(
    passphrase: &str,
    salt: &[u8],
    params: KdfParams,
) -> Result<Aes256Gcm, StoreError> {
    let crypto = |reason: String| StoreError::Crypto { reason };
    let KdfParams {
        m_cost,
        t_cost,
        p_cost,
    } = params;
    let argon_params = argon2::Params::new(m_cost, t_cost, p_cost, Some(32)).map_err(|err| {
        crypto(format!(
            "bad Argon2id parameters {}: {err}",
            params.encode()
        ))
    })?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut key = [0u8; 32];
    argon
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|err| crypto(format!("Argon2id key derivation failed: {err}")))?;
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(key));
    key.fill(0);
    Ok(cipher)
}

/// Sets up secret handling at `open`, on a connection inside the start-up transaction:
/// creates the salt and key check on first use, verifies the key against the check, and
/// encrypts values left in plaintext by an earlier start without a key.
pub(crate) async fn setup(
    conn: &mut AnyConnection,
    encryption_key: Option<&str>,
    backend: StoreType,
) -> Result<Secrets, StoreError> {
    let key_check = meta::get(conn, meta::KEY_CHECK).await?;
    let Some(passphrase) = encryption_key else {
        if key_check.is_some() {
            return Err(StoreError::MissingEncryptionKey);
        }
        let backend = super::connect::backend_name(backend);
        warn!(
            backend,
            "config store secrets are NOT encrypted: provider keys and virtual key values are stored in plaintext; set BIFROST_ENCRYPTION_KEY to encrypt them"
        );
        return Ok(Secrets::Plaintext);
    };
    if passphrase.trim().is_empty() {
        return Err(StoreError::Invalid {
            what: "encryption key".to_string(),
            reason: "is empty; set BIFROST_ENCRYPTION_KEY (or encryption_key) to a long random string, or unset it".to_string(),
        });
    }

    // First start with a key: concurrent starters race to insert; the first row wins and
    // everyone reads it back.
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|err| StoreError::Crypto {
        reason: format!("the OS random number generator failed: {err}"),
    })?;
    meta::insert_if_absent(conn, meta::KDF_SALT, &BASE64.encode(salt)).await?;
    meta::insert_if_absent(conn, meta::KDF_PARAMS, &KdfParams::DEFAULT.encode()).await?;
    let salt_text = meta::require(conn, meta::KDF_SALT).await?;
    let salt = BASE64
        .decode(&salt_text)
        .map_err(|err| StoreError::corrupt("meta.kdf_salt", format!("bad base64: {err}")))?;
    let params_text = meta::require(conn, meta::KDF_PARAMS).await?;
    let params = KdfParams::decode(&params_text).ok_or_else(|| {
        StoreError::corrupt(
            "meta.kdf_params",
            format!("\"{params_text}\" is not argon2id:m=..,t=..,p=.."),
        )
    })?;

    // Argon2id is deliberately slow (tens of ms of CPU): keep it off the async workers.
    let passphrase = passphrase.to_string();
    let cipher = tokio::task::spawn_blocking(move || derive_cipher(&passphrase, &salt, params))
        .await
        .map_err(|err| StoreError::Crypto {
            reason: format!("key derivation task failed: {err}"),
        })??;
    let secrets = Secrets::Encrypted(Arc::new(cipher));

    let key_check = match key_check {
        Some(check) => check,
        None => {
            meta::insert_if_absent(conn, meta::KEY_CHECK, &secrets.seal(KEY_CHECK_PLAINTEXT)?)
                .await?;
            meta::require(conn, meta::KEY_CHECK).await?
        }
    };
    match secrets.reveal(&key_check, || "meta.key_check".to_string()) {
        Ok(text) if text == KEY_CHECK_PLAINTEXT => {}
        _ => return Err(StoreError::WrongEncryptionKey),
    }

    encrypt_plaintext_rows(conn, &secrets).await?;
    Ok(secrets)
}

/// Single-key tables with a secret column, as (select, update) statements; the update only
/// applies while the row still holds the plaintext it read, so concurrent starters cannot
/// clobber each other.
const KEYED_SECRET_COLUMNS: &[(&str, &str)] = &[
    (
        "SELECT name, extra_headers_encrypted FROM providers WHERE extra_headers_encrypted LIKE 'plain:%'",
        "UPDATE providers SET extra_headers_encrypted = $1 WHERE name = $2 AND extra_headers_encrypted = $3",
    ),
    (
        "SELECT name, proxy_config_encrypted FROM providers WHERE proxy_config_encrypted LIKE 'plain:%'",
        "UPDATE providers SET proxy_config_encrypted = $1 WHERE name = $2 AND proxy_config_encrypted = $3",
    ),
    (
        "SELECT id, value_encrypted FROM virtual_keys WHERE value_encrypted LIKE 'plain:%'",
        "UPDATE virtual_keys SET value_encrypted = $1 WHERE id = $2 AND value_encrypted = $3",
    ),
];

/// The secret columns of `provider_keys` (keyed by provider and position), as (column, select,
/// update) like [`KEYED_SECRET_COLUMNS`].
const PROVIDER_KEY_SECRET_COLUMNS: &[(&str, &str, &str)] = &[
    (
        "value_encrypted",
        "SELECT provider, position, value_encrypted FROM provider_keys WHERE value_encrypted LIKE 'plain:%'",
        "UPDATE provider_keys SET value_encrypted = $1 WHERE provider = $2 AND position = $3 AND value_encrypted = $4",
    ),
    (
        "credentials_encrypted",
        "SELECT provider, position, credentials_encrypted FROM provider_keys WHERE credentials_encrypted LIKE 'plain:%'",
        "UPDATE provider_keys SET credentials_encrypted = $1 WHERE provider = $2 AND position = $3 AND credentials_encrypted = $4",
    ),
];

async fn encrypt_plaintext_rows(
    conn: &mut AnyConnection,
    secrets: &Secrets,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "encrypting secrets stored in plaintext";
    let mut encrypted = 0u64;
    for (select, update) in KEYED_SECRET_COLUMNS {
        let rows: Vec<(String, String)> = sqlx::query_as(*select)
            .fetch_all(&mut *conn)
            .await
            .context(CONTEXT)?;
        for (id, stored) in rows {
            let value = secrets.reveal(&stored, || format!("secret of {id}"))?;
            let result = sqlx::query(*update)
                .bind(secrets.seal(&value)?)
                .bind(&id)
                .bind(&stored)
                .execute(&mut *conn)
                .await
                .context(CONTEXT)?;
            encrypted += result.rows_affected();
        }
    }
    // Provider keys: keyed by (provider, position); the value and a Bedrock key's credentials.
    for (column, select, update) in PROVIDER_KEY_SECRET_COLUMNS {
        let keys: Vec<(String, i64, String)> = sqlx::query_as(*select)
            .fetch_all(&mut *conn)
            .await
            .context(CONTEXT)?;
        for (provider, position, stored) in keys {
            let value = secrets.reveal(&stored, || {
                format!("provider_keys ({provider}, {position}).{column}")
            })?;
            let result = sqlx::query(*update)
                .bind(secrets.seal(&value)?)
                .bind(&provider)
                .bind(position)
                .bind(&stored)
                .execute(&mut *conn)
                .await
                .context(CONTEXT)?;
            encrypted += result.rows_affected();
        }
    }
    if encrypted > 0 {
        info!(
            count = encrypted,
            "encrypted secrets that an earlier start without an encryption key stored in plaintext"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_secrets() -> Secrets {
        let params = KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let cipher = derive_cipher("correct horse", b"0123456789abcdef", params).expect("derive");
        Secrets::Encrypted(Arc::new(cipher))
    }

    #[test]
    fn sealed_values_round_trip_and_never_contain_the_plaintext() {
        let secrets = test_secrets();
        let sealed = secrets.seal("sk-live-123").expect("seal");
        assert!(sealed.starts_with("v1:"), "{sealed}");
        assert!(!sealed.contains("sk-live-123"));
        assert_ne!(
            sealed,
            secrets.seal("sk-live-123").expect("seal"),
            "fresh nonce"
        );
        assert_eq!(
            secrets.reveal(&sealed, || "t".into()).expect("reveal"),
            "sk-live-123"
        );
    }

    #[test]
    fn a_tampered_value_is_reported_as_corrupt() {
        let secrets = test_secrets();
        let sealed = secrets.seal("sk-live-123").expect("seal");
        let mut bytes = BASE64.decode(&sealed[3..]).expect("base64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("v1:{}", BASE64.encode(bytes));
        let err = secrets
            .reveal(&tampered, || "provider_keys (openai, 0)".into())
            .expect_err("tampered");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("provider_keys (openai, 0)"));
    }

    #[test]
    fn plaintext_mode_cannot_read_encrypted_values() {
        let sealed = test_secrets().seal("x").expect("seal");
        let err = Secrets::Plaintext
            .reveal(&sealed, || "t".into())
            .expect_err("no key");
        assert!(matches!(err, StoreError::MissingEncryptionKey));
        assert_eq!(
            Secrets::Plaintext
                .reveal("plain:abc", || "t".into())
                .expect("plain"),
            "abc"
        );
    }

    #[test]
    fn kdf_params_round_trip() {
        let text = KdfParams::DEFAULT.encode();
        assert_eq!(KdfParams::decode(&text), Some(KdfParams::DEFAULT));
        assert_eq!(KdfParams::decode("scrypt:n=1"), None);
    }
}
