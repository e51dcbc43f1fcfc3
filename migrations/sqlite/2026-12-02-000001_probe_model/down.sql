ALTER TABLE providers DROP COLUMN probe_model;
