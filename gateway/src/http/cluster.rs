//! `GET /cluster/status`: the cluster as this node sees it.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::cluster::ClusterStatus;
use crate::state::AppState;

/// Members, health and every known node; with cluster mode off, only this node and
/// `"cluster_mode": false`.
pub async fn status(State(state): State<Arc<AppState>>) -> Response {
    match state.cluster.get() {
        Some(cluster) => Json(cluster.status().await).into_response(),
        None => Json(ClusterStatus::standalone(
            state.sync.spend_source().node_id.clone(),
            None,
        ))
        .into_response(),
    }
}
