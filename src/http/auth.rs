//! Keys and tokens: client keys on `/v1/*`, the admin token on `/api/*`. Both are read from
//! `Authorization: Bearer …` and compared in constant time.

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;

use super::AppState;
use crate::error::ApiError;
use crate::secret::constant_time_eq;

fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks the client key when keys are configured.
pub fn check_client(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    if state.api_keys.is_empty() {
        return Ok(());
    }
    let token = bearer(req).ok_or(ApiError::Unauthorized(
        "missing API key: send Authorization: Bearer <key>",
    ))?;
    // Compare against every key so the time does not tell which one came close.
    let matched = state.api_keys.iter().fold(false, |ok, k| {
        ok | constant_time_eq(k.expose().as_bytes(), token.as_bytes())
    });
    if matched {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("invalid API key"))
    }
}

/// Checks the admin token.
pub fn check_admin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let token = bearer(req).ok_or(ApiError::Unauthorized(
        "missing admin token: send Authorization: Bearer <token>",
    ))?;
    if constant_time_eq(state.admin_token.expose().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("invalid admin token"))
    }
}
