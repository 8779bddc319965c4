//! Budgets, rate limits, customers and teams: one row each, real columns.

use sqlx::AnyConnection;

use super::error::{EntityKind, QueryContext, StoreError};
use super::references::require;
use super::rows::{from_bigint, from_word, to_bigint};
use super::usage::now_ms;
use super::Store;
use crate::config::{BudgetConfig, CustomerConfig, Period, RateLimitConfig, TeamConfig};

pub(crate) async fn load_budgets(
    conn: &mut AnyConnection,
) -> Result<Vec<BudgetConfig>, StoreError> {
    let rows: Vec<(String, f64, String)> =
        sqlx::query_as("SELECT id, max_limit, reset_duration FROM budgets ORDER BY id")
            .fetch_all(conn)
            .await
            .context("loading budgets")?;
    Ok(rows
        .into_iter()
        .map(|(id, max_limit, reset_duration)| BudgetConfig {
            id,
            max_limit,
            reset_duration,
            current_usage: None,
            last_reset: None,
        })
        .collect())
}

/// Upserts a budget's definition. A new budget starts with its `current_usage` seed (none: no
/// spend) in the period of its `last_reset` seed (none: the current one); an existing budget's
/// usage is never touched.
pub(crate) async fn write_budget(
    conn: &mut AnyConnection,
    budget: &BudgetConfig,
) -> Result<(), StoreError> {
    let what = |field: &str| format!("budget \"{}\" {field}", budget.id);
    require_id(EntityKind::Budget, &budget.id)?;
    if !(budget.max_limit.is_finite() && budget.max_limit >= 0.0) {
        return Err(StoreError::Invalid {
            what: what("max_limit"),
            reason: "must be a number of USD, 0 or more".to_string(),
        });
    }
    let period: Period = budget
        .reset_duration
        .parse()
        .map_err(|reason| StoreError::Invalid {
            what: what("reset_duration"),
            reason,
        })?;
    // A new budget starts from its seeds: Bifrost's usage, in the period it belongs to. Usage
    // of a period that has ended is reset when it is read, as for any budget.
    let seed_reset = budget.last_reset_ms().ok().flatten();
    let last_reset = period.window_start(seed_reset.unwrap_or_else(now_ms));
    sqlx::query(
        "INSERT INTO budgets (id, max_limit, reset_duration, current_usage, last_reset) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET max_limit = excluded.max_limit, \
         reset_duration = excluded.reset_duration",
    )
    .bind(&budget.id)
    .bind(budget.max_limit)
    .bind(&budget.reset_duration)
    .bind(
        budget
            .current_usage
            .filter(|u| u.is_finite() && *u >= 0.0)
            .unwrap_or(0.0),
    )
    .bind(last_reset)
    .execute(conn)
    .await
    .context("writing a budget")?;
    Ok(())
}

pub(crate) async fn load_rate_limits(
    conn: &mut AnyConnection,
) -> Result<Vec<RateLimitConfig>, StoreError> {
    type Row = (
        String,
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, request_max_limit, request_reset_duration, token_max_limit, \
         token_reset_duration, cluster_mode, cluster_stale_policy FROM rate_limits ORDER BY id",
    )
    .fetch_all(conn)
    .await
    .context("loading rate limits")?;
    rows.into_iter()
        .map(
            |(id, request_max, request_reset, token_max, token_reset, mode, policy)| {
                let at = |column: &str| format!("rate_limits ({id}).{column}");
                Ok(RateLimitConfig {
                    cluster_mode: mode
                        .map(|v| from_word(&v, || at("cluster_mode")))
                        .transpose()?,
                    cluster_stale_policy: policy
                        .map(|v| from_word(&v, || at("cluster_stale_policy")))
                        .transpose()?,
                    request_max_limit: request_max
                        .map(|v| from_bigint(v, || at("request_max_limit")))
                        .transpose()?,
                    request_reset_duration: request_reset,
                    token_max_limit: token_max
                        .map(|v| from_bigint(v, || at("token_max_limit")))
                        .transpose()?,
                    token_reset_duration: token_reset,
                    id,
                })
            },
        )
        .collect()
}

pub(crate) async fn write_rate_limit(
    conn: &mut AnyConnection,
    limit: &RateLimitConfig,
) -> Result<(), StoreError> {
    require_id(EntityKind::RateLimit, &limit.id)?;
    let what = |field: &str| format!("rate limit \"{}\" {field}", limit.id);
    for (duration, field) in [
        (&limit.request_reset_duration, "request_reset_duration"),
        (&limit.token_reset_duration, "token_reset_duration"),
    ] {
        if let Some(text) = duration {
            text.parse::<Period>()
                .map_err(|reason| StoreError::Invalid {
                    what: what(field),
                    reason,
                })?;
        }
    }
    sqlx::query(
        "INSERT INTO rate_limits (id, request_max_limit, request_reset_duration, \
         token_max_limit, token_reset_duration, cluster_mode, cluster_stale_policy) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (id) DO UPDATE SET request_max_limit = excluded.request_max_limit, \
         request_reset_duration = excluded.request_reset_duration, \
         token_max_limit = excluded.token_max_limit, \
         token_reset_duration = excluded.token_reset_duration, \
         cluster_mode = excluded.cluster_mode, \
         cluster_stale_policy = excluded.cluster_stale_policy",
    )
    .bind(&limit.id)
    .bind(
        limit
            .request_max_limit
            .map(|v| to_bigint(v, || what("request_max_limit")))
            .transpose()?,
    )
    .bind(limit.request_reset_duration.clone())
    .bind(
        limit
            .token_max_limit
            .map(|v| to_bigint(v, || what("token_max_limit")))
            .transpose()?,
    )
    .bind(limit.token_reset_duration.clone())
    .bind(limit.cluster_mode.map(|m| m.as_str()))
    .bind(limit.cluster_stale_policy.map(|p| p.as_str()))
    .execute(conn)
    .await
    .context("writing a rate limit")?;
    Ok(())
}

pub(crate) async fn load_customers(
    conn: &mut AnyConnection,
) -> Result<Vec<CustomerConfig>, StoreError> {
    let rows: Vec<(String, String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT id, name, budget_id, rate_limit_id FROM customers ORDER BY id")
            .fetch_all(conn)
            .await
            .context("loading customers")?;
    Ok(rows
        .into_iter()
        .map(|(id, name, budget_id, rate_limit_id)| CustomerConfig {
            id,
            name,
            budget_id,
            rate_limit_id,
        })
        .collect())
}

pub(crate) async fn write_customer(
    conn: &mut AnyConnection,
    customer: &CustomerConfig,
) -> Result<(), StoreError> {
    let me = (EntityKind::Customer, customer.id.as_str());
    require_id(me.0, me.1)?;
    let budget = customer.budget_id.as_deref();
    require(conn, me, "budget_id", EntityKind::Budget, budget).await?;
    let limit = customer.rate_limit_id.as_deref();
    require(conn, me, "rate_limit_id", EntityKind::RateLimit, limit).await?;
    sqlx::query(
        "INSERT INTO customers (id, name, budget_id, rate_limit_id) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, budget_id = excluded.budget_id, \
         rate_limit_id = excluded.rate_limit_id",
    )
    .bind(&customer.id)
    .bind(&customer.name)
    .bind(customer.budget_id.clone())
    .bind(customer.rate_limit_id.clone())
    .execute(conn)
    .await
    .context("writing a customer")?;
    Ok(())
}

pub(crate) async fn load_teams(conn: &mut AnyConnection) -> Result<Vec<TeamConfig>, StoreError> {
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, customer_id, budget_id, rate_limit_id FROM teams ORDER BY id",
    )
    .fetch_all(conn)
    .await
    .context("loading teams")?;
    Ok(rows
        .into_iter()
        .map(
            |(id, name, customer_id, budget_id, rate_limit_id)| TeamConfig {
                id,
                name,
                customer_id,
                budget_id,
                rate_limit_id,
            },
        )
        .collect())
}

pub(crate) async fn write_team(
    conn: &mut AnyConnection,
    team: &TeamConfig,
) -> Result<(), StoreError> {
    let me = (EntityKind::Team, team.id.as_str());
    require_id(me.0, me.1)?;
    let customer = team.customer_id.as_deref();
    require(conn, me, "customer_id", EntityKind::Customer, customer).await?;
    let budget = team.budget_id.as_deref();
    require(conn, me, "budget_id", EntityKind::Budget, budget).await?;
    let limit = team.rate_limit_id.as_deref();
    require(conn, me, "rate_limit_id", EntityKind::RateLimit, limit).await?;
    sqlx::query(
        "INSERT INTO teams (id, name, customer_id, budget_id, rate_limit_id) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
         customer_id = excluded.customer_id, budget_id = excluded.budget_id, \
         rate_limit_id = excluded.rate_limit_id",
    )
    .bind(&team.id)
    .bind(&team.name)
    .bind(team.customer_id.clone())
    .bind(team.budget_id.clone())
    .bind(team.rate_limit_id.clone())
    .execute(conn)
    .await
    .context("writing a team")?;
    Ok(())
}

/// Ids are the primary key of every entity; an empty one is always a caller's mistake.
pub(crate) fn require_id(kind: EntityKind, id: &str) -> Result<(), StoreError> {
    if id.trim().is_empty() {
        return Err(StoreError::Invalid {
            what: format!("{kind} id"),
            reason: "must not be empty".to_string(),
        });
    }
    Ok(())
}

impl Store {
    /// Creates or updates a budget's definition; its usage is kept (or starts at 0 with
    /// `last_reset` at the start of the current period when the budget is new).
    pub async fn put_budget(&self, budget: &BudgetConfig) -> Result<(), StoreError> {
        let mut tx = self.begin_config_write().await?;
        write_budget(&mut tx, budget).await?;
        tx.commit().await.context("committing a budget")
    }

    /// Deletes a budget and its usage; refused while a customer, team or virtual key uses it.
    pub async fn delete_budget(&self, id: &str) -> Result<(), StoreError> {
        self.delete_entity(EntityKind::Budget, id).await
    }

    /// Creates or replaces a rate limit.
    pub async fn put_rate_limit(&self, limit: &RateLimitConfig) -> Result<(), StoreError> {
        let mut tx = self.begin_config_write().await?;
        write_rate_limit(&mut tx, limit).await?;
        tx.commit().await.context("committing a rate limit")
    }

    /// Deletes a rate limit; refused while a virtual key uses it.
    pub async fn delete_rate_limit(&self, id: &str) -> Result<(), StoreError> {
        self.delete_entity(EntityKind::RateLimit, id).await
    }

    /// Creates or replaces a customer; its budget must exist.
    pub async fn put_customer(&self, customer: &CustomerConfig) -> Result<(), StoreError> {
        let mut tx = self.begin_config_write().await?;
        write_customer(&mut tx, customer).await?;
        tx.commit().await.context("committing a customer")
    }

    /// Deletes a customer; refused while a team or virtual key belongs to it.
    pub async fn delete_customer(&self, id: &str) -> Result<(), StoreError> {
        self.delete_entity(EntityKind::Customer, id).await
    }

    /// Creates or replaces a team; its customer and budget must exist.
    pub async fn put_team(&self, team: &TeamConfig) -> Result<(), StoreError> {
        let mut tx = self.begin_config_write().await?;
        write_team(&mut tx, team).await?;
        tx.commit().await.context("committing a team")
    }

    /// Deletes a team; refused while a virtual key belongs to it.
    pub async fn delete_team(&self, id: &str) -> Result<(), StoreError> {
        self.delete_entity(EntityKind::Team, id).await
    }
}
