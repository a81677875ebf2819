//! The dispatcher's confirmations (`verify.confirm`): the follows due to be looked for, looked
//! for within the read budget between follows, and what that changed told to the scheduler
//! (a re-send is a job queued again) and to the display.

use tracing::{info, warn};

use super::{Dispatcher, Ending};
use crate::confirm::Step;
use crate::model::Outcome;
use crate::store::{Settled, Settlement};
use crate::text::printable;

/// What a turn of confirmation left.
#[derive(Debug, Default)]
pub(super) struct Confirming {
    /// When something is next due (a look, or room in the read budget).
    pub(super) wake: Option<i64>,
    pub(super) ending: Option<Ending>,
}

impl Dispatcher<'_> {
    /// Reloads when each account's next look is due (after a look, or at the start).
    pub(super) async fn reload_checks(&mut self) -> anyhow::Result<()> {
        self.checks = self.store.next_checks().await?.into_iter().collect();
        Ok(())
    }

    /// Whether this run can look for the account's follows: configured and not stopped.
    fn can_check(&self, id: i64) -> bool {
        self.accounts.contains_key(&id) && self.sched.account(id).is_some_and(|a| a.stopped.is_none())
    }

    /// Follows are still to be looked for (by accounts that can).
    pub(super) fn awaiting_checks(&self) -> bool {
        self.checks.keys().any(|id| self.can_check(*id))
    }

    /// Notes a follow to look for once it has settled (its answer was just recorded).
    pub(super) fn check_later(&mut self, account_id: i64, at: i64) {
        let next = self.checks.entry(account_id).or_insert(at);
        *next = (*next).min(at);
    }

    /// Says once, when every follow is sent and only follows to look for are left, how many
    /// and when the next look is (the bars stand at 100 % meanwhile).
    async fn announce_waiting(&mut self, now: i64) -> anyhow::Result<()> {
        let sending =
            !self.requests.is_empty() || self.sched.accounts().iter().any(|a| a.queued > 0 && a.stopped.is_none());
        let Some(c) = &self.confirmer else { return Ok(()) };
        if c.announced || sending || !self.awaiting_checks() {
            return Ok(());
        }
        let awaiting: i64 = self
            .store
            .confirmations()
            .await?
            .iter()
            .filter(|(id, _)| self.can_check(*id))
            .map(|(_, c)| c.awaiting)
            .sum();
        let next = self.checks.iter().filter(|(id, _)| self.can_check(**id)).map(|(_, t)| *t).min().unwrap_or(now);
        info!(
            awaiting,
            next_look_in = %crate::time::human_ms((next - now).max(0)),
            "every follow is sent; waiting to look for those X has not shown yet"
        );
        if let Some(c) = self.confirmer.as_mut() {
            c.announced = true;
        }
        Ok(())
    }

    /// One read for each account with follows due at `now`, within the read budget.
    pub(super) async fn confirm_due(&mut self, now: i64) -> anyhow::Result<Confirming> {
        let mut out = Confirming::default();
        if self.confirmer.is_none() {
            return Ok(out);
        }
        let mut due: Vec<i64> = self.checks.iter().filter(|(_, t)| **t <= now).map(|(id, _)| *id).collect();
        if let Some(c) = &self.confirmer {
            due.sort_by_key(|id| (c.looked_at(*id), *id));
        }
        self.announce_waiting(now).await?;
        let mut looked = false;
        for id in due {
            let Some(account) = self.accounts.get(&id).cloned() else { continue };
            if !self.can_check(id) {
                continue;
            }
            if self.resolver.is_some() && !self.sources.contains_key(&id) {
                if let Some(e) = self.identify(id, now).await? {
                    out.ending = Some(e);
                    return Ok(out);
                }
                if !self.sources.contains_key(&id) {
                    // Not identified (it said why): looked for again a back-off later.
                    self.checks.insert(id, now + crate::reads::READ_BACKOFF_MS);
                    continue;
                }
            }
            let source = self.sources.get(&id).cloned();
            let Some(confirmer) = self.confirmer.as_mut() else { return Ok(out) };
            let step = confirmer.step(self.store, self.client, &self.clock, id, &account, source.as_deref()).await?;
            match step {
                Step::Nothing => looked = true,
                Step::Paged => out.wake = Some(now),
                Step::Settled(settled) => {
                    looked = true;
                    let counts = Settled::of(&settled.iter().map(|(c, s)| (c.job_id, *s)).collect::<Vec<_>>());
                    let mine = self.outcomes.entry(id).or_default();
                    for (check, s) in &settled {
                        match s {
                            Settlement::Confirmed => *self.confirmed.entry(id).or_default() += 1,
                            Settlement::Later => {}
                            // The job left its outcome: queued again, or `unconfirmed`.
                            Settlement::Resent | Settlement::Unconfirmed => {
                                *mine.entry(check.outcome.as_str()).or_default() -= 1;
                                if *s == Settlement::Unconfirmed {
                                    *mine.entry(Outcome::Unconfirmed.as_str()).or_default() += 1;
                                    warn!(account = %account.name, target = %printable(&check.target), "follow never showed at X, even sent again: unconfirmed");
                                }
                            }
                        }
                    }
                    info!(
                        account = %account.name,
                        confirmed = counts.confirmed,
                        not_yet = counts.later,
                        sent_again = counts.resent,
                        unconfirmed = counts.unconfirmed,
                        "follows looked for at X"
                    );
                    // Queued again by this run, to go at once: the scheduler counts them in.
                    for _ in 0..counts.resent {
                        self.sched.requeued(id, now);
                    }
                }
                // Looked for again when reads may go (the store's times are kept).
                Step::Wait(t) => {
                    if let Some(next) = self.checks.get_mut(&id) {
                        *next = (*next).max(t);
                    }
                }
                Step::Paused(t) => {
                    for next in self.checks.values_mut() {
                        *next = (*next).max(t);
                    }
                    break;
                }
                Step::AccountStopped(why) => {
                    warn!(account = %account.name, reason = %printable(&why), "account stopped");
                    self.store.stop_account(id, &why).await?;
                    self.sched.stopped(id, &why);
                }
                Step::AppStopped(why) => {
                    out.ending = Some(Ending::AppStopped(why));
                    return Ok(out);
                }
            }
        }
        if looked {
            self.reload_checks().await?;
        }
        let next = self.checks.iter().filter(|(id, _)| self.can_check(**id)).map(|(_, t)| *t).min();
        out.wake = match (out.wake, next) {
            (Some(a), Some(b)) => Some(a.min(b.max(now))),
            (a, b) => a.or(b.map(|t| t.max(now))),
        };
        Ok(out)
    }
}
