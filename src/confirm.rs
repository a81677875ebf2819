//! Follows confirmed, not assumed. X's follows are eventually consistent, and a 200 does not
//! always become a follow: a follow X answered is looked for once it has settled — v1.1 in
//! `GET friendships/lookup` (100 targets a request, `following` or `following_requested`), v2
//! in the account's following list (`GET /2/users/:id/following`, 1000 a page, latest first;
//! a pending request to a protected account is not on it, so v2 never looks for `requested`
//! follows) — within the read endpoint's own budget ([`ReadBudget`]). What looking found goes to
//! the store, which confirms, looks again later, queues a re-send, or ends a job `unconfirmed`
//! ([`Store::settle_checks`]).

use std::collections::{HashMap, HashSet};

use crate::api::classify::{self, Verdict};
use crate::api::{self, Client};
use crate::config::{Account, ApiVersion, VerifySettings};
use crate::model::TargetKind;
use crate::reads::{READ_BACKOFF_MS, ReadBudget};
use crate::store::{Check, Settlement, Store, StoreError};
use crate::time::Clock;

/// Targets per friendships/lookup (X's maximum).
pub const LOOKUP_BATCH: usize = 100;

/// The most follows one pass of a v2 following list settles (its pages are read until all are
/// seen or the list ends).
const SWEEP_MAX: usize = 10_000;

/// What one step of confirmation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing of the account's is due.
    Nothing,
    /// Looked: what the store made of each follow looked for, with the outcome it had.
    Settled(Vec<(Check, Settlement)>),
    /// A page of the following list read; the pass goes on.
    Paged,
    /// Reads are paused (a 429, a failure) until this time (ms).
    Paused(i64),
    /// The read budget has room again at this time (ms).
    Wait(i64),
    /// X refused the account's token.
    AccountStopped(String),
    /// X refused the app.
    AppStopped(String),
}

/// A pass over an account's v2 following list: the follows it settles, and what was seen so far.
struct Sweep {
    due: Vec<Check>,
    seen: HashSet<String>,
    next: Option<String>,
}

/// The confirmer: the read budget, and the v2 passes under way.
pub struct Confirmer {
    budget: ReadBudget,
    version: ApiVersion,
    retry_after_ms: i64,
    sweeps: HashMap<i64, Sweep>,
    /// When each account's follows were last read (ms): the account read longest ago goes
    /// first, so that accounts take turns at the app's read budget.
    looked_at: HashMap<i64, i64>,
    /// The run has said that only follows to look for are left.
    pub announced: bool,
}

impl Confirmer {
    pub fn new(verify: &VerifySettings, version: ApiVersion) -> Confirmer {
        Confirmer {
            budget: ReadBudget::new(&verify.per_user, &verify.per_app),
            version,
            retry_after_ms: verify.retry_after.as_millis() as i64,
            sweeps: HashMap::new(),
            looked_at: HashMap::new(),
            announced: false,
        }
    }

    /// When the account's follows were last read (0: not by this run).
    pub fn looked_at(&self, account_id: i64) -> i64 {
        self.looked_at.get(&account_id).copied().unwrap_or(0)
    }

    /// When reads may go again (ms), if they are paused at `now`.
    pub fn paused(&self, now: i64) -> Option<i64> {
        self.budget.paused(now)
    }

    /// One read for the account's follows due at `now`: a lookup of up to 100 (v1.1), or a
    /// page of its following list (v2, `source_id` its own id), then what it found settled.
    pub async fn step(
        &mut self,
        store: &Store,
        client: &Client,
        clock: &Clock,
        account_id: i64,
        account: &Account,
        source_id: Option<&str>,
    ) -> Result<Step, StoreError> {
        let now = clock.now_ms();
        if let Some(t) = self.paused(now) {
            return Ok(Step::Paused(t));
        }
        match (self.version, source_id) {
            (ApiVersion::V2, Some(source)) => self.page(store, client, clock, account_id, account, source).await,
            // v2 before the account's id is known: nothing can be looked for yet.
            (ApiVersion::V2, None) => Ok(Step::Nothing),
            (ApiVersion::V1_1, _) => self.lookup(store, client, clock, account_id, account).await,
        }
    }

    async fn lookup(
        &mut self,
        store: &Store,
        client: &Client,
        clock: &Clock,
        account_id: i64,
        account: &Account,
    ) -> Result<Step, StoreError> {
        let due = store.due_checks(account_id, clock.now_ms(), LOOKUP_BATCH).await?;
        let Some(first) = due.first() else { return Ok(Step::Nothing) };
        // One kind a request: the first's, the others at the next step.
        let kind = first.kind;
        let due: Vec<Check> = due.into_iter().filter(|c| c.kind == kind).collect();
        if let Err(at) = self.budget.take(account_id, clock) {
            return Ok(Step::Wait(at));
        }
        let targets: Vec<String> = due.iter().map(|c| c.target.clone()).collect();
        self.looked_at.insert(account_id, clock.now_ms());
        let answer = client.lookup(account, kind, &targets).await;
        let resp = match self.answer(answer, &account.name, clock, client.clock_offset()) {
            Ok(r) => r,
            Err(step) => return Ok(step),
        };
        let Some(shown) = api::parse_lookup(&resp.body, kind) else {
            return Ok(self.back_off(&account.name, clock, "friendships/lookup answered something else"));
        };
        let seen: Vec<(i64, bool)> = due
            .iter()
            .map(|c| {
                let key = if kind == TargetKind::ScreenName { c.target.to_ascii_lowercase() } else { c.target.clone() };
                (c.job_id, shown.contains(&key))
            })
            .collect();
        settle(store, due, &seen, clock, self.retry_after_ms).await
    }

    async fn page(
        &mut self,
        store: &Store,
        client: &Client,
        clock: &Clock,
        account_id: i64,
        account: &Account,
        source: &str,
    ) -> Result<Step, StoreError> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.sweeps.entry(account_id) {
            let due = store.due_checks(account_id, clock.now_ms(), SWEEP_MAX).await?;
            if due.is_empty() {
                return Ok(Step::Nothing);
            }
            e.insert(Sweep { due, seen: HashSet::new(), next: None });
        }
        if let Err(at) = self.budget.take(account_id, clock) {
            return Ok(Step::Wait(at));
        }
        let next = self.sweeps.get(&account_id).and_then(|s| s.next.clone());
        self.looked_at.insert(account_id, clock.now_ms());
        let answer = client.following(account, source, next.as_deref()).await;
        let resp = match self.answer(answer, &account.name, clock, client.clock_offset()) {
            Ok(r) => r,
            Err(step) => return Ok(step),
        };
        let Some((ids, next)) = api::parse_following(&resp.body) else {
            return Ok(self.back_off(&account.name, clock, "the following list answered something else"));
        };
        let Some(sweep) = self.sweeps.get_mut(&account_id) else { return Ok(Step::Nothing) };
        sweep.seen.extend(ids);
        sweep.next = next;
        let all_seen = sweep.due.iter().all(|c| c.user_id.as_ref().is_some_and(|id| sweep.seen.contains(id)));
        if sweep.next.is_some() && !all_seen {
            return Ok(Step::Paged);
        }
        let Some(sweep) = self.sweeps.remove(&account_id) else { return Ok(Step::Nothing) };
        let seen: Vec<(i64, bool)> = sweep
            .due
            .iter()
            .map(|c| (c.job_id, c.user_id.as_ref().is_some_and(|id| sweep.seen.contains(id))))
            .collect();
        settle(store, sweep.due, &seen, clock, self.retry_after_ms).await
    }

    /// The answer when it is a 200; else what it means for reads (a pause, a stop).
    fn answer(
        &mut self,
        answer: Result<api::Response, api::Error>,
        account: &str,
        clock: &Clock,
        offset: i64,
    ) -> Result<api::Response, Step> {
        let now = clock.now_ms();
        let resp = match answer {
            Ok(r) if r.status == 200 => return Ok(r),
            Ok(r) => r,
            Err(e) => return Err(self.back_off(account, clock, &e.to_string())),
        };
        let (verdict, _) = classify::classify_for(self.version, resp.status, &resp.body, resp.rl_reset);
        Err(match verdict {
            Verdict::AppStopped(why) => Step::AppStopped(why),
            Verdict::AccountStopped(why) => Step::AccountStopped(why),
            Verdict::RateLimited { reset } => {
                // The reset is on X's clock.
                let until = reset.map(|r| (r - offset) * 1000).filter(|&t| t > now).unwrap_or(now + 60_000);
                tracing::info!(account, "confirming follows: rate limited (429); reads wait, follows go on");
                self.budget.pause_until(until);
                Step::Paused(until)
            }
            other => self.back_off(account, clock, &format!("HTTP {}: {other:?}", resp.status)),
        })
    }

    fn back_off(&mut self, account: &str, clock: &Clock, why: &str) -> Step {
        let until = clock.now_ms() + READ_BACKOFF_MS;
        tracing::info!(account, why = %crate::text::printable(why), "follows could not be looked for now; reads wait a little");
        self.budget.pause_until(until);
        Step::Paused(until)
    }
}

/// Settles what was seen, and pairs each settlement with its check.
async fn settle(
    store: &Store,
    due: Vec<Check>,
    seen: &[(i64, bool)],
    clock: &Clock,
    retry_after_ms: i64,
) -> Result<Step, StoreError> {
    let settled = store.settle_checks(seen, clock.now_ms(), retry_after_ms).await?;
    let by_id: HashMap<i64, Settlement> = settled.into_iter().collect();
    Ok(Step::Settled(due.into_iter().filter_map(|c| by_id.get(&c.job_id).map(|s| (c, *s))).collect()))
}
