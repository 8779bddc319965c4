//! Virtual keys: one row each in `virtual_keys` (value sealed like a provider key, plus its
//! SHA-256 for lookups and uniqueness), their `provider_configs` in `virtual_key_providers`.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

use super::error::{EntityKind, QueryContext, StoreError};
use super::governance::require_id;
use super::references::require;
use super::rows::{from_bigint, from_flag, from_json, position, to_flag, to_json};
use super::secrets::Secrets;
use super::Store;
use crate::config::{VirtualKeyConfig, VirtualKeyProviderConfig};

type KeyRow = (
    String,
    String,
    Option<String>,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);
type ProviderRow = (
    String,
    i64,
    String,
    String,
    String,
    String,
    f64,
    Option<String>,
    Option<String>,
);

/// Lowercase hex SHA-256 of a virtual key value. Virtual keys are long random tokens, so an
/// unsalted hash is enough to find one without being a way to recover it.
pub(crate) fn value_hash(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Every virtual key, values revealed, sorted by id.
pub(crate) async fn load_all(
    conn: &mut AnyConnection,
    secrets: &Secrets,
) -> Result<Vec<VirtualKeyConfig>, StoreError> {
    const CONTEXT: &str = "loading virtual keys";
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT id, name, description, value_encrypted, is_active, team_id, customer_id, budget_id, \
         rate_limit_id, max_in_flight, expires_at FROM virtual_keys ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await
    .context(CONTEXT)?;
    let provider_rows: Vec<ProviderRow> = sqlx::query_as(
        "SELECT virtual_key_id, position, provider, allowed_models, key_ids, blacklisted_models, \
         weight, budget_id, rate_limit_id FROM virtual_key_providers ORDER BY virtual_key_id, position",
    )
    .fetch_all(&mut *conn)
    .await
    .context(CONTEXT)?;

    let mut provider_configs: HashMap<String, Vec<VirtualKeyProviderConfig>> = HashMap::new();
    for (vk, position, provider, models, key_ids, blacklisted, weight, budget_id, rate_limit_id) in
        provider_rows
    {
        let at = |column: &str| format!("virtual_key_providers ({vk}, {position}).{column}");
        let config = VirtualKeyProviderConfig {
            provider,
            allowed_models: from_json(&models, || at("allowed_models"))?,
            key_ids: from_json(&key_ids, || at("key_ids"))?,
            blacklisted_models: from_json(&blacklisted, || at("blacklisted_models"))?,
            weight,
            budget_id,
            rate_limit_id,
        };
        provider_configs.entry(vk).or_default().push(config);
    }

    rows.into_iter()
        .map(
            |(
                id,
                name,
                description,
                value,
                active,
                team,
                customer,
                budget,
                rate_limit,
                max,
                expires,
            )| {
                let at = |column: &str| format!("virtual_keys ({id}).{column}");
                Ok(VirtualKeyConfig {
                    value: secrets.reveal(&value, || at("value_encrypted"))?,
                    is_active: from_flag(active, || at("is_active"))?,
                    max_in_flight: max
                        .map(|v| from_bigint(v, || at("max_in_flight")))
                        .transpose()?,
                    provider_configs: provider_configs.remove(&id).unwrap_or_default(),
                    name,
                    description,
                    team_id: team,
                    customer_id: customer,
                    budget_id: budget,
                    rate_limit_id: rate_limit,
                    expires_at: expires,
                    id,
                })
            },
        )
        .collect()
}

/// Upserts a virtual key and replaces its provider configs, inside a config write
/// transaction. Everything it references must exist; its value must be unique.
pub(crate) async fn write(
    conn: &mut AnyConnection,
    secrets: &Secrets,
    vk: &VirtualKeyConfig,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "writing a virtual key";
    let me = (EntityKind::VirtualKey, vk.id.as_str());
    require_id(me.0, me.1)?;
    if vk.value.trim().is_empty() {
        return Err(StoreError::Invalid {
            what: format!("virtual key \"{}\" value", vk.id),
            reason: "must not be empty".to_string(),
        });
    }
    require(conn, me, "team_id", EntityKind::Team, vk.team_id.as_deref()).await?;
    let customer = vk.customer_id.as_deref();
    require(conn, me, "customer_id", EntityKind::Customer, customer).await?;
    require(
        conn,
        me,
        "budget_id",
        EntityKind::Budget,
        vk.budget_id.as_deref(),
    )
    .await?;
    let rate_limit = vk.rate_limit_id.as_deref();
    require(conn, me, "rate_limit_id", EntityKind::RateLimit, rate_limit).await?;
    for (index, pc) in vk.provider_configs.iter().enumerate() {
        let field = |name: &str| format!("provider_configs[{index}].{name}");
        let provider = Some(pc.provider.as_str());
        require(conn, me, &field("provider"), EntityKind::Provider, provider).await?;
        let budget = pc.budget_id.as_deref();
        require(conn, me, &field("budget_id"), EntityKind::Budget, budget).await?;
        let rate_limit = pc.rate_limit_id.as_deref();
        require(
            conn,
            me,
            &field("rate_limit_id"),
            EntityKind::RateLimit,
            rate_limit,
        )
        .await?;
        if !pc.weight.is_finite() {
            return Err(StoreError::Invalid {
                what: format!("virtual key \"{}\" {}", vk.id, field("weight")),
                reason: "must be a finite number".to_string(),
            });
        }
    }

    let hash = value_hash(&vk.value);
    let holder: Option<String> =
        sqlx::query_scalar("SELECT id FROM virtual_keys WHERE value_hash = $1 AND id <> $2")
            .bind(&hash)
            .bind(&vk.id)
            .fetch_optional(&mut *conn)
            .await
            .context(CONTEXT)?;
    if let Some(holder) = holder {
        return Err(StoreError::Conflict {
            kind: EntityKind::VirtualKey,
            id: vk.id.clone(),
            reason: format!("its value is already used by virtual key \"{holder}\""),
        });
    }

    sqlx::query(
        "INSERT INTO virtual_keys (id, name, description, value_encrypted, value_hash, \
         is_active, team_id, customer_id, budget_id, rate_limit_id, max_in_flight, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
         description = excluded.description, \
         value_encrypted = excluded.value_encrypted, value_hash = excluded.value_hash, \
         is_active = excluded.is_active, team_id = excluded.team_id, \
         customer_id = excluded.customer_id, budget_id = excluded.budget_id, \
         rate_limit_id = excluded.rate_limit_id, max_in_flight = excluded.max_in_flight, \
         expires_at = excluded.expires_at",
    )
    .bind(&vk.id)
    .bind(&vk.name)
    .bind(vk.description.clone())
    .bind(secrets.seal(&vk.value)?)
    .bind(hash)
    .bind(to_flag(vk.is_active))
    .bind(vk.team_id.clone())
    .bind(vk.customer_id.clone())
    .bind(vk.budget_id.clone())
    .bind(vk.rate_limit_id.clone())
    .bind(vk.max_in_flight.map(i64::from))
    .bind(vk.expires_at.clone())
    .execute(&mut *conn)
    .await
    .context(CONTEXT)?;

    sqlx::query("DELETE FROM virtual_key_providers WHERE virtual_key_id = $1")
        .bind(&vk.id)
        .execute(&mut *conn)
        .await
        .context(CONTEXT)?;
    for (index, pc) in vk.provider_configs.iter().enumerate() {
        let what =
            |name: &str| format!("virtual key \"{}\" provider_configs[{index}].{name}", vk.id);
        sqlx::query(
            "INSERT INTO virtual_key_providers (virtual_key_id, position, provider, \
             allowed_models, key_ids, blacklisted_models, weight, budget_id, rate_limit_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&vk.id)
        .bind(position(index))
        .bind(&pc.provider)
        .bind(to_json(&pc.allowed_models, || what("allowed_models"))?)
        .bind(to_json(&pc.key_ids, || what("key_ids"))?)
        .bind(to_json(&pc.blacklisted_models, || {
            what("blacklisted_models")
        })?)
        .bind(pc.weight)
        .bind(pc.budget_id.clone())
        .bind(pc.rate_limit_id.clone())
        .execute(&mut *conn)
        .await
        .context(CONTEXT)?;
    }
    Ok(())
}

/// A fresh virtual key value: `sk-bf-` and 32 random bytes in hex.
pub fn generate_value() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|err| StoreError::Crypto {
        reason: format!("generating a virtual key value: {err}"),
    })?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sk-bf-{hex}"))
}

/// Marks the generated value of virtual key `id` to be shown once by the admin API.
pub(crate) async fn mark_reveal_pending(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE virtual_keys SET value_reveal_pending = 1 WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await
        .context("marking a generated virtual key value")?;
    Ok(())
}

impl Store {
    /// Creates or replaces a virtual key; what it references must exist and its value must
    /// not belong to another key.
    pub async fn put_virtual_key(&self, vk: &VirtualKeyConfig) -> Result<(), StoreError> {
        let mut tx = self.begin_config_write().await?;
        write(&mut tx, &self.secrets, vk).await?;
        tx.commit().await.context("committing a virtual key")
    }

    /// Whether the generated value of virtual key `id` is still to be shown; true for one
    /// caller only (the flag is cleared in the same statement), across every replica.
    pub async fn take_value_reveal(&self, id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE virtual_keys SET value_reveal_pending = 0 \
             WHERE id = $1 AND value_reveal_pending = 1",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .context("revealing a generated virtual key value")?;
        Ok(result.rows_affected() == 1)
    }

    /// Deletes a virtual key with its provider configs.
    pub async fn delete_virtual_key(&self, id: &str) -> Result<(), StoreError> {
        self.delete_entity(EntityKind::VirtualKey, id).await
    }

    /// The id of the virtual key whose value is `value`, looked up by hash (nothing is
    /// decrypted).
    pub async fn find_virtual_key_id(&self, value: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT id FROM virtual_keys WHERE value_hash = $1")
            .bind(value_hash(value))
            .fetch_optional(&self.pool)
            .await
            .context("looking up a virtual key")
    }
}
