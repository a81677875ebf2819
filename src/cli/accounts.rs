//! `followq accounts [list|check]`.

use super::{Context, EXIT_OK, EXIT_PARTIAL, local_time};
use crate::api::Client;
use crate::api::classify::parse_error;
use crate::config::{self, ApiVersion};
use crate::store::now_ms;

/// List accounts, or check their credentials.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
}

/// What to do with the accounts.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Each account: configured, paused, stopped
    List,
    /// Verify each account's credentials with X; a stopped account that verifies is resumed
    Check,
}

/// Runs `accounts`.
pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let action = args.action.unwrap_or(Action::List);
    // Listing only reads; a check may resume a stopped account (and works before any import).
    let store = match action {
        Action::List => ctx.read_store().await?,
        Action::Check => ctx.open_store().await?.0,
    };
    let rows = store.accounts().await?;
    let code = match action {
        Action::List => {
            let now = now_ms();
            for a in &rows {
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
            EXIT_OK
        }
        Action::Check => {
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
            if bad > 0 { EXIT_PARTIAL } else { EXIT_OK }
        }
    };
    store.close().await;
    Ok(code)
}
