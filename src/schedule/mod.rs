//! When may the next request go: per account and for the app, the rolling-window cap from the
//! ledger, `spread` pacing, pauses, stopped accounts, and round-robin between accounts.
//!
//! Pure: every function takes `now` (ms), so days of scheduling are tested in microseconds. Its
//! state is an in-memory mirror of the ledger, loaded from the database at start-up and updated on
//! every claim; the ledger check inside the claim transaction stays the hard guarantee.
//!
//! Why the follow budget lives here and in the ledger, not in governor (the stack's pacing
//! crate, which fits the read endpoints: short windows, state a restart may forget). governor's
//! state could be seeded from the database through its `StateStore` trait, but: a check
//! consumes a cell, so checking the account and then the app wastes one when the second
//! refuses; one keyed limiter has one quota, while accounts' paces differ (a 226 slows one);
//! its jitter has its own unseeded rng and applies only to its async waits, so a run can be
//! neither replayed nor tested in microseconds; and GCRA with a burst does not cap a rolling
//! window (with burst 400 and a 216 s period, up to 799 requests in some 24 hours). Spacing
//! "one request per window/limit after the last one" derives exactly from the ledger's last
//! send, so one source of truth does both jobs, survives restarts, and is tested without
//! sleeping.

use std::collections::{HashMap, VecDeque};

use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::config::Pace;
use crate::model::{Budget, Quota};

/// The share of the spacing that jitter may take off in `spread` mode: requests never come at a
/// perfectly regular beat, and the window cap still bounds the total.
const JITTER: f64 = 0.05;

/// The limits as the scheduler uses them: every window of both scopes, as enforced, and the pace.
#[derive(Debug, Clone)]
pub struct Limits {
    pub budget: Budget,
    pub pace: Pace,
    /// Each window as configured (`50/15m`), in the budget's order: how the display names them.
    pub names: Vec<(Quota, String)>,
}

impl Limits {
    /// The configured limits, with each window as enforced (X's plus the margin).
    pub fn of(limits: &crate::config::Limits) -> Limits {
        let quotas = |ws: &[crate::config::Window]| {
            ws.iter().map(|w| Quota { limit: w.limit, window_ms: limits.enforced_ms(w) }).collect()
        };
        let budget = Budget { user: quotas(&limits.user), app: quotas(&limits.app) };
        let names = budget
            .user
            .iter()
            .zip(&limits.user)
            .chain(budget.app.iter().zip(&limits.app))
            .map(|(q, w)| (*q, w.to_string()))
            .collect();
        Limits { budget, pace: limits.pace, names }
    }

    /// Limits with these windows; each is named by its enforced length.
    pub fn new(budget: Budget, pace: Pace) -> Limits {
        let names =
            budget.user.iter().chain(&budget.app).map(|q| (*q, format!("{}/{}ms", q.limit, q.window_ms))).collect();
        Limits { budget, pace, names }
    }

    /// How a window is named: as configured (`50/15m`).
    pub fn name_of(&self, q: &Quota) -> String {
        self.names
            .iter()
            .find(|(n, _)| n == q)
            .map_or_else(|| format!("{}/{}ms", q.limit, q.window_ms), |(_, s)| s.clone())
    }

    /// Spread spacing between one account's requests, ms: that of its binding window, the one
    /// that allows the fewest requests per unit of time.
    pub fn user_spacing(&self, pace_factor: f64) -> i64 {
        (spacing(&self.budget.user) * pace_factor).ceil() as i64
    }
    /// Spread spacing between the app's requests, ms.
    pub fn app_spacing(&self) -> i64 {
        spacing(&self.budget.app).ceil() as i64
    }

    /// The account's binding window: the one spread pacing spaces by.
    pub fn binding_user(&self) -> Option<Quota> {
        binding(&self.budget.user)
    }
    /// The app's binding window.
    pub fn binding_app(&self) -> Option<Quota> {
        binding(&self.budget.app)
    }

    /// The account's longest window, ms (a code 161 pauses until it frees).
    pub fn longest_user_ms(&self) -> i64 {
        self.budget.user.iter().map(|q| q.window_ms).max().unwrap_or(0)
    }
    fn longest_app_ms(&self) -> i64 {
        self.budget.app.iter().map(|q| q.window_ms).max().unwrap_or(0)
    }
}

/// The window with the longest time per request: the one that binds an even pace.
fn binding(quotas: &[Quota]) -> Option<Quota> {
    quotas.iter().copied().max_by(|a, b| per_request(a).total_cmp(&per_request(b)))
}

fn per_request(q: &Quota) -> f64 {
    q.window_ms as f64 / q.limit.max(1) as f64
}

fn spacing(quotas: &[Quota]) -> f64 {
    binding(quotas).map_or(0.0, |q| per_request(&q))
}

/// One account's scheduling state.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: i64,
    pub name: String,
    /// Send times inside the account's longest window, oldest first.
    sends: VecDeque<i64>,
    /// The last send, however old.
    last_sent: Option<i64>,
    /// When this account was last served, as a sequence number: round-robin order. (Times
    /// tie when several requests go in one millisecond; a counter does not.)
    served: u64,
    /// This account's next spread gap, jitter applied.
    gap: i64,
    pub paused_until: i64,
    pub pause_reason: String,
    /// Why the account cannot go on; `None` while it can.
    pub stopped: Option<String>,
    pub pace_factor: f64,
    /// Jobs queued (not in flight) and the earliest time one may go; `None`: no work.
    pub queued: i64,
    pub ready_at: Option<i64>,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send for the account with this id now.
    Send(i64),
    /// Nothing may go before this time.
    Wait(i64),
    /// No account has queued work.
    Idle,
    /// Every account with work is stopped.
    Blocked,
}

/// The scheduler: accounts, the app's window, and a seeded source of jitter.
#[derive(Debug)]
pub struct Scheduler {
    pub limits: Limits,
    /// Changed only through the event methods ([`Scheduler::claimed`] and the others), by
    /// account id: an index held across a reload could name another account.
    accounts: Vec<Account>,
    /// Account id → its place in `accounts` (accounts are only ever added): every event and
    /// every decision looks accounts up by id, and a scan made a decision over 10,000
    /// accounts cost 10,000² steps (the many-accounts benchmark).
    positions: HashMap<i64, usize>,
    app_sends: VecDeque<i64>,
    app_last: Option<i64>,
    app_gap: i64,
    /// The serve counter behind [`Account::served`].
    turn: u64,
    rng: StdRng,
}

impl Scheduler {
    /// An empty scheduler; add accounts with [`Scheduler::add_account`] and history with
    /// [`Scheduler::load_send`].
    pub fn new(limits: Limits, seed: u64) -> Scheduler {
        Scheduler {
            app_gap: limits.app_spacing(),
            limits,
            accounts: Vec::new(),
            positions: HashMap::new(),
            app_sends: VecDeque::new(),
            app_last: None,
            turn: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The scheduler as the ledger leaves it: every account (stopped when the ledger says so, or
    /// when `configured` does not know its name), their sends inside the window and last sends,
    /// and their queued jobs, taken as ready at `now` (a claim that finds every job in backoff
    /// asks for the next ready time then: reading `not_before` for a million jobs here would
    /// cost seconds).
    pub fn from_ledger(
        limits: Limits,
        ledger: &crate::store::LedgerSnapshot,
        configured: impl Fn(&str) -> bool,
        now: i64,
        seed: u64,
    ) -> Scheduler {
        let mut s = Scheduler::new(limits, seed);
        for a in &ledger.accounts {
            let stopped = if !a.stopped_reason.is_empty() {
                Some(a.stopped_reason.clone())
            } else if !configured(&a.name) {
                Some("not in the config: add it to [[accounts]]".to_string())
            } else {
                None
            };
            s.add_account(a.id, &a.name, a.paused_until, &a.pause_reason, stopped, a.pace_factor);
        }
        for &(account, at) in &ledger.last_sends {
            s.load_last_send(account, at);
        }
        for &(account, at) in &ledger.sends {
            s.load_send(account, at);
        }
        for &(account, queued) in &ledger.queued {
            if let Some(i) = s.index_of(account) {
                s.accounts[i].queued = queued;
                s.accounts[i].ready_at = Some(now);
            }
        }
        s
    }

    /// Adds an account.
    pub fn add_account(
        &mut self,
        id: i64,
        name: &str,
        paused_until: i64,
        pause_reason: &str,
        stopped: Option<String>,
        pace_factor: f64,
    ) {
        self.positions.entry(id).or_insert(self.accounts.len());
        self.accounts.push(Account {
            id,
            name: name.to_string(),
            sends: VecDeque::new(),
            last_sent: None,
            served: 0,
            gap: self.limits.user_spacing(pace_factor),
            paused_until,
            pause_reason: pause_reason.to_string(),
            stopped,
            pace_factor,
            queued: 0,
            ready_at: None,
        });
    }

    /// Every account, in the order they were added (for display).
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// The account with this id.
    pub fn account(&self, id: i64) -> Option<&Account> {
        self.index_of(id).map(|i| &self.accounts[i])
    }

    /// Event: `n` jobs were claimed for account `id` at `at`. The account's last queued job out
    /// leaves it with no work until an answer or new rows queue one again.
    pub fn claimed(&mut self, id: i64, n: usize, at: i64) {
        let Some(i) = self.index_of(id) else { return };
        for _ in 0..n {
            self.record_send(i, at);
        }
        let a = &mut self.accounts[i];
        a.queued -= n as i64;
        if a.queued <= 0 {
            a.queued = 0;
            a.ready_at = None;
        }
    }

    /// Event: a claim for account `id` found no job ready; the next may be ready at `next`.
    pub fn nothing_ready(&mut self, id: i64, next: Option<i64>) {
        let Some(i) = self.index_of(id) else { return };
        let a = &mut self.accounts[i];
        a.ready_at = next;
        if next.is_none() {
            a.queued = 0;
        }
    }

    /// Event: an answer put a job of account `id` back in the queue, not before `not_before`.
    pub fn requeued(&mut self, id: i64, not_before: i64) {
        let Some(i) = self.index_of(id) else { return };
        let a = &mut self.accounts[i];
        a.queued += 1;
        a.ready_at = Some(a.ready_at.map_or(not_before, |r| r.min(not_before)));
    }

    /// Event: account `id` may send nothing before `until`; `pace_factor`, when given,
    /// replaces its pace.
    pub fn paused(&mut self, id: i64, until: i64, reason: &str, pace_factor: Option<f64>) {
        let Some(i) = self.index_of(id) else { return };
        let a = &mut self.accounts[i];
        a.paused_until = a.paused_until.max(until);
        a.pause_reason = reason.to_string();
        if let Some(f) = pace_factor {
            a.pace_factor = f;
        }
    }

    /// Event: account `id` cannot go on (`reason` says why and what to do).
    pub fn stopped(&mut self, id: i64, reason: &str) {
        if let Some(i) = self.index_of(id) {
            self.accounts[i].stopped = Some(reason.to_string());
        }
    }

    /// Event: the database counts `queued` jobs for account `id` (whoever queued them). More
    /// than known may go from `now`; true then.
    pub fn queued_changed(&mut self, id: i64, queued: i64, now: i64) -> bool {
        let Some(i) = self.index_of(id) else { return false };
        let a = &mut self.accounts[i];
        let gained = queued > a.queued;
        if gained {
            a.ready_at = Some(a.ready_at.map_or(now, |r| r.min(now)));
        } else if queued == 0 {
            a.ready_at = None;
        }
        a.queued = queued;
        gained
    }

    /// Where the account with this id is in `accounts`: only for the moment of one call, never
    /// held across one.
    fn index_of(&self, id: i64) -> Option<usize> {
        self.positions.get(&id).copied()
    }

    /// A past send from the ledger (oldest first). An account unknown here counts for the app only.
    pub fn load_send(&mut self, account_id: i64, at: i64) {
        if let Some(i) = self.index_of(account_id) {
            let a = &mut self.accounts[i];
            a.sends.push_back(at);
            a.last_sent = Some(a.last_sent.map_or(at, |l| l.max(at)));
        }
        self.app_sends.push_back(at);
        self.app_last = Some(self.app_last.map_or(at, |l| l.max(at)));
    }

    /// The last send of an account older than the window (spread spacing still starts from it).
    pub fn load_last_send(&mut self, account_id: i64, at: i64) {
        if let Some(i) = self.index_of(account_id) {
            let a = &mut self.accounts[i];
            a.last_sent = Some(a.last_sent.map_or(at, |l| l.max(at)));
        }
        self.app_last = Some(self.app_last.map_or(at, |l| l.max(at)));
    }

    /// A request was claimed for account `i` at `at`.
    fn record_send(&mut self, i: usize, at: i64) {
        let jitter_user = self.jitter();
        let jitter_app = self.jitter();
        self.turn += 1;
        let user_spacing = self.limits.user_spacing(self.accounts[i].pace_factor);
        let a = &mut self.accounts[i];
        a.served = self.turn;
        a.sends.push_back(at);
        a.last_sent = Some(at);
        a.gap = (user_spacing as f64 * (1.0 - jitter_user)) as i64;
        self.app_sends.push_back(at);
        self.app_last = Some(at);
        self.app_gap = (self.limits.app_spacing() as f64 * (1.0 - jitter_app)) as i64;
    }

    fn jitter(&mut self) -> f64 {
        match self.limits.pace {
            Pace::Spread => self.rng.random_range(0.0..JITTER),
            Pace::Asap => 0.0,
        }
    }

    /// How many requests account `id` may send at `now` in one go, at most `max`: in `asap`
    /// mode as many as every window has room for; in `spread` mode one.
    pub fn burst(&self, id: i64, now: i64, max: usize) -> usize {
        let Some(a) = self.account(id) else { return 0 };
        let room = |sends: &VecDeque<i64>, quotas: &[Quota]| {
            quotas
                .iter()
                .map(|q| (q.limit as usize).saturating_sub(in_window(sends, now - q.window_ms)))
                .min()
                .unwrap_or(usize::MAX)
        };
        let cap = match self.limits.pace {
            Pace::Spread => 1,
            Pace::Asap => max,
        };
        cap.min(room(&a.sends, &self.limits.budget.user))
            .min(room(&self.app_sends, &self.limits.budget.app))
            .min(a.queued.max(0) as usize)
            .max(1)
    }

    /// Drops sends that left every window.
    fn prune(&mut self, now: i64) {
        let start = now - self.limits.longest_user_ms();
        for a in &mut self.accounts {
            while a.sends.front().is_some_and(|&t| t <= start) {
                a.sends.pop_front();
            }
        }
        let start = now - self.limits.longest_app_ms();
        while self.app_sends.front().is_some_and(|&t| t <= start) {
            self.app_sends.pop_front();
        }
    }

    /// Requests counted in each of account `id`'s windows at `now`, in the budget's order.
    pub fn used(&self, id: i64, now: i64) -> Vec<(Quota, usize)> {
        let Some(a) = self.account(id) else { return Vec::new() };
        self.limits.budget.user.iter().map(|q| (*q, in_window(&a.sends, now - q.window_ms))).collect()
    }

    /// Requests counted in each of the app's windows at `now`.
    pub fn app_used(&self, now: i64) -> Vec<(Quota, usize)> {
        self.limits.budget.app.iter().map(|q| (*q, in_window(&self.app_sends, now - q.window_ms))).collect()
    }

    /// When account `id`'s oldest send in its longest window leaves it (a code 161 pauses the
    /// account until then).
    pub fn user_window_frees(&self, id: i64) -> Option<i64> {
        Some(self.account(id)?.sends.front()? + self.limits.longest_user_ms())
    }

    /// The earliest time every window of `quotas` has room for one more of `sends`.
    fn cap_free_at(sends: &VecDeque<i64>, quotas: &[Quota]) -> i64 {
        Self::holding(sends, quotas).map_or(i64::MIN, |(_, t)| t)
    }

    /// The window that frees last, and when: the one that holds the next request back.
    fn holding(sends: &VecDeque<i64>, quotas: &[Quota]) -> Option<(Quota, i64)> {
        let n = sends.len();
        quotas
            .iter()
            .filter_map(|q| {
                let limit = q.limit as usize;
                (n >= limit).then(|| (*q, sends[n - limit] + q.window_ms))
            })
            .max_by_key(|&(_, t)| t)
    }

    /// The window that holds account `id`'s next request back at `now`, and until when; None
    /// when no window is full.
    pub fn user_holding(&self, id: i64, now: i64) -> Option<(Quota, i64)> {
        Self::holding(&self.account(id)?.sends, &self.limits.budget.user).filter(|&(_, t)| t > now)
    }

    /// The app's window that holds the next request back at `now`, and until when.
    pub fn app_holding(&self, now: i64) -> Option<(Quota, i64)> {
        Self::holding(&self.app_sends, &self.limits.budget.app).filter(|&(_, t)| t > now)
    }

    /// When account `id` may next send, ignoring the app (None: stopped or no work).
    pub fn account_ready_at(&self, id: i64) -> Option<i64> {
        let a = self.account(id)?;
        if a.stopped.is_some() {
            return None;
        }
        let work = a.ready_at?;
        let cap = Self::cap_free_at(&a.sends, &self.limits.budget.user);
        let pace = match (self.limits.pace, a.last_sent) {
            (Pace::Spread, Some(last)) => last + a.gap,
            _ => i64::MIN,
        };
        Some(work.max(cap).max(pace).max(a.paused_until))
    }

    /// When the app may next send.
    pub fn app_ready_at(&self) -> i64 {
        let cap = Self::cap_free_at(&self.app_sends, &self.limits.budget.app);
        let pace = match (self.limits.pace, self.app_last) {
            (Pace::Spread, Some(last)) => last + self.app_gap,
            _ => i64::MIN,
        };
        cap.max(pace)
    }

    /// The next step at `now`. Among accounts that may send, the one that sent least recently
    /// goes first, so one long list cannot starve the others.
    pub fn decide(&mut self, now: i64) -> Decision {
        self.prune(now);
        let with_work: Vec<usize> = (0..self.accounts.len()).filter(|&i| self.accounts[i].ready_at.is_some()).collect();
        if with_work.is_empty() {
            return Decision::Idle;
        }
        let ready: Vec<(usize, i64)> =
            with_work.iter().filter_map(|&i| self.account_ready_at(self.accounts[i].id).map(|t| (i, t))).collect();
        if ready.is_empty() {
            return Decision::Blocked;
        }
        let app = self.app_ready_at();
        let earliest = ready.iter().map(|&(_, t)| t).min().unwrap_or(i64::MAX);
        let at = earliest.max(app);
        if at > now {
            return Decision::Wait(at);
        }
        let pick = ready
            .iter()
            .filter(|&&(_, t)| t <= now)
            .min_by_key(|&&(i, _)| (self.accounts[i].served, self.accounts[i].last_sent.unwrap_or(i64::MIN), i))
            .map(|&(i, _)| i);
        match pick {
            Some(i) => Decision::Send(self.accounts[i].id),
            None => Decision::Wait(earliest),
        }
    }

    /// When the queue will be done at the configured limits, from now: each account's own
    /// ceiling and the app's, whichever ends later, each the latest of its windows'. Ignores
    /// retries and pauses not yet known.
    pub fn eta(&self, now: i64) -> Option<i64> {
        let mut done = now;
        let mut total = 0i64;
        for a in &self.accounts {
            if a.queued == 0 || a.stopped.is_some() {
                continue;
            }
            total += a.queued;
            let start = self.account_ready_at(a.id).unwrap_or(now).max(now);
            let spacing = self.limits.user_spacing(a.pace_factor);
            done =
                done.max(finish(start, a.queued, &a.sends, &self.limits.budget.user, self.limits.pace, spacing, now));
        }
        if total == 0 {
            return None;
        }
        let start = self.app_ready_at().max(now);
        let spacing = self.limits.app_spacing();
        Some(done.max(finish(start, total, &self.app_sends, &self.limits.budget.app, self.limits.pace, spacing, now)))
    }
}

/// When `n` more requests will have gone under every window of `quotas` (the latest of each
/// window's own finish), given the `sends` already made.
fn finish(start: i64, n: i64, sends: &VecDeque<i64>, quotas: &[Quota], pace: Pace, spacing: i64, now: i64) -> i64 {
    quotas
        .iter()
        .map(|q| {
            let start_of_window = now - q.window_ms;
            let used = in_window(sends, start_of_window);
            let oldest = sends.iter().find(|&&t| t > start_of_window).copied();
            finish_time(start, n, used, oldest, q.limit, q.window_ms, pace, spacing)
        })
        .max()
        .unwrap_or(start)
}

/// Sends after `start_of_window`.
fn in_window(sends: &VecDeque<i64>, start_of_window: i64) -> usize {
    sends.len() - sends.partition_point(|&t| t <= start_of_window)
}

/// When `n` more requests will have gone, starting at `start`, under a window cap of `limit` with
/// `used` already in it (the oldest at `oldest`), at `spacing` apart in spread mode.
#[allow(clippy::too_many_arguments)]
fn finish_time(
    start: i64,
    n: i64,
    used: usize,
    oldest: Option<i64>,
    limit: u32,
    window_ms: i64,
    pace: Pace,
    spacing: i64,
) -> i64 {
    match pace {
        Pace::Spread => start + (n - 1).max(0) * spacing,
        Pace::Asap => {
            let room = (limit as i64 - used as i64).max(0);
            if n <= room {
                return start;
            }
            // After the room now, each window's worth frees as the oldest sends expire.
            let left = n - room;
            let oldest = oldest.unwrap_or(start);
            let windows = (left + limit as i64 - 1) / limit as i64;
            oldest.max(start - window_ms) + windows * window_ms
        }
    }
}

#[cfg(test)]
mod tests;
