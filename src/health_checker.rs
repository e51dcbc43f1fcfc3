//! `HealthChecker`: the background health check. Every `interval_seconds` it asks every
//! provider actor to probe its upstream with a real API call (the actors apply the results:
//! a failure counts, a success recovers an unhealthy provider when `auto_recovery` is on).
//!
//! It also owns the stored health-check configuration: `SetHealthConfig` writes it through the
//! `Store`, then applies it at once: a new interval reschedules the timer, new thresholds go
//! to every provider actor through the `Supervisor`.
//!
//! In a fleet only one instance sweeps per interval: the sweep runs only while `may_sweep`
//! says so (see `fleet::Leadership`); on SQLite the single instance always does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::provider::{Probe, ProbeReason};
use crate::store::{self, HealthConfigRow, Store, StoreError, now_naive};
use crate::supervisor::{ListProviders, Supervisor, UpdatePolicy};

/// The health-check configuration (the `health_check_configs` row).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HealthCheckConfig {
    pub enabled: bool,
    pub interval_seconds: u64,
    pub max_error_count: u32,
    pub retry_after_seconds: u64,
    pub auto_recovery: bool,
}

impl HealthCheckConfig {
    pub fn from_row(r: &HealthConfigRow) -> Self {
        HealthCheckConfig {
            enabled: r.enabled,
            // Stored rows are clamped to the range the API accepts.
            interval_seconds: r.interval_seconds.clamp(1, MAX_SECONDS) as u64,
            max_error_count: r.max_error_count.clamp(1, 10_000) as u32,
            retry_after_seconds: r.retry_after_seconds.clamp(1, MAX_SECONDS) as u64,
            auto_recovery: r.auto_recovery,
        }
    }

    pub fn to_row(self) -> HealthConfigRow {
        HealthConfigRow {
            id: 1,
            enabled: self.enabled,
            interval_seconds: self.interval_seconds as i64,
            max_error_count: self.max_error_count as i32,
            retry_after_seconds: self.retry_after_seconds as i64,
            auto_recovery: self.auto_recovery,
            updated_at: now_naive(),
        }
    }

    /// The API form: the settings plus the aliases `interval_minutes` and `retry_after_hours`.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "enabled": self.enabled,
            "interval_seconds": self.interval_seconds,
            "interval_minutes": self.interval_seconds as f64 / 60.0,
            "max_error_count": self.max_error_count,
            "retry_after_seconds": self.retry_after_seconds,
            "retry_after_hours": self.retry_after_seconds as f64 / 3600.0,
            "auto_recovery": self.auto_recovery,
        })
    }
}

/// A change to the configuration; absent fields keep their value. Each duration may be given
/// in seconds or by its alias (minutes, hours), not both.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfigUpdate {
    pub enabled: Option<bool>,
    pub interval_seconds: Option<i64>,
    pub interval_minutes: Option<f64>,
    pub max_error_count: Option<i64>,
    pub retry_after_seconds: Option<i64>,
    pub retry_after_hours: Option<f64>,
    pub auto_recovery: Option<bool>,
}

/// Longest interval or retry delay accepted: one week.
/// Longest check interval and retry delay: a week.
pub const MAX_SECONDS: i64 = 7 * 24 * 3600;

impl HealthConfigUpdate {
    /// Applies the change to `current`, or names the field that is wrong.
    pub fn apply(&self, current: HealthCheckConfig) -> Result<HealthCheckConfig, crate::config::FieldError> {
        use crate::config::FieldError;
        let seconds = |secs: Option<i64>, alias: Option<f64>, unit: f64, name: &str, alias_name: &str| {
            let from_alias = match alias {
                Some(a) if !a.is_finite() || a <= 0.0 => {
                    return Err(FieldError::new(alias_name, "must be a positive number"));
                }
                Some(a) => Some((a * unit).round() as i64),
                None => None,
            };
            let v = match (secs, from_alias) {
                (Some(s), Some(a)) if s != a => {
                    return Err(FieldError::new(
                        alias_name,
                        format!("disagrees with {name}; give one of them"),
                    ));
                }
                (s, a) => s.or(a),
            };
            match v {
                Some(v) if !(1..=MAX_SECONDS).contains(&v) => Err(FieldError::new(
                    name,
                    format!("must be between 1 and {MAX_SECONDS} seconds"),
                )),
                other => Ok(other.map(|v| v as u64)),
            }
        };
        let interval = seconds(
            self.interval_seconds,
            self.interval_minutes,
            60.0,
            "interval_seconds",
            "interval_minutes",
        )?;
        let retry = seconds(
            self.retry_after_seconds,
            self.retry_after_hours,
            3600.0,
            "retry_after_seconds",
            "retry_after_hours",
        )?;
        let max_errors = match self.max_error_count {
            Some(n) if !(1..=10_000).contains(&n) => {
                return Err(FieldError::new("max_error_count", "must be between 1 and 10000"));
            }
            other => other.map(|n| n as u32),
        };
        Ok(HealthCheckConfig {
            enabled: self.enabled.unwrap_or(current.enabled),
            interval_seconds: interval.unwrap_or(current.interval_seconds),
            max_error_count: max_errors.unwrap_or(current.max_error_count),
            retry_after_seconds: retry.unwrap_or(current.retry_after_seconds),
            auto_recovery: self.auto_recovery.unwrap_or(current.auto_recovery),
        })
    }
}

/// Read the current configuration.
#[derive(Message)]
#[rtype(result = "HealthCheckConfig")]
pub struct GetHealthConfig;

/// Store a new configuration and apply it at once.
#[derive(Message)]
#[rtype(result = "Result<HealthCheckConfig, StoreError>")]
pub struct SetHealthConfig(pub HealthCheckConfig);

/// Apply a configuration another instance stored (fleet sync); nothing is written.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyHealthConfig(pub HealthCheckConfig);

/// Run one sweep now (used by tests and after a leadership change).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct SweepNow;

/// Stop the background check (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for HealthChecker {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The health checker actor.
pub struct HealthChecker {
    config: HealthCheckConfig,
    supervisor: Addr<Supervisor>,
    store: Addr<Store>,
    timer: Option<SpawnHandle>,
    /// Whether this instance may run the periodic sweep (fleet leadership).
    may_sweep: Arc<AtomicBool>,
}

impl HealthChecker {
    pub fn new(
        config: HealthCheckConfig,
        supervisor: Addr<Supervisor>,
        store: Addr<Store>,
        may_sweep: Arc<AtomicBool>,
    ) -> Self {
        HealthChecker {
            config,
            supervisor,
            store,
            timer: None,
            may_sweep,
        }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        let every = Duration::from_secs(self.config.interval_seconds);
        self.timer = Some(ctx.run_interval(every, |act, ctx| {
            if act.config.enabled && act.may_sweep.load(Ordering::Relaxed) {
                act.sweep(ctx);
            }
        }));
    }

    /// Asks every provider actor to probe. Probes run concurrently, each in its own actor.
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let supervisor = self.supervisor.clone();
        ctx.spawn(
            async move {
                if let Ok(providers) = supervisor.send(ListProviders).await {
                    log::debug!("health sweep over {} provider(s)", providers.len());
                    for p in providers.iter().filter(|p| p.config.enabled) {
                        p.actor.do_send(Probe(ProbeReason::Sweep));
                    }
                }
            }
            .into_actor(self),
        );
    }

    fn apply(&mut self, config: HealthCheckConfig, ctx: &mut Context<Self>) {
        let interval_changed = config.interval_seconds != self.config.interval_seconds;
        self.config = config;
        self.supervisor
            .do_send(UpdatePolicy(crate::provider::health::Policy {
                max_error_count: config.max_error_count,
                retry_after: chrono::Duration::seconds(config.retry_after_seconds as i64),
                auto_recovery: config.auto_recovery,
                // The supervisor keeps its own (from the file): see `UpdatePolicy`.
                recovery: Default::default(),
            }));
        if interval_changed {
            self.schedule(ctx);
        }
    }
}

impl Actor for HealthChecker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.schedule(ctx);
    }
}

impl Handler<GetHealthConfig> for HealthChecker {
    type Result = MessageResult<GetHealthConfig>;

    fn handle(&mut self, _: GetHealthConfig, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.config)
    }
}

impl Handler<SetHealthConfig> for HealthChecker {
    type Result = ResponseActFuture<Self, Result<HealthCheckConfig, StoreError>>;

    /// Stores first; applies only what was stored, so a restart behaves the same.
    fn handle(&mut self, msg: SetHealthConfig, _: &mut Context<Self>) -> Self::Result {
        let row = msg.0.to_row();
        let store = self.store.clone();
        Box::pin(
            async move { store::run(&store, move |db| db.save_health_config(&row)).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    result?;
                    act.apply(msg.0, ctx);
                    Ok(msg.0)
                }),
        )
    }
}

impl Handler<ApplyHealthConfig> for HealthChecker {
    type Result = ();

    fn handle(&mut self, msg: ApplyHealthConfig, ctx: &mut Context<Self>) {
        if msg.0 != self.config {
            self.apply(msg.0, ctx);
        }
    }
}

impl Handler<SweepNow> for HealthChecker {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, _: SweepNow, _: &mut Context<Self>) -> Self::Result {
        let supervisor = self.supervisor.clone();
        Box::pin(
            async move {
                let providers = supervisor.send(ListProviders).await.unwrap_or_default();
                let enabled: Vec<_> = providers.into_iter().filter(|p| p.config.enabled).collect();
                for p in &enabled {
                    p.actor.do_send(Probe(ProbeReason::Sweep));
                }
                enabled.len()
            }
            .into_actor(self),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_stored_rows_are_clamped() {
        let row = |secs: i64, errors: i32| HealthConfigRow {
            id: 1,
            enabled: true,
            interval_seconds: secs,
            max_error_count: errors,
            retry_after_seconds: secs,
            auto_recovery: true,
            updated_at: crate::store::now_naive(),
        };
        let c = HealthCheckConfig::from_row(&row(i64::MAX, i32::MAX));
        assert_eq!(
            (c.interval_seconds, c.retry_after_seconds),
            (MAX_SECONDS as u64, MAX_SECONDS as u64)
        );
        assert_eq!(c.max_error_count, 10_000);
        let c = HealthCheckConfig::from_row(&row(-5, -5));
        assert_eq!(
            (c.interval_seconds, c.retry_after_seconds, c.max_error_count),
            (1, 1, 1)
        );
        // The policy built from such a row does not panic either.
        let p = crate::app::policy_from(&row(i64::MAX, i32::MIN));
        assert_eq!(p.retry_after, chrono::Duration::seconds(MAX_SECONDS));
    }

    fn current() -> HealthCheckConfig {
        HealthCheckConfig {
            enabled: true,
            interval_seconds: 300,
            max_error_count: 5,
            retry_after_seconds: 3600,
            auto_recovery: true,
        }
    }

    #[test]
    fn aliases_are_accepted_and_checked() {
        let u = HealthConfigUpdate {
            interval_minutes: Some(2.0),
            retry_after_hours: Some(0.5),
            ..Default::default()
        };
        let c = u.apply(current()).unwrap();
        assert_eq!((c.interval_seconds, c.retry_after_seconds), (120, 1800));
        let clash = HealthConfigUpdate {
            interval_seconds: Some(5),
            interval_minutes: Some(1.0),
            ..Default::default()
        };
        assert_eq!(clash.apply(current()).unwrap_err().field, "interval_minutes");
        let bad = HealthConfigUpdate {
            max_error_count: Some(0),
            ..Default::default()
        };
        assert_eq!(bad.apply(current()).unwrap_err().field, "max_error_count");
        let bad = HealthConfigUpdate {
            interval_seconds: Some(-1),
            ..Default::default()
        };
        assert_eq!(bad.apply(current()).unwrap_err().field, "interval_seconds");
        let json = current().to_json();
        assert_eq!(json["interval_minutes"], 5.0);
        assert_eq!(json["retry_after_hours"], 1.0);
    }
}
