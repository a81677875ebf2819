//! The store on PostgreSQL: several hosts, one queue and one budget. Opening (migrations, which
//! sqlx runs under an advisory lock, so hosts starting together are fine), the accounts, the
//! runners and their heartbeats; the queue in `jobs.rs`, the ledger in `ledger.rs`, the rest in
//! `reads.rs`. Every lock is transaction-scoped: session advisory locks are lost when the
//! database restarts and do not work behind a transaction-pooling pgbouncer.

mod jobs;
mod ledger;
mod reads;

pub use jobs::ImportSession;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection};

use super::location::PgUrl;
use super::{AccountRow, RunnerRow, StoreError};
use crate::time::{Clock, now_ms};

/// The database: one pool, shared by every task of this process.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// This process's runner, once it registered (`run`): its attempts carry it.
    runner: Arc<std::sync::OnceLock<i64>>,
}

/// A registered runner: beats while alive (see [`PgStore::register_runner`]), ends when dropped
/// or [`Runner::end`]ed.
pub struct Runner {
    store: PgStore,
    id: i64,
    beat: tokio::task::JoinHandle<()>,
}

impl Runner {
    /// This runner's id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Stops the heartbeat and marks the runner ended (its attempts are all answered: a clean
    /// end of `run`).
    pub async fn end(self) -> Result<(), StoreError> {
        self.beat.abort();
        sqlx::query("update runners set ended_at = $2 where id = $1")
            .bind(self.id)
            .bind(now_ms())
            .execute(&self.store.pool)
            .await?;
        Ok(())
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.beat.abort();
    }
}

/// The key of the app-wide transaction lock every claim takes after its account's row
/// ("followq" in ASCII).
pub(super) const APP_LOCK: i64 = 0x0066_6f6c_6c6f_7771;

/// The database's clock, ms: what every host's budget check reads (a test's virtual clock
/// stands in for it).
pub(super) async fn db_now(conn: &mut PgConnection, clock: &Clock) -> Result<i64, StoreError> {
    if clock.is_virtual() {
        return Ok(clock.now_ms());
    }
    Ok(sqlx::query_scalar("select (extract(epoch from clock_timestamp()) * 1000)::bigint").fetch_one(conn).await?)
}

impl PgStore {
    /// Connects and migrates.
    pub async fn open(url: &PgUrl) -> Result<PgStore, StoreError> {
        let open_err = |source| StoreError::Open { path: url.to_string(), source };
        let opts: PgConnectOptions = url.secret().parse().map_err(open_err)?;
        let opts = opts.log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        MIGRATOR.run(&pool).await?;
        Ok(PgStore { pool, runner: Arc::default() })
    }

    /// Closes the pool.
    pub async fn close(self) {
        self.pool.close().await;
    }

    /// The runner this process registered, if it did.
    pub(super) fn runner_id(&self) -> Option<i64> {
        self.runner.get().copied()
    }

    /// Registers this process (host name, pid) and starts its heartbeat, every `expire` / 5.
    /// Another runner takes this one for dead, and recovers its open attempts, only once its
    /// heartbeat is `expire` old.
    pub async fn register_runner(&self, expire: Duration) -> Result<Option<Runner>, StoreError> {
        let host = hostname();
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "insert into runners (host, pid, started_at, heartbeat_at, expire_ms)
             values ($1, $2, $3, (extract(epoch from clock_timestamp()) * 1000)::bigint, $4) returning id",
        )
        .bind(&host)
        .bind(i64::from(std::process::id()))
        .bind(now)
        .bind(expire.as_millis() as i64)
        .fetch_one(&self.pool)
        .await?;
        if self.runner.set(id).is_err() {
            return Err(StoreError::Stale("this process registered as a runner twice".into()));
        }
        let pool = self.pool.clone();
        let every = (expire / 5).max(Duration::from_millis(100));
        let beat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let beat = sqlx::query(
                    "update runners set heartbeat_at = (extract(epoch from clock_timestamp()) * 1000)::bigint
                     where id = $1",
                )
                .bind(id)
                .execute(&pool)
                .await;
                if let Err(e) = beat {
                    tracing::warn!(runner = id, error = %e, "heartbeat not written (the database?): trying again");
                }
            }
        });
        Ok(Some(Runner { store: self.clone(), id, beat }))
    }

    /// The runners whose heartbeat has not expired, by the database's clock.
    pub async fn live_runners(&self) -> Result<Vec<RunnerRow>, StoreError> {
        Ok(sqlx::query_as(
            "select id, host, pid, started_at, heartbeat_at from runners
             where ended_at is null
               and heartbeat_at + expire_ms > (extract(epoch from clock_timestamp()) * 1000)::bigint
             order by id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Jobs in flight on attempts of runners other than this one.
    pub async fn in_flight_elsewhere(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "select count(*) from jobs j join attempts t on t.id = j.attempt_id
             where j.state = 'in_flight' and t.runner_id is distinct from $1",
        )
        .bind(self.runner_id())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Inserts the configured accounts that are new and returns their ids by name.
    pub async fn sync_accounts(&self, names: &[&str]) -> Result<HashMap<String, i64>, StoreError> {
        let now = now_ms();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        sqlx::query(
            "insert into accounts (name, created_at) select n, $2 from unnest($1::text[]) as n
             on conflict (name) do nothing",
        )
        .bind(&names)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let rows: Vec<(String, i64)> = sqlx::query_as("select name, id from accounts where name = any($1)")
            .bind(&names)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// Every account the database knows.
    pub async fn accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        Ok(sqlx::query_as(
            "select id, name, paused_until, pause_reason, stopped_reason, pace_factor, x_user_id, x_username,
                    x_token_digest
             from accounts order by name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// See [`super::Store::stop_account`].
    pub async fn stop_account(&self, account_id: i64, reason: &str) -> Result<(), StoreError> {
        sqlx::query("update accounts set stopped_reason = $2 where id = $1")
            .bind(account_id)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// See [`super::Store::clear_stop`].
    pub async fn clear_stop(&self, account_id: i64) -> Result<(), StoreError> {
        sqlx::query("update accounts set stopped_reason = '', paused_until = 0, pause_reason = '' where id = $1")
            .bind(account_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// See [`super::Store::set_identity`].
    pub async fn set_identity(
        &self,
        account_id: i64,
        x_user_id: &str,
        x_username: &str,
        token_digest: &str,
    ) -> Result<(), StoreError> {
        let changed =
            sqlx::query("update accounts set x_user_id = $2, x_username = $3, x_token_digest = $4 where id = $1")
                .bind(account_id)
                .bind(x_user_id)
                .bind(x_username)
                .bind(token_digest)
                .execute(&self.pool)
                .await?
                .rows_affected();
        if changed != 1 {
            return Err(StoreError::Stale(format!("account {account_id} is not in the database")));
        }
        Ok(())
    }

    /// See [`super::Store::stop_app`].
    pub async fn stop_app(&self, reason: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query("update app_state set stopped_reason = $1, stopped_at = $2 where id = 1")
            .bind(reason)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// See [`super::Store::app_stopped`].
    pub async fn app_stopped(&self) -> Result<Option<(String, i64)>, StoreError> {
        let row: (String, i64) = sqlx::query_as("select stopped_reason, stopped_at from app_state where id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((!row.0.is_empty()).then_some(row))
    }

    /// See [`super::Store::clear_app_stop`].
    pub async fn clear_app_stop(&self) -> Result<(), StoreError> {
        self.stop_app("", 0).await
    }

    /// What a crash of a host cannot leave on PostgreSQL but a fault in followq could: a job in
    /// flight whose attempt is answered or another job's, an attempt of a job's account other
    /// than the job's. "ok" when there is none, else what was found.
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        let (bad_flight, bad_account): (i64, i64) = sqlx::query_as(
            "select (select count(*) from jobs j left join attempts t on t.id = j.attempt_id
                     where j.state = 'in_flight'
                       and (t.id is null or t.finished_at is not null or t.job_id <> j.id)),
                    (select count(*) from attempts t join jobs j on j.id = t.job_id where t.account_id <> j.account_id)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(if bad_flight == 0 && bad_account == 0 {
            "ok".to_string()
        } else {
            format!(
                "{bad_flight} jobs in flight on no open attempt of theirs; {bad_account} attempts of another account"
            )
        })
    }
}

/// The schema's history for PostgreSQL, built in.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// This machine's name, for `status` (`HOSTNAME`, else /etc/hostname, else "?").
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "?".to_string())
}
