//! The store: the database's API in the domain's own types. What a claim takes and finds, what
//! an answer records, the rows the queue, the ledger and the import log are read as, and the
//! errors. Two engines are behind it: SQLite, the embedded default (`sqlite/`, migrations in
//! `migrations/sqlite/`), and PostgreSQL, for several hosts on one queue (`postgres/`,
//! `migrations/postgres/`). No connection, pool or dialect is seen outside.

mod confirm;
mod location;
mod postgres;
mod sqlite;

use std::collections::HashMap;
use std::path::Path;

pub use crate::model::{AttemptResult, Budget, JobState, NewJob, Outcome, Quota, TargetKind};
pub use crate::time::now_ms;
pub(crate) use confirm::check_from;
pub use confirm::{Check, Confirmations, SETTLE_BATCH, Settled, Settlement};
pub use location::Db;
pub use postgres::{PgStore, Runner};
pub use sqlite::{COMMIT_EVERY, INSERT_BATCH, RECORD_BATCH, SqliteStore};

use crate::model::{ResolvedUser, Summary, UserState};
use crate::time::Clock;

/// The database, on either engine. Every method is the same on both; where they differ in what
/// they promise (locks, clocks, recovery) the engine's own method says so.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Each method of [`Store`] handed to its engine's method of the same name and arguments.
macro_rules! on_engine {
    ($( $(#[$doc:meta])* pub async fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty; )*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        Store::Sqlite(s) => s.$name($($arg),*).await,
                        Store::Postgres(p) => p.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

impl Store {
    /// Opens (creating a SQLite file if missing, mode 0600) and migrates the database.
    pub async fn open_at(db: &Db) -> Result<Store, StoreError> {
        Ok(match db {
            Db::File(path) => Store::Sqlite(SqliteStore::open(path).await?),
            Db::Postgres(url) => Store::Postgres(PgStore::open(url).await?),
        })
    }

    /// [`Store::open_at`] a SQLite file.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store::Sqlite(SqliteStore::open(path).await?))
    }

    /// A SQLite store whose commits are not synced: only for the dispatch benchmark, which
    /// measures what the sync costs side by side (see [`SqliteStore::open_unsynced_for_benchmark`]).
    #[doc(hidden)]
    pub async fn open_unsynced_for_benchmark(path: &Path) -> Result<Store, StoreError> {
        Ok(Store::Sqlite(SqliteStore::open_unsynced_for_benchmark(path).await?))
    }

    /// Opens an existing database for reading only (`status`, `export`): a SQLite file is
    /// never created nor its write lock taken; a PostgreSQL database is opened as for
    /// everything else (its readers never wait for its writers).
    pub async fn open_read_only(db: &Db) -> Result<Store, StoreError> {
        Ok(match db {
            Db::File(path) => Store::Sqlite(SqliteStore::open_read_only(path).await?),
            Db::Postgres(url) => Store::Postgres(PgStore::open(url).await?),
        })
    }

    /// Closes the pool (on SQLite, checkpointing the WAL).
    pub async fn close(self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(p) => p.close().await,
        }
    }

    /// True for PostgreSQL: several runs may share the queue, each a registered [`Runner`].
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// A session for one import: batches go into a transaction committed every
    /// [`COMMIT_EVERY`], and whenever the importer waits for input ([`ImportSession::pause`]).
    /// A dry run never writes the queue, and its counts are still exact.
    pub async fn import_session(&self, dry_run: bool) -> Result<ImportSession, StoreError> {
        Ok(match self {
            Store::Sqlite(s) => ImportSession::Sqlite(s.import_session(dry_run).await?),
            Store::Postgres(p) => ImportSession::Postgres(p.import_session(dry_run).await?),
        })
    }

    /// [`Store::export_rows`] one row at a time, as the database reads them: memory stays flat
    /// for any number of jobs. Stops at the first error `each` returns.
    pub async fn export_each<E: From<StoreError>>(
        &self,
        outcomes: &[String],
        each: impl FnMut(ExportRow) -> Result<(), E>,
    ) -> Result<(), E> {
        match self {
            Store::Sqlite(s) => s.export_each(outcomes, each).await,
            Store::Postgres(p) => p.export_each(outcomes, each).await,
        }
    }
}

on_engine! {
    /// Inserts the configured accounts that are new and returns their ids by name (only
    /// theirs: rows for an account no longer configured are not accepted).
    pub async fn sync_accounts(&self, names: &[&str]) -> Result<HashMap<String, i64>, StoreError>;
    /// Every account the database knows, configured now or not.
    pub async fn accounts(&self) -> Result<Vec<AccountRow>, StoreError>;
    /// Stops an account outside an attempt's answer (`GET /2/users/me` refused its token).
    pub async fn stop_account(&self, account_id: i64, reason: &str) -> Result<(), StoreError>;
    /// Clears a stopped account (its credentials verified again).
    pub async fn clear_stop(&self, account_id: i64) -> Result<(), StoreError>;
    /// Keeps who the account is on X (`GET /2/users/me`): its id, the path of its v2 follows,
    /// and the digest of the token it was learnt with ([`token_digest`]).
    pub async fn set_identity(&self, account_id: i64, x_user_id: &str, x_username: &str, token_digest: &str)
        -> Result<(), StoreError>;
    /// Keeps why X refused the app (the run that met it ends; `status` shows it).
    pub async fn stop_app(&self, reason: &str, at: i64) -> Result<(), StoreError>;
    /// Why X refused the app, and when, if the last run ended so.
    pub async fn app_stopped(&self) -> Result<Option<(String, i64)>, StoreError>;
    /// Clears the app's refusal: a run tries again.
    pub async fn clear_app_stop(&self) -> Result<(), StoreError>;
    /// The engine's own check of the database: "ok" when it is sound.
    pub async fn integrity_check(&self) -> Result<String, StoreError>;

    /// Start-up recovery: attempts without an answer whose run is gone become "unknown" (they
    /// still count against the budget: the request may have reached X), and their jobs go back
    /// to the queue. On SQLite the run lock says no other run is live, so every open attempt is
    /// one a crash left; on PostgreSQL only those of runners whose heartbeat expired.
    pub async fn recover(&self, clock: &Clock) -> Result<Recovered, StoreError>;
    /// Every attempt sent after `since`, as (account id, sent_at), oldest first: the scheduler's
    /// starting state after a restart.
    pub async fn sends_since(&self, since: i64) -> Result<Vec<(i64, i64)>, StoreError>;
    /// What the scheduler starts from: the accounts, each one's last send, the sends after
    /// `since`, and the queued jobs per account.
    pub async fn ledger_snapshot(&self, since: i64) -> Result<LedgerSnapshot, StoreError>;
    /// Each account's most recent send, whatever its age (spread pacing spaces from it).
    pub async fn last_sends(&self) -> Result<Vec<(i64, i64)>, StoreError>;
    /// Phase 1, one write transaction: lock the budgets, check the account is neither paused nor
    /// stopped, count every window of both scopes in the ledger, take up to `ask.want` of the
    /// account's next jobs (fewer if any window has less room), insert their attempts sent
    /// "now", and put the jobs in flight on them. Nothing is consumed unless every window has
    /// room. "Now" is read once the locks are held (on PostgreSQL from the database's clock,
    /// which every host shares, unless `clock` is a test's virtual one).
    pub async fn claim(&self, clock: &Clock, ask: Ask<'_>) -> Result<ClaimResult, StoreError>;
    /// Phase 2 for up to [`RECORD_BATCH`] answers, in one transaction: each answer on its
    /// attempt, each job's next state, any account's pause or stop. Guarded by the attempt id:
    /// an attempt that already has an answer changes nothing and is reported [`Written::Late`];
    /// a job that is not on its (open) attempt is an error, and nothing is written.
    pub async fn record(&self, records: &[Record], clock: &Clock) -> Result<Vec<Written>, StoreError>;
    /// [`Store::record`] then [`Store::claim`] in one transaction: one lock, one commit and one
    /// sync for both. An answer recorded here that pauses or stops its account already holds
    /// back this claim.
    pub async fn record_and_claim(&self, records: &[Record], clock: &Clock, ask: Ask<'_>)
        -> Result<(Vec<Written>, ClaimResult), StoreError>;
    /// Attempts still without an answer (in flight, or left by a crash before recovery).
    pub async fn open_attempts(&self) -> Result<i64, StoreError>;
    /// Every attempt in order, for audits and tests.
    pub async fn attempt_log(&self) -> Result<Vec<AttemptRow>, StoreError>;

    /// Counts by account, state and outcome (for status).
    pub async fn job_counts(&self) -> Result<Vec<CountRow>, StoreError>;
    /// The same counts as [`Store::job_counts`], recounted from the jobs themselves (a full
    /// scan): the check that kept counts never drift.
    pub async fn recount_jobs(&self) -> Result<Vec<CountRow>, StoreError>;
    /// Every job, in id order, optionally only those with one of `outcomes` ("queued" and
    /// "in_flight" select by state).
    pub async fn export_rows(&self, outcomes: &[String]) -> Result<Vec<ExportRow>, StoreError>;
    /// The most common reasons jobs ended `failed` or `refused`: (outcome, last message, jobs).
    pub async fn failure_reasons(&self, limit: i64) -> Result<Vec<(String, String, i64)>, StoreError>;
    /// Puts finished jobs with one of `outcomes` back in the queue with a fresh failure count.
    pub async fn requeue(&self, outcomes: &[String], account_id: Option<i64>) -> Result<u64, StoreError>;
    /// An account's queued jobs: (never sent, sent before and queued again after a transient
    /// failure).
    pub async fn queued_of(&self, account_id: i64) -> Result<(u64, u64), StoreError>;
    /// Deletes an account's queued jobs that were never sent (an account removed with
    /// `--drop-jobs`). A job that was sent stays: its attempts are in the ledger, which is never
    /// rewritten. Returns how many went.
    pub async fn drop_unsent(&self, account_id: i64) -> Result<u64, StoreError>;
    /// Per account id: queued jobs.
    pub async fn queued_counts(&self) -> Result<Vec<(i64, i64)>, StoreError>;
    /// The earliest time any queued job of this account may be sent, if it has any.
    pub async fn next_ready_at(&self, account_id: i64) -> Result<Option<i64>, StoreError>;

    /// True when content with this hash was already imported to the end, or failed (then it
    /// is not tried again).
    pub async fn content_imported(&self, content_hash: &str) -> Result<bool, StoreError>;
    /// The most recent imports, newest first.
    pub async fn recent_imports(&self, limit: i64) -> Result<Vec<ImportRow>, StoreError>;

    /// Up to `limit` screen names of the account's queued jobs, in queue order, that have not
    /// been resolved — with `ahead_only`, none unless one of its next `limit` queued jobs needs
    /// one: names are resolved in whole batches, just ahead of the follows.
    pub async fn unresolved_names(&self, account_id: i64, limit: usize, ahead_only: bool)
        -> Result<Vec<String>, StoreError>;
    /// Every account with queued jobs whose names are not resolved yet, with how many.
    pub async fn unresolved_counts(&self) -> Result<Vec<(i64, i64)>, StoreError>;
    /// Keeps what X said about these names, in one transaction, and ends the queued jobs (of
    /// every account) whose name X does not know (`not_found`) or has suspended (`suspended`):
    /// they are finished without a request. Returns the jobs that ended: (account id, outcome).
    pub async fn record_users(&self, users: &[ResolvedUser], now: i64) -> Result<Vec<(i64, Outcome)>, StoreError>;
    /// What is known about a name, for tests and audits.
    pub async fn resolved(&self, username: &str) -> Result<Option<(String, UserState)>, StoreError>;

    /// The account's follows due to be looked for at `now`, soonest first, at most `limit`.
    pub async fn due_checks(&self, account_id: i64, now: i64, limit: usize) -> Result<Vec<Check>, StoreError>;
    /// Every follow of the account that X answered and that is not confirmed yet (`verify`),
    /// due or not — `followed` and `already_following`, and `requested` when `requests` (v1.1
    /// can see them) — at most `limit` after job `after`.
    pub async fn unconfirmed_follows(&self, account_id: i64, requests: bool, after: i64, limit: usize)
        -> Result<Vec<Check>, StoreError>;
    /// When the next look of each account with follows to look for is due: (account id, ms).
    pub async fn next_checks(&self) -> Result<Vec<(i64, i64)>, StoreError>;
    /// What looking for these follows found (job id, seen), at `now`; `retry_after_ms` after its
    /// answer, a follow not seen is sent again (once). Rows that are no longer to be looked for
    /// (a `retry` took them meanwhile) are skipped.
    pub async fn settle_checks(&self, seen: &[(i64, bool)], now: i64, retry_after_ms: i64)
        -> Result<Vec<(i64, Settlement)>, StoreError>;
    /// Marks follows seen at X by `verify` (looked for on demand): confirmed, nothing more to
    /// look for; one that had ended `unconfirmed` is `followed` after all. Returns how many were
    /// not confirmed before.
    pub async fn confirm_seen(&self, job_ids: &[i64], now: i64) -> Result<u64, StoreError>;
    /// Stops looking for the account's follows (its token is another X user's now). Returns
    /// how many.
    pub async fn forget_checks(&self, account_id: i64) -> Result<u64, StoreError>;
    /// Per account id: follows confirmed and follows awaiting a look.
    pub async fn confirmations(&self) -> Result<Vec<(i64, Confirmations)>, StoreError>;

    /// Registers this process as a runner of the queue (PostgreSQL; SQLite's run lock says the
    /// same and this does nothing): its attempts carry its id, and its heartbeat keeps them
    /// its own. `expire` is how long a silent runner is taken for live.
    pub async fn register_runner(&self, expire: std::time::Duration) -> Result<Option<Runner>, StoreError>;
    /// The runners whose heartbeat has not expired (PostgreSQL; none on SQLite).
    pub async fn live_runners(&self) -> Result<Vec<RunnerRow>, StoreError>;
    /// Jobs in flight on another runner's attempts (PostgreSQL; none on SQLite): a run that
    /// finished its own waits for them, to take them over if that runner dies.
    pub async fn in_flight_elsewhere(&self) -> Result<i64, StoreError>;
}

/// One of the engines' import sessions (see [`Store::import_session`]).
pub enum ImportSession {
    Sqlite(sqlite::ImportSession),
    Postgres(postgres::ImportSession),
}

impl ImportSession {
    /// The importer has nothing to write for now (its input is slow): commits what it has, so
    /// no lock is held while it waits.
    pub async fn pause(&mut self) -> Result<(), StoreError> {
        match self {
            ImportSession::Sqlite(s) => s.pause().await,
            ImportSession::Postgres(p) => p.pause().await,
        }
    }

    /// The import's row (none for a dry run: its id is 0).
    pub async fn begin_import(&mut self, source: &str, content_hash: &str) -> Result<i64, StoreError> {
        match self {
            ImportSession::Sqlite(s) => s.begin_import(source, content_hash).await,
            ImportSession::Postgres(p) => p.begin_import(source, content_hash).await,
        }
    }

    /// The import's counts so far, written with the next commit.
    pub fn note(&mut self, import_id: i64, s: &Summary) {
        match self {
            ImportSession::Sqlite(x) => x.note(import_id, s),
            ImportSession::Postgres(p) => p.note(import_id, s),
        }
    }

    /// Inserts a batch; returns how many were new.
    pub async fn insert_jobs(&mut self, import_id: i64, jobs: &[NewJob]) -> Result<u64, StoreError> {
        match self {
            ImportSession::Sqlite(s) => s.insert_jobs(import_id, jobs).await,
            ImportSession::Postgres(p) => p.insert_jobs(import_id, jobs).await,
        }
    }

    /// Commits when the open transaction is [`COMMIT_EVERY`] old.
    pub async fn commit_if_due(&mut self) -> Result<(), StoreError> {
        match self {
            ImportSession::Sqlite(s) => s.commit_if_due().await,
            ImportSession::Postgres(p) => p.commit_if_due().await,
        }
    }

    /// Records the import's counts and commits (a dry run leaves nothing behind).
    pub async fn finish(self, import_id: i64, s: &Summary) -> Result<(), StoreError> {
        match self {
            ImportSession::Sqlite(x) => x.finish(import_id, s).await,
            ImportSession::Postgres(p) => p.finish(import_id, s).await,
        }
    }

    /// Keeps what was inserted and records the import as failed, with its counts and `why`:
    /// its content is not tried again.
    pub async fn fail(self, import_id: i64, s: &Summary, why: &str) -> Result<(), StoreError> {
        match self {
            ImportSession::Sqlite(x) => x.fail(import_id, s, why).await,
            ImportSession::Postgres(p) => p.fail(import_id, s, why).await,
        }
    }
}

/// A runner of the queue, as `status` lists it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct RunnerRow {
    pub id: i64,
    pub host: String,
    pub pid: i64,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

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
