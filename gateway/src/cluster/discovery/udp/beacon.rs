//! The beacon: its plaintext wire form ([`Beacon::encode`], [`Beacon::decode`]) and
//! [`BeaconCodec`], which seals outgoing beacons and checks incoming ones for one cluster.
//!
//! Wire format before sealing: [`MAGIC`], a version byte, then three fields, each a length byte
//! and UTF-8 text: the cluster id (`service_name`), the node id and the advertised gossip
//! address (`ip:port`). With a cluster key the whole beacon is sealed like gossip
//! ([`GossipSeal`], AES-256-GCM) under associated data that names the cluster and marks the
//! packet as a beacon, so a beacon cannot be fed to the gossip port or the other way round.

use std::net::SocketAddr;

use crate::cluster::transport::{AddressFilter, GossipSeal};

/// First bytes of every beacon's plaintext.
pub const MAGIC: &[u8; 4] = b"BFBC";
/// Beacon format version.
pub const VERSION: u8 = 1;

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

    /// The cluster id this codec accepts beacons of.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// Whether beacons are sealed with a cluster key.
    pub fn is_encrypted(&self) -> bool {
        self.seal.is_encrypted()
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
}
