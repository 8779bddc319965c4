//! The config store: providers and their keys, virtual keys, teams, customers, budgets, rate
//! limits and budget usage, in SQLite (one node) or PostgreSQL (shared by every replica).
//!
//! One schema (`gateway/migrations/`) serves both backends through sqlx's `Any` driver, with
//! `$1` placeholders, which both drivers accept. Config writes bump `config_version` in the
//! same transaction, so a node that sees a higher version and reloads sees the write. Budget
//! usage is separate from definitions: imports and admin edits never touch it, spend is added
//! in SQL (`current_usage = current_usage + $1`) and resets are compare-and-set, so replicas
//! can flush and reset concurrently without losing spend.
//!
//! Secrets (provider key values, providers' extra headers, virtual key values) are encrypted
//! at rest with AES-256-GCM under an Argon2id-derived key (`secrets.rs`).

mod connect;
mod error;
mod governance;
mod import;
mod meta;
mod providers;
mod references;
mod rows;
mod secrets;
mod usage;
mod virtual_keys;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use sqlx::{Any, AnyPool, Connection, Transaction};
use tracing::info;

pub use connect::DEFAULT_SQLITE_PATH;
pub use error::{EntityKind, StoreError};
pub use virtual_keys::generate_value as generate_virtual_key_value;

use crate::config::{ConfigStoreConfig, GovernanceConfig, ProviderConfig, StoreType};
use error::QueryContext;
use secrets::Secrets;

/// Everything the gateway loads from the store at start-up and on a config-version change.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSnapshot {
    /// Providers by name, key values decrypted.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Virtual keys (values decrypted), teams, customers, budgets and rate limits, each sorted
    /// by id; the other governance fields are defaults (they come from the config file).
    pub governance: GovernanceConfig,
    /// Usage of every budget, by budget id.
    pub budget_usage: HashMap<String, BudgetUsage>,
    /// The config version this snapshot reflects.
    pub config_version: i64,
}

/// A budget's spend in its current period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetUsage {
    /// USD spent since `last_reset_ms`.
    pub current_usage: f64,
    /// Start of the current period (Unix ms).
    pub last_reset_ms: i64,
}

/// A connection pool to the config store plus the secret cipher. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: StoreType,
    secrets: Secrets,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("encrypted", &self.secrets.is_encrypted())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects (creating the SQLite file if missing), applies pending migrations and sets up
    /// secret encryption with `encryption_key` (the caller resolves `BIFROST_ENCRYPTION_KEY`
    /// or the config's `encryption_key`).
    ///
    /// Safe to call from several replicas at once: PostgreSQL migrations run under sqlx's
    /// advisory lock and SQLite's under a write transaction; the salt and key check are
    /// first-writer-wins. Fails with [`StoreError::WrongEncryptionKey`] when the key differs
    /// from the one the store was set up with, [`StoreError::MissingEncryptionKey`] when the
    /// store is encrypted and no key is given, and [`StoreError::PlaintextRefused`] for
    /// PostgreSQL without a key unless `config.plaintext_secrets` is set.
    pub async fn open(
        config: &ConfigStoreConfig,
        encryption_key: Option<&str>,
    ) -> Result<Store, StoreError> {
        let backend = config.store_type;
        if backend == StoreType::Postgres && encryption_key.is_none() && !config.plaintext_secrets {
            return Err(StoreError::PlaintextRefused);
        }
        let target = connect::Target::from_config(config)?;

        let mut conn = target.connect().await?;
        let secrets = match backend {
            StoreType::Sqlite => {
                // WAL lets readers proceed during a write; it is a property of the file, and
                // switching needs a lock no transaction may hold.
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&mut conn)
                    .await
                    .context("switching the SQLite file to WAL mode")?;
                // One write transaction around migrations and set-up: a second process
                // opening the same file waits here instead of racing.
                let mut tx = conn
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .context("locking the SQLite file for start-up")?;
                connect::migrate(&mut tx, backend).await?;
                let secrets = secrets::setup(&mut tx, encryption_key, backend).await?;
                tx.commit().await.context("committing start-up")?;
                secrets
            }
            StoreType::Postgres => {
                connect::migrate(&mut conn, backend).await?;
                let mut tx = conn.begin().await.context("starting start-up")?;
                let secrets = secrets::setup(&mut tx, encryption_key, backend).await?;
                tx.commit().await.context("committing start-up")?;
                secrets
            }
        };
        // Best effort: the connection is dropped either way.
        let _ = conn.close().await;

        let pool = target.pool().await?;
        let store = Store {
            pool,
            backend,
            secrets,
        };
        info!(
            backend = connect::backend_name(backend),
            store = %target.description,
            encrypted = store.secrets.is_encrypted(),
            "config store ready"
        );
        Ok(store)
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> StoreType {
        self.backend
    }

    /// Whether secrets are encrypted at rest.
    pub fn is_encrypted(&self) -> bool {
        self.secrets.is_encrypted()
    }

    /// Checks the database answers (for `/ready`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .context("pinging the config store")?;
        Ok(())
    }

    /// Closes every connection; further calls fail. For shutdown, after the last flush.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The current config version.
    pub async fn config_version(&self) -> Result<i64, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .context("reading the config version")?;
        meta::config_version(&mut conn).await
    }

    /// Everything in the store, read in one consistent snapshot.
    pub async fn snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        let mut tx = self.begin_read().await?;
        let config_version = meta::config_version(&mut tx).await?;
        let providers = providers::load_all(&mut tx, &self.secrets).await?;
        let governance = GovernanceConfig {
            virtual_keys: virtual_keys::load_all(&mut tx, &self.secrets).await?,
            teams: governance::load_teams(&mut tx).await?,
            customers: governance::load_customers(&mut tx).await?,
            budgets: governance::load_budgets(&mut tx).await?,
            rate_limits: governance::load_rate_limits(&mut tx).await?,
            ..GovernanceConfig::default()
        };
        let budget_usage = usage::load(&mut tx).await?;
        tx.rollback().await.context("ending the snapshot read")?;
        Ok(StoreSnapshot {
            providers,
            governance,
            budget_usage,
            config_version,
        })
    }

    /// A transaction that reads one consistent state of the database.
    async fn begin_read(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let begin = match self.backend {
            // WAL readers see the database as of their first read.
            StoreType::Sqlite => self.pool.begin().await,
            StoreType::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
            }
        };
        begin.context("starting a read transaction")
    }

    /// A write transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`): a
    /// deferred transaction that reads first may be refused the lock later instead of waiting.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let begin = match self.backend {
            StoreType::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            StoreType::Postgres => self.pool.begin().await,
        };
        begin.context("starting a write transaction")
    }

    /// A write transaction for config (not usage): the version is bumped first, which also
    /// serializes config writers.
    async fn begin_config_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let mut tx = self.begin_write().await?;
        meta::bump_config_version(&mut tx).await?;
        Ok(tx)
    }
}
