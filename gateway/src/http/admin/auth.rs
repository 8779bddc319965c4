//! Admin API authentication.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use http::header;

use crate::config::AuthConfig;
use crate::error::GatewayError;
use crate::http::errors::{error_response, Dialect};
use crate::state::AppState;

/// The bearer token from env `BIFROST_ADMIN_TOKEN`, else the config's `admin_token`.
fn admin_token(auth: &AuthConfig) -> Option<String> {
    std::env::var("BIFROST_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| auth.admin_token.clone().filter(|t| !t.is_empty()))
}

/// One line for the start-up log saying how the admin API is protected.
pub fn describe_admin_auth(auth: &AuthConfig) -> &'static str {
    match (auth.is_enabled, admin_token(auth).is_some()) {
        (true, true) => "admin API requires Basic auth or the admin bearer token",
        (true, false) => "admin API requires Basic auth (governance.auth_config)",
        (false, true) => "admin API requires the admin bearer token",
        (false, false) => {
            "admin API has no credentials configured: reachable from loopback only (set governance.auth_config or BIFROST_ADMIN_TOKEN)"
        }
    }
}

/// Equal-time comparison, so response timing does not leak how much of a secret matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(
    auth: &AuthConfig,
    request: &Request,
    peer: Option<SocketAddr>,
) -> Result<(), GatewayError> {
    let token = admin_token(auth);
    if !auth.is_enabled && token.is_none() {
        return match peer {
            Some(peer) if peer.ip().is_loopback() => Ok(()),
            _ => Err(GatewayError::Forbidden(
                "the admin API has no credentials configured and answers only on loopback; set governance.auth_config or BIFROST_ADMIN_TOKEN".into(),
            )),
        };
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let (Some(token), Some(bearer)) = (&token, presented.strip_prefix("Bearer ")) {
        if same(bearer.trim().as_bytes(), token.as_bytes()) {
            return Ok(());
        }
    }
    if auth.is_enabled {
        if let Some(encoded) = presented.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .unwrap_or_default();
            let expected = format!(
                "{}:{}",
                auth.admin_username.as_deref().unwrap_or(""),
                auth.admin_password.as_deref().unwrap_or("")
            );
            if same(&decoded, expected.as_bytes()) {
                return Ok(());
            }
        }
    }
    Err(GatewayError::Unauthorized(
        "admin credentials required (Basic auth or Bearer admin token)".into(),
    ))
}

/// Middleware: refuse requests without valid admin credentials.
pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let auth = state.runtime.load().config.governance.auth_config.clone();
    match authorized(&auth, &request, peer) {
        Ok(()) => next.run(request).await,
        Err(error) => {
            let mut response = error_response(Dialect::OpenAi, &error);
            if matches!(error, GatewayError::Unauthorized(_)) {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Basic realm=\"bifrost admin\""),
                );
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authorization: Option<&str>) -> Request {
        let mut builder = http::Request::builder().uri("/api/providers");
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder.body(axum::body::Body::empty()).expect("request")
    }

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().expect("ip"), 40000))
    }

    #[test]
    fn without_credentials_only_loopback_is_served() {
        let auth = AuthConfig::default();
        assert!(authorized(&auth, &request(None), peer("127.0.0.1")).is_ok());
        assert!(authorized(&auth, &request(None), peer("::1")).is_ok());
        assert!(matches!(
            authorized(&auth, &request(None), peer("10.1.2.3")),
            Err(GatewayError::Forbidden(_))
        ));
    }

    #[test]
    fn basic_auth_is_checked_from_any_address() {
        let auth = AuthConfig {
            is_enabled: true,
            admin_username: Some("admin".into()),
            admin_password: Some("pw".into()),
            ..Default::default()
        };
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("admin:pw")
        );
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("admin:no")
        );
        assert!(authorized(&auth, &request(Some(&good)), peer("10.1.2.3")).is_ok());
        assert!(
            authorized(&auth, &request(Some(&bad)), peer("127.0.0.1")).is_err(),
            "loopback is no bypass once credentials exist"
        );
        assert!(authorized(&auth, &request(None), peer("127.0.0.1")).is_err());
    }

    #[test]
    fn the_admin_token_is_accepted_as_a_bearer() {
        let auth = AuthConfig {
            admin_token: Some("t0ken".into()),
            ..Default::default()
        };
        assert!(authorized(&auth, &request(Some("Bearer t0ken")), peer("10.0.0.9")).is_ok());
        assert!(authorized(&auth, &request(Some("Bearer t0ke")), peer("10.0.0.9")).is_err());
    }
}
