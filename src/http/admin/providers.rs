//! `/api/providers`: list, read, add, change, remove and reset providers at run time. Each
//! change is stored first, then applied to the actor graph through the `Supervisor`, so a
//! restart routes the same way. Keys are masked in every answer.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{Admin, json_body, parse_json};
use crate::error::ApiError;
use crate::events::{Event, EventKind, Severity};
use crate::http::AppState;
use crate::provider::health::Health;
use crate::provider::spec::{ProviderConfig, ProviderSpec};
use crate::provider::{GetState, ProbeSettings, ProviderState, Reset, from_row, probe, to_new_row};
use crate::store;
use crate::supervisor::{AddProvider, ListProviders, ProviderEntry, RemoveProvider, UpdateProvider};

/// A provider as the admin API shows it: configuration (key masked), health and live load.
pub fn view(s: &ProviderState) -> serde_json::Value {
    let mut v = config_view(&s.config);
    v["health"] = serde_json::to_value(&s.health).unwrap_or_default();
    v["load"] = serde_json::json!({
        "in_flight": s.inflight,
        "requests_per_minute": s.requests_per_minute,
        "average_response_time_ms": s.average_response_time_ms,
    });
    // False once the provider refused `stream_options`: its streams then record no tokens.
    v["stream_usage_supported"] = (!s.refuses_stream_options).into();
    v
}

/// The configuration part of [`view`].
pub fn config_view(c: &ProviderConfig) -> serde_json::Value {
    serde_json::json!({
        "id": c.id,
        "name": c.name,
        "base_url": c.base_url,
        "api_key": c.api_key.masked(),
        "api_key_env": c.api_key_env,
        "models": c.models,
        "weight": c.weight,
        "priority": c.priority,
        "timeout_ms": c.timeout_ms,
        "probe_model": c.probe_model,
        "enabled": c.enabled,
    })
}

/// The registered provider with this id, or 404.
pub async fn find(state: &AppState, id: i64) -> Result<ProviderEntry, ApiError> {
    state
        .supervisor
        .send(ListProviders)
        .await?
        .into_iter()
        .find(|p| p.config.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("no provider with id {id}")))
}

/// Reads one provider's state from its actor.
pub async fn state_of(entry: &ProviderEntry) -> Result<ProviderState, ApiError> {
    Ok(entry.actor.send(GetState).await?)
}

/// Every provider's state, in id order.
pub async fn all_states(state: &AppState) -> Result<Vec<ProviderState>, ApiError> {
    let entries = state.supervisor.send(ListProviders).await?;
    let mut out = Vec::with_capacity(entries.len());
    for e in &entries {
        // A provider removed meanwhile has stopped: leave it out.
        if let Ok(s) = e.actor.send(GetState).await {
            out.push(s);
        }
    }
    Ok(out)
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn probe_settings(state: &AppState) -> ProbeSettings {
    ProbeSettings::from_config(&state.config)
}

async fn name_taken(state: &AppState, name: &str, except: Option<i64>) -> Result<bool, ApiError> {
    let list = state.supervisor.send(ListProviders).await?;
    Ok(list
        .iter()
        .any(|p| p.config.name == name && Some(p.config.id) != except))
}

/// `GET /api/providers`
pub async fn list(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let data: Vec<_> = all_states(&state).await?.iter().map(view).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

/// `GET /api/providers/{id}`
pub async fn get(
    _: Admin,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let entry = find(&state, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view(&state_of(&entry).await?)))
}

/// Query of `POST /api/providers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateQuery {
    #[serde(default)]
    validate_only: bool,
    #[serde(default)]
    health_check: bool,
}

/// `POST /api/providers?validate_only=&health_check=`
pub async fn create(
    _: Admin,
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<CreateQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let spec: ProviderSpec = json_body(&req, payload).await?;
    let config = spec.validate(0, state.config.routing.request_timeout_ms, &env)?;
    if name_taken(&state, &config.name, None).await? {
        return Err(ApiError::Conflict(format!(
            "a provider named {} exists",
            config.name
        )));
    }
    if query.health_check {
        let result = probe::probe(&config, probe_settings(&state)).await;
        if !result.ok {
            return Err(ApiError::CheckFailed(
                result
                    .error
                    .unwrap_or_else(|| "the upstream did not answer".into()),
            ));
        }
    }
    if query.validate_only {
        let mut would = config_view(&config);
        would["id"] = serde_json::Value::Null;
        return Ok(HttpResponse::Ok().json(serde_json::json!({ "valid": true, "provider": would })));
    }
    let row = to_new_row(&config);
    let stored = store::run(&state.store, move |db| db.insert_provider(&row)).await?;
    let config =
        from_row(&stored, state.config.routing.request_timeout_ms, &env).map_err(ApiError::Internal)?;
    let actor = state
        .supervisor
        .send(AddProvider {
            config: config.clone(),
            health: Health::healthy(),
        })
        .await?;
    log::info!(
        "provider {} (id {}) added at {}",
        config.name,
        config.id,
        config.base_url
    );
    state.events.publish(
        Event::new(
            EventKind::ProviderAdded,
            Severity::Low,
            format!("provider {} added", config.name),
        )
        .provider(config.id, &config.name),
    );
    Ok(HttpResponse::Created().json(view(&actor.send(GetState).await?)))
}

/// `PUT /api/providers/{id}`: the body holds the fields to change (any subset of a provider's
/// fields); the next request uses the result.
pub async fn update(
    _: Admin,
    req: HttpRequest,
    path: web::Path<i64>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let entry = find(&state, id).await?;
    let changes: serde_json::Map<String, serde_json::Value> = json_body(&req, payload).await?;
    let mut merged =
        serde_json::to_value(entry.config.to_spec()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let obj = merged
        .as_object_mut()
        .ok_or_else(|| ApiError::Internal("spec is not an object".into()))?;
    // Switching between a literal key and an environment variable replaces the other.
    if changes.get("api_key_env").is_some_and(|v| !v.is_null()) && !changes.contains_key("api_key") {
        obj.remove("api_key");
    }
    if changes.get("api_key").is_some_and(|v| !v.is_null()) && !changes.contains_key("api_key_env") {
        obj.remove("api_key_env");
    }
    for (k, v) in changes {
        obj.insert(k, v);
    }
    let spec: ProviderSpec = parse_json(merged.to_string().as_bytes())?;
    let config = spec.validate(id, state.config.routing.request_timeout_ms, &env)?;
    if name_taken(&state, &config.name, Some(id)).await? {
        return Err(ApiError::Conflict(format!(
            "a provider named {} exists",
            config.name
        )));
    }
    let row = to_new_row(&config);
    store::run(&state.store, move |db| db.update_provider(id, &row)).await?;
    state.supervisor.send(UpdateProvider(config.clone())).await?;
    log::info!("provider {} (id {id}) updated", config.name);
    state.events.publish(
        Event::new(
            EventKind::ProviderUpdated,
            Severity::Low,
            format!("provider {} updated", config.name),
        )
        .provider(id, &config.name),
    );
    let entry = find(&state, id).await?;
    Ok(HttpResponse::Ok().json(view(&state_of(&entry).await?)))
}

/// `DELETE /api/providers/{id}`: no new request goes to it; requests already using it finish.
pub async fn delete(
    _: Admin,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let entry = find(&state, id).await?;
    store::run(&state.store, move |db| db.delete_provider(id)).await?;
    state.supervisor.send(RemoveProvider(id)).await?;
    log::info!("provider {} (id {id}) removed", entry.config.name);
    state.events.publish(
        Event::new(
            EventKind::ProviderRemoved,
            Severity::Medium,
            format!("provider {} removed", entry.config.name),
        )
        .provider(id, &entry.config.name),
    );
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id, "deleted": true })))
}

/// `POST /api/providers/{id}/reset`: counters cleared, healthy.
pub async fn reset(
    _: Admin,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let entry = find(&state, path.into_inner()).await?;
    entry.actor.send(Reset).await?;
    Ok(HttpResponse::Ok().json(view(&state_of(&entry).await?)))
}
