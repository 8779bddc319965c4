use std::fmt;

/// The kinds of entity the store holds, as named in errors and admin API responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    /// An upstream provider with its keys.
    Provider,
    /// A virtual key handed to clients.
    VirtualKey,
    /// A team of virtual keys.
    Team,
    /// A customer.
    Customer,
    /// A USD budget.
    Budget,
    /// A request/token rate limit.
    RateLimit,
}

impl EntityKind {
    /// Lower-case human name: `virtual key`, `rate limit`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Provider => "provider",
            EntityKind::VirtualKey => "virtual key",
            EntityKind::Team => "team",
            EntityKind::Customer => "customer",
            EntityKind::Budget => "budget",
            EntityKind::RateLimit => "rate limit",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong in the config store. Messages say what failed, where, and how
/// to fix it; none of them contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or opened.
    #[error("cannot open the {what}: {source}; check config_store.config and that the database is reachable")]
    Connect {
        /// Which store, e.g. `SQLite file ./bifrost.db` or `PostgreSQL database bifrost on db:5432`.
        what: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A schema migration failed (the store is left at the last migration that succeeded).
    #[error("config store migration failed on {backend}: {source}; the schema is at the last migration that succeeded, fix the cause and restart")]
    Migrate {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A statement failed.
    #[error("config store query failed while {context}: {source}")]
    Query {
        /// What the store was doing, e.g. `loading virtual keys`.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The configured encryption key is not the one the stored secrets were encrypted with.
    #[error("the encryption key does not match the one this config store's secrets were encrypted with; set BIFROST_ENCRYPTION_KEY (or encryption_key) to the key the other replicas use")]
    WrongEncryptionKey,
    /// The store holds encrypted secrets but no key was given.
    #[error("the config store holds encrypted secrets but no encryption key is set; set BIFROST_ENCRYPTION_KEY (or encryption_key) to the key they were encrypted with")]
    MissingEncryptionKey,
    /// PostgreSQL without an encryption key and without `plaintext_secrets`.
    #[error("refusing to keep provider and virtual key secrets unencrypted in PostgreSQL: set BIFROST_ENCRYPTION_KEY (or encryption_key), or set config_store.plaintext_secrets to true if plaintext is intended")]
    PlaintextRefused,
    /// Encryption itself failed (no randomness from the OS, bad KDF parameters).
    #[error("secret encryption failed: {reason}")]
    Crypto {
        /// What failed.
        reason: String,
    },
    /// No entity with that id.
    #[error("no {kind} \"{id}\" in the config store")]
    NotFound {
        /// What was looked for.
        kind: EntityKind,
        /// Its id (or name, for providers).
        id: String,
    },
    /// A delete refused because other entities still reference this one.
    #[error("{kind} \"{id}\" is still used by {}; change or delete those first", .by.join(", "))]
    InUse {
        /// What was to be deleted.
        kind: EntityKind,
        /// Its id.
        id: String,
        /// Who references it, e.g. `virtual key vk-1`.
        by: Vec<String>,
    },
    /// A write refused because it references an entity that does not exist.
    #[error("{kind} \"{id}\": {field} refers to {target_kind} \"{target}\", which is not in the config store; create it first")]
    UnknownReference {
        /// What was written.
        kind: EntityKind,
        /// Its id.
        id: String,
        /// The referencing field, e.g. `provider_configs[0].budget_id`.
        field: String,
        /// What the field refers to.
        target_kind: EntityKind,
        /// The missing id.
        target: String,
    },
    /// A write refused because it would clash with another entity.
    #[error("{kind} \"{id}\": {reason}")]
    Conflict {
        /// What was written.
        kind: EntityKind,
        /// Its id.
        id: String,
        /// The clash, e.g. `its value is already used by virtual key "vk-2"`.
        reason: String,
    },
    /// A value that cannot be stored (out of range, not a number).
    #[error("{what}: {reason}")]
    Invalid {
        /// Which value, e.g. `rate limit "rl-1" request_max_limit`.
        what: String,
        /// Why it cannot be stored.
        reason: String,
    },
    /// Stored data the gateway cannot read back.
    #[error("the config store holds unreadable data in {location}: {reason}; fix or delete that row (or restore a backup)")]
    Corrupt {
        /// Table, row and column, e.g. `provider_keys (openai, 0).models`.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn corrupt(location: impl Into<String>, reason: impl fmt::Display) -> Self {
        StoreError::Corrupt {
            location: location.into(),
            reason: reason.to_string(),
        }
    }
}

/// Attaches what the store was doing to a driver error.
pub(crate) trait QueryContext<T> {
    fn context(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> QueryContext<T> for Result<T, sqlx::Error> {
    fn context(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Query { context, source })
    }
}
