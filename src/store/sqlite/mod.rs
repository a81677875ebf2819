//! The store on SQLite: opening the database (pragmas, migrations, the checks that refuse a wrong
//! file), the write lock, and the SQL of each part — the queue (`jobs.rs`), the ledger
//! (`ledger.rs`), the import log (`imports.rs`). Its dialect and its error codes stay here.

mod confirm;
mod imports;
mod jobs;
mod ledger;
mod users;

pub use jobs::{COMMIT_EVERY, INSERT_BATCH, ImportSession};
pub use ledger::RECORD_BATCH;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::{AccountRow, Runner, RunnerRow, StoreError};
pub use crate::time::now_ms;

/// The database: one pool, one function per statement.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Where it is, for messages.
    path: Arc<str>,
}

/// How long one statement waits for another process's write lock before SQLite gives up with
/// "database is locked". The run's writes then wait again ([`SqliteStore::write_tx`]); everything
/// else reports the error.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Logs that this process is waiting for another's write lock, about `waits` busy timeouts long.
fn note_wait(path: &str, waits: u32) {
    tracing::warn!(
        database = %path,
        waited_secs = u64::from(waits) * BUSY_TIMEOUT.as_secs(),
        "another process holds the database's write lock (an import, `followq retry`, or another program): waiting for it"
    );
}

/// `begin immediate` on `conn`: the write lock up front, waiting while another process holds it
/// and saying so every busy timeout (see [`SqliteStore::write_tx`], the same for the pool).
async fn begin_immediate(conn: &mut sqlx::SqliteConnection, path: &str) -> Result<(), StoreError> {
    let mut waits = 0;
    loop {
        match sqlx::query("begin immediate").execute(&mut *conn).await {
            Err(e) if is_busy(&e) => {
                waits += 1;
                note_wait(path, waits);
            }
            other => return Ok(other.map(drop)?),
        }
    }
}

/// True when `e` is SQLite's "attempt to write a readonly database" (SQLITE_READONLY, any
/// extended code: a read-only file or folder).
pub(super) fn is_read_only(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d.code().and_then(|c| c.parse::<i64>().ok()).is_some_and(|c| c & 0xff == 8),
        _ => false,
    }
}

/// True when `e` is SQLite's "database is locked" (SQLITE_BUSY, any extended code).
pub(super) fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d.code().and_then(|c| c.parse::<i64>().ok()).is_some_and(|c| c & 0xff == 5),
        _ => false,
    }
}

impl SqliteStore {
    /// Opens (creating if missing, mode 0600) and migrates the database at `path`.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, BUSY_TIMEOUT).await
    }

    /// [`SqliteStore::open`] with another busy timeout (tests of a locked database).
    pub(crate) async fn open_with(path: &Path, busy_timeout: Duration) -> Result<SqliteStore, StoreError> {
        let pool = connect(path, busy_timeout, SqliteSynchronous::Full).await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool, path: path.display().to_string().into() })
    }

    /// The store as it was before every commit was synced (`synchronous = NORMAL`): a power
    /// loss can erase the last attempts. Only for the dispatch benchmark, which measures what
    /// the sync costs side by side; never for real work.
    #[doc(hidden)]
    pub async fn open_unsynced_for_benchmark(path: &Path) -> Result<SqliteStore, StoreError> {
        let pool = connect(path, BUSY_TIMEOUT, SqliteSynchronous::Normal).await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool, path: path.display().to_string().into() })
    }

    /// Opens an existing database for reading only (`status`, `export`): it never creates the
    /// file, never takes the write lock, and so works beside any writer and on a read-only
    /// file. A database from an older followq is brought up to date first (a write, once).
    pub async fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        if !path.exists() {
            return Err(StoreError::missing(path));
        }
        check_single_name(path)?;
        let opts = SqliteConnectOptions::from_str("sqlite:")
            .map_err(open_err)?
            .filename(path)
            .read_only(true)
            .busy_timeout(BUSY_TIMEOUT)
            .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
        // One connection: a dry-run import keeps its temporary table on it from file to file.
        let version = async |o: SqliteConnectOptions| {
            let pool = SqlitePoolOptions::new().max_connections(1).connect_with(o).await?;
            let v = sqlx::query_scalar::<_, Option<i64>>("select max(version) from _sqlx_migrations where success")
                .fetch_one(&pool)
                .await;
            Ok::<_, sqlx::Error>((pool, v))
        };
        let (pool, applied) = match version(opts.clone()).await {
            Ok((pool, Err(e))) if is_read_only(&e) => {
                pool.close().await;
                // A WAL database whose -shm cannot be created (a read-only folder): nobody can
                // be writing it, so it is read as it is on disk.
                version(opts.immutable(true)).await.map_err(open_err)?
            }
            Ok(found) => found,
            Err(e) => return Err(open_err(e)),
        };
        let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        match applied {
            Ok(Some(v)) if v >= latest => Ok(SqliteStore { pool, path: path.display().to_string().into() }),
            // A database from an older followq: brought up to date, once (a write).
            Ok(Some(_)) => {
                pool.close().await;
                SqliteStore::open(path).await
            }
            // Not SQLite at all, or damaged: what SQLite says, with the path.
            Err(e) if !e.to_string().contains("no such table") => {
                pool.close().await;
                Err(open_err(e))
            }
            // No followq schema (an empty file, another program's database): never touched.
            _ => {
                pool.close().await;
                Err(StoreError::Foreign(path.display().to_string()))
            }
        }
    }

    /// A write transaction with the write lock taken up front (`begin immediate`), so that two
    /// processes cannot both read "room left" and both insert. While another process holds the
    /// lock (an import, `retry`, a `sqlite3` shell) this waits, saying so every busy timeout,
    /// instead of failing: a run must outlast a writer that keeps the lock for a while.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>, StoreError> {
        let mut waits = 0u32;
        loop {
            match self.pool.begin_with("begin immediate").await {
                Err(e) if is_busy(&e) => {
                    waits += 1;
                    self.note_wait(waits);
                }
                other => return Ok(other?),
            }
        }
    }

    /// See [`note_wait`].
    fn note_wait(&self, waits: u32) {
        note_wait(&self.path, waits);
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(self) {
        self.pool.close().await;
    }

    /// Inserts the configured accounts that are new and returns their ids by name (only
    /// theirs: rows for an account no longer configured are not accepted).
    pub async fn sync_accounts(&self, names: &[&str]) -> Result<HashMap<String, i64>, StoreError> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        for name in names {
            sqlx::query("insert into accounts (name, created_at) values (?1, ?2) on conflict (name) do nothing")
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let rows: Vec<(String, i64)> = sqlx::query_as("select name, id from accounts").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().filter(|(name, _)| names.contains(&name.as_str())).collect())
    }

    /// Every account the database knows, configured now or not.
    pub async fn accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        Ok(sqlx::query_as(
            "select id, name, paused_until, pause_reason, stopped_reason, pace_factor, x_user_id, x_username,
                    x_token_digest
             from accounts order by name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Stops an account outside an attempt's answer (`GET /2/users/me` refused its token).
    pub async fn stop_account(&self, account_id: i64, reason: &str) -> Result<(), StoreError> {
        sqlx::query("update accounts set stopped_reason = ?2 where id = ?1")
            .bind(account_id)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Clears a stopped account (its credentials verified again).
    pub async fn clear_stop(&self, account_id: i64) -> Result<(), StoreError> {
        sqlx::query("update accounts set stopped_reason = '', paused_until = 0, pause_reason = '' where id = ?1")
            .bind(account_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keeps who the account is on X (`GET /2/users/me`): its id, the path of its v2 follows,
    /// and the digest of the token it was learnt with ([`token_digest`]).
    pub async fn set_identity(
        &self,
        account_id: i64,
        x_user_id: &str,
        x_username: &str,
        token_digest: &str,
    ) -> Result<(), StoreError> {
        let changed =
            sqlx::query("update accounts set x_user_id = ?2, x_username = ?3, x_token_digest = ?4 where id = ?1")
                .bind(account_id)
                .bind(x_user_id)
                .bind(x_username)
                .bind(token_digest)
                .execute(&self.pool)
                .await?
                .rows_affected();
        if changed != 1 {
            return Err(StoreError::Stale(format!("account {account_id} is not in the database")));
        }
        Ok(())
    }

    /// Keeps why X refused the app (the run that met it ends; `status` shows it).
    pub async fn stop_app(&self, reason: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query("update app_state set stopped_reason = ?1, stopped_at = ?2 where id = 1")
            .bind(reason)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Why X refused the app, and when, if the last run ended so.
    pub async fn app_stopped(&self) -> Result<Option<(String, i64)>, StoreError> {
        let row: (String, i64) = sqlx::query_as("select stopped_reason, stopped_at from app_state where id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((!row.0.is_empty()).then_some(row))
    }

    /// Clears the app's refusal: a run tries again.
    pub async fn clear_app_stop(&self) -> Result<(), StoreError> {
        self.stop_app("", 0).await
    }

    /// Nothing to register: the run lock ([`crate::worker::lock`]) says no other run is live.
    pub async fn register_runner(&self, _expire: Duration) -> Result<Option<Runner>, StoreError> {
        Ok(None)
    }

    /// None: one run at a time, under the run lock.
    pub async fn live_runners(&self) -> Result<Vec<RunnerRow>, StoreError> {
        Ok(Vec::new())
    }

    /// None: one run at a time, under the run lock.
    pub async fn in_flight_elsewhere(&self) -> Result<i64, StoreError> {
        Ok(0)
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(sqlx::query_scalar("pragma integrity_check").fetch_one(&self.pool).await?)
    }
}

/// The schema's history, `migrations/`, built in.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Refuses a database file with more than one name: each name would get its own WAL.
fn check_single_name(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        if meta.is_dir() {
            return Err(StoreError::Directory(path.display().to_string()));
        }
        if meta.nlink() > 1 {
            return Err(StoreError::HardLinked(path.display().to_string(), meta.nlink()));
        }
    }
    Ok(())
}

/// The pool on the database at `path` (created if missing, mode 0600), not yet migrated.
async fn connect(
    path: &Path,
    busy_timeout: Duration,
    synchronous: SqliteSynchronous,
) -> Result<SqlitePool, StoreError> {
    check_single_name(path)?;
    let existed = path.exists();
    let opts = SqliteConnectOptions::from_str("sqlite:")
        .map_err(|e| StoreError::Open { path: path.display().to_string(), source: e })?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // WAL + FULL (always but in one benchmark): every commit is on disk (the WAL fsynced) before it returns. The claim
        // that covers a request is committed before the request leaves, so no power loss or
        // OS crash can erase an attempt X may have seen: with NORMAL the last commits lived in
        // the page cache until a checkpoint, and after a power loss their requests were
        // neither counted nor known (the next run overspent and sent their jobs again).
        .synchronous(synchronous)
        .busy_timeout(busy_timeout)
        .foreign_keys(true)
        .pragma("cache_size", "-8192")
        .pragma("temp_store", "memory")
        // sqlx warns of any statement over a second with its whole text: a claim that waited
        // for an import's lock, or a migration, would print pages of SQL to the user.
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(opts)
        .await
        .map_err(|e| StoreError::Open { path: path.display().to_string(), source: e })?;
    if !existed {
        restrict_permissions(path);
    }
    Ok(pool)
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %path.display(), error = %e, "could not make the database private (0600)");
    }
}

#[cfg(not(unix))]
fn restrict_permissions(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;
    use sqlx::AssertSqlSafe;

    /// Every column of every job and attempt, in id order, as one JSON text per table.
    const DUMP: &str = "
        select (select json_group_array(json_array(id, account_id, target_kind, target, notify, state, outcome,
                    not_before, attempts, failures, attempt_id, last_status, last_code, last_message, import_id,
                    created_at, finished_at)) from (select * from jobs order by id)),
               (select json_group_array(json_array(id, job_id, account_id, sent_at, finished_at, result,
                    http_status, error_code, message, body, rl_limit, rl_remaining, rl_reset))
                  from (select * from attempts order by id))";

    /// A database at migration 4 with attempts in several minutes, for two accounts, opened by
    /// `SqliteStore::open`: migration 5's per-minute tallies start from the attempts already there,
    /// and the trigger keeps them from then on.
    #[tokio::test]
    async fn the_minute_tallies_start_from_the_attempts_already_in_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let pool = connect(&path, BUSY_TIMEOUT, SqliteSynchronous::Full).await.unwrap();
        MIGRATOR.run_to(20261201000004, &pool).await.unwrap();
        sqlx::raw_sql(
            "insert into accounts (id, name, created_at) values (1, 'alice', 1), (2, 'bob', 1);
             insert into jobs (id, account_id, target_kind, target, created_at)
             values (1, 1, 'screen_name', 'a', 1), (2, 1, 'screen_name', 'b', 1), (3, 2, 'screen_name', 'c', 1);
             insert into attempts (job_id, account_id, sent_at, finished_at, result)
             values (1, 1, 59999, 60000, 'transient'), (1, 1, 60000, 60001, 'transient'),
                    (2, 1, 60001, 60002, 'followed'), (3, 2, 119999, null, null), (1, 1, 3600000, null, null);",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = SqliteStore::open(&path).await.unwrap();
        sqlx::query("insert into attempts (job_id, account_id, sent_at) values (3, 2, 60005)")
            .execute(&store.pool)
            .await
            .unwrap();
        let tallies = async |sql: &str| -> Vec<(i64, i64, i64)> {
            sqlx::query_as(AssertSqlSafe(sql.to_string())).fetch_all(&store.pool).await.unwrap()
        };
        let expected = vec![(1, 0, 1), (1, 1, 2), (1, 60, 1), (2, 1, 2)];
        assert_eq!(tallies("select account_id, minute, n from account_sends order by 1, 2").await, expected);
        assert_eq!(
            tallies("select account_id, sent_at / 60000, count(*) from attempts group by 1, 2 order by 1, 2").await,
            expected
        );
        assert_eq!(
            tallies("select 0, minute, n from app_sends order by 2").await,
            vec![(0, 0, 1), (0, 1, 4), (0, 60, 1)]
        );
    }

    /// A database at migration 2 with jobs in every state and attempts answered and open,
    /// opened by `SqliteStore::open` (which runs migration 3, the rebuild of both tables).
    #[tokio::test]
    async fn the_rebuild_to_cheap_checks_keeps_every_row_reference_count_and_constraint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let pool = connect(&path, BUSY_TIMEOUT, SqliteSynchronous::Full).await.unwrap();
        MIGRATOR.run_to(20261125000002, &pool).await.unwrap();
        sqlx::raw_sql(
            "insert into accounts (id, name, created_at) values (1, 'alice', 1), (2, 'bob', 1);
             insert into imports (id, source, started_at, finished_at) values (7, 'a.csv', 2, 3);
             insert into jobs (id, account_id, target_kind, target, notify, import_id, created_at)
             values (1, 1, 'screen_name', 'Ann', 0, 7, 4), (2, 1, 'user_id', '12', 1, 7, 4),
                    (3, 2, 'screen_name', 'cid', 0, 7, 4), (4, 2, 'screen_name', 'dee', 0, 7, 4);
             insert into job_counts (account_id, state, outcome, n) values (1, 'queued', '', 2), (2, 'queued', '', 2);
             insert into attempts (id, job_id, account_id, sent_at, finished_at, result, http_status, error_code,
                                   message, body, rl_limit, rl_remaining, rl_reset)
             values (1, 1, 1, 10, 11, 'followed', 200, null, '', '', 400, 399, 99),
                    (2, 3, 2, 12, 13, 'transient', 503, 130, 'over capacity', '{}', null, null, null),
                    (3, 3, 2, 14, null, null, null, null, '', '', null, null, null);
             update jobs set state = 'done', outcome = 'followed', attempts = 1, last_status = 200, finished_at = 11
              where id = 1;
             update jobs set state = 'in_flight', attempts = 2, failures = 1, attempt_id = 3, not_before = 13
              where id = 3;",
        )
        .execute(&pool)
        .await
        .unwrap();
        let before: (String, String) = sqlx::query_as(DUMP).fetch_one(&pool).await.unwrap();
        pool.close().await;

        let store = SqliteStore::open(&path).await.unwrap();
        let after: (String, String) = sqlx::query_as(DUMP).fetch_one(&store.pool).await.unwrap();
        assert_eq!(after, before);
        assert!(before.0.contains("\"in_flight\"") && before.1.contains("over capacity"), "{before:?}");
        assert_eq!(store.integrity_check().await.unwrap(), "ok");
        let broken: Vec<(String, i64)> = sqlx::query_as("select \"table\", rowid from pragma_foreign_key_check")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert!(broken.is_empty(), "{broken:?}");
        let schema: Vec<String> = sqlx::query_scalar(
            "select name from sqlite_schema where tbl_name in ('jobs', 'attempts') and name not like 'sqlite_%'
             order by name",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        let expected = [
            "attempts",
            "attempts_account_sent",
            "attempts_count_send",
            "attempts_open",
            "attempts_sent",
            "jobs",
            "jobs_confirmed",
            "jobs_count_transition",
            "jobs_done",
            "jobs_in_flight",
            "jobs_queued",
            "jobs_to_check",
        ];
        assert_eq!(schema, expected, "as migrations 3 and 7 (its second rebuild) leave them");
        // The dispatcher's next-job lookup and verify's finished jobs read their partial indexes.
        for (query, index) in [
            (
                "select id from jobs where account_id = 1 and state = 'queued' and outcome is null and not_before <= 5
                 order by id limit 4",
                "jobs_queued",
            ),
            (
                "select id from jobs where account_id = 1 and state = 'done' and outcome = 'followed' order by id",
                "jobs_done",
            ),
        ] {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(AssertSqlSafe(format!("explain query plan {query}")))
                    .fetch_all(&store.pool)
                    .await
                    .unwrap();
            assert!(plan.iter().any(|(.., detail)| detail.contains(index)), "{query}: {plan:?}");
        }
        // The rewritten checks still refuse what the old ones did, and the references hold.
        for bad in [
            "update jobs set state = 'queue' where id = 2",
            "update jobs set state = 'done', outcome = 'follow' where id = 2",
            "update jobs set notify = 2 where id = 2",
            "insert into jobs (account_id, target_kind, target, created_at) values (1, 'name', 'x', 1)",
            "insert into jobs (account_id, target_kind, target, created_at) values (1, 'screen_name', 'ANN', 1)",
            "insert into jobs (account_id, target_kind, target, created_at) values (3, 'screen_name', 'x', 1)",
            "update attempts set result = 'ok' where id = 3",
            "insert into attempts (job_id, account_id, sent_at) values (99, 1, 1)",
            // Migration 7: only a finished job is looked for, and it is sent again once.
            "update jobs set check_at = 5 where id = 2",
            "update jobs set resent = 2 where id = 1",
        ] {
            assert!(sqlx::query(bad).execute(&store.pool).await.is_err(), "accepted: {bad}");
        }
        sqlx::query("update jobs set check_at = 5, resent = 1 where id = 1").execute(&store.pool).await.unwrap();
        // The count trigger came back with the table: finishing job 2 moves it between counts.
        sqlx::query("update jobs set state = 'done', outcome = 'unconfirmed' where id = 2")
            .execute(&store.pool)
            .await
            .unwrap();
        let kept = store.job_counts().await.unwrap();
        assert_eq!(kept, store.recount_jobs().await.unwrap());
        assert!(kept.iter().any(|c| c.outcome == Some(Outcome::Unconfirmed) && c.n == 1), "{kept:?}");
        store.close().await;
    }
}
