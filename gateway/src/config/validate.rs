//! Semantic checks that types alone cannot express. Every problem is returned with its path so
//! one run of the gateway tells the user everything to fix.

use std::net::IpAddr;

use super::catalog::{self, KnownProvider};
use super::store::SSL_MODES;
use super::{
    BedrockKeyConfig, BudgetConfig, CircuitBreakerConfig, ClientConfig, ClusterConfig,
    ConcurrencyConfig, ConfigStoreConfig, DiscoveryConfig, DiscoveryType, FieldError,
    GatewayConfig, GossipTuning, GovernanceConfig, KeyConfig, ModelPrice, NetworkConfig, Period,
    ProviderConfig, ProviderKind, ProxyConfig, ProxyType, RateLimitConfig, ServerConfig, StoreType,
    VirtualKeyConfig, VirtualKeyProviderConfig, SERVED_REQUEST_TYPES,
};

impl GatewayConfig {
    /// All semantic problems in this config; empty when it is valid.
    ///
    /// Every number has an upper bound (and a lower one where 0 means nothing): values past it
    /// are typos, and the largest integers would overflow the deadline and period arithmetic.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut problems = Vec::new();
        if let Some(version) = self.version.filter(|v| !(1..=2).contains(v)) {
            problems.push(FieldError::new(
                "version",
                format!(
                    "must be 1 (Bifrost 1.4: an empty allow-list allows all) or 2 (the default: \
                     it allows nothing); got {version}"
                ),
            ));
        }
        validate_client(&self.client, &mut problems);
        for (name, provider) in &self.providers {
            validate_provider(name, provider, &mut problems);
        }
        validate_store(&self.config_store, &mut problems);
        validate_governance(self, &mut problems);
        validate_cluster(&self.cluster_config, &self.config_store, &mut problems);
        validate_listener(&self.server, &mut problems);
        problems
    }
}

/// Refuse `value` outside `min..=max`; `meaning` says what `max` is in words ("a day").
fn check_range(
    problems: &mut Vec<FieldError>,
    field: impl Into<String>,
    value: u64,
    (min, max): (u64, u64),
    meaning: &str,
) {
    if !(min..=max).contains(&value) {
        let meaning = if meaning.is_empty() {
            String::new()
        } else {
            format!(" ({meaning})")
        };
        problems.push(FieldError::new(
            field,
            format!("must be between {min} and {max}{meaning}; got {value}"),
        ));
    }
}

/// Lower bound of a float: whether the bound itself is allowed.
#[derive(Clone, Copy)]
enum Floor {
    /// `value >= 0`.
    Zero,
    /// `value > 0`.
    AboveZero,
}

/// Refuse a float that is not a finite number in `floor..=max`; `unit` names what it counts
/// ("USD per token").
fn check_amount(
    problems: &mut Vec<FieldError>,
    field: impl Into<String>,
    value: f64,
    (floor, max): (Floor, f64),
    unit: &str,
) {
    let above_floor = match floor {
        Floor::Zero => value >= 0.0,
        Floor::AboveZero => value > 0.0,
    };
    if !(value.is_finite() && above_floor && value <= max) {
        let low = match floor {
            Floor::Zero => "0 or more",
            Floor::AboveZero => "greater than 0",
        };
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!(" of {unit}")
        };
        problems.push(FieldError::new(
            field,
            format!(
                "must be a number{unit}, {low} and at most {}; got {}",
                readable(max),
                readable(value)
            ),
        ));
    }
}

/// `1e308` rather than 309 digits; small and ordinary amounts as written.
fn readable(value: f64) -> String {
    if value.is_finite() && value != 0.0 && !(1e-6..1e12).contains(&value.abs()) {
        format!("{value:e}")
    } else {
        value.to_string()
    }
}

/// Refuse a reset period that does not parse or is longer than [`Period::MAX_YEARS`].
fn check_period(problems: &mut Vec<FieldError>, field: String, text: &str) {
    match text.parse::<Period>() {
        Err(reason) => problems.push(FieldError::new(field, reason)),
        Ok(period) if !period.is_within_max() => problems.push(FieldError::new(
            field,
            format!(
                "\"{text}\" is longer than {years} years; use at most {years}Y ({months}M, {days}d)",
                years = Period::MAX_YEARS,
                months = Period::MAX_YEARS * 12,
                days = Period::MAX_YEARS * 365 + Period::MAX_YEARS.div_ceil(4),
            ),
        )),
        Ok(_) => {}
    }
}

const A_DAY: &str = "a day";
const AN_HOUR: &str = "an hour";

fn validate_client(client: &ClientConfig, problems: &mut Vec<FieldError>) {
    for (i, origin) in client.allowed_origins.iter().enumerate() {
        if origin != "*" && !is_origin(origin) {
            problems.push(FieldError::new(
                format!("client.allowed_origins[{i}]"),
                "must be \"*\" or an origin as browsers send it: scheme://host[:port], no path or trailing slash",
            ));
        }
    }
    for (i, header) in client.allowed_headers.iter().enumerate() {
        if !is_header_name(header) {
            problems.push(FieldError::new(
                format!("client.allowed_headers[{i}]"),
                format!("{header:?} is not a header name"),
            ));
        }
    }
    check_range(
        problems,
        "client.max_request_body_size_mb",
        u64::from(client.max_request_body_size_mb),
        (1, u64::from(ClientConfig::MAX_REQUEST_BODY_SIZE_MB)),
        "4 GiB",
    );
    check_range(
        problems,
        "client.initial_pool_size",
        u64::from(client.initial_pool_size),
        (0, u64::from(ClientConfig::MAX_INITIAL_POOL_SIZE)),
        "",
    );
    // Element caps: 0 would refuse every request; past the maximum the cap no longer bounds
    // the memory a request takes.
    let caps = [
        (
            "client.max_messages_per_request",
            client.max_messages_per_request,
        ),
        (
            "client.max_content_blocks_per_request",
            client.max_content_blocks_per_request,
        ),
        ("client.max_tools_per_request", client.max_tools_per_request),
        (
            "client.max_stop_sequences_per_request",
            client.max_stop_sequences_per_request,
        ),
    ];
    for (field, value) in caps {
        check_range(
            problems,
            field,
            u64::from(value),
            (1, u64::from(ClientConfig::MAX_ELEMENTS_PER_REQUEST)),
            "",
        );
    }
    check_range(
        problems,
        "client.max_json_values_per_request",
        u64::from(client.max_json_values_per_request),
        (1, u64::from(ClientConfig::MAX_JSON_VALUES_PER_REQUEST)),
        "",
    );
}

/// The listener's timeouts and connection cap: at least 1, at most a bound past which the
/// value is a typo (or disables the protection in all but name); the shutdown delay and drain
/// timeout may be 0 but at most an hour, so SIGTERM always ends the process.
fn validate_listener(server: &ServerConfig, problems: &mut Vec<FieldError>) {
    let bounded = [
        (
            "server.header_read_timeout_seconds",
            server.header_read_timeout_seconds,
            (1, ServerConfig::MAX_HEADER_READ_TIMEOUT_SECONDS),
            "",
        ),
        (
            "server.body_read_timeout_seconds",
            server.body_read_timeout_seconds,
            (1, ServerConfig::MAX_BODY_READ_TIMEOUT_SECONDS),
            AN_HOUR,
        ),
        (
            "server.idle_timeout_seconds",
            server.idle_timeout_seconds,
            (1, ServerConfig::MAX_IDLE_TIMEOUT_SECONDS),
            AN_HOUR,
        ),
        (
            "server.max_connections",
            u64::from(server.max_connections),
            (1, u64::from(ServerConfig::MAX_MAX_CONNECTIONS)),
            "",
        ),
        (
            "server.drain_timeout_seconds",
            server.drain_timeout_seconds,
            (0, ServerConfig::MAX_DRAIN_TIMEOUT_SECONDS),
            AN_HOUR,
        ),
        (
            "server.shutdown_delay_seconds",
            server.shutdown_delay_seconds,
            (0, ServerConfig::MAX_SHUTDOWN_DELAY_SECONDS),
            AN_HOUR,
        ),
    ];
    for (field, value, range, meaning) in bounded {
        check_range(problems, field, value, range, meaning);
    }
}

/// An `http://` or `https://` URL without whitespace (what every upstream address must be).
fn is_http_url(text: &str) -> bool {
    (text.starts_with("http://") || text.starts_with("https://"))
        && !text.contains(char::is_whitespace)
}

/// Azure keys name their resource (`azure_key_config`); other providers' keys must not.
fn validate_azure_keys(
    name: &str,
    provider: &ProviderConfig,
    azure: bool,
    problems: &mut Vec<FieldError>,
) {
    let at = |index: usize, field: &str| format!("providers.{name}.keys[{index}].{field}");
    if azure && provider.keys.is_empty() {
        problems.push(FieldError::new(
            format!("providers.{name}.keys"),
            "an Azure OpenAI provider needs a key with azure_key_config.endpoint (its resource)",
        ));
    }
    for (index, key) in provider.keys.iter().enumerate() {
        match (&key.azure_key_config, azure) {
            (None, true) => problems.push(FieldError::new(
                at(index, "azure_key_config"),
                "required for Azure OpenAI: endpoint (https://<resource>.openai.azure.com), and deployments or api_version as needed",
            )),
            (Some(_), false) => problems.push(FieldError::new(
                at(index, "azure_key_config"),
                format!("only the azure provider reads it (\"{name}\" is not Azure OpenAI)"),
            )),
            (Some(config), true) => {
                let endpoint = &config.endpoint;
                if !is_http_url(endpoint) {
                    problems.push(FieldError::new(
                        at(index, "azure_key_config.endpoint"),
                        format!("must be the resource's https:// URL (got \"{endpoint}\")"),
                    ));
                }
                let entra = [
                    ("client_id", &config.client_id),
                    ("client_secret", &config.client_secret),
                    ("tenant_id", &config.tenant_id),
                ];
                let named = entra.iter().any(|(_, value)| value.is_some());
                if named {
                    for (field, value) in entra {
                        match value {
                            None => problems.push(FieldError::new(
                                at(index, &format!("azure_key_config.{field}")),
                                "required for Entra ID: client_id, client_secret and tenant_id go together",
                            )),
                            Some(value) if value.is_empty() || value.contains(char::is_control) => {
                                problems.push(FieldError::new(
                                    at(index, &format!("azure_key_config.{field}")),
                                    "must be non-empty, without control characters",
                                ))
                            }
                            Some(_) => {}
                        }
                    }
                } else if !config.scopes.is_empty() {
                    problems.push(FieldError::new(
                        at(index, "azure_key_config.scopes"),
                        "only used with Entra ID (client_id, client_secret, tenant_id)",
                    ));
                }
                if !named && key.value.is_empty() {
                    problems.push(FieldError::new(
                        at(index, "value"),
                        "required: the resource's API key (sent as api-key), or an Entra ID application in azure_key_config (client_id, client_secret, tenant_id)",
                    ));
                }
            }
            (None, false) => {}
        }
    }
}

/// Bedrock keys are IAM credentials (`bedrock_key_config.access_key` and `secret_key`) or a
/// Bedrock API key (`value`); other providers' keys must not carry a `bedrock_key_config`.
/// Bedrock Mantle's (`mantle`) are the same, named `bedrock_mantle_key_config` as Bifrost
/// names them, without `arn` (Mantle names models in the body).
fn validate_bedrock_keys(
    name: &str,
    provider: &ProviderConfig,
    bedrock: bool,
    mantle: bool,
    problems: &mut Vec<FieldError>,
) {
    let at = |index: usize, field: &str| {
        let field = match mantle {
            true => field.replacen("bedrock_key_config", "bedrock_mantle_key_config", 1),
            false => field.to_owned(),
        };
        format!("providers.{name}.keys[{index}].{field}")
    };
    let bedrock = bedrock || mantle;
    for (index, key) in provider.keys.iter().enumerate() {
        let arn = key.bedrock_key_config.as_ref().and_then(|c| c.arn.as_ref());
        if mantle && arn.is_some() {
            problems.push(FieldError::new(
                at(index, "bedrock_key_config.arn"),
                "not read by Bedrock Mantle (its OpenAI-compatible API names models in the body; map names with deployments)",
            ));
        }
    }
    if bedrock && provider.keys.is_empty() {
        problems.push(FieldError::new(
            format!("providers.{name}.keys"),
            "a Bedrock provider needs a key: bedrock_key_config with access_key, secret_key and region, or a Bedrock API key as value",
        ));
    }
    for (index, key) in provider.keys.iter().enumerate() {
        let config = key.bedrock_key_config.as_ref();
        if !bedrock {
            if config.is_some() {
                problems.push(FieldError::new(
                    at(index, "bedrock_key_config"),
                    format!("only a Bedrock provider reads it (\"{name}\" is not one)"),
                ));
            }
            continue;
        }
        let config = config.cloned().unwrap_or_default();
        match (&config.access_key, &config.secret_key) {
            (Some(_), None) => problems.push(FieldError::new(
                at(index, "bedrock_key_config.secret_key"),
                "required with access_key",
            )),
            (None, Some(_)) => problems.push(FieldError::new(
                at(index, "bedrock_key_config.access_key"),
                "required with secret_key",
            )),
            (None, None) if key.value.is_empty() => problems.push(FieldError::new(
                at(index, "bedrock_key_config"),
                "needs IAM credentials (access_key and secret_key) or a Bedrock API key as the key's value",
            )),
            _ => {}
        }
        if config.session_token.is_some() && config.access_key.is_none() {
            problems.push(FieldError::new(
                at(index, "bedrock_key_config.session_token"),
                "belongs to temporary IAM credentials: set access_key and secret_key with it",
            ));
        }
        for (field, value) in [
            ("access_key", &config.access_key),
            ("secret_key", &config.secret_key),
            ("session_token", &config.session_token),
            ("arn", &config.arn),
        ] {
            if value
                .as_ref()
                .is_some_and(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic()))
            {
                problems.push(FieldError::new(
                    at(index, &format!("bedrock_key_config.{field}")),
                    "must be non-empty printable ASCII without spaces",
                ));
            }
        }
        if let Some(region) = &config.region {
            let valid = !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                problems.push(FieldError::new(
                    at(index, "bedrock_key_config.region"),
                    format!("must be an AWS region such as us-east-1 (got \"{region}\")"),
                ));
            }
        }
        validate_assume_role(&config, &|field| at(index, field), problems);
    }
}

/// A Bedrock key's `role_arn` (STS AssumeRole, signed with the key's own credentials) and the
/// `external_id` and `session_name` that only go with it; `at` names a field of the key.
fn validate_assume_role(
    config: &BedrockKeyConfig,
    at: &dyn Fn(&str) -> String,
    problems: &mut Vec<FieldError>,
) {
    let Some(role_arn) = &config.role_arn else {
        for (field, value) in [
            ("external_id", &config.external_id),
            ("session_name", &config.session_name),
        ] {
            if value.is_some() {
                problems.push(FieldError::new(
                    at(&format!("bedrock_key_config.{field}")),
                    "is only used to assume role_arn: set role_arn too, or remove it",
                ));
            }
        }
        return;
    };
    if !is_role_arn(role_arn) {
        problems.push(FieldError::new(
            at("bedrock_key_config.role_arn"),
            format!(
                "must be an IAM role's ARN such as arn:aws:iam::123456789012:role/bedrock-caller (got \"{role_arn}\")"
            ),
        ));
    }
    if config.access_key.is_none() || config.secret_key.is_none() {
        problems.push(FieldError::new(
            at("bedrock_key_config.role_arn"),
            "needs the key's own IAM credentials (access_key and secret_key) to call STS AssumeRole with; the AWS default credential chain is not read",
        ));
    }
    if let Some(external_id) = &config.external_id {
        let valid = (2..=1224).contains(&external_id.len())
            && external_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b));
        if !valid {
            problems.push(FieldError::new(
                at("bedrock_key_config.external_id"),
                "must be 2 to 1224 characters of letters, digits and _+=,.@:/- (STS's rule)",
            ));
        }
    }
    if let Some(session_name) = &config.session_name {
        let valid = (2..=64).contains(&session_name.len())
            && session_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
        if !valid {
            problems.push(FieldError::new(
                at("bedrock_key_config.session_name"),
                "must be 2 to 64 characters of letters, digits and _+=,.@- (STS's rule)",
            ));
        }
    }
}

/// `arn:<partition>:iam::<12-digit account>:role/<path/name>`, the partition `aws` or one
/// of its `aws-...` siblings (`aws-cn`, `aws-us-gov`).
fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return false;
    };
    let name = resource.strip_prefix("role/").unwrap_or_default();
    prefix == "arn"
        && (partition == "aws" || partition.starts_with("aws-"))
        && service == "iam"
        && region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && !name.ends_with('/')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@/-".contains(&b))
}

/// Vertex AI keys name their project, region and service account (`vertex_key_config`);
/// other providers' keys must not carry one.
fn validate_vertex_keys(
    name: &str,
    provider: &ProviderConfig,
    vertex: bool,
    problems: &mut Vec<FieldError>,
) {
    let at = |index: usize, field: &str| format!("providers.{name}.keys[{index}].{field}");
    if vertex && provider.keys.is_empty() {
        problems.push(FieldError::new(
            format!("providers.{name}.keys"),
            "a Vertex AI provider needs a key with vertex_key_config (project_id, region, auth_credentials)",
        ));
    }
    for (index, key) in provider.keys.iter().enumerate() {
        let config = match (&key.vertex_key_config, vertex) {
            (None, false) => continue,
            (Some(_), false) => {
                problems.push(FieldError::new(
                    at(index, "vertex_key_config"),
                    format!("only the vertex provider reads it (\"{name}\" is not Vertex AI)"),
                ));
                continue;
            }
            // Without a project: a Vertex API key (express mode).
            (None, true) if !key.value.is_empty() => continue,
            (None, true) => {
                problems.push(FieldError::new(
                    at(index, "vertex_key_config"),
                    "required for Vertex AI: project_id, region and auth_credentials (the service account's JSON key), or a Vertex API key as the key's value (express mode)",
                ));
                continue;
            }
            (Some(config), true) => config,
        };
        let lowercase_id = |text: &str| {
            !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !lowercase_id(&config.project_id) {
            problems.push(FieldError::new(
                at(index, "vertex_key_config.project_id"),
                format!("must be a Google Cloud project id (lower-case letters, digits, '-'; got \"{}\")", config.project_id),
            ));
        }
        if !lowercase_id(&config.region) {
            problems.push(FieldError::new(
                at(index, "vertex_key_config.region"),
                format!(
                    "must be a Vertex AI location such as us-central1 or global (got \"{}\")",
                    config.region
                ),
            ));
        }
        let key = match config.credentials() {
            Ok(super::VertexCredentials::ServiceAccount(text)) => {
                super::ServiceAccountKey::parse(&text).map(drop)
            }
            Ok(super::VertexCredentials::MetadataServer) => Ok(()),
            Err(problem) => Err(problem),
        };
        if let Err(problem) = key {
            problems.push(FieldError::new(
                at(index, "vertex_key_config.auth_credentials"),
                problem,
            ));
        }
    }
}

/// A PEM field must hold at least one certificate (the client build parses it fully).
fn check_pem(problems: &mut Vec<FieldError>, field: String, pem: &Option<String>) {
    if let Some(pem) = pem {
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            problems.push(FieldError::new(
                field,
                "must hold a PEM certificate (-----BEGIN CERTIFICATE----- ...)",
            ));
        }
    }
}

/// `proxy_config`: an `http` or `socks5` proxy needs a URL of its kind.
fn validate_proxy(at: &str, proxy: &ProxyConfig, problems: &mut Vec<FieldError>) {
    let schemes: &[&str] = match proxy.proxy_type {
        ProxyType::None | ProxyType::Environment => &[],
        ProxyType::Http => &["http://", "https://"],
        ProxyType::Socks5 => &["socks5://", "socks5h://"],
    };
    match (&proxy.url, schemes.is_empty()) {
        (None, false) => problems.push(FieldError::new(
            format!("{at}.url"),
            format!("required with type {:?}", proxy.proxy_type).to_lowercase(),
        )),
        (Some(url), false) if !schemes.iter().any(|s| url.starts_with(s)) => {
            problems.push(FieldError::new(
                format!("{at}.url"),
                format!("must start with {} (got \"{url}\")", schemes.join(" or ")),
            ))
        }
        _ => {}
    }
    check_pem(problems, format!("{at}.ca_cert_pem"), &proxy.ca_cert_pem);
}

/// `request_path_overrides`: request types the gateway serves, each a path or a whole URL; the
/// gateway sends streaming and non-streaming chat to one URL.
fn validate_path_overrides(
    at: &str,
    overrides: &std::collections::BTreeMap<String, String>,
    problems: &mut Vec<FieldError>,
) {
    for (request, path) in overrides {
        let field = format!("{at}.{request}");
        if !SERVED_REQUEST_TYPES.contains(&request.as_str()) {
            problems.push(FieldError::new(
                field,
                format!(
                    "not a request type the gateway serves ({})",
                    SERVED_REQUEST_TYPES.join(", ")
                ),
            ));
        } else if !(is_http_url(path)
            || (path.starts_with('/') && !path.contains(char::is_whitespace)))
        {
            problems.push(FieldError::new(
                field,
                format!("must be a path starting with / or an http(s):// URL (got \"{path}\")"),
            ));
        }
    }
    let chat = overrides.get("chat_completion");
    if let Some(stream) = overrides.get("chat_completion_stream") {
        if chat != Some(stream) {
            problems.push(FieldError::new(
                format!("{at}.chat_completion_stream"),
                "must equal chat_completion: the gateway sends streaming and non-streaming chat completions to one URL",
            ));
        }
    }
}

fn validate_provider(name: &str, provider: &ProviderConfig, problems: &mut Vec<FieldError>) {
    let at = |field: &str| format!("providers.{name}.{field}");
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !valid_name {
        problems.push(FieldError::new(
            format!("providers.{name}"),
            "provider names may contain only letters, digits, '-', '_' and '.' (models are addressed as \"<provider>/<model>\")",
        ));
    }
    for (index, key) in provider.keys.iter().enumerate() {
        let key_at = |field: &str| at(&format!("keys[{index}].{field}"));
        check_amount(
            problems,
            key_at("weight"),
            key.weight,
            (Floor::AboveZero, KeyConfig::MAX_WEIGHT),
            "",
        );
        if key.models.iter().any(|m| m.trim().is_empty()) {
            problems.push(FieldError::new(
                key_at("models"),
                "model names must not be empty",
            ));
        }
        let servers = [
            ("vllm_key_config", &key.vllm_key_config),
            ("ollama_key_config", &key.ollama_key_config),
            ("sgl_key_config", &key.sgl_key_config),
        ];
        let set: Vec<&str> = servers
            .iter()
            .filter(|(_, config)| config.is_some())
            .map(|(field, _)| *field)
            .collect();
        if set.len() > 1 {
            problems.push(FieldError::new(
                key_at(set[1]),
                format!("a key is one server: set one of {}", set.join(", ")),
            ));
        }
        if let Some((field, server)) = key.self_hosted() {
            let url = &server.url;
            if !is_http_url(url) {
                problems.push(FieldError::new(
                    key_at(&format!("{field}.url")),
                    format!("must be an http:// or https:// URL (got \"{url}\")"),
                ));
            }
            if server
                .model_name
                .as_deref()
                .is_some_and(|m| m.trim().is_empty())
            {
                problems.push(FieldError::new(
                    key_at(&format!("{field}.model_name")),
                    "must not be empty",
                ));
            }
        }
        if key.value.contains(['\r', '\n']) {
            problems.push(FieldError::new(
                key_at("value"),
                "must not contain line breaks",
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (index, key) in provider.keys.iter().enumerate() {
        if let Some(id) = key.id.as_ref().or(key.name.as_ref()) {
            if !seen.insert(id) {
                problems.push(FieldError::new(
                    at(&format!("keys[{index}]")),
                    format!("duplicate key id/name \"{id}\"; each key of a provider needs its own"),
                ));
            }
        }
    }

    let network = &provider.network_config;
    let custom = provider.custom_provider_config.as_ref();
    match (catalog::lookup(name), custom) {
        (Some(KnownProvider::NotSpoken { api }), None) => problems.push(FieldError::new(
            format!("providers.{name}"),
            format!(
                "Bifrost speaks {api} to \"{name}\"; the gateway does not speak it yet (it speaks OpenAI's, Anthropic's, Gemini's and Bedrock's formats). Remove this provider, or for an OpenAI-compatible endpoint give it another name with custom_provider_config.base_provider_type \"openai\" and network_config.base_url"
            ),
        )),
        (Some(KnownProvider::NotServed { operations }), None) => problems.push(FieldError::new(
            format!("providers.{name}"),
            format!("\"{name}\" serves {operations}, which the gateway does not serve; remove it"),
        )),
        _ => {}
    }
    if let Some(custom) = custom {
        validate_path_overrides(
            &at("custom_provider_config.request_path_overrides"),
            &custom.request_path_overrides,
            problems,
        );
    }
    let refused = custom.is_none()
        && matches!(
            catalog::lookup(name),
            Some(KnownProvider::NotSpoken { .. } | KnownProvider::NotServed { .. })
        );
    let azure = provider.addressing(name) == catalog::Addressing::Azure;
    validate_azure_keys(name, provider, azure, problems);
    let bedrock = provider.kind(name) == ProviderKind::Bedrock;
    let mantle = provider.addressing(name) == catalog::Addressing::Mantle;
    validate_bedrock_keys(name, provider, bedrock, mantle, problems);
    let vertex = provider.addressing(name) == catalog::Addressing::Vertex;
    validate_vertex_keys(name, provider, vertex, problems);
    match provider.base_url(name) {
        None if refused || azure || bedrock || mantle || vertex => {}
        None => problems.push(FieldError::new(
            at("network_config.base_url"),
            format!("required: \"{name}\" is not a provider the gateway knows by name (those are: {}), so say where it lives (e.g. \"https://llm.internal:8000\")", catalog::spoken_names()),
        )),
        Some(url) if !is_http_url(&url) => {
            problems.push(FieldError::new(
                at("network_config.base_url"),
                format!("must be an http:// or https:// URL (got \"{url}\")"),
            ))
        }
        Some(_) => {}
    }
    check_range(
        problems,
        at("network_config.default_request_timeout_in_seconds"),
        network.default_request_timeout_in_seconds,
        (1, NetworkConfig::MAX_REQUEST_TIMEOUT_SECONDS),
        A_DAY,
    );
    check_range(
        problems,
        at("network_config.max_retries"),
        u64::from(network.max_retries),
        (0, u64::from(NetworkConfig::MAX_RETRIES)),
        "",
    );
    for (field, value) in [
        ("retry_backoff_initial_ms", network.retry_backoff_initial_ms),
        ("retry_backoff_max_ms", network.retry_backoff_max_ms),
    ] {
        check_range(
            problems,
            at(&format!("network_config.{field}")),
            value,
            (0, NetworkConfig::MAX_RETRY_BACKOFF_MS),
            AN_HOUR,
        );
    }
    if network.retry_backoff_initial_ms > network.retry_backoff_max_ms {
        problems.push(FieldError::new(
            at("network_config.retry_backoff_initial_ms"),
            format!(
                "must not exceed retry_backoff_max_ms ({} > {})",
                network.retry_backoff_initial_ms, network.retry_backoff_max_ms
            ),
        ));
    }
    for (field, value) in [
        (
            "stream_idle_timeout_in_seconds",
            network.stream_idle_timeout_in_seconds,
        ),
        (
            "keep_alive_timeout_in_seconds",
            network.keep_alive_timeout_in_seconds,
        ),
    ] {
        check_range(
            problems,
            at(&format!("network_config.{field}")),
            value,
            (1, NetworkConfig::MAX_IDLE_SECONDS),
            AN_HOUR,
        );
    }
    if let Some(max) = network.max_conns_per_host {
        check_range(
            problems,
            at("network_config.max_conns_per_host"),
            u64::from(max),
            (1, u64::from(NetworkConfig::MAX_CONNS_PER_HOST)),
            "",
        );
    }
    check_pem(
        problems,
        at("network_config.ca_cert_pem"),
        &network.ca_cert_pem,
    );
    if let Some(proxy) = &provider.proxy_config {
        validate_proxy(&at("proxy_config"), proxy, problems);
    }
    for header in network.extra_headers.keys() {
        let token = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            problems.push(FieldError::new(
                at(&format!("network_config.extra_headers.{header}")),
                "is not a valid HTTP header name",
            ));
        }
    }
    let queue = &provider.concurrency_and_buffer_size;
    check_range(
        problems,
        at("concurrency_and_buffer_size.concurrency"),
        u64::from(queue.concurrency),
        (1, u64::from(ConcurrencyConfig::MAX_CONCURRENCY)),
        "",
    );
    check_range(
        problems,
        at("concurrency_and_buffer_size.buffer_size"),
        u64::from(queue.buffer_size),
        (0, u64::from(ConcurrencyConfig::MAX_BUFFER_SIZE)),
        "",
    );
    let breaker = &provider.circuit_breaker;
    let max_count = u64::from(CircuitBreakerConfig::MAX_COUNT);
    for (field, value, max, meaning) in [
        (
            "failure_threshold",
            u64::from(breaker.failure_threshold),
            max_count,
            "",
        ),
        (
            "success_threshold",
            u64::from(breaker.success_threshold),
            max_count,
            "",
        ),
        (
            "timeout_seconds",
            breaker.timeout_seconds,
            CircuitBreakerConfig::MAX_TIMEOUT_SECONDS,
            A_DAY,
        ),
        (
            "half_open_requests",
            u64::from(breaker.half_open_requests),
            max_count,
            "",
        ),
    ] {
        check_range(
            problems,
            at(&format!("circuit_breaker.{field}")),
            value,
            (1, max),
            meaning,
        );
    }
}

fn validate_store(store: &ConfigStoreConfig, problems: &mut Vec<FieldError>) {
    if !store.enabled {
        return;
    }
    let conn = &store.config;
    match store.store_type {
        StoreType::Sqlite => {
            if conn.path.as_deref().is_some_and(|p| p.trim().is_empty()) {
                problems.push(FieldError::new(
                    "config_store.config.path",
                    "must not be empty",
                ));
            }
        }
        StoreType::Postgres => {
            for (field, value) in [
                ("host", &conn.host),
                ("user", &conn.user),
                ("db_name", &conn.db_name),
            ] {
                if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                    problems.push(FieldError::new(
                        format!("config_store.config.{field}"),
                        "required when config_store.type is \"postgres\"",
                    ));
                }
            }
            if conn.port == Some(0) {
                problems.push(FieldError::new(
                    "config_store.config.port",
                    "must be 1-65535",
                ));
            }
            if let Some(mode) = &conn.ssl_mode {
                if !SSL_MODES.contains(&mode.as_str()) {
                    problems.push(FieldError::new(
                        "config_store.config.ssl_mode",
                        format!("must be one of {} (got \"{mode}\")", SSL_MODES.join(", ")),
                    ));
                }
            }
        }
    }
}

fn validate_cluster(
    cluster: &ClusterConfig,
    store: &ConfigStoreConfig,
    problems: &mut Vec<FieldError>,
) {
    for (index, peer) in cluster.peers.iter().enumerate() {
        if !is_host_port(peer) {
            problems.push(FieldError::new(
                format!("cluster_config.peers[{index}]"),
                format!("must be \"host:port\" (got \"{peer}\")"),
            ));
        }
    }
    for (index, cidr) in cluster.discovery.allowed_address_space.iter().enumerate() {
        if let Err(reason) = parse_cidr(cidr) {
            problems.push(FieldError::new(
                format!("cluster_config.discovery.allowed_address_space[{index}]"),
                reason,
            ));
        }
    }
    if cluster.gossip.port == 0 {
        problems.push(FieldError::new(
            "cluster_config.gossip.port",
            "must be 1-65535",
        ));
    }
    if cluster.grpc.port == 0 {
        problems.push(FieldError::new(
            "cluster_config.grpc.port",
            "must be 1-65535",
        ));
    }
    if let Some(tls) = &cluster.grpc.tls {
        // Only that the paths are set: the files live where the gateway runs (the operator
        // validates too), and are read and parsed when cluster mode starts.
        for (field, path) in [
            ("cert_file", &tls.cert_file),
            ("key_file", &tls.key_file),
            ("ca_file", &tls.ca_file),
        ] {
            if path.trim().is_empty() {
                problems.push(FieldError::new(
                    format!("cluster_config.grpc.tls.{field}"),
                    "must be a path to a PEM file",
                ));
            }
        }
    }
    let tuning = &cluster.gossip.config;
    let max_threshold = u64::from(GossipTuning::MAX_THRESHOLD);
    for (field, value, max, meaning) in [
        (
            "timeout_seconds",
            tuning.timeout_seconds,
            GossipTuning::MAX_TIMEOUT_SECONDS,
            AN_HOUR,
        ),
        (
            "success_threshold",
            u64::from(tuning.success_threshold),
            max_threshold,
            "",
        ),
        (
            "failure_threshold",
            u64::from(tuning.failure_threshold),
            max_threshold,
            "",
        ),
    ] {
        check_range(
            problems,
            format!("cluster_config.gossip.config.{field}"),
            value,
            (1, max),
            meaning,
        );
    }
    for (field, port) in [
        ("bind_port", cluster.discovery.bind_port),
        ("udp_broadcast_port", cluster.discovery.udp_broadcast_port),
    ] {
        if port == Some(0) {
            problems.push(FieldError::new(
                format!("cluster_config.discovery.{field}"),
                "must be 1-65535 (omit it for the default)",
            ));
        }
    }
    check_range(
        problems,
        "cluster_config.discovery.refresh_interval_seconds",
        cluster.discovery.refresh_interval_seconds,
        (1, DiscoveryConfig::MAX_REFRESH_INTERVAL_SECONDS),
        AN_HOUR,
    );
    if !cluster.enabled {
        return;
    }
    if !(store.enabled && store.store_type == StoreType::Postgres) {
        problems.push(FieldError::new(
            "config_store.type",
            "cluster mode needs shared durable state: set config_store.enabled to true and config_store.type to \"postgres\"",
        ));
    }
    if cluster.gossip.port == cluster.grpc.port {
        problems.push(FieldError::new(
            "cluster_config.grpc.port",
            "must differ from cluster_config.gossip.port",
        ));
    }
    let discovery = &cluster.discovery;
    if cluster.peers.is_empty() && !discovery.enabled {
        problems.push(FieldError::new(
            "cluster_config",
            "cluster mode needs seeds: list \"peers\" or set discovery.enabled to true with a discovery.type",
        ));
    }
    if !discovery.enabled {
        return;
    }
    let at = |field: &str| format!("cluster_config.discovery.{field}");
    let Some(kind) = discovery.discovery_type else {
        problems.push(FieldError::new(
            at("type"),
            "required when discovery is enabled: one of operator, kubernetes, dns, consul, etcd, udp, mdns",
        ));
        return;
    };
    match kind {
        DiscoveryType::Operator => {
            if discovery.peers_file.trim().is_empty() {
                problems.push(FieldError::new(at("peers_file"), "must not be empty"));
            }
        }
        DiscoveryType::Kubernetes => {
            if discovery
                .k8s_label_selector
                .as_deref()
                .is_none_or(|s| s.trim().is_empty())
            {
                problems.push(FieldError::new(
                    at("k8s_label_selector"),
                    "required for kubernetes discovery (e.g. \"app.kubernetes.io/name=bifrost\")",
                ));
            }
        }
        DiscoveryType::Dns => {
            if discovery.dns_names.is_empty() {
                problems.push(FieldError::new(
                    at("dns_names"),
                    "required for dns discovery",
                ));
            }
        }
        DiscoveryType::Consul => {
            // Unset means the local agent, 127.0.0.1:8500.
            if discovery.consul_address.as_deref().is_some_and(|a| {
                !is_host_port(
                    a.trim_start_matches("http://")
                        .trim_start_matches("https://"),
                )
            }) {
                problems.push(FieldError::new(
                    at("consul_address"),
                    "must be the Consul agent's \"host:port\" (e.g. \"127.0.0.1:8500\", the default when unset)",
                ));
            }
        }
        DiscoveryType::Etcd => {
            if discovery.etcd_endpoints.is_empty() {
                problems.push(FieldError::new(
                    at("etcd_endpoints"),
                    "required for etcd discovery (e.g. [\"http://127.0.0.1:2379\"])",
                ));
            }
        }
        DiscoveryType::Udp => {
            if discovery.udp_broadcast_port.is_none_or(|p| p == 0) {
                problems.push(FieldError::new(
                    at("udp_broadcast_port"),
                    "required for udp discovery",
                ));
            }
            if discovery.allowed_address_space.is_empty() {
                problems.push(FieldError::new(
                    at("allowed_address_space"),
                    "required for udp discovery: broadcast discovery must be fenced, so list the networks (CIDRs) beacons may come from and go to, e.g. [\"10.0.0.0/16\"]",
                ));
            }
        }
        DiscoveryType::Mdns => {
            if discovery.mdns_service.trim().is_empty() {
                problems.push(FieldError::new(at("mdns_service"), "must not be empty"));
            }
        }
    }
}

fn validate_governance(config: &GatewayConfig, problems: &mut Vec<FieldError>) {
    use std::collections::HashSet;
    let gov = &config.governance;
    fn unique<'a>(
        section: &str,
        ids: impl Iterator<Item = &'a str>,
        problems: &mut Vec<FieldError>,
    ) -> HashSet<&'a str> {
        let mut seen = HashSet::new();
        for (index, id) in ids.enumerate() {
            if id.trim().is_empty() {
                problems.push(FieldError::new(
                    format!("governance.{section}[{index}].id"),
                    "must not be empty",
                ));
            } else if !seen.insert(id) {
                problems.push(FieldError::new(
                    format!("governance.{section}[{index}].id"),
                    format!("duplicate id \"{id}\""),
                ));
            }
        }
        seen
    }
    let budgets = unique(
        "budgets",
        gov.budgets.iter().map(|b| b.id.as_str()),
        problems,
    );
    let rate_limits = unique(
        "rate_limits",
        gov.rate_limits.iter().map(|r| r.id.as_str()),
        problems,
    );
    let teams = unique("teams", gov.teams.iter().map(|t| t.id.as_str()), problems);
    let customers = unique(
        "customers",
        gov.customers.iter().map(|c| c.id.as_str()),
        problems,
    );
    unique(
        "virtual_keys",
        gov.virtual_keys.iter().map(|v| v.id.as_str()),
        problems,
    );

    let check_ref = |path: String,
                     reference: &Option<String>,
                     known: &HashSet<&str>,
                     what: &str,
                     problems: &mut Vec<FieldError>| {
        if let Some(id) = reference {
            if !known.contains(id.as_str()) {
                problems.push(FieldError::new(
                    path,
                    format!("no {what} with id \"{id}\" in governance.{what}s"),
                ));
            }
        }
    };
    for (i, budget) in gov.budgets.iter().enumerate() {
        check_amount(
            problems,
            format!("governance.budgets[{i}].max_limit"),
            budget.max_limit,
            (Floor::Zero, BudgetConfig::MAX_LIMIT_USD),
            "USD",
        );
        check_period(
            problems,
            format!("governance.budgets[{i}].reset_duration"),
            &budget.reset_duration,
        );
        if let Some(usage) = budget.current_usage {
            check_amount(
                problems,
                format!("governance.budgets[{i}].current_usage"),
                usage,
                (Floor::Zero, BudgetConfig::MAX_LIMIT_USD),
                "USD",
            );
        }
        if let Err(reason) = budget.last_reset_ms() {
            problems.push(FieldError::new(
                format!("governance.budgets[{i}].last_reset"),
                reason,
            ));
        }
    }
    for (i, limit) in gov.rate_limits.iter().enumerate() {
        for (max, duration, max_field, duration_field) in [
            (
                limit.request_max_limit,
                &limit.request_reset_duration,
                "request_max_limit",
                "request_reset_duration",
            ),
            (
                limit.token_max_limit,
                &limit.token_reset_duration,
                "token_max_limit",
                "token_reset_duration",
            ),
        ] {
            if let Some(max) = max {
                check_range(
                    problems,
                    format!("governance.rate_limits[{i}].{max_field}"),
                    max,
                    (0, RateLimitConfig::MAX_LIMIT),
                    "",
                );
            }
            match (max, duration) {
                (Some(_), None) => problems.push(FieldError::new(
                    format!("governance.rate_limits[{i}].{duration_field}"),
                    format!("required with {max_field}"),
                )),
                (None, Some(_)) => problems.push(FieldError::new(
                    format!("governance.rate_limits[{i}].{max_field}"),
                    format!("required with {duration_field}"),
                )),
                (Some(_), Some(text)) => check_period(
                    problems,
                    format!("governance.rate_limits[{i}].{duration_field}"),
                    text,
                ),
                (None, None) => {}
            }
        }
        if limit.cluster_mode == Some(super::ClusterLimitMode::Strict)
            && limit.request_max_limit.is_none()
        {
            problems.push(FieldError::new(
                format!("governance.rate_limits[{i}].cluster_mode"),
                "strict applies to request limits (token limits are always gossip-counted): set request_max_limit, or use gossip",
            ));
        }
    }
    for (i, team) in gov.teams.iter().enumerate() {
        check_ref(
            format!("governance.teams[{i}].customer_id"),
            &team.customer_id,
            &customers,
            "customer",
            problems,
        );
        check_ref(
            format!("governance.teams[{i}].budget_id"),
            &team.budget_id,
            &budgets,
            "budget",
            problems,
        );
        check_ref(
            format!("governance.teams[{i}].rate_limit_id"),
            &team.rate_limit_id,
            &rate_limits,
            "rate_limit",
            problems,
        );
    }
    for (i, customer) in gov.customers.iter().enumerate() {
        check_ref(
            format!("governance.customers[{i}].budget_id"),
            &customer.budget_id,
            &budgets,
            "budget",
            problems,
        );
        check_ref(
            format!("governance.customers[{i}].rate_limit_id"),
            &customer.rate_limit_id,
            &rate_limits,
            "rate_limit",
            problems,
        );
    }
    let mut values = HashSet::new();
    for (i, vk) in gov.virtual_keys.iter().enumerate() {
        let at = |field: &str| format!("governance.virtual_keys[{i}].{field}");
        if vk.value.is_empty() {
            // Bifrost's "no value": one is generated and kept in the config store.
            if !config.config_store.enabled {
                problems.push(FieldError::new(
                    at("value"),
                    "missing: a generated value is kept in the config store, which is disabled (config_store.enabled: false); set a value",
                ));
            }
        } else if vk.value.trim().is_empty() {
            problems.push(FieldError::new(at("value"), "must not be blank"));
        } else if !values.insert(vk.value.as_str()) {
            problems.push(FieldError::new(
                at("value"),
                "another virtual key has the same value",
            ));
        }
        if vk.team_id.is_some() && vk.customer_id.is_some() {
            problems.push(FieldError::new(
                at("customer_id"),
                "a virtual key belongs to a team or to a customer, not both (the team's customer applies)",
            ));
        }
        check_ref(at("team_id"), &vk.team_id, &teams, "team", problems);
        check_ref(
            at("customer_id"),
            &vk.customer_id,
            &customers,
            "customer",
            problems,
        );
        check_ref(at("budget_id"), &vk.budget_id, &budgets, "budget", problems);
        check_ref(
            at("rate_limit_id"),
            &vk.rate_limit_id,
            &rate_limits,
            "rate_limit",
            problems,
        );
        if let Err(err) = vk.expiry_ms() {
            problems.push(FieldError::new(
                at("expires_at"),
                format!(
                    "{err}: write an RFC 3339 time such as 2027-01-31T00:00:00Z, or omit it \
                     for a key that never expires"
                ),
            ));
        }
        if let Some(max_in_flight) = vk.max_in_flight {
            check_range(
                problems,
                at("max_in_flight"),
                u64::from(max_in_flight),
                (1, u64::from(VirtualKeyConfig::MAX_IN_FLIGHT)),
                "omit it for no cap",
            );
        }
        for (j, pc) in vk.provider_configs.iter().enumerate() {
            let pc_at = |field: &str| at(&format!("provider_configs[{j}].{field}"));
            if !config.providers.contains_key(&pc.provider) {
                problems.push(FieldError::new(
                    pc_at("provider"),
                    format!("no provider \"{}\" in providers", pc.provider),
                ));
            }
            check_amount(
                problems,
                pc_at("weight"),
                pc.weight,
                (Floor::Zero, VirtualKeyProviderConfig::MAX_WEIGHT),
                "",
            );
            check_ref(
                pc_at("budget_id"),
                &pc.budget_id,
                &budgets,
                "budget",
                problems,
            );
            check_ref(
                pc_at("rate_limit_id"),
                &pc.rate_limit_id,
                &rate_limits,
                "rate_limit",
                problems,
            );
        }
    }
    for (i, price) in gov.pricing.iter().enumerate() {
        for (field, value) in [
            ("input_cost_per_token", price.input_cost_per_token),
            ("output_cost_per_token", price.output_cost_per_token),
        ] {
            check_amount(
                problems,
                format!("governance.pricing[{i}].{field}"),
                value,
                (Floor::Zero, ModelPrice::MAX_COST_PER_TOKEN_USD),
                "USD per token",
            );
        }
    }
    check_range(
        problems,
        "governance.usage_flush_interval_ms",
        gov.usage_flush_interval_ms,
        (1, GovernanceConfig::MAX_USAGE_FLUSH_INTERVAL_MS),
        AN_HOUR,
    );
    check_range(
        problems,
        "governance.usage_metrics_top_n",
        u64::from(gov.usage_metrics_top_n),
        (0, u64::from(GovernanceConfig::MAX_USAGE_METRICS_TOP_N)),
        "",
    );
    let auth = &gov.auth_config;
    if auth.is_enabled
        && (auth.admin_username.as_deref().is_none_or(str::is_empty)
            || auth.admin_password.as_deref().is_none_or(str::is_empty))
    {
        problems.push(FieldError::new(
            "governance.auth_config",
            "is_enabled needs admin_username and admin_password",
        ));
    }
    for (i, origin) in auth.admin_allowed_origins.iter().enumerate() {
        if !is_origin(origin) {
            problems.push(FieldError::new(
                format!("governance.auth_config.admin_allowed_origins[{i}]"),
                "must be an origin as browsers send it: scheme://host[:port], no path or trailing slash",
            ));
        }
    }
}

/// `http://host` or `https://host:port` exactly as a browser's `Origin` header carries it.
/// An HTTP header name: a non-empty token (RFC 9110).
fn is_header_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && text.chars().all(|c| c.is_ascii_graphic())
}

/// `host:port` with a non-empty host and a non-zero port (IPv6 in brackets).
fn is_host_port(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// Parse `a.b.c.d/n` or `v6::/n`; the address alone means a single host.
pub fn parse_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("\"{text}\" is not a CIDR such as 10.0.0.0/8"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("\"{text}\": prefix length must be 0-{max}"))?,
    };
    Ok((ip, prefix))
}

#[cfg(test)]
mod tests {
    use crate::config::load::Format;
    use crate::config::{parse_config, ConfigError};

    fn problems(text: &str) -> Vec<String> {
        match parse_config(text, Format::Json, "t.json", &|_| None) {
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.iter().map(|p| p.to_string()).collect()
            }
            other => panic!("expected invalid config, got {other:?}"),
        }
    }

    fn has(found: &[String], prefix: &str) -> bool {
        found.iter().any(|p| p.starts_with(prefix))
    }

    #[test]
    fn assume_role_needs_a_role_arn_and_the_keys_own_credentials() {
        let found = problems(
            r#"{"providers": {"bedrock": {"keys": [
                {"models": ["*"], "bedrock_key_config": {"access_key": "AKID", "secret_key": "s",
                    "role_arn": "arn:aws:iam::1:role/x"}},
                {"models": ["*"], "value": "bedrock-api-key", "bedrock_key_config": {
                    "role_arn": "arn:aws:iam::123456789012:role/ok"}},
                {"models": ["*"], "bedrock_key_config": {"access_key": "AKID", "secret_key": "s",
                    "external_id": "x y", "session_name": "s"}},
                {"models": ["*"], "bedrock_key_config": {"access_key": "AKID", "secret_key": "s",
                    "role_arn": "arn:aws-cn:iam::123456789012:role/path/ok",
                    "external_id": "tenant-7", "session_name": "my-session"}}
            ]}}}"#,
        );
        let at = |index: usize, rest: &str| format!("providers.bedrock.keys[{index}].{rest}");
        assert!(
            has(
                &found,
                &at(0, "bedrock_key_config.role_arn: must be an IAM role's ARN")
            ),
            "{found:?}"
        );
        assert!(
            has(
                &found,
                &at(
                    1,
                    "bedrock_key_config.role_arn: needs the key's own IAM credentials"
                )
            ),
            "{found:?}"
        );
        for field in ["external_id", "session_name"] {
            let prefix = at(
                2,
                &format!("bedrock_key_config.{field}: is only used to assume"),
            );
            assert!(has(&found, &prefix), "{prefix} not in {found:?}");
        }
        assert!(!found.iter().any(|p| p.contains("keys[3]")), "{found:?}");
        assert!(super::is_role_arn(
            "arn:aws-us-gov:iam::123456789012:role/r"
        ));
        for bad in [
            "arn:aws:iam::123456789012:user/u",
            "arn:aws:sts::123456789012:role/r",
            "arn:aws:iam:us-east-1:123456789012:role/r",
            "arn:aws:iam::123456789012:role/",
            "arn:azure:iam::123456789012:role/r",
        ] {
            assert!(!super::is_role_arn(bad), "{bad}");
        }
    }

    #[test]
    fn listener_timeouts_and_connection_cap_are_bounded() {
        let found = problems(
            r#"{"server": {"header_read_timeout_seconds": 0, "body_read_timeout_seconds": 3601,
                           "idle_timeout_seconds": 0, "max_connections": 0}}"#,
        );
        for field in [
            "server.header_read_timeout_seconds",
            "server.body_read_timeout_seconds",
            "server.idle_timeout_seconds",
            "server.max_connections",
        ] {
            assert!(has(&found, field), "{field} not reported in {found:?}");
        }
    }

    #[test]
    fn every_invalid_provider_field_is_named() {
        let found = problems(
            r#"{"providers": {
                "openai": {"keys": [{"value": "a", "weight": 0}],
                           "network_config": {"default_request_timeout_in_seconds": 0,
                                              "retry_backoff_initial_ms": 900, "retry_backoff_max_ms": 100,
                                              "max_retries": 99,
                                              "extra_headers": {"bad header": "x"}},
                           "circuit_breaker": {"failure_threshold": 0},
                           "concurrency_and_buffer_size": {"concurrency": 0}},
                "my-llm": {"keys": []}
            }}"#,
        );
        for path in [
            "providers.openai.keys[0].weight:",
            "providers.openai.network_config.default_request_timeout_in_seconds:",
            "providers.openai.network_config.retry_backoff_initial_ms:",
            "providers.openai.network_config.max_retries:",
            "providers.openai.network_config.extra_headers.bad header:",
            "providers.openai.circuit_breaker.failure_threshold:",
            "providers.openai.concurrency_and_buffer_size.concurrency:",
            "providers.my-llm.network_config.base_url: required",
        ] {
            assert!(has(&found, path), "missing {path} in {found:#?}");
        }
        assert_eq!(found.len(), 8, "{found:#?}");
    }

    #[test]
    fn custom_provider_with_base_url_is_valid() {
        let loaded = parse_config(
            r#"{"providers": {"local": {"keys": [], "network_config": {"base_url": "http://127.0.0.1:9000/"},
                "custom_provider_config": {"base_provider_type": "anthropic"}}}}"#,
            Format::Json,
            "t.json",
            &|_| None,
        )
        .expect("valid");
        let local = &loaded.config.providers["local"];
        assert_eq!(
            local.base_url("local").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(local.kind("local"), crate::config::ProviderKind::Anthropic);
    }

    #[test]
    fn cluster_mode_requires_postgres_and_seeds() {
        let found = problems(r#"{"cluster_config": {"enabled": true}}"#);
        assert!(
            has(&found, "config_store.type: cluster mode needs"),
            "{found:#?}"
        );
        assert!(
            has(&found, "cluster_config: cluster mode needs seeds"),
            "{found:#?}"
        );
    }

    #[test]
    fn postgres_store_requires_connection_fields() {
        let found =
            problems(r#"{"config_store": {"type": "postgres", "config": {"ssl_mode": "maybe"}}}"#);
        for path in [
            "config_store.config.host:",
            "config_store.config.user:",
            "config_store.config.db_name:",
            "config_store.config.ssl_mode:",
        ] {
            assert!(has(&found, path), "missing {path} in {found:#?}");
        }
    }

    #[test]
    fn discovery_methods_require_their_fields() {
        let base = r#""config_store": {"type": "postgres", "config": {"host": "db", "user": "u", "db_name": "d"}}"#;
        let cases = [
            ("dns", "cluster_config.discovery.dns_names:"),
            ("etcd", "cluster_config.discovery.etcd_endpoints:"),
            ("kubernetes", "cluster_config.discovery.k8s_label_selector:"),
            ("udp", "cluster_config.discovery.udp_broadcast_port:"),
        ];
        for (kind, path) in cases {
            let found = problems(&format!(
                r#"{{{base}, "cluster_config": {{"enabled": true, "discovery": {{"enabled": true, "type": "{kind}"}}}}}}"#
            ));
            assert!(has(&found, path), "{kind}: missing {path} in {found:#?}");
        }
        let consul = |extra: &str| {
            problems(&format!(
                r#"{{{base}, "cluster_config": {{"enabled": true, "discovery": {{"enabled": true, "type": "consul"{extra}}}}}}}"#
            ))
        };
        let path = "cluster_config.discovery.consul_address:";
        assert!(has(&consul(r##", "consul_address": "consul""##), path));
        assert!(has(&consul(r##", "consul_address": "consul:0""##), path));
        // Otherwise valid configs with one unrelated problem, so `problems` has something.
        let other = r#", "refresh_interval_seconds": 0"#;
        assert!(!has(&consul(other), path), "the local agent is the default");
        assert!(!has(
            &consul(&format!(
                r#", "consul_address": "http://consul:8500"{other}"#
            )),
            path
        ));
        let found = problems(&format!(
            r#"{{{base}, "cluster_config": {{"enabled": true, "discovery": {{"enabled": true}}}}}}"#
        ));
        assert!(
            has(&found, "cluster_config.discovery.type: required"),
            "{found:#?}"
        );
    }

    #[test]
    fn udp_discovery_must_be_fenced_by_an_address_space() {
        let base = r#""config_store": {"type": "postgres", "config": {"host": "db", "user": "u", "db_name": "d"}}"#;
        let unfenced = problems(&format!(
            r#"{{{base}, "cluster_config": {{"enabled": true, "discovery": {{"enabled": true, "type": "udp", "udp_broadcast_port": 10199}}}}}}"#
        ));
        let problem = unfenced
            .iter()
            .find(|p| p.starts_with("cluster_config.discovery.allowed_address_space:"))
            .unwrap_or_else(|| panic!("{unfenced:#?}"));
        assert!(problem.contains("must be fenced"), "{problem}");
        let fenced = parse_config(
            &format!(
                r#"{{{base}, "cluster_config": {{"enabled": true, "discovery": {{"enabled": true, "type": "udp", "udp_broadcast_port": 10199, "allowed_address_space": ["10.0.0.0/16"]}}}}}}"#
            ),
            Format::Json,
            "t.json",
            &|_| None,
        );
        assert!(fenced.is_ok(), "{fenced:?}");
    }

    #[test]
    fn peers_and_cidrs_are_checked() {
        let found = problems(
            r#"{"cluster_config": {"peers": ["10.0.0.1", "node:0"],
                "discovery": {"allowed_address_space": ["10.0.0.0/33", "nope"]}}}"#,
        );
        for path in [
            "cluster_config.peers[0]:",
            "cluster_config.peers[1]:",
            "cluster_config.discovery.allowed_address_space[0]:",
            "cluster_config.discovery.allowed_address_space[1]:",
        ] {
            assert!(has(&found, path), "missing {path} in {found:#?}");
        }
    }

    #[test]
    fn grpc_tls_paths_are_required() {
        let found = problems(
            r#"{"cluster_config": {"grpc": {"tls": {"cert_file": "/tls/node.crt", "key_file": " ", "ca_file": ""}}}}"#,
        );
        for path in [
            "cluster_config.grpc.tls.key_file:",
            "cluster_config.grpc.tls.ca_file:",
        ] {
            assert!(has(&found, path), "missing {path} in {found:#?}");
        }
        assert!(!has(&found, "cluster_config.grpc.tls.cert_file"));
    }

    #[test]
    fn cors_origins_and_headers_are_checked() {
        let found = problems(
            r#"{"client": {"allowed_origins": ["*", "https://app.example.com", "https://app.example.com/", "app"],
                           "allowed_headers": ["x-trace-id", "bad header"]}}"#,
        );
        for path in [
            "client.allowed_origins[2]: must be",
            "client.allowed_origins[3]: must be",
            "client.allowed_headers[1]: \"bad header\" is not a header name",
        ] {
            assert!(has(&found, path), "missing {path} in {found:#?}");
        }
        for ok in [
            "client.allowed_origins[0]",
            "client.allowed_origins[1]",
            "client.allowed_headers[0]",
        ] {
            assert!(!has(&found, ok), "{ok} is valid: {found:#?}");
        }
    }

    #[test]
    fn path_overrides_and_providers_not_spoken_are_checked() {
        // Validated as the admin API does, without the Bifrost fold (which leaves out runway and
        // the speech override of a Bifrost file with a warning).
        let config: crate::config::GatewayConfig = serde_json::from_str(
            r#"{"providers": {
                "replicate": {"network_config": {"base_url": "https://api.replicate.com"}},
                "runway": {},
                "local": {"network_config": {"base_url": "http://llm:8000"},
                  "custom_provider_config": {"base_provider_type": "openai", "request_path_overrides": {
                    "chat_completion": "/chat", "chat_completion_stream": "/stream",
                    "embedding": "embed", "speech": "/speech"}}}}}"#,
        )
        .expect("typed config");
        let found: Vec<String> = config.validate().iter().map(|p| p.to_string()).collect();
        for path in [
            "providers.replicate: Bifrost speaks Replicate's predictions API",
            "providers.runway: \"runway\" serves video generation",
            "providers.local.custom_provider_config.request_path_overrides.chat_completion_stream: must equal chat_completion",
            "providers.local.custom_provider_config.request_path_overrides.embedding: must be a path",
            "providers.local.custom_provider_config.request_path_overrides.speech: not a request type",
        ] {
            assert!(has(&found, path), "missing {path} in {found:#?}");
        }
        assert!(
            !has(&found, "providers.runway.network_config.base_url"),
            "a refused provider is not also asked for a URL: {found:#?}"
        );
    }

    #[test]
    fn network_settings_and_proxies_are_checked() {
        let found = problems(
            r#"{"providers": {"openai": {
                "network_config": {"stream_idle_timeout_in_seconds": 0, "keep_alive_timeout_in_seconds": 4000,
                                   "max_conns_per_host": 0, "ca_cert_pem": "nope"},
                "proxy_config": {"type": "socks5", "url": "http://proxy:3128"}},
              "anthropic": {"proxy_config": {"type": "http"}}}}"#,
        );
        for path in [
            "providers.openai.network_config.stream_idle_timeout_in_seconds:",
            "providers.openai.network_config.keep_alive_timeout_in_seconds:",
            "providers.openai.network_config.max_conns_per_host:",
            "providers.openai.network_config.ca_cert_pem: must hold a PEM certificate",
            "providers.openai.proxy_config.url: must start with socks5://",
            "providers.anthropic.proxy_config.url: required with type http",
        ] {
            assert!(has(&found, path), "missing {path} in {found:#?}");
        }
        let config = parse_config(
            r#"{"providers": {"openai": {"network_config": {"retry_backoff_initial": 250, "retry_backoff_max": 9000}}}}"#,
            Format::Json,
            "t.json",
            &|_| None,
        )
        .expect("valid");
        let network = &config.config.providers["openai"].network_config;
        assert_eq!(
            (
                network.retry_backoff_initial_ms,
                network.retry_backoff_max_ms
            ),
            (250, 9000),
            "Bifrost's current names are read"
        );
    }

    #[test]
    fn governance_references_and_durations_are_checked() {
        let found = problems(
            r#"{"providers": {"openai": {}},
                "governance": {
                  "budgets": [{"id": "b1", "max_limit": 10, "reset_duration": "1fortnight"}],
                  "rate_limits": [{"id": "r1", "request_max_limit": 10},
                                  {"id": "r2", "token_max_limit": 10, "token_reset_duration": "1m", "cluster_mode": "strict"}],
                  "teams": [{"id": "t1", "customer_id": "nobody", "rate_limit_id": "r9"}],
                  "customers": [{"id": "c1", "rate_limit_id": "r9"}],
                  "virtual_keys": [
                    {"id": "v1", "value": "sk-bf-1", "team_id": "t1", "customer_id": "c9", "budget_id": "b2",
                     "provider_configs": [{"provider": "azure", "rate_limit_id": "r1"}]},
                    {"id": "v1", "value": "sk-bf-1", "expires_at": "next tuesday"},
                    {"id": "v3", "value": "sk-bf-3", "expires_at": "2031-01-31T00:00:00+01:00"}
                  ]}}"#,
        );
        assert!(
            !has(&found, "governance.virtual_keys[2].expires_at"),
            "an RFC 3339 time with an offset is accepted: {found:#?}"
        );
        for path in [
            "governance.virtual_keys[1].expires_at: \"next tuesday\" is not an RFC 3339 time",
            "governance.budgets[0].reset_duration:",
            "governance.rate_limits[0].request_reset_duration: required",
            "governance.rate_limits[1].cluster_mode: strict applies to request limits",
            "governance.teams[0].customer_id: no customer",
            "governance.teams[0].rate_limit_id: no rate_limit",
            "governance.customers[0].rate_limit_id: no rate_limit",
            "governance.virtual_keys[0].customer_id: a virtual key belongs to a team or to a customer",
            "governance.virtual_keys[0].budget_id: no budget",
            "governance.virtual_keys[0].provider_configs[0].provider: no provider",
            "governance.virtual_keys[1].id: duplicate",
            "governance.virtual_keys[1].value: another virtual key",
        ] {
            assert!(has(&found, path), "missing {path} in {found:#?}");
        }
    }

    const U64_MAX: u64 = u64::MAX;
    const U32_MAX: u32 = u32::MAX;

    /// The problem reported for `path`, if any.
    fn problem_at<'a>(found: &'a [String], path: &str) -> Option<&'a String> {
        let prefix = format!("{path}: ");
        found.iter().find(|p| p.starts_with(&prefix))
    }

    fn assert_named(found: &[String], paths: &[&str]) {
        for path in paths {
            let problem = problem_at(found, path)
                .unwrap_or_else(|| panic!("{path} not reported in {found:#?}"));
            assert!(
                problem.contains("must be") || problem.contains("longer than"),
                "{problem}"
            );
        }
    }

    #[test]
    fn provider_timeouts_backoffs_and_counts_past_their_bounds_are_refused() {
        let found = problems(&format!(
            r#"{{"providers": {{"openai": {{
                "keys": [{{"value": "a", "weight": 1e308}}],
                "network_config": {{"default_request_timeout_in_seconds": {U64_MAX},
                                   "max_retries": {U32_MAX},
                                   "retry_backoff_initial_ms": {U64_MAX},
                                   "retry_backoff_max_ms": {U64_MAX}}},
                "concurrency_and_buffer_size": {{"concurrency": {U32_MAX}, "buffer_size": {U32_MAX}}},
                "circuit_breaker": {{"timeout_seconds": {U64_MAX}, "failure_threshold": {U32_MAX},
                                    "success_threshold": {U32_MAX}, "half_open_requests": {U32_MAX}}}}}}}}}"#
        ));
        assert_named(
            &found,
            &[
                "providers.openai.keys[0].weight",
                "providers.openai.network_config.default_request_timeout_in_seconds",
                "providers.openai.network_config.max_retries",
                "providers.openai.network_config.retry_backoff_initial_ms",
                "providers.openai.network_config.retry_backoff_max_ms",
                "providers.openai.concurrency_and_buffer_size.concurrency",
                "providers.openai.concurrency_and_buffer_size.buffer_size",
                "providers.openai.circuit_breaker.timeout_seconds",
                "providers.openai.circuit_breaker.failure_threshold",
                "providers.openai.circuit_breaker.success_threshold",
                "providers.openai.circuit_breaker.half_open_requests",
            ],
        );
        let timeout = problem_at(
            &found,
            "providers.openai.network_config.default_request_timeout_in_seconds",
        );
        assert_eq!(
            timeout.map(String::as_str),
            Some("providers.openai.network_config.default_request_timeout_in_seconds: must be between 1 and 86400 (a day); got 18446744073709551615")
        );
    }

    #[test]
    fn shutdown_delay_and_drain_timeout_past_an_hour_are_refused() {
        let found = problems(&format!(
            r#"{{"server": {{"shutdown_delay_seconds": {U64_MAX}, "drain_timeout_seconds": {U64_MAX}}}}}"#
        ));
        assert_named(
            &found,
            &[
                "server.shutdown_delay_seconds",
                "server.drain_timeout_seconds",
            ],
        );
        assert_eq!(found.len(), 2, "{found:#?}");
    }

    #[test]
    fn a_null_or_zero_provider_config_weight_is_accepted_as_not_weighted() {
        for weight in ["null", "0"] {
            let text = format!(
                r#"{{"providers": {{"openai": {{}}}},
                    "governance": {{"virtual_keys": [{{"id": "v1", "value": "sk-bf-1",
                      "provider_configs": [{{"provider": "openai", "weight": {weight}}}]}}]}}}}"#
            );
            let loaded = parse_config(&text, Format::Json, "t.json", &|_| None)
                .unwrap_or_else(|e| panic!("weight {weight}: {e}"));
            let pc = &loaded.config.governance.virtual_keys[0].provider_configs[0];
            assert_eq!(pc.weight, 0.0, "weight {weight}");
        }
    }

    #[test]
    fn governance_amounts_limits_and_periods_past_their_bounds_are_refused() {
        let found = problems(&format!(
            r#"{{"providers": {{"openai": {{}}}},
                "governance": {{
                  "budgets": [{{"id": "b1", "max_limit": 1e308, "reset_duration": "99999999Y"}},
                              {{"id": "b2", "max_limit": -1, "reset_duration": "1M"}}],
                  "rate_limits": [{{"id": "r1", "request_max_limit": {U64_MAX}, "request_reset_duration": "11Y",
                                   "token_max_limit": {U64_MAX}, "token_reset_duration": "4294967295s"}}],
                  "pricing": [{{"model": "m", "input_cost_per_token": 1e308, "output_cost_per_token": -0.5}}],
                  "virtual_keys": [{{"id": "v1", "value": "sk-bf-1", "max_in_flight": {U32_MAX},
                                    "provider_configs": [{{"provider": "openai", "weight": 1e308}}]}}],
                  "usage_flush_interval_ms": {U64_MAX},
                  "usage_metrics_top_n": {U32_MAX}}}}}"#
        ));
        assert_named(
            &found,
            &[
                "governance.budgets[0].max_limit",
                "governance.budgets[0].reset_duration",
                "governance.budgets[1].max_limit",
                "governance.rate_limits[0].request_max_limit",
                "governance.rate_limits[0].request_reset_duration",
                "governance.rate_limits[0].token_max_limit",
                "governance.rate_limits[0].token_reset_duration",
                "governance.pricing[0].input_cost_per_token",
                "governance.pricing[0].output_cost_per_token",
                "governance.virtual_keys[0].max_in_flight",
                "governance.virtual_keys[0].provider_configs[0].weight",
                "governance.usage_flush_interval_ms",
                "governance.usage_metrics_top_n",
            ],
        );
        let period = problem_at(&found, "governance.budgets[0].reset_duration");
        assert!(
            period.is_some_and(|p| p.contains("at most 10Y")),
            "{period:?}"
        );
    }

    #[test]
    fn client_and_cluster_numbers_past_their_bounds_are_refused() {
        let found = problems(&format!(
            r#"{{"client": {{"initial_pool_size": {U32_MAX}, "max_request_body_size_mb": {U32_MAX}}},
                "cluster_config": {{"gossip": {{"config": {{"timeout_seconds": {U64_MAX},
                                                          "success_threshold": {U32_MAX},
                                                          "failure_threshold": {U32_MAX}}}}},
                                   "discovery": {{"refresh_interval_seconds": {U64_MAX}, "bind_port": 0}}}}}}"#
        ));
        assert_named(
            &found,
            &[
                "client.initial_pool_size",
                "client.max_request_body_size_mb",
                "cluster_config.gossip.config.timeout_seconds",
                "cluster_config.gossip.config.success_threshold",
                "cluster_config.gossip.config.failure_threshold",
                "cluster_config.discovery.refresh_interval_seconds",
                "cluster_config.discovery.bind_port",
            ],
        );
    }

    #[test]
    fn element_caps_are_at_least_one_and_bounded() {
        let found = problems(
            r#"{"client": {"max_messages_per_request": 0, "max_content_blocks_per_request": 0,
                           "max_tools_per_request": 2000000, "max_stop_sequences_per_request": 0,
                           "max_json_values_per_request": 0}}"#,
        );
        for field in [
            "client.max_messages_per_request",
            "client.max_content_blocks_per_request",
            "client.max_tools_per_request",
            "client.max_stop_sequences_per_request",
            "client.max_json_values_per_request",
        ] {
            assert!(has(&found, field), "{field} not reported in {found:?}");
        }
    }

    #[test]
    fn every_number_at_its_bound_is_accepted() {
        let loaded = parse_config(
            r#"{"client": {"initial_pool_size": 100000, "max_request_body_size_mb": 4096},
                "server": {"shutdown_delay_seconds": 3600, "drain_timeout_seconds": 3600},
                "providers": {"openai": {
                  "keys": [{"value": "a", "weight": 1000000}],
                  "network_config": {"default_request_timeout_in_seconds": 86400, "max_retries": 10,
                                     "retry_backoff_initial_ms": 3600000, "retry_backoff_max_ms": 3600000},
                  "concurrency_and_buffer_size": {"concurrency": 1000000, "buffer_size": 1000000},
                  "circuit_breaker": {"timeout_seconds": 86400, "failure_threshold": 10000,
                                      "success_threshold": 10000, "half_open_requests": 10000}}},
                "cluster_config": {"gossip": {"config": {"timeout_seconds": 3600, "success_threshold": 1000,
                                                         "failure_threshold": 1000}},
                                   "discovery": {"refresh_interval_seconds": 3600}},
                "governance": {
                  "budgets": [{"id": "b1", "max_limit": 1e12, "reset_duration": "10Y"},
                              {"id": "b2", "max_limit": 0, "reset_duration": "3653d"}],
                  "rate_limits": [{"id": "r1", "request_max_limit": 1000000000000000, "request_reset_duration": "120M",
                                   "token_max_limit": 0, "token_reset_duration": "521w"}],
                  "pricing": [{"model": "m", "input_cost_per_token": 1000, "output_cost_per_token": 0}],
                  "virtual_keys": [{"id": "v1", "value": "sk-bf-1", "max_in_flight": 1000000,
                                    "provider_configs": [{"provider": "openai", "weight": 1000000}]}],
                  "usage_flush_interval_ms": 3600000, "usage_metrics_top_n": 10000}}"#,
            Format::Json,
            "t.json",
            &|_| None,
        );
        assert!(loaded.is_ok(), "{loaded:?}");
    }

    #[test]
    fn a_valid_cluster_config_passes() {
        parse_config(
            r#"{"config_store": {"type": "postgres", "config": {"host": "db", "user": "u", "db_name": "d"}},
                "cluster_config": {"enabled": true, "peers": ["10.0.0.2:10101"],
                                   "discovery": {"allowed_address_space": ["10.0.0.0/8"]}}}"#,
            Format::Json,
            "t.json",
            &|_| None,
        )
        .expect("valid cluster config");
    }
}
