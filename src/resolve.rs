//! Screen names to ids, ahead of the v2 follows that need them: `GET /2/users/by`, up to 100
//! names a request, with its own read budget ([`ReadBudget`]).

use crate::api::classify::{self, Verdict};
use crate::api::{self, Client};
use crate::config::{Account, Window};
use crate::model::Outcome;
use crate::reads::{READ_BACKOFF_MS, ReadBudget};
use crate::store::{Store, StoreError};
use crate::time::Clock;

/// Names per `GET /2/users/by` (X's maximum).
pub const BATCH: usize = 100;

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

/// The resolver: `GET /2/users/by`'s budget.
pub struct Resolver {
    budget: ReadBudget,
}

impl Resolver {
    pub fn new(per_user: &Window, per_app: &Window) -> Resolver {
        Resolver { budget: ReadBudget::new(per_user, per_app) }
    }

    /// When reads may go again (ms), if they are paused at `now`.
    pub fn paused(&self, now: i64) -> Option<i64> {
        self.budget.paused(now)
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
        if let Err(at) = self.budget.take(account_id, clock) {
            return Ok(Step::Wait(at));
        }
        let answer = client.users_by(account, &names).await;
        let now = clock.now_ms();
        let resp = match answer {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(account = %account.name, error = %e, "resolving usernames failed; reads wait a little");
                self.budget.pause_until(now + READ_BACKOFF_MS);
                return Ok(Step::Paused(now + READ_BACKOFF_MS));
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
                self.budget.pause_until(until);
                Step::Paused(until)
            }
            other => {
                tracing::info!(account = %account.name, status = resp.status, answer = ?other, "usernames could not be resolved now; reads wait a little");
                self.budget.pause_until(now + READ_BACKOFF_MS);
                Step::Paused(now + READ_BACKOFF_MS)
            }
        })
    }
}
