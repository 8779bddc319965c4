//! A real server and a real client over loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::*;
use crate::error::GatewayError;
use crate::telemetry::metrics::GossipMetrics;

const KEY: &str = "test cluster key";

/// Answers from fixed data; admissions go through real [`StrictCounters`].
#[derive(Default)]
struct FakeCluster {
    counters: Mutex<StrictCounters>,
    asked: Mutex<Vec<AdmitRequest>>,
}

fn fixed_snapshot() -> Snapshot {
    Snapshot {
        node_id: "gw-0".to_string(),
        nodes: vec![
            NodeSnapshot {
                node_id: "gw-0".to_string(),
                generation: 1_750_000_000_000,
                gossip_addr: "10.0.0.1:10101".to_string(),
                entries: BTreeMap::from([
                    ("node/region".to_string(), entry("eu", 1)),
                    ("rl/vk/a/60000".to_string(), entry("3,120", 4)),
                ]),
                live: true,
                max_version: 4,
            },
            NodeSnapshot {
                node_id: "gw-1".to_string(),
                generation: 7,
                gossip_addr: "[fd00::2]:10101".to_string(),
                entries: BTreeMap::new(),
                live: false,
                max_version: 0,
            },
        ],
    }
}

fn entry(value: &str, version: u64) -> SnapshotEntry {
    SnapshotEntry {
        value: value.to_string(),
        version,
    }
}

#[async_trait::async_trait]
impl ClusterRpc for FakeCluster {
    async fn snapshot(&self) -> Snapshot {
        fixed_snapshot()
    }

    async fn status_json(&self) -> String {
        r#"{"node_id":"gw-0","healthy":true}"#.to_string()
    }

    async fn admit(&self, request: AdmitRequest) -> AdmitDecision {
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request.clone());
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(
                &request.key,
                request.window_start_ms,
                request.window_end_ms,
                request.limit,
                request.cost,
                || 0,
                request.window_start_ms,
            )
    }
}

/// A running server; stops when dropped.
struct TestServer {
    addr: SocketAddr,
    fake: Arc<FakeCluster>,
    metrics: GossipMetrics,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), GatewayError>>>,
}

impl TestServer {
    async fn start(security: GrpcSecurity) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let fake = Arc::new(FakeCluster::default());
        let metrics = GossipMetrics::default();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(
            listener,
            fake.clone(),
            security,
            metrics.clone(),
            stopped,
        ));
        Self {
            addr,
            fake,
            metrics,
            stop,
            task: Some(task),
        }
    }

    async fn shutdown(mut self) -> Result<(), GatewayError> {
        let _ = self.stop.send(true);
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("server stops within 5 s")
            .expect("server task")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn keyed(key: &str) -> GrpcSecurity {
    GrpcSecurity::new(Some(key), None)
}

fn admit_request(cost: i64) -> AdmitRequest {
    AdmitRequest {
        key: "rl/vk/a".to_string(),
        window_start_ms: 60_000,
        window_end_ms: 120_000,
        limit: 2,
        cost,
        from_node: "gw-1".to_string(),
    }
}

#[tokio::test]
async fn grpc_snapshot_round_trips() {
    let server = TestServer::start(keyed(KEY)).await;
    let clients = PeerClients::new(keyed(KEY));
    let snapshot = clients.snapshot(server.addr).await.expect("snapshot");
    assert_eq!(snapshot, fixed_snapshot());
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn grpc_status_round_trips() {
    let server = TestServer::start(keyed(KEY)).await;
    let clients = PeerClients::new(keyed(KEY));
    let json = clients.status_json(server.addr).await.expect("status");
    assert_eq!(json, r#"{"node_id":"gw-0","healthy":true}"#);
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn grpc_admit_round_trips_to_the_owners_counters() {
    let server = TestServer::start(keyed(KEY)).await;
    let clients = PeerClients::new(keyed(KEY));
    for expected in 1..=2 {
        let decision = clients
            .admit(server.addr, admit_request(1))
            .await
            .expect("admit");
        assert_eq!(
            decision,
            AdmitDecision {
                admitted: true,
                count: expected,
                limit: 2,
                retry_after_ms: 0
            }
        );
    }
    let rejected = clients
        .admit(server.addr, admit_request(1))
        .await
        .expect("admit");
    assert_eq!(
        rejected,
        AdmitDecision {
            admitted: false,
            count: 2,
            limit: 2,
            retry_after_ms: 60_000
        }
    );
    let asked = server.fake.asked.lock().expect("asked").clone();
    assert_eq!(asked.len(), 3);
    assert_eq!(asked[0], admit_request(1));
    assert_eq!(server.metrics.grpc_rejected_total(), 0);
}

#[tokio::test]
async fn grpc_without_a_cluster_key_on_either_side_still_works() {
    let server = TestServer::start(GrpcSecurity::default()).await;
    let clients = PeerClients::new(GrpcSecurity::default());
    assert!(clients.status_json(server.addr).await.is_ok());
}

#[tokio::test]
async fn grpc_client_with_the_wrong_key_is_unauthenticated_and_counted() {
    let server = TestServer::start(keyed(KEY)).await;
    let clients = PeerClients::new(keyed("another key"));
    let error = clients
        .admit(server.addr, admit_request(1))
        .await
        .expect_err("wrong key");
    assert_eq!(error.kind, RpcErrorKind::Unauthenticated);
    assert_eq!(error.peer, server.addr);
    assert_eq!(error.rpc, "Admit");
    let message = error.to_string();
    assert!(message.contains("unauthenticated"), "{message}");
    assert!(message.contains(&server.addr.to_string()), "{message}");
    assert_eq!(server.metrics.grpc_rejected_total(), 1);
    assert_eq!(
        server
            .metrics
            .grpc_rejected
            .get_or_create(&crate::telemetry::metrics::GrpcRejectionLabels {
                reason: "bad_signature"
            })
            .get(),
        1
    );
    // Nothing reached the handler.
    assert!(server.fake.asked.lock().expect("asked").is_empty());
    assert!(clients.snapshot(server.addr).await.is_err());
    assert_eq!(server.metrics.grpc_rejected_total(), 2);
}

#[tokio::test]
async fn grpc_client_without_a_key_is_rejected_by_a_keyed_server() {
    let server = TestServer::start(keyed(KEY)).await;
    let clients = PeerClients::new(GrpcSecurity::default());
    let error = clients.status_json(server.addr).await.expect_err("no key");
    assert_eq!(error.kind, RpcErrorKind::Unauthenticated);
    assert!(error.to_string().contains("missing"), "{error}");
    assert_eq!(
        server
            .metrics
            .grpc_rejected
            .get_or_create(&crate::telemetry::metrics::GrpcRejectionLabels { reason: "missing" })
            .get(),
        1
    );
}

#[tokio::test]
async fn grpc_unreachable_peer_fails_fast_with_its_address() {
    // A port that was just free: nothing listens there.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    let clients = PeerClients::new(keyed(KEY));
    let started = Instant::now();
    let error = clients
        .admit(addr, admit_request(1))
        .await
        .expect_err("nobody there");
    assert!(
        matches!(
            error.kind,
            RpcErrorKind::Unreachable | RpcErrorKind::Timeout
        ),
        "{error}"
    );
    assert_eq!(error.peer, addr);
    // The admit deadline (250 ms) bounds it, with generous slack for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn grpc_silent_peer_times_out_at_the_call_deadline() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let clients = PeerClients::with_timeouts(
        keyed(KEY),
        RpcTimeouts {
            admit: Duration::from_millis(200),
            ..RpcTimeouts::default()
        },
    );
    let error = clients
        .admit(addr, admit_request(1))
        .await
        .expect_err("silent peer");
    assert_eq!(error.kind, RpcErrorKind::Timeout, "{error}");
    assert!(
        error.to_string().contains("timeout waiting for response"),
        "{error}"
    );
    silent.abort();
}

#[tokio::test]
async fn grpc_server_stops_on_the_watch() {
    let server = TestServer::start(keyed(KEY)).await;
    let clients = PeerClients::new(keyed(KEY));
    // An open connection must not hold the stop up.
    assert!(clients.status_json(server.addr).await.is_ok());
    let addr = server.addr;
    server.shutdown().await.expect("clean stop");
    let after = clients.status_json(addr).await;
    assert!(after.is_err(), "server still answering after stop");
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM.
struct TestPki {
    ca_pem: String,
    node_cert_pem: String,
    node_key_pem: String,
}

fn test_pki(name: &str) -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
        .expect("ca cert");
    let node_key = KeyPair::generate().expect("node key");
    let mut node_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("node params");
    node_params
        .distinguished_name
        .push(DnType::CommonName, "gw-0");
    let node_cert = node_params.signed_by(&node_key, &ca).expect("node cert");
    TestPki {
        ca_pem: ca.pem(),
        node_cert_pem: node_cert.pem(),
        node_key_pem: node_key.serialize_pem(),
    }
}

fn tls_security(pki: &TestPki, trusted_ca_pem: &str) -> GrpcSecurity {
    let material = TlsMaterial::from_pem(
        pki.node_cert_pem.clone(),
        pki.node_key_pem.clone(),
        trusted_ca_pem.to_string(),
    )
    .expect("tls material");
    GrpcSecurity::new(Some(KEY), Some(material))
}

#[tokio::test]
async fn grpc_over_tls_round_trips_with_a_trusted_ca() {
    let pki = test_pki("cluster");
    let server = TestServer::start(tls_security(&pki, &pki.ca_pem)).await;
    let clients = PeerClients::new(tls_security(&pki, &pki.ca_pem));
    let snapshot = clients
        .snapshot(server.addr)
        .await
        .expect("snapshot over TLS");
    assert_eq!(snapshot, fixed_snapshot());
    let decision = clients
        .admit(server.addr, admit_request(1))
        .await
        .expect("admit over TLS");
    assert!(decision.admitted);
    server.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn grpc_over_tls_refuses_a_peer_signed_by_another_ca() {
    let pki = test_pki("cluster");
    let other = test_pki("other");
    let server = TestServer::start(tls_security(&pki, &pki.ca_pem)).await;
    // This client trusts only the other CA, so the server's certificate does not verify.
    let clients = PeerClients::new(tls_security(&other, &other.ca_pem));
    let error = clients
        .status_json(server.addr)
        .await
        .expect_err("untrusted server certificate");
    assert_eq!(error.kind, RpcErrorKind::Unreachable, "{error}");
    assert!(
        error.detail.to_lowercase().contains("certificate"),
        "{error}"
    );
    // A plaintext client gets nowhere either.
    let plaintext = PeerClients::new(keyed(KEY));
    assert!(plaintext.status_json(server.addr).await.is_err());
}

#[test]
fn grpc_tls_material_names_the_bad_field() {
    let pki = test_pki("cluster");
    let bad_key = TlsMaterial::from_pem(pki.node_cert_pem.clone(), "nonsense", pki.ca_pem.clone())
        .expect_err("bad key");
    assert!(bad_key.to_string().contains("key_file"), "{bad_key}");
    let bad_ca = TlsMaterial::from_pem(
        pki.node_cert_pem.clone(),
        pki.node_key_pem.clone(),
        "not a certificate",
    )
    .expect_err("bad ca");
    assert!(bad_ca.to_string().contains("ca_file"), "{bad_ca}");
    let missing = TlsMaterial::load(&crate::config::GrpcTls {
        cert_file: "/nonexistent/node.crt".to_string(),
        key_file: "/nonexistent/node.key".to_string(),
        ca_file: "/nonexistent/ca.crt".to_string(),
    })
    .expect_err("missing files");
    let message = missing.to_string();
    assert!(
        message.contains("cluster_config.grpc.tls.cert_file")
            && message.contains("/nonexistent/node.crt"),
        "{message}"
    );
}

#[test]
fn grpc_rejections_are_exported_as_a_prometheus_counter() {
    let metrics = crate::telemetry::metrics::Metrics::new();
    metrics.gossip.grpc_rejected("stale");
    let text = metrics.render();
    assert!(
        text.contains(r#"bifrost_grpc_requests_rejected_total{reason="stale"} 1"#),
        "{text}"
    );
}
