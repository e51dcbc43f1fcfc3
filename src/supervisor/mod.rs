//! The `Supervisor`: the registry of provider actors and the routing decision.
//!
//! Workers ask it `Pick { model, exclude }` once per attempt; it answers from the health view
//! it keeps of every provider (updated by `HealthChanged` from the provider actors), so a
//! pick is a hash lookup and a round-robin step, never a wait. Adding, updating, removing and
//! resetting providers at run time goes through it: it starts and stops `ProviderActor`s.

pub mod balance;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::provider::health::{Health, Policy};
use crate::provider::spec::ProviderConfig;
use crate::provider::{LoadCounters, ProviderActor, ProviderDeps, Reconfigure, SetPolicy};
use balance::{Candidate, Choice, RoundRobin};

/// What the supervisor knows of a provider's health: just what routing needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthView {
    pub is_healthy: bool,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub cooldown_until: Option<DateTime<Utc>>,
}

impl From<&Health> for HealthView {
    fn from(h: &Health) -> Self {
        HealthView {
            is_healthy: h.is_healthy,
            next_retry_at: h.next_retry_at,
            cooldown_until: h.cooldown_until,
        }
    }
}

/// A provider chosen for one attempt: everything the worker needs to call it and report.
#[derive(Clone)]
pub struct Route {
    pub provider: Arc<ProviderConfig>,
    /// The model name to send upstream when it differs from the requested one.
    pub upstream_model: Option<String>,
    pub actor: Addr<ProviderActor>,
    pub load: Arc<LoadCounters>,
}

/// The answer to `Pick`.
pub enum PickResult {
    Route(Route),
    /// No enabled provider serves this model.
    UnknownModel,
    /// Providers serve it, but all are excluded (already tried or by the client's header).
    Exhausted,
    /// Every remaining provider is cooling down after a rate limit.
    CoolingDown(std::time::Duration),
}

/// Choose a provider for `model`, skipping the ids in `exclude`.
#[derive(Message)]
#[rtype(result = "PickResult")]
pub struct Pick {
    pub model: String,
    pub exclude: Vec<i64>,
}

/// A provider actor's health changed in a way routing cares about.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HealthChanged {
    pub id: i64,
    pub view: HealthView,
}

/// Start routing to a provider (at start-up, or added at run time).
#[derive(Message)]
#[rtype(result = "Addr<ProviderActor>")]
pub struct AddProvider {
    pub config: ProviderConfig,
    pub health: Health,
}

/// Replace a provider's configuration; the next pick uses it.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct UpdateProvider(pub ProviderConfig);

/// Stop routing to a provider. Requests already using it finish.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct RemoveProvider(pub i64);

/// The registered providers, by id.
#[derive(Message)]
#[rtype(result = "Vec<ProviderEntry>")]
pub struct ListProviders;

/// One registered provider.
#[derive(Clone)]
pub struct ProviderEntry {
    pub config: Arc<ProviderConfig>,
    pub actor: Addr<ProviderActor>,
    pub load: Arc<LoadCounters>,
    pub view: HealthView,
}

/// The union of enabled providers' public model names, sorted.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct ListModels;

/// New failure thresholds for every provider (health-check config changed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdatePolicy(pub Policy);

/// The supervisor actor.
pub struct Supervisor {
    providers: BTreeMap<i64, ProviderEntry>,
    round_robin: RoundRobin,
    deps: ProviderDeps,
}

impl Supervisor {
    pub fn new(deps: ProviderDeps) -> Self {
        Supervisor {
            providers: BTreeMap::new(),
            round_robin: RoundRobin::default(),
            deps,
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Picks arrive from every worker; a deep mailbox keeps bursts from back-pressuring them.
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Pick> for Supervisor {
    type Result = MessageResult<Pick>;

    /// Weighted round-robin among the healthy providers of the best tier (see `balance`).
    fn handle(&mut self, msg: Pick, _: &mut Context<Self>) -> Self::Result {
        let now = Utc::now();
        let mut serves_model = false;
        let candidates: Vec<Candidate> = self
            .providers
            .values()
            .filter(|e| e.config.enabled && e.config.model(&msg.model).is_some())
            .inspect(|_| serves_model = true)
            .filter(|e| !msg.exclude.contains(&e.config.id))
            .map(|e| Candidate {
                id: e.config.id,
                weight: e.config.weight,
                priority: e.config.priority,
                is_healthy: e.view.is_healthy,
                next_retry_at: e.view.next_retry_at,
                cooldown_until: e.view.cooldown_until,
            })
            .collect();
        if !serves_model {
            return MessageResult(PickResult::UnknownModel);
        }
        MessageResult(match self.round_robin.choose(&msg.model, &candidates, now) {
            Choice::Picked(id) => match self.providers.get(&id) {
                Some(e) => PickResult::Route(Route {
                    upstream_model: e
                        .config
                        .model(&msg.model)
                        .and_then(|m| m.upstream())
                        .map(str::to_string),
                    provider: e.config.clone(),
                    actor: e.actor.clone(),
                    load: e.load.clone(),
                }),
                None => PickResult::Exhausted,
            },
            Choice::AllCooling(wait) => {
                // Tell the client the soonest any provider of the model is free again, the
                // ones this request already tried included.
                let soonest = self
                    .providers
                    .values()
                    .filter(|e| e.config.enabled && e.config.model(&msg.model).is_some())
                    .filter_map(|e| e.view.cooldown_until)
                    .filter(|t| *t > now)
                    .min()
                    .and_then(|t| (t - now).to_std().ok());
                PickResult::CoolingDown(soonest.map_or(wait, |s| s.min(wait)))
            }
            Choice::NoneLeft => PickResult::Exhausted,
        })
    }
}

impl Handler<HealthChanged> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: HealthChanged, _: &mut Context<Self>) {
        if let Some(e) = self.providers.get_mut(&msg.id) {
            e.view = msg.view;
        }
    }
}

impl Handler<AddProvider> for Supervisor {
    type Result = MessageResult<AddProvider>;

    /// Starts the provider's actor; an existing one with the same id is replaced.
    fn handle(&mut self, msg: AddProvider, ctx: &mut Context<Self>) -> Self::Result {
        let id = msg.config.id;
        if let Some(old) = self.providers.remove(&id) {
            old.actor.do_send(crate::provider::Stop);
        }
        self.round_robin.forget(id);
        let config = Arc::new(msg.config);
        let load = Arc::new(LoadCounters::default());
        let view = HealthView::from(&msg.health);
        let actor = ProviderActor::new(
            config.clone(),
            msg.health,
            load.clone(),
            ctx.address(),
            self.deps.clone(),
        )
        .start();
        self.providers.insert(
            id,
            ProviderEntry {
                config,
                actor: actor.clone(),
                load,
                view,
            },
        );
        MessageResult(actor)
    }
}

impl Handler<UpdateProvider> for Supervisor {
    type Result = bool;

    fn handle(&mut self, msg: UpdateProvider, _: &mut Context<Self>) -> bool {
        let Some(e) = self.providers.get_mut(&msg.0.id) else {
            return false;
        };
        if *e.config == msg.0 {
            return true;
        }
        let config = Arc::new(msg.0);
        e.config = config.clone();
        e.actor.do_send(Reconfigure(config));
        self.round_robin.forget(e.config.id);
        true
    }
}

impl Handler<RemoveProvider> for Supervisor {
    type Result = bool;

    fn handle(&mut self, msg: RemoveProvider, _: &mut Context<Self>) -> bool {
        self.round_robin.forget(msg.0);
        match self.providers.remove(&msg.0) {
            Some(e) => {
                e.actor.do_send(crate::provider::Stop);
                true
            }
            None => false,
        }
    }
}

impl Handler<ListProviders> for Supervisor {
    type Result = MessageResult<ListProviders>;

    fn handle(&mut self, _: ListProviders, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.providers.values().cloned().collect())
    }
}

impl Handler<ListModels> for Supervisor {
    type Result = MessageResult<ListModels>;

    fn handle(&mut self, _: ListModels, _: &mut Context<Self>) -> Self::Result {
        let models: BTreeSet<String> = self
            .providers
            .values()
            .filter(|e| e.config.enabled)
            .flat_map(|e| e.config.models.iter().map(|m| m.name().to_string()))
            .collect();
        MessageResult(models.into_iter().collect())
    }
}

impl Handler<UpdatePolicy> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: UpdatePolicy, _: &mut Context<Self>) {
        self.deps.policy = msg.0;
        for e in self.providers.values() {
            e.actor.do_send(SetPolicy(msg.0));
        }
    }
}
