//! `followq retry`: put finished jobs with given outcomes back in the queue.

use super::export::{Selected, names};
use super::{Context, EXIT_OK, UsageError};

/// Re-queue jobs that ended in these outcomes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Outcomes to re-queue (comma-separated)
    #[arg(long, value_enum, value_delimiter = ',', default_value = "failed,refused")]
    pub outcome: Vec<Selected>,
    /// Only this account's jobs
    #[arg(long)]
    pub account: Option<String>,
}

/// Runs `retry`.
pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let store = ctx.existing_store().await?;
    // Any account the database knows, configured or not (its jobs can wait for it), by name
    // in any case.
    let known = store.accounts().await?;
    let account = match &args.account {
        Some(name) => {
            Some(known.iter().find(|a| a.name.eq_ignore_ascii_case(name)).map(|a| a.id).ok_or_else(|| {
                let names: Vec<&str> = known.iter().map(|a| a.name.as_str()).collect();
                UsageError(format!("unknown account '{name}' (the database has: {})", names.join(", ")))
            })?)
        }
        None => None,
    };
    let outcomes = names(&args.outcome);
    let n = store.requeue(&outcomes, account).await?;
    store.close().await;
    crate::outln!("re-queued {n} jobs ({})", outcomes.join(", "));
    Ok(EXIT_OK)
}
