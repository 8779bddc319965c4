//! Every gossip key this gateway reads or writes, in one place: the `node/*` metadata and load
//! keys, `cfg/version`, and the `rl/`, `spend/` and `recovered/` families with their builders and
//! parsers; plus [`NodeStateExt`], the typed reader of another node's keys.
//!
//! Each node writes only its own keys:
//! - `node/http_addr`, `node/grpc_addr`, `node/region`, `node/version` at start;
//! - `node/in_flight`, `node/rps`, `node/error_rate` once a second, `cfg/version` every publish
//!   round, `node/state = leaving` on a graceful exit;
//! - `rl/<scope>/<id>/<metric>/<window_start>` and `spend/<budget_id>` (its usage, see
//!   [`super::counters`]), `recovered/<node_id>/<generation>` (see [`super::recovery`]).

use std::net::SocketAddr;
use std::sync::Arc;

use chitchat::NodeState;

use crate::governance::counters::{CounterKey, Metric, Scope};

/// Where the node's HTTP listener is reached.
pub const NODE_HTTP_ADDR: &str = "node/http_addr";
/// This node's gRPC address (strict limits and snapshots are asked there).
pub const NODE_GRPC_ADDR: &str = "node/grpc_addr";
/// This node's region.
pub const NODE_REGION: &str = "node/region";
/// The gateway version.
pub const NODE_VERSION: &str = "node/version";
/// [`LEAVING`] once a node starts its graceful exit (peers then stop counting it as a member).
pub const NODE_STATE: &str = "node/state";
/// The value of [`NODE_STATE`] a node sets when it leaves gracefully.
pub const LEAVING: &str = "leaving";
/// Requests in flight on the node.
pub const NODE_IN_FLIGHT: &str = "node/in_flight";
/// Requests per second over the last second.
pub const NODE_RPS: &str = "node/rps";
/// Share of requests answered 5xx over the last second.
pub const NODE_ERROR_RATE: &str = "node/error_rate";
/// The store config version the node runs.
pub const CONFIG_VERSION: &str = "cfg/version";

/// Prefix of rate-limit counter keys.
pub const RATE_LIMIT_PREFIX: &str = "rl/";
/// Prefix of budget spend keys.
pub const SPEND_PREFIX: &str = "spend/";
/// Prefix of "dead node's spend written" markers.
pub const RECOVERED_PREFIX: &str = "recovered/";
/// The prefixes of the keys that carry a node's usage: what it publishes from its local
/// counters (and deletes when they are gone), and what the remote view sums.
pub const USAGE_PREFIXES: [&str; 2] = [RATE_LIMIT_PREFIX, SPEND_PREFIX];

/// Whether `key` carries usage (is under one of [`USAGE_PREFIXES`]).
pub fn is_usage_key(key: &str) -> bool {
    USAGE_PREFIXES.iter().any(|prefix| key.starts_with(prefix))
}

/// The metadata a node publishes once at start: its HTTP and gRPC addresses, its region (empty
/// when it has none) and the gateway version.
pub fn start_metadata(
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    region: Option<&str>,
) -> Vec<(String, String)> {
    vec![
        (NODE_HTTP_ADDR.to_string(), http_addr.to_string()),
        (NODE_GRPC_ADDR.to_string(), grpc_addr.to_string()),
        (
            NODE_REGION.to_string(),
            region.unwrap_or_default().to_string(),
        ),
        (
            NODE_VERSION.to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ]
}

/// `rl/<scope>/<id>/<metric>/<window_start>`. The id may contain `/` (provider scope ids are
/// `vk/provider`); scope, metric and window start never do, so the key parses from both ends.
pub fn counter_key(key: &CounterKey) -> String {
    format!(
        "{RATE_LIMIT_PREFIX}{}/{}/{}/{}",
        key.scope.as_str(),
        key.id,
        key.metric.as_str(),
        key.window_start
    )
}

/// The inverse of [`counter_key`]; `None` for keys this version does not understand.
pub fn parse_counter_key(text: &str) -> Option<CounterKey> {
    let rest = text.strip_prefix(RATE_LIMIT_PREFIX)?;
    let (scope, rest) = rest.split_once('/')?;
    let (rest, window_start) = rest.rsplit_once('/')?;
    let (id, metric) = rest.rsplit_once('/')?;
    let scope = Scope::parse(scope)?;
    let metric = Metric::parse(metric)?;
    if id.is_empty() {
        return None;
    }
    Some(CounterKey {
        scope,
        id: Arc::from(id),
        metric,
        window_start: window_start.parse().ok()?,
    })
}

/// `spend/<budget_id>`.
pub fn spend_key(budget_id: &str) -> String {
    format!("{SPEND_PREFIX}{budget_id}")
}

/// A node's cumulative spend totals from its `spend/*` keys (`"<unflushed> <total>"`): every
/// budget with a finite total above zero.
pub fn spend_totals<'a>(
    key_values: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, f64)> {
    key_values
        .filter_map(|(key, value)| {
            let budget = key.strip_prefix(SPEND_PREFIX)?;
            let total: f64 = value.split_whitespace().nth(1)?.parse().ok()?;
            (total.is_finite() && total > 0.0).then(|| (budget.to_string(), total))
        })
        .collect()
}

/// `recovered/<node_id>/<generation>`.
pub fn recovered_key(node_id: &str, generation: u64) -> String {
    format!("{RECOVERED_PREFIX}{node_id}/{generation}")
}

/// The inverse of [`recovered_key`]: `(node_id, generation)`; `None` for any other key.
pub fn parse_recovered_key(key: &str) -> Option<(String, u64)> {
    let (node, generation) = key.strip_prefix(RECOVERED_PREFIX)?.rsplit_once('/')?;
    Some((node.to_string(), generation.parse().ok()?))
}

/// Typed reads of the metadata and load keys of a node's gossip state. Absent, empty and
/// unparsable values all read as `None`: a peer running another version may publish less.
pub trait NodeStateExt {
    /// `node/http_addr`.
    fn http_addr(&self) -> Option<&str>;
    /// `node/grpc_addr`, when it is `ip:port`.
    fn grpc_addr(&self) -> Option<SocketAddr>;
    /// `node/region`.
    fn region(&self) -> Option<&str>;
    /// `node/version`: the gateway version it runs.
    fn gateway_version(&self) -> Option<&str>;
    /// `cfg/version`: the store config version it runs.
    fn config_version(&self) -> Option<i64>;
    /// Whether it announced a graceful exit (`node/state = leaving`).
    fn is_leaving(&self) -> bool;
    /// `node/in_flight`.
    fn in_flight(&self) -> Option<i64>;
    /// `node/rps`.
    fn rps(&self) -> Option<f64>;
    /// `node/error_rate`.
    fn error_rate(&self) -> Option<f64>;
}

/// `key`'s value unless absent or empty.
fn text<'a>(state: &'a NodeState, key: &str) -> Option<&'a str> {
    state.get(key).filter(|value| !value.is_empty())
}

fn number(state: &NodeState, key: &str) -> Option<f64> {
    text(state, key)?.parse().ok()
}

impl NodeStateExt for NodeState {
    fn http_addr(&self) -> Option<&str> {
        text(self, NODE_HTTP_ADDR)
    }

    fn grpc_addr(&self) -> Option<SocketAddr> {
        text(self, NODE_GRPC_ADDR)?.parse().ok()
    }

    fn region(&self) -> Option<&str> {
        text(self, NODE_REGION)
    }

    fn gateway_version(&self) -> Option<&str> {
        text(self, NODE_VERSION)
    }

    fn config_version(&self) -> Option<i64> {
        text(self, CONFIG_VERSION)?.parse().ok()
    }

    fn is_leaving(&self) -> bool {
        self.get(NODE_STATE) == Some(LEAVING)
    }

    fn in_flight(&self) -> Option<i64> {
        // Published as an integer; read as a number so a fractional value still counts.
        number(self, NODE_IN_FLIGHT).map(|n| n as i64)
    }

    fn rps(&self) -> Option<f64> {
        number(self, NODE_RPS)
    }

    fn error_rate(&self) -> Option<f64> {
        number(self, NODE_ERROR_RATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing::chitchat;

    use crate::cluster::testing::counter as key;

    #[test]
    fn counter_keys_round_trip_even_with_slashes_in_the_id() {
        for key in [
            key("vk", "vk-1", Metric::Requests, 1_700_000_000_000),
            key("provider", "vk-1/openai", Metric::Tokens, 60_000),
            key("team", "platform", Metric::Requests, 60_000),
            key("customer", "acme/eu", Metric::Tokens, 60_000),
        ] {
            let text = counter_key(&key);
            assert_eq!(parse_counter_key(&text), Some(key), "{text}");
        }
        assert_eq!(
            counter_key(&key("provider", "vk-1/openai", Metric::Tokens, 60_000)),
            "rl/provider/vk-1/openai/tokens/60000"
        );
    }

    #[test]
    fn unknown_or_malformed_counter_keys_are_ignored() {
        for text in [
            "rl/org/x/requests/1",
            "rl/vk/x/bytes/1",
            "rl/vk/x/requests/soon",
            "rl/vk//requests/1",
            "rl/vk",
            "spend/b",
        ] {
            assert_eq!(parse_counter_key(text), None, "{text}");
        }
    }

    #[test]
    fn recovered_markers_round_trip_even_with_slashes_in_the_node_id() {
        for (node, generation) in [("gw-0", 1_700_000_000_000_u64), ("zone/a/gw-1", 0)] {
            let text = recovered_key(node, generation);
            assert_eq!(
                parse_recovered_key(&text),
                Some((node.to_string(), generation)),
                "{text}"
            );
        }
        assert_eq!(recovered_key("gw-0", 7), "recovered/gw-0/7");
        for text in ["recovered/gw-0", "recovered/gw-0/soon", "spend/gw-0/1"] {
            assert_eq!(parse_recovered_key(text), None, "{text}");
        }
    }

    #[test]
    fn spend_keys_and_totals_round_trip() {
        assert_eq!(spend_key("team/b"), "spend/team/b");
        let pairs = [
            (spend_key("b"), "0.5 11.75".to_string()),
            (spend_key("nothing-settled"), "0.5 0".to_string()),
            (spend_key("garbage"), "0.5 lots".to_string()),
            (spend_key("infinite"), "0 inf".to_string()),
            ("rl/vk/x/requests/0".to_string(), "3 3".to_string()),
        ];
        assert_eq!(
            spend_totals(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            vec![("b".to_string(), 11.75)]
        );
        assert!(is_usage_key("rl/vk/x/requests/0"));
        assert!(is_usage_key("spend/b"));
        assert!(!is_usage_key("recovered/gw-0/1"));
        assert!(!is_usage_key(NODE_HTTP_ADDR));
    }

    #[test]
    fn the_reader_types_every_metadata_and_load_key() {
        let mut chitchat = chitchat("gw-0", 10101);
        let state = chitchat.self_node_state();
        for (key, value) in start_metadata(
            "10.0.0.7:8080".parse().unwrap(),
            "10.0.0.7:10102".parse().unwrap(),
            Some("eu-west"),
        ) {
            state.set(key, value);
        }
        state.set(CONFIG_VERSION, "12");
        state.set(NODE_IN_FLIGHT, "3");
        state.set(NODE_RPS, "41");
        state.set(NODE_ERROR_RATE, "0.125");
        assert_eq!(state.http_addr(), Some("10.0.0.7:8080"));
        assert_eq!(state.grpc_addr(), "10.0.0.7:10102".parse().ok());
        assert_eq!(state.region(), Some("eu-west"));
        assert_eq!(state.gateway_version(), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(state.config_version(), Some(12));
        assert_eq!(state.in_flight(), Some(3));
        assert_eq!(state.rps(), Some(41.0));
        assert_eq!(state.error_rate(), Some(0.125));
        assert!(!state.is_leaving());
        state.set(NODE_STATE, LEAVING);
        assert!(state.is_leaving());
    }

    #[test]
    fn the_reader_takes_absent_empty_and_garbage_values_as_none() {
        let mut chitchat = chitchat("gw-0", 10101);
        let state = chitchat.self_node_state();
        assert_eq!(state.http_addr(), None);
        assert_eq!(state.config_version(), None);
        assert_eq!(state.rps(), None);
        // No region configured: published empty.
        for (key, value) in start_metadata(
            "10.0.0.7:8080".parse().unwrap(),
            "10.0.0.7:10102".parse().unwrap(),
            None,
        ) {
            state.set(key, value);
        }
        assert_eq!(state.region(), None);
        state.set(NODE_GRPC_ADDR, "somewhere");
        state.set(CONFIG_VERSION, "");
        state.set(NODE_IN_FLIGHT, "many");
        state.set(NODE_STATE, "staying");
        assert_eq!(state.grpc_addr(), None);
        assert_eq!(state.config_version(), None);
        assert_eq!(state.in_flight(), None);
        assert!(!state.is_leaving());
    }
}
