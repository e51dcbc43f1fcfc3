-- The API a provider speaks (openai, anthropic) and, optionally, the endpoints it serves
-- (a JSON array of names; NULL means every endpoint of its kind). Existing rows are openai.
ALTER TABLE providers ADD COLUMN kind TEXT NOT NULL DEFAULT 'openai';
ALTER TABLE providers ADD COLUMN endpoints TEXT;
