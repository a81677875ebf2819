//! The ledger on PostgreSQL. As on SQLite, every request is an attempt row committed before it
//! is sent (phase 1, [`PgStore::claim`]) and answered after (phase 2, [`PgStore::record`]). What
//! differs is how the count and the insert are kept together across hosts: a plain
//! count-then-insert under READ COMMITTED let 410 through a 400 limit with 16 clients. A claim
//! locks its account's row, then takes the app-wide transaction lock — in that order, in every
//! claim, so no two wait on each other — and only then reads the database's clock, counts the
//! windows and inserts. Jobs are taken `for update skip locked`, so no two hosts take the same.

use sqlx::PgConnection;

use super::{APP_LOCK, PgStore, db_now};
use crate::model::Outcome;
use crate::store::{
    Ask, AttemptRow, Claim, ClaimResult, LedgerSnapshot, Record, RecordAccount, RecordJob, Recovered, StoreError,
    TargetKind, Written,
};
use crate::time::Clock;

/// A claimed job: job id, target kind, target, notify, failures, attempt id, resolved id.
type ClaimedRow = (i64, TargetKind, String, i64, i64, i64, Option<String>);

impl PgStore {
    /// Start-up recovery, and again while a run waits on other runners' work: the open attempts
    /// of runners whose heartbeat expired (or of none: a queue moved from SQLite) become
    /// "unknown", still counted, and their jobs go back to the queue. A live runner's attempts
    /// are never touched.
    pub async fn recover(&self, clock: &Clock) -> Result<Recovered, StoreError> {
        let mut tx = self.pool.begin().await?;
        let now = db_now(&mut tx, clock).await?;
        let dead: Vec<i64> = sqlx::query_scalar(
            "update runners set ended_at = $1
             where ended_at is null and heartbeat_at + expire_ms <= (extract(epoch from clock_timestamp()) * 1000)::bigint
             returning id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let attempts: Vec<i64> = sqlx::query_scalar(
            "update attempts set finished_at = $1, result = 'unknown'
             where finished_at is null
               and (runner_id is null or runner_id in (select id from runners where ended_at is not null))
             returning id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let requeued = sqlx::query(
            "update jobs set state = 'queued', attempt_id = null where state = 'in_flight' and attempt_id = any($1)",
        )
        .bind(&attempts)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if !dead.is_empty() {
            tracing::warn!(runners = ?dead, attempts = attempts.len(), "runners stopped beating: their open requests are now unknown and their jobs queued again");
        }
        Ok(Recovered { unknown_attempts: attempts.len() as u64, requeued_jobs: requeued })
    }

    /// See [`crate::store::Store::sends_since`].
    pub async fn sends_since(&self, since: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as("select account_id, sent_at from attempts where sent_at > $1 order by sent_at")
            .bind(since)
            .fetch_all(&self.pool)
            .await?)
    }

    /// See [`crate::store::Store::ledger_snapshot`].
    pub async fn ledger_snapshot(&self, since: i64) -> Result<LedgerSnapshot, StoreError> {
        Ok(LedgerSnapshot {
            accounts: self.accounts().await?,
            last_sends: self.last_sends().await?,
            sends: self.sends_since(since).await?,
            queued: self.queued_counts().await?,
        })
    }

    /// See [`crate::store::Store::last_sends`].
    pub async fn last_sends(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as("select account_id, max(sent_at) from attempts group by account_id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Phase 1 (see the module's notes for the locks).
    pub async fn claim(&self, clock: &Clock, ask: Ask<'_>) -> Result<ClaimResult, StoreError> {
        let mut tx = self.pool.begin().await?;
        let claimed = claim_in(&mut tx, clock, ask, self.runner_id()).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Phase 2 for a batch of answers, in one transaction.
    pub async fn record(&self, records: &[Record], clock: &Clock) -> Result<Vec<Written>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let now = db_now(&mut tx, clock).await?;
        let written = record_in(&mut tx, records, now).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Phase 2 then phase 1, in one transaction.
    pub async fn record_and_claim(
        &self,
        records: &[Record],
        clock: &Clock,
        ask: Ask<'_>,
    ) -> Result<(Vec<Written>, ClaimResult), StoreError> {
        let mut tx = self.pool.begin().await?;
        let now = db_now(&mut tx, clock).await?;
        let written = record_in(&mut tx, records, now).await?;
        let claimed = claim_in(&mut tx, clock, ask, self.runner_id()).await?;
        tx.commit().await?;
        Ok((written, claimed))
    }

    /// See [`crate::store::Store::open_attempts`].
    pub async fn open_attempts(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("select count(*) from attempts where finished_at is null").fetch_one(&self.pool).await?)
    }

    /// See [`crate::store::Store::attempt_log`].
    pub async fn attempt_log(&self) -> Result<Vec<AttemptRow>, StoreError> {
        Ok(sqlx::query_as(
            "select t.id, t.job_id, a.name as account, j.target, t.sent_at, t.finished_at, t.result,
                    t.http_status, t.error_code, t.rl_reset, t.message
             from attempts t join accounts a on a.id = t.account_id join jobs j on j.id = t.job_id
             order by t.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

/// The statements of a claim, in the caller's transaction.
async fn claim_in(
    conn: &mut PgConnection,
    clock: &Clock,
    ask: Ask<'_>,
    runner: Option<i64>,
) -> Result<ClaimResult, StoreError> {
    let Ask { account_id, budget, want, ids_only } = ask;
    // The account's row first, then the app's lock: the order every claim takes them in.
    let account: Option<(i64, String, String)> =
        sqlx::query_as("select paused_until, pause_reason, stopped_reason from accounts where id = $1 for update")
            .bind(account_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((paused_until, pause_reason, stopped)) = account else {
        return Err(StoreError::Stale(format!("account {account_id} is not in the database")));
    };
    sqlx::query("select pg_advisory_xact_lock($1)").bind(APP_LOCK).execute(&mut *conn).await?;
    // The clock is read once both are held: a claim that waited is stamped when it could go.
    let now = db_now(conn, clock).await?;
    if !stopped.is_empty() {
        return Ok(ClaimResult::Stopped(stopped));
    }
    if paused_until > now {
        return Ok(ClaimResult::Paused { until: paused_until, reason: pause_reason });
    }
    let mut room = want.max(1) as i64;
    for (scope, quotas) in [(Some(account_id), &budget.user), (None, &budget.app)] {
        for q in quotas.iter() {
            let used: i64 = sqlx::query_scalar(
                "select count(*) from attempts where sent_at > $1 and ($2::bigint is null or account_id = $2)",
            )
            .bind(now - q.window_ms)
            .bind(scope)
            .fetch_one(&mut *conn)
            .await?;
            let left = i64::from(q.limit) - used;
            if left <= 0 {
                return Ok(if scope.is_some() { ClaimResult::UserFull } else { ClaimResult::AppFull });
            }
            room = room.min(left);
        }
    }
    let rows: Vec<ClaimedRow> = sqlx::query_as(
        "with picked as (
             select id from jobs
             where account_id = $1 and state = 'queued' and outcome is null and not_before <= $2
               and (not $4 or target_kind = 'user_id'
                    or exists (select 1 from users u where u.username = jobs.target and u.state = 'found'))
             order by id
             limit $3
             for update skip locked
         ), sent as (
             insert into attempts (job_id, account_id, runner_id, sent_at)
             select id, $1, $5, $2 from picked order by id
             returning id, job_id
         )
         update jobs set state = 'in_flight', attempts = jobs.attempts + 1, attempt_id = sent.id
         from sent
         where jobs.id = sent.job_id
         returning jobs.id, jobs.target_kind, jobs.target, jobs.notify, jobs.failures, jobs.attempt_id,
                   (select u.user_id from users u where u.username = jobs.target
                      and jobs.target_kind = 'screen_name' and u.state = 'found')",
    )
    .bind(account_id)
    .bind(now)
    .bind(room)
    .bind(ids_only)
    .bind(runner)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(ClaimResult::NoJob);
    }
    let mut claims: Vec<Claim> = rows
        .into_iter()
        .map(|(job_id, kind, target, notify, failures, attempt_id, resolved)| Claim {
            attempt_id,
            job_id,
            account_id,
            kind,
            target,
            resolved,
            notify: notify != 0,
            sent_at: now,
            failures,
        })
        .collect();
    claims.sort_by_key(|c| c.attempt_id);
    Ok(ClaimResult::Claimed(claims))
}

/// The job's new `state`, `outcome` and `not_before` after `job`, and whether it counts a failure.
fn job_columns(job: &RecordJob) -> (&'static str, Option<Outcome>, i64, bool) {
    match *job {
        RecordJob::Done(o) => ("done", Some(o), 0, o == Outcome::Failed),
        RecordJob::Requeue { not_before, failure } => ("queued", None, not_before, failure),
    }
}

/// The statements of a record, in the caller's transaction: one answer at a time, each guarded
/// by its attempt id (an attempt another runner's recovery closed is [`Written::Late`]).
async fn record_in(conn: &mut PgConnection, records: &[Record], now: i64) -> Result<Vec<Written>, StoreError> {
    let mut written = Vec::with_capacity(records.len());
    // Accounts are paused or stopped in id order, after every job: two hosts' answers never
    // wait on each other's account rows in opposite orders.
    let mut accounts: Vec<&Record> = Vec::new();
    for r in records {
        let fresh = sqlx::query(
            "update attempts set finished_at = $2, result = $3, http_status = $4, error_code = $5, message = $6,
                    body = $7, rl_limit = $8, rl_remaining = $9, rl_reset = $10
             where id = $1 and finished_at is null",
        )
        .bind(r.attempt_id)
        .bind(now)
        .bind(r.result)
        .bind(r.http_status)
        .bind(r.error_code)
        .bind(r.message.as_str())
        .bind(r.body.as_str())
        .bind(r.rl_limit)
        .bind(r.rl_remaining)
        .bind(r.rl_reset)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if fresh == 0 {
            let unknown: bool =
                sqlx::query_scalar("select exists (select 1 from attempts where id = $1 and result = 'unknown')")
                    .bind(r.attempt_id)
                    .fetch_one(&mut *conn)
                    .await?;
            if !unknown {
                return Err(StoreError::Stale(format!("attempt {} was neither open nor recovered", r.attempt_id)));
            }
            written.push(Written::Late);
            continue;
        }
        let (state, outcome, not_before, failure) = job_columns(&r.job);
        let changed = sqlx::query(
            "update jobs set state = $3, outcome = $4, not_before = $5, failures = failures + $6, last_status = $7,
                    last_code = $8, last_message = $9, attempt_id = null,
                    check_at = case when $3 = 'done' then $10 + $11::bigint end,
                    finished_at = case when $3 = 'done' then $10 else finished_at end
             where id = $1 and attempt_id = $2 and state = 'in_flight'",
        )
        .bind(r.job_id)
        .bind(r.attempt_id)
        .bind(state)
        .bind(outcome)
        .bind(not_before)
        .bind(failure as i64)
        .bind(r.http_status)
        .bind(r.error_code)
        .bind(r.message.as_str())
        .bind(now)
        .bind(r.check_after)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(StoreError::Stale(format!("job {} was not on its attempt {}", r.job_id, r.attempt_id)));
        }
        if r.account.is_some() {
            accounts.push(r);
        }
        written.push(Written::Yes);
    }
    accounts.sort_by_key(|r| r.account_id);
    for r in accounts {
        let changed = match &r.account {
            None => continue,
            Some(RecordAccount::Pause { until, reason, pace_factor }) => sqlx::query(
                "update accounts set paused_until = greatest(paused_until, $2), pause_reason = $3,
                        pace_factor = coalesce($4, pace_factor)
                 where id = $1",
            )
            .bind(r.account_id)
            .bind(until)
            .bind(reason)
            .bind(pace_factor)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            Some(RecordAccount::Stop { reason }) => {
                sqlx::query("update accounts set stopped_reason = $2 where id = $1")
                    .bind(r.account_id)
                    .bind(reason)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
        };
        if changed != 1 {
            return Err(StoreError::Stale(format!("account {} is not in the database", r.account_id)));
        }
    }
    Ok(written)
}
