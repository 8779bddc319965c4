//! Importing the config file's providers and governance entities at start-up.

use std::collections::{BTreeMap, HashMap};

use tracing::{debug, info};

use super::error::{QueryContext, StoreError};
use super::{governance, providers, virtual_keys, Store};
use crate::config::{GovernanceConfig, ProviderConfig};

/// The entries of `wanted` that differ from (or are missing in) `stored`, matched by id.
fn differing<T: PartialEq>(stored: Vec<T>, wanted: &[T], id: fn(&T) -> &str) -> Vec<&T> {
    let stored: HashMap<String, T> = stored
        .into_iter()
        .map(|item| (id(&item).to_string(), item))
        .collect();
    wanted
        .iter()
        .filter(|item| stored.get(id(item)) != Some(*item))
        .collect()
}

impl Store {
    /// Upserts every provider (with its keys) and every virtual key, team, customer, budget and
    /// rate limit from the config file, in one transaction.
    ///
    /// Budget usage is never touched: an existing budget keeps its `current_usage` and
    /// `last_reset` (a rolling deploy must not reset budgets); a new one starts at 0 with
    /// `last_reset` at the start of its current period. Entities missing from the file are
    /// kept (they may come from the admin API). Entries equal to what is stored are not
    /// rewritten, and `config_version` is bumped only when something changed, so restarting
    /// replicas with the same file does not make the cluster reload.
    pub async fn import(
        &self,
        providers: &BTreeMap<String, ProviderConfig>,
        governance: &GovernanceConfig,
    ) -> Result<(), StoreError> {
        // Bumping first takes the config write lock; rolled back below if nothing changed.
        let mut tx = self.begin_config_write().await?;
        let mut changed = 0usize;

        // Referenced entities first, so every reference resolves when it is written.
        // Definitions are compared without the usage seeds (which only a new budget reads).
        let stored = governance::load_budgets(&mut tx).await?;
        let definitions: Vec<_> = governance.budgets.iter().map(|b| b.definition()).collect();
        for definition in differing(stored, &definitions, |b| &b.id) {
            let budget = governance.budgets.iter().find(|b| b.id == definition.id);
            governance::write_budget(&mut tx, budget.unwrap_or(definition)).await?;
            changed += 1;
        }
        let stored = governance::load_rate_limits(&mut tx).await?;
        for limit in differing(stored, &governance.rate_limits, |r| &r.id) {
            governance::write_rate_limit(&mut tx, limit).await?;
            changed += 1;
        }
        let stored = governance::load_customers(&mut tx).await?;
        for customer in differing(stored, &governance.customers, |c| &c.id) {
            governance::write_customer(&mut tx, customer).await?;
            changed += 1;
        }
        let stored = governance::load_teams(&mut tx).await?;
        for team in differing(stored, &governance.teams, |t| &t.id) {
            governance::write_team(&mut tx, team).await?;
            changed += 1;
        }
        let stored = providers::load_all(&mut tx, &self.secrets).await?;
        for (name, provider) in providers {
            if stored.get(name) != Some(provider) {
                providers::write(&mut tx, &self.secrets, name, provider).await?;
                changed += 1;
            }
        }
        let stored = virtual_keys::load_all(&mut tx, &self.secrets).await?;
        // A key the file gives no value keeps the one the store holds, or gets a generated
        // one (shown once by the admin API; only its id is logged).
        let mut generated = Vec::new();
        let mut wanted = governance.virtual_keys.clone();
        for vk in wanted.iter_mut().filter(|vk| vk.value.is_empty()) {
            match stored.iter().find(|s| s.id == vk.id) {
                Some(existing) => vk.value = existing.value.clone(),
                None => {
                    vk.value = virtual_keys::generate_value()?;
                    generated.push(vk.id.clone());
                }
            }
        }
        for vk in differing(stored, &wanted, |v| &v.id) {
            virtual_keys::write(&mut tx, &self.secrets, vk).await?;
            changed += 1;
        }
        for id in &generated {
            virtual_keys::mark_reveal_pending(&mut tx, id).await?;
            tracing::info!(
                virtual_key = %id,
                "virtual key has no value in the config: generated one, stored encrypted; GET /api/governance/virtual-keys/{id} shows it once"
            );
        }

        if changed == 0 {
            tx.rollback().await.context("ending an import")?;
            debug!("config file already matches the config store");
            return Ok(());
        }
        tx.commit().await.context("committing an import")?;
        info!(
            changed,
            "imported config file entries into the config store"
        );
        Ok(())
    }
}
