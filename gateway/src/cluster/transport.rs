//! Sealed gossip: a chitchat [`Transport`] that encrypts and authenticates every UDP datagram
//! with AES-256-GCM under the shared cluster key, and drops datagrams from outside
//! `discovery.allowed_address_space`.
//!
//! Wire format of one datagram: a random 96-bit nonce, then the AES-256-GCM ciphertext of
//! chitchat's own datagram with its 16-byte tag (28 bytes of overhead). The associated data is
//! the cluster id, so two clusters sharing a key cannot read or feed each other.
//!
//! chitchat keeps its wire encoding private (a `Socket` exchanges envelopes, not bytes), so each
//! [`SealedSocket`] runs chitchat's own UDP socket as a codec on a private loopback port: an
//! outgoing envelope is encoded by sending it to a loopback tap, sealed, and sent on the real
//! socket; an incoming datagram is opened and handed to the codec through the tap, which parses
//! it. Both hops are loopback datagrams inside this process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
use chitchat::ChitchatEnvelope;
use sha2::{Digest, Sha256};

use crate::config::{parse_cidr, ClusterConfig};
use crate::telemetry::metrics::GossipMetrics;

/// Environment variable that overrides `cluster_config.gossip.encryption_key`.
pub const CLUSTER_KEY_ENV: &str = "BIFROST_CLUSTER_KEY";
/// Mixed into the key derivation so the cluster key yields a key used for nothing else.
const KEY_CONTEXT: &[u8] = b"bifrost gossip AES-256-GCM key v1\0";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes a sealed datagram adds to chitchat's.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;
/// How long a loopback hop through the codec may take before the datagram is given up.
const RELAY_TIMEOUT: Duration = Duration::from_millis(250);

/// The cluster key: env `BIFROST_CLUSTER_KEY`, else `gossip.encryption_key` (already resolved
/// from `env.NAME`); empty counts as unset.
pub fn cluster_key(config: &ClusterConfig) -> Option<String> {
    std::env::var(CLUSTER_KEY_ENV)
        .ok()
        .filter(|k| !k.is_empty())
        .or_else(|| config.gossip.encryption_key.clone())
        .filter(|k| !k.is_empty())
}

/// Seals and opens datagrams for one cluster; `None` cipher means plaintext gossip.
pub struct GossipSeal {
    cipher: Option<Aes256Gcm>,
    cluster_id: Vec<u8>,
}

impl GossipSeal {
    /// A seal keyed by `key` (any string; 32 bytes are derived with SHA-256 and a fixed
    /// context) for the cluster named `cluster_id`.
    pub fn new(key: &str, cluster_id: &str) -> Self {
        let derived: [u8; 32] = Sha256::new()
            .chain_update(KEY_CONTEXT)
            .chain_update(key.as_bytes())
            .finalize()
            .into();
        Self {
            cipher: Some(Aes256Gcm::new(&Key::<Aes256Gcm>::from(derived))),
            cluster_id: cluster_id.as_bytes().to_vec(),
        }
    }

    /// No encryption: datagrams pass as they are.
    pub fn plaintext() -> Self {
        Self {
            cipher: None,
            cluster_id: Vec::new(),
        }
    }

    /// Whether datagrams are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// `nonce || ciphertext || tag`.
    pub fn seal(&self, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let Some(cipher) = &self.cipher else {
            return Ok(plaintext.to_vec());
        };
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| anyhow::anyhow!("no randomness for a nonce: {e}"))?;
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &self.cluster_id,
                },
            )
            .map_err(|_| anyhow::anyhow!("gossip datagram too large to encrypt"))?;
        let mut packet = Vec::with_capacity(NONCE_LEN + sealed.len());
        packet.extend_from_slice(&nonce);
        packet.extend_from_slice(&sealed);
        Ok(packet)
    }

    /// The plaintext, or `None` when the datagram was not sealed with this key for this cluster.
    pub fn open(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let Some(cipher) = &self.cipher else {
            return Some(packet.to_vec());
        };
        if packet.len() < SEAL_OVERHEAD {
            return None;
        }
        let (nonce, sealed) = packet.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).ok()?;
        cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: &self.cluster_id,
                },
            )
            .ok()
    }
}

/// `discovery.allowed_address_space`: the networks gossip may come from (empty: any).
#[derive(Debug, Clone, Default)]
pub struct AddressFilter {
    networks: Vec<(IpAddr, u8)>,
}

impl AddressFilter {
    /// From CIDR strings; invalid ones were already rejected by config validation and are
    /// skipped here.
    pub fn new(cidrs: &[String]) -> Self {
        Self {
            networks: cidrs.iter().filter_map(|c| parse_cidr(c).ok()).collect(),
        }
    }

    /// Whether `ip` falls in one of the networks (always, when there are none).
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.networks.is_empty() {
            return true;
        }
        // A dual-stack socket reports IPv4 peers as `::ffff:a.b.c.d`.
        let ip = ip.to_canonical();
        self.networks
            .iter()
            .any(|(network, prefix)| contains(*network, *prefix, ip))
    }
}

fn contains(network: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (network, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// chitchat's UDP transport with every datagram sealed and filtered.
pub struct SealedTransport {
    seal: Arc<GossipSeal>,
    filter: AddressFilter,
    metrics: GossipMetrics,
}

impl SealedTransport {
    /// A transport sealing with `seal`, accepting datagrams that `filter` allows.
    pub fn new(seal: GossipSeal, filter: AddressFilter, metrics: GossipMetrics) -> Self {
        Self {
            seal: Arc::new(seal),
            filter,
            metrics,
        }
    }
}

#[async_trait]
impl Transport for SealedTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let wire = tokio::net::UdpSocket::bind(listen_addr)
            .await
            .with_context(|| format!("failed to bind to {listen_addr}/UDP for gossip"))?;
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let mut codec = UdpSocket::open(loopback).await?;
        let codec_addr = codec.local_addr()?;
        let tap = tokio::net::UdpSocket::bind(loopback)
            .await
            .context("failed to bind the gossip codec tap on loopback")?;
        let tap_addr = tap.local_addr()?;
        let marker = tokio::net::UdpSocket::bind(loopback)
            .await
            .context("failed to bind the gossip codec marker on loopback")?;
        let marker_addr = marker.local_addr()?;
        let mut buf = vec![0u8; MAX_DATAGRAM].into_boxed_slice();
        let marker_bytes = encode(
            &mut codec,
            codec_addr,
            &marker,
            marker_addr,
            &mut buf,
            marker_envelope(),
        )
        .await
        .context("failed to encode the gossip codec marker")?;
        Ok(Box::new(SealedSocket {
            wire,
            codec,
            codec_addr,
            tap,
            tap_addr,
            marker,
            marker_addr,
            marker_bytes,
            relayed: None,
            buf,
            seal: self.seal.clone(),
            filter: self.filter.clone(),
            metrics: self.metrics.clone(),
            dropped: DropCounts::default(),
        }))
    }
}

/// The envelope sent after each relayed datagram: chitchat's smallest message.
fn marker_envelope() -> ChitchatEnvelope {
    ChitchatEnvelope {
        version: chitchat::ProtocolVersion::V0,
        message: chitchat::ChitchatMessage::BadCluster,
    }
}

/// chitchat's bytes for `envelope`: the codec sends it to `tap`, which reads it back.
async fn encode(
    codec: &mut UdpSocket,
    codec_addr: SocketAddr,
    tap: &tokio::net::UdpSocket,
    tap_addr: SocketAddr,
    buf: &mut [u8],
    envelope: ChitchatEnvelope,
) -> anyhow::Result<Vec<u8>> {
    // Leftovers of a cancelled send would be taken for this envelope's bytes.
    while tap.try_recv_from(buf).is_ok() {}
    codec.send(tap_addr, envelope).await?;
    loop {
        let (len, from) = tokio::time::timeout(RELAY_TIMEOUT, tap.recv_from(buf))
            .await
            .context("timeout waiting for the gossip codec")?
            .context("gossip codec tap failed")?;
        if from == codec_addr {
            return Ok(buf[..len].to_vec());
        }
    }
}

/// A datagram handed to the codec whose marker has not come back yet.
struct Relayed {
    from: SocketAddr,
    len: usize,
    envelope: Option<ChitchatEnvelope>,
}

/// Dropped datagrams by reason, for rate-limited warnings.
#[derive(Default)]
struct DropCounts {
    auth: u64,
    address: u64,
    parse: u64,
}

/// One gossip socket: the real one on the gossip port, plus the loopback codec pair.
///
/// Receiving: an opened datagram goes to the codec from `tap`, followed by a marker envelope
/// from `marker`. The codec skips what it cannot parse, so whatever it returns before the
/// marker is that datagram's envelope, and the marker alone means the datagram did not parse.
/// No timeout decides it, and the state lives in `relayed`, so chitchat cancelling `recv` at
/// every gossip tick loses nothing.
struct SealedSocket {
    wire: tokio::net::UdpSocket,
    codec: UdpSocket,
    codec_addr: SocketAddr,
    tap: tokio::net::UdpSocket,
    tap_addr: SocketAddr,
    marker: tokio::net::UdpSocket,
    marker_addr: SocketAddr,
    /// chitchat's encoding of the marker; its first two bytes are chitchat's magic number.
    marker_bytes: Vec<u8>,
    relayed: Option<Relayed>,
    buf: Box<[u8]>,
    seal: Arc<GossipSeal>,
    filter: AddressFilter,
    metrics: GossipMetrics,
    dropped: DropCounts,
}

impl SealedSocket {
    fn drop_auth(&mut self, from: SocketAddr, len: usize) {
        self.dropped.auth += 1;
        self.metrics.dropped("auth");
        if self.dropped.auth.is_power_of_two() {
            tracing::warn!(
                %from,
                len,
                dropped = self.dropped.auth,
                "dropped a gossip packet that failed authentication (wrong cluster key or cluster id?)"
            );
        }
    }

    fn drop_address(&mut self, from: SocketAddr) {
        self.dropped.address += 1;
        self.metrics.dropped("address");
        if self.dropped.address.is_power_of_two() {
            tracing::warn!(
                %from,
                dropped = self.dropped.address,
                "dropped a gossip packet from outside allowed_address_space"
            );
        }
    }

    fn drop_parse(&mut self, from: SocketAddr, len: usize) {
        self.dropped.parse += 1;
        self.metrics.dropped("parse");
        if self.dropped.parse.is_power_of_two() {
            tracing::warn!(
                %from,
                len,
                dropped = self.dropped.parse,
                "dropped a gossip packet that is not a chitchat message"
            );
        }
    }

    /// Whether `plaintext` can be a chitchat datagram: its magic number and room for the
    /// version and message type. Screens out junk before the codec (which would log each).
    fn looks_like_chitchat(&self, plaintext: &[u8]) -> bool {
        plaintext.len() >= 4 && plaintext[..2] == self.marker_bytes[..2]
    }
}

#[async_trait]
impl Socket for SealedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.wire
            .local_addr()
            .context("failed to get the gossip socket address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let plaintext = encode(
            &mut self.codec,
            self.codec_addr,
            &self.tap,
            self.tap_addr,
            &mut self.buf,
            envelope,
        )
        .await?;
        let packet = self.seal.seal(&plaintext)?;
        if packet.len() > MAX_DATAGRAM {
            tracing::warn!(
                %to,
                len = packet.len(),
                "failed to broadcast: sealed gossip datagram exceeds the UDP maximum; skipped"
            );
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        let sent = self
            .wire
            .send_to(&packet, to)
            .await
            .context("failed to send chitchat message to peer")?;
        self.metrics.bytes("sent", sent);
        Ok(SendOutcome {
            num_bytes_sent: sent,
        })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            if self.relayed.is_some() {
                // Cancel-safe: chitchat's socket parses right after its own recv_from.
                let outcome = self.codec.recv().await?;
                if outcome.from_addr == self.tap_addr {
                    if let Some(relayed) = &mut self.relayed {
                        relayed.envelope = Some(outcome.envelope);
                    }
                    continue;
                }
                if outcome.from_addr != self.marker_addr {
                    // Some other local process wrote to the codec port; not gossip.
                    continue;
                }
                let Some(relayed) = self.relayed.take() else {
                    continue;
                };
                match relayed.envelope {
                    Some(envelope) => {
                        return Ok(RecvOutcome {
                            from_addr: relayed.from,
                            envelope,
                            num_bytes_received: relayed.len,
                        })
                    }
                    None => {
                        self.drop_parse(relayed.from, relayed.len);
                        continue;
                    }
                }
            }
            let (len, from) = match self.wire.recv_from(&mut self.buf).await {
                Ok(received) => received,
                Err(error) if is_transient(&error) => {
                    tracing::debug!(%error, "transient gossip recv error");
                    continue;
                }
                Err(error) => return Err(error).context("fatal UDP recv error"),
            };
            self.metrics.bytes("received", len);
            if !self.filter.allows(from.ip()) {
                self.drop_address(from);
                continue;
            }
            let Some(plaintext) = self.seal.open(&self.buf[..len]) else {
                self.drop_auth(from, len);
                continue;
            };
            if !self.looks_like_chitchat(&plaintext) {
                self.drop_parse(from, len);
                continue;
            }
            // Both hands-off happen before `relayed` is set: a cancellation between them
            // leaves a stray datagram and marker in the codec, which the branch above reads
            // as one more relayed datagram's result or ignores.
            self.tap
                .send_to(&plaintext, self.codec_addr)
                .await
                .context("gossip codec tap failed")?;
            self.marker
                .send_to(&self.marker_bytes, self.codec_addr)
                .await
                .context("gossip codec marker failed")?;
            self.relayed = Some(Relayed {
                from,
                len,
                envelope: None,
            });
        }
    }
}

/// Whether a UDP socket error is worth a retry on the same socket: an ICMP error surfacing from
/// an earlier send (reset, refused), a short allocation failure, a spurious wakeup or a signal.
/// Anything else means the socket is unusable.
pub fn is_transient(error: &std::io::Error) -> bool {
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

    fn seal(key: &str, cluster: &str) -> GossipSeal {
        GossipSeal::new(key, cluster)
    }

    #[test]
    fn a_sealed_datagram_opens_with_the_same_key_and_cluster() {
        let s = seal("k".repeat(64).as_str(), "bifrost");
        let packet = s.seal(b"hello gossip").unwrap();
        assert_eq!(packet.len(), b"hello gossip".len() + SEAL_OVERHEAD);
        assert!(
            !packet.windows(5).any(|w| w == b"hello"),
            "ciphertext hides the plaintext"
        );
        assert_eq!(s.open(&packet).as_deref(), Some(&b"hello gossip"[..]));
    }

    #[test]
    fn every_datagram_gets_a_fresh_nonce() {
        let s = seal("key", "bifrost");
        assert_ne!(s.seal(b"same").unwrap(), s.seal(b"same").unwrap());
    }

    #[test]
    fn a_tampered_datagram_is_refused() {
        let s = seal("key", "bifrost");
        let packet = s.seal(b"counters").unwrap();
        for index in [0, NONCE_LEN, packet.len() - 1] {
            let mut tampered = packet.clone();
            tampered[index] ^= 1;
            assert_eq!(s.open(&tampered), None, "flipped byte {index}");
        }
        assert_eq!(s.open(&packet[..packet.len() - 1]), None, "truncated");
        assert_eq!(s.open(&packet[..5]), None, "shorter than a nonce and tag");
    }

    #[test]
    fn a_datagram_sealed_with_another_key_is_refused() {
        let packet = seal("key A", "bifrost").seal(b"counters").unwrap();
        assert_eq!(seal("key B", "bifrost").open(&packet), None);
    }

    #[test]
    fn a_datagram_from_another_cluster_with_the_same_key_is_refused() {
        let packet = seal("key", "cluster-a").seal(b"counters").unwrap();
        assert_eq!(seal("key", "cluster-b").open(&packet), None);
    }

    #[test]
    fn plaintext_mode_passes_datagrams_unchanged() {
        let s = GossipSeal::plaintext();
        assert!(!s.is_encrypted());
        assert_eq!(s.seal(b"abc").unwrap(), b"abc");
        assert_eq!(s.open(b"abc").as_deref(), Some(&b"abc"[..]));
        assert_eq!(seal("key", "c").open(b"abc"), None);
    }

    #[test]
    fn the_address_filter_admits_only_listed_networks() {
        let filter = AddressFilter::new(&[
            "10.0.0.0/8".to_string(),
            "192.168.1.7".to_string(),
            "fd00::/8".to_string(),
        ]);
        let allows = |ip: &str| filter.allows(ip.parse().unwrap());
        assert!(allows("10.1.2.3"));
        assert!(allows("192.168.1.7"));
        assert!(!allows("192.168.1.8"));
        assert!(!allows("11.0.0.1"));
        assert!(allows("fd12::1"));
        assert!(!allows("fe80::1"));
        assert!(
            allows("::ffff:10.9.9.9"),
            "IPv4-mapped addresses count as IPv4"
        );
        assert!(!allows("127.0.0.1"));
    }

    #[test]
    fn an_empty_address_filter_admits_everything_and_slash_zero_too() {
        assert!(AddressFilter::default().allows("203.0.113.9".parse().unwrap()));
        let any = AddressFilter::new(&["0.0.0.0/0".to_string()]);
        assert!(any.allows("203.0.113.9".parse().unwrap()));
        assert!(!any.allows("::1".parse().unwrap()));
    }

    fn envelope() -> ChitchatEnvelope {
        ChitchatEnvelope {
            version: chitchat::ProtocolVersion::V0,
            message: chitchat::ChitchatMessage::BadCluster,
        }
    }

    async fn socket(transport: &SealedTransport) -> Box<dyn Socket> {
        transport
            .open(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn sealed_sockets_with_one_key_exchange_envelopes_and_count_bytes() {
        let metrics = GossipMetrics::default();
        let transport = SealedTransport::new(
            seal("key", "bifrost"),
            AddressFilter::default(),
            metrics.clone(),
        );
        let mut a = socket(&transport).await;
        let mut b = socket(&transport).await;
        let sent = a.send(b.local_addr().unwrap(), envelope()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), b.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.from_addr, a.local_addr().unwrap());
        assert_eq!(got.envelope, envelope());
        assert_eq!(got.num_bytes_received, sent.num_bytes_sent);
        assert_eq!(metrics.bytes_total("sent"), sent.num_bytes_sent as u64);
        assert_eq!(metrics.bytes_total("received"), sent.num_bytes_sent as u64);
    }

    #[tokio::test]
    async fn a_socket_with_another_key_is_dropped_and_counted() {
        let metrics = GossipMetrics::default();
        let good = SealedTransport::new(
            seal("key A", "bifrost"),
            AddressFilter::default(),
            metrics.clone(),
        );
        let bad = SealedTransport::new(
            seal("key B", "bifrost"),
            AddressFilter::default(),
            GossipMetrics::default(),
        );
        let mut receiver = socket(&good).await;
        let mut intruder = socket(&bad).await;
        let to = receiver.local_addr().unwrap();
        intruder.send(to, envelope()).await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_millis(300), receiver.recv()).await;
        assert!(outcome.is_err(), "nothing is delivered");
        assert_eq!(metrics.dropped_total("auth"), 1);
    }

    #[tokio::test]
    async fn a_socket_outside_the_address_space_is_dropped_and_counted() {
        let metrics = GossipMetrics::default();
        let guarded = SealedTransport::new(
            seal("key", "bifrost"),
            AddressFilter::new(&["10.0.0.0/8".to_string()]),
            metrics.clone(),
        );
        let open = SealedTransport::new(
            seal("key", "bifrost"),
            AddressFilter::default(),
            GossipMetrics::default(),
        );
        let mut receiver = socket(&guarded).await;
        let mut sender = socket(&open).await;
        sender
            .send(receiver.local_addr().unwrap(), envelope())
            .await
            .unwrap();
        let outcome = tokio::time::timeout(Duration::from_millis(300), receiver.recv()).await;
        assert!(outcome.is_err(), "nothing is delivered");
        assert_eq!(metrics.dropped_total("address"), 1);
        assert_eq!(metrics.dropped_total("auth"), 0);
    }

    /// A cheap deterministic generator for junk datagrams (xorshift64*).
    struct Junk(u64);

    impl Junk {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// A datagram of 0..=65,507 bytes; every fourth starts with chitchat's magic number
        /// so the codec itself has to refuse it.
        fn datagram(&mut self, magic: &[u8]) -> Vec<u8> {
            let len = (self.next() % (MAX_DATAGRAM as u64 + 1)) as usize;
            let mut bytes = Vec::with_capacity(len + 8);
            while bytes.len() < len {
                bytes.extend_from_slice(&self.next().to_le_bytes());
            }
            bytes.truncate(len);
            if self.next().is_multiple_of(4) && len >= 4 {
                bytes[..2].copy_from_slice(magic);
            }
            bytes
        }
    }

    /// Receives like chitchat does: `recv` cancelled at every 100 ms gossip tick.
    fn receive_like_chitchat(
        mut socket: Box<dyn Socket>,
    ) -> tokio::sync::mpsc::UnboundedReceiver<RecvOutcome> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match tokio::time::timeout(Duration::from_millis(100), socket.recv()).await {
                    Ok(Ok(outcome)) => {
                        if tx.send(outcome).is_err() {
                            return;
                        }
                    }
                    Ok(Err(error)) => panic!("gossip socket failed: {error:#}"),
                    Err(_) if tx.is_closed() => return,
                    Err(_) => {}
                }
            }
        });
        rx
    }

    async fn wait_for_drops(metrics: &GossipMetrics, reasons: &[&'static str], total: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let dropped: u64 = reasons.iter().map(|r| metrics.dropped_total(r)).sum();
            if dropped >= total {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {dropped} of {total} junk datagrams were counted as dropped"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Ten thousand junk datagrams, then a real envelope: it is delivered with its sender, and
    /// every junk datagram is counted by reason.
    async fn junk_never_deafens(seal: fn() -> GossipSeal, reasons: &[&'static str]) {
        let metrics = GossipMetrics::default();
        let receiving = SealedTransport::new(seal(), AddressFilter::default(), metrics.clone());
        let sending =
            SealedTransport::new(seal(), AddressFilter::default(), GossipMetrics::default());
        let receiver = socket(&receiving).await;
        let to = receiver.local_addr().unwrap();
        let mut delivered = receive_like_chitchat(receiver);
        let mut peer = socket(&sending).await;
        let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let magic = 45_139u16.to_le_bytes();
        let mut junk = Junk(0x9e37_79b9_7f4a_7c15);
        let mut sent = 0u64;
        let mut unconfirmed_bytes = 0;
        for _ in 0..10_000 {
            let datagram = junk.datagram(&magic);
            // Never more in flight than the default receive buffer (208 KiB) holds, so none is
            // lost by the kernel before the socket can count it.
            if unconfirmed_bytes + datagram.len() > 100_000 {
                wait_for_drops(&metrics, reasons, sent).await;
                unconfirmed_bytes = 0;
            }
            attacker.send_to(&datagram, to).await.unwrap();
            unconfirmed_bytes += datagram.len() + 512;
            sent += 1;
        }
        wait_for_drops(&metrics, reasons, sent).await;
        peer.send(to, envelope()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), delivered.recv())
            .await
            .expect("the real envelope arrives after the junk")
            .expect("receiver alive");
        assert_eq!(got.from_addr, peer.local_addr().unwrap());
        assert_eq!(got.envelope, envelope());
        let dropped: u64 = reasons.iter().map(|r| metrics.dropped_total(r)).sum();
        assert_eq!(dropped, 10_000, "each junk datagram counted once");
    }

    #[tokio::test]
    async fn ten_thousand_junk_datagrams_never_deafen_plaintext_gossip() {
        junk_never_deafens(GossipSeal::plaintext, &["parse"]).await;
    }

    #[tokio::test]
    async fn ten_thousand_junk_datagrams_never_deafen_sealed_gossip() {
        junk_never_deafens(|| seal("key", "bifrost"), &["auth"]).await;
    }

    #[tokio::test]
    async fn a_datagram_that_authenticates_but_does_not_parse_is_dropped_and_counted() {
        let metrics = GossipMetrics::default();
        let transport = SealedTransport::new(
            seal("key", "bifrost"),
            AddressFilter::default(),
            metrics.clone(),
        );
        let receiver = socket(&transport).await;
        let to = receiver.local_addr().unwrap();
        let mut delivered = receive_like_chitchat(receiver);
        let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let magic = 45_139u16.to_le_bytes();
        // Sealed with the right key: a stray message type, then a truncated syn.
        for body in [
            [&magic[..], &[0, 200, 1, 2]].concat(),
            [&magic[..], &[0, 0, 9]].concat(),
            b"\x00\x01garbage-not-chitchat".to_vec(),
        ] {
            let packet = seal("key", "bifrost").seal(&body).unwrap();
            attacker.send_to(&packet, to).await.unwrap();
        }
        wait_for_drops(&metrics, &["parse"], 3).await;
        let mut peer = socket(&transport).await;
        peer.send(to, envelope()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), delivered.recv())
            .await
            .expect("a real envelope still arrives")
            .expect("receiver alive");
        assert_eq!(got.from_addr, peer.local_addr().unwrap());
        assert_eq!(metrics.dropped_total("auth"), 0);
    }
}
