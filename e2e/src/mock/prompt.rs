//! What both chat APIs share: reading message text, the deterministic reply, token counts and
//! cutting the reply into stream chunks.

use serde::Deserialize;

/// Prefix of every chat reply; the rest is the last user message's text.
pub const REPLY_PREFIX: &str = "mock reply to: ";

/// Message content as both APIs accept it: a string, or a list of parts (OpenAI) or blocks
/// (Anthropic) of which only the `text` ones count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// One content part or block; non-text kinds (images, tool results) carry no `text`.
#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(default)]
    pub text: Option<String>,
}

impl Content {
    /// The text pieces, in order.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        let (text, parts) = match self {
            Content::Text(text) => (Some(text.as_str()), &[][..]),
            Content::Parts(parts) => (None, parts.as_slice()),
        };
        text.into_iter()
            .chain(parts.iter().filter_map(|part| part.text.as_deref()))
    }
}

/// A chat message of either API; OpenAI allows `content: null` (assistant tool calls).
#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// The reply for a conversation: [`REPLY_PREFIX`] and the last user message's text parts,
/// joined by spaces.
pub fn reply_to(messages: &[Message]) -> String {
    let mut reply = REPLY_PREFIX.to_owned();
    let last_user = messages.iter().rev().find(|message| message.role == "user");
    if let Some(content) = last_user.and_then(|message| message.content.as_ref()) {
        for (i, text) in content.texts().enumerate() {
            if i > 0 {
                reply.push(' ');
            }
            reply.push_str(text);
        }
    }
    reply
}

/// Prompt tokens: whitespace-separated words over all the given contents, at least 1.
pub fn prompt_tokens<'a>(contents: impl Iterator<Item = &'a Content>) -> u64 {
    let words: usize = contents
        .flat_map(Content::texts)
        .map(|text| text.split_whitespace().count())
        .sum();
    (words as u64).max(1)
}

/// Cuts `text` into `pieces` non-empty parts of near-equal length in characters (fewer when the
/// text is shorter than that); the parts concatenate to `text`.
pub fn split_even(text: &str, pieces: usize) -> Vec<&str> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(at, _)| at)
        .chain(std::iter::once(text.len()))
        .collect();
    let chars = bounds.len() - 1;
    if chars == 0 {
        return Vec::new();
    }
    let pieces = pieces.clamp(1, chars);
    (0..pieces)
        .map(|i| &text[bounds[i * chars / pieces]..bounds[(i + 1) * chars / pieces]])
        .collect()
}

/// The reply's chunks after applying the request's token limit (one chunk counts as one token),
/// and whether the limit cut the reply short.
pub fn limit_chunks(mut chunks: Vec<&str>, max_tokens: Option<u64>) -> (Vec<&str>, bool) {
    let limit = max_tokens.map_or(usize::MAX, |max| usize::try_from(max).unwrap_or(usize::MAX));
    let truncated = chunks.len() > limit;
    chunks.truncate(limit);
    (chunks, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(json: &str) -> Vec<Message> {
        serde_json::from_str(json).expect("valid messages")
    }

    #[test]
    fn reply_quotes_the_last_user_message() {
        let messages = messages(
            r#"[{"role":"user","content":"first"},{"role":"assistant","content":null},
                {"role":"user","content":[{"type":"text","text":"hello"},{"type":"image_url","image_url":{}},
                {"type":"text","text":"world"}]},{"role":"assistant","content":"x"}]"#,
        );
        assert_eq!(reply_to(&messages), "mock reply to: hello world");
    }

    #[test]
    fn prompt_tokens_count_words_of_every_message_and_at_least_one() {
        let messages = messages(
            r#"[{"role":"system","content":"be  brief"},{"role":"user","content":"a b c"}]"#,
        );
        assert_eq!(
            prompt_tokens(messages.iter().filter_map(|m| m.content.as_ref())),
            5
        );
        assert_eq!(prompt_tokens(std::iter::empty()), 1);
    }

    #[test]
    fn split_even_keeps_every_character_in_non_empty_pieces() {
        let text = "mock reply to: héllo wörld";
        for pieces in 1..40 {
            let parts = split_even(text, pieces);
            assert_eq!(parts.len(), pieces.min(text.chars().count()));
            assert!(parts.iter().all(|part| !part.is_empty()));
            assert_eq!(parts.concat(), text);
        }
    }

    #[test]
    fn limit_chunks_reports_truncation() {
        let (chunks, truncated) = limit_chunks(vec!["a", "b", "c"], Some(2));
        assert_eq!((chunks, truncated), (vec!["a", "b"], true));
        let (chunks, truncated) = limit_chunks(vec!["a", "b"], Some(2));
        assert_eq!((chunks, truncated), (vec!["a", "b"], false));
        assert!(!limit_chunks(vec!["a"], None).1);
    }
}
