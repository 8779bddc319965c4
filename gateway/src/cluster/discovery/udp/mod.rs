//! `udp` discovery: every node broadcasts a small beacon on `udp_broadcast_port` every
//! [`BEACON_INTERVAL`] and listens for the others' on the same port; seeds are the gossip
//! addresses heard within [`BEACON_TTL`].
//!
//! Broadcast reaches every host on the segment, so the method is fenced: config validation
//! requires `allowed_address_space`, beacons are only sent out of interfaces whose address is
//! inside it, and beacons whose sender or advertised gossip address is outside it are dropped.
//!
//! [`beacon`] is the wire format and its sealing; [`task`] the broadcast-and-listen loop.

pub mod beacon;
pub mod task;

pub use beacon::{Beacon, BeaconCodec, Dropped, MAGIC, VERSION};
pub use task::{
    broadcast_targets, reaches_beyond_loopback, BeaconRegistration, UdpDiscovery, BEACON_INTERVAL,
    BEACON_TTL,
};
