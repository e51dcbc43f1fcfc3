-- The model a provider's probe asks for, when not its first model (e.g. a cheap one).
ALTER TABLE providers ADD COLUMN probe_model TEXT;
