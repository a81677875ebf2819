//! `followq resolve`: every queued username resolved to its id now (`GET /2/users/by`, 100 a
//! request, paced within the read budget), with a progress bar. `run` does the same just ahead of
//! its follows; this is for seeing, before a long run, how much of a list X does not know.

use super::{Context, EXIT_OK, EXIT_PARTIAL, UsageError};
use crate::api::Client;
use crate::config::{self, ApiVersion};
use crate::resolve::{Resolver, Step};
use crate::text::printable;
use crate::time::{Clock, human_ms};

/// Resolve queued usernames to ids now (v2)
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this account's jobs
    #[arg(long)]
    pub account: Option<String>,
    /// No progress bar
    #[arg(long)]
    pub no_progress: bool,
}

/// Runs `resolve`.
pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    if ctx.settings.api.version != ApiVersion::V2 {
        return Err(
            UsageError("resolve is for api.version \"2\": v1.1 follows by screen name, unresolved".into()).into()
        );
    }
    config::require_credentials(&ctx.settings)?;
    let store = ctx.existing_store().await?;
    let names: Vec<&str> = ctx.settings.accounts.iter().map(|a| a.name.as_str()).collect();
    let ids = store.sync_accounts(&names).await?;
    // As `verify` and `retry` take it: any case, and a name not configured is an error.
    let only = match &args.account {
        Some(name) => match ctx.settings.accounts.iter().find(|a| a.name.eq_ignore_ascii_case(name)) {
            Some(a) => Some(a.name.clone()),
            None => {
                return Err(crate::ingest::IngestError::UnknownAccount(
                    name.clone(),
                    format!("configured: {}", names.join(", ")),
                )
                .into());
            }
        },
        None => None,
    };
    let client = Client::new(&ctx.settings)?;
    let mut resolver = Resolver::new(&ctx.settings.resolve.per_user, &ctx.settings.resolve.per_app);
    let pending: i64 = store
        .unresolved_counts()
        .await?
        .into_iter()
        .filter(|(id, _)| ids.iter().any(|(n, i)| i == id && only.as_deref().is_none_or(|a| a == n)))
        .map(|(_, n)| n)
        .sum();
    let bar = crate::progress::simple_bar(pending as u64, "names", args.no_progress);
    let (mut resolved, mut ended, mut stopped) = (0usize, 0usize, 0usize);
    let clock = Clock::System;
    for account in &ctx.settings.accounts {
        if only.as_deref().is_some_and(|a| a != account.name) {
            continue;
        }
        let Some(&id) = ids.get(&account.name) else { continue };
        loop {
            match resolver.step(&store, &client, &clock, id, account, false).await? {
                Step::Nothing => break,
                Step::Resolved { names, ended: e } => {
                    resolved += names;
                    ended += e.len();
                    bar.inc(names as u64);
                }
                Step::Paused(until) | Step::Wait(until) => {
                    let wait = (until - clock.now_ms()).max(0);
                    bar.set_message(format!("reads wait {}", human_ms(wait)));
                    tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
                    bar.set_message("");
                }
                Step::AccountStopped(why) => {
                    bar.suspend(|| eprintln!("followq: account {}: {}", account.name, printable(&why)));
                    store.stop_account(id, &why).await?;
                    stopped += 1;
                    break;
                }
                Step::AppStopped(why) => {
                    bar.finish_and_clear();
                    eprintln!("followq: X refuses the app: {}", printable(&why));
                    store.stop_app(&why, clock.now_ms()).await?;
                    return Ok(super::EXIT_REFUSED);
                }
            }
        }
    }
    bar.finish_and_clear();
    crate::outln!("resolved {resolved} usernames; {ended} jobs ended without a follow (not found or suspended)");
    if stopped > 0 {
        eprintln!("followq: {stopped} accounts stopped: their names are not resolved (`followq accounts check`)");
        return Ok(EXIT_PARTIAL);
    }
    Ok(EXIT_OK)
}
