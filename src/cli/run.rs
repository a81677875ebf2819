//! `followq run`: work the queue off within the limits, until done, stopped, or blocked.

use std::collections::HashMap;
use tokio_util::sync::CancellationToken;

use super::{Context, EXIT_OK, EXIT_PARTIAL, EXIT_STOPPED, UsageError, human_ms, local_time, status};
use crate::api::Client;
use crate::config::{self, Limits, Settings};
use crate::progress::{Bars, Totals};
use crate::store::{JobState, Outcome, Store, now_ms};
use crate::text::printable;
use crate::worker::{self, Ending};

/// Work the queue off within the limits.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stop sending at this local time (HH:MM, the next one to come)
    #[arg(long, conflicts_with = "max_duration")]
    pub stop_at: Option<String>,
    /// Stop sending after this long ("8h", "90m")
    #[arg(long)]
    pub max_duration: Option<String>,
    /// Keep running when the queue is empty, importing files dropped into the inbox
    #[arg(long)]
    pub watch: bool,
    /// Send nothing: print the plan (per account: jobs waiting, budget left, ETA)
    #[arg(long)]
    pub dry_run: bool,
    /// No progress bars (log lines instead)
    #[arg(long)]
    pub no_progress: bool,
    /// Seed for the pacing jitter (replays a run)
    #[arg(long, hide = true)]
    pub seed: Option<u64>,
}

/// The deadline in ms since the epoch, from --stop-at or --max-duration.
pub fn deadline(args: &Args, now: i64) -> Result<Option<i64>, UsageError> {
    if let Some(d) = &args.max_duration {
        let d = config::duration("--max-duration", d).map_err(|e| UsageError(e.to_string()))?;
        return Ok(Some(now + d.as_millis() as i64));
    }
    let Some(at) = &args.stop_at else { return Ok(None) };
    let bad = || UsageError(format!("--stop-at '{at}': expected HH:MM"));
    let (h, m) = at.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let time = chrono::NaiveTime::from_hms_opt(h, m, 0).ok_or_else(bad)?;
    let local_now = chrono::Local::now();
    let mut date = local_now.date_naive();
    if local_now.time() >= time {
        date = date.succ_opt().ok_or_else(bad)?;
    }
    let when = date.and_time(time).and_local_timezone(chrono::Local).earliest().ok_or_else(bad)?;
    Ok(Some(when.timestamp_millis()))
}

/// Stops on Ctrl-C or SIGTERM: no new requests, the ones out are recorded, then exit.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    t.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::warn!("stopping: no new requests; recording the ones in flight (Ctrl-C again to force)");
        t.cancel();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(i32::from(EXIT_STOPPED));
    });
    token
}

/// Runs `run`.
pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let now = now_ms();
    let deadline = deadline(&args, now)?;
    if args.dry_run {
        return plan(ctx).await;
    }
    config::require_credentials(&ctx.settings)?;
    // SQLite: one run at a time, under the run lock. PostgreSQL: any number, each a registered
    // runner whose heartbeat keeps its requests its own.
    let _lock = ctx.db().file().map(worker::lock).transpose()?;
    let (store, _) = ctx.open_store().await?;
    let runner = store.register_runner(RUNNER_EXPIRE).await?;
    let client = Client::new(&ctx.settings)?;
    let shutdown = shutdown_on_signals();
    let code = work(&store, &ctx.settings, &client, shutdown, deadline, &args).await;
    if let Some(runner) = runner {
        runner.end().await?;
    }
    store.close().await;
    code
}

/// How long a runner on PostgreSQL may be silent before the others take it for dead and send
/// its unanswered jobs again (it beats five times in that time).
pub const RUNNER_EXPIRE: std::time::Duration = std::time::Duration::from_secs(30);

/// The run itself, shared with `demo`: bars, the worker, the closing summary and exit status.
pub async fn work(
    store: &Store,
    settings: &Settings,
    client: &Client,
    shutdown: CancellationToken,
    deadline: Option<i64>,
    args: &Args,
) -> anyhow::Result<u8> {
    let totals = start_totals(store).await?;
    let names: Vec<(i64, String)> = store.accounts().await?.into_iter().map(|a| (a.id, a.name)).collect();
    let mut bars = Bars::new(&names, totals, !args.no_progress);
    let queued = std::sync::Arc::new(tokio::sync::Notify::new());
    let opts = worker::Options {
        deadline,
        watch: args.watch,
        seed: args.seed.unwrap_or_else(rand::random),
        clock: crate::time::Clock::System,
        queued: Some(queued.clone()),
    };
    let started = now_ms();
    // `--watch`: the inbox watcher imports beside the run; the run takes its jobs in from the
    // database as soon as the watcher says it queued some. It stops with the run.
    let watcher_stop = shutdown.child_token();
    let watcher = args.watch.then(|| {
        tokio::spawn(crate::ingest::inbox::watch(store.clone(), settings.clone(), watcher_stop.clone(), queued))
    });
    let ending = worker::run(store, settings, client, shutdown, opts, &mut bars).await;
    watcher_stop.cancel();
    if let Some(w) = watcher {
        let _ = w.await;
    }
    bars.finish();
    let ending = ending?;
    let counts = store.job_counts().await?;
    let queued: i64 = counts.iter().filter(|c| c.state != JobState::Done).map(|c| c.n).sum();
    let bad: i64 = counts
        .iter()
        .filter(|c| matches!(c.outcome, Some(Outcome::Failed | Outcome::Refused | Outcome::Unconfirmed)))
        .map(|c| c.n)
        .sum();
    // Follows still to be looked for are work left too (when this run was to look for them, by
    // accounts it can: configured and not stopped; the others are said below).
    let rows = store.accounts().await?;
    let able = |id: &i64| {
        rows.iter().any(|a| a.id == *id && a.stopped_reason.is_empty() && settings.account(&a.name).is_some())
    };
    let awaiting: i64 = if settings.verify.confirm {
        store.confirmations().await?.iter().filter(|(id, _)| able(id)).map(|(_, c)| c.awaiting).sum()
    } else {
        0
    };
    let mut said = describe(&ending, queued);
    if awaiting > 0 && !matches!(ending, Ending::AppStopped(_)) {
        said.push_str(&format!("; {awaiting} follows still to be looked for at X (`followq run` goes on with them)"));
    }
    eprintln!("run ended after {}: {said}", human_ms(now_ms() - started));
    for line in what_went_wrong(store, settings, &counts).await? {
        eprintln!("  {line}");
    }
    Ok(match ending {
        Ending::AppStopped(why) => {
            eprintln!(
                "followq: X refuses the app: {}. No more requests were sent; every job not sent stays queued, and `followq run` tries once more when that is fixed.",
                printable(&why)
            );
            super::EXIT_REFUSED
        }
        Ending::Stopped | Ending::Blocked | Ending::Finished if queued + awaiting > 0 => EXIT_STOPPED,
        _ if bad > 0 => EXIT_PARTIAL,
        _ => EXIT_OK,
    })
}

/// The closing lines after the first: how many jobs failed or were refused and why (the most
/// common reasons), how many wait on stopped or paused accounts, and the commands that list or
/// re-queue them. Nothing when nothing went wrong.
async fn what_went_wrong(
    store: &Store,
    settings: &crate::config::Settings,
    counts: &[crate::store::CountRow],
) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let count = |o: Outcome| counts.iter().filter(|c| c.outcome == Some(o)).map(|c| c.n).sum::<i64>();
    let (failed, refused) = (count(Outcome::Failed), count(Outcome::Refused));
    if failed + refused > 0 {
        lines.push(format!("{failed} jobs failed (transient errors past the retries) and {refused} were refused by X"));
        for (outcome, message, n) in store.failure_reasons(3).await? {
            let message = if message.is_empty() { "(no message)".to_string() } else { message };
            lines.push(format!("  {n} × {outcome}: {}", crate::text::printable(&message)));
        }
        lines.push(
            "`followq export --outcome failed,refused` lists them; `followq retry` queues them again".to_string(),
        );
    }
    let unconfirmed = count(Outcome::Unconfirmed);
    if unconfirmed > 0 {
        lines.push(format!(
            "{unconfirmed} follows X answered never showed at X, even sent again: `followq export --outcome unconfirmed` lists them; `followq retry --outcome unconfirmed` sends them again"
        ));
    }
    let now = now_ms();
    let confirmations: HashMap<i64, crate::store::Confirmations> = store.confirmations().await?.into_iter().collect();
    for a in store.accounts().await? {
        let awaiting = confirmations.get(&a.id).map_or(0, |c| c.awaiting);
        if awaiting > 0 && settings.verify.confirm {
            if settings.account(&a.name).is_none() {
                lines.push(format!(
                    "{awaiting} follows of {} wait to be looked for at X, but it is not configured (`followq accounts add {}`)",
                    a.name, a.name
                ));
            } else if !a.stopped_reason.is_empty() {
                lines.push(format!(
                    "{awaiting} follows of {} wait to be looked for at X, but it is stopped (`followq accounts check` resumes it)",
                    a.name
                ));
            }
        }
        let queued: i64 =
            counts.iter().filter(|c| c.account == a.name && c.state == JobState::Queued).map(|c| c.n).sum();
        if queued == 0 {
            continue;
        }
        if !a.stopped_reason.is_empty() {
            lines.push(format!(
                "{queued} jobs wait on {}, which is stopped: {} (`followq accounts check` resumes it)",
                a.name,
                crate::text::printable(&a.stopped_reason)
            ));
        } else if a.paused_until > now {
            lines.push(format!(
                "{queued} jobs wait on {}, paused until {} ({})",
                a.name,
                local_time(a.paused_until),
                crate::text::printable(&a.pause_reason)
            ));
        }
    }
    Ok(lines)
}

fn describe(ending: &Ending, queued: i64) -> String {
    match ending {
        // Jobs queued from outside in the run's last moment: the run never says "finished"
        // over a queue that is not empty.
        Ending::Finished if queued > 0 => {
            format!("{queued} jobs were queued as the run ended; `followq run` sends them")
        }
        Ending::Finished => "every job finished".into(),
        // Stopped just as the last answers came back: nothing is left to resume.
        Ending::Stopped if queued == 0 => "stopped; every job had finished".into(),
        Ending::Stopped => format!("stopped with {queued} jobs left; `followq run` resumes"),
        Ending::Blocked => {
            format!("{queued} jobs left, but every account that has them is stopped (see `followq status`)")
        }
        Ending::AppStopped(_) => "X refused the app (below)".into(),
    }
}

/// Per account id: its jobs now (total, done, outcomes), from the counts `status` reads.
async fn start_totals(store: &Store) -> anyhow::Result<Totals> {
    let ids: HashMap<String, i64> = store.accounts().await?.into_iter().map(|a| (a.name, a.id)).collect();
    let mut totals: Totals = HashMap::new();
    for (id, c) in store.confirmations().await? {
        totals.entry(id).or_default().confirmed = c.confirmed;
    }
    for c in store.job_counts().await? {
        if let Some(id) = ids.get(&c.account) {
            let e = totals.entry(*id).or_default();
            e.total += c.n;
            if c.state == JobState::Done {
                e.done += c.n;
            }
            if let Some(o) = c.outcome {
                *e.outcomes.entry(o.as_str().to_string()).or_default() += c.n;
            }
        }
    }
    Ok(totals)
}

/// `run --dry-run`: what would happen, from the ledger and the queue, sending nothing.
async fn plan(ctx: &Context) -> anyhow::Result<u8> {
    let r = status::report(ctx).await?;
    crate::outln!(
        "dry run: nothing is sent. At the configured limits ({} per account, {} for the app; profile {}):",
        Limits::describe(&ctx.settings.limits.user),
        Limits::describe(&ctx.settings.limits.app),
        ctx.settings.limits.profile.as_str()
    );
    for a in &r.accounts {
        let waiting = a.jobs.by_state.get("queued").copied().unwrap_or(0);
        let next = match (&a.stopped, a.next_slot) {
            (Some(why), _) => format!("stopped: {why}"),
            (None, Some(t)) if t > r.now => format!("next slot {}", local_time(t)),
            (None, Some(_)) => "next slot now".into(),
            (None, None) => "nothing to send".into(),
        };
        crate::outln!(
            "  {:<16} {:>8} waiting, budget left now {:>5}/{:<5} {next}",
            a.name,
            waiting,
            a.budget.left,
            a.budget.limit
        );
    }
    crate::outln!(
        "  {:<16} {:>8} waiting, budget left now {:>5}/{:<5}",
        "app",
        r.jobs.by_state.get("queued").copied().unwrap_or(0),
        r.app.budget.left,
        r.app.budget.limit
    );
    match (r.eta, r.waiting_on_stopped) {
        (Some(t), 0) => crate::outln!("the queue would be done by {} (in {})", local_time(t), human_ms(t - r.now)),
        (Some(t), n) => crate::outln!(
            "the queue would be done by {} (in {}), but for {n} jobs that wait on stopped accounts",
            local_time(t),
            human_ms(t - r.now)
        ),
        (None, 0) => crate::outln!("nothing queued"),
        (None, n) => crate::outln!("{n} jobs wait on stopped accounts: nothing can be sent until one is resumed"),
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defect (found from the outside): a run stopped as its last answers came back said
    /// "stopped with 0 jobs left; `followq run` resumes" — nothing was left to resume.
    #[test]
    fn a_stop_with_nothing_left_does_not_say_resume() {
        assert_eq!(describe(&Ending::Stopped, 0), "stopped; every job had finished");
        assert!(describe(&Ending::Stopped, 3).contains("3 jobs left; `followq run` resumes"));
    }
}
