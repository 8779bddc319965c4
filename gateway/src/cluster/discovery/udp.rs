//! `udp` discovery: every node broadcasts a small beacon on `udp_broadcast_port` every
//! [`BEACON_INTERVAL`] and listens for the others' on the same port; seeds are the gossip
//! addresses heard within [`BEACON_TTL`].
//!
//! Wire format of a beacon before sealing: [`MAGIC`], a version byte, then three fields, each a
//! length byte and UTF-8 text: the cluster id (`service_name`), the node id and the advertised
//! gossip address (`ip:port`). With a cluster key the whole beacon is sealed like gossip
//! ([`GossipSeal`], AES-256-GCM) under associated data that names the cluster and marks the
//! packet as a beacon, so a beacon cannot be fed to the gossip port or the other way round.
//!
//! Broadcast reaches every host on the segment, so the method is fenced: config validation
//! requires `allowed_address_space`, beacons are only sent out of interfaces whose address is
//! inside it, and beacons whose sender or advertised gossip address is outside it are dropped.
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

use super::etcd::NodeRecord;
use crate::cluster::transport::{cluster_key, AddressFilter, GossipSeal};
use crate::config::{parse_cidr, ClusterConfig};

/// How often a node broadcasts its beacon (and once at start).
pub const BEACON_INTERVAL: Duration = Duration::from_secs(1);
/// A node is a seed while its last beacon is at most this old (three missed beacons).
pub const BEACON_TTL: Duration = Duration::from_secs(3);
/// First bytes of every beacon's plaintext.
pub const MAGIC: &[u8; 4] = b"BFBC";
/// Beacon format version.
pub const VERSION: u8 = 1;
/// Beacons are far smaller; anything longer is not ours.
const MAX_BEACON: usize = 1024;
/// Wait before binding the beacon port again after a failure.
const REBIND_INTERVAL: Duration = Duration::from_secs(5);
/// The limited broadcast address, used when no interface inside the address space was found.
const LIMITED_BROADCAST: Ipv4Addr = Ipv4Addr::BROADCAST;
/// The loopback network's broadcast address: reaches every socket bound to the port on this host.
const LOOPBACK_BROADCAST: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 255);

/// What one beacon says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon {
    /// Cluster id; beacons of other clusters are ignored.
    pub service_name: String,
    /// The sender's node id.
    pub node_id: String,
    /// Where the sender's gossip is reached.
    pub gossip_addr: SocketAddr,
}

/// Why a received datagram was not taken as a beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dropped {
    /// Sent from outside `allowed_address_space`.
    SenderOutside,
    /// Did not open with this cluster's key (another key, no key, or not sealed at all).
    NotAuthentic,
    /// Opened (or plaintext) but not a beacon of this format.
    Malformed,
    /// A beacon of another cluster (`service_name`).
    OtherCluster,
    /// Its advertised gossip address is outside `allowed_address_space` or unusable.
    GossipOutside,
}

impl Dropped {
    /// Label for logs.
    pub fn reason(self) -> &'static str {
        match self {
            Self::SenderOutside => "sender outside allowed_address_space",
            Self::NotAuthentic => "failed authentication (wrong or missing cluster key?)",
            Self::Malformed => "not a beacon",
            Self::OtherCluster => "beacon of another cluster",
            Self::GossipOutside => "advertised gossip address outside allowed_address_space",
        }
    }
}

impl Beacon {
    /// The plaintext wire form; fails when a field is longer than 255 bytes.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(MAGIC);
        bytes.push(VERSION);
        let gossip = self.gossip_addr.to_string();
        for (name, field) in [
            ("service_name", self.service_name.as_str()),
            ("node_id", self.node_id.as_str()),
            ("gossip address", gossip.as_str()),
        ] {
            let len = u8::try_from(field.len()).map_err(|_| {
                format!(
                    "the {name} is {} bytes; a beacon holds at most 255",
                    field.len()
                )
            })?;
            bytes.push(len);
            bytes.extend_from_slice(field.as_bytes());
        }
        Ok(bytes)
    }

    /// Parse the plaintext wire form; `None` for anything else (never panics).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(MAGIC.as_slice())?;
        let (&version, mut rest) = rest.split_first()?;
        if version != VERSION {
            return None;
        }
        let mut field = || -> Option<String> {
            let (&len, tail) = rest.split_first()?;
            let len = usize::from(len);
            if tail.len() < len {
                return None;
            }
            let (text, tail) = tail.split_at(len);
            rest = tail;
            String::from_utf8(text.to_vec()).ok()
        };
        let service_name = field()?;
        let node_id = field()?;
        let gossip_addr = field()?.parse().ok()?;
        if !rest.is_empty() {
            return None;
        }
        Some(Self {
            service_name,
            node_id,
            gossip_addr,
        })
    }
}

/// Seals outgoing beacons and checks incoming ones for one cluster.
pub struct BeaconCodec {
    service_name: String,
    seal: GossipSeal,
    filter: AddressFilter,
}

impl BeaconCodec {
    /// A codec for cluster `service_name`; `key` is the cluster key (`None`: plaintext).
    pub fn new(service_name: &str, key: Option<&str>, filter: AddressFilter) -> Self {
        let seal = match key {
            // Its own associated data: a sealed beacon is no gossip datagram and vice versa.
            Some(key) => GossipSeal::new(key, &format!("{service_name}\0udp-beacon")),
            None => GossipSeal::plaintext(),
        };
        Self {
            service_name: service_name.to_string(),
            seal,
            filter,
        }
    }

    /// The datagram to broadcast for `beacon`.
    pub fn seal(&self, beacon: &Beacon) -> Result<Vec<u8>, String> {
        let plaintext = beacon.encode()?;
        self.seal
            .seal(&plaintext)
            .map_err(|e| format!("cannot seal the beacon: {e:#}"))
    }

    /// The beacon in datagram `packet` from `from`, or why it was dropped.
    pub fn open(&self, packet: &[u8], from: SocketAddr) -> Result<Beacon, Dropped> {
        if !self.filter.allows(from.ip()) {
            return Err(Dropped::SenderOutside);
        }
        let plaintext = self.seal.open(packet).ok_or(Dropped::NotAuthentic)?;
        let beacon = Beacon::decode(&plaintext).ok_or(if self.seal.is_encrypted() {
            // Authentic but unreadable: a newer format from the same cluster.
            Dropped::Malformed
        } else if plaintext.starts_with(MAGIC) {
            Dropped::Malformed
        } else {
            // Without a key, a sealed beacon from a keyed node looks like noise.
            Dropped::NotAuthentic
        })?;
        if beacon.service_name != self.service_name {
            return Err(Dropped::OtherCluster);
        }
        let gossip = beacon.gossip_addr;
        if gossip.port() == 0
            || gossip.ip().is_unspecified()
            || gossip.ip().is_multicast()
            || !self.filter.allows(gossip.ip())
        {
            return Err(Dropped::GossipOutside);
        }
        Ok(beacon)
    }
}

/// One IPv4 address of a local interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddress {
    /// The interface's address.
    pub ip: Ipv4Addr,
    /// Its network's prefix length.
    pub prefix_len: u8,
    /// The broadcast address the interface reports, if any.
    pub broadcast: Option<Ipv4Addr>,
    /// A point-to-point link (no broadcast domain).
    pub point_to_point: bool,
}

impl LocalAddress {
    /// The subnet's broadcast address: the one the interface reports when it lies in the
    /// subnet, else the computed one (an interface without a configured `brd` reports its own
    /// address here). `None` for /31, /32 and point-to-point links.
    pub fn broadcast_address(&self) -> Option<Ipv4Addr> {
        if self.point_to_point {
            return None;
        }
        let computed = directed_broadcast(self.ip, self.prefix_len)?;
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        Some(
            self.broadcast
                .filter(|b| *b != self.ip && u32::from(*b) & mask == u32::from(self.ip) & mask)
                .unwrap_or(computed),
        )
    }
}

/// The IPv4 addresses of this host's interfaces.
pub fn local_addresses() -> Result<Vec<LocalAddress>, String> {
    let interfaces =
        if_addrs::get_if_addrs().map_err(|e| format!("cannot list network interfaces: {e}"))?;
    Ok(interfaces
        .into_iter()
        .filter_map(|interface| match interface.addr {
            if_addrs::IfAddr::V4(v4) => Some(LocalAddress {
                ip: v4.ip,
                prefix_len: v4.prefixlen,
                broadcast: v4.broadcast,
                point_to_point: interface.is_p2p,
            }),
            if_addrs::IfAddr::V6(_) => None,
        })
        .collect())
}

/// `ip`'s network broadcast address for a `/prefix_len` network (`None` for /31 and /32,
/// which have none).
pub fn directed_broadcast(ip: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Addr> {
    if prefix_len >= 31 {
        return None;
    }
    let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
    Some(Ipv4Addr::from(u32::from(ip) | host_bits))
}

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
            .field("service_name", &self.codec.service_name)
            .field("allowed_address_space", &self.allowed_address_space)
            .field("encrypted", &self.codec.seal.is_encrypted())
            .finish()
    }
}

impl PartialEq for UdpDiscovery {
    fn eq(&self, other: &Self) -> bool {
        self.port == other.port
            && self.allowed_address_space == other.allowed_address_space
            && self.codec.service_name == other.codec.service_name
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
                    service_name: self.codec.service_name.clone(),
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

fn is_transient(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::OutOfMemory
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beacon(service_name: &str, node_id: &str, gossip: &str) -> Beacon {
        Beacon {
            service_name: service_name.into(),
            node_id: node_id.into(),
            gossip_addr: gossip.parse().unwrap(),
        }
    }

    fn loopback_space() -> Vec<String> {
        vec!["127.0.0.0/8".to_string()]
    }

    fn codec(service_name: &str, key: Option<&str>) -> BeaconCodec {
        BeaconCodec::new(service_name, key, AddressFilter::new(&loopback_space()))
    }

    fn from() -> SocketAddr {
        "127.0.0.1:47000".parse().unwrap()
    }

    #[test]
    fn a_beacon_round_trips_through_its_wire_form() {
        let original = beacon("bifrost", "node-0", "127.0.0.1:10101");
        let bytes = original.encode().unwrap();
        assert!(bytes.starts_with(MAGIC));
        assert_eq!(Beacon::decode(&bytes), Some(original));
        let v6 = beacon("bifrost", "node-1", "[fd00::1]:10101");
        assert_eq!(Beacon::decode(&v6.encode().unwrap()), Some(v6));
    }

    #[test]
    fn an_overlong_field_cannot_be_encoded() {
        let error = beacon("bifrost", &"n".repeat(256), "127.0.0.1:1")
            .encode()
            .unwrap_err();
        assert!(error.contains("node_id"), "{error}");
    }

    #[test]
    fn truncated_padded_and_garbage_beacons_do_not_decode() {
        let bytes = beacon("bifrost", "node-0", "127.0.0.1:10101")
            .encode()
            .unwrap();
        for len in 0..bytes.len() {
            assert_eq!(Beacon::decode(&bytes[..len]), None, "truncated to {len}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert_eq!(Beacon::decode(&padded), None, "trailing bytes");
        let mut newer = bytes.clone();
        newer[MAGIC.len()] = VERSION + 1;
        assert_eq!(Beacon::decode(&newer), None, "unknown version");
        let mut bad_utf8 = bytes.clone();
        let last = bad_utf8.len() - 1;
        bad_utf8[last] = 0xff;
        assert_eq!(Beacon::decode(&bad_utf8), None, "invalid UTF-8");
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2_000 {
            let len = rng.usize(..64);
            let mut noise: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if rng.bool() {
                noise.splice(0..0, MAGIC.iter().copied().chain([VERSION]));
            }
            let _ = Beacon::decode(&noise);
        }
    }

    #[test]
    fn a_sealed_beacon_opens_for_the_same_cluster_and_key() {
        let c = codec("bifrost", Some("cluster key"));
        let original = beacon("bifrost", "node-0", "127.0.0.2:10101");
        let packet = c.seal(&original).unwrap();
        assert!(!packet.windows(6).any(|w| w == b"node-0"), "sealed");
        assert_eq!(c.open(&packet, from()), Ok(original));
    }

    #[test]
    fn a_beacon_with_another_key_or_no_key_is_dropped() {
        let keyed = codec("bifrost", Some("key A"));
        let original = beacon("bifrost", "node-0", "127.0.0.2:10101");
        let other_key = codec("bifrost", Some("key B")).seal(&original).unwrap();
        assert_eq!(keyed.open(&other_key, from()), Err(Dropped::NotAuthentic));
        let unkeyed = codec("bifrost", None).seal(&original).unwrap();
        assert_eq!(keyed.open(&unkeyed, from()), Err(Dropped::NotAuthentic));
        let sealed = keyed.seal(&original).unwrap();
        assert_eq!(
            codec("bifrost", None).open(&sealed, from()),
            Err(Dropped::NotAuthentic),
            "a node without the key cannot read a keyed beacon"
        );
    }

    #[test]
    fn a_beacon_of_another_cluster_is_dropped() {
        let other = beacon("other", "node-9", "127.0.0.9:10101");
        let plain = codec("other", None).seal(&other).unwrap();
        assert_eq!(
            codec("bifrost", None).open(&plain, from()),
            Err(Dropped::OtherCluster)
        );
        // With a key the cluster id is bound into the seal: another cluster's beacon does not
        // even open.
        let sealed = codec("other", Some("key")).seal(&other).unwrap();
        assert_eq!(
            codec("bifrost", Some("key")).open(&sealed, from()),
            Err(Dropped::NotAuthentic)
        );
    }

    #[test]
    fn a_gossip_datagram_is_not_a_beacon() {
        let gossip = GossipSeal::new("key", "bifrost").seal(b"BFBC\x01").unwrap();
        assert_eq!(
            codec("bifrost", Some("key")).open(&gossip, from()),
            Err(Dropped::NotAuthentic)
        );
    }

    #[test]
    fn truncated_and_garbage_datagrams_are_dropped() {
        let keyed = codec("bifrost", Some("key"));
        let packet = keyed
            .seal(&beacon("bifrost", "node-0", "127.0.0.2:10101"))
            .unwrap();
        for len in [0, 1, 12, 27, 28, packet.len() - 1] {
            assert_eq!(
                keyed.open(&packet[..len], from()),
                Err(Dropped::NotAuthentic),
                "{len}"
            );
        }
        let plain = codec("bifrost", None);
        assert_eq!(plain.open(b"hello", from()), Err(Dropped::NotAuthentic));
        assert_eq!(
            plain.open(b"BFBC\x01\x05bif", from()),
            Err(Dropped::Malformed)
        );
        assert_eq!(plain.open(&[], from()), Err(Dropped::NotAuthentic));
    }

    #[test]
    fn beacons_are_fenced_by_sender_and_advertised_address() {
        let c = codec("bifrost", Some("key"));
        let inside = c
            .seal(&beacon("bifrost", "node-0", "127.0.0.2:10101"))
            .unwrap();
        let outside_sender: SocketAddr = "192.0.2.7:47000".parse().unwrap();
        assert_eq!(c.open(&inside, outside_sender), Err(Dropped::SenderOutside));
        for gossip in ["192.0.2.7:10101", "0.0.0.0:10101", "127.0.0.2:0"] {
            let packet = c.seal(&beacon("bifrost", "node-0", gossip)).unwrap();
            assert_eq!(
                c.open(&packet, from()),
                Err(Dropped::GossipOutside),
                "{gossip}"
            );
        }
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:47000".parse().unwrap();
        assert!(c.open(&inside, mapped).is_ok(), "IPv4-mapped sender");
    }

    fn address(ip: &str, prefix_len: u8, broadcast: Option<&str>) -> LocalAddress {
        LocalAddress {
            ip: ip.parse().unwrap(),
            prefix_len,
            broadcast: broadcast.map(|b| b.parse().unwrap()),
            point_to_point: false,
        }
    }

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
    fn directed_broadcast_covers_the_host_bits() {
        let ip: Ipv4Addr = "10.20.30.40".parse().unwrap();
        assert_eq!(
            directed_broadcast(ip, 8),
            Some("10.255.255.255".parse().unwrap())
        );
        assert_eq!(directed_broadcast(ip, 0), Some(Ipv4Addr::BROADCAST));
        assert_eq!(directed_broadcast(ip, 31), None);
        assert_eq!(directed_broadcast(ip, 32), None);
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
