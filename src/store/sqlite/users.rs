//! The `users` table: screen names resolved to ids (v2 follows name their target by id). A
//! name is asked about once; a name X does not know, or a suspended one, ends its jobs without a
//! follow request.

use super::SqliteStore;
use crate::model::{Outcome, ResolvedUser, UserState};
use crate::store::StoreError;

impl SqliteStore {
    /// Up to `limit` screen names of the account's queued jobs, in queue order, that have not
    /// been resolved — with `ahead_only`, none unless one of its next `limit` queued jobs needs
    /// one: names are resolved in whole batches, just ahead of the follows.
    pub async fn unresolved_names(
        &self,
        account_id: i64,
        limit: usize,
        ahead_only: bool,
    ) -> Result<Vec<String>, StoreError> {
        let needed: bool = !ahead_only
            || sqlx::query_scalar(
                "select exists (select 1 from (select target, target_kind from jobs
                                           where account_id = ?1 and state = 'queued' order by id limit ?2) q
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
             where account_id = ?1 and state = 'queued' and target_kind = 'screen_name'
               and not exists (select 1 from users u where u.username = jobs.target)
             order by id limit ?2",
        )
        .bind(account_id)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every account with queued jobs whose names are not resolved yet, with how many.
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

    /// Keeps what X said about these names, in one transaction, and ends the queued jobs (of
    /// every account) whose name X does not know (`not_found`) or has suspended (`suspended`):
    /// they are finished without a request. Returns the jobs that ended: (account id, outcome).
    pub async fn record_users(&self, users: &[ResolvedUser], now: i64) -> Result<Vec<(i64, Outcome)>, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut ended = Vec::new();
        for u in users {
            sqlx::query(
                "insert into users (username, user_id, state, protected, seen_at) values (?1, ?2, ?3, ?4, ?5)
                 on conflict (username) do update set user_id = ?2, state = ?3, protected = ?4, seen_at = ?5",
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
            // By the jobs' own key (account, kind, target without case), one account at a time.
            let accounts: Vec<i64> = sqlx::query_scalar(
                "update jobs set state = 'done', outcome = ?2, finished_at = ?3, last_message = ?4
                 where account_id in (select id from accounts) and target_kind = 'screen_name'
                   and target = ?1 collate nocase and state = 'queued'
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

    /// What is known about a name, for tests and audits.
    pub async fn resolved(&self, username: &str) -> Result<Option<(String, UserState)>, StoreError> {
        Ok(sqlx::query_as("select user_id, state from users where username = ?1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?)
    }
}
