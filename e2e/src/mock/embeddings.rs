//! `POST /v1/embeddings`: deterministic unit vectors seeded by a hash of each input.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::config::MAX_EMBEDDING_DIMS;
use super::error::{ApiError, Wire};
use super::stats::Route;
use super::MockState;

/// OpenAI's limit on inputs per request.
const MAX_INPUTS: usize = 2048;

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Input,
    dimensions: Option<u64>,
    encoding_format: Option<String>,
}

/// The four shapes OpenAI accepts for `input`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

/// One input to embed.
#[derive(Debug, Clone, Copy)]
enum Item<'a> {
    Text(&'a str),
    Tokens(&'a [u32]),
}

impl Input {
    fn items(&self) -> Vec<Item<'_>> {
        match self {
            Input::Text(text) => vec![Item::Text(text)],
            Input::Texts(texts) => texts.iter().map(|text| Item::Text(text)).collect(),
            Input::Tokens(tokens) => vec![Item::Tokens(tokens)],
            Input::TokenLists(lists) => lists.iter().map(|tokens| Item::Tokens(tokens)).collect(),
        }
    }
}

impl Item<'_> {
    fn is_empty(self) -> bool {
        match self {
            Item::Text(text) => text.is_empty(),
            Item::Tokens(tokens) => tokens.is_empty(),
        }
    }

    /// Words of a text, or the number of tokens.
    fn tokens(self) -> u64 {
        match self {
            Item::Text(text) => text.split_whitespace().count() as u64,
            Item::Tokens(tokens) => tokens.len() as u64,
        }
    }

    /// FNV-1a over the text's bytes or the tokens' little-endian bytes.
    fn seed(self) -> u64 {
        let fnv = |hash: u64, byte: &u8| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        let basis = 0xcbf2_9ce4_8422_2325;
        match self {
            Item::Text(text) => text.as_bytes().iter().fold(basis, fnv),
            Item::Tokens(tokens) => tokens
                .iter()
                .flat_map(|token| token.to_le_bytes())
                .fold(basis, |hash, byte| fnv(hash, &byte)),
        }
    }
}

#[derive(Debug, Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<Embedding>,
    model: &'a str,
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct Embedding {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

/// `encoding_format: "float"` gives numbers, `"base64"` (the Python SDK's default) the
/// little-endian f32 bytes in base64.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .serve_inference(Wire::OpenAi, Route::Embeddings, &headers, |_| {
            embed_request(&state, &body)
        })
        .await
}

pub(super) fn embed_request(state: &MockState, body: &[u8]) -> Result<Response, ApiError> {
    let request: EmbeddingsRequest =
        serde_json::from_slice(body).map_err(ApiError::invalid_body)?;
    let dims = match request.dimensions {
        None => state.embedding_dims,
        Some(dims @ 1..) if dims <= MAX_EMBEDDING_DIMS as u64 => dims as usize,
        Some(_) => {
            return Err(ApiError::invalid_request(format!(
                "mock: dimensions must be within 1..={MAX_EMBEDDING_DIMS}"
            )))
        }
    };
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(ApiError::invalid_request(
                "mock: encoding_format must be \"float\" or \"base64\"",
            ))
        }
    };
    let items = request.input.items();
    if items.is_empty() || items.len() > MAX_INPUTS || items.iter().any(|item| item.is_empty()) {
        return Err(ApiError::invalid_request(format!(
            "mock: input must hold 1..={MAX_INPUTS} non-empty items"
        )));
    }

    let data = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let vector = unit_vector(item.seed(), dims);
            Embedding {
                object: "embedding",
                index,
                embedding: if base64 {
                    Vector::Base64(encode_base64(&f32_le_bytes(&vector)))
                } else {
                    Vector::Floats(vector)
                },
            }
        })
        .collect();
    let prompt_tokens = items.iter().map(|item| item.tokens()).sum::<u64>().max(1);
    let list = EmbeddingList {
        object: "list",
        data,
        model: &request.model,
        usage: Usage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    Ok(Json(list).into_response())
}

/// The vector `/v1/embeddings` gives `text` in `dims` dimensions (Gemini's routes use it too).
pub(super) fn text_vector(text: &str, dims: usize) -> Vec<f32> {
    unit_vector(Item::Text(text).seed(), dims)
}

/// A vector of length `dims` and norm 1 (as OpenAI's are), the same for the same seed.
fn unit_vector(seed: u64, dims: usize) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut vector: Vec<f32> = (0..dims).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

fn f32_le_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Standard base64 with padding; small enough not to warrant a dependency.
fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let byte = |i: usize| u32::from(group.get(i).copied().unwrap_or(0));
        let bits = byte(0) << 16 | byte(1) << 8 | byte(2);
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(bits >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(encode_base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn vectors_are_unit_length_and_deterministic() {
        let a = unit_vector(Item::Text("hello").seed(), 16);
        assert_eq!(a, unit_vector(Item::Text("hello").seed(), 16));
        assert_ne!(a, unit_vector(Item::Text("hellp").seed(), 16));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
}
