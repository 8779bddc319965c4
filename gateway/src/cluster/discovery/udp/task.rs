//! The beacon task ([`BeaconRegistration::run`]: broadcast this node's beacon, listen for the
//! others') and the seeds it yields ([`UdpDiscovery::discover`]).
//!
//! The listener binds `0.0.0.0:<port>` with `SO_REUSEADDR` + `SO_REUSEPORT`, so several nodes
//! on one host all receive each broadcast (Linux hands a broadcast to every socket in the
//! group, where a unicast datagram would go to only one). A socket bound to a unicast address
//! does not receive broadcasts, which is why the listener binds the wildcard.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::beacon::{Beacon, BeaconCodec, Dropped};
use crate::cluster::discovery::etcd::NodeRecord;
use crate::cluster::discovery::interfaces::{directed_broadcast, local_addresses, LocalAddress};
use crate::cluster::transport::{cluster_key, is_transient, AddressFilter};
use crate::config::{parse_cidr, ClusterConfig};

/// How often a node broadcasts its beacon (and once at start).
pub const BEACON_INTERVAL: Duration = Duration::from_secs(1);
/// A node is a seed while its last beacon is at most this old (three missed beacons).
pub const BEACON_TTL: Duration = Duration::from_secs(3);
/// Beacons are far smaller; anything longer is not ours.
const MAX_BEACON: usize = 1024;
/// Wait before binding the beacon port again after a failure.
const REBIND_INTERVAL: Duration = Duration::from_secs(5);
/// The limited broadcast address, used when no interface inside the address space was found.
const LIMITED_BROADCAST: Ipv4Addr = Ipv4Addr::BROADCAST;
/// The loopback network's broadcast address: reaches every socket bound to the port on this host.
const LOOPBACK_BROADCAST: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 255);

/// Whether the address space reaches beyond loopback (so the limited broadcast
/// 255.255.255.255, which leaves the host, is an acceptable fallback).
pub fn reaches_beyond_loopback(allowed_address_space: &[String]) -> bool {
    allowed_address_space
        .iter()
        .filter_map(|cidr| parse_cidr(cidr).ok())
        .any(|(network, prefix)| match network {
            IpAddr::V4(v4) => !(v4.is_loopback() && prefix >= 8),
            IpAddr::V6(_) => false,
        })
}

/// Where to send beacons: the directed broadcast address of every local interface whose address
/// `filter` allows (127.255.255.255 for loopback). With none, 127.255.255.255 when the
/// address space includes loopback, plus 255.255.255.255 when it reaches beyond loopback.
pub fn broadcast_targets(
    local: &[LocalAddress],
    filter: &AddressFilter,
    beyond_loopback: bool,
) -> Vec<Ipv4Addr> {
    let mut targets: BTreeSet<Ipv4Addr> = local
        .iter()
        .filter(|a| filter.allows(IpAddr::V4(a.ip)))
        .filter_map(|a| {
            if a.ip.is_loopback() {
                directed_broadcast(a.ip, a.prefix_len.max(8))
            } else {
                a.broadcast_address()
            }
        })
        .collect();
    if targets.is_empty() {
        if filter.allows(IpAddr::V4(Ipv4Addr::LOCALHOST)) {
            targets.insert(LOOPBACK_BROADCAST);
        }
        if beyond_loopback {
            targets.insert(LIMITED_BROADCAST);
        }
    }
    targets.into_iter().collect()
}

/// What the listener has heard, shared with [`UdpDiscovery::discover`].
#[derive(Default)]
struct Heard {
    /// Gossip address → (node id, when its last beacon arrived).
    nodes: BTreeMap<SocketAddr, (String, Instant)>,
    /// Dropped datagrams per reason.
    dropped: BTreeMap<Dropped, u64>,
    /// Why the beacon port is not open, while it is not.
    listen_error: Option<String>,
}

/// Seeds from broadcast beacons on `udp_broadcast_port`.
#[derive(Clone)]
pub struct UdpDiscovery {
    port: u16,
    allowed_address_space: Vec<String>,
    filter: AddressFilter,
    codec: Arc<BeaconCodec>,
    heard: Arc<Mutex<Heard>>,
}

impl std::fmt::Debug for UdpDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpDiscovery")
            .field("port", &self.port)
            .field("service_name", &self.codec.service_name())
            .field("allowed_address_space", &self.allowed_address_space)
            .field("encrypted", &self.codec.is_encrypted())
            .finish()
    }
}

impl PartialEq for UdpDiscovery {
    fn eq(&self, other: &Self) -> bool {
        self.port == other.port
            && self.allowed_address_space == other.allowed_address_space
            && self.codec.service_name() == other.codec.service_name()
    }
}

impl UdpDiscovery {
    /// Discovery as `cluster` configures it (port, cluster id, key, address space).
    pub fn from_config(cluster: &ClusterConfig) -> Self {
        let discovery = &cluster.discovery;
        Self::new(
            discovery.udp_broadcast_port.unwrap_or(0),
            &discovery.service_name,
            cluster_key(cluster).as_deref(),
            &discovery.allowed_address_space,
        )
    }

    /// Beacons on `port` for cluster `service_name`, sealed with `key`, fenced to
    /// `allowed_address_space`.
    pub fn new(
        port: u16,
        service_name: &str,
        key: Option<&str>,
        allowed_address_space: &[String],
    ) -> Self {
        let filter = AddressFilter::new(allowed_address_space);
        Self {
            port,
            allowed_address_space: allowed_address_space.to_vec(),
            codec: Arc::new(BeaconCodec::new(service_name, key, filter.clone())),
            filter,
            heard: Arc::new(Mutex::new(Heard::default())),
        }
    }

    /// The beacon loop of node `node_id` advertising `record.gossip_addr`.
    pub fn registration(&self, node_id: &str, record: &NodeRecord) -> BeaconRegistration {
        BeaconRegistration {
            discovery: self.clone(),
            beacon: record
                .gossip_addr
                .parse::<SocketAddr>()
                .map(|gossip_addr| Beacon {
                    service_name: self.codec.service_name().to_string(),
                    node_id: node_id.to_string(),
                    gossip_addr,
                })
                .map_err(|e| {
                    format!(
                        "gossip address {:?} is not ip:port: {e}",
                        record.gossip_addr
                    )
                }),
        }
    }

    /// Gossip addresses heard within [`BEACON_TTL`] (this node's own excluded); an error while
    /// the beacon port cannot be opened.
    pub fn discover(&self) -> Result<BTreeSet<SocketAddr>, String> {
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(error) = &heard.listen_error {
            return Err(error.clone());
        }
        let now = Instant::now();
        heard
            .nodes
            .retain(|_, (_, at)| now.saturating_duration_since(*at) <= BEACON_TTL);
        Ok(heard.nodes.keys().copied().collect())
    }

    /// Take one received datagram: remember the sender's gossip address, or count the drop.
    fn hear(&self, packet: &[u8], from: SocketAddr, own: &Beacon) {
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        match self.codec.open(packet, from) {
            // Our own broadcast comes back to us.
            Ok(beacon) if beacon.gossip_addr == own.gossip_addr => {}
            Ok(beacon) => {
                let previous = heard
                    .nodes
                    .insert(beacon.gossip_addr, (beacon.node_id.clone(), Instant::now()));
                if previous.is_none() {
                    tracing::debug!(method = "udp", node_id = %beacon.node_id, gossip_addr = %beacon.gossip_addr, %from, "heard a beacon from a new node");
                }
            }
            Err(dropped) => {
                let count = heard.dropped.entry(dropped).or_default();
                *count += 1;
                if count.is_power_of_two() {
                    tracing::warn!(
                        method = "udp",
                        %from,
                        len = packet.len(),
                        dropped = *count,
                        "dropped a discovery beacon: {}",
                        dropped.reason()
                    );
                }
            }
        }
    }

    fn set_listen_error(&self, error: Option<String>) {
        self.heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .listen_error = error;
    }
}

/// The wildcard listener on the beacon port, shared by every node on this host.
fn bind_beacon_socket(port: u16) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_broadcast(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// This node's beacon loop: broadcast, listen, until stopped.
pub struct BeaconRegistration {
    discovery: UdpDiscovery,
    beacon: Result<Beacon, String>,
}

impl BeaconRegistration {
    /// Broadcast a beacon at once and every [`BEACON_INTERVAL`], and record the beacons heard,
    /// until `stop` turns true. Binds the port again after a failure.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let discovery = &self.discovery;
        let port = discovery.port;
        let prepared = self.beacon.and_then(|beacon| {
            if port == 0 {
                return Err("cluster_config.discovery.udp_broadcast_port is not set".to_string());
            }
            let packet = discovery.codec.seal(&beacon)?;
            Ok((beacon, packet))
        });
        let (own, packet) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::error!(method = "udp", %error, "discovery failed: cannot send beacons: {error}");
                discovery.set_listen_error(Some(error));
                let _ = stop.wait_for(|stop| *stop).await;
                return;
            }
        };
        let beyond_loopback = reaches_beyond_loopback(&discovery.allowed_address_space);
        let mut buf = vec![0u8; MAX_BEACON];
        loop {
            let socket = match bind_beacon_socket(port) {
                Ok(socket) => socket,
                Err(error) => {
                    let error = format!(
                        "cannot listen for beacons on udp 0.0.0.0:{port}: {error} (is another program holding the port without SO_REUSEPORT? choose another cluster_config.discovery.udp_broadcast_port)"
                    );
                    tracing::warn!(method = "udp", port, %error, "discovery failed: {error}");
                    discovery.set_listen_error(Some(error));
                    tokio::select! {
                        _ = tokio::time::sleep(REBIND_INTERVAL) => continue,
                        _ = stop.wait_for(|stop| *stop) => return,
                    }
                }
            };
            discovery.set_listen_error(None);
            tracing::info!(method = "udp", port, node_id = %own.node_id, gossip_addr = %own.gossip_addr, "listening for discovery beacons");
            let mut sender = BeaconSender::default();
            let mut tick = tokio::time::interval(BEACON_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => sender.broadcast(&socket, &packet, discovery, port, beyond_loopback).await,
                    received = socket.recv_from(&mut buf) => match received {
                        Ok((len, from)) => discovery.hear(&buf[..len], from, &own),
                        Err(error) if is_transient(&error) => {
                            tracing::debug!(method = "udp", %error, "transient beacon recv error");
                        }
                        Err(error) => {
                            tracing::warn!(method = "udp", %error, "discovery failed: beacon socket failed ({error}); opening it again");
                            break;
                        }
                    },
                    _ = stopped(&mut stop) => return,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(REBIND_INTERVAL) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }
}

/// Sends beacons and logs only changes: where they go, and which targets start or stop failing.
#[derive(Default)]
struct BeaconSender {
    targets: Vec<Ipv4Addr>,
    failing: BTreeSet<Ipv4Addr>,
    interfaces_failing: bool,
}

impl BeaconSender {
    async fn broadcast(
        &mut self,
        socket: &tokio::net::UdpSocket,
        packet: &[u8],
        discovery: &UdpDiscovery,
        port: u16,
        beyond_loopback: bool,
    ) {
        let local = match local_addresses() {
            Ok(local) => {
                self.interfaces_failing = false;
                local
            }
            Err(error) => {
                if !self.interfaces_failing {
                    tracing::warn!(method = "udp", %error, "failed to broadcast on interface addresses: {error}; using the fallback targets");
                    self.interfaces_failing = true;
                }
                Vec::new()
            }
        };
        let targets = broadcast_targets(&local, &discovery.filter, beyond_loopback);
        if targets != self.targets {
            let list: Vec<String> = targets.iter().map(|t| format!("{t}:{port}")).collect();
            tracing::info!(method = "udp", targets = ?list, "broadcasting discovery beacons");
            self.targets = targets.clone();
        }
        for target in targets {
            let to = SocketAddr::from((target, port));
            match socket.send_to(packet, to).await {
                Ok(_) => {
                    if self.failing.remove(&target) {
                        tracing::info!(method = "udp", %to, "beacons to {to} go through again");
                    }
                }
                Err(error) => {
                    if self.failing.insert(target) {
                        tracing::warn!(method = "udp", %to, %error, "failed to broadcast: beacon to {to}: {error}");
                    } else {
                        tracing::debug!(method = "udp", %to, %error, "failed to broadcast");
                    }
                }
            }
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone), holding no borrow of it.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_space() -> Vec<String> {
        vec!["127.0.0.0/8".to_string()]
    }

    use crate::cluster::testing::local_address as address;

    fn host() -> Vec<LocalAddress> {
        vec![
            address("127.0.0.1", 8, None),
            address("10.1.2.3", 24, Some("10.1.2.255")),
            address("192.168.7.9", 20, None),
            // No `brd` configured: the interface reports its own address.
            address("172.20.1.5", 16, Some("172.20.1.5")),
            LocalAddress {
                point_to_point: true,
                ..address("10.9.0.1", 32, Some("10.9.0.2"))
            },
        ]
    }

    fn targets(space: &[&str]) -> Vec<String> {
        let space: Vec<String> = space.iter().map(|s| s.to_string()).collect();
        broadcast_targets(
            &host(),
            &AddressFilter::new(&space),
            reaches_beyond_loopback(&space),
        )
        .iter()
        .map(Ipv4Addr::to_string)
        .collect()
    }

    #[test]
    fn beacons_go_to_the_broadcast_address_of_interfaces_inside_the_space() {
        assert_eq!(targets(&["127.0.0.0/8"]), ["127.255.255.255"]);
        assert_eq!(targets(&["10.0.0.0/8"]), ["10.1.2.255"], "p2p link skipped");
        assert_eq!(targets(&["192.168.0.0/16"]), ["192.168.15.255"], "computed");
        assert_eq!(
            targets(&["172.20.0.0/16"]),
            ["172.20.255.255"],
            "own address reported"
        );
        assert_eq!(
            targets(&["10.1.2.0/24", "127.0.0.1/32"]),
            ["10.1.2.255", "127.255.255.255"]
        );
    }

    #[test]
    fn without_a_matching_interface_the_fallback_stays_inside_the_space() {
        assert_eq!(targets(&["172.31.0.0/16"]), ["255.255.255.255"]);
        // A loopback-only space never sends beacons off the host.
        let space = loopback_space();
        assert_eq!(
            broadcast_targets(
                &[],
                &AddressFilter::new(&space),
                reaches_beyond_loopback(&space)
            ),
            [LOOPBACK_BROADCAST]
        );
        assert!(targets(&["fd00::/8"]).is_empty(), "no IPv4 broadcast");
    }

    #[test]
    fn only_a_space_beyond_loopback_allows_the_limited_broadcast() {
        assert!(!reaches_beyond_loopback(&loopback_space()));
        assert!(reaches_beyond_loopback(&["0.0.0.0/0".into()]));
    }

    fn record(gossip: &str) -> NodeRecord {
        NodeRecord {
            gossip_addr: gossip.into(),
            http_addr: "127.0.0.1:8080".into(),
        }
    }

    /// A free UDP port for the beacon tests (loopback only: nothing leaves the host).
    fn free_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn heard_within(
        discovery: &UdpDiscovery,
        want: &BTreeSet<SocketAddr>,
        within: Duration,
    ) -> BTreeSet<SocketAddr> {
        let deadline = Instant::now() + within;
        loop {
            let found = discovery.discover().unwrap_or_default();
            if found == *want || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn nodes_on_one_host_hear_each_others_beacons_over_loopback() {
        let port = free_port();
        let space = loopback_space();
        let (stop, _) = watch::channel(false);
        let nodes: Vec<UdpDiscovery> = (0..3)
            .map(|_| UdpDiscovery::new(port, "bifrost", Some("key"), &space))
            .collect();
        let stranger = UdpDiscovery::new(port, "other", Some("key"), &space);
        let mut tasks = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let gossip = format!("127.0.0.1:{}", 20000 + i);
            let run = node.registration(&format!("node-{i}"), &record(&gossip));
            tasks.push(tokio::spawn(run.run(stop.subscribe())));
        }
        tasks.push(tokio::spawn(
            stranger
                .registration("stranger", &record("127.0.0.1:29999"))
                .run(stop.subscribe()),
        ));
        for (i, node) in nodes.iter().enumerate() {
            let want: BTreeSet<SocketAddr> = (0..3)
                .filter(|j| *j != i)
                .map(|j| SocketAddr::from(([127, 0, 0, 1], 20000 + j as u16)))
                .collect();
            let found = heard_within(node, &want, Duration::from_secs(5)).await;
            assert_eq!(found, want, "node-{i}");
        }
        assert_eq!(stranger.discover(), Ok(BTreeSet::new()), "other cluster");
        let _ = stop.send(true);
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .expect("stops when told")
                .expect("no panic");
        }
    }

    #[tokio::test]
    async fn a_bad_gossip_address_reports_discovery_failed() {
        let discovery = UdpDiscovery::new(free_port(), "bifrost", None, &loopback_space());
        let (stop, _) = watch::channel(false);
        let task = tokio::spawn(
            discovery
                .registration("node-0", &record("not an address"))
                .run(stop.subscribe()),
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        while discovery.discover().is_ok() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let error = discovery.discover().unwrap_err();
        assert!(error.contains("not ip:port"), "{error}");
        let _ = stop.send(true);
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("stops")
            .expect("no panic");
    }
}
