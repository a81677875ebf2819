//! `followq retry`: put finished jobs with given outcomes back in the queue.

use super::{Context, EXIT_OK, UsageError, export::check_outcomes};

/// Re-queue jobs that ended in these outcomes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Outcomes to re-queue (comma-separated)
    #[arg(long, value_delimiter = ',', default_value = "failed,refused")]
    pub outcome: Vec<String>,
    /// Only this account's jobs
    #[arg(long)]
    pub account: Option<String>,
}

/// Runs `retry`.
pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    check_outcomes(&args.outcome)?;
    let (store, ids) = ctx.open_store().await?;
    let account = match &args.account {
        Some(name) => Some(*ids.get(name).ok_or_else(|| UsageError(format!("unknown account '{name}'")))?),
        None => None,
    };
    let n = store.requeue(&args.outcome, account).await?;
    store.close().await;
    crate::outln!("re-queued {n} jobs ({})", args.outcome.join(", "));
    Ok(EXIT_OK)
}
