//! `GET /v1/models`: every provider's models, named `provider/model`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use serde_json::{json, Value};

use super::errors::{error_response, Dialect};
use crate::governance::index::VirtualKey;
use crate::governance::provider_rule;
use crate::providers::{ForwardedHeaders, UpstreamOp};
use crate::routing::keys::serving_keys;
use crate::routing::{upstream_request, Provider};
use crate::state::AppState;

const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// List models: asks each provider (in parallel, 5 s deadline); a provider that cannot answer
/// contributes the models its keys list in config. Virtual keys are checked as on inference
/// (401 without one when enforced), and a key sees only the models it may use.
pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let runtime = state.runtime.load_full();
    let vk = match runtime.governance.authenticate(&headers) {
        Ok(vk) => vk,
        Err(error) => return error_response(Dialect::OpenAi, &error),
    };
    let mut providers: Vec<&Arc<Provider>> = runtime
        .routing
        .providers
        .values()
        .filter(|p| vk.as_ref().is_none_or(|vk| may_use_provider(vk, &p.name)))
        .collect();
    providers.sort_by(|a, b| a.name.cmp(&b.name));
    let lists = futures_util::future::join_all(
        providers
            .iter()
            .map(|provider| provider_models(&state.client, provider)),
    )
    .await;
    let data: Vec<Value> = providers
        .iter()
        .zip(lists)
        .flat_map(|(provider, models)| {
            let vk = vk.clone();
            models
                .into_iter()
                .filter(move |id| vk.as_ref().is_none_or(|vk| may_use_model(vk, provider, id)))
                .map(move |id| {
                    json!({
                        "id": format!("{}/{id}", provider.name),
                        "object": "model",
                        "created": 0,
                        "owned_by": provider.name,
                    })
                })
        })
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

fn may_use_provider(vk: &VirtualKey, provider: &str) -> bool {
    vk.providers.contains_key(provider)
}

/// Whether `vk` may use `model` on `provider` as inference would decide: its rule allows the
/// model and, when it names provider keys, one of those keys serves it.
fn may_use_model(vk: &VirtualKey, provider: &Provider, model: &str) -> bool {
    match provider_rule(vk, &provider.name, model) {
        Ok(rule) => rule.key_ids.as_deref().is_none_or(|ids| {
            serving_keys(&provider.keys, model, Some(ids))
                .next()
                .is_some()
        }),
        Err(_) => false,
    }
}

/// The model ids of an upstream listing: OpenAI's and Anthropic's `data[].id`, or Gemini's
/// `models[].name` (`models/{id}`).
fn listed_ids(body: &Value) -> Option<Vec<String>> {
    if let Some(models) = body.get("models").and_then(Value::as_array) {
        let names = models.iter().filter_map(|m| m.get("name")?.as_str());
        return Some(
            names
                .map(|name| name.strip_prefix("models/").unwrap_or(name).to_string())
                .collect(),
        );
    }
    let data = body.get("data")?.as_array()?;
    let ids = data.iter().filter_map(|m| m.get("id")?.as_str());
    Some(ids.map(str::to_string).collect())
}

async fn provider_models(client: &reqwest::Client, provider: &Provider) -> Vec<String> {
    let configured = || {
        let mut models: Vec<String> = provider
            .keys
            .iter()
            .flat_map(|k| k.models.iter().filter(|m| *m != "*").cloned())
            .collect();
        models.sort();
        models.dedup();
        models
    };
    // A provider whose allowed_requests leave out list_models is not asked.
    let Some(key) = provider
        .keys
        .first()
        // Azure lists its models, not its deployments, and Bedrock lists them on another API
        // (bedrock, not bedrock-runtime): the configured ones are what they serve.
        .filter(|key| {
            provider.allows_request("list_models")
                && key.azure.is_none()
                && key.bedrock.is_none()
                && key.vertex.is_none()
        })
    else {
        return configured();
    };
    let request = upstream_request(
        client,
        provider,
        key,
        UpstreamOp::ListModels,
        "",
        None,
        &ForwardedHeaders::default(),
        None,
    );
    let Ok(request) = request else {
        return configured();
    };
    let fetched = async {
        let response = request.timeout(LIST_TIMEOUT).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let bytes = response.bytes().await.ok()?;
        let body: Value = serde_json::from_slice(&bytes).ok()?;
        listed_ids(&body)
    };
    match fetched.await {
        // Keys that list models restrict what the gateway serves: show only those.
        Some(ids) => {
            let served: Vec<String> = ids
                .into_iter()
                .filter(|id| provider.keys.iter().any(|k| k.allows_model(id)))
                .collect();
            served
        }
        None => {
            tracing::warn!(provider = %provider.name, "listing models upstream failed; answering with the models in config");
            configured()
        }
    }
}
