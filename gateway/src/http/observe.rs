//! The inference routes' request metrics and access log, as one middleware: it counts the
//! request in flight, times it until the response head, and labels it with what the handler
//! says it served (a [`Served`] response extension).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::inference::Route;
use super::stream::{InFlight, Streaming};
use crate::state::AppState;
use crate::telemetry::metrics::{RequestLabels, RouteLabels};

/// Which provider and model a request ended up with and how long it waited on upstreams: the
/// response extension the inference handlers set for [`observe_inference`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    /// Provider that served (or was chosen to serve) the request.
    pub provider: String,
    /// Model as sent upstream.
    pub model: String,
    /// Time spent waiting on upstreams and backoff, left out of the gateway's overhead.
    pub upstream_wait: Duration,
}

/// Middleware on the inference routes: `in_flight_requests` (held by a streaming body until
/// the stream ends), `request_duration` and `overhead_duration` until the response head, the
/// `requests` counter by route, provider (`none` when nothing was chosen), model and status,
/// the node's traffic numbers, and the `request` log line when `client.enable_logging` is on.
pub async fn observe_inference(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    // Mounted on the inference routes only, whose paths have no parameters: the path is the
    // route.
    let Some(route) = Route::from_path(request.uri().path()) else {
        return next.run(request).await;
    };
    let in_flight = InFlight::new(&state.metrics);
    let started = Instant::now();
    let mut response = next.run(request).await;
    let elapsed = started.elapsed();
    // A stream's body holds the count until the stream ends; any other answer is done here.
    if response.extensions().get::<Streaming>().is_some() {
        response = response.map(|body| in_flight.hold_until_end(body));
    } else {
        drop(in_flight);
    }
    let served = response.extensions_mut().remove::<Served>();
    let status = response.status().as_u16();
    state.traffic.record(status);
    let metrics = &state.metrics;
    let route_labels = RouteLabels {
        route: route.path(),
    };
    let upstream_wait = served.as_ref().map_or(Duration::ZERO, |s| s.upstream_wait);
    metrics
        .request_duration
        .get_or_create(&route_labels)
        .observe(elapsed.as_secs_f64());
    metrics
        .overhead_duration
        .get_or_create(&route_labels)
        .observe(elapsed.saturating_sub(upstream_wait).as_secs_f64());
    let (mut provider, model) = served.map(|s| (s.provider, s.model)).unwrap_or_default();
    if provider.is_empty() {
        provider = "none".into();
    }
    if state.runtime.load().config.client.enable_logging {
        // The target the line had when the handlers logged it, so log filters keep working.
        tracing::info!(target: "bifrost_gateway::http::inference", route = route.path(), provider = %provider, model = %model, status, latency_ms = elapsed.as_secs_f64() * 1000.0, "request");
    }
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.path(),
            provider,
            model,
            status,
        })
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::{Method, StatusCode};
    use serde_json::json;
    use tower_service::Service;

    use crate::config::GatewayConfig;
    use crate::state::AppState;

    fn state() -> std::sync::Arc<AppState> {
        // Nothing listens on port 9: an attempt fails at once with a connection error.
        let config: GatewayConfig = serde_json::from_value(json!({
            "providers": {
                "openai": {
                    "keys": [{"name": "k", "value": "sk-o", "models": ["*"]}],
                    "network_config": {"base_url": "http://127.0.0.1:9"}
                }
            }
        }))
        .expect("config parses");
        AppState::new(config, None, None).expect("state")
    }

    async fn send(state: &std::sync::Arc<AppState>, method: Method, body: &str) -> StatusCode {
        let request = http::Request::builder()
            .method(method)
            .uri("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request");
        let mut router = crate::http::router(state.clone());
        let response = router.call(request).await.unwrap_or_else(|e| match e {});
        response.status()
    }

    fn chat(model: &str) -> String {
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string()
    }

    #[tokio::test]
    async fn a_request_refused_before_routing_is_counted_with_provider_none() {
        let state = state();
        let status = send(&state, Method::POST, &chat("nowhere/gpt-4o-mini")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let metrics = state.metrics.render();
        assert!(
            metrics.contains(r#"bifrost_requests_total{route="/v1/chat/completions",provider="none",model="",status="404"} 1"#),
            "{metrics}"
        );
        assert_eq!(state.metrics.in_flight.get(), 0);
    }

    #[tokio::test]
    async fn a_failed_dispatch_is_counted_with_the_target_it_was_routed_to() {
        let state = state();
        let status = send(&state, Method::POST, &chat("openai/gpt-4o-mini")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        let metrics = state.metrics.render();
        assert!(
            metrics.contains(r#"bifrost_requests_total{route="/v1/chat/completions",provider="openai",model="gpt-4o-mini",status="502"} 1"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                r#"bifrost_request_duration_seconds_count{route="/v1/chat/completions"} 1"#
            ),
            "{metrics}"
        );
        assert_eq!(state.metrics.in_flight.get(), 0);
    }

    #[tokio::test]
    async fn a_wrong_method_is_not_an_inference_request() {
        let state = state();
        let status = send(&state, Method::GET, "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let metrics = state.metrics.render();
        assert!(!metrics.contains("bifrost_requests_total{"), "{metrics}");
    }
}
