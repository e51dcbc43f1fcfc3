//! Switchyard: one OpenAI-compatible `/v1/chat/completions` endpoint in front of many
//! upstream LLM providers, with weighted failover, provider health and daily usage.
//!
//! ```text
//!  actix-web workers ──Pick{model, exclude}──▶ Supervisor ──owns──▶ ProviderActor × N
//!    │  (chat, admin)  ◀──Route──────────────     ▲  round-robin        health counters,
//!    │                                            │  among healthy      retry timer, probe
//!    │──Outcome (do_send, after the call)─────────┼──────────────────▶ ProviderActor
//!    │──Usage   (do_send, after the call)──▶ StatsActor ──batched additive upserts──▶ DB
//!    └──admin messages──▶ Supervisor / HealthChecker / Store      HealthChecker ──Probe──▶ ProviderActor
//! ```
//!
//! The request path does no database I/O: routing reads actor state, and results go out as
//! fire-and-forget messages. See `README.md` for operation and `docs/DESIGN.md` for the contract.

pub mod app;
pub mod config;
pub mod error;
pub mod events;
pub mod fleet;
pub mod health_checker;
pub mod http;
pub mod metrics;
pub mod provider;
pub mod secret;
pub mod stats;
pub mod store;
pub mod supervisor;
pub mod upstream;

pub use app::{Running, StartOptions, StartupError, start};
pub use config::Config;
