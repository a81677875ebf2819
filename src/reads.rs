//! The budget of a read endpoint (`GET /2/users/by`, friendships/lookup, the following list):
//! paced with governor, the stack's pacing crate, which fits a read: a short window, in-memory
//! state a restart may forget (the worst it costs is a 429, which only costs a wait), and a 429
//! pauses reads, never follows. The follow budget is not here: it must survive restarts, so it
//! lives in the ledger (`schedule`).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Jitter, Quota, RateLimiter};

use crate::config::Window;
use crate::time::Clock;

/// How long reads wait after a failure with no reset to go by.
pub const READ_BACKOFF_MS: i64 = 5_000;

/// One read endpoint's budget: per account (keyed by account id) and for the app, and when
/// reads may go again after a 429 or a failure.
pub struct ReadBudget {
    per_account: DefaultKeyedRateLimiter<i64>,
    app: DefaultDirectRateLimiter,
    /// No read before this time (ms, on the run's clock): a 429's reset, or a back-off.
    paused_until: i64,
}

/// A window as governor's quota: one request every `length / limit`, no burst, so that no
/// interval of `length` holds more than `limit` (a burst would let more through; see
/// `schedule` for the arithmetic).
fn quota(w: &Window) -> Quota {
    let period = (w.length / w.limit.max(1)).max(Duration::from_millis(1));
    Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(NonZeroU32::MIN)
}

impl ReadBudget {
    pub fn new(per_user: &Window, per_app: &Window) -> ReadBudget {
        ReadBudget {
            per_account: RateLimiter::keyed(quota(per_user)),
            app: RateLimiter::direct(quota(per_app)),
            paused_until: 0,
        }
    }

    /// When reads may go again (ms), if they are paused at `now`.
    pub fn paused(&self, now: i64) -> Option<i64> {
        (self.paused_until > now).then_some(self.paused_until)
    }

    /// Pauses every read until `until` (ms).
    pub fn pause_until(&mut self, until: i64) {
        self.paused_until = self.paused_until.max(until);
    }

    /// Takes a read for `account_id` now, or says when there is room again (ms on `clock`,
    /// with governor's jitter). Never waits: the caller is the dispatcher, which has follows to
    /// send and answers to record meanwhile. (The account's cell is spent even when the app's
    /// then refuses: a read goes a period later, nothing worse.)
    pub fn take(&mut self, account_id: i64, clock: &Clock) -> Result<(), i64> {
        let jitter = Jitter::up_to(Duration::from_millis(50));
        let ready =
            self.per_account.check_key(&account_id).map_err(|n| n.wait_time_from(DefaultClock::default().now()));
        let ready = ready.and_then(|_| self.app.check().map_err(|n| n.wait_time_from(DefaultClock::default().now())));
        ready.map_err(|wait| clock.now_ms() + (jitter + wait).as_millis() as i64)
    }
}
