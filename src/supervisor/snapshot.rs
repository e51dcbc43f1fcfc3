//! The routing snapshot: an immutable picture of the routing table that picks read without
//! a lock, replaced whole by the table's writer (the `Supervisor`) after each change.
//!
//! Per model it holds what a pick needs and nothing else: the providers that list the model,
//! in id order, and the round-robin rings of its healthy tiers, best first. So a pick costs
//! O(providers of the model), whatever else is registered. What changes on every request
//! (in-flight counts, latency averages, limiter windows, today's counts) is not copied here:
//! the snapshot shares those counters with the table, and picks read them live. What
//! depends on the clock (cool-downs, retry times, limits that end with time) is judged at the
//! pick from the values here.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use super::ProviderEntry;
use super::balance::{self, Tier};
use super::strategy::{Strategies, Strategy};

/// The providers, per model and in all, as of the last change.
#[derive(Default)]
pub struct Snapshot {
    pub providers: BTreeMap<i64, Arc<ProviderEntry>>,
    pub strategies: Strategies,
    pub models: HashMap<String, ModelRoutes>,
}

/// One model's providers.
pub struct ModelRoutes {
    pub strategy: Strategy,
    /// Every provider listing the model, enabled or not, in id order.
    pub listed: Vec<Arc<ProviderEntry>>,
    /// The enabled, healthy providers by tier, best first, with their rings.
    pub tiers: Vec<Tier>,
}

impl Snapshot {
    /// The snapshot of `providers` and `strategies`. Rings of `previous` whose members are
    /// unchanged carry over with their cursors (see `balance::tiers`).
    pub fn build(
        providers: &BTreeMap<i64, ProviderEntry>,
        strategies: &Strategies,
        previous: &Snapshot,
    ) -> Snapshot {
        let providers: BTreeMap<i64, Arc<ProviderEntry>> = providers
            .iter()
            .map(|(id, e)| (*id, Arc::new(e.clone())))
            .collect();
        let mut listed: HashMap<&str, Vec<Arc<ProviderEntry>>> = HashMap::new();
        for e in providers.values() {
            for m in &e.config.models {
                let list = listed.entry(m.name()).or_default();
                // A name listed twice by one provider counts once.
                if list.last().is_none_or(|l| l.config.id != e.config.id) {
                    list.push(e.clone());
                }
            }
        }
        let models = listed
            .into_iter()
            .map(|(name, listed)| {
                let healthy = listed
                    .iter()
                    .filter(|e| e.config.enabled && e.view.is_healthy)
                    .map(|e| (e.config.priority, e.config.id, e.config.weight));
                let before = previous.models.get(name).map_or(&[][..], |m| &m.tiers[..]);
                let routes = ModelRoutes {
                    strategy: strategies.for_model(name),
                    tiers: balance::tiers(healthy, before),
                    listed,
                };
                (name.to_string(), routes)
            })
            .collect();
        Snapshot {
            providers,
            strategies: strategies.clone(),
            models,
        }
    }
}
