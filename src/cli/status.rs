//! `followq status`: jobs by state and outcome (per account and in total), budgets used and left
//! in the current window, pauses, stops, the next slot and the ETA; recent imports.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use serde::Serialize;

use super::{Context, EXIT_OK, human_ms, local_time};
use crate::api::classify::Outcome;
use crate::config::Window;
use crate::schedule::{Limits, Scheduler};
use crate::store::{Confirmations, ImportRow, Quota, now_ms};
use crate::text::printable;

/// Counts by state and outcome. Every state and every outcome is always a key (0 when none):
/// README documents them as stable.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct JobCounts {
    pub total: i64,
    pub by_state: BTreeMap<String, i64>,
    pub by_outcome: BTreeMap<String, i64>,
}

impl Default for JobCounts {
    fn default() -> JobCounts {
        JobCounts {
            total: 0,
            by_state: ["queued", "in_flight", "done"].into_iter().map(|s| (s.to_string(), 0)).collect(),
            by_outcome: Outcome::ALL.iter().map(|o| (o.as_str().to_string(), 0)).collect(),
        }
    }
}

impl JobCounts {
    /// The outcomes that happened, for the human table.
    fn nonzero_outcomes(&self) -> impl Iterator<Item = (&String, &i64)> {
        self.by_outcome.iter().filter(|(_, n)| **n > 0)
    }

    fn add(&mut self, state: &str, outcome: Option<&str>, n: i64) {
        self.total += n;
        *self.by_state.entry(state.to_string()).or_default() += n;
        if let Some(o) = outcome {
            *self.by_outcome.entry(o.to_string()).or_default() += n;
        }
    }
}

/// A window budget.
#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    pub limit: u32,
    pub used: usize,
    pub left: usize,
}

/// One window's use: requests in its last `window_ms` (its length and the margin).
#[derive(Debug, Clone, Serialize)]
pub struct WindowUse {
    /// As configured: `50/15m`.
    pub window: String,
    pub limit: u32,
    pub window_ms: i64,
    pub used: usize,
    pub left: usize,
}

/// Every window's use, and the one with the least left (the `budget` of the report: what holds
/// the next request back soonest).
fn windows(configured: &[Window], used: &[(Quota, usize)]) -> (Budget, Vec<WindowUse>) {
    let list: Vec<WindowUse> = configured
        .iter()
        .zip(used)
        .map(|(w, (q, n))| WindowUse {
            window: w.to_string(),
            limit: q.limit,
            window_ms: q.window_ms,
            used: *n,
            left: (q.limit as usize).saturating_sub(*n),
        })
        .collect();
    let tightest = list
        .iter()
        .min_by_key(|w| (w.left, std::cmp::Reverse(w.window_ms)))
        .map_or(Budget { limit: 0, used: 0, left: 0 }, |w| Budget { limit: w.limit, used: w.used, left: w.left });
    (tightest, list)
}

/// One account in the status report.
#[derive(Debug, Clone, Serialize)]
pub struct AccountStatus {
    pub name: String,
    /// False for an account that has jobs but is no longer in the config.
    pub configured: bool,
    pub jobs: JobCounts,
    /// The window with the least left.
    pub budget: Budget,
    /// Every window of the account's.
    pub windows: Vec<WindowUse>,
    /// ms since the epoch, while paused.
    pub paused_until: Option<i64>,
    pub pause_reason: Option<String>,
    /// Why the account stopped, and what to do.
    pub stopped: Option<String>,
    /// When its next request may go (ms since the epoch).
    pub next_slot: Option<i64>,
    /// Follows X was seen showing, and follows waiting to be looked for (`[verify]`); those
    /// never seen are the outcome `unconfirmed`.
    pub confirmed: i64,
    pub awaiting_confirmation: i64,
}

/// The whole report; its keys are stable (documented in README.md).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub now: i64,
    /// The longest window, as enforced (ms).
    pub window_ms: i64,
    /// The limits profile: `v2`, `v1.1` or `custom`.
    pub profile: String,
    pub jobs: JobCounts,
    /// Over every account: follows confirmed at X, and awaiting a look.
    pub confirmed: i64,
    pub awaiting_confirmation: i64,
    pub accounts: Vec<AccountStatus>,
    pub app: AppStatus,
    /// When the queue will be done at the configured limits (ms since the epoch); null when
    /// nothing queued can be sent (see `waiting_on_stopped`).
    pub eta: Option<i64>,
    /// Queued jobs of stopped accounts: they wait until someone acts, and no ETA counts them.
    pub waiting_on_stopped: i64,
    /// Why X refused the app, if the last run ended so: `{reason, at}`; null otherwise.
    pub app_stopped: Option<AppStop>,
    pub imports: Vec<ImportRow>,
}

/// X's refusal of the app that ended the last run.
#[derive(Debug, Clone, Serialize)]
pub struct AppStop {
    pub reason: String,
    pub at: i64,
}

/// The app-wide budget.
#[derive(Debug, Clone, Serialize)]
pub struct AppStatus {
    /// The window with the least left.
    pub budget: Budget,
    pub windows: Vec<WindowUse>,
    pub next_slot: Option<i64>,
}

/// Show what is queued, done, and when the rest will be.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Machine-readable JSON (stable keys)
    #[arg(long)]
    pub json: bool,
}

/// Builds the report (used by `status`, `run --dry-run` and the demo).
pub async fn report(ctx: &Context) -> anyhow::Result<Report> {
    let store = ctx.read_store().await?;
    let now = now_ms();
    let limits = Limits::of(&ctx.settings.limits);
    let snapshot = store.ledger_snapshot(now - limits.budget.longest_ms()).await?;
    let mut sched = Scheduler::from_ledger(limits, &snapshot, |n| ctx.settings.account(n).is_some(), now, 0);
    let counts = store.job_counts().await?;
    let confirmations: HashMap<i64, Confirmations> = store.confirmations().await?.into_iter().collect();
    let imports = store.recent_imports(10).await?;
    let app_stopped = store.app_stopped().await?.map(|(reason, at)| AppStop { reason, at });
    store.close().await;

    let mut total = JobCounts::default();
    let mut per: BTreeMap<String, JobCounts> = BTreeMap::new();
    for c in &counts {
        total.add(c.state.as_str(), c.outcome.map(Outcome::as_str), c.n);
        per.entry(c.account.clone()).or_default().add(c.state.as_str(), c.outcome.map(Outcome::as_str), c.n);
    }
    let accounts = account_statuses(ctx, &mut sched, &mut per, &confirmations, now);
    let waiting_on_stopped = accounts.iter().filter(|a| a.stopped.is_some()).map(|a| a.jobs.by_state["queued"]).sum();
    let (app_budget, app_windows) = windows(&ctx.settings.limits.app, &sched.app_used(now));
    // The app's next slot only when some account could use it.
    let app_next =
        sched.accounts().iter().any(|a| sched.account_ready_at(a.id).is_some()).then(|| sched.app_ready_at().max(now));
    Ok(Report {
        now,
        window_ms: sched.limits.budget.longest_ms(),
        profile: ctx.settings.limits.profile.as_str().to_string(),
        jobs: total,
        confirmed: accounts.iter().map(|a| a.confirmed).sum(),
        awaiting_confirmation: accounts.iter().map(|a| a.awaiting_confirmation).sum(),
        accounts,
        app: AppStatus { budget: app_budget, windows: app_windows, next_slot: app_next },
        eta: sched.eta(now),
        waiting_on_stopped,
        app_stopped,
        imports,
    })
}

fn account_statuses(
    ctx: &Context,
    sched: &mut Scheduler,
    per: &mut BTreeMap<String, JobCounts>,
    confirmations: &HashMap<i64, Confirmations>,
    now: i64,
) -> Vec<AccountStatus> {
    let mut out = Vec::new();
    for a in sched.accounts() {
        let (budget, windows) = windows(&ctx.settings.limits.user, &sched.used(a.id, now));
        let next = sched.account_ready_at(a.id).map(|t| t.max(sched.app_ready_at()).max(now));
        let jobs = per.remove(&a.name).unwrap_or_default();
        let configured = ctx.settings.account(&a.name).is_some();
        if !configured && jobs.total == 0 {
            continue;
        }
        out.push(AccountStatus {
            name: a.name.clone(),
            configured,
            jobs,
            budget,
            windows,
            paused_until: (a.paused_until > now).then_some(a.paused_until),
            pause_reason: (a.paused_until > now).then(|| a.pause_reason.clone()),
            stopped: a.stopped.clone(),
            next_slot: next,
            confirmed: confirmations.get(&a.id).map_or(0, |c| c.confirmed),
            awaiting_confirmation: confirmations.get(&a.id).map_or(0, |c| c.awaiting),
        });
    }
    // Configured accounts the database has not met yet (nothing imported for them).
    for a in &ctx.settings.accounts {
        if !sched.accounts().iter().any(|s| s.name == a.name) {
            let none: Vec<(Quota, usize)> = sched.limits.budget.user.iter().map(|q| (*q, 0)).collect();
            let (budget, windows) = windows(&ctx.settings.limits.user, &none);
            out.push(AccountStatus {
                name: a.name.clone(),
                configured: true,
                jobs: JobCounts::default(),
                budget,
                windows,
                paused_until: None,
                pause_reason: None,
                stopped: None,
                next_slot: None,
                confirmed: 0,
                awaiting_confirmation: 0,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Runs `status`.
pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let r = report(ctx).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &r)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &r)?;
    }
    Ok(EXIT_OK)
}

fn outcomes_line(c: &JobCounts) -> String {
    let line: Vec<String> = c.nonzero_outcomes().map(|(k, v)| format!("{k} {v}")).collect();
    if line.is_empty() { "-".into() } else { line.join(", ") }
}

fn when(t: Option<i64>, now: i64) -> String {
    match t {
        None => "-".into(),
        Some(t) if t <= now => "now".into(),
        Some(t) => format!("in {} ({})", human_ms(t - now), local_time(t)),
    }
}

/// The human table.
pub fn print_table(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    let st = |c: &JobCounts, s: &str| c.by_state.get(s).copied().unwrap_or(0);
    let name = |a: &AccountStatus| if a.configured { a.name.clone() } else { format!("{} (unconfigured)", a.name) };
    // As wide as the longest name, so that the columns stay in line.
    let w = r.accounts.iter().map(|a| name(a).chars().count()).max().unwrap_or(0).max(16);
    let row = |out: &mut dyn Write, name: &str, c: &JobCounts, used: usize, limit: u32, next: &str| {
        writeln!(
            out,
            "{name:<w$} {:>8} {:>8} {:>9} {:>8}  {used:>5}/{limit:<5}  {next}",
            c.total,
            st(c, "queued"),
            st(c, "in_flight"),
            st(c, "done"),
        )
    };
    writeln!(
        out,
        "{:<w$} {:>8} {:>8} {:>9} {:>8}  {:>11}  next",
        "account", "total", "queued", "in_flight", "done", "budget"
    )?;
    for a in &r.accounts {
        let next = match (&a.stopped, a.paused_until) {
            (Some(_), _) => "STOPPED".to_string(),
            (None, Some(t)) => format!("paused {}", human_ms(t - r.now)),
            _ => when(a.next_slot, r.now),
        };
        row(out, &name(a), &a.jobs, a.budget.used, a.budget.limit, &next)?;
    }
    row(out, "all (app)", &r.jobs, r.app.budget.used, r.app.budget.limit, &when(r.app.next_slot, r.now))?;
    let lengths = |ws: &[WindowUse]| ws.iter().map(|w| w.window.as_str()).collect::<Vec<_>>().join(" + ");
    let per_account = r.accounts.first().map_or(String::new(), |a| format!("per account {}; ", lengths(&a.windows)));
    writeln!(
        out,
        "budget: the window with the least left, of {per_account}app {} (limits {}; each window counted with its margin)",
        lengths(&r.app.windows),
        r.profile
    )?;
    if r.app.windows.len() > 1 || r.accounts.iter().any(|a| a.windows.len() > 1) {
        let uses =
            |ws: &[WindowUse]| ws.iter().map(|w| format!("{} of {}", w.used, w.window)).collect::<Vec<_>>().join(", ");
        writeln!(out, "\nwindows:")?;
        for a in &r.accounts {
            writeln!(out, "  {:<14} {}", a.name, uses(&a.windows))?;
        }
        writeln!(out, "  {:<14} {}", "app", uses(&r.app.windows))?;
    }
    writeln!(out, "\noutcomes:")?;
    for a in &r.accounts {
        writeln!(out, "  {:<14} {}", a.name, outcomes_line(&a.jobs))?;
    }
    writeln!(out, "  {:<14} {}", "all", outcomes_line(&r.jobs))?;
    let unconfirmed = |c: &JobCounts| c.by_outcome.get("unconfirmed").copied().unwrap_or(0);
    if r.confirmed + r.awaiting_confirmation + unconfirmed(&r.jobs) > 0 {
        writeln!(
            out,
            "
seen at X (follows are looked for once settled):"
        )?;
        let line = |out: &mut dyn Write, name: &str, confirmed: i64, awaiting: i64, c: &JobCounts| {
            writeln!(
                out,
                "  {name:<14} {confirmed} confirmed, {awaiting} awaiting confirmation, {} unconfirmed",
                unconfirmed(c)
            )
        };
        for a in &r.accounts {
            line(out, &a.name, a.confirmed, a.awaiting_confirmation, &a.jobs)?;
        }
        line(out, "all", r.confirmed, r.awaiting_confirmation, &r.jobs)?;
    }
    if let Some(stop) = &r.app_stopped {
        writeln!(
            out,
            "APP STOPPED at {}: X refuses the app: {} (the next `followq run` tries once more)",
            local_time(stop.at),
            printable(&stop.reason)
        )?;
    }
    for a in &r.accounts {
        if let Some(why) = &a.stopped {
            writeln!(out, "{}: stopped: {}", a.name, printable(why))?;
        } else if let (Some(t), Some(why)) = (a.paused_until, &a.pause_reason) {
            writeln!(out, "{}: paused until {} ({})", a.name, local_time(t), printable(why))?;
        }
    }
    match (r.eta, r.waiting_on_stopped) {
        (Some(t), 0) => writeln!(out, "eta: {} at the configured limits", when(Some(t), r.now))?,
        (Some(t), n) => writeln!(
            out,
            "eta: {} at the configured limits, for all but the {n} jobs that wait on stopped accounts",
            when(Some(t), r.now)
        )?,
        (None, 0) => writeln!(out, "eta: nothing queued")?,
        (None, n) => writeln!(
            out,
            "eta: none — {n} jobs wait on stopped accounts (see above; `followq accounts check` resumes one)"
        )?,
    }
    if !r.imports.is_empty() {
        writeln!(out, "\nrecent imports:")?;
        for i in &r.imports {
            let state = match (i.finished_at, i.error.as_str()) {
                (0, _) => "not finished: still going, or interrupted (import the file again)".to_string(),
                (t, "") => local_time(t),
                (_, why) => format!("failed: {why}"),
            };
            writeln!(
                out,
                "  #{:<4} {}  {} rows: {} added, {} already queued, {} rejected  ({})",
                i.id,
                printable(&i.source),
                i.rows_read,
                i.added,
                i.duplicates,
                i.rejected,
                printable(&state)
            )?;
        }
    }
    Ok(())
}
