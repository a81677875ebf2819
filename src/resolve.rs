//! Screen names to ids, ahead of the v2 follows that need them: `GET /2/users/by`, up to 100
//! names a request, with its own budget. Paced with governor, the stack's pacing crate, which
//! fits a read endpoint: a short window, in-memory state a restart may forget (the worst it
//! costs is a 429, which only costs a wait), and a 429 pauses reads, never follows. The follow
//! budget is not here: it must survive restarts, so it lives in the ledger (`schedule`).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Jitter, Quota, RateLimiter};

use crate::api::classify::{self, Verdict};
use crate::api::{self, Client};
use crate::config::{Account, Window};
use crate::model::Outcome;
use crate::store::{Store, StoreError};
use crate::time::Clock;

/// Names per `GET /2/users/by` (X's maximum).
pub const BATCH: usize = 100;

/// How long reads wait after a failure with no reset to go by.
const READ_BACKOFF_MS: i64 = 5_000;

/// What one step of resolution did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing left to resolve for the account.
    Nothing,
    /// These names were resolved (`ended`: jobs finished without a request, by outcome).
    Resolved { names: usize, ended: Vec<(i64, Outcome)> },
    /// Reads are paused (a 429, a failure) until this time (ms).
    Paused(i64),
    /// The read budget (the account's or the app's) has room again at this time (ms).
    Wait(i64),
    /// X refused the account's token.
    AccountStopped(String),
    /// X refused the app.
    AppStopped(String),
}

/// The resolver: the read budget per account and for the app, and when reads may go again.
pub struct Resolver {
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

impl Resolver {
    pub fn new(per_user: &Window, per_app: &Window) -> Resolver {
        Resolver {
            per_account: RateLimiter::keyed(quota(per_user)),
            app: RateLimiter::direct(quota(per_app)),
            paused_until: 0,
        }
    }

    /// When reads may go again (ms), if they are paused at `now`.
    pub fn paused(&self, now: i64) -> Option<i64> {
        (self.paused_until > now).then_some(self.paused_until)
    }

    /// Resolves the next (up to [`BATCH`]) unresolved names of the account's queue — with
    /// `ahead_only`, only when the next [`BATCH`] queued jobs need one — : waits for the read
    /// budget (the account's, then the app's), asks X, and records the answer.
    pub async fn step(
        &mut self,
        store: &Store,
        client: &Client,
        clock: &Clock,
        account_id: i64,
        account: &Account,
        ahead_only: bool,
    ) -> Result<Step, StoreError> {
        if let Some(t) = self.paused(clock.now_ms()) {
            return Ok(Step::Paused(t));
        }
        let names = store.unresolved_names(account_id, BATCH, ahead_only).await?;
        if names.is_empty() {
            return Ok(Step::Nothing);
        }
        // Never waited for here: the caller is the dispatcher, which has follows to send and
        // answers to record meanwhile. Not ready yet → `Wait` with governor's own time, plus its
        // jitter. (The account's cell is spent even when the app's then refuses: a read goes a
        // period later, nothing worse.)
        let jitter = Jitter::up_to(Duration::from_millis(50));
        let ready =
            self.per_account.check_key(&account_id).map_err(|n| n.wait_time_from(DefaultClock::default().now()));
        let ready = ready.and_then(|_| self.app.check().map_err(|n| n.wait_time_from(DefaultClock::default().now())));
        if let Err(wait) = ready {
            return Ok(Step::Wait(clock.now_ms() + (jitter + wait).as_millis() as i64));
        }
        let answer = client.users_by(account, &names).await;
        let now = clock.now_ms();
        let resp = match answer {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(account = %account.name, error = %e, "resolving usernames failed; reads wait a little");
                self.paused_until = now + READ_BACKOFF_MS;
                return Ok(Step::Paused(self.paused_until));
            }
        };
        if (200..300).contains(&resp.status)
            && let Some(users) = api::parse_users(&resp.body, &names)
        {
            let ended = store.record_users(&users, now).await?;
            tracing::debug!(account = %account.name, names = names.len(), ended = ended.len(), "usernames resolved");
            return Ok(Step::Resolved { names: users.len(), ended });
        }
        let (verdict, _) = classify::classify_v2(resp.status, &resp.body, resp.rl_reset);
        Ok(match verdict {
            Verdict::AppStopped(why) => Step::AppStopped(why),
            Verdict::AccountStopped(why) => Step::AccountStopped(why),
            Verdict::RateLimited { reset } => {
                let until =
                    reset.map(|r| (r - client.clock_offset()) * 1000).filter(|&t| t > now).unwrap_or(now + 60_000);
                tracing::info!(account = %account.name, "usernames: rate limited (429); reads wait, follows go on");
                self.paused_until = until;
                Step::Paused(until)
            }
            other => {
                tracing::info!(account = %account.name, status = resp.status, answer = ?other, "usernames could not be resolved now; reads wait a little");
                self.paused_until = now + READ_BACKOFF_MS;
                Step::Paused(self.paused_until)
            }
        })
    }
}
