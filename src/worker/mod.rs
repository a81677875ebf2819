//! Claim → send → record, one request at a time per slot. The dispatcher asks the scheduler who
//! may go, claims that account's next jobs in the ledger (phase 1, committed before any request
//! leaves), sends each on a task of its own, and records every answer that came back (phase 2)
//! before it decides again. One shutdown path: a cancellation token.
//!
//! [`policy`] is what an answer means for the job and the account; [`identity`] gets v2 what a
//! follow needs first (the account's id, the targets' ids); [`confirming`] looks for follows
//! once settled; [`lock`] keeps a second run off the database.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::Client;
use crate::api::classify::{Outcome, Verdict};
use crate::config::{Account, ApiVersion, Settings};
use crate::confirm::Confirmer;
use crate::resolve::Resolver;
use crate::schedule::{Decision, Limits, Scheduler};
use crate::store::{
    Ask, Budget, ClaimResult, RECORD_BATCH, Record, RecordAccount, RecordJob, Store, Written, token_digest,
};
use crate::text::printable;
use crate::time::{Clock, Hold, human_ms, local_time};

mod confirming;
mod identity;
mod lock;
mod policy;

use identity::Ahead;
pub use lock::{RunLock, lock};
use policy::{COOLDOWN_SHARE, TaskCtx};

/// How long the dispatcher sleeps at most before it looks at the clock again: deadlines are
/// re-checked after every wake, so a laptop that slept through the night resumes correctly.
const MAX_NAP: Duration = Duration::from_secs(1);

/// How often a run looks at the queue's counts for work it did not put there (an import or a
/// `followq retry` from another terminal, the inbox): one indexed count per account, cheap
/// enough every second.
pub const QUEUE_REFRESH: Duration = Duration::from_secs(1);

/// Why the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Every job is finished.
    Finished,
    /// Ctrl-C, SIGTERM, or the deadline, with work left.
    Stopped,
    /// Every account with work is stopped.
    Blocked,
    /// X refuses the app (261, 416).
    AppStopped(String),
}

/// What the dispatcher shows the progress display.
pub struct View<'a> {
    pub sched: &'a Scheduler,
    /// Jobs this run finished, by account id and outcome.
    pub outcomes: &'a HashMap<i64, HashMap<&'static str, i64>>,
    /// Accounts with requests out and no answer yet: since when the oldest one has waited (ms).
    pub waiting: &'a HashMap<i64, i64>,
    /// Request slots free now (`run.concurrency` less the requests out).
    pub free_slots: usize,
    pub now: i64,
    /// Follows this run saw confirmed at X, by account id.
    pub confirmed: &'a HashMap<i64, i64>,
}

/// What the dispatcher tells the progress display.
pub trait Observer: Send {
    /// Called on every turn of the dispatcher loop (so it must be cheap, or skip), and once more
    /// with `last` set when the run ends.
    fn update(&mut self, view: &View<'_>, last: bool);
}

/// No display (tests, `--no-progress` under a non-terminal).
pub struct Silent;
impl Observer for Silent {
    fn update(&mut self, _: &View<'_>, _: bool) {}
}

/// Run options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stop sending at this time (ms since the epoch).
    pub deadline: Option<i64>,
    /// Keep running when the queue is empty: new work comes through the database (the inbox
    /// watcher of `run --watch`, or another terminal), and every job is taken in within a
    /// [`QUEUE_REFRESH`].
    pub watch: bool,
    /// Seeds the pacing jitter (tests replay a run).
    pub seed: u64,
    /// Where "now" comes from: the system's clock, or a test's.
    pub clock: Clock,
    /// Told when something in this process queued jobs (the inbox watcher): the run looks at the
    /// queue at once rather than at its next [`QUEUE_REFRESH`].
    pub queued: Option<Arc<tokio::sync::Notify>>,
}

/// An answered request: the record to write and what it means. It holds a virtual clock
/// until the dispatcher has taken it in: the answer takes no time on it.
struct Done {
    record: Record,
    verdict: Verdict,
    _hold: Hold,
}

impl Done {
    /// Pauses or stops its account, or stops the app: recorded and absorbed before the next
    /// decision, not with the next claim.
    fn changes_more_than_its_job(&self) -> bool {
        self.record.account.is_some() || matches!(self.verdict, Verdict::AppStopped(_))
    }
}

/// How long the dispatcher gathers answers and free slots before a claim that leaves slots taken:
/// a claim's transaction costs as much as dozens of jobs' rows, so at high rates each carries the
/// answers back and claims for every slot they freed; at X's rates every slot is free whenever a
/// request is due, and nothing waits. It also bounds how long an answer waits to be recorded
/// (what a crash could make the next run send again).
const GATHER: Duration = Duration::from_millis(100);

/// The dispatcher: the only writer of the ledger during a run.
struct Dispatcher<'a> {
    store: &'a Store,
    settings: &'a Settings,
    client: &'a Client,
    clock: Clock,
    sched: Scheduler,
    budget: Budget,
    outcomes: HashMap<i64, HashMap<&'static str, i64>>,
    /// Each account's credentials, shared by its requests.
    accounts: HashMap<i64, Arc<Account>>,
    /// The requests out, one task each.
    requests: JoinSet<Done>,
    /// Answers back and not yet recorded.
    answered: Vec<Done>,
    /// Requests out per account: attempt id → sent at (ms), for the display.
    out: HashMap<i64, BTreeMap<i64, i64>>,
    /// When the last claim was made (see [`GATHER`]).
    last_claim: std::time::Instant,
    /// v2: each account's own X id, the path of its follows.
    sources: HashMap<i64, String>,
    /// v2: screen names resolved ahead of the follows that need them.
    resolver: Option<Resolver>,
    /// v2: per account, how many more jobs may be claimed before resolution looks ahead again.
    /// A look that found the next [`crate::resolve::BATCH`] queued jobs resolved (or resolved
    /// them) holds for that many claims: new jobs queue behind them, and a retried job was
    /// resolved before. Spares every claim its query; a claim that finds no job looks again.
    resolved_ahead: HashMap<i64, i64>,
    /// Until X has answered one follow with something other than a refusal of the app (or a
    /// transport failure), one request at a time: a plan that cannot follow is told so after
    /// one request, not after a slot-full of them.
    probing: bool,
    /// Follows looked for at X once settled (`verify.confirm`), and when each account's next
    /// look is due (ms).
    confirmer: Option<Confirmer>,
    checks: HashMap<i64, i64>,
    /// The read out (the confirmer goes with it and comes back with what it found), and what
    /// tells the dispatcher it is back.
    reading: Option<confirming::Reading>,
    read_done: Arc<tokio::sync::Notify>,
    /// Follows this run confirmed, by account id.
    confirmed: HashMap<i64, i64>,
}

/// Works the queue off until it is empty, stopped, or blocked.
pub async fn run(
    store: &Store,
    settings: &Settings,
    client: &Client,
    shutdown: CancellationToken,
    opts: Options,
    observer: &mut dyn Observer,
) -> anyhow::Result<Ending> {
    let rec = store.recover(&opts.clock).await?;
    if rec.unknown_attempts > 0 {
        warn!(
            attempts = rec.unknown_attempts,
            jobs = rec.requeued_jobs,
            "requests left without an answer by an earlier run: counted against the budget, their jobs queued again"
        );
    }
    work_off(store, settings, client, shutdown, opts, observer).await
}

/// [`run`] without its start-up recovery, for a dispatcher that joins a ledger another live
/// dispatcher is working (tests): recovery would take that one's requests in flight for a
/// crash's and queue their jobs again. Outside tests that cannot happen: SQLite's WAL needs
/// every process on one host (its shared memory does not work over a network file system), and
/// on one host `run`'s lock keeps a second `followq run` off the database.
pub async fn work_off(
    store: &Store,
    settings: &Settings,
    client: &Client,
    shutdown: CancellationToken,
    opts: Options,
    observer: &mut dyn Observer,
) -> anyhow::Result<Ending> {
    let clock = opts.clock.clone();
    if let Some((why, at)) = store.app_stopped().await? {
        warn!(since = %local_time(at), reason = %printable(&why), "the last run ended because X refused the app; trying once more");
        store.clear_app_stop().await?;
    }
    let sched = load(store, settings, clock.now_ms(), opts.seed).await?;
    let accounts: HashMap<i64, Arc<Account>> = sched
        .accounts()
        .iter()
        .filter_map(|a| settings.account(&a.name).map(|c| (a.id, Arc::new(c.clone()))))
        .collect();
    let v2 = client.version() == ApiVersion::V2;
    // Accounts X told its id before (GET /2/users/me); the others ask when they first send.
    // (Only when learnt with the token configured now: another token is another X user.)
    let sources: HashMap<i64, String> = store
        .accounts()
        .await?
        .into_iter()
        .filter(|a| {
            let current = accounts.get(&a.id).map(|c| token_digest(&c.token));
            !a.x_user_id.is_empty() && current.as_deref() == Some(a.x_token_digest.as_str())
        })
        .map(|a| (a.id, a.x_user_id))
        .collect();
    let resolver = v2.then(|| Resolver::new(&settings.resolve.per_user, &settings.resolve.per_app));
    let limits = &settings.limits;
    let budget = Limits::of(limits).budget;
    let mut d = Dispatcher {
        store,
        settings,
        client,
        clock,
        sched,
        budget,
        outcomes: HashMap::new(),
        accounts,
        requests: JoinSet::new(),
        answered: Vec::new(),
        out: HashMap::new(),
        last_claim: std::time::Instant::now(),
        sources,
        resolver,
        resolved_ahead: HashMap::new(),
        probing: true,
        confirmer: settings.verify.confirm.then(|| Confirmer::new(&settings.verify, client.version())),
        checks: HashMap::new(),
        reading: None,
        read_done: Arc::new(tokio::sync::Notify::new()),
        confirmed: HashMap::new(),
    };
    if d.confirmer.is_some() {
        d.reload_checks().await?;
    }
    let ending = d.work(&shutdown, &opts, observer).await;
    // A read still out is let go: what it would have found is looked for again next time.
    if let Some(reading) = d.reading.take() {
        reading.abort();
    }
    // Stop sending; let the requests that are out come back and be recorded. Each is bounded
    // by the API time-out; one that truly never returns stays "unknown" for the next start.
    let grace = tokio::time::Instant::now() + settings.api.timeout + Duration::from_secs(2);
    while !d.requests.is_empty() {
        match tokio::time::timeout_at(grace, d.requests.join_next()).await {
            Ok(Some(Ok(done))) => d.answered.push(done),
            Ok(Some(Err(e))) => warn!(error = %e, "a request task failed; its attempt stays unknown"),
            Ok(None) | Err(_) => break,
        }
    }
    let last = d.record_answers().await;
    let waiting = d.waiting();
    let view = View {
        sched: &d.sched,
        outcomes: &d.outcomes,
        waiting: &waiting,
        free_slots: d.free_slots(),
        now: d.clock.now_ms(),
        confirmed: &d.confirmed,
    };
    observer.update(&view, true);
    let ending = ending?;
    last?;
    if let Ending::AppStopped(why) = &ending {
        store.stop_app(why, d.clock.now_ms()).await?;
    }
    Ok(ending)
}

/// The scheduler as the ledger leaves it (see [`Scheduler::from_ledger`]).
async fn load(store: &Store, settings: &Settings, now: i64, seed: u64) -> anyhow::Result<Scheduler> {
    let limits = Limits::of(&settings.limits);
    let snapshot = store.ledger_snapshot(now - limits.budget.longest_ms()).await?;
    Ok(Scheduler::from_ledger(limits, &snapshot, |name| settings.account(name).is_some(), now, seed))
}

impl Dispatcher<'_> {
    /// The main loop: record the answers back, then send what the scheduler allows, then wait
    /// for an answer or the next time something may go.
    async fn work(
        &mut self,
        shutdown: &CancellationToken,
        opts: &Options,
        observer: &mut dyn Observer,
    ) -> anyhow::Result<Ending> {
        let mut next_refresh = tokio::time::Instant::now() + QUEUE_REFRESH;
        loop {
            // A virtual clock stands still while the dispatcher works.
            let awake = self.clock.hold();
            while let Some(joined) = self.requests.try_join_next() {
                self.answered.push(joined?);
            }
            // An answer that pauses or stops an account, or the app, is in the ledger and the
            // scheduler before the next decision; the others ride with the next claim.
            if self.answered.iter().any(Done::changes_more_than_its_job)
                && let Some(e) = self.record_answers().await?
            {
                return Ok(e);
            }
            let now = self.clock.now_ms();
            let waiting = self.waiting();
            let view = View {
                sched: &self.sched,
                outcomes: &self.outcomes,
                waiting: &waiting,
                free_slots: self.free_slots(),
                now,
                confirmed: &self.confirmed,
            };
            observer.update(&view, false);
            if shutdown.is_cancelled() || opts.deadline.is_some_and(|d| now >= d) {
                return Ok(Ending::Stopped);
            }
            if tokio::time::Instant::now() >= next_refresh {
                next_refresh = tokio::time::Instant::now() + QUEUE_REFRESH;
                refresh_queue(self.store, &mut self.sched, now).await?;
            }
            let confirming = self.confirm_due(now).await?;
            if let Some(e) = confirming.ending {
                return Ok(e);
            }
            // Done only when every follow is settled too (confirmed, or ended unconfirmed).
            let idle = self.requests.is_empty() && !opts.watch && !self.awaiting_checks();
            let decision = self.sched.decide(now);
            let sending = matches!(decision, Decision::Send(_));
            let wake = match decision {
                Decision::Send(id) if self.may_claim() => {
                    if let Some(e) = self.dispatch(id, now).await? {
                        return Ok(e);
                    }
                    continue;
                }
                // Nothing may be claimed now: the answers back are recorded alone, and the next
                // decision is taken with them.
                _ if !sending && !self.answered.is_empty() => {
                    if let Some(e) = self.record_answers().await? {
                        return Ok(e);
                    }
                    continue;
                }
                // Gathering: the next answers free more slots.
                Decision::Send(_) => None,
                Decision::Wait(t) => Some(t),
                // Before saying so, a last look at the queue: jobs may have been added from
                // outside (`followq import`, `followq retry` in another terminal).
                Decision::Idle | Decision::Blocked
                    if idle && refresh_queue(self.store, &mut self.sched, now).await? =>
                {
                    continue;
                }
                Decision::Idle if idle => return Ok(Ending::Finished),
                Decision::Blocked if idle => return Ok(Ending::Blocked),
                Decision::Idle | Decision::Blocked => None,
            };
            let until = [wake, confirming.wake, opts.deadline].into_iter().flatten().min();
            let most = if sending && self.free_slots() > 0 {
                GATHER.saturating_sub(self.last_claim.elapsed())
            } else {
                MAX_NAP
            };
            let busy = !self.requests.is_empty();
            let (read_done, reading) = (self.read_done.clone(), self.reading.is_some());
            let queued = async {
                match &opts.queued {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            drop(awake);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = nap(&self.clock, until, most) => {}
                _ = queued => next_refresh = tokio::time::Instant::now(),
                _ = read_done.notified(), if reading => {}
                Some(joined) = self.requests.join_next(), if busy => self.answered.push(joined?),
            }
        }
    }

    /// Phase 2 for every answer back (in batches), then the scheduler learns of them. Returns an
    /// ending if one of them stops the run.
    async fn record_answers(&mut self) -> anyhow::Result<Option<Ending>> {
        let mut ending = None;
        while !self.answered.is_empty() {
            let (records, verdicts) = self.take_answers();
            let written = self.store.record(&records, &self.clock).await?;
            ending = self.absorb_all(records, verdicts, written).or(ending);
        }
        Ok(ending)
    }

    /// Up to [`RECORD_BATCH`] of the answers back, oldest first.
    fn take_answers(&mut self) -> (Vec<Record>, Vec<Verdict>) {
        let n = self.answered.len().min(RECORD_BATCH);
        self.answered.drain(..n).map(|d| (d.record, d.verdict)).unzip()
    }

    /// Tells the scheduler of recorded answers. Returns an ending if one of them stops the run.
    fn absorb_all(&mut self, records: Vec<Record>, verdicts: Vec<Verdict>, written: Vec<Written>) -> Option<Ending> {
        debug!(answers = records.len(), "recorded");
        let mut ending = None;
        for ((record, verdict), written) in records.into_iter().zip(verdicts).zip(written) {
            if let Some(out) = self.out.get_mut(&record.account_id) {
                out.remove(&record.attempt_id);
            }
            if written == Written::Late {
                warn!(attempt_id = record.attempt_id, "an answer for an attempt that already had one was ignored");
                continue;
            }
            // X answered about the follow itself: the app may follow; the probe is over.
            if !matches!(verdict, Verdict::AppStopped(_) | Verdict::Transient(_) | Verdict::ClockSkew) {
                self.probing = false;
            }
            if let Some(after) = record.check_after {
                let at = self.clock.now_ms() + after;
                self.check_later(record.account_id, at);
            }
            if let Some(e) = absorb(&mut self.sched, &mut self.outcomes, record, verdict, self.client, &self.clock) {
                ending = Some(e);
            }
        }
        ending
    }

    /// True when a claim may go now: a slot is free, and either every slot is, or the last claim
    /// was [`GATHER`] ago or more.
    fn may_claim(&self) -> bool {
        let free = self.free_slots();
        if self.probing && !self.requests.is_empty() {
            return false;
        }
        free > 0 && (free == self.settings.run.concurrency || self.last_claim.elapsed() >= GATHER)
    }

    /// Request slots not taken by a request out.
    fn free_slots(&self) -> usize {
        self.settings.run.concurrency.saturating_sub(self.requests.len())
    }

    /// Per account with requests out: when its oldest unanswered one was claimed.
    fn waiting(&self) -> HashMap<i64, i64> {
        self.out.iter().filter_map(|(a, m)| m.values().min().map(|t| (*a, *t))).collect()
    }

    /// Phase 1 for account `id` (as many jobs as it may send now and slots are free), in one
    /// transaction with the answers back; then each request on its own task. Returns an ending
    /// if one of the answers stops the run.
    async fn dispatch(&mut self, id: i64, now: i64) -> anyhow::Result<Option<Ending>> {
        if let Some(e) = self.identify(id, now).await? {
            return Ok(Some(e));
        }
        let read_wait = match self.resolve_ahead(id).await? {
            Ahead::End(e) => return Ok(Some(e)),
            Ahead::Wait(t) => Some(t),
            Ahead::Go => None,
        };
        // Stopped or paused by identifying or resolving: the scheduler decides again.
        if self.sched.account(id).is_some_and(|a| a.stopped.is_some() || a.paused_until > now)
            || (self.resolver.is_some() && !self.sources.contains_key(&id))
        {
            return Ok(None);
        }
        let want = if self.probing { 1 } else { self.sched.burst(id, now, self.free_slots()) };
        let (records, verdicts) = self.take_answers();
        let ask = Ask { account_id: id, budget: &self.budget, want, ids_only: self.resolver.is_some() };
        let (written, claimed) = self.store.record_and_claim(&records, &self.clock, ask).await?;
        self.last_claim = std::time::Instant::now();
        let ending = self.absorb_all(records, verdicts, written);
        let (store, settings, sched) = (self.store, self.settings, &mut self.sched);
        match claimed {
            ClaimResult::Claimed(claims) => {
                debug!(account = id, claimed = claims.len(), want, "claimed");
                if let Some(n) = self.resolved_ahead.get_mut(&id) {
                    *n -= claims.len() as i64;
                }
                let account = self
                    .accounts
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("account {id} has no credentials"))?;
                // Sent at the time the ledger stamped them: later than `now` if the claim waited
                // for another writer's lock.
                let sent_at = claims.first().map_or(now, |c| c.sent_at);
                sched.claimed(id, claims.len(), sent_at);
                // The same for every claim of the batch (taken after their sends are mirrored).
                let ctx = TaskCtx {
                    client: self.client.clone(),
                    clock: self.clock.clone(),
                    retry: settings.retry.clone(),
                    cooldown_ms: (settings.limits.longest_user().length.as_millis() as f64 * COOLDOWN_SHARE) as i64,
                    pace_factor: sched.account(id).map_or(1.0, |a| a.pace_factor),
                    window_frees: sched.user_window_frees(id).unwrap_or(sent_at),
                    settle_ms: settings.verify.confirm.then_some(settings.verify.settle.as_millis() as i64),
                };
                let out = self.out.entry(id).or_default();
                for claim in claims {
                    debug!(account = %account.name, job_id = claim.job_id, attempt_id = claim.attempt_id, "sending");
                    out.insert(claim.attempt_id, claim.sent_at);
                    let (ctx, account, hold) = (ctx.clone(), account.clone(), self.clock.hold());
                    let source = self.sources.get(&id).cloned().unwrap_or_default();
                    self.requests.spawn(async move {
                        let (record, verdict) = ctx.attempt(&account, &source, &claim).await;
                        Done { record, verdict, _hold: hold }
                    });
                }
            }
            // Names not resolved yet wait for reads to go again, not the next turn.
            ClaimResult::NoJob => {
                self.resolved_ahead.remove(&id);
                match read_wait.or_else(|| self.resolver.as_ref().and_then(|r| r.paused(now))) {
                    Some(t) => sched.nothing_ready(id, Some(t)),
                    None => sched.nothing_ready(id, store.next_ready_at(id).await?),
                }
            }
            // Paused or stopped from outside this run (`followq accounts`, another process).
            ClaimResult::Paused { until, reason } => sched.paused(id, until, &reason, None),
            ClaimResult::Stopped(reason) => sched.stopped(id, &reason),
            ClaimResult::UserFull | ClaimResult::AppFull => {
                // The ledger knows sends this run did not make (another process): take its view
                // and decide again.
                let name = sched.account(id).map(|a| a.name.clone()).unwrap_or_default();
                warn!(account = %name, "the ledger's window is fuller than this run knew (another process?): reloading it");
                *sched = load(store, settings, self.clock.now_ms(), rand::random()).await?;
            }
        }
        Ok(ending)
    }
}

/// Waits until `until` on `clock`, for `most` of real time at most, while nothing else wakes
/// the dispatcher.
async fn nap(clock: &Clock, until: Option<i64>, most: Duration) {
    match until {
        Some(t) => clock.sleep_until(t, most).await,
        None => tokio::time::sleep(most).await,
    }
}

/// Applies a recorded answer to the scheduler. Returns an ending if the run must stop.
fn absorb(
    sched: &mut Scheduler,
    outcomes: &mut HashMap<i64, HashMap<&'static str, i64>>,
    record: Record,
    verdict: Verdict,
    client: &Client,
    clock: &Clock,
) -> Option<Ending> {
    let id = record.account_id;
    let name = sched.account(id)?.name.clone();
    match &record.job {
        RecordJob::Done(o) => {
            *outcomes.entry(id).or_default().entry(o.as_str()).or_default() += 1;
            debug!(account = %name, job_id = record.job_id, outcome = o.as_str(), status = record.http_status, "job finished");
        }
        RecordJob::Requeue { not_before, failure } => {
            sched.requeued(id, *not_before);
            if *failure {
                // Once per failure, at the default level: time-outs and 5xx are what a user
                // watching a stuck run needs to see.
                let wait = human_ms(*not_before - clock.now_ms());
                info!(account = %name, job_id = record.job_id, error = %printable(&record.message), retry_in = %wait, "request failed; it will be retried");
            }
        }
    }
    if record.job == RecordJob::Done(Outcome::Failed) {
        warn!(account = %name, job_id = record.job_id, error = %printable(&record.message), "job failed: no more retries (`followq retry` queues it again)");
    }
    match &record.account {
        Some(RecordAccount::Pause { until, reason, pace_factor }) => {
            sched.paused(id, *until, reason, *pace_factor);
            warn!(account = %name, until = %local_time(*until), reason = %printable(reason), "account paused");
        }
        Some(RecordAccount::Stop { reason }) => {
            sched.stopped(id, reason);
            warn!(account = %name, reason = %printable(reason), "account stopped");
        }
        None => {}
    }
    match verdict {
        Verdict::AppStopped(why) => Some(Ending::AppStopped(why)),
        Verdict::ClockSkew => {
            info!(offset_secs = client.clock_offset(), "clock corrected from the server's Date header");
            None
        }
        _ => None,
    }
}

/// Takes each account's queued count from the database, which counts every job whoever queued
/// it; an account with more than the scheduler knew may send from `now`. True when any account
/// gained work. (The dispatcher writes synchronously, so the database and the scheduler agree on
/// everything this run did: a difference is someone else's.)
async fn refresh_queue(store: &Store, sched: &mut Scheduler, now: i64) -> anyhow::Result<bool> {
    let counts: HashMap<i64, i64> = store.queued_counts().await?.into_iter().collect();
    let ids: Vec<i64> = sched.accounts().iter().map(|a| a.id).collect();
    let mut gained = false;
    for id in ids {
        gained |= sched.queued_changed(id, counts.get(&id).copied().unwrap_or(0), now);
    }
    if gained {
        info!("new jobs in the queue: taking them into this run");
    }
    Ok(gained)
}
