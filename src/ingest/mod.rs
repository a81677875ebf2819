//! Readers (CSV, X archive, the inbox folder) → validated targets → batched inserts.
//!
//! A reader runs on a blocking thread and streams batches over a small channel, so memory stays
//! flat whatever the file size and parsing overlaps with inserting. A bad row is a [`Reject`]
//! (file, line, reason) and never stops the good rows; a file that cannot be read at all is an
//! [`IngestError`] naming it.

mod archive;
mod csvread;
mod header;
pub mod inbox;
pub mod target;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::model::NewJob;
pub use crate::model::Summary;
use crate::store::{Store, StoreError};

/// A row that was not queued, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reject {
    pub file: String,
    /// 1-based line in the file (for an archive: the entry's number).
    pub line: u64,
    pub reason: String,
    /// The row's cells, when it was a CSV row: what a rejects file keeps for fixing.
    pub row: Option<RejectedRow>,
}

impl Reject {
    /// A reject with no row to keep.
    pub fn new(file: &str, line: u64, reason: impl Into<String>) -> Reject {
        Reject { file: file.to_string(), line, reason: reason.into(), row: None }
    }
}

/// The cells of a rejected row that followq reads, as they were written: `followq import`
/// takes them back from a rejects file (columns `account`, `target`, `follow`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RejectedRow {
    pub account: String,
    /// The target in a form the `target` column reads as meant (a screen name as `@name`).
    pub target: String,
    pub follow: String,
}

/// A file that could not be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}: no such file")]
    NotFound(String),
    #[error("{0}: is a directory (to import a folder's files, put them in the inbox)")]
    Directory(String),
    #[error("{file}: cannot read: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    /// The file is fine but the command did not say which account it is for (`--account`):
    /// a matter of the command, not of the file's content.
    #[error("{file}: {message}")]
    NeedsAccount { file: String, message: String },
    #[error("unknown account '{0}': it is not in the config's [[accounts]] ({1})")]
    UnknownAccount(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which account a row belongs to when it does not say. Names match without regard to case, as
/// a person writes them (`Alice` is `alice`): the config refuses two names that differ only so.
#[derive(Debug, Clone)]
pub struct Accounts {
    /// By lower-cased name.
    by_name: HashMap<String, i64>,
    default: Option<(String, i64)>,
    /// "configured: alice, bob", for messages.
    configured: String,
}

impl Accounts {
    /// `ids` maps configured names to ids; `default` is `--account`, else the only account.
    pub fn new(ids: HashMap<String, i64>, default: Option<&str>) -> Result<Accounts, IngestError> {
        let mut names: Vec<&String> = ids.keys().collect();
        names.sort();
        let configured = match names.len() {
            0 => "none is configured".to_string(),
            _ => format!("configured: {}", names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")),
        };
        let by_name: HashMap<String, i64> = ids.iter().map(|(n, id)| (n.to_lowercase(), *id)).collect();
        let default = match default {
            Some(name) => {
                let id = *by_name
                    .get(&name.to_lowercase())
                    .ok_or_else(|| IngestError::UnknownAccount(name.to_string(), configured.clone()))?;
                Some((name.to_string(), id))
            }
            None if ids.len() == 1 => ids.iter().next().map(|(n, id)| (n.clone(), *id)),
            None => None,
        };
        Ok(Accounts { by_name, default, configured })
    }

    fn resolve(&self, name: Option<&str>) -> Result<i64, String> {
        match name.map(|n| target::unneutralise(n.trim())).filter(|n| !n.is_empty()) {
            Some(n) => self
                .by_name
                .get(&n.to_lowercase())
                .copied()
                .ok_or_else(|| format!("unknown account '{}' ({})", target::shorten(n), self.configured)),
            None => self.default.as_ref().map(|d| d.1).ok_or_else(|| {
                "no account: add an 'account' column, pass --account, or configure exactly one account".to_string()
            }),
        }
    }

    fn has_default(&self) -> bool {
        self.default.is_some()
    }
}

/// Where rows go: batches of jobs and rejects, in file order.
pub(crate) enum Item {
    Jobs(Vec<NewJob>, u64),
    Reject(Reject),
}

pub(crate) type Sink = mpsc::Sender<Item>;

/// Sends an item from the blocking reader; false when the importer stopped listening.
pub(crate) fn emit(sink: &Sink, item: Item) -> bool {
    sink.blocking_send(item).is_ok()
}

/// An input: a path, or `-` for standard input.
#[derive(Debug, Clone)]
pub enum Input {
    Stdin,
    File(PathBuf),
    /// Text built into the binary (the demo's list), under the name it has in the repository.
    Embedded {
        name: &'static str,
        text: &'static str,
    },
}

impl Input {
    /// `-` is standard input; anything else a path.
    pub fn from_arg(arg: &str) -> Input {
        if arg == "-" { Input::Stdin } else { Input::File(PathBuf::from(arg)) }
    }

    /// The name used in messages.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "<stdin>".to_string(),
            Input::File(p) => p.display().to_string(),
            Input::Embedded { name, .. } => name.to_string(),
        }
    }
}

/// Opens an input, with the errors a user needs to see (missing, a directory, unreadable).
fn open(input: &Input) -> Result<Box<dyn Read + Send>, IngestError> {
    match input {
        Input::Stdin => Ok(Box::new(std::io::stdin())),
        Input::Embedded { text, .. } => Ok(Box::new(text.as_bytes())),
        Input::File(path) => {
            let name = path.display().to_string();
            match std::fs::metadata(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(IngestError::NotFound(name)),
                Err(e) => return Err(IngestError::Io { file: name, source: e }),
                Ok(m) if m.is_dir() => return Err(IngestError::Directory(name)),
                Ok(_) => {}
            }
            let f = std::fs::File::open(path).map_err(|e| IngestError::Io { file: name, source: e })?;
            Ok(Box::new(f))
        }
    }
}

/// sha256 of a file's bytes, hex: the inbox's identity of a file.
pub fn hash_file(path: &Path) -> Result<String, IngestError> {
    let mut f = open(&Input::File(path.to_path_buf()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| IngestError::Io { file: path.display().to_string(), source: e })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// How long the importer waits for the reader's next batch before it commits what it has: a
/// file's batches come far faster, so only a slow input (a pipe, a FIFO) pays for the commit.
const INPUT_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// Options for one import.
pub struct Options<'a> {
    pub accounts: &'a Accounts,
    /// Validate and count in a transaction that is rolled back.
    pub dry_run: bool,
    /// Called for each rejected row, in order (print it, write it to --rejects).
    pub on_reject: &'a mut (dyn FnMut(&Reject) + Send),
    /// The content hash to record (inbox files), or "".
    pub content_hash: String,
}

/// Imports one input: streams it, queues the good rows, reports the bad ones.
pub async fn import(store: &Store, input: &Input, opts: Options<'_>) -> Result<Summary, IngestError> {
    let reader = open(input)?;
    let name = input.name();
    let is_archive = matches!(input, Input::File(p) if p.extension().is_some_and(|e| e == "js"));
    let (tx, mut rx) = mpsc::channel::<Item>(4);
    let accounts = opts.accounts.clone();
    let file = name.clone();
    let reader_task = tokio::task::spawn_blocking(move || {
        if is_archive {
            archive::read(reader, &file, &accounts, &tx)
        } else {
            csvread::read(reader, &file, &accounts, &tx)
        }
    });

    let mut session = store.import_session(opts.dry_run).await?;
    // The import's row is written with its first batch: until the input gives rows, nothing
    // in the database waits on it.
    let mut import_id = None;
    let mut sum = Summary { source: name.clone(), ..Summary::default() };
    loop {
        let item = match tokio::time::timeout(INPUT_PAUSE, rx.recv()).await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) => {
                // A slow input (a pipe, a FIFO, a terminal): commit, and wait with no lock held.
                if let Some(id) = import_id {
                    session.note(id, &sum);
                }
                session.pause().await?;
                match rx.recv().await {
                    Some(item) => item,
                    None => break,
                }
            }
        };
        match item {
            Item::Jobs(jobs, rows) => {
                let id = match import_id {
                    Some(id) => id,
                    None => *import_id.insert(session.begin_import(&name, &opts.content_hash).await?),
                };
                sum.rows_read += rows;
                let added = session.insert_jobs(id, &jobs).await?;
                sum.added += added;
                sum.duplicates += jobs.len() as u64 - added;
                session.note(id, &sum);
                session.commit_if_due().await?;
            }
            Item::Reject(r) => {
                sum.rows_read += 1;
                sum.rejected += 1;
                (opts.on_reject)(&r);
            }
        }
    }
    // The reader's own result: a file-level error (not CSV, not an archive) ends the import here;
    // the rows before it stay, and the import is recorded as failed with its reason (the inbox
    // does not try that content again).
    let read_result = reader_task
        .await
        .map_err(|e| IngestError::Format { file: name.clone(), message: format!("reader failed: {e}") })?;
    match (&read_result, import_id) {
        // Nothing was read: the same file with --account imports, so nothing is recorded.
        (Err(IngestError::NeedsAccount { .. }), None) => session.pause().await?,
        (result, id) => {
            let id = match id {
                Some(id) => id,
                None => session.begin_import(&name, &opts.content_hash).await?,
            };
            match result {
                Ok(()) => session.finish(id, &sum).await?,
                Err(e) => session.fail(id, &sum, &e.to_string()).await?,
            }
        }
    }
    read_result?;
    Ok(sum)
}
