//! `followq demo`: the sandbox, the example list and a window compressed 3600× (24 h → 24 s;
//! `--window` compresses it more or less): the whole thing — import, paced run with faults,
//! summary, the sandbox's verdict — in about a minute, with nothing to configure.

use std::time::Duration;

use super::{Context, EXIT_FATAL, EXIT_OK, human_ms, run, status};
use crate::api::Client;
use crate::cli::sandbox::{config_from, demo_settings};
use crate::config::Limits;
use crate::ingest::{self, Accounts, Input};
use crate::sandbox::{Faults, Sandbox};
use crate::store::now_ms;

/// The demo's list, embedded so the demo runs from anywhere.
pub const EXAMPLE_CSV: &str = include_str!("../../jobs/example.csv");

/// Run the demo.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the demo's database in this folder (default: a temporary folder, removed at the end)
    #[arg(long)]
    pub keep: Option<std::path::PathBuf>,
    /// No progress bars
    #[arg(long)]
    pub no_progress: bool,
    /// The length X's 24 hours are compressed into (at least 1s)
    #[arg(long, default_value = "24s", value_parser = parse_window)]
    pub window: Duration,
}

/// A `--window`: a duration of a second to a day.
fn parse_window(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
        return Err(format!("{s}: the demo's window is between 1s and 24h"));
    }
    Ok(d)
}

/// Runs `demo`.
pub async fn run(_ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let tmp = tempfile::tempdir()?;
    let dir = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let db = dir.join("demo.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let mut settings = demo_settings(&["alice", "bob", "carol"]);
    let factor = 86_400.0 / args.window.as_secs_f64();
    // Every window of the profile compressed alike (24 h → 24 s, 15 m → 0.25 s).
    let reads = [
        &mut settings.resolve.per_user,
        &mut settings.resolve.per_app,
        &mut settings.verify.per_user,
        &mut settings.verify.per_app,
    ];
    for w in settings.limits.user.iter_mut().chain(settings.limits.app.iter_mut()).chain(reads) {
        w.length = w.length.div_f64(factor);
    }
    // Follows are looked for at X once settled, and sent again when they never show.
    settings.verify.settle = settings.verify.settle.div_f64(factor);
    settings.verify.retry_after = settings.verify.retry_after.div_f64(factor);
    let window = human_ms(args.window.as_millis() as i64);
    // Every time in the demo is a share of its window (at the default 24 s: a 2 s time-out,
    // back-offs from 200 ms to 3 s, answers held 3 s), so a shorter window is the same demo.
    let share = |n: u32| args.window / n;
    settings.api.timeout = share(12);
    settings.retry.base = share(120);
    settings.retry.max = share(8);
    settings.retry.max_attempts = 6;
    // Held past the time-out (whose resolution is a quarter of a second) at any window.
    let hang_for = share(8).max(settings.api.timeout + Duration::from_millis(500));
    // A hang must not hold up the queue: others go on while one request waits.
    settings.run.concurrency = 4;
    settings.inbox = dir.join("inbox");

    let (mut sb_config, _) = config_from(&settings);
    sb_config.faults = Faults { p503: 0.02, p500: 0.01, p429: 0.003, hang: 0.003, drop: 0.005, seed: 2026, hang_for };
    // And X's eventual consistency at its worst: a few follows answered 200 and never made.
    sb_config.drop_ratio = 0.02;
    let sb = Sandbox::start(sb_config, 0).await?;
    settings.api.base_url = sb.base_url();
    crate::outln!(
        "followq demo: sandbox on {} | limits {} per account, {} per app (24 h compressed {factor:.0}x into {window})",
        sb.base_url(),
        Limits::describe(&settings.limits.user),
        Limits::describe(&settings.limits.app)
    );
    crate::outln!(
        "faults the sandbox injects on purpose: 503s (2 %), 500s (1 %), spurious 429s (0.3 %), answers held back {} (past the {} time-out; 0.3 %), dropped connections (0.5 %): the log lines below about 'Over capacity', 'Internal error', 'rate limited', 'timed out' and 'connection' are those faults, and followq retries them; and 2 % of follows answered 200 but never made, which followq finds when it looks for them and sends again",
        human_ms(hang_for.as_millis() as i64),
        human_ms(settings.api.timeout.as_millis() as i64)
    );

    let ctx = Context { settings: settings.clone(), db_path: db.clone(), config_path: dir.join("followq.toml") };
    let (store, ids) = ctx.open_store().await?;
    let accounts = Accounts::new(ids, None)?;
    let mut rejects = 0;
    let mut on_reject = |r: &ingest::Reject| {
        rejects += 1;
        if rejects <= 3 {
            println!("  rejected example.csv:{}: {}", r.line, crate::text::printable(&r.reason));
        }
    };
    let opts =
        ingest::Options { accounts: &accounts, dry_run: false, on_reject: &mut on_reject, content_hash: String::new() };
    let s = ingest::import(&store, &Input::Embedded { name: "jobs/example.csv", text: EXAMPLE_CSV }, opts).await?;
    crate::outln!(
        "imported jobs/example.csv: {} rows, {} queued, {} duplicates, {} rejected",
        s.rows_read,
        s.added,
        s.duplicates,
        s.rejected
    );

    let client = Client::new(&settings)?;
    let shutdown = run::shutdown_on_signals();
    let started = now_ms();
    let run_args = run::Args {
        stop_at: None,
        max_duration: None,
        watch: false,
        dry_run: false,
        no_progress: args.no_progress,
        seed: Some(7),
    };
    let code = run::work(&store, &settings, &client, shutdown, None, &run_args).await?;
    let elapsed = now_ms() - started;
    store.close().await;

    crate::outln!();
    let report = status::report(&ctx).await?;
    status::print_table(&mut std::io::stdout().lock(), &report)?;
    let st = sb.stats();
    crate::outln!();
    crate::outln!("sandbox verdict after {}:", human_ms(elapsed));
    crate::outln!("  create requests {} | by status {:?}", st.creates.values().sum::<u64>(), st.by_status);
    crate::outln!("    (status 0: no HTTP answer at all — the connections the sandbox dropped on purpose)");
    crate::outln!("  faults injected {:?}", st.faults);
    crate::outln!(
        "  username lookups {} (at most {} names each) | names asked again {} | follows of unknown or suspended names {}",
        st.lookups,
        st.lookup_most_names,
        st.names_asked_again,
        st.follows_of_unknown
    );
    crate::outln!(
        "  follows dropped silently {} | reads of the following list {:?} (violations {})",
        st.dropped_follows,
        st.reads,
        st.read_violations
    );
    for w in &st.windows {
        crate::outln!("  most requests in any {} {} window: {:?} (limit {})", w.scope, w.window, w.most, w.limit);
    }
    crate::outln!(
        "  window violations {} | bad signatures {} | repeated creates {}",
        st.violations,
        st.bad_signatures,
        st.duplicate_creates
    );
    let lost = st.faults.get("hang").copied().unwrap_or(0) + st.faults.get("drop").copied().unwrap_or(0);
    crate::outln!(
        "    (a repeated create is a follow sent again for a target already followed: after an answer that was held past the time-out or a connection that was dropped — {lost} such faults here — followq cannot know the follow happened, so it sends it once more, harmlessly)"
    );
    let clean = st.violations == 0 && st.bad_signatures == 0 && st.read_violations == 0;
    crate::outln!("  {}", if clean { "OK: no limit broken, every signature valid" } else { "NOT OK: see above" });
    if let Some(d) = &args.keep {
        crate::outln!("demo files kept in {}", d.display());
    }
    Ok(if !clean {
        EXIT_FATAL
    } else if code == super::EXIT_PARTIAL {
        EXIT_OK
    } else {
        code
    })
}
