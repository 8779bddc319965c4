//! Referential integrity with readable errors: writes must name entities that exist, deletes
//! are refused while something references the entity. (Foreign keys back this up in the
//! schema, but their errors cannot say who the referrers are.)

use std::collections::BTreeSet;

use sqlx::AnyConnection;

use super::error::{EntityKind, QueryContext, StoreError};
use super::Store;

fn exists_sql(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Provider => "SELECT COUNT(*) FROM providers WHERE name = $1",
        EntityKind::VirtualKey => "SELECT COUNT(*) FROM virtual_keys WHERE id = $1",
        EntityKind::Team => "SELECT COUNT(*) FROM teams WHERE id = $1",
        EntityKind::Customer => "SELECT COUNT(*) FROM customers WHERE id = $1",
        EntityKind::Budget => "SELECT COUNT(*) FROM budgets WHERE id = $1",
        EntityKind::RateLimit => "SELECT COUNT(*) FROM rate_limits WHERE id = $1",
    }
}

fn delete_sql(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Provider => "DELETE FROM providers WHERE name = $1",
        EntityKind::VirtualKey => "DELETE FROM virtual_keys WHERE id = $1",
        EntityKind::Team => "DELETE FROM teams WHERE id = $1",
        EntityKind::Customer => "DELETE FROM customers WHERE id = $1",
        EntityKind::Budget => "DELETE FROM budgets WHERE id = $1",
        EntityKind::RateLimit => "DELETE FROM rate_limits WHERE id = $1",
    }
}

/// Queries that list the ids of entities referencing one of `kind`.
fn referrers(kind: EntityKind) -> &'static [(EntityKind, &'static str)] {
    use EntityKind::*;
    match kind {
        Provider => &[(
            VirtualKey,
            "SELECT DISTINCT virtual_key_id FROM virtual_key_providers WHERE provider = $1",
        )],
        Budget => &[
            (Customer, "SELECT id FROM customers WHERE budget_id = $1"),
            (Team, "SELECT id FROM teams WHERE budget_id = $1"),
            (VirtualKey, "SELECT id FROM virtual_keys WHERE budget_id = $1"),
            (
                VirtualKey,
                "SELECT DISTINCT virtual_key_id FROM virtual_key_providers WHERE budget_id = $1",
            ),
        ],
        RateLimit => &[
            (Customer, "SELECT id FROM customers WHERE rate_limit_id = $1"),
            (Team, "SELECT id FROM teams WHERE rate_limit_id = $1"),
            (VirtualKey, "SELECT id FROM virtual_keys WHERE rate_limit_id = $1"),
            (
                VirtualKey,
                "SELECT DISTINCT virtual_key_id FROM virtual_key_providers WHERE rate_limit_id = $1",
            ),
        ],
        Customer => &[
            (Team, "SELECT id FROM teams WHERE customer_id = $1"),
            (VirtualKey, "SELECT id FROM virtual_keys WHERE customer_id = $1"),
        ],
        Team => &[(VirtualKey, "SELECT id FROM virtual_keys WHERE team_id = $1")],
        VirtualKey => &[],
    }
}

pub(crate) async fn exists(
    conn: &mut AnyConnection,
    kind: EntityKind,
    id: &str,
) -> Result<bool, StoreError> {
    let count: i64 = sqlx::query_scalar(exists_sql(kind))
        .bind(id)
        .fetch_one(conn)
        .await
        .context("checking a reference")?;
    Ok(count > 0)
}

/// Fails with [`StoreError::UnknownReference`] unless `target` (when set) exists.
pub(crate) async fn require(
    conn: &mut AnyConnection,
    (kind, id): (EntityKind, &str),
    field: &str,
    target_kind: EntityKind,
    target: Option<&str>,
) -> Result<(), StoreError> {
    let Some(target) = target else {
        return Ok(());
    };
    if exists(conn, target_kind, target).await? {
        return Ok(());
    }
    Err(StoreError::UnknownReference {
        kind,
        id: id.to_string(),
        field: field.to_string(),
        target_kind,
        target: target.to_string(),
    })
}

/// Who references `id`, as `virtual key vk-1`, sorted.
pub(crate) async fn users_of(
    conn: &mut AnyConnection,
    kind: EntityKind,
    id: &str,
) -> Result<Vec<String>, StoreError> {
    let mut users = BTreeSet::new();
    for (referrer, sql) in referrers(kind) {
        let ids: Vec<String> = sqlx::query_scalar(*sql)
            .bind(id)
            .fetch_all(&mut *conn)
            .await
            .context("listing references")?;
        users.extend(ids.into_iter().map(|id| format!("{referrer} {id}")));
    }
    Ok(users.into_iter().collect())
}

impl Store {
    /// Deletes one entity: [`StoreError::NotFound`] when absent, [`StoreError::InUse`] while
    /// referenced. Dependent rows (keys, provider configs) go with it; a budget's usage too.
    pub(crate) async fn delete_entity(&self, kind: EntityKind, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_config_write().await?;
        if !exists(&mut tx, kind, id).await? {
            return Err(StoreError::NotFound {
                kind,
                id: id.to_string(),
            });
        }
        let by = users_of(&mut tx, kind, id).await?;
        if !by.is_empty() {
            return Err(StoreError::InUse {
                kind,
                id: id.to_string(),
                by,
            });
        }
        sqlx::query(delete_sql(kind))
            .bind(id)
            .execute(&mut *tx)
            .await
            .context("deleting from the config store")?;
        tx.commit().await.context("committing a delete")
    }
}
