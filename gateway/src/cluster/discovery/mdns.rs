//! `mdns` discovery: each node announces itself over multicast DNS as an instance of
//! `mdns_service` (default `_bifrost._tcp`, so `_bifrost._tcp.local.`) named after its node id,
//! on its gossip port, with TXT records `service_name` (the cluster id) and `http_addr`; and
//! browses for the other instances of the same type in the same cluster.
//!
//! Seeds are the instances' addresses with their port, skipping addresses no peer can gossip
//! with: loopback, unspecified, multicast, the limited broadcast, IPv6 link-local (no scope for
//! chitchat), and the network and broadcast address of any local IPv4 subnet. With an
//! `allowed_address_space` the daemon only uses interfaces inside it, and seeds outside it are
//! dropped.
//!
//! The daemon (mdns-sd) runs on its own thread; [`MdnsRegistration::run`] owns it, unregisters
//! this node and shuts the daemon down on stop.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::watch;

use super::etcd::NodeRecord;
use super::interfaces::{local_addresses, LocalAddress};
use crate::cluster::transport::AddressFilter;
use crate::config::ClusterConfig;

/// TXT key carrying the cluster id.
pub const TXT_SERVICE_NAME: &str = "service_name";
/// TXT key carrying the node's HTTP address.
pub const TXT_HTTP_ADDR: &str = "http_addr";
/// Unregistering (a goodbye packet) and shutting down must fit in the cluster's 2 s stop deadline.
const GOODBYE_TIMEOUT: Duration = Duration::from_millis(800);

/// `_bifrost._tcp` → `_bifrost._tcp.local.` (an explicit domain is kept).
pub fn service_type(mdns_service: &str) -> String {
    let trimmed = mdns_service.trim().trim_end_matches('.');
    if trimmed.ends_with(".local") {
        format!("{trimmed}.")
    } else {
        format!("{trimmed}.local.")
    }
}

/// An mDNS host name for `node_id`: DNS-safe characters only, under `.local.`.
pub fn host_name(node_id: &str) -> String {
    let label: String = node_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let label = label.trim_matches('-');
    format!(
        "{}.local.",
        if label.is_empty() { "bifrost" } else { label }
    )
}

/// Whether a peer can gossip with `ip`: not loopback, unspecified, multicast or a broadcast
/// address, not IPv6 link-local, not the network or broadcast address of a local subnet, and
/// inside `filter`.
pub fn usable_seed(ip: IpAddr, local: &[LocalAddress], filter: &AddressFilter) -> bool {
    let ip = ip.to_canonical();
    let special = match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4 == Ipv4Addr::BROADCAST
                || local.iter().any(|a| a.is_network_or_broadcast(v4))
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unicast_link_local()
        }
    };
    !special && filter.allows(ip)
}

/// One resolved instance as browsing reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `<node id>._bifrost._tcp.local.`
    pub fullname: String,
    /// The `service_name` TXT record.
    pub service_name: Option<String>,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// Its (gossip) port.
    pub port: u16,
}

/// Seeds from `instance` for cluster `service_name`: none for another cluster, this node
/// (`own_fullname`) or port 0, else every usable address with the port.
pub fn seeds_of(
    instance: &Instance,
    service_name: &str,
    own_fullname: &str,
    local: &[LocalAddress],
    filter: &AddressFilter,
) -> BTreeSet<SocketAddr> {
    if instance.service_name.as_deref() != Some(service_name)
        || instance.fullname == own_fullname
        || instance.port == 0
    {
        return BTreeSet::new();
    }
    instance
        .addresses
        .iter()
        .filter(|ip| usable_seed(**ip, local, filter))
        .map(|ip| SocketAddr::new(ip.to_canonical(), instance.port))
        .collect()
}

/// What browsing has found, shared with [`MdnsDiscovery::discover`].
#[derive(Default)]
struct Found {
    /// Instance full name → its seeds.
    instances: BTreeMap<String, BTreeSet<SocketAddr>>,
    /// Why the daemon is not running, while it is not.
    error: Option<String>,
}

/// Seeds from multicast DNS.
#[derive(Clone)]
pub struct MdnsDiscovery {
    service_type: String,
    service_name: String,
    allowed_address_space: Vec<String>,
    filter: AddressFilter,
    found: Arc<Mutex<Found>>,
}

impl std::fmt::Debug for MdnsDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdnsDiscovery")
            .field("service_type", &self.service_type)
            .field("service_name", &self.service_name)
            .field("allowed_address_space", &self.allowed_address_space)
            .finish()
    }
}

impl PartialEq for MdnsDiscovery {
    fn eq(&self, other: &Self) -> bool {
        self.service_type == other.service_type
            && self.service_name == other.service_name
            && self.allowed_address_space == other.allowed_address_space
    }
}

impl MdnsDiscovery {
    /// Discovery as `cluster` configures it.
    pub fn from_config(cluster: &ClusterConfig) -> Self {
        let discovery = &cluster.discovery;
        Self::new(
            &discovery.mdns_service,
            &discovery.service_name,
            &discovery.allowed_address_space,
        )
    }

    /// Instances of `mdns_service` in cluster `service_name`, fenced to `allowed_address_space`.
    pub fn new(mdns_service: &str, service_name: &str, allowed_address_space: &[String]) -> Self {
        Self {
            service_type: service_type(mdns_service),
            service_name: service_name.to_string(),
            allowed_address_space: allowed_address_space.to_vec(),
            filter: AddressFilter::new(allowed_address_space),
            found: Arc::new(Mutex::new(Found::default())),
        }
    }

    /// The announcement and browsing of node `node_id` with `record`.
    pub fn registration(&self, node_id: &str, record: &NodeRecord) -> MdnsRegistration {
        MdnsRegistration {
            discovery: self.clone(),
            node_id: node_id.to_string(),
            record: record.clone(),
        }
    }

    /// Seeds of every instance currently announced; an error while the daemon is not running.
    pub fn discover(&self) -> Result<BTreeSet<SocketAddr>, String> {
        let found = self.found.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(error) = &found.error {
            return Err(error.clone());
        }
        Ok(found.instances.values().flatten().copied().collect())
    }

    fn set_error(&self, error: Option<String>) {
        self.found.lock().unwrap_or_else(|p| p.into_inner()).error = error;
    }

    /// Take one browse event.
    fn observe(&self, event: ServiceEvent, own_fullname: &str, local: &[LocalAddress]) {
        let mut found = self.found.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            ServiceEvent::ServiceResolved(resolved) => {
                let instance = Instance {
                    fullname: resolved.get_fullname().to_string(),
                    service_name: resolved
                        .get_property_val_str(TXT_SERVICE_NAME)
                        .map(str::to_string),
                    addresses: resolved
                        .get_addresses()
                        .iter()
                        .map(|a| a.to_ip_addr())
                        .collect(),
                    port: resolved.get_port(),
                };
                let seeds = seeds_of(
                    &instance,
                    &self.service_name,
                    own_fullname,
                    local,
                    &self.filter,
                );
                if seeds.is_empty() {
                    if instance.fullname != own_fullname {
                        tracing::debug!(method = "mdns", instance = %instance.fullname, service_name = ?instance.service_name, addresses = ?instance.addresses, "ignoring an mdns instance (other cluster or no usable address)");
                    }
                    found.instances.remove(&instance.fullname);
                } else {
                    tracing::debug!(method = "mdns", instance = %instance.fullname, seeds = ?seeds, "resolved an mdns instance");
                    found.instances.insert(instance.fullname, seeds);
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname)
                if found.instances.remove(&fullname).is_some() =>
            {
                tracing::debug!(method = "mdns", instance = %fullname, "an mdns instance said goodbye");
            }
            _ => {}
        }
    }
}

/// This node's mDNS announcement and browse, owned by one daemon.
pub struct MdnsRegistration {
    discovery: MdnsDiscovery,
    node_id: String,
    record: NodeRecord,
}

impl MdnsRegistration {
    /// Start the daemon, announce this node, browse until `stop` turns true, then unregister
    /// and shut the daemon down.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let discovery = &self.discovery;
        let started = self.start();
        let (daemon, info, events) = match started {
            Ok(started) => started,
            Err(error) => {
                tracing::error!(method = "mdns", %error, "discovery failed: {error}");
                discovery.set_error(Some(error));
                let _ = stop.wait_for(|stop| *stop).await;
                return;
            }
        };
        let fullname = info.get_fullname().to_string();
        tracing::info!(method = "mdns", instance = %fullname, gossip_addr = %self.record.gossip_addr, "announced this node over mdns; browsing for peers");
        let mut local = local_addresses().unwrap_or_default();
        loop {
            tokio::select! {
                event = events.recv_async() => match event {
                    Ok(event) => {
                        if matches!(event, ServiceEvent::ServiceResolved(_)) {
                            // Subnets change rarely; refreshing on each resolution is cheap.
                            local = local_addresses().unwrap_or(local);
                        }
                        discovery.observe(event, &fullname, &local);
                    }
                    Err(_) => {
                        let error = "the mdns daemon stopped".to_string();
                        tracing::warn!(method = "mdns", "discovery failed: {error}");
                        discovery.set_error(Some(error));
                        break;
                    }
                },
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
        let _ = stop.wait_for(|stop| *stop).await;
        goodbye(&daemon, &fullname).await;
    }

    /// The daemon, fenced to the address space, with this node registered and a browse open.
    #[allow(clippy::type_complexity)]
    fn start(
        &self,
    ) -> Result<(ServiceDaemon, ServiceInfo, mdns_sd::Receiver<ServiceEvent>), String> {
        let discovery = &self.discovery;
        let gossip: SocketAddr = self.record.gossip_addr.parse().map_err(|e| {
            format!(
                "gossip address {:?} is not ip:port: {e}",
                self.record.gossip_addr
            )
        })?;
        if gossip.ip().is_loopback() || gossip.ip().is_unspecified() {
            tracing::warn!(method = "mdns", gossip_addr = %gossip, "this node advertises {gossip}, which mdns peers skip: bind the gateway to a routable address or set POD_IP");
        }
        let daemon = ServiceDaemon::new().map_err(|e| {
            format!("cannot start the mdns daemon: {e} (is UDP port 5353 usable here?)")
        })?;
        if !discovery.allowed_address_space.is_empty() {
            let allowed: Vec<IpAddr> = local_addresses()?
                .iter()
                .map(|a| IpAddr::V4(a.ip))
                .filter(|ip| discovery.filter.allows(*ip))
                .collect();
            fence(&daemon, &allowed).map_err(|e| {
                format!("cannot limit the mdns daemon to allowed_address_space: {e}")
            })?;
        }
        let properties = [
            (TXT_SERVICE_NAME, discovery.service_name.as_str()),
            (TXT_HTTP_ADDR, self.record.http_addr.as_str()),
        ];
        let info = ServiceInfo::new(
            &discovery.service_type,
            &self.node_id,
            &host_name(&self.node_id),
            gossip.ip(),
            gossip.port(),
            &properties[..],
        )
        .map_err(|e| {
            format!(
                "cannot describe this node as {} instance {:?}: {e} (check cluster_config.discovery.mdns_service)",
                discovery.service_type, self.node_id
            )
        })?;
        daemon
            .register(info.clone())
            .map_err(|e| format!("cannot announce {}: {e}", info.get_fullname()))?;
        let events = daemon
            .browse(&discovery.service_type)
            .map_err(|e| format!("cannot browse for {}: {e}", discovery.service_type))?;
        Ok((daemon, info, events))
    }
}

/// Multicast only on the interfaces holding `allowed` addresses.
fn fence(daemon: &ServiceDaemon, allowed: &[IpAddr]) -> Result<(), mdns_sd::Error> {
    daemon.disable_interface(IfKind::All)?;
    if !allowed.is_empty() {
        daemon.enable_interface(
            allowed
                .iter()
                .map(|ip| IfKind::Addr(*ip))
                .collect::<Vec<_>>(),
        )?;
    }
    Ok(())
}

/// Unregister `fullname` (peers drop it at once) and shut the daemon down, within
/// [`GOODBYE_TIMEOUT`] each.
async fn goodbye(daemon: &ServiceDaemon, fullname: &str) {
    match daemon.unregister(fullname) {
        Ok(status) => match tokio::time::timeout(GOODBYE_TIMEOUT, status.recv_async()).await {
            Ok(Ok(_)) => {
                tracing::info!(method = "mdns", instance = %fullname, "unregistered from mdns")
            }
            _ => {
                tracing::warn!(method = "mdns", instance = %fullname, "mdns unregister did not confirm in time; peers forget this node when its records expire")
            }
        },
        Err(error) => tracing::warn!(method = "mdns", %error, "cannot unregister from mdns"),
    }
    match daemon.shutdown() {
        Ok(status) => {
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, status.recv_async()).await;
        }
        Err(error) => tracing::debug!(method = "mdns", %error, "mdns daemon already stopped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_type_gets_the_local_domain() {
        assert_eq!(service_type("_bifrost._tcp"), "_bifrost._tcp.local.");
        assert_eq!(service_type("_bifrost._tcp.local."), "_bifrost._tcp.local.");
        assert_eq!(service_type("_x._udp.local"), "_x._udp.local.");
    }

    #[test]
    fn host_names_are_dns_labels() {
        assert_eq!(host_name("node-0"), "node-0.local.");
        assert_eq!(host_name("gw_1.example"), "gw-1-example.local.");
        assert_eq!(host_name("__"), "bifrost.local.");
    }

    fn local() -> Vec<LocalAddress> {
        vec![
            LocalAddress {
                ip: "10.1.2.3".parse().unwrap(),
                prefix_len: 24,
                broadcast: Some("10.1.2.255".parse().unwrap()),
                point_to_point: false,
            },
            // No `brd` configured: the interface reports its own address as broadcast.
            LocalAddress {
                ip: "10.253.0.1".parse().unwrap(),
                prefix_len: 24,
                broadcast: Some("10.253.0.1".parse().unwrap()),
                point_to_point: false,
            },
            LocalAddress {
                ip: "127.0.0.1".parse().unwrap(),
                prefix_len: 8,
                broadcast: None,
                point_to_point: false,
            },
        ]
    }

    fn instance(service_name: Option<&str>, addresses: &[&str]) -> Instance {
        Instance {
            fullname: "node-1._bifrost._tcp.local.".into(),
            service_name: service_name.map(str::to_string),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            port: 10101,
        }
    }

    fn seeds(instance: &Instance, space: &[&str]) -> Vec<String> {
        let space: Vec<String> = space.iter().map(|s| s.to_string()).collect();
        seeds_of(
            instance,
            "bifrost",
            "node-0._bifrost._tcp.local.",
            &local(),
            &AddressFilter::new(&space),
        )
        .iter()
        .map(SocketAddr::to_string)
        .collect()
    }

    #[test]
    fn seeds_skip_loopback_network_and_broadcast_addresses() {
        let found = instance(
            Some("bifrost"),
            &[
                "10.1.2.7",
                "10.253.0.1",
                "10.253.0.255",
                "127.0.0.1",
                "10.1.2.0",
                "10.1.2.255",
                "255.255.255.255",
                "0.0.0.0",
                "224.0.0.251",
                "::1",
                "fe80::1",
                "fd00::7",
            ],
        );
        assert_eq!(
            seeds(&found, &[]),
            ["10.1.2.7:10101", "10.253.0.1:10101", "[fd00::7]:10101"]
        );
    }

    #[test]
    fn seeds_come_only_from_the_same_cluster_and_address_space() {
        let found = instance(Some("bifrost"), &["10.1.2.7", "192.0.2.8"]);
        assert_eq!(seeds(&found, &["10.0.0.0/8"]), ["10.1.2.7:10101"]);
        assert!(seeds(&instance(Some("other"), &["10.1.2.7"]), &[]).is_empty());
        assert!(seeds(&instance(None, &["10.1.2.7"]), &[]).is_empty());
        let own = Instance {
            fullname: "node-0._bifrost._tcp.local.".into(),
            ..found.clone()
        };
        assert!(seeds(&own, &[]).is_empty(), "this node itself");
        let no_port = Instance { port: 0, ..found };
        assert!(seeds(&no_port, &[]).is_empty());
    }

    #[test]
    fn a_removed_instance_stops_being_a_seed() {
        let discovery = MdnsDiscovery::new("_bifrost._tcp", "bifrost", &[]);
        discovery.found.lock().unwrap().instances.insert(
            "node-1._bifrost._tcp.local.".into(),
            ["10.1.2.7:10101".parse().unwrap()].into(),
        );
        assert_eq!(discovery.discover().unwrap().len(), 1);
        discovery.observe(
            ServiceEvent::ServiceRemoved(
                "_bifrost._tcp.local.".into(),
                "node-1._bifrost._tcp.local.".into(),
            ),
            "node-0._bifrost._tcp.local.",
            &local(),
        );
        assert_eq!(discovery.discover(), Ok(BTreeSet::new()));
    }

    /// Real multicast needs a non-loopback interface, and traffic must not leave the host: so
    /// this runs only when `BIFROST_TEST_MDNS_SPACE` names the CIDR of a test interface (e.g. a
    /// dummy interface inside a network namespace; see docs/operations.md), and the daemons are
    /// fenced to it.
    #[tokio::test]
    async fn two_nodes_find_each_other_over_multicast() {
        let Ok(space) = std::env::var("BIFROST_TEST_MDNS_SPACE") else {
            eprintln!("skipped: set BIFROST_TEST_MDNS_SPACE to the CIDR of a multicast test interface (multicast on loopback does not work, and this must not reach a real network)");
            return;
        };
        let space = vec![space];
        let filter = AddressFilter::new(&space);
        let ip = local_addresses()
            .unwrap()
            .into_iter()
            .find(|a| filter.allows(IpAddr::V4(a.ip)))
            .unwrap_or_else(|| panic!("no local address inside {space:?}"))
            .ip;
        let (stop, _) = watch::channel(false);
        let nodes: Vec<(MdnsDiscovery, SocketAddr)> = (0..2)
            .map(|i| {
                (
                    MdnsDiscovery::new("_bifrost-test._tcp", "bifrost", &space),
                    SocketAddr::new(IpAddr::V4(ip), 20001 + i),
                )
            })
            .collect();
        let stranger = MdnsDiscovery::new("_bifrost-test._tcp", "other", &space);
        let mut tasks = Vec::new();
        for (i, (node, gossip)) in nodes.iter().enumerate() {
            let record = NodeRecord {
                gossip_addr: gossip.to_string(),
                http_addr: "127.0.0.1:8080".into(),
            };
            tasks.push(tokio::spawn(
                node.registration(&format!("node-{i}"), &record)
                    .run(stop.subscribe()),
            ));
        }
        let record = NodeRecord {
            gossip_addr: SocketAddr::new(IpAddr::V4(ip), 20009).to_string(),
            http_addr: "127.0.0.1:8080".into(),
        };
        tasks.push(tokio::spawn(
            stranger
                .registration("stranger", &record)
                .run(stop.subscribe()),
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for (i, (node, _)) in nodes.iter().enumerate() {
            let other = nodes[1 - i].1;
            loop {
                let found = node.discover().unwrap();
                if found.contains(&other) {
                    assert_eq!(found.len(), 1, "only the other node: {found:?}");
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "node-{i} found {found:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert_eq!(stranger.discover(), Ok(BTreeSet::new()), "another cluster");
        let _ = stop.send(true);
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(3), task)
                .await
                .expect("stops when told")
                .expect("no panic");
        }
    }

    #[test]
    fn an_instance_announced_through_mdns_sd_becomes_seeds() {
        // Round trip through mdns-sd's own types, without starting a daemon (no multicast).
        let info = ServiceInfo::new(
            "_bifrost._tcp.local.",
            "node-1",
            "node-1.local.",
            "10.1.2.7",
            10101,
            &[
                (TXT_SERVICE_NAME, "bifrost"),
                (TXT_HTTP_ADDR, "10.1.2.7:8080"),
            ][..],
        )
        .unwrap();
        let discovery = MdnsDiscovery::new("_bifrost._tcp", "bifrost", &["10.0.0.0/8".into()]);
        discovery.observe(
            ServiceEvent::ServiceResolved(Box::new(info.as_resolved_service())),
            "node-0._bifrost._tcp.local.",
            &local(),
        );
        assert_eq!(
            discovery
                .discover()
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            ["10.1.2.7:10101".parse::<SocketAddr>().unwrap()]
        );
    }
}
