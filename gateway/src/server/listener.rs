//! The HTTP listener: accepts connections under `server.max_connections`, serves HTTP/1.1 and
//! HTTP/2 (prior knowledge) on each with hyper, closes connections that sit on a partial or
//! missing request head (`header_read_timeout_seconds`) or idle between requests
//! (`idle_timeout_seconds`), times out stalled request bodies (`body_read_timeout_seconds`),
//! and on drain closes at once every connection with no request in flight.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection waits for its next
//! request, so it cannot tell "idle" from "slow head"; each connection here has a watchdog
//! instead, fed by the socket (bytes read) and the service (requests started and finished).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http::{Request, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::ServerConfig;
use crate::http::body::{hold_until_end, TimedBody};
use crate::telemetry::metrics::ListenerMetrics;

/// An idle HTTP/2 connection gets this long after its GOAWAY on drain, for the client's
/// acknowledgement and queued frames, before it is closed.
const HTTP2_DRAIN_GRACE: Duration = Duration::from_secs(1);
/// Pause after an accept error that is not about one connection (out of descriptors, say),
/// so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Refusals at the connection cap are logged at the first and every power of two within an
/// episode; an episode ends after this long without a refusal.
const REFUSAL_EPISODE_GAP: Duration = Duration::from_secs(60);

/// The listener's limits, from the `server` section. Read for every accepted connection, so a
/// reload applies to connections accepted after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time for a new connection's first request head, and for any started head.
    pub header_read_timeout: Duration,
    /// Longest pause between request body chunks.
    pub body_read_timeout: Duration,
    /// Longest wait for the next request on a keep-alive connection.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

impl From<&ServerConfig> for ConnectionLimits {
    fn from(server: &ServerConfig) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(server.header_read_timeout_seconds),
            body_read_timeout: Duration::from_secs(server.body_read_timeout_seconds),
            idle_timeout: Duration::from_secs(server.idle_timeout_seconds),
            max_connections: server.max_connections as usize,
        }
    }
}

/// Accept and serve connections on `listener` until `close` turns true; then stop accepting,
/// close idle connections at once and return when the last in-flight request has finished.
/// `limits` is asked for the current limits on every accept. Dropping the returned future
/// (aborting its task) closes every connection.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: impl Fn() -> ConnectionLimits,
    metrics: ListenerMetrics,
    mut close: watch::Receiver<bool>,
) {
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut refusals = RefusalLog::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        if !is_per_connection_error(&error) {
                            tracing::warn!(%error, "accepting a connection failed; retrying shortly");
                            tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        }
                        continue;
                    }
                };
                while connections.try_join_next().is_some() {}
                let limits = limits();
                if connections.len() >= limits.max_connections {
                    // Closing at once keeps descriptors for the connections already open
                    // (and for /health) instead of letting the backlog pile up.
                    drop(stream);
                    metrics.refused.inc();
                    if let Some(refused) = refusals.refused(Instant::now()) {
                        tracing::warn!(
                            max_connections = limits.max_connections,
                            refused,
                            "connection limit reached; closing new connections (server.max_connections)"
                        );
                    }
                    continue;
                }
                // SSE chunks are small writes: without TCP_NODELAY, Nagle's algorithm holds each
                // one back until the client's delayed ACK (~40 ms).
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "cannot set TCP_NODELAY on an accepted connection");
                }
                connections.spawn(serve_connection(
                    stream,
                    peer,
                    router.clone(),
                    limits,
                    metrics.clone(),
                    drain_rx.clone(),
                ));
                metrics.open.set(connections.len() as i64);
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                metrics.open.set(connections.len() as i64);
            }
            () = turned_on(&mut close) => break,
        }
    }
    drop(listener);
    let _ = drain_tx.send(true);
    while connections.join_next().await.is_some() {
        metrics.open.set(connections.len() as i64);
    }
    metrics.open.set(0);
}

/// Wait until `flag` is true (or its sender is gone).
async fn turned_on(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|on| *on).await;
}

/// Errors that concern only the connection being accepted; the next accept may succeed.
fn is_per_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Decides which refusals at the connection cap are logged.
#[derive(Debug, Default)]
struct RefusalLog {
    last: Option<Instant>,
    in_episode: u64,
}

impl RefusalLog {
    /// Record a refusal at `now`; the count in this episode when it is to be logged.
    fn refused(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) > REFUSAL_EPISODE_GAP)
        {
            self.in_episode = 0;
        }
        self.last = Some(now);
        self.in_episode += 1;
        self.in_episode.is_power_of_two().then_some(self.in_episode)
    }
}

/// Serve one connection until the client closes it, a timeout closes it, or the drain does.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    metrics: ListenerMetrics,
    mut drain: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new(Instant::now()));
    let io = TokioIo::new(WatchedIo {
        stream,
        activity: activity.clone(),
    });
    let body_timeouts = metrics.timeout("body");
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut router = router.clone();
        let in_flight = InFlight::start(&service_activity, request.version() == Version::HTTP_2);
        let mut request = request.map(|body| {
            Body::new(TimedBody::new(
                body,
                limits.body_read_timeout,
                body_timeouts.clone(),
            ))
        });
        request.extensions_mut().insert(ConnectInfo(peer));
        async move {
            // A Router is always ready (its poll_ready returns Ready), so it is called directly.
            let response = match tower_service::Service::call(&mut router, request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(response.map(|body| hold_until_end(body, in_flight)))
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut drain_started = None;
    loop {
        let due = activity.lock().due(&limits, drain_started);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = activity.changed.notified() => {}
            _ = tokio::time::sleep_until(due.map_or_else(Instant::now, |(at, _)| at)), if due.is_some() => {
                // Due again under the current state (a request may have started meanwhile)?
                if let Some((at, reason)) = activity.lock().due(&limits, drain_started) {
                    if at <= Instant::now() {
                        if let Some(timeout) = reason.metric() {
                            metrics.timeout(timeout).inc();
                        }
                        tracing::debug!(%peer, reason = reason.as_str(), "closing connection");
                        return;
                    }
                }
            }
            () = turned_on(&mut drain), if drain_started.is_none() => {
                drain_started = Some(Instant::now());
                // HTTP/1: no keep-alive after the request in flight; HTTP/2: GOAWAY.
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Why a connection is closed by its watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    /// No complete request head within `header_read_timeout`.
    HeaderTimeout,
    /// No new request within `idle_timeout`.
    IdleTimeout,
    /// Draining, and nothing in flight.
    Drained,
}

impl CloseReason {
    fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header_read_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Drained => "drained",
        }
    }

    /// The `bifrost_http_timeouts_total` label, for timeouts.
    fn metric(self) -> Option<&'static str> {
        match self {
            CloseReason::HeaderTimeout => Some("header"),
            CloseReason::IdleTimeout => Some("idle"),
            CloseReason::Drained => None,
        }
    }
}

/// What one connection is doing, shared by its socket, its requests and its watchdog.
struct Activity {
    state: Mutex<ConnectionState>,
    /// Wakes the watchdog when its deadline may have moved earlier.
    changed: Notify,
}

impl Activity {
    fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(ConnectionState::new(now)),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ConnectionState> {
        // The state is plain data, valid after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Clone)]
struct ConnectionState {
    opened: Instant,
    /// Requests whose response has not been fully handed to the connection.
    in_flight: usize,
    /// Requests started so far.
    requests: u64,
    http2: bool,
    /// When the first byte of the next HTTP/1 request head arrived.
    head_started: Option<Instant>,
    /// When the last request finished.
    idle_since: Instant,
    /// The socket refused the last write: a response tail is still unsent.
    write_blocked: bool,
}

impl ConnectionState {
    fn new(now: Instant) -> Self {
        Self {
            opened: now,
            in_flight: 0,
            requests: 0,
            http2: false,
            head_started: None,
            idle_since: now,
            write_blocked: false,
        }
    }

    /// When this connection is to be closed, and why; `None` while a request is in flight.
    fn due(
        &self,
        limits: &ConnectionLimits,
        drain_started: Option<Instant>,
    ) -> Option<(Instant, CloseReason)> {
        if self.in_flight > 0 {
            return None;
        }
        if let Some(drain_started) = drain_started {
            if self.http2 {
                return Some((drain_started + HTTP2_DRAIN_GRACE, CloseReason::Drained));
            }
            if !self.write_blocked {
                return Some((drain_started, CloseReason::Drained));
            }
            // A response tail still waits for the socket; hyper closes after sending it.
        }
        if self.requests == 0 {
            return Some((
                self.opened + limits.header_read_timeout,
                CloseReason::HeaderTimeout,
            ));
        }
        if let Some(started) = self.head_started {
            return Some((
                started + limits.header_read_timeout,
                CloseReason::HeaderTimeout,
            ));
        }
        Some((
            self.idle_since + limits.idle_timeout,
            CloseReason::IdleTimeout,
        ))
    }
}

/// One request being handled; dropping it (with the response body) ends it.
struct InFlight {
    activity: Arc<Activity>,
}

impl InFlight {
    fn start(activity: &Arc<Activity>, http2: bool) -> Self {
        let mut state = activity.lock();
        state.in_flight += 1;
        state.requests += 1;
        state.http2 |= http2;
        state.head_started = None;
        drop(state);
        Self {
            activity: activity.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.activity.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
            drop(state);
            self.activity.changed.notify_one();
        }
    }
}

/// The accepted socket, reporting reads and blocked writes to the connection's activity.
struct WatchedIo {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl WatchedIo {
    fn read_some(&self) {
        let mut state = self.activity.lock();
        // Bytes between HTTP/1 requests start the next head; HTTP/2 frames (pings, window
        // updates) arrive at any time and start nothing.
        if state.in_flight == 0
            && state.requests > 0
            && !state.http2
            && state.head_started.is_none()
        {
            state.head_started = Some(Instant::now());
            drop(state);
            self.activity.changed.notify_one();
        }
    }

    fn wrote(&self, blocked: bool) {
        let mut state = self.activity.lock();
        state.write_blocked = blocked;
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.read_some();
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.wrote(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits::from(&ServerConfig::default())
    }

    #[test]
    fn a_new_connection_has_the_header_timeout_to_send_its_first_request() {
        let now = Instant::now();
        let state = ConnectionState::new(now);
        assert_eq!(
            state.due(&limits(), None),
            Some((now + Duration::from_secs(10), CloseReason::HeaderTimeout))
        );
    }

    #[test]
    fn nothing_is_due_while_a_request_is_in_flight() {
        let now = Instant::now();
        let mut state = ConnectionState::new(now);
        state.in_flight = 1;
        state.requests = 1;
        assert_eq!(state.due(&limits(), None), None);
        assert_eq!(state.due(&limits(), Some(now)), None, "draining too");
    }

    #[test]
    fn between_requests_the_idle_timeout_runs_until_a_head_starts() {
        let now = Instant::now();
        let mut state = ConnectionState::new(now);
        state.requests = 1;
        state.idle_since = now;
        assert_eq!(
            state.due(&limits(), None),
            Some((now + Duration::from_secs(75), CloseReason::IdleTimeout))
        );
        let head = now + Duration::from_secs(70);
        state.head_started = Some(head);
        assert_eq!(
            state.due(&limits(), None),
            Some((head + Duration::from_secs(10), CloseReason::HeaderTimeout))
        );
    }

    #[test]
    fn draining_closes_idle_and_half_open_connections_at_once() {
        let now = Instant::now();
        let drain = now + Duration::from_secs(5);
        let fresh = ConnectionState::new(now);
        assert_eq!(
            fresh.due(&limits(), Some(drain)),
            Some((drain, CloseReason::Drained))
        );
        let mut idle = ConnectionState::new(now);
        idle.requests = 3;
        assert_eq!(
            idle.due(&limits(), Some(drain)),
            Some((drain, CloseReason::Drained))
        );
        let mut http2 = idle.clone();
        http2.http2 = true;
        assert_eq!(
            http2.due(&limits(), Some(drain)),
            Some((drain + HTTP2_DRAIN_GRACE, CloseReason::Drained))
        );
        let mut unsent = idle;
        unsent.write_blocked = true;
        assert_eq!(
            unsent.due(&limits(), Some(drain)),
            Some((now + Duration::from_secs(75), CloseReason::IdleTimeout)),
            "a response tail still waiting for the socket is not cut off"
        );
    }

    #[test]
    fn refusals_are_logged_at_powers_of_two_per_episode() {
        let mut log = RefusalLog::default();
        let start = Instant::now();
        let logged: Vec<u64> = (0..9)
            .filter_map(|_| log.refused(start + Duration::from_millis(1)))
            .collect();
        assert_eq!(logged, [1, 2, 4, 8]);
        let later = start + REFUSAL_EPISODE_GAP + Duration::from_secs(1);
        assert_eq!(log.refused(later), Some(1), "a new episode is logged again");
    }
}
