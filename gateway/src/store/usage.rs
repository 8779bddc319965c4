//! Budget usage: spend added in SQL and compare-and-set resets, so any number of replicas can
//! flush and reset concurrently without losing spend. Usage writes are not config changes and
//! leave `config_version` alone.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::AnyConnection;
use tracing::warn;

use super::error::{EntityKind, QueryContext, StoreError};
use super::references::exists;
use super::{BudgetUsage, Store};
use crate::config::StoreType;

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) async fn load(
    conn: &mut AnyConnection,
) -> Result<HashMap<String, BudgetUsage>, StoreError> {
    let rows: Vec<(String, f64, i64)> =
        sqlx::query_as("SELECT id, current_usage, last_reset FROM budgets")
            .fetch_all(conn)
            .await
            .context("loading budget usage")?;
    Ok(rows
        .into_iter()
        .map(|(id, current_usage, last_reset_ms)| {
            (
                id,
                BudgetUsage {
                    current_usage,
                    last_reset_ms,
                },
            )
        })
        .collect())
}

/// `current_usage += delta` for budget `id` inside `conn`'s transaction; false (with a
/// warning) when the budget no longer exists and the spend is dropped.
async fn add_to_budget(conn: &mut AnyConnection, id: &str, delta: f64) -> Result<bool, StoreError> {
    let result = sqlx::query("UPDATE budgets SET current_usage = current_usage + $1 WHERE id = $2")
        .bind(delta)
        .bind(id)
        .execute(&mut *conn)
        .await
        .context("adding budget spend")?;
    if result.rows_affected() == 0 {
        warn!(
            budget_id = id,
            spend = delta,
            "dropping spend for a budget that no longer exists"
        );
        return Ok(false);
    }
    Ok(true)
}

impl Store {
    /// Adds spend (USD) to budgets in one transaction, as `current_usage = current_usage +
    /// delta` in SQL. Deltas for the same budget are summed first; budgets are updated in id
    /// order so concurrent flushes cannot deadlock. Spend for a budget that no longer exists
    /// is dropped with a warning. A non-finite delta fails the whole call before anything is
    /// written.
    pub async fn add_budget_spend(&self, deltas: &[(String, f64)]) -> Result<(), StoreError> {
        let mut merged: BTreeMap<&str, f64> = BTreeMap::new();
        for (id, delta) in deltas {
            if !delta.is_finite() {
                return Err(StoreError::Invalid {
                    what: format!("spend for budget \"{id}\""),
                    reason: format!("{delta} is not a finite number of USD; nothing was added"),
                });
            }
            *merged.entry(id.as_str()).or_insert(0.0) += delta;
        }
        merged.retain(|_, delta| *delta != 0.0);
        if merged.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (id, delta) in merged {
            add_to_budget(&mut tx, id, delta).await?;
        }
        tx.commit().await.context("committing budget spend")
    }

    /// Brings the store up to date with one gateway process's cumulative spend: for each
    /// `(budget, total)`, adds `total - flushed_total` to the budget when positive and records
    /// `total` as flushed for `(node_id, generation, budget)`, all in one transaction. Sending
    /// the same or an older total again adds nothing, so a retried flush, or a survivor writing
    /// a dead node's last gossiped totals after that node flushed, never counts spend twice.
    /// Returns the USD added.
    pub async fn sync_node_spend(
        &self,
        node_id: &str,
        generation: i64,
        totals: &[(String, f64)],
    ) -> Result<f64, StoreError> {
        let mut merged: BTreeMap<&str, f64> = BTreeMap::new();
        for (id, total) in totals {
            if !total.is_finite() || *total < 0.0 {
                return Err(StoreError::Invalid {
                    what: format!("spend total for budget \"{id}\""),
                    reason: format!(
                        "{total} is not a finite, non-negative USD amount; nothing was added"
                    ),
                });
            }
            let entry = merged.entry(id.as_str()).or_insert(0.0);
            *entry = entry.max(*total);
        }
        if merged.is_empty() {
            return Ok(0.0);
        }
        // PostgreSQL locks the row until commit; SQLite's write transaction locks the database.
        let select = match self.backend {
            StoreType::Postgres => {
                "SELECT flushed_total FROM node_spend \
                 WHERE node_id = $1 AND generation = $2 AND budget_id = $3 FOR UPDATE"
            }
            StoreType::Sqlite => {
                "SELECT flushed_total FROM node_spend \
                 WHERE node_id = $1 AND generation = $2 AND budget_id = $3"
            }
        };
        let now = now_ms();
        let mut added = 0.0;
        // Budgets in id order, so concurrent writers cannot deadlock.
        let mut tx = self.begin_write().await?;
        for (id, total) in merged {
            sqlx::query(
                "INSERT INTO node_spend (node_id, generation, budget_id, flushed_total, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (node_id, generation, budget_id) DO NOTHING",
            )
            .bind(node_id)
            .bind(generation)
            .bind(id)
            .bind(0.0_f64)
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("recording a node's spend")?;
            let (flushed,): (f64,) = sqlx::query_as(select)
                .bind(node_id)
                .bind(generation)
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .context("reading a node's flushed spend")?;
            let delta = total - flushed;
            if delta <= 0.0 {
                continue;
            }
            sqlx::query(
                "UPDATE node_spend SET flushed_total = $1, updated_at = $2 \
                 WHERE node_id = $3 AND generation = $4 AND budget_id = $5",
            )
            .bind(total)
            .bind(now)
            .bind(node_id)
            .bind(generation)
            .bind(id)
            .execute(&mut *tx)
            .await
            .context("recording a node's spend")?;
            if add_to_budget(&mut tx, id, delta).await? {
                added += delta;
            }
        }
        tx.commit().await.context("committing budget spend")?;
        Ok(added)
    }

    /// Forgets per-process spend records not written for `older_than_ms` (processes long gone;
    /// their spend is in the budgets already). Returns how many rows went.
    pub async fn prune_node_spend(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await.context("pruning node spend")?;
        let result = sqlx::query("DELETE FROM node_spend WHERE updated_at < $1")
            .bind(now_ms() - older_than_ms)
            .execute(&mut *conn)
            .await
            .context("pruning node spend")?;
        Ok(result.rows_affected())
    }

    /// Current usage of every budget.
    pub async fn budget_usage(&self) -> Result<HashMap<String, BudgetUsage>, StoreError> {
        let mut conn = self.pool.acquire().await.context("loading budget usage")?;
        load(&mut conn).await
    }

    /// Compare-and-set reset: sets `current_usage = 0` and `last_reset = new` only while
    /// `last_reset` still equals `expected`. Returns whether this call reset the budget; false
    /// means another replica already did (reload usage and carry on). [`StoreError::NotFound`]
    /// when the budget does not exist.
    pub async fn reset_budget(
        &self,
        id: &str,
        expected_last_reset_ms: i64,
        new_last_reset_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await.context("resetting a budget")?;
        let result = sqlx::query(
            "UPDATE budgets SET current_usage = $1, last_reset = $2 \
             WHERE id = $3 AND last_reset = $4",
        )
        .bind(0.0_f64)
        .bind(new_last_reset_ms)
        .bind(id)
        .bind(expected_last_reset_ms)
        .execute(&mut *conn)
        .await
        .context("resetting a budget")?;
        if result.rows_affected() > 0 {
            return Ok(true);
        }
        if exists(&mut conn, EntityKind::Budget, id).await? {
            Ok(false)
        } else {
            Err(StoreError::NotFound {
                kind: EntityKind::Budget,
                id: id.to_string(),
            })
        }
    }
}
