//! Confirmations: the finished follows to look for at X, and what looking found (migration 7).
//! A follow X answered is looked for once it has settled (`check_at`, set when its answer is
//! recorded); seen, it is confirmed; not seen before `retry_after`, it is looked for once more
//! then; still not seen, it goes back to the queue to be sent again, once (`resent`); not seen
//! a settle after the re-send, it ends `unconfirmed`.

use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use crate::store::{Check, Confirmations, SETTLE_BATCH, Settlement, StoreError, check_from};

impl SqliteStore {
    /// The account's follows due to be looked for at `now`, soonest first, at most `limit`.
    pub async fn due_checks(&self, account_id: i64, now: i64, limit: usize) -> Result<Vec<Check>, StoreError> {
        Ok(sqlx::query_as(concat!(
            check_from!(),
            "where j.account_id = ?1 and j.check_at is not null and j.check_at <= ?2
             order by j.check_at, j.id
             limit ?3"
        ))
        .bind(account_id)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every follow of the account that X answered and that is not confirmed yet (`verify`),
    /// due or not — `followed` and `already_following`, and `requested` when `requests` (v1.1
    /// can see them) — at most `limit` after job `after`.
    pub async fn unconfirmed_follows(
        &self,
        account_id: i64,
        requests: bool,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Check>, StoreError> {
        Ok(sqlx::query_as(concat!(
            check_from!(),
            "where j.account_id = ?1 and j.state = 'done' and j.id > ?2
               and (j.outcome = 'followed' or j.outcome = 'already_following' or j.outcome = 'unconfirmed'
                    or (?4 and j.outcome = 'requested'))
               and j.confirmed_at is null
             order by j.id
             limit ?3"
        ))
        .bind(account_id)
        .bind(after)
        .bind(limit as i64)
        .bind(requests)
        .fetch_all(&self.pool)
        .await?)
    }

    /// When the next look of each account with follows to look for is due: (account id, ms).
    pub async fn next_checks(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "select a.id, (select min(check_at) from jobs j where j.account_id = a.id and j.check_at is not null)
             from accounts a
             where exists (select 1 from jobs j where j.account_id = a.id and j.check_at is not null)",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// What looking for these follows found (job id, seen), at `now`; `retry_after_ms` after its
    /// answer, a follow not seen is sent again (once). Rows that are no longer to be looked for
    /// (a `retry` took them meanwhile) are skipped.
    pub async fn settle_checks(
        &self,
        seen: &[(i64, bool)],
        now: i64,
        retry_after_ms: i64,
    ) -> Result<Vec<(i64, Settlement)>, StoreError> {
        let mut settled = Vec::with_capacity(seen.len());
        let mut tx = self.write_tx().await?;
        for chunk in seen.chunks(SETTLE_BATCH) {
            // Every expression reads the row as it was: "due" is "not seen, and its time is up".
            let values: Vec<String> = (0..chunk.len()).map(|i| format!("(?{}, ?{})", 3 + 2 * i, 4 + 2 * i)).collect();
            let values = values.join(", ");
            let sql = format!(
                "update jobs set
                   confirmed_at = case when v.column2 then ?1 else confirmed_at end,
                   state = case when not v.column2 and resent = 0 and ?1 >= finished_at + ?2 then 'queued'
                                else state end,
                   outcome = case when v.column2 then outcome
                                  when resent = 1 then 'unconfirmed'
                                  when ?1 >= finished_at + ?2 then null
                                  else outcome end,
                   resent = case when not v.column2 and resent = 0 and ?1 >= finished_at + ?2 then 1 else resent end,
                   finished_at = case when not v.column2 and resent = 0 and ?1 >= finished_at + ?2 then null
                                      else finished_at end,
                   not_before = case when not v.column2 and resent = 0 and ?1 >= finished_at + ?2 then 0
                                     else not_before end,
                   failures = case when not v.column2 and resent = 0 and ?1 >= finished_at + ?2 then 0
                                   else failures end,
                   check_at = case when v.column2 or resent = 1 or ?1 >= finished_at + ?2 then null
                                   else finished_at + ?2 end
                 from (values {values}) as v
                 where jobs.id = v.column1 and jobs.check_at is not null and jobs.state = 'done'
                 returning jobs.id, jobs.state, jobs.outcome, jobs.confirmed_at is not null"
            );
            // Built from this file's text and parameter numbers alone: every value is bound.
            let mut q = sqlx::query_as::<_, (i64, String, Option<String>, bool)>(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(retry_after_ms);
            for (job_id, visible) in chunk {
                q = q.bind(*job_id).bind(*visible);
            }
            for (id, state, outcome, confirmed) in q.fetch_all(&mut *tx).await? {
                let s = match (state.as_str(), outcome.as_deref(), confirmed) {
                    (_, _, true) => Settlement::Confirmed,
                    ("queued", _, _) => Settlement::Resent,
                    (_, Some("unconfirmed"), _) => Settlement::Unconfirmed,
                    _ => Settlement::Later,
                };
                settled.push((id, s));
            }
        }
        tx.commit().await?;
        Ok(settled)
    }

    /// Marks follows seen at X by `verify` (looked for on demand): confirmed, nothing more to
    /// look for; one that had ended `unconfirmed` (X took longer than the settle to show it) is
    /// `followed` after all. Returns how many were not confirmed before.
    pub async fn confirm_seen(&self, job_ids: &[i64], now: i64) -> Result<u64, StoreError> {
        let mut n = 0;
        let mut tx = self.write_tx().await?;
        for chunk in job_ids.chunks(SETTLE_BATCH) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("update jobs set confirmed_at = ");
            qb.push_bind(now);
            qb.push(
                ", check_at = null,
                 outcome = case when outcome = 'unconfirmed' then 'followed' else outcome end
                 where confirmed_at is null and state = 'done' and id in (",
            );
            let mut ids = qb.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            qb.push(")");
            n += qb.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Stops looking for the account's follows (its token is another X user's now: they were
    /// made by the user before, and are not in the new one's list). Returns how many.
    pub async fn forget_checks(&self, account_id: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("update jobs set check_at = null where account_id = ?1 and check_at is not null")
            .bind(account_id)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Per account id: follows confirmed and follows awaiting a look (from their indexes).
    pub async fn confirmations(&self) -> Result<Vec<(i64, Confirmations)>, StoreError> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "select a.id,
                    (select count(*) from jobs j where j.account_id = a.id and j.confirmed_at is not null),
                    (select count(*) from jobs j where j.account_id = a.id and j.check_at is not null)
             from accounts a",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id, confirmed, awaiting)| (id, Confirmations { confirmed, awaiting })).collect())
    }
}
