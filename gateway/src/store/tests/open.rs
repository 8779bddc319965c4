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
        assert_eq!(applied, 2, "0001 and 0002");
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
