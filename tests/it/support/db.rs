//! Real databases for tests: a SQLite file in a temporary directory, or a uniquely named
//! PostgreSQL database created on the local server and dropped (with FORCE) on `Drop`.
//!
//! PostgreSQL is `TEST_DATABASE_URL` (a server URL whose database part is ignored) or
//! `postgres://postgres@127.0.0.1:5432/postgres`. `scripts/test.sh` makes sure it runs.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use diesel::{Connection, PgConnection, RunQueryDsl};

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();
const PREFIX: &str = "switchyard_test_";

/// A database that exists for one test.
pub enum TestDb {
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        name: String,
        url: String,
        admin_url: String,
    },
}

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The server URL with another database name.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let cut = base
        .rfind('/')
        .filter(|i| *i > "postgres://".len())
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..cut])
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/switchyard.db", dir.path().display());
        TestDb::Sqlite { _dir: dir, url }
    }

    pub fn postgres() -> TestDb {
        let admin_url = with_database(&server_url(), "postgres");
        let mut conn = PgConnection::establish(&admin_url)
            .unwrap_or_else(|e| panic!("PostgreSQL is needed for this test (run scripts/test.sh): {e}"));
        SWEEP.call_once(|| sweep_leftovers(&mut conn));
        let name = format!(
            "{PREFIX}{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            chrono::Utc::now().timestamp_micros() % 1_000_000
        );
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .expect("create test database");
        TestDb::Postgres {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } | TestDb::Postgres { url, .. } => url,
        }
    }
}

/// Drops databases left by test processes that no longer run.
fn sweep_leftovers(conn: &mut PgConnection) {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let names: Vec<Name> = diesel::sql_query(format!(
        "SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%'"
    ))
    .load(conn)
    .unwrap_or_default();
    for n in names {
        let pid = n
            .datname
            .trim_start_matches(PREFIX)
            .split('_')
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", n.datname))
                .execute(conn);
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { name, admin_url, .. } = self
            && let Ok(mut conn) = PgConnection::establish(admin_url)
        {
            let _ =
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn);
        }
    }
}

/// Another connection holding a SQLite file's write lock (`BEGIN EXCLUSIVE`), so the router's
/// writes wait out their busy timeout and fail. Released by `release` or on drop, and after
/// 30 s whatever happens.
pub struct SqliteWriteLock {
    release: Option<std::sync::mpsc::Sender<()>>,
    holder: Option<std::thread::JoinHandle<()>>,
}

impl SqliteWriteLock {
    /// Takes the lock of the SQLite database at `url`; returns once it is held.
    pub fn hold(url: &str) -> SqliteWriteLock {
        use diesel::connection::SimpleConnection;
        let path = url.trim_start_matches("sqlite://").to_string();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let mut conn = diesel::SqliteConnection::establish(&path).expect("open the SQLite file");
            conn.batch_execute("BEGIN EXCLUSIVE")
                .expect("take the write lock");
            locked_tx.send(()).expect("tell the test");
            let _ = release_rx.recv_timeout(std::time::Duration::from_secs(30));
            conn.batch_execute("COMMIT").expect("release the write lock");
        });
        locked_rx.recv().expect("the lock is taken");
        SqliteWriteLock {
            release: Some(release_tx),
            holder: Some(holder),
        }
    }

    /// Releases the lock; returns once it is free.
    pub fn release(mut self) {
        self.free();
    }

    fn free(&mut self) {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.holder.take() {
            let _ = h.join();
        }
    }
}

impl Drop for SqliteWriteLock {
    fn drop(&mut self) {
        self.free();
    }
}
