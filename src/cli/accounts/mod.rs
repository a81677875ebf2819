//! `followq accounts [list|check|add|remove]`.

mod add;
mod remove;

pub use add::AddArgs;
pub use remove::RemoveArgs;

use super::{Context, EXIT_OK, EXIT_PARTIAL, local_time};
use crate::api::Client;
use crate::api::classify::parse_error;
use crate::config::{self, ApiVersion};
use crate::store::{AccountRow, now_ms};

/// List, check, add or remove accounts.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
}

/// What to do with the accounts.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Each account: configured, paused, stopped
    List,
    /// Verify each account's credentials with X; a stopped account that verifies is resumed
    Check,
    /// Add an account with X's PIN flow (or replace its tokens)
    Add(AddArgs),
    /// Remove an account from followq.toml (its jobs stay unless --drop-jobs)
    Remove(RemoveArgs),
}

/// Runs `accounts`.
pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    match args.action.unwrap_or(Action::List) {
        Action::Add(a) => add::run(ctx, a).await,
        Action::Remove(a) => remove::run(ctx, a).await,
        // Listing only reads; a missing database is said, as by every reading command.
        Action::List => {
            let store = ctx.read_store().await?;
            let rows = store.accounts().await?;
            store.close().await;
            list(ctx, &rows)
        }
        Action::Check => check(ctx).await,
    }
}

/// `accounts check`: a stopped account that verifies is resumed (it works before any import).
async fn check(ctx: &Context) -> anyhow::Result<u8> {
    let store = ctx.open_store().await?.0;
    let rows = store.accounts().await?;
    config::require_credentials(&ctx.settings)?;
    let client = Client::new(&ctx.settings)?;
    let mut bad = 0;
    for a in &ctx.settings.accounts {
        let row = rows.iter().find(|r| r.name == a.name);
        // v2: who X says the token is (GET /2/users/me), kept for the follows' path.
        let answer = match ctx.settings.api.version {
            ApiVersion::V2 => client.me(a).await,
            ApiVersion::V1_1 => client.verify_credentials(a).await,
        };
        match answer {
            Ok(r) if r.status == 200 => {
                if let (Some(row), Some((id, username))) = (row, crate::api::parse_me(&r.body)) {
                    store.set_identity(row.id, &id, &username, &crate::store::token_digest(&a.token)).await?;
                }
                if let Some(row) = row.filter(|r| !r.stopped_reason.is_empty()) {
                    store.clear_stop(row.id).await?;
                    crate::outln!("{}: ok (was stopped; resumed)", a.name);
                } else {
                    crate::outln!("{}: ok", a.name);
                }
            }
            Ok(r) => {
                bad += 1;
                let e = match ctx.settings.api.version {
                    ApiVersion::V2 => crate::api::classify::classify_v2(r.status, &r.body, None).1,
                    ApiVersion::V1_1 => parse_error(&r.body),
                };
                crate::outln!(
                    "{}: FAILED: HTTP {} code {} {}",
                    a.name,
                    r.status,
                    e.code.map_or("-".into(), |c| c.to_string()),
                    e.message
                );
            }
            Err(e) => {
                bad += 1;
                crate::outln!("{}: FAILED: {e}", a.name);
            }
        }
    }
    let code = if bad > 0 { EXIT_PARTIAL } else { EXIT_OK };
    store.close().await;
    Ok(code)
}

/// Every account the database knows, then those configured that it does not know yet.
fn list(ctx: &Context, rows: &[AccountRow]) -> anyhow::Result<u8> {
    let now = now_ms();
    for a in rows {
        let configured = ctx.settings.account(&a.name).is_some();
        let state = if !a.stopped_reason.is_empty() {
            format!("stopped: {}", a.stopped_reason)
        } else if a.paused_until > now {
            format!("paused until {} ({})", local_time(a.paused_until), a.pause_reason)
        } else {
            "ready".to_string()
        };
        let on_x = if a.x_user_id.is_empty() {
            "-".to_string()
        } else {
            format!("@{} ({})", crate::text::printable(&a.x_username), crate::text::printable(&a.x_user_id))
        };
        crate::outln!(
            "{:<16} {:<13} {on_x:<28} pace x{:<4} {state}",
            a.name,
            if configured { "configured" } else { "unconfigured" },
            a.pace_factor
        );
    }
    for a in ctx.settings.accounts.iter().filter(|a| !rows.iter().any(|r| r.name == a.name)) {
        crate::outln!("{:<16} {:<13} {:<28} pace x{:<4} ready", a.name, "configured", "-", 1);
    }
    Ok(EXIT_OK)
}
