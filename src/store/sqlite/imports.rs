//! The `imports` table: one row per file ingested, with its counts.

use super::SqliteStore;
use crate::store::{ImportRow, StoreError};

/// One import, for `status`.
impl SqliteStore {
    /// True when content with this hash was already imported to the end, or failed (then it
    /// is not tried again).
    pub async fn content_imported(&self, content_hash: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("select count(*) from imports where content_hash = ?1 and finished_at > 0")
            .bind(content_hash)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// The most recent imports, newest first.
    pub async fn recent_imports(&self, limit: i64) -> Result<Vec<ImportRow>, StoreError> {
        Ok(sqlx::query_as(
            "select id, source, started_at, finished_at, rows_read, added, duplicates, rejected, error
             from imports order by id desc limit ?1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
