//! Call authentication with the shared cluster key.
//!
//! The caller sends metadata `x-bifrost-cluster-auth: <unix-ms>.<hex HMAC-SHA256(key,
//! "<unix-ms>|<rpc path>")>`. The server accepts a token whose signature matches the path being
//! called and whose time is within [`MAX_TOKEN_AGE`] of its own clock (either way, for clock
//! skew). A captured token can be replayed against the same RPC for that long: run gRPC over TLS
//! where the network is not trusted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The metadata key that carries the token.
pub const AUTH_METADATA: &str = "x-bifrost-cluster-auth";
/// How far a token's time may be from the server's clock.
pub const MAX_TOKEN_AGE: Duration = Duration::from_secs(60);

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token (a peer without the cluster key).
    #[error("missing {AUTH_METADATA} metadata (is the cluster key set on the calling node?)")]
    Missing,
    /// Not `<unix-ms>.<hex>`.
    #[error("malformed {AUTH_METADATA} token")]
    Malformed,
    /// Signed too long ago, or too far in the future (clock skew).
    #[error("stale {AUTH_METADATA} token (clocks more than 60 s apart, or a replay)")]
    Stale,
    /// Signed with another key, or for another RPC.
    #[error("wrong cluster key")]
    BadSignature,
}

impl AuthError {
    /// The `reason` label of `grpc_requests_rejected_total`.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::Stale => "stale",
            AuthError::BadSignature => "bad_signature",
        }
    }
}

/// Signs and checks tokens under one cluster key.
#[derive(Clone)]
pub struct ClusterAuth {
    key: Vec<u8>,
}

impl std::fmt::Debug for ClusterAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterAuth(<key>)")
    }
}

impl ClusterAuth {
    /// An authenticator for the cluster key `key`.
    pub fn new(key: &str) -> Self {
        Self {
            key: key.as_bytes().to_vec(),
        }
    }

    fn mac(&self, millis: i64, path: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length; the error branch is unreachable but costs nothing.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        mac.update(millis.to_string().as_bytes());
        mac.update(b"|");
        mac.update(path.as_bytes());
        mac
    }

    /// The token for calling `path` (e.g. `/bifrost.cluster.v1.Cluster/Admit`) at `now_ms`.
    pub fn token(&self, path: &str, now_ms: i64) -> String {
        let tag = self.mac(now_ms, path).finalize().into_bytes();
        format!("{now_ms}.{}", hex(&tag))
    }

    /// Check `token` (the metadata value, if any) for a call to `path` received at `now_ms`.
    pub fn verify(&self, token: Option<&str>, path: &str, now_ms: i64) -> Result<(), AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let (millis, tag) = token.split_once('.').ok_or(AuthError::Malformed)?;
        let millis: i64 = millis.parse().map_err(|_| AuthError::Malformed)?;
        let tag = unhex(tag).ok_or(AuthError::Malformed)?;
        let max_age = MAX_TOKEN_AGE.as_millis() as i64;
        if now_ms.abs_diff(millis) > max_age as u64 {
            return Err(AuthError::Stale);
        }
        self.mac(millis, path)
            .verify_slice(&tag)
            .map_err(|_| AuthError::BadSignature)
    }
}

/// Milliseconds since the Unix epoch by the system clock.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/bifrost.cluster.v1.Cluster/Admit";
    const NOW: i64 = 1_750_000_000_000;

    #[test]
    fn auth_accepts_a_fresh_token_for_the_same_path() {
        let auth = ClusterAuth::new("s3cret");
        let token = auth.token(PATH, NOW);
        assert!(token.starts_with("1750000000000."));
        assert_eq!(auth.verify(Some(&token), PATH, NOW + 1_000), Ok(()));
        // A little clock skew the other way is fine too.
        assert_eq!(auth.verify(Some(&token), PATH, NOW - 1_000), Ok(()));
    }

    #[test]
    fn auth_rejects_a_token_signed_with_another_key() {
        let token = ClusterAuth::new("other").token(PATH, NOW);
        assert_eq!(
            ClusterAuth::new("s3cret").verify(Some(&token), PATH, NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn auth_rejects_a_token_for_another_rpc() {
        let auth = ClusterAuth::new("s3cret");
        let token = auth.token("/bifrost.cluster.v1.Cluster/Status", NOW);
        assert_eq!(
            auth.verify(Some(&token), PATH, NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn auth_rejects_stale_and_future_tokens() {
        let auth = ClusterAuth::new("s3cret");
        let token = auth.token(PATH, NOW);
        assert_eq!(
            auth.verify(Some(&token), PATH, NOW + 60_001),
            Err(AuthError::Stale)
        );
        assert_eq!(
            auth.verify(Some(&token), PATH, NOW - 60_001),
            Err(AuthError::Stale)
        );
        assert_eq!(auth.verify(Some(&token), PATH, NOW + 60_000), Ok(()));
    }

    #[test]
    fn auth_rejects_missing_and_garbage_tokens() {
        let auth = ClusterAuth::new("s3cret");
        assert_eq!(auth.verify(None, PATH, NOW), Err(AuthError::Missing));
        for garbage in [
            "",
            "nodot",
            "abc.def0",
            "1750000000000.",
            "1750000000000.zz",
            "1750000000000.abc",
            "1750000000000.é0",
        ] {
            let result = auth.verify(Some(garbage), PATH, NOW);
            assert!(
                matches!(result, Err(AuthError::Malformed | AuthError::BadSignature)),
                "{garbage:?} gave {result:?}"
            );
        }
        // Well-formed but truncated signature.
        let token = auth.token(PATH, NOW);
        assert_eq!(
            auth.verify(Some(&token[..token.len() - 2]), PATH, NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn auth_hex_round_trips() {
        let bytes = [0u8, 1, 0x7f, 0x80, 0xfe, 0xff];
        assert_eq!(hex(&bytes), "00017f80feff");
        assert_eq!(unhex("00017f80feff").as_deref(), Some(&bytes[..]));
        assert_eq!(unhex("00017F80FEFF").as_deref(), Some(&bytes[..]));
    }
}
