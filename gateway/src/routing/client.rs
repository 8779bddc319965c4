//! Upstream HTTP clients: the one most providers share, and a client of its own for a provider
//! whose network settings need one (TLS trust, HTTP/2, pool limits, an egress proxy).

use std::time::Duration;

use crate::config::{NetworkConfig, ProviderConfig, ProxyConfig, ProxyType};
use crate::error::GatewayError;

/// Settings every upstream client has.
fn base(pool_size: usize, keep_alive: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .pool_max_idle_per_host(pool_size)
        .pool_idle_timeout(keep_alive)
        .tcp_nodelay(true)
        // Providers do not redirect API calls; never follow one with a key attached.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
}

/// The shared client (`client.initial_pool_size` idle connections per host). Like every
/// provider without a `proxy_config`, it uses the proxy the environment names, if any.
pub fn shared(pool_size: usize) -> Result<reqwest::Client, GatewayError> {
    let keep_alive = NetworkConfig::default_keep_alive_timeout();
    base(pool_size, Duration::from_secs(keep_alive))
        .build()
        .map_err(|e| GatewayError::Config(format!("cannot build the upstream HTTP client: {e}")))
}

/// Whether `provider` needs a client of its own.
pub fn needs_own(provider: &ProviderConfig) -> bool {
    provider.network_config.needs_own_client()
        || provider
            .proxy_config
            .as_ref()
            .is_some_and(|proxy| proxy.proxy_type != ProxyType::Environment)
}

/// The client of provider `name`, or `None` when the shared one will do.
pub fn for_provider(
    name: &str,
    provider: &ProviderConfig,
    pool_size: usize,
) -> Result<Option<reqwest::Client>, GatewayError> {
    if !needs_own(provider) {
        return Ok(None);
    }
    let at = |field: &str| format!("providers.{name}.{field}");
    let network = &provider.network_config;
    let pool = network
        .max_conns_per_host
        .map_or(pool_size, |max| pool_size.min(max as usize));
    let keep_alive = Duration::from_secs(network.keep_alive_timeout_in_seconds);
    let mut builder = base(pool, keep_alive);
    if network.enforce_http2 {
        builder = builder.http2_prior_knowledge();
    }
    if network.insecure_skip_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let Some(pem) = &network.ca_cert_pem {
        builder = trust(builder, pem, &at("network_config.ca_cert_pem"))?;
    }
    if let Some(proxy) = &provider.proxy_config {
        builder = with_proxy(builder, proxy, &at("proxy_config"))?;
    }
    let client = builder.build().map_err(|e| {
        GatewayError::Config(format!(
            "providers.{name}: cannot build its HTTP client: {e}"
        ))
    })?;
    Ok(Some(client))
}

/// Trust the certificates of PEM bundle `pem` (field `at`) for upstream TLS.
fn trust(
    mut builder: reqwest::ClientBuilder,
    pem: &str,
    at: &str,
) -> Result<reqwest::ClientBuilder, GatewayError> {
    let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .map_err(|e| GatewayError::Config(format!("{at}: not a PEM certificate bundle: {e}")))?;
    if certificates.is_empty() {
        return Err(GatewayError::Config(format!(
            "{at}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    for certificate in certificates {
        builder = builder.add_root_certificate(certificate);
    }
    Ok(builder)
}

fn with_proxy(
    builder: reqwest::ClientBuilder,
    proxy: &ProxyConfig,
    at: &str,
) -> Result<reqwest::ClientBuilder, GatewayError> {
    let url = match proxy.proxy_type {
        ProxyType::None => return Ok(builder.no_proxy()),
        // The builder reads the environment's proxies by default.
        ProxyType::Environment => return Ok(builder),
        ProxyType::Http | ProxyType::Socks5 => proxy.url.as_deref().unwrap_or_default(),
    };
    let mut upstream_proxy = reqwest::Proxy::all(url)
        .map_err(|e| GatewayError::Config(format!("{at}.url: \"{url}\" is not usable: {e}")))?;
    if let Some(username) = &proxy.username {
        upstream_proxy =
            upstream_proxy.basic_auth(username, proxy.password.as_deref().unwrap_or_default());
    }
    let builder = builder.proxy(upstream_proxy);
    match &proxy.ca_cert_pem {
        Some(pem) => trust(builder, pem, &format!("{at}.ca_cert_pem")),
        None => Ok(builder),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(document: serde_json::Value) -> ProviderConfig {
        serde_json::from_value(document).expect("provider config")
    }

    #[test]
    fn only_providers_with_their_own_settings_get_their_own_client() {
        let plain = provider(serde_json::json!({}));
        assert!(for_provider("p", &plain, 8).expect("builds").is_none());
        let environment = provider(serde_json::json!({"proxy_config": {"type": "environment"}}));
        assert!(!needs_own(&environment));
        for own in [
            serde_json::json!({"network_config": {"enforce_http2": true}}),
            serde_json::json!({"network_config": {"max_conns_per_host": 4}}),
            serde_json::json!({"proxy_config": {"type": "none"}}),
            serde_json::json!({"proxy_config": {"type": "socks5", "url": "socks5://127.0.0.1:1080",
                                                "username": "u", "password": "p"}}),
        ] {
            let config = provider(own.clone());
            assert!(
                for_provider("p", &config, 8).expect("builds").is_some(),
                "{own}"
            );
        }
    }

    #[test]
    fn a_bad_certificate_or_proxy_url_names_its_field() {
        let bad_pem = provider(serde_json::json!({"network_config": {"ca_cert_pem": "not a pem"}}));
        let err = for_provider("p", &bad_pem, 8).expect_err("no certificate");
        assert!(
            err.to_string()
                .contains("providers.p.network_config.ca_cert_pem"),
            "{err}"
        );
        let bad_url = provider(serde_json::json!({"proxy_config": {"type": "http", "url": "::"}}));
        let err = for_provider("p", &bad_url, 8).expect_err("bad url");
        assert!(
            err.to_string().contains("providers.p.proxy_config.url"),
            "{err}"
        );
    }
}
