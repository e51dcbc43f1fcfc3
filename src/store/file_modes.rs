//! The SQLite database is private to the router's user: its directory is created 0700 and
//! the file 0600 before SQLite opens it (SQLite gives the `-wal` and `-shm` files it creates
//! the database file's mode). A database that already exists is left as it is, with a warning
//! when others may read it: it holds the provider keys.

use std::fs::{DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::StoreError;

/// Mode of a database directory the router creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of a database file the router creates (and of its lock file).
pub const FILE_MODE: u32 = 0o600;

/// Creates the directory and an empty database file with private modes when they do not
/// exist; warns when an existing file is readable or writable by others. In-memory and URI
/// names (`:memory:`, `file:…`) are left to SQLite.
pub fn prepare_sqlite_file(path: &str) -> Result<(), StoreError> {
    if path == ":memory:" || path.starts_with("file:") {
        return Ok(());
    }
    let file = Path::new(path);
    if let Some(dir) = file.parent()
        && !dir.as_os_str().is_empty()
    {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| StoreError::BadUrl(format!("cannot create directory {}: {e}", dir.display())))?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(file)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            warn_if_shared(file);
            Ok(())
        }
        Err(e) => Err(StoreError::BadUrl(format!(
            "cannot create {}: {e}",
            file.display()
        ))),
    }
}

/// Warns when others than the owner may read or write the database (and its WAL).
fn warn_if_shared(file: &Path) {
    let Ok(meta) = std::fs::metadata(file) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        log::warn!(
            "the database {} has mode {mode:03o}: other users may read it, and it holds provider \
             keys; run `chmod 600 {0}*` (and `chmod 700` on its directory)",
            file.display()
        );
    }
}

/// The permission bits of a file, for tests and checks.
pub fn mode_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub/deeper/x.db");
        prepare_sqlite_file(db.to_str().unwrap()).unwrap();
        assert_eq!(mode_of(&db), Some(FILE_MODE));
        assert_eq!(mode_of(db.parent().unwrap()), Some(DIR_MODE));
        assert_eq!(mode_of(&dir.path().join("sub")), Some(DIR_MODE));
        // Existing: left as it is (only a warning).
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        prepare_sqlite_file(db.to_str().unwrap()).unwrap();
        assert_eq!(mode_of(&db), Some(0o644));
        prepare_sqlite_file(":memory:").unwrap();
    }
}
