ALTER TABLE providers DROP COLUMN endpoints;
ALTER TABLE providers DROP COLUMN kind;
