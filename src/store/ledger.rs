//! The `attempts` table is the rate-limit ledger. Every request is an attempt row committed before
//! it is sent (phase 1, [`Store::claim`]); its answer is written after (phase 2, [`Store::record`]),
//! guarded by the attempt id. "Used in the window" is always a count over this table.

use sqlx::{QueryBuilder, Sqlite};

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
    /// Jobs claimed, each with its attempt row. `foreign` is true when the ledger held attempts
    /// the caller's mirror did not know of (another process): the caller should reload it.
    Claimed { claims: Vec<Claim>, foreign: bool },
    /// The account's window is full in the ledger.
    UserFull,
    /// The app's window is full in the ledger.
    AppFull,
    /// The account has no job that may be sent now.
    NoJob,
    /// The account is paused until this time (recorded by an answer the caller has not seen yet).
    Paused { until: i64, reason: String },
    /// The account is stopped.
    Stopped(String),
}

/// The window as the caller's mirror of the ledger sees it, for [`Store::claim`].
#[derive(Debug, Clone, Copy)]
pub struct WindowView {
    /// `now - window`: attempts sent after this count.
    pub start: i64,
    pub per_user: u32,
    pub per_app: u32,
    /// The newest attempt id the mirror includes, and the counts it gives for the account and
    /// the app. Used only when the ledger's newest id is this one: then nobody else has written
    /// to the ledger and the mirror is exact; otherwise the ledger is counted.
    pub known_max_id: i64,
    pub user_used: usize,
    pub app_used: usize,
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

    /// The newest attempt id (0 for an empty ledger): the mirror's starting watermark.
    pub async fn max_attempt_id(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("select coalesce(max(id), 0) from attempts").fetch_one(&self.pool).await?)
    }

    /// Phase 1, one write transaction: check the account is neither paused nor stopped, check
    /// both budgets against the ledger, take up to `want` of the account's next jobs (fewer if
    /// either window has less room), insert their attempts and mark them in flight. A budget is
    /// never consumed unless both have room.
    pub async fn claim(
        &self,
        account_id: i64,
        now: i64,
        w: WindowView,
        want: usize,
    ) -> Result<ClaimResult, StoreError> {
        // IMMEDIATE takes the write lock up front, so two processes cannot both read "room left"
        // and both insert.
        let mut tx = self.pool.begin_with("begin immediate").await?;
        // One look at the account (paused? stopped?) and at the ledger's newest id: the same id
        // as the mirror's means the mirror's counts are the ledger's counts (every attempt is
        // inserted through here and mirrored at once).
        let (paused_until, pause_reason, stopped, max_id): (i64, String, String, i64) = sqlx::query_as(
            "select paused_until, pause_reason, stopped_reason, (select coalesce(max(id), 0) from attempts)
             from accounts where id = ?1",
        )
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await?;
        if !stopped.is_empty() {
            return Ok(ClaimResult::Stopped(stopped));
        }
        if paused_until > now {
            return Ok(ClaimResult::Paused { until: paused_until, reason: pause_reason });
        }
        let foreign = max_id != w.known_max_id;
        let (used_user, used_app) = if foreign {
            let user: i64 = sqlx::query_scalar(
                "select count(*) from (select 1 from attempts where account_id = ?1 and sent_at > ?2 limit ?3)",
            )
            .bind(account_id)
            .bind(w.start)
            .bind(w.per_user as i64)
            .fetch_one(&mut *tx)
            .await?;
            let app: i64 =
                sqlx::query_scalar("select count(*) from (select 1 from attempts where sent_at > ?1 limit ?2)")
                    .bind(w.start)
                    .bind(w.per_app as i64)
                    .fetch_one(&mut *tx)
                    .await?;
            (user as usize, app as usize)
        } else {
            (w.user_used, w.app_used)
        };
        if used_user >= w.per_user as usize {
            return Ok(ClaimResult::UserFull);
        }
        if used_app >= w.per_app as usize {
            return Ok(ClaimResult::AppFull);
        }
        let room = (w.per_user as usize - used_user).min(w.per_app as usize - used_app).min(want.max(1));
        // The attempts first, for the account's next jobs in import order...
        let inserted = sqlx::query(
            "insert into attempts (job_id, account_id, sent_at)
             select id, account_id, ?2 from jobs
             where account_id = ?1 and state = 'queued' and outcome is null and not_before <= ?2
             order by id limit ?3",
        )
        .bind(account_id)
        .bind(now)
        .bind(room as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(ClaimResult::NoJob);
        }
        // ...then their jobs in flight, on those attempts (the ones newer than the watermark
        // read above, in this same transaction).
        let rows: Vec<(i64, String, String, i64, i64, i64)> = sqlx::query_as(
            "update jobs set state = 'in_flight', attempts = attempts + 1, attempt_id = a.id
             from attempts a
             where a.id > ?1 and a.job_id = jobs.id
             returning id, target_kind, target, notify, failures, attempt_id",
        )
        .bind(max_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut claims: Vec<Claim> = rows
            .into_iter()
            .map(|(job_id, kind, target, notify, failures, attempt_id)| Claim {
                attempt_id,
                job_id,
                account_id,
                kind: TargetKind::parse(&kind),
                target,
                notify: notify != 0,
                sent_at: now,
                failures,
            })
            .collect();
        claims.sort_by_key(|c| c.attempt_id);
        Ok(ClaimResult::Claimed { claims, foreign })
    }

    /// Phase 2 for many answers, in one transaction: each answer on its attempt, each job's next
    /// state, any account's pause or stop. Guarded by the attempt id: an attempt that already
    /// has an answer (a late or repeated write) changes nothing, and its entry in the result is
    /// `false`.
    pub async fn record_batch(&self, records: &[Record]) -> Result<Vec<bool>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin_with("begin immediate").await?;
        // Taken under the write lock: finished_at is when the answers became known to every
        // claim, not when they started waiting.
        let now = now_ms();
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("update attempts set finished_at = ");
        qb.push_bind(now);
        qb.push(
            ", result = v.column2, http_status = v.column3, error_code = v.column4, message = v.column5,
               body = v.column6, rl_limit = v.column7, rl_remaining = v.column8, rl_reset = v.column9
             from (",
        );
        qb.push_values(records, |mut b, r| {
            b.push_bind(r.attempt_id)
                .push_bind(r.result)
                .push_bind(r.http_status)
                .push_bind(r.error_code)
                .push_bind(r.message.clone())
                .push_bind(r.body.clone())
                .push_bind(r.rl_limit)
                .push_bind(r.rl_remaining)
                .push_bind(r.rl_reset);
        });
        qb.push(") as v where attempts.id = v.column1 and attempts.finished_at is null returning attempts.id");
        let fresh: std::collections::HashSet<i64> =
            qb.build_query_scalar().fetch_all(&mut *tx).await?.into_iter().collect();
        let live: Vec<&Record> = records.iter().filter(|r| fresh.contains(&r.attempt_id)).collect();
        if !live.is_empty() {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "update jobs set state = v.column3, outcome = v.column4, not_before = v.column5,
                        failures = failures + v.column6, last_status = v.column7, last_code = v.column8,
                        last_message = v.column9, attempt_id = null,
                        finished_at = case when v.column3 = 'done' then ",
            );
            qb.push_bind(now);
            qb.push(" else finished_at end from (");
            qb.push_values(&live, |mut b, r| {
                let (state, outcome, not_before, failure) = match r.job {
                    RecordJob::Done(o) => ("done", Some(o), 0, o == "failed"),
                    RecordJob::Requeue { not_before, failure } => ("queued", None, not_before, failure),
                };
                b.push_bind(r.job_id)
                    .push_bind(r.attempt_id)
                    .push_bind(state)
                    .push_bind(outcome)
                    .push_bind(not_before)
                    .push_bind(failure as i64)
                    .push_bind(r.http_status)
                    .push_bind(r.error_code)
                    .push_bind(r.message.clone());
            });
            qb.push(") as v where jobs.id = v.column1 and jobs.attempt_id = v.column2");
            let changed = qb.build().execute(&mut *tx).await?.rows_affected();
            if changed != live.len() as u64 {
                // An open attempt whose job is on another attempt: the ledger is inconsistent.
                return Err(StoreError::Stale(format!(
                    "{} of {} jobs were not on their attempt",
                    live.len() as u64 - changed,
                    live.len()
                )));
            }
        }
        for r in &live {
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
        }
        tx.commit().await?;
        Ok(records.iter().map(|r| fresh.contains(&r.attempt_id)).collect())
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
}
