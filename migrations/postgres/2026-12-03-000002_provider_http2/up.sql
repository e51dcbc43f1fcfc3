-- A provider may opt into HTTP/2 (offered in TLS ALPN); HTTP/1.1 otherwise.
ALTER TABLE providers ADD COLUMN http2 BOOLEAN NOT NULL DEFAULT FALSE;
