//! What an answer means: the record of an attempt, the job's next state, and what happens to
//! the account (161, 226, 429, stops) — decided at a given `now`, so every policy is tested in
//! microseconds.

use rand::Rng;

use crate::api::classify::{self, Outcome, Verdict};
use crate::api::{self, Client};
use crate::config::Account;
use crate::model::TargetKind;
use crate::store::{Claim, Record, RecordAccount, RecordJob};
use crate::time::Clock;

/// A cooldown after code 226 ("looks automated"), as a share of the window (1 h of 24 h).
pub(super) const COOLDOWN_SHARE: f64 = 1.0 / 24.0;

/// What a request task needs.
#[derive(Clone)]
pub(super) struct TaskCtx {
    pub(super) client: Client,
    /// What "now" is when an answer comes back.
    pub(super) clock: Clock,
    pub(super) retry: crate::config::RetrySettings,
    /// How long a code 226 pauses the account.
    pub(super) cooldown_ms: i64,
    /// The account's pace factor when the request was claimed (a 226 doubles it).
    pub(super) pace_factor: f64,
    /// When the account's oldest send in the window leaves it (for a 161 pause).
    pub(super) window_frees: i64,
    /// A follow X answered is looked for this long after (ms; None: `verify.confirm` is off).
    pub(super) settle_ms: Option<i64>,
}

impl TaskCtx {
    /// Sends one request (from `source_id`, the account's X id, in v2) and works out what its
    /// answer means; the dispatcher records it.
    pub(super) async fn attempt(&self, account: &Account, source_id: &str, claim: &Claim) -> (Record, Verdict) {
        // v2 follows by id: a job named by a screen name goes by the id it was resolved to (the
        // claim takes no other in v2).
        let (kind, value) = match &claim.resolved {
            Some(id) => (TargetKind::UserId, id.as_str()),
            None => (claim.kind, claim.target.as_str()),
        };
        let target = api::Target { kind, value, notify: claim.notify };
        let result = self.client.follow(account, source_id, target).await;
        let (verdict, record) = self.decide(claim, result, self.clock.now_ms());
        (record, verdict)
    }

    /// The record for an answer (or a transport failure) that came back at `now`.
    fn decide(&self, claim: &Claim, result: Result<api::Response, api::Error>, now: i64) -> (Verdict, Record) {
        let mut rec = Record::for_claim(claim);
        let verdict = match result {
            Err(e) => {
                rec.message = e.to_string();
                Verdict::Transient(e.to_string())
            }
            Ok(resp) => {
                let (verdict, err) =
                    classify::classify_for(self.client.version(), resp.status, &resp.body, resp.rl_reset);
                rec.http_status = Some(resp.status as i64);
                rec.error_code = err.code;
                rec.message = err.message;
                rec.rl_limit = resp.rl_limit;
                rec.rl_remaining = resp.rl_remaining;
                rec.rl_reset = resp.rl_reset;
                // An answer that fits no known shape is kept whole, not guessed at.
                if !err.recognised && !(200..300).contains(&resp.status) || verdict == Verdict::Done(Outcome::Refused) {
                    rec.body = api::truncated(&resp.body, api::MAX_KEPT).to_string();
                }
                if verdict == Verdict::ClockSkew
                    && let Some(date) = resp.date
                {
                    self.client.correct_clock(date, now);
                }
                // Headers win over our own accounting: nothing left means wait for the reset.
                if resp.rl_remaining == Some(0)
                    && let Some(reset) = resp.rl_reset
                {
                    let until = self.server_to_local_ms(reset);
                    if until > now {
                        rec.account = Some(RecordAccount::Pause {
                            until,
                            reason: "x-rate-limit-remaining: 0".into(),
                            pace_factor: None,
                        });
                    }
                }
                verdict
            }
        };
        rec.result = verdict.result();
        match &verdict {
            Verdict::Done(o) => {
                rec.job = RecordJob::Done(*o);
                // What X says it did is looked for: a follow, and (v1.1, whose lookup shows
                // them) a request to a protected account. v2's following list shows no requests.
                let visible = match o {
                    Outcome::Followed => true,
                    Outcome::Requested => self.client.version() == crate::config::ApiVersion::V1_1,
                    _ => false,
                };
                if visible {
                    rec.check_after = self.settle_ms;
                }
            }
            Verdict::Transient(_) | Verdict::ClockSkew => {
                let failures = claim.failures + 1;
                if failures >= self.retry.max_attempts as i64 {
                    rec.job = RecordJob::Done(Outcome::Failed);
                } else {
                    let not_before = if verdict == Verdict::ClockSkew { 0 } else { now + self.backoff(claim.failures) };
                    rec.job = RecordJob::Requeue { not_before, failure: true };
                }
            }
            Verdict::RateLimited { reset } => {
                let until = reset
                    .map(|r| self.server_to_local_ms(r))
                    .filter(|&t| t > now)
                    .unwrap_or(now + self.backoff(0).max(60_000.min(self.cooldown_ms)));
                rec.account =
                    Some(RecordAccount::Pause { until, reason: "rate limited (429)".into(), pace_factor: None });
            }
            Verdict::FollowLimit => {
                let until = self.window_frees.max(now + self.cooldown_ms);
                rec.account = Some(RecordAccount::Pause {
                    until,
                    reason: "X's follow limit for this account (code 161)".into(),
                    pace_factor: None,
                });
            }
            Verdict::Automated => {
                let factor = (self.pace_factor * 2.0).min(16.0);
                rec.account = Some(RecordAccount::Pause {
                    until: now + self.cooldown_ms,
                    reason: format!("X says this looks automated (code 226): cooling down, then {factor}x slower"),
                    pace_factor: Some(factor),
                });
            }
            Verdict::AccountStopped(why) => rec.account = Some(RecordAccount::Stop { reason: why.clone() }),
            Verdict::AppStopped(_) => {}
        }
        (verdict, rec)
    }

    /// Exponential backoff with full jitter: base·2^n, capped, then a random share of it.
    fn backoff(&self, failures: i64) -> i64 {
        let base = self.retry.base.as_millis() as f64;
        let cap = self.retry.max.as_millis() as f64;
        let exp = (base * 2f64.powi(failures.clamp(0, 30) as i32)).min(cap);
        let jittered = exp * rand::rng().random_range(0.5..=1.0);
        jittered as i64
    }

    /// A server epoch-seconds time → local ms, through the learned clock offset.
    fn server_to_local_ms(&self, server_secs: i64) -> i64 {
        (server_secs - self.client.clock_offset()) * 1000
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn ctx() -> TaskCtx {
        let mut settings = crate::config::Settings::default();
        // v1.1's answers (codes 161, 226, 135): the policy is the same for v2's.
        settings.api.version = crate::config::ApiVersion::V1_1;
        settings.retry.base = Duration::from_secs(2);
        settings.retry.max = Duration::from_secs(300);
        settings.retry.max_attempts = 5;
        TaskCtx {
            client: Client::new(&settings).unwrap(),
            clock: Clock::virtual_at(NOW),
            retry: settings.retry.clone(),
            cooldown_ms: HOUR,
            pace_factor: 2.0,
            window_frees: NOW + 5 * HOUR,
            settle_ms: Some(120_000),
        }
    }

    fn claim(failures: i64) -> Claim {
        Claim {
            attempt_id: 9,
            job_id: 4,
            account_id: 1,
            kind: TargetKind::ScreenName,
            target: "bob".into(),
            resolved: None,
            notify: false,
            sent_at: NOW - 500,
            failures,
        }
    }

    fn answer(status: u16, code: i64, headers: (Option<i64>, Option<i64>)) -> Result<api::Response, api::Error> {
        Ok(api::Response {
            status,
            body: format!(r#"{{"errors":[{{"code":{code},"message":"m"}}]}}"#),
            date: Some(NOW / 1000 + 90),
            rl_limit: headers.0.map(|_| 400),
            rl_remaining: headers.0,
            rl_reset: headers.1,
        })
    }

    fn pause(rec: &Record) -> (i64, Option<f64>) {
        match &rec.account {
            Some(RecordAccount::Pause { until, pace_factor, .. }) => (*until, *pace_factor),
            other => panic!("not a pause: {other:?}"),
        }
    }

    /// Issue 16: what X says it did is looked for once settled: a follow, and in v1.1 a request
    /// (its lookup shows them); nothing else, and nothing when confirming is off.
    #[test]
    fn a_follow_and_a_v1_1_request_are_looked_for_once_settled() {
        let ok = |body: &str| {
            Ok(api::Response {
                status: 200,
                body: body.into(),
                date: None,
                rl_limit: None,
                rl_remaining: None,
                rl_reset: None,
            })
        };
        let followed = ctx().decide(&claim(0), ok(r#"{"id_str":"1","protected":false}"#), NOW).1;
        assert_eq!((followed.job, followed.check_after), (RecordJob::Done(Outcome::Followed), Some(120_000)));
        let requested =
            ctx().decide(&claim(0), ok(r#"{"id_str":"1","protected":true,"follow_request_sent":true}"#), NOW).1;
        assert_eq!((requested.job, requested.check_after), (RecordJob::Done(Outcome::Requested), Some(120_000)));
        let blocked = ctx().decide(&claim(0), answer(403, 162, (None, None)), NOW).1;
        assert_eq!(blocked.check_after, None);
        let off = TaskCtx { settle_ms: None, ..ctx() };
        assert_eq!(off.decide(&claim(0), ok(r#"{"id_str":"1"}"#), NOW).1.check_after, None);
    }

    #[test]
    fn code_161_pauses_until_the_window_frees_and_the_job_waits_without_a_failure() {
        let (verdict, rec) = ctx().decide(&claim(0), answer(403, 161, (None, None)), NOW);
        assert_eq!(verdict, Verdict::FollowLimit);
        assert_eq!(pause(&rec), (NOW + 5 * HOUR, None));
        assert_eq!(rec.job, RecordJob::Requeue { not_before: 0, failure: false });
    }

    #[test]
    fn code_226_cools_the_account_down_and_doubles_its_pace_up_to_16() {
        let (_, rec) = ctx().decide(&claim(0), answer(403, 226, (None, None)), NOW);
        assert_eq!(pause(&rec), (NOW + HOUR, Some(4.0)));
        let slow = TaskCtx { pace_factor: 16.0, ..ctx() };
        assert_eq!(pause(&slow.decide(&claim(0), answer(403, 226, (None, None)), NOW).1).1, Some(16.0));
    }

    #[test]
    fn a_429_waits_for_its_reset_or_backs_off_without_a_failure() {
        let reset = NOW / 1000 + 600;
        let (verdict, rec) = ctx().decide(&claim(3), answer(429, 88, (Some(0), Some(reset))), NOW);
        assert_eq!(verdict, Verdict::RateLimited { reset: Some(reset) });
        assert_eq!(pause(&rec).0, reset * 1000);
        assert_eq!(rec.job, RecordJob::Requeue { not_before: 0, failure: false });
        // No reset: the shorter of a minute and the cool-down, at least the first back-off.
        let (_, rec) = ctx().decide(&claim(0), answer(429, 88, (None, None)), NOW);
        assert_eq!(pause(&rec).0, NOW + 60_000);
    }

    #[test]
    fn transient_failures_back_off_exponentially_with_jitter_then_fail() {
        for failures in 0..4 {
            let (_, rec) = ctx().decide(&claim(failures), answer(503, 130, (None, None)), NOW);
            let RecordJob::Requeue { not_before, failure: true } = rec.job else { panic!("{:?}", rec.job) };
            let full = (2_000 * 2i64.pow(failures as u32)).min(300_000);
            assert!((NOW + full / 2..=NOW + full).contains(&not_before), "failures {failures}: {}", not_before - NOW);
        }
        let (_, rec) = ctx().decide(&claim(4), answer(503, 130, (None, None)), NOW);
        assert_eq!(rec.job, RecordJob::Done(Outcome::Failed), "the fifth failure ends the job");
        let (_, rec) = ctx().decide(&claim(0), Err(api::Error::Timeout(Duration::from_secs(30))), NOW);
        assert!(matches!(rec.job, RecordJob::Requeue { failure: true, .. }) && rec.message.contains("timed out"));
    }

    #[test]
    fn a_skewed_clock_is_corrected_from_date_and_the_job_goes_again_at_once() {
        let c = ctx();
        let (verdict, rec) = c.decide(&claim(0), answer(401, 135, (None, None)), NOW);
        assert_eq!(verdict, Verdict::ClockSkew);
        assert_eq!(rec.job, RecordJob::Requeue { not_before: 0, failure: true });
        let offset = c.client.clock_offset();
        assert_eq!(offset, 90, "the server's Date is 90 s ahead");
    }

    #[test]
    fn headers_that_say_nothing_is_left_pause_the_account_even_on_a_success() {
        let reset = NOW / 1000 + 120;
        let ok = Ok(api::Response {
            status: 200,
            body: "{}".into(),
            date: None,
            rl_limit: Some(400),
            rl_remaining: Some(0),
            rl_reset: Some(reset),
        });
        let (_, rec) = ctx().decide(&claim(0), ok, NOW);
        assert_eq!(rec.job, RecordJob::Done(Outcome::Followed));
        assert_eq!(pause(&rec).0, reset * 1000);
    }
}
