//! Server-sent event bodies, split into events.

/// Read an SSE body to the end: `(event name, data)` per event, in order.
pub async fn sse_events(response: reqwest::Response) -> Vec<(Option<String>, String)> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.expect("stream chunk"));
    }
    parse_sse(&String::from_utf8_lossy(&body))
}

/// Split SSE text into `(event name, data)` pairs.
pub fn parse_sse(body: &str) -> Vec<(Option<String>, String)> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = Some(name.trim().to_string());
                } else if let Some(payload) = line.strip_prefix("data:") {
                    data.push(payload.strip_prefix(' ').unwrap_or(payload));
                }
            }
            (event, data.join("\n"))
        })
        .collect()
}

/// The JSON payloads of SSE text, `[DONE]` (or anything else that is not JSON) as a string.
pub fn sse_payloads(body: &str) -> Vec<serde_json::Value> {
    parse_sse(body)
        .into_iter()
        .map(|(_, data)| serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)))
        .collect()
}
