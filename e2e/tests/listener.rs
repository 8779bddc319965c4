//! The listener's timeouts and connection cap, against a real gateway over raw TCP: silent,
//! half-sent and idle connections are closed, stalled bodies get 408, connections past
//! `server.max_connections` are turned away without starving `/health`, and SIGTERM does not
//! wait on connections with nothing in flight.

use std::time::Duration;

use bifrost_e2e::harness::{config_for, wait_until, Deadline, Gateway, MockProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A gateway with `server` settings merged over short test timeouts.
async fn gateway_with(server: Value) -> (MockProvider, Gateway) {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    let mut settings = json!({
        "header_read_timeout_seconds": 1,
        "body_read_timeout_seconds": 1,
        "idle_timeout_seconds": 1,
        "drain_timeout_seconds": 30,
    });
    if let (Some(settings), Some(overrides)) = (settings.as_object_mut(), server.as_object()) {
        for (key, value) in overrides {
            settings.insert(key.clone(), value.clone());
        }
    }
    config["server"] = settings;
    let gateway = Gateway::start(&config).await;
    (mock, gateway)
}

fn address(gateway: &Gateway) -> String {
    gateway.base.trim_start_matches("http://").to_string()
}

async fn connect(gateway: &Gateway) -> TcpStream {
    TcpStream::connect(address(gateway))
        .await
        .expect("gateway accepts")
}

/// Read until the server closes the connection (end of stream or reset); what it sent before,
/// or `None` if it is still open after `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Read one HTTP/1.1 response with a `content-length` body; its head and body as text.
async fn read_response(stream: &mut TcpStream, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if received.len() >= head_end + 4 + length {
                return text;
            }
        }
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("response within the deadline")
            .expect("read");
        assert!(read > 0, "connection closed mid-response: {text:?}");
        received.extend_from_slice(&buf[..read]);
    }
}

async fn health_status(gateway: &Gateway) -> Option<StatusCode> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client")
        .get(gateway.url("/health"))
        .send()
        .await
        .ok()
        .map(|response| response.status())
}

#[tokio::test]
async fn silent_and_half_sent_request_heads_are_closed_after_the_header_timeout() {
    let (_mock, gateway) = gateway_with(json!({"idle_timeout_seconds": 60})).await;
    let openings: [&[u8]; 3] = [
        b"",
        b"GET /hea",
        b"GET /health HTTP/1.1\r\nHost: gateway\r\n",
    ];
    let mut connections = Vec::new();
    for opening in openings {
        let mut stream = connect(&gateway).await;
        stream.write_all(opening).await.expect("send");
        connections.push((opening, stream, Instant::now()));
    }
    for (opening, mut stream, opened) in connections {
        let text = String::from_utf8_lossy(opening).to_string();
        let received = closed_by_server(&mut stream, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("connection that sent {text:?} still open after 5 s"));
        assert!(
            opened.elapsed() >= Duration::from_millis(800),
            "closed before the 1 s header timeout: {text:?}"
        );
        assert!(
            received.is_empty(),
            "no answer to an incomplete head {text:?}"
        );
    }
    assert_eq!(health_status(&gateway).await, Some(StatusCode::OK));
}

#[tokio::test]
async fn a_body_that_stalls_midway_is_answered_with_408() {
    let (mock, gateway) = gateway_with(json!({"idle_timeout_seconds": 60})).await;
    let mut stream = connect(&gateway).await;
    let partial = br#"{"model": "openai/gpt-4o-mini", "messages": ["#;
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("send head");
    stream
        .write_all(partial)
        .await
        .expect("send part of the body");
    let sent = Instant::now();

    let received = closed_by_server(&mut stream, Duration::from_secs(5))
        .await
        .expect("stalled request answered and closed within 5 s");
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "408 for a stalled body: {text:?}"
    );
    assert!(text.contains("request_timeout"), "error code in the body");
    assert!(
        sent.elapsed() >= Duration::from_millis(800),
        "not before the 1 s body timeout"
    );
    assert_eq!(mock.requests().await, 0, "nothing went upstream");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (_mock, gateway) = gateway_with(json!({"header_read_timeout_seconds": 10})).await;
    let mut stream = connect(&gateway).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .expect("send");
    let response = read_response(&mut stream, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
    let answered = Instant::now();

    let received = closed_by_server(&mut stream, Duration::from_secs(5))
        .await
        .expect("idle connection closed within 5 s (idle timeout 1 s, header timeout 10 s)");
    assert!(received.is_empty());
    assert!(
        answered.elapsed() >= Duration::from_millis(800),
        "kept for the 1 s idle timeout"
    );
}

#[tokio::test]
async fn connections_past_max_connections_are_refused_and_health_recovers() {
    let (_mock, gateway) = gateway_with(json!({
        "max_connections": 8,
        "header_read_timeout_seconds": 2,
    }))
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect(&gateway).await);
    }
    // Let the gateway accept all eight before the extra ones arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for extra in 0..4 {
        let mut stream = connect(&gateway).await;
        assert!(
            closed_by_server(&mut stream, Duration::from_secs(1))
                .await
                .is_some(),
            "extra connection {extra} closed at once"
        );
    }
    gateway
        .output
        .wait_for("connection limit reached", Duration::from_secs(5))
        .await
        .expect("cap hit logged");

    // The held connections send nothing and time out; /health answers again.
    wait_until(
        "/health to answer 200 again",
        Deadline::after(Duration::from_secs(10)).polling_every(Duration::from_millis(100)),
        async || health_status(&gateway).await,
        |status| *status == Some(StatusCode::OK),
    )
    .await;
    let metrics = gateway.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("bifrost_http_connections_refused_total") && !l.ends_with(" 0")),
        "refusals counted:\n{metrics}"
    );
}

#[tokio::test]
async fn sigterm_closes_idle_connections_at_once_and_lets_the_request_in_flight_finish() {
    let mock = MockProvider::start(&["--latency-ms", "2000"]).await;
    let mut config = config_for(&mock);
    config["server"] = json!({
        "drain_timeout_seconds": 30,
        "header_read_timeout_seconds": 60,
        "idle_timeout_seconds": 60,
    });
    let mut gateway = Gateway::start(&config).await;

    let silent = connect(&gateway).await;
    let mut half_open = connect(&gateway).await;
    half_open.write_all(b"GET /hea").await.expect("send");
    let mut keep_alive = connect(&gateway).await;
    keep_alive
        .write_all(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .expect("send");
    let response = read_response(&mut keep_alive, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");

    let url = gateway.url("/v1/chat/completions");
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!({"model": "openai/gpt-4o-mini",
                          "messages": [{"role": "user", "content": "finish during the drain"}]}))
            .send()
            .await
    });
    mock.wait_for_requests(
        1,
        Deadline::after(Duration::from_secs(5)).polling_every(Duration::from_millis(20)),
    )
    .await;

    let signalled = Instant::now();
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "clean exit");
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "exit well before drain_timeout_seconds"
    );
    let answer = in_flight
        .await
        .expect("task")
        .expect("in-flight request answered during the drain");
    assert_eq!(answer.status(), StatusCode::OK);
    drop(silent);
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let (_mock, gateway) = gateway_with(json!({})).await;
    let response = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client")
        .get(gateway.url("/health"))
        .send()
        .await
        .expect("h2c answered");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
}
