//! A fleet of instances sharing one PostgreSQL (docs/DESIGN.md §6). Two parts:
//!
//! - `FleetSync` polls the change marker (`config_version`) every `fleet.sync_interval_ms`.
//!   Every configuration write, and every standing change (unhealthy, recovered, rescheduled,
//!   reset), bumps it in the same transaction; when it moves, the instance reloads providers,
//!   their standings and the health-check configuration in one snapshot (marker first), and
//!   reconciles its actor graph with them: each provider actor applies a standing newer than
//!   the one it holds (see `provider::standing`). A stored provider this instance cannot load
//!   is skipped and listed as not loaded (`provider::not_loaded`). Polling a one-row table was chosen over LISTEN/NOTIFY: it needs no dedicated
//!   connection per instance, survives reconnects without lost notifications, and a change
//!   reaches every instance within one interval (2 s by default) at the cost of one tiny
//!   query per interval.
//! - `Leadership` decides which instance runs the periodic health sweep: the one holding a
//!   PostgreSQL advisory lock on a dedicated connection (never a pooled one: the lock belongs
//!   to the session). The leader pings that connection and steps down if it breaks; the
//!   others try to take the lock every sync interval, so when the leader dies (even by
//!   `kill -9`, which closes its connection) another takes over within one interval. The
//!   connection has a connect timeout, TCP keepalives and a TCP user timeout, so a dead network
//!   path ends it instead of holding it; stopping never waits for it longer than a bound.
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
use crate::provider::not_loaded::NotLoaded;
use crate::provider::spec::ProviderConfig;
use crate::provider::standing::Standing;
use crate::provider::{ApplyStanding, from_row};
use crate::sealing::ProviderKeys;
use crate::store::{self, Store, StoreError, StoredProvider};
use crate::supervisor::{AddProvider, ListProviders, RemoveProvider, Supervisor, UpdateProvider};

/// Advisory lock key of the health-sweep leader ("swyd-hc").
pub const LEADER_LOCK_KEY: i64 = 0x0073_7779_6468_6363;

/// How long `Leadership::stop` waits for its thread; past that the thread is left to end
/// with the process (its session, and so the lock, ends with the connection).
const LEADERSHIP_STOP_LIMIT: Duration = Duration::from_secs(1);

/// This process's name in a fleet: host, process id and a random suffix (a restarted process
/// on the same host is another instance). Recorded with every standing change it makes.
pub fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| {
                h.trim()
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(64)
                    .collect::<String>()
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into());
        format!("{host}:{}:{}", std::process::id(), crate::secret::random_token(3))
    })
}

/// A stored provider as this instance routes it: its configuration, the health to start from
/// (the stored standing, and the stored counters only when `own_counters`: on SQLite they
/// are this instance's own; in a fleet each instance counts for itself) and the standing.
pub fn loadable(
    stored: &StoredProvider,
    keys: &ProviderKeys,
    default_timeout_ms: u64,
    env: &dyn Fn(&str) -> Option<String>,
    own_counters: bool,
) -> Result<(ProviderConfig, Health, Standing), String> {
    let config = from_row(&stored.row, keys, default_timeout_ms, env)?;
    let mut health = match (&stored.counters, own_counters) {
        (Some(v), true) => Health::from_row(v),
        _ => Health::healthy(),
    };
    let standing = match &stored.standing {
        Some(row) => Standing::from_row(row),
        None => Standing {
            is_healthy: health.is_healthy,
            next_retry_at: health.next_retry_at,
            ..Standing::initial()
        },
    };
    health.is_healthy = standing.is_healthy;
    health.next_retry_at = standing.next_retry_at;
    Ok((config, health, standing))
}

/// The configuration syncer actor.
pub struct FleetSync {
    store: Addr<Store>,
    supervisor: Addr<Supervisor>,
    health_checker: Addr<HealthChecker>,
    not_loaded: NotLoaded,
    every: Duration,
    default_timeout_ms: u64,
    /// Opens sealed provider keys; decides which `api_key_env` names may be read.
    keys: Arc<ProviderKeys>,
    /// The marker last acted on.
    seen: Option<i64>,
    busy: bool,
}

impl FleetSync {
    #[allow(
        clippy::too_many_arguments,
        reason = "the actor's collaborators and settings, each named at the one call site"
    )]
    pub fn new(
        store: Addr<Store>,
        supervisor: Addr<Supervisor>,
        health_checker: Addr<HealthChecker>,
        not_loaded: NotLoaded,
        every: Duration,
        default_timeout_ms: u64,
        keys: Arc<ProviderKeys>,
        seen: Option<i64>,
    ) -> Self {
        FleetSync {
            store,
            supervisor,
            health_checker,
            not_loaded,
            every,
            default_timeout_ms,
            keys,
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
        let (seen, timeout, not_loaded) = (self.seen, self.default_timeout_ms, self.not_loaded.clone());
        let keys = self.keys.clone();
        let work = async move {
            let version = store::run(&store, |db| db.config_version()).await?;
            if Some(version) == seen {
                return Ok(version);
            }
            reconcile(&store, &supervisor, &checker, &not_loaded, &keys, timeout).await
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

/// Brings this instance's providers, their standings and the health-check config in line
/// with the database; answers the marker of the snapshot it read.
async fn reconcile(
    store: &Addr<Store>,
    supervisor: &Addr<Supervisor>,
    checker: &Addr<HealthChecker>,
    not_loaded: &NotLoaded,
    keys: &ProviderKeys,
    default_timeout_ms: u64,
) -> Result<i64, StoreError> {
    let snapshot = store::run(store, |db| db.fleet_snapshot()).await?;
    let current = supervisor.send(ListProviders).await?;
    let env = |k: &str| std::env::var(k).ok();
    let mut stored_ids = HashSet::new();
    for stored in &snapshot.providers {
        let (id, name) = (stored.row.id, &stored.row.name);
        stored_ids.insert(id);
        let entry = current.iter().find(|e| e.config.id == id);
        let (config, health, standing) = match loadable(stored, keys, default_timeout_ms, &env, false) {
            Ok(loaded) => loaded,
            Err(reason) => {
                not_loaded.insert(id, name, reason);
                // Its stored configuration no longer loads here: routing it by an older
                // configuration would be wrong, so it stops until it loads again.
                if entry.is_some() {
                    supervisor.send(RemoveProvider(id)).await?;
                }
                continue;
            }
        };
        not_loaded.remove(id);
        match entry {
            None => {
                log::info!("fleet: provider {name} (id {id}) added elsewhere");
                let actor = supervisor.send(AddProvider { config, health }).await?;
                actor.do_send(ApplyStanding(standing));
            }
            Some(entry) => {
                if *entry.config != config {
                    log::info!("fleet: provider {name} (id {id}) changed elsewhere");
                    supervisor.send(UpdateProvider(config)).await?;
                }
                // Applied only when newer than the standing the actor holds.
                entry.actor.do_send(ApplyStanding(standing));
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
    not_loaded.retain(&stored_ids);
    if let Some(row) = &snapshot.health_config {
        checker.do_send(ApplyHealthConfig(HealthCheckConfig::from_row(row)));
    }
    Ok(snapshot.version)
}

/// The sweep leadership thread. Dropping it (or `stop`) releases the lock.
pub struct Leadership {
    stop: Arc<AtomicBool>,
    /// Closed by the thread when it ends (its sender is dropped).
    ended: Option<std::sync::mpsc::Receiver<()>>,
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
        let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
        let url = store::pool::with_network_timeouts(&url);
        let started = std::thread::Builder::new()
            .name("switchyard-leader".into())
            .spawn(move || {
                let _ended = ended_tx;
                run_leadership(&url, every, &leader, &stop2)
            })
            .map_err(|e| log::error!("cannot start the leadership thread: {e}"))
            .is_ok();
        Leadership {
            stop,
            ended: started.then_some(ended),
        }
    }

    /// Steps down and waits (at most `LEADERSHIP_STOP_LIMIT`) for the thread to end, which
    /// releases the lock at once. A thread stuck in a call on a dead connection is left
    /// behind: its session ends with the process or with the TCP timeouts of its connection.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(ended) = self.ended.take()
            && ended.recv_timeout(LEADERSHIP_STOP_LIMIT) == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        {
            log::warn!(
                "fleet: the leadership connection did not close in time; leaving it to the process's end"
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_stable_and_printable() {
        assert_eq!(instance_id(), instance_id());
        assert!(instance_id().chars().all(|c| c.is_ascii_graphic()));
        assert!(instance_id().contains(&std::process::id().to_string()));
    }
}
