//! The domain's types, below every layer that uses them: how a target is named, a job to queue,
//! what an import did, and how a finished job ended. The store speaks them; so do the readers and the X client.

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

/// A finished job's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Followed,
    Requested,
    AlreadyFollowing,
    Blocked,
    Suspended,
    NotFound,
    Refused,
    Failed,
}

impl Outcome {
    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Followed => "followed",
            Outcome::Requested => "requested",
            Outcome::AlreadyFollowing => "already_following",
            Outcome::Blocked => "blocked",
            Outcome::Suspended => "suspended",
            Outcome::NotFound => "not_found",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }

    /// Every outcome, for validating `--outcome` lists.
    pub const ALL: [Outcome; 8] = [
        Outcome::Followed,
        Outcome::Requested,
        Outcome::AlreadyFollowing,
        Outcome::Blocked,
        Outcome::Suspended,
        Outcome::NotFound,
        Outcome::Refused,
        Outcome::Failed,
    ];
}
