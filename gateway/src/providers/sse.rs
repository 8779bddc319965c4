//! Server-sent events: an incremental parser, a writer, and the trait that stream translators implement.

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Incremental SSE parser: bytes in (arbitrary chunk boundaries, LF or CRLF line endings, multi-line data joined
/// with '\n', comment lines starting with ':' ignored, `id:`/`retry:` ignored), complete events out.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line not yet terminated; kept as bytes so a UTF-8 character split across chunks survives.
    line: Vec<u8>,
    /// The last chunk ended in '\r': a '\n' opening the next chunk completes that CRLF rather than ending a line.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    /// A line grew past [`MAX_LINE_BYTES`]: drop the rest of it, up to its end.
    discarding: bool,
}

/// Longest SSE line kept; a misbehaving upstream cannot make the gateway buffer more.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

impl SseParser {
    /// Feeds the next chunk of the byte stream, appending every event it completes to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some((b'\n', tail)) = rest.split_first() {
                rest = tail;
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, tail) = rest.split_at(end);
            self.line.extend_from_slice(line);
            rest = match tail {
                [b'\r', b'\n', after @ ..] => after,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, after @ ..] => after,
                [] => &[],
            };
            let mut line = std::mem::take(&mut self.line);
            if !std::mem::take(&mut self.discarding) {
                self.process_line(&line, out);
            }
            line.clear();
            self.line = line;
        }
        if !self.discarding {
            self.line.extend_from_slice(rest);
        }
        if self.line.len() > MAX_LINE_BYTES {
            self.line = Vec::new();
            self.discarding = true;
        }
    }

    /// End of input: emits a last event that was not terminated by a blank line.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        self.after_cr = false;
        if !std::mem::take(&mut self.discarding) && !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
        }
        self.dispatch(out);
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.starts_with(b":") {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        // As in the WHATWG spec, a block without any data line is not an event.
        if let Some(data) = self.data.take() {
            out.push(SseEvent { event, data });
        }
    }
}

/// Append `event: <name>\n` (if any) and `data: <data>\n\n` (multi-line data split into several data lines).
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    let mut rest = data;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        let (line, tail) = rest.split_at(end);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        rest = if let Some(after) = tail.strip_prefix("\r\n") {
            after
        } else if let Some(after) = tail.strip_prefix(['\r', '\n']) {
            after
        } else {
            break;
        };
    }
    out.push(b'\n');
}

/// Turns one upstream SSE dialect into another, event by event.
pub trait StreamTranslator: Send {
    /// Translates one upstream event, appending the client-facing bytes to `out`.
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<u8>);
    /// Upstream ended (cleanly or not): close whatever the client still expects.
    fn finish(&mut self, out: &mut Vec<u8>);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_chunks(input: &[u8], chunk_len: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        for chunk in input.chunks(chunk_len) {
            parser.push(chunk, &mut events);
        }
        parser.finish(&mut events);
        events
    }

    fn event(name: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: name.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[test]
    fn parses_named_and_unnamed_events() {
        let events = parse_in_chunks(b"event: ping\ndata: {}\n\ndata: hello\n\n", 1024);
        assert_eq!(
            events,
            vec![event(Some("ping"), "{}"), event(None, "hello")]
        );
    }

    #[test]
    fn every_chunk_boundary_gives_the_same_events() {
        let input = "event: a\r\ndata: héllo ✓\r\n\r\n: comment\ndata: x\ndata: y\n\n".as_bytes();
        let whole = parse_in_chunks(input, input.len());
        assert_eq!(
            whole,
            vec![event(Some("a"), "héllo ✓"), event(None, "x\ny")]
        );
        for chunk_len in 1..input.len() {
            assert_eq!(
                parse_in_chunks(input, chunk_len),
                whole,
                "chunk length {chunk_len}"
            );
        }
    }

    #[test]
    fn a_utf8_character_split_across_chunks_is_reassembled() {
        let input = "data: ✓\n\n".as_bytes();
        let split = input.len() - 3; // inside the three-byte check mark
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        parser.push(&input[..split], &mut events);
        parser.push(&input[split..], &mut events);
        assert_eq!(events, vec![event(None, "✓")]);
    }

    #[test]
    fn crlf_split_between_chunks_is_one_line_ending() {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        parser.push(b"data: a\r", &mut events);
        parser.push(b"\ndata: b\r", &mut events);
        parser.push(b"\n\r\n", &mut events);
        assert_eq!(events, vec![event(None, "a\nb")]);
    }

    #[test]
    fn bare_cr_ends_a_line() {
        assert_eq!(
            parse_in_chunks(b"data: a\r\rdata: b\r\r", 3),
            vec![event(None, "a"), event(None, "b")]
        );
    }

    #[test]
    fn comments_ids_and_retries_are_ignored() {
        let events = parse_in_chunks(b": keep-alive\nid: 7\nretry: 1000\ndata: x\n\n", 5);
        assert_eq!(events, vec![event(None, "x")]);
    }

    #[test]
    fn a_block_without_data_is_not_an_event() {
        let events = parse_in_chunks(b"event: lonely\n\ndata: x\n\n", 1024);
        assert_eq!(events, vec![event(None, "x")]);
    }

    #[test]
    fn data_without_space_after_colon_and_empty_data_are_kept() {
        let events = parse_in_chunks(b"data:tight\n\ndata:\n\n", 1024);
        assert_eq!(events, vec![event(None, "tight"), event(None, "")]);
    }

    #[test]
    fn finish_emits_an_unterminated_last_event() {
        let events = parse_in_chunks(b"data: first\n\nevent: last\ndata: partial", 4);
        assert_eq!(
            events,
            vec![event(None, "first"), event(Some("last"), "partial")]
        );
    }

    #[test]
    fn finish_on_a_clean_stream_emits_nothing_more() {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        parser.push(b"data: x\n\n", &mut events);
        parser.finish(&mut events);
        assert_eq!(events, vec![event(None, "x")]);
    }

    #[test]
    fn write_event_writes_name_and_data() {
        let mut out = Vec::new();
        write_event(
            &mut out,
            Some("message_stop"),
            "{\"type\":\"message_stop\"}",
        );
        write_event(&mut out, None, "[DONE]");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\ndata: [DONE]\n\n"
        );
    }

    #[test]
    fn write_event_splits_multi_line_data_and_round_trips() {
        let mut out = Vec::new();
        write_event(&mut out, None, "a\nb\r\nc\rd");
        assert_eq!(
            String::from_utf8(out.clone()).expect("utf8"),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(parse_in_chunks(&out, 2), vec![event(None, "a\nb\nc\nd")]);
    }

    #[test]
    fn an_endless_line_is_dropped_instead_of_buffered() {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        parser.push(b"data: ", &mut out);
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..17 {
            parser.push(&chunk, &mut out);
        }
        assert!(parser.line.len() <= MAX_LINE_BYTES);
        parser.push(b"\n\ndata: ok\n\n", &mut out);
        assert_eq!(
            out.len(),
            1,
            "the oversized event is gone, the next one parses"
        );
        assert_eq!(out[0].data, "ok");
    }
}
