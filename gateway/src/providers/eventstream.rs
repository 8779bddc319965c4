//! AWS event-stream framing (Bedrock's `converse-stream`), decoded by the AWS SDK's own
//! `aws-smithy-eventstream` into the events the stream translators read: each message becomes
//! an event named by its `:event-type` with its JSON payload as data. Exceptions become events
//! named [`EXCEPTION_PREFIX`]`<type>`.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::BytesMut;
use serde_json::json;

use super::sse::SseEvent;

/// Event name prefix of an exception message (`exception:throttlingException`).
pub const EXCEPTION_PREFIX: &str = "exception:";

/// Incremental event-stream decoder: bytes in at any boundaries, whole messages out.
#[derive(Debug, Default)]
pub struct EventStreamDecoder {
    decoder: MessageFrameDecoder,
    buffer: BytesMut,
    /// A frame could not be decoded: the stream cannot be trusted past it.
    broken: bool,
}

impl EventStreamDecoder {
    /// Feeds the next chunk, appending every event it completes to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        if self.broken {
            return;
        }
        self.buffer.extend_from_slice(chunk);
        // A frame announcing more than this is not waited for (nor buffered).
        if self.buffer.len() > super::sse::MAX_LINE_BYTES {
            self.broken = true;
            self.buffer = BytesMut::new();
            out.push(exception(
                "decodingError",
                "upstream sent an event-stream frame larger than 16 MiB",
            ));
            return;
        }
        loop {
            match self.decoder.decode_frame(&mut self.buffer) {
                Ok(DecodedFrame::Complete(message)) => out.push(event_of(&message)),
                Ok(DecodedFrame::Incomplete) => return,
                Err(error) => {
                    self.broken = true;
                    self.buffer = BytesMut::new();
                    out.push(exception(
                        "decodingError",
                        &format!("upstream sent a malformed event-stream frame: {error}"),
                    ));
                    return;
                }
            }
        }
    }

    /// End of input: a frame cut off in the middle is reported as an exception.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.broken && !self.buffer.is_empty() {
            self.broken = true;
            out.push(exception(
                "decodingError",
                "upstream stream ended in the middle of an event-stream frame",
            ));
        }
    }
}

/// The value of string header `name`.
fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|header| header.name().as_str() == name)
        .and_then(|header| header.value().as_string().ok())
        .map(|value| value.as_str())
}

fn event_of(message: &Message) -> SseEvent {
    let payload = String::from_utf8_lossy(message.payload()).into_owned();
    match header(message, ":message-type") {
        Some("exception") => SseEvent {
            event: Some(format!(
                "{EXCEPTION_PREFIX}{}",
                header(message, ":exception-type").unwrap_or("unknownException")
            )),
            data: payload,
        },
        Some("error") => exception(
            header(message, ":error-code").unwrap_or("unknownError"),
            header(message, ":error-message").unwrap_or("upstream stream error"),
        ),
        _ => SseEvent {
            event: header(message, ":event-type").map(str::to_owned),
            data: payload,
        },
    }
}

fn exception(kind: &str, message: &str) -> SseEvent {
    SseEvent {
        event: Some(format!("{EXCEPTION_PREFIX}{kind}")),
        data: json!({ "message": message }).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue};

    fn frame(headers: &[(&'static str, &'static str)], payload: &'static str) -> Vec<u8> {
        let mut message = Message::new(payload.as_bytes());
        for (name, value) in headers {
            message = message.add_header(Header::new(*name, HeaderValue::String((*value).into())));
        }
        let mut out = Vec::new();
        write_message_to(&message, &mut out).expect("encodes");
        out
    }

    fn stream() -> Vec<u8> {
        let event = |kind: &'static str, payload: &'static str| {
            frame(
                &[
                    (":event-type", kind),
                    (":content-type", "application/json"),
                    (":message-type", "event"),
                ],
                payload,
            )
        };
        [
            event("messageStart", r#"{"role":"assistant"}"#),
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"hé"}}"#,
            ),
            frame(
                &[
                    (":exception-type", "throttlingException"),
                    (":message-type", "exception"),
                ],
                r#"{"message":"slow down"}"#,
            ),
        ]
        .concat()
    }

    #[test]
    fn messages_decode_the_same_at_every_chunk_size() {
        let input = stream();
        for chunk_len in [1, 5, 13, input.len()] {
            let mut decoder = EventStreamDecoder::default();
            let mut events = Vec::new();
            for chunk in input.chunks(chunk_len) {
                decoder.push(chunk, &mut events);
            }
            decoder.finish(&mut events);
            let names: Vec<Option<&str>> = events.iter().map(|e| e.event.as_deref()).collect();
            assert_eq!(
                names,
                [
                    Some("messageStart"),
                    Some("contentBlockDelta"),
                    Some("exception:throttlingException")
                ],
                "chunk length {chunk_len}"
            );
            assert_eq!(
                events[1].data,
                r#"{"contentBlockIndex":0,"delta":{"text":"hé"}}"#
            );
        }
    }

    #[test]
    fn corrupt_or_cut_off_frames_become_one_exception() {
        let mut corrupt = stream();
        corrupt[20] ^= 0xff;
        let mut decoder = EventStreamDecoder::default();
        let mut events = Vec::new();
        decoder.push(&corrupt, &mut events);
        decoder.push(&stream(), &mut events);
        decoder.finish(&mut events);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].event.as_deref(), Some("exception:decodingError"));

        let whole = stream();
        let mut decoder = EventStreamDecoder::default();
        let mut events = Vec::new();
        decoder.push(&whole[..whole.len() - 3], &mut events);
        decoder.finish(&mut events);
        assert_eq!(
            events.last().and_then(|e| e.event.as_deref()),
            Some("exception:decodingError")
        );
    }
}
