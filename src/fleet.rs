//! A fleet of instances sharing one PostgreSQL (docs/DESIGN.md §6). Two parts:
//!
//! - `FleetSync` polls the change marker (`config_version`) every `fleet.sync_interval_ms`.
//!   Every configuration write, and every health transition (unhealthy, recovered, reset),
//!   bumps it in the same transaction; when it moves, the instance reloads providers, their
//!   stored health and the health-check configuration, and reconciles its actor graph with
//!   them. Polling a one-row table was chosen over LISTEN/NOTIFY: it needs no dedicated
//!   connection per instance, survives reconnects without lost notifications, and a change
//!   reaches every instance within one interval (2 s by default) at the cost of one tiny
//!   query per interval.
//! - `Leadership` decides which instance runs the periodic health sweep: the one holding a
//!   PostgreSQL advisory lock on a dedicated connection (never a pooled one: the lock belongs
//!   to the session). The leader pings that connection and steps down if it breaks; the
//!   others try to take the lock every sync interval, so when the leader dies (even by
//!   `kill -9`, which closes its connection) another takes over within one interval.
//!
//! On SQLite there is one instance: no sync, and it always sweeps.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::prelude::*;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};

use crate::health_checker::{ApplyHealthConfig, HealthCheckConfig, HealthChecker};
use crate::provider::health::Health;
use crate::provider::{ApplyStoredHealth, from_row};
use crate::store::{self, Store, StoreError};
use crate::supervisor::{AddProvider, ListProviders, RemoveProvider, Supervisor, UpdateProvider};

/// Advisory lock key of the health-sweep leader ("swyd-hc").
const LEADER_LOCK_KEY: i64 = 0x0073_7779_6468_6363;

/// The configuration syncer actor.
pub struct FleetSync {
    store: Addr<Store>,
    supervisor: Addr<Supervisor>,
    health_checker: Addr<HealthChecker>,
    every: Duration,
    default_timeout_ms: u64,
    /// The marker last acted on.
    seen: Option<i64>,
    busy: bool,
}

impl FleetSync {
    pub fn new(
        store: Addr<Store>,
        supervisor: Addr<Supervisor>,
        health_checker: Addr<HealthChecker>,
        every: Duration,
        default_timeout_ms: u64,
        seen: Option<i64>,
    ) -> Self {
        FleetSync {
            store,
            supervisor,
            health_checker,
            every,
            default_timeout_ms,
            seen,
            busy: false,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let (store, supervisor, checker) = (
            self.store.clone(),
            self.supervisor.clone(),
            self.health_checker.clone(),
        );
        let (seen, timeout) = (self.seen, self.default_timeout_ms);
        let work = async move {
            let version = store::run(&store, |db| db.config_version()).await?;
            if Some(version) == seen {
                return Ok(version);
            }
            reconcile(&store, &supervisor, &checker, timeout).await?;
            Ok::<_, StoreError>(version)
        };
        ctx.spawn(work.into_actor(self).map(|result, act, _| {
            act.busy = false;
            match result {
                Ok(v) => {
                    if act.seen.is_some_and(|s| s != v) {
                        log::debug!("fleet: configuration changed (marker {v}), reloaded");
                    }
                    act.seen = Some(v);
                }
                // The database is briefly unreachable: routing goes on with what we have.
                Err(e) => log::warn!("fleet: cannot check for changes: {e}"),
            }
        }));
    }
}

/// Stop syncing (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSync;

impl Handler<StopSync> for FleetSync {
    type Result = ();

    fn handle(&mut self, _: StopSync, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Actor for FleetSync {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.every, |act, ctx| act.tick(ctx));
    }
}

/// Brings this instance's providers, their health and the health-check config in line with
/// the database.
async fn reconcile(
    store: &Addr<Store>,
    supervisor: &Addr<Supervisor>,
    checker: &Addr<HealthChecker>,
    default_timeout_ms: u64,
) -> Result<(), StoreError> {
    let (rows, health_config) =
        store::run(store, |db| Ok((db.list_providers()?, db.health_config()?))).await?;
    let current = supervisor.send(ListProviders).await?;
    let env = |k: &str| std::env::var(k).ok();
    let mut stored_ids = HashSet::new();
    for (row, validation) in rows {
        stored_ids.insert(row.id);
        let config = match from_row(&row, default_timeout_ms, &env) {
            Ok(c) => c,
            Err(e) => {
                log::warn!(
                    "fleet: provider {} (id {}) cannot be loaded: {e}",
                    row.name,
                    row.id
                );
                continue;
            }
        };
        let stored_health = validation
            .as_ref()
            .map(|v| (Health::from_row(v), v.updated_at.and_utc()));
        match current.iter().find(|e| e.config.id == row.id) {
            None => {
                log::info!(
                    "fleet: provider {} (id {}) added elsewhere",
                    config.name,
                    config.id
                );
                let health = stored_health.map(|(h, _)| h).unwrap_or_else(Health::healthy);
                supervisor.send(AddProvider { config, health }).await?;
            }
            Some(entry) => {
                if *entry.config != config {
                    log::info!(
                        "fleet: provider {} (id {}) changed elsewhere",
                        config.name,
                        config.id
                    );
                    supervisor.send(UpdateProvider(config)).await?;
                }
                // Another instance marked it unhealthy, recovered or reset it.
                if let Some((health, written_at)) = stored_health
                    && health.is_healthy != entry.view.is_healthy
                {
                    entry.actor.do_send(ApplyStoredHealth { health, written_at });
                }
            }
        }
    }
    for gone in current.iter().filter(|e| !stored_ids.contains(&e.config.id)) {
        log::info!(
            "fleet: provider {} (id {}) removed elsewhere",
            gone.config.name,
            gone.config.id
        );
        supervisor.send(RemoveProvider(gone.config.id)).await?;
    }
    if let Some(row) = health_config {
        checker.do_send(ApplyHealthConfig(HealthCheckConfig::from_row(&row)));
    }
    Ok(())
}

/// The sweep leadership thread. Dropping it (or `stop`) releases the lock.
pub struct Leadership {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

impl Leadership {
    /// Starts competing for the sweep with the other instances on `url`. `leader` is set
    /// while this instance holds the lock.
    pub fn start(url: String, every: Duration, leader: Arc<AtomicBool>) -> Leadership {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("switchyard-leader".into())
            .spawn(move || run_leadership(&url, every, &leader, &stop2))
            .map_err(|e| log::error!("cannot start the leadership thread: {e}"))
            .ok();
        Leadership { stop, thread }
    }

    /// Steps down and waits for the thread to end.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_leadership(url: &str, every: Duration, leader: &AtomicBool, stop: &AtomicBool) {
    let mut conn: Option<PgConnection> = None;
    let step_down = |conn: &mut Option<PgConnection>, why: &str| {
        if leader.swap(false, Ordering::SeqCst) {
            log::warn!("fleet: stepping down as health-sweep leader: {why}");
        }
        *conn = None;
    };
    while !stop.load(Ordering::SeqCst) {
        match conn.as_mut() {
            None => match PgConnection::establish(url) {
                Ok(c) => {
                    conn = Some(c);
                    continue; // try for the lock right away
                }
                Err(e) => log::debug!("fleet: leadership connection failed: {e}"),
            },
            Some(c) if !leader.load(Ordering::SeqCst) => {
                let got = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                    .bind::<BigInt, _>(LEADER_LOCK_KEY)
                    .get_result::<Locked>(c);
                match got {
                    Ok(Locked { locked: true }) => {
                        leader.store(true, Ordering::SeqCst);
                        log::info!("fleet: this instance now runs the health sweep");
                    }
                    Ok(_) => {}
                    Err(e) => step_down(&mut conn, &e.to_string()),
                }
            }
            Some(c) => {
                // Still the leader while the session that holds the lock is alive.
                if let Err(e) = diesel::sql_query("SELECT 1").execute(c) {
                    step_down(&mut conn, &e.to_string());
                }
            }
        }
        sleep_unless(stop, every);
    }
    leader.store(false, Ordering::SeqCst);
    // Dropping the connection ends the session, which releases the lock at once.
    drop(conn);
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < total && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(step);
        slept += step;
    }
}
