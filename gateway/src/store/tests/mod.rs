//! Store tests. Every scenario runs on SQLite (a temp file) and, when
//! `BIFROST_TEST_POSTGRES_URL` is set, on PostgreSQL in a fresh database of its own, so
//! scenarios run in parallel. `scripts/with-postgres.sh` (used by `make test`) starts a
//! throwaway server and sets the variable; databases are not dropped, the server is.

mod crud;
mod import;
mod open;
mod secrets;
mod usage;

use std::collections::BTreeMap;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AnyConnection, Connection, Executor};
use tempfile::TempDir;

use super::{Store, StoreError};
use crate::config::{
    BudgetConfig, ClusterLimitMode, ConfigStoreConfig, CustomerConfig, GovernanceConfig, KeyConfig,
    ProviderConfig, RateLimitConfig, StalePolicy, StoreConnectionConfig, StoreType, TeamConfig,
    VirtualKeyConfig, VirtualKeyProviderConfig,
};

pub(super) const TEST_KEY: &str = "a test encryption key that is long enough";
const POSTGRES_URL_VAR: &str = "BIFROST_TEST_POSTGRES_URL";

/// One scenario on both backends: `mod $name { fn sqlite(); fn postgres() }`.
macro_rules! on_both_backends {
    ($(#[$meta:meta])* async fn $name:ident($db:ident: TestDb) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario($db: $crate::store::tests::TestDb) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                scenario($crate::store::tests::TestDb::sqlite()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::store::tests::TestDb::postgres().await {
                    scenario(db).await
                }
            }
        }
    };
}
pub(super) use on_both_backends;

/// A database of one test's own.
pub(super) struct TestDb {
    pub backend: StoreType,
    config: ConfigStoreConfig,
    url: String,
    _dir: Option<TempDir>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store test.db"); // a space: paths are URL-encoded
        let path = path.to_str().expect("UTF-8 temp path").to_string();
        TestDb {
            backend: StoreType::Sqlite,
            config: ConfigStoreConfig {
                store_type: StoreType::Sqlite,
                config: StoreConnectionConfig {
                    path: Some(path.clone()),
                    ..Default::default()
                },
                ..Default::default()
            },
            url: format!("sqlite://{}", path.replace(' ', "%20")),
            _dir: Some(dir),
        }
    }

    /// A fresh database on the test server, or `None` when no server is configured.
    pub async fn postgres() -> Option<TestDb> {
        let server = std::env::var(POSTGRES_URL_VAR).ok()?;
        let name = format!("t_{:016x}", fastrand::u64(..));
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|err| panic!("{POSTGRES_URL_VAR}={server}: {err}"));
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create test database");
        let _ = admin.close().await;
        let options = PgConnectOptions::from_str(&server).expect("postgres URL");
        let config = ConfigStoreConfig {
            store_type: StoreType::Postgres,
            config: StoreConnectionConfig {
                host: Some(options.get_host().to_string()),
                port: Some(options.get_port()),
                user: Some(options.get_username().to_string()),
                db_name: Some(name.clone()),
                ssl_mode: Some("disable".to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        let url = format!(
            "postgres://{}@{}:{}/{name}",
            options.get_username(),
            options.get_host(),
            options.get_port()
        );
        Some(TestDb {
            backend: StoreType::Postgres,
            config,
            url,
            _dir: None,
        })
    }

    pub fn config(&self) -> ConfigStoreConfig {
        self.config.clone()
    }

    /// Opens the store with [`TEST_KEY`].
    pub async fn open(&self) -> Store {
        self.open_with(Some(TEST_KEY)).await.expect("open store")
    }

    pub async fn open_with(&self, key: Option<&str>) -> Result<Store, StoreError> {
        Store::open(&self.config, key).await
    }

    /// A raw connection, for reading columns as stored.
    pub async fn raw(&self) -> AnyConnection {
        sqlx::any::install_default_drivers();
        AnyConnection::connect(&self.url)
            .await
            .expect("raw connection")
    }
}

#[test]
fn ci_never_skips_the_postgres_store_tests() {
    let ci = std::env::var("CI").unwrap_or_default();
    if !ci.is_empty() && ci != "false" && ci != "0" {
        assert!(
            std::env::var_os(POSTGRES_URL_VAR).is_some(),
            "CI is set but {POSTGRES_URL_VAR} is not, so every PostgreSQL store test would pass without running; run the tests through scripts/with-postgres.sh (make test does)"
        );
    }
}

// Fixtures: a small config file's worth of providers and governance.

pub(super) fn key(id: &str, value: &str) -> KeyConfig {
    KeyConfig {
        id: Some(id.to_string()),
        name: Some(format!("{id} name")),
        value: value.to_string(),
        models: vec!["gpt-4o-mini".to_string()],
        weight: 2.5,
        vllm_key_config: None,
        ollama_key_config: None,
        sgl_key_config: None,
        azure_key_config: None,
        bedrock_key_config: None,
        vertex_key_config: None,
    }
}

pub(super) fn provider(keys: Vec<KeyConfig>) -> ProviderConfig {
    let mut provider = ProviderConfig {
        keys,
        ..Default::default()
    };
    provider.network_config.base_url = Some("http://127.0.0.1:9090".to_string());
    if let Some(first) = provider.keys.first_mut() {
        first.vllm_key_config = Some(crate::config::SelfHostedKey {
            url: "http://gpu-1:8000".to_string(),
            model_name: Some("llama-3-8b".to_string()),
        });
    }
    provider.network_config.max_retries = 2;
    provider.network_config.extra_headers.insert(
        "x-upstream-token".to_string(),
        "header-secret-42".to_string(),
    );
    provider.circuit_breaker.failure_threshold = 7;
    provider.proxy_config = Some(crate::config::ProxyConfig {
        proxy_type: crate::config::ProxyType::Http,
        url: Some("http://proxy.internal:3128".to_string()),
        username: Some("egress".to_string()),
        password: Some("proxy-secret-7".to_string()),
        ca_cert_pem: None,
    });
    provider
}

pub(super) fn budget(id: &str, max_limit: f64) -> BudgetConfig {
    BudgetConfig {
        id: id.to_string(),
        max_limit,
        reset_duration: "1M".to_string(),
        current_usage: None,
        last_reset: None,
    }
}

pub(super) fn virtual_key(id: &str, value: &str) -> VirtualKeyConfig {
    VirtualKeyConfig {
        id: id.to_string(),
        name: format!("{id} name"),
        description: None,
        value: value.to_string(),
        is_active: true,
        team_id: None,
        customer_id: None,
        budget_id: None,
        rate_limit_id: None,
        provider_configs: Vec::new(),
        max_in_flight: None,
        expires_at: None,
    }
}

/// Providers `openai` (two keys) and `anthropic`; customer `acme` → team `platform` → virtual
/// key `vk-app`, each level with a budget; a rate limit on the key and on its OpenAI use.
pub(super) fn sample_config() -> (BTreeMap<String, ProviderConfig>, GovernanceConfig) {
    let mut providers = BTreeMap::new();
    providers.insert(
        "openai".to_string(),
        provider(vec![
            key("oa-1", "sk-openai-one"),
            key("oa-2", "sk-openai-two"),
        ]),
    );
    providers.insert(
        "anthropic".to_string(),
        provider(vec![key("an-1", "sk-ant-one")]),
    );
    // An Entra ID application: its secret is sealed, the rest of azure_key_config is not.
    if let Some(openai) = providers.get_mut("openai") {
        openai.keys[1].azure_key_config = Some(crate::config::AzureKeyConfig {
            endpoint: "https://mine.openai.azure.com".to_string(),
            deployments: Default::default(),
            api_version: Some("2024-10-21".to_string()),
            client_id: Some("app-1".to_string()),
            client_secret: Some("entra-secret-5".to_string()),
            tenant_id: Some("tenant-1".to_string()),
            scopes: vec![],
        });
    }
    // Bedrock credentials, sealed as one column (the store does not check provider kinds).
    if let Some(anthropic) = providers.get_mut("anthropic") {
        anthropic.keys[0].bedrock_key_config = Some(crate::config::BedrockKeyConfig {
            access_key: Some("AKIDSTORETEST".to_string()),
            secret_key: Some("bedrock-secret-9".to_string()),
            session_token: Some("bedrock-session-token-3".to_string()),
            region: Some("eu-central-1".to_string()),
            arn: Some("arn:aws:bedrock:eu-central-1:123456789012:inference-profile".to_string()),
            deployments: [("claude".to_string(), "eu.anthropic.claude".to_string())].into(),
            ..Default::default()
        });
        anthropic.keys[0].vertex_key_config = Some(crate::config::VertexKeyConfig {
            project_id: "mock-project".to_string(),
            region: "europe-west4".to_string(),
            auth_credentials: Some("{\"private_key\": \"vertex-sa-secret-8\"}".to_string()),
            deployments: [("flash".to_string(), "gemini-2.5-flash".to_string())].into(),
        });
    }
    let mut vk = virtual_key("vk-app", "sk-bf-app-secret");
    vk.description = Some("the app".to_string());
    vk.team_id = Some("platform".to_string());
    vk.budget_id = Some("b-vk".to_string());
    vk.rate_limit_id = Some("rl-vk".to_string());
    vk.max_in_flight = Some(8);
    vk.expires_at = Some("2031-01-31T00:00:00+01:00".to_string());
    vk.provider_configs = vec![VirtualKeyProviderConfig {
        provider: "openai".to_string(),
        allowed_models: vec!["gpt-4o-mini".to_string()],
        key_ids: vec!["oa-1".to_string()],
        blacklisted_models: vec!["gpt-4o".to_string()],
        weight: 1.0,
        budget_id: Some("b-vk-openai".to_string()),
        rate_limit_id: Some("rl-vk".to_string()),
    }];
    let governance = GovernanceConfig {
        virtual_keys: vec![vk],
        teams: vec![TeamConfig {
            id: "platform".to_string(),
            name: "Platform".to_string(),
            customer_id: Some("acme".to_string()),
            budget_id: Some("b-team".to_string()),
            rate_limit_id: Some("rl-vk".to_string()),
        }],
        customers: vec![CustomerConfig {
            id: "acme".to_string(),
            name: "Acme".to_string(),
            budget_id: Some("b-customer".to_string()),
            rate_limit_id: Some("rl-vk".to_string()),
        }],
        budgets: vec![
            budget("b-customer", 1000.0),
            budget("b-team", 100.0),
            budget("b-vk", 10.0),
            budget("b-vk-openai", 5.0),
        ],
        rate_limits: vec![RateLimitConfig {
            id: "rl-vk".to_string(),
            request_max_limit: Some(60),
            request_reset_duration: Some("1m".to_string()),
            token_max_limit: Some(100_000),
            token_reset_duration: Some("1h".to_string()),
            cluster_mode: Some(ClusterLimitMode::Strict),
            cluster_stale_policy: Some(StalePolicy::Closed),
        }],
        ..GovernanceConfig::default()
    };
    (providers, governance)
}

/// A store with the sample config imported.
pub(super) async fn sample_store(db: &TestDb) -> Store {
    let store = db.open().await;
    let (providers, governance) = sample_config();
    store
        .import(&providers, &governance)
        .await
        .expect("import sample");
    store
}
