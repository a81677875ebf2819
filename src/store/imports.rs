//! The `imports` table: one row per file ingested, with its counts.

use super::{Store, StoreError, now_ms};

/// One import, for `status`.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ImportRow {
    pub id: i64,
    pub source: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub rows_read: i64,
    pub added: i64,
    pub duplicates: i64,
    pub rejected: i64,
}

impl Store {
    /// Starts an import; its counts are written by [`Store::finish_import`].
    pub async fn begin_import(&self, source: &str, content_hash: &str) -> Result<i64, StoreError> {
        let id = sqlx::query_scalar(
            "insert into imports (source, content_hash, started_at) values (?1, ?2, ?3) returning id",
        )
        .bind(source)
        .bind(content_hash)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Records an import's counts and marks it finished.
    pub async fn finish_import(
        &self,
        id: i64,
        rows_read: u64,
        added: u64,
        duplicates: u64,
        rejected: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "update imports set finished_at = ?2, rows_read = ?3, added = ?4, duplicates = ?5, rejected = ?6 where id = ?1",
        )
        .bind(id)
        .bind(now_ms())
        .bind(rows_read as i64)
        .bind(added as i64)
        .bind(duplicates as i64)
        .bind(rejected as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// True when content with this hash was already imported to the end.
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
            "select id, source, started_at, finished_at, rows_read, added, duplicates, rejected
             from imports order by id desc limit ?1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
