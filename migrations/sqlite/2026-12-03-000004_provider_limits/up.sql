-- Per-instance limits of a provider (NULL: no limit): requests in flight, requests per
-- minute, tokens per minute.
ALTER TABLE providers ADD COLUMN max_concurrency INTEGER;
ALTER TABLE providers ADD COLUMN rpm INTEGER;
ALTER TABLE providers ADD COLUMN tpm BIGINT;
