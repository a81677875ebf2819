//! `followq export`: one row per job, as CSV or a JSON array.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;

use super::{Context, EXIT_OK};
use crate::store::{ExportRow, Store};

/// Write one row per job.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Only jobs with these outcomes (comma-separated; "queued" and "in_flight" select unfinished jobs)
    #[arg(long, value_enum, value_delimiter = ',')]
    pub outcome: Vec<Selected>,
    /// Write to this file instead of stdout
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

/// One exported job: stable keys.
#[derive(Debug, Serialize)]
struct Row {
    account: String,
    target: String,
    target_kind: String,
    outcome: String,
    attempts: i64,
    last_status: Option<i64>,
    last_code: Option<i64>,
    last_message: String,
    created_at: String,
    finished_at: String,
    /// When X was seen showing the follow ('' when not, or not looked for).
    confirmed_at: String,
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl From<ExportRow> for Row {
    fn from(r: ExportRow) -> Row {
        Row {
            account: r.account,
            target: r.target,
            target_kind: r.target_kind.as_str().to_string(),
            // An unfinished job's "outcome" is its state, so every row says where it stands.
            outcome: r.outcome.map_or(r.state.as_str(), |o| o.as_str()).to_string(),
            attempts: r.attempts,
            last_status: r.last_status,
            last_code: r.last_code,
            last_message: r.last_message,
            created_at: iso(r.created_at),
            finished_at: r.finished_at.map(iso).unwrap_or_default(),
            confirmed_at: r.confirmed_at.map(iso).unwrap_or_default(),
        }
    }
}

/// A value a spreadsheet would run as a formula gets a leading `'` (OWASP's CSV injection advice).
pub fn neutralise(v: &str) -> std::borrow::Cow<'_, str> {
    match v.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{v}").into(),
        _ => v.into(),
    }
}

/// What an `--outcome` list names: an outcome, or the state of an unfinished job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Selected {
    Followed,
    Requested,
    AlreadyFollowing,
    Blocked,
    Suspended,
    NotFound,
    Refused,
    Failed,
    Unconfirmed,
    Queued,
    InFlight,
}

impl Selected {
    /// The outcome or state as the database stores it.
    pub fn as_str(self) -> &'static str {
        use crate::model::Outcome as O;
        match self {
            Selected::Followed => O::Followed.as_str(),
            Selected::Requested => O::Requested.as_str(),
            Selected::AlreadyFollowing => O::AlreadyFollowing.as_str(),
            Selected::Blocked => O::Blocked.as_str(),
            Selected::Suspended => O::Suspended.as_str(),
            Selected::NotFound => O::NotFound.as_str(),
            Selected::Refused => O::Refused.as_str(),
            Selected::Failed => O::Failed.as_str(),
            Selected::Unconfirmed => O::Unconfirmed.as_str(),
            Selected::Queued => "queued",
            Selected::InFlight => "in_flight",
        }
    }
}

/// An `--outcome` list as the store takes it.
pub fn names(list: &[Selected]) -> Vec<String> {
    list.iter().map(|s| s.as_str().to_string()).collect()
}

/// Runs `export`.
pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let store = ctx.read_store().await?;
    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let result =
        write(&store, &names(&args.outcome), std::io::BufWriter::with_capacity(1 << 16, out), args.format).await;
    store.close().await;
    // A reader that went away (`| head`) ends it quietly: `dispatch` says nothing of a closed pipe.
    result.map(|()| EXIT_OK)
}

/// Writes the rows as the store reads them, one at a time, through a buffer.
async fn write(store: &Store, outcomes: &[String], mut out: impl Write, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            // A JSON array, one row per line.
            let mut first = true;
            store
                .export_each(outcomes, |r| {
                    out.write_all(if first { b"[\n" } else { b",\n" })?;
                    first = false;
                    serde_json::to_writer(&mut out, &Row::from(r))?;
                    Ok::<(), anyhow::Error>(())
                })
                .await?;
            out.write_all(if first { b"[]\n" } else { b"\n]\n" })?;
            out.flush()?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let mut any = false;
            store
                .export_each(outcomes, |r| {
                    any = true;
                    let mut r = Row::from(r);
                    // Values a spreadsheet would run as formulas are guarded (OWASP).
                    for v in [&mut r.account, &mut r.target, &mut r.last_message] {
                        if let std::borrow::Cow::Owned(safe) = neutralise(v) {
                            *v = safe;
                        }
                    }
                    w.serialize(r)?;
                    Ok::<(), anyhow::Error>(())
                })
                .await?;
            if !any {
                // The header, which `serialize` writes with the first row.
                w.write_record(COLUMNS)?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// The CSV columns: [`Row`]'s fields, in order.
const COLUMNS: [&str; 11] = [
    "account",
    "target",
    "target_kind",
    "outcome",
    "attempts",
    "last_status",
    "last_code",
    "last_message",
    "created_at",
    "finished_at",
    "confirmed_at",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_prefixes_are_neutralised() {
        for v in ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx"] {
            assert!(neutralise(v).starts_with('\''), "{v}");
        }
        assert_eq!(neutralise("bob"), "bob");
    }
}
