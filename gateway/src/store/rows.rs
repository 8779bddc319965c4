//! Conversions between config values and column values, with errors that name the place.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::StoreError;

/// A list or nested setting as JSON TEXT.
pub(crate) fn to_json<T: Serialize>(
    value: &T,
    what: impl Fn() -> String,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Invalid {
        what: what(),
        reason: format!("cannot be written as JSON: {err}"),
    })
}

/// A JSON TEXT column back into its value.
pub(crate) fn from_json<T: DeserializeOwned>(
    text: &str,
    location: impl Fn() -> String,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::corrupt(location(), err))
}

/// An unsigned count as BIGINT.
pub(crate) fn to_bigint(value: u64, what: impl Fn() -> String) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid {
        what: what(),
        reason: format!("{value} is larger than the store can hold ({})", i64::MAX),
    })
}

/// A BIGINT column back into an unsigned count.
pub(crate) fn from_bigint<T: TryFrom<i64>>(
    value: i64,
    location: impl Fn() -> String,
) -> Result<T, StoreError> {
    T::try_from(value)
        .map_err(|_| StoreError::corrupt(location(), format!("{value} is out of range")))
}

/// A config enum stored as its word (`"strict"`, `"local"`), read back through serde.
pub(crate) fn from_word<T: serde::de::DeserializeOwned>(
    value: &str,
    location: impl Fn() -> String,
) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|e| StoreError::corrupt(location(), format!("\"{value}\": {e}")))
}

/// A boolean as BIGINT 0/1 (the `Any` driver has no portable boolean).
pub(crate) fn to_flag(value: bool) -> i64 {
    i64::from(value)
}

pub(crate) fn from_flag(value: i64, location: impl Fn() -> String) -> Result<bool, StoreError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(StoreError::corrupt(
            location(),
            format!("{other} is not 0 or 1"),
        )),
    }
}

/// A list position as BIGINT.
pub(crate) fn position(index: usize) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}
