//! The queue on PostgreSQL: imports (batched inserts in a transaction committed every
//! [`COMMIT_EVERY`]), counts for status (read from the jobs' indexes: no kept counts here, see
//! the migration), rows for export, and the commands that put jobs back or drop them.

use std::collections::HashSet;
use std::time::Instant;

use sqlx::Postgres;
use sqlx::pool::PoolConnection;

use super::PgStore;
use crate::model::{NewJob, Summary};
use crate::store::{COMMIT_EVERY, CountRow, ExportRow, StoreError, TargetKind};
use crate::time::now_ms;

impl PgStore {
    /// See [`crate::store::Store::import_session`]. A dry run keeps the rows it counted in
    /// memory (a temporary table would tie it to one pooled connection for nothing).
    pub async fn import_session(&self, dry_run: bool) -> Result<ImportSession, StoreError> {
        let mut conn = self.pool.acquire().await?;
        if !dry_run {
            conn.close_on_drop();
        }
        Ok(ImportSession {
            conn,
            dry_run,
            in_tx: false,
            began: Instant::now(),
            progress: None,
            counted: HashSet::new(),
        })
    }

    /// Counts by account, state and outcome.
    pub async fn job_counts(&self) -> Result<Vec<CountRow>, StoreError> {
        self.recount_jobs().await
    }

    /// The counts, from the jobs themselves (the same as [`PgStore::job_counts`]: PostgreSQL
    /// keeps no separate counts to drift).
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

    /// See [`crate::store::Store::export_rows`].
    pub async fn export_rows(&self, outcomes: &[String]) -> Result<Vec<ExportRow>, StoreError> {
        let mut rows = Vec::new();
        self.export_each(outcomes, |r| {
            rows.push(r);
            Ok::<(), StoreError>(())
        })
        .await?;
        Ok(rows)
    }

    /// See [`crate::store::Store::export_each`].
    pub async fn export_each<E: From<StoreError>>(
        &self,
        outcomes: &[String],
        mut each: impl FnMut(ExportRow) -> Result<(), E>,
    ) -> Result<(), E> {
        use futures_util::TryStreamExt;
        let mut rows = sqlx::query_as::<_, ExportRow>(
            "select a.name as account, j.target, j.target_kind, j.state, j.outcome, j.attempts,
                    j.last_status, j.last_code, j.last_message, j.created_at, j.finished_at, j.confirmed_at
             from jobs j join accounts a on a.id = j.account_id
             where cardinality($1::text[]) = 0 or j.outcome = any($1) or j.state = any($1)
             order by j.id",
        )
        .bind(outcomes)
        .fetch(&self.pool);
        while let Some(row) = rows.try_next().await.map_err(|e| E::from(e.into()))? {
            each(row)?;
        }
        Ok(())
    }

    /// See [`crate::store::Store::failure_reasons`].
    pub async fn failure_reasons(&self, limit: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "select outcome, last_message, count(*) as n from jobs
             where state = 'done' and outcome in ('failed', 'refused')
             group by outcome, last_message order by n desc, outcome limit $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// See [`crate::store::Store::requeue`].
    pub async fn requeue(&self, outcomes: &[String], account_id: Option<i64>) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "update jobs set state = 'queued', outcome = null, failures = 0, not_before = 0, finished_at = null,
                    check_at = null, confirmed_at = null, resent = 0
             where state = 'done' and outcome = any($1) and ($2::bigint is null or account_id = $2)",
        )
        .bind(outcomes)
        .bind(account_id)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// See [`crate::store::Store::queued_of`].
    pub async fn queued_of(&self, account_id: i64) -> Result<(u64, u64), StoreError> {
        let (fresh, tried): (i64, i64) = sqlx::query_as(
            "select count(*) filter (where attempts = 0), count(*) filter (where attempts > 0)
             from jobs where account_id = $1 and state = 'queued'",
        )
        .bind(account_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((fresh as u64, tried as u64))
    }

    /// See [`crate::store::Store::drop_unsent`].
    pub async fn drop_unsent(&self, account_id: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("delete from jobs where account_id = $1 and state = 'queued' and attempts = 0")
            .bind(account_id)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// See [`crate::store::Store::queued_counts`].
    pub async fn queued_counts(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as("select account_id, count(*) from jobs where state = 'queued' group by account_id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// See [`crate::store::Store::next_ready_at`].
    pub async fn next_ready_at(&self, account_id: i64) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "select min(not_before) from jobs where account_id = $1 and state = 'queued' and outcome is null",
        )
        .bind(account_id)
        .fetch_one(&self.pool)
        .await?)
    }
}

/// One import's writes on PostgreSQL (see [`crate::store::Store::import_session`]).
pub struct ImportSession {
    conn: PoolConnection<Postgres>,
    dry_run: bool,
    in_tx: bool,
    began: Instant,
    /// The import's row and its counts so far, written with every commit.
    progress: Option<(i64, Summary)>,
    /// A dry run's new jobs so far: (account, kind, target without case).
    counted: HashSet<(i64, TargetKind, String)>,
}

impl ImportSession {
    async fn ensure_tx(&mut self) -> Result<(), StoreError> {
        if !self.in_tx {
            sqlx::query("begin").execute(&mut *self.conn).await?;
            self.in_tx = true;
            self.began = Instant::now();
        }
        Ok(())
    }

    /// Commits what it has.
    pub async fn pause(&mut self) -> Result<(), StoreError> {
        if self.in_tx {
            if let Some((id, s)) = &self.progress {
                write_counts(&mut self.conn, *id, s).await?;
            }
            sqlx::query("commit").execute(&mut *self.conn).await?;
            self.in_tx = false;
        }
        Ok(())
    }

    /// The import's row (0 for a dry run).
    pub async fn begin_import(&mut self, source: &str, content_hash: &str) -> Result<i64, StoreError> {
        if self.dry_run {
            return Ok(0);
        }
        self.ensure_tx().await?;
        Ok(sqlx::query_scalar(
            "insert into imports (source, content_hash, started_at) values ($1, $2, $3) returning id",
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

    /// Inserts a batch (one statement of arrays); returns how many were new.
    pub async fn insert_jobs(&mut self, import_id: i64, jobs: &[NewJob]) -> Result<u64, StoreError> {
        if self.dry_run {
            return self.dry_insert(jobs).await;
        }
        self.ensure_tx().await?;
        let accounts: Vec<i64> = jobs.iter().map(|j| j.account_id).collect();
        let kinds: Vec<TargetKind> = jobs.iter().map(|j| j.kind).collect();
        let targets: Vec<&str> = jobs.iter().map(|j| j.target.as_str()).collect();
        let notify: Vec<i64> = jobs.iter().map(|j| j.notify as i64).collect();
        Ok(sqlx::query(
            "insert into jobs (account_id, target_kind, target, notify, import_id, created_at)
             select a, k, t, n, $5, $6 from unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[]) as v(a, k, t, n)
             on conflict (account_id, target_kind, target) do nothing",
        )
        .bind(&accounts)
        .bind(&kinds)
        .bind(&targets)
        .bind(&notify)
        .bind(import_id)
        .bind(now_ms())
        .execute(&mut *self.conn)
        .await?
        .rows_affected())
    }

    /// A dry run's batch: the jobs new to the queue and to this dry run.
    async fn dry_insert(&mut self, jobs: &[NewJob]) -> Result<u64, StoreError> {
        let accounts: Vec<i64> = jobs.iter().map(|j| j.account_id).collect();
        let kinds: Vec<TargetKind> = jobs.iter().map(|j| j.kind).collect();
        let targets: Vec<&str> = jobs.iter().map(|j| j.target.as_str()).collect();
        let known: Vec<i32> = sqlx::query_scalar(
            "select (v.i - 1)::int from unnest($1::bigint[], $2::text[], $3::text[]) with ordinality as v(a, k, t, i)
             where exists (select 1 from jobs j where j.account_id = v.a and j.target_kind = v.k
                           and j.target = v.t collate nocase)",
        )
        .bind(&accounts)
        .bind(&kinds)
        .bind(&targets)
        .fetch_all(&mut *self.conn)
        .await?;
        let known: HashSet<usize> = known.into_iter().map(|i| i as usize).collect();
        let mut added = 0;
        for (i, j) in jobs.iter().enumerate() {
            if !known.contains(&i) && self.counted.insert((j.account_id, j.kind, j.target.to_ascii_lowercase())) {
                added += 1;
            }
        }
        Ok(added)
    }

    /// Commits when the open transaction is [`COMMIT_EVERY`] old.
    pub async fn commit_if_due(&mut self) -> Result<(), StoreError> {
        if self.in_tx && self.began.elapsed() >= COMMIT_EVERY {
            self.pause().await?;
        }
        Ok(())
    }

    /// Records the import's counts and commits.
    pub async fn finish(mut self, import_id: i64, s: &Summary) -> Result<(), StoreError> {
        if self.dry_run {
            return Ok(());
        }
        self.ensure_tx().await?;
        sqlx::query("update imports set finished_at = $2 where id = $1")
            .bind(import_id)
            .bind(now_ms())
            .execute(&mut *self.conn)
            .await?;
        write_counts(&mut self.conn, import_id, s).await?;
        sqlx::query("commit").execute(&mut *self.conn).await?;
        Ok(())
    }

    /// Keeps what was inserted and records the import as failed, with `why`.
    pub async fn fail(mut self, import_id: i64, s: &Summary, why: &str) -> Result<(), StoreError> {
        if self.dry_run {
            return Ok(());
        }
        self.ensure_tx().await?;
        sqlx::query("update imports set error = $2 where id = $1")
            .bind(import_id)
            .bind(why)
            .execute(&mut *self.conn)
            .await?;
        self.finish(import_id, s).await
    }
}

/// An import's counts on its row.
async fn write_counts(conn: &mut sqlx::PgConnection, id: i64, s: &Summary) -> Result<(), StoreError> {
    sqlx::query("update imports set rows_read = $2, added = $3, duplicates = $4, rejected = $5 where id = $1")
        .bind(id)
        .bind(s.rows_read as i64)
        .bind(s.added as i64)
        .bind(s.duplicates as i64)
        .bind(s.rejected as i64)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
