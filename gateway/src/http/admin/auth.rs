//! Admin API trust: who may drive it (credentials, or loopback when none are configured) and
//! from where (no browser page unless its origin is allowed, no foreign `Host` in loopback mode,
//! so neither a cross-site form nor a DNS-rebound page can reach it).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use http::{header, HeaderMap};

use super::guard;
use crate::config::AuthConfig;
use crate::error::GatewayError;
use crate::governance::auth::authorization_credentials;
use crate::http::errors::{error_response, Dialect};
use crate::state::AppState;

/// How an admin request was let in; handlers allow some changes only with credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAccess {
    /// Valid Basic auth or admin bearer token.
    Credentials,
    /// No credentials configured; a loopback client with a loopback `Host`.
    Loopback,
}

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

/// Refuse browser pages whose origin is not in `admin_allowed_origins`: a request with an
/// `Origin`, or (without one) a `Sec-Fetch-Site` of `cross-site` or `same-site`. Other clients
/// (curl, SDKs, scripts) send neither.
fn browser_allowed(auth: &AuthConfig, headers: &HeaderMap) -> Result<(), GatewayError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let allowed = auth
            .admin_allowed_origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin));
        if allowed {
            return Ok(());
        }
        return Err(GatewayError::Forbidden(format!(
            "the admin API refuses browser requests from origin \"{origin}\"; add it to governance.auth_config.admin_allowed_origins to allow it"
        )));
    }
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
        return Err(GatewayError::Forbidden(format!(
            "the admin API refuses {site} browser requests (Sec-Fetch-Site)"
        )));
    }
    Ok(())
}

/// Whether `host` (a `Host` value: name or address, optional port) names this machine's
/// loopback: `localhost`, `*.localhost`, 127.0.0.0/8 or `[::1]`.
fn is_loopback_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((address, rest)) => (address, rest.strip_prefix(':')),
            None => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if host.starts_with('[') {
        return name.parse::<Ipv6Addr>().is_ok_and(|ip| {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        });
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<IpAddr>()
        .is_ok_and(|ip| matches!(ip, IpAddr::V4(v4) if v4.is_loopback()))
}

fn authorized(
    auth: &AuthConfig,
    request: &Request,
    peer: Option<SocketAddr>,
) -> Result<AdminAccess, GatewayError> {
    browser_allowed(auth, request.headers())?;
    let token = admin_token(auth);
    if !auth.is_enabled && token.is_none() {
        if !peer.is_some_and(|peer| peer.ip().is_loopback()) {
            return Err(GatewayError::Forbidden(
                "the admin API has no credentials configured and answers only on loopback; set governance.auth_config or BIFROST_ADMIN_TOKEN".into(),
            ));
        }
        // A loopback peer is not enough: a page on a rebound DNS name connects from loopback too.
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        if !is_loopback_host(host) {
            return Err(GatewayError::Forbidden(format!(
                "the admin API has no credentials configured and answers only to a loopback Host (localhost, 127.0.0.1, [::1]), not \"{host}\"; set governance.auth_config or BIFROST_ADMIN_TOKEN"
            )));
        }
        return Ok(AdminAccess::Loopback);
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let (Some(token), Some(bearer)) = (&token, authorization_credentials(presented, "Bearer")) {
        if same(bearer.as_bytes(), token.as_bytes()) {
            return Ok(AdminAccess::Credentials);
        }
    }
    if auth.is_enabled {
        if let Some(encoded) = authorization_credentials(presented, "Basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap_or_default();
            let expected = format!(
                "{}:{}",
                auth.admin_username.as_deref().unwrap_or(""),
                auth.admin_password.as_deref().unwrap_or("")
            );
            if same(&decoded, expected.as_bytes()) {
                return Ok(AdminAccess::Credentials);
            }
        }
    }
    Err(GatewayError::Unauthorized(
        "admin credentials required (Basic auth or Bearer admin token)".into(),
    ))
}

/// Middleware on every admin route: trust (see the module doc), then the request's shape
/// (JSON bodies, bounded ids) before any handler runs.
pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    params: Option<Path<Vec<(String, String)>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    // The running runtime, borrowed: no copy of the whole config per admin request.
    let runtime = state.runtime.load_full();
    let config = &runtime.config;
    let auth = &config.governance.auth_config;
    let access = match authorized(auth, &request, peer) {
        Ok(access) => access,
        Err(error) => {
            let mut response = error_response(Dialect::OpenAi, &error);
            if matches!(error, GatewayError::Unauthorized(_)) {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Basic realm=\"bifrost admin\""),
                );
            }
            return response;
        }
    };
    let params = params.map(|Path(params)| params).unwrap_or_default();
    let checked = async {
        guard::check_path_ids(&params)?;
        let (parts, body) = request.into_parts();
        let body = guard::check_body(
            &parts,
            body,
            config.client.max_request_body_bytes(),
            config.client.max_request_body_size_mb,
        )
        .await?;
        Ok::<_, GatewayError>(Request::from_parts(parts, body))
    }
    .await;
    request = match checked {
        Ok(request) => request,
        Err(error) => return error_response(Dialect::OpenAi, &error),
    };
    request.extensions_mut().insert(access);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authorization: Option<&str>) -> Request {
        let mut builder = http::Request::builder()
            .uri("/api/providers")
            .header(header::HOST, "127.0.0.1:8080");
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

    #[test]
    fn auth_schemes_are_case_insensitive() {
        let auth = AuthConfig {
            is_enabled: true,
            admin_username: Some("admin".into()),
            admin_password: Some("pw".into()),
            admin_token: Some("t0ken".into()),
            ..Default::default()
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode("admin:pw");
        for value in [
            "bearer t0ken".to_string(),
            "BEARER t0ken".to_string(),
            format!("basic {encoded}"),
            format!("BASIC {encoded}"),
        ] {
            assert_eq!(
                authorized(&auth, &request(Some(&value)), peer("10.0.0.9")).ok(),
                Some(AdminAccess::Credentials),
                "{value}"
            );
        }
    }

    fn with_header(name: &'static str, value: &str) -> Request {
        let mut request = request(None);
        request
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
        request
    }

    #[test]
    fn loopback_mode_needs_a_loopback_host() {
        let auth = AuthConfig::default();
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "admin.localhost:1",
            "127.0.0.1",
            "127.8.9.10:80",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(
                authorized(&auth, &with_header("host", host), peer("127.0.0.1")).is_ok(),
                "{host}"
            );
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1",
            "[::2]:80",
            "127.0.0.1:80x",
            "",
        ] {
            assert!(
                matches!(
                    authorized(&auth, &with_header("host", host), peer("127.0.0.1")),
                    Err(GatewayError::Forbidden(_))
                ),
                "{host}"
            );
        }
    }

    #[test]
    fn browser_pages_need_an_allowed_origin() {
        let mut auth = AuthConfig::default();
        for (name, value) in [
            ("origin", "http://evil.example"),
            ("origin", "null"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
        ] {
            assert!(
                matches!(
                    authorized(&auth, &with_header(name, value), peer("127.0.0.1")),
                    Err(GatewayError::Forbidden(_))
                ),
                "{name}: {value}"
            );
        }
        for value in ["same-origin", "none"] {
            assert!(authorized(&auth, &with_header("sec-fetch-site", value), peer("::1")).is_ok());
        }
        auth.admin_allowed_origins = vec!["https://admin.example.com".into()];
        let request = with_header("origin", "https://admin.example.com");
        assert!(authorized(&auth, &request, peer("127.0.0.1")).is_ok());
    }
}
