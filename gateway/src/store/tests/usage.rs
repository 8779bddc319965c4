//! Budget usage: concurrent spend and compare-and-set resets.

use super::*;
use crate::store::{EntityKind, StoreError};

on_both_backends! {
    /// Two replicas flushing many times at once: SQL adds, so nothing is lost.
    async fn parallel_spend_adds_sum_exactly(db: TestDb) {
        let replicas = [sample_store(&db).await, db.open().await];
        let mut flushes = Vec::new();
        for i in 0..40 {
            let store = replicas[i % 2].clone();
            flushes.push(tokio::spawn(async move {
                // Quarters add exactly in binary floating point.
                store
                    .add_budget_spend(&[
                        ("b-vk".to_string(), 0.25),
                        ("b-team".to_string(), 0.5),
                        ("b-vk".to_string(), 0.25),
                    ])
                    .await
            }));
        }
        for flush in flushes {
            flush.await.expect("join").expect("flush");
        }
        let usage = replicas[0].budget_usage().await.expect("usage");
        assert_eq!(usage["b-vk"].current_usage, 20.0);
        assert_eq!(usage["b-team"].current_usage, 20.0);
        assert_eq!(usage["b-customer"].current_usage, 0.0);
    }
}

on_both_backends! {
    /// Two replicas notice the period ended: only one resets, and spend flushed after the
    /// reset is kept.
    async fn a_budget_reset_is_compare_and_set(db: TestDb) {
        let store = sample_store(&db).await;
        store.add_budget_spend(&[("b-vk".to_string(), 4.0)]).await.expect("spend");
        let old = store.budget_usage().await.expect("usage")["b-vk"].last_reset_ms;
        let new = old + 1_000;

        assert!(store.reset_budget("b-vk", old, new).await.expect("first reset"));
        store.add_budget_spend(&[("b-vk".to_string(), 1.5)]).await.expect("spend");
        assert!(!store.reset_budget("b-vk", old, new).await.expect("stale reset"));

        let usage = store.budget_usage().await.expect("usage")["b-vk"];
        assert_eq!(usage.current_usage, 1.5);
        assert_eq!(usage.last_reset_ms, new);
        let err = store.reset_budget("ghost", 0, 1).await.expect_err("absent");
        assert!(matches!(err, StoreError::NotFound { kind: EntityKind::Budget, .. }), "{err}");
    }
}

on_both_backends! {
    async fn spend_for_a_deleted_budget_is_dropped_and_the_rest_kept(db: TestDb) {
        let store = sample_store(&db).await;
        store
            .add_budget_spend(&[("gone".to_string(), 9.0), ("b-vk".to_string(), 2.0)])
            .await
            .expect("spend");
        let usage = store.budget_usage().await.expect("usage");
        assert_eq!(usage["b-vk"].current_usage, 2.0);
        assert!(!usage.contains_key("gone"));
    }
}

#[tokio::test]
async fn non_finite_spend_is_refused_before_anything_is_written() {
    let db = TestDb::sqlite();
    let store = sample_store(&db).await;
    let err = store
        .add_budget_spend(&[("b-vk".to_string(), 1.0), ("b-team".to_string(), f64::NAN)])
        .await
        .expect_err("NaN");
    assert!(err.to_string().contains("b-team"), "{err}");
    let usage = store.budget_usage().await.expect("usage");
    assert_eq!(usage["b-vk"].current_usage, 0.0);
}

on_both_backends! {
    /// A process's totals are written once however often (and from wherever) they are sent:
    /// the process's own retried flush and a survivor writing its last gossiped totals race,
    /// and only the increase over what was flushed is added.
    async fn node_spend_totals_are_added_exactly_once(db: TestDb) {
        let replicas = [sample_store(&db).await, db.open().await];
        let mut writers = Vec::new();
        // The same process's totals 1.0, 1.5, 2.0 arrive 3 times each, from both replicas, at
        // once; another process writes 0.25.
        for round in 0..9 {
            let store = replicas[round % 2].clone();
            let total = [1.0, 1.5, 2.0][round % 3];
            writers.push(tokio::spawn(async move {
                store
                    .sync_node_spend("node-a", 7, &[("b-vk".to_string(), total)])
                    .await
            }));
        }
        let added: f64 = {
            let mut sum = 0.0;
            for writer in writers {
                sum += writer.await.expect("join").expect("sync");
            }
            sum
        };
        assert_eq!(added, 2.0, "the highest total, once");
        replicas[1]
            .sync_node_spend("node-b", 7, &[("b-vk".to_string(), 0.25)])
            .await
            .expect("another process");
        // A new generation of the same node starts from zero.
        replicas[0]
            .sync_node_spend("node-a", 8, &[("b-vk".to_string(), 0.5)])
            .await
            .expect("restarted node");
        let usage = replicas[0].budget_usage().await.expect("usage");
        assert_eq!(usage["b-vk"].current_usage, 2.75);
        assert_eq!(
            replicas[0].sync_node_spend("node-a", 7, &[("b-vk".to_string(), 2.0)]).await.expect("again"),
            0.0
        );
        let err = replicas[0]
            .sync_node_spend("node-a", 7, &[("b-vk".to_string(), -1.0)])
            .await
            .expect_err("negative");
        assert!(err.to_string().contains("b-vk"), "{err}");
        assert_eq!(replicas[0].prune_node_spend(3_600_000).await.expect("prune"), 0);
        assert_eq!(replicas[0].prune_node_spend(-3_600_000).await.expect("prune"), 3);
    }
}
