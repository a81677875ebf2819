//! The domain's types, below every layer that uses them: how a target is named, a job to queue,
//! what an import did, and how a finished job ended. The store speaks them; so do the readers and the X client.

/// How a target is named (`jobs.target_kind`; also the API's parameter name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(rename_all = "snake_case", type_name = "text")]
pub enum TargetKind {
    ScreenName,
    UserId,
}

impl TargetKind {
    /// Its name: the API's parameter, and the value stored.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::ScreenName => "screen_name",
            TargetKind::UserId => "user_id",
        }
    }
}

/// Where a job is (`jobs.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
#[sqlx(rename_all = "snake_case", type_name = "text")]
pub enum JobState {
    Queued,
    InFlight,
    Done,
}

impl JobState {
    /// Its name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::InFlight => "in_flight",
            JobState::Done => "done",
        }
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

/// A finished job's outcome (`jobs.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(rename_all = "snake_case", type_name = "text")]
pub enum Outcome {
    Followed,
    Requested,
    AlreadyFollowing,
    Blocked,
    Suspended,
    NotFound,
    Refused,
    Failed,
    /// X answered the follow (and its one re-send) with success, and never showed it.
    Unconfirmed,
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
            Outcome::Unconfirmed => "unconfirmed",
        }
    }

    /// Every outcome, for validating `--outcome` lists.
    pub const ALL: [Outcome; 9] = [
        Outcome::Followed,
        Outcome::Requested,
        Outcome::AlreadyFollowing,
        Outcome::Blocked,
        Outcome::Suspended,
        Outcome::NotFound,
        Outcome::Refused,
        Outcome::Failed,
        Outcome::Unconfirmed,
    ];
}

/// What one request's answer was (`attempts.result`): a job's outcome, or why the job goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(rename_all = "snake_case", type_name = "text")]
pub enum AttemptResult {
    Followed,
    Requested,
    AlreadyFollowing,
    Blocked,
    Suspended,
    NotFound,
    Refused,
    /// 429 (or 420).
    RateLimited,
    /// 403 + 161: the account's own follow limit.
    FollowLimit,
    /// 403 + 226: "looks automated".
    Automated,
    /// The account cannot go on (locked, suspended, bad or revoked credentials).
    AccountStopped,
    /// The app cannot go on (261, 416).
    AppStopped,
    /// 401 + 135: the clock was off.
    ClockSkew,
    /// 5xx, a time-out, a connection error.
    Transient,
    /// No answer was recorded (a crash, or an answer lost past the run's end): the request may
    /// have reached X.
    Unknown,
}

impl AttemptResult {
    /// The result of an answer that finished its job with outcome `o`. `Failed` is no answer's
    /// result (a job fails after its last transient one), so it has none.
    pub fn finishing(o: Outcome) -> Option<AttemptResult> {
        Some(match o {
            Outcome::Followed => AttemptResult::Followed,
            Outcome::Requested => AttemptResult::Requested,
            Outcome::AlreadyFollowing => AttemptResult::AlreadyFollowing,
            Outcome::Blocked => AttemptResult::Blocked,
            Outcome::Suspended => AttemptResult::Suspended,
            Outcome::NotFound => AttemptResult::NotFound,
            Outcome::Refused => AttemptResult::Refused,
            Outcome::Failed | Outcome::Unconfirmed => return None,
        })
    }
}

/// One rolling window as a claim enforces it: at most `limit` requests in any `window_ms`
/// (X's length plus the safety margin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub window_ms: i64,
}

/// Every window a claim is checked against: the account's and the app's. A request goes only
/// when every one of them has room.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Budget {
    pub user: Vec<Quota>,
    pub app: Vec<Quota>,
}

impl Budget {
    /// The longest window of either scope, ms: how far back the ledger matters.
    pub fn longest_ms(&self) -> i64 {
        self.user.iter().chain(&self.app).map(|q| q.window_ms).max().unwrap_or(0)
    }
}

/// What X said about a screen name (`users.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(rename_all = "snake_case", type_name = "text")]
pub enum UserState {
    Found,
    NotFound,
    Suspended,
}

/// A screen name resolved: its id when found, and whether the account is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub username: String,
    pub user_id: String,
    pub state: UserState,
    pub protected: bool,
}
