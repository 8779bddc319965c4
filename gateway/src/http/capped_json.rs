//! Parsing a request body under the element caps (`client.max_*_per_request`): elements are
//! counted while the JSON is read, and once a cap is passed nothing more is built.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::config::ClientConfig;
use crate::error::GatewayError;

/// How many elements one request body may hold (`client.max_*_per_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementLimits {
    /// Entries of the top-level `messages` array.
    pub messages: u64,
    /// Content blocks across the whole request: entries of every message's `content` and
    /// `tool_calls` arrays, of `content` arrays inside those blocks (tool results), and of
    /// `system` when it is an array.
    pub content_blocks: u64,
    /// Entries of `tools`.
    pub tools: u64,
    /// Entries of `stop` or `stop_sequences`.
    pub stop_sequences: u64,
    /// JSON values anywhere in the body.
    pub json_values: u64,
}

impl ElementLimits {
    /// The caps configured in `client`.
    pub fn from_config(client: &ClientConfig) -> Self {
        Self {
            messages: client.max_messages_per_request.into(),
            content_blocks: client.max_content_blocks_per_request.into(),
            tools: client.max_tools_per_request.into(),
            stop_sequences: client.max_stop_sequences_per_request.into(),
            json_values: client.max_json_values_per_request.into(),
        }
    }
}

/// Parse a request body that must be a JSON object, counting elements while parsing. Once a
/// cap is passed the rest of the body is only scanned (to report its real count), never built,
/// so an oversized body costs little more than its bytes. The result is what
/// `serde_json::from_slice::<Value>` would give.
pub fn parse_json_object(
    bytes: &[u8],
    limits: &ElementLimits,
) -> Result<Map<String, Value>, GatewayError> {
    let counts = Counts::new(limits);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = Node {
        counts: &counts,
        place: Place::Top,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    if let Some(over) = counts.over.get() {
        return Err(GatewayError::InvalidRequest(counts.describe(over)));
    }
    match parsed {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(GatewayError::InvalidRequest(
            "request body must be a JSON object".into(),
        )),
        Err(error) => Err(GatewayError::InvalidRequest(format!(
            "request body is not valid JSON: {error}"
        ))),
    }
}

/// Which cap a body went over first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cap {
    Messages,
    ContentBlocks,
    Tools,
    Stop,
    StopSequences,
    JsonValues,
}

/// Running element counts of one body; `over` is set at the first cap passed, after which
/// values are scanned but not built.
struct Counts<'l> {
    limits: &'l ElementLimits,
    messages: Cell<u64>,
    content_blocks: Cell<u64>,
    tools: Cell<u64>,
    stop_sequences: Cell<u64>,
    json_values: Cell<u64>,
    over: Cell<Option<Cap>>,
}

impl<'l> Counts<'l> {
    fn new(limits: &'l ElementLimits) -> Self {
        Self {
            limits,
            messages: Cell::new(0),
            content_blocks: Cell::new(0),
            tools: Cell::new(0),
            stop_sequences: Cell::new(0),
            json_values: Cell::new(0),
            over: Cell::new(None),
        }
    }

    fn skipping(&self) -> bool {
        self.over.get().is_some()
    }

    fn add(&self, cap: Cap) {
        let (count, limit) = match cap {
            Cap::Messages => (&self.messages, self.limits.messages),
            Cap::ContentBlocks => (&self.content_blocks, self.limits.content_blocks),
            Cap::Tools => (&self.tools, self.limits.tools),
            Cap::Stop | Cap::StopSequences => (&self.stop_sequences, self.limits.stop_sequences),
            Cap::JsonValues => (&self.json_values, self.limits.json_values),
        };
        count.set(count.get().saturating_add(1));
        if count.get() > limit && self.over.get().is_none() {
            self.over.set(Some(cap));
        }
    }

    fn describe(&self, cap: Cap) -> String {
        let (field, limit, what, count) = match cap {
            Cap::Messages => (
                "messages",
                self.limits.messages,
                "messages",
                self.messages.get(),
            ),
            Cap::ContentBlocks => (
                "messages[].content",
                self.limits.content_blocks,
                "content blocks",
                self.content_blocks.get(),
            ),
            Cap::Tools => ("tools", self.limits.tools, "tools", self.tools.get()),
            Cap::Stop => (
                "stop",
                self.limits.stop_sequences,
                "stop sequences",
                self.stop_sequences.get(),
            ),
            Cap::StopSequences => (
                "stop_sequences",
                self.limits.stop_sequences,
                "stop sequences",
                self.stop_sequences.get(),
            ),
            Cap::JsonValues => (
                "request body",
                self.limits.json_values,
                "JSON values",
                self.json_values.get(),
            ),
        };
        let across = if cap == Cap::ContentBlocks {
            ", counted across all messages, tool calls and system"
        } else {
            ""
        };
        format!("{field}: at most {limit} {what} per request{across} (this one has {count})")
    }
}

/// Where in a request body a value sits, as far as the caps care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The body itself.
    Top,
    /// The top-level `messages`.
    Messages,
    /// One entry of `messages`.
    Message,
    /// A `content` or `tool_calls` array (of a message, or of a block: tool results).
    Blocks,
    /// One entry of such an array.
    Block,
    /// The top-level `system`.
    System,
    /// The top-level `tools`.
    Tools,
    /// The top-level `stop` or `stop_sequences`.
    Stop(Cap),
    /// Anywhere else.
    Other,
}

impl Place {
    /// The place of member `key` of an object here.
    fn member(self, key: &str) -> Place {
        match (self, key) {
            (Place::Top, "messages") => Place::Messages,
            (Place::Top, "system") => Place::System,
            (Place::Top, "tools") => Place::Tools,
            (Place::Top, "stop") => Place::Stop(Cap::Stop),
            (Place::Top, "stop_sequences") => Place::Stop(Cap::StopSequences),
            (Place::Message, "content" | "tool_calls") | (Place::Block, "content") => Place::Blocks,
            _ => Place::Other,
        }
    }

    /// What an entry of an array here counts against, and where it sits.
    fn entry(self) -> (Option<Cap>, Place) {
        match self {
            Place::Messages => (Some(Cap::Messages), Place::Message),
            Place::Blocks => (Some(Cap::ContentBlocks), Place::Block),
            Place::System => (Some(Cap::ContentBlocks), Place::Other),
            Place::Tools => (Some(Cap::Tools), Place::Other),
            Place::Stop(cap) => (Some(cap), Place::Other),
            _ => (None, Place::Other),
        }
    }
}

/// Deserializes one JSON value at `place` into a [`Value`], counting as it goes.
#[derive(Clone, Copy)]
struct Node<'c, 'l> {
    counts: &'c Counts<'l>,
    place: Place,
}

impl Node<'_, '_> {
    /// Count a value; once over a cap, nothing is built any more.
    fn keep(&self, build: impl FnOnce() -> Value) -> Value {
        self.counts.add(Cap::JsonValues);
        if self.counts.skipping() {
            Value::Null
        } else {
            build()
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(self.keep(|| Value::Bool(value)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(self.keep(|| Value::from(value)))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(self.keep(|| Value::from(value)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(self.keep(|| serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(self.keep(|| Value::String(value.to_owned())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(self.keep(|| Value::String(value)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(self.keep(|| Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(self.keep(|| Value::Null))
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.counts.add(Cap::JsonValues);
        let (cap, place) = self.place.entry();
        let entry = Node {
            counts: self.counts,
            place,
        };
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(entry)? {
            if let Some(cap) = cap {
                self.counts.add(cap);
            }
            if !self.counts.skipping() {
                items.push(item);
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.counts.add(Cap::JsonValues);
        let mut object = Map::new();
        while let Some((key, place)) = map.next_key_seed(Key(self))? {
            let value = map.next_value_seed(Node {
                counts: self.counts,
                place,
            })?;
            if !self.counts.skipping() {
                object.insert(key, value);
            }
        }
        Ok(Value::Object(object))
    }
}

/// An object key, with the place of its value (the key text is dropped once skipping).
struct Key<'c, 'l>(Node<'c, 'l>);

impl<'de> DeserializeSeed<'de> for Key<'_, '_> {
    type Value = (String, Place);

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_, '_> {
    type Value = (String, Place);

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        let place = self.0.place.member(key);
        let key = if self.0.counts.skipping() {
            String::new()
        } else {
            key.to_owned()
        };
        Ok((key, place))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_limits() -> ElementLimits {
        ElementLimits {
            messages: 2,
            content_blocks: 2,
            tools: 1,
            stop_sequences: 1,
            json_values: 50,
        }
    }

    fn refusal(body: &str) -> String {
        match parse_json_object(body.as_bytes(), &small_limits()) {
            Err(GatewayError::InvalidRequest(message)) => message,
            other => panic!("expected a refusal of {body}, got {other:?}"),
        }
    }

    #[test]
    fn a_body_under_the_caps_parses_as_serde_json_would() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a\u00e9\n"}]},{"role":"assistant","content":"b"}],"tools":[{"name":"t","input_schema":{"type":"object"}}],"stop":["x"],"n":-1,"t":0.5,"big":18446744073709551615,"f":false,"z":null,"nested":{"messages":[1,2,3,4]}}"#;
        let parsed = parse_json_object(body.as_bytes(), &small_limits()).expect("accepted");
        let expected: Value = serde_json::from_str(body).expect("valid JSON");
        assert_eq!(Value::Object(parsed), expected);
    }

    #[test]
    fn each_cap_is_named_with_its_limit_and_the_real_count() {
        assert_eq!(
            refusal(r#"{"messages":[{},{},{},{}]}"#),
            "messages: at most 2 messages per request (this one has 4)"
        );
        assert_eq!(
            refusal(r#"{"messages":[{"content":[1,2]},{"content":[3]}]}"#),
            "messages[].content: at most 2 content blocks per request, counted across all messages, tool calls and system (this one has 3)"
        );
        assert_eq!(
            refusal(r#"{"system":[1],"messages":[{"tool_calls":[2]},{"content":[{"content":[3]}]}]}"#),
            "messages[].content: at most 2 content blocks per request, counted across all messages, tool calls and system (this one has 4)"
        );
        assert_eq!(
            refusal(r#"{"tools":[{},{}]}"#),
            "tools: at most 1 tools per request (this one has 2)"
        );
        assert_eq!(
            refusal(r#"{"stop_sequences":["a","b"]}"#),
            "stop_sequences: at most 1 stop sequences per request (this one has 2)"
        );
        assert_eq!(
            refusal(&format!(r#"{{"x":[{}0]}}"#, "0,".repeat(60))),
            "request body: at most 50 JSON values per request (this one has 63)"
        );
    }

    #[test]
    fn only_the_top_level_fields_are_capped() {
        let body = r#"{"metadata":{"messages":[1,2,3],"tools":[1,2],"stop":[1,2]},"messages":[{"x":{"content":[1,2,3]}}]}"#;
        assert!(parse_json_object(body.as_bytes(), &small_limits()).is_ok());
    }

    #[test]
    fn non_objects_and_invalid_json_are_refused_as_before() {
        assert_eq!(refusal("[1,2]"), "request body must be a JSON object");
        assert_eq!(refusal("\"hi\""), "request body must be a JSON object");
        assert!(refusal("{\"a\":").starts_with("request body is not valid JSON: "));
        assert!(refusal("{} x").starts_with("request body is not valid JSON: trailing"));
    }
}
