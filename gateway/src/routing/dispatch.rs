//! The attempt loop: for each target in order (the model, then its fallbacks), admit through the
//! provider's queue, pick a key, call with a deadline, retry retryable failures with backoff on
//! the same provider, then fall back to the next target.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::OwnedSemaphorePermit;

use super::circuit::Outcome;
use super::keys::{pick_key, NoKey};
use super::table::{upstream_request, AttemptAuth, Provider, UpstreamKey};
use super::target::Target;
use crate::config::NetworkConfig;
use crate::error::GatewayError;
use crate::providers::translate::upstream_error_message;
use crate::providers::{ForwardedHeaders, UpstreamOp};
use crate::telemetry::metrics::{AttemptLabels, FallbackLabels, Metrics, ProviderLabels};

/// What to send to one target.
pub struct UpstreamBody {
    /// The upstream operation.
    pub op: UpstreamOp,
    /// Serialized JSON body.
    pub body: Bytes,
}

/// A successful upstream answer.
pub enum Reply {
    /// A complete (non-streaming) body.
    Full(Bytes),
    /// A streaming response whose head has arrived; the body is still coming.
    Stream(reqwest::Response),
}

/// The target that answered and its reply.
pub struct Dispatched {
    /// Position of the target that answered (0 = the requested model).
    pub target_index: usize,
    /// The reply.
    pub reply: Reply,
    /// The provider slot; hold it until the response (stream) is finished.
    pub slot: OwnedSemaphorePermit,
    /// Time spent waiting on upstreams and backoff, for overhead accounting.
    pub upstream_wait: Duration,
    /// The model id the answering key deployed the model as (a Vertex AI or Bedrock
    /// `deployments` entry), which prices it before the name the caller used.
    pub deployment: Option<String>,
    /// The prompt tokens a complete answer's headers report (Bedrock InvokeModel's
    /// `x-amzn-bedrock-input-token-count`), for answers whose body has no usage.
    pub input_tokens: Option<u64>,
}

/// The header in which Bedrock's InvokeModel reports the prompt's tokens.
const BEDROCK_INPUT_TOKENS: &str = "x-amzn-bedrock-input-token-count";

/// A failed attempt, as far as fallbacks and the final error are concerned.
#[derive(Clone)]
enum Failure {
    Timeout {
        provider: String,
        seconds: u64,
    },
    Failed(String),
    CircuitOpen {
        provider: String,
        retry_after: Duration,
    },
    Busy {
        provider: String,
    },
}

impl From<Failure> for GatewayError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Timeout { provider, seconds } => {
                GatewayError::UpstreamTimeout { provider, seconds }
            }
            Failure::Failed(last) => GatewayError::UpstreamsFailed { last },
            Failure::CircuitOpen {
                provider,
                retry_after,
            } => GatewayError::CircuitOpen {
                provider,
                retry_after,
            },
            Failure::Busy { provider } => GatewayError::ProviderBusy { provider },
        }
    }
}

/// How one attempt ended.
enum Attempt {
    /// An answer, with the prompt tokens its headers report, if any.
    Answered(Reply, Option<u64>),
    /// The upstream refused the request itself: retrying elsewhere would not help.
    Rejected(GatewayError),
    Retryable(Failure),
}

/// Send a request to the first target that answers.
///
/// `body_for` builds the upstream body per target (translation differs by provider format).
pub async fn dispatch(
    client: &reqwest::Client,
    metrics: &Metrics,
    targets: &[Target],
    stream: bool,
    forwarded: &ForwardedHeaders,
    body_for: impl Fn(&Target) -> Result<UpstreamBody, GatewayError>,
) -> Result<Dispatched, GatewayError> {
    let mut upstream_wait = Duration::ZERO;
    let mut last_failure = None;
    for (target_index, target) in targets.iter().enumerate() {
        let provider = &target.provider;
        if target_index > 0 {
            metrics
                .fallbacks
                .get_or_create(&FallbackLabels {
                    from: targets[target_index - 1].provider.name.clone(),
                    to: provider.name.clone(),
                })
                .inc();
        }
        let queued_at = Instant::now();
        let slot = match provider.queue.admit().await {
            Ok(slot) => slot,
            Err(_) => {
                metrics
                    .queue_rejections
                    .get_or_create(&ProviderLabels {
                        provider: provider.name.clone(),
                    })
                    .inc();
                last_failure = Some(Failure::Busy {
                    provider: provider.name.clone(),
                });
                continue;
            }
        };
        upstream_wait += queued_at.elapsed();
        let upstream = body_for(target)?;
        let network = &provider.network;
        let timeout = request_timeout(network);
        let mut failed_keys: Vec<usize> = Vec::new();
        // The caller's own key replaces the configured ones (client.allow_direct_keys).
        let direct = match forwarded.direct_key.as_deref() {
            Some(value) => Some(UpstreamKey::direct(provider, value)?),
            None => None,
        };

        for attempt in 0..=network.max_retries {
            if attempt > 0 {
                metrics
                    .retries
                    .get_or_create(&ProviderLabels {
                        provider: provider.name.clone(),
                    })
                    .inc();
                let pause = backoff(
                    attempt,
                    network.retry_backoff_initial_ms,
                    network.retry_backoff_max_ms,
                );
                tokio::time::sleep(pause).await;
                upstream_wait += pause;
            }
            let chosen = match &direct {
                Some(key) => key
                    .breaker
                    .try_acquire(Instant::now())
                    .map(|permit| (usize::MAX, permit))
                    .ok_or(NoKey::AllCircuitsOpen {
                        retry_after: Duration::ZERO,
                    }),
                None => pick_key(
                    &provider.keys,
                    &target.model,
                    target.allowed_keys.as_deref(),
                    &failed_keys,
                    Instant::now(),
                ),
            };
            let (key_index, permit) = match chosen {
                    Ok(choice) => choice,
                    Err(NoKey::AllCircuitsOpen { retry_after }) => {
                        last_failure = Some(Failure::CircuitOpen {
                            provider: provider.name.clone(),
                            retry_after,
                        });
                        break;
                    }
                    Err(NoKey::ModelNotServed) => {
                        return Err(GatewayError::NotFound(format!(
                            "model \"{}\" is not served by provider \"{}\" (with the keys this request may use)",
                            target.model, provider.name
                        )))
                    }
                };
            let key = match &direct {
                Some(key) => key,
                None => &provider.keys[key_index],
            };
            let started = Instant::now();
            // A key that is an application (Entra ID, a Google service account) needs its
            // token first, a Bedrock key its AWS credentials (a role's come from STS); failing
            // to get them is this key's failure, like an upstream error.
            let auth = attempt_auth(client, key).await;
            let attempt_result = match auth {
                Err(message) => Attempt::Retryable(Failure::Failed(message)),
                Ok(auth) => {
                    let request = upstream_request(
                        client,
                        provider,
                        key,
                        upstream.op,
                        &target.model,
                        Some(upstream.body.clone()),
                        forwarded,
                        auth,
                    )?;
                    attempt_once(request, timeout, stream, provider).await
                }
            };
            upstream_wait += started.elapsed();
            let (outcome, label) = match &attempt_result {
                Attempt::Answered(..) => (Outcome::Success, "success"),
                Attempt::Rejected(_) => (Outcome::Success, "client_error"),
                Attempt::Retryable(Failure::Timeout { .. }) => (Outcome::Failure, "timeout"),
                Attempt::Retryable(_) => (Outcome::Failure, "retryable_error"),
            };
            permit.finish(outcome);
            metrics
                .upstream_attempts
                .get_or_create(&AttemptLabels {
                    provider: provider.name.clone(),
                    outcome: label,
                })
                .inc();
            match attempt_result {
                Attempt::Answered(reply, input_tokens) => {
                    return Ok(Dispatched {
                        target_index,
                        reply,
                        slot,
                        upstream_wait,
                        deployment: key.deployment(&target.model).map(str::to_owned),
                        input_tokens,
                    })
                }
                Attempt::Rejected(error) => return Err(error),
                Attempt::Retryable(failure) => {
                    tracing::debug!(
                        provider = %provider.name,
                        key = %key.name,
                        attempt,
                        reason = %GatewayError::from(failure.clone()),
                        "upstream attempt failed"
                    );
                    failed_keys.push(key_index);
                    last_failure = Some(failure);
                }
            }
        }
    }
    Err(last_failure
        .map(GatewayError::from)
        .unwrap_or_else(|| GatewayError::UpstreamsFailed {
            last: "no target to try".into(),
        }))
}

/// What `key` authenticates this attempt with besides its own header: an application's
/// bearer token, or a Bedrock key's AWS credentials (its own, or its role's from STS).
async fn attempt_auth(
    client: &reqwest::Client,
    key: &UpstreamKey,
) -> Result<Option<AttemptAuth>, String> {
    if let Some(tokens) = &key.tokens {
        return tokens
            .bearer(client)
            .await
            .map(|b| Some(AttemptAuth::Bearer(b)));
    }
    match key.bedrock.as_ref().and_then(|b| b.signer.as_ref()) {
        Some(signer) => signer
            .credentials(client)
            .await
            .map(|identity| Some(AttemptAuth::Aws(identity))),
        None => Ok(None),
    }
}

async fn attempt_once(
    request: reqwest::RequestBuilder,
    timeout: Duration,
    stream: bool,
    target: &Provider,
) -> Attempt {
    let provider = target.name.as_str();
    // `timeout` comes from `request_timeout`, at most a day: the sum cannot overflow.
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || {
        Attempt::Retryable(Failure::Timeout {
            provider: provider.to_string(),
            seconds: timeout.as_secs(),
        })
    };
    let response = match tokio::time::timeout_at(deadline, request.send()).await {
        Err(_) => return timed_out(),
        Ok(Err(error)) => {
            return Attempt::Retryable(Failure::Failed(format!(
                "{provider}: {}",
                describe_transport_error(&error)
            )))
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() && stream {
        return Attempt::Answered(Reply::Stream(response), None);
    }
    let input_tokens = response
        .headers()
        .get(BEDROCK_INPUT_TOKENS)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok());
    let body = match tokio::time::timeout_at(deadline, response.bytes()).await {
        Err(_) => return timed_out(),
        Ok(Err(error)) => {
            return Attempt::Retryable(Failure::Failed(format!(
                "{provider}: reading the response failed: {}",
                describe_transport_error(&error)
            )))
        }
        Ok(Ok(body)) => body,
    };
    if status.is_success() {
        return Attempt::Answered(Reply::Full(body), input_tokens);
    }
    let message = upstream_error_message(&body);
    if is_retryable(status) {
        Attempt::Retryable(Failure::Failed(format!(
            "{provider} returned {}: {message}",
            status.as_u16()
        )))
    } else {
        Attempt::Rejected(GatewayError::UpstreamRejected {
            provider: provider.to_string(),
            kind: target.kind,
            status,
            message,
            body,
        })
    }
}

/// Statuses worth another attempt (possibly with another key or provider): rate limits,
/// server errors, and credentials the upstream refused.
fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::REQUEST_TIMEOUT
                | StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
        )
}

/// The per-attempt deadline of `network`, at most [`NetworkConfig::MAX_REQUEST_TIMEOUT_SECONDS`]
/// even when a larger value got past validation (a store written by an older gateway).
fn request_timeout(network: &NetworkConfig) -> Duration {
    Duration::from_secs(
        network
            .default_request_timeout_in_seconds
            .min(NetworkConfig::MAX_REQUEST_TIMEOUT_SECONDS),
    )
}

/// Exponential backoff with jitter: `initial * 2^(attempt-1)`, capped, then 50–100% of that.
/// Both settings count as at most [`NetworkConfig::MAX_RETRY_BACKOFF_MS`], so a value that got
/// past validation cannot park a request for days.
fn backoff(attempt: u32, initial_ms: u64, max_ms: u64) -> Duration {
    let initial_ms = initial_ms.min(NetworkConfig::MAX_RETRY_BACKOFF_MS);
    let max_ms = max_ms.min(NetworkConfig::MAX_RETRY_BACKOFF_MS);
    let exp = initial_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max_ms);
    let jittered = capped / 2 + fastrand::u64(0..=capped / 2);
    Duration::from_millis(jittered)
}

fn describe_transport_error(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let head = if error.is_connect() {
        "connection failed".to_string()
    } else {
        error.to_string()
    };
    match error.source() {
        Some(cause) => format!("{head}: {}", crate::error::error_chain(cause)),
        None => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        for _ in 0..100 {
            let first = backoff(1, 100, 1000).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let third = backoff(3, 100, 1000).as_millis();
            assert!((200..=400).contains(&third), "{third}");
            let tenth = backoff(10, 100, 1000).as_millis();
            assert!((500..=1000).contains(&tenth), "{tenth}");
        }
    }

    #[test]
    fn backoff_of_u64_max_is_capped_at_an_hour() {
        let hour = Duration::from_millis(NetworkConfig::MAX_RETRY_BACKOFF_MS);
        for attempt in [1, 2, 10, u32::MAX] {
            let pause = backoff(attempt, u64::MAX, u64::MAX);
            assert!(pause <= hour && pause >= hour / 2, "{pause:?}");
        }
        assert!(backoff(1, 100, u64::MAX) <= Duration::from_millis(100));
    }

    #[test]
    fn a_request_timeout_of_u64_max_means_a_day() {
        let network = NetworkConfig {
            default_request_timeout_in_seconds: u64::MAX,
            ..NetworkConfig::default()
        };
        assert_eq!(request_timeout(&network), Duration::from_secs(86_400));
    }

    /// A provider at `base_url` with `network` settings, and its only target.
    fn target(network: NetworkConfig, metrics: &Metrics) -> Target {
        let mut config = crate::config::GatewayConfig::default();
        config.providers.insert(
            "local".into(),
            crate::config::ProviderConfig {
                network_config: network,
                ..Default::default()
            },
        );
        let table =
            super::super::table::RoutingTable::build(&config, metrics, None).expect("table");
        table.resolve("local/m", None).expect("target")
    }

    #[tokio::test]
    async fn a_request_with_a_u64_max_timeout_fails_over_instead_of_panicking() {
        // A port nothing listens on: the attempt fails at once with a connection error.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = closed.local_addr().expect("address");
        drop(closed);
        let metrics = Metrics::new();
        let target = target(
            NetworkConfig {
                base_url: Some(format!("http://{address}")),
                default_request_timeout_in_seconds: u64::MAX,
                ..NetworkConfig::default()
            },
            &metrics,
        );
        let result = dispatch(
            &reqwest::Client::new(),
            &metrics,
            &[target],
            false,
            &ForwardedHeaders::default(),
            |_| {
                Ok(UpstreamBody {
                    op: UpstreamOp::ChatCompletions,
                    body: Bytes::from_static(b"{}"),
                })
            },
        )
        .await;
        assert!(
            matches!(result, Err(GatewayError::UpstreamsFailed { .. })),
            "{:?}",
            result.err()
        );
    }

    #[test]
    fn client_errors_are_not_retried() {
        assert!(!is_retryable(StatusCode::BAD_REQUEST));
        assert!(!is_retryable(StatusCode::NOT_FOUND));
        assert!(!is_retryable(StatusCode::UNPROCESSABLE_ENTITY));
        assert!(is_retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_retryable(StatusCode::UNAUTHORIZED));
    }
}
