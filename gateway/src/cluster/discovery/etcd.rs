//! `etcd` discovery through etcd's v3 JSON gateway (plain HTTP, no gRPC client).
//!
//! Each node registers `/services/<service_name>/<node_id>` under a [`LEASE_TTL`] lease that it
//! keeps alive every [`KEEPALIVE_INTERVAL`] and revokes on shutdown, so a stopped node's key
//! disappears at once and a crashed node's key within the TTL. Seeds are the other keys under
//! the prefix. The gateway encodes keys and values in base64 and 64-bit integers as JSON
//! strings; the pure functions below build and read those bodies.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

/// Lifetime of a node's registration without keep-alives.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// Keep-alives go out at a third of the TTL, so two can fail before the key expires.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Wait before registering again after a failure.
const RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// One HTTP call to one endpoint.
/// Revoking on shutdown must fit in the cluster's 2 s task stop deadline.
const REVOKE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The value stored under a node's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Gossip address, `ip:port`.
    pub gossip_addr: String,
    /// HTTP address, `ip:port`.
    pub http_addr: String,
}

/// `/services/<service_name>/`.
pub fn service_prefix(service_name: &str) -> String {
    format!("/services/{service_name}/")
}

/// `/services/<service_name>/<node_id>`.
pub fn node_key(service_name: &str, node_id: &str) -> String {
    format!("{}{node_id}", service_prefix(service_name))
}

/// The smallest key after every key starting with `prefix` (etcd's `range_end` for a prefix).
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): "every key from here on" is `\0`.
    vec![0]
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    BASE64.encode(bytes)
}

/// `POST /v3/lease/grant`.
pub fn grant_request(ttl: Duration) -> Value {
    json!({"TTL": ttl.as_secs().to_string()})
}

/// `POST /v3/kv/put`: `key` = `value` attached to `lease`.
pub fn put_request(key: &str, value: &str, lease: i64) -> Value {
    json!({"key": b64(key), "value": b64(value), "lease": lease.to_string()})
}

/// `POST /v3/kv/range`: every key under `prefix`.
pub fn range_request(prefix: &str) -> Value {
    json!({"key": b64(prefix), "range_end": b64(prefix_range_end(prefix.as_bytes()))})
}

/// `POST /v3/lease/keepalive` and `POST /v3/lease/revoke`.
pub fn lease_request(lease: i64) -> Value {
    json!({"ID": lease.to_string()})
}

/// A 64-bit integer field: the gateway writes them as strings, but accept numbers too.
fn int64(value: &Value) -> Option<i64> {
    match value {
        Value::String(text) => text.parse().ok(),
        Value::Number(number) => number.as_i64(),
        _ => None,
    }
}

/// An `{"error": ...}` body (the gateway's shape for a failed call) as a message.
fn gateway_error(body: &Value) -> Option<String> {
    let error = body.get("error")?;
    Some(
        body.get("message")
            .or_else(|| error.get("message"))
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), str::to_string),
    )
}

/// The lease id from a grant response.
pub fn parse_grant(body: &Value) -> Result<i64, String> {
    if let Some(error) = gateway_error(body) {
        return Err(format!("lease grant refused: {error}"));
    }
    body.get("ID")
        .and_then(int64)
        .filter(|id| *id != 0)
        .ok_or_else(|| format!("lease grant answer without an ID: {body}"))
}

/// The remaining TTL in seconds from a keep-alive response (a stream of JSON objects, one per
/// line; only the first matters). `0` means the lease no longer exists.
pub fn parse_keepalive(text: &str) -> Result<i64, String> {
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or("empty keep-alive answer")?;
    let body: Value = serde_json::from_str(first)
        .map_err(|e| format!("keep-alive answer is not JSON ({e}): {first}"))?;
    if let Some(error) = gateway_error(&body) {
        if error.contains("lease not found") {
            return Ok(0);
        }
        return Err(format!("keep-alive refused: {error}"));
    }
    let result = body
        .get("result")
        .ok_or_else(|| format!("keep-alive answer without a result: {body}"))?;
    // A zero TTL is left out of the JSON.
    Ok(result.get("TTL").and_then(int64).unwrap_or(0))
}

/// `(key, value)` pairs from a range response.
pub fn parse_range(body: &Value) -> Result<Vec<(String, Vec<u8>)>, String> {
    if let Some(error) = gateway_error(body) {
        return Err(format!("range refused: {error}"));
    }
    let Some(kvs) = body.get("kvs") else {
        // No keys: the field is left out.
        return Ok(Vec::new());
    };
    let kvs = kvs
        .as_array()
        .ok_or_else(|| format!("range answer with kvs not a list: {body}"))?;
    kvs.iter()
        .map(|kv| {
            let field = |name: &str| -> Result<Vec<u8>, String> {
                match kv.get(name).and_then(Value::as_str) {
                    None => Ok(Vec::new()),
                    Some(text) => BASE64
                        .decode(text)
                        .map_err(|e| format!("range answer with bad base64 in {name}: {e}")),
                }
            };
            let key = String::from_utf8_lossy(&field("key")?).into_owned();
            Ok((key, field("value")?))
        })
        .collect()
}

/// Gossip addresses of every registered node except `own_key`; entries that do not parse are
/// skipped (logged at debug).
pub fn seeds_from_range(
    entries: &[(String, Vec<u8>)],
    own_key: Option<&str>,
) -> BTreeSet<SocketAddr> {
    entries
        .iter()
        .filter(|(key, _)| Some(key.as_str()) != own_key)
        .filter_map(|(key, value)| {
            let parsed = serde_json::from_slice::<NodeRecord>(value)
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    r.gossip_addr
                        .parse::<SocketAddr>()
                        .map_err(|e| e.to_string())
                });
            match parsed {
                Ok(addr) => Some(addr),
                Err(error) => {
                    tracing::debug!(%key, %error, "skipping an etcd entry that is not a node");
                    None
                }
            }
        })
        .collect()
}

/// HTTP calls to the etcd gateway, trying each endpoint in order.
#[derive(Debug, Clone)]
pub struct EtcdClient {
    endpoints: Vec<String>,
    http: reqwest::Client,
}

impl PartialEq for EtcdClient {
    fn eq(&self, other: &Self) -> bool {
        self.endpoints == other.endpoints
    }
}

impl EtcdClient {
    /// A client for `endpoints` (`http://host:port`).
    pub fn new(endpoints: &[String]) -> Self {
        let http = super::registry_client();
        Self {
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            http,
        }
    }

    /// `POST <endpoint><path>` with `body`; the answer's text from the first endpoint that
    /// answers 2xx, else every endpoint's failure.
    async fn call(&self, path: &str, body: &Value) -> Result<String, String> {
        if self.endpoints.is_empty() {
            return Err("no etcd_endpoints configured".to_string());
        }
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            let url = format!("{endpoint}{path}");
            let result = async {
                let response = self
                    .http
                    .post(&url)
                    .json(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status();
                let text = response.text().await.map_err(|e| e.to_string())?;
                if status.is_success() {
                    Ok(text)
                } else {
                    Err(format!("HTTP {status}: {}", text.trim()))
                }
            }
            .await;
            match result {
                Ok(text) => return Ok(text),
                Err(error) => failures.push(format!("{url}: {error}")),
            }
        }
        Err(failures.join("; "))
    }

    async fn call_json(&self, path: &str, body: &Value) -> Result<Value, String> {
        let text = self.call(path, body).await?;
        serde_json::from_str(&text).map_err(|e| format!("{path} answer is not JSON ({e}): {text}"))
    }

    /// Grant a lease of `ttl`; its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, String> {
        parse_grant(
            &self
                .call_json("/v3/lease/grant", &grant_request(ttl))
                .await?,
        )
    }

    /// Put `key` = `value` under `lease`.
    pub async fn put(&self, key: &str, value: &str, lease: i64) -> Result<(), String> {
        let body = self
            .call_json("/v3/kv/put", &put_request(key, value, lease))
            .await?;
        match gateway_error(&body) {
            Some(error) => Err(format!("put refused: {error}")),
            None => Ok(()),
        }
    }

    /// Every key and value under `prefix`.
    pub async fn range_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        parse_range(
            &self
                .call_json("/v3/kv/range", &range_request(prefix))
                .await?,
        )
    }

    /// Refresh `lease`; its remaining TTL in seconds (`0`: it has expired).
    pub async fn keepalive(&self, lease: i64) -> Result<i64, String> {
        parse_keepalive(
            &self
                .call("/v3/lease/keepalive", &lease_request(lease))
                .await?,
        )
    }

    /// Revoke `lease`, deleting the keys attached to it.
    pub async fn revoke(&self, lease: i64) -> Result<(), String> {
        let body = self
            .call_json("/v3/lease/revoke", &lease_request(lease))
            .await?;
        match gateway_error(&body) {
            Some(error) => Err(format!("revoke refused: {error}")),
            None => Ok(()),
        }
    }
}

/// Seeds from the other nodes registered under one service prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdDiscovery {
    client: EtcdClient,
    prefix: String,
}

impl EtcdDiscovery {
    /// Discovery for `service_name` through `endpoints`.
    pub fn new(endpoints: &[String], service_name: &str) -> Self {
        Self {
            client: EtcdClient::new(endpoints),
            prefix: service_prefix(service_name),
        }
    }

    /// The registration of node `node_id` with `record` under this prefix.
    pub fn registration(&self, node_id: &str, record: &NodeRecord) -> EtcdRegistration {
        EtcdRegistration {
            client: self.client.clone(),
            key: format!("{}{node_id}", self.prefix),
            value: serde_json::to_string(record).unwrap_or_default(),
        }
    }

    /// Gossip addresses of every registered node (the caller drops its own address).
    pub async fn discover(&self) -> Result<BTreeSet<SocketAddr>, String> {
        let entries = self.client.range_prefix(&self.prefix).await?;
        Ok(seeds_from_range(&entries, None))
    }
}

/// This node's key in etcd, kept alive while the node runs.
#[derive(Debug)]
pub struct EtcdRegistration {
    client: EtcdClient,
    key: String,
    value: String,
}

impl EtcdRegistration {
    /// Register, keep the lease alive until `stop`, then revoke it. Registers again when the
    /// lease is lost (etcd restarted, keep-alives failed for longer than the TTL).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut lease: Option<i64> = None;
        loop {
            let wait = match lease {
                None => match self.register().await {
                    Ok(id) => {
                        tracing::info!(method = "etcd", key = %self.key, lease = id, "registered in etcd");
                        lease = Some(id);
                        KEEPALIVE_INTERVAL
                    }
                    Err(error) => {
                        tracing::warn!(method = "etcd", key = %self.key, %error, "discovery failed: cannot register: {error}");
                        RETRY_INTERVAL
                    }
                },
                Some(id) => match self.client.keepalive(id).await {
                    Ok(ttl) if ttl > 0 => KEEPALIVE_INTERVAL,
                    Ok(_) => {
                        tracing::warn!(method = "etcd", key = %self.key, lease = id, "discovery failed: etcd lease expired; registering again");
                        lease = None;
                        Duration::ZERO
                    }
                    Err(error) => {
                        tracing::warn!(method = "etcd", key = %self.key, lease = id, %error, "discovery failed: keep-alive: {error}");
                        RETRY_INTERVAL
                    }
                },
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
        let Some(id) = lease else { return };
        match tokio::time::timeout(REVOKE_TIMEOUT, self.client.revoke(id)).await {
            Ok(Ok(())) => {
                tracing::info!(method = "etcd", key = %self.key, lease = id, "revoked etcd lease; deregistered")
            }
            Ok(Err(error)) => {
                tracing::warn!(method = "etcd", key = %self.key, %error, "cannot revoke etcd lease; the key expires with it")
            }
            Err(_) => {
                tracing::warn!(method = "etcd", key = %self.key, "revoking the etcd lease timed out; the key expires with it")
            }
        }
    }

    async fn register(&self) -> Result<i64, String> {
        let lease = self.client.grant(LEASE_TTL).await?;
        self.client.put(&self.key, &self.value, lease).await?;
        Ok(lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_service_prefix() {
        assert_eq!(service_prefix("bifrost"), "/services/bifrost/");
        assert_eq!(node_key("bifrost", "gw-0"), "/services/bifrost/gw-0");
    }

    #[test]
    fn range_end_of_a_prefix_bumps_its_last_byte() {
        assert_eq!(
            prefix_range_end(b"/services/bifrost/"),
            b"/services/bifrost0"
        );
        assert_eq!(prefix_range_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff"), b"\0");
    }

    #[test]
    fn requests_carry_base64_keys_and_string_integers() {
        assert_eq!(grant_request(LEASE_TTL), json!({"TTL": "30"}));
        assert_eq!(
            put_request("/services/b/n", r#"{"x":1}"#, 7587862),
            json!({"key": "L3NlcnZpY2VzL2Ivbg==", "value": "eyJ4IjoxfQ==", "lease": "7587862"})
        );
        assert_eq!(
            range_request("/services/b/"),
            json!({"key": "L3NlcnZpY2VzL2Iv", "range_end": "L3NlcnZpY2VzL2Iw"})
        );
        assert_eq!(lease_request(-5), json!({"ID": "-5"}));
    }

    #[test]
    fn a_grant_answer_gives_the_lease_id() {
        let answer = json!({"header": {"revision": "3"}, "ID": "7587862072907412493", "TTL": "30"});
        assert_eq!(parse_grant(&answer), Ok(7587862072907412493));
        assert!(
            parse_grant(&json!({"error": "x", "code": 14, "message": "no leader"}))
                .unwrap_err()
                .contains("no leader")
        );
    }

    #[test]
    fn a_keepalive_answer_gives_the_remaining_ttl() {
        let live = "{\"result\":{\"header\":{},\"ID\":\"12\",\"TTL\":\"30\"}}\n";
        assert_eq!(parse_keepalive(live), Ok(30));
        // An expired lease comes back without a TTL.
        assert_eq!(
            parse_keepalive(r#"{"result":{"header":{},"ID":"12"}}"#),
            Ok(0)
        );
        let gone = r#"{"error":{"grpc_code":5,"http_code":404,"message":"etcdserver: requested lease not found"}}"#;
        assert_eq!(parse_keepalive(gone), Ok(0));
        assert!(parse_keepalive("").is_err());
    }

    #[test]
    fn a_range_answer_gives_other_nodes_gossip_addresses() {
        let record = |gossip: &str| {
            b64(serde_json::to_string(&NodeRecord {
                gossip_addr: gossip.into(),
                http_addr: "127.0.0.1:8080".into(),
            })
            .expect("json"))
        };
        let answer = json!({"header": {}, "count": "3", "kvs": [
            {"key": b64("/services/b/gw-0"), "value": record("10.0.0.1:10101"), "lease": "1"},
            {"key": b64("/services/b/gw-1"), "value": record("10.0.0.2:10101"), "lease": "2"},
            {"key": b64("/services/b/junk"), "value": b64("not json")},
        ]});
        let entries = parse_range(&answer).expect("parsed");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].0, "/services/b/gw-0");
        let seeds = seeds_from_range(&entries, Some("/services/b/gw-0"));
        assert_eq!(
            seeds.into_iter().collect::<Vec<_>>(),
            vec!["10.0.0.2:10101".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(parse_range(&json!({"header": {}})), Ok(Vec::new()));
    }

    #[tokio::test]
    async fn every_endpoint_is_tried_and_every_failure_reported() {
        let client = EtcdClient::new(&["http://127.0.0.1:1".into(), "http://127.0.0.1:2/".into()]);
        let error = client.range_prefix("/services/b/").await.unwrap_err();
        assert!(error.contains("127.0.0.1:1/v3/kv/range"), "{error}");
        assert!(error.contains("127.0.0.1:2/v3/kv/range"), "{error}");
        let none = EtcdClient::new(&[]).grant(LEASE_TTL).await.unwrap_err();
        assert!(none.contains("etcd_endpoints"), "{none}");
    }
}
