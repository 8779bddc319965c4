//! Bifrost config files keep their meaning here: the settings below are Bifrost's, written as
//! Bifrost's own example files write them.

use bifrost_e2e::harness::{any_provider, config_for, Gateway, MockProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn chat(gateway: &Gateway, vk: Option<&str>) -> StatusCode {
    chat_model(gateway, "openai/gpt-4o-mini", vk).await.0
}

/// The `withvirtualkeys` example's auth settings: enforce_governance_header, the deprecated
/// disable_auth_on_inference, and the governance plugin with is_vk_mandatory.
fn with_virtual_keys(mock: &MockProvider) -> Value {
    let mut config = config_for(mock);
    config["client"]["enforce_governance_header"] = json!(true);
    config["governance"] = json!({
        "auth_config": {"is_enabled": false, "disable_auth_on_inference": true},
        "virtual_keys": [{"id": "vk-1", "value": "sk-bf-compat-key", "provider_configs": any_provider()}]
    });
    config["plugins"] = json!([
        {"enabled": true, "name": "governance", "config": {"is_vk_mandatory": true}}
    ]);
    config
}

#[tokio::test]
async fn the_withvirtualkeys_auth_pattern_refuses_a_request_without_a_key() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&with_virtual_keys(&mock)).await;
    assert_eq!(chat(&gateway, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        chat(&gateway, Some("sk-bf-compat-key")).await,
        StatusCode::OK
    );
    assert_eq!(
        mock.requests().await,
        1,
        "only the keyed request went upstream"
    );
    gateway
        .output
        .wait_for(
            "disable_auth_on_inference is deprecated and ignored",
            std::time::Duration::from_secs(5),
        )
        .await
        .expect("the ignored setting is noted at start");
}

#[tokio::test]
async fn is_vk_mandatory_alone_requires_a_key() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["governance"] = json!({"virtual_keys": [{"id": "vk-1", "value": "sk-bf-compat-key", "provider_configs": any_provider()}]});
    config["plugins"] = json!([{"name": "governance", "config": {"is_vk_mandatory": true}}]);
    let gateway = Gateway::start(&config).await;
    assert_eq!(chat(&gateway, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        chat(&gateway, Some("sk-bf-compat-key")).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn top_level_auth_config_protects_the_admin_api() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["auth_config"] =
        json!({"is_enabled": true, "admin_username": "admin", "admin_password": "s3cret"});
    let gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let anonymous = client
        .get(gateway.url("/api/providers"))
        .send()
        .await
        .expect("answered");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let admin = client
        .get(gateway.url("/api/providers"))
        .basic_auth("admin", Some("s3cret"))
        .send()
        .await
        .expect("answered");
    assert_eq!(admin.status(), StatusCode::OK);
}

/// The current Bifrost schema ties a budget to its owner from the budget's side only.
#[tokio::test]
async fn budgets_tied_to_their_owner_from_the_budget_side_are_enforced() {
    let mock = MockProvider::start(&[]).await;
    for owner in [
        json!({"virtual_key_id": "vk-1"}),
        json!({"provider_config_id": 7}),
    ] {
        let mut budget = json!({"id": "tiny", "max_limit": 0.0000001, "reset_duration": "1d"});
        if let (Value::Object(budget), Value::Object(owner)) = (&mut budget, &owner) {
            budget.extend(owner.clone());
        }
        let mut config = config_for(&mock);
        config["governance"] = json!({
            "virtual_keys": [{"id": "vk-1", "value": "sk-bf-compat-key", "provider_configs": [
                {"id": 7, "provider": "openai", "allowed_models": ["gpt-4o-mini"], "key_ids": ["*"]}
            ]}],
            "budgets": [budget]
        });
        let gateway = Gateway::start(&config).await;
        let before = mock.requests().await;
        let statuses = [
            chat(&gateway, Some("sk-bf-compat-key")).await,
            chat(&gateway, Some("sk-bf-compat-key")).await,
            chat(&gateway, Some("sk-bf-compat-key")).await,
        ];
        assert_eq!(
            statuses,
            [
                StatusCode::OK,
                StatusCode::PAYMENT_REQUIRED,
                StatusCode::PAYMENT_REQUIRED
            ],
            "budget owned by {owner}"
        );
        assert_eq!(mock.requests().await - before, 1, "budget owned by {owner}");
        gateway
            .output
            .wait_for("is read as", std::time::Duration::from_secs(5))
            .await
            .expect("the owner-side link is noted at start");
    }
}

/// Bifrost's `weight: null` opts a provider config out of weighted routing: a bare model name
/// never goes there, a request naming the provider still does.
#[tokio::test]
async fn a_null_weight_provider_is_used_only_when_named() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["governance"] = json!({"virtual_keys": [{"id": "vk-1", "value": "sk-bf-compat-key",
        "provider_configs": [{"provider": "openai", "weight": null, "allowed_models": ["*"], "key_ids": ["*"]},
                             {"provider": "anthropic", "weight": 1, "allowed_models": ["*"], "key_ids": ["*"]}]}]});
    let gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    for (model, provider) in [
        ("gpt-4o-mini", "anthropic"),
        ("gpt-4o-mini", "anthropic"),
        ("gpt-4o-mini", "anthropic"),
        ("gpt-4o-mini", "anthropic"),
        ("openai/gpt-4o-mini", "openai"),
    ] {
        let response = client
            .post(gateway.url("/v1/chat/completions"))
            .header("x-bf-vk", "sk-bf-compat-key")
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::OK, "{model}");
        assert_eq!(
            response.headers()["x-bifrost-provider"],
            provider,
            "{model}"
        );
    }
}

/// `(status, error message)` of a chat completion for `model`, with virtual key `vk`.
async fn chat_model(gateway: &Gateway, model: &str, vk: Option<&str>) -> (StatusCode, String) {
    let mut request = reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
    if let Some(vk) = vk {
        request = request.header("x-bf-vk", vk);
    }
    let response = request.send().await.expect("answered");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, message)
}

/// A Bifrost file with empty and missing allow-lists: an OpenAI key without `models`, an
/// Anthropic key serving everything, a virtual key without `provider_configs` and one whose
/// OpenAI config names neither `allowed_models` nor `key_ids`.
fn with_empty_allow_lists(mock: &MockProvider, version: Option<u64>) -> Value {
    let mut config = config_for(mock);
    config["providers"]["openai"]["keys"] = json!([{"name": "bare", "value": "sk-openai"}]);
    config["governance"] = json!({"virtual_keys": [
        {"id": "no-configs", "value": "sk-bf-no-configs"},
        {"id": "bare-config", "value": "sk-bf-bare-config",
         "provider_configs": [{"provider": "anthropic"}]}
    ]});
    if let Some(version) = version {
        config["version"] = json!(version);
    }
    config
}

/// Bifrost 1.5's default (`version: 2`, also when `version` is missing): empty or missing
/// allow-lists allow nothing, each refusal says which list, and the startup log names them.
#[tokio::test]
async fn under_version_2_empty_allow_lists_allow_nothing() {
    let mock = MockProvider::start(&[]).await;
    for version in [None, Some(2)] {
        let gateway = Gateway::start(&with_empty_allow_lists(&mock, version)).await;
        let (status, message) = chat_model(&gateway, "openai/gpt-4o-mini", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{version:?}: {message}");
        assert!(message.contains("no key lists it"), "{message}");
        let (status, _) = chat_model(&gateway, "anthropic/claude-3-5-haiku", None).await;
        assert_eq!(status, StatusCode::OK, "[\"*\"] still serves everything");
        let (status, message) = chat_model(
            &gateway,
            "anthropic/claude-3-5-haiku",
            Some("sk-bf-no-configs"),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{message}");
        assert!(message.contains("provider_configs is empty"), "{message}");
        let (status, message) = chat_model(
            &gateway,
            "anthropic/claude-3-5-haiku",
            Some("sk-bf-bare-config"),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{message}");
        assert!(message.contains("allowed_models is empty"), "{message}");
        gateway
            .output
            .wait_for(
                "providers.openai.keys[0].models (the key serves no model)",
                std::time::Duration::from_secs(5),
            )
            .await
            .expect("the startup warning names the empty list");
    }
    assert_eq!(
        mock.requests().await,
        2,
        "only the anthropic requests without a key went upstream"
    );
}

/// `version: 1` keeps Bifrost 1.4's meaning: the same file serves every request.
#[tokio::test]
async fn under_version_1_empty_allow_lists_allow_everything() {
    let mock = MockProvider::start(&[]).await;
    let gateway = Gateway::start(&with_empty_allow_lists(&mock, Some(1))).await;
    for (model, vk) in [
        ("openai/gpt-4o-mini", None),
        ("openai/gpt-4o-mini", Some("sk-bf-no-configs")),
        ("anthropic/claude-3-5-haiku", Some("sk-bf-no-configs")),
        ("anthropic/claude-3-5-haiku", Some("sk-bf-bare-config")),
    ] {
        let (status, message) = chat_model(&gateway, model, vk).await;
        assert_eq!(status, StatusCode::OK, "{model} with {vk:?}: {message}");
    }
    assert_eq!(mock.requests().await, 4);
}

/// A `version` Bifrost does not define is refused with the field named.
#[tokio::test]
async fn an_unknown_version_is_refused() {
    let (status, output) =
        bifrost_e2e::harness::gateway_rejects(r#"{"version": 3, "providers": {}}"#).await;
    assert!(!status.success());
    assert!(output.contains("version: must be 1"), "{output}");
}

/// Bifrost's `expires_at`: a key past it is refused with 403 and says when it expired; a key
/// expiring later works.
#[tokio::test]
async fn an_expired_virtual_key_is_refused() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["governance"] = json!({"virtual_keys": [
        {"id": "old", "value": "sk-bf-expired", "provider_configs": any_provider(),
         "expires_at": "2020-01-31T00:00:00Z"},
        {"id": "new", "value": "sk-bf-not-yet", "provider_configs": any_provider(),
         "expires_at": "2999-01-31T00:00:00+01:00"}
    ]});
    let gateway = Gateway::start(&config).await;
    let (status, message) = chat_model(&gateway, "openai/gpt-4o-mini", Some("sk-bf-expired")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{message}");
    assert!(
        message.contains("\"old\" expired at 2020-01-31T00:00:00Z"),
        "{message}"
    );
    let (status, message) = chat_model(&gateway, "openai/gpt-4o-mini", Some("sk-bf-not-yet")).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(
        mock.requests().await,
        1,
        "the expired key reached nothing upstream"
    );
}

/// Bifrost's `provider_configs[].blacklisted_models` refuses a model that `allowed_models`
/// allows, says so, and hides it from `/v1/models`.
#[tokio::test]
async fn a_blacklisted_model_is_refused_though_allowed() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["providers"]["openai"]["keys"][0]["models"] = json!(["gpt-4o", "gpt-4o-mini"]);
    config["governance"] = json!({"virtual_keys": [
        {"id": "vk-1", "value": "sk-bf-compat-key", "provider_configs": [
            {"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"],
             "blacklisted_models": ["gpt-4o"]}
        ]}
    ]});
    let gateway = Gateway::start(&config).await;
    let (status, message) = chat_model(&gateway, "openai/gpt-4o", Some("sk-bf-compat-key")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{message}");
    assert!(message.contains("blacklisted_models"), "{message}");
    let (status, message) =
        chat_model(&gateway, "openai/gpt-4o-mini", Some("sk-bf-compat-key")).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    let listed: Value = reqwest::Client::new()
        .get(gateway.url("/v1/models"))
        .header("x-bf-vk", "sk-bf-compat-key")
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("a model list");
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&"openai/gpt-4o-mini"), "{ids:?}");
    assert!(!ids.contains(&"openai/gpt-4o"), "{ids:?}");
    assert_eq!(mock.requests().await, 1);
}

/// Bifrost's `client.allowed_origins` / `allowed_headers`: a browser page from an allowed
/// origin passes the preflight and may read the answer; other origins are refused at the
/// preflight with the fix named; without the setting nothing carries CORS headers.
#[tokio::test]
async fn browser_origins_in_allowed_origins_get_cors_answers() {
    const APP: &str = "https://app.example.com";
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["client"]["allowed_origins"] = json!([APP]);
    config["client"]["allowed_headers"] = json!(["x-trace-id"]);
    let gateway = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(
                reqwest::Method::OPTIONS,
                gateway.url("/v1/chat/completions"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-trace-id")
            .send()
    };
    let allowed = preflight(APP).await.expect("answered");
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], APP);
    let allow_headers = headers["access-control-allow-headers"]
        .to_str()
        .expect("text");
    for name in ["authorization", "content-type", "x-bf-vk", "x-trace-id"] {
        assert!(allow_headers.contains(name), "{name} in {allow_headers}");
    }
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .expect("text")
        .contains("POST"));

    let refused = preflight("https://evil.example").await.expect("answered");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let body: Value = refused.json().await.expect("an OpenAI error body");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("client.allowed_origins"), "{message}");

    let served = client
        .post(gateway.url("/v1/chat/completions"))
        .header("origin", APP)
        .json(&json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("answered");
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["access-control-allow-origin"], APP);
    let health = client
        .get(gateway.url("/health"))
        .header("origin", APP)
        .send()
        .await
        .expect("answered");
    assert!(
        health
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "only the API is covered"
    );

    let plain = Gateway::start(&config_for(&mock)).await;
    let no_cors = client
        .request(reqwest::Method::OPTIONS, plain.url("/v1/chat/completions"))
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("answered");
    assert!(no_cors
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_ne!(no_cors.status(), StatusCode::NO_CONTENT);
}

/// `teams[].rate_limit_id` and `customers[].rate_limit_id`: one counter for every key under the
/// team or customer, so two keys together get the limit, not each.
#[tokio::test]
async fn team_and_customer_rate_limits_are_shared_by_their_keys() {
    let mock = MockProvider::start(&[]).await;
    for owner in ["team", "customer"] {
        let mut config = config_for(&mock);
        let mut team = json!({"id": "t1", "name": "Team", "customer_id": "c1"});
        let mut customer = json!({"id": "c1", "name": "Customer"});
        let holder = if owner == "team" {
            &mut team
        } else {
            &mut customer
        };
        holder["rate_limit_id"] = json!("three-a-minute");
        config["governance"] = json!({
            "rate_limits": [{"id": "three-a-minute", "request_max_limit": 3, "request_reset_duration": "1m"}],
            "customers": [customer],
            "teams": [team],
            "virtual_keys": [
                {"id": "vk-a", "value": "sk-bf-a", "team_id": "t1", "provider_configs": any_provider()},
                {"id": "vk-b", "value": "sk-bf-b", "team_id": "t1", "provider_configs": any_provider()},
                {"id": "vk-other", "value": "sk-bf-other", "provider_configs": any_provider()}
            ]
        });
        let gateway = Gateway::start(&config).await;
        let mut statuses = Vec::new();
        for vk in ["sk-bf-a", "sk-bf-b", "sk-bf-a", "sk-bf-b"] {
            statuses.push(chat(&gateway, Some(vk)).await);
        }
        assert_eq!(
            statuses,
            [
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::TOO_MANY_REQUESTS
            ],
            "{owner} limit"
        );
        let (status, message) = chat_model(&gateway, "openai/gpt-4o-mini", Some("sk-bf-a")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{owner}: {message}");
        let expected = if owner == "team" {
            "team \"t1\""
        } else {
            "customer \"c1\""
        };
        assert!(message.contains(expected), "{owner}: {message}");
        assert_eq!(
            chat(&gateway, Some("sk-bf-other")).await,
            StatusCode::OK,
            "a key outside the {owner} is not limited by it"
        );
    }
}

/// `custom_provider_config.request_path_overrides` (a path after the base URL, or a whole URL)
/// and `is_key_less` (the keys are not sent), as Bifrost's custom providers write them.
#[tokio::test]
async fn request_path_overrides_and_key_less_providers_reach_their_upstream() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    // Without the overrides these would go to {base}/v1/v1/... and to port 9: both fail.
    config["providers"]["versioned"] = json!({
        "keys": [{"name": "k", "value": "sk-versioned", "models": ["*"]}],
        "network_config": {"base_url": format!("{}/v1", mock.base)},
        "custom_provider_config": {"base_provider_type": "openai", "request_path_overrides": {
            "chat_completion": "/chat/completions", "chat_completion_stream": "/chat/completions",
            "responses": "/responses"
        }}
    });
    config["providers"]["elsewhere"] = json!({
        "keys": [{"name": "k", "value": "sk-not-sent", "models": ["*"]}],
        "network_config": {"base_url": "http://127.0.0.1:9"},
        "custom_provider_config": {"base_provider_type": "openai", "is_key_less": true,
            "request_path_overrides": {"chat_completion": format!("{}/v1/chat/completions", mock.base)}}
    });
    let gateway = Gateway::start(&config).await;
    for model in ["versioned/gpt-4o-mini", "elsewhere/gpt-4o-mini"] {
        let (status, message) = chat_model(&gateway, model, None).await;
        assert_eq!(status, StatusCode::OK, "{model}: {message}");
    }
    let by_key = &mock.stats().await["by_key"];
    assert_eq!(by_key["sk-versioned"], 1, "{by_key}");
    assert!(
        by_key.get("sk-not-sent").is_none(),
        "a key-less provider sends no key: {by_key}"
    );
    gateway
        .output
        .wait_for(
            "request_path_overrides.responses is ignored",
            std::time::Duration::from_secs(5),
        )
        .await
        .expect("the override of a request type not served is noted");
}

/// Providers Bifrost speaks natively and the gateway does not yet are refused by name, even with
/// a base URL (never spoken to as OpenAI); OpenAI-compatible ones known by name need no URL.
#[tokio::test]
async fn providers_known_by_name_load_without_a_url_and_native_ones_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.json");
    let config = json!({"providers": {
        "xai": {"keys": [{"name": "k", "value": "x", "models": ["*"]}]},
        "perplexity": {"keys": [{"name": "k", "value": "p", "models": ["*"]}]},
        "gemini": {"keys": [{"name": "k", "value": "a", "models": ["*"]}]},
        "replicate": {"keys": [{"name": "k", "value": "v", "models": ["*"]}],
                   "network_config": {"base_url": "https://api.replicate.com"}},
        "elevenlabs": {"keys": [{"name": "k", "value": "e", "models": ["*"]}]}
    }});
    std::fs::write(&path, config.to_string()).expect("write config");
    let output = std::process::Command::new(bifrost_e2e::harness::binary("bifrost-gateway"))
        .args(["--check-config", "--config"])
        .arg(&path)
        .output()
        .expect("gateway runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("  - ")).collect();
    assert_eq!(errors.len(), 1, "only replicate is refused: {stderr}");
    assert!(
        errors[0].contains("providers.replicate: Bifrost speaks Replicate's predictions API"),
        "{stderr}"
    );
    assert!(
        stderr.contains("providers.elevenlabs is ignored"),
        "{stderr}"
    );
}

/// `budgets[].current_usage` / `last_reset` carry Bifrost's spend over into a new store: a
/// budget already spent this period refuses at once; one spent in an ended period does not.
#[tokio::test]
async fn budget_usage_seeds_count_in_a_new_store() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["config_store"] = json!({"enabled": true, "type": "sqlite"});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    // Today's UTC midnight, written as Bifrost writes times.
    let midnight = now - now % 86_400;
    let today = format!(
        "{}",
        jiff::Timestamp::from_second(midnight as i64).expect("a time")
    );
    config["governance"] = json!({
        "virtual_keys": [
            {"id": "spent", "value": "sk-bf-spent", "provider_configs": any_provider()},
            {"id": "stale", "value": "sk-bf-stale", "provider_configs": any_provider()}
        ],
        "budgets": [
            {"id": "b-spent", "max_limit": 1.0, "reset_duration": "1d", "virtual_key_id": "spent",
             "current_usage": 1.0, "last_reset": today, "calendar_aligned": true},
            {"id": "b-stale", "max_limit": 1.0, "reset_duration": "1d", "virtual_key_id": "stale",
             "current_usage": 1.0, "last_reset": "2020-01-01T00:00:00Z"}
        ]
    });
    let gateway = Gateway::start(&config).await;
    let (status, message) = chat_model(&gateway, "openai/gpt-4o-mini", Some("sk-bf-spent")).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{message}");
    assert!(message.contains("b-spent"), "{message}");
    assert_eq!(
        chat(&gateway, Some("sk-bf-stale")).await,
        StatusCode::OK,
        "usage of an ended period counts as nothing"
    );
}

/// `GET`/`POST` on the admin API; status and JSON body.
async fn admin(
    gateway: &Gateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, gateway.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("answered");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A virtual key without `value` (valid in Bifrost): generated, stored encrypted, shown once by
/// the admin API, kept across restarts; the log names the key, never the value.
#[tokio::test]
async fn a_virtual_key_without_a_value_gets_one_shown_once() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["config_store"] = json!({"enabled": true, "type": "sqlite"});
    config["governance"] = json!({"virtual_keys": [
        {"id": "vk-generated", "name": "no value", "provider_configs": any_provider()}
    ]});
    let mut gateway = Gateway::start(&config).await;
    gateway
        .output
        .wait_for("generated one", std::time::Duration::from_secs(5))
        .await
        .expect("the generation is logged");
    let path = "/api/governance/virtual-keys/vk-generated";
    let (status, first) = admin(&gateway, reqwest::Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["value_shown_once"], true, "{first}");
    let value = first["value"].as_str().expect("the value").to_string();
    assert!(value.starts_with("sk-bf-") && value.len() == 70, "{value}");
    let (_, second) = admin(&gateway, reqwest::Method::GET, path, None).await;
    assert_ne!(second["value"], value.as_str(), "shown once only: {second}");
    assert!(second.get("value_shown_once").is_none(), "{second}");
    assert!(
        !gateway.output.contains(&value),
        "the value is never logged"
    );
    assert_eq!(chat(&gateway, Some(&value)).await, StatusCode::OK);

    gateway.signal("TERM");
    gateway.wait_exit(std::time::Duration::from_secs(30)).await;
    gateway.restart().await;
    assert_eq!(
        chat(&gateway, Some(&value)).await,
        StatusCode::OK,
        "a restart with the same file keeps the stored value"
    );

    // Created through the admin API without a value: the answer shows it, once.
    let (status, created) = admin(
        &gateway,
        reqwest::Method::POST,
        "/api/governance/virtual-keys",
        Some(json!({"id": "vk-api", "provider_configs": any_provider()})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let api_value = created["value"].as_str().expect("the value").to_string();
    assert!(
        api_value.starts_with("sk-bf-") && api_value.len() == 70,
        "{created}"
    );
    let (_, later) = admin(
        &gateway,
        reqwest::Method::GET,
        "/api/governance/virtual-keys/vk-api",
        None,
    )
    .await;
    assert_ne!(later["value"], api_value.as_str(), "{later}");
    assert_eq!(chat(&gateway, Some(&api_value)).await, StatusCode::OK);
}

/// Without a config store a generated value could not outlive the process: refused by path.
#[tokio::test]
async fn a_virtual_key_without_a_value_needs_a_config_store() {
    let (status, stderr) = bifrost_e2e::harness::gateway_rejects(
        &json!({"config_store": {"enabled": false},
                "governance": {"virtual_keys": [{"id": "vk", "name": "no value"}]}})
        .to_string(),
    )
    .await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("governance.virtual_keys[0].value: missing"),
        "{stderr}"
    );
}

/// Bifrost's `vllm_key_config` (`url`, `model_name`): each key is its own vLLM server, and a
/// request for a model goes to the server that serves it.
#[tokio::test]
async fn self_hosted_keys_send_each_model_to_its_own_server() {
    let llama = MockProvider::start(&[]).await;
    let qwen = MockProvider::start(&[]).await;
    let mut config = config_for(&llama);
    config["providers"]["vllm"] = json!({"keys": [
        {"name": "gpu-1", "value": "", "weight": 1,
         "vllm_key_config": {"url": llama.base, "model_name": "llama-3-8b"}},
        {"name": "gpu-2", "value": "", "weight": 1,
         "vllm_key_config": {"url": qwen.base, "model_name": "qwen-2-7b"}}
    ]});
    let gateway = Gateway::start(&config).await;
    let before = (llama.requests().await, qwen.requests().await);
    for model in ["vllm/llama-3-8b", "vllm/qwen-2-7b", "vllm/qwen-2-7b"] {
        let (status, message) = chat_model(&gateway, model, None).await;
        assert_eq!(status, StatusCode::OK, "{model}: {message}");
    }
    assert_eq!(
        (
            llama.requests().await - before.0,
            qwen.requests().await - before.1
        ),
        (1, 2),
        "each model reached its own server"
    );
    let (status, _) = chat_model(&gateway, "vllm/mistral-7b", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no server serves it");
}

/// `client.allow_direct_keys`: a caller's own provider key (`x-bf-direct-key: true`) reaches
/// the upstream instead of the configured one; governance still applies; off by default.
#[tokio::test]
async fn direct_keys_reach_the_upstream_only_when_allowed() {
    let mock = MockProvider::start(&[]).await;
    let send = |gateway: &Gateway, vk: Option<&'static str>| {
        let mut request = reqwest::Client::new()
            .post(gateway.url("/v1/chat/completions"))
            .header("x-bf-direct-key", "true")
            .header("authorization", "Bearer sk-callers-own-key")
            .json(&json!({"model": "openai/gpt-4o-mini",
                          "messages": [{"role": "user", "content": "hi"}]}));
        if let Some(vk) = vk {
            request = request.header("x-bf-vk", vk);
        }
        request.send()
    };
    let config = config_for(&mock);
    let gateway = Gateway::start(&config).await;
    let refused = send(&gateway, None).await.expect("answered");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.expect("JSON error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("client.allow_direct_keys"),
        "{body}"
    );

    let mut config = config_for(&mock);
    config["client"]["allow_direct_keys"] = json!(true);
    config["client"]["enforce_auth_on_inference"] = json!(true);
    config["governance"] = json!({"virtual_keys": [
        {"id": "vk-1", "value": "sk-bf-direct-user", "provider_configs": any_provider()}
    ]});
    let gateway = Gateway::start(&config).await;
    let without_vk = send(&gateway, None).await.expect("answered");
    assert_eq!(
        without_vk.status(),
        StatusCode::UNAUTHORIZED,
        "governance still applies"
    );
    let answered = send(&gateway, Some("sk-bf-direct-user"))
        .await
        .expect("answered");
    assert_eq!(answered.status(), StatusCode::OK);
    let by_key = &mock.stats().await["by_key"];
    assert_eq!(by_key["sk-callers-own-key"], 1, "{by_key}");
    assert!(
        by_key.get("sk-openai").is_none(),
        "the configured key was not used: {by_key}"
    );
}

/// `custom_provider_config.allowed_requests`: only the request types set to true reach the
/// provider; the others are refused with 400 naming the setting.
#[tokio::test]
async fn allowed_requests_limit_what_a_custom_provider_is_sent() {
    let mock = MockProvider::start(&[]).await;
    let mut config = config_for(&mock);
    config["providers"]["chat-only"] = json!({
        "keys": [{"name": "k", "value": "sk-chat-only", "models": ["*"]}],
        "network_config": {"base_url": mock.base},
        "custom_provider_config": {"base_provider_type": "openai",
            "allowed_requests": {"chat_completion": true, "chat_completion_stream": false}}
    });
    let gateway = Gateway::start(&config).await;
    let before = mock.requests().await;
    let (status, message) = chat_model(&gateway, "chat-only/gpt-4o-mini", None).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    let client = reqwest::Client::new();
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "chat-only/gpt-4o-mini", "stream": true,
                                         "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "chat-only/text-embedding-3-small", "input": "hi"}),
        ),
    ] {
        let response = client
            .post(gateway.url(path))
            .json(&body)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let error: Value = response.json().await.expect("JSON error");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("allowed_requests"),
            "{path}: {error}"
        );
    }
    assert_eq!(
        mock.requests().await - before,
        1,
        "only the allowed request went upstream"
    );
}
