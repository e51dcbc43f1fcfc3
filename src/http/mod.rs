//! The HTTP API: every route in one table (`configure`), the state handlers share, and the
//! helpers they use. Handlers only parse, read the Supervisor's routing table (chat), send
//! messages into the actor graph, and answer.

pub mod admin;
pub mod auth;
pub mod chat;
pub mod client_routes;
pub mod edge;
pub mod forward;
pub mod listen;
pub mod models;
pub mod probes;
pub mod responses;
pub mod router_headers;
pub mod ui;

use std::sync::Arc;

use actix::Addr;
use actix_web::{HttpRequest, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::config::Config;
use crate::error::ApiError;
use crate::events::EventBus;
use crate::health_checker::HealthChecker;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::stats::{StatsActor, UsageQueue};
use crate::store::Store;
use crate::supervisor::{Routes, Supervisor};

/// What every handler can reach: the actor addresses and the settings. Shared by all workers.
pub struct AppState {
    pub config: Arc<Config>,
    pub supervisor: Addr<Supervisor>,
    /// The supervisor's routing table, which chat requests pick from.
    pub routes: Routes,
    pub stats: Addr<StatsActor>,
    /// Where workers leave usage records for the `StatsActor`.
    pub usage: Arc<UsageQueue>,
    pub store: Addr<Store>,
    pub health_checker: Addr<HealthChecker>,
    /// Stored providers this instance could not load, with the reason.
    pub not_loaded: crate::provider::not_loaded::NotLoaded,
    pub events: EventBus,
    pub metrics: Arc<Metrics>,
    pub admin_token: Secret,
    /// Client keys for `/v1/*`; empty means open.
    pub api_keys: Arc<Vec<Secret>>,
    /// Seals and opens stored provider keys; rules `api_key_env`.
    pub keys: Arc<crate::sealing::ProviderKeys>,
    /// Failed admin authentications per peer (logged and slowed down).
    pub admin_failures: Arc<auth::FailedLogins>,
    /// Which provider created each Responses answer this instance served.
    pub responses: Arc<responses::ResponseOwners>,
}

/// Every route, as (method, path). `configure` registers exactly these; a test checks them
/// against the OpenAPI document.
/// (The dashboard's pages, `ui::configure`, are not API routes and are not listed.)
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/responses"),
    ("POST", "/v1/completions"),
    ("GET", "/v1/models"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/providers"),
    ("POST", "/api/providers"),
    ("GET", "/api/providers/health"),
    ("GET", "/api/providers/health/{id}"),
    ("GET", "/api/providers/load"),
    ("GET", "/api/providers/{id}"),
    ("PUT", "/api/providers/{id}"),
    ("DELETE", "/api/providers/{id}"),
    ("POST", "/api/providers/{id}/reset"),
    ("POST", "/api/health-check/force/{id}"),
    ("GET", "/api/health-check/config"),
    ("PUT", "/api/health-check/config"),
    ("GET", "/api/stats/usage"),
    ("GET", "/api/stats/recent"),
    ("GET", "/api/events"),
    ("GET", "/api/routing/explain"),
    ("GET", "/api/openapi.json"),
];

/// Registers every route, and makes path and query errors answer in the API's error shape.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::PathConfig::default().error_handler(|e, _| ApiError::bad_request(e.to_string()).into()),
    )
    .app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::bad_request(e.to_string()).into()))
    .route("/v1/chat/completions", web::post().to(chat::chat_completions))
    .route("/v1/messages", web::post().to(client_routes::messages))
    .route(
        "/v1/messages/count_tokens",
        web::post().to(client_routes::count_tokens),
    )
    .route("/v1/embeddings", web::post().to(client_routes::embeddings))
    .route("/v1/responses", web::post().to(client_routes::responses))
    .route("/v1/completions", web::post().to(client_routes::completions))
    .route("/v1/models", web::get().to(models::list_models))
    .route("/healthz", web::get().to(probes::healthz))
    .route("/readyz", web::get().to(probes::readyz))
    .route("/metrics", web::get().to(probes::metrics))
    .configure(admin::configure)
    .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

/// Reads a request body up to `limit` bytes; a larger one is refused with 413 before it is
/// all read, so memory per request stays bounded.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut next = async || -> Result<Option<Bytes>, ApiError> {
        payload.next().await.transpose().map_err(|e| match e {
            // The edge's body deadline (`client_body_timeout_ms`).
            actix_web::error::PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                ApiError::RequestTimeout(io.to_string())
            }
            e => ApiError::bad_request(format!("reading the body failed: {e}")),
        })
    };
    let too_large = |len: usize| {
        if len > limit {
            Err(ApiError::PayloadTooLarge(limit))
        } else {
            Ok(())
        }
    };
    // A body that arrives as one chunk (most do) is used as it is; only a body in several
    // chunks is copied into one buffer.
    let Some(first) = next().await? else {
        return Ok(Bytes::new());
    };
    too_large(first.len())?;
    // All the declared bytes are here: the decoder gives no more, so the body is whole
    // without waiting for its end to be signalled (a second poll, which would usually find
    // it pending and arm the body's deadline timer, to end a moment later).
    if declared == Some(first.len()) {
        return Ok(first);
    }
    let Some(second) = next().await? else {
        return Ok(first);
    };
    too_large(first.len() + second.len())?;
    let expected = declared.unwrap_or(0).max(first.len() + second.len());
    let mut buf = BytesMut::with_capacity(expected.min(limit));
    buf.extend_from_slice(&first);
    buf.extend_from_slice(&second);
    while let Some(chunk) = next().await? {
        too_large(buf.len() + chunk.len())?;
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
