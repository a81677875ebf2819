//! What confirming follows reads and finds, whatever the engine: a follow to look for, what
//! looking did to it, the counts `status` shows, and the columns every query of follows to
//! look for starts from (the same SQL on both engines).

use crate::model::{Outcome, TargetKind};

/// A follow to look for.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Check {
    pub job_id: i64,
    pub kind: TargetKind,
    pub target: String,
    /// The target's X id: the target itself when named by id, its resolution when named by a
    /// screen name X found (v2 lists follows by id).
    pub user_id: Option<String>,
    pub outcome: Outcome,
}

impl Settled {
    /// The counts of a set of settlements.
    pub fn of(all: &[(i64, Settlement)]) -> Settled {
        let mut s = Settled::default();
        for (_, x) in all {
            match x {
                Settlement::Confirmed => s.confirmed += 1,
                Settlement::Later => s.later += 1,
                Settlement::Resent => s.resent += 1,
                Settlement::Unconfirmed => s.unconfirmed += 1,
            }
        }
        s
    }
}

/// What looking for a set of follows changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Seen at X.
    pub confirmed: u64,
    /// Not seen yet; looked for again at `retry_after`.
    pub later: u64,
    /// Not seen by `retry_after`: back in the queue, to be sent again once.
    pub resent: u64,
    /// Not seen after the re-send either: ended `unconfirmed`.
    pub unconfirmed: u64,
}

/// What looking for one follow did to its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    Confirmed,
    Later,
    Resent,
    Unconfirmed,
}

/// Per account: follows confirmed, and follows awaiting a look (those that ended unconfirmed
/// are an outcome, counted with the others).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confirmations {
    pub confirmed: i64,
    pub awaiting: i64,
}

/// The columns of a [`Check`], from `jobs j`: the start of every query that reads follows to
/// look for.
macro_rules! check_from {
    () => {
        "select j.id as job_id, j.target_kind as kind, j.target, j.outcome,
                case when j.target_kind = 'user_id' then j.target
                     else (select u.user_id from users u where u.username = j.target and u.state = 'found') end
                as user_id
         from jobs j "
    };
}

/// Follows looked for per statement (bound values stay well under SQLite's limit).
pub const SETTLE_BATCH: usize = 500;

pub(crate) use check_from;
