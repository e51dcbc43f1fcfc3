//! Admin events: a broadcast of what happened to providers, for `GET /api/events`.
//!
//! Publishing never waits: the channel is a bounded ring, and a subscriber that falls behind
//! loses the oldest events (and is told how many) instead of slowing routing down.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before it loses the oldest.
const CAPACITY: usize = 1024;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ProviderAdded,
    ProviderRemoved,
    ProviderUpdated,
    ProviderHealthCheck,
    ProviderUnhealthy,
    ProviderRecovered,
    ProviderSwitch,
    ProviderRequestFailed,
}

/// How much an operator should care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// One event, as sent to subscribers.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub timestamp: DateTime<Utc>,
    pub provider_id: Option<i64>,
    pub provider_name: Option<String>,
    pub severity: Severity,
    pub message: String,
    /// Extra fields per kind (status, latency, the provider switched to…).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl Event {
    pub fn new(kind: EventKind, severity: Severity, message: impl Into<String>) -> Self {
        Event {
            kind,
            timestamp: Utc::now(),
            provider_id: None,
            provider_name: None,
            severity,
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    pub fn provider(mut self, id: i64, name: &str) -> Self {
        self.provider_id = Some(id);
        self.provider_name = Some(name.to_string());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// The sending side, cheap to clone into every actor and worker.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    /// Set at shutdown: event streams end, so graceful shutdown does not wait on them.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for EventBus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        let (closing, _) = tokio::sync::watch::channel(false);
        EventBus {
            tx,
            closing: Arc::new(closing),
        }
    }
}

impl EventBus {
    /// Sends to every current subscriber; never blocks, and is a no-op without subscribers.
    pub fn publish(&self, event: Event) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::new(event));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Ends every event stream (called when shutdown starts).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once shutdown has started.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }
}
