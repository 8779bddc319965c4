//! Free loopback ports for the processes a test starts.

/// `n` distinct UDP ports free on 127.0.0.1 right now (for gossip). All are held until every one
/// is chosen, so they differ; another process could still take one before the caller binds it.
pub fn free_udp_ports(n: usize) -> Vec<u16> {
    let sockets: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a free UDP port"))
        .collect();
    sockets
        .iter()
        .map(|s| s.local_addr().expect("bound socket has an address").port())
        .collect()
}

/// `n` distinct port numbers free for both UDP and TCP on 127.0.0.1 right now (gossip ports of
/// `consul` nodes, which also accept TCP health checks on the gossip port number).
pub fn free_udp_and_tcp_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    while held.len() < n {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a free UDP port");
        let port = udp
            .local_addr()
            .expect("bound socket has an address")
            .port();
        if let Ok(tcp) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push((udp, tcp, port));
        }
    }
    held.into_iter().map(|(_, _, port)| port).collect()
}

/// `n` distinct TCP ports free on 127.0.0.1 right now (for gRPC between cluster nodes).
pub fn free_tcp_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free TCP port"))
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("bound listener has an address")
                .port()
        })
        .collect()
}
