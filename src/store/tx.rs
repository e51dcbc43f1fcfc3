//! Transactions as each backend needs them, behind one trait so query code stays written once.
//!
//! Writes on SQLite begin `IMMEDIATE`: the write lock is taken up front, where `busy_timeout`
//! makes a second writer wait. A deferred transaction that reads first and writes later takes
//! a read snapshot and then asks to upgrade it; when another connection wrote meanwhile SQLite
//! answers `SQLITE_BUSY` at once, without waiting, because waiting could not help. On
//! PostgreSQL a write transaction is a plain one (row locks do the rest), and a multi-statement
//! read runs `REPEATABLE READ` so every statement sees the same snapshot.

use diesel::prelude::*;
use diesel::{PgConnection, SqliteConnection};

use super::StoreError;
use super::models::ProviderRow;
use super::schema::providers;

/// The transaction kinds the store uses, on either backend.
pub trait Tx: Connection + Sized {
    /// A transaction that will write: holds the write lock from its first statement (SQLite).
    fn write_tx<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, StoreError>) -> Result<T, StoreError>;

    /// A read-only transaction whose statements all see one snapshot.
    fn read_tx<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, StoreError>) -> Result<T, StoreError>;

    /// Reads a provider's row and locks it until the transaction ends, so a read-merge-write
    /// of it cannot interleave with another. Call inside `write_tx`.
    fn provider_for_update(&mut self, id: i64) -> Result<ProviderRow, StoreError>;
}

impl Tx for PgConnection {
    fn write_tx<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.transaction(f)
    }

    fn read_tx<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.build_transaction().repeatable_read().read_only().run(f)
    }

    fn provider_for_update(&mut self, id: i64) -> Result<ProviderRow, StoreError> {
        Ok(providers::table
            .find(id)
            .select(ProviderRow::as_select())
            .for_update()
            .first(self)?)
    }
}

impl Tx for SqliteConnection {
    fn write_tx<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.immediate_transaction(f)
    }

    fn read_tx<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, StoreError>) -> Result<T, StoreError> {
        // In WAL mode a deferred transaction reads one snapshot from its first read on.
        self.transaction(f)
    }

    fn provider_for_update(&mut self, id: i64) -> Result<ProviderRow, StoreError> {
        // The immediate transaction around this already holds the database's write lock.
        Ok(providers::table
            .find(id)
            .select(ProviderRow::as_select())
            .first(self)?)
    }
}
