//! Start-up and shutdown: builds the database, the actor graph and the HTTP server, and
//! returns a `Running` handle used alike by `main` and by the tests.
//!
//! Start-up reads the change marker before the providers it loads (one snapshot), so a
//! change committed meanwhile is applied by the first sync; a stored provider that does not
//! load here is skipped and listed as not loaded, never fatal.
//!
//! Shutdown order: stop accepting, let in-flight requests (streams included) finish, then
//! write usage and every provider's pending health concurrently within one budget
//! (`FINAL_WRITE_BUDGET`), then give up the sweep leadership (bounded too), then return.
//! Nothing on that path waits without a bound, even on a database that stopped answering.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{App, HttpServer, web};

use crate::config::Config;
use crate::events::EventBus;
use crate::fleet::{FleetSync, Leadership};
use crate::health_checker::{HealthCheckConfig, HealthChecker};
use crate::http::edge::EdgePolicy;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::provider::health::Policy;
use crate::provider::not_loaded::NotLoaded;
use crate::provider::{ApplyStanding, ProbeSettings, ProviderDeps, SaveNow};
use crate::sealing::ProviderKeys;
use crate::secret::{Secret, random_token};
use crate::stats::{Flush, StatsActor, UsageQueue};
use crate::store::{self, Backend, DbPool, HealthConfigRow, Store, StoreError, now_naive};
use crate::supervisor::{AddProvider, ListProviders, Supervisor};
use crate::upstream::clients::UpstreamClients;

/// How long the final writes (usage and pending health, together) may take at shutdown,
/// retrying an unavailable database; what is still unwritten then is lost, and said so.
const FINAL_WRITE_BUDGET: Duration = Duration::from_secs(5);
/// How long shutdown waits for the leadership connection to close.
const LEADERSHIP_RELEASE_LIMIT: Duration = Duration::from_secs(2);

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Database(#[from] StoreError),
    #[error("providers[{name}]: {message}")]
    Provider { name: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("{0}")]
    SingleInstance(String),
    /// The secret key, stored sealed keys or the upstream trust store.
    #[error("{0}")]
    Security(String),
}

/// Start-up options that are not configuration.
#[derive(Clone, Copy)]
pub struct StartOptions {
    /// Stop gracefully on SIGTERM and Ctrl-C (the binary); tests stop through the handle.
    pub handle_signals: bool,
}

/// The actors of a running router.
#[derive(Clone)]
pub struct Actors {
    pub store: Addr<Store>,
    pub supervisor: Addr<Supervisor>,
    pub stats: Addr<StatsActor>,
    pub health_checker: Addr<HealthChecker>,
}

/// A started router.
pub struct Running {
    pub addr: SocketAddr,
    /// The admin listener's address, with `admin_listen`.
    pub admin_addr: Option<SocketAddr>,
    pub admin_token: Secret,
    /// True when the token was generated (so `main` prints it once).
    pub admin_token_generated: bool,
    pub actors: Actors,
    pub metrics: Arc<Metrics>,
    pub events: EventBus,
    server: actix_web::dev::ServerHandle,
    server_task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// For the in-flight count at shutdown.
    routes: crate::supervisor::Routes,
    /// Held for the process's life on SQLite: a second process on the same file is refused.
    _instance_lock: Option<std::fs::File>,
    /// PostgreSQL fleets: configuration sync and health-sweep leadership.
    fleet_sync: Option<Addr<FleetSync>>,
    leadership: Option<Leadership>,
}

/// Starts everything on the current actix system.
pub async fn start(config: Config, options: StartOptions) -> Result<Running, StartupError> {
    // awc's rustls needs a process-wide crypto provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The listeners first: a taken port is the whole error, before any actor exists.
    let bind_error = |addr: &String| {
        let addr = addr.clone();
        move |source| StartupError::Bind { addr, source }
    };
    let listeners = http::listen::bind_all(&config.listen).map_err(bind_error(&config.listen))?;
    // The admin listener's address is known before the edge is made (port 0 in tests).
    let admin_listener = match &config.admin_listen {
        Some(a) => Some(http::listen::bind_first(a).map_err(bind_error(a))?),
        None => None,
    };
    let config = Arc::new(config);
    let keys =
        Arc::new(ProviderKeys::from_config(&config).map_err(|e| StartupError::Security(e.to_string()))?);
    crate::upstream::tls::install(config.upstream_ca_bundle.as_deref()).map_err(StartupError::Security)?;
    let backend = Backend::from_url(&config.database_url)?;
    let instance_lock = match &backend {
        Backend::Sqlite(path) => Some(lock_sqlite(path)?),
        Backend::Postgres(_) => None,
    };
    let pool_size = config.db_pool_size;
    let pool = blocking(move || {
        let pool = DbPool::connect(&backend, pool_size)?;
        let ran = store::migrations::run(&pool)?;
        if ran > 0 {
            log::info!("applied {ran} database migration(s)");
        }
        Ok(pool)
    })
    .await?;
    seal_stored_keys(&pool, &keys).await?;

    let seed = health_row(&config);
    blocking({
        let pool = pool.clone();
        let seed = seed.clone();
        move || pool.seed_health_config(&seed)
    })
    .await?;
    seed_providers(&pool, &config, &keys).await?;
    // The marker first, in the same snapshot as the rows: see `FleetSnapshot`.
    let snapshot = blocking({
        let pool = pool.clone();
        move || pool.fleet_snapshot()
    })
    .await?;
    let health_config = snapshot.health_config.clone().unwrap_or(seed);

    let store_threads = (config.db_pool_size as usize).clamp(1, 8);
    let store = {
        let pool = pool.clone();
        SyncArbiter::start(store_threads, move || Store::new(pool.clone()))
    };
    let metrics = Arc::new(Metrics::default());
    let events = EventBus::default();
    let deps = ProviderDeps {
        store: store.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
        policy: Policy {
            recovery: config.health_check.recovery(),
            ..policy_from(&health_config)
        },
        probe: ProbeSettings::from_config(&config),
    };
    let supervisor = Supervisor::new(deps);
    let routes = supervisor.routes();
    routes.set_queue(
        config.routing.max_queue,
        Duration::from_millis(config.routing.queue_timeout_ms),
    );
    routes.set_strategies(crate::supervisor::strategy::Strategies::from_config(
        &config.routing,
    ));
    let supervisor = supervisor.start();
    let env = |k: &str| std::env::var(k).ok();
    let not_loaded = NotLoaded::default();
    // On SQLite this instance wrote the stored counters and resumes them; in a fleet each
    // instance keeps its own and only the standing is shared.
    let own_counters = !pool.is_postgres();
    for stored in &snapshot.providers {
        match crate::fleet::loadable(
            stored,
            &keys,
            config.routing.request_timeout_ms,
            &env,
            own_counters,
        ) {
            Ok((provider, health, standing)) => {
                crate::upstream::tls::warn_if_key_in_clear(
                    &provider.name,
                    &provider.base_url,
                    !provider.api_key.is_empty(),
                );
                let actor = supervisor
                    .send(AddProvider {
                        config: provider,
                        health,
                    })
                    .await
                    .map_err(|_| mailbox())?;
                actor.do_send(ApplyStanding(standing));
            }
            Err(reason) => not_loaded.insert(stored.row.id, &stored.row.name, reason),
        }
    }
    // On PostgreSQL the sweep belongs to the leader of the fleet; SQLite has one instance.
    let may_sweep = Arc::new(AtomicBool::new(!pool.is_postgres()));
    let health_checker = HealthChecker::new(
        HealthCheckConfig::from_row(&health_config),
        supervisor.clone(),
        store.clone(),
        may_sweep.clone(),
    )
    .start();
    let (fleet_sync, leadership) = if pool.is_postgres() {
        let every = Duration::from_millis(config.fleet.sync_interval_ms);
        let sync = FleetSync::new(
            store.clone(),
            supervisor.clone(),
            health_checker.clone(),
            not_loaded.clone(),
            every,
            config.routing.request_timeout_ms,
            keys.clone(),
            Some(snapshot.version),
        )
        .start();
        (
            Some(sync),
            Some(Leadership::start(
                config.database_url.clone(),
                every,
                may_sweep.clone(),
            )),
        )
    } else {
        (None, None)
    };
    metrics.set_sweep_flag(may_sweep.clone());
    let usage = Arc::new(UsageQueue::default());
    let stats = StatsActor::new(
        usage.clone(),
        store.clone(),
        metrics.clone(),
        Duration::from_millis(config.stats.flush_ms),
        config.stats.max_batch_rows,
    )
    .with_daily_counts(routes.daily_counts())
    .start();

    let (admin_token, admin_token_generated) = match &config.admin_token {
        Some(t) => (Secret::new(t.clone()), false),
        None => (Secret::new(random_token(24)), true),
    };
    let state = web::Data::new(AppState {
        config: config.clone(),
        supervisor: supervisor.clone(),
        routes,
        stats: stats.clone(),
        usage,
        store: store.clone(),
        health_checker: health_checker.clone(),
        not_loaded,
        events: events.clone(),
        metrics: metrics.clone(),
        admin_token: admin_token.clone(),
        api_keys: Arc::new(config.api_keys.iter().map(|k| Secret::new(k.clone())).collect()),
        keys: keys.clone(),
        admin_failures: Arc::default(),
        responses: Default::default(),
    });
    let admin_addr = match &admin_listener {
        Some(l) => Some(l.local_addr().map_err(|source| StartupError::Bind {
            addr: config.admin_listen.clone().unwrap_or_default(),
            source,
        })?),
        None => None,
    };
    let edge = web::Data::new(EdgePolicy::new(&config, admin_addr));
    let connect_timeout = Duration::from_millis(config.routing.connect_timeout_ms);
    let per_provider = config.routing.max_connections_per_provider;
    let workers = if config.workers == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
    } else {
        config.workers
    };
    let routes = state.routes.clone();
    let server = HttpServer::new(move || {
        // One awc client, and so one upstream connection pool, per worker thread.
        let clients = UpstreamClients::new(connect_timeout, per_provider);
        App::new()
            .app_data(state.clone())
            .app_data(web::Data::new(clients))
            .app_data(edge.clone())
            // Origin, Host, content type, listener split, slow bodies, long streams.
            .wrap(actix_web::middleware::from_fn(http::edge::edge))
            .configure(http::configure)
    })
    .workers(workers)
    // A client that closes its side has left: the request's future is dropped, so a stalled
    // upstream call is abandoned (and reported once, as neutral) rather than paid for to the
    // end. HTTP clients do not half-close while they wait for an answer.
    .h1_allow_half_closed(false)
    // Each answer and stream chunk leaves in as few writes as the router can make, and must go
    // out at once: with Nagle's algorithm on (the OS default, which actix keeps), a stream event
    // written while the previous one is unacknowledged waits for the client's delayed ACK, up
    // to 40 ms.
    .tcp_nodelay(true)
    // actix counts connections per worker; `max_connections` is for the whole process.
    .max_connections(config.max_connections.div_ceil(workers).max(1))
    .shutdown_timeout(config.shutdown_grace_seconds)
    .disable_signals();
    let mut server = server;
    for l in listeners {
        server = server.listen(l).map_err(bind_error(&config.listen))?;
    }
    if let (Some(l), Some(a)) = (admin_listener, &config.admin_listen) {
        server = server.listen(l).map_err(bind_error(a))?;
    }
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| StartupError::Bind {
            addr: config.listen.clone(),
            source: std::io::Error::other("no address bound"),
        })?;
    let server = server.run();
    let handle = server.handle();
    let server_task = tokio::task::spawn_local(server);
    if options.handle_signals {
        spawn_signal_handler(handle.clone(), events.clone());
    }
    log::info!("switchyard listening on http://{addr}");
    if let Some(a) = admin_addr {
        log::info!("admin API on http://{a} (not on the public address)");
    }
    Ok(Running {
        addr,
        admin_addr,
        admin_token,
        admin_token_generated,
        actors: Actors {
            store,
            supervisor,
            stats,
            health_checker,
        },
        metrics,
        events,
        server: handle,
        server_task,
        routes,
        _instance_lock: instance_lock,
        fleet_sync,
        leadership,
    })
}

impl Running {
    /// Base URL of the router, e.g. `http://127.0.0.1:7070`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops gracefully: in-flight requests finish, then usage and health are flushed.
    pub async fn stop(self) {
        self.events.close();
        self.server.stop(true).await;
        self.finish().await;
    }

    /// Waits until the server stops (a signal), then flushes like `stop`.
    pub async fn wait(self) {
        self.finish().await;
    }

    async fn finish(mut self) {
        match self.server_task.await {
            Ok(Err(e)) => log::error!("the HTTP server failed: {e}"),
            Err(e) => log::error!("the HTTP server task failed: {e}"),
            Ok(Ok(())) => {}
        }
        // Requests dropped after the grace period report their attempts from `Drop` on the
        // worker threads, which may still be unwinding when the server's task ends: wait for
        // them (briefly) so the flush below includes those records.
        let settled = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.routes.inflight() > 0 && tokio::time::Instant::now() < settled {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The background check stops with the server; probes already running are dropped.
        self.actors.health_checker.do_send(crate::health_checker::Stop);
        if let Some(sync) = self.fleet_sync.take() {
            sync.do_send(crate::fleet::StopSync);
        }
        // Usage and pending health first, together, within one budget: a database that
        // stopped answering costs the budget, not the process's exit.
        let give_up = tokio::time::Instant::now() + FINAL_WRITE_BUDGET;
        let usage = flush_until_stored(&self.actors.stats, give_up);
        let health = save_all_health(&self.actors.supervisor);
        if tokio::time::timeout_at(give_up, futures_util::future::join(usage, health))
            .await
            .is_err()
        {
            log::error!(
                "the final writes did not finish within {} s; unwritten usage and health are lost",
                FINAL_WRITE_BUDGET.as_secs()
            );
        }
        // Then the sweep goes to another instance.
        if let Some(mut leadership) = self.leadership.take() {
            let release = actix_web::rt::task::spawn_blocking(move || leadership.stop());
            let _ = tokio::time::timeout(LEADERSHIP_RELEASE_LIMIT, release).await;
        }
        log::info!("switchyard stopped");
    }
}

/// Flushes usage, retrying while the database is unavailable, until `give_up`.
async fn flush_until_stored(stats: &Addr<StatsActor>, give_up: tokio::time::Instant) {
    loop {
        match stats.send(Flush).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) if tokio::time::Instant::now() < give_up => {
                log::warn!("final usage flush failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok(Err(e)) => {
                log::error!("final usage flush failed; unwritten usage is lost: {e}");
                return;
            }
            Err(_) => return,
        }
    }
}

/// Writes every provider's pending health, all at once.
async fn save_all_health(supervisor: &Addr<Supervisor>) {
    if let Ok(providers) = supervisor.send(ListProviders).await {
        futures_util::future::join_all(providers.iter().map(|p| p.actor.send(SaveNow))).await;
    }
}

fn spawn_signal_handler(server: actix_web::dev::ServerHandle, events: EventBus) {
    // Registered here, before start-up logs that it is listening, not inside the task: a
    // SIGTERM sent as soon as the router is up must find the handler, not the default action.
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    };
    actix_web::rt::spawn(async move {
        #[cfg(unix)]
        {
            let (Ok(mut term), Ok(mut int)) = signals else {
                log::error!("cannot install signal handlers; stop the process with SIGKILL");
                return;
            };
            tokio::select! {
                _ = term.recv() => log::info!("SIGTERM: finishing in-flight requests"),
                _ = int.recv() => log::info!("Ctrl-C: finishing in-flight requests"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        events.close();
        server.stop(true).await;
    });
}

/// Refuses a second process on the same SQLite file: SQLite is for one instance, and two
/// routers would each keep their own health and counters. Creates the database's directory
/// (0700) and file (0600) when missing.
pub fn lock_sqlite(path: &str) -> Result<std::fs::File, StartupError> {
    use std::os::unix::fs::OpenOptionsExt;
    crate::store::file_modes::prepare_sqlite_file(path)?;
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(crate::store::file_modes::FILE_MODE)
        .open(&lock_path)
        .map_err(|e| StartupError::SingleInstance(format!("cannot open {lock_path}: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartupError::SingleInstance(format!(
            "another switchyard process is using {path}; SQLite serves one instance only \
             (use PostgreSQL, DATABASE_URL=postgres://…, to run several)"
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StartupError::SingleInstance(format!(
            "cannot lock {lock_path}: {e}"
        ))),
    }
}

/// Runs blocking database work off the async thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Failed(format!("start-up task failed: {e}")))?
}

fn mailbox() -> StartupError {
    StartupError::Database(StoreError::Mailbox)
}

/// Refuses sealed keys this process cannot open, seals plaintext ones when a key is set, and
/// says where keys stand.
async fn seal_stored_keys(pool: &DbPool, keys: &Arc<ProviderKeys>) -> Result<(), StartupError> {
    let sealed = blocking({
        let (pool, keys) = (pool.clone(), keys.clone());
        move || crate::sealing::prepare_stored_keys(&pool, &keys)
    })
    .await
    .map_err(|e| StartupError::Security(e.to_string()))?;
    match keys.sealing() {
        Some(k) if sealed > 0 => log::info!("sealed {sealed} plaintext provider key(s) with key {}", k.id()),
        Some(_) => {}
        None => log::warn!(
            "SWITCHYARD_SECRET_KEY is not set: provider keys are stored in plaintext in the database"
        ),
    }
    Ok(())
}

/// Upserts the config file's providers by name.
async fn seed_providers(pool: &DbPool, config: &Config, keys: &ProviderKeys) -> Result<(), StartupError> {
    // A key variable this instance lacks does not stop the seeding (the row stores only the
    // variable's name): the provider is then listed as not loaded, like any stored one.
    let env = |k: &str| std::env::var(k).ok().or_else(|| Some("unset".into()));
    let mut rows = Vec::new();
    for spec in &config.providers {
        let valid = spec
            .validate(0, config.routing.request_timeout_ms, &env)
            .map_err(|e| StartupError::Provider {
                name: spec.name.clone(),
                message: e.to_string(),
            })?;
        rows.push(
            crate::provider::to_new_row(&valid, keys).map_err(|e| StartupError::Security(e.to_string()))?,
        );
    }
    if rows.is_empty() {
        return Ok(());
    }
    let pool = pool.clone();
    blocking(move || {
        for row in &rows {
            pool.upsert_provider_by_name(row)?;
        }
        Ok(())
    })
    .await?;
    Ok(())
}

/// The stored health-check row seeded from `[health_check]`.
fn health_row(config: &Config) -> HealthConfigRow {
    let h = &config.health_check;
    HealthConfigRow {
        id: 1,
        enabled: h.enabled,
        interval_seconds: h.interval_seconds as i64,
        max_error_count: h.max_error_count.min(i32::MAX as u32) as i32,
        retry_after_seconds: h.retry_after_seconds as i64,
        auto_recovery: h.auto_recovery,
        updated_at: now_naive(),
    }
}

/// The failure policy of a stored health-check configuration.
pub fn policy_from(row: &HealthConfigRow) -> Policy {
    Policy {
        max_error_count: row.max_error_count.max(1) as u32,
        // A stored row is input like any other: clamp it to the range the API accepts.
        retry_after: chrono::Duration::seconds(
            row.retry_after_seconds
                .clamp(1, crate::health_checker::MAX_SECONDS),
        ),
        auto_recovery: row.auto_recovery,
        recovery: Default::default(),
    }
}
