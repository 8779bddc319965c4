//! Reading a config document: syntax, `env.NAME` references, typed fields, unknown fields and
//! validation, in that order.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{ConfigError, FieldError, GatewayConfig};

/// A parsed, validated config and what was noticed on the way.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The typed config with `env.NAME` references resolved.
    pub config: GatewayConfig,
    /// Paths of fields the gateway does not know (ignored, worth a warning).
    pub unknown_fields: Vec<String>,
    /// Other things worth a warning (an unset `env.NAME` inside an ignored field).
    pub warnings: Vec<String>,
}

/// Document formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON (`config.json`).
    Json,
    /// YAML (`.yaml`/`.yml`).
    Yaml,
}

impl Format {
    /// Guess from the file extension; JSON unless it says YAML.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Json,
        }
    }
}

impl GatewayConfig {
    /// Read and validate a config file, resolving `env.NAME` from the process environment.
    pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        parse_config(
            &text,
            Format::from_path(path),
            &path.display().to_string(),
            &|name| std::env::var(name).ok(),
        )
    }
}

/// Parse and validate a config document. `env` looks up environment variables (a parameter so
/// tests need not touch the process environment).
pub fn parse_config(
    text: &str,
    format: Format,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<LoadedConfig, ConfigError> {
    let reading = read(text, format, origin, env)?;
    let mut warnings: Vec<String> = reading
        .ignored_env
        .iter()
        .map(|problem| format!("{problem} (in an ignored field)"))
        .chain(reading.notes)
        .collect();
    let unknown_fields = reading.unknown_fields;
    match reading.config {
        Some(config) if reading.problems.is_empty() => Ok(LoadedConfig {
            config,
            unknown_fields,
            warnings,
        }),
        _ => {
            let unknown = unknown_fields
                .iter()
                .map(|field| format!("unknown field {field} is ignored"));
            warnings.splice(0..0, unknown);
            Err(ConfigError::Invalid {
                origin: origin.to_string(),
                problems: reading.problems,
                warnings,
            })
        }
    }
}

/// Everything one read of a document found, valid or not.
pub(super) struct Reading {
    /// The document as written (before `env.NAME` resolution and Bifrost folds).
    pub written: Value,
    /// The typed config, when the types allowed one.
    pub config: Option<GatewayConfig>,
    /// Type errors, fold problems and validation problems, each with its path.
    pub problems: Vec<FieldError>,
    /// Dotted paths of fields the gateway does not know.
    pub unknown_fields: Vec<String>,
    /// Dotted paths of sections a Bifrost fold left out as meaningless here.
    pub left_out: Vec<String>,
    /// What the folds changed (logged at start).
    pub notes: Vec<String>,
    /// Unset `env.NAME` inside ignored or left-out sections (warnings, not problems).
    pub ignored_env: Vec<FieldError>,
}

/// Syntax, `env.NAME`, Bifrost folds, typed read and validation of `text`; `Err` only when
/// the document cannot be read at all (syntax, not an object).
pub(super) fn read(
    text: &str,
    format: Format,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Reading, ConfigError> {
    let mut document = parse_document(text, format, origin)?;
    match &document {
        Value::Object(_) => {}
        // Only a YAML file with nothing in it is the empty config; `null`, `~` or `[]` are not.
        Value::Null if format == Format::Yaml && yaml_is_empty(text) => {
            document = Value::Object(Default::default());
        }
        other => {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                problems: vec![FieldError::new(
                    "",
                    format!(
                        "the config must be an object ({{\"providers\": ...}}), not {}",
                        json_kind(other)
                    ),
                )],
                warnings: Vec::new(),
            });
        }
    }

    let written = document.clone();
    let mut env_problems = Vec::new();
    resolve_env_references(&mut document, &mut String::new(), env, &mut env_problems);
    let mut folding_problems = Vec::new();
    let mut left_out = Vec::new();
    let notes = match &mut document {
        Value::Object(fields) => super::compat::fold(fields, &mut folding_problems, &mut left_out),
        _ => Vec::new(),
    };

    let typed = super::typed::read(document);
    // An unset variable in a section the gateway ignores (`vector_store`, `plugins[].config`,
    // a provider left out, ...) need not be exported for nothing: a warning, not an error.
    let (ignored_env, mut problems): (Vec<FieldError>, Vec<FieldError>) =
        env_problems.into_iter().partition(|problem| {
            let path = dotted(&problem.path);
            typed
                .unknown_fields
                .iter()
                .chain(&left_out)
                .any(|field| super::typed::within(&path, field))
        });
    problems.extend(folding_problems);
    problems.extend(typed.problems.iter().cloned());
    if let Some(config) = &typed.config {
        // Checks on values that had the wrong type would see their defaults: not reported.
        problems.extend(
            config
                .validate()
                .into_iter()
                .filter(|problem| !typed.touches_removed(&problem.path)),
        );
    }
    Ok(Reading {
        written,
        config: typed.config,
        problems,
        unknown_fields: typed.unknown_fields,
        left_out,
        notes,
        ignored_env,
    })
}

/// `a[0].b` as serde_ignored writes it: `a.0.b`.
pub(super) fn dotted(path: &str) -> String {
    path.replace('[', ".").replace(']', "")
}

/// Whether a YAML text holds no document: blank lines, comments and document markers only.
fn yaml_is_empty(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line.starts_with('#') || line == "---" || line == "...")
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_document(text: &str, format: Format, origin: &str) -> Result<Value, ConfigError> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|err| ConfigError::Syntax {
            origin: origin.to_string(),
            format: "JSON",
            message: err.to_string(),
        }),
        Format::Yaml => {
            let de = serde_yaml::Deserializer::from_str(text);
            Value::deserialize(de).map_err(|err| ConfigError::Syntax {
                origin: origin.to_string(),
                format: "YAML",
                message: err.to_string(),
            })
        }
    }
}

/// Replace every string of the form `env.NAME` with the variable's value; a missing variable is
/// a problem at that field's path.
fn resolve_env_references(
    value: &mut Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<FieldError>,
) {
    match value {
        Value::String(text) => {
            if let Some(name) = env_reference(text) {
                match env(name) {
                    Some(resolved) => *text = resolved,
                    None => problems.push(FieldError::new(
                        path.clone(),
                        format!(
                            "environment variable {name} is not set (referenced as \"{text}\")"
                        ),
                    )),
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                resolve_env_references(item, path, env, problems);
                path.truncate(len);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                resolve_env_references(item, path, env, problems);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// `env.NAME` → `NAME` when NAME is a plausible variable name.
fn env_reference(text: &str) -> Option<&str> {
    let name = text.strip_prefix("env.")?;
    let mut chars = name.chars();
    let first = chars.next()?;
    let plausible = (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    plausible.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LoadedConfig, ConfigError> {
        parse_config(text, Format::Json, "test.json", &|name| match name {
            "OPENAI_API_KEY" => Some("sk-test".to_string()),
            _ => None,
        })
    }

    fn problems(text: &str) -> Vec<String> {
        match parse(text) {
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.iter().map(|p| p.to_string()).collect()
            }
            other => panic!("expected invalid config, got {other:?}"),
        }
    }

    #[test]
    fn bifrost_style_config_is_accepted() {
        let loaded = parse(
            r#"{
              "$schema": "https://www.getbifrost.ai/schema",
              "client": {"drop_excess_requests": false, "initial_pool_size": 500,
                         "enable_logging": true, "enforce_governance_header": true,
                         "max_request_body_size_mb": 10},
              "providers": {
                "openai": {
                  "keys": [{"name": "primary", "value": "env.OPENAI_API_KEY",
                            "models": ["gpt-4o-mini"], "weight": 1.0}],
                  "network_config": {"default_request_timeout_in_seconds": 30, "max_retries": 1,
                                     "retry_backoff_initial_ms": 100, "retry_backoff_max_ms": 2000},
                  "concurrency_and_buffer_size": {"concurrency": 3, "buffer_size": 10}
                }
              },
              "config_store": {"enabled": true, "type": "sqlite", "config": {"path": "./config.db"}},
              "cluster_config": {"enabled": false, "gossip": {"port": 10101,
                 "config": {"timeout_seconds": 10, "success_threshold": 3, "failure_threshold": 3}}}
            }"#,
        )
        .expect("valid config");
        let config = loaded.config;
        assert_eq!(config.providers["openai"].keys[0].value, "sk-test");
        assert!(
            config.client.enforce_auth_on_inference,
            "old name is an alias"
        );
        assert_eq!(config.client.initial_pool_size, 500);
        assert_eq!(config.providers["openai"].network_config.max_retries, 1);
        assert!(
            loaded.unknown_fields.is_empty(),
            "{:?}",
            loaded.unknown_fields
        );
    }

    #[test]
    fn unknown_fields_are_reported_with_their_path() {
        let loaded = parse(r#"{"client": {"log_retention_days": 7}, "plugins": []}"#)
            .expect("unknown fields are not fatal");
        assert_eq!(
            loaded.unknown_fields,
            vec!["client.log_retention_days", "plugins"]
        );
    }

    #[test]
    fn missing_env_variable_names_the_field() {
        let found = problems(r#"{"providers": {"openai": {"keys": [{"value": "env.NOPE_KEY"}]}}}"#);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("providers.openai.keys[0].value: environment variable NOPE_KEY"),
            "{found:?}"
        );
    }

    #[test]
    fn wrong_type_names_the_field() {
        let found =
            problems(r#"{"providers": {"openai": {"keys": [{"value": "k", "weight": "heavy"}]}}}"#);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("providers.openai.keys[0].weight:"),
            "{found:?}"
        );
    }

    #[test]
    fn a_root_that_is_not_an_object_is_refused() {
        for (text, format) in [
            ("[]", Format::Json),
            ("null", Format::Json),
            ("42", Format::Json),
            ("\"providers\"", Format::Json),
            ("~", Format::Yaml),
            ("null\n", Format::Yaml),
            ("- providers\n", Format::Yaml),
        ] {
            let err = parse_config(text, format, "root", &|_| None)
                .expect_err("a root that is not an object");
            assert!(
                err.to_string()
                    .contains("(root): the config must be an object"),
                "{text:?}: {err}"
            );
        }
        for blank in ["", "\n", "# nothing yet\n---\n"] {
            assert!(parse_config(blank, Format::Yaml, "blank.yaml", &|_| None).is_ok());
        }
    }

    #[test]
    fn type_errors_semantic_errors_and_warnings_come_in_one_report() {
        let err = parse(
            r#"{"client": {"initial_pool_size": "many"},
                "server": {"drain_timeout_seconds": "long", "max_connections": 0},
                "providers": {"openai": {"keys": [{"value": "k", "weight": "heavy", "models": ["*"]}]},
                              "bad name!": {"keys": [{"value": "k", "models": ["*"]}]}},
                "log_retention_days": 7}"#,
        )
        .expect_err("invalid");
        let ConfigError::Invalid {
            problems, warnings, ..
        } = &err
        else {
            panic!("expected invalid, got {err}");
        };
        let found: Vec<String> = problems.iter().map(ToString::to_string).collect();
        for path in [
            "client.initial_pool_size:",
            "server.drain_timeout_seconds:",
            "providers.openai.keys[0].weight:",
            "server.max_connections:",
            "providers.bad name!",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(path)),
                "{path} missing from {found:?}"
            );
        }
        assert_eq!(warnings, &["unknown field log_retention_days is ignored"]);
        assert!(err
            .to_string()
            .contains("warning: unknown field log_retention_days is ignored"));
    }

    #[test]
    fn an_unset_variable_in_an_ignored_section_is_a_warning() {
        let loaded = parse(
            r#"{"vector_store": {"config": {"api_key": "env.NOPE_VECTOR_KEY"}},
                "plugins": [{"name": "x", "config": {"token": "env.NOPE_PLUGIN_TOKEN"}}]}"#,
        )
        .expect("ignored sections do not need their variables");
        assert_eq!(loaded.unknown_fields, ["plugins", "vector_store"]);
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(loaded
            .warnings
            .iter()
            .any(|w| w
                .starts_with("plugins[0].config.token: environment variable NOPE_PLUGIN_TOKEN")));
        // In a field the gateway reads, it is still an error.
        assert!(parse(r#"{"providers": {"openai": {"keys": [{"value": "env.NOPE"}]}}}"#).is_err());
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = parse("{\n  \"client\": {,}\n}").expect_err("bad JSON");
        let text = err.to_string();
        assert!(
            text.contains("not valid JSON") && text.contains("line 2"),
            "{text}"
        );
    }

    #[test]
    fn yaml_documents_are_read_like_json() {
        let loaded = parse_config(
            "providers:\n  openai:\n    keys:\n      - value: sk-1\n        weight: 2\n",
            Format::Yaml,
            "test.yaml",
            &|_| None,
        )
        .expect("valid YAML");
        assert_eq!(loaded.config.providers["openai"].keys[0].weight, 2.0);
    }

    #[test]
    fn empty_yaml_is_the_default_config() {
        let loaded = parse_config("", Format::Yaml, "empty.yaml", &|_| None).expect("empty ok");
        assert_eq!(loaded.config, GatewayConfig::default());
    }

    /// Gateway config files under `dir`, subdirectories included; `samples/` holds
    /// Kubernetes resources and `docker-compose.yml` is compose's, not gateway configs.
    fn gateway_configs_under(dir: &Path, found: &mut Vec<(std::path::PathBuf, Format)>) {
        for entry in std::fs::read_dir(dir).expect("config directory readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name != "samples") {
                    gateway_configs_under(&path, found);
                }
                continue;
            }
            if path
                .file_name()
                .is_some_and(|name| name == "docker-compose.yml")
            {
                continue;
            }
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => found.push((path, Format::Json)),
                Some("yaml" | "yml") => found.push((path, Format::Yaml)),
                _ => {}
            }
        }
    }

    #[test]
    fn shipped_example_configs_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../config");
        let mut configs = Vec::new();
        gateway_configs_under(Path::new(dir), &mut configs);
        for (path, format) in &configs {
            let text = std::fs::read_to_string(path).expect("readable example");
            let loaded = parse_config(&text, *format, &path.display().to_string(), &|_| {
                Some("placeholder".to_string())
            })
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                loaded.unknown_fields.is_empty(),
                "{}: {:?}",
                path.display(),
                loaded.unknown_fields
            );
        }
        let names: Vec<String> = configs
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.contains("cluster-local/node-1.json")),
            "subdirectories are checked too: {names:?}"
        );
    }
}
