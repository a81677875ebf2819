//! The domain's types, below every layer that uses them: how a target is named, a job to queue,
//! and what an import did. The store speaks them; so do the readers and the X client.

/// How a target is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    ScreenName,
    UserId,
}

impl TargetKind {
    /// The value stored in `jobs.target_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::ScreenName => "screen_name",
            TargetKind::UserId => "user_id",
        }
    }

    /// Parses a stored `target_kind`.
    pub fn parse(s: &str) -> TargetKind {
        if s == "user_id" { TargetKind::UserId } else { TargetKind::ScreenName }
    }
}

/// A validated target to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub account_id: i64,
    pub kind: TargetKind,
    /// The screen name as written (without `@`), or the decimal id.
    pub target: String,
    pub notify: bool,
}

/// What one import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub source: String,
    pub rows_read: u64,
    pub added: u64,
    /// Valid rows whose target was already queued for that account (or repeated in the file).
    pub duplicates: u64,
    pub rejected: u64,
}
