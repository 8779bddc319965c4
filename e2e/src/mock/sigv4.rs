//! AWS Signature Version 4 as AWS's services check it, for the Bedrock routes and STS. The mock has its
//! own implementation on purpose: the gateway signs with the `aws-sigv4` crate, so checking it
//! with the same crate would prove nothing; `boto3` proves this one.
//!
//! The canonical request is the method, the canonical URI (the path as sent, URI-encoded once
//! more, as for every service but S3: a model id's `%3A` is signed as `%253A`), the canonical
//! query string (names and values decoded, URI-encoded again and sorted), the signed headers as
//! sorted lower-case `name:value` lines (values trimmed, inner runs of spaces collapsed, repeats
//! joined by `,`), the signed header names, and the hex SHA-256 of the body. The string to sign
//! and the signing key are AWS's: `AWS4-HMAC-SHA256`, `x-amz-date`, the credential scope and the
//! hash of the canonical request, signed with an HMAC chain over `AWS4<secret>`, the date, the
//! region, the service and `aws4_request`. Only `x-amz-date` dates a request (not `Date`), and
//! the request's age is not checked.

use std::fmt::Write as _;

use axum::http::{header, HeaderMap, Method, Uri};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// The `Authorization` scheme of SigV4.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Bedrock Runtime's signing name: its endpoint is `bedrock-runtime`, its scope `bedrock`.
pub const SERVICE: &str = "bedrock";

/// Bedrock Mantle's (OpenAI-compatible API) signing name.
pub const MANTLE_SERVICE: &str = "bedrock-mantle";

/// The last part of every credential scope.
const TERMINATOR: &str = "aws4_request";

/// AWS's message for a signature that does not match (403 `InvalidSignatureException`).
pub const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the \
     signature you provided. Check your AWS Secret Access Key and signing method. Consult the \
     service documentation for details.";

/// The request as it came, which is what the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// `AWS4-HMAC-SHA256 Credential=<id>/<date>/<region>/<service>/aws4_request,
/// SignedHeaders=<a;b;...>, Signature=<hex>` in parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    /// The credential scope's `yyyymmdd`.
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    terminator: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

impl<'a> Authorization<'a> {
    /// The parts of a SigV4 `Authorization` value; what is missing as AWS's message of an
    /// `IncompleteSignatureException`.
    pub fn parse(value: &'a str) -> Result<Self, String> {
        let incomplete = |what: &str| format!("{what} Authorization={value}");
        let Some((ALGORITHM, parameters)) = value.split_once(' ') else {
            return Err(incomplete("Unsupported Authorization Type."));
        };
        let mut credential = None;
        let mut signed_headers = None;
        let mut signature = None;
        for parameter in parameters.split(',') {
            match parameter.trim().split_once('=') {
                Some(("Credential", value)) => credential = Some(value),
                Some(("SignedHeaders", value)) => signed_headers = Some(value),
                Some(("Signature", value)) => signature = Some(value),
                _ => {}
            }
        }
        let missing: Vec<String> = [
            ("Credential", credential.is_none()),
            ("Signature", signature.is_none()),
            ("SignedHeaders", signed_headers.is_none()),
        ]
        .iter()
        .filter(|(_, missing)| *missing)
        .map(|(name, _)| format!("Authorization header requires '{name}' parameter."))
        .collect();
        let (Some(credential), Some(signed_headers), Some(signature)) =
            (credential, signed_headers, signature)
        else {
            return Err(incomplete(&missing.join(" ")));
        };
        let parts: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, terminator] = parts[..] else {
            return Err(incomplete(&format!(
                "Credential should be of the form <access key id>/<yyyymmdd>/<region>/\
                 <service>/{TERMINATOR}, not '{credential}'."
            )));
        };
        Ok(Self {
            access_key_id,
            date,
            region,
            service,
            terminator,
            signed_headers,
            signature,
        })
    }

    /// The signed header names, lower-case and sorted, as the canonical request lists them.
    fn header_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .signed_headers
            .split(';')
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The credential scope: `<date>/<region>/<service>/aws4_request`.
    fn scope(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.date, self.region, self.service, self.terminator
        )
    }
}

/// Checks that `auth` signs `request` with `secret` for `service` (`bedrock`, `sts`); AWS's
/// 403 otherwise. A signature that does not match is logged with the canonical request the
/// mock computed, to compare with the signer's.
pub fn verify(
    request: &Request,
    auth: &Authorization,
    secret: &str,
    service: &str,
) -> Result<(), ApiError> {
    if auth.service != service {
        return Err(invalid_signature(format!(
            "Credential should be scoped to correct service: '{service}'. "
        )));
    }
    let signing = sign(request, auth, secret)?;
    if signing.signature == auth.signature {
        return Ok(());
    }
    tracing::warn!(
        access_key_id = auth.access_key_id,
        canonical_request = %signing.canonical_request,
        string_to_sign = %signing.string_to_sign,
        "SigV4 signature does not match"
    );
    Err(invalid_signature(SIGNATURE_MISMATCH))
}

/// 403 `IncompleteSignatureException`: the signature lacks something AWS requires.
fn incomplete(message: impl Into<String>) -> ApiError {
    ApiError::aws_forbidden("IncompleteSignatureException", message.into())
}

/// 403 `InvalidSignatureException`: the signature is complete but wrong.
fn invalid_signature(message: impl Into<String>) -> ApiError {
    ApiError::aws_forbidden("InvalidSignatureException", message.into())
}

/// What the mock computes for a request.
#[derive(Debug)]
struct Signing {
    canonical_request: String,
    string_to_sign: String,
    signature: String,
}

/// The canonical request, string to sign and signature of `request` under `auth`'s scope with
/// `secret`, after AWS's checks of the headers a signature must cover.
fn sign(request: &Request, auth: &Authorization, secret: &str) -> Result<Signing, ApiError> {
    let amz_date = header_text(request.headers, "x-amz-date").ok_or_else(|| {
        incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
             header.",
        )
    })?;
    if auth.terminator != TERMINATOR {
        return Err(invalid_signature(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'.",
            auth.terminator
        )));
    }
    let day = amz_date.get(..8).unwrap_or(amz_date);
    if auth.date != day {
        return Err(invalid_signature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{day}', from '{amz_date}'.",
            auth.date
        )));
    }
    let names = auth.header_names();
    if !names.iter().any(|name| name == "host") {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    if request.headers.contains_key("x-amz-security-token")
        && !names.iter().any(|name| name == "x-amz-security-token")
    {
        return Err(incomplete(
            "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let payload_hash = hex(&Sha256::digest(request.body));
    if header_text(request.headers, "x-amz-content-sha256").is_some_and(|sent| sent != payload_hash)
    {
        return Err(invalid_signature(
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }

    let canonical_request = canonical_request(request, &names, &payload_hash);
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        auth.scope(),
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let key = [auth.date, auth.region, auth.service, auth.terminator]
        .iter()
        .fold(format!("AWS4{secret}").into_bytes(), |key, part| {
            hmac_sha256(&key, part.as_bytes())
        });
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    Ok(Signing {
        canonical_request,
        string_to_sign,
        signature,
    })
}

/// Method, canonical URI, canonical query string, canonical headers, signed headers and payload
/// hash, one per line (the canonical headers end with their own newline).
fn canonical_request(request: &Request, names: &[String], payload_hash: &str) -> String {
    let path = request.uri.path();
    let canonical_uri = if path.is_empty() {
        "/".to_owned()
    } else {
        uri_encode(path.as_bytes(), true)
    };
    let headers: String = names
        .iter()
        .map(|name| format!("{name}:{}\n", header_values(request, name)))
        .collect();
    format!(
        "{}\n{canonical_uri}\n{}\n{headers}\n{}\n{payload_hash}",
        request.method.as_str(),
        canonical_query(request.uri.query().unwrap_or("")),
        names.join(";"),
    )
}

/// The values of header `name` trimmed, inner runs of spaces collapsed, joined by `,`; `host`
/// falls back to the URI's authority (HTTP/2 sends `:authority`, not `Host`).
fn header_values(request: &Request, name: &str) -> String {
    let values: Vec<String> = request
        .headers
        .get_all(name)
        .iter()
        .map(|value| {
            let text = String::from_utf8_lossy(value.as_bytes());
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect();
    match request.uri.authority() {
        Some(authority) if values.is_empty() && name == header::HOST.as_str() => {
            authority.as_str().to_owned()
        }
        _ => values.join(","),
    }
}

/// The query's `name=value` pairs decoded, URI-encoded again, sorted and joined by `&`.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(name), false),
                uri_encode(&percent_decode(value), false),
            )
        })
        .collect();
    pairs.sort();
    let pairs: Vec<String> = pairs
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    pairs.join("&")
}

/// SigV4's URI encoding: every byte but the unreserved `A-Za-z0-9-_.~` (and `/` when
/// `keep_slash`) as `%XX` in upper-case hex.
fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut encoded = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && byte == b'/')
        {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// `text` with its `%XX` escapes decoded; a `%` without two hex digits stays as it is.
pub(super) fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    decoded
}

/// A header's value when it is text.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Lower-case hex, as SigV4 writes hashes and signatures.
fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    /// The example of AWS's SigV4 documentation: IAM's `ListUsers` with the example key.
    const EXAMPLE_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
        Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
        SignedHeaders=content-type;host;x-amz-date, \
        Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
    const EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn example_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("host", "iam.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn the_documented_example_signs_as_aws_says() {
        let uri: Uri = "/?Version=2010-05-08&Action=ListUsers"
            .parse()
            .expect("valid URI");
        let headers = example_headers();
        let request = Request {
            method: &Method::GET,
            uri: &uri,
            headers: &headers,
            body: b"",
        };
        let auth = Authorization::parse(EXAMPLE_AUTHORIZATION).expect("complete");
        let signing = sign(&request, &auth, EXAMPLE_SECRET).expect("signed");
        assert_eq!(
            signing.canonical_request,
            "GET\n/\nAction=ListUsers&Version=2010-05-08\n\
             content-type:application/x-www-form-urlencoded; charset=utf-8\n\
             host:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             content-type;host;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(signing.signature, auth.signature);
        assert!(
            verify(&request, &auth, EXAMPLE_SECRET, SERVICE).is_err(),
            "scoped to iam, not bedrock"
        );
    }

    #[test]
    fn the_path_is_encoded_once_more_and_the_query_sorted() {
        assert_eq!(
            uri_encode(b"/model/arn%3Aaws%3Abedrock%2Fx y/converse", true),
            "/model/arn%253Aaws%253Abedrock%252Fx%20y/converse"
        );
        assert_eq!(canonical_query("b=2&a=x%2By&a=1&c"), "a=1&a=x%2By&b=2&c=");
        assert_eq!(percent_decode("a%3ab%zz%"), b"a:b%zz%");
    }

    #[test]
    fn incomplete_headers_name_what_is_missing() {
        let missing = Authorization::parse("AWS4-HMAC-SHA256 Credential=A/1/r/s/aws4_request")
            .expect_err("incomplete");
        assert!(
            missing.starts_with(
                "Authorization header requires 'Signature' parameter. Authorization header \
                 requires 'SignedHeaders' parameter."
            ),
            "{missing}"
        );
        assert!(Authorization::parse(
            "AWS4-HMAC-SHA256 Credential=A/1/r, SignedHeaders=host, Signature=x"
        )
        .is_err());
        assert!(Authorization::parse("Basic abc")
            .expect_err("not SigV4")
            .starts_with("Unsupported Authorization Type."));
    }

    #[test]
    fn a_session_token_must_be_signed_and_the_host_too() {
        let uri: Uri = "/".parse().expect("valid URI");
        let mut headers = example_headers();
        headers.insert("x-amz-security-token", HeaderValue::from_static("tok"));
        let request = Request {
            method: &Method::GET,
            uri: &uri,
            headers: &headers,
            body: b"",
        };
        let auth = Authorization::parse(EXAMPLE_AUTHORIZATION).expect("complete");
        let error = sign(&request, &auth, EXAMPLE_SECRET).expect_err("token unsigned");
        assert_eq!(error.kind, Some("IncompleteSignatureException"));
        assert!(error.message.contains("X-Amz-Security-Token"), "{error:?}");

        let value = EXAMPLE_AUTHORIZATION.replace("content-type;host;", "content-type;");
        let auth = Authorization::parse(&value).expect("complete");
        let error = sign(&request, &auth, EXAMPLE_SECRET).expect_err("host unsigned");
        assert!(error.message.contains("'Host'"), "{error:?}");
    }
}
