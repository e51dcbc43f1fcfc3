//! Stored providers this instance could not load (an `api_key_env` naming a variable it lacks,
//! a row an older version accepted): skipped with a warning, never fatal, and listed with the
//! reason by `GET /api/providers` and `/readyz`, so a fleet never hides them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One provider that is stored but not routed here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotLoadedProvider {
    pub id: i64,
    pub name: String,
    pub reason: String,
}

/// The set of stored providers not loaded on this instance, shared by start-up, `FleetSync`
/// and the admin API. Bounded by the number of stored providers.
#[derive(Debug, Clone, Default)]
pub struct NotLoaded(Arc<Mutex<BTreeMap<i64, NotLoadedProvider>>>);

impl NotLoaded {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, NotLoadedProvider>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that provider `id` could not be loaded; logs it when it is news.
    pub fn insert(&self, id: i64, name: &str, reason: String) {
        let entry = NotLoadedProvider {
            id,
            name: name.to_string(),
            reason,
        };
        let mut map = self.lock();
        if map.get(&id) != Some(&entry) {
            log::warn!(
                "provider {name} (id {id}) is stored but cannot be loaded here, skipped: {}",
                entry.reason
            );
            map.insert(id, entry);
        }
    }

    /// Provider `id` loads now, or is gone.
    pub fn remove(&self, id: i64) {
        self.lock().remove(&id);
    }

    /// Keeps only the ids still stored.
    pub fn retain(&self, stored: &std::collections::HashSet<i64>) {
        self.lock().retain(|id, _| stored.contains(id));
    }

    pub fn get(&self, id: i64) -> Option<NotLoadedProvider> {
        self.lock().get(&id).cloned()
    }

    /// Every one, by id.
    pub fn list(&self) -> Vec<NotLoadedProvider> {
        self.lock().values().cloned().collect()
    }
}
