//! Turning `config_store` into a database connection, and running the migrations.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType, Migrator};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, SqlSafeStr};

use tracing::{info, warn};

use super::error::StoreError;
use crate::config::{ConfigStoreConfig, StoreType};

/// The SQLite file used when `config_store.config.path` is not set.
pub const DEFAULT_SQLITE_PATH: &str = "./bifrost.db";

/// sqlx's default bookkeeping table.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// How long a pool waits for a connection (and `open` for the server) before giving up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the store lives: a connection URL (which may hold the password, so never logged) and
/// a description for errors and logs (which never does).
pub(crate) struct Target {
    pub backend: StoreType,
    options: AnyConnectOptions,
    pub description: String,
}

impl Target {
    pub fn from_config(config: &ConfigStoreConfig) -> Result<Target, StoreError> {
        sqlx::any::install_default_drivers();
        match config.store_type {
            StoreType::Sqlite => sqlite_target(config),
            StoreType::Postgres => postgres_target(config),
        }
    }

    /// One connection outside the pool, for migrations and secret set-up.
    pub async fn connect(&self) -> Result<AnyConnection, StoreError> {
        let connecting = self.options.connect();
        match tokio::time::timeout(ACQUIRE_TIMEOUT, connecting).await {
            Ok(result) => result.map_err(|source| self.connect_error(source)),
            Err(_) => Err(self.connect_error(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {} s", ACQUIRE_TIMEOUT.as_secs()),
            )))),
        }
    }

    pub async fn pool(&self) -> Result<AnyPool, StoreError> {
        // SQLite serializes writers anyway; a few connections let reads overlap a write.
        let max_connections = match self.backend {
            StoreType::Sqlite => 4,
            StoreType::Postgres => 8,
        };
        AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(self.options.clone())
            .await
            .map_err(|source| self.connect_error(source))
    }

    fn connect_error(&self, source: sqlx::Error) -> StoreError {
        StoreError::Connect {
            what: self.description.clone(),
            source,
        }
    }
}

fn sqlite_target(config: &ConfigStoreConfig) -> Result<Target, StoreError> {
    let path = config
        .config
        .path
        .as_deref()
        .filter(|path| !path.trim().is_empty())
        .unwrap_or(DEFAULT_SQLITE_PATH);
    let description = format!("SQLite file {path}");
    let absolute = std::path::absolute(Path::new(path)).map_err(|err| StoreError::Invalid {
        what: "config_store.config.path".to_string(),
        reason: format!("cannot resolve \"{path}\": {err}"),
    })?;
    let absolute = absolute.to_str().ok_or_else(|| StoreError::Invalid {
        what: "config_store.config.path".to_string(),
        reason: format!("\"{path}\" is not valid UTF-8"),
    })?;
    // `mode=rwc` creates the file when it is missing.
    let url = format!("sqlite://{}?mode=rwc", percent_encode(absolute, b"/._-~"));
    let options = AnyConnectOptions::from_str(&url).map_err(|source| StoreError::Connect {
        what: description.clone(),
        source,
    })?;
    Ok(Target {
        backend: StoreType::Sqlite,
        options,
        description,
    })
}

fn postgres_target(config: &ConfigStoreConfig) -> Result<Target, StoreError> {
    let conn = &config.config;
    let required = |value: &Option<String>, field: &str| {
        value
            .clone()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| StoreError::Invalid {
                what: format!("config_store.config.{field}"),
                reason: "required when config_store.type is \"postgres\"".to_string(),
            })
    };
    let host = required(&conn.host, "host")?;
    let user = required(&conn.user, "user")?;
    let db_name = required(&conn.db_name, "db_name")?;
    let port = conn.port.unwrap_or(5432);
    let ssl_mode = conn.ssl_mode.as_deref().unwrap_or("prefer");
    let description = format!("PostgreSQL database {db_name} on {host}:{port}");

    let host_part = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]") // an IPv6 literal
    } else {
        host.clone()
    };
    let password = conn
        .password
        .as_deref()
        .map(|password| format!(":{}", percent_encode(password, b"")))
        .unwrap_or_default();
    let url = format!(
        "postgres://{}{password}@{host_part}:{port}/{}?sslmode={}",
        percent_encode(&user, b""),
        percent_encode(&db_name, b""),
        percent_encode(ssl_mode, b"-"),
    );
    let options = AnyConnectOptions::from_str(&url).map_err(|source| StoreError::Connect {
        what: description.clone(),
        source,
    })?;
    Ok(Target {
        backend: StoreType::Postgres,
        options,
        description,
    })
}

/// Percent-encodes every byte except ASCII letters, digits and `keep`.
fn percent_encode(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || keep.contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The embedded migrations, oldest first. A released migration is never edited (sqlx checks
/// their checksums); schema changes get a new file.
fn migrator() -> Migrator {
    let migrations = [
        (
            1,
            "config store",
            include_str!("../../migrations/0001_config_store.sql"),
        ),
        (
            2,
            "cluster",
            include_str!("../../migrations/0002_cluster.sql"),
        ),
        (
            3,
            "allow lists",
            include_str!("../../migrations/0003_allow_lists.sql"),
        ),
        (
            4,
            "virtual key expiry",
            include_str!("../../migrations/0004_virtual_key_expiry.sql"),
        ),
        (
            5,
            "blacklisted models",
            include_str!("../../migrations/0005_blacklisted_models.sql"),
        ),
        (
            6,
            "team and customer rate limits",
            include_str!("../../migrations/0006_team_customer_rate_limits.sql"),
        ),
        (
            7,
            "provider proxy",
            include_str!("../../migrations/0007_provider_proxy.sql"),
        ),
        (
            8,
            "virtual key reveal",
            include_str!("../../migrations/0008_virtual_key_reveal.sql"),
        ),
        (
            9,
            "self-hosted keys",
            include_str!("../../migrations/0009_self_hosted_keys.sql"),
        ),
        (
            10,
            "key credentials",
            include_str!("../../migrations/0010_key_credentials.sql"),
        ),
    ];
    Migrator::with_migrations(
        migrations
            .into_iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Applies pending migrations on `conn`. On PostgreSQL an advisory lock (sqlx's, per
/// database) is held meanwhile, so replicas starting together apply each migration once; on
/// SQLite the caller holds a write transaction (`BEGIN IMMEDIATE`) for the same effect.
///
/// This is `Migrator::run` spelled out with the public `Migrate` trait, because `run`'s
/// `Acquire` bound makes any future that calls it lose `Send`. Unlike `run`, migrations
/// applied by a newer gateway are tolerated (with a warning), so a rolling deploy can
/// restart old replicas after a new one migrated; migrations must stay backward compatible
/// for that.
pub(crate) async fn migrate(
    conn: &mut AnyConnection,
    backend: StoreType,
) -> Result<(), StoreError> {
    let failed = |source| StoreError::Migrate {
        backend: backend_name(backend),
        source,
    };
    conn.lock().await.map_err(failed)?;
    let applied = apply_pending(conn, &migrator()).await;
    let unlocked = conn.unlock().await;
    applied.map_err(failed)?;
    unlocked.map_err(failed)
}

async fn apply_pending(conn: &mut AnyConnection, migrator: &Migrator) -> Result<(), MigrateError> {
    conn.ensure_migrations_table(MIGRATIONS_TABLE).await?;
    if let Some(version) = conn.dirty_version(MIGRATIONS_TABLE).await? {
        return Err(MigrateError::Dirty(version));
    }
    let applied: HashMap<i64, Cow<'static, [u8]>> = conn
        .list_applied_migrations(MIGRATIONS_TABLE)
        .await?
        .into_iter()
        .map(|applied| (applied.version, applied.checksum))
        .collect();
    for migration in migrator.iter() {
        match applied.get(&migration.version) {
            Some(checksum) if *checksum != migration.checksum => {
                return Err(MigrateError::VersionMismatch(migration.version));
            }
            Some(_) => {}
            None => {
                conn.apply(MIGRATIONS_TABLE, migration).await?;
                info!(
                    version = migration.version,
                    description = %migration.description,
                    "applied config store migration"
                );
            }
        }
    }
    let newest_known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(newer) = applied.keys().copied().filter(|v| *v > newest_known).max() {
        warn!(
            schema_version = newer,
            gateway_schema_version = newest_known,
            "the config store schema is newer than this gateway knows (a newer gateway migrated it); continuing"
        );
    }
    Ok(())
}

pub(crate) fn backend_name(backend: StoreType) -> &'static str {
    match backend {
        StoreType::Sqlite => "sqlite",
        StoreType::Postgres => "postgres",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConnectionConfig;

    #[test]
    fn percent_encoding_keeps_only_safe_bytes() {
        assert_eq!(
            percent_encode("p@ss:w/rd é", b""),
            "p%40ss%3Aw%2Frd%20%C3%A9"
        );
        assert_eq!(percent_encode("/tmp/a b?.db", b"/._-~"), "/tmp/a%20b%3F.db");
    }

    #[test]
    fn postgres_without_host_names_the_field() {
        let config = ConfigStoreConfig {
            store_type: StoreType::Postgres,
            config: StoreConnectionConfig {
                user: Some("u".into()),
                db_name: Some("d".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = Target::from_config(&config)
            .err()
            .expect("host is required");
        assert!(
            err.to_string().contains("config_store.config.host"),
            "{err}"
        );
    }

    #[test]
    fn descriptions_never_contain_the_password() {
        let config = ConfigStoreConfig {
            store_type: StoreType::Postgres,
            config: StoreConnectionConfig {
                host: Some("db".into()),
                user: Some("u".into()),
                password: Some("hunter2".into()),
                db_name: Some("d".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let target = Target::from_config(&config).expect("valid");
        assert_eq!(target.description, "PostgreSQL database d on db:5432");
    }
}
