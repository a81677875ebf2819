//! The dispatcher's confirmations (`verify.confirm`): the follows due to be looked for, looked
//! for within the read budget between follows, and what that changed told to the scheduler
//! (a re-send is a job queued again) and to the display.

use tracing::{info, warn};

use super::{Dispatcher, Ending};
use crate::confirm::{Confirmer, Step};
use crate::model::Outcome;
use crate::store::{Settled, Settlement, StoreError};
use crate::text::printable;

/// A read out on its task: the confirmer goes with it and comes back, with the account read and
/// what the read found.
pub(super) type Reading = tokio::task::JoinHandle<(Confirmer, i64, Result<Step, StoreError>)>;

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

    /// Takes in a read that came back, then starts the next: one read at a time, on a task
    /// of its own (a slow read holds no follow back), for the account with follows due that was
    /// read longest ago.
    pub(super) async fn confirm_due(&mut self, now: i64) -> anyhow::Result<Confirming> {
        let mut out = Confirming::default();
        if !self.settings.verify.confirm {
            return Ok(out);
        }
        if self.reading.as_ref().is_some_and(|r| r.is_finished()) {
            let Some(reading) = self.reading.take() else { return Ok(out) };
            let (confirmer, id, step) = reading.await?;
            self.confirmer = Some(confirmer);
            if let Some(e) = self.absorb_step(id, step?, now, &mut out).await? {
                out.ending = Some(e);
                return Ok(out);
            }
        }
        if self.reading.is_some() {
            // Its end wakes the dispatcher.
            return Ok(out);
        }
        let mut due: Vec<i64> = self.checks.iter().filter(|(_, t)| **t <= now).map(|(id, _)| *id).collect();
        if let Some(c) = &self.confirmer {
            due.sort_by_key(|id| (c.looked_at(*id), *id));
        }
        self.announce_waiting(now).await?;
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
            let Some(mut confirmer) = self.confirmer.take() else { return Ok(out) };
            let source = self.sources.get(&id).cloned();
            let (store, client, clock) = (self.store.clone(), self.client.clone(), self.clock.clone());
            let (done, hold) = (self.read_done.clone(), self.clock.hold());
            self.reading = Some(tokio::spawn(async move {
                let step = confirmer.step(&store, &client, &clock, id, &account, source.as_deref()).await;
                drop(hold);
                done.notify_one();
                (confirmer, id, step)
            }));
            return Ok(out);
        }
        let next = self.checks.iter().filter(|(id, _)| self.can_check(**id)).map(|(_, t)| *t).min();
        out.wake = match (out.wake, next) {
            (Some(a), Some(b)) => Some(a.min(b.max(now))),
            (a, b) => a.or(b.map(|t| t.max(now))),
        };
        Ok(out)
    }

    /// What a read found, told to the scheduler, the display and the log. An ending when X
    /// refused the app.
    async fn absorb_step(
        &mut self,
        id: i64,
        step: Step,
        now: i64,
        out: &mut Confirming,
    ) -> anyhow::Result<Option<Ending>> {
        let name = self.accounts.get(&id).map(|a| a.name.clone()).unwrap_or_default();
        match step {
            Step::Nothing => self.reload_checks().await?,
            Step::Paged => out.wake = Some(now),
            Step::Settled(settled) => {
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
                                warn!(account = %name, target = %printable(&check.target), "follow never showed at X, even sent again: unconfirmed (if X shows follows later than [verify] settle, raise it; `followq verify` looks again)");
                            }
                        }
                    }
                }
                info!(
                    account = %name,
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
                self.reload_checks().await?;
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
            }
            Step::AccountStopped(why) => {
                warn!(account = %name, reason = %printable(&why), "account stopped");
                self.store.stop_account(id, &why).await?;
                self.sched.stopped(id, &why);
            }
            Step::AppStopped(why) => return Ok(Some(Ending::AppStopped(why))),
        }
        Ok(None)
    }
}
