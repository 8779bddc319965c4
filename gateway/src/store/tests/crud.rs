//! Admin API writes: upserts, deletes, referential integrity, config version.

use super::*;
use crate::store::{EntityKind, StoreError};

fn in_use_by(err: StoreError) -> Vec<String> {
    match err {
        StoreError::InUse { by, .. } => by,
        other => panic!("expected InUse, got {other}"),
    }
}

on_both_backends! {
    async fn deletes_are_refused_while_referenced(db: TestDb) {
        let store = sample_store(&db).await;

        let err = store.delete_provider("openai").await.expect_err("vk-app uses it");
        assert!(err.to_string().contains("virtual key vk-app"), "{err}");
        assert_eq!(in_use_by(err), ["virtual key vk-app"]);
        let by = in_use_by(store.delete_budget("b-vk-openai").await.expect_err("provider config"));
        assert_eq!(by, ["virtual key vk-app"]);
        let by = in_use_by(store.delete_rate_limit("rl-vk").await.expect_err("vk"));
        assert_eq!(by, ["customer acme", "team platform", "virtual key vk-app"]);
        let by = in_use_by(store.delete_team("platform").await.expect_err("vk"));
        assert_eq!(by, ["virtual key vk-app"]);
        let by = in_use_by(store.delete_customer("acme").await.expect_err("team"));
        assert_eq!(by, ["team platform"]);
        let mut team_vk = virtual_key("vk-2", "sk-bf-two");
        team_vk.budget_id = Some("b-team".to_string());
        store.put_virtual_key(&team_vk).await.expect("second key");
        let by = in_use_by(store.delete_budget("b-team").await.expect_err("team and vk"));
        assert_eq!(by, ["team platform", "virtual key vk-2"]);

        // Unused things go; then what they used can go too.
        store.delete_provider("anthropic").await.expect("unused provider");
        store.delete_virtual_key("vk-app").await.expect("delete vk");
        store.delete_virtual_key("vk-2").await.expect("delete vk");
        store.delete_provider("openai").await.expect("now unused");
        store.delete_team("platform").await.expect("now unused");
        store.delete_customer("acme").await.expect("now unused");
        store.delete_budget("b-team").await.expect("now unused");
        let snapshot = store.snapshot().await.expect("snapshot");
        assert!(snapshot.providers.is_empty());
        assert!(!snapshot.budget_usage.contains_key("b-team"), "usage goes with the budget");
    }
}

on_both_backends! {
    async fn deleting_what_does_not_exist_is_not_found(db: TestDb) {
        let store = db.open().await;
        let err = store.delete_team("ghost").await.expect_err("absent");
        assert!(
            matches!(&err, StoreError::NotFound { kind: EntityKind::Team, id } if id == "ghost"),
            "{err}"
        );
        assert!(matches!(
            store.delete_provider("ghost").await,
            Err(StoreError::NotFound { kind: EntityKind::Provider, .. })
        ));
    }
}

on_both_backends! {
    async fn writes_are_refused_when_a_reference_is_unknown(db: TestDb) {
        let store = sample_store(&db).await;
        let mut vk = virtual_key("vk-new", "sk-bf-new");
        vk.provider_configs = vec![VirtualKeyProviderConfig {
            provider: "openai".to_string(),
            allowed_models: Vec::new(),
            key_ids: Vec::new(),
            blacklisted_models: Vec::new(),
            weight: 1.0,
            budget_id: Some("b-missing".to_string()),
            rate_limit_id: None,
        }];
        let err = store.put_virtual_key(&vk).await.expect_err("unknown budget");
        let message = err.to_string();
        assert!(matches!(err, StoreError::UnknownReference { .. }), "{message}");
        assert!(
            message.contains("provider_configs[0].budget_id refers to budget \"b-missing\""),
            "{message}"
        );

        let team = TeamConfig {
            id: "t".to_string(),
            name: String::new(),
            customer_id: Some("nobody".to_string()),
            budget_id: None,
            rate_limit_id: None,
        };
        let err = store.put_team(&team).await.expect_err("unknown customer");
        assert!(err.to_string().contains("customer \"nobody\""), "{err}");
        let team = TeamConfig {
            customer_id: None,
            rate_limit_id: Some("rl-missing".to_string()),
            ..team
        };
        let err = store.put_team(&team).await.expect_err("unknown rate limit");
        assert!(
            err.to_string().contains("rate_limit_id refers to rate limit \"rl-missing\""),
            "{err}"
        );
    }
}

on_both_backends! {
    async fn virtual_key_values_are_unique_and_found_by_value(db: TestDb) {
        let store = sample_store(&db).await;
        assert_eq!(
            store.find_virtual_key_id("sk-bf-app-secret").await.expect("find"),
            Some("vk-app".to_string())
        );
        assert_eq!(store.find_virtual_key_id("sk-bf-nope").await.expect("find"), None);

        let err = store
            .put_virtual_key(&virtual_key("vk-copy", "sk-bf-app-secret"))
            .await
            .expect_err("same value");
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");

        // Rotating a key's own value is fine, and the old value stops matching.
        let mut rotated = store.snapshot().await.expect("snapshot").governance.virtual_keys[0].clone();
        rotated.value = "sk-bf-rotated".to_string();
        store.put_virtual_key(&rotated).await.expect("rotate");
        assert_eq!(store.find_virtual_key_id("sk-bf-app-secret").await.expect("find"), None);
        assert_eq!(
            store.find_virtual_key_id("sk-bf-rotated").await.expect("find"),
            Some("vk-app".to_string())
        );
    }
}

on_both_backends! {
    async fn every_config_write_bumps_the_config_version(db: TestDb) {
        let store = db.open().await;
        let version = || async { store.config_version().await.expect("version") };
        assert_eq!(version().await, 0);
        store.put_budget(&budget("b", 1.0)).await.expect("budget");
        assert_eq!(version().await, 1);
        store.put_provider("openai", &provider(vec![key("k", "sk")])).await.expect("provider");
        assert_eq!(version().await, 2);
        let mut vk = virtual_key("vk", "sk-bf");
        vk.budget_id = Some("b".to_string());
        store.put_virtual_key(&vk).await.expect("vk");
        assert_eq!(version().await, 3);
        store.put_virtual_key(&vk).await.expect("same vk again");
        assert_eq!(version().await, 4, "an admin write always announces itself");

        // Refused writes change nothing.
        store.delete_budget("b").await.expect_err("in use");
        store.delete_team("ghost").await.expect_err("absent");
        assert_eq!(version().await, 4);

        store.delete_virtual_key("vk").await.expect("delete");
        assert_eq!(version().await, 5);
        // Usage is not config.
        store.add_budget_spend(&[("b".to_string(), 1.0)]).await.expect("spend");
        assert_eq!(version().await, 5);
    }
}

on_both_backends! {
    async fn editing_a_budget_definition_keeps_its_usage(db: TestDb) {
        let store = db.open().await;
        store.put_budget(&budget("b", 1.0)).await.expect("create");
        store.add_budget_spend(&[("b".to_string(), 0.75)]).await.expect("spend");
        let before = store.budget_usage().await.expect("usage")["b"];
        let mut edited = budget("b", 2.0);
        edited.reset_duration = "1w".to_string();
        store.put_budget(&edited).await.expect("edit");
        assert_eq!(store.budget_usage().await.expect("usage")["b"], before);
        assert_eq!(store.snapshot().await.expect("snapshot").governance.budgets, vec![edited]);
    }
}

#[tokio::test]
async fn invalid_definitions_name_the_field() {
    let db = TestDb::sqlite();
    let store = db.open().await;
    let mut bad = budget("b", 1.0);
    bad.reset_duration = "1x".to_string();
    let err = store.put_budget(&bad).await.expect_err("bad period");
    assert!(
        err.to_string().contains("budget \"b\" reset_duration"),
        "{err}"
    );
    let err = store
        .put_rate_limit(&RateLimitConfig {
            id: "rl".to_string(),
            request_max_limit: Some(u64::MAX),
            request_reset_duration: Some("1m".to_string()),
            token_max_limit: None,
            token_reset_duration: None,
            cluster_mode: None,
            cluster_stale_policy: None,
        })
        .await
        .expect_err("too large");
    assert!(err.to_string().contains("request_max_limit"), "{err}");
    assert_eq!(store.config_version().await.expect("version"), 0);
}
