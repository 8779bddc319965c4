//! Governance: virtual keys, rate limits, budgets and their hierarchy (customer → team →
//! virtual key → provider), enforced on the request path.
//!
//! - `index`: definitions compiled for lookups; `auth`: finding the key in a request;
//! - `charge`: [`admit`], the one entry point of the request path, and the [`Charge`] it
//!   settles; `strict`: asking strict limits' owner nodes (implemented by the cluster);
//! - `admission`: the pure admit/settle decision; `counters`: this node's usage behind an API,
//!   plus the remote view (cluster-ready); `usage`: real usage from answers;
//! - `pricing`: token prices; `flush`: spend to the store, budget resets.

pub mod admission;
pub mod auth;
pub mod charge;
pub mod counters;
pub mod flush;
pub mod index;
pub mod pricing;
pub mod strict;
pub mod usage;

use std::sync::Arc;

use http::HeaderMap;

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::routing::keys::weighted_choice;
use crate::routing::RoutingTable;
pub use charge::{admit, Charge, ExpectedUsage};
use index::{GovernanceIndex, ProviderRule, VirtualKey};
use pricing::PricingTable;

/// Completion tokens assumed when a request sets no `max_tokens`.
pub const DEFAULT_COMPLETION_ESTIMATE: u64 = 1024;

/// The governance part of a runtime (rebuilt with the config).
pub struct GovernanceRuntime {
    /// Compiled definitions.
    pub index: GovernanceIndex,
    /// Token prices (shared with the charges of requests in flight).
    pub pricing: Arc<PricingTable>,
    /// Whether inference requests need a virtual key.
    pub enforce: bool,
}

impl GovernanceRuntime {
    /// Compile the governance section of `config`.
    pub fn new(config: &GatewayConfig) -> Self {
        Self {
            index: GovernanceIndex::build(&config.governance),
            pricing: Arc::new(PricingTable::new(&config.governance.pricing)),
            // `auth_config.disable_auth_on_inference` is ignored, as in Bifrost (config::compat).
            enforce: config.client.enforce_auth_on_inference,
        }
    }

    /// The request's virtual key: `None` when it has none and none is required; 401 when one
    /// is required and missing; 403 when it is unknown or inactive.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<VirtualKey>>, GatewayError> {
        let Some(value) = auth::virtual_key_value(headers) else {
            if self.enforce {
                return Err(GatewayError::Unauthorized(
                    "a virtual key is required: send it as `x-bf-vk`, `Authorization: Bearer sk-bf-...` or `x-api-key`".into(),
                ));
            }
            return Ok(None);
        };
        match self.index.by_value.get(value) {
            Some(vk) if !vk.is_active => Err(GatewayError::Forbidden(format!(
                "virtual key \"{}\" is inactive",
                vk.id
            ))),
            Some(vk) if vk.expires_at.as_ref().is_some_and(|e| e.at_ms <= now_ms()) => {
                let expiry = vk.expires_at.as_ref().map_or("", |e| e.text.as_str());
                Err(GatewayError::Forbidden(format!(
                    "virtual key \"{}\" expired at {expiry}",
                    vk.id
                )))
            }
            Some(vk) => Ok(Some(vk.clone())),
            None => Err(GatewayError::Forbidden("unknown virtual key".into())),
        }
    }
}

/// What a virtual key allows on one provider; 403 when it does not allow it at all. An empty
/// allow-list allows nothing (Bifrost 1.5), and the message says which list it is.
pub fn provider_rule<'a>(
    vk: &'a VirtualKey,
    provider: &str,
    model: &str,
) -> Result<&'a ProviderRule, GatewayError> {
    let refuse = |reason: String| {
        Err(GatewayError::Forbidden(format!(
            "virtual key \"{}\" {reason}",
            vk.id
        )))
    };
    if vk.providers.is_empty() {
        return refuse(
            "may use no provider: its provider_configs is empty (add one per provider it may use)"
                .into(),
        );
    }
    let Some(rule) = vk.providers.get(provider) else {
        return refuse(format!("may not use provider \"{provider}\""));
    };
    if rule.allowed_models.is_empty() {
        return refuse(format!(
            "may use no model on provider \"{provider}\": its allowed_models is empty \
             (write [\"*\"] for every model)"
        ));
    }
    if !rule.allows_model(model) {
        // Only a refusal pays for telling which list refused.
        let why = if rule.blacklists(model) {
            ": it is in blacklisted_models"
        } else {
            ""
        };
        return refuse(format!(
            "may not use model \"{model}\" on provider \"{provider}\"{why}"
        ));
    }
    if rule.key_ids.as_deref().is_some_and(<[String]>::is_empty) {
        return refuse(format!(
            "may use no key of provider \"{provider}\": its key_ids is empty \
             (write [\"*\"] for every key)"
        ));
    }
    Ok(rule)
}

/// For a bare model name, the provider a virtual key's `provider_configs` choose: weighted
/// among those that allow the model and whose provider has a key serving it.
pub fn provider_for_bare_model(
    vk: &VirtualKey,
    routing: &RoutingTable,
    model: &str,
) -> Option<String> {
    let candidates: Vec<(&String, f64)> = vk
        .providers
        .iter()
        .filter(|(name, rule)| {
            // Weight 0 (Bifrost's `null`): only used when the request names the provider.
            rule.weight > 0.0
                && rule.allows_model(model)
                && routing
                    .providers
                    .get(*name)
                    .is_some_and(|p| p.keys.iter().any(|k| k.allows_model(model)))
        })
        .map(|(name, rule)| (name, rule.weight))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let chosen = weighted_choice(&candidates, |(_, weight)| *weight);
    Some(candidates[chosen].0.clone())
}

/// Unix time in ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
