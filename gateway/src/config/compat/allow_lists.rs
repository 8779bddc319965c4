//! Bifrost's `version` and what an empty allow-list means.
//!
//! The gateway reads every allow-list as Bifrost ≥ 1.5 does (`version: 2`, the default): a
//! provider key's `models`, a virtual key's `provider_configs` and a provider config's
//! `allowed_models` and `key_ids` allow nothing when empty or missing, everything when they hold
//! `"*"`. A file that says `version: 1` keeps Bifrost 1.4's meaning, empty = all: its empty
//! lists are written out as `["*"]` here (a virtual key without `provider_configs` gets one per
//! provider of the file, as Bifrost's own upgrade does), so nothing past this fold needs to
//! know the version.

use serde_json::{json, Map, Value};

/// Lists named in a note before "and N more".
const NAMED: usize = 8;

/// The allow-list fields, and what an empty one denies (for the note).
const KEY_MODELS: &str = "the key serves no model";
const PROVIDER_CONFIGS: &str = "the virtual key may use no provider";
const ALLOWED_MODELS: &str = "no model on that provider";
const KEY_IDS: &str = "no key of that provider";

/// Apply `version` to the document's empty allow-lists; a note naming the lists it concerns.
/// A `version` other than 1 or 2 is left for the typed read to refuse.
pub(super) fn fold_allow_lists(document: &mut Map<String, Value>, notes: &mut Vec<String>) {
    let version = match document.get("version") {
        None => 2,
        Some(value) => match value.as_u64() {
            Some(version @ (1 | 2)) => version,
            _ => return,
        },
    };
    let allow_all = version == 1;
    let mut empty = Vec::new();
    let provider_names: Vec<String> = match document.get_mut("providers") {
        Some(Value::Object(providers)) => {
            for (name, provider) in providers.iter_mut() {
                let Some(Value::Array(keys)) = provider.get_mut("keys") else {
                    continue;
                };
                for (index, key) in keys.iter_mut().enumerate() {
                    if let Value::Object(key) = key {
                        let path = format!("providers.{name}.keys[{index}].models");
                        visit(key, "models", path, KEY_MODELS, allow_all, &mut empty);
                    }
                }
            }
            providers.keys().cloned().collect()
        }
        _ => Vec::new(),
    };
    let virtual_keys = document
        .get_mut("governance")
        .and_then(|g| g.get_mut("virtual_keys"))
        .and_then(Value::as_array_mut);
    for (index, key) in virtual_keys.into_iter().flatten().enumerate() {
        let Value::Object(key) = key else {
            continue;
        };
        let path = format!("governance.virtual_keys[{index}].provider_configs");
        if is_missing(key.get("provider_configs")) {
            if allow_all {
                let every: Vec<Value> = provider_names
                    .iter()
                    .map(|provider| {
                        json!({"provider": provider, "allowed_models": ["*"], "key_ids": ["*"]})
                    })
                    .collect();
                key.insert("provider_configs".into(), Value::Array(every));
            }
            empty.push((path, PROVIDER_CONFIGS));
            continue;
        }
        let Some(Value::Array(configs)) = key.get_mut("provider_configs") else {
            continue;
        };
        for (position, config) in configs.iter_mut().enumerate() {
            let Value::Object(config) = config else {
                continue;
            };
            for (field, denies) in [("allowed_models", ALLOWED_MODELS), ("key_ids", KEY_IDS)] {
                let path = format!("{path}[{position}].{field}");
                visit(config, field, path, denies, allow_all, &mut empty);
            }
        }
    }
    if empty.is_empty() {
        return;
    }
    let mut named: Vec<String> = empty
        .iter()
        .take(NAMED)
        .map(|(path, denies)| format!("{path} ({denies})"))
        .collect();
    if empty.len() > NAMED {
        named.push(format!("and {} more", empty.len() - NAMED));
    }
    let named = named.join(", ");
    notes.push(if allow_all {
        format!("version 1: empty allow-lists allow everything, as in Bifrost 1.4; read as [\"*\"]: {named}")
    } else {
        format!(
            "version 2 (the default, as in Bifrost 1.5 and later): an empty or missing allow-list allows \
             nothing: {named}; write [\"*\"] to allow all, or set \"version\": 1 for Bifrost 1.4's meaning"
        )
    });
}

/// Missing, `null` or `[]` (anything else, a wrong type included, is left to the typed read).
fn is_missing(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    }
}

/// Record `object.field` when it is missing, `null` or `[]`; under version 1 make it `["*"]`.
fn visit(
    object: &mut Map<String, Value>,
    field: &str,
    path: String,
    denies: &'static str,
    allow_all: bool,
    empty: &mut Vec<(String, &'static str)>,
) {
    if !is_missing(object.get(field)) {
        return;
    }
    if allow_all {
        object.insert(field.into(), json!(["*"]));
    }
    empty.push((path, denies));
}

#[cfg(test)]
mod tests {
    use super::super::folded;
    use serde_json::json;

    fn bifrost_file(version: Option<u64>) -> serde_json::Value {
        let mut file = json!({
            "providers": {
                "openai": {"keys": [{"name": "a", "value": "x"}, {"name": "b", "value": "y", "models": []},
                                    {"name": "c", "value": "z", "models": ["gpt-4o"]}]},
                "anthropic": {"keys": [{"name": "d", "value": "w", "models": ["*"]}]}
            },
            "governance": {"virtual_keys": [
                {"id": "none", "value": "v1"},
                {"id": "some", "value": "v2", "provider_configs": [
                    {"provider": "openai", "key_ids": ["a"]},
                    {"provider": "anthropic", "allowed_models": ["*"], "key_ids": []}
                ]}
            ]}
        });
        if let Some(version) = version {
            file["version"] = json!(version);
        }
        file
    }

    #[test]
    fn version_2_keeps_empty_lists_and_names_each_in_one_note() {
        for version in [None, Some(2)] {
            let (document, notes, problems) = folded(bifrost_file(version));
            assert!(problems.is_empty());
            assert_eq!(
                document["providers"]["openai"]["keys"][0].get("models"),
                None
            );
            assert_eq!(
                document["providers"]["openai"]["keys"][1]["models"],
                json!([])
            );
            assert_eq!(
                document["governance"]["virtual_keys"][0].get("provider_configs"),
                None
            );
            assert_eq!(notes.len(), 1, "{notes:?}");
            for path in [
                "providers.openai.keys[0].models (the key serves no model)",
                "providers.openai.keys[1].models",
                "governance.virtual_keys[0].provider_configs (the virtual key may use no provider)",
                "governance.virtual_keys[1].provider_configs[0].allowed_models",
                "governance.virtual_keys[1].provider_configs[1].key_ids",
            ] {
                assert!(notes[0].contains(path), "{path} in {notes:?}");
            }
            assert!(!notes[0].contains("keys[2]"), "{notes:?}");
            assert!(
                !notes[0].contains("provider_configs[0].key_ids"),
                "{notes:?}"
            );
        }
    }

    #[test]
    fn version_1_reads_empty_lists_as_every_one() {
        let (document, notes, problems) = folded(bifrost_file(Some(1)));
        assert!(problems.is_empty());
        let keys = &document["providers"]["openai"]["keys"];
        assert_eq!(keys[0]["models"], json!(["*"]));
        assert_eq!(keys[1]["models"], json!(["*"]));
        assert_eq!(keys[2]["models"], json!(["gpt-4o"]));
        let keys = &document["governance"]["virtual_keys"];
        assert_eq!(
            keys[0]["provider_configs"],
            json!([
                {"provider": "anthropic", "allowed_models": ["*"], "key_ids": ["*"]},
                {"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"]}
            ])
        );
        assert_eq!(
            keys[1]["provider_configs"][0]["allowed_models"],
            json!(["*"])
        );
        assert_eq!(keys[1]["provider_configs"][0]["key_ids"], json!(["a"]));
        assert_eq!(keys[1]["provider_configs"][1]["key_ids"], json!(["*"]));
        assert!(notes[0].starts_with("version 1:"), "{notes:?}");
    }

    #[test]
    fn a_file_whose_lists_all_say_what_they_allow_gets_no_note() {
        let (_, notes, _) = folded(json!({
            "providers": {"openai": {"keys": [{"value": "x", "models": ["*"]}]}},
            "governance": {"virtual_keys": [{"id": "k", "value": "v", "provider_configs": [
                {"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"]}]}]}
        }));
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn an_unknown_version_is_left_alone_for_the_typed_read() {
        let (document, notes, _) =
            folded(json!({"version": 3, "providers": {"openai": {"keys": [{"value": "x"}]}}}));
        assert!(notes.is_empty());
        assert_eq!(
            document["providers"]["openai"]["keys"][0].get("models"),
            None
        );
    }
}
