//! The database: diesel + r2d2 over SQLite or PostgreSQL with one code path.
//!
//! `Store` is a `SyncArbiter` actor: its threads own the blocking diesel calls, so neither the
//! async workers nor the other actors ever wait on the database. Everything that reads or
//! writes the database sends `Store` a message defined here.

pub mod file_modes;
pub mod keys;
pub mod migrations;
pub mod models;
pub mod pool;
pub mod queries;
pub mod schema;
pub mod standing;
pub mod tx;

use actix::prelude::*;
use chrono::{NaiveDateTime, SubsecRound, Utc};

pub use models::*;
pub use pool::{Backend, DbPool};
pub use queries::UsageFilter;
pub use standing::{FleetSnapshot, StandingWrite, StoredProvider};

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid database URL: {0}")]
    BadUrl(String),
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("not found")]
    NotFound,
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("database query failed: {0}")]
    Query(diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database actor unavailable")]
    Mailbox,
    #[error("{0}")]
    Failed(String),
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::NotFound => StoreError::NotFound,
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                StoreError::Conflict(info.message().to_string())
            }
            other => StoreError::Query(other),
        }
    }
}

impl From<MailboxError> for StoreError {
    fn from(_: MailboxError) -> Self {
        StoreError::Mailbox
    }
}

/// Now in UTC, truncated to microseconds so both backends store the same value.
pub fn now_naive() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

/// The database actor. Run it with `SyncArbiter::start(n, …)`.
pub struct Store {
    pool: DbPool,
}

impl Store {
    pub fn new(pool: DbPool) -> Self {
        Store { pool }
    }
}

impl Actor for Store {
    type Context = SyncContext<Self>;
}

/// Runs a closure against the pool on a store thread. Every store message is one of these
/// closures wrapped in a named constructor below, so callers read as `store.send(...)` with a
/// typed reply, while the actor stays one handler.
pub struct Query<T: Send + 'static>(QueryFn<T>);

/// The work a `Query` carries.
type QueryFn<T> = Box<dyn FnOnce(&DbPool) -> Result<T, StoreError> + Send>;

impl<T: Send + 'static> Message for Query<T> {
    type Result = Result<T, StoreError>;
}

impl<T: Send + 'static> Handler<Query<T>> for Store {
    type Result = Result<T, StoreError>;

    fn handle(&mut self, msg: Query<T>, _: &mut SyncContext<Self>) -> Self::Result {
        (msg.0)(&self.pool)
    }
}

impl<T: Send + 'static> Query<T> {
    /// Wraps any blocking operation on the pool.
    pub fn new(f: impl FnOnce(&DbPool) -> Result<T, StoreError> + Send + 'static) -> Self {
        Query(Box::new(f))
    }
}

/// Convenience: send a query to the store and flatten the mailbox error.
pub async fn run<T: Send + 'static>(
    store: &Addr<Store>,
    f: impl FnOnce(&DbPool) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    store.send(Query::new(f)).await?
}
