//! The test PostgreSQL server: a fresh database per test, and reading what landed in it.

use serde_json::Value;

use super::skip_unless_ci;

/// `config_store` settings for a fresh database on the test PostgreSQL server named by
/// `BIFROST_TEST_POSTGRES_URL` (`make test` starts one). `None` outside CI when no server is
/// configured, so the caller skips; in CI a missing server is a failure.
pub fn postgres_store() -> Option<Value> {
    let Ok(url) = std::env::var("BIFROST_TEST_POSTGRES_URL") else {
        return skip_unless_ci(
            "BIFROST_TEST_POSTGRES_URL is not set",
            "run the tests through `make test`, which starts a PostgreSQL and sets it",
        );
    };
    let name = format!("e2e_{}", fastrand::u64(..));
    let status = std::process::Command::new("psql")
        .args([url.as_str(), "-q", "-c", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql runs");
    assert!(status.success(), "creating the test database failed");
    // postgres://user@host:port/db
    let rest = url.strip_prefix("postgres://").expect("postgres URL");
    let (user, rest) = rest.split_once('@').expect("user@host");
    let (host_port, _) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = host_port.rsplit_once(':').expect("host:port");
    Some(serde_json::json!({
        "enabled": true, "type": "postgres",
        "config": {"host": host, "port": port.parse::<u16>().expect("port"), "user": user,
                   "db_name": name, "ssl_mode": "disable"}
    }))
}

/// A budget's `current_usage` straight from the PostgreSQL database of `store` (a
/// [`postgres_store`] value), read with `psql`; `None` when the budget row does not exist.
pub fn stored_budget_usage(store: &Value, budget_id: &str) -> Option<f64> {
    let config = &store["config"];
    let url = format!(
        "postgres://{}@{}:{}/{}",
        config["user"].as_str().expect("user"),
        config["host"].as_str().expect("host"),
        config["port"],
        config["db_name"].as_str().expect("db_name")
    );
    let output = std::process::Command::new("psql")
        .args([url.as_str(), "-qtA", "-c"])
        .arg(format!(
            "SELECT current_usage FROM budgets WHERE id = '{}'",
            budget_id.replace('\'', "''")
        ))
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (!text.is_empty()).then(|| text.parse().expect("a number"))
}
