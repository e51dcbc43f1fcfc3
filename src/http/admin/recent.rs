//! `GET /api/stats/recent`: what the dashboard's overview needs that the daily rows cannot
//! give: finished attempts per minute over the last hour and how far the usage writes lag.
//! Both are this instance's own figures (each instance of a fleet keeps its own).

use actix_web::{HttpResponse, web};

use super::Admin;
use crate::error::ApiError;
use crate::http::AppState;
use crate::stats::Recent;

/// `GET /api/stats/recent`
pub async fn recent(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let activity = state.stats.send(Recent).await?;
    Ok(HttpResponse::Ok().json(activity))
}
