//! A mock LLM provider speaking the OpenAI, Anthropic, Azure OpenAI, Google Gemini (v1beta),
//! Google Vertex AI (Gemini models) and AWS Bedrock Runtime (Converse, ConverseStream, InvokeModel
//! for embeddings, SigV4) wire
//! formats, for tests and benchmarks.
//!
//! Replies are deterministic (`mock reply to: <last user text>`), latency and failures can be
//! injected, and `/mock/*` endpoints let tests read counters and change behaviour at run time.
//! Each wire keeps its own key header and error format (see [`error::Wire`]). For Azure, the mock
//! is also Microsoft Entra ID's token endpoint (client credentials), whose tokens the Azure routes
//! take as bearer tokens (see [`entra`]); for Vertex AI, it is Google's OAuth2 token endpoint for
//! service accounts' signed JWTs, whose tokens the Vertex AI routes take (see [`google_oauth`]);
//! for Bedrock, it is AWS STS's `AssumeRole`, whose temporary credentials the Bedrock routes take
//! (see [`sts`]).

mod anthropic;
mod azure;
mod bedrock;
mod bedrock_invoke;
mod config;
mod control;
mod embeddings;
mod entra;
mod error;
mod gemini;
mod google_oauth;
mod knobs;
mod mantle;
mod models;
mod openai;
mod prompt;
mod sigv4;
mod sse;
mod stats;
mod sts;
mod vertex;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;

pub use config::{AwsCredential, EntraClient, GoogleServiceAccount, MockConfig, StsRole};
pub use google_oauth::CLOUD_PLATFORM_SCOPE;

use entra::Entra;
use error::{ApiError, Wire};
use google_oauth::GoogleOAuth;
use knobs::{Knobs, Pace};
use models::ModelLists;
use stats::{Route, Stats};
use sts::Sts;

/// Header naming the API key a request used (empty when it had none), on every provider response.
pub const KEY_HEADER: &str = "x-mock-key";

/// Header naming why an Azure route refused an Entra bearer token (`unknown`, `audience` or
/// `expired`), which Azure's own answer does not tell apart; and why a Vertex AI route refused a
/// Google one (`missing`, `unknown`, `scope` or `expired`).
pub const TOKEN_ERROR_HEADER: &str = "x-mock-token-error";

/// Request bodies up to this size are read; larger ones get 413.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// State shared by all requests.
#[derive(Debug)]
pub struct MockState {
    require_keys: HashSet<String>,
    /// `--aws-credentials`: secret access keys by access key id.
    aws_credentials: HashMap<String, String>,
    /// `--entra-client`: the token endpoint's registrations and the tokens it issued.
    entra: Entra,
    /// `--google-service-account`: the token endpoint's accounts and the tokens it issued.
    google: GoogleOAuth,
    /// `--sts-role`: the roles STS lets callers assume and the session tokens it issued.
    sts: Sts,
    embedding_dims: usize,
    models: ModelLists,
    knobs: Knobs,
    stats: Stats,
    next_id: AtomicU64,
}

impl MockState {
    /// State for a server started with `config`.
    pub fn new(config: &MockConfig) -> Self {
        Self {
            require_keys: config.require_keys.iter().cloned().collect(),
            aws_credentials: config
                .aws_credentials
                .iter()
                .map(|credential| {
                    (
                        credential.access_key_id.clone(),
                        credential.secret_access_key.clone(),
                    )
                })
                .collect(),
            entra: Entra::new(config),
            google: GoogleOAuth::new(config),
            sts: Sts::new(config),
            embedding_dims: config.embedding_dims,
            models: ModelLists::new(&config.models),
            knobs: Knobs::new(config),
            stats: Stats::default(),
            next_id: AtomicU64::new(1),
        }
    }

    /// A fresh number for response ids (`chatcmpl-mock-<n>`, `msg_mock_<n>`, `mock-gemini-<n>`,
    /// `tooluse_mock_<n>`), Entra tokens (`entra-mock-<tenant>-<client_id>-<n>`) and Google ones
    /// (`ya29.mock-<n>`).
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Relaxed)
    }

    /// Accepts `key` when no keys are required or it is one of them; otherwise `wire`'s answer
    /// to a missing or wrong key.
    fn authenticate(&self, wire: Wire, key: &str) -> Result<(), ApiError> {
        if self.require_keys.is_empty() || self.require_keys.contains(key) {
            Ok(())
        } else {
            Err(ApiError::unauthorized(wire, key))
        }
    }

    /// The path every inference request takes: count it, check its key, wait out the latency,
    /// maybe fail it, and only then let `respond` parse the body and answer.
    async fn serve_inference(
        &self,
        wire: Wire,
        route: Route,
        headers: &HeaderMap,
        respond: impl FnOnce(Pace) -> Result<Response, ApiError>,
    ) -> Response {
        let key = wire.api_key(headers);
        let checked = self.authenticate(wire, key);
        self.serve_checked(wire, route, key, checked, respond).await
    }

    /// [`Self::serve_inference`] for a route that checks its callers itself (Bedrock's SigV4):
    /// count the request under `key`, then unless `checked` refused it, wait out the latency,
    /// maybe fail it, and let `respond` answer.
    async fn serve_checked(
        &self,
        wire: Wire,
        route: Route,
        key: &str,
        checked: Result<(), ApiError>,
        respond: impl FnOnce(Pace) -> Result<Response, ApiError>,
    ) -> Response {
        self.stats.record(route, key);
        let response = match checked {
            Ok(()) => self.admit(route).await.and_then(respond),
            Err(error) => Err(error),
        };
        with_key_header(response.unwrap_or_else(|error| error.render(wire)), key)
    }

    /// The knobs' part of admitting a request: the latency, then maybe an injected failure.
    async fn admit(&self, route: Route) -> Result<Pace, ApiError> {
        let pace = self.knobs.snapshot();
        if !pace.latency.is_zero() {
            tokio::time::sleep(pace.latency).await;
        }
        if let Some(status) = self.knobs.draw_failure() {
            self.stats.record_injected_failure();
            tracing::debug!(
                route = route.path(),
                status = status.as_u16(),
                "injected failure"
            );
            return Err(ApiError::injected(status));
        }
        Ok(pace)
    }
}

/// Tags a response with the key the request used.
fn with_key_header(mut response: Response, key: &str) -> Response {
    let value = HeaderValue::from_str(key).unwrap_or(HeaderValue::from_static(""));
    response.headers_mut().insert(KEY_HEADER, value);
    response
}

/// Seconds since the Unix epoch, for `created` fields, Entra's timestamps and JWT times.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// All routes: the provider APIs, Entra ID's and Google's token endpoints, STS (`POST /`),
/// `/health` and the
/// `/mock/*` control endpoints. Gemini's and Vertex AI's `models/{model}:{method}` calls share one
/// route each: axum cannot split a path segment at `:`.
/// Bedrock's `{modelId}` is one path segment: an ARN comes percent-encoded (`%3A`, `%2F`).
pub fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/models", get(models::list_models))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure::chat_completions),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(azure::embeddings),
        )
        .route(
            "/openai/v1/chat/completions",
            post(azure::v1_chat_completions),
        )
        .route("/openai/v1/embeddings", post(azure::v1_embeddings))
        .route("/{tenant}/oauth2/v2.0/token", post(entra::token))
        .route("/token", post(google_oauth::token))
        .route("/", post(sts::query))
        .route(
            "/computeMetadata/v1/instance/service-accounts/{account}/token",
            get(google_oauth::metadata_token),
        )
        .route(
            "/computeMetadata/v1/instance/service-accounts/{account}/",
            get(google_oauth::metadata_account_info),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/publishers/google/models/{call}",
            post(vertex::call),
        )
        .route(
            "/v1beta1/projects/{project}/locations/{location}/publishers/google/models/{call}",
            post(vertex::call),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{call}",
            post(vertex::anthropic_call),
        )
        .route(
            "/v1/publishers/google/models/{call}",
            post(vertex::express_call),
        )
        .route("/v1beta/models", get(gemini::list_models))
        .route(
            "/v1beta/models/{call}",
            get(gemini::get_model).post(gemini::call),
        )
        .route("/model/{model_id}/converse", post(bedrock::converse))
        .route(
            "/model/{model_id}/converse-stream",
            post(bedrock::converse_stream),
        )
        .route("/model/{model_id}/invoke", post(bedrock_invoke::invoke))
        .merge(control::router())
        .fallback(models::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A mock provider bound to its port and ready to serve.
#[derive(Debug)]
pub struct MockServer {
    listener: TcpListener,
    state: Arc<MockState>,
}

impl MockServer {
    /// Binds `config.host:config.port` (port 0 picks a free one).
    pub async fn bind(config: &MockConfig) -> io::Result<Self> {
        let listener = TcpListener::bind((config.host.as_str(), config.port)).await?;
        Ok(Self {
            listener,
            state: Arc::new(MockState::new(config)),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves HTTP/1.1 and HTTP/2 with keep-alive until `shutdown` completes, then lets open
    /// requests finish.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        // Without TCP_NODELAY, small stream chunks can wait for delayed ACKs.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "failed to set TCP_NODELAY");
            }
        });
        axum::serve(listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
    }
}
