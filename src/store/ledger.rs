//! The `attempts` table is the rate-limit ledger. Every request is an attempt row committed before
//! it is sent (phase 1, [`Store::claim`]); its answer is written after (phase 2, [`Store::record`]),
//! guarded by the attempt id. "Used in the window" is always a count over this table.

use futures_util::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::{Executor, QueryBuilder, Row, Sqlite};

use super::{Store, StoreError, now_ms};
use crate::model::{Outcome, TargetKind};

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
    /// ([`Store::turn`] only) The ledger holds attempts the caller's mirror does not know of, so
    /// nothing was claimed: claim again with [`Store::claim`], which counts the ledger.
    Foreign,
}

/// The claim half of a [`Store::turn`]: up to `room` of the account's next jobs, taken only if the
/// ledger's newest attempt is still `known_max_id` (then the caller's mirror is exact, and `room`,
/// worked out from it, fits both windows).
#[derive(Debug, Clone, Copy)]
pub struct ClaimAsk {
    pub account_id: i64,
    pub now: i64,
    pub known_max_id: i64,
    pub room: usize,
}

/// One dispatcher turn: a whole write transaction in one statement list, so one round trip to
/// SQLite's thread. Its parameters are anonymous and bound in order of appearance (the only way
/// sqlx numbers a list's parameters across its statements); see [`Store::turn`]. sqlx 0.9 runs
/// such lists for SQLite but marks the behaviour deprecated (launchbadge/sqlx#3108): the version
/// is pinned by Cargo.lock, and `a_turn_records_answers_and_claims_only_while_the_mirror_is_exact`
/// fails if an upgrade changes it. A round trip per statement ran the dispatch benchmark at about
/// half the rate (3,392 against 6,310 follows/s, before the claims ahead).
///
/// It runs inside a transaction [`Store::turn`] opens first with `begin immediate` (the write
/// lock first, so no other process can claim in between):
///
/// 1. the answers whose attempt already has one (a late or repeated write: they change nothing);
/// 2. each answer on its attempt, unless the attempt already has one; `finished_at` is read
///    under the write lock, when the answer became known to every claim;
/// 3. each answered job's next state, guarded by the job still being on that attempt;
/// 4. the claim's attempts, only if the account is neither paused (by step 2's answers included)
///    nor stopped and nobody else wrote to the ledger (its newest id is the mirror's);
/// 5. their jobs in flight: the attempts step 4 inserted, none if it inserted none (`changes()`
///    is the previous statement's count, `last_insert_rowid()` its last attempt);
/// 6. the account, the ledger's newest id, and the claimed jobs as one JSON array (step 5's
///    `changes()` again);
/// 7. `commit`.
const TURN_SQL: &str = "
select json_group_array(a.id) from json_each(?) as r join attempts a on a.id = r.value ->> 0
 where a.finished_at is not null;
update attempts set finished_at = cast(unixepoch('subsec') * 1000 as integer), result = r.value ->> 1,
       http_status = r.value ->> 2, error_code = r.value ->> 3, message = r.value ->> 4, body = r.value ->> 5,
       rl_limit = r.value ->> 6, rl_remaining = r.value ->> 7, rl_reset = r.value ->> 8
  from json_each(?) as r
 where attempts.id = r.value ->> 0 and attempts.finished_at is null;
update jobs set state = r.value ->> 10, outcome = r.value ->> 11, not_before = r.value ->> 12,
       failures = failures + (r.value ->> 13), attempts = attempts - (r.value ->> 14), last_status = r.value ->> 2, last_code = r.value ->> 3,
       last_message = r.value ->> 4, attempt_id = null,
       finished_at = case when r.value ->> 10 = 'done' then cast(unixepoch('subsec') * 1000 as integer)
                          else finished_at end
  from json_each(?) as r
 where jobs.id = r.value ->> 9 and jobs.attempt_id = r.value ->> 0;
insert into attempts (job_id, account_id, sent_at)
select id, account_id, ? from jobs
 where account_id = ? and state = 'queued' and outcome is null and not_before <= ?
   and (select stopped_reason = '' and paused_until <= ? from accounts where id = ?)
   and (select coalesce(max(id), 0) from attempts) = ?
 order by id limit ?;
update jobs set state = 'in_flight', attempts = attempts + 1, attempt_id = a.id
  from attempts a
 where changes() > 0 and a.id > ? and a.id <= last_insert_rowid() and a.job_id = jobs.id;
select paused_until, pause_reason, stopped_reason, (select coalesce(max(id), 0) from attempts),
       (select json_group_array(json_array(j.id, j.target_kind, j.target, j.notify, j.failures, a.id))
          from attempts a join jobs j on j.id = a.job_id
         where changes() > 0 and a.id > ? and a.id <= last_insert_rowid())
  from accounts where id = ?;
commit;
";

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
    Done(Outcome),
    /// Back to the queue, not before this time; `failure` counts a transient failure.
    Requeue { not_before: i64, failure: bool },
}

impl RecordJob {
    /// The job's new `state`, `outcome` and `not_before`, and whether it counts a failure.
    fn columns(&self) -> (&'static str, Option<&'static str>, i64, bool) {
        match *self {
            RecordJob::Done(o) => ("done", Some(o.as_str()), 0, o == Outcome::Failed),
            RecordJob::Requeue { not_before, failure } => ("queued", None, not_before, failure),
        }
    }
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
    /// False when the request never left (its claim waited too long, or the run was ending):
    /// the attempt stays counted, and the job's request count is not raised.
    pub sent: bool,
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

impl Record {
    /// A blank answer for `claim`: sent, transient, nothing known yet, the job back in the queue.
    /// Callers fill in what came back.
    pub fn for_claim(claim: &Claim) -> Record {
        Record {
            attempt_id: claim.attempt_id,
            job_id: claim.job_id,
            account_id: claim.account_id,
            result: "transient",
            sent: true,
            http_status: None,
            error_code: None,
            message: String::new(),
            body: String::new(),
            rl_limit: None,
            rl_remaining: None,
            rl_reset: None,
            job: RecordJob::Requeue { not_before: 0, failure: false },
            account: None,
        }
    }
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
    pub message: String,
}

/// The ledger as the scheduler starts from it ([`Store::ledger_snapshot`]).
#[derive(Debug, Clone, Default)]
pub struct LedgerSnapshot {
    /// The newest attempt id when the snapshot was taken.
    pub max_attempt_id: i64,
    pub accounts: Vec<super::AccountRow>,
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

/// The dispatcher's own connection for [`Store::turn`]. It never checkpoints the WAL as part of
/// a commit (SQLite's automatic checkpoint stalls the committing turn with page copies and an
/// fsync, every thousand pages); the dispatcher runs [`Store::checkpoint`] on it between turns
/// instead. Closed, not returned to the pool, when dropped, so no other work inherits its
/// settings.
pub struct Writer {
    conn: PoolConnection<Sqlite>,
}

/// A claimed job as both claims read it: job id, target kind, target, notify, failures, attempt id.
type ClaimedRow = (i64, String, String, i64, i64, i64);

/// The claims of `account_id`'s claimed rows, sent (claimed) at `now`, in attempt order.
fn claims_of(account_id: i64, now: i64, rows: Vec<ClaimedRow>) -> Vec<Claim> {
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
    claims
}

/// The account's state, the ledger's newest id, and the claimed jobs (JSON) after a turn.
type TurnStatus = Option<(i64, String, String, i64, String)>;

/// Reads a [`TURN_SQL`] list's results: the attempts that already had an answer, how many jobs
/// the answers moved, and the final status row. Statements report in order, each one's rows
/// before its summary.
async fn read_turn(
    mut results: futures_util::stream::BoxStream<
        '_,
        Result<sqlx::Either<sqlx::sqlite::SqliteQueryResult, sqlx::sqlite::SqliteRow>, sqlx::Error>,
    >,
) -> Result<(Vec<i64>, u64, TurnStatus), StoreError> {
    // Numbered as in [`TURN_SQL`]'s comment: the first statement is step 1.
    let (mut step, mut stale, mut jobs_changed, mut status) = (1, Vec::new(), 0, None);
    while let Some(item) = results.try_next().await? {
        match item {
            sqlx::Either::Left(done) => {
                if step == 3 {
                    jobs_changed = done.rows_affected();
                }
                step += 1;
            }
            sqlx::Either::Right(row) if step == 1 => {
                stale = serde_json::from_str(&row.try_get::<String, _>(0)?)
                    .map_err(|e| StoreError::Stale(format!("answered attempts: {e}")))?;
            }
            sqlx::Either::Right(row) => {
                status = Some((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?, row.try_get(4)?))
            }
        }
    }
    if step != 8 {
        return Err(StoreError::Stale(format!("the turn's statement list ended after {} of 7 statements", step - 1)));
    }
    Ok((stale, jobs_changed, status))
}

impl Store {
    /// A connection for the dispatcher's turns (see [`Writer`]).
    pub async fn writer(&self) -> Result<Writer, StoreError> {
        let mut conn = self.pool.acquire().await?;
        conn.close_on_drop();
        sqlx::query("pragma wal_autocheckpoint = 0").execute(&mut *conn).await?;
        // A turn's attempts are inserted from the jobs rows they reference, so their
        // foreign-key lookups could only ever succeed.
        sqlx::query("pragma foreign_keys = off").execute(&mut *conn).await?;
        Ok(Writer { conn })
    }

    /// Copies the WAL's committed pages into the database, on the turns' own connection between
    /// two turns. It must be this connection, not one beside it: the WAL starts over from its
    /// beginning only when a write begins after a checkpoint that copied all of it, and with the
    /// turns back to back a checkpoint running beside them never caught up (the WAL grew to
    /// 1.3 GB over a 300,000-job run with limits lifted). Here nothing writes in between, so
    /// unless a reader still holds an older snapshot, the next turn starts the WAL over.
    /// Returns the frames the WAL held and how many of them are now in the database.
    pub async fn checkpoint(&self, writer: &mut Writer) -> Result<(i64, i64), StoreError> {
        let (_busy, log, copied): (i64, i64, i64) =
            sqlx::query_as("pragma wal_checkpoint(passive)").fetch_one(&mut *writer.conn).await?;
        Ok((log, copied))
    }

    /// Start-up: attempts without an answer become "unknown" (they still count against the
    /// budget: the request may have reached X), and their jobs go back to the queue.
    pub async fn recover(&self) -> Result<Recovered, StoreError> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
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

    /// What the scheduler starts from: the newest attempt id first (sends another process adds
    /// after it make the next claim count the ledger itself, never trust a mirror that missed
    /// them), then the accounts, each one's last send, the sends after `since`, and the queued
    /// jobs per account.
    pub async fn ledger_snapshot(&self, since: i64) -> Result<LedgerSnapshot, StoreError> {
        Ok(LedgerSnapshot {
            max_attempt_id: self.max_attempt_id().await?,
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
        let mut tx = self.write_tx().await?;
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
        let rows: Vec<ClaimedRow> = sqlx::query_as(
            "update jobs set state = 'in_flight', attempts = attempts + 1, attempt_id = a.id
             from attempts a
             where a.id > ?1 and a.job_id = jobs.id
             returning id, target_kind, target, notify, failures, attempt_id",
        )
        .bind(max_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ClaimResult::Claimed { claims: claims_of(account_id, now, rows), foreign })
    }

    /// Phase 2 for many answers, in one transaction: each answer on its attempt, each job's next
    /// state, any account's pause or stop. Guarded by the attempt id: an attempt that already
    /// has an answer (a late or repeated write) changes nothing, and its entry in the result is
    /// `false`.
    pub async fn record_batch(&self, records: &[&Record]) -> Result<Vec<bool>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
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
        let live: Vec<&Record> = records.iter().copied().filter(|r| fresh.contains(&r.attempt_id)).collect();
        if !live.is_empty() {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "update jobs set state = v.column3, outcome = v.column4, not_before = v.column5,
                        failures = failures + v.column6, attempts = attempts - v.column10, last_status = v.column7, last_code = v.column8,
                        last_message = v.column9, attempt_id = null,
                        finished_at = case when v.column3 = 'done' then ",
            );
            qb.push_bind(now);
            qb.push(" else finished_at end from (");
            qb.push_values(&live, |mut b, r| {
                let (state, outcome, not_before, failure) = r.job.columns();
                b.push_bind(r.job_id)
                    .push_bind(r.attempt_id)
                    .push_bind(state)
                    .push_bind(outcome)
                    .push_bind(not_before)
                    .push_bind(failure as i64)
                    .push_bind(r.http_status)
                    .push_bind(r.error_code)
                    .push_bind(r.message.clone())
                    .push_bind(!r.sent as i64);
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

    /// The dispatcher's turn, one write transaction in one round trip to SQLite's thread: write
    /// the answers that came back (as [`Store::record_batch`] does) and claim the next jobs (as
    /// [`Store::claim`] does, trusting the caller's mirror, which the transaction checks against
    /// the ledger's newest attempt id). The answers must not pause or stop an account (write
    /// those with [`Store::record_batch`]). With `ask` `None`, or a `room` of 0, nothing is claimed.
    ///
    /// At high rates the round trips, not SQLite's work, were most of the dispatcher's time:
    /// [`Store::record_batch`] and [`Store::claim`] take about ten between them.
    pub async fn turn(
        &self,
        writer: &mut Writer,
        records: &[&Record],
        ask: Option<ClaimAsk>,
    ) -> Result<(Vec<bool>, Option<ClaimResult>), StoreError> {
        if records.iter().any(|r| r.account.is_some()) {
            return Err(StoreError::Stale("an answer that changes its account was given to turn".into()));
        }
        // Serialised straight from borrowed fields: no JSON tree, no copies.
        let answers: Vec<_> = records
            .iter()
            .map(|r| {
                let (state, outcome, not_before, failure) = r.job.columns();
                (
                    r.attempt_id,
                    r.result,
                    r.http_status,
                    r.error_code,
                    r.message.as_str(),
                    r.body.as_str(),
                    r.rl_limit,
                    r.rl_remaining,
                    r.rl_reset,
                    r.job_id,
                    state,
                    outcome,
                    not_before,
                    failure as i64,
                    !r.sent as i64,
                )
            })
            .collect();
        let answers = serde_json::to_string(&answers).map_err(|e| StoreError::Stale(format!("answers: {e}")))?;
        let ask = ask.unwrap_or(ClaimAsk { account_id: 0, now: 0, known_max_id: 0, room: 0 });
        let (account, at, known) = (ask.account_id, ask.now, ask.known_max_id);
        let query = sqlx::query(TURN_SQL)
            .bind(answers.clone())
            .bind(answers.clone())
            .bind(answers)
            .bind(at)
            .bind(account)
            .bind(at)
            .bind(at)
            .bind(account)
            .bind(known)
            .bind(ask.room as i64)
            .bind(known)
            .bind(known)
            .bind(account);
        super::begin_immediate(&mut writer.conn, &self.path).await?;
        let outcome = read_turn(writer.conn.fetch_many(query)).await;
        let (stale, jobs_changed, status) = match outcome {
            Ok(v) => v,
            Err(e) => {
                // The list may have stopped inside its transaction: roll it back (an error here
                // only means there was none to roll back).
                let _ = sqlx::query("rollback").execute(&mut *writer.conn).await;
                return Err(e);
            }
        };
        let fresh = records.len() - stale.len();
        if jobs_changed != fresh as u64 {
            // An open attempt whose job is on another attempt: the ledger is inconsistent (the
            // answers are on their attempts; the jobs that were elsewhere are untouched).
            return Err(StoreError::Stale(format!(
                "{} of {fresh} answered jobs were not on their attempt",
                fresh as u64 - jobs_changed.min(fresh as u64)
            )));
        }
        let written = records.iter().map(|r| !stale.contains(&r.attempt_id)).collect();
        if ask.room == 0 {
            return Ok((written, None));
        }
        let Some((until, reason, stopped, max_id, claimed)) = status else {
            return Err(StoreError::Stale(format!("account {account} is not in the database")));
        };
        let claimed: Vec<ClaimedRow> =
            serde_json::from_str(&claimed).map_err(|e| StoreError::Stale(format!("claimed jobs: {e}")))?;
        let result = if !claimed.is_empty() {
            ClaimResult::Claimed { claims: claims_of(account, at, claimed), foreign: false }
        } else if !stopped.is_empty() {
            ClaimResult::Stopped(stopped)
        } else if until > at {
            ClaimResult::Paused { until, reason }
        } else if max_id != known {
            ClaimResult::Foreign
        } else {
            ClaimResult::NoJob
        };
        Ok((written, Some(result)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewJob;

    /// A store with `n` queued jobs for one account; its id.
    async fn store_with(n: usize) -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = store_at(&dir.path().join("t.db"), n).await;
        (dir, store, id)
    }

    /// [`store_with`] at `path`.
    async fn store_at(path: &std::path::Path, n: usize) -> (Store, i64) {
        let store = Store::open(path).await.unwrap();
        let id = store.sync_accounts(&["alice"]).await.unwrap()["alice"];
        let mut session = store.import_session(false).await.unwrap();
        let import = session.begin_import("t.csv", "").await.unwrap();
        let jobs: Vec<NewJob> = (0..n)
            .map(|i| NewJob { account_id: id, kind: TargetKind::ScreenName, target: format!("t{i}"), notify: false })
            .collect();
        session.insert_jobs(import, &jobs).await.unwrap();
        let summary = crate::model::Summary {
            source: "t.csv".into(),
            rows_read: n as u64,
            added: n as u64,
            duplicates: 0,
            rejected: 0,
        };
        session.finish(import, &summary).await.unwrap();
        (store, id)
    }

    fn answer(c: &Claim) -> Record {
        Record {
            result: "followed",
            http_status: Some(200),
            job: RecordJob::Done(Outcome::Followed),
            ..Record::for_claim(c)
        }
    }

    fn claims(r: Option<ClaimResult>) -> Vec<Claim> {
        match r {
            Some(ClaimResult::Claimed { claims, foreign: false }) => claims,
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_turn_records_answers_and_claims_only_while_the_mirror_is_exact() {
        let (_dir, store, id) = store_with(10).await;
        let mut w = store.writer().await.unwrap();
        let ask = |known, room| Some(ClaimAsk { account_id: id, now: now_ms(), known_max_id: known, room });

        let first = claims(store.turn(&mut w, &[], ask(0, 3)).await.unwrap().1);
        assert_eq!(first.iter().map(|c| c.target.as_str()).collect::<Vec<_>>(), ["t0", "t1", "t2"]);
        let known = first.last().unwrap().attempt_id;

        // Answers and the next claim in one turn; a repeated answer changes nothing.
        let answers: Vec<Record> = first.iter().map(answer).collect();
        let refs: Vec<&Record> = answers.iter().collect();
        let (written, next) = store.turn(&mut w, &refs, ask(known, 2)).await.unwrap();
        assert_eq!(written, [true, true, true]);
        let next = claims(next);
        assert_eq!(next.len(), 2);
        let known = next.last().unwrap().attempt_id;
        let (written, none) = store.turn(&mut w, &refs[..1], None).await.unwrap();
        assert_eq!((written, none.is_none()), (vec![false], true));
        assert_eq!(store.open_attempts().await.unwrap(), 2);

        // Someone else claims (another process): a turn on the old watermark claims nothing.
        let view = WindowView { start: 0, per_user: 100, per_app: 100, known_max_id: known, user_used: 0, app_used: 0 };
        let ClaimResult::Claimed { claims: theirs, .. } = store.claim(id, now_ms(), view, 1).await.unwrap() else {
            panic!("the other claim failed")
        };
        let (_, r) = store.turn(&mut w, &[], ask(known, 2)).await.unwrap();
        assert!(matches!(r, Some(ClaimResult::Foreign)), "{r:?}");
        let known = theirs[0].attempt_id;

        // A pause written by another answer: nothing is claimed, and the turn says why.
        let mut pause = answer(&theirs[0]);
        pause.account =
            Some(RecordAccount::Pause { until: now_ms() + 60_000, reason: "test".into(), pace_factor: None });
        store.record_batch(&[&pause]).await.unwrap();
        let (_, r) = store.turn(&mut w, &[], ask(known, 2)).await.unwrap();
        assert!(matches!(r, Some(ClaimResult::Paused { .. })), "{r:?}");

        // The counts kept by the trigger agree with a recount.
        let mut kept = store.job_counts().await.unwrap();
        let mut counted = store.recount_jobs().await.unwrap();
        kept.retain(|c| c.n > 0);
        counted.retain(|c| c.n > 0);
        assert_eq!(format!("{kept:?}"), format!("{counted:?}"));
    }

    /// Turns back to back, each answering the last one's claims and claiming four more, with a
    /// checkpoint on the turns' connection every 40 (as the dispatcher does) and status reading
    /// beside them: every checkpoint copies the whole WAL, and the turn after it starts the WAL
    /// over, so each checkpoint finds only the frames of the 40 turns since the last one.
    #[tokio::test]
    async fn checkpoints_between_turns_start_the_wal_over() {
        let (_dir, store, id) = store_with(2_000).await;
        let mut w = store.writer().await.unwrap();
        let (mut known, mut answers, mut frames) = (0, Vec::new(), Vec::new());
        for turn in 1..=400 {
            let refs: Vec<&Record> = answers.iter().collect();
            let ask = ClaimAsk { account_id: id, now: now_ms(), known_max_id: known, room: 4 };
            let claimed = claims(store.turn(&mut w, &refs, Some(ask)).await.unwrap().1);
            known = claimed.last().unwrap().attempt_id;
            answers = claimed.iter().map(answer).collect();
            if turn % 10 == 0 {
                store.job_counts().await.unwrap();
            }
            if turn % 40 == 0 {
                let (log, copied) = store.checkpoint(&mut w).await.unwrap();
                assert_eq!(copied, log, "turn {turn}: the checkpoint left frames behind");
                frames.push(log);
            }
        }
        // The first count includes the import's frames; from the second on, 40 turns' worth.
        let (least, most) = (frames[1..].iter().min().unwrap(), frames[1..].iter().max().unwrap());
        assert!(*least > 0 && *most < 2 * *least, "the WAL grew: {frames:?}");
    }

    /// Defect: with `synchronous = NORMAL` a claim's WAL frames reached the disk only at a
    /// checkpoint, after its request had left: a power loss erased attempts X had seen, the
    /// next run overspent, and their jobs were sent twice. Every commit on the turns'
    /// connection, and on the pool's (claim, record, recover), is synced before it returns.
    #[tokio::test]
    async fn the_claiming_connection_syncs_every_commit_before_the_request_leaves() {
        let (_dir, store, _) = store_with(1).await;
        let mut w = store.writer().await.unwrap();
        let on_writer: i64 = sqlx::query_scalar("pragma synchronous").fetch_one(&mut *w.conn).await.unwrap();
        let mut conn = store.pool.acquire().await.unwrap();
        let on_pool: i64 = sqlx::query_scalar("pragma synchronous").fetch_one(&mut *conn).await.unwrap();
        // 2 is FULL: in WAL mode the WAL is fsynced at every commit.
        assert_eq!((on_writer, on_pool), (2, 2));
        let mode: String = sqlx::query_scalar("pragma journal_mode").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(mode, "wal");
    }

    /// Defect: a writer that held the lock longer than the busy timeout (an import waiting on
    /// a pipe) made `run` exit 1 with "database is locked". The run's writes wait it out.
    #[tokio::test]
    async fn a_run_outlasts_a_writer_that_holds_the_lock_past_the_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(store_at(&path, 1).await);
        let store = Store::open_with(&path, std::time::Duration::from_millis(100)).await.unwrap();
        let id = store.sync_accounts(&["alice"]).await.unwrap()["alice"];
        let other = Store::open(&path).await.unwrap();
        let mut held = other.pool.begin_with("begin immediate").await.unwrap();
        sqlx::query("update accounts set pace_factor = 1.0").execute(&mut *held).await.unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            held.commit().await.unwrap();
        });
        let view = WindowView { start: 0, per_user: 10, per_app: 10, known_max_id: 0, user_used: 0, app_used: 0 };
        let started = std::time::Instant::now();
        let claimed = store.claim(id, now_ms(), view, 1).await.unwrap();
        assert!(matches!(claimed, ClaimResult::Claimed { .. }), "{claimed:?}");
        assert!(started.elapsed() >= std::time::Duration::from_millis(500), "it waited for the lock");
        release.await.unwrap();
        let mut w = store.writer().await.unwrap();
        let mut held = other.pool.begin_with("begin immediate").await.unwrap();
        sqlx::query("update accounts set pace_factor = 1.0").execute(&mut *held).await.unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            held.commit().await.unwrap();
        });
        assert_eq!(store.recover().await.unwrap().requeued_jobs, 1);
        let (written, _) = store.turn(&mut w, &[], None).await.unwrap();
        assert!(written.is_empty());
        release.await.unwrap();
    }
}
