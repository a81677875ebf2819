//! The `jobs` table: the queue. Batched inserts for import, counts for status, rows for export.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite, SqliteConnection};

use super::{SqliteStore, now_ms};
use crate::model::{NewJob, Summary};
use crate::store::{CountRow, ExportRow, StoreError};

/// Rows per multi-row INSERT (4 bound values each, see [`insert_sql`]). Batching rows into
/// statements, not only into transactions, is what makes import fast: every statement pays
/// sqlx's hand-off to its connection's thread. Larger batches were no faster and made peak
/// memory swing with their bound values (BENCHMARKS.md, "Measurements behind the code").
pub const INSERT_BATCH: usize = 1000;

impl SqliteStore {
    /// A session for one import: batches go into a transaction committed every
    /// [`COMMIT_EVERY`], and whenever the importer waits for input ([`ImportSession::pause`]).
    /// A dry run writes only to a temporary table of its own connection, so it never takes the
    /// database's write lock, and its counts are still exact.
    pub async fn import_session(&self, dry_run: bool) -> Result<ImportSession, StoreError> {
        let mut conn = self.pool.acquire().await?;
        // Dropped without finish or fail (an error): closing the connection rolls back. A dry
        // run's connection goes back to its (read-only, one-connection) pool instead, with its
        // temporary table: the next file of the same command counts against it.
        if !dry_run {
            conn.close_on_drop();
        }
        // Every row's account id comes from the accounts table and its import id from the row
        // this session inserted: the foreign-key lookups (two per row) could only ever
        // succeed. The setting dies with the connection.
        sqlx::query("pragma foreign_keys = off").execute(&mut *conn).await?;
        // A page cache twice the pool's: with many accounts the indexes have as many hot spots,
        // and a cache that cannot hold them spills and rereads pages all through a transaction.
        sqlx::query("pragma cache_size = -16384").execute(&mut *conn).await?;
        if dry_run {
            sqlx::query(
                "create temp table if not exists dry_jobs (account_id integer not null, target_kind text not null,
                                             target text not null,
                                             unique (account_id, target_kind, target collate nocase))",
            )
            .execute(&mut *conn)
            .await?;
        }
        Ok(ImportSession {
            conn,
            dry_run,
            in_tx: false,
            began: Instant::now(),
            added: HashMap::new(),
            full_sql: insert_sql(INSERT_BATCH).into(),
            path: self.path.clone(),
            progress: None,
        })
    }

    /// Counts by account, state and outcome (from `job_counts`, kept with every change).
    pub async fn job_counts(&self) -> Result<Vec<CountRow>, StoreError> {
        Ok(sqlx::query_as(
            "select a.name as account, c.state, nullif(c.outcome, '') as outcome, c.n
             from job_counts c join accounts a on a.id = c.account_id
             where c.n > 0
             order by a.name, c.state, c.outcome",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The same counts as [`SqliteStore::job_counts`], recounted from the jobs themselves (a full
    /// scan): the check that the kept counts never drift.
    pub async fn recount_jobs(&self) -> Result<Vec<CountRow>, StoreError> {
        Ok(sqlx::query_as(
            "select a.name as account, j.state, j.outcome, count(*) as n
             from jobs j join accounts a on a.id = j.account_id
             group by a.name, j.state, j.outcome
             order by a.name, j.state, coalesce(j.outcome, '')",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every job, in id order, optionally only those with one of `outcomes` ("queued" and
    /// "in_flight" select by state).
    pub async fn export_rows(&self, outcomes: &[String]) -> Result<Vec<ExportRow>, StoreError> {
        let mut rows = Vec::new();
        self.export_each(outcomes, |r| {
            rows.push(r);
            Ok::<(), StoreError>(())
        })
        .await?;
        Ok(rows)
    }

    /// [`SqliteStore::export_rows`] one row at a time, as the database reads them: memory stays flat
    /// for any number of jobs. Stops at the first error `each` returns.
    pub async fn export_each<E: From<StoreError>>(
        &self,
        outcomes: &[String],
        mut each: impl FnMut(ExportRow) -> Result<(), E>,
    ) -> Result<(), E> {
        use futures_util::TryStreamExt;
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "select a.name as account, j.target, j.target_kind, j.state, j.outcome, j.attempts,
                    j.last_status, j.last_code, j.last_message, j.created_at, j.finished_at, j.confirmed_at
             from jobs j join accounts a on a.id = j.account_id",
        );
        if !outcomes.is_empty() {
            qb.push(" where j.outcome in (");
            let mut sep = qb.separated(", ");
            for o in outcomes {
                sep.push_bind(o.clone());
            }
            qb.push(") or j.state in (");
            let mut sep = qb.separated(", ");
            for o in outcomes {
                sep.push_bind(o.clone());
            }
            qb.push(")");
        }
        qb.push(" order by j.id");
        let mut rows = qb.build_query_as::<ExportRow>().fetch(&self.pool);
        while let Some(row) = rows.try_next().await.map_err(|e| E::from(e.into()))? {
            each(row)?;
        }
        Ok(())
    }

    /// The most common reasons jobs ended `failed` or `refused`: (outcome, last message, jobs).
    pub async fn failure_reasons(&self, limit: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "select outcome, last_message, count(*) as n from jobs
             where state = 'done' and outcome in ('failed', 'refused')
             group by outcome, last_message order by n desc, outcome limit ?1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Puts finished jobs with one of `outcomes` back in the queue with a fresh failure count.
    pub async fn requeue(&self, outcomes: &[String], account_id: Option<i64>) -> Result<u64, StoreError> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "update jobs set state = 'queued', outcome = null, failures = 0, not_before = 0, finished_at = null,
                    check_at = null, confirmed_at = null, resent = 0
             where state = 'done' and outcome in (",
        );
        let mut sep = qb.separated(", ");
        for o in outcomes {
            sep.push_bind(o.clone());
        }
        qb.push(")");
        if let Some(id) = account_id {
            qb.push(" and account_id = ").push_bind(id);
        }
        Ok(qb.build().execute(&self.pool).await?.rows_affected())
    }

    /// An account's queued jobs: (never sent, sent before and queued again after a transient
    /// failure).
    pub async fn queued_of(&self, account_id: i64) -> Result<(u64, u64), StoreError> {
        let (fresh, tried): (i64, i64) = sqlx::query_as(
            "select coalesce(sum(attempts = 0), 0), coalesce(sum(attempts > 0), 0)
             from jobs where account_id = ?1 and state = 'queued'",
        )
        .bind(account_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((fresh as u64, tried as u64))
    }

    /// Deletes an account's queued jobs that were never sent (an account removed with
    /// `--drop-jobs`). A job that was sent stays: its attempts are in the ledger, which is never
    /// rewritten. Returns how many went.
    pub async fn drop_unsent(&self, account_id: i64) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        let dropped = sqlx::query("delete from jobs where account_id = ?1 and state = 'queued' and attempts = 0")
            .bind(account_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if dropped > 0 {
            let changed = sqlx::query(
                "update job_counts set n = n - ?2 where account_id = ?1 and state = 'queued' and outcome = ''",
            )
            .bind(account_id)
            .bind(dropped as i64)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed != 1 {
                return Err(StoreError::Stale(format!("account {account_id}'s queued count is missing")));
            }
        }
        tx.commit().await?;
        Ok(dropped)
    }

    /// Per account id: queued jobs (a claim that finds none ready yet asks
    /// [`SqliteStore::next_ready_at`]).
    pub async fn queued_counts(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as("select account_id, n from job_counts where state = 'queued' and outcome = '' and n > 0")
            .fetch_all(&self.pool)
            .await?)
    }

    /// The earliest time any queued job of this account may be sent, if it has any.
    pub async fn next_ready_at(&self, account_id: i64) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "select min(not_before) from jobs where account_id = ?1 and state = 'queued' and outcome is null",
        )
        .bind(account_id)
        .fetch_one(&self.pool)
        .await?)
    }
}

/// The multi-row insert for `rows` jobs. Two choices, each measured on a 1M-row import
/// (BENCHMARKS.md):
///
/// - The import's id and time are bound once (the first two parameters) and every row binds its
///   own four values. Numbered parameters (`?NNN`) would say the same more plainly, but SQLite
///   finds a numbered parameter's name by a linear search and sqlx asks for every one:
///   quadratic in the batch.
/// - `or ignore`, not `on conflict do nothing`: a statement that may stop half-way on a
///   NOT NULL or CHECK failure makes SQLite copy every existing page it touches into a statement
///   journal first, and a batch touches a page of the unique index per row. `or ignore` would
///   also skip a row failing those checks, which no row built from a [`NewJob`] can: its account
///   id comes from the accounts table, its kind from [`TargetKind`], its flag from a bool; so in
///   practice it skips exactly the duplicates, as the upsert did.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(160 + rows * 12);
    sql.push_str(
        "insert or ignore into jobs (account_id, target_kind, target, notify, import_id, created_at) \
         select column1, column2, column3, column4, ?, ? from (values ",
    );
    for r in 0..rows {
        sql.push_str(if r == 0 { "(?, ?, ?, ?)" } else { ", (?, ?, ?, ?)" });
    }
    sql.push(')');
    sql
}

/// Inserts jobs; adds the new rows per account to `added` (written to job_counts by
/// [`add_counts`] before the transaction commits). `full_sql` is [`insert_sql`] of
/// [`INSERT_BATCH`] rows, built once per session.
async fn insert_jobs_in(
    conn: &mut SqliteConnection,
    full_sql: &Arc<str>,
    import_id: i64,
    jobs: &[NewJob],
    added: &mut HashMap<i64, i64>,
) -> Result<u64, StoreError> {
    let now = now_ms();
    let mut total = 0;
    for chunk in jobs.chunks(INSERT_BATCH) {
        let sql: Arc<str> = if chunk.len() == INSERT_BATCH { full_sql.clone() } else { insert_sql(chunk.len()).into() };
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(import_id).bind(now);
        for j in chunk {
            q = q.bind(j.account_id).bind(j.kind).bind(j.target.as_str()).bind(j.notify as i64);
        }
        let done = q.execute(&mut *conn).await?;
        let inserted = done.rows_affected();
        total += inserted;
        if inserted == chunk.len() as u64 {
            for j in chunk {
                *added.entry(j.account_id).or_default() += 1;
            }
        } else if inserted > 0 {
            // The new rows took the ids right above the table's maximum, one after another
            // (SQLite's rowid rule; this transaction holds the write lock, and a row skipped by
            // the conflict takes no id), so they are the last `inserted` ids up to the last one.
            // NOT INDEXED: the planner would otherwise walk an index of the whole table for the
            // GROUP BY; the rowid range holds only this chunk's new rows.
            let first = done.last_insert_rowid() - inserted as i64 + 1;
            let rows: Vec<(i64, i64)> =
                sqlx::query_as("select account_id, count(*) from jobs not indexed where id >= ?1 group by account_id")
                    .bind(first)
                    .fetch_all(&mut *conn)
                    .await?;
            for (account, n) in rows {
                *added.entry(account).or_default() += n;
            }
        }
    }
    Ok(total)
}

/// Adds new queued jobs per account to job_counts (once per commit: per chunk, a thousand
/// accounts would mean a thousand statements each time).
async fn add_counts(conn: &mut SqliteConnection, added: &mut HashMap<i64, i64>) -> Result<(), StoreError> {
    for (account, n) in added.drain() {
        sqlx::query(
            "insert into job_counts (account_id, state, outcome, n) values (?1, 'queued', '', ?2)
             on conflict (account_id, state, outcome) do update set n = n + ?2",
        )
        .bind(account)
        .bind(n)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// How long an import's transaction stays open at most (checked between batches). Each commit
/// writes every page it touched to the WAL and checkpoints it into the database, and a random
/// unique index has almost all its pages touched by every batch, so the copying grows with the
/// number of commits times the size of the index (a fixed row count made large imports slower
/// per row). Time, not rows, bounds what matters to the user:
/// how long a running `followq run` may wait for the write lock (its busy timeout is 10 s), and
/// how much work a crash loses (the import is simply run again; ON CONFLICT makes that safe).
pub const COMMIT_EVERY: Duration = Duration::from_secs(2);

/// One import's writes (see [`SqliteStore::import_session`]). Every transaction of the session runs
/// on the same connection: a pool hands out its connections in turn, and each newly taken one
/// had to reread the unique index's pages its cache did not hold (and kept a page cache of its
/// own in memory).
pub struct ImportSession {
    conn: PoolConnection<Sqlite>,
    dry_run: bool,
    /// A write transaction is open (and holds the write lock once it has written).
    in_tx: bool,
    /// The database's path, for messages.
    path: Arc<str>,
    /// The import's row and its counts so far, written with every commit: an import killed
    /// part-way still says what it committed.
    progress: Option<(i64, Summary)>,
    /// When the open transaction began.
    began: Instant,
    /// New jobs per account since the last commit, for job_counts.
    added: HashMap<i64, i64>,
    /// The statement for a full batch (its text is sqlx's statement-cache key).
    full_sql: Arc<str>,
}

impl ImportSession {
    /// Opens the write transaction if none is open, waiting while another process holds the
    /// write lock (as [`SqliteStore::write_tx`] does).
    async fn ensure_tx(&mut self) -> Result<(), StoreError> {
        if !self.in_tx {
            super::begin_immediate(&mut self.conn, &self.path).await?;
            self.in_tx = true;
            self.began = Instant::now();
        }
        Ok(())
    }

    /// The importer has nothing to write for now (its input is slow: a pipe, a FIFO, a
    /// terminal): commits what it has, so the write lock is never held while it waits.
    pub async fn pause(&mut self) -> Result<(), StoreError> {
        if self.in_tx {
            add_counts(&mut self.conn, &mut self.added).await?;
            if let Some((id, s)) = &self.progress {
                write_counts(&mut self.conn, *id, s).await?;
            }
            sqlx::query("commit").execute(&mut *self.conn).await?;
            self.in_tx = false;
        }
        Ok(())
    }

    /// The import's row (none for a dry run: its id is 0).
    pub async fn begin_import(&mut self, source: &str, content_hash: &str) -> Result<i64, StoreError> {
        if self.dry_run {
            return Ok(0);
        }
        self.ensure_tx().await?;
        Ok(sqlx::query_scalar(
            "insert into imports (source, content_hash, started_at) values (?1, ?2, ?3) returning id",
        )
        .bind(source)
        .bind(content_hash)
        .bind(now_ms())
        .fetch_one(&mut *self.conn)
        .await?)
    }

    /// The import's counts so far, written with the next commit.
    pub fn note(&mut self, import_id: i64, s: &Summary) {
        if !self.dry_run {
            self.progress = Some((import_id, s.clone()));
        }
    }

    /// Inserts a batch; returns how many were new.
    pub async fn insert_jobs(&mut self, import_id: i64, jobs: &[NewJob]) -> Result<u64, StoreError> {
        if self.dry_run {
            return dry_insert(&mut self.conn, jobs).await;
        }
        self.ensure_tx().await?;
        let mut counts = std::mem::take(&mut self.added);
        let added = insert_jobs_in(&mut self.conn, &self.full_sql, import_id, jobs, &mut counts).await?;
        self.added = counts;
        Ok(added)
    }

    /// Commits when the open transaction is [`COMMIT_EVERY`] old.
    pub async fn commit_if_due(&mut self) -> Result<(), StoreError> {
        if self.in_tx && self.began.elapsed() >= COMMIT_EVERY {
            self.pause().await?;
        }
        Ok(())
    }

    /// Records the import's counts and commits (a dry run leaves nothing behind: its temporary
    /// table goes with its connection).
    pub async fn finish(mut self, import_id: i64, s: &Summary) -> Result<(), StoreError> {
        if self.dry_run {
            return Ok(());
        }
        self.ensure_tx().await?;
        sqlx::query("update imports set finished_at = ?2 where id = ?1")
            .bind(import_id)
            .bind(now_ms())
            .execute(&mut *self.conn)
            .await?;
        write_counts(&mut self.conn, import_id, s).await?;
        add_counts(&mut self.conn, &mut self.added).await?;
        sqlx::query("commit").execute(&mut *self.conn).await?;
        Ok(())
    }

    /// Keeps what was inserted and records the import as failed, with its counts and `why`
    /// (the file failed part-way, or at its header): its content is not tried again.
    pub async fn fail(mut self, import_id: i64, s: &Summary, why: &str) -> Result<(), StoreError> {
        if self.dry_run {
            return Ok(());
        }
        self.ensure_tx().await?;
        sqlx::query("update imports set error = ?2 where id = ?1")
            .bind(import_id)
            .bind(why)
            .execute(&mut *self.conn)
            .await?;
        self.finish(import_id, s).await
    }
}

/// An import's counts on its row.
async fn write_counts(conn: &mut SqliteConnection, id: i64, s: &Summary) -> Result<(), StoreError> {
    sqlx::query("update imports set rows_read = ?2, added = ?3, duplicates = ?4, rejected = ?5 where id = ?1")
        .bind(id)
        .bind(s.rows_read as i64)
        .bind(s.added as i64)
        .bind(s.duplicates as i64)
        .bind(s.rejected as i64)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A dry run's batch: the jobs new to both the queue and the rows this dry run already counted
/// go into its temporary table; returns how many. Reads the queue, never writes it.
async fn dry_insert(conn: &mut SqliteConnection, jobs: &[NewJob]) -> Result<u64, StoreError> {
    let mut total = 0;
    for chunk in jobs.chunks(INSERT_BATCH) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("insert or ignore into temp.dry_jobs (account_id, target_kind, target) ");
        qb.push("select column1, column2, column3 from (");
        qb.push_values(chunk, |mut b, j| {
            b.push_bind(j.account_id).push_bind(j.kind).push_bind(j.target.as_str());
        });
        qb.push(
            ") as v where not exists (select 1 from main.jobs j where j.account_id = v.column1
                and j.target_kind = v.column2 and j.target = v.column3 collate nocase)",
        );
        total += qb.build().execute(&mut *conn).await?.rows_affected();
    }
    Ok(total)
}
