//! Reading request bodies under the configured size limit and body-read timeout.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use tokio::time::{Instant, Sleep};

use crate::error::GatewayError;

/// Read the whole body, refusing more than `limit` bytes with 413 (early, from
/// `Content-Length`, when the client declares it) and a stalled body with 408.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    limit_mb: u32,
) -> Result<Bytes, GatewayError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(GatewayError::PayloadTooLarge { limit_mb });
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(error) => {
            if caused_by::<http_body_util::LengthLimitError>(&error).is_some() {
                Err(GatewayError::PayloadTooLarge { limit_mb })
            } else if let Some(timeout) = caused_by::<BodyReadTimeout>(&error) {
                Err(GatewayError::RequestTimeout {
                    seconds: timeout.timeout.as_secs(),
                })
            } else {
                Err(GatewayError::InvalidRequest(format!(
                    "could not read the request body: {error}"
                )))
            }
        }
    }
}

/// The first error of type `T` in `error`'s source chain.
fn caused_by<T: std::error::Error + 'static>(error: &axum::Error) -> Option<&T> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(current) = cause {
        if let Some(found) = current.downcast_ref::<T>() {
            return Some(found);
        }
        cause = current.source();
    }
    None
}

/// The client sent no body data for `timeout` while the gateway was waiting for it.
#[derive(Debug, thiserror::Error)]
#[error("no request body data for {}s (server.body_read_timeout_seconds)", timeout.as_secs())]
pub struct BodyReadTimeout {
    /// The configured timeout.
    pub timeout: Duration,
}

/// A request body that fails with [`BodyReadTimeout`] when the client sends nothing for
/// `timeout` while a reader waits for the next chunk. Time the handler spends between reads
/// does not count: the clock runs only while a read is pending.
pub struct TimedBody<B> {
    inner: B,
    timeout: Duration,
    /// Allocated on the first read that has to wait, then reset.
    stall: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    timed_out: bool,
    timeouts: Counter,
}

impl<B> TimedBody<B> {
    /// Wrap `inner`; `timeouts` counts bodies that stalled.
    pub fn new(inner: B, timeout: Duration, timeouts: Counter) -> Self {
        Self {
            inner,
            timeout,
            stall: None,
            waiting: false,
            timed_out: false,
            timeouts,
        }
    }

    fn timeout_error(&self) -> Box<dyn std::error::Error + Send + Sync> {
        Box::new(BodyReadTimeout {
            timeout: self.timeout,
        })
    }
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.timed_out {
            // Never end normally after a stall: a truncated body must not look complete.
            return Poll::Ready(Some(Err(this.timeout_error())));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|result| result.map_err(Into::into)));
        }
        let deadline = Instant::now() + this.timeout;
        let stall = match &mut this.stall {
            Some(stall) => {
                if !this.waiting {
                    stall.as_mut().reset(deadline);
                }
                stall
            }
            None => this
                .stall
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        this.waiting = true;
        if stall.as_mut().poll(cx).is_ready() {
            this.timed_out = true;
            this.timeouts.inc();
            return Poll::Ready(Some(Err(this.timeout_error())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        !self.timed_out && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `body`, holding `guard` (an in-flight count, a permit) until it has sent its last frame or
/// is dropped: what a request holds while it is served must outlive the handler when the
/// answer streams.
pub fn hold_until_end<G: Send + Unpin + 'static>(body: Body, guard: G) -> Body {
    Body::new(HeldBody {
        inner: body,
        guard: Some(guard),
    })
}

struct HeldBody<G> {
    inner: Body,
    guard: Option<G>,
}

impl<G: Unpin> HttpBody for HeldBody<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{stream, StreamExt};
    use http_body_util::StreamBody;

    fn stalling_body() -> Body {
        // One chunk, then nothing ever again.
        let chunks = stream::iter([Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(
            b"{\"model\":",
        )))])
        .chain(stream::pending());
        Body::new(StreamBody::new(chunks))
    }

    #[tokio::test]
    async fn a_stalled_body_is_answered_with_408() {
        let timeouts = Counter::default();
        let body = Body::new(TimedBody::new(
            stalling_body(),
            Duration::from_millis(200),
            timeouts.clone(),
        ));
        let result = read_limited(&HeaderMap::new(), body, 1 << 20, 1).await;
        match result {
            Err(GatewayError::RequestTimeout { .. }) => {}
            other => panic!("expected a request timeout, got {other:?}"),
        }
        assert_eq!(timeouts.get(), 1);
    }

    #[tokio::test]
    async fn a_body_that_keeps_coming_is_read_whole() {
        // Ten chunks 50 ms apart: each pause is under the 200 ms timeout, the total is not.
        let chunks = stream::unfold(0, |sent| async move {
            if sent == 10 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((
                Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"x"))),
                sent + 1,
            ))
        });
        let body = Body::new(TimedBody::new(
            Body::new(StreamBody::new(chunks)),
            Duration::from_millis(200),
            Counter::default(),
        ));
        let bytes = read_limited(&HeaderMap::new(), body, 1 << 20, 1)
            .await
            .expect("body read");
        assert_eq!(bytes.len(), 10);
    }
}
