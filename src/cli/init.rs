//! `followq init`: a commented config (0600) and a fresh database (0600).

use std::io::Write;

use anyhow::Context as _;

use super::{Context, EXIT_OK, UsageError};
use crate::config;

/// Write a commented followq.toml and create the database.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Overwrite an existing config file
    #[arg(long)]
    pub force: bool,
}

/// Runs `init`.
pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let path = &ctx.config_path;
    if path.exists() && !args.force {
        return Err(UsageError(format!("{} exists; pass --force to overwrite it", path.display())).into());
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(config::TEMPLATE.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        // An existing file keeps its mode on open; make sure it is private.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let existed = ctx.db().file().is_none_or(|p| p.exists());
    let (store, _) = ctx.open_store().await?;
    store.close().await;
    crate::outln!("wrote {} (mode 0600): add your app keys and [[accounts]]", path.display());
    if existed {
        // --force rewrites the config only: the queue and the ledger are kept.
        crate::outln!("kept {} (its jobs and ledger are untouched)", ctx.db());
    } else {
        crate::outln!("created {}", ctx.db());
    }
    Ok(EXIT_OK)
}
