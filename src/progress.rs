//! The terminal: indicatif bars for `run` (one line per account and a total). When stderr is
//! not a terminal the bars are hidden and a progress line is logged now and then instead. Log
//! lines go through [`crate::logging`], which draws them above the bars.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::logging::multi;
use crate::model::Quota;
use crate::schedule::{Account, Limits};
use crate::time::human_ms;
use crate::worker::{Observer, View};

/// What an account's jobs were at the start of the run: the bars add this run's answers to it,
/// so they count what `status` counts.
#[derive(Debug, Clone, Default)]
pub struct Start {
    pub total: i64,
    pub done: i64,
    pub outcomes: HashMap<String, i64>,
    /// Follows confirmed at X.
    pub confirmed: i64,
}

/// Per account id at the start of the run.
pub type Totals = HashMap<i64, Start>;

/// The bars of `run`.
pub struct Bars {
    /// One bar per account id.
    bars: HashMap<i64, ProgressBar>,
    total: ProgressBar,
    start: Totals,
    /// Without a terminal: log a line this often instead.
    log_every: Option<Duration>,
    last_log: Instant,
    /// The last refresh: the dispatcher calls on every turn, the bars draw at 4 Hz.
    last_update: Option<Instant>,
}

/// Refreshes closer together than this are skipped (formatting a line per account is not free
/// with a thousand accounts).
const REFRESH: Duration = Duration::from_millis(100);

/// The bar's width for a terminal `columns` wide: what is left after the name, the counts and
/// room for the state, within 6 to 24; none below 48 columns, where the state needs the room.
fn bar_width(columns: u16) -> usize {
    if columns < 48 { 0 } else { (usize::from(columns).saturating_sub(64)).clamp(6, 24) }
}

/// One bar of `len` items (`resolve`): hidden when `hide` is set or stderr is no terminal.
pub fn simple_bar(len: u64, prefix: &str, hide: bool) -> ProgressBar {
    if hide || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = multi().add(ProgressBar::new(len));
    let style = ProgressStyle::with_template("{prefix:<8} [{bar:24.cyan/blue}] {pos:>6}/{len:<6} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    b.set_style(style);
    b.set_prefix(prefix.to_string());
    b
}

impl Bars {
    /// Bars for these accounts (id, name); hidden when `show` is false or stderr is no terminal.
    pub fn new(accounts: &[(i64, String)], start: Totals, show: bool) -> Bars {
        let visible = show && std::io::stderr().is_terminal();
        let columns = console::Term::stderr().size_checked().map_or(80, |(_, c)| c);
        // The state and the ETA come first in the message; a narrow terminal cuts the
        // outcome list at the end of the line, never the state, and a very narrow one the bar.
        let template = match bar_width(columns) {
            0 => "{prefix:<8} {pos}/{len} {wide_msg}".to_string(),
            w => format!("{{prefix:<10}} [{{bar:{w}.cyan/blue}}] {{pos:>5}}/{{len:<5}} {{wide_msg}}"),
        };
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let mk = |prefix: &str| {
            let b = if visible { multi().add(ProgressBar::new(0)) } else { ProgressBar::hidden() };
            b.set_style(style.clone());
            b.set_prefix(prefix.to_string());
            b
        };
        let bars = accounts.iter().filter(|(id, _)| start.contains_key(id)).map(|(id, name)| (*id, mk(name))).collect();
        let total = mk("all");
        Bars {
            bars,
            total,
            start,
            log_every: (!visible).then_some(Duration::from_secs(10)),
            last_log: Instant::now(),
            last_update: None,
        }
    }

    /// Removes the bars, leaving the final lines on screen.
    pub fn finish(&self) {
        for b in self.bars.values() {
            b.abandon();
        }
        self.total.abandon();
    }
}

impl Observer for Bars {
    fn update(&mut self, view: &View<'_>, last: bool) {
        if !last && self.last_update.is_some_and(|t| t.elapsed() < REFRESH) {
            return;
        }
        self.last_update = Some(Instant::now());
        let (sched, now) = (view.sched, view.now);
        let mut all_done = 0;
        let mut all_total = 0;
        let mut summary: HashMap<String, i64> = HashMap::new();
        let mut all_confirmed = 0;
        let app_ready = sched.app_ready_at();
        for a in sched.accounts() {
            let Some(start) = self.start.get(&a.id) else { continue };
            let run = view.outcomes.get(&a.id);
            let mut outcomes = start.outcomes.clone();
            for (k, v) in run.into_iter().flatten() {
                *outcomes.entry(k.to_string()).or_default() += v;
            }
            let done = start.done + run.map_or(0, |m| m.values().sum::<i64>());
            let total = start.total.max(done + a.queued);
            all_done += done;
            all_total += total;
            for (k, v) in &outcomes {
                *summary.entry(k.clone()).or_default() += v;
            }
            let confirmed = start.confirmed + view.confirmed.get(&a.id).copied().unwrap_or(0);
            all_confirmed += confirmed;
            let msg = with_confirmed(account_message(view, a, app_ready, &outcomes), confirmed);
            if let Some(bar) = self.bars.get(&a.id) {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                bar.set_message(msg);
            }
        }
        self.total.set_length(all_total as u64);
        self.total.set_position(all_done as u64);
        let eta = sched.eta(now).map_or("-".to_string(), |t| human_ms(t - now));
        let app_used = sched.app_used(now);
        self.total.set_message(with_confirmed(
            format!("ETA {eta} | app {} | {}", window_uses(&sched.limits, &app_used), outcome_list(&summary)),
            all_confirmed,
        ));
        if let Some(every) = self.log_every
            && self.last_log.elapsed() >= every
        {
            self.last_log = Instant::now();
            let app_window = app_used.iter().map(|(_, n)| *n).max().unwrap_or(0);
            tracing::info!(done = all_done, total = all_total, app_window, eta = %eta, "progress");
        }
    }
}

/// A bar's message with how many follows X was seen showing, when any.
fn with_confirmed(msg: String, confirmed: i64) -> String {
    if confirmed > 0 { format!("{msg} | confirmed {confirmed}") } else { msg }
}

/// "followed 12, blocked 1", by name.
fn outcome_list(outcomes: &HashMap<String, i64>) -> String {
    let mut parts: Vec<String> = outcomes.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{k} {v}")).collect();
    parts.sort();
    parts.join(", ")
}

/// "12 of 50/15m, 40 of 400/24h": each window's use.
fn window_uses(limits: &Limits, used: &[(Quota, usize)]) -> String {
    used.iter().map(|(q, n)| format!("{n} of {}", limits.name_of(q))).collect::<Vec<_>>().join(", ")
}

/// "next follow in 3m12s (50/15m) | 12/50 15m, 40/400 24h | followed 12, blocked 1": the state
/// first, so that a narrow terminal cuts the outcomes, not the state. A wait names the window
/// that holds it.
fn account_message(view: &View<'_>, a: &Account, app_ready: i64, outcomes: &HashMap<String, i64>) -> String {
    let (sched, now) = (view.sched, view.now);
    let used = sched.used(a.id, now);
    let holding = sched.user_holding(a.id, now).or_else(|| sched.app_holding(now));
    let state = if let Some(why) = &a.stopped {
        format!("STOPPED: {why}")
    } else if let Some(since) = view.waiting.get(&a.id) {
        format!("waiting for X's answer ({})", human_ms(now - since))
    } else if a.queued == 0 {
        "done".to_string()
    } else if a.paused_until > now {
        format!("paused {} ({})", human_ms(a.paused_until - now), a.pause_reason)
    } else {
        match sched.account_ready_at(a.id).map(|t| t.max(app_ready)) {
            Some(t) if t > now && holding.is_some_and(|(_, free)| free >= t) => {
                let (q, _) = holding.unwrap_or((Quota { limit: 0, window_ms: 0 }, 0));
                let at = crate::time::local_time(t);
                format!("{} window full: resumes {}", sched.limits.name_of(&q), at.split(' ').nth(1).unwrap_or("-"))
            }
            Some(t) if t > now + 1000 => match sched.limits.binding_user() {
                Some(q) if sched.limits.pace == crate::config::Pace::Spread => {
                    format!("next follow in {} (spread over {})", human_ms(t - now), sched.limits.name_of(&q))
                }
                _ => format!("next follow in {}", human_ms(t - now)),
            },
            // Ready, but every request slot is taken by other accounts' requests.
            _ if view.free_slots == 0 => "waiting for a free request slot".to_string(),
            _ => "sending".to_string(),
        }
    };
    format!("{state} | {} | {}", window_uses(&sched.limits, &used), outcome_list(outcomes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pace;
    use crate::model::Budget;
    use crate::schedule::{Limits, Scheduler};

    /// Issue 12, 14: after a resume the bar's fraction counted every job but its outcomes only
    /// this run's. Both now count what `status` counts: the start's jobs and this run's answers.
    #[test]
    fn after_a_resume_the_bars_count_what_status_counts() {
        let day = |limit| Quota { limit, window_ms: 86_400_000 };
        let limits = Limits::new(Budget { user: vec![day(400)], app: vec![day(1000)] }, Pace::Spread);
        let mut sched = Scheduler::new(limits, 1);
        sched.add_account(7, "alice", 0, "", None, 1.0);
        sched.queued_changed(7, 5, 0);
        let outcomes_at_start = HashMap::from([("followed".to_string(), 3), ("blocked".to_string(), 1)]);
        let start = Totals::from([(7, Start { total: 10, done: 4, outcomes: outcomes_at_start, confirmed: 0 })]);
        let mut bars = Bars::new(&[(7, "alice".to_string())], start, false);
        let this_run = HashMap::from([(7, HashMap::from([("followed", 1)]))]);
        let waiting = HashMap::new();
        let none = HashMap::new();
        let view =
            View { sched: &sched, outcomes: &this_run, waiting: &waiting, free_slots: 1, now: 1_000, confirmed: &none };
        bars.update(&view, true);
        let bar = &bars.bars[&7];
        assert_eq!((bar.position(), bar.length()), (5, Some(10)));
        assert!(bar.message().ends_with("blocked 1, followed 4"), "{}", bar.message());
        assert!(bars.total.message().ends_with("blocked 1, followed 4"), "{}", bars.total.message());
        // The state comes first, so a narrow terminal cuts the outcomes, not the state.
        assert!(bar.message().starts_with("sending | "), "{}", bar.message());
        let waiting = HashMap::from([(7, 400)]);
        let none = HashMap::new();
        let view =
            View { sched: &sched, outcomes: &this_run, waiting: &waiting, free_slots: 0, now: 1_000, confirmed: &none };
        bars.update(&view, true);
        assert!(bars.bars[&7].message().starts_with("waiting for X's answer (0.6s)"), "{}", bars.bars[&7].message());
    }

    #[test]
    fn the_bar_leaves_room_for_the_state() {
        assert_eq!((bar_width(30), bar_width(60), bar_width(80), bar_width(200)), (0, 6, 16, 24));
    }
}
