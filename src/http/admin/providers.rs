//! `/api/providers`: list, read, add, change, remove and reset providers at run time. Each
//! change is stored first, then applied to the actor graph through the `Supervisor`, so a
//! restart routes the same way. Keys are masked in every answer.
//!
//! A partial `PUT` is merged onto the *stored* row inside one transaction that locks it
//! (`DbPool::merge_provider`), never onto this instance's copy, which may be a sync interval
//! old: concurrent changes of different fields, here or on other instances, all land. A reset
//! is stored as the provider's newest standing and spreads to the fleet. Stored providers
//! this instance could not load are listed with `"loaded": false` and the reason.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{Admin, json_body, parse_json};
use crate::error::ApiError;
use crate::events::{Event, EventKind, Severity};
use crate::http::AppState;
use crate::provider::health::Health;
use crate::provider::not_loaded::NotLoadedProvider;
use crate::provider::spec::{ProviderConfig, ProviderSpec};
use crate::provider::standing::Standing;
use crate::provider::{ApplyStanding, GetState, ProbeSettings, ProviderState, from_row, probe, to_new_row};
use crate::sealing::ProviderKeys;
use crate::store::{self, NewProvider, ProviderRow, StoreError};
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
    v["loaded"] = true.into();
    v["standing"] = serde_json::to_value(&s.standing).unwrap_or_default();
    v
}

/// A stored provider this instance could not load: what is known of it, and why.
pub fn not_loaded_view(p: &NotLoadedProvider) -> serde_json::Value {
    serde_json::json!({
        "id": p.id,
        "name": p.name,
        "loaded": false,
        "load_error": p.reason,
    })
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
        "http2": c.http2,
        "kind": c.kind,
        "endpoints": c.offered_endpoints(),
        "max_concurrency": c.limits.max_concurrency,
        "rpm": c.limits.rpm,
        "tpm": c.limits.tpm,
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

/// Held from a provider change's store write until it is applied to the actor graph, so this
/// instance applies its changes in the order they were committed: two concurrent updates of
/// one provider each store the merge of both, and the later commit must be the one routed.
/// (Changes made by other instances arrive through `FleetSync`, one snapshot at a time.)
static APPLY_IN_COMMIT_ORDER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// `api_key_env` through the admin API may only name a variable the operator allowed (the
/// prefix, or a name the config file uses): the process environment also holds the database
/// URL and cloud credentials.
fn check_key_env(keys: &ProviderKeys, spec: &ProviderSpec) -> Result<(), ApiError> {
    match &spec.api_key_env {
        Some(var) if !keys.env_allowed(var) => Err(ApiError::InvalidField {
            field: "api_key_env".into(),
            message: keys.env_refusal(var),
        }),
        _ => Ok(()),
    }
}

fn probe_settings(state: &AppState) -> ProbeSettings {
    ProbeSettings::from_config(&state.config)
}

async fn name_taken(state: &AppState, name: &str, except: Option<i64>) -> Result<bool, ApiError> {
    let list = state.supervisor.send(ListProviders).await?;
    Ok(list
        .iter()
        .any(|p| p.config.name == name && Some(p.config.id) != except)
        || state
            .not_loaded
            .list()
            .iter()
            .any(|p| p.name == name && Some(p.id) != except))
}

/// `GET /api/providers`: every stored provider, by id, those not loaded here included.
pub async fn list(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut data: Vec<(i64, serde_json::Value)> = all_states(&state)
        .await?
        .iter()
        .map(|s| (s.config.id, view(s)))
        .collect();
    data.extend(
        state
            .not_loaded
            .list()
            .iter()
            .filter(|p| !data.iter().any(|(id, _)| *id == p.id))
            .map(|p| (p.id, not_loaded_view(p)))
            .collect::<Vec<_>>(),
    );
    data.sort_by_key(|(id, _)| *id);
    let data: Vec<_> = data.into_iter().map(|(_, v)| v).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "data": data })))
}

/// `GET /api/providers/{id}`
pub async fn get(
    _: Admin,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    if let Some(p) = state.not_loaded.get(id) {
        return Ok(HttpResponse::Ok().json(not_loaded_view(&p)));
    }
    let entry = find(&state, id).await?;
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
    check_key_env(&state.keys, &spec)?;
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
    let row = to_new_row(&config, &state.keys).map_err(|e| ApiError::Internal(e.to_string()))?;
    let _in_order = APPLY_IN_COMMIT_ORDER.lock().await;
    let name = config.name.clone();
    let stored = store::run(&state.store, move |db| db.insert_provider(&row))
        .await
        .map_err(|e| match e {
            // Added meanwhile, here or on another instance.
            StoreError::Conflict(_) => ApiError::Conflict(format!("a provider named {name} exists")),
            other => other.into(),
        })?;
    let config = from_row(
        &stored,
        &state.keys,
        state.config.routing.request_timeout_ms,
        &env,
    )
    .map_err(ApiError::Internal)?;
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
    crate::upstream::tls::warn_if_key_in_clear(&config.name, &config.base_url, !config.api_key.is_empty());
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
    let changes: serde_json::Map<String, serde_json::Value> = json_body(&req, payload).await?;
    let timeout = state.config.routing.request_timeout_ms;
    let keys = state.keys.clone();
    let _in_order = APPLY_IN_COMMIT_ORDER.lock().await;
    let merged = store::run(&state.store, move |db| {
        db.merge_provider(id, move |stored| merge_onto(stored, changes, &keys, timeout))
    })
    .await;
    let stored = match merged {
        Ok(Ok(row)) => row,
        Ok(Err(refused)) => return Err(refused),
        Err(StoreError::NotFound) => return Err(ApiError::NotFound(format!("no provider with id {id}"))),
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::Conflict("a provider with that name exists".into()));
        }
        Err(e) => return Err(e.into()),
    };
    let config = from_row(&stored, &state.keys, timeout, &env).map_err(ApiError::Internal)?;
    state.not_loaded.remove(id);
    if !state.supervisor.send(UpdateProvider(config.clone())).await? {
        // It was not routed here (it did not load): it is now.
        state
            .supervisor
            .send(AddProvider {
                config: config.clone(),
                health: Health::healthy(),
            })
            .await?;
    }
    log::info!("provider {} (id {id}) updated", config.name);
    crate::upstream::tls::warn_if_key_in_clear(&config.name, &config.base_url, !config.api_key.is_empty());
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

/// The stored provider with `changes` on top, validated: the row to write. Runs inside the
/// transaction that holds the row. A stored row whose key variable this instance lacks can
/// still be changed (the key is not part of what is merged); one that does not parse at all
/// answers 409 with the reason.
fn merge_onto(
    stored: &ProviderRow,
    changes: serde_json::Map<String, serde_json::Value>,
    keys: &ProviderKeys,
    timeout_ms: u64,
) -> Result<NewProvider, ApiError> {
    let any_key = |k: &str| env(k).or_else(|| Some("unset".into()));
    let current = from_row(stored, keys, timeout_ms, &any_key).map_err(|reason| {
        ApiError::Conflict(format!(
            "provider {} is stored in a form this version cannot read ({reason}); delete and add it again",
            stored.id
        ))
    })?;
    let mut merged =
        serde_json::to_value(current.to_spec()).map_err(|e| ApiError::Internal(e.to_string()))?;
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
    check_key_env(keys, &spec)?;
    let config = spec.validate(stored.id, timeout_ms, &env)?;
    to_new_row(&config, keys).map_err(|e| ApiError::Internal(e.to_string()))
}

/// `DELETE /api/providers/{id}`: no new request goes to it; requests already using it finish.
pub async fn delete(
    _: Admin,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    // A provider stored but not loaded here can be removed too.
    let name = match state.not_loaded.get(id) {
        Some(p) => p.name,
        None => find(&state, id).await?.config.name.clone(),
    };
    let in_order = APPLY_IN_COMMIT_ORDER.lock().await;
    store::run(&state.store, move |db| db.delete_provider(id)).await?;
    state.supervisor.send(RemoveProvider(id)).await?;
    drop(in_order);
    state.not_loaded.remove(id);
    log::info!("provider {name} (id {id}) removed");
    state.events.publish(
        Event::new(
            EventKind::ProviderRemoved,
            Severity::Medium,
            format!("provider {name} removed"),
        )
        .provider(id, &name),
    );
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id, "deleted": true })))
}

/// `POST /api/providers/{id}/reset`: healthy, counters cleared. Stored first as the
/// provider's newest standing, so every instance of a fleet applies it and none undoes it.
pub async fn reset(
    _: Admin,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let entry = find(&state, id).await?;
    let by = crate::fleet::instance_id();
    let stored = store::run(&state.store, move |db| db.reset_standing(id, by))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no provider with id {id}")))?;
    entry
        .actor
        .send(ApplyStanding(Standing::from_row(&stored)))
        .await?;
    Ok(HttpResponse::Ok().json(view(&state_of(&entry).await?)))
}
