//! The only place with SQL: opening the database (pragmas, migrations), the queue (`jobs`), the
//! rate-limit ledger (`attempts`), `imports` and `accounts`. One function per statement or transaction.

mod imports;
mod jobs;
mod ledger;

pub use imports::ImportRow;
pub use jobs::{COMMIT_EVERY, CountRow, ExportRow, INSERT_BATCH, ImportSession, NewJob, TargetKind};
pub use ledger::{
    AttemptRow, Claim, ClaimAsk, ClaimResult, Record, RecordAccount, RecordJob, Recovered, WindowView, Writer,
};

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// A store error: the database could not be opened, migrated, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// A guarded transition changed no row: someone else already recorded it.
    #[error("stale write: {0}")]
    Stale(String),
}

/// Milliseconds since the Unix epoch, UTC: the one time unit in the database.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// An account as the store knows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub id: i64,
    pub name: String,
    pub paused_until: i64,
    pub pause_reason: String,
    pub stopped_reason: String,
    pub pace_factor: f64,
}

/// The database: one pool, one function per statement.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if missing, mode 0600) and migrates the database at `path`.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let existed = path.exists();
        let opts = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| StoreError::Open { path: path.display().to_string(), source: e })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a committed transaction survives a process crash; only an OS crash or
            // power loss can lose the last few, and those are re-sent as "unknown" (DESIGN §2).
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("cache_size", "-8192")
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open { path: path.display().to_string(), source: e })?;
        if !existed {
            restrict_permissions(path);
        }
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(self) {
        self.pool.close().await;
    }

    /// Inserts the configured accounts that are new and returns every account's id by name.
    pub async fn sync_accounts(&self, names: &[&str]) -> Result<HashMap<String, i64>, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        for name in names {
            sqlx::query("insert into accounts (name, created_at) values (?1, ?2) on conflict (name) do nothing")
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let rows: Vec<(String, i64)> = sqlx::query_as("select name, id from accounts").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().collect())
    }

    /// Every account the database knows, configured now or not.
    pub async fn accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        Ok(sqlx::query_as(
            "select id, name, paused_until, pause_reason, stopped_reason, pace_factor from accounts order by name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Clears a stopped account (its credentials verified again).
    pub async fn clear_stop(&self, account_id: i64) -> Result<(), StoreError> {
        sqlx::query("update accounts set stopped_reason = '', paused_until = 0, pause_reason = '' where id = ?1")
            .bind(account_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(sqlx::query_scalar("pragma integrity_check").fetch_one(&self.pool).await?)
    }
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %path.display(), error = %e, "could not make the database private (0600)");
    }
}

#[cfg(not(unix))]
fn restrict_permissions(_: &Path) {}
