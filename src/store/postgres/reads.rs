//! The import log, the resolved names and the confirmations on PostgreSQL: the same questions
//! as on SQLite, in PostgreSQL's SQL.

use super::PgStore;
use crate::model::{Outcome, ResolvedUser, UserState};
use crate::store::{Check, Confirmations, ImportRow, Settlement, StoreError, check_from};

impl PgStore {
    /// See [`crate::store::Store::content_imported`].
    pub async fn content_imported(&self, content_hash: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("select exists (select 1 from imports where content_hash = $1 and finished_at > 0)")
            .bind(content_hash)
            .fetch_one(&self.pool)
            .await?)
    }

    /// See [`crate::store::Store::recent_imports`].
    pub async fn recent_imports(&self, limit: i64) -> Result<Vec<ImportRow>, StoreError> {
        Ok(sqlx::query_as(
            "select id, source, started_at, finished_at, rows_read, added, duplicates, rejected, error
             from imports order by id desc limit $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// See [`crate::store::Store::unresolved_names`].
    pub async fn unresolved_names(
        &self,
        account_id: i64,
        limit: usize,
        ahead_only: bool,
    ) -> Result<Vec<String>, StoreError> {
        let needed: bool = !ahead_only
            || sqlx::query_scalar(
                "select exists (select 1 from (select target, target_kind from jobs
                                               where account_id = $1 and state = 'queued' order by id limit $2) q
                                where q.target_kind = 'screen_name'
                                  and not exists (select 1 from users u where u.username = q.target))",
            )
            .bind(account_id)
            .bind(limit as i64)
            .fetch_one(&self.pool)
            .await?;
        if !needed {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "select target from jobs
             where account_id = $1 and state = 'queued' and target_kind = 'screen_name'
               and not exists (select 1 from users u where u.username = jobs.target)
             order by id limit $2",
        )
        .bind(account_id)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?)
    }

    /// See [`crate::store::Store::unresolved_counts`].
    pub async fn unresolved_counts(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "select account_id, count(*) from jobs
             where state = 'queued' and target_kind = 'screen_name'
               and not exists (select 1 from users u where u.username = jobs.target)
             group by account_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// See [`crate::store::Store::record_users`].
    pub async fn record_users(&self, users: &[ResolvedUser], now: i64) -> Result<Vec<(i64, Outcome)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut ended = Vec::new();
        for u in users {
            sqlx::query(
                "insert into users (username, user_id, state, protected, seen_at) values ($1, $2, $3, $4, $5)
                 on conflict (username) do update set user_id = $2, state = $3, protected = $4, seen_at = $5",
            )
            .bind(&u.username)
            .bind(&u.user_id)
            .bind(u.state)
            .bind(u.protected)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let (outcome, message) = match u.state {
                UserState::Found => continue,
                UserState::NotFound => (Outcome::NotFound, "X does not know this username (GET /2/users/by)"),
                UserState::Suspended => (Outcome::Suspended, "X has suspended this account (GET /2/users/by)"),
            };
            let accounts: Vec<i64> = sqlx::query_scalar(
                "update jobs set state = 'done', outcome = $2, finished_at = $3, last_message = $4
                 where target_kind = 'screen_name' and target = $1 and state = 'queued'
                 returning account_id",
            )
            .bind(&u.username)
            .bind(outcome)
            .bind(now)
            .bind(message)
            .fetch_all(&mut *tx)
            .await?;
            ended.extend(accounts.into_iter().map(|a| (a, outcome)));
        }
        tx.commit().await?;
        Ok(ended)
    }

    /// See [`crate::store::Store::resolved`].
    pub async fn resolved(&self, username: &str) -> Result<Option<(String, UserState)>, StoreError> {
        Ok(sqlx::query_as("select user_id, state from users where username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// See [`crate::store::Store::due_checks`].
    pub async fn due_checks(&self, account_id: i64, now: i64, limit: usize) -> Result<Vec<Check>, StoreError> {
        Ok(sqlx::query_as(concat!(
            check_from!(),
            "where j.account_id = $1 and j.check_at is not null and j.check_at <= $2
             order by j.check_at, j.id
             limit $3"
        ))
        .bind(account_id)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?)
    }

    /// See [`crate::store::Store::unconfirmed_follows`].
    pub async fn unconfirmed_follows(
        &self,
        account_id: i64,
        requests: bool,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Check>, StoreError> {
        Ok(sqlx::query_as(concat!(
            check_from!(),
            "where j.account_id = $1 and j.state = 'done' and j.id > $2
               and (j.outcome in ('followed', 'already_following', 'unconfirmed')
                    or ($4 and j.outcome = 'requested'))
               and j.confirmed_at is null
             order by j.id
             limit $3"
        ))
        .bind(account_id)
        .bind(after)
        .bind(limit as i64)
        .bind(requests)
        .fetch_all(&self.pool)
        .await?)
    }

    /// See [`crate::store::Store::next_checks`].
    pub async fn next_checks(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as("select account_id, min(check_at) from jobs where check_at is not null group by account_id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// See [`crate::store::Store::settle_checks`]: the same rules as on SQLite, one statement
    /// over arrays of (job, seen).
    pub async fn settle_checks(
        &self,
        seen: &[(i64, bool)],
        now: i64,
        retry_after_ms: i64,
    ) -> Result<Vec<(i64, Settlement)>, StoreError> {
        let ids: Vec<i64> = seen.iter().map(|s| s.0).collect();
        let visible: Vec<bool> = seen.iter().map(|s| s.1).collect();
        // Every expression reads the row as it was: "due" is "not seen, and its time is up".
        let rows: Vec<(i64, String, Option<String>, bool)> = sqlx::query_as(
            "update jobs set
               confirmed_at = case when v.seen then $1 else confirmed_at end,
               state = case when not v.seen and resent = 0 and $1 >= finished_at + $2 then 'queued' else state end,
               outcome = case when v.seen then outcome
                              when resent = 1 then 'unconfirmed'
                              when $1 >= finished_at + $2 then null
                              else outcome end,
               resent = case when not v.seen and resent = 0 and $1 >= finished_at + $2 then 1 else resent end,
               finished_at = case when not v.seen and resent = 0 and $1 >= finished_at + $2 then null
                                  else finished_at end,
               not_before = case when not v.seen and resent = 0 and $1 >= finished_at + $2 then 0 else not_before end,
               failures = case when not v.seen and resent = 0 and $1 >= finished_at + $2 then 0 else failures end,
               check_at = case when v.seen or resent = 1 or $1 >= finished_at + $2 then null
                               else finished_at + $2 end
             from unnest($3::bigint[], $4::boolean[]) as v(id, seen)
             where jobs.id = v.id and jobs.check_at is not null and jobs.state = 'done'
             returning jobs.id, jobs.state, jobs.outcome, jobs.confirmed_at is not null",
        )
        .bind(now)
        .bind(retry_after_ms)
        .bind(&ids)
        .bind(&visible)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, state, outcome, confirmed)| {
                let s = match (state.as_str(), outcome.as_deref(), confirmed) {
                    (_, _, true) => Settlement::Confirmed,
                    ("queued", _, _) => Settlement::Resent,
                    (_, Some("unconfirmed"), _) => Settlement::Unconfirmed,
                    _ => Settlement::Later,
                };
                (id, s)
            })
            .collect())
    }

    /// See [`crate::store::Store::confirm_seen`].
    pub async fn confirm_seen(&self, job_ids: &[i64], now: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "update jobs set confirmed_at = $1, check_at = null,
                    outcome = case when outcome = 'unconfirmed' then 'followed' else outcome end
             where confirmed_at is null and state = 'done' and id = any($2)",
        )
        .bind(now)
        .bind(job_ids)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// See [`crate::store::Store::forget_checks`].
    pub async fn forget_checks(&self, account_id: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("update jobs set check_at = null where account_id = $1 and check_at is not null")
            .bind(account_id)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// See [`crate::store::Store::confirmations`].
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
