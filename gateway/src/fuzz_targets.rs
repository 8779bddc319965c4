//! Bodies of the fuzz targets, shared by the cargo-fuzz crate (`gateway/fuzz`, nightly) and the
//! stable smoke test (`gateway/tests/fuzz_smoke.rs`) so both exercise the same code. Each takes
//! arbitrary bytes and must not panic; the assertions here are properties that hold for every
//! input. Not part of the gateway's API.

use serde_json::{Map, Value};

use crate::cluster::transport::GossipSeal;
use crate::config::load::Format;
use crate::config::{parse_config, PeersFile};
use crate::providers::eventstream::EventStreamDecoder;
use crate::providers::sse::{write_event, SseEvent, SseParser, StreamTranslator};
use crate::providers::translate::{
    chat_request_to_converse, chat_request_to_gemini, chat_request_to_messages,
    chat_response_to_messages, converse_response_to_chat, embeddings_request_to_gemini,
    gemini_embeddings_to_openai, gemini_response_to_chat, messages_request_to_chat,
    messages_response_to_chat, upstream_error_message, ChatStreamToMessages, ConverseStreamToChat,
    GeminiStreamToChat, MessagesStreamToChat,
};

/// A fuzz target: arbitrary bytes in, a panic on a broken property.
pub type Target = fn(&[u8]);

/// Every target, by the name cargo-fuzz and the smoke test use.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("peers_file", peers_file),
    ("translate_json", translate_json),
    ("translate_sse", translate_sse),
    ("gossip_open", gossip_open),
];

/// A config document, as JSON and as YAML: syntax, `env.NAME` references, typed fields and
/// `validate()`.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Half the references resolve, so validation sees resolved values too.
    let env = |name: &str| {
        name.len()
            .is_multiple_of(2)
            .then(|| format!("value-of-{name}"))
    };
    for format in [Format::Json, Format::Yaml] {
        if let Ok(loaded) = parse_config(text, format, "fuzz", &env) {
            assert!(
                loaded.config.validate().is_empty(),
                "a loaded config must be valid"
            );
        }
    }
}

/// The operator-written peers file.
pub fn peers_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = PeersFile::parse(text) {
        assert_eq!(file.gossip_addresses().len(), file.peers.len());
    }
}

/// A JSON body through every JSON translation: as a request in both directions (and the
/// translation translated back) and onto Gemini, as a response in both directions and from
/// Gemini, and as an upstream error.
pub fn translate_json(data: &[u8]) {
    let _ = upstream_error_message(data);
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = chat_response_to_messages(&value).map(|v| messages_response_to_chat(&v));
    let _ = messages_response_to_chat(&value).map(|v| chat_response_to_messages(&v));
    let _ = gemini_response_to_chat(&value, "fuzz-model").map(|v| chat_response_to_messages(&v));
    let _ = gemini_embeddings_to_openai(&value, "fuzz-model", true);
    let _ = converse_response_to_chat(&value, "fuzz-model").map(|v| chat_response_to_messages(&v));
    let Value::Object(mut body) = value else {
        return;
    };
    // As the HTTP layer does: `model` is taken out before translation.
    let model = match body.remove("model") {
        Some(Value::String(model)) => model,
        _ => "fuzz-model".to_owned(),
    };
    let back = |translated: Result<Value, _>, translate: fn(&Map<String, Value>, &str) -> _| {
        if let Ok(Value::Object(mut translated)) = translated {
            translated.remove("model");
            let _: Result<Value, _> = translate(&translated, &model);
        }
    };
    back(
        chat_request_to_messages(&body, &model),
        messages_request_to_chat,
    );
    back(
        messages_request_to_chat(&body, &model),
        chat_request_to_messages,
    );
    back(
        messages_request_to_chat(&body, &model),
        chat_request_to_gemini,
    );
    let _ = chat_request_to_gemini(&body, &model);
    let _ = chat_request_to_converse(&body, &model);
    let _ = embeddings_request_to_gemini(&body, &model);
}

/// Upstream SSE bytes, split into chunks at arbitrary points, through the parser and every
/// stream translator; and the same bytes as AWS event-stream frames. The first byte picks the chunk length and `include_usage`.
pub fn translate_sse(data: &[u8]) {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let chunk_len = usize::from(control & 0x3f) + 1;
    let include_usage = control & 0x40 != 0;
    let translators: [Box<dyn StreamTranslator>; 4] = [
        Box::new(ChatStreamToMessages::new()),
        Box::new(MessagesStreamToChat::new(include_usage)),
        Box::new(GeminiStreamToChat::new(include_usage)),
        Box::new(ConverseStreamToChat::new(include_usage)),
    ];
    let whole = events_in(stream, stream.len().max(1));
    assert_eq!(
        events_in(stream, chunk_len),
        whole,
        "chunk boundaries must not change the events"
    );
    for mut translator in translators {
        let mut out = Vec::new();
        for event in whole.iter().cloned() {
            translator.on_event(event, &mut out);
        }
        translator.finish(&mut out);
        assert!(
            out.is_empty() || out.ends_with(b"\n\n"),
            "translator output must end with a complete event"
        );
        // What the client receives parses back into the events the translator wrote.
        let _ = events_in(&out, out.len().max(1));
    }
    // The writer's output parses back to the same event.
    for event in whole.iter().take(4) {
        let mut written = Vec::new();
        write_event(&mut written, event.event.as_deref(), &event.data);
        let reparsed = events_in(&written, written.len());
        assert_eq!(
            reparsed,
            std::slice::from_ref(event),
            "one event written, the same one read"
        );
    }
    // The same bytes as AWS event-stream frames (Bedrock): decoding is boundary-independent,
    // and whatever it yields goes through the Converse translator.
    let frames = |chunk_len: usize| {
        let mut decoder = EventStreamDecoder::default();
        let mut events = Vec::new();
        for chunk in stream.chunks(chunk_len) {
            decoder.push(chunk, &mut events);
        }
        decoder.finish(&mut events);
        events
    };
    let decoded = frames(stream.len().max(1));
    assert_eq!(
        frames(chunk_len),
        decoded,
        "chunk boundaries must not change the frames"
    );
    let mut translator = ConverseStreamToChat::new(include_usage);
    let mut out = Vec::new();
    for event in decoded {
        translator.on_event(event, &mut out);
    }
    translator.finish(&mut out);
    assert!(
        out.ends_with(b"\n\n"),
        "translator output must end with a complete event"
    );
}

fn events_in(stream: &[u8], chunk_len: usize) -> Vec<SseEvent> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    for chunk in stream.chunks(chunk_len) {
        parser.push(chunk, &mut events);
    }
    parser.finish(&mut events);
    events
}

/// A received gossip datagram through the seal: under a key chosen by the input, plaintext, and
/// a seal/open round trip that must succeed and reject a flipped byte.
///
/// Past the seal, the receive path hands datagrams to chitchat's codec, whose message parser is
/// crate-private in chitchat and so not reachable from here.
pub fn gossip_open(data: &[u8]) {
    let Some((&key_len, rest)) = data.split_first() else {
        return;
    };
    let (key, packet) = rest.split_at(usize::from(key_len % 16).min(rest.len()));
    let key = String::from_utf8_lossy(key);
    let seal = GossipSeal::new(&key, "bifrost");

    // Arbitrary bytes almost never authenticate; when they do, reopening is deterministic.
    if let Some(opened) = seal.open(packet) {
        assert_eq!(seal.open(packet), Some(opened));
    }
    assert_eq!(
        GossipSeal::plaintext().open(packet).as_deref(),
        Some(packet)
    );

    let sealed = seal.seal(packet).expect("a datagram-sized payload seals");
    assert_eq!(seal.open(&sealed).as_deref(), Some(packet), "round trip");
    assert_eq!(
        GossipSeal::new(&key, "another-cluster").open(&sealed),
        None,
        "another cluster's seal must not open it"
    );
    let mut tampered = sealed;
    let at = usize::from(key_len) * 7 % tampered.len();
    tampered[at] ^= 0x01;
    assert_eq!(seal.open(&tampered), None, "a flipped byte must not open");
}
