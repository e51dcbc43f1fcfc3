//! Embedded migrations, one tree per backend with the same version names. On PostgreSQL they
//! run under an advisory lock, so a fleet of instances starting together migrates once and the
//! others wait, then find nothing pending and just join.

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::StoreError;
use super::pool::DbPool;

pub const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Advisory lock key that serialises migrations across a fleet ("swyd-mig").
const MIGRATION_LOCK_KEY: i64 = 0x0073_7779_646d_6967;

/// Runs every pending migration; returns how many ran.
pub fn run(pool: &DbPool) -> Result<usize, StoreError> {
    match pool {
        DbPool::Pg(p) => {
            let mut conn = p.get()?;
            // Session-level lock on this one connection; blocks until the holder is done.
            diesel::sql_query("SELECT pg_advisory_lock($1)")
                .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
                .execute(&mut conn)?;
            let result = conn.run_pending_migrations(PG_MIGRATIONS).map(|v| v.len());
            diesel::sql_query("SELECT pg_advisory_unlock($1)")
                .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
                .execute(&mut conn)?;
            result.map_err(|e| StoreError::Migration(e.to_string()))
        }
        DbPool::Sqlite(p) => {
            let mut conn = p.get()?;
            conn.run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.len())
                .map_err(|e| StoreError::Migration(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::migration::MigrationSource;

    use super::*;

    #[test]
    fn both_trees_have_the_same_versions() {
        let names = |m: &EmbeddedMigrations| -> Vec<String> {
            MigrationSource::<diesel::pg::Pg>::migrations(m)
                .unwrap()
                .iter()
                .map(|m| m.name().to_string())
                .collect()
        };
        let sqlite: Vec<String> = MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
            .unwrap()
            .iter()
            .map(|m| m.name().to_string())
            .collect();
        assert_eq!(names(&PG_MIGRATIONS), sqlite);
    }
}
