//! The shape of admin requests, checked before any handler: writes carry JSON (so a browser
//! form or a `text/plain` fetch cannot make one without a CORS preflight), and ids are short
//! and free of control characters (PostgreSQL rejects NUL in text; ids end up in logs and
//! metric labels).

use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{header, Method};
use serde_json::Value;

use crate::error::GatewayError;
use crate::http::body::read_limited;

/// Longest id (in characters) the admin API accepts, in the URL or in a body.
pub const MAX_ID_CHARS: usize = 256;

/// `None` when `id` is acceptable, else what is wrong with it.
fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("must not be empty".into());
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Some(format!("must be at most {MAX_ID_CHARS} characters"));
    }
    if id.chars().any(char::is_control) {
        return Some("must not contain control characters".into());
    }
    None
}

/// 400 for an id path parameter (`{id}`) that is empty, too long or has control characters.
pub fn check_path_ids(params: &[(String, String)]) -> Result<(), GatewayError> {
    for (name, value) in params {
        if let Some(problem) = id_problem(value) {
            return Err(GatewayError::InvalidRequest(format!(
                "{name} (in the URL): {problem}"
            )));
        }
    }
    Ok(())
}

/// Whether `value` is `application/json`, parameters (`; charset=utf-8`) allowed.
fn is_json(value: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Read the body of a write, requiring `Content-Type: application/json` (415) and checking the
/// ids in it (400); the body to hand on.
pub async fn check_body(
    parts: &Parts,
    body: Body,
    limit: usize,
    limit_mb: u32,
) -> Result<Body, GatewayError> {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(body);
    }
    let bytes: Bytes = read_limited(&parts.headers, body, limit, limit_mb).await?;
    let must_have_body = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    if must_have_body || !bytes.is_empty() {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if !content_type.is_some_and(is_json) {
            return Err(GatewayError::UnsupportedMediaType(format!(
                "admin API writes must be sent with Content-Type: application/json (got {})",
                content_type.map_or("none".to_string(), |t| format!("\"{t}\""))
            )));
        }
    }
    // Bodies that are not JSON are the handler's to report, with its usual message.
    if let Ok(document) = serde_json::from_slice::<Value>(&bytes) {
        let name_is_id = parts.uri.path().starts_with("/api/providers");
        check_value(&document, "", name_is_id)?;
    }
    Ok(Body::from(bytes))
}

/// Whether the field `key` holds an id: `id`, `*_id`, a `provider` reference, and `name` of a
/// provider (its id).
fn is_id_field(key: &str, path: &str, name_is_id: bool) -> bool {
    key == "id" || key.ends_with("_id") || key == "provider" || (name_is_id && path == "name")
}

fn check_value(value: &Value, path: &str, name_is_id: bool) -> Result<(), GatewayError> {
    let invalid = |path: &str, problem: &str| {
        let at = if path.is_empty() { "body" } else { path };
        Err(GatewayError::InvalidRequest(format!("{at}: {problem}")))
    };
    match value {
        Value::String(text) if text.contains('\0') => invalid(path, "must not contain NUL"),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                // Lists of ids (`key_ids`) are ids too.
                if path.ends_with("_ids") {
                    if let Value::String(id) = item {
                        if let Some(problem) = id_problem(id) {
                            return invalid(&item_path, &problem);
                        }
                    }
                }
                check_value(item, &item_path, name_is_id)?;
            }
            Ok(())
        }
        Value::Object(fields) => {
            for (key, field) in fields {
                let field_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if key.contains('\0') {
                    return invalid(path, "field names must not contain NUL");
                }
                if let Value::String(id) = field {
                    if is_id_field(key, &field_path, name_is_id) {
                        if let Some(problem) = id_problem(id) {
                            return invalid(&field_path, &problem);
                        }
                    }
                }
                check_value(field, &field_path, name_is_id)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problem(body: Value, name_is_id: bool) -> Option<String> {
        check_value(&body, "", name_is_id)
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn ids_in_bodies_are_bounded_and_printable() {
        assert_eq!(problem(json!({"id": "vk-1", "name": "x"}), false), None);
        assert_eq!(
            problem(json!({"id": "a\u{0}b"}), false).as_deref(),
            Some("id: must not contain control characters")
        );
        assert_eq!(
            problem(json!({"id": "a".repeat(1000)}), false).as_deref(),
            Some("id: must be at most 256 characters")
        );
        assert_eq!(
            problem(json!({"provider_configs": [{"provider": "p\n"}]}), false).as_deref(),
            Some("provider_configs[0].provider: must not contain control characters")
        );
        assert_eq!(
            problem(json!({"provider_configs": [{"key_ids": ["", "k"]}]}), false).as_deref(),
            Some("provider_configs[0].key_ids[0]: must not be empty")
        );
        assert_eq!(
            problem(json!({"name": "n".repeat(300)}), true).as_deref(),
            Some("name: must be at most 256 characters")
        );
        assert_eq!(problem(json!({"name": "n".repeat(300)}), false), None);
        assert_eq!(
            problem(json!({"description": "x\u{0}"}), false).as_deref(),
            Some("description: must not contain NUL")
        );
    }

    #[test]
    fn path_ids_are_bounded_and_printable() {
        let param = |v: &str| vec![("id".to_string(), v.to_string())];
        assert!(check_path_ids(&param("vk-1")).is_ok());
        assert!(check_path_ids(&param("a\u{0}")).is_err());
        assert!(check_path_ids(&param(&"a".repeat(257))).is_err());
        assert!(check_path_ids(&param(&"é".repeat(256))).is_ok());
    }

    #[test]
    fn json_media_types_are_recognised() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json("multipart/form-data; boundary=x"));
    }
}
