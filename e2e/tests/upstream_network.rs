//! Bifrost's `network_config` and `proxy_config` settings on the wire: an HTTP egress proxy with
//! credentials, TLS to an upstream with a private certificate (trusted through `ca_cert_pem`,
//! or not checked with `insecure_skip_verify`), and the stream idle timeout.

use std::sync::{Arc, Mutex};

use bifrost_e2e::harness::{config_for, Gateway, MockProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `host:port` of the mock.
fn mock_addr(mock: &MockProvider) -> String {
    mock.base.trim_start_matches("http://").to_string()
}

async fn chat(gateway: &Gateway, model: &str, stream: bool) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({"model": model, "stream": stream,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("answered");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

/// Read a request head (through the blank line) from `stream`.
async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    head
}

/// A forward HTTP proxy that relays every connection to `target` and keeps each request
/// head it saw.
async fn recording_proxy(target: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let target = target.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let head = read_head(&mut client).await;
                seen.lock()
                    .expect("heads lock")
                    .push(String::from_utf8_lossy(&head).into_owned());
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    return;
                };
                if upstream.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (format!("http://{addr}"), heads)
}

#[tokio::test]
async fn requests_go_through_an_http_proxy_with_its_credentials() {
    let mock = MockProvider::start(&[]).await;
    let (proxy_url, heads) = recording_proxy(mock_addr(&mock)).await;
    let mut config = config_for(&mock);
    config["providers"]["proxied"] = json!({
        "keys": [{"name": "k", "value": "sk-proxied", "models": ["*"]}],
        "network_config": {"base_url": mock.base},
        "custom_provider_config": {"base_provider_type": "openai"},
        "proxy_config": {"type": "http", "url": "env.TEST_PROXY_URL",
                         "username": "egress", "password": "env.TEST_PROXY_PASSWORD"}
    });
    let gateway = Gateway::start_with(
        &config,
        &[
            ("TEST_PROXY_URL", proxy_url.as_str()),
            ("TEST_PROXY_PASSWORD", "s3cret"),
        ],
    )
    .await;
    let (status, body) = chat(&gateway, "proxied/gpt-4o-mini", false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = chat(&gateway, "openai/gpt-4o-mini", false).await;
    assert_eq!(status, StatusCode::OK);
    let heads = heads.lock().expect("heads lock").clone();
    assert_eq!(
        heads.len(),
        1,
        "only the proxied provider used the proxy: {heads:#?}"
    );
    let head = heads[0].to_lowercase();
    let expected = format!("post {}/v1/chat/completions http/1.1", mock.base);
    assert!(head.starts_with(&expected), "absolute-form request: {head}");
    // Basic egress:s3cret
    assert!(
        head.contains(
            "proxy-authorization: basic ZWdyZXNzOnMzY3JldA=="
                .to_lowercase()
                .as_str()
        ),
        "{head}"
    );
}

/// A TLS front for the mock with a self-signed certificate for 127.0.0.1; its address and the
/// certificate's PEM.
async fn tls_front(target: String) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).expect("certificate params");
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    let key = rcgen::KeyPair::generate().expect("key pair");
    let certificate = params.self_signed(&key).expect("self-signed certificate");
    let pem = certificate.pem();
    let chain = vec![certificate.der().clone()];
    let private =
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("private key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind TLS front");
    let addr = listener.local_addr().expect("TLS front address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                if let Ok(mut upstream) = TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                }
            });
        }
    });
    (format!("https://{addr}"), pem)
}

#[tokio::test]
async fn a_private_certificate_is_trusted_through_ca_cert_pem_or_not_checked_on_request() {
    let mock = MockProvider::start(&[]).await;
    let (front, pem) = tls_front(mock_addr(&mock)).await;
    let mut config = config_for(&mock);
    let provider = |network: Value| {
        json!({
            "keys": [{"name": "k", "value": "sk-tls", "models": ["*"]}],
            "network_config": network,
            "custom_provider_config": {"base_provider_type": "openai"}
        })
    };
    config["providers"]["untrusted"] = provider(json!({"base_url": front}));
    config["providers"]["trusted"] = provider(json!({"base_url": front, "ca_cert_pem": pem}));
    config["providers"]["unchecked"] =
        provider(json!({"base_url": front, "insecure_skip_verify": true}));
    let gateway = Gateway::start(&config).await;
    let (status, body) = chat(&gateway, "untrusted/gpt-4o-mini", false).await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "an unknown issuer is refused: {body}"
    );
    for model in ["trusted/gpt-4o-mini", "unchecked/gpt-4o-mini"] {
        let (status, body) = chat(&gateway, model, false).await;
        assert_eq!(status, StatusCode::OK, "{model}: {body}");
    }
}

#[tokio::test]
async fn a_silent_stream_is_ended_after_the_idle_timeout() {
    let mock = MockProvider::start(&[]).await;
    mock.configure(json!({"chunks": 3, "chunk_delay_ms": 5000}))
        .await;
    let mut config = config_for(&mock);
    config["providers"]["openai"]["network_config"]["stream_idle_timeout_in_seconds"] = json!(1);
    let gateway = Gateway::start(&config).await;
    let (status, body) = chat(&gateway, "openai/gpt-4o-mini", true).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("upstream_stream_error") && body.contains("stream_idle_timeout_in_seconds"),
        "{body}"
    );
    assert!(
        !body.contains("[DONE]"),
        "the stream did not complete: {body}"
    );
}
