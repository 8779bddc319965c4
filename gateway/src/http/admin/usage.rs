//! `GET /api/governance/usage`: budgets with their spend this period, and per-key activity on
//! this node.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::governance::now_ms;
use crate::state::AppState;

/// Current usage as this node sees it (store figures plus its unflushed and reserved spend).
pub async fn current(State(state): State<Arc<AppState>>) -> Response {
    let runtime = state.runtime.load();
    let now = now_ms();
    let local = state.counters.lock();
    let mut budgets: Vec<_> = runtime
        .governance
        .index
        .budgets
        .values()
        .map(|budget| {
            let start = budget.period.window_start(now);
            let spent =
                local.budget_spend(&budget.id, start) + state.counters.remote().spend(&budget.id);
            json!({
                "id": budget.id,
                "max_limit": budget.max_limit,
                "reset_duration": budget.period.to_string(),
                "current_usage": spent,
                "period_start_ms": start,
                "period_end_ms": budget.period.window_end(start),
            })
        })
        .collect();
    budgets.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let keys: Vec<_> = local
        .key_activity()
        .into_iter()
        .map(|key| {
            json!({
                "id": key.id,
                "requests": key.requests,
                "spend_usd": key.spend_usd,
                "in_flight": key.in_flight,
            })
        })
        .collect();
    Json(json!({"budgets": budgets, "virtual_keys": keys})).into_response()
}
