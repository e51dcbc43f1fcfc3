//! Switchyard: one OpenAI-compatible `/v1/chat/completions` endpoint in front of many
//! upstream LLM providers, with weighted failover, provider health and daily usage.
//!
//! ```text
//!  actix-web workers ──pick{model, exclude}──▶ routing table ◀──writes── Supervisor ──owns──▶ ProviderActor × N
//!    │  (chat, admin)  ◀──Route───────────────  (weighted round-robin          ▲                health counters,
//!    │                                           among healthy providers)      └─HealthChanged─ retry timer, probe
//!    │──Outcome (failures at once; successes counted, one ring per batch)──────────────────▶ ProviderActor
//!    │──Usage   (queued, one ring per batch)──▶ StatsActor ──batched additive upserts──▶ DB
//!    └──admin messages──▶ Supervisor / HealthChecker / Store      HealthChecker ──Probe──▶ ProviderActor
//! ```
//!
//! `routing` holds the failover rules and the loop every client route runs through.
//!
//! The request path does no database I/O and waits on no actor: a pick reads the routing table
//! the Supervisor keeps (`supervisor::routes` says why it is not a mailbox round trip), and
//! results go out as fire-and-forget messages. See `README.md` for operation and
//! `docs/DESIGN.md` for the contract.

pub mod app;
pub mod config;
pub mod error;
pub mod events;
pub mod fleet;
pub mod health_checker;
pub mod http;
pub mod metrics;
pub mod panic;
pub mod provider;
pub mod rotate;
pub mod routing;
pub mod sealing;
pub mod secret;
pub mod stats;
pub mod store;
pub mod supervisor;
pub mod translate;
pub mod upstream;

pub use app::{Running, StartOptions, StartupError, start};
pub use config::Config;
