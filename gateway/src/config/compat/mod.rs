//! Bifrost settings that have no field of their own here but mean something the gateway does,
//! folded into the document before it is read, so a Bifrost file keeps its meaning:
//!
//! - top-level `auth_config` (admin credentials) becomes `governance.auth_config`;
//! - the governance plugin (`plugins[name=governance]`) is always on here; its
//!   `config.is_vk_mandatory: true` turns on `client.enforce_auth_on_inference`;
//! - `governance.auth_config.disable_auth_on_inference` is deprecated and ignored in Bifrost,
//!   and so here: it never switches virtual-key enforcement off;
//! - `version: 1` (Bifrost 1.4's "empty allow-list = all") writes its empty allow-lists out as
//!   `["*"]`; under `version: 2`, the default, they allow nothing, as the gateway reads them
//!   ([`allow_lists`]);
//! - a budget tied to its owner from the budget's side (`budgets[].virtual_key_id`, `team_id`,
//!   `customer_id`, `provider_config_id`: the current Bifrost schema's only way) becomes the
//!   owner's `budget_id`, and a customer's inline `budgets[]` line becomes a budget of its own
//!   and the customer's `budget_id` (one budget per owner here);
//! - `calendar_aligned` is consumed: resets here always follow UTC calendar boundaries;
//! - providers Bifrost uses only for speech, images or video, and path overrides of request
//!   types the gateway does not serve, are left out ([`providers`]).
//!
//! Each fold leaves a note (logged at start, printed by `--check-config`).

mod allow_lists;
mod budgets;
mod providers;

use serde_json::{Map, Value};

use super::FieldError;

/// Fold Bifrost-only settings of `document` into the fields the gateway reads; notes for the
/// log, problems where a document says the same thing twice, and in `left_out` the (dotted)
/// paths of sections removed as meaningless here.
pub fn fold(
    document: &mut Map<String, Value>,
    problems: &mut Vec<FieldError>,
    left_out: &mut Vec<String>,
) -> Vec<String> {
    let mut notes = Vec::new();
    fold_auth_config(document, problems, &mut notes);
    fold_governance_plugin(document, &mut notes);
    providers::fold_providers(document, &mut notes, left_out);
    allow_lists::fold_allow_lists(document, &mut notes);
    if let Some(Value::Object(governance)) = document.get_mut("governance") {
        budgets::fold_customer_budget_lines(governance, problems, &mut notes);
        budgets::fold_budget_owners(governance, problems, &mut notes);
        budgets::fold_calendar_aligned(governance, &mut notes);
    }
    let disabled = document
        .get("governance")
        .and_then(|g| g.get("auth_config"))
        .and_then(|a| a.get("disable_auth_on_inference"))
        .and_then(Value::as_bool)
        == Some(true);
    if disabled {
        notes.push(
            "governance.auth_config.disable_auth_on_inference is deprecated and ignored, as in Bifrost: \
             with client.enforce_auth_on_inference on, inference still needs a virtual key"
                .to_string(),
        );
    }
    notes
}

fn fold_auth_config(
    document: &mut Map<String, Value>,
    problems: &mut Vec<FieldError>,
    notes: &mut Vec<String>,
) {
    let Some(auth) = document.remove("auth_config") else {
        return;
    };
    let governance = document
        .entry("governance")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(governance) = governance else {
        // The typed read reports `governance` itself.
        return;
    };
    if governance.contains_key("auth_config") {
        problems.push(FieldError::new(
            "auth_config",
            "admin credentials are set both here and in governance.auth_config; keep one",
        ));
        return;
    }
    governance.insert("auth_config".into(), auth);
    notes.push("auth_config (admin credentials) is read as governance.auth_config".to_string());
}

fn fold_governance_plugin(document: &mut Map<String, Value>, notes: &mut Vec<String>) {
    let Some(Value::Array(plugins)) = document.get_mut("plugins") else {
        return;
    };
    let Some(index) = plugins
        .iter()
        .position(|p| p.get("name").and_then(Value::as_str) == Some("governance"))
    else {
        return;
    };
    let plugin = plugins.remove(index);
    if plugins.is_empty() {
        document.remove("plugins");
    }
    let enabled = plugin.get("enabled").and_then(Value::as_bool) != Some(false);
    let mandatory = plugin
        .get("config")
        .and_then(|c| c.get("is_vk_mandatory"))
        .and_then(Value::as_bool)
        == Some(true);
    if !(enabled && mandatory) {
        notes.push(format!(
            "plugins[{index}] (governance): governance is always on here; nothing else to do"
        ));
        return;
    }
    let client = document
        .entry("client")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(client) = client {
        // One name only: serde refuses a field given under both its name and its alias.
        client.remove("enforce_governance_header");
        client.insert("enforce_auth_on_inference".into(), Value::Bool(true));
        notes.push(format!(
            "plugins[{index}] (governance): is_vk_mandatory is read as client.enforce_auth_on_inference: true"
        ));
    }
}

/// `fold` on a test document: the folded document, the notes and the problems.
#[cfg(test)]
fn folded(document: Value) -> (Value, Vec<String>, Vec<FieldError>) {
    let Value::Object(mut document) = document else {
        panic!("test documents are objects");
    };
    let mut problems = Vec::new();
    let notes = fold(&mut document, &mut problems, &mut Vec::new());
    (Value::Object(document), notes, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_mandatory_virtual_key_in_the_governance_plugin_enforces_auth() {
        let (document, notes, problems) = folded(json!({
            "client": {"enforce_governance_header": false},
            "plugins": [{"name": "governance", "enabled": true, "config": {"is_vk_mandatory": true}},
                        {"name": "telemetry"}]
        }));
        assert!(problems.is_empty());
        assert_eq!(
            document["client"],
            json!({"enforce_auth_on_inference": true})
        );
        assert_eq!(document["plugins"], json!([{"name": "telemetry"}]));
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[test]
    fn a_disabled_or_optional_governance_plugin_changes_nothing_but_is_consumed() {
        for plugin in [
            json!({"name": "governance", "enabled": false, "config": {"is_vk_mandatory": true}}),
            json!({"name": "governance", "config": {"is_vk_mandatory": false}}),
        ] {
            let (document, _, _) = folded(json!({"plugins": [plugin]}));
            assert_eq!(document, json!({}), "no client change, no plugins left");
        }
    }

    #[test]
    fn top_level_auth_config_becomes_governance_auth_config() {
        let auth = json!({"is_enabled": true, "admin_username": "a", "admin_password": "p"});
        let (document, notes, problems) = folded(json!({"auth_config": auth.clone()}));
        assert!(problems.is_empty());
        assert_eq!(document["governance"]["auth_config"], auth);
        assert_eq!(notes.len(), 1);
        let (_, _, problems) = folded(json!({
            "auth_config": auth.clone(),
            "governance": {"auth_config": auth}
        }));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "auth_config");
    }

    #[test]
    fn disable_auth_on_inference_is_noted_as_ignored() {
        let (_, notes, _) =
            folded(json!({"governance": {"auth_config": {"disable_auth_on_inference": true}}}));
        assert!(notes[0].contains("deprecated and ignored"), "{notes:?}");
    }
}
