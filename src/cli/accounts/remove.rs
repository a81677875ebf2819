//! `followq accounts remove NAME`: the account out of followq.toml (and its secrets file); its
//! jobs kept unless asked, its ledger always.

use super::super::{Context, EXIT_OK, UsageError};
use crate::config::edit::{ConfigFile, SecretsFile};
use crate::store::Store;

/// Remove an account from followq.toml (its jobs stay unless --drop-jobs)
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The account's name in followq
    pub name: String,
    /// Also delete its queued jobs that were never sent (its finished jobs and the ledger stay)
    #[arg(long)]
    pub drop_jobs: bool,
}

/// Runs `accounts remove`.
pub async fn run(ctx: &Context, args: RemoveArgs) -> anyhow::Result<u8> {
    let name = args.name.as_str();
    let config_shown = ctx.config_path.display().to_string();
    let mut file = ConfigFile::open(&ctx.config_path)?;
    // The secrets file the settings read tokens from (FOLLOWQ_SECRETS, else `secrets`).
    let mut secrets = match ctx.settings.secrets_file.as_ref().filter(|p| p.exists()) {
        Some(path) => Some(SecretsFile::open(path)?),
        None => None,
    };
    let in_config = file.0.exists && file.has_account(name);
    if !in_config && !secrets.as_ref().is_some_and(|s| s.has_account(name)) {
        return Err(UsageError(format!("{config_shown} has no account '{}'", crate::text::printable(name))).into());
    }
    // A run holds the accounts it was started with: refuse while one is going.
    let _lock = if let Some(path) = ctx.db().file().filter(|p| p.exists()) {
        let lock = crate::worker::lock(path);
        Some(lock.map_err(|e| UsageError(format!("{e} ({name} was not removed)")))?)
    } else {
        None
    };
    let mut said = Vec::new();
    if in_config {
        file.remove_account(name);
        file.0.save()?;
        said.push(format!("removed {name} from {config_shown}"));
    }
    if let Some(secrets) = secrets.as_mut().filter(|s| s.has_account(name)) {
        secrets.remove_account(name);
        secrets.0.save()?;
        said.push(format!("its tokens from {}", secrets.0.path.display()));
    }
    let said = said.join(" and ");
    crate::outln!("{}", if in_config { said } else { format!("removed {said}") });
    if ctx.db().exists() {
        let store = Store::open_at(&ctx.db()).await?;
        let id = store.accounts().await?.into_iter().find(|a| a.name == name).map(|a| a.id);
        if let Some(id) = id {
            let (unsent, tried) = store.queued_of(id).await?;
            let db = ctx.db();
            if args.drop_jobs {
                let dropped = store.drop_unsent(id).await?;
                crate::outln!("dropped its {dropped} queued jobs that were never sent from {db}");
                if tried > 0 {
                    crate::outln!(
                        "kept {tried} queued jobs that were sent before (their attempts are in the ledger); \
                         they wait for {name} to be added again"
                    );
                }
            } else if unsent + tried > 0 {
                crate::outln!(
                    "its {} queued jobs stay in {db}: `followq accounts add {name}` takes them up again \
                     (`--drop-jobs` would have dropped them)",
                    unsent + tried
                );
            }
        }
        store.close().await;
    }
    Ok(EXIT_OK)
}
