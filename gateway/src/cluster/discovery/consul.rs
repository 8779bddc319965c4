//! `consul` discovery through the local Consul agent's HTTP API.
//!
//! Each node registers itself as an instance of `service_name` (ID `<service_name>-<node_id>`,
//! address and port of its gossip endpoint) with a TCP health check on the gossip port, and
//! deregisters on shutdown. Seeds are the instances whose checks all pass. Gossip is UDP, so
//! the registration also keeps a tiny TCP listener on the same port number that accepts and
//! closes connections: that is what Consul's TCP check reaches, so "passing" means "this
//! process is up on this address". The pure functions below build and read the JSON bodies.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::NodeRecord;

/// The agent address when `consul_address` is not set.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8500";
/// Environment variable holding the ACL token (the name Consul's own tools use).
pub const TOKEN_ENV: &str = "CONSUL_HTTP_TOKEN";
/// How often Consul runs the TCP check.
pub const CHECK_INTERVAL: &str = "5s";
/// How long one TCP check may take.
pub const CHECK_TIMEOUT: &str = "2s";
/// A node whose check stays critical this long is removed by Consul (a crashed node that never
/// deregistered).
pub const DEREGISTER_CRITICAL_AFTER: &str = "1m";
/// Registering is idempotent; doing it again now and then survives an agent that lost its state.
const REREGISTER_INTERVAL: Duration = Duration::from_secs(30);
/// Wait before registering again after a failure.
const RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// One HTTP call to the agent.
/// Deregistering on shutdown must fit in the cluster's 2 s task stop deadline.
const DEREGISTER_TIMEOUT: Duration = Duration::from_millis(1500);

/// The instance ID of node `node_id`: `<service_name>-<node_id>`.
pub fn service_id(service_name: &str, node_id: &str) -> String {
    format!("{service_name}-{node_id}")
}

/// `PUT /v1/agent/service/register`: this node as an instance of `service_name` at its gossip
/// address, checked over TCP on that address.
pub fn register_body(
    service_name: &str,
    node_id: &str,
    gossip: SocketAddr,
    http_addr: &str,
) -> Value {
    json!({
        "ID": service_id(service_name, node_id),
        "Name": service_name,
        "Address": gossip.ip().to_string(),
        "Port": gossip.port(),
        "Meta": {"http_addr": http_addr, "node_id": node_id},
        "Check": {
            "Name": format!("{service_name} gossip port"),
            "TCP": gossip.to_string(),
            "Interval": CHECK_INTERVAL,
            "Timeout": CHECK_TIMEOUT,
            "DeregisterCriticalServiceAfter": DEREGISTER_CRITICAL_AFTER,
        },
    })
}

/// `host:port` of every instance in a `GET /v1/health/service/<name>` answer: the service's
/// address, or the node's when the service has none (Consul's convention), IPv6 bracketed.
pub fn parse_health(body: &Value) -> Result<Vec<String>, String> {
    let entries = body
        .as_array()
        .ok_or_else(|| format!("health answer is not a list: {body}"))?;
    let mut found = Vec::new();
    for entry in entries {
        let service = &entry["Service"];
        let address = service["Address"]
            .as_str()
            .filter(|a| !a.is_empty())
            .or_else(|| entry["Node"]["Address"].as_str().filter(|a| !a.is_empty()));
        let port = service["Port"].as_u64().and_then(|p| u16::try_from(p).ok());
        match (address, port) {
            (Some(address), Some(port)) if port != 0 => {
                found.push(match address.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
                    _ => format!("{address}:{port}"),
                });
            }
            _ => tracing::debug!(
                method = "consul",
                service_id = %service["ID"],
                "skipping a Consul instance without an address and port"
            ),
        }
    }
    Ok(found)
}

/// HTTP calls to one Consul agent.
#[derive(Clone)]
pub struct ConsulClient {
    /// `http://host:port`, no trailing slash.
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for ConsulClient {
    // The token stays out of logs and debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl PartialEq for ConsulClient {
    fn eq(&self, other: &Self) -> bool {
        self.base == other.base && self.token == other.token
    }
}

impl ConsulClient {
    /// A client for the agent at `address` (`host:port`; an `http://` or `https://` prefix is
    /// kept) sending `token` as `X-Consul-Token`.
    pub fn new(address: &str, token: Option<String>) -> Self {
        let address = address.trim().trim_end_matches('/');
        let base = if address.contains("://") {
            address.to_string()
        } else {
            format!("http://{address}")
        };
        let http = super::registry_client();
        Self {
            base,
            token: token.filter(|t| !t.is_empty()),
            http,
        }
    }

    /// Send `request` to `path`; the answer's text on 2xx, else what failed and how to fix it.
    async fn send(&self, request: reqwest::RequestBuilder, path: &str) -> Result<String, String> {
        let url = format!("{}{path}", self.base);
        let request = match &self.token {
            Some(token) => request.header("X-Consul-Token", token),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            format!(
                "cannot reach the Consul agent at {url}: {e} (is a local agent running? set cluster_config.discovery.consul_address)"
            )
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("reading Consul's answer from {url}: {e}"))?;
        if status.is_success() {
            return Ok(text);
        }
        let hint = if status == reqwest::StatusCode::FORBIDDEN {
            format!(" (the ACL token lacks permission: set {TOKEN_ENV} to a token with service:write and service:read on the service)")
        } else {
            String::new()
        };
        Err(format!(
            "Consul answered {url} with HTTP {status}: {}{hint}",
            text.trim()
        ))
    }

    /// Register (or update) an instance described by `body`.
    pub async fn register(&self, body: &Value) -> Result<(), String> {
        let path = "/v1/agent/service/register";
        let request = self.http.put(format!("{}{path}", self.base)).json(body);
        self.send(request, path).await.map(|_| ())
    }

    /// Remove instance `id` from the agent.
    pub async fn deregister(&self, id: &str) -> Result<(), String> {
        let path = format!("/v1/agent/service/deregister/{id}");
        let request = self.http.put(format!("{}{path}", self.base));
        self.send(request, &path).await.map(|_| ())
    }

    /// `host:port` of every instance of `service_name` whose checks all pass.
    pub async fn passing_instances(&self, service_name: &str) -> Result<Vec<String>, String> {
        let path = format!("/v1/health/service/{service_name}?passing=true");
        let request = self.http.get(format!("{}{path}", self.base));
        let text = self.send(request, &path).await?;
        let body: Value = serde_json::from_str(&text)
            .map_err(|e| format!("Consul's answer to {path} is not JSON ({e}): {text}"))?;
        parse_health(&body)
    }
}

/// Seeds from the healthy instances of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsulDiscovery {
    client: ConsulClient,
    service_name: String,
}

impl ConsulDiscovery {
    /// Discovery for `service_name` through the agent at `address` (default
    /// [`DEFAULT_ADDRESS`]), with the ACL token from [`TOKEN_ENV`].
    pub fn new(address: Option<&str>, service_name: &str) -> Self {
        Self {
            client: ConsulClient::new(
                address.unwrap_or(DEFAULT_ADDRESS),
                std::env::var(TOKEN_ENV).ok(),
            ),
            service_name: service_name.to_string(),
        }
    }

    /// The registration of node `node_id` with `record`.
    pub fn registration(&self, node_id: &str, record: &NodeRecord) -> ConsulRegistration {
        ConsulRegistration {
            client: self.client.clone(),
            service_id: service_id(&self.service_name, node_id),
            service_name: self.service_name.clone(),
            node_id: node_id.to_string(),
            record: record.clone(),
        }
    }

    /// `host:port` of every passing instance (the caller resolves them and drops its own).
    pub async fn discover(&self) -> Result<Vec<String>, String> {
        self.client.passing_instances(&self.service_name).await
    }
}

/// This node's instance in Consul and the TCP listener its check reaches, kept while the node
/// runs.
#[derive(Debug)]
pub struct ConsulRegistration {
    client: ConsulClient,
    service_id: String,
    service_name: String,
    node_id: String,
    record: NodeRecord,
}

impl ConsulRegistration {
    /// Open the check listener, register, register again every [`REREGISTER_INTERVAL`] until
    /// `stop`, then deregister.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let gossip: SocketAddr = match self.record.gossip_addr.parse() {
            Ok(addr) => addr,
            Err(error) => {
                tracing::error!(method = "consul", gossip_addr = %self.record.gossip_addr, %error, "discovery failed: cannot register in Consul: the gossip address does not parse");
                return;
            }
        };
        let listener = self.open_check_listener(gossip).await;
        let body = register_body(
            &self.service_name,
            &self.node_id,
            gossip,
            &self.record.http_addr,
        );
        let mut registered = false;
        'running: loop {
            // A hung agent must not hold shutdown past the cluster's task deadline.
            let registering = tokio::select! {
                result = self.client.register(&body) => result,
                _ = stop.wait_for(|stop| *stop) => break 'running,
            };
            let wait = match registering {
                Ok(()) => {
                    if !registered {
                        tracing::info!(method = "consul", service_id = %self.service_id, check = %gossip, "registered in consul");
                    }
                    registered = true;
                    REREGISTER_INTERVAL
                }
                Err(error) => {
                    tracing::warn!(method = "consul", service_id = %self.service_id, %error, "discovery failed: cannot register in consul: {error}");
                    RETRY_INTERVAL
                }
            };
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    _ = stop.wait_for(|stop| *stop) => break 'running,
                    accepted = accept(listener.as_ref()) => {
                        // The check only needs the connection to open; close it at once.
                        if let Err(error) = accepted {
                            tracing::debug!(method = "consul", %error, "check listener accept failed");
                        }
                    }
                }
            }
        }
        drop(listener);
        self.deregister(registered).await;
    }

    /// Bind TCP on the port gossip uses (on the gossip listener's IP, which is the HTTP
    /// listener's); `None` (logged) when that fails, so the node still discovers others.
    async fn open_check_listener(&self, gossip: SocketAddr) -> Option<TcpListener> {
        let http_ip = self
            .record
            .http_addr
            .parse::<SocketAddr>()
            .map(|a| a.ip())
            .unwrap_or(gossip.ip());
        let listen = SocketAddr::new(http_ip, gossip.port());
        match TcpListener::bind(listen).await {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(method = "consul", %listen, %error, "discovery failed: cannot open the TCP listener for Consul's health check on tcp {listen}: {error}; this node stays critical in Consul (free that TCP port or choose another cluster_config.gossip.port)");
                None
            }
        }
    }

    async fn deregister(&self, registered: bool) {
        if !registered {
            return;
        }
        match tokio::time::timeout(DEREGISTER_TIMEOUT, self.client.deregister(&self.service_id))
            .await
        {
            Ok(Ok(())) => {
                tracing::info!(method = "consul", service_id = %self.service_id, "deregistered from consul")
            }
            Ok(Err(error)) => {
                tracing::warn!(method = "consul", service_id = %self.service_id, %error, "cannot deregister from consul; the instance goes critical and is removed after {DEREGISTER_CRITICAL_AFTER}")
            }
            Err(_) => {
                tracing::warn!(method = "consul", service_id = %self.service_id, "deregistering from consul timed out; the instance goes critical and is removed after {DEREGISTER_CRITICAL_AFTER}")
            }
        }
    }
}

/// Accept one connection and close it; never resolves without a listener.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<()> {
    match listener {
        Some(listener) => listener.accept().await.map(drop),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_register_body_describes_the_gossip_endpoint_and_its_tcp_check() {
        let body = register_body(
            "bifrost",
            "gw-0",
            "10.0.0.7:10101".parse().expect("addr"),
            "10.0.0.7:8080",
        );
        assert_eq!(
            body,
            json!({
                "ID": "bifrost-gw-0",
                "Name": "bifrost",
                "Address": "10.0.0.7",
                "Port": 10101,
                "Meta": {"http_addr": "10.0.0.7:8080", "node_id": "gw-0"},
                "Check": {
                    "Name": "bifrost gossip port",
                    "TCP": "10.0.0.7:10101",
                    "Interval": "5s",
                    "Timeout": "2s",
                    "DeregisterCriticalServiceAfter": "1m",
                },
            })
        );
        let v6 = register_body("b", "n", "[fd00::7]:10101".parse().expect("addr"), "x");
        assert_eq!(v6["Address"], "fd00::7");
        assert_eq!(v6["Check"]["TCP"], "[fd00::7]:10101");
        assert_eq!(v6["Meta"]["http_addr"], "x");
    }

    #[test]
    fn a_health_answer_gives_service_addresses_falling_back_to_the_node() {
        let answer = json!([
            {"Node": {"Node": "host-a", "Address": "10.0.0.1"},
             "Service": {"ID": "bifrost-gw-0", "Service": "bifrost", "Address": "10.0.1.1", "Port": 10101},
             "Checks": [{"CheckID": "serfHealth", "Status": "passing"}]},
            {"Node": {"Node": "host-b", "Address": "10.0.0.2"},
             "Service": {"ID": "bifrost-gw-1", "Service": "bifrost", "Address": "", "Port": 10101},
             "Checks": []},
            {"Node": {"Node": "host-c", "Address": "fd00::3"},
             "Service": {"ID": "bifrost-gw-2", "Service": "bifrost", "Port": 10103},
             "Checks": []},
            {"Node": {"Node": "host-d", "Address": "10.0.0.4"},
             "Service": {"ID": "no-port", "Service": "bifrost", "Address": "10.0.1.4", "Port": 0}},
        ]);
        assert_eq!(
            parse_health(&answer).expect("parsed"),
            ["10.0.1.1:10101", "10.0.0.2:10101", "[fd00::3]:10103"]
        );
        assert_eq!(parse_health(&json!([])), Ok(Vec::new()));
        assert!(parse_health(&json!({"error": "x"})).is_err());
    }

    #[test]
    fn the_client_takes_host_port_or_a_url_and_hides_its_token() {
        let client = ConsulClient::new("consul.local:8500", Some("secret".into()));
        assert_eq!(client.base, "http://consul.local:8500");
        assert!(!format!("{client:?}").contains("secret"));
        assert_eq!(
            ConsulClient::new("https://consul:8501/", None).base,
            "https://consul:8501"
        );
        assert_eq!(ConsulClient::new("x:1", Some(String::new())).token, None);
    }

    #[tokio::test]
    async fn an_unreachable_agent_says_where_it_looked_and_what_to_set() {
        let error = ConsulClient::new("127.0.0.1:1", None)
            .passing_instances("bifrost")
            .await
            .unwrap_err();
        assert!(
            error.contains("127.0.0.1:1/v1/health/service/bifrost?passing=true"),
            "{error}"
        );
        assert!(error.contains("consul_address"), "{error}");
    }
}
