//! `--check-config --explain`: a Bifrost file field by field, as a migrating user needs to see
//! it: what is honoured, what is honoured with another meaning, what is ignored (not
//! implemented) and what is rejected, grouped by top-level section, with a one-line summary.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::load::{dotted, read, Format, Reading};
use super::typed::within;
use super::ConfigError;

/// What the gateway does with one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Read with Bifrost's meaning.
    Honoured,
    /// Read, with a meaning documented as different from Bifrost's.
    Differs,
    /// Not read: the feature is not implemented (a warning at start).
    Ignored,
    /// The file does not load because of it.
    Rejected,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Honoured => "honoured",
            Status::Differs => "differs",
            Status::Ignored => "ignored",
            Status::Rejected => "rejected",
        }
    }
}

/// One line of the explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Field path, array positions written `[]`.
    pub path: String,
    /// What happens to it.
    pub status: Status,
    /// Why (empty for honoured fields).
    pub reason: String,
}

/// A document explained.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// Where the document came from.
    pub origin: String,
    /// Every field, by status; honoured ones as leaf paths.
    pub entries: Vec<Entry>,
    /// What the Bifrost folds did ("... is read as ...").
    pub notes: Vec<String>,
}

impl Explanation {
    /// How many entries have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.entries.iter().filter(|e| e.status == status).count()
    }
}

/// Fields read with a meaning of their own here (the docs' "Differences from Bifrost"), by
/// dotted path with `*` for one segment.
const DIFFERS: &[(&str, &str)] = &[
    (
        "client.allowed_origins",
        "covers /v1/... and /anthropic/... only; the admin API has governance.auth_config.admin_allowed_origins",
    ),
    (
        "governance.customers.*.budgets",
        "one budget line per customer (read as a budget of its own plus budget_id)",
    ),
    (
        "providers.cohere",
        "spoken to through Cohere's OpenAI-compatible API, not its own",
    ),
    (
        "governance.virtual_keys.*.calendar_aligned",
        "resets are always calendar-aligned (UTC) for d/w/M/Q/Y periods",
    ),
    (
        "governance.teams.*.calendar_aligned",
        "resets are always calendar-aligned (UTC) for d/w/M/Q/Y periods",
    ),
    (
        "governance.customers.*.calendar_aligned",
        "resets are always calendar-aligned (UTC) for d/w/M/Q/Y periods",
    ),
    (
        "governance.budgets.*.calendar_aligned",
        "resets are always calendar-aligned (UTC) for d/w/M/Q/Y periods",
    ),
    (
        "governance.rate_limits.*.calendar_aligned",
        "resets are always calendar-aligned (UTC) for d/w/M/Q/Y periods",
    ),
    (
        "governance.budgets.*.current_usage",
        "a seed: counted only when the budget is new to the config store",
    ),
    (
        "governance.budgets.*.last_reset",
        "a seed: counted only when the budget is new to the config store",
    ),
];

/// Why a field is not read, by its own name (the docs' table of fields not read).
const NOT_READ: &[(&str, &str)] = &[
    ("logs_store", "no request log store"),
    ("log_retention_days", "no request log store"),
    (
        "disable_content_logging",
        "content is never logged (the access log has no bodies)",
    ),
    ("vector_store", "no semantic cache yet"),
    ("local_cache", "no response cache yet"),
    ("enable_local_cache", "no response cache yet"),
    ("mcp", "no MCP tool gateway"),
    (
        "framework",
        "pricing comes from governance.pricing and the shipped table",
    ),
    (
        "routing_rules",
        "no CEL routing rules; use the request's fallbacks",
    ),
    ("enable_governance", "governance is always on"),
    (
        "enable_litellm_fallbacks",
        "not in the current Bifrost schema",
    ),
    ("prometheus_labels", "no custom metric labels"),
    (
        "read_buffer_size",
        "header limits are the listener's own (server.*)",
    ),
    ("use_for_batch_api", "no batch API"),
    ("batch_s3_config", "no batch API"),
    ("blacklisted_models", "per-key blacklists are not read"),
    ("plugins", "only the governance plugin means something here"),
    ("meta_config", "not in the current Bifrost schema"),
];

/// Explain `text` (not validated beyond what a load does; `env` as for a load).
pub fn explain(
    text: &str,
    format: Format,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Explanation, ConfigError> {
    let reading = read(text, format, origin, env)?;
    Ok(explain_reading(origin, reading))
}

fn explain_reading(origin: &str, reading: Reading) -> Explanation {
    let mut entries = Vec::new();
    let mut covered: Vec<String> = Vec::new();
    for problem in &reading.problems {
        let path = dotted(&problem.path);
        entries.push(Entry {
            path: display(&path),
            status: Status::Rejected,
            reason: problem.reason.clone(),
        });
        covered.push(path);
    }
    for field in reading.unknown_fields.iter().chain(&reading.left_out) {
        if covered.iter().any(|c| within(field, c)) {
            continue;
        }
        let name = field
            .rsplit('.')
            .find(|segment| segment.parse::<usize>().is_err())
            .unwrap_or(field);
        let reason = NOT_READ
            .iter()
            .find(|(known, _)| *known == name)
            .map_or("not implemented", |(_, reason)| reason);
        let reason = if reading.left_out.contains(field) {
            "left out (see the notes)"
        } else {
            reason
        };
        entries.push(Entry {
            path: display(field),
            status: Status::Ignored,
            reason: reason.to_string(),
        });
        covered.push(field.clone());
    }
    let mut leaves = Vec::new();
    collect_leaves(&reading.written, String::new(), &mut leaves);
    let mut honoured: Vec<String> = Vec::new();
    for leaf in leaves {
        if covered.iter().any(|c| within(&leaf, c)) {
            continue;
        }
        if let Some((_, reason)) = DIFFERS.iter().find(|(pattern, _)| matches(&leaf, pattern)) {
            let path = display(&leaf);
            if !entries.iter().any(|e| e.path == path) {
                entries.push(Entry {
                    path,
                    status: Status::Differs,
                    reason: reason.to_string(),
                });
            }
            continue;
        }
        honoured.push(display(&leaf));
    }
    honoured.sort();
    honoured.dedup();
    entries.extend(honoured.into_iter().map(|path| Entry {
        path,
        status: Status::Honoured,
        reason: String::new(),
    }));
    let mut seen = std::collections::HashSet::new();
    entries.retain(|e| seen.insert((e.path.clone(), e.status, e.reason.clone())));
    Explanation {
        origin: origin.to_string(),
        entries,
        notes: reading.notes,
    }
}

/// Dotted paths of every leaf (scalar, empty object or empty array) of `value`.
fn collect_leaves(value: &Value, path: String, out: &mut Vec<String>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (key, child) in fields {
                collect_leaves(child, join(key), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (index, item) in items.iter().enumerate() {
                collect_leaves(item, join(&index.to_string()), out);
            }
        }
        _ if !path.is_empty() => out.push(path),
        _ => {}
    }
}

/// `a.0.b` → `a[].b`, for reading.
fn display(path: &str) -> String {
    let mut out = String::new();
    for segment in path.split('.') {
        if segment.parse::<usize>().is_ok() {
            out.push_str("[]");
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

/// Whether dotted `path` is `pattern` (`*` for one segment; array positions count as
/// segments) or below it.
fn matches(path: &str, pattern: &str) -> bool {
    let mut segments = path.split('.');
    pattern.split('.').all(|want| {
        segments
            .next()
            .is_some_and(|got| want == "*" || want == got)
    })
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}, field by field:", self.origin)?;
        let mut sections: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        for entry in &self.entries {
            let section = entry.path.split(['.', '[']).next().unwrap_or_default();
            sections.entry(section).or_default().push(entry);
        }
        for (section, entries) in sections {
            writeln!(f, "\n{section}")?;
            // Within its section a path is written without the section's name.
            let honoured: Vec<&str> = entries
                .iter()
                .filter(|e| e.status == Status::Honoured)
                .map(|e| {
                    let rest = e.path.strip_prefix(section).unwrap_or(&e.path);
                    let rest = rest.strip_prefix('.').unwrap_or(rest);
                    if rest.is_empty() {
                        section
                    } else {
                        rest
                    }
                })
                .collect();
            if !honoured.is_empty() {
                writeln!(f, "  honoured  {}", honoured.join(", "))?;
            }
            let mut others: Vec<&&Entry> = entries
                .iter()
                .filter(|e| e.status != Status::Honoured)
                .collect();
            others.sort_by_key(|e| (e.status, e.path.as_str()));
            for entry in others {
                writeln!(
                    f,
                    "  {:<9} {}: {}",
                    entry.status.label(),
                    entry.path,
                    entry.reason
                )?;
            }
        }
        if !self.notes.is_empty() {
            writeln!(f, "\nnotes")?;
            for note in &self.notes {
                writeln!(f, "  {note}")?;
            }
        }
        write!(
            f,
            "\nsummary: {} honoured, {} differ, {} ignored, {} rejected{}",
            self.count(Status::Honoured),
            self.count(Status::Differs),
            self.count(Status::Ignored),
            self.count(Status::Rejected),
            if self.count(Status::Rejected) == 0 {
                " (the file loads)"
            } else {
                " (the file does not load until the rejected fields are fixed)"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explained(text: &str) -> Explanation {
        explain(text, Format::Json, "bifrost.json", &|name| {
            (name == "OPENAI_API_KEY").then(|| "sk-test".to_string())
        })
        .expect("readable")
    }

    fn status_of(explanation: &Explanation, path: &str) -> Option<Status> {
        explanation
            .entries
            .iter()
            .find(|e| e.path == path)
            .map(|e| e.status)
    }

    #[test]
    fn each_field_gets_one_status() {
        let explanation = explained(
            r#"{"client": {"drop_excess_requests": true, "allowed_origins": ["https://app.example.com"],
                           "prometheus_labels": ["team"]},
                "providers": {
                  "openai": {"keys": [{"name": "k", "value": "env.OPENAI_API_KEY", "models": ["*"], "weight": 1,
                                       "use_for_batch_api": true}]},
                  "replicate": {"keys": [{"name": "a", "value": "x", "models": ["*"], "weight": 1}]}},
                "logs_store": {"enabled": true}}"#,
        );
        for (path, status) in [
            ("client.drop_excess_requests", Status::Honoured),
            ("providers.openai.keys[].value", Status::Honoured),
            ("client.allowed_origins[]", Status::Differs),
            ("client.prometheus_labels", Status::Ignored),
            ("providers.openai.keys[].use_for_batch_api", Status::Ignored),
            ("logs_store", Status::Ignored),
            ("providers.replicate", Status::Rejected),
        ] {
            assert_eq!(
                status_of(&explanation, path),
                Some(status),
                "{path} in {explanation}"
            );
        }
        assert!(
            status_of(&explanation, "providers.replicate.keys[].value").is_none(),
            "a rejected provider is one line"
        );
        let text = explanation.to_string();
        assert!(
            text.ends_with(
                "1 rejected (the file does not load until the rejected fields are fixed)"
            ),
            "{text}"
        );
        assert!(
            text.contains("  ignored   client.prometheus_labels: no custom metric labels"),
            "{text}"
        );
    }

    #[test]
    fn patterns_match_whole_segments() {
        assert!(matches(
            "governance.customers.0.budgets.0.id",
            "governance.customers.*.budgets"
        ));
        assert!(!matches(
            "governance.customers",
            "governance.customers.*.budgets"
        ));
        assert_eq!(
            display("providers.openai.keys.0.value"),
            "providers.openai.keys[].value"
        );
    }
}
