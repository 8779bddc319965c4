//! The `meta` key/value table.

use sqlx::AnyConnection;

use super::error::{QueryContext, StoreError};

/// Bumped by every config write; nodes reload when they see a higher one.
pub(crate) const CONFIG_VERSION: &str = "config_version";
/// Argon2id salt, base64.
pub(crate) const KDF_SALT: &str = "kdf_salt";
/// Argon2id cost parameters.
pub(crate) const KDF_PARAMS: &str = "kdf_params";
/// A known plaintext encrypted with the derived key.
pub(crate) const KEY_CHECK: &str = "key_check";

pub(crate) async fn get(conn: &mut AnyConnection, key: &str) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await
        .context("reading the meta table")
}

/// Reads a key that set-up or the migrations must have written.
pub(crate) async fn require(conn: &mut AnyConnection, key: &str) -> Result<String, StoreError> {
    get(conn, key)
        .await?
        .ok_or_else(|| StoreError::corrupt(format!("meta.{key}"), "missing"))
}

/// Inserts `key` unless a row exists; the first writer wins when replicas race.
pub(crate) async fn insert_if_absent(
    conn: &mut AnyConnection,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(value)
        .execute(conn)
        .await
        .context("writing the meta table")?;
    Ok(())
}

pub(crate) async fn config_version(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    let text = require(conn, CONFIG_VERSION).await?;
    text.parse().map_err(|_| {
        StoreError::corrupt("meta.config_version", format!("\"{text}\" is not a number"))
    })
}

/// Increments the config version. Run first in every config write transaction: the row lock
/// it takes (PostgreSQL) serializes config writers, so checks made later in the transaction
/// (references, uniqueness) cannot race another writer.
pub(crate) async fn bump_config_version(conn: &mut AnyConnection) -> Result<(), StoreError> {
    let result = sqlx::query(
        "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'config_version'",
    )
    .execute(conn)
    .await
    .context("bumping the config version")?;
    if result.rows_affected() != 1 {
        return Err(StoreError::corrupt("meta.config_version", "missing"));
    }
    Ok(())
}
