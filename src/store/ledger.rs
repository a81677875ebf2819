//! The `attempts` table is the rate-limit ledger. Every request is an attempt row committed before
//! it is sent (phase 1, [`Store::claim`]); its answer is written after (phase 2, [`Store::record`]),
//! guarded by the attempt id. "Used in the window" is always a count over this table.

use super::{Store, StoreError, TargetKind, now_ms};

/// A job claimed for one request: the attempt row exists and counts against both budgets.
#[derive(Debug, Clone)]
pub struct Claim {
    pub attempt_id: i64,
    pub job_id: i64,
    pub account_id: i64,
    pub kind: TargetKind,
    pub target: String,
    pub notify: bool,
    pub sent_at: i64,
    /// Transient failures this job already had.
    pub failures: i64,
}

/// What [`Store::claim`] found.
#[derive(Debug)]
pub enum ClaimResult {
    Claimed(Claim),
    /// The account's window is full in the ledger.
    UserFull,
    /// The app's window is full in the ledger.
    AppFull,
    /// The account has no job that may be sent now.
    NoJob,
    /// The account is paused until this time (recorded by an answer the caller has not seen yet).
    Paused {
        until: i64,
        reason: String,
    },
    /// The account is stopped.
    Stopped(String),
}

/// What happens to the job after an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordJob {
    /// Finished with this outcome.
    Done(&'static str),
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
    pub result: &'static str,
    pub http_status: Option<i64>,
    pub error_code: Option<i64>,
    pub message: String,
    pub body: String,
    pub rl_limit: Option<i64>,
    pub rl_remaining: Option<i64>,
    pub rl_reset: Option<i64>,
    pub job: RecordJob,
    pub account: Option<RecordAccount>,
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
    pub result: Option<String>,
    pub http_status: Option<i64>,
    pub error_code: Option<i64>,
    pub rl_reset: Option<i64>,
}

/// What start-up recovery found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Attempts a crash left without an answer: now "unknown", still counted.
    pub unknown_attempts: u64,
    /// Jobs that were in flight: back in the queue, to be sent again.
    pub requeued_jobs: u64,
}

impl Store {
    /// Start-up: attempts without an answer become "unknown" (they still count against the
    /// budget: the request may have reached X), and their jobs go back to the queue.
    pub async fn recover(&self) -> Result<Recovered, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin_with("begin immediate").await?;
        let unknown = sqlx::query("update attempts set finished_at = ?1, result = 'unknown' where finished_at is null")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let requeued = sqlx::query("update jobs set state = 'queued', attempt_id = null where state = 'in_flight'")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Recovered { unknown_attempts: unknown, requeued_jobs: requeued })
    }

    /// Every attempt sent after `since`, as (account id, sent_at), oldest first: the scheduler's
    /// starting state after a restart.
    pub async fn sends_since(&self, since: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as("select account_id, sent_at from attempts where sent_at > ?1 order by sent_at")
            .bind(since)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Each account's most recent send, whatever its age (spread pacing spaces from it).
    pub async fn last_sends(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as("select account_id, max(sent_at) from attempts group by account_id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Requests counted in the window ending now, for one account (or the app with `None`).
    pub async fn used_in_window(&self, account_id: Option<i64>, since: i64) -> Result<i64, StoreError> {
        let n = match account_id {
            Some(id) => {
                sqlx::query_scalar("select count(*) from attempts where account_id = ?1 and sent_at > ?2")
                    .bind(id)
                    .bind(since)
                    .fetch_one(&self.pool)
                    .await?
            }
            None => {
                sqlx::query_scalar("select count(*) from attempts where sent_at > ?1")
                    .bind(since)
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        Ok(n)
    }

    /// Phase 1, one write transaction: check the account is neither paused nor stopped, check
    /// both budgets in the ledger, pick the account's next job, insert its attempt and mark it in
    /// flight. `window_start` is `now - window` (with
    /// margin). A budget is never consumed unless both have room.
    pub async fn claim(
        &self,
        account_id: i64,
        now: i64,
        window_start: i64,
        per_user: u32,
        per_app: u32,
    ) -> Result<ClaimResult, StoreError> {
        // IMMEDIATE takes the write lock up front, so two processes cannot both read "room left"
        // and both insert.
        let mut tx = self.pool.begin_with("begin immediate").await?;
        let (paused_until, pause_reason, stopped): (i64, String, String) =
            sqlx::query_as("select paused_until, pause_reason, stopped_reason from accounts where id = ?1")
                .bind(account_id)
                .fetch_one(&mut *tx)
                .await?;
        if !stopped.is_empty() {
            return Ok(ClaimResult::Stopped(stopped));
        }
        if paused_until > now {
            return Ok(ClaimResult::Paused { until: paused_until, reason: pause_reason });
        }
        let used_user: i64 = sqlx::query_scalar(
            "select count(*) from (select 1 from attempts where account_id = ?1 and sent_at > ?2 limit ?3)",
        )
        .bind(account_id)
        .bind(window_start)
        .bind(per_user as i64)
        .fetch_one(&mut *tx)
        .await?;
        if used_user >= per_user as i64 {
            return Ok(ClaimResult::UserFull);
        }
        let used_app: i64 =
            sqlx::query_scalar("select count(*) from (select 1 from attempts where sent_at > ?1 limit ?2)")
                .bind(window_start)
                .bind(per_app as i64)
                .fetch_one(&mut *tx)
                .await?;
        if used_app >= per_app as i64 {
            return Ok(ClaimResult::AppFull);
        }
        let job: Option<(i64, String, String, i64, i64)> = sqlx::query_as(
            "select id, target_kind, target, notify, failures from jobs
             where account_id = ?1 and state = 'queued' and outcome is null and not_before <= ?2
             order by id limit 1",
        )
        .bind(account_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((job_id, kind, target, notify, failures)) = job else {
            return Ok(ClaimResult::NoJob);
        };
        let attempt_id: i64 =
            sqlx::query_scalar("insert into attempts (job_id, account_id, sent_at) values (?1, ?2, ?3) returning id")
                .bind(job_id)
                .bind(account_id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query("update jobs set state = 'in_flight', attempts = attempts + 1, attempt_id = ?2 where id = ?1")
            .bind(job_id)
            .bind(attempt_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ClaimResult::Claimed(Claim {
            attempt_id,
            job_id,
            account_id,
            kind: TargetKind::parse(&kind),
            target,
            notify: notify != 0,
            sent_at: now,
            failures,
        }))
    }

    /// Phase 2, one transaction: the answer on the attempt, the job's next state, the account's
    /// pause or stop. Guarded by the attempt id: a late or repeated write changes nothing and
    /// returns [`StoreError::Stale`].
    pub async fn record(&self, r: &Record) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("begin immediate").await?;
        // Taken under the write lock: finished_at is when the answer became known to every
        // claim, not when this task started waiting for a connection.
        let now = now_ms();
        let changed = sqlx::query(
            "update attempts set finished_at = ?2, result = ?3, http_status = ?4, error_code = ?5,
                    message = ?6, body = ?7, rl_limit = ?8, rl_remaining = ?9, rl_reset = ?10
             where id = ?1 and finished_at is null",
        )
        .bind(r.attempt_id)
        .bind(now)
        .bind(r.result)
        .bind(r.http_status)
        .bind(r.error_code)
        .bind(&r.message)
        .bind(&r.body)
        .bind(r.rl_limit)
        .bind(r.rl_remaining)
        .bind(r.rl_reset)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(StoreError::Stale(format!("attempt {} already has an outcome", r.attempt_id)));
        }
        let job_sql = match r.job {
            RecordJob::Done(_) => {
                "update jobs set state = 'done', outcome = ?3, finished_at = ?4, attempt_id = null,
                        failures = failures + ?6, last_status = ?7, last_code = ?8, last_message = ?9
                 where id = ?1 and attempt_id = ?2"
            }
            RecordJob::Requeue { .. } => {
                "update jobs set state = 'queued', not_before = ?5, attempt_id = null,
                        failures = failures + ?6, last_status = ?7, last_code = ?8, last_message = ?9
                 where id = ?1 and attempt_id = ?2"
            }
        };
        let (outcome, not_before, failure) = match r.job {
            RecordJob::Done(o) => (Some(o), 0, o == "failed"),
            RecordJob::Requeue { not_before, failure } => (None, not_before, failure),
        };
        let changed = sqlx::query(job_sql)
            .bind(r.job_id)
            .bind(r.attempt_id)
            .bind(outcome)
            .bind(now)
            .bind(not_before)
            .bind(failure as i64)
            .bind(r.http_status)
            .bind(r.error_code)
            .bind(&r.message)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed != 1 {
            return Err(StoreError::Stale(format!("job {} is no longer on attempt {}", r.job_id, r.attempt_id)));
        }
        match &r.account {
            None => {}
            Some(RecordAccount::Pause { until, reason, pace_factor }) => {
                sqlx::query(
                    "update accounts set paused_until = max(paused_until, ?2), pause_reason = ?3,
                            pace_factor = coalesce(?4, pace_factor)
                     where id = ?1",
                )
                .bind(r.account_id)
                .bind(until)
                .bind(reason)
                .bind(pace_factor)
                .execute(&mut *tx)
                .await?;
            }
            Some(RecordAccount::Stop { reason }) => {
                sqlx::query("update accounts set stopped_reason = ?2 where id = ?1")
                    .bind(r.account_id)
                    .bind(reason)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Attempts still without an answer (in flight, or left by a crash before recovery).
    pub async fn open_attempts(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("select count(*) from attempts where finished_at is null").fetch_one(&self.pool).await?)
    }

    /// Every attempt in order, for audits and tests.
    pub async fn attempt_log(&self) -> Result<Vec<AttemptRow>, StoreError> {
        Ok(sqlx::query_as(
            "select t.id, t.job_id, a.name as account, j.target, t.sent_at, t.finished_at, t.result,
                    t.http_status, t.error_code, t.rl_reset
             from attempts t join accounts a on a.id = t.account_id join jobs j on j.id = t.job_id
             order by t.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Attempts by result, for status and tests.
    pub async fn attempt_counts(&self) -> Result<Vec<(Option<String>, i64)>, StoreError> {
        Ok(sqlx::query_as("select result, count(*) from attempts group by result order by result")
            .fetch_all(&self.pool)
            .await?)
    }
}
