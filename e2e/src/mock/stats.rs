//! Request counters behind `GET /mock/stats`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

/// The inference routes, the ones that are counted and may have failures injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ChatCompletions,
    Embeddings,
    Messages,
    GeminiGenerateContent,
    GeminiStreamGenerateContent,
    GeminiEmbedContent,
    GeminiBatchEmbedContents,
    BedrockConverse,
    BedrockConverseStream,
    BedrockInvokeModel,
    VertexGenerateContent,
    VertexStreamGenerateContent,
    VertexRawPredict,
    VertexStreamRawPredict,
}

impl Route {
    const ALL: [Route; 14] = [
        Route::ChatCompletions,
        Route::Embeddings,
        Route::Messages,
        Route::GeminiGenerateContent,
        Route::GeminiStreamGenerateContent,
        Route::GeminiEmbedContent,
        Route::GeminiBatchEmbedContents,
        Route::BedrockConverse,
        Route::BedrockConverseStream,
        Route::BedrockInvokeModel,
        Route::VertexGenerateContent,
        Route::VertexStreamGenerateContent,
        Route::VertexRawPredict,
        Route::VertexStreamRawPredict,
    ];

    /// The route's URL path; Gemini's with `{model}` for the model in it, Bedrock's with
    /// `{modelId}`, Vertex AI's with `{version}` (`v1` or `v1beta1`), `{project}`, `{location}`
    /// and `{model}`.
    pub fn path(self) -> &'static str {
        match self {
            Route::ChatCompletions => "/v1/chat/completions",
            Route::Embeddings => "/v1/embeddings",
            Route::Messages => "/v1/messages",
            Route::GeminiGenerateContent => "/v1beta/models/{model}:generateContent",
            Route::GeminiStreamGenerateContent => "/v1beta/models/{model}:streamGenerateContent",
            Route::GeminiEmbedContent => "/v1beta/models/{model}:embedContent",
            Route::GeminiBatchEmbedContents => "/v1beta/models/{model}:batchEmbedContents",
            Route::BedrockConverse => "/model/{modelId}/converse",
            Route::BedrockConverseStream => "/model/{modelId}/converse-stream",
            Route::BedrockInvokeModel => "/model/{modelId}/invoke",
            Route::VertexGenerateContent => {
                "/{version}/projects/{project}/locations/{location}/publishers/google/models/\
                 {model}:generateContent"
            }
            Route::VertexStreamGenerateContent => {
                "/{version}/projects/{project}/locations/{location}/publishers/google/models/\
                 {model}:streamGenerateContent"
            }
            Route::VertexRawPredict => {
                "/v1/projects/{project}/locations/{location}/publishers/anthropic/models/\
                 {model}:rawPredict"
            }
            Route::VertexStreamRawPredict => {
                "/v1/projects/{project}/locations/{location}/publishers/anthropic/models/\
                 {model}:streamRawPredict"
            }
        }
    }

    /// Whether `by_route` lists the route while its count is 0: the OpenAI and Anthropic routes
    /// always are, Gemini's, Bedrock's and Vertex AI's only once used, so the view of a test that
    /// never speaks them stays as it was.
    fn listed_when_unused(self) -> bool {
        matches!(
            self,
            Route::ChatCompletions | Route::Embeddings | Route::Messages
        )
    }
}

/// Counters since start or the last reset.
#[derive(Debug, Default)]
pub struct Stats {
    by_route: [AtomicU64; Route::ALL.len()],
    failures_injected: AtomicU64,
    token_requests: AtomicU64,
    token_failures: AtomicU64,
    google_token_requests: AtomicU64,
    google_token_failures: AtomicU64,
    metadata_token_requests: AtomicU64,
    sts_requests: AtomicU64,
    sts_failures: AtomicU64,
    by_key: Mutex<HashMap<String, u64>>,
    by_deployment: Mutex<HashMap<String, u64>>,
    by_model: Mutex<HashMap<String, u64>>,
    by_region: Mutex<HashMap<String, u64>>,
    by_location: Mutex<HashMap<String, u64>>,
    by_project: Mutex<HashMap<String, u64>>,
}

/// The counters as `GET /mock/stats` reports them.
#[derive(Debug, Serialize)]
pub struct StatsView {
    pub requests: u64,
    pub by_route: BTreeMap<&'static str, u64>,
    pub by_key: BTreeMap<String, u64>,
    /// Azure requests by the deployment in their path.
    pub by_deployment: BTreeMap<String, u64>,
    /// Gemini, Vertex AI and Bedrock requests by the model in their path (Bedrock's
    /// percent-decoded).
    pub by_model: BTreeMap<String, u64>,
    /// Bedrock requests by the region of their SigV4 credential scope.
    pub by_region: BTreeMap<String, u64>,
    /// Vertex AI requests by the location in their path (`us-central1`, `global`).
    pub by_location: BTreeMap<String, u64>,
    /// Vertex AI requests by the project in their path.
    pub by_project: BTreeMap<String, u64>,
    pub failures_injected: u64,
    /// Access tokens the Entra token endpoint issued.
    pub token_requests: u64,
    /// Token requests the Entra token endpoint refused.
    pub token_failures: u64,
    /// Access tokens the Google token endpoint issued.
    pub google_token_requests: u64,
    /// Token requests the Google token endpoint refused.
    pub google_token_failures: u64,
    /// Access tokens the metadata server issued.
    pub metadata_token_requests: u64,
    /// STS `AssumeRole` calls, granted or refused.
    pub sts_requests: u64,
    /// STS calls refused.
    pub sts_failures: u64,
}

impl Stats {
    /// Counts one inference request; requests without a key are not counted by key.
    pub fn record(&self, route: Route, key: &str) {
        self.by_route[route as usize].fetch_add(1, Relaxed);
        if key.is_empty() {
            return;
        }
        let mut by_key = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        match by_key.get_mut(key) {
            Some(count) => *count += 1,
            None => {
                by_key.insert(key.to_owned(), 1);
            }
        }
    }

    /// Counts one Azure request for `deployment`.
    pub fn record_deployment(&self, deployment: &str) {
        count_in(&self.by_deployment, deployment);
    }

    /// Counts one Gemini, Vertex AI or Bedrock request for `model`.
    pub fn record_model(&self, model: &str) {
        count_in(&self.by_model, model);
    }

    /// Counts one Bedrock request signed for `region`.
    pub fn record_region(&self, region: &str) {
        count_in(&self.by_region, region);
    }

    /// Counts one Vertex AI request for `location` in `project`.
    pub fn record_vertex_resource(&self, project: &str, location: &str) {
        count_in(&self.by_project, project);
        count_in(&self.by_location, location);
    }

    /// Counts one injected failure.
    pub fn record_injected_failure(&self) {
        self.failures_injected.fetch_add(1, Relaxed);
    }

    /// Counts one access token issued by the Entra token endpoint.
    pub fn record_token_issued(&self) {
        self.token_requests.fetch_add(1, Relaxed);
    }

    /// Counts one token request the Entra token endpoint refused.
    pub fn record_token_failure(&self) {
        self.token_failures.fetch_add(1, Relaxed);
    }

    /// Counts one access token issued by the Google token endpoint.
    pub fn record_google_token_issued(&self) {
        self.google_token_requests.fetch_add(1, Relaxed);
    }

    /// Counts one token request the Google token endpoint refused.
    pub fn record_google_token_failure(&self) {
        self.google_token_failures.fetch_add(1, Relaxed);
    }

    /// Counts one access token issued by the metadata server.
    pub fn record_metadata_token_issued(&self) {
        self.metadata_token_requests.fetch_add(1, Relaxed);
    }

    /// Counts one STS call, and whether it was refused.
    pub fn record_sts_call(&self, granted: bool) {
        self.sts_requests.fetch_add(1, Relaxed);
        if !granted {
            self.sts_failures.fetch_add(1, Relaxed);
        }
    }

    /// Zeroes every counter.
    pub fn reset(&self) {
        for count in &self.by_route {
            count.store(0, Relaxed);
        }
        for count in [
            &self.failures_injected,
            &self.token_requests,
            &self.token_failures,
            &self.google_token_requests,
            &self.google_token_failures,
            &self.metadata_token_requests,
            &self.sts_requests,
            &self.sts_failures,
        ] {
            count.store(0, Relaxed);
        }
        self.by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        for by in [
            &self.by_deployment,
            &self.by_model,
            &self.by_region,
            &self.by_location,
            &self.by_project,
        ] {
            by.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    /// The current counts.
    pub fn view(&self) -> StatsView {
        let by_route: BTreeMap<_, _> = Route::ALL
            .iter()
            .map(|&route| (route, self.by_route[route as usize].load(Relaxed)))
            .filter(|&(route, count)| count > 0 || route.listed_when_unused())
            .map(|(route, count)| (route.path(), count))
            .collect();
        let by_key = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        StatsView {
            requests: by_route.values().sum(),
            by_route,
            by_key: by_key
                .iter()
                .map(|(key, &count)| (key.clone(), count))
                .collect(),
            by_deployment: sorted(&self.by_deployment),
            by_model: sorted(&self.by_model),
            by_region: sorted(&self.by_region),
            by_location: sorted(&self.by_location),
            by_project: sorted(&self.by_project),
            failures_injected: self.failures_injected.load(Relaxed),
            token_requests: self.token_requests.load(Relaxed),
            token_failures: self.token_failures.load(Relaxed),
            google_token_requests: self.google_token_requests.load(Relaxed),
            google_token_failures: self.google_token_failures.load(Relaxed),
            metadata_token_requests: self.metadata_token_requests.load(Relaxed),
            sts_requests: self.sts_requests.load(Relaxed),
            sts_failures: self.sts_failures.load(Relaxed),
        }
    }
}

/// Adds one to `name`'s count.
fn count_in(counts: &Mutex<HashMap<String, u64>>, name: &str) {
    let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
    *counts.entry(name.to_owned()).or_insert(0) += 1;
}

/// A copy of `counts` in name order.
fn sorted(counts: &Mutex<HashMap<String, u64>>) -> BTreeMap<String, u64> {
    let counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
    counts
        .iter()
        .map(|(name, &count)| (name.clone(), count))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_key_and_resets() {
        let stats = Stats::default();
        stats.record(Route::ChatCompletions, "k1");
        stats.record(Route::ChatCompletions, "k2");
        stats.record(Route::Messages, "k1");
        stats.record(Route::Embeddings, "");
        let view = stats.view();
        assert_eq!(view.requests, 4);
        assert_eq!(view.by_route["/v1/chat/completions"], 2);
        assert_eq!(view.by_key["k1"], 2);
        assert_eq!(view.by_key.len(), 2);

        stats.reset();
        let view = stats.view();
        assert_eq!(view.requests, 0);
        assert!(view.by_key.is_empty());
    }

    #[test]
    fn gemini_routes_are_listed_once_used_and_count_by_model() {
        let stats = Stats::default();
        assert_eq!(stats.view().by_route.len(), 3);
        stats.record(Route::GeminiGenerateContent, "gm");
        stats.record_model("gemini-2.5-flash");
        let view = stats.view();
        assert_eq!(view.by_route.len(), 4);
        assert_eq!(view.by_route["/v1beta/models/{model}:generateContent"], 1);
        assert_eq!(view.by_model["gemini-2.5-flash"], 1);
        assert_eq!(view.requests, 1);
        stats.reset();
        assert!(stats.view().by_model.is_empty());
    }

    #[test]
    fn token_requests_are_counted_apart_from_inference_requests() {
        let stats = Stats::default();
        stats.record_token_issued();
        stats.record_token_issued();
        stats.record_token_failure();
        let view = stats.view();
        assert_eq!((view.token_requests, view.token_failures), (2, 1));
        assert_eq!(view.requests, 0);
        stats.reset();
        let view = stats.view();
        assert_eq!((view.token_requests, view.token_failures), (0, 0));
    }

    #[test]
    fn google_tokens_and_vertex_resources_are_counted_and_reset() {
        let stats = Stats::default();
        stats.record_google_token_issued();
        stats.record_google_token_failure();
        stats.record_google_token_failure();
        stats.record(
            Route::VertexGenerateContent,
            "sa:a@p.iam.gserviceaccount.com",
        );
        stats.record_vertex_resource("p", "us-central1");
        stats.record_vertex_resource("p", "global");
        let view = stats.view();
        assert_eq!(
            (view.google_token_requests, view.google_token_failures),
            (1, 2)
        );
        assert_eq!((view.token_requests, view.requests), (0, 1));
        assert_eq!(view.by_project["p"], 2);
        assert_eq!(view.by_location["global"], 1);
        assert!(view
            .by_route
            .keys()
            .any(|path| path.ends_with("{model}:generateContent")
                && path.starts_with("/{version}/projects/")));
        stats.reset();
        let view = stats.view();
        assert_eq!(
            (view.google_token_requests, view.google_token_failures),
            (0, 0)
        );
        assert!(view.by_location.is_empty() && view.by_project.is_empty());
    }
}
