//! `followq import`: files, stdin, X archives, or the inbox's new files.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use super::export::neutralise;
use super::{Context, EXIT_FATAL, EXIT_OK, EXIT_PARTIAL};
use crate::ingest::{self, Accounts, Input, Reject, Summary, inbox};
use crate::text::printable;

/// Rejected rows printed to stderr before the rest are only counted (all go to --rejects).
const PRINT_REJECTS: u64 = 20;

/// Queue targets from CSV files, '-' for stdin, an X archive following.js; no FILE: the inbox.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// CSV files, '-' for stdin, or following.js; none: every new file in the inbox (jobs/inbox/)
    pub files: Vec<String>,
    /// The account for rows without an 'account' column
    #[arg(long)]
    pub account: Option<String>,
    /// Validate and count, write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Write every rejected row to this CSV file: its account, target and follow cells as
    /// written, then file, line and reason; fix the rows and import the file again
    #[arg(long)]
    pub rejects: Option<PathBuf>,
}

/// Runs `import`.
pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    // A dry run only reads: the database read-only (an empty one in a temporary folder when
    // there is none yet), and accounts it has not met given ids nothing will ever write.
    let (store, ids, _scratch) = if args.dry_run {
        dry_store(ctx).await?
    } else {
        let (store, ids) = ctx.open_store().await?;
        (store, ids, None)
    };
    let accounts = Accounts::new(ids, args.account.as_deref())?;
    if let Some(p) = &args.rejects {
        // Writing it would empty an input before it is read.
        let same = |f: &String| {
            let (a, b) = (std::fs::canonicalize(f), std::fs::canonicalize(p));
            matches!((a, b), (Ok(a), Ok(b)) if a == b)
        };
        if let Some(f) = args.files.iter().find(|f| same(f)) {
            return Err(super::UsageError(format!(
                "--rejects {}: that is the input {f}; name another file",
                p.display()
            ))
            .into());
        }
    }
    let mut rejects_out = match &args.rejects {
        Some(p) => {
            let mut w = csv::Writer::from_path(p).with_context(|| format!("cannot write {}", p.display()))?;
            w.write_record(REJECTS_HEADER)?;
            Some(w)
        }
        None => None,
    };
    let mut failed_files = 0;
    let inputs: Vec<(Input, String)> = if args.files.is_empty() {
        let scan = settled_inbox(&store, &ctx.settings.inbox).await?;
        for (_, why) in &scan.unreadable {
            eprintln!("followq: {} (skipped)", printable(why));
            failed_files += 1;
        }
        for (path, _) in &scan.settling {
            eprintln!(
                "{}: still being written; skipped (`followq import` takes it once it stops changing)",
                path.display()
            );
        }
        if scan.ready.is_empty() && scan.unreadable.is_empty() && scan.settling.is_empty() {
            crate::outln!("inbox {}: no new files", ctx.settings.inbox.display());
        }
        scan.ready.into_iter().map(|(p, h)| (Input::File(p), h)).collect()
    } else {
        args.files.iter().map(|f| (Input::from_arg(f), String::new())).collect()
    };

    let mut total = Summary { source: "total".into(), ..Summary::default() };
    let mut printed = 0u64;
    for (input, hash) in inputs {
        let mut on_reject = |r: &Reject| {
            if printed < PRINT_REJECTS {
                eprintln!("{}:{}: {}", printable(&r.file), r.line, printable(&r.reason));
            }
            printed += 1;
            if let Some(w) = rejects_out.as_mut() {
                // A failed write to the rejects file is reported once at the end by flush().
                let _ = w.write_record(rejects_record(r));
            }
        };
        let opts = ingest::Options {
            accounts: &accounts,
            dry_run: args.dry_run,
            on_reject: &mut on_reject,
            content_hash: hash,
        };
        match ingest::import(&store, &input, opts).await {
            Ok(s) => {
                print_summary(&s, args.dry_run);
                if s.rows_read == 0 {
                    eprintln!("{}: no rows to import (an empty file, or a header only)", printable(&s.source));
                }
                total.rows_read += s.rows_read;
                total.added += s.added;
                total.duplicates += s.duplicates;
                total.rejected += s.rejected;
            }
            Err(e) => {
                eprintln!("followq: {}", printable(&e.to_string()));
                failed_files += 1;
            }
        }
    }
    if printed > PRINT_REJECTS {
        eprintln!(
            "… and {} more rejected rows{}",
            printed - PRINT_REJECTS,
            if args.rejects.is_some() { " (all in the rejects file)" } else { "; --rejects FILE lists them all" }
        );
    }
    if let Some(mut w) = rejects_out {
        w.flush().context("cannot write the rejects file")?;
    }
    store.close().await;
    Ok(if failed_files > 0 {
        EXIT_FATAL
    } else if total.rejected > 0 {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    })
}

/// The inbox once the files that are still changing have settled: waits for them as long as
/// [`inbox::STABLE_FOR_UNENDED`] at most (a file copied in a moment ago), then takes what is
/// ready.
async fn settled_inbox(store: &crate::store::Store, dir: &std::path::Path) -> anyhow::Result<inbox::Scan> {
    let give_up = std::time::SystemTime::now() + inbox::STABLE_FOR_UNENDED;
    loop {
        let scan = inbox::scan(store, dir).await?;
        let Some(next) = scan.settling.iter().map(|(_, at)| *at).min() else { return Ok(scan) };
        if next > give_up {
            return Ok(scan);
        }
        let wait = next.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        tokio::time::sleep(wait + std::time::Duration::from_millis(50)).await;
    }
}

/// The store a dry run reads, the ids of the configured accounts, and the temporary folder that
/// holds an empty database when there is none yet.
async fn dry_store(
    ctx: &Context,
) -> anyhow::Result<(crate::store::Store, std::collections::HashMap<String, i64>, Option<tempfile::TempDir>)> {
    use crate::store::Store;
    let (store, scratch) = if ctx.db().exists() {
        (Store::open_read_only(&ctx.db()).await?, None)
    } else {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("dry-run.db");
        Store::open(&path).await?.close().await;
        (Store::open_read_only(&crate::store::Db::File(path)).await?, Some(dir))
    };
    let mut ids: std::collections::HashMap<String, i64> = store
        .accounts()
        .await?
        .into_iter()
        .filter(|a| ctx.settings.account(&a.name).is_some())
        .map(|a| (a.name, a.id))
        .collect();
    for (n, a) in ctx.settings.accounts.iter().enumerate() {
        ids.entry(a.name.clone()).or_insert(-1 - n as i64);
    }
    Ok((store, ids, scratch))
}

/// The rejects file's columns: the cells `followq import` reads back, then where and why.
const REJECTS_HEADER: [&str; 6] = ["account", "target", "follow", "file", "line", "reason"];

/// One rejected row for the rejects file, every cell formula-neutralised as `export`'s are (a
/// file named `=1+2.csv` must not run in a spreadsheet).
fn rejects_record(r: &Reject) -> [String; 6] {
    let row = r.row.clone().unwrap_or_default();
    [row.account, row.target, row.follow, r.file.clone(), r.line.to_string(), r.reason.clone()]
        .map(|cell| neutralise(&cell).into_owned())
}

fn print_summary(s: &Summary, dry_run: bool) {
    let mut out = std::io::stdout().lock();
    let verb = if dry_run { "would add" } else { "added" };
    // A closed stdout (a pipe to `head`) is not an error worth failing the import for.
    let _ = writeln!(
        out,
        "{}: {} rows read, {} {verb}, {} already queued, {} rejected",
        printable(&s.source),
        s.rows_read,
        s.added,
        s.duplicates,
        s.rejected
    );
}
