//! Integration tests: the router over real sockets, against mock upstreams and real SQLite and
//! PostgreSQL databases. One test binary, so it links once.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected values")]

mod support;

mod admin;
mod bad_input;
mod binary;
mod consistency;
mod dashboard;
mod explain;
mod failover;
mod fleet;
mod formats;
mod health;
mod hostile;
mod kinds;
mod limits;
mod recovery;
mod routing;
mod security;
mod stats;
mod strategies;
mod streaming;
