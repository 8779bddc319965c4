//! Reading what a request really used from the upstream's answer: the `usage` object of a JSON
//! response (Gemini's `usageMetadata`), or the usage events of a stream (OpenAI's final usage
//! chunk; Anthropic's `message_start` and `message_delta`; Gemini's cumulative `usageMetadata`
//! on every chunk). When a stream ends without usage, completion tokens
//! are estimated from the streamed text.

use serde::Deserialize;

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Prompt (input) tokens, cache reads and writes included.
    pub prompt: u64,
    /// Completion (output) tokens.
    pub completion: u64,
}

impl TokenUsage {
    /// Prompt plus completion.
    pub fn total(&self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }
}

/// Every format's usage field names.
#[derive(Debug, Default, Deserialize)]
struct RawUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    /// Anthropic's; Bedrock's as `inputTokens` (its cache reads and writes come apart too).
    #[serde(alias = "inputTokens")]
    input_tokens: Option<u64>,
    #[serde(alias = "outputTokens")]
    output_tokens: Option<u64>,
    #[serde(alias = "cacheWriteInputTokens")]
    cache_creation_input_tokens: Option<u64>,
    #[serde(alias = "cacheReadInputTokens")]
    cache_read_input_tokens: Option<u64>,
    /// Gemini's (cached tokens are part of it).
    #[serde(rename = "promptTokenCount")]
    prompt_token_count: Option<u64>,
    /// Gemini's answer tokens; its thinking tokens are billed as output too.
    #[serde(rename = "candidatesTokenCount")]
    candidates_token_count: Option<u64>,
    #[serde(rename = "thoughtsTokenCount")]
    thoughts_token_count: Option<u64>,
}

impl RawUsage {
    fn prompt(&self) -> Option<u64> {
        if let Some(prompt) = self.prompt_token_count {
            return Some(prompt);
        }
        self.prompt_tokens.or_else(|| {
            self.input_tokens.map(|input| {
                // Upstream numbers: saturate rather than overflow on absurd ones.
                input
                    .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
                    .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
            })
        })
    }
    fn completion(&self) -> Option<u64> {
        let gemini = match (self.candidates_token_count, self.thoughts_token_count) {
            (None, None) => None,
            (answer, thoughts) => Some(answer.unwrap_or(0).saturating_add(thoughts.unwrap_or(0))),
        };
        self.completion_tokens.or(self.output_tokens).or(gemini)
    }
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(alias = "usageMetadata")]
    usage: Option<RawUsage>,
    /// Amazon Titan's embedding answers (Bedrock InvokeModel) count the input at the top.
    #[serde(rename = "inputTextTokenCount")]
    input_text_token_count: Option<u64>,
}

/// Usage from a complete JSON response of either provider. Both put `usage` at the top level,
/// after the (possibly long) content, so only the object after the last `"usage":` is parsed;
/// anything unusual falls back to parsing the whole body.
pub fn from_json(body: &[u8]) -> Option<TokenUsage> {
    let tail = [&b"\"usage\":"[..], b"\"usageMetadata\":"]
        .into_iter()
        .find_map(|key| {
            body.windows(key.len())
                .rposition(|window| window == key)
                .map(|at| &body[at + key.len()..])
        });
    let usage = tail
        .and_then(|tail| {
            serde_json::Deserializer::from_slice(tail)
                .into_iter::<RawUsage>()
                .next()?
                .ok()
        })
        .or_else(|| {
            let whole = serde_json::from_slice::<WithUsage>(body).ok()?;
            whole
                .usage
                .or(whole.input_text_token_count.map(|input| RawUsage {
                    input_tokens: Some(input),
                    ..RawUsage::default()
                }))
        })?;
    Some(TokenUsage {
        prompt: usage.prompt().unwrap_or(0),
        completion: usage.completion().unwrap_or(0),
    })
}

/// Watches a stream's upstream events for usage.
#[derive(Debug, Default)]
pub struct StreamUsage {
    prompt: Option<u64>,
    completion: Option<u64>,
    streamed_chars: u64,
}

#[derive(Deserialize)]
struct StreamEvent {
    #[serde(alias = "usageMetadata")]
    usage: Option<RawUsage>,
    message: Option<WithUsage>,
    #[serde(default)]
    choices: Vec<serde_json::Value>,
    #[serde(default)]
    candidates: Vec<serde_json::Value>,
    delta: Option<serde_json::Value>,
}

impl StreamUsage {
    /// Look at one upstream SSE `data` payload.
    pub fn observe(&mut self, data: &str) {
        if data == "[DONE]" {
            return;
        }
        let Ok(event) = serde_json::from_str::<StreamEvent>(data) else {
            return;
        };
        let usage = event.usage.or(event.message.and_then(|m| m.usage));
        if let Some(usage) = usage {
            if let Some(prompt) = usage.prompt() {
                self.prompt = Some(prompt);
            }
            if let Some(completion) = usage.completion() {
                self.completion = Some(completion);
            }
        }
        for choice in &event.choices {
            if let Some(text) = choice.pointer("/delta/content").and_then(|c| c.as_str()) {
                self.streamed_chars = self.streamed_chars.saturating_add(text.len() as u64);
            }
        }
        // Gemini: candidates[].content.parts[].text.
        for candidate in &event.candidates {
            let parts = candidate
                .pointer("/content/parts")
                .and_then(|p| p.as_array());
            for part in parts.into_iter().flatten() {
                if let Some(text) = part.get("text").and_then(|t| t.as_str()) {
                    self.streamed_chars = self.streamed_chars.saturating_add(text.len() as u64);
                }
            }
        }
        if let Some(text) = event
            .delta
            .as_ref()
            .and_then(|d| d.get("text"))
            .and_then(|t| t.as_str())
        {
            self.streamed_chars = self.streamed_chars.saturating_add(text.len() as u64);
        }
    }

    /// Whether this payload is an OpenAI usage-only chunk (`choices: []` with `usage`).
    pub fn is_usage_only_chunk(data: &str) -> bool {
        data.contains("\"usage\"")
            && serde_json::from_str::<StreamEvent>(data)
                .is_ok_and(|e| e.choices.is_empty() && e.usage.is_some() && e.delta.is_none())
    }

    /// What the stream used; estimates fill what the upstream did not report.
    pub fn finish(&self, prompt_estimate: u64) -> TokenUsage {
        TokenUsage {
            prompt: self.prompt.unwrap_or(prompt_estimate),
            completion: self.completion.unwrap_or(self.streamed_chars.div_ceil(4)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_usage_of_both_providers_is_read() {
        let openai =
            br#"{"id":"x","usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;
        assert_eq!(
            from_json(openai),
            Some(TokenUsage {
                prompt: 12,
                completion: 5
            })
        );
        let anthropic = br#"{"type":"message","usage":{"input_tokens":7,"output_tokens":3,"cache_read_input_tokens":2}}"#;
        assert_eq!(
            from_json(anthropic),
            Some(TokenUsage {
                prompt: 9,
                completion: 3
            })
        );
        assert_eq!(from_json(b"not json"), None);
        let spaced = br#"{"usage" : {"prompt_tokens": 1, "completion_tokens": 2}}"#;
        assert_eq!(
            from_json(spaced),
            Some(TokenUsage {
                prompt: 1,
                completion: 2
            }),
            "whole-body fallback"
        );
    }

    #[test]
    fn stream_usage_comes_from_the_usage_chunk_or_anthropic_events() {
        let mut openai = StreamUsage::default();
        openai.observe(r#"{"choices":[{"index":0,"delta":{"content":"hello"}}]}"#);
        openai.observe(r#"{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}"#);
        openai.observe("[DONE]");
        assert_eq!(
            openai.finish(99),
            TokenUsage {
                prompt: 4,
                completion: 2
            }
        );

        let mut anthropic = StreamUsage::default();
        anthropic.observe(
            r#"{"type":"message_start","message":{"usage":{"input_tokens":11,"output_tokens":1}}}"#,
        );
        anthropic.observe(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
        );
        anthropic.observe(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":6}}"#);
        assert_eq!(
            anthropic.finish(99),
            TokenUsage {
                prompt: 11,
                completion: 6
            }
        );
    }

    #[test]
    fn gemini_usage_metadata_is_read_from_answers_and_streams() {
        let body = br#"{"candidates":[{"content":{"parts":[{"text":"hi"}]}}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":4,"thoughtsTokenCount":3,"totalTokenCount":16}}"#;
        assert_eq!(
            from_json(body),
            Some(TokenUsage {
                prompt: 9,
                completion: 7
            })
        );
        let mut stream = StreamUsage::default();
        stream.observe(r#"{"candidates":[{"content":{"parts":[{"text":"hel"}]}}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":1}}"#);
        stream.observe(r#"{"candidates":[{"content":{"parts":[{"text":"lo"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":2}}"#);
        assert_eq!(
            stream.finish(99),
            TokenUsage {
                prompt: 9,
                completion: 2
            }
        );
        let mut unreported = StreamUsage::default();
        unreported.observe(r#"{"candidates":[{"content":{"parts":[{"text":"12345678"}]}}]}"#);
        assert_eq!(unreported.finish(5).completion, 2);
    }

    #[test]
    fn bedrock_usage_is_read_from_converse_answers_and_stream_metadata() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[{"text":"hi"}]}},"stopReason":"end_turn","usage":{"inputTokens":10,"outputTokens":4,"cacheReadInputTokens":5,"cacheWriteInputTokens":2,"totalTokens":21}}"#;
        assert_eq!(
            from_json(body),
            Some(TokenUsage {
                prompt: 17,
                completion: 4
            })
        );
        let mut stream = StreamUsage::default();
        stream.observe(r#"{"contentBlockIndex":0,"delta":{"text":"hello"}}"#);
        stream.observe(r#"{"usage":{"inputTokens":12,"outputTokens":3,"totalTokens":15},"metrics":{"latencyMs":40}}"#);
        assert_eq!(
            stream.finish(99),
            TokenUsage {
                prompt: 12,
                completion: 3
            }
        );
    }

    #[test]
    fn a_stream_without_usage_is_estimated_from_its_text() {
        let mut usage = StreamUsage::default();
        usage.observe(r#"{"choices":[{"index":0,"delta":{"content":"12345678"}}]}"#);
        assert_eq!(
            usage.finish(30),
            TokenUsage {
                prompt: 30,
                completion: 2
            }
        );
    }

    #[test]
    fn absurd_upstream_token_counts_saturate() {
        let body = format!(
            r#"{{"usage":{{"input_tokens":{max},"output_tokens":{max},"cache_read_input_tokens":{max}}}}}"#,
            max = u64::MAX
        );
        let usage = from_json(body.as_bytes()).expect("usage");
        assert_eq!(usage.prompt, u64::MAX);
        assert_eq!(usage.total(), u64::MAX);
    }

    #[test]
    fn only_usage_chunks_are_recognised_as_such() {
        assert!(StreamUsage::is_usage_only_chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(!StreamUsage::is_usage_only_chunk(
            r#"{"choices":[{"delta":{}}],"usage":null}"#
        ));
    }
}
