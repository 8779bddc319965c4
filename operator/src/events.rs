//! Kubernetes Events on a `BifrostCluster`: one per child created, updated or deleted, and one
//! per failure. Publishing is best effort: a lost Event is logged, never fails a reconcile.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};
use kube::Resource;

use crate::context::Context;
use crate::crd::BifrostCluster;
use crate::resources::apply::Outcome;

/// Announce that `child` was created, updated or deleted. The child is the Event's related
/// object, so each child gets its own Event rather than one series per reason.
pub async fn child_written(
    ctx: &Context,
    resource: &BifrostCluster,
    child: ObjectReference,
    outcome: Outcome,
) {
    let (reason, verb) = match outcome {
        Outcome::Unchanged => return,
        Outcome::Created => ("Created", "created"),
        Outcome::Updated => ("Updated", "updated"),
        Outcome::Deleted => ("Deleted", "deleted"),
    };
    let kind = child.kind.clone().unwrap_or_default();
    let name = child.name.clone().unwrap_or_default();
    ctx.metrics.wrote(&kind, outcome);
    publish(
        ctx,
        resource,
        Event {
            type_: EventType::Normal,
            reason: reason.to_string(),
            note: Some(format!("{verb} {kind} {name}")),
            action: if outcome == Outcome::Deleted {
                "Delete"
            } else {
                "Apply"
            }
            .to_string(),
            secondary: Some(child),
        },
    )
    .await;
}

/// Announce a failed reconcile with the error's text (which says how to fix it).
pub async fn reconcile_failed(
    ctx: &Context,
    resource: &BifrostCluster,
    reason: &str,
    message: &str,
) {
    publish(
        ctx,
        resource,
        Event {
            type_: EventType::Warning,
            reason: reason.to_string(),
            note: Some(truncate(message, 1000)),
            action: "Reconcile".to_string(),
            secondary: None,
        },
    )
    .await;
}

async fn publish(ctx: &Context, resource: &BifrostCluster, event: Event) {
    let reference = resource.object_ref(&());
    if let Err(err) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(error = %err, reason = %event.reason, "could not publish event");
    }
}

/// Event notes are limited to 1 kB.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate(&"é".repeat(600), 1000);
        assert!(cut.len() <= 1003 && cut.ends_with('…'));
    }
}
