//! Opening the store: migrations, concurrent start-ups, connection errors.

use super::*;
use crate::store::StoreError;

on_both_backends! {
    /// Open, write, close, open again: the second open finds the schema current.
    async fn opening_twice_applies_migrations_once(db: TestDb) {
        let store = db.open().await;
        assert_eq!(store.backend(), db.backend);
        store.ping().await.expect("ping");
        store.put_budget(&budget("b", 1.0)).await.expect("put budget");
        let version = store.config_version().await.expect("version");
        store.close().await;

        let store = db.open().await;
        assert_eq!(store.config_version().await.expect("version"), version);
        let snapshot = store.snapshot().await.expect("snapshot");
        assert_eq!(snapshot.governance.budgets, vec![budget("b", 1.0)]);

        let mut raw = db.raw().await;
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&mut raw)
            .await
            .expect("count migrations");
        assert_eq!(applied, 10, "0001 to 0010");
    }
}

on_both_backends! {
    /// Several gateways starting at once against one fresh database: one applies the
    /// migrations, one creates the salt and key check, and all derive the same key.
    async fn concurrent_opens_do_not_race(db: TestDb) {
        let config = db.config();
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let config = config.clone();
                tokio::spawn(async move { Store::open(&config, Some(TEST_KEY)).await })
            })
            .collect();
        let mut stores = Vec::new();
        for open in opens {
            stores.push(open.await.expect("join").expect("every concurrent open succeeds"));
        }

        stores[0]
            .put_provider("openai", &provider(vec![key("k", "sk-written-by-one")]))
            .await
            .expect("put provider");
        for store in &stores {
            let snapshot = store.snapshot().await.expect("every replica decrypts");
            assert_eq!(snapshot.providers["openai"].keys[0].value, "sk-written-by-one");
        }

        let mut raw = db.raw().await;
        let salts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meta WHERE key = 'kdf_salt'")
            .fetch_one(&mut raw)
            .await
            .expect("count salts");
        assert_eq!(salts, 1);
    }
}

#[tokio::test]
async fn an_unreachable_postgres_names_the_database_in_the_error() {
    let config = ConfigStoreConfig {
        store_type: StoreType::Postgres,
        config: StoreConnectionConfig {
            host: Some("127.0.0.1".to_string()),
            port: Some(1),
            user: Some("bifrost".to_string()),
            password: Some("hunter2".to_string()),
            db_name: Some("gateway".to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = Store::open(&config, Some(TEST_KEY))
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("PostgreSQL database gateway on 127.0.0.1:1"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn a_missing_sqlite_file_is_created() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("new.db");
    let config = ConfigStoreConfig {
        config: StoreConnectionConfig {
            path: Some(path.to_string_lossy().into_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    let store = Store::open(&config, None).await.expect("open");
    assert_eq!(store.backend(), StoreType::Sqlite);
    assert!(path.exists());
    assert_eq!(store.config_version().await.expect("version"), 0);
}

on_both_backends! {
    /// The migration step itself, started on several connected replicas at the same instant.
    async fn simultaneous_migrations_apply_each_migration_once(db: TestDb) {
        use crate::store::connect::{migrate, Target};
        let target = Target::from_config(&db.config()).expect("target");
        let mut conns = Vec::new();
        for _ in 0..8 {
            conns.push(target.connect().await.expect("connect"));
        }
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(conns.len()));
        let backend = db.backend;
        let runs: Vec<_> = conns.into_iter().map(|mut conn| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let result = match backend {
                    StoreType::Sqlite => {
                        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.expect("begin");
                        let result = migrate(&mut tx, backend).await;
                        tx.commit().await.expect("commit");
                        result
                    }
                    StoreType::Postgres => migrate(&mut conn, backend).await,
                };
                result.map_err(|err| err.to_string())
            })
        }).collect();
        for run in runs {
            run.await.expect("join").expect("every replica's migration succeeds");
        }
        let mut raw = db.raw().await;
        let versions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meta WHERE key = 'config_version'")
            .fetch_one(&mut raw)
            .await
            .expect("count");
        assert_eq!(versions, 1);
    }
}

on_both_backends! {
    /// Rows written before migration 0003 meant "empty = all": after it they say `["*"]`,
    /// and a virtual key without provider configs gets one per provider, so a store carried
    /// over from an older gateway serves exactly what it served before.
    async fn old_empty_allow_lists_are_rewritten_to_allow_all(db: TestDb) {
        let store = sample_store(&db).await;
        store
            .put_virtual_key(&virtual_key("vk-bare", "sk-bf-bare-secret"))
            .await
            .expect("put bare key");
        store.close().await;
        // The rows as a gateway before 0003 wrote them: empty lists, and 0003 not applied.
        let mut raw = db.raw().await;
        for statement in [
            "UPDATE provider_keys SET models = '[]' WHERE provider = 'anthropic'",
            "UPDATE virtual_key_providers SET allowed_models = '[]', key_ids = '[]'",
            "DELETE FROM _sqlx_migrations WHERE version = 3",
        ] {
            raw.execute(statement).await.expect(statement);
        }
        drop(raw);

        let store = db.open().await;
        let before = store.config_version().await.expect("version");
        let snapshot = store.snapshot().await.expect("snapshot");
        assert_eq!(snapshot.providers["anthropic"].keys[0].models, vec!["*"]);
        assert_eq!(
            snapshot.providers["openai"].keys[0].models,
            vec!["gpt-4o-mini"],
            "a list that was not empty is kept"
        );
        let keys = &snapshot.governance.virtual_keys;
        let app = keys.iter().find(|k| k.id == "vk-app").expect("vk-app");
        assert_eq!(app.provider_configs.len(), 1, "{app:?}");
        assert_eq!(app.provider_configs[0].allowed_models, vec!["*"]);
        assert_eq!(app.provider_configs[0].key_ids, vec!["*"]);
        let bare = keys.iter().find(|k| k.id == "vk-bare").expect("vk-bare");
        let providers: Vec<&str> = bare
            .provider_configs
            .iter()
            .map(|c| c.provider.as_str())
            .collect();
        assert_eq!(providers, ["anthropic", "openai"], "{bare:?}");
        for config in &bare.provider_configs {
            assert_eq!(config.allowed_models, vec!["*"]);
            assert_eq!(config.key_ids, vec!["*"]);
        }
        store.close().await;
        let again = db.open().await;
        assert_eq!(
            again.config_version().await.expect("version"),
            before,
            "the rewrite runs once"
        );
    }
}
