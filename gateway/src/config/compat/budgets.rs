//! Budgets tied to their owner from the budget's side, customers' inline budget lines, and
//! `calendar_aligned`.

use serde_json::{Map, Value};

use crate::config::FieldError;

/// The owners a Bifrost budget may name, the list each lives in, and what to call one.
const BUDGET_OWNERS: [(&str, &str, &str); 3] = [
    ("virtual_key_id", "virtual_keys", "virtual key"),
    ("team_id", "teams", "team"),
    ("customer_id", "customers", "customer"),
];

/// `budgets[].<owner>_id` → the owner's `budget_id`.
pub(super) fn fold_budget_owners(
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
pub(super) fn fold_customer_budget_lines(
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

/// Lists whose items may say `calendar_aligned` in a Bifrost file (on budgets and rate limits
/// it is deprecated there; on virtual keys, teams and customers it is current).
const CALENDAR_ALIGNED_IN: [&str; 5] = [
    "virtual_keys",
    "teams",
    "customers",
    "budgets",
    "rate_limits",
];

/// `calendar_aligned` is consumed: resets here always follow UTC calendar boundaries for
/// `d`/`w`/`M`/`Q`/`Y` periods, which is Bifrost's `true`; a `false` (Bifrost's rolling reset
/// from the last one) is noted as read that way.
pub(super) fn fold_calendar_aligned(governance: &mut Map<String, Value>, notes: &mut Vec<String>) {
    let mut rolling = Vec::new();
    for list in CALENDAR_ALIGNED_IN {
        let Some(Value::Array(items)) = governance.get_mut(list) else {
            continue;
        };
        for (index, item) in items.iter_mut().enumerate() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            if item.remove("calendar_aligned") == Some(Value::Bool(false)) {
                rolling.push(format!("governance.{list}[{index}]"));
            }
        }
    }
    if !rolling.is_empty() {
        notes.push(format!(
            "calendar_aligned: false ({}) is read as true: budgets and limits reset on UTC calendar boundaries here (d, w, M, Q, Y), never on a rolling window from the last reset",
            rolling.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::folded;
    use serde_json::json;

    #[test]
    fn budgets_naming_their_owner_become_the_owners_budget_id() {
        let (document, notes, problems) = folded(json!({"governance": {
            "virtual_keys": [{"id": "vk1", "value": "sk-bf-1", "provider_configs": [
                {"id": 7, "virtual_key_id": "vk1", "provider": "openai",
                 "allowed_models": ["*"], "key_ids": ["*"]}
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
            json!({"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"], "budget_id": "b4"})
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
    fn calendar_aligned_is_consumed_and_false_is_noted() {
        let (document, notes, problems) = folded(json!({"governance": {
            "virtual_keys": [{"id": "vk", "value": "v", "calendar_aligned": true}],
            "teams": [{"id": "t", "calendar_aligned": false}],
            "budgets": [{"id": "b", "max_limit": 1, "reset_duration": "1M", "calendar_aligned": false}]
        }}));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            document.to_string().matches("calendar_aligned").count(),
            0,
            "{document}"
        );
        let note = notes
            .iter()
            .find(|n| n.starts_with("calendar_aligned"))
            .expect("a note for the false ones");
        assert!(
            note.contains("governance.teams[0], governance.budgets[0]"),
            "{note}"
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
