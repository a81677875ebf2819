//! The runner against the in-process sandbox: outcomes, limits, rate, restarts, pauses, stops,
//! skew, retries, shutdown. Figures come from the job table, the ledger and the sandbox's own
//! stats.
//!
//! Most run on a virtual clock shared by the run and the sandbox: it stands still while requests
//! are out and jumps to whatever the run waits for, so windows of a day and pauses of minutes take
//! milliseconds. A few, marked `real time`, wait on the system clock end to end: a hang past the
//! time-out, a stop mid-run, work arriving from outside.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use followq::api::Client;
use followq::config::{Margin, Pace, Settings, Window};
use followq::ingest::{self, Accounts, Input};
use followq::sandbox::{Config, Faults, Refusal, Sandbox, Scripted};
use followq::store::{AttemptResult, AttemptRow, JobState, Store, now_ms};
use followq::time::Clock;
use followq::worker::{self, Ending, Silent};
use tokio_util::sync::CancellationToken;

struct Rig {
    _dir: tempfile::TempDir,
    /// Where `store` is, for a second store on the same database.
    db: followq::store::Db,
    store: Store,
    settings: Settings,
    sb: Sandbox,
    clock: Clock,
}

impl Rig {
    /// A run and a sandbox on one virtual clock.
    async fn new(accounts: &[&str], per_user: u32, per_app: u32, window: Duration) -> Rig {
        Rig::on(Clock::virtual_now(), accounts, per_user, per_app, window).await
    }

    /// A run and a sandbox on the system clock.
    async fn real_time(accounts: &[&str], per_user: u32, per_app: u32, window: Duration) -> Rig {
        Rig::on(Clock::System, accounts, per_user, per_app, window).await
    }

    async fn on(clock: Clock, accounts: &[&str], per_user: u32, per_app: u32, window: Duration) -> Rig {
        let config = Config { clock: clock.clone(), ..common::sandbox_config(accounts, per_user, per_app, window) };
        let sb = Sandbox::start(config, 0).await.unwrap();
        let settings = common::settings(accounts, &sb.base_url(), per_user, per_app, window);
        let dir = tempfile::tempdir().unwrap();
        let db = common::fresh_db(dir.path()).await;
        let store = Store::open_at(&db).await.unwrap();
        Rig { _dir: dir, db, store, settings, sb, clock }
    }

    /// A run and a sandbox on one virtual clock, with these windows per account and for the app.
    async fn windows(accounts: &[&str], user: Vec<Window>, app: Vec<Window>) -> Rig {
        let day = Duration::from_secs(86_400);
        let mut rig = Rig::on(Clock::virtual_now(), accounts, 1, 1, day).await;
        let config = Config {
            clock: rig.clock.clone(),
            user_windows: user.clone(),
            app_windows: app.clone(),
            ..common::sandbox_config(accounts, 1, 1, day)
        };
        rig.sb = Sandbox::start(config, 0).await.unwrap();
        rig.settings.api.base_url = rig.sb.base_url();
        (rig.settings.limits.user, rig.settings.limits.app) = (user, app);
        rig
    }

    /// The rig in API v2: follows by id, names resolved first. The read pacing is in real time
    /// (governor's clock), so it is quick here: the sandbox's lookup windows count the virtual
    /// clock, on which the resolutions of a run all but coincide.
    fn v2(mut self) -> Rig {
        self.settings.api.version = followq::config::ApiVersion::V2;
        self.settings.resolve.per_user = Window { limit: 900, length: Duration::from_secs(9) };
        self.settings.resolve.per_app = Window { limit: 300, length: Duration::from_secs(3) };
        self
    }

    /// Now on the rig's clock.
    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn client(&self) -> Client {
        Client::with_clock(&self.settings, self.clock.clone()).unwrap()
    }

    fn options(&self, deadline: Option<i64>, seed: u64) -> worker::Options {
        worker::Options { deadline, seed, clock: self.clock.clone(), ..worker::Options::default() }
    }

    /// Queues `account,screen_name` rows.
    async fn queue(&self, rows: &[(&str, String)]) {
        let mut csv = String::from("account,screen_name\n");
        for (a, t) in rows {
            csv.push_str(&format!("{a},{t}\n"));
        }
        let added =
            import_csv(&self.store, &self.settings, &self._dir.path().join(format!("in-{}.csv", now_ms())), &csv).await;
        assert_eq!(added as usize, rows.len());
    }

    async fn run_with(&self, shutdown: CancellationToken, deadline: Option<i64>) -> Ending {
        let opts = self.options(deadline, 11);
        worker::run(&self.store, &self.settings, &self.client(), shutdown, opts, &mut Silent).await.unwrap()
    }

    /// A run with a minute's deadline in real time; on a virtual clock, a month's.
    async fn run(&self) -> Ending {
        let deadline = if self.clock.is_virtual() { 30 * 86_400_000 } else { 60_000 };
        self.run_with(CancellationToken::new(), Some(self.now() + deadline)).await
    }

    /// (account, target) → outcome or state.
    async fn outcomes(&self) -> HashMap<(String, String), String> {
        self.store
            .export_rows(&[])
            .await
            .unwrap()
            .into_iter()
            .map(|r| ((r.account, r.target), r.outcome.map_or(r.state.as_str(), |o| o.as_str()).to_string()))
            .collect()
    }

    async fn log(&self) -> Vec<AttemptRow> {
        self.store.attempt_log().await.unwrap()
    }

    async fn assert_clean(&self) {
        let st = self.sb.stats();
        assert_eq!(st.violations, 0, "window violations: {st:?}");
        assert_eq!(st.bad_signatures, 0, "bad signatures: {st:?}");
        assert_eq!(self.store.open_attempts().await.unwrap(), 0, "attempts left without an answer");
        assert!(!st.windows.is_empty());
        for w in &st.windows {
            for (who, max) in &w.most {
                assert!(*max <= w.limit as u64, "{who}: {max} in one {} {} window", w.scope, w.window);
            }
        }
        assert_eq!(
            self.store.job_counts().await.unwrap(),
            self.store.recount_jobs().await.unwrap(),
            "kept counts drifted"
        );
    }
}

/// Writes `csv` to `path` and imports it into `store` for the configured accounts (no row may
/// be rejected); returns the jobs added.
async fn import_csv(store: &Store, settings: &Settings, path: &std::path::Path, csv: &str) -> u64 {
    let names: Vec<&str> = settings.accounts.iter().map(|a| a.name.as_str()).collect();
    let accounts = Accounts::new(store.sync_accounts(&names).await.unwrap(), None).unwrap();
    std::fs::write(path, csv).unwrap();
    let mut on_reject = |r: &ingest::Reject| panic!("rejected {r:?}");
    let opts =
        ingest::Options { accounts: &accounts, dry_run: false, on_reject: &mut on_reject, content_hash: String::new() };
    ingest::import(store, &Input::File(path.to_path_buf()), opts).await.unwrap().added
}

fn rows(account: &str, names: &[&str]) -> Vec<(&'static str, String)> {
    let account: &'static str = Box::leak(account.to_string().into_boxed_str());
    names.iter().map(|n| (account, n.to_string())).collect()
}

fn numbered(account: &'static str, prefix: &str, n: usize) -> Vec<(&'static str, String)> {
    (0..n).map(|i| (account, format!("{prefix}{i}"))).collect()
}

#[tokio::test]
async fn every_job_ends_as_the_sandbox_dictates() {
    let rig = Rig::new(&["alice", "bob", "carol"], 100, 300, Duration::from_secs(10)).await;
    every_outcome(rig, 18).await;
}

/// v2: the same outcomes, and the names X does not know (`x_`) or has suspended (`s_`) end
/// at resolution, without a follow request: 4 requests per account, not 6.
#[tokio::test]
async fn every_job_ends_as_the_sandbox_dictates_in_v2() {
    let rig = Rig::new(&["alice", "bob", "carol"], 100, 300, Duration::from_secs(10)).await.v2();
    let st = every_outcome(rig, 12).await;
    assert_eq!(st.follows_of_unknown, 0);
    // The three accounts follow the same names: resolved once, for all of them.
    assert_eq!((st.lookups, st.names_asked_again), (1, 0), "one lookup, each name once");
}

async fn every_outcome(rig: Rig, requests: u64) -> followq::sandbox::Stats {
    let mut all = Vec::new();
    for a in ["alice", "bob", "carol"] {
        all.extend(rows(a, &["plain_one", "plain_two", "p_locked", "b_blocks", "x_gone", "s_banned"]));
    }
    rig.queue(&all).await;
    assert_eq!(rig.run().await, Ending::Finished);
    let out = rig.outcomes().await;
    for a in ["alice", "bob", "carol"] {
        let o = |t: &str| out[&(a.to_string(), t.to_string())].clone();
        assert_eq!(o("plain_one"), "followed");
        assert_eq!(o("plain_two"), "followed");
        assert_eq!(o("p_locked"), "requested");
        assert_eq!(o("b_blocks"), "blocked");
        assert_eq!(o("x_gone"), "not_found");
        assert_eq!(o("s_banned"), "suspended");
    }
    rig.assert_clean().await;
    let st = rig.sb.stats();
    assert_eq!(st.creates.values().sum::<u64>(), requests, "one request per job that needs one, no more");
    assert_eq!(st.follows.values().sum::<u64>(), 9, "two follows and one request each");
    assert_eq!(rig.log().await.len() as u64, requests);
    st
}

/// Requests in each full window (from the first send, of the enforced length) as shares of the limit.
fn window_shares(log: &[AttemptRow], window_ms: i64, limit: u32) -> Vec<f64> {
    let first = log.first().unwrap().sent_at;
    let last = log.last().unwrap().sent_at;
    let mut shares = Vec::new();
    let mut start = first;
    while start + window_ms <= last {
        let n = log.iter().filter(|a| a.sent_at >= start && a.sent_at < start + window_ms).count();
        shares.push(n as f64 / limit as f64);
        start += window_ms;
    }
    shares
}

async fn rate_case(pace: Pace) {
    // Two accounts of 10, an app of 15, per day (X's window): the app binds. Enough work for 4+
    // windows.
    let mut rig = Rig::new(&["alice", "bob"], 10, 15, Duration::from_secs(86_400)).await;
    rig.settings.limits.pace = pace;
    let mut all = numbered("alice", "a", 40);
    all.extend(numbered("bob", "b", 40));
    rig.queue(&all).await;
    assert_eq!(rig.run().await, Ending::Finished);
    rig.assert_clean().await;
    let log = rig.log().await;
    let shares = window_shares(&log, rig.settings.limits.enforced_ms(&rig.settings.limits.user[0]), 15);
    assert!(shares.len() >= 4, "{pace:?}: {shares:?}");
    for s in &shares {
        assert!(*s >= 0.95 && *s <= 1.0, "{pace:?}: a full window used {s:.2} of the limit: {shares:?}");
    }
    // Fair: both accounts progressed together.
    let alice = log.iter().filter(|a| a.account == "alice").count();
    assert_eq!(alice, 40);
}

#[tokio::test]
async fn spread_uses_each_window_to_the_limit() {
    rate_case(Pace::Spread).await;
}

#[tokio::test]
async fn asap_uses_each_window_to_the_limit() {
    rate_case(Pace::Asap).await;
}

#[tokio::test]
async fn a_restart_takes_its_budget_from_the_ledger() {
    let mut rig = Rig::new(&["alice"], 5, 100, Duration::from_secs(2)).await;
    rig.settings.limits.pace = Pace::Asap;
    rig.queue(&numbered("alice", "r", 12)).await;
    // Stop right after the first burst, then start again at once, three times.
    for _ in 0..3 {
        let ending = rig.run_with(CancellationToken::new(), Some(rig.now() + 300)).await;
        assert_eq!(ending, Ending::Stopped);
    }
    assert_eq!(rig.run().await, Ending::Finished);
    rig.assert_clean().await;
    assert_eq!(rig.sb.stats().creates["alice"], 12);
}

#[tokio::test]
async fn a_spurious_429_waits_for_its_reset() {
    let rig = Rig::new(&["alice", "bob"], 100, 300, Duration::from_secs(10)).await;
    let (alice, _) = common::token("alice");
    rig.sb.script(&alice, &[Scripted { status: 429, code: 88 }]);
    let mut all = rows("alice", &["t1", "t2"]);
    all.extend(rows("bob", &["u1", "u2"]));
    rig.queue(&all).await;
    assert_eq!(rig.run().await, Ending::Finished);
    let log = rig.log().await;
    let limited = log.iter().find(|a| a.result == Some(AttemptResult::RateLimited)).expect("the 429 was recorded");
    let reset_ms = limited.rl_reset.unwrap() * 1000;
    for a in log.iter().filter(|a| a.account == "alice" && a.id > limited.id) {
        assert!(a.sent_at >= reset_ms, "alice sent at {} before the reset {reset_ms}", a.sent_at);
    }
    assert!(log.iter().filter(|a| a.account == "bob").all(|a| a.sent_at < reset_ms), "bob was not held back");
    assert!(rig.outcomes().await.values().all(|o| o == "followed"));
    assert_eq!(log.len(), 5, "one extra request, for the 429, and no storm");
    rig.assert_clean().await;
}

#[tokio::test]
async fn code_161_pauses_only_that_account() {
    let rig = Rig::new(&["alice", "bob"], 100, 300, Duration::from_secs(2)).await;
    let (alice, _) = common::token("alice");
    rig.sb.script(&alice, &[Scripted { status: 403, code: 161 }]);
    let mut all = rows("alice", &["t1", "t2"]);
    all.extend(rows("bob", &["u1", "u2", "u3"]));
    rig.queue(&all).await;
    assert_eq!(rig.run().await, Ending::Finished);
    let log = rig.log().await;
    let hit = log.iter().find(|a| a.error_code == Some(161)).unwrap();
    assert_eq!(hit.result, Some(AttemptResult::FollowLimit));
    let resumed = log.iter().filter(|a| a.account == "alice" && a.id > hit.id).map(|a| a.sent_at).min().unwrap();
    // Paused until its window frees: the 161 request itself leaves it 2 s (+margin) later.
    assert!(resumed - hit.sent_at >= 2_000, "alice resumed after {} ms", resumed - hit.sent_at);
    assert!(rig.outcomes().await.values().all(|o| o == "followed"), "the paused jobs waited, they did not fail");
    rig.assert_clean().await;
}

#[tokio::test]
async fn locked_and_revoked_accounts_stop_and_the_others_go_on() {
    let rig = Rig::new(&["alice", "bob", "carol"], 100, 300, Duration::from_secs(10)).await;
    let (alice, _) = common::token("alice");
    let (bob, _) = common::token("bob");
    rig.sb.script_always(&alice, Scripted { status: 403, code: 326 });
    rig.sb.script_always(&bob, Scripted { status: 401, code: 89 });
    let mut all = numbered("alice", "a", 3);
    all.extend(numbered("bob", "b", 3));
    all.extend(numbered("carol", "c", 3));
    rig.queue(&all).await;
    assert_eq!(rig.run().await, Ending::Blocked);
    let out = rig.outcomes().await;
    for i in 0..3 {
        assert_eq!(out[&("carol".into(), format!("c{i}"))], "followed");
        assert_eq!(out[&("alice".into(), format!("a{i}"))], "queued");
        assert_eq!(out[&("bob".into(), format!("b{i}"))], "queued");
    }
    let log = rig.log().await;
    assert_eq!(log.iter().filter(|a| a.account == "alice").count(), 1, "one request, then stopped");
    assert_eq!(log.iter().filter(|a| a.account == "bob").count(), 1);
    let accounts = rig.store.accounts().await.unwrap();
    let reason = |n: &str| accounts.iter().find(|a| a.name == n).unwrap().stopped_reason.clone();
    assert!(reason("alice").contains("326"), "{}", reason("alice"));
    assert!(reason("bob").contains("code 89"), "{}", reason("bob"));
    assert!(reason("carol").is_empty());
    rig.assert_clean().await;
}

#[tokio::test]
async fn code_261_stops_the_run() {
    let rig = Rig::new(&["alice"], 100, 300, Duration::from_secs(10)).await;
    let (alice, _) = common::token("alice");
    rig.sb.script(&alice, &[Scripted { status: 403, code: 261 }]);
    rig.queue(&numbered("alice", "a", 5)).await;
    assert!(matches!(rig.run().await, Ending::AppStopped(why) if why.contains("261")));
    assert_eq!(rig.log().await.len(), 1, "nothing more was sent");
    assert_eq!(rig.store.open_attempts().await.unwrap(), 0);
}

#[tokio::test]
async fn a_skewed_clock_is_corrected_from_date() {
    let rig = Rig::new(&["alice"], 100, 300, Duration::from_secs(10)).await;
    rig.sb.set_clock_offset(900);
    rig.queue(&numbered("alice", "a", 3)).await;
    assert_eq!(rig.run().await, Ending::Finished);
    assert!(rig.outcomes().await.values().all(|o| o == "followed"));
    let log = rig.log().await;
    assert_eq!(
        log.iter().filter(|a| a.result == Some(AttemptResult::ClockSkew)).count(),
        1,
        "one 135, then every request is signed right"
    );
    assert_eq!(log.len(), 4);
    rig.assert_clean().await;
}

#[tokio::test]
async fn transient_faults_retry_to_the_limit_then_fail() {
    let mut rig = Rig::new(&["alice"], 100, 300, Duration::from_secs(10)).await;
    rig.settings.run.concurrency = 2;
    rig.sb.set_faults(Faults { p503: 1.0, ..Faults::default() });
    rig.queue(&numbered("alice", "a", 3)).await;
    assert_eq!(rig.run().await, Ending::Finished);
    assert!(rig.outcomes().await.values().all(|o| o == "failed"));
    assert_eq!(rig.sb.stats().creates["alice"], 3 * 4, "max_attempts = 4 per job, no more");
    // The API recovers; `retry` re-queues, and they succeed.
    rig.sb.set_faults(Faults::default());
    assert_eq!(rig.store.requeue(&["failed".into()], None).await.unwrap(), 3);
    assert_eq!(rig.run().await, Ending::Finished);
    assert!(rig.outcomes().await.values().all(|o| o == "followed"));
    rig.assert_clean().await;
}

#[tokio::test]
async fn a_hang_is_retried_and_ends_already_following() {
    // Real time: the answer is held past the client's time-out.
    let rig = Rig::real_time(&["alice"], 100, 300, Duration::from_secs(10)).await;
    rig.sb.set_faults(Faults { hang: 1.0, hang_for: Duration::from_secs(3), seed: 3, ..Faults::default() });
    rig.queue(&rows("alice", &["slowpoke"])).await;
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    let sb_faults_off = async {
        // After the first request hangs (applied, then timed out), the API recovers.
        tokio::time::sleep(Duration::from_millis(500)).await;
        rig.sb.set_faults(Faults::default());
    };
    let (ending, _) = tokio::join!(rig.run_with(s2, Some(rig.now() + 30_000)), sb_faults_off);
    assert_eq!(ending, Ending::Finished);
    let out = rig.outcomes().await;
    let o = &out[&("alice".into(), "slowpoke".into())];
    assert!(o == "already_following" || o == "followed", "{o}");
    let log = rig.log().await;
    assert_eq!(log[0].result, Some(AttemptResult::Transient));
    assert_eq!(rig.sb.stats().follows["alice"], 1);
    drop(stop);
}

#[tokio::test]
async fn stopping_mid_run_leaves_nothing_in_flight() {
    // Real time: stopped while requests are out.
    let mut rig = Rig::real_time(&["alice", "bob"], 1000, 3000, Duration::from_secs(10)).await;
    rig.settings.run.concurrency = 8;
    rig.settings.limits.pace = Pace::Asap;
    rig.sb.set_faults(Faults { hang: 0.2, hang_for: Duration::from_secs(3), seed: 5, ..Faults::default() });
    let mut all = numbered("alice", "a", 300);
    all.extend(numbered("bob", "b", 300));
    rig.queue(&all).await;
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        s2.cancel();
    });
    assert_eq!(rig.run_with(stop, None).await, Ending::Stopped);
    assert_eq!(rig.store.open_attempts().await.unwrap(), 0, "every request out was recorded");
    let counts = rig.store.job_counts().await.unwrap();
    assert!(counts.iter().all(|c| c.state != JobState::InFlight), "{counts:?}");
    assert!(counts.iter().any(|c| c.state == JobState::Queued), "it did stop early");
    // And the next run finishes the rest.
    rig.sb.set_faults(Faults::default());
    assert_eq!(rig.run().await, Ending::Finished);
    rig.assert_clean().await;
}

/// The fault suite: 10 % 503, 5 % 500, 2 % hangs, 2 % drops, 2 % spurious 429s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_faults_every_job_finishes_and_requests_match_the_retry_policy() {
    fault_case(4242, Duration::from_secs(10), None).await;
}

/// The same with a long safety margin (4 s of a 10 s window). Every claim is sent the moment it
/// is committed, so every attempt in the ledger reached the API, once, and none is marked unsent.
/// (Before the single claim → send → record path, claims taken ahead of the free slots could
/// wait too long and be handed back unsent.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_faults_with_a_long_margin_every_claim_reaches_the_api_once() {
    fault_case(4343, Duration::from_secs(10), Some("4s")).await;
}

/// The fault suite in v2: the same faults on `POST /2/users/:id/following`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_faults_in_v2_every_job_finishes_and_requests_match_the_retry_policy() {
    fault_case_in(4242, Duration::from_secs(10), None, true).await;
}

async fn fault_case(seed: u64, window: Duration, margin: Option<&str>) {
    fault_case_in(seed, window, margin, false).await;
}

async fn fault_case_in(seed: u64, window: Duration, margin: Option<&str>, v2: bool) {
    // Budgets that never bind (100 jobs an account).
    let mut rig = Rig::new(&["alice", "bob", "carol"], 1_000, 2_500, window).await;
    if v2 {
        rig = rig.v2();
    }
    if let Some(m) = margin {
        rig.settings.limits.margin = Margin::Fixed(humantime::parse_duration(m).unwrap());
    }
    rig.settings.run.concurrency = 6;
    rig.settings.limits.pace = Pace::Asap;
    rig.settings.retry.max_attempts = 3;
    // A hang holds its answer past the time-out, in real time: a short time-out keeps it brief.
    rig.settings.api.timeout = Duration::from_millis(300);
    let hang_for = Duration::from_millis(600);
    let faults = Faults { p503: 0.10, p500: 0.05, hang: 0.02, drop: 0.02, p429: 0.02, seed, hang_for };
    rig.sb.set_faults(faults);
    let mut all = numbered("alice", "a", 100);
    all.extend(numbered("bob", "b", 100));
    all.extend(numbered("carol", "c", 100));
    rig.queue(&all).await;
    assert_eq!(rig.run_with(CancellationToken::new(), Some(rig.now() + 120_000)).await, Ending::Finished);
    rig.assert_clean().await;

    let log = rig.log().await;
    let st = rig.sb.stats();
    assert!(log.iter().all(|a| !a.message.starts_with("not sent")), "seed {seed}: a claim was not sent");
    // Every request the sandbox saw is in the ledger, and every ledger entry was a request.
    assert_eq!(st.creates.values().sum::<u64>(), log.len() as u64, "seed {seed}");
    use AttemptResult::{ClockSkew, RateLimited, Transient, Unknown};
    let terminal = |r: &AttemptResult| !matches!(r, Transient | RateLimited | Unknown | ClockSkew);
    let mut by_job: HashMap<i64, Vec<&AttemptRow>> = HashMap::new();
    for a in &log {
        by_job.entry(a.job_id).or_default().push(a);
    }
    let out = rig.outcomes().await;
    assert_eq!(by_job.len(), 300);
    for (job, attempts) in &by_job {
        let results: Vec<AttemptResult> = attempts.iter().map(|a| a.result.unwrap()).collect();
        let (last, before) = results.split_last().unwrap();
        // Nothing after a terminal answer, and only retryable answers before it.
        assert!(before.iter().all(|r| !terminal(r)), "job {job}: {results:?}");
        let transient = results.iter().filter(|r| **r == Transient).count();
        if *last == Transient {
            assert_eq!(transient, 3, "job {job} failed before its retry limit: {results:?}");
        } else {
            assert!(terminal(last) && transient < 3, "job {job}: {results:?}");
        }
    }
    for ((acct, target), o) in &out {
        assert!(o == "followed" || o == "already_following" || o == "failed", "{acct} {target}: {o}");
    }
    // No storm after a 429: once its answer was recorded, that account sent nothing until the
    // reset. (Requests already out when it came back were sent before anyone knew.)
    for limited in log.iter().filter(|a| a.result == Some(AttemptResult::RateLimited)) {
        let reset = limited.rl_reset.unwrap() * 1000;
        let known = limited.finished_at.unwrap();
        let early: Vec<_> = log
            .iter()
            .filter(|a| a.account == limited.account && a.id != limited.id && a.sent_at > known && a.sent_at < reset)
            .collect();
        assert!(early.is_empty(), "{} sent before a 429's reset: 429 {limited:?}, then {early:?}", limited.account);
    }
    let failed = out.values().filter(|o| *o == "failed").count();
    eprintln!(
        "fault suite seed {seed}: {} requests for 300 jobs, faults {:?}, {failed} failed after 3 tries, 0 violations",
        log.len(),
        st.faults
    );
}

/// Two dispatchers on one database (the run lock bypassed, as a second process that ignored it
/// would): the ledger check in each claim keeps them together within every budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_on_one_ledger_never_exceed_a_budget() {
    let mut rig = Rig::new(&["alice", "bob"], 8, 12, Duration::from_secs(2)).await;
    rig.settings.limits.pace = Pace::Asap;
    rig.settings.run.concurrency = 4;
    let mut all = numbered("alice", "a", 30);
    all.extend(numbered("bob", "b", 30));
    rig.queue(&all).await;
    let second = Store::open_at(&rig.db).await.unwrap();
    let client = rig.client();
    let deadline = Some(rig.now() + 60_000);
    let (mut silent_one, mut silent_two) = (Silent, Silent);
    // Recovered once, as `run` would at start; then neither may take the other's requests in
    // flight for a crash's.
    rig.store.recover(&rig.clock).await.unwrap();
    let one = worker::work_off(
        &rig.store,
        &rig.settings,
        &client,
        CancellationToken::new(),
        rig.options(deadline, 1),
        &mut silent_one,
    );
    let two = worker::work_off(
        &second,
        &rig.settings,
        &client,
        CancellationToken::new(),
        rig.options(deadline, 2),
        &mut silent_two,
    );
    let (a, b) = tokio::join!(one, two);
    assert_eq!((a.unwrap(), b.unwrap()), (Ending::Finished, Ending::Finished));
    rig.assert_clean().await;
    let st = rig.sb.stats();
    assert_eq!(st.creates.values().sum::<u64>(), 60, "each job sent once between them");
    assert!(st.max_in_window.app <= 12 && st.max_in_window.per_account.values().all(|&m| m <= 8), "{st:?}");
    assert!(rig.outcomes().await.values().all(|o| o == "followed"));
}

#[tokio::test]
async fn code_226_cools_the_account_down_and_slows_it() {
    let mut rig = Rig::new(&["alice", "bob"], 100, 300, Duration::from_secs(4)).await;
    rig.settings.limits.pace = Pace::Spread;
    let (alice, _) = common::token("alice");
    rig.sb.script(&alice, &[Scripted { status: 403, code: 226 }]);
    let mut all = rows("alice", &["t1", "t2", "t3"]);
    all.extend(rows("bob", &["u1", "u2", "u3"]));
    rig.queue(&all).await;
    assert_eq!(rig.run().await, Ending::Finished);
    let log = rig.log().await;
    let hit = log.iter().find(|a| a.error_code == Some(226)).expect("the 226 was recorded");
    assert_eq!(hit.result, Some(AttemptResult::Automated));
    let alice_sends: Vec<i64> = log.iter().filter(|a| a.account == "alice").map(|a| a.sent_at).collect();
    // The cool-down: a 24th of the window (167 ms) before alice's next request...
    assert!(alice_sends[1] - hit.sent_at >= 4_000 / 24, "resumed after {} ms", alice_sends[1] - hit.sent_at);
    // ...and her spacing doubled afterwards: 2 × (4.04 s / 100), less at most 5 % jitter.
    let gap = alice_sends[2] - alice_sends[1];
    assert!(gap >= (2.0 * 40.4 * 0.95) as i64, "spacing after 226: {gap} ms");
    let accounts = rig.store.accounts().await.unwrap();
    assert_eq!(accounts.iter().find(|a| a.name == "alice").unwrap().pace_factor, 2.0);
    assert_eq!(accounts.iter().find(|a| a.name == "bob").unwrap().pace_factor, 1.0);
    assert!(rig.outcomes().await.values().all(|o| o == "followed"), "the job waited, it did not fail");
    rig.assert_clean().await;
}

/// Defect: jobs queued while a run was going (`followq import` or `followq retry` in another
/// terminal) were left behind, and the run said "every job finished".
#[tokio::test]
async fn jobs_queued_from_outside_during_a_run_are_sent_before_it_finishes() {
    // 300 ms between alice's requests: five jobs keep the run going for over a second.
    // Real time: the import comes from outside while the run paces.
    let mut rig = Rig::real_time(&["alice", "bob"], 20, 100, Duration::from_secs(6)).await;
    rig.settings.limits.pace = Pace::Spread;
    rig.queue(&numbered("alice", "first", 5)).await;
    let other = Store::open_at(&rig.db).await.unwrap();
    let late = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Another process's import, for both the busy account and one with nothing queued.
        let csv = "account,screen_name\nalice,late_a\nbob,late_b1\nbob,late_b2\n";
        assert_eq!(import_csv(&other, &rig.settings, &rig._dir.path().join("late.csv"), csv).await, 3);
    };
    let (ending, ()) = tokio::join!(rig.run(), late);
    assert_eq!(ending, Ending::Finished);
    let out = rig.outcomes().await;
    assert_eq!(out.len(), 8);
    assert!(out.values().all(|o| o == "followed"), "{out:?}");
    rig.assert_clean().await;
    assert_eq!(rig.sb.stats().creates.values().sum::<u64>(), 8);
}

/// Defect: after its last job the run waited one pacing gap before it noticed the queue was
/// empty (1 job at X's limits: done at once, the run ended 3m28s later; after a 226, ~58 min).
#[tokio::test]
async fn the_run_ends_when_its_last_job_is_answered_not_a_pacing_gap_later() {
    // 4 per 60 s in spread mode: 15 s between requests, far past the deadline below.
    let mut rig = Rig::new(&["alice"], 4, 100, Duration::from_secs(60)).await;
    rig.settings.limits.pace = Pace::Spread;
    rig.queue(&numbered("alice", "only", 1)).await;
    let ending = rig.run_with(CancellationToken::new(), Some(rig.now() + 5_000)).await;
    assert_eq!(ending, Ending::Finished, "the run waited for the next slot of an empty queue");
    assert_eq!(rig.outcomes().await[&("alice".to_string(), "only0".to_string())], "followed");
    rig.assert_clean().await;
}

fn w(limit: u32, secs: u64) -> Window {
    Window::new(limit, secs)
}

/// The shares of `limit` used in each full window of `length` (from the first send) by one
/// account's requests.
fn account_shares(log: &[AttemptRow], account: &str, window_ms: i64, limit: u32) -> Vec<f64> {
    let mine: Vec<AttemptRow> = log.iter().filter(|a| a.account == account).cloned().collect();
    window_shares(&mine, window_ms, limit)
}

/// Two windows per account (v2's 50/15m + 400/24h, compressed to 5 per 2 s and 12 per 10 s):
/// both held in every interval, in both paces, and the binding one (12 per 10 s) used to at
/// least 98 % over a run of several of its windows.
#[tokio::test]
async fn two_windows_per_account_are_both_held_and_the_binding_one_is_used() {
    for pace in [Pace::Asap, Pace::Spread] {
        let mut rig = Rig::windows(&["alice", "bob"], vec![w(5, 2), w(12, 10)], vec![w(100, 10)]).await.v2();
        rig.settings.limits.pace = pace;
        rig.settings.limits.margin = Margin::Share(0.01);
        rig.queue(&numbered("alice", "a", 84)).await;
        rig.queue(&numbered("bob", "b", 84)).await;
        assert_eq!(rig.run().await, Ending::Finished, "{pace:?}");
        rig.assert_clean().await;
        let st = rig.sb.stats();
        assert_eq!(st.windows.len(), 3, "{st:?}");
        for wm in &st.windows {
            for (who, most) in &wm.most {
                assert!(*most <= wm.limit as u64, "{pace:?}: {who} {most} in one {} window", wm.window);
            }
        }
        let log = rig.log().await;
        assert_eq!(log.len(), 168);
        let long = rig.settings.limits.enforced_ms(&rig.settings.limits.user[1]);
        for who in ["alice", "bob"] {
            let shares = account_shares(&log, who, long, 12);
            assert!(shares.len() >= 5, "{pace:?} {who}: {shares:?}");
            let used: f64 = shares.iter().sum::<f64>() / shares.len() as f64;
            assert!(used >= 0.98, "{pace:?} {who}: the binding window used {used:.3}: {shares:?}");
        }
        // The short window bit in asap: a burst of 5, then a wait of its length (or to X's
        // `x-rate-limit-reset`, which the fifth answer carried with `remaining: 0`: whole seconds).
        if pace == Pace::Asap {
            let short = rig.settings.limits.enforced_ms(&rig.settings.limits.user[0]);
            let alice: Vec<i64> = log.iter().filter(|a| a.account == "alice").map(|a| a.sent_at).collect();
            assert!(alice[..5].iter().all(|&t| t == alice[0]), "a burst of 5: {alice:?}");
            let wait = alice[5] - alice[0];
            assert!((short..short + 1_000).contains(&wait), "the sixth request waited {wait} ms: {alice:?}");
        }
    }
}

/// A restart keeps both windows: the second run counts the first's requests in each.
#[tokio::test]
async fn a_restart_keeps_every_window() {
    let rig = Rig::windows(&["alice"], vec![w(5, 2), w(12, 10)], vec![w(100, 10)]).await.v2();
    rig.queue(&numbered("alice", "a", 40)).await;
    let mut runs = 0;
    // Runs cut short every 3 s (virtual): each restart must take its windows from the ledger.
    loop {
        runs += 1;
        let ending = rig.run_with(CancellationToken::new(), Some(rig.now() + 3_000)).await;
        if ending == Ending::Finished {
            break;
        }
        assert!(runs < 30, "no end in sight");
    }
    assert!(runs >= 5, "{runs} runs");
    rig.assert_clean().await;
    assert_eq!(rig.log().await.len(), 40);
}

/// Refusals of the app: one request, then the run ends with what to do; every other job stays
/// queued (even with several request slots), and the reason is kept for `status`.
#[tokio::test]
async fn an_app_that_may_not_follow_is_told_so_after_one_request() {
    for (refusal, says) in [
        (Refusal::ClientForbidden, "Enterprise plans only"),
        (Refusal::Code453, "Enterprise plans only"),
        (Refusal::Credits, "credits"),
        (Refusal::UsageCapped, "usage cap"),
    ] {
        let mut rig = Rig::new(&["alice", "bob"], 100, 300, Duration::from_secs(10)).await.v2();
        rig.settings.run.concurrency = 4;
        rig.settings.limits.pace = Pace::Asap;
        rig.sb.set_refusal(Some(refusal));
        rig.queue(&numbered("alice", "a", 10)).await;
        rig.queue(&numbered("bob", "b", 10)).await;
        let ending = rig.run().await;
        assert!(matches!(&ending, Ending::AppStopped(why) if why.contains(says)), "{refusal:?}: {ending:?}");
        let st = rig.sb.stats();
        assert_eq!((st.creates.values().sum::<u64>(), st.refused), (1, 1), "{refusal:?}: {st:?}");
        let out = rig.outcomes().await;
        assert_eq!(out.values().filter(|o| *o == "queued").count(), 20, "{refusal:?}: every job still queued");
        let (why, _) = rig.store.app_stopped().await.unwrap().expect("the reason is kept");
        assert!(why.contains(says), "{why}");
        assert_eq!(rig.store.open_attempts().await.unwrap(), 0);
        // Once the plan allows it, the next run clears the reason and does the work.
        rig.sb.set_refusal(None);
        assert_eq!(rig.run().await, Ending::Finished);
        assert!(rig.store.app_stopped().await.unwrap().is_none());
        assert!(rig.outcomes().await.values().all(|o| o == "followed"));
    }
    // v1.1's 453 stops a v1.1 run alike.
    let rig = Rig::new(&["alice"], 100, 300, Duration::from_secs(10)).await;
    rig.sb.set_refusal(Some(Refusal::Code453));
    rig.queue(&numbered("alice", "a", 5)).await;
    assert!(matches!(rig.run().await, Ending::AppStopped(why) if why.contains("since 2026-04-20")));
    assert_eq!(rig.log().await.len(), 1);
}

/// Names are resolved in batches of at most 100, just ahead of the follows, each once across
/// restarts; jobs imported by id are not resolved.
#[tokio::test]
async fn usernames_are_resolved_in_batches_once_across_restarts() {
    let rig = Rig::new(&["alice"], 1_000, 1_000, Duration::from_secs(10)).await.v2();
    let mut names = numbered("alice", "n", 250);
    names.extend((0..5).map(|i| ("alice", format!("x_{i}"))));
    rig.queue(&names).await;
    // A short first run: resolution stays just ahead of it (a batch, not all 250 names).
    let first = rig.run_with(CancellationToken::new(), Some(rig.now() + 500)).await;
    assert_eq!(first, Ending::Stopped);
    let after_first = rig.sb.stats();
    assert!(after_first.lookups <= 2, "{after_first:?}");
    assert_eq!(rig.run().await, Ending::Finished);
    let st = rig.sb.stats();
    assert_eq!(st.lookups, 3, "255 names: three batches");
    assert_eq!(st.lookup_most_names, 100);
    assert_eq!(st.names_asked_again, 0, "a name resolved twice");
    assert_eq!((st.follows_of_unknown, st.creates.values().sum::<u64>()), (0, 250));
    assert_eq!(rig.outcomes().await.values().filter(|o| *o == "not_found").count(), 5);
    assert_eq!(rig.store.resolved("n7").await.unwrap().map(|r| r.1), Some(followq::model::UserState::Found));
    rig.assert_clean().await;
}

/// Defect (found by the pacing benchmark): a resolution that waited for the read budget waited
/// inside the dispatcher, so no account sent anything meanwhile (a 10 s window with 4 % used).
/// Now names wait, and the follows whose names are known go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_waiting_for_the_read_budget_holds_up_no_follow() {
    let mut rig = Rig::real_time(&["alice", "bob"], 200, 1_000, Duration::from_secs(10)).await.v2();
    // One lookup every 3 s for the app: alice's second batch must wait for it.
    rig.settings.resolve.per_app = Window { limit: 1, length: Duration::from_secs(3) };
    rig.queue(&numbered("alice", "n", 150)).await;
    // Bob's names are among alice's first hundred: resolved by whichever lookup goes first.
    rig.queue(&numbered("bob", "n", 60)).await;
    assert_eq!(rig.run().await, Ending::Finished);
    rig.assert_clean().await;
    let st = rig.sb.stats();
    assert_eq!((st.lookups, st.names_asked_again), (2, 0), "{st:?}");
    let log = rig.log().await;
    let bob: Vec<i64> = log.iter().filter(|a| a.account == "bob").map(|a| a.sent_at).collect();
    assert_eq!(bob.len(), 60);
    let gap = bob.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    // Bob's pace is one every 50 ms; the read budget's wait is 3 s.
    assert!(gap < 1_500, "bob waited {gap} ms between two follows while alice's names waited");
}

/// Defect (found from the outside): the id kept for an account was used after its token was
/// changed to another X user's, and X's refusal ("not permitted for user id …") stopped the whole
/// app as a plan that cannot follow. The id is kept with a digest of its token; another token is
/// asked about again.
#[tokio::test]
async fn an_account_given_another_token_is_identified_again() {
    let mut rig = Rig::new(&["alice", "bob"], 100, 300, Duration::from_secs(10)).await.v2();
    rig.queue(&numbered("alice", "a", 2)).await;
    assert_eq!(rig.run().await, Ending::Finished);
    // alice's config now holds bob's X token: the same account name, another X user.
    let bob = rig.settings.account("bob").unwrap().clone();
    let alice = rig.settings.accounts.iter_mut().find(|a| a.name == "alice").unwrap();
    (alice.token, alice.token_secret) = (bob.token, bob.token_secret);
    rig.queue(&numbered("alice", "later", 2)).await;
    assert_eq!(rig.run().await, Ending::Finished);
    let st = rig.sb.stats();
    assert_eq!((st.follows.get("alice"), st.follows.get("bob")), (Some(&2), Some(&2)), "{st:?}");
    assert!(rig.store.app_stopped().await.unwrap().is_none());
    rig.assert_clean().await;
}
