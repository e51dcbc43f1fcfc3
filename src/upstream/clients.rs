//! One awc client per provider on each worker, so each provider has its own connection pool
//! and its own connection limit: a provider holding thousands of slow streams fills its own
//! pool, never another provider's (a single client per worker has one limit for every host,
//! and one slow provider could starve all the others).
//!
//! awc clients are bound to the thread that built them, so each worker keeps its own set,
//! built on first use. A client is keyed by its provider's configuration (`Arc` identity): a
//! changed or removed provider's client is dropped, with its idle connections, the next time
//! a new client is built, so the set never outgrows the providers in use.

use foldhash::{HashMap, HashMapExt};
use std::cell::RefCell;
use std::sync::{Arc, Weak};
use std::time::Duration;

use awc::Client;

use super::build_client;
use crate::provider::spec::ProviderConfig;

/// The per-provider clients of one worker.
pub struct UpstreamClients {
    connect_timeout: Duration,
    /// Most simultaneous connections to one provider from this worker.
    per_provider: usize,
    /// By the address of the provider's configuration; the `Weak` keeps that allocation (not
    /// the configuration) alive, so an address is never reused while its entry exists.
    clients: RefCell<HashMap<usize, (Weak<ProviderConfig>, Client)>>,
}

impl UpstreamClients {
    pub fn new(connect_timeout: Duration, per_provider: usize) -> Self {
        UpstreamClients {
            connect_timeout,
            per_provider: per_provider.max(1),
            clients: RefCell::new(HashMap::new()),
        }
    }

    /// The client (and so the connection pool) for `provider`.
    pub fn get(&self, provider: &Arc<ProviderConfig>) -> Client {
        let key = Arc::as_ptr(provider) as usize;
        let mut clients = self.clients.borrow_mut();
        if let Some((_, c)) = clients.get(&key) {
            return c.clone();
        }
        // Configurations that changed or went away since: drop their clients.
        clients.retain(|_, (p, _)| p.strong_count() > 0);
        let client = if provider.http2 {
            super::build_http2_client(self.connect_timeout, self.per_provider)
        } else {
            build_client(self.connect_timeout, self.per_provider)
        };
        clients.insert(key, (Arc::downgrade(provider), client.clone()));
        client
    }

    /// Providers with a client on this worker (for tests).
    pub fn len(&self) -> usize {
        self.clients.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> Arc<ProviderConfig> {
        let spec: crate::provider::spec::ProviderSpec = serde_json::from_value(serde_json::json!({
            "name": name, "base_url": "http://127.0.0.1:9/v1", "models": ["m"],
        }))
        .unwrap();
        Arc::new(spec.validate(1, 1_000, &|_| None).unwrap())
    }

    #[actix_rt::test]
    async fn one_client_per_provider_and_none_for_a_changed_one() {
        let clients = UpstreamClients::new(Duration::from_secs(1), 4);
        let (a, b) = (config("a"), config("b"));
        clients.get(&a);
        clients.get(&a);
        clients.get(&b);
        assert_eq!(clients.len(), 2);
        // `a` is reconfigured (a new Arc) and the old one dropped: its client goes too.
        drop(a);
        let a2 = config("a");
        clients.get(&a2);
        assert_eq!(clients.len(), 2);
    }
}
