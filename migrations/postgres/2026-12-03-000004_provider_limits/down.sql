ALTER TABLE providers DROP COLUMN tpm;
ALTER TABLE providers DROP COLUMN rpm;
ALTER TABLE providers DROP COLUMN max_concurrency;
