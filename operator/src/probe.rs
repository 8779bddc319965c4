//! Reads a ready gateway's `GET /cluster/status` in the background, so `status.members` and
//! `status.clusterHealth` never hold up a reconcile: a reconcile reads the last answer and, when
//! it is stale, starts one short request whose answer the next reconcile uses.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::crd::HTTP_PORT;

/// What a gateway says about its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// Members it knows of.
    pub members: i32,
    /// `HEALTHY` or `NOT HEALTHY`.
    pub health: String,
}

#[derive(Debug, Clone)]
struct Answer {
    view: Option<ClusterView>,
    at: Instant,
}

/// Background `/cluster/status` reader, one entry per `namespace/name`.
#[derive(Debug)]
pub struct ClusterProbe {
    http: Option<reqwest::Client>,
    answers: Mutex<HashMap<String, Answer>>,
    in_flight: Mutex<JoinSet<()>>,
    max_age: Duration,
}

impl ClusterProbe {
    /// A probe asking at most every `max_age`, each request bounded by `timeout`.
    pub fn new(timeout: Duration, max_age: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .ok();
        Self {
            http,
            answers: Mutex::default(),
            in_flight: Mutex::new(JoinSet::new()),
            max_age,
        }
    }

    /// A probe that never asks (tests, or a network where the operator cannot reach pods).
    pub fn disabled() -> Self {
        Self {
            http: None,
            answers: Mutex::default(),
            in_flight: Mutex::new(JoinSet::new()),
            max_age: Duration::MAX,
        }
    }

    /// The last answer for `key`; `None` when no gateway answered (yet).
    pub fn latest(&self, key: &str) -> Option<ClusterView> {
        lock(&self.answers).get(key).and_then(|a| a.view.clone())
    }

    /// Ask the gateway at `pod_ip` again if the last answer is older than `max_age`. Returns at
    /// once; the answer lands in [`ClusterProbe::latest`].
    pub fn refresh(self: &std::sync::Arc<Self>, key: &str, pod_ip: &str) {
        let Some(http) = self.http.clone() else {
            return;
        };
        {
            let mut answers = lock(&self.answers);
            let fresh = answers
                .get(key)
                .is_some_and(|a| a.at.elapsed() < self.max_age);
            if fresh {
                return;
            }
            // Claim the slot so concurrent reconciles do not ask twice.
            let previous = answers.get(key).and_then(|a| a.view.clone());
            answers.insert(
                key.to_string(),
                Answer {
                    view: previous,
                    at: Instant::now(),
                },
            );
        }
        let url = format!("http://{}/cluster/status", host_port(pod_ip, HTTP_PORT));
        let probe = std::sync::Arc::clone(self);
        let key = key.to_string();
        let mut tasks = lock(&self.in_flight);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let view = fetch(&http, &url).await;
            if view.is_none() {
                tracing::debug!(%url, "no cluster status from gateway; health stays Unknown");
            }
            lock(&probe.answers).insert(
                key,
                Answer {
                    view,
                    at: Instant::now(),
                },
            );
        });
    }

    /// Stop every request in flight (shutdown).
    pub fn shutdown(&self) {
        lock(&self.in_flight).abort_all();
    }
}

async fn fetch(http: &reqwest::Client, url: &str) -> Option<ClusterView> {
    let response = http.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let bytes = response.bytes().await.ok()?;
    let body: Value = serde_json::from_slice(&bytes).ok()?;
    parse_cluster_status(&body)
}

#[derive(Deserialize)]
struct ClusterStatusBody {
    members: Value,
    cluster_health: String,
}

/// Read the gateway's `/cluster/status` body; `members` may be a count or a list.
pub fn parse_cluster_status(body: &Value) -> Option<ClusterView> {
    let parsed = ClusterStatusBody::deserialize(body).ok()?;
    let members = match &parsed.members {
        Value::Number(n) => n.as_i64()?,
        Value::Array(items) => i64::try_from(items.len()).ok()?,
        _ => return None,
    };
    Some(ClusterView {
        members: i32::try_from(members).ok()?,
        health: parsed.cluster_health,
    })
}

fn host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    #[test]
    fn cluster_status_with_a_member_count_is_read() {
        let body = json!({"local_node": "gw-0", "members": 3, "healthy_members": 3,
                          "cluster_health": "HEALTHY", "nodes": []});
        assert_eq!(
            parse_cluster_status(&body),
            Some(ClusterView {
                members: 3,
                health: "HEALTHY".into()
            })
        );
    }

    #[test]
    fn cluster_status_with_a_member_list_is_counted() {
        let body = json!({"members": ["gw-0", "gw-1"], "cluster_health": "NOT HEALTHY"});
        assert_eq!(
            parse_cluster_status(&body).map(|v| (v.members, v.health)),
            Some((2, "NOT HEALTHY".to_string()))
        );
    }

    #[test]
    fn anything_else_is_no_answer() {
        assert_eq!(parse_cluster_status(&json!({"status": "ok"})), None);
        assert_eq!(parse_cluster_status(&json!("HEALTHY")), None);
    }

    #[test]
    fn ipv6_pods_are_bracketed() {
        assert_eq!(host_port("fd00::1", 8080), "[fd00::1]:8080");
        assert_eq!(host_port("10.0.0.1", 8080), "10.0.0.1:8080");
    }

    #[tokio::test]
    async fn an_unreachable_gateway_leaves_the_health_unknown_without_blocking() {
        let probe = Arc::new(ClusterProbe::new(
            Duration::from_millis(200),
            Duration::from_secs(30),
        ));
        let started = Instant::now();
        // TEST-NET-1: never answers.
        probe.refresh("prod/gw", "192.0.2.1");
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "refresh returns at once"
        );
        assert_eq!(probe.latest("prod/gw"), None);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(probe.latest("prod/gw"), None);
        probe.shutdown();
    }

    #[tokio::test]
    async fn a_gateway_answer_is_used_by_the_next_reconcile() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let app = axum::Router::new().route(
                "/cluster/status",
                axum::routing::get(|| async {
                    axum::Json(
                        json!({"members": 3, "healthy_members": 3, "cluster_health": "HEALTHY"}),
                    )
                }),
            );
            axum::serve(listener, app).await
        });
        let probe = Arc::new(ClusterProbe::new(
            Duration::from_secs(2),
            Duration::from_secs(30),
        ));
        let http = probe.http.clone().expect("client");
        let view = fetch(&http, &format!("http://127.0.0.1:{port}/cluster/status")).await;
        assert_eq!(view.map(|v| v.members), Some(3));
        server.abort();
    }
}
