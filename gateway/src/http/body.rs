//! Reading request bodies under the configured size limit.

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap};

use crate::error::GatewayError;

/// Read the whole body, refusing more than `limit` bytes with 413 (early, from
/// `Content-Length`, when the client declares it).
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
            let too_large = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(GatewayError::PayloadTooLarge { limit_mb })
            } else {
                Err(GatewayError::InvalidRequest(format!(
                    "could not read the request body: {error}"
                )))
            }
        }
    }
}
