//! This host's IPv4 interface addresses and their subnets, for the discovery methods that work
//! on the local segment: `udp` (where to broadcast beacons) and `mdns` (which announced
//! addresses are no usable seed).

use std::net::Ipv4Addr;

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

    /// Whether `ip` is the network or broadcast address of this address's subnet (a /31 or /32
    /// has neither).
    pub fn is_network_or_broadcast(&self, ip: Ipv4Addr) -> bool {
        let Some(broadcast) = self.broadcast_address() else {
            return false;
        };
        let host_bits = u32::MAX
            .checked_shr(u32::from(self.prefix_len))
            .unwrap_or(0);
        let network = Ipv4Addr::from(u32::from(self.ip) & !host_bits);
        ip == network || ip == broadcast
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cluster::testing::local_address as address;

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
    }

    #[test]
    fn the_broadcast_address_is_the_reported_one_only_inside_the_subnet() {
        let reported = address("10.1.2.3", 24, Some("10.1.2.255"));
        assert_eq!(reported.broadcast_address(), "10.1.2.255".parse().ok());
        // No `brd` configured: the interface reports its own address.
        let own = address("172.20.1.5", 16, Some("172.20.1.5"));
        assert_eq!(own.broadcast_address(), "172.20.255.255".parse().ok());
        let elsewhere = address("192.168.7.9", 20, Some("10.0.0.255"));
        assert_eq!(elsewhere.broadcast_address(), "192.168.15.255".parse().ok());
        let p2p = LocalAddress {
            point_to_point: true,
            ..address("10.9.0.1", 24, Some("10.9.0.255"))
        };
        assert_eq!(p2p.broadcast_address(), None);
        assert_eq!(address("10.9.0.1", 32, None).broadcast_address(), None);
    }

    #[test]
    fn network_and_broadcast_addresses_of_a_subnet_are_recognised() {
        let local = address("10.1.2.3", 24, Some("10.1.2.255"));
        assert!(local.is_network_or_broadcast("10.1.2.0".parse().unwrap()));
        assert!(local.is_network_or_broadcast("10.1.2.255".parse().unwrap()));
        assert!(!local.is_network_or_broadcast("10.1.2.4".parse().unwrap()));
        assert!(!local.is_network_or_broadcast("10.1.3.0".parse().unwrap()));
        let host_route = address("10.9.0.1", 32, None);
        assert!(!host_route.is_network_or_broadcast("10.9.0.1".parse().unwrap()));
    }
}
