//! The admin API (`/api/*`, docs/DESIGN.md §4). Every route requires `Authorization: Bearer <admin
//! token>`; every action is a message to the `Supervisor`, a `ProviderActor`, the
//! `HealthChecker`, the `StatsActor` or the `Store`.

pub mod events;
pub mod health;
pub mod providers;
pub mod recent;
pub mod routing;
pub mod usage;

use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use super::{AppState, auth, read_body};
use crate::error::ApiError;

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 1024 * 1024;

/// Proof that the request carries the admin token. A handler that takes it cannot run
/// without the token.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match req.app_data::<web::Data<AppState>>() {
                // A failure is logged and slowed down per peer (see `auth`).
                Some(state) => auth::check_admin_slow(&req, state).await.map(|()| Admin),
                None => Err(ApiError::Internal("application state missing".into())),
            }
        })
    }
}

/// Reads a JSON body into `T`: malformed JSON is a 400, a wrong or unknown field a 422 that
/// names the field.
pub async fn json_body<T: DeserializeOwned>(req: &HttpRequest, payload: web::Payload) -> Result<T, ApiError> {
    let body = read_body(req, payload, MAX_ADMIN_BODY).await?;
    parse_json(&body)
}

/// See [`json_body`].
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest {
            message: "a JSON body is required".into(),
            code: "invalid_json",
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::BadRequest {
                message: format!("the body is not valid JSON: {inner}"),
                code: "invalid_json",
            };
        }
        let message = inner.to_string();
        // serde names unknown and missing fields only in its message: `unknown field `x``.
        let named = message.split('`').nth(1).filter(|_| message.contains("field `"));
        // The path already ends with an unknown field's name; a missing one is only named.
        let field = match (path.as_str(), named) {
            (".", Some(n)) => n.to_string(),
            (".", None) => "body".to_string(),
            (p, _) => p.to_string(),
        };
        ApiError::InvalidField { field, message }
    })
}

/// Registers the admin routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/providers", web::get().to(providers::list))
        .route("/api/providers", web::post().to(providers::create))
        .route("/api/providers/health", web::get().to(health::all))
        .route("/api/providers/health/{id}", web::get().to(health::one))
        .route("/api/providers/load", web::get().to(health::load))
        .route("/api/providers/{id}", web::get().to(providers::get))
        .route("/api/providers/{id}", web::put().to(providers::update))
        .route("/api/providers/{id}", web::delete().to(providers::delete))
        .route("/api/providers/{id}/reset", web::post().to(providers::reset))
        .route("/api/health-check/force/{id}", web::post().to(health::force))
        .route("/api/health-check/config", web::get().to(health::get_config))
        .route("/api/health-check/config", web::put().to(health::put_config))
        .route("/api/stats/usage", web::get().to(usage::usage))
        .route("/api/stats/recent", web::get().to(recent::recent))
        .route("/api/events", web::get().to(events::events))
        .route("/api/routing/explain", web::get().to(routing::explain))
        .route("/api/openapi.json", web::get().to(openapi));
    // The dashboard goes wherever the admin API is served.
    crate::http::ui::configure(cfg);
}

/// The OpenAPI 3 description of the client and admin APIs.
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi(_: Admin) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderSpec;

    #[test]
    fn json_errors_name_the_field() {
        let e =
            parse_json::<ProviderSpec>(br#"{"name":"p","base_url":"http://h/v1","models":["m"],"wieght":1}"#);
        match e {
            Err(ApiError::InvalidField { field, .. }) => assert_eq!(field, "wieght"),
            other => panic!("{other:?}"),
        }
        match parse_json::<ProviderSpec>(br#"{"name":"p","base_url":"http://h/v1"}"#) {
            Err(ApiError::InvalidField { field, .. }) => assert_eq!(field, "models"),
            other => panic!("{other:?}"),
        }
        match parse_json::<ProviderSpec>(
            br#"{"name":"p","base_url":"http://h/v1","models":["m"],"weight":"x"}"#,
        ) {
            Err(ApiError::InvalidField { field, .. }) => assert_eq!(field, "weight"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_json::<ProviderSpec>(b"{"),
            Err(ApiError::BadRequest { .. })
        ));
    }
}
