//! The run lock: one `followq run` per database file.

use std::fs::File;
use std::path::Path;

/// The run lock: an exclusive `flock` on the database file itself, so that it is keyed on the
/// file (its inode), not on a path: a second `followq run` reaching the same database through a
/// symlink, a hard link or another spelling of its path is refused like one on the same path.
/// (Its start-up recovery would take the first run's requests in flight for a crash's and send
/// them again.) SQLite locks with `fcntl`, which does not meet `flock` on Linux or the BSDs.
///
/// Take it before the store opens, and drop it after the store is closed: closing any
/// descriptor of a file drops the `fcntl` locks the process holds on it, SQLite's included, so
/// this descriptor must not close while the store's connections are open. The lock goes with the
/// process, however it ends.
pub struct RunLock {
    _file: File,
}

/// Takes the [`RunLock`] on the database at `db_path` (creating the file, mode 0600, if it does
/// not exist yet: SQLite takes an empty file as a new database).
pub fn lock(db_path: &Path) -> anyhow::Result<RunLock> {
    let file = match File::open(db_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create(true).truncate(false);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            o.open(db_path).map_err(|e| anyhow::anyhow!("cannot create the database {}: {e}", db_path.display()))?
        }
        Err(e) => return Err(anyhow::anyhow!("cannot open the database {}: {e}", db_path.display())),
    };
    match file.try_lock() {
        Ok(()) => Ok(RunLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(anyhow::anyhow!(
            "another `followq run` is working on {} (perhaps through another path to the same file): \
             wait for it, or stop it with Ctrl-C",
            db_path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(anyhow::anyhow!("cannot lock {}: {e}", db_path.display())),
    }
}
