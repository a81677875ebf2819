//! v2's two needs before a follow: the account's own X id (`GET /2/users/me`, once) and the
//! targets' ids (usernames resolved just ahead of the follows that need them).

use tracing::{info, warn};

use super::{Dispatcher, Ending, refresh_queue};
use crate::api::classify::Verdict;
use crate::resolve::Step;
use crate::store::token_digest;
use crate::text::printable;

impl Dispatcher<'_> {
    /// v2: the account's own X id (the path of its follows), asked of `GET /2/users/me` once, the
    /// first time it sends, and kept in the database. A token X refuses stops the account; an
    /// app X refuses ends the run before any follow; a failure waits a back-off.
    pub(super) async fn identify(&mut self, id: i64, now: i64) -> anyhow::Result<Option<Ending>> {
        if self.resolver.is_none() || self.sources.contains_key(&id) {
            return Ok(None);
        }
        let Some(account) = self.accounts.get(&id).cloned() else { return Ok(None) };
        let resp = match self.client.me(&account).await {
            Ok(r) => r,
            Err(e) => {
                let why = format!("GET /2/users/me failed ({e}); trying again shortly");
                warn!(account = %account.name, reason = %printable(&why), "account waits");
                self.sched.paused(id, now + self.settings.retry.base.as_millis() as i64, &why, None);
                return Ok(None);
            }
        };
        if let (200..=299, Some((x_id, username))) = (resp.status, crate::api::parse_me(&resp.body)) {
            info!(account = %account.name, x_username = %printable(&username), x_id = %printable(&x_id), "account identified (GET /2/users/me)");
            self.store.set_identity(id, &x_id, &username, &token_digest(&account.token)).await?;
            self.sources.insert(id, x_id);
            return Ok(None);
        }
        match crate::api::classify::classify_v2(resp.status, &resp.body, resp.rl_reset).0 {
            Verdict::AppStopped(why) => return Ok(Some(Ending::AppStopped(why))),
            Verdict::AccountStopped(why) => {
                warn!(account = %account.name, reason = %printable(&why), "account stopped");
                self.store.stop_account(id, &why).await?;
                self.sched.stopped(id, &why);
            }
            other => {
                let why = format!("GET /2/users/me answered HTTP {} ({other:?}); trying again shortly", resp.status);
                warn!(account = %account.name, reason = %printable(&why), "account waits");
                self.sched.paused(id, now + self.settings.retry.max.as_millis() as i64, &why, None);
            }
        }
        Ok(None)
    }

    /// v2: resolves the account's next usernames if the follows about to go need them. Jobs
    /// whose names X does not know (or has suspended) end here, without a follow request.
    pub(super) async fn resolve_ahead(&mut self, id: i64) -> anyhow::Result<Ahead> {
        let (Some(resolver), Some(account)) = (self.resolver.as_mut(), self.accounts.get(&id)) else {
            return Ok(Ahead::Go);
        };
        if self.resolved_ahead.get(&id).is_some_and(|&n| n > 0) {
            return Ok(Ahead::Go);
        }
        match resolver.step(self.store, self.client, &self.clock, id, account, true).await? {
            Step::Nothing => {
                self.resolved_ahead.insert(id, crate::resolve::BATCH as i64);
            }
            Step::Paused(_) => {}
            // Names wait for the read budget; the follows whose names are known go meanwhile.
            Step::Wait(t) => return Ok(Ahead::Wait(t)),
            Step::Resolved { ended, .. } => {
                // Jobs that ended left the queue: later ones, perhaps unresolved, moved up.
                let mine = ended.iter().filter(|(a, _)| *a == id).count() as i64;
                self.resolved_ahead.insert(id, crate::resolve::BATCH as i64 - mine);
                for (account_id, outcome) in &ended {
                    *self.outcomes.entry(*account_id).or_default().entry(outcome.as_str()).or_default() += 1;
                }
                if !ended.is_empty() {
                    refresh_queue(self.store, &mut self.sched, self.clock.now_ms()).await?;
                }
            }
            Step::AccountStopped(why) => {
                warn!(account = %account.name, reason = %printable(&why), "account stopped");
                self.store.stop_account(id, &why).await?;
                self.sched.stopped(id, &why);
            }
            Step::AppStopped(why) => return Ok(Ahead::End(Ending::AppStopped(why))),
        }
        Ok(Ahead::Go)
    }
}

/// What resolving ahead left for the claim.
pub(super) enum Ahead {
    /// Claim.
    Go,
    /// Claim what is resolved; names wait for the read budget until then.
    Wait(i64),
    /// The run ends.
    End(Ending),
}
