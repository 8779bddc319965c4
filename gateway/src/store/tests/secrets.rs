//! Secrets at rest: what the columns hold, and start-up with the wrong or no key.

use super::*;
use crate::store::StoreError;

/// Every secret column as stored, for one sample store.
async fn stored_secrets(db: &TestDb) -> Vec<String> {
    let mut raw = db.raw().await;
    let mut values: Vec<String> = sqlx::query_scalar("SELECT value_encrypted FROM provider_keys")
        .fetch_all(&mut raw)
        .await
        .expect("provider keys");
    values.extend(
        sqlx::query_scalar::<_, String>("SELECT value_encrypted FROM virtual_keys")
            .fetch_all(&mut raw)
            .await
            .expect("virtual keys"),
    );
    values.extend(
        sqlx::query_scalar::<_, String>(
            "SELECT extra_headers_encrypted FROM providers WHERE extra_headers_encrypted IS NOT NULL",
        )
        .fetch_all(&mut raw)
        .await
        .expect("extra headers"),
    );
    values.extend(
        sqlx::query_scalar::<_, String>(
            "SELECT proxy_config_encrypted FROM providers WHERE proxy_config_encrypted IS NOT NULL",
        )
        .fetch_all(&mut raw)
        .await
        .expect("proxy configs"),
    );
    values.extend(
        sqlx::query_scalar::<_, String>(
            "SELECT credentials_encrypted FROM provider_keys WHERE credentials_encrypted IS NOT NULL",
        )
        .fetch_all(&mut raw)
        .await
        .expect("bedrock credentials"),
    );
    values
}

const SAMPLE_SECRETS: &[&str] = &[
    "sk-openai-one",
    "sk-openai-two",
    "sk-ant-one",
    "sk-bf-app-secret",
    "header-secret-42",
    "proxy-secret-7",
    "bedrock-secret-9",
    "bedrock-session-token-3",
    "entra-secret-5",
    "vertex-sa-secret-8",
];

on_both_backends! {
    async fn stored_secret_columns_are_not_the_plaintext(db: TestDb) {
        let store = sample_store(&db).await;
        let stored = stored_secrets(&db).await;
        assert_eq!(
            stored.len(),
            3 + 1 + 2 + 2 + 2,
            "keys, virtual key, two providers' headers and proxies, a Bedrock key's and an Entra key's credentials"
        );
        for value in &stored {
            assert!(value.starts_with("v1:"), "{value}");
            for secret in SAMPLE_SECRETS {
                assert!(!value.contains(secret), "{secret} stored in the clear");
            }
        }

        let snapshot = store.snapshot().await.expect("snapshot");
        let (providers, _) = sample_config();
        assert_eq!(snapshot.providers, providers, "values decrypt on the way out");
        assert_eq!(snapshot.governance.virtual_keys[0].value, "sk-bf-app-secret");
    }
}

on_both_backends! {
    /// A replica with another key must fail at start-up, not send garbage upstream.
    async fn a_wrong_encryption_key_fails_at_open(db: TestDb) {
        sample_store(&db).await.close().await;
        let err = db
            .open_with(Some("some other key entirely"))
            .await
            .expect_err("wrong key");
        assert!(matches!(err, StoreError::WrongEncryptionKey), "{err}");
        assert!(err.to_string().contains("BIFROST_ENCRYPTION_KEY"), "{err}");
    }
}

on_both_backends! {
    async fn an_encrypted_store_opened_without_a_key_is_refused(db: TestDb) {
        sample_store(&db).await.close().await;
        // PostgreSQL would refuse a keyless start anyway; allow plaintext to reach the check.
        let mut config = db.config();
        config.plaintext_secrets = true;
        let err = Store::open(&config, None).await.expect_err("no key");
        assert!(matches!(err, StoreError::MissingEncryptionKey), "{err}");
    }
}

on_both_backends! {
    /// Without a key values are kept as `plain:`; the first start with a key encrypts them.
    async fn plaintext_secrets_are_encrypted_once_a_key_is_set(db: TestDb) {
        let mut config = db.config();
        config.plaintext_secrets = true;
        let store = Store::open(&config, None).await.expect("open without key");
        assert!(!store.is_encrypted());
        let (providers, governance) = sample_config();
        store.import(&providers, &governance).await.expect("import");
        store.close().await;
        for value in stored_secrets(&db).await {
            assert!(value.starts_with("plain:"), "{value}");
        }

        let store = db.open().await;
        assert!(store.is_encrypted());
        for value in stored_secrets(&db).await {
            assert!(value.starts_with("v1:"), "{value}");
        }
        let snapshot = store.snapshot().await.expect("snapshot");
        assert_eq!(snapshot.providers, providers);
        assert_eq!(snapshot.governance.virtual_keys, governance.virtual_keys);
    }
}

#[tokio::test]
async fn postgres_without_a_key_is_refused_before_connecting() {
    // No server needed: the refusal comes before any connection attempt.
    let config = ConfigStoreConfig {
        store_type: StoreType::Postgres,
        config: StoreConnectionConfig {
            host: Some("db.invalid".to_string()),
            user: Some("bifrost".to_string()),
            db_name: Some("gateway".to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = Store::open(&config, None).await.expect_err("refused");
    assert!(matches!(err, StoreError::PlaintextRefused), "{err}");
    assert!(err.to_string().contains("plaintext_secrets"), "{err}");
}

#[tokio::test]
async fn sqlite_without_a_key_stores_plaintext() {
    let db = TestDb::sqlite();
    let store = db.open_with(None).await.expect("SQLite allows plaintext");
    assert!(!store.is_encrypted());
}

#[tokio::test]
async fn an_empty_encryption_key_is_rejected() {
    let db = TestDb::sqlite();
    let err = db.open_with(Some("  ")).await.expect_err("empty key");
    assert!(err.to_string().contains("encryption key"), "{err}");
}
