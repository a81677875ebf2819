//! `followq verify`: looks for every follow X answered and that is not confirmed yet, now, and
//! records those it sees as confirmed. v1.1 reads friendships/lookup (100 a request; a request
//! to a protected account shows as `following_requested`); v2 reads the account's following list
//! (1000 a page; requests do not show there, so v2 looks for follows only). Reads keep to
//! `[verify]`'s budget, waiting for it when they must. Nothing is sent again here: that is
//! `run`'s, after `verify.retry_after`.

use std::collections::HashSet;

use super::{Context, EXIT_OK, EXIT_PARTIAL, human_ms};
use crate::api::{self, Client};
use crate::config::{self, Account, ApiVersion};
use crate::model::TargetKind;
use crate::reads::{READ_BACKOFF_MS, ReadBudget};
use crate::store::{Check, Store, token_digest};
use crate::time::Clock;

/// Look for reported follows at X now, and record those it shows
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this account
    #[arg(long)]
    pub account: Option<String>,
}

/// Follows read from the store per query.
const PAGE: usize = 1000;

/// Runs `verify`.
pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    config::require_credentials(&ctx.settings)?;
    let store = ctx.existing_store().await?;
    let names: Vec<&str> = ctx.settings.accounts.iter().map(|a| a.name.as_str()).collect();
    let ids = store.sync_accounts(&names).await?;
    let only = match &args.account {
        Some(name) => Some(names.iter().find(|n| n.eq_ignore_ascii_case(name)).copied().ok_or_else(|| {
            crate::ingest::IngestError::UnknownAccount(name.clone(), format!("configured: {}", names.join(", ")))
        })?),
        None => None,
    };
    let client = Client::new(&ctx.settings)?;
    let version = ctx.settings.api.version;
    let mut budget = ReadBudget::new(&ctx.settings.verify.per_user, &ctx.settings.verify.per_app);
    let rows = store.accounts().await?;
    let mut missing_total = 0;
    for account in ctx.settings.accounts.iter().filter(|a| only.is_none_or(|o| o == a.name)) {
        let Some(&id) = ids.get(&account.name) else { continue };
        let mut candidates = Vec::new();
        let mut after = 0;
        loop {
            let page = store.unconfirmed_follows(id, version == ApiVersion::V1_1, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.job_id;
            candidates.extend(page);
        }
        let seen = match version {
            ApiVersion::V1_1 => lookup(&client, account, id, &candidates, &mut budget).await?,
            ApiVersion::V2 => {
                let known = rows.iter().find(|r| r.id == id && r.x_token_digest == token_digest(&account.token));
                let source = match known.filter(|r| !r.x_user_id.is_empty()) {
                    Some(r) => r.x_user_id.clone(),
                    None => identify(&store, &client, account, id).await?,
                };
                following(&client, account, id, &source, &candidates, &mut budget).await?
            }
        };
        let visible: Vec<i64> = candidates.iter().filter(|c| seen.contains(&c.job_id)).map(|c| c.job_id).collect();
        store.confirm_seen(&visible, crate::time::now_ms()).await?;
        let missing: Vec<String> =
            candidates.iter().filter(|c| !seen.contains(&c.job_id)).map(|c| c.target.clone()).collect();
        let confirmed =
            store.confirmations().await?.into_iter().find(|(a, _)| *a == id).map_or(0, |(_, c)| c.confirmed);
        crate::outln!(
            "{}: {} confirmed, {} not visible yet{}",
            account.name,
            confirmed,
            missing.len(),
            preview(&missing)
        );
        missing_total += missing.len();
    }
    store.close().await;
    Ok(if missing_total > 0 { EXIT_PARTIAL } else { EXIT_OK })
}

/// Takes a read, waiting for the budget when it must (and saying so when the wait is long).
async fn take(budget: &mut ReadBudget, id: i64, account: &str) {
    let clock = Clock::System;
    loop {
        let now = clock.now_ms();
        let until = match budget.paused(now) {
            Some(t) => t,
            None => match budget.take(id, &clock) {
                Ok(()) => return,
                Err(t) => t,
            },
        };
        if until - now > 2_000 {
            eprintln!("{account}: waiting {} for the read budget ([verify] per_user, per_app)", human_ms(until - now));
        }
        tokio::time::sleep(std::time::Duration::from_millis((until - now).max(1) as u64)).await;
    }
}

/// A read's answer, when it is a 200; a 429 pauses reads until its reset, other failures a
/// little. Errors after a few tries.
async fn read(
    budget: &mut ReadBudget,
    id: i64,
    account: &Account,
    what: &str,
    send: impl AsyncFn() -> Result<api::Response, api::Error>,
) -> anyhow::Result<api::Response> {
    for _ in 0..5 {
        take(budget, id, &account.name).await;
        let now = crate::time::now_ms();
        match send().await {
            Ok(r) if r.status == 200 => return Ok(r),
            Ok(r) if r.status == 429 => {
                let reset = r.rl_reset.map(|t| t * 1000).filter(|&t| t > now).unwrap_or(now + 60_000);
                budget.pause_until(reset);
            }
            Ok(r) if (500..600).contains(&r.status) => budget.pause_until(now + READ_BACKOFF_MS),
            Ok(r) => {
                let e = api::classify::parse_error(&r.body);
                anyhow::bail!(
                    "{}: {what} answered HTTP {}{}: {}",
                    account.name,
                    r.status,
                    e.code.map_or(String::new(), |c| format!(" code {c}")),
                    crate::text::printable(&e.message)
                );
            }
            Err(_) => budget.pause_until(now + READ_BACKOFF_MS),
        }
    }
    anyhow::bail!("{}: {what} failed five times; try `followq verify` again later", account.name)
}

/// v1.1: friendships/lookup, 100 targets of one kind a request. The jobs seen.
async fn lookup(
    client: &Client,
    account: &Account,
    id: i64,
    checks: &[Check],
    budget: &mut ReadBudget,
) -> anyhow::Result<HashSet<i64>> {
    let mut seen = HashSet::new();
    for kind in [TargetKind::ScreenName, TargetKind::UserId] {
        let of_kind: Vec<&Check> = checks.iter().filter(|c| c.kind == kind).collect();
        for chunk in of_kind.chunks(crate::confirm::LOOKUP_BATCH) {
            let targets: Vec<String> = chunk.iter().map(|c| c.target.clone()).collect();
            let r =
                read(budget, id, account, "friendships/lookup", async || client.lookup(account, kind, &targets).await)
                    .await?;
            let shown = api::parse_lookup(&r.body, kind).unwrap_or_default();
            for c in chunk {
                let key = if kind == TargetKind::ScreenName { c.target.to_ascii_lowercase() } else { c.target.clone() };
                if shown.contains(&key) {
                    seen.insert(c.job_id);
                }
            }
        }
    }
    Ok(seen)
}

/// v2: the account's following list, page after page until every follow is seen or it ends.
async fn following(
    client: &Client,
    account: &Account,
    id: i64,
    source: &str,
    checks: &[Check],
    budget: &mut ReadBudget,
) -> anyhow::Result<HashSet<i64>> {
    let wanted: HashSet<&str> = checks.iter().filter_map(|c| c.user_id.as_deref()).collect();
    let mut listed: HashSet<String> = HashSet::new();
    let mut next: Option<String> = None;
    while !checks.is_empty() {
        let page = next.clone();
        let r = read(budget, id, account, "GET /2/users/:id/following", async || {
            client.following(account, source, page.as_deref()).await
        })
        .await?;
        let Some((ids, token)) = api::parse_following(&r.body) else {
            anyhow::bail!("{}: the following list answered something else", account.name);
        };
        listed.extend(ids);
        next = token;
        if next.is_none() || wanted.iter().all(|w| listed.contains(*w)) {
            break;
        }
    }
    Ok(checks.iter().filter(|c| c.user_id.as_ref().is_some_and(|u| listed.contains(u))).map(|c| c.job_id).collect())
}

/// v2: who the account is (`GET /2/users/me`), kept as a run keeps it.
async fn identify(store: &Store, client: &Client, account: &Account, id: i64) -> anyhow::Result<String> {
    let r = client.me(account).await?;
    match (r.status, api::parse_me(&r.body)) {
        (200, Some((x_id, username))) => {
            store.set_identity(id, &x_id, &username, &token_digest(&account.token)).await?;
            Ok(x_id)
        }
        (status, _) => anyhow::bail!("{}: GET /2/users/me answered HTTP {status}", account.name),
    }
}

fn preview(missing: &[String]) -> String {
    if missing.is_empty() {
        return String::new();
    }
    let head: Vec<String> = missing.iter().take(5).map(|m| crate::text::printable(m).into_owned()).collect();
    format!(" ({}{})", head.join(", "), if missing.len() > 5 { ", …" } else { "" })
}
