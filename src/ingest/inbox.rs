//! The spool folder `jobs/inbox/`: every file in it is ingested once, by content hash, so a file
//! renamed, copied or dropped in twice adds nothing, and an import cut short is simply redone.
//!
//! A file is taken once it has stopped changing: unchanged for [`STABLE_FOR`] (size and
//! modification time), or for [`STABLE_FOR_UNENDED`] when its last line has no line end yet, so
//! a file still being written is never imported half-way. Hidden files and `.tmp`, `.part` and
//! `~` files are skipped until they are renamed. A file whose content cannot be imported is
//! recorded as failed with its reason (by content hash) and not tried again; one that cannot be
//! read at all is reported once per run and skipped.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{IngestError, hash_file};
use crate::store::Store;

/// How long a file must be unchanged before the inbox takes it.
pub const STABLE_FOR: Duration = Duration::from_secs(2);

/// How long a file whose last line has no line end must be unchanged: a writer may be in the
/// middle of that line.
pub const STABLE_FOR_UNENDED: Duration = Duration::from_secs(10);

/// What one look at the inbox found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Files whose content is new and that have stopped changing, with their hashes, by name.
    pub ready: Vec<(PathBuf, String)>,
    /// Files still changing, and the earliest time each may be ready.
    pub settling: Vec<(PathBuf, SystemTime)>,
    /// Files that could not be read, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Looks at the inbox at `dir` (a missing folder is an empty inbox).
pub async fn scan(store: &Store, dir: &Path) -> Result<Scan, IngestError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Scan::default()),
        Err(e) => return Err(IngestError::Io { file: dir.display().to_string(), source: e }),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
            !name.starts_with('.') && !name.ends_with(".tmp") && !name.ends_with(".part") && !name.ends_with('~')
        })
        .collect();
    files.sort();
    let now = SystemTime::now();
    let mut out = Scan::default();
    for path in files {
        match ready_at(&path) {
            Ok(at) if at > now => out.settling.push((path, at)),
            Ok(_) => match hash_file(&path) {
                Ok(hash) if store.content_imported(&hash).await? => {}
                Ok(hash) => out.ready.push((path, hash)),
                Err(e) => out.unreadable.push((path, e.to_string())),
            },
            Err(e) => {
                let why = format!("{}: cannot read: {e}", path.display());
                out.unreadable.push((path, why))
            }
        }
    }
    Ok(out)
}

/// When the file at `path` will have been unchanged long enough to be taken.
fn ready_at(path: &Path) -> std::io::Result<SystemTime> {
    let mut f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    let changed = meta.modified()?;
    let ended = meta.len() == 0 || {
        let mut last = [0u8];
        f.seek(SeekFrom::End(-1))?;
        f.read_exact(&mut last)?;
        matches!(last[0], b'\n' | b'\r')
    };
    Ok(changed + if ended { STABLE_FOR } else { STABLE_FOR_UNENDED })
}

/// The inbox as a long run sees it: [`scan`], with each unreadable file reported only once
/// (until it changes).
#[derive(Debug, Default)]
pub struct Watch {
    reported: HashSet<(PathBuf, Option<SystemTime>, u64)>,
}

impl Watch {
    /// The files ready now; every unreadable file not reported before is passed to `report`.
    pub async fn ready(
        &mut self,
        store: &Store,
        dir: &Path,
        mut report: impl FnMut(&Path, &str),
    ) -> Result<Vec<(PathBuf, String)>, IngestError> {
        let scan = scan(store, dir).await?;
        for (path, why) in scan.unreadable {
            let meta = std::fs::metadata(&path).ok();
            let key = (path.clone(), meta.as_ref().and_then(changed_at), meta.map_or(0, |m| m.len()));
            if self.reported.insert(key) {
                report(&path, &why);
            }
        }
        Ok(scan.ready)
    }
}

/// The last change of a file's content or its permissions (ctime on Unix: a `chmod` that makes
/// a file readable changes it; mtime does not move).
fn changed_at(meta: &std::fs::Metadata) -> Option<SystemTime> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let ctime = Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec().clamp(0, 999_999_999) as u32);
        Some(SystemTime::UNIX_EPOCH + ctime)
    }
    #[cfg(not(unix))]
    {
        meta.modified().ok()
    }
}
