//! A stand-in for the few endpoints of a Consul agent's HTTP API that the gateway's `consul`
//! discovery uses, for tests where no Consul binary exists:
//!
//! - `PUT /v1/agent/service/register`: add or replace an instance; its TCP check starts
//!   `critical` (Consul's default) and runs on its `Interval`, the first run staggered randomly
//!   within one interval as Consul does. Re-registering the same ID with the same check keeps the
//!   check's status. An instance critical for longer than `DeregisterCriticalServiceAfter` is
//!   removed.
//! - `PUT /v1/agent/service/deregister/<id>`: remove an instance (404 for an unknown ID).
//! - `GET /v1/health/service/<name>[?passing]`: instances in Consul's `{Node, Service, Checks}`
//!   shape, only those whose checks all pass with `passing`.
//!
//! Bad bodies get Consul-style `400` plain-text errors; JSON keys match case-insensitively, as
//! Go's decoder does. With a required ACL token, other requests get `403 Permission denied`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

/// The node every instance is registered on.
const NODE_NAME: &str = "fake-consul";
/// How often the reaper looks for instances critical for too long.
const REAP_INTERVAL: Duration = Duration::from_millis(200);

/// A TCP check as registered.
#[derive(Debug, Clone, PartialEq)]
struct TcpCheck {
    target: String,
    interval: Duration,
    timeout: Duration,
    deregister_after: Option<Duration>,
}

/// One registered instance.
#[derive(Debug, Clone)]
struct Instance {
    id: String,
    name: String,
    address: String,
    port: u16,
    tags: Vec<String>,
    meta: Map<String, Value>,
    check: Option<TcpCheck>,
    status: &'static str,
    output: String,
    critical_since: Option<Instant>,
    /// Bumped on every (re-)registration that changes the check, so stale check loops stop.
    serial: u64,
}

#[derive(Default)]
struct Catalog {
    instances: BTreeMap<String, Instance>,
    next_serial: u64,
    /// Every request as `METHOD path?query` (for assertions).
    requests: Vec<String>,
}

struct Shared {
    catalog: Mutex<Catalog>,
    token: Option<String>,
    checks: Mutex<Vec<JoinHandle<()>>>,
}

/// A running fake agent; stops (server and check loops) when dropped.
pub struct FakeConsul {
    /// `127.0.0.1:<port>`, what `consul_address` takes.
    pub address: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    reaper: JoinHandle<()>,
}

impl Drop for FakeConsul {
    fn drop(&mut self) {
        self.server.abort();
        self.reaper.abort();
        for check in self.shared.checks.lock().expect("checks lock").drain(..) {
            check.abort();
        }
    }
}

impl FakeConsul {
    /// Start one on a free loopback port, without ACLs.
    pub async fn start() -> Self {
        Self::start_with_token(None).await
    }

    /// Start one that only answers requests carrying `X-Consul-Token: <token>`.
    pub async fn start_with_token(token: Option<&str>) -> Self {
        let shared = Arc::new(Shared {
            catalog: Mutex::new(Catalog::default()),
            token: token.map(str::to_string),
            checks: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/v1/agent/service/register", put(register))
            .route("/v1/agent/service/deregister/{id}", put(deregister))
            .route("/v1/health/service/{name}", get(health))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Consul agent");
        let address = listener.local_addr().expect("bound address").to_string();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let reaper = tokio::spawn(reap(shared.clone()));
        Self {
            address,
            shared,
            server,
            reaper,
        }
    }

    /// `GET /v1/health/service/<name>` as the gateway sees it (`passing` only or all).
    pub async fn health(&self, name: &str, passing: bool) -> Vec<Value> {
        let query = if passing { "?passing=true" } else { "" };
        let mut request = reqwest::Client::new().get(format!(
            "http://{}/v1/health/service/{name}{query}",
            self.address
        ));
        if let Some(token) = &self.shared.token {
            request = request.header("X-Consul-Token", token);
        }
        request
            .send()
            .await
            .expect("fake Consul answers")
            .json()
            .await
            .expect("health JSON")
    }

    /// IDs of the passing instances of `name`, sorted.
    pub async fn passing_ids(&self, name: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .health(name, true)
            .await
            .iter()
            .filter_map(|e| e["Service"]["ID"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    /// IDs of every registered instance of `name`, passing or not, sorted.
    pub fn registered_ids(&self, name: &str) -> Vec<String> {
        let catalog = self.shared.catalog.lock().expect("catalog lock");
        catalog
            .instances
            .values()
            .filter(|i| i.name == name)
            .map(|i| i.id.clone())
            .collect()
    }

    /// Every request so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .catalog
            .lock()
            .expect("catalog lock")
            .requests
            .clone()
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// A `403` unless the request carries the required token (or none is required).
fn denied(shared: &Shared, headers: &HeaderMap, permission: &str) -> Option<Response> {
    let required = shared.token.as_ref()?;
    let given = headers.get("X-Consul-Token").and_then(|v| v.to_str().ok());
    (given != Some(required.as_str())).then(|| {
        text(
            StatusCode::FORBIDDEN,
            format!("Permission denied: token lacks permission '{permission}'"),
        )
    })
}

fn record(shared: &Shared, method: &str, path: &str, query: Option<&str>) {
    let line = match query {
        Some(q) => format!("{method} {path}?{q}"),
        None => format!("{method} {path}"),
    };
    shared
        .catalog
        .lock()
        .expect("catalog lock")
        .requests
        .push(line);
}

/// A field of a JSON object, matching the key case-insensitively (Go's JSON decoder does).
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .get(name)
        .or_else(|| {
            object
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

/// A Go duration such as `5s`, `1m`, `500ms` or `1m30s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(format!("time: invalid duration {text:?}"));
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| format!("time: missing unit in duration {text:?}"))?;
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("time: invalid duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            unit => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        total += Duration::from_secs_f64(number * seconds);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn duration_field(check: &Map<String, Value>, name: &str) -> Result<Option<Duration>, String> {
    match field(check, name) {
        None => Ok(None),
        Some(Value::String(s)) => parse_duration(s).map(Some),
        // Go's time.Duration also decodes from a number of nanoseconds.
        Some(Value::Number(n)) => Ok(n.as_u64().map(Duration::from_nanos)),
        Some(other) => Err(format!("invalid duration for {name}: {other}")),
    }
}

fn parse_check(check: &Value) -> Result<Option<TcpCheck>, String> {
    let Some(check) = check.as_object() else {
        return Err("Check must be an object".into());
    };
    let Some(target) = field(check, "TCP") else {
        // This fake only runs TCP checks.
        return Err("Invalid check: only TCP checks are supported by this fake".into());
    };
    let target = target
        .as_str()
        .ok_or("Invalid check: TCP must be a string")?
        .to_string();
    let interval = duration_field(check, "Interval")?
        .filter(|d| !d.is_zero())
        .ok_or("Invalid check: TCP checks require an Interval")?;
    let timeout = duration_field(check, "Timeout")?.unwrap_or(Duration::from_secs(10));
    let deregister_after = duration_field(check, "DeregisterCriticalServiceAfter")?;
    Ok(Some(TcpCheck {
        target,
        interval,
        timeout,
        deregister_after,
    }))
}

async fn register(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    record(&shared, "PUT", "/v1/agent/service/register", None);
    if let Some(denied) = denied(&shared, &headers, "service:write") {
        return denied;
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Request decode failed: {e}"),
            )
        }
    };
    let Some(body) = body.as_object() else {
        return text(
            StatusCode::BAD_REQUEST,
            "Request decode failed: json: cannot unmarshal into Go value of type structs.ServiceDefinition",
        );
    };
    let Some(name) = field(body, "Name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return text(StatusCode::BAD_REQUEST, "Missing service name");
    };
    let id = field(body, "ID")
        .and_then(Value::as_str)
        .filter(|i| !i.is_empty())
        .unwrap_or(name)
        .to_string();
    let port = match field(body, "Port") {
        None => 0,
        Some(p) => match p.as_u64().and_then(|p| u16::try_from(p).ok()) {
            Some(p) => p,
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("Request decode failed: invalid Port {p}"),
                )
            }
        },
    };
    let check = match field(body, "Check").map(parse_check).transpose() {
        Ok(check) => check.flatten(),
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let mut instance = Instance {
        id: id.clone(),
        name: name.to_string(),
        address: field(body, "Address")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        port,
        tags: field(body, "Tags")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        meta: field(body, "Meta")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        check,
        status: "critical",
        output: String::new(),
        critical_since: Some(Instant::now()),
        serial: 0,
    };
    let start_check = {
        let mut catalog = shared.catalog.lock().expect("catalog lock");
        match catalog.instances.get(&id) {
            // Same check: keep its state and its running loop.
            Some(existing) if existing.check == instance.check => {
                instance.status = existing.status;
                instance.output = existing.output.clone();
                instance.critical_since = existing.critical_since;
                instance.serial = existing.serial;
                catalog.instances.insert(id.clone(), instance.clone());
                None
            }
            _ => {
                catalog.next_serial += 1;
                instance.serial = catalog.next_serial;
                catalog.instances.insert(id.clone(), instance.clone());
                instance.check.clone().map(|c| (c, instance.serial))
            }
        }
    };
    if let Some((check, serial)) = start_check {
        let task = tokio::spawn(run_check(shared.clone(), id, serial, check));
        shared.checks.lock().expect("checks lock").push(task);
    }
    StatusCode::OK.into_response()
}

async fn deregister(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &shared,
        "PUT",
        &format!("/v1/agent/service/deregister/{id}"),
        None,
    );
    if let Some(denied) = denied(&shared, &headers, "service:write") {
        return denied;
    }
    let removed = shared
        .catalog
        .lock()
        .expect("catalog lock")
        .instances
        .remove(&id);
    match removed {
        Some(_) => StatusCode::OK.into_response(),
        None => text(
            StatusCode::NOT_FOUND,
            format!("Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."),
        ),
    }
}

/// Whether `?passing` asks for passing instances only (present without a value, or true).
fn wants_passing(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|pair| match pair.split_once('=') {
            None => pair == "passing",
            Some((key, value)) => key == "passing" && !matches!(value, "false" | "0"),
        })
    })
}

async fn health(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    record(
        &shared,
        "GET",
        &format!("/v1/health/service/{name}"),
        query.as_deref(),
    );
    if let Some(denied) = denied(&shared, &headers, "service:read") {
        return denied;
    }
    let passing_only = wants_passing(query.as_deref());
    let catalog = shared.catalog.lock().expect("catalog lock");
    let entries: Vec<Value> = catalog
        .instances
        .values()
        .filter(|i| i.name == name)
        .filter(|i| !passing_only || i.check.is_none() || i.status == "passing")
        .map(health_entry)
        .collect();
    Json(entries).into_response()
}

/// One instance in the shape of `GET /v1/health/service/<name>`.
fn health_entry(instance: &Instance) -> Value {
    let mut checks = vec![json!({
        "Node": NODE_NAME, "CheckID": "serfHealth", "Name": "Serf Health Status",
        "Status": "passing", "Notes": "", "Output": "Agent alive and reachable",
        "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "",
    })];
    if instance.check.is_some() {
        checks.push(json!({
            "Node": NODE_NAME,
            "CheckID": format!("service:{}", instance.id),
            "Name": format!("Service '{}' check", instance.name),
            "Status": instance.status,
            "Notes": "",
            "Output": instance.output,
            "ServiceID": instance.id,
            "ServiceName": instance.name,
            "ServiceTags": instance.tags,
            "Type": "tcp",
        }));
    }
    json!({
        "Node": {"ID": "00000000-0000-0000-0000-000000000001", "Node": NODE_NAME,
                 "Address": "127.0.0.1", "Datacenter": "dc1",
                 "TaggedAddresses": {"lan": "127.0.0.1", "wan": "127.0.0.1"}, "Meta": {}},
        "Service": {"ID": instance.id, "Service": instance.name, "Tags": instance.tags,
                    "Address": instance.address, "Meta": instance.meta, "Port": instance.port,
                    "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false},
        "Checks": checks,
    })
}

/// Run `check` for instance `id` until the instance is gone or registered with another check.
async fn run_check(shared: Arc<Shared>, id: String, serial: u64, check: TcpCheck) {
    // Consul staggers a new check's first run randomly within one interval.
    let stagger = check.interval.mul_f64(fastrand::f64());
    tokio::time::sleep(stagger).await;
    loop {
        let connected = tokio::time::timeout(
            check.timeout,
            tokio::net::TcpStream::connect(check.target.as_str()),
        )
        .await;
        let (status, output) = match connected {
            Ok(Ok(_)) => ("passing", format!("TCP connect {}: Success", check.target)),
            Ok(Err(e)) => ("critical", format!("dial tcp {}: {e}", check.target)),
            Err(_) => (
                "critical",
                format!("dial tcp {}: i/o timeout", check.target),
            ),
        };
        {
            let mut catalog = shared.catalog.lock().expect("catalog lock");
            let Some(instance) = catalog
                .instances
                .get_mut(&id)
                .filter(|i| i.serial == serial)
            else {
                return;
            };
            if status == "critical" {
                instance.critical_since.get_or_insert_with(Instant::now);
            } else {
                instance.critical_since = None;
            }
            instance.status = status;
            instance.output = output;
        }
        tokio::time::sleep(check.interval).await;
    }
}

/// Remove instances whose check has been critical longer than their
/// `DeregisterCriticalServiceAfter`.
async fn reap(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(REAP_INTERVAL).await;
        let mut catalog = shared.catalog.lock().expect("catalog lock");
        catalog.instances.retain(|_, instance| {
            let limit = instance.check.as_ref().and_then(|c| c.deregister_after);
            match (limit, instance.critical_since) {
                (Some(limit), Some(since)) => since.elapsed() < limit,
                _ => true,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn passing_is_a_flag_or_a_true_value() {
        assert!(wants_passing(Some("passing")));
        assert!(wants_passing(Some("passing=true")));
        assert!(wants_passing(Some("dc=dc1&passing=1")));
        assert!(!wants_passing(Some("passing=false")));
        assert!(!wants_passing(None));
    }

    #[tokio::test]
    async fn bad_bodies_get_consul_style_errors() {
        let consul = FakeConsul::start().await;
        let url = format!("http://{}/v1/agent/service/register", consul.address);
        let client = reqwest::Client::new();
        let cases = [
            ("{not json", "Request decode failed"),
            (r#"{"ID": "x"}"#, "Missing service name"),
            (
                r#"{"Name": "b", "Check": {"TCP": "127.0.0.1:1"}}"#,
                "require an Interval",
            ),
            (
                r#"{"Name": "b", "Check": {"TCP": "127.0.0.1:1", "Interval": "5 parsecs"}}"#,
                "time:",
            ),
        ];
        for (body, expected) in cases {
            let response = client.put(&url).body(body).send().await.expect("answer");
            assert_eq!(response.status(), 400, "{body}");
            let text = response.text().await.expect("text");
            assert!(text.contains(expected), "{body}: {text}");
        }
        let unknown = client
            .put(format!(
                "http://{}/v1/agent/service/deregister/nope",
                consul.address
            ))
            .send()
            .await
            .expect("answer");
        assert_eq!(unknown.status(), 404);
    }

    #[tokio::test]
    async fn only_instances_whose_tcp_check_passes_are_listed_as_passing() {
        let consul = FakeConsul::start_with_token(Some("t0ken")).await;
        let open = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open_port = open.local_addr().expect("addr").port();
        let closed_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let client = reqwest::Client::new();
        for (id, port) in [("up", open_port), ("down", closed_port)] {
            let response = client
                .put(format!(
                    "http://{}/v1/agent/service/register",
                    consul.address
                ))
                .header("X-Consul-Token", "t0ken")
                .json(
                    &json!({"id": id, "name": "svc", "address": "127.0.0.1", "port": port,
                              "check": {"tcp": format!("127.0.0.1:{port}"), "interval": "100ms"}}),
                )
                .send()
                .await
                .expect("answer");
            assert_eq!(response.status(), 200);
        }
        let denied = client
            .get(format!("http://{}/v1/health/service/svc", consul.address))
            .send()
            .await
            .expect("answer");
        assert_eq!(denied.status(), 403);

        // Both checks have run once: "up" passes, "down" has a verdict (a new check is
        // critical with no output until its first run).
        let checked = |all: &[Value]| {
            all.iter().all(|e| {
                e["Checks"][1]["Output"]
                    .as_str()
                    .is_some_and(|o| !o.is_empty())
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while consul.passing_ids("svc").await != ["up"]
            || !checked(&consul.health("svc", false).await)
        {
            assert!(
                Instant::now() < deadline,
                "{:#?}",
                consul.health("svc", false).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let all = consul.health("svc", false).await;
        assert_eq!(all.len(), 2);
        let down = all
            .iter()
            .find(|e| e["Service"]["ID"] == "down")
            .expect("down listed without passing");
        assert_eq!(down["Checks"][1]["Status"], "critical");
        assert!(
            down["Checks"][1]["Output"]
                .as_str()
                .is_some_and(|o| o.contains(&format!("127.0.0.1:{closed_port}"))),
            "{down:#}"
        );
        drop(open);
    }
}
