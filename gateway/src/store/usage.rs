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
            let result =
                sqlx::query("UPDATE budgets SET current_usage = current_usage + $1 WHERE id = $2")
                    .bind(delta)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .context("adding budget spend")?;
            if result.rows_affected() == 0 {
                warn!(
                    budget_id = id,
                    spend = delta,
                    "dropping spend for a budget that no longer exists"
                );
            }
        }
        tx.commit().await.context("committing budget spend")
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
