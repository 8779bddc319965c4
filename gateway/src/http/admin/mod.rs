//! The admin API under `/api/`: CRUD for providers and governance entities, and current usage.
//!
//! Authentication, per `governance.auth_config`: Basic auth with `admin_username` and
//! `admin_password` when `is_enabled`, and/or `Authorization: Bearer <admin_token>` (config
//! `admin_token` or env `BIFROST_ADMIN_TOKEN`). With no credentials configured, the API answers
//! only to loopback clients that name a loopback `Host`. Browser pages are refused unless
//! their origin is in `admin_allowed_origins`; writes must be `application/json`; ids are
//! bounded (see `guard`). Writes go to the config store and the runtime is rebuilt from it;
//! other replicas sharing the store follow its config version.

mod auth;
mod guard;
mod resources;
mod usage;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

use crate::config::{BudgetConfig, CustomerConfig, RateLimitConfig, TeamConfig, VirtualKeyConfig};
use crate::state::AppState;
use resources::{create, delete, get_one, list, put, NamedProvider};

pub use auth::{describe_admin_auth, AdminAccess};

/// The `/api` routes, behind admin authentication and request checks (one middleware).
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/providers",
            get(list::<NamedProvider>).post(create::<NamedProvider>),
        )
        .route(
            "/api/providers/{id}",
            get(get_one::<NamedProvider>)
                .put(put::<NamedProvider>)
                .delete(delete::<NamedProvider>),
        )
        .route(
            "/api/governance/virtual-keys",
            get(list::<VirtualKeyConfig>).post(create::<VirtualKeyConfig>),
        )
        .route(
            "/api/governance/virtual-keys/{id}",
            get(get_one::<VirtualKeyConfig>)
                .put(put::<VirtualKeyConfig>)
                .delete(delete::<VirtualKeyConfig>),
        )
        .route(
            "/api/governance/teams",
            get(list::<TeamConfig>).post(create::<TeamConfig>),
        )
        .route(
            "/api/governance/teams/{id}",
            get(get_one::<TeamConfig>)
                .put(put::<TeamConfig>)
                .delete(delete::<TeamConfig>),
        )
        .route(
            "/api/governance/customers",
            get(list::<CustomerConfig>).post(create::<CustomerConfig>),
        )
        .route(
            "/api/governance/customers/{id}",
            get(get_one::<CustomerConfig>)
                .put(put::<CustomerConfig>)
                .delete(delete::<CustomerConfig>),
        )
        .route(
            "/api/governance/budgets",
            get(list::<BudgetConfig>).post(create::<BudgetConfig>),
        )
        .route(
            "/api/governance/budgets/{id}",
            get(get_one::<BudgetConfig>)
                .put(put::<BudgetConfig>)
                .delete(delete::<BudgetConfig>),
        )
        .route(
            "/api/governance/rate-limits",
            get(list::<RateLimitConfig>).post(create::<RateLimitConfig>),
        )
        .route(
            "/api/governance/rate-limits/{id}",
            get(get_one::<RateLimitConfig>)
                .put(put::<RateLimitConfig>)
                .delete(delete::<RateLimitConfig>),
        )
        .route("/api/governance/usage", get(usage::current))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            auth::require_admin,
        ))
}
