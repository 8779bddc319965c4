//! Bifrost's own config files (`../shared/bifrost-configs/`, unchanged copies from the Bifrost
//! repository) through the gateway as a migrating user runs them: `--check-config` with dummy
//! values for their `env.` references, then a start with what loads.
//!
//! What may fail is only a provider whose wire format the gateway does not speak yet (or one a
//! file configures against Bifrost's own schema, listed in `INVALID_IN_BIFROST`); every
//! warning left must be a documented difference (docs/configuration.md, "Differences from
//! Bifrost"). Without `../shared/` (a clone outside CI) the test says so and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use bifrost_e2e::harness::{binary, Gateway};
use serde_json::{Map, Value};

/// The shared directory, when this checkout has one next to it.
fn shared_configs() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bifrost-configs");
    dir.is_dir().then_some(dir)
}

fn bifrost_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the shared directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

/// A dummy value for every `env.NAME` in `text`.
fn dummy_env(text: &str) -> Vec<(String, String)> {
    let mut names: Vec<String> = text
        .split("\"env.")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            // Addresses must look like one (an Azure endpoint is checked to be a URL), and
            // regions like one (a Bedrock key's region is its endpoint's host).
            let value = if name.ends_with("ENDPOINT") || name.ends_with("URL") {
                format!(
                    "https://dummy-{}.example",
                    name.to_lowercase().replace('_', "-")
                )
            } else if name.ends_with("REGION") {
                "us-east-1".to_string()
            } else if name.ends_with("LOCATION") {
                "us-central1".to_string()
            } else if name.ends_with("PROJECT_ID") {
                "dummy-project".to_string()
            } else if name.contains("CREDENTIALS") {
                // A service account's JSON key (Vertex AI's auth_credentials): the mock's test key.
                let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("testdata/vertex/service-account.json");
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            } else {
                format!("dummy-{}", name.to_lowercase())
            };
            (name, value)
        })
        .collect()
}

/// `--check-config` on `path`: success, the problems (`  - ...` lines), the warnings.
fn check(path: &Path, env: &[(String, String)]) -> (bool, Vec<String>, Vec<String>) {
    let output = Command::new(binary("bifrost-gateway"))
        .args(["--check-config", "--config"])
        .arg(path)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("bifrost-gateway runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let problems = text
        .lines()
        .filter_map(|line| line.strip_prefix("  - "))
        .map(str::to_string)
        .collect();
    let warnings = text
        .lines()
        .filter_map(|line| line.strip_prefix("warning: "))
        .map(str::to_string)
        .collect();
    (output.status.success(), problems, warnings)
}

/// The section of the configuration docs that lists what differs from Bifrost.
fn documented_differences() -> String {
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .expect("read docs/configuration.md");
    let start = docs
        .find("## Differences from Bifrost")
        .expect("docs/configuration.md has a Differences from Bifrost section");
    let rest = &docs[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

/// Warnings that come from the gateway's own reading of a Bifrost file (each documented where
/// the setting is), recognised by their wording.
const NOTE_PATTERNS: [&str; 7] = [
    " is read as ",
    " is ignored: Bifrost uses it for ",
    " is ignored with the provider",
    " is ignored: the gateway does not serve ",
    "deprecated and ignored, as in Bifrost",
    "version 2 (the default, as in Bifrost 1.5 and later)",
    "(in an ignored field)",
];

/// A warning that is neither a known note nor an unknown field the docs list.
fn undocumented(warning: &str, differences: &str) -> bool {
    if NOTE_PATTERNS
        .iter()
        .any(|pattern| warning.contains(pattern))
    {
        return false;
    }
    let Some(field) = warning
        .strip_prefix("unknown field ")
        .and_then(|rest| rest.strip_suffix(" is ignored"))
    else {
        return true;
    };
    // The docs name a field by its own name, alone or at the end of a path: `logs_store`,
    // `keys[].use_for_batch_api`.
    let name = field
        .rsplit('.')
        .find(|segment| segment.parse::<usize>().is_err())
        .unwrap_or(field);
    !(differences.contains(&format!("`{name}`")) || differences.contains(&format!(".{name}`")))
}

const NOT_SPOKEN: &str = "the gateway does not speak it yet";

/// Problems a shared file has against Bifrost's own schema, which the gateway reports too:
/// (file, problem path, why the file is wrong). Such a provider is left out for the start.
const INVALID_IN_BIFROST: &[(&str, &str, &str)] = &[];

fn expected(file: &str, problem: &str) -> bool {
    problem.contains(NOT_SPOKEN)
        || INVALID_IN_BIFROST
            .iter()
            .any(|(f, path, _)| *f == file && problem.starts_with(&format!("{path}:")))
}

/// The file without the providers refused as not spoken yet (and the virtual keys' entries
/// for them), with its SQLite store in the gateway's temporary directory.
fn without_unspoken_providers(document: &mut Map<String, Value>, problems: &[String]) {
    let refused: Vec<String> = problems
        .iter()
        .filter_map(|problem| {
            let path = problem.split(':').next()?;
            let rest = path.strip_prefix("providers.")?;
            rest.split(['.', '[']).next().map(str::to_string)
        })
        .collect();
    if let Some(Value::Object(providers)) = document.get_mut("providers") {
        providers.retain(|name, _| !refused.contains(name));
    }
    let keys = document
        .get_mut("governance")
        .and_then(|g| g.get_mut("virtual_keys"))
        .and_then(Value::as_array_mut);
    for key in keys.into_iter().flatten() {
        if let Some(Value::Array(configs)) = key.get_mut("provider_configs") {
            configs.retain(|c| {
                let provider = c
                    .get("provider")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                !refused.iter().any(|r| r == provider)
            });
        }
    }
    // A path on a Bifrost developer's laptop: the harness puts the store in a temp dir.
    if let Some(Value::Object(config)) = document
        .get_mut("config_store")
        .and_then(|store| store.get_mut("config"))
    {
        config.remove("path");
    }
}

#[tokio::test]
async fn bifrost_config_files_load_with_only_documented_differences() {
    let Some(dir) = shared_configs() else {
        eprintln!("SKIPPED: ../shared/bifrost-configs is not next to this checkout");
        return;
    };
    let files = bifrost_files(&dir);
    assert!(
        files.len() >= 9,
        "expected the nine shared files: {files:?}"
    );
    let differences = documented_differences();
    let mut report = Vec::new();
    for path in &files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        let text = std::fs::read_to_string(path).expect("read a Bifrost file");
        let env = dummy_env(&text);
        let (ok, problems, warnings) = check(path, &env);
        let other_problems: Vec<&String> =
            problems.iter().filter(|p| !expected(&name, p)).collect();
        assert!(
            other_problems.is_empty(),
            "{name}: problems other than providers not spoken yet: {other_problems:#?}"
        );
        assert_eq!(
            ok,
            problems.is_empty(),
            "{name}: exit status and problems agree"
        );
        let unexplained: Vec<&String> = warnings
            .iter()
            .filter(|w| undocumented(w, &differences))
            .collect();
        assert!(
            unexplained.is_empty(),
            "{name}: warnings that docs/configuration.md (Differences from Bifrost) does not explain: {unexplained:#?}"
        );

        // What remains without the refused providers loads, starts and answers /health.
        let mut document: Map<String, Value> =
            serde_json::from_str(&text).expect("a Bifrost file is JSON");
        without_unspoken_providers(&mut document, &problems);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let gateway = Gateway::start_with(&Value::Object(document), &env).await;
        let health = reqwest::get(gateway.url("/health"))
            .await
            .expect("the gateway answers");
        assert_eq!(health.status(), reqwest::StatusCode::OK, "{name}");
        report.push(format!(
            "{name}: {} ({} refused provider(s), {} warning(s))",
            if ok {
                "loads"
            } else {
                "loads without the refused providers"
            },
            problems.len(),
            warnings.len()
        ));
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn an_undocumented_warning_is_caught() {
    let differences = "| `logs_store`, `keys[].use_for_batch_api` | ignored |";
    assert!(!undocumented(
        "unknown field logs_store is ignored",
        differences
    ));
    assert!(!undocumented(
        "unknown field providers.openai.keys.0.use_for_batch_api is ignored",
        differences
    ));
    assert!(undocumented(
        "unknown field providers.x.keys.0.shiny_new_thing is ignored",
        differences
    ));
    assert!(undocumented("something nobody wrote down", differences));
    assert!(!undocumented(
        "plugins[0] (governance): is_vk_mandatory is read as client.enforce_auth_on_inference: true",
        differences
    ));
}
