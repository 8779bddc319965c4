//! Model addressing: `provider/model`, bare model names, and the `fallbacks` list.

use std::sync::Arc;

use super::table::{Provider, RoutingTable};
use crate::config::ProviderKind;
use crate::error::GatewayError;

/// One place a request may go: a provider and the model name it knows.
#[derive(Clone)]
pub struct Target {
    /// The provider.
    pub provider: Arc<Provider>,
    /// Model name as the provider knows it (without the `provider/` prefix).
    pub model: String,
    /// The wire format the model is spoken to in: the provider's, except on Vertex AI, where
    /// Claude models speak Anthropic's (see [`Provider::wire_kind`]).
    pub kind: ProviderKind,
    /// Provider key ids this request may use (a virtual key's `key_ids`); `None`: any.
    pub allowed_keys: Option<Arc<[String]>>,
}

impl RoutingTable {
    /// Resolve a model reference. `provider/model` names the provider (the first `/` splits, so
    /// `openrouter/meta-llama/llama-3` works; an unknown prefix is a 404); a bare name goes to
    /// `default_provider` when given (the Anthropic route), else to the one provider whose keys
    /// list it explicitly.
    pub fn resolve(
        &self,
        reference: &str,
        default_provider: Option<&str>,
    ) -> Result<Target, GatewayError> {
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(GatewayError::InvalidRequest(
                "model: must not be empty".into(),
            ));
        }
        let (provider_name, model) = match reference.split_once('/') {
            Some((provider, model)) if self.providers.contains_key(provider) => (provider, model),
            Some((provider, _)) => {
                return Err(GatewayError::NotFound(format!(
                    "provider \"{provider}\" is not configured (configured: {})",
                    self.provider_names()
                )))
            }
            _ => match default_provider {
                Some(default) => (default, reference),
                None => (self.provider_listing(reference)?, reference),
            },
        };
        let provider = self.providers.get(provider_name).ok_or_else(|| {
            GatewayError::NotFound(format!(
                "provider \"{provider_name}\" is not configured (configured: {})",
                self.provider_names()
            ))
        })?;
        if model.is_empty() {
            return Err(GatewayError::InvalidRequest(format!(
                "model: \"{reference}\" names no model after the provider"
            )));
        }
        if !provider.keys.iter().any(|k| k.allows_model(model)) {
            return Err(GatewayError::NotFound(format!(
                "model \"{model}\" is not served by provider \"{provider_name}\": no key lists it"
            )));
        }
        Ok(Target {
            kind: provider.wire_kind(model),
            provider: provider.clone(),
            model: model.to_string(),
            allowed_keys: None,
        })
    }

    fn provider_listing(&self, model: &str) -> Result<&str, GatewayError> {
        let mut listing = self
            .providers
            .values()
            .filter(|p| p.keys.iter().any(|k| k.models.iter().any(|m| m == model)));
        match (listing.next(), listing.next()) {
            (Some(provider), None) => Ok(provider.name.as_str()),
            _ => Err(GatewayError::NotFound(format!(
                "model \"{model}\" must be addressed as \"<provider>/<model>\" (configured providers: {})",
                self.provider_names()
            ))),
        }
    }

    fn provider_names(&self) -> String {
        let mut names: Vec<&str> = self.providers.keys().map(String::as_str).collect();
        names.sort_unstable();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }
}
