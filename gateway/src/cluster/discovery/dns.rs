//! `dns` discovery: resolve `dns_names` every refresh.
//!
//! A name starting with `_` (`_gossip._udp.bifrost-headless.ai.svc.cluster.local`) is an SRV
//! name: each record gives a target and a port, and the target's addresses (from the answer's
//! additional section, else looked up) become seeds. Any other name is resolved to A/AAAA
//! records through the system resolver and given `bind_port` (or its own `host:port`). SRV
//! lookups use hickory's resolver with the system configuration (`/etc/resolv.conf`).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::config::ResolverConfig;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::TokioResolver;

use super::resolve;

/// How one entry of `dns_names` is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsName {
    /// SRV records of this name: targets and ports come from the records.
    Srv(String),
    /// A/AAAA records of `host` (or `host` itself, an IP literal), with `port`.
    Host {
        /// Name or IP literal.
        host: String,
        /// Gossip port of every address found.
        port: u16,
    },
}

impl DnsName {
    /// Classify `name`: `_service._proto.domain` is SRV; `host:port`, `[v6]:port` and IP
    /// literals keep their own port; anything else gets `default_port`.
    pub fn classify(name: &str, default_port: u16) -> Self {
        let name = name.trim();
        if name.starts_with('_') {
            return Self::Srv(name.to_string());
        }
        if let Ok(addr) = name.parse::<SocketAddr>() {
            return Self::Host {
                host: addr.ip().to_string(),
                port: addr.port(),
            };
        }
        if let Ok(ip) = name.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Self::Host {
                host: ip.to_string(),
                port: default_port,
            };
        }
        if let Some((host, port)) = name.rsplit_once(':') {
            if let Ok(port) = port.parse::<u16>() {
                return Self::Host {
                    host: host.to_string(),
                    port,
                };
            }
        }
        Self::Host {
            host: name.to_string(),
            port: default_port,
        }
    }
}

/// `host:port` for a lookup, IPv6 literals bracketed.
fn host_port(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// Seeds from DNS names.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsDiscovery {
    names: Vec<String>,
    port: u16,
    /// Ask this server instead of the system's (tests).
    nameserver: Option<SocketAddr>,
}

impl DnsDiscovery {
    /// Discovery of `names`, giving `port` to addresses that carry none.
    pub fn new(names: &[String], port: u16) -> Self {
        Self {
            names: names.to_vec(),
            port,
            nameserver: None,
        }
    }

    /// The same, asking the DNS server at `nameserver` for SRV records.
    pub fn with_nameserver(names: &[String], port: u16, nameserver: SocketAddr) -> Self {
        Self {
            nameserver: Some(nameserver),
            ..Self::new(names, port)
        }
    }

    fn resolver(&self) -> Result<TokioResolver, String> {
        let built = match self.nameserver {
            None => TokioResolver::builder_tokio()
                .map_err(|e| {
                    format!("cannot read the system DNS configuration (/etc/resolv.conf): {e}")
                })?
                .build(),
            Some(server) => {
                let mut config = hickory_resolver::config::NameServerConfig::udp(server.ip());
                for connection in &mut config.connections {
                    connection.port = server.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![config]),
                    TokioRuntimeProvider::default(),
                )
                .build()
            }
        };
        built.map_err(|e| format!("cannot build a DNS resolver: {e}"))
    }

    /// Addresses of every SRV record of `name`: `(target, port)` pairs resolved through the
    /// additional section when it carries the target, else through `resolver`.
    async fn lookup_srv(
        &self,
        resolver: &TokioResolver,
        name: &str,
    ) -> Result<BTreeSet<SocketAddr>, String> {
        let lookup = resolver
            .srv_lookup(name)
            .await
            .map_err(|e| format!("SRV lookup of {name} failed: {e}"))?;
        let glue = |target: &Name| -> Vec<IpAddr> {
            lookup
                .additionals()
                .iter()
                .filter(|r| r.name == *target)
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                    _ => None,
                })
                .collect()
        };
        let mut found = BTreeSet::new();
        for record in lookup.answers() {
            let RData::SRV(srv) = &record.data else {
                continue;
            };
            let mut ips = glue(&srv.target);
            if ips.is_empty() {
                match resolver.lookup_ip(srv.target.clone()).await {
                    Ok(addresses) => ips.extend(addresses.iter()),
                    Err(error) => {
                        tracing::debug!(method = "dns", srv = %name, target = %srv.target, %error, "SRV target does not resolve");
                    }
                }
            }
            found.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, srv.port)));
        }
        Ok(found)
    }

    /// Every address the names resolve to; an error only when none resolves to anything.
    pub async fn discover(&self) -> Result<BTreeSet<SocketAddr>, String> {
        let mut found = BTreeSet::new();
        let mut hosts = Vec::new();
        let mut failures = Vec::new();
        let mut resolver = None;
        for name in &self.names {
            match DnsName::classify(name, self.port) {
                DnsName::Host { host, port } => hosts.push(host_port(&host, port)),
                DnsName::Srv(srv) => {
                    if resolver.is_none() {
                        resolver = Some(self.resolver()?);
                    }
                    let Some(resolver) = resolver.as_ref() else {
                        continue;
                    };
                    match self.lookup_srv(resolver, &srv).await {
                        Ok(addrs) => found.extend(addrs),
                        Err(error) => failures.push(error),
                    }
                }
            }
        }
        found.extend(resolve(hosts).await);
        if found.is_empty() && !self.names.is_empty() {
            let mut message = format!(
                "no addresses for {} (check cluster_config.discovery.dns_names and the DNS records; SRV names start with `_`)",
                self.names.join(", ")
            );
            if !failures.is_empty() {
                message.push_str(": ");
                message.push_str(&failures.join("; "));
            }
            return Err(message);
        }
        for failure in failures {
            tracing::debug!(method = "dns", error = %failure, "one dns name did not resolve");
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::op::{Message, MessageType, OpCode};
    use hickory_resolver::proto::rr::rdata::{A, SRV};
    use hickory_resolver::proto::rr::{Record, RecordType};

    #[test]
    fn names_starting_with_an_underscore_are_srv_and_others_get_the_port() {
        let srv = "_gossip._udp.bifrost-headless.ai.svc.cluster.local";
        assert_eq!(DnsName::classify(srv, 10101), DnsName::Srv(srv.into()));
        let host = |host: &str, port| DnsName::Host {
            host: host.into(),
            port,
        };
        assert_eq!(
            DnsName::classify("bifrost-headless.ai.svc", 10101),
            host("bifrost-headless.ai.svc", 10101)
        );
        assert_eq!(
            DnsName::classify("gw.local:7000", 10101),
            host("gw.local", 7000)
        );
        assert_eq!(
            DnsName::classify("10.0.0.1:7000", 10101),
            host("10.0.0.1", 7000)
        );
        assert_eq!(
            DnsName::classify("[fd00::1]:7000", 10101),
            host("fd00::1", 7000)
        );
        assert_eq!(DnsName::classify("fd00::1", 10101), host("fd00::1", 10101));
        assert_eq!(
            DnsName::classify("[fd00::1]", 10101),
            host("fd00::1", 10101)
        );
        assert_eq!(host_port("fd00::1", 1), "[fd00::1]:1");
    }

    #[tokio::test]
    async fn dns_names_get_the_gossip_port() {
        let found = DnsDiscovery::new(&["localhost".into()], 10101)
            .discover()
            .await
            .expect("localhost resolves");
        assert!(!found.is_empty());
        assert!(found
            .iter()
            .all(|a| a.port() == 10101 && a.ip().is_loopback()));
    }

    /// A DNS server on loopback that knows one SRV name with two targets: `gw-0.test.` with
    /// glue in the additional section, `gw-1.test.` answered by a separate A query.
    async fn tiny_dns_server() -> SocketAddr {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = socket.local_addr().expect("address");
        let name = |n: &str| Name::from_ascii(n).expect("name");
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 1500];
            while let Ok((len, from)) = socket.recv_from(&mut buffer).await {
                let Ok(query) = Message::from_vec(&buffer[..len]) else {
                    continue;
                };
                let mut answer =
                    Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
                answer.metadata.recursion_desired = query.metadata.recursion_desired;
                answer.metadata.recursion_available = true;
                answer.metadata.authoritative = true;
                for q in &query.queries {
                    answer.add_query(q.clone());
                    let asked = q.name().to_ascii();
                    match (q.query_type(), asked.as_str()) {
                        (RecordType::SRV, "_gossip._udp.gw.test.") => {
                            for (target, port) in [("gw-0.test.", 7001), ("gw-1.test.", 7002)] {
                                answer.add_answer(Record::from_rdata(
                                    name("_gossip._udp.gw.test."),
                                    30,
                                    RData::SRV(SRV::new(0, 50, port, name(target))),
                                ));
                            }
                            answer.additionals.push(Record::from_rdata(
                                name("gw-0.test."),
                                30,
                                RData::A(A::new(127, 0, 0, 10)),
                            ));
                        }
                        (RecordType::A, "gw-1.test.") => {
                            answer.add_answer(Record::from_rdata(
                                name("gw-1.test."),
                                30,
                                RData::A(A::new(127, 0, 0, 11)),
                            ));
                        }
                        _ => {}
                    }
                }
                if let Ok(bytes) = answer.to_vec() {
                    let _ = socket.send_to(&bytes, from).await;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn srv_records_give_targets_and_their_ports() {
        let server = tiny_dns_server().await;
        let found = DnsDiscovery::with_nameserver(&["_gossip._udp.gw.test.".into()], 10101, server)
            .discover()
            .await
            .expect("SRV resolves");
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [
                "127.0.0.10:7001".parse::<SocketAddr>().expect("addr"),
                "127.0.0.11:7002".parse().expect("addr"),
            ]
        );
        let error = DnsDiscovery::with_nameserver(&["_none._udp.gw.test.".into()], 10101, server)
            .discover()
            .await
            .unwrap_err();
        assert!(error.contains("_none._udp.gw.test."), "{error}");
        assert!(error.contains("SRV lookup"), "{error}");
    }
}
