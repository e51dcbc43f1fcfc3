//! Connection pools for the two backends and the `with_conn!` macro that runs one diesel block
//! on whichever backend the pool holds. diesel's `MultiConnection` cannot express the additive
//! `ON CONFLICT DO UPDATE` the usage table needs, so every query is written once and compiled
//! for each concrete connection type instead.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::{Connection, PgConnection, SqliteConnection};

use super::StoreError;

/// Which database a URL names. Chosen from the scheme, never by trial: a failed PostgreSQL
/// URL must not silently become a SQLite file. `Debug` hides a password (`crate::secret`).
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    /// `postgres://` or `postgresql://`.
    Postgres(String),
    /// `sqlite://path` or `sqlite:path`; the value is the file path.
    Sqlite(String),
}

impl Backend {
    /// Parses a database URL, refusing unknown schemes with a message that lists the known ones.
    pub fn from_url(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres(url.to_string()))
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreError::BadUrl("sqlite URL has an empty path".into()));
            }
            Ok(Backend::Sqlite(path.to_string()))
        } else {
            Err(StoreError::BadUrl(format!(
                "unsupported database URL scheme in {:?}: use sqlite://PATH or postgres://…",
                redact_url(url)
            )))
        }
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A PostgreSQL URL with network timeouts added where the operator set none:
/// a connect timeout, TCP keepalives and a TCP user timeout (unacknowledged data fails the
/// connection), so a half-open connection is noticed in seconds instead of holding the lock
/// (the fleet's sweep leadership, or a shutdown) for the kernel's default of minutes to hours.
pub fn with_network_timeouts(url: &str) -> String {
    const DEFAULTS: &[(&str, &str)] = &[
        ("connect_timeout", "5"),
        ("keepalives", "1"),
        ("keepalives_idle", "5"),
        ("keepalives_interval", "2"),
        ("keepalives_count", "3"),
        ("tcp_user_timeout", "10000"),
    ];
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let has = |key: &str| query.split('&').any(|kv| kv.split('=').next() == Some(key));
    let mut out = url.to_string();
    for (key, value) in DEFAULTS.iter().filter(|(k, _)| !has(k)) {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// An r2d2 pool of one backend or the other.
#[derive(Clone)]
pub enum DbPool {
    Pg(Pool<ConnectionManager<PgConnection>>),
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
}

/// Runs `$body` with `$conn` bound to a `&mut PgConnection` or a `&mut SqliteConnection`,
/// taken from the pool. The body is compiled once per backend.
#[macro_export]
macro_rules! with_conn {
    ($pool:expr, |$conn:ident| $body:block) => {
        match $pool {
            $crate::store::pool::DbPool::Pg(p) => {
                let mut c = p.get()?;
                let $conn: &mut ::diesel::PgConnection = &mut c;
                $body
            }
            $crate::store::pool::DbPool::Sqlite(p) => {
                let mut c = p.get()?;
                let $conn: &mut ::diesel::SqliteConnection = &mut c;
                $body
            }
        }
    };
}

/// Per-connection SQLite settings. WAL is set once before the pool exists (it persists in the
/// file); setting it here raced between the pool's first connections.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(
            "PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

impl DbPool {
    /// Builds the pool for a backend. `size` is the number of connections kept.
    pub fn connect(backend: &Backend, size: u32) -> Result<DbPool, StoreError> {
        match backend {
            Backend::Postgres(url) => {
                let manager = ConnectionManager::<PgConnection>::new(with_network_timeouts(url));
                let pool = Pool::builder()
                    .max_size(size)
                    .min_idle(Some(1))
                    .connection_timeout(Duration::from_secs(5))
                    .build(manager)?;
                Ok(DbPool::Pg(pool))
            }
            Backend::Sqlite(path) => {
                // Directory 0700, file 0600 (the WAL and SHM follow the file).
                super::file_modes::prepare_sqlite_file(path)?;
                let mut first = SqliteConnection::establish(path)?;
                first.batch_execute("PRAGMA journal_mode = WAL;")?;
                drop(first);
                let manager = ConnectionManager::<SqliteConnection>::new(path.clone());
                let pool = Pool::builder()
                    .max_size(size)
                    .connection_timeout(Duration::from_secs(5))
                    .connection_customizer(Box::new(SqlitePragmas))
                    .build(manager)?;
                Ok(DbPool::Sqlite(pool))
            }
        }
    }

    /// True for PostgreSQL, where a fleet of instances may share the database.
    pub fn is_postgres(&self) -> bool {
        matches!(self, DbPool::Pg(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_chosen_by_scheme() {
        assert_eq!(
            Backend::from_url("sqlite://data/x.db").unwrap(),
            Backend::Sqlite("data/x.db".into())
        );
        assert_eq!(
            Backend::from_url("sqlite:x.db").unwrap(),
            Backend::Sqlite("x.db".into())
        );
        assert!(matches!(
            Backend::from_url("postgres://u@h/db").unwrap(),
            Backend::Postgres(_)
        ));
        assert!(matches!(
            Backend::from_url("postgresql://u@h/db").unwrap(),
            Backend::Postgres(_)
        ));
        assert!(Backend::from_url("host=127.0.0.1 dbname=x").is_err());
        assert!(Backend::from_url("mysql://h/db").is_err());
    }

    #[test]
    fn postgres_urls_get_network_timeouts_unless_set() {
        let u = with_network_timeouts("postgres://u@h/db");
        assert!(u.starts_with("postgres://u@h/db?connect_timeout=5&keepalives=1&"));
        assert!(u.contains("tcp_user_timeout=10000"));
        let u = with_network_timeouts("postgres://u@h/db?sslmode=require&connect_timeout=30");
        assert!(u.contains("sslmode=require&connect_timeout=30&keepalives=1"));
        assert_eq!(
            u.matches("connect_timeout").count(),
            1,
            "the operator's value stays"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
