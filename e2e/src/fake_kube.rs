//! A stand-in for the one Kubernetes API call the gateway's `kubernetes` discovery makes:
//! `GET /api/v1/namespaces/<ns>/pods?labelSelector=...`, answered with a `PodList` of the pods
//! the test put in that namespace whose labels match the selector (equality `=`/`==`/`!=`,
//! existence `k`/`!k`, and set `in`/`notin`). A kubeconfig pointing at it lets a gateway build
//! its client the way it would outside a cluster. Every request is recorded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// The bearer token the written kubeconfig carries and the fake requires.
pub const TOKEN: &str = "fake-kube-token";

#[derive(Default)]
struct Shared {
    /// `(namespace, pod JSON)`.
    pods: Mutex<Vec<(String, Value)>>,
    /// `GET path?labelSelector=...` of every request.
    requests: Mutex<Vec<String>>,
}

/// A running fake API server; stops when dropped.
pub struct FakeKube {
    /// `http://127.0.0.1:<port>`
    pub server: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A pod as the API returns it: `name` in `namespace` with `labels`, `phase` and `ip`.
pub fn pod(
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
    phase: &str,
    ip: Option<&str>,
) -> Value {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let mut status = json!({"phase": phase});
    if let Some(ip) = ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    json!({
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "uid": format!("uid-{namespace}-{name}"), "resourceVersion": "1"},
        "spec": {"containers": [{"name": "gateway", "image": "bifrost:test"}]},
        "status": status,
    })
}

impl FakeKube {
    /// Start one on a free loopback port with no pods.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .route("/api/v1/namespaces/{namespace}/pods", get(list_pods))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Kubernetes API");
        let server = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            server,
            shared,
            task,
        }
    }

    /// Add `pod` (built with [`pod`]) to its namespace.
    pub fn add_pod(&self, pod: Value) {
        let namespace = pod["metadata"]["namespace"]
            .as_str()
            .expect("pod namespace")
            .to_string();
        self.shared
            .pods
            .lock()
            .expect("pods lock")
            .push((namespace, pod));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// Write a kubeconfig for this server (namespace `namespace`, bearer [`TOKEN`]) into `dir`;
    /// its path, for `KUBECONFIG`.
    pub fn write_kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters:\n- name: fake\n  cluster:\n    server: {server}\n\
             users:\n- name: tester\n  user:\n    token: {TOKEN}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: {namespace}\n",
            server = self.server
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        Json(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": message, "reason": reason, "code": code.as_u16()}),
        ),
    )
        .into_response()
}

async fn list_pods(
    State(shared): State<Arc<Shared>>,
    UrlPath(namespace): UrlPath<String>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    shared.requests.lock().expect("requests lock").push(format!(
        "GET /api/v1/namespaces/{namespace}/pods?labelSelector={selector}"
    ));
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    if !authorized {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".to_string(),
        );
    }
    let requirements = match parse_selector(&selector) {
        Ok(r) => r,
        Err(e) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("unable to parse requirement: {e}"),
            )
        }
    };
    let items: Vec<Value> = shared
        .pods
        .lock()
        .expect("pods lock")
        .iter()
        .filter(|(ns, _)| *ns == namespace)
        .filter(|(_, pod)| {
            let labels = &pod["metadata"]["labels"];
            requirements.iter().all(|r| r.matches(labels))
        })
        .map(|(_, pod)| pod.clone())
        .collect();
    Json(json!({"kind": "PodList", "apiVersion": "v1",
                "metadata": {"resourceVersion": "1"}, "items": items}))
    .into_response()
}

/// One requirement of a label selector.
#[derive(Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl Requirement {
    fn matches(&self, labels: &Value) -> bool {
        let get = |key: &str| labels.get(key).and_then(Value::as_str);
        match self {
            Self::Equals(k, v) => get(k) == Some(v.as_str()),
            Self::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Self::Exists(k) => get(k).is_some(),
            Self::NotExists(k) => get(k).is_none(),
            Self::In(k, values) => get(k).is_some_and(|v| values.iter().any(|x| x == v)),
            Self::NotIn(k, values) => get(k).is_none_or(|v| values.iter().all(|x| x != v)),
        }
    }
}

/// Split at commas outside parentheses, then parse each requirement.
fn parse_selector(selector: &str) -> Result<Vec<Requirement>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&selector[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_requirement)
        .collect()
}

fn parse_requirement(text: &str) -> Result<Requirement, String> {
    let set = |rest: &str| -> Result<Vec<String>, String> {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| format!("{text:?}: expected a parenthesised set"))?;
        Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
    };
    if let Some((key, rest)) = text.split_once(" notin ") {
        return Ok(Requirement::NotIn(key.trim().into(), set(rest)?));
    }
    if let Some((key, rest)) = text.split_once(" in ") {
        return Ok(Requirement::In(key.trim().into(), set(rest)?));
    }
    if let Some((key, value)) = text.split_once("!=") {
        return Ok(Requirement::NotEquals(
            key.trim().into(),
            value.trim().into(),
        ));
    }
    if let Some((key, value)) = text.split_once("==").or_else(|| text.split_once('=')) {
        return Ok(Requirement::Equals(key.trim().into(), value.trim().into()));
    }
    if let Some(key) = text.strip_prefix('!') {
        return Ok(Requirement::NotExists(key.trim().into()));
    }
    if text.contains([' ', '(', ')']) {
        return Err(format!("{text:?}: not a label requirement"));
    }
    Ok(Requirement::Exists(text.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_like_the_api_server() {
        let labels = json!({"app": "bifrost", "tier": "gw"});
        let matches = |s: &str| {
            parse_selector(s)
                .expect("parses")
                .iter()
                .all(|r| r.matches(&labels))
        };
        assert!(matches("app=bifrost"));
        assert!(matches("app==bifrost,tier"));
        assert!(matches("app in (bifrost, other),!zone"));
        assert!(matches("tier notin (db)"));
        assert!(matches(""));
        assert!(!matches("app=other"));
        assert!(!matches("app!=bifrost"));
        assert!(!matches("zone"));
        assert!(!matches("tier in (db,cache)"));
        assert!(parse_selector("app in bifrost").is_err());
    }
}
