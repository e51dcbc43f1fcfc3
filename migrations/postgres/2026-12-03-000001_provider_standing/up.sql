-- A provider's standing in the fleet: healthy or not and when it is retried, apart from the
-- per-instance counters in provider_validations. Written only on transitions and resets, with a
-- generation that only grows: a write based on an older generation is refused, so an older
-- change can never overwrite a newer one.
CREATE TABLE provider_standing (
    provider_id BIGINT PRIMARY KEY REFERENCES providers (id) ON DELETE CASCADE,
    is_healthy BOOLEAN NOT NULL DEFAULT TRUE,
    next_retry_at TIMESTAMP,
    generation BIGINT NOT NULL DEFAULT 0,
    cause TEXT NOT NULL DEFAULT 'initial',
    changed_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    changed_by TEXT NOT NULL DEFAULT ''
);
-- Every provider gets its standing; an existing health row carries over.
INSERT INTO provider_standing (provider_id, is_healthy, next_retry_at, generation, cause, changed_at, changed_by)
SELECT p.id, COALESCE(v.is_healthy, TRUE), v.next_retry_at,
       CASE WHEN v.provider_id IS NULL THEN 0 ELSE 1 END,
       CASE WHEN v.provider_id IS NULL THEN 'initial' ELSE 'migrated' END,
       COALESCE(v.updated_at, now() AT TIME ZONE 'utc'), 'migration'
FROM providers p LEFT JOIN provider_validations v ON v.provider_id = p.id;
