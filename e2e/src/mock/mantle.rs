//! Bedrock Mantle, AWS Bedrock's OpenAI-compatible API (`bedrock-mantle.{region}.api.aws`): the
//! OpenAI routes also take requests signed with SigV4 for the signing name `bedrock-mantle`,
//! checked against `--aws-credentials` as the Bedrock routes check theirs (see [`sigv4`]; without
//! that flag any signature passes); a
//! request with a bearer key is an OpenAI (or Mantle API key) request as before.
//!
//! [`sigv4`]: super::sigv4

use axum::http::header::AUTHORIZATION;

use super::error::ApiError;
use super::sigv4::{self, Authorization, ALGORITHM, MANTLE_SERVICE};
use super::MockState;

/// AWS's message for an access key id it does not know.
const UNKNOWN_ACCESS_KEY: &str = "The security token included in the request is invalid.";

/// For a SigV4-signed request: who signed it (the access key id, for the stats), the region it
/// was signed for, and whether the signature is one of `--aws-credentials`' and matches. `None`
/// when the request is not signed (a bearer key).
pub fn signed_caller<'r>(
    state: &MockState,
    request: &sigv4::Request<'r>,
) -> Option<(String, String, Result<(), ApiError>)> {
    let value = request.headers.get(AUTHORIZATION)?.to_str().ok()?;
    if !value.starts_with(ALGORITHM) {
        return None;
    }
    let auth = match Authorization::parse(value) {
        Ok(auth) => auth,
        Err(message) => {
            let refused = ApiError::aws_forbidden("IncompleteSignatureException", message);
            return Some((String::new(), String::new(), Err(refused)));
        }
    };
    let (key, region) = (auth.access_key_id.to_owned(), auth.region.to_owned());
    let checked = match state.aws_credentials.get(auth.access_key_id) {
        // Without `--aws-credentials`, every signature passes, as on the Bedrock routes.
        _ if state.aws_credentials.is_empty() => Ok(()),
        Some(secret) => sigv4::verify(request, &auth, secret, MANTLE_SERVICE),
        None => Err(ApiError::aws_forbidden(
            "UnrecognizedClientException",
            UNKNOWN_ACCESS_KEY,
        )),
    };
    Some((key, region, checked))
}
