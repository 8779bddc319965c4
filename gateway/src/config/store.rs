use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `config_store` section: where providers, virtual keys and usage are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigStoreConfig {
    /// With `false`, everything lives in the config file and in memory.
    #[serde(default = "crate::config::client::default_true")]
    pub enabled: bool,
    /// Backend: `sqlite` (one node) or `postgres` (required for cluster mode).
    #[serde(default, rename = "type")]
    pub store_type: StoreType,
    /// Connection settings for the chosen backend.
    #[serde(default)]
    pub config: StoreConnectionConfig,
    /// Allow provider keys to be stored unencrypted in PostgreSQL when no encryption key is
    /// set (SQLite always allows it, with a warning).
    #[serde(default)]
    pub plaintext_secrets: bool,
}

impl Default for ConfigStoreConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            store_type: StoreType::Sqlite,
            config: StoreConnectionConfig::default(),
            plaintext_secrets: false,
        }
    }
}

/// Store backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreType {
    /// An embedded SQLite file.
    #[default]
    Sqlite,
    /// A PostgreSQL server shared by every replica.
    Postgres,
}

/// Backend connection fields; which ones apply depends on `type`.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StoreConnectionConfig {
    /// SQLite: database file path (default `./bifrost.db`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// PostgreSQL: server host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// PostgreSQL: server port (default 5432). A number, or a string holding one as Bifrost
    /// writes it (`"5432"`, or `env.PG_PORT`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "port_number_or_string"
    )]
    pub port: Option<u16>,
    /// PostgreSQL: user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// PostgreSQL: password (`env.NAME` allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// PostgreSQL: database name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_name: Option<String>,
    /// PostgreSQL: `disable`, `prefer`, `require`, `verify-ca` or `verify-full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<String>,
}

impl std::fmt::Debug for StoreConnectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConnectionConfig")
            .field("path", &self.path)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db_name", &self.db_name)
            .field("ssl_mode", &self.ssl_mode)
            .finish()
    }
}

/// A TCP port given as a number or as a string of digits.
fn port_number_or_string<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Number(i64),
        Text(String),
    }
    let out_of_range =
        |port: &dyn std::fmt::Display| format!("port {port} is out of range (1-65535)");
    match Option::<Port>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Port::Number(port)) => u16::try_from(port)
            .map(Some)
            .map_err(|_| serde::de::Error::custom(out_of_range(&port))),
        Some(Port::Text(text)) => text.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!(
                "expected a port number (1-65535), as a number or a string of digits; got \"{text}\""
            ))
        }),
    }
}

/// SSL modes PostgreSQL understands.
pub(crate) const SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn port(json: &str) -> Result<Option<u16>, String> {
        serde_json::from_str::<StoreConnectionConfig>(json)
            .map(|c| c.port)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_port_is_a_number_or_a_string_of_digits() {
        assert_eq!(port(r#"{"port": 5432}"#), Ok(Some(5432)));
        assert_eq!(port(r#"{"port": "5432"}"#), Ok(Some(5432)));
        assert_eq!(port(r#"{}"#), Ok(None));
        assert_eq!(port(r#"{"port": null}"#), Ok(None));
        for bad in [
            r#"{"port": "fivefourthreetwo"}"#,
            r#"{"port": "70000"}"#,
            r#"{"port": 70000}"#,
        ] {
            assert!(port(bad).is_err(), "{bad}");
        }
        assert!(port(r#"{"port": "x"}"#)
            .unwrap_err()
            .contains("expected a port number"));
    }
}
