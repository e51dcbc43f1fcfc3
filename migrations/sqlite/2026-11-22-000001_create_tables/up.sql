-- Providers: the upstream APIs the router forwards to. `models` is a JSON array (TEXT) so the
-- same schema works on SQLite; ids are never reused, so usage rows keep pointing at the right one.
CREATE TABLE providers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    base_url TEXT NOT NULL,
    api_key TEXT NOT NULL DEFAULT '',
    api_key_env TEXT,
    models TEXT NOT NULL,
    weight INTEGER NOT NULL DEFAULT 1,
    priority INTEGER NOT NULL DEFAULT 0,
    timeout_ms BIGINT NOT NULL DEFAULT 30000,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

-- Health state of each provider, written by its actor when it changes (coalesced).
CREATE TABLE provider_validations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider_id BIGINT NOT NULL UNIQUE REFERENCES providers (id) ON DELETE CASCADE,
    is_healthy BOOLEAN NOT NULL DEFAULT TRUE,
    error_count INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_status_code INTEGER,
    last_validated_at TIMESTAMP,
    last_success_at TIMESTAMP,
    next_retry_at TIMESTAMP,
    consecutive_successes INTEGER NOT NULL DEFAULT 0,
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

-- Daily usage per provider and model (UTC day). Written only by additive upserts, so any
-- number of instances can add to the same row. No foreign key: history outlives a provider.
CREATE TABLE provider_usage_stats (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider_id BIGINT NOT NULL,
    model TEXT NOT NULL,
    date DATE NOT NULL,
    total_requests BIGINT NOT NULL DEFAULT 0,
    success_requests BIGINT NOT NULL DEFAULT 0,
    failed_requests BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    total_tokens BIGINT NOT NULL DEFAULT 0,
    total_response_time_ms BIGINT NOT NULL DEFAULT 0,
    avg_response_time_ms DOUBLE NOT NULL DEFAULT 0,
    last_used_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    UNIQUE (provider_id, model, date)
);

-- The one health-check configuration row (id = 1).
CREATE TABLE health_check_configs (
    id INTEGER PRIMARY KEY,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    interval_seconds BIGINT NOT NULL DEFAULT 300,
    max_error_count INTEGER NOT NULL DEFAULT 5,
    retry_after_seconds BIGINT NOT NULL DEFAULT 3600,
    auto_recovery BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

-- A change marker: every configuration write bumps `version` in the same transaction, so the
-- instances of a fleet can tell cheaply that they must reload.
CREATE TABLE config_version (
    id INTEGER PRIMARY KEY,
    version BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
INSERT INTO config_version (id, version) VALUES (1, 0);
