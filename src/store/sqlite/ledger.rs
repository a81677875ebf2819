//! The ledger in SQLite. The `attempts` table is the rate-limit ledger. Every request is an attempt row committed before
//! it is sent (phase 1, [`SqliteStore::claim`]); its answer is written after (phase 2, [`SqliteStore::record`]),
//! guarded by the attempt id. "Used in the window" is always a count over this table, taken in
//! the claim's own transaction: these two methods are the only SQL for those transitions.

use std::collections::HashSet;

use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite, SqliteConnection};

use super::SqliteStore;
use crate::model::{Outcome, TargetKind};
use crate::store::{
    Ask, AttemptRow, Budget, Claim, ClaimResult, LedgerSnapshot, Record, RecordAccount, RecordJob, Recovered,
    StoreError, Written,
};
use crate::time::Clock;

/// Answers written per statement at most (10 bound values each, well inside SQLite's 32,766).
pub const RECORD_BATCH: usize = 256;

/// A claimed job as the claim reads it: job id, target kind, target, notify, failures, attempt id.
type ClaimedRow = (i64, TargetKind, String, i64, i64, i64, Option<String>);

impl SqliteStore {
    /// Start-up: attempts without an answer become "unknown" (they still count against the
    /// budget: the request may have reached X), and their jobs go back to the queue.
    pub async fn recover(&self, clock: &Clock) -> Result<Recovered, StoreError> {
        let mut tx = self.write_tx().await?;
        let now = clock.now_ms();
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

    /// What the scheduler starts from: the accounts, each one's last send, the sends after
    /// `since`, and the queued jobs per account.
    pub async fn ledger_snapshot(&self, since: i64) -> Result<LedgerSnapshot, StoreError> {
        Ok(LedgerSnapshot {
            accounts: self.accounts().await?,
            last_sends: self.last_sends().await?,
            sends: self.sends_since(since).await?,
            queued: self.queued_counts().await?,
        })
    }

    /// Each account's most recent send, whatever its age (spread pacing spaces from it).
    pub async fn last_sends(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as("select account_id, max(sent_at) from attempts group by account_id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Phase 1, one write transaction: lock the budgets, check the account is neither paused nor
    /// stopped, count every window of both scopes in the ledger, take up to `ask.want` of the
    /// account's next jobs (fewer if any window has less room), insert their attempts sent at
    /// `now`, and put the jobs in flight on them. Nothing is consumed unless every window has
    /// room.
    ///
    /// The lock is on everything the transaction counts: SQLite's `begin immediate` takes the
    /// database's write lock before the first read (see [`SqliteStore::write_tx`]), so no other claim,
    /// in this process or another, can count the same rows and insert beside this one. An engine
    /// with row locks takes the account's row and then the app's, in that order, before counting.
    ///
    /// "Now" is read from `clock` once the lock is held: a claim that waited for another
    /// writer's lock is stamped when it could go, not when it asked.
    pub async fn claim(&self, clock: &Clock, ask: Ask<'_>) -> Result<ClaimResult, StoreError> {
        let mut tx = self.write_tx().await?;
        let claimed = claim_in(&mut tx, clock.now_ms(), ask).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Phase 2 for up to [`RECORD_BATCH`] answers, in one transaction, at `clock`'s time once the
    /// lock is held:
    /// each answer on its attempt, each job's next state, any account's pause or stop. Guarded
    /// by the attempt id: an attempt that already has an answer changes nothing and is reported
    /// [`Written::Late`]; a job that is not on its (open) attempt is an error, and nothing is
    /// written.
    pub async fn record(&self, records: &[Record], clock: &Clock) -> Result<Vec<Written>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        let written = record_in(&mut tx, records, clock.now_ms()).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// [`SqliteStore::record`] then [`SqliteStore::claim`] in one transaction, at `clock`'s time once the
    /// lock is held: the same statements, with one lock, one commit and one sync for both. An
    /// answer recorded here that pauses or stops its account already holds back this claim.
    pub async fn record_and_claim(
        &self,
        records: &[Record],
        clock: &Clock,
        ask: Ask<'_>,
    ) -> Result<(Vec<Written>, ClaimResult), StoreError> {
        let mut tx = self.write_tx().await?;
        let now = clock.now_ms();
        let written = record_in(&mut tx, records, now).await?;
        let claimed = claim_in(&mut tx, now, ask).await?;
        tx.commit().await?;
        Ok((written, claimed))
    }

    /// Attempts still without an answer (in flight, or left by a crash before recovery).
    pub async fn open_attempts(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("select count(*) from attempts where finished_at is null").fetch_one(&self.pool).await?)
    }

    /// Every attempt in order, for audits and tests.
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

/// The job's new `state`, `outcome` and `not_before` after `job`, and whether it counts a failure.
fn job_columns(job: &RecordJob) -> (&'static str, Option<Outcome>, i64, bool) {
    match *job {
        RecordJob::Done(o) => ("done", Some(o), 0, o == Outcome::Failed),
        RecordJob::Requeue { not_before, failure } => ("queued", None, not_before, failure),
    }
}

/// SQL for the number of attempts sent after a time (the parameter `start`, in ms, e.g. `?6`),
/// of one account (`account`, e.g. `?1`) or of the app: a window's use. Read from the
/// per-minute tallies (`account_sends`, `app_sends`, kept by a trigger on every attempt) for the
/// minutes after `start`'s, and from the attempts indexes for the rest of `start`'s own minute:
/// one row per minute of the window and at most a minute of requests, where counting the
/// attempts alone reads every request in the window. Exact at any time: the two parts split
/// the attempts after `start` at a minute's boundary, which is `sent_at / 60000` here and in the
/// trigger (migration 5) alike: the exactness test fails if the two ever differ.
fn sent_after(account: Option<&str>, start: &str) -> String {
    match account {
        Some(a) => format!(
            "((select coalesce(sum(n), 0) from account_sends where account_id = {a} and minute > {start} / 60000) \
             + (select count(*) from attempts where account_id = {a} and sent_at > {start} \
                and sent_at < ({start} / 60000 + 1) * 60000))"
        ),
        None => format!(
            "((select coalesce(sum(n), 0) from app_sends where minute > {start} / 60000) \
             + (select count(*) from attempts where sent_at > {start} and sent_at < ({start} / 60000 + 1) * 60000))"
        ),
    }
}

/// Every window of `budget` as SQL terms `(limit, use)`, the account's first, numbered from
/// parameter `?first` on (a limit and a window's start each), with the values to bind in order.
fn window_terms(budget: &Budget, now: i64, first: usize) -> (Vec<(String, String)>, Vec<i64>) {
    let mut terms = Vec::new();
    let mut binds = Vec::new();
    let scopes = [(Some("?1"), &budget.user), (None, &budget.app)];
    for (account, quotas) in scopes {
        for q in quotas.iter() {
            let (limit, start) = (first + binds.len(), first + binds.len() + 1);
            terms.push((format!("?{limit}"), sent_after(account, &format!("?{start}"))));
            binds.push(i64::from(q.limit));
            binds.push(now - q.window_ms);
        }
    }
    (terms, binds)
}

/// The statements of [`SqliteStore::claim`], in the caller's write transaction.
async fn claim_in(conn: &mut SqliteConnection, now: i64, ask: Ask<'_>) -> Result<ClaimResult, StoreError> {
    let Ask { account_id, budget, want, ids_only } = ask;
    // The attempts for the account's next jobs in import order (with `ids_only`, those named by
    // an id or by a name resolved to one), as many as every window has room for, none while the
    // account is paused or stopped...
    let (terms, binds) = window_terms(budget, now, 5);
    let room: String = terms.iter().map(|(limit, used)| format!(", {limit} - {used}")).collect();
    let sql = format!(
        "insert into attempts (job_id, account_id, sent_at)
         select id, account_id, ?2 from jobs
         where account_id = ?1 and state = 'queued' and outcome is null and not_before <= ?2
           and (select stopped_reason = '' and paused_until <= ?2 from accounts where id = ?1)
           and (?4 = 0 or target_kind = 'user_id'
                or exists (select 1 from users u where u.username = jobs.target and u.state = 'found'))
         order by id
         limit max(0, min(?3, ?3{room}))"
    );
    // Built from this file's text and parameter numbers alone: every value is bound.
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(account_id).bind(now).bind(want.max(1) as i64).bind(ids_only);
    for b in &binds {
        q = q.bind(*b);
    }
    let inserted = q.execute(&mut *conn).await?;
    let n = inserted.rows_affected() as i64;
    if n == 0 {
        return why_none(conn, account_id, now, budget).await;
    }
    // One statement under the write lock: its rows took the ids up to the last one, in a row.
    let (first, last) = (inserted.last_insert_rowid() - n + 1, inserted.last_insert_rowid());
    // ...then their jobs in flight, each on its attempt, only if still queued (this
    // transaction inserted every attempt from `first` to `last`: it holds the write lock).
    let rows: Vec<ClaimedRow> = sqlx::query_as(
        "update jobs set state = 'in_flight', attempts = attempts + 1, attempt_id = a.id
         from attempts a
         where a.id between ?1 and ?2 and a.job_id = jobs.id and jobs.state = 'queued'
         returning id, target_kind, target, notify, failures, attempt_id,
                   (select user_id from users u where u.username = jobs.target and jobs.target_kind = 'screen_name'
                      and u.state = 'found')",
    )
    .bind(first)
    .bind(last)
    .fetch_all(&mut *conn)
    .await?;
    if rows.len() as i64 != n {
        return Err(StoreError::Stale(format!("{} of {n} claimed jobs left the queue", n - rows.len() as i64)));
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

/// Why [`claim_in`] inserted nothing: the account's state, then each window's count, then no
/// job ready.
async fn why_none(
    conn: &mut SqliteConnection,
    account_id: i64,
    now: i64,
    budget: &Budget,
) -> Result<ClaimResult, StoreError> {
    let (terms, binds) = window_terms(budget, now, 2);
    let full: String = terms.iter().map(|(limit, used)| format!(", {used} >= {limit}")).collect();
    let sql = format!("select paused_until, pause_reason, stopped_reason{full} from accounts where id = ?1");
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(account_id);
    for b in &binds {
        q = q.bind(*b);
    }
    let Some(row) = q.fetch_optional(&mut *conn).await? else {
        return Err(StoreError::Stale(format!("account {account_id} is not in the database")));
    };
    let (paused_until, pause_reason, stopped): (i64, String, String) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    let full: Vec<bool> = (0..terms.len()).map(|i| row.try_get(3 + i)).collect::<Result<_, _>>()?;
    let (user_full, app_full) = full.split_at(budget.user.len());
    Ok(if !stopped.is_empty() {
        ClaimResult::Stopped(stopped)
    } else if paused_until > now {
        ClaimResult::Paused { until: paused_until, reason: pause_reason }
    } else if user_full.iter().any(|&f| f) {
        ClaimResult::UserFull
    } else if app_full.iter().any(|&f| f) {
        ClaimResult::AppFull
    } else {
        ClaimResult::NoJob
    })
}

/// The statements of [`SqliteStore::record`], in the caller's transaction.
async fn record_in(conn: &mut SqliteConnection, records: &[Record], now: i64) -> Result<Vec<Written>, StoreError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    if records.len() > RECORD_BATCH {
        return Err(StoreError::Stale(format!("{} answers in one batch (at most {RECORD_BATCH})", records.len())));
    }
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
            .push_bind(r.message.as_str())
            .push_bind(r.body.as_str())
            .push_bind(r.rl_limit)
            .push_bind(r.rl_remaining)
            .push_bind(r.rl_reset);
    });
    qb.push(") as v where attempts.id = v.column1 and attempts.finished_at is null");
    let fresh = qb.build().execute(&mut *conn).await?.rows_affected();
    // Answers whose attempt already had one: only start-up recovery closes another run's open
    // attempt, and it writes `unknown`, which no answer is. (Asked only when some were skipped:
    // every row a statement returns is one more hand-off from SQLite's thread.)
    let late: HashSet<i64> = if fresh == records.len() as u64 {
        HashSet::new()
    } else {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("select id from attempts where result = 'unknown' and id in (");
        let mut ids = q.separated(", ");
        for r in records {
            ids.push_bind(r.attempt_id);
        }
        q.push(")");
        q.build_query_scalar().fetch_all(&mut *conn).await?.into_iter().collect()
    };
    let live: Vec<&Record> = records.iter().filter(|r| !late.contains(&r.attempt_id)).collect();
    if live.len() as u64 != fresh {
        return Err(StoreError::Stale(format!(
            "{} of {} answered attempts were neither open nor recovered",
            live.len() as u64 - fresh.min(live.len() as u64),
            records.len()
        )));
    }
    if !live.is_empty() {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "update jobs set state = v.column3, outcome = v.column4, not_before = v.column5,
                    failures = failures + v.column6, last_status = v.column7, last_code = v.column8,
                    last_message = v.column9, attempt_id = null,
                    check_at = case when v.column3 = 'done' then ",
        );
        qb.push_bind(now);
        qb.push(" + v.column10 end, finished_at = case when v.column3 = 'done' then ");
        qb.push_bind(now);
        qb.push(" else finished_at end from (");
        qb.push_values(&live, |mut b, r| {
            let (state, outcome, not_before, failure) = job_columns(&r.job);
            b.push_bind(r.job_id)
                .push_bind(r.attempt_id)
                .push_bind(state)
                .push_bind(outcome)
                .push_bind(not_before)
                .push_bind(failure as i64)
                .push_bind(r.http_status)
                .push_bind(r.error_code)
                .push_bind(r.message.as_str())
                .push_bind(r.check_after);
        });
        qb.push(") as v where jobs.id = v.column1 and jobs.attempt_id = v.column2 and jobs.state = 'in_flight'");
        let changed = qb.build().execute(&mut *conn).await?.rows_affected();
        if changed != live.len() as u64 {
            // An open attempt whose job is on another attempt: the ledger is inconsistent.
            return Err(StoreError::Stale(format!(
                "{} of {} answered jobs were not on their attempt",
                live.len() as u64 - changed,
                live.len()
            )));
        }
    }
    for r in &live {
        let changed = match &r.account {
            None => continue,
            Some(RecordAccount::Pause { until, reason, pace_factor }) => sqlx::query(
                "update accounts set paused_until = max(paused_until, ?2), pause_reason = ?3,
                        pace_factor = coalesce(?4, pace_factor)
                 where id = ?1",
            )
            .bind(r.account_id)
            .bind(until)
            .bind(reason)
            .bind(pace_factor)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            Some(RecordAccount::Stop { reason }) => {
                sqlx::query("update accounts set stopped_reason = ?2 where id = ?1")
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
    Ok(records.iter().map(|r| if late.contains(&r.attempt_id) { Written::Late } else { Written::Yes }).collect())
}

#[cfg(test)]
mod tests;
