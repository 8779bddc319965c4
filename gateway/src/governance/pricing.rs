//! Token prices: a table shipped with the gateway (`data/pricing.json`, list prices in USD per
//! token) overridden by `governance.pricing`. Lookup: exact provider and model, then any
//! provider (`*`), then the longest listed model name that prefixes the requested one (so dated
//! snapshots such as `gpt-4o-mini-2024-07-18` find `gpt-4o-mini`).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::ModelPrice;

const SHIPPED: &str = include_str!("../../data/pricing.json");

/// Prices for one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// USD per prompt token.
    pub input: f64,
    /// USD per completion token.
    pub output: f64,
}

impl Price {
    /// Cost of a request in USD: always a finite amount (see [`usd`]), even for a price that
    /// got past validation (1e308 per token) or a token count reported as `u64::MAX`.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        let part = |price: f64, tokens: u64| {
            if tokens == 0 {
                0.0
            } else {
                price * tokens as f64
            }
        };
        usd(part(self.input, prompt_tokens) + part(self.output, completion_tokens))
    }
}

/// Most one request is charged, in USD. Far above any real request (a million tokens at the
/// 1000 USD per token `validate()` allows is 1e9), and low enough that adding up spend never
/// leaves the finite numbers.
pub const MAX_REQUEST_COST_USD: f64 = 1e12;

/// `amount` as a USD charge: infinite or larger than [`MAX_REQUEST_COST_USD`] becomes that
/// maximum (an absurd price exhausts budgets instead of turning spend into `inf`, which the
/// usage API would show as `null`); negative or NaN becomes 0 (a charge never refunds).
pub fn usd(amount: f64) -> f64 {
    if amount.is_nan() {
        0.0
    } else {
        amount.clamp(0.0, MAX_REQUEST_COST_USD)
    }
}

/// The providers whose list prices a cloud provider's models have: Azure OpenAI's are
/// OpenAI's, Vertex AI's Google's (Gemini) and Anthropic's (Claude, `name@version`).
fn list_priced_as(provider: &str) -> &'static [&'static str] {
    match provider {
        "azure" => &["openai"],
        "vertex" => &["gemini", "anthropic"],
        _ => &[],
    }
}

/// provider (or `*`) → model → price; nested so lookups need no allocation.
type Prices = HashMap<String, HashMap<String, Price>>;

/// The pricing table.
pub struct PricingTable {
    /// Config overrides, then the shipped table.
    tiers: [Prices; 2],
    /// Models already warned about.
    unpriced_warned: Mutex<std::collections::HashSet<String>>,
}

impl PricingTable {
    /// The shipped table with `overrides` applied on top.
    pub fn new(overrides: &[ModelPrice]) -> Self {
        // The shipped file is part of the binary and covered by a test.
        let shipped: Vec<ModelPrice> = serde_json::from_str(SHIPPED).unwrap_or_default();
        let tier = |entries: &[ModelPrice]| {
            let mut prices = Prices::new();
            for entry in entries {
                prices.entry(entry.provider.clone()).or_default().insert(
                    entry.model.clone(),
                    Price {
                        input: entry.input_cost_per_token,
                        output: entry.output_cost_per_token,
                    },
                );
            }
            prices
        };
        Self {
            tiers: [tier(overrides), tier(&shipped)],
            unpriced_warned: Mutex::new(Default::default()),
        }
    }

    /// The price of `model` on `provider`, if known. An exact name beats a prefix; among
    /// prefixes the longest wins; on equal terms a config override beats the shipped table.
    /// A Bedrock cross-region inference profile (`us.anthropic...`, `eu.`, `apac.`, `global.`)
    /// costs what its model does.
    /// Azure OpenAI and Vertex AI list the models of OpenAI, Google and Anthropic at their
    /// makers' list prices: a model without a price of its own there costs what it costs at
    /// the maker's (see [`list_priced_as`]).
    pub fn price(&self, provider: &str, model: &str) -> Option<Price> {
        let own = self.price_of(provider, model).or_else(|| {
            list_priced_as(provider)
                .iter()
                .find_map(|maker| self.price_of(maker, model))
        });
        own.or_else(|| {
            let (geo, rest) = model.split_once('.')?;
            let profile = ["us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"];
            profile
                .contains(&geo)
                .then(|| self.price_of(provider, rest))?
        })
    }

    fn price_of(&self, provider: &str, model: &str) -> Option<Price> {
        let exact = self.tiers.iter().find_map(|prices| {
            [provider, "*"]
                .iter()
                .find_map(|p| prices.get(*p).and_then(|models| models.get(model)))
        });
        if let Some(price) = exact {
            return Some(*price);
        }
        self.tiers
            .iter()
            .enumerate()
            .flat_map(|(tier, prices)| {
                [provider, "*"]
                    .into_iter()
                    .filter_map(move |p| prices.get(p).map(|models| (tier, p == "*", models)))
            })
            .flat_map(|(tier, any, models)| {
                models
                    .iter()
                    .filter(|(m, _)| model.starts_with(m.as_str()))
                    .map(move |(m, price)| ((m.len(), std::cmp::Reverse(tier), !any), *price))
            })
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, price)| price)
    }

    /// Cost in USD; an unknown model costs 0 and is warned about once.
    pub fn cost(&self, provider: &str, model: &str, prompt: u64, completion: u64) -> f64 {
        match self.price(provider, model) {
            Some(price) => price.cost(prompt, completion),
            None => {
                let key = format!("{provider}/{model}");
                let mut warned = self
                    .unpriced_warned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if warned.insert(key.clone()) {
                    tracing::warn!(model = %key, "no price for model; its spend counts as 0 (add it to governance.pricing)");
                }
                0.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses() {
        let shipped: Vec<ModelPrice> = serde_json::from_str(SHIPPED).expect("valid pricing.json");
        assert!(shipped.len() > 10);
    }

    #[test]
    fn a_price_of_1e308_per_token_costs_a_finite_capped_amount() {
        let table = PricingTable::new(&[ModelPrice {
            provider: "*".into(),
            model: "pricey".into(),
            input_cost_per_token: 1e308,
            output_cost_per_token: f64::INFINITY,
        }]);
        let cost = table.cost("openai", "pricey", 1000, 1000);
        assert!(cost.is_finite(), "{cost}");
        assert_eq!(cost, MAX_REQUEST_COST_USD);
        assert_eq!(
            table.cost("openai", "pricey", 0, 0),
            0.0,
            "no tokens cost nothing, not NaN"
        );
        let price = Price {
            input: -1.0,
            output: f64::NAN,
        };
        assert_eq!(price.cost(10, 10), 0.0, "never negative or NaN");
        assert!(
            Price {
                input: 1.0,
                output: 1.0
            }
            .cost(u64::MAX, u64::MAX)
                <= MAX_REQUEST_COST_USD
        );
    }

    #[test]
    fn bedrock_embedding_models_have_shipped_prices() {
        let table = PricingTable::new(&[]);
        let input = |model: &str| table.price("bedrock", model).map(|price| price.input);
        assert_eq!(input("amazon.titan-embed-text-v2:0"), Some(2e-8));
        assert_eq!(input("amazon.titan-embed-text-v1"), Some(1e-7));
        assert_eq!(input("cohere.embed-english-v3"), Some(1e-7));
        assert_eq!(input("cohere.embed-multilingual-v3"), Some(1e-7));
    }

    #[test]
    fn dated_snapshots_find_their_family_and_overrides_win() {
        let table = PricingTable::new(&[ModelPrice {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            input_cost_per_token: 1.0,
            output_cost_per_token: 2.0,
        }]);
        let mini = table
            .price("openai", "gpt-4o-mini-2024-07-18")
            .expect("prefix match");
        assert_eq!(mini.input, 0.00000015, "longest prefix, not gpt-4o");
        assert_eq!(table.price("openai", "gpt-4o").map(|p| p.output), Some(2.0));
        assert_eq!(table.cost("openai", "gpt-4o", 10, 1), 12.0);
        assert!(
            table.price("groq", "deepseek-chat").is_some(),
            "`*` entries match any provider"
        );
        assert_eq!(table.cost("x", "unknown-model", 100, 100), 0.0);
        let any = PricingTable::new(&[ModelPrice {
            provider: "*".into(),
            model: "gpt-4o-mini".into(),
            input_cost_per_token: 0.5,
            output_cost_per_token: 0.5,
        }]);
        assert_eq!(
            any.price("openai", "gpt-4o-mini").map(|p| p.input),
            Some(0.5),
            "a `*` override beats a shipped exact entry"
        );
    }

    #[test]
    fn bedrock_model_ids_and_cross_region_profiles_are_priced_by_family() {
        let table = PricingTable::new(&[]);
        let haiku = table
            .price("bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0")
            .expect("priced");
        assert_eq!(haiku.input, 0.0000008);
        assert_eq!(
            table.price("bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0"),
            Some(haiku)
        );
        assert!(table
            .price("bedrock", "xx.anthropic.claude-3-5-haiku")
            .is_none());
    }

    #[test]
    fn azure_and_vertex_models_cost_their_makers_list_prices() {
        let table = PricingTable::new(&[ModelPrice {
            provider: "vertex".into(),
            model: "gemini-2.5-pro".into(),
            input_cost_per_token: 1.0,
            output_cost_per_token: 1.0,
        }]);
        assert_eq!(
            table.price("azure", "gpt-4o-mini"),
            table.price("openai", "gpt-4o-mini")
        );
        let claude = table
            .price("vertex", "claude-sonnet-4@20250514")
            .expect("Anthropic's price");
        assert_eq!((claude.input, claude.output), (0.000003, 0.000015));
        assert_eq!(
            table.price("vertex", "gemini-2.5-flash"),
            table.price("gemini", "gemini-2.5-flash")
        );
        assert_eq!(
            table.price("vertex", "gemini-2.5-pro").map(|p| p.input),
            Some(1.0),
            "a price of the provider's own wins"
        );
        assert!(table.price("mistral", "gpt-4o").is_none());
    }

    #[test]
    fn gemini_models_are_priced_by_family() {
        let table = PricingTable::new(&[]);
        let lite = table
            .price("gemini", "gemini-2.5-flash-lite-preview-06-17")
            .expect("shipped");
        assert_eq!((lite.input, lite.output), (0.0000001, 0.0000004));
        let flash = table.price("gemini", "gemini-2.5-flash").expect("shipped");
        assert_eq!(flash.output, 0.0000025, "not the lite price");
        assert_eq!(table.cost("gemini", "gemini-2.5-pro", 1_000_000, 0), 1.25);
    }
}
