//! The store: the database's API in the domain's own types. What a claim takes and finds, what
//! an answer records, the rows the queue, the ledger and the import log are read as, and the
//! errors. The engine is behind it: SQLite (`sqlite/`, migrations in `migrations/sqlite/`); no
//! connection, pool or dialect is seen outside.

mod sqlite;

use std::path::Path;

pub use crate::model::{AttemptResult, Budget, JobState, NewJob, Outcome, Quota, TargetKind};
pub use crate::time::now_ms;
pub use sqlite::{
    COMMIT_EVERY, Check, Confirmations, INSERT_BATCH, ImportSession, RECORD_BATCH, SETTLE_BATCH, Settled, Settlement,
    Store,
};

/// A store error: the database could not be opened, migrated, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("no database at {0} (`followq init` or `followq import` creates one; --db or FOLLOWQ_DB names another)")]
    Missing(String),
    #[error(
        "{0} has {1} names (hard links): SQLite keeps its write-ahead log beside the name a database is opened by, so two names for one database corrupt it; remove the other links (`find / -samefile {0}`) or copy it"
    )]
    HardLinked(String, u64),
    #[error("{0} is a folder, not a database file (--db names the file)")]
    Directory(String),
    #[error("{0} is not a followq database (it has no followq schema); --db names the right one")]
    Foreign(String),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// A guarded transition changed no row: someone else already recorded it.
    #[error("stale write: {0}")]
    Stale(String),
}

impl StoreError {
    /// No database at `path`, named as an absolute path: where followq looked.
    pub fn missing(path: &Path) -> StoreError {
        let looked = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        StoreError::Missing(looked.display().to_string())
    }

    /// True when SQLite said "database is locked" (another process held the write lock).
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Sql(e) | StoreError::Open { source: e, .. } => sqlite::is_busy(e),
            _ => false,
        }
    }

    /// True when SQLite could not write: the file, or the folder its journal goes in, is
    /// read-only.
    pub fn is_read_only(&self) -> bool {
        match self {
            StoreError::Sql(e) | StoreError::Open { source: e, .. } => sqlite::is_read_only(e),
            _ => false,
        }
    }
}

/// An account as the store knows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub id: i64,
    pub name: String,
    pub paused_until: i64,
    pub pause_reason: String,
    pub stopped_reason: String,
    pub pace_factor: f64,
    /// The account's id on X, once `GET /2/users/me` told it ('' before).
    pub x_user_id: String,
    pub x_username: String,
    /// [`token_digest`] of the token `x_user_id` was learnt with.
    pub x_token_digest: String,
}

/// A digest of an access token (the public half; never its secret), to tell whether the id kept
/// for an account was learnt with the token configured now.
pub fn token_digest(token: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(token.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A job claimed for one request: the attempt row exists and counts against both budgets.
#[derive(Debug, Clone)]
pub struct Claim {
    pub attempt_id: i64,
    pub job_id: i64,
    pub account_id: i64,
    pub kind: TargetKind,
    pub target: String,
    /// The target's X id when it is named by a screen name that was resolved (v2 follows by id).
    pub resolved: Option<String>,
    pub notify: bool,
    pub sent_at: i64,
    /// Transient failures this job already had.
    pub failures: i64,
}

/// What [`Store::claim`] found.
#[derive(Debug)]
pub enum ClaimResult {
    /// Jobs claimed, each with its attempt row, in attempt order.
    Claimed(Vec<Claim>),
    /// One of the account's windows is full in the ledger.
    UserFull,
    /// One of the app's windows is full in the ledger.
    AppFull,
    /// The account has no job that may be sent now.
    NoJob,
    /// The account is paused until this time.
    Paused { until: i64, reason: String },
    /// The account is stopped.
    Stopped(String),
}

/// What happens to the job after an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordJob {
    /// Finished with this outcome.
    Done(Outcome),
    /// Back to the queue, not before this time; `failure` counts a transient failure.
    Requeue { not_before: i64, failure: bool },
}

/// What happens to the account after an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordAccount {
    /// No request before `until`; `pace_factor`, when set, replaces the account's.
    Pause { until: i64, reason: String, pace_factor: Option<f64> },
    /// No request until someone acts (`accounts check`).
    Stop { reason: String },
}

/// Phase 2: an attempt's answer, and what it means for the job and the account.
#[derive(Debug, Clone)]
pub struct Record {
    pub attempt_id: i64,
    pub job_id: i64,
    pub account_id: i64,
    pub result: AttemptResult,
    pub http_status: Option<i64>,
    pub error_code: Option<i64>,
    pub message: String,
    pub body: String,
    pub rl_limit: Option<i64>,
    pub rl_remaining: Option<i64>,
    pub rl_reset: Option<i64>,
    pub job: RecordJob,
    pub account: Option<RecordAccount>,
    /// A follow to be looked for at X this long after the answer is recorded (ms): its settle.
    pub check_after: Option<i64>,
}

impl Record {
    /// A blank answer for `claim`: transient, nothing known yet, the job back in the queue.
    /// Callers fill in what came back.
    pub fn for_claim(claim: &Claim) -> Record {
        Record {
            attempt_id: claim.attempt_id,
            job_id: claim.job_id,
            account_id: claim.account_id,
            result: AttemptResult::Transient,
            http_status: None,
            error_code: None,
            message: String::new(),
            body: String::new(),
            rl_limit: None,
            rl_remaining: None,
            rl_reset: None,
            job: RecordJob::Requeue { not_before: 0, failure: false },
            account: None,
            check_after: None,
        }
    }
}

/// Whether [`Store::record`] wrote an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The answer is on its attempt, and its job and account have moved on.
    Yes,
    /// The attempt already had an answer ("unknown", written by the start-up recovery of a run
    /// that took this one's requests for a crash's): nothing was changed.
    Late,
}

/// One attempt, as [`Store::attempt_log`] reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub id: i64,
    pub job_id: i64,
    pub account: String,
    pub target: String,
    pub sent_at: i64,
    pub finished_at: Option<i64>,
    pub result: Option<AttemptResult>,
    pub http_status: Option<i64>,
    pub error_code: Option<i64>,
    pub rl_reset: Option<i64>,
    pub message: String,
}

/// The ledger as the scheduler starts from it ([`Store::ledger_snapshot`]).
#[derive(Debug, Clone, Default)]
pub struct LedgerSnapshot {
    pub accounts: Vec<AccountRow>,
    /// (account id, its most recent send), whatever its age.
    pub last_sends: Vec<(i64, i64)>,
    /// (account id, sent at) of every attempt inside the window, oldest first.
    pub sends: Vec<(i64, i64)>,
    /// (account id, queued jobs).
    pub queued: Vec<(i64, i64)>,
}

/// What start-up recovery found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Attempts a crash left without an answer: now "unknown", still counted.
    pub unknown_attempts: u64,
    /// Jobs that were in flight: back in the queue, to be sent again.
    pub requeued_jobs: u64,
}

/// What [`Store::claim`] asks for: up to `want` of the account's next jobs, within every window
/// of `budget`.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub account_id: i64,
    pub budget: &'a Budget,
    pub want: usize,
    /// Only jobs whose target has an id: named by one, or by a screen name resolved to one (v2).
    pub ids_only: bool,
}

/// How many of an account's jobs are in one state, with one outcome (for status).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CountRow {
    pub account: String,
    pub state: JobState,
    pub outcome: Option<Outcome>,
    pub n: i64,
}

/// One job, as `export` writes it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportRow {
    pub account: String,
    pub target: String,
    pub target_kind: TargetKind,
    pub state: JobState,
    pub outcome: Option<Outcome>,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_code: Option<i64>,
    pub last_message: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub confirmed_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ImportRow {
    pub id: i64,
    pub source: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub rows_read: i64,
    pub added: i64,
    pub duplicates: i64,
    pub rejected: i64,
    /// Why the import failed; empty when it did not.
    pub error: String,
}
