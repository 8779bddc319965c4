//! A small in-memory Kubernetes API server behind kube's `Client` (tower-test), enough for the
//! reconciler: server-side apply (with no-op detection), get, list pods, create, delete, status
//! patches and Events. Every request is recorded for assertions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tower_test::mock;

use crate::crd::BifrostCluster;

/// One request the reconciler sent.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Query string.
    pub query: String,
    /// `Content-Type`.
    pub content_type: String,
    /// JSON body (Null when empty).
    pub body: Value,
}

impl Recorded {
    /// A server-side apply by `manager`.
    pub fn is_apply_by(&self, manager: &str) -> bool {
        self.method == "PATCH"
            && self.content_type == "application/apply-patch+yaml"
            && self
                .query
                .split('&')
                .any(|kv| kv == format!("fieldManager={manager}"))
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    applied: BTreeMap<String, Value>,
    pods: Vec<Pod>,
    requests: Vec<Recorded>,
    failures: Vec<(String, String, u16)>,
    version: u64,
    clock: u64,
}

/// The failure "code" that makes a request hang.
const HANG: u16 = 0;

/// The fake API server; clone freely.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    /// A client talking to a new fake server.
    pub fn start() -> (Client, FakeApi) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let api = FakeApi::default();
        let server = api.clone();
        tokio::spawn(async move {
            let mut handle = Box::pin(handle);
            while let Some((request, respond)) = handle.next_request().await {
                // One task per request, so a hanging one (see `hang`) blocks no other.
                let server = server.clone();
                tokio::spawn(async move {
                    let response = server.handle(request).await;
                    respond.send_response(response);
                });
            }
        });
        (Client::new(service, "default"), api)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store `resource` as if the user had applied it; returns it as the API returns it.
    pub fn put_cluster(&self, resource: &BifrostCluster) -> BifrostCluster {
        let path = format!(
            "/apis/bifrost.dev/v1alpha1/namespaces/{}/bifrostclusters/{}",
            resource.metadata.namespace.as_deref().unwrap_or_default(),
            resource.metadata.name.as_deref().unwrap_or_default()
        );
        let value = serde_json::to_value(resource).expect("resource serializes");
        self.state().objects.insert(path, value);
        resource.clone()
    }

    /// The resource with the status the operator last wrote.
    pub fn cluster(&self, namespace: &str, name: &str) -> BifrostCluster {
        let path =
            format!("/apis/bifrost.dev/v1alpha1/namespaces/{namespace}/bifrostclusters/{name}");
        let value = self
            .state()
            .objects
            .get(&path)
            .cloned()
            .expect("resource stored");
        serde_json::from_value(value).expect("resource deserializes")
    }

    /// Store any object at `path`.
    pub fn put(&self, path: &str, object: Value) {
        self.state().objects.insert(path.to_string(), object);
    }

    /// An object at `path`, if stored.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.state().objects.get(path).cloned()
    }

    /// Paths of every stored object, sorted.
    pub fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.state().objects.keys().cloned().collect();
        paths.sort();
        paths
    }

    /// The pods a pod list returns.
    pub fn set_pods(&self, pods: Vec<Pod>) {
        self.state().pods = pods;
    }

    /// Answer `method` requests whose path contains `path_part` with `code`.
    pub fn fail(&self, method: &str, path_part: &str, code: u16) {
        self.state()
            .failures
            .push((method.to_string(), path_part.to_string(), code));
    }

    /// Never answer `method` requests whose path contains `path_part` (an API server that is
    /// unreachable: the connection stays open, nothing comes back).
    pub fn hang(&self, method: &str, path_part: &str) {
        self.fail(method, path_part, HANG);
    }

    /// Stop failing.
    pub fn clear_failures(&self) {
        self.state().failures.clear();
    }

    /// Every request so far, and forget them.
    pub fn take_requests(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.state().requests)
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let method = parts.method.to_string();
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().unwrap_or_default().to_string();
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let metadata_only = parts
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("PartialObjectMetadata"));
        let failure = {
            let mut state = self.state();
            state.requests.push(Recorded {
                method: method.clone(),
                path: path.clone(),
                query: query.clone(),
                content_type,
                body: body.clone(),
            });
            state
                .failures
                .iter()
                .find(|(m, p, _)| *m == method && path.contains(p.as_str()))
                .map(|(_, _, code)| *code)
        };
        if let Some(code) = failure {
            if code == HANG {
                std::future::pending::<()>().await;
            }
            return status(code, "injected failure");
        }
        let mut state = self.state();
        match method.as_str() {
            "GET" if path.ends_with("/pods") => {
                let items = serde_json::to_value(&state.pods).unwrap_or_default();
                ok(
                    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            "GET" => match state.objects.get(&path) {
                Some(list) if list.get("items").is_some() => ok(list.clone()),
                Some(object) if metadata_only => ok(json!({
                    "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                    "metadata": object["metadata"].clone()})),
                Some(object) => ok(object.clone()),
                None => status(404, "not found"),
            },
            "PATCH" if path.ends_with("/status") => {
                let object_path = path.trim_end_matches("/status").to_string();
                let Some(object) = state.objects.get_mut(&object_path) else {
                    return status(404, "not found");
                };
                object["status"] = body["status"].clone();
                let object = object.clone();
                ok(object)
            }
            "PATCH" => {
                let manager = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("fieldManager="))
                    .unwrap_or_default()
                    .to_string();
                state.clock += 1;
                let now = format!(
                    "2026-11-21T12:{:02}:{:02}Z",
                    state.clock / 60 % 60,
                    state.clock % 60
                );
                let previous = state.objects.get(&path).cloned();
                let applied_before = state.applied.get(&path).cloned();
                let mut object = previous.clone().unwrap_or(json!({}));
                merge(&mut object, &body);
                let changed = applied_before.as_ref() != Some(&body) || previous.is_none();
                if changed {
                    state.version += 1;
                    object["metadata"]["resourceVersion"] = json!(state.version.to_string());
                    object["metadata"]["managedFields"] =
                        json!([{"manager": manager, "operation": "Apply", "time": now}]);
                }
                if previous.is_none() {
                    object["metadata"]["creationTimestamp"] = json!(now);
                    object["metadata"]["uid"] = json!(format!("uid-{}", state.version));
                }
                state.applied.insert(path.clone(), body);
                state.objects.insert(path, object.clone());
                ok(object)
            }
            "POST" => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or("unnamed")
                    .to_string();
                let object_path = format!("{path}/{name}");
                if !path.contains("/events") && state.objects.contains_key(&object_path) {
                    return status(409, "already exists");
                }
                state.version += 1;
                let mut object = body;
                object["metadata"]["resourceVersion"] = json!(state.version.to_string());
                state.objects.insert(object_path, object.clone());
                created(object)
            }
            "DELETE" => match state.objects.remove(&path) {
                Some(_) => ok(json!({"apiVersion": "v1", "kind": "Status", "status": "Success"})),
                None => status(404, "not found"),
            },
            _ => status(405, "method not supported by the fake"),
        }
    }
}

/// JSON merge of `patch` into `target` (objects merge, everything else replaces).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn ok(value: Value) -> Response<Body> {
    respond(StatusCode::OK, &value)
}

fn created(value: Value) -> Response<Body> {
    respond(StatusCode::CREATED, &value)
}

fn status(code: u16, message: &str) -> Response<Body> {
    let reason = match code {
        403 => "Forbidden",
        404 => "NotFound",
        409 => "AlreadyExists",
        422 => "Invalid",
        _ => "InternalError",
    };
    let body = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                      "message": message, "reason": reason, "code": code});
    respond(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &body,
    )
}

fn respond(code: StatusCode, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = code;
    response
}
