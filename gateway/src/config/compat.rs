//! Bifrost settings that have no field of their own here but mean something the gateway does,
//! folded into the document before it is read, so a Bifrost file keeps its meaning:
//!
//! - top-level `auth_config` (admin credentials) becomes `governance.auth_config`;
//! - the governance plugin (`plugins[name=governance]`) is always on here; its
//!   `config.is_vk_mandatory: true` turns on `client.enforce_auth_on_inference`;
//! - `governance.auth_config.disable_auth_on_inference` is deprecated and ignored in Bifrost,
//!   and so here: it never switches virtual-key enforcement off;
//! - a budget tied to its owner from the budget's side (`budgets[].virtual_key_id`, `team_id`,
//!   `customer_id`, `provider_config_id`: the current Bifrost schema's only way) becomes the
//!   owner's `budget_id`, and a customer's inline `budgets[]` line becomes a budget of its own
//!   and the customer's `budget_id` (one budget per owner here).
//!
//! Each fold leaves a note (logged at start, printed by `--check-config`).

use serde_json::{Map, Value};

use super::FieldError;

/// Fold Bifrost-only settings of `document` into the fields the gateway reads; notes for the
/// log, and problems where a document says the same thing twice.
pub fn fold(document: &mut Map<String, Value>, problems: &mut Vec<FieldError>) -> Vec<String> {
    let mut notes = Vec::new();
    fold_auth_config(document, problems, &mut notes);
    fold_governance_plugin(document, &mut notes);
    if let Some(Value::Object(governance)) = document.get_mut("governance") {
        fold_customer_budget_lines(governance, problems, &mut notes);
        fold_budget_owners(governance, problems, &mut notes);
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

/// The owners a Bifrost budget may name, the list each lives in, and what to call one.
const BUDGET_OWNERS: [(&str, &str, &str); 3] = [
    ("virtual_key_id", "virtual_keys", "virtual key"),
    ("team_id", "teams", "team"),
    ("customer_id", "customers", "customer"),
];

/// `budgets[].<owner>_id` → the owner's `budget_id`.
fn fold_budget_owners(
    governance: &mut Map<String, Value>,
    problems: &mut Vec<FieldError>,
    notes: &mut Vec<String>,
) {
    let Some(Value::Array(mut budgets)) = governance.remove("budgets") else {
        return;
    };
    for (index, budget) in budgets.iter_mut().enumerate() {
        let Value::Object(budget) = budget else {
            continue;
        };
        let path = format!("governance.budgets[{index}]");
        let owners: Vec<(&str, Value)> = BUDGET_OWNERS
            .iter()
            .map(|(field, _, _)| *field)
            .chain(["provider_config_id"])
            .filter_map(|field| match budget.remove(field) {
                None | Some(Value::Null) => None,
                Some(value) => Some((field, value)),
            })
            .collect();
        let Some(budget_id) = budget.get("id").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        match owners.as_slice() {
            [] => {}
            [(field, value)] => {
                let linked = if *field == "provider_config_id" {
                    link_provider_config(governance, value, &budget_id)
                } else {
                    link_owner(governance, field, value, &budget_id)
                };
                match linked {
                    Ok(owner) => notes.push(format!(
                        "{path}.{field} is read as {owner}.budget_id: \"{budget_id}\""
                    )),
                    Err(reason) => {
                        problems.push(FieldError::new(format!("{path}.{field}"), reason))
                    }
                }
            }
            several => {
                let fields: Vec<&str> = several.iter().map(|(field, _)| *field).collect();
                problems.push(FieldError::new(
                    path,
                    format!(
                        "names several owners ({}); a budget belongs to one owner",
                        fields.join(", ")
                    ),
                ));
            }
        }
    }
    governance.insert("budgets".into(), Value::Array(budgets));
    // Bifrost's database ids of provider configs: used above, meaningless here.
    if let Some(Value::Array(keys)) = governance.get_mut("virtual_keys") {
        for key in keys {
            if let Some(Value::Array(configs)) = key.get_mut("provider_configs") {
                for config in configs.iter_mut().filter_map(Value::as_object_mut) {
                    config.remove("id");
                    config.remove("virtual_key_id");
                }
            }
        }
    }
}

/// Set `budget_id` on the virtual key, team or customer `field` names; the owner's path.
fn link_owner(
    governance: &mut Map<String, Value>,
    field: &str,
    value: &Value,
    budget_id: &str,
) -> Result<String, String> {
    let (_, list, what) = BUDGET_OWNERS
        .iter()
        .find(|(name, _, _)| *name == field)
        .ok_or_else(|| format!("not an owner field: {field}"))?;
    let id = value
        .as_str()
        .ok_or_else(|| format!("expected the id of a {what} (a string)"))?;
    let owners = governance.get_mut(*list).and_then(Value::as_array_mut);
    let found = owners.and_then(|owners| {
        owners
            .iter_mut()
            .enumerate()
            .find(|(_, owner)| owner.get("id").and_then(Value::as_str) == Some(id))
    });
    let Some((index, Value::Object(owner))) = found else {
        return Err(format!("no {what} \"{id}\" in governance.{list}"));
    };
    set_budget(owner, budget_id, what, id)?;
    Ok(format!("governance.{list}[{index}]"))
}

/// Set `budget_id` on the virtual key provider config whose Bifrost `id` is `value`.
fn link_provider_config(
    governance: &mut Map<String, Value>,
    value: &Value,
    budget_id: &str,
) -> Result<String, String> {
    let id = value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| {
            "expected the id of a virtual key provider config (an integer)".to_string()
        })?;
    let keys = governance
        .get_mut("virtual_keys")
        .and_then(Value::as_array_mut);
    for (key_index, key) in keys.into_iter().flatten().enumerate() {
        let Some(Value::Array(configs)) = key.get_mut("provider_configs") else {
            continue;
        };
        for (index, config) in configs.iter_mut().enumerate() {
            let Value::Object(config) = config else {
                continue;
            };
            let matches = config
                .get("id")
                .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
                == Some(id);
            if matches {
                set_budget(config, budget_id, "provider config", &id.to_string())?;
                return Ok(format!(
                    "governance.virtual_keys[{key_index}].provider_configs[{index}]"
                ));
            }
        }
    }
    Err(format!(
        "no virtual key provider config with id {id} in governance.virtual_keys[].provider_configs"
    ))
}

fn set_budget(
    owner: &mut Map<String, Value>,
    budget_id: &str,
    what: &str,
    id: &str,
) -> Result<(), String> {
    match owner.get("budget_id").and_then(Value::as_str) {
        Some(existing) if existing != budget_id => Err(format!(
            "{what} \"{id}\" already has budget \"{existing}\"; one budget per owner here"
        )),
        _ => {
            owner.insert("budget_id".into(), Value::String(budget_id.to_string()));
            Ok(())
        }
    }
}

/// `customers[].budgets[]` (inline budget lines) → a top-level budget and the customer's
/// `budget_id`.
fn fold_customer_budget_lines(
    governance: &mut Map<String, Value>,
    problems: &mut Vec<FieldError>,
    notes: &mut Vec<String>,
) {
    let mut lifted = Vec::new();
    if let Some(Value::Array(customers)) = governance.get_mut("customers") {
        for (index, customer) in customers.iter_mut().enumerate() {
            let Value::Object(customer) = customer else {
                continue;
            };
            let Some(lines) = customer.remove("budgets") else {
                continue;
            };
            let path = format!("governance.customers[{index}].budgets");
            let lines = match lines {
                Value::Array(lines) => lines,
                Value::Null => continue,
                _ => {
                    problems.push(FieldError::new(path, "expected an array of budgets"));
                    continue;
                }
            };
            match lines.as_slice() {
                [] => {}
                [_] if customer.contains_key("budget_id") => {
                    problems.push(FieldError::new(
                        path,
                        "set budgets or budget_id, not both (as in Bifrost)",
                    ));
                }
                [line] => {
                    let Some(id) = line.get("id").and_then(Value::as_str) else {
                        problems.push(FieldError::new(format!("{path}[0].id"), "required"));
                        continue;
                    };
                    customer.insert("budget_id".into(), Value::String(id.to_string()));
                    notes.push(format!(
                        "{path}[0] is read as a budget of its own, \"{id}\", and the customer's budget_id"
                    ));
                    lifted.push(line.clone());
                }
                several => problems.push(FieldError::new(
                    path,
                    format!(
                        "{} budgets; one budget per customer here (Bifrost allows one per reset_duration)",
                        several.len()
                    ),
                )),
            }
        }
    }
    if lifted.is_empty() {
        return;
    }
    let budgets = governance
        .entry("budgets")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(budgets) = budgets {
        budgets.extend(lifted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn folded(document: Value) -> (Value, Vec<String>, Vec<FieldError>) {
        let Value::Object(mut document) = document else {
            panic!("test documents are objects");
        };
        let mut problems = Vec::new();
        let notes = fold(&mut document, &mut problems);
        (Value::Object(document), notes, problems)
    }

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

    #[test]
    fn budgets_naming_their_owner_become_the_owners_budget_id() {
        let (document, notes, problems) = folded(json!({"governance": {
            "virtual_keys": [{"id": "vk1", "value": "sk-bf-1", "provider_configs": [
                {"id": 7, "virtual_key_id": "vk1", "provider": "openai"}
            ]}],
            "teams": [{"id": "t1"}],
            "customers": [{"id": "c1", "budget_id": "b3"}],
            "budgets": [
                {"id": "b1", "max_limit": 1, "reset_duration": "1d", "virtual_key_id": "vk1"},
                {"id": "b2", "max_limit": 1, "reset_duration": "1d", "team_id": "t1"},
                {"id": "b3", "max_limit": 1, "reset_duration": "1d", "customer_id": "c1"},
                {"id": "b4", "max_limit": 1, "reset_duration": "1d", "provider_config_id": 7}
            ]
        }}));
        assert!(problems.is_empty(), "{problems:?}");
        let governance = &document["governance"];
        assert_eq!(governance["virtual_keys"][0]["budget_id"], "b1");
        assert_eq!(
            governance["virtual_keys"][0]["provider_configs"][0],
            json!({"provider": "openai", "budget_id": "b4"})
        );
        assert_eq!(governance["teams"][0]["budget_id"], "b2");
        assert_eq!(governance["customers"][0]["budget_id"], "b3");
        for budget in governance["budgets"].as_array().expect("budgets") {
            assert_eq!(budget.as_object().map(|b| b.len()), Some(3), "{budget}");
        }
        assert_eq!(notes.len(), 4, "{notes:?}");
    }

    #[test]
    fn a_budget_owner_that_is_missing_taken_or_ambiguous_is_refused_by_path() {
        let (_, _, problems) = folded(json!({"governance": {
            "virtual_keys": [{"id": "vk1", "value": "v", "budget_id": "other"}],
            "budgets": [
                {"id": "b1", "max_limit": 1, "reset_duration": "1d", "virtual_key_id": "nobody"},
                {"id": "b2", "max_limit": 1, "reset_duration": "1d", "virtual_key_id": "vk1"},
                {"id": "b3", "max_limit": 1, "reset_duration": "1d", "team_id": "t", "customer_id": "c"},
                {"id": "b4", "max_limit": 1, "reset_duration": "1d", "provider_config_id": 9}
            ]
        }}));
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "governance.budgets[0].virtual_key_id",
                "governance.budgets[1].virtual_key_id",
                "governance.budgets[2]",
                "governance.budgets[3].provider_config_id"
            ]
        );
        assert!(
            problems[1].reason.contains("already has budget \"other\""),
            "{problems:?}"
        );
    }

    #[test]
    fn a_customers_inline_budget_line_becomes_a_budget() {
        let line = json!({"id": "cb", "max_limit": 5, "reset_duration": "1M"});
        let (document, _, problems) = folded(json!({"governance": {
            "customers": [{"id": "c1", "budgets": [line.clone()]}]
        }}));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            document["governance"]["customers"][0],
            json!({"id": "c1", "budget_id": "cb"})
        );
        assert_eq!(document["governance"]["budgets"], json!([line]));
        let (_, _, problems) = folded(json!({"governance": {
            "customers": [{"id": "c1", "budgets": [line.clone(), line]}]
        }}));
        assert_eq!(problems[0].path, "governance.customers[0].budgets");
    }
}
