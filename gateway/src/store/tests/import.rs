//! Importing the config file at start-up.

use super::*;
use crate::config::Period;
use crate::store::usage::now_ms;

on_both_backends! {
    async fn a_snapshot_returns_what_was_imported(db: TestDb) {
        let store = sample_store(&db).await;
        let snapshot = store.snapshot().await.expect("snapshot");
        let (providers, governance) = sample_config();
        assert_eq!(snapshot.providers, providers);
        assert_eq!(snapshot.governance.virtual_keys, governance.virtual_keys);
        assert_eq!(snapshot.governance.teams, governance.teams);
        assert_eq!(snapshot.governance.customers, governance.customers);
        assert_eq!(snapshot.governance.budgets, governance.budgets);
        assert_eq!(snapshot.governance.rate_limits, governance.rate_limits);
        assert_eq!(snapshot.budget_usage.len(), 4);
        assert_eq!(snapshot.config_version, 1);
    }
}

on_both_backends! {
    /// Bifrost #5925: a rolling deploy re-imported the config file and reset every budget.
    async fn importing_twice_keeps_budget_usage(db: TestDb) {
        let store = sample_store(&db).await;
        store
            .add_budget_spend(&[("b-vk".to_string(), 3.5), ("b-team".to_string(), 3.5)])
            .await
            .expect("spend");
        let before = store.budget_usage().await.expect("usage");

        // A replica restarts with the same file, then a deploy raises one limit.
        let (providers, mut governance) = sample_config();
        store.import(&providers, &governance).await.expect("same file again");
        governance.budgets[2].max_limit = 20.0;
        store.import(&providers, &governance).await.expect("changed limit");

        let after = store.budget_usage().await.expect("usage");
        assert_eq!(after, before);
        assert_eq!(after["b-vk"].current_usage, 3.5);
        let budgets = store.snapshot().await.expect("snapshot").governance.budgets;
        assert_eq!(budgets[2].max_limit, 20.0);
    }
}

on_both_backends! {
    async fn a_new_budget_starts_empty_at_the_start_of_its_period(db: TestDb) {
        let store = db.open().await;
        let before = now_ms();
        store.put_budget(&budget("monthly", 50.0)).await.expect("put");
        let after = now_ms();
        let usage = store.budget_usage().await.expect("usage")["monthly"];
        let period: Period = "1M".parse().expect("period");
        assert_eq!(usage.current_usage, 0.0);
        assert!(
            usage.last_reset_ms == period.window_start(before)
                || usage.last_reset_ms == period.window_start(after),
            "{usage:?}"
        );
    }
}

on_both_backends! {
    /// Entities created through the admin API survive a restart with a file that lacks them.
    async fn import_keeps_entities_missing_from_the_file(db: TestDb) {
        let store = sample_store(&db).await;
        store.put_budget(&budget("b-admin", 1.0)).await.expect("admin budget");
        let mut vk = virtual_key("vk-admin", "sk-bf-admin");
        vk.budget_id = Some("b-admin".to_string());
        store.put_virtual_key(&vk).await.expect("admin key");

        let (providers, governance) = sample_config();
        store.import(&providers, &governance).await.expect("import");
        let snapshot = store.snapshot().await.expect("snapshot");
        let ids: Vec<&str> = snapshot
            .governance
            .virtual_keys
            .iter()
            .map(|vk| vk.id.as_str())
            .collect();
        assert_eq!(ids, ["vk-admin", "vk-app"]);
    }
}

on_both_backends! {
    /// Replicas restarting with an unchanged file must not make the whole cluster reload.
    async fn import_bumps_the_config_version_only_when_something_changed(db: TestDb) {
        let store = sample_store(&db).await;
        assert_eq!(store.config_version().await.expect("version"), 1);
        let (mut providers, governance) = sample_config();
        store.import(&providers, &governance).await.expect("same file");
        assert_eq!(store.config_version().await.expect("version"), 1);

        providers
            .get_mut("openai")
            .expect("openai")
            .keys
            .truncate(1);
        store.import(&providers, &governance).await.expect("one key fewer");
        assert_eq!(store.config_version().await.expect("version"), 2);
        let snapshot = store.snapshot().await.expect("snapshot");
        let first = sample_config().0["openai"].keys[0].clone();
        assert_eq!(first.id.as_deref(), Some("oa-1"));
        assert_eq!(snapshot.providers["openai"].keys, vec![first]);
    }
}

on_both_backends! {
    async fn an_import_that_clashes_with_an_admin_key_changes_nothing(db: TestDb) {
        let store = db.open().await;
        store
            .put_virtual_key(&virtual_key("vk-admin", "sk-bf-app-secret"))
            .await
            .expect("admin key with the file key's value");
        let version = store.config_version().await.expect("version");

        let (providers, governance) = sample_config();
        let err = store.import(&providers, &governance).await.expect_err("clash");
        assert!(err.to_string().contains("already used by virtual key \"vk-admin\""), "{err}");
        let snapshot = store.snapshot().await.expect("snapshot");
        assert!(snapshot.providers.is_empty(), "the import is one transaction");
        assert_eq!(snapshot.config_version, version);
    }
}

on_both_backends! {
    /// Bifrost's `current_usage`/`last_reset` seed a budget new to the store, and only then:
    /// re-importing the file neither rewrites the budget nor resets its live usage.
    async fn usage_seeds_count_once_for_a_new_budget(db: TestDb) {
        let store = sample_store(&db).await;
        let (providers, mut governance) = sample_config();
        let mut seeded = budget("b-seeded", 10.0);
        seeded.current_usage = Some(4.25);
        governance.budgets.push(seeded);
        store.import(&providers, &governance).await.expect("a new seeded budget");
        let version = store.config_version().await.expect("version");
        assert_eq!(store.budget_usage().await.expect("usage")["b-seeded"].current_usage, 4.25);

        store
            .add_budget_spend(&[("b-seeded".to_string(), 0.75)])
            .await
            .expect("spend");
        if let Some(b) = governance.budgets.iter_mut().find(|b| b.id == "b-seeded") {
            b.current_usage = Some(9.0);
        }
        store.import(&providers, &governance).await.expect("same definitions, other seed");
        assert_eq!(store.config_version().await.expect("version"), version, "nothing rewritten");
        assert_eq!(store.budget_usage().await.expect("usage")["b-seeded"].current_usage, 5.0);
    }
}
