//! The stored provider keys as a whole: sealing plaintext rows at start and re-sealing every
//! row under a new key (`switchyard rotate-key`). Each function is one transaction, so a
//! failure leaves every row as it was.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use super::StoreError;
use super::pool::DbPool;
use super::schema::providers;
use crate::with_conn;

/// One stored key: (provider id, provider name, stored value).
pub type StoredKey = (i64, String, String);

/// Given a provider's name and stored key, the value to store instead (`None`: leave it).
pub type Rewrite<'a> = &'a dyn Fn(&str, &str) -> Result<Option<String>, StoreError>;

impl DbPool {
    /// Every provider's stored key value (plaintext, sealed or empty).
    pub fn stored_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        with_conn!(self, |conn| {
            Ok(providers::table
                .select((providers::id, providers::name, providers::api_key))
                .order(providers::id)
                .load(conn)?)
        })
    }

    /// Rewrites the stored keys in one transaction: `f` gets each row's (name, stored value)
    /// and returns the value to store instead, or `None` to leave it. An error from `f` rolls
    /// every change back. Returns how many rows changed. The change marker is not bumped: a
    /// new seal of the same key changes nothing for the rest of a fleet.
    pub fn rewrite_keys(&self, f: Rewrite<'_>) -> Result<usize, StoreError> {
        // On SQLite the pages and WAL frames that held the old values are overwritten and the
        // WAL is emptied, so a plaintext key does not linger in the file's free space.
        let sqlite = matches!(self, DbPool::Sqlite(_));
        with_conn!(self, |conn| {
            if sqlite {
                conn.batch_execute("PRAGMA secure_delete = ON;")?;
            }
            let changed = conn.transaction::<_, StoreError, _>(|conn| {
                let rows: Vec<StoredKey> = providers::table
                    .select((providers::id, providers::name, providers::api_key))
                    .order(providers::id)
                    .load(conn)?;
                let mut changed = 0;
                for (id, name, stored) in rows {
                    if let Some(value) = f(&name, &stored)? {
                        diesel::update(providers::table.find(id))
                            .set(providers::api_key.eq(value))
                            .execute(conn)?;
                        changed += 1;
                    }
                }
                Ok(changed)
            });
            if sqlite {
                conn.batch_execute("PRAGMA secure_delete = OFF;")?;
                if changed.as_ref().is_ok_and(|n| *n > 0) {
                    conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE);")?;
                }
            }
            changed
        })
    }
}
