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
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Accounts, IngestError, Input, hash_file};
use crate::config::Settings;
use crate::store::Store;
use crate::text::printable;

/// How often `run --watch` looks at the inbox: a folder listing and a `stat` per file, cheap
/// enough every second, so a dropped file starts as soon as it has settled.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// `run --watch`'s inbox watcher: every [`WATCH_EVERY`] until `shutdown`, imports the files that
/// have settled, and tells `queued` when they added jobs. The run takes the new jobs in from the
/// database, as it does any others. A file that cannot be read or imported is reported once and
/// skipped; the watcher goes on.
pub async fn watch(store: Store, settings: Settings, shutdown: CancellationToken, queued: Arc<Notify>) {
    let mut inbox = Watch::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
        match import_ready(&store, &settings, &mut inbox).await {
            Ok(0) => {}
            Ok(_) => queued.notify_one(),
            Err(e) => {
                warn!(inbox = %settings.inbox.display(), error = %e, "could not look at the inbox (trying again)")
            }
        }
    }
}

/// One look: imports every file that is ready; the jobs they added.
async fn import_ready(store: &Store, settings: &Settings, inbox: &mut Watch) -> Result<u64, IngestError> {
    let report = |path: &Path, why: &str| warn!(file = %path.display(), error = %why, "inbox file skipped");
    let pending = inbox.ready(store, &settings.inbox, report).await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let mut added = 0;
    let names: Vec<&str> = settings.accounts.iter().map(|a| a.name.as_str()).collect();
    let accounts = Accounts::new(store.sync_accounts(&names).await?, None)?;
    for (path, hash) in pending {
        let mut on_reject =
            |r: &super::Reject| warn!(file = %r.file, line = r.line, reason = %printable(&r.reason), "row rejected");
        let opts =
            super::Options { accounts: &accounts, dry_run: false, on_reject: &mut on_reject, content_hash: hash };
        match super::import(store, &Input::File(path.clone()), opts).await {
            Ok(s) => {
                added += s.added;
                info!(file = %path.display(), added = s.added, duplicates = s.duplicates, rejected = s.rejected, "inbox file imported")
            }
            Err(e) => {
                warn!(file = %path.display(), error = %e, "inbox file not imported (recorded as failed; not tried again)")
            }
        }
    }
    Ok(added)
}

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

/// The inbox as a long run sees it: [`scan`], and besides the file's own times, what this
/// process saw itself — a file is taken only once its size and modification time have stayed
/// the same across looks [`STABLE_FOR`] apart (a writer whose clock lags behind, a network
/// share, a modification time in the future cannot make a growing file look settled). Each
/// unreadable file is reported once (until it changes).
#[derive(Debug, Default)]
pub struct Watch {
    reported: HashSet<(PathBuf, Option<SystemTime>, u64)>,
    /// Per file: its size and modification time when first seen so, and when that was.
    seen: std::collections::HashMap<PathBuf, (u64, Option<SystemTime>, std::time::Instant)>,
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
        let now = SystemTime::now();
        let mut ready = Vec::new();
        for (path, hash) in scan.ready {
            if self.still_since(&path, STABLE_FOR) {
                ready.push((path, hash));
            }
        }
        // A modification time in the future never settles by the file's own clock.
        for (path, at) in scan.settling {
            let future = at > now + STABLE_FOR_UNENDED;
            if future && self.still_since(&path, STABLE_FOR_UNENDED) {
                match hash_file(&path) {
                    Ok(hash) if !store.content_imported(&hash).await? => ready.push((path, hash)),
                    Ok(_) => {}
                    Err(e) => report(&path, &e.to_string()),
                }
            }
        }
        Ok(ready)
    }

    /// True when this process has seen the file at `path` with its present size and
    /// modification time for `long` at least.
    fn still_since(&mut self, path: &Path, long: Duration) -> bool {
        let Ok(meta) = std::fs::metadata(path) else { return false };
        let now = (meta.len(), meta.modified().ok());
        let first = self.seen.entry(path.to_path_buf()).or_insert((now.0, now.1, std::time::Instant::now()));
        if (first.0, first.1) != now {
            *first = (now.0, now.1, std::time::Instant::now());
        }
        first.2.elapsed() >= long
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{self, Accounts, Input};

    /// Sets a file's modification time `secs` seconds back, as if it had stopped changing then.
    fn age(path: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(secs)).unwrap();
    }

    async fn import_ready(store: &Store, scan: Scan) -> Vec<String> {
        let ids = store.sync_accounts(&["alice"]).await.unwrap();
        let accounts = Accounts::new(ids, None).unwrap();
        for (path, hash) in scan.ready {
            let mut on_reject = |_: &ingest::Reject| {};
            let opts =
                ingest::Options { accounts: &accounts, dry_run: false, on_reject: &mut on_reject, content_hash: hash };
            let _ = ingest::import(store, &Input::File(path), opts).await;
        }
        store.export_rows(&[]).await.unwrap().into_iter().map(|r| r.target).collect()
    }

    /// Defect: a file still being written was imported half-way, and its partial last line
    /// (`part` of `partial000`) stayed queued as a target.
    #[tokio::test]
    async fn a_file_still_being_written_is_not_imported_half_way() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let inbox = dir.path().join("inbox");
        std::fs::create_dir(&inbox).unwrap();
        let file = inbox.join("list.csv");
        std::fs::write(&file, "screen_name\ncomplete1\npart").unwrap();
        let scan1 = scan(&store, &inbox).await.unwrap();
        assert!(scan1.ready.is_empty() && scan1.settling.len() == 1, "{scan1:?}");
        // Unchanged for longer than a file with whole lines needs, but its last line has no end.
        age(&file, STABLE_FOR.as_secs() + 1);
        assert!(scan(&store, &inbox).await.unwrap().ready.is_empty());
        // The writer finishes the line: now the file settles after the short wait.
        std::fs::write(&file, "screen_name\ncomplete1\npartial000\n").unwrap();
        assert!(scan(&store, &inbox).await.unwrap().ready.is_empty(), "just changed");
        age(&file, STABLE_FOR.as_secs() + 1);
        let ready = scan(&store, &inbox).await.unwrap();
        assert_eq!(import_ready(&store, ready).await, ["complete1", "partial000"]);
        // A file without a final line end is taken too, once it has been still long enough.
        let other = inbox.join("no_eol.csv");
        std::fs::write(&other, "screen_name\nlast_one").unwrap();
        age(&other, STABLE_FOR_UNENDED.as_secs() + 1);
        let ready = scan(&store, &inbox).await.unwrap();
        assert_eq!(import_ready(&store, ready).await, ["complete1", "partial000", "last_one"]);
    }

    /// Defect: a file with a malformed header was imported again at every scan (a warning and
    /// an unfinished import every 2 s, forever). It is recorded as failed, with its reason, and
    /// its content is not tried again; an unreadable one is reported once.
    #[tokio::test]
    async fn a_bad_inbox_file_is_recorded_as_failed_once_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let inbox = dir.path().join("inbox");
        std::fs::create_dir(&inbox).unwrap();
        let bad = inbox.join("bad.csv");
        std::fs::write(&bad, "name,comment\nbob,hi\n").unwrap();
        age(&bad, 5);
        let first = scan(&store, &inbox).await.unwrap();
        assert_eq!(first.ready.len(), 1);
        assert!(import_ready(&store, first).await.is_empty());
        let again = scan(&store, &inbox).await.unwrap();
        assert!(again.ready.is_empty(), "the failed content is not tried again: {again:?}");
        let imports = store.recent_imports(5).await.unwrap();
        assert_eq!(imports.len(), 1, "{imports:?}");
        assert!(imports[0].finished_at > 0 && imports[0].error.contains("no recognised column"), "{imports:?}");

        let mut watch = Watch::default();
        let mut reports = Vec::new();
        #[cfg(unix)]
        if !is_root() {
            use std::os::unix::fs::PermissionsExt;
            let locked = inbox.join("locked.csv");
            std::fs::write(&locked, "screen_name\nx\n").unwrap();
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
            for _ in 0..3 {
                let ready =
                    watch.ready(&store, &inbox, |p, why| reports.push((p.to_path_buf(), why.to_string()))).await;
                assert!(ready.unwrap().is_empty());
            }
            assert_eq!(reports.len(), 1, "reported once: {reports:?}");
            assert!(reports[0].1.contains("Permission denied"), "{reports:?}");
        }
        let good = inbox.join("good.csv");
        std::fs::write(&good, "screen_name\ngood_one\n").unwrap();
        age(&good, 5);
        let ready = watch.ready(&store, &inbox, |p, why| reports.push((p.to_path_buf(), why.to_string()))).await;
        assert!(ready.unwrap().is_empty(), "seen still for less than STABLE_FOR");
        watch.pass(STABLE_FOR);
        let ready = watch.ready(&store, &inbox, |p, why| reports.push((p.to_path_buf(), why.to_string()))).await;
        assert_eq!(ready.unwrap().len(), 1, "the good file still goes in");
    }

    impl Watch {
        /// As if `long` had passed since every look so far.
        fn pass(&mut self, long: Duration) {
            for seen in self.seen.values_mut() {
                seen.2 -= long;
            }
        }
    }

    /// Found from the outside: a file whose writer's clock lags (its modification time already
    /// old) was imported while still growing, and one dated in the future was never taken.
    /// A long run takes a file only once it has itself seen it unchanged long enough.
    #[tokio::test]
    async fn a_run_takes_a_file_only_once_it_saw_it_settle_whatever_its_dates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let inbox = dir.path().join("inbox");
        std::fs::create_dir(&inbox).unwrap();
        let (mut watch, mut reports) = (Watch::default(), Vec::new());
        let mut look = async |watch: &mut Watch| {
            watch.ready(&store, &inbox, |p, why| reports.push((p.to_path_buf(), why.to_string()))).await.unwrap()
        };
        let lagging = inbox.join("lagging.csv");
        std::fs::write(&lagging, "screen_name\nfirst\n").unwrap();
        age(&lagging, 30);
        assert!(look(&mut watch).await.is_empty());
        std::fs::write(&lagging, "screen_name\nfirst\nsecond\n").unwrap();
        age(&lagging, 30);
        watch.pass(STABLE_FOR);
        assert!(look(&mut watch).await.is_empty(), "it grew since the last look");
        watch.pass(STABLE_FOR);
        assert_eq!(look(&mut watch).await.len(), 1);

        let future = inbox.join("future.csv");
        std::fs::write(&future, "screen_name\nlater\n").unwrap();
        let f = std::fs::File::options().write(true).open(&future).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(3600)).unwrap();
        let ready = look(&mut watch).await;
        assert!(!ready.iter().any(|(p, _)| p == &future));
        watch.pass(STABLE_FOR_UNENDED);
        assert!(look(&mut watch).await.iter().any(|(p, _)| p == &future), "dated in the future, but settled");
    }

    #[cfg(unix)]
    fn is_root() -> bool {
        std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(true)
    }
}
