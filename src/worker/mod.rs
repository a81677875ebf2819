//! Claim → send → record. The dispatcher asks the scheduler who may go, claims a job in the
//! ledger (phase 1, committed before the request), sends it on a task, and the task records the
//! answer (phase 2, guarded by the attempt id). One shutdown path: a cancellation token.
//!
//! [`policy`] is what an answer means for the job and the account; [`lock`] keeps a second
//! run off the database.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::Client;
use crate::api::classify::{Outcome, Verdict};
use crate::config::{Account, Settings};
use crate::schedule::{Decision, Limits, Scheduler};
use crate::store::{Claim, ClaimAsk, ClaimResult, Record, RecordAccount, RecordJob, Store, WindowView, Writer, now_ms};
use crate::text::printable;
use crate::time::{human_ms, local_time};

mod lock;
mod policy;

pub use lock::{RunLock, lock};
use policy::{COOLDOWN_SHARE, TaskCtx};

/// How long the dispatcher sleeps at most before it looks at the clock again: deadlines are
/// re-checked after every wake, so a laptop that slept through the night resumes correctly.
const MAX_NAP: Duration = Duration::from_secs(1);

/// Builds the scheduler from the ledger (see [`Scheduler::from_ledger`]).
pub async fn load_scheduler(store: &Store, settings: &Settings, now: i64, seed: u64) -> anyhow::Result<Scheduler> {
    let limits = Limits::of(&settings.limits);
    let snapshot = store.ledger_snapshot(now - limits.window_ms).await?;
    Ok(Scheduler::from_ledger(limits, &snapshot, |name| settings.account(name).is_some(), now, seed))
}

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
pub struct Options {
    /// Stop sending at this time (ms since the epoch).
    pub deadline: Option<i64>,
    /// Keep running when the queue is empty: new work comes through the database (the inbox
    /// watcher of `run --watch`, or another terminal), and every job is taken in within a
    /// [`QUEUE_REFRESH`].
    pub watch: bool,
    /// Seeds the pacing jitter (tests replay a run).
    pub seed: u64,
}

/// An answered request: the record to write, what it means, and when it came back.
struct Done {
    record: Record,
    verdict: Verdict,
    at: std::time::Instant,
}

/// How long an answer may wait to be written while the dispatcher gathers a larger turn: what a
/// crash could make it re-send, bounded.
const RECORD_WITHIN: Duration = Duration::from_millis(100);

impl Done {
    /// Pauses or stops its account, or stops the app: must be written and absorbed before the
    /// next claim is decided.
    fn changes_more_than_its_job(&self) -> bool {
        self.record.account.is_some() || matches!(self.verdict, Verdict::AppStopped(_))
    }
}

/// Answers written per transaction at most (9 bound values each).
const RECORD_BATCH: usize = 256;

/// Turns between WAL checkpoints (see [`Store::checkpoint`]): a turn writes a few dozen pages, so
/// the WAL stays near the size SQLite's own automatic checkpoint keeps it at (1000 pages).
const CHECKPOINT_EVERY: u32 = 40;

/// The dispatcher: the only writer of the ledger during a run. Requests go out on their own
/// tasks and send their answers back; the dispatcher records them in batches (phase 2) and
/// claims new work (phase 1), so the two never contend for SQLite's write lock, and an answer
/// is in the scheduler the moment it is in the database.
struct Dispatcher<'a> {
    store: &'a Store,
    settings: &'a Settings,
    client: &'a Client,
    sched: Scheduler,
    outcomes: HashMap<i64, HashMap<&'static str, i64>>,
    /// Each account's credentials, shared by its requests.
    accounts: HashMap<i64, Arc<Account>>,
    /// Claimed and not yet absorbed: waiting for a slot, out, or answered and pending.
    in_flight: usize,
    /// Claims to take ahead of the free slots now, and the most ever (see [`line_depth`]).
    ahead: usize,
    ahead_most: usize,
    /// Answers that came back from the API (not the unsent), per second.
    answered: Rate,
    slots: Arc<Mutex<Slots>>,
    writer: Writer,
    /// Turns since the last WAL checkpoint.
    turns: u32,
    answers_tx: mpsc::UnboundedSender<Done>,
    answers: mpsc::UnboundedReceiver<Done>,
    pending: Vec<Done>,
    /// Requests claimed and not yet answered, per account: attempt id → claimed at (ms).
    out: HashMap<i64, std::collections::BTreeMap<i64, i64>>,
}

/// Claims waiting for a free request slot, and the sender tasks that take them.
///
/// The dispatcher claims jobs ahead of the free slots (see [`line_depth`]), so that a slot freed
/// while it is writing to the ledger is refilled at once, and each transaction carries more
/// answers and claims (at high rates a transaction's fixed cost dominates). A waiting claim's
/// attempt already counts against both budgets; its `sent_at` is its claim time, so the request
/// leaves a little later than the ledger says. That is safe while the delay stays within the
/// safety margin (the enforced window is X's plus the margin), so a claim that waited longer than
/// half the margin is not sent but handed back (see [`not_sent`]).
struct Slots {
    waiting: VecDeque<Work>,
    /// Sender tasks alive, at most `concurrency`: the requests in flight.
    senders: usize,
    concurrency: usize,
    /// Accounts an answer paused or stopped that the dispatcher has not absorbed yet: their
    /// waiting claims are handed back rather than sent.
    halted: HashSet<i64>,
    /// An answer stopped the app: nothing more is sent.
    app_halted: bool,
    /// The longest a claim may wait for a slot, ms.
    max_wait_ms: i64,
}

/// The most claims to take ahead of the free slots: [`CLAIMS_AHEAD_PER_SLOT`] per slot, and no
/// more than 1 % of an account's budget (a 429 hands back that account's waiting claims, their
/// attempts counted: at X's 400 a day, 4 ahead); none with a margin so short that a claim could
/// not wait for a slot without being handed back (half of it under [`MIN_WAIT_FOR_AHEAD`]: test
/// windows of seconds). How many of them to take now is [`line_depth`].
fn claims_ahead(settings: &Settings) -> usize {
    if settings.limits.margin / 2 < MIN_WAIT_FOR_AHEAD {
        return 0;
    }
    (CLAIMS_AHEAD_PER_SLOT * settings.run.concurrency).min(settings.limits.per_user as usize / 100)
}

/// The longest a claim may wait for a slot: half the safety margin, ms.
fn max_wait_ms(settings: &Settings) -> i64 {
    settings.limits.margin.as_millis() as i64 / 2
}

/// See [`claims_ahead`].
const MIN_WAIT_FOR_AHEAD: Duration = Duration::from_secs(1);

/// See [`claims_ahead`]. Measured in the dispatch benchmark (limits lifted, 8 slots): with 6 per
/// slot a turn carried ~27 answers and claims, took ~1.2 ms, and the line ran dry ~2,400 times
/// in 20,000 jobs; with 24, ~94 per turn and ~300 times dry, 15,600 → 22,200 follows/s.
const CLAIMS_AHEAD_PER_SLOT: usize = 24;

/// How many claims to keep ahead of the free slots now: as many as the slots answered in a
/// quarter of the safety margin (half of the longest a claim may wait, `max_wait_ms`), within
/// `most`. A claim at the back of the line then waits about half as long as it may, and the line
/// shrinks by itself when answers slow down: when requests hang until their timeout, a long line
/// would only age past the margin and be handed back unsent, its attempts counted for nothing.
/// None until answers have come back.
fn line_depth(most: usize, answers_per_sec: u64, max_wait_ms: i64) -> usize {
    let depth = answers_per_sec.saturating_mul(max_wait_ms.max(0) as u64) / 2_000;
    most.min(usize::try_from(depth).unwrap_or(usize::MAX))
}

/// Answers per second: the count of the last whole second, or of the current one once it is
/// larger.
struct Rate {
    since: std::time::Instant,
    this: u64,
    last: u64,
}

impl Rate {
    fn new() -> Rate {
        Rate { since: std::time::Instant::now(), this: 0, last: 0 }
    }

    fn roll(&mut self) {
        let age = self.since.elapsed();
        if age >= Duration::from_secs(1) {
            self.last = if age < Duration::from_secs(2) { self.this } else { 0 };
            self.this = 0;
            self.since = std::time::Instant::now();
        }
    }

    fn note(&mut self, n: usize) {
        self.roll();
        self.this += n as u64;
    }

    fn per_sec(&mut self) -> u64 {
        self.roll();
        self.last.max(self.this)
    }
}

/// A claimed job with what its request needs.
struct Work {
    claim: Claim,
    account: Arc<Account>,
    ctx: TaskCtx,
}

impl Slots {
    /// Hands back the waiting claims of `account` (every one if `None`).
    fn hand_back(&mut self, account: Option<i64>, why: &str) -> Vec<Done> {
        let (back, keep): (Vec<Work>, Vec<Work>) =
            self.waiting.drain(..).partition(|w| account.is_none_or(|a| w.claim.account_id == a));
        self.waiting = keep.into();
        back.iter().map(|w| not_sent(&w.claim, why)).collect()
    }
}

/// A sender task: takes waiting claims and sends them, one at a time, until none is left.
async fn sender(slots: Arc<Mutex<Slots>>, answers: mpsc::UnboundedSender<Done>) {
    loop {
        let (work, max_wait) = {
            let mut s = slots.lock().expect("slots lock");
            match s.waiting.pop_front() {
                Some(w) => (w, s.max_wait_ms),
                None => {
                    s.senders -= 1;
                    return;
                }
            }
        };
        let waited = now_ms() - work.claim.sent_at;
        let done = if waited > max_wait {
            not_sent(&work.claim, &format!("waited {waited} ms for a free slot, longer than half the safety margin"))
        } else {
            let c = &work.claim;
            debug!(account = %work.account.name, job_id = c.job_id, attempt_id = c.attempt_id, waited, "sending");
            work.ctx.attempt(work.account, work.claim).await
        };
        let mut back = Vec::new();
        if done.changes_more_than_its_job() {
            let mut s = slots.lock().expect("slots lock");
            if matches!(done.verdict, Verdict::AppStopped(_)) {
                s.app_halted = true;
                back = s.hand_back(None, "the app was stopped");
            } else {
                s.halted.insert(done.record.account_id);
                back = s.hand_back(Some(done.record.account_id), "the account was paused or stopped");
            }
        }
        // The dispatcher outlives every request it sent; if it is gone the process is ending
        // and the attempt stays "unknown" for the next start.
        for d in back.into_iter().chain([done]) {
            let _ = answers.send(d);
        }
    }
}

/// The answer for a claim that was never sent: the attempt stays in the ledger (counted, which
/// errs on the safe side) as a transient result, and the job goes back to the queue with no
/// failure counted.
fn not_sent(claim: &Claim, why: &str) -> Done {
    Done {
        record: Record { sent: false, message: format!("not sent: {why}"), ..Record::for_claim(claim) },
        verdict: Verdict::Transient("not sent".into()),
        at: std::time::Instant::now(),
    }
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
    let rec = store.recover().await?;
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
    let sched = load_scheduler(store, settings, now_ms(), opts.seed).await?;
    let accounts = sched
        .accounts()
        .iter()
        .filter_map(|a| settings.account(&a.name).map(|c| (a.id, Arc::new(c.clone()))))
        .collect();
    let (answers_tx, answers) = mpsc::unbounded_channel();
    let slots = Slots {
        waiting: VecDeque::new(),
        senders: 0,
        concurrency: settings.run.concurrency,
        halted: HashSet::new(),
        app_halted: false,
        // Only a claim taken ahead waits for a slot; one taken for a free slot goes at once,
        // however small the margin (with none, every claim's commit would count as a wait).
        max_wait_ms: if claims_ahead(settings) > 0 { max_wait_ms(settings) } else { i64::MAX },
    };
    let mut d = Dispatcher {
        store,
        settings,
        client,
        sched,
        outcomes: HashMap::new(),
        accounts,
        in_flight: 0,
        ahead: 0,
        ahead_most: claims_ahead(settings),
        answered: Rate::new(),
        slots: Arc::new(Mutex::new(slots)),
        writer: store.writer().await?,
        turns: 0,
        answers_tx,
        answers,
        pending: Vec::new(),
        out: HashMap::new(),
    };
    let ending = d.work(&shutdown, &opts, observer).await;
    // Claims still waiting for a slot are not sent now.
    let back = d.slots.lock().expect("slots lock").hand_back(None, "the run was ending");
    d.pending.extend(back);
    // Stop sending; let the requests that are out come back and be recorded. reqwest's timeout
    // bounds each; one that truly never returns stays "unknown" for the next start.
    let grace = tokio::time::Instant::now() + settings.api.timeout + Duration::from_secs(2);
    while d.in_flight > d.pending.len() {
        match tokio::time::timeout_at(grace, d.answers.recv()).await {
            Ok(Some(done)) => d.pending.push(done),
            _ => break,
        }
    }
    let last = d.flush().await;
    let waiting = d.waiting();
    let view =
        View { sched: &d.sched, outcomes: &d.outcomes, waiting: &waiting, free_slots: d.free_slots(), now: now_ms() };
    observer.update(&view, true);
    let ending = ending?;
    last?;
    Ok(ending)
}

impl Dispatcher<'_> {
    /// The main loop: record answers, then send what the scheduler allows, then sleep.
    async fn work(
        &mut self,
        shutdown: &CancellationToken,
        opts: &Options,
        observer: &mut dyn Observer,
    ) -> anyhow::Result<Ending> {
        let mut next_refresh = tokio::time::Instant::now() + QUEUE_REFRESH;
        loop {
            while let Ok(done) = self.answers.try_recv() {
                self.pending.push(done);
            }
            // Answers that pause or stop an account, or the app, are written and absorbed before
            // anything else is claimed; the rest ride along with the next claim.
            let alone = self.pending.iter().any(Done::changes_more_than_its_job);
            if (alone || self.pending.len() > RECORD_BATCH)
                && let Some(e) = self.flush().await?
            {
                return Ok(e);
            }
            let now = now_ms();
            let waiting = self.waiting();
            let view = View {
                sched: &self.sched,
                outcomes: &self.outcomes,
                waiting: &waiting,
                free_slots: self.free_slots(),
                now,
            };
            observer.update(&view, false);
            if shutdown.is_cancelled() || opts.deadline.is_some_and(|d| now >= d) {
                return Ok(Ending::Stopped);
            }
            if tokio::time::Instant::now() >= next_refresh {
                next_refresh = tokio::time::Instant::now() + QUEUE_REFRESH;
                refresh_queue(self.store, &mut self.sched, now).await?;
            }
            self.ahead = line_depth(self.ahead_most, self.answered.per_sec(), max_wait_ms(self.settings));
            let idle = self.in_flight == 0 && !opts.watch;
            let free = self.free_places();
            let wake = match self.sched.decide(now) {
                Decision::Send(id) if free >= self.claim_floor() || free > 0 && self.answers_kept_waiting() => {
                    if let Some(e) = self.dispatch(id, now).await? {
                        return Ok(e);
                    }
                    continue;
                }
                // Claims are still waiting for slots: gather more answers (for a moment at
                // most), so the next turn writes them and claims in one larger transaction.
                Decision::Send(_)
                    if self.in_flight > self.pending.len()
                        && self.pending.len() <= RECORD_BATCH
                        && !self.answers_kept_waiting() =>
                {
                    Some(now + RECORD_WITHIN.as_millis() as i64)
                }
                // Nothing to claim: write the answers alone, then decide again with them.
                _ if !self.pending.is_empty() => {
                    if let Some(e) = self.flush().await? {
                        return Ok(e);
                    }
                    continue;
                }
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
            let mut nap = wake.map_or(MAX_NAP, |t| Duration::from_millis((t - now).max(1) as u64).min(MAX_NAP));
            if let Some(d) = opts.deadline {
                nap = nap.min(Duration::from_millis((d - now).max(1) as u64));
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(nap) => {}
                Some(done) = self.answers.recv(), if self.in_flight > 0 => self.pending.push(done),
            }
        }
    }

    /// Records the answers that came back (phase 2, in batches), then applies them to the
    /// scheduler. Returns an ending if one of them stops the run.
    async fn flush(&mut self) -> anyhow::Result<Option<Ending>> {
        let mut ending = None;
        while !self.pending.is_empty() {
            let n = self.pending.len().min(RECORD_BATCH);
            let batch: Vec<Done> = self.pending.drain(..n).collect();
            let records: Vec<&Record> = batch.iter().map(|d| &d.record).collect();
            let written = self.store.record_batch(&records).await?;
            drop(records);
            ending = self.absorb_all(batch, written).or(ending);
        }
        Ok(ending)
    }

    /// Puts claims in line for a slot and starts senders for the free slots. A claim of an
    /// account an unabsorbed answer paused or stopped is handed back at once.
    fn enqueue(&mut self, works: Vec<Work>) {
        let start = {
            let mut s = self.slots.lock().expect("slots lock");
            for w in works {
                if s.app_halted || s.halted.contains(&w.claim.account_id) {
                    // Claimed before the pause was written; not sent after it was answered.
                    self.pending.push(not_sent(&w.claim, "the account was paused or stopped"));
                } else {
                    s.waiting.push_back(w);
                }
            }
            let start = (s.concurrency - s.senders).min(s.waiting.len());
            s.senders += start;
            start
        };
        for _ in 0..start {
            tokio::spawn(sender(self.slots.clone(), self.answers_tx.clone()));
        }
    }

    /// Request slots not taken by a request out.
    fn free_slots(&self) -> usize {
        self.settings.run.concurrency.saturating_sub(self.in_flight - self.pending.len())
    }

    /// Per account with requests out: when its oldest unanswered one was claimed.
    fn waiting(&self) -> HashMap<i64, i64> {
        self.out.iter().filter_map(|(a, m)| m.values().min().map(|t| (*a, *t))).collect()
    }

    /// Places for new claims: the slots plus the claims ahead, less the claims waiting or out
    /// (answers waiting to be written have freed theirs).
    fn free_places(&self) -> usize {
        let out = self.in_flight - self.pending.len();
        (self.settings.run.concurrency + self.ahead).saturating_sub(out)
    }

    /// True when the oldest answer not yet written came back [`RECORD_WITHIN`] ago or more.
    fn answers_kept_waiting(&self) -> bool {
        self.pending.first().is_some_and(|d| d.at.elapsed() >= RECORD_WITHIN)
    }

    /// The fewest free places (slots plus claims ahead) worth a turn: with claims ahead, half of
    /// them, so a turn carries many answers and claims while the line still feeds every slot
    /// (a turn's transaction costs as much as some thirty jobs' rows); without, one.
    fn claim_floor(&self) -> usize {
        (self.ahead / 2).max(1)
    }

    /// Every [`CHECKPOINT_EVERY`] turns, a WAL checkpoint on the turns' connection (after the
    /// turn's claims are on their way, so the senders have work while it copies).
    async fn checkpoint_now_and_then(&mut self) {
        self.turns += 1;
        if self.turns < CHECKPOINT_EVERY {
            return;
        }
        self.turns = 0;
        match self.store.checkpoint(&mut self.writer).await {
            Ok((log, copied)) if copied < log => {
                debug!(log, copied, "WAL checkpoint incomplete (a reader holds an older snapshot)")
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "WAL checkpoint failed (the next one will try again)"),
        }
    }

    /// Applies written answers to the scheduler (`written[k]` false: the attempt already had an
    /// answer, and this one changed nothing).
    fn absorb_all(&mut self, batch: Vec<Done>, written: Vec<bool>) -> Option<Ending> {
        debug!(answers = batch.len(), "recorded");
        self.in_flight -= batch.len();
        for d in &batch {
            if let Some(out) = self.out.get_mut(&d.record.account_id) {
                out.remove(&d.record.attempt_id);
            }
        }
        self.answered.note(batch.iter().filter(|d| d.record.sent).count());
        let mut ending = None;
        for (done, ok) in batch.into_iter().zip(written) {
            if done.record.account.is_some() {
                // Absorbed: the scheduler knows of the pause or stop now, and claims no more.
                self.slots.lock().expect("slots lock").halted.remove(&done.record.account_id);
            }
            if !ok {
                warn!(attempt_id = done.record.attempt_id, "an answer for an attempt that already had one was ignored");
                continue;
            }
            if let Some(e) = absorb(&mut self.sched, &mut self.outcomes, done, self.client) {
                ending = Some(e);
            }
        }
        ending
    }

    /// Phase 1 for account `id` (as many jobs as it may send now), in one transaction with the
    /// answers waiting to be written; then each request on its own task. Returns an ending if one
    /// of the answers stops the run.
    async fn dispatch(&mut self, id: i64, now: i64) -> anyhow::Result<Option<Ending>> {
        let Some(i) = self.sched.index_of(id) else { return Ok(None) };
        let (per_user, per_app) = (self.settings.limits.per_user, self.settings.limits.per_app);
        let view = WindowView {
            start: now - self.sched.limits.window_ms,
            per_user,
            per_app,
            known_max_id: self.sched.known_max_id,
            user_used: self.sched.used(i, now),
            app_used: self.sched.app_used(now),
        };
        let want = self.sched.burst(i, now, self.free_places());
        let room = (per_user as usize)
            .saturating_sub(view.user_used)
            .min((per_app as usize).saturating_sub(view.app_used))
            .min(want.max(1));
        let ask = ClaimAsk { account_id: id, now, known_max_id: view.known_max_id, room };
        let batch: Vec<Done> = self.pending.drain(..).collect();
        let records: Vec<&Record> = batch.iter().map(|d| &d.record).collect();
        let (written, result) = self.store.turn(&mut self.writer, &records, (room > 0).then_some(ask)).await?;
        drop(records);
        let ending = self.absorb_all(batch, written);
        let result = match result {
            // The mirror says the window is full, yet the scheduler said send: count the ledger.
            None | Some(ClaimResult::Foreign) => self.store.claim(id, now, view, want).await?,
            Some(r) => r,
        };
        // By id, afresh: the answers absorbed above may have changed the scheduler.
        let Some(i) = self.sched.index_of(id) else { return Ok(ending) };
        let (store, settings, sched) = (self.store, self.settings, &mut self.sched);
        match result {
            ClaimResult::Claimed { claims, foreign } => {
                debug!(account = id, claimed = claims.len(), want, "claimed");
                let account = self
                    .accounts
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("account {id} has no credentials"))?;
                let attempts: Vec<i64> = claims.iter().map(|c| c.attempt_id).collect();
                sched.claimed(id, &attempts, now);
                // The same for every claim of the batch (taken after their sends are mirrored).
                let ctx = TaskCtx {
                    client: self.client.clone(),
                    retry: settings.retry.clone(),
                    cooldown_ms: (settings.limits.window.as_millis() as f64 * COOLDOWN_SHARE) as i64,
                    pace_factor: sched.accounts()[i].pace_factor,
                    window_frees: sched.oldest_send(i).map_or(now, |t| t + sched.limits.window_ms),
                };
                self.in_flight += claims.len();
                let out = self.out.entry(id).or_default();
                out.extend(claims.iter().map(|c| (c.attempt_id, c.sent_at)));
                let works = claims
                    .into_iter()
                    .map(|claim| Work { claim, account: account.clone(), ctx: ctx.clone() })
                    .collect();
                self.enqueue(works);
                if foreign {
                    // Another process wrote to the ledger: take its view before deciding again.
                    warn!("the ledger has requests this run did not send (another process?): reloading it");
                    reload(self.store, self.settings, now, &mut self.sched).await?;
                }
            }
            ClaimResult::NoJob => sched.nothing_ready(id, store.next_ready_at(id).await?),
            // An answer recorded a pause or stop that this loop has not absorbed yet.
            ClaimResult::Paused { until, reason } => sched.paused(id, until, &reason, None),
            ClaimResult::Stopped(reason) => sched.stopped(id, &reason),
            ClaimResult::UserFull | ClaimResult::AppFull | ClaimResult::Foreign => {
                // The ledger knows sends this process did not make (another process, or a clock
                // step): take its view and decide again.
                warn!(account = %sched.accounts()[i].name, "the ledger's window is fuller than expected; reloading it");
                reload(store, settings, now, sched).await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.checkpoint_now_and_then().await;
        Ok(ending)
    }
}

/// Replaces the mirror with the ledger's view (after another process wrote to it).
async fn reload(store: &Store, settings: &Settings, now: i64, sched: &mut Scheduler) -> anyhow::Result<()> {
    let fresh = load_scheduler(store, settings, now, rand::rng().random()).await?;
    *sched = fresh;
    Ok(())
}

/// Applies a finished request to the scheduler. Returns an ending if the run must stop.
fn absorb(
    sched: &mut Scheduler,
    outcomes: &mut HashMap<i64, HashMap<&'static str, i64>>,
    done: Done,
    client: &Client,
) -> Option<Ending> {
    let id = done.record.account_id;
    let name = sched.account(id)?.name.clone();
    match &done.record.job {
        RecordJob::Done(o) => {
            *outcomes.entry(id).or_default().entry(o.as_str()).or_default() += 1;
            debug!(account = %name, job_id = done.record.job_id, outcome = o.as_str(), status = done.record.http_status, "job finished");
        }
        RecordJob::Requeue { not_before, failure } => {
            sched.requeued(id, *not_before);
            if *failure {
                // Once per failure, at the default level: time-outs and 5xx are what a user
                // watching a stuck run needs to see.
                let wait = human_ms(*not_before - crate::store::now_ms());
                info!(account = %name, job_id = done.record.job_id, error = %printable(&done.record.message), retry_in = %wait, "request failed; it will be retried");
            }
        }
    }
    if done.record.job == RecordJob::Done(Outcome::Failed) {
        warn!(account = %name, job_id = done.record.job_id, error = %printable(&done.record.message), "job failed: no more retries (`followq retry` queues it again)");
    }
    match &done.record.account {
        Some(RecordAccount::Pause { until, reason, pace_factor }) => {
            sched.paused(id, *until, reason, *pace_factor);
            warn!(account = %name, until = %local_time(*until), reason = %reason, "account paused");
        }
        Some(RecordAccount::Stop { reason }) => {
            sched.stopped(id, reason);
            warn!(account = %name, reason = %reason, "account stopped");
        }
        None => {}
    }
    match done.verdict {
        Verdict::AppStopped(why) => Some(Ending::AppStopped(why)),
        Verdict::ClockSkew => {
            info!(offset_secs = client.clock_offset(), "clock corrected from the server's Date header");
            None
        }
        _ => None,
    }
}

/// How often a run looks at the queue's counts for work it did not put there (an import or a
/// `followq retry` from another terminal, the inbox).
pub const QUEUE_REFRESH: Duration = Duration::from_secs(2);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_holds_what_the_slots_answer_in_a_quarter_of_the_margin() {
        // X's limits: a 432 s margin, so a claim may wait 216 s; one slot, 24 at most.
        assert_eq!(line_depth(24, 0, 216_000), 0, "nothing ahead before any answer, or while requests hang");
        assert_eq!(line_depth(24, 3, 216_000), 24, "three answers a second: capped");
        // The benchmark: an 18 s margin (9 s wait), 8 slots, thousands of answers a second.
        assert_eq!(line_depth(192, 20_000, 9_000), 192);
        // A 4 s margin (2 s wait) and 10 answers a second: 10 claims, a second's worth.
        assert_eq!(line_depth(144, 10, 2_000), 10);
        assert_eq!(line_depth(144, 10, -5), 0);
    }

    #[test]
    fn the_rate_is_the_last_whole_second_or_the_current_one_once_larger() {
        let mut r = Rate::new();
        r.note(5);
        assert_eq!(r.per_sec(), 5);
        // A second later the count moves to `last`; a fresh second starts from nothing.
        r.since -= Duration::from_millis(1_100);
        assert_eq!(r.per_sec(), 5);
        r.note(7);
        assert_eq!(r.per_sec(), 7);
        // More than two seconds without a roll: the old count is stale, the rate is what is new.
        r.since -= Duration::from_millis(2_500);
        assert_eq!(r.per_sec(), 0);
    }
}
