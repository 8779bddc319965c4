//! Providers Bifrost uses for operations the gateway does not serve, and path overrides for
//! request types it does not serve: left out with a note, so the rest of the file loads.

use serde_json::{Map, Value};

use crate::config::catalog::{self, KnownProvider};
use crate::config::SERVED_REQUEST_TYPES;

/// Drop `providers.<name>` for providers only used for speech, image or video (and the
/// virtual keys' configs for them), and `request_path_overrides` entries of request types the
/// gateway does not serve.
pub(super) fn fold_providers(
    document: &mut Map<String, Value>,
    notes: &mut Vec<String>,
    left_out: &mut Vec<String>,
) {
    let Some(Value::Object(providers)) = document.get_mut("providers") else {
        return;
    };
    let mut dropped = Vec::new();
    providers.retain(|name, provider| {
        if let Some(KnownProvider::NotServed { operations }) = catalog::lookup(name) {
            // A custom_provider_config makes it a provider of the named format, kept.
            if provider.get("custom_provider_config").is_none() {
                notes.push(format!(
                    "providers.{name} is ignored: Bifrost uses it for {operations}, which the gateway does not serve"
                ));
                left_out.push(format!("providers.{name}"));
                dropped.push(name.clone());
                return false;
            }
        }
        true
    });
    for (name, field) in [
        ("azure", "azure_key_config"),
        ("vertex", "vertex_key_config"),
    ] {
        if let Some(Value::Object(provider)) = providers.get_mut(name) {
            fold_meta_config(name, field, provider, notes);
        }
    }
    if let Some(Value::Object(azure)) = providers.get_mut("azure") {
        fold_azure_base_url(azure, notes);
    }
    for (name, provider) in providers.iter_mut() {
        let overrides = provider
            .get_mut("custom_provider_config")
            .and_then(|c| c.get_mut("request_path_overrides"))
            .and_then(Value::as_object_mut);
        let Some(overrides) = overrides else {
            continue;
        };
        overrides.retain(|request, _| {
            let served = SERVED_REQUEST_TYPES.contains(&request.as_str());
            if !served {
                left_out.push(format!(
                    "providers.{name}.custom_provider_config.request_path_overrides.{request}"
                ));
                notes.push(format!(
                    "providers.{name}.custom_provider_config.request_path_overrides.{request} is ignored: the gateway does not serve {request} requests"
                ));
            }
            served
        });
    }
    if dropped.is_empty() {
        return;
    }
    let keys = document
        .get_mut("governance")
        .and_then(|g| g.get_mut("virtual_keys"))
        .and_then(Value::as_array_mut);
    for (index, key) in keys.into_iter().flatten().enumerate() {
        let Some(Value::Array(configs)) = key.get_mut("provider_configs") else {
            continue;
        };
        configs.retain(|config| {
            let provider = config.get("provider").and_then(Value::as_str);
            let gone = provider.is_some_and(|p| dropped.iter().any(|d| d == p));
            if gone {
                notes.push(format!(
                    "governance.virtual_keys[{index}].provider_configs: the entry for {} is ignored with the provider",
                    provider.unwrap_or_default()
                ));
            }
            !gone
        });
    }
}

/// Bifrost's older layout: the resource in `providers.<name>.meta_config` (Azure's endpoint,
/// deployments, api_version; Vertex's project_id, region, auth_credentials) for every key;
/// read as each key's `field`. Vertex needs no key value, so a Vertex provider without keys gets
/// one key serving every model.
fn fold_meta_config(
    name: &str,
    field: &str,
    provider: &mut Map<String, Value>,
    notes: &mut Vec<String>,
) {
    let Some(Value::Object(meta)) = provider.remove("meta_config") else {
        return;
    };
    let keys = provider
        .entry("keys")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(keys) = keys else {
        return;
    };
    if keys.is_empty() && name == "vertex" {
        keys.push(serde_json::json!({"name": "meta_config", "models": ["*"]}));
    }
    let mut filled = 0;
    for key in keys.iter_mut().filter_map(Value::as_object_mut) {
        if !key.contains_key(field) {
            key.insert(field.into(), Value::Object(meta.clone()));
            filled += 1;
        }
    }
    notes.push(format!(
        "providers.{name}.meta_config (Bifrost's older layout) is read as the {field} of {filled} key(s)"
    ));
}

/// Azure keys without `azure_key_config` in a provider with `network_config.base_url` (as
/// Bifrost's load-test files have them): the base URL is read as each such key's resource
/// `endpoint`, served on Azure's v1 API (no `api_version`, each model its own deployment).
fn fold_azure_base_url(provider: &mut Map<String, Value>, notes: &mut Vec<String>) {
    let base_url = provider
        .get("network_config")
        .and_then(|n| n.get("base_url"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let Some(base_url) = base_url else {
        return;
    };
    let Some(Value::Array(keys)) = provider.get_mut("keys") else {
        return;
    };
    for (index, key) in keys.iter_mut().enumerate() {
        let Some(key) = key.as_object_mut() else {
            continue;
        };
        if !key.contains_key("azure_key_config") {
            key.insert(
                "azure_key_config".into(),
                serde_json::json!({"endpoint": base_url}),
            );
            notes.push(format!(
                "providers.azure.keys[{index}] has no azure_key_config: network_config.base_url is read as its endpoint (Azure's v1 API, each model its own deployment)"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::folded;
    use serde_json::json;

    #[test]
    fn providers_for_speech_images_or_video_are_left_out_with_their_key_configs() {
        let (document, notes, problems) = folded(json!({
            "providers": {
                "openai": {"keys": [{"value": "sk", "models": ["*"]}]},
                "elevenlabs": {"keys": [{"value": "el", "models": ["*"]}]},
                "runway": {"keys": []}
            },
            "governance": {"virtual_keys": [{"id": "vk", "value": "v", "provider_configs": [
                {"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"]},
                {"provider": "elevenlabs", "allowed_models": ["*"], "key_ids": ["*"]}
            ]}]}
        }));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            document["providers"]
                .as_object()
                .map(|p| p.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["openai".to_string()])
        );
        assert_eq!(
            document["governance"]["virtual_keys"][0]["provider_configs"],
            json!([{"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"]}])
        );
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes[0].contains("speech and transcription"), "{notes:?}");
    }

    #[test]
    fn an_azure_key_without_its_config_is_at_the_providers_base_url() {
        let (document, notes, problems) = folded(json!({"providers": {"azure": {
            "network_config": {"base_url": "http://localhost:8000"},
            "keys": [{"value": "a", "models": ["*"]},
                     {"value": "b", "models": ["*"], "azure_key_config": {"endpoint": "https://own"}}]
        }}}));
        assert!(problems.is_empty(), "{problems:?}");
        let keys = &document["providers"]["azure"]["keys"];
        assert_eq!(
            keys[0]["azure_key_config"],
            json!({"endpoint": "http://localhost:8000"})
        );
        assert_eq!(keys[1]["azure_key_config"]["endpoint"], "https://own");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("keys[0]"), "{notes:?}");
    }

    #[test]
    fn azure_meta_config_becomes_each_keys_azure_key_config() {
        let meta =
            json!({"endpoint": "https://r.openai.azure.com", "api_version": "2024-08-01-preview"});
        let (document, notes, _) = folded(json!({"providers": {"azure": {
            "meta_config": meta.clone(),
            "keys": [{"value": "a"}, {"value": "b", "azure_key_config": {"endpoint": "https://own"}}]
        }}}));
        let keys = &document["providers"]["azure"]["keys"];
        assert_eq!(keys[0]["azure_key_config"], meta);
        assert_eq!(keys[1]["azure_key_config"]["endpoint"], "https://own");
        assert!(document["providers"]["azure"].get("meta_config").is_none());
        assert!(notes[0].contains("1 key(s)"), "{notes:?}");
    }

    #[test]
    fn vertex_meta_config_without_keys_becomes_one_key_serving_every_model() {
        let meta = json!({"project_id": "p", "region": "us-central1", "auth_credentials": "{}"});
        let (document, notes, _) = folded(json!({"providers": {"vertex": {
            "meta_config": meta.clone(), "keys": []
        }}}));
        assert_eq!(
            document["providers"]["vertex"]["keys"],
            json!([{"name": "meta_config", "models": ["*"], "vertex_key_config": meta}])
        );
        assert!(
            notes[0].contains("vertex_key_config of 1 key(s)"),
            "{notes:?}"
        );
    }

    #[test]
    fn path_overrides_of_request_types_not_served_are_left_out() {
        let (document, notes, _) = folded(json!({"providers": {"local": {
            "network_config": {"base_url": "http://llm:8000"},
            "custom_provider_config": {"base_provider_type": "openai", "request_path_overrides": {
                "chat_completion": "/api/chat", "responses": "/api/responses"
            }}
        }}}));
        assert_eq!(
            document["providers"]["local"]["custom_provider_config"]["request_path_overrides"],
            json!({"chat_completion": "/api/chat"})
        );
        assert!(notes[0].contains("responses is ignored"), "{notes:?}");
    }
}
