//! `switchyard rotate-key`: re-seals every stored provider key under a new secret key.
//!
//! Run it with the router stopped (on SQLite it refuses while a router holds the file; on
//! PostgreSQL stop every instance first), with the current key set as usual
//! (`SWITCHYARD_SECRET_KEY` or a key file; none when the keys are still plaintext) and the
//! new one in `SWITCHYARD_NEW_SECRET_KEY` or `--new-key-file FILE`. Then start the router
//! with the new key. All rows change in one transaction, or none.

use crate::config::Config;
use crate::sealing::{ProviderKeys, SealingKey, reseal_all};
use crate::store::{self, Backend, DbPool};

/// What the rotation did: rows re-sealed and the new key's id.
#[derive(Debug)]
pub struct Rotated {
    pub rows: usize,
    pub key_id: String,
}

/// Re-seals the database named by `config` under `new`. Blocking.
pub fn rotate_key(config: &Config, new: &SealingKey) -> Result<Rotated, String> {
    let current = ProviderKeys::from_config(config).map_err(|e| e.to_string())?;
    let backend = Backend::from_url(&config.database_url).map_err(|e| e.to_string())?;
    // Held to the end: no router may use the SQLite file meanwhile.
    let _lock = match &backend {
        Backend::Sqlite(path) => Some(crate::app::lock_sqlite(path).map_err(|e| e.to_string())?),
        Backend::Postgres(_) => None,
    };
    let pool = DbPool::connect(&backend, 1).map_err(|e| e.to_string())?;
    store::migrations::run(&pool).map_err(|e| e.to_string())?;
    let rows = reseal_all(&pool, &current, new).map_err(|e| e.to_string())?;
    Ok(Rotated {
        rows,
        key_id: new.id().to_string(),
    })
}
