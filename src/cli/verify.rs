//! `followq verify`: ask X (GET friendships/lookup) whether follows it reported are visible yet.
//! Follows are eventually consistent, so "not yet visible" is a report, not a failure recorded.

use serde_json::Value;

use super::{Context, EXIT_OK, EXIT_PARTIAL, UsageError};
use crate::api::Client;
use crate::config;
use crate::model::TargetKind;

/// Confirm follows with GET friendships/lookup.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this account
    #[arg(long)]
    pub account: Option<String>,
}

/// Runs `verify`.
pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    config::require_credentials(&ctx.settings)?;
    let store = ctx.existing_store().await?;
    let names: Vec<&str> = ctx.settings.accounts.iter().map(|a| a.name.as_str()).collect();
    let ids = store.sync_accounts(&names).await?;
    if let Some(name) = &args.account
        && !names.iter().any(|n| n.eq_ignore_ascii_case(name))
    {
        return Err(crate::ingest::IngestError::UnknownAccount(
            name.clone(),
            format!("configured: {}", names.join(", ")),
        )
        .into());
    }
    let client = Client::new(&ctx.settings)?;
    let mut missing_total = 0;
    for account in &ctx.settings.accounts {
        if args.account.as_deref().is_some_and(|a| !a.eq_ignore_ascii_case(&account.name)) {
            continue;
        }
        let Some(&id) = ids.get(&account.name) else { continue };
        let targets = store.followed_targets(id).await?;
        let (mut confirmed, mut missing) = (0usize, Vec::new());
        for kind in [TargetKind::ScreenName, TargetKind::UserId] {
            let list: Vec<String> = targets.iter().filter(|t| t.1 == kind.as_str()).map(|t| t.2.clone()).collect();
            for chunk in list.chunks(100) {
                let resp = client.lookup(account, kind, chunk).await?;
                if resp.status != 200 {
                    anyhow::bail!("{}: friendships/lookup answered {}: {}", account.name, resp.status, resp.body);
                }
                let seen = following_set(&resp.body, kind);
                for t in chunk {
                    if seen.contains(&t.to_ascii_lowercase()) {
                        confirmed += 1;
                    } else {
                        missing.push(t.clone());
                    }
                }
            }
        }
        crate::outln!(
            "{}: {} confirmed, {} not visible yet{}",
            account.name,
            confirmed,
            missing.len(),
            preview(&missing)
        );
        missing_total += missing.len();
    }
    if let Some(a) = &args.account
        && ctx.settings.account(a).is_none()
    {
        return Err(UsageError(format!("unknown account '{a}'")).into());
    }
    store.close().await;
    Ok(if missing_total > 0 { EXIT_PARTIAL } else { EXIT_OK })
}

/// The targets lookup reports as followed (or requested), lower-cased.
fn following_set(body: &str, kind: TargetKind) -> std::collections::HashSet<String> {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|u| {
            u.get("connections")
                .and_then(Value::as_array)
                .is_some_and(|c| c.iter().any(|x| x == "following" || x == "following_requested"))
        })
        .filter_map(|u| match kind {
            TargetKind::ScreenName => u.get("screen_name").and_then(Value::as_str).map(str::to_ascii_lowercase),
            TargetKind::UserId => u.get("id_str").and_then(Value::as_str).map(str::to_string),
        })
        .collect()
}

fn preview(missing: &[String]) -> String {
    if missing.is_empty() {
        return String::new();
    }
    let head: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
    format!(" ({}{})", head.join(", "), if missing.len() > 5 { ", …" } else { "" })
}
