//! The `Supervisor`: the registry of provider actors and the routing decision.
//!
//! It keeps the routing table (`routes`): every provider with the health view routing needs,
//! updated by `HealthChanged` from the provider actors. Workers pick from the table's latest
//! snapshot once per attempt (`Routes::pick(model, exclude)`), so a pick is a hash lookup and
//! a strategy step over the model's providers, never a wait and never a lock shared by all.
//! Adding, updating, removing and resetting providers at run time goes through the
//! supervisor's messages: it starts and stops `ProviderActor`s and is the table's only
//! writer, publishing a new snapshot after each change.

pub mod balance;
pub mod explain;
pub mod queue;
pub mod ring;
pub mod routes;
mod snapshot;
pub mod strategy;

use std::collections::BTreeSet;
use std::sync::Arc;

use actix::prelude::*;

use crate::provider::health::{Health, Policy};
use crate::provider::limits::{Limiter, Permit};
use crate::provider::spec::ProviderConfig;
use crate::provider::{LoadCounters, ProviderActor, ProviderDeps, Reconfigure, SetPolicy};
// The actor announces its health in its own types; the supervisor listens.
pub use crate::provider::{HealthChanged, HealthView};
pub use routes::Routes;

/// A provider chosen for one attempt: everything the worker needs to call it and report.
#[derive(Clone)]
pub struct Route {
    /// The provider as the pick's snapshot holds it: configuration, actor, shared counters
    /// and limits behind one `Arc`. A route is cloned into its attempt's report and dropped
    /// twice; each count moved is an atomic on a cache line both workers share, so one count
    /// instead of five. Its `view` is the snapshot's: the pick has judged it already.
    pub entry: Arc<ProviderEntry>,
    /// The model name to send upstream when it differs from the requested one.
    pub upstream_model: Option<String>,
    /// This attempt's slot in the provider's limits; freed when the last clone is dropped.
    pub permit: Option<Arc<Permit>>,
}

/// The answer to a pick (`Routes::pick`).
pub enum PickResult {
    Route(Route),
    /// No enabled provider serves this model.
    UnknownModel,
    /// Providers serve it, but all are excluded (already tried or by the client's header).
    Exhausted,
    /// Every remaining provider is cooling down after a rate limit.
    CoolingDown(std::time::Duration),
    /// Every remaining provider is at a limit (or cooling): wait in the queue
    /// (`Routes::wait`). When a limit is known to end, how soon.
    AtLimit(Option<std::time::Duration>),
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
    pub limiter: Arc<Limiter>,
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
    routes: Routes,
    deps: ProviderDeps,
}

impl Supervisor {
    pub fn new(deps: ProviderDeps) -> Self {
        Supervisor {
            routes: Routes::default(),
            deps,
        }
    }

    /// The routing table, for the workers' picks.
    pub fn routes(&self) -> Routes {
        self.routes.clone()
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Handler<HealthChanged> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: HealthChanged, _: &mut Context<Self>) {
        let marked = self.routes.change(|table| {
            let e = table.providers.get_mut(&msg.id)?;
            let was_healthy = e.view.is_healthy;
            e.view = msg.view;
            (was_healthy && !msg.view.is_healthy).then(|| e.load.clone())
        });
        if let Some(load) = marked {
            // The snapshot that marks it is published: from here on, picks know it is
            // marked, and a success of an attempt started later is a real success after the
            // mark (see `provider::standing`).
            load.turned_away();
        }
        // A recovered provider may take waiting requests.
        self.routes.serve_queue();
    }
}

impl Handler<AddProvider> for Supervisor {
    type Result = MessageResult<AddProvider>;

    /// Starts the provider's actor; an existing one with the same id is replaced.
    fn handle(&mut self, msg: AddProvider, ctx: &mut Context<Self>) -> Self::Result {
        let id = msg.config.id;
        let config = Arc::new(msg.config);
        let load = Arc::new(LoadCounters::default());
        let limiter = Limiter::new(config.limits);
        self.routes.serve_on_release(&limiter);
        let view = HealthView::from(&msg.health);
        let actor = ProviderActor::new(
            config.clone(),
            msg.health,
            load.clone(),
            ctx.address().recipient(),
            self.deps.clone(),
        )
        .start();
        let entry = ProviderEntry {
            config,
            actor: actor.clone(),
            load,
            limiter,
            view,
        };
        self.routes.change(|table| {
            if let Some(old) = table.providers.insert(id, entry) {
                old.actor.do_send(crate::provider::Stop);
            }
        });
        self.routes.serve_queue();
        MessageResult(actor)
    }
}

impl Handler<UpdateProvider> for Supervisor {
    type Result = bool;

    fn handle(&mut self, msg: UpdateProvider, _: &mut Context<Self>) -> bool {
        let id = msg.0.id;
        let changed = self.routes.change(|table| {
            let e = table.providers.get_mut(&id)?;
            if *e.config == msg.0 {
                return Some(false);
            }
            let config = Arc::new(msg.0);
            e.limiter.set_limits(config.limits);
            e.config = config.clone();
            e.actor.do_send(Reconfigure(config));
            Some(true)
        });
        match changed {
            None => false,
            Some(changed) => {
                if changed {
                    self.routes.serve_queue();
                }
                true
            }
        }
    }
}

impl Handler<RemoveProvider> for Supervisor {
    type Result = bool;

    fn handle(&mut self, msg: RemoveProvider, _: &mut Context<Self>) -> bool {
        let removed = self.routes.change(|table| table.providers.remove(&msg.0));
        // After the snapshot without it: a pick that read the one before may still count a
        // request for it, kept until the day ends (a few bytes).
        self.routes.daily_counts().forget(msg.0);
        match removed {
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
        let snapshot = self.routes.snapshot();
        MessageResult(snapshot.providers.values().map(|e| (**e).clone()).collect())
    }
}

impl Handler<ListModels> for Supervisor {
    type Result = MessageResult<ListModels>;

    fn handle(&mut self, _: ListModels, _: &mut Context<Self>) -> Self::Result {
        let models: BTreeSet<String> = self
            .routes
            .snapshot()
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
        // The stored config carries no recovery settings: those of the file stay.
        let policy = Policy {
            recovery: self.deps.policy.recovery,
            ..msg.0
        };
        self.deps.policy = policy;
        for e in self.routes.snapshot().providers.values() {
            e.actor.do_send(SetPolicy(policy));
        }
    }
}
