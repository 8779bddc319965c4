//! Finding the virtual key in a request: `x-bf-vk` (any value), or an `sk-bf-` value in
//! `Authorization: Bearer` (OpenAI SDKs) or `x-api-key` (Anthropic SDKs). Other bearer tokens
//! are not virtual keys (clients often send placeholder keys) and are ignored.

use http::HeaderMap;

/// Prefix of virtual key values accepted in the SDKs' own auth headers.
pub const VK_PREFIX: &str = "sk-bf-";

/// The credentials of an `Authorization` value using `scheme`; schemes compare
/// case-insensitively (RFC 9110 §11.1), so `bearer x`, `Bearer x` and `BEARER x` are alike.
pub fn authorization_credentials<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, credentials) = value.trim().split_once([' ', '\t'])?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| credentials.trim())
}

/// The virtual key value the request carries, if any.
pub fn virtual_key_value(headers: &HeaderMap) -> Option<&str> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(value) = header("x-bf-vk").filter(|v| !v.is_empty()) {
        return Some(value);
    }
    if let Some(token) = header("authorization")
        .and_then(|v| authorization_credentials(v, "Bearer"))
        .filter(|t| t.starts_with(VK_PREFIX))
    {
        return Some(token);
    }
    header("x-api-key").filter(|v| v.starts_with(VK_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn each_sdk_header_carries_a_virtual_key() {
        assert_eq!(
            virtual_key_value(&headers(&[("x-bf-vk", "legacy-key")])),
            Some("legacy-key")
        );
        assert_eq!(
            virtual_key_value(&headers(&[("authorization", "Bearer sk-bf-abc")])),
            Some("sk-bf-abc")
        );
        assert_eq!(
            virtual_key_value(&headers(&[("x-api-key", "sk-bf-xyz")])),
            Some("sk-bf-xyz")
        );
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["bearer sk-bf-abc", "BEARER sk-bf-abc", "BeArEr   sk-bf-abc"] {
            assert_eq!(
                virtual_key_value(&headers(&[("authorization", value)])),
                Some("sk-bf-abc"),
                "{value}"
            );
        }
        assert_eq!(authorization_credentials("Bearersk-bf-abc", "Bearer"), None);
        assert_eq!(authorization_credentials("basic abc", "Basic"), Some("abc"));
    }

    #[test]
    fn other_tokens_are_not_virtual_keys() {
        assert_eq!(
            virtual_key_value(&headers(&[("authorization", "Bearer sk-proj-123")])),
            None
        );
        assert_eq!(
            virtual_key_value(&headers(&[("x-api-key", "sk-ant-1")])),
            None
        );
        assert_eq!(virtual_key_value(&HeaderMap::new()), None);
    }
}
