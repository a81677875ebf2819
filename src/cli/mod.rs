//! The command line: one module per subcommand, each with its `Args` (whose docs are the
//! `--help`) and one `run`. [`dispatch`] loads the settings once and hands them down.

pub mod accounts;
pub mod demo;
pub mod export;
pub mod import;
pub mod init;
pub mod resolve;
pub mod retry;
pub mod run;
pub mod sandbox;
pub mod status;
pub mod verify;

use std::collections::HashMap;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, ConfigError, Settings};
pub use crate::logging::{LogArgs, LogFormat};
use crate::store::Store;

/// Success.
pub const EXIT_OK: u8 = 0;
/// Any other fatal error.
pub const EXIT_FATAL: u8 = 1;
/// A usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Finished, but some items failed: rows rejected on import, jobs `failed` or `refused` on run.
pub const EXIT_PARTIAL: u8 = 3;
/// Stopped with work left: Ctrl-C, --stop-at, --max-duration, or every account with work stopped.
pub const EXIT_STOPPED: u8 = 4;
/// X refuses the app: its access level cannot follow (code 453, `client-forbidden`), no
/// credits (402), a usage cap, or the app itself (261, 416). Its jobs stay queued.
pub const EXIT_REFUSED: u8 = 5;

/// followq: follow long lists of X accounts, paced within the API's limits, crash-safe.
#[derive(Debug, Parser)]
#[command(name = "followq", version, about, long_about = None)]
pub struct Cli {
    /// The SQLite database [env: FOLLOWQ_DB] [default: followq.db]
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// The configuration file [env: FOLLOWQ_CONFIG] [default: followq.toml]
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented followq.toml (mode 0600) and create the database
    Init(init::Args),
    /// Queue targets from CSV files, '-' (stdin), an X archive following.js, or the inbox
    Import(import::Args),
    /// Work the queue off within the limits, until done (or stopped)
    Run(run::Args),
    /// Jobs by state and outcome, budgets, pauses, next slot and ETA
    Status(status::Args),
    /// Write one row per job as CSV or JSON
    Export(export::Args),
    /// Re-queue jobs that ended with the given outcomes
    Retry(retry::Args),
    /// Confirm follows with GET friendships/lookup (they are eventually consistent)
    Verify(verify::Args),
    Resolve(resolve::Args),
    /// Add (X's PIN flow), remove, list or check accounts
    Accounts(accounts::Args),
    /// Run the local X API stand-in (loopback only)
    Sandbox(sandbox::Args),
    /// The whole thing in about a minute: sandbox, example list, a compressed window
    Demo(demo::Args),
}

/// What every command gets: the settings and where the files are.
pub struct Context {
    pub settings: Settings,
    pub db_path: PathBuf,
    pub config_path: PathBuf,
}

impl Context {
    /// Where the database is: `db_path` as a file, or a PostgreSQL URL.
    pub fn db(&self) -> crate::store::Db {
        crate::store::Db::parse(&self.db_path)
    }

    /// Opens the database and registers the configured accounts: (store, id by name).
    pub async fn open_store(&self) -> anyhow::Result<(Store, HashMap<String, i64>)> {
        let store = Store::open_at(&self.db()).await?;
        let names: Vec<&str> = self.settings.accounts.iter().map(|a| a.name.as_str()).collect();
        let ids = store.sync_accounts(&names).await?;
        Ok((store, ids))
    }
}

impl Context {
    /// Opens the database for a command that changes what is there but never starts a queue
    /// (`retry`, `verify`, `accounts check`): a missing database is an error, not a new one.
    pub async fn existing_store(&self) -> anyhow::Result<Store> {
        if !self.db().exists() {
            return Err(crate::store::StoreError::missing(&self.db_path).into());
        }
        Ok(self.open_store().await?.0)
    }

    /// Opens the database for a command that only reads it: never created, never written.
    pub async fn read_store(&self) -> anyhow::Result<Store> {
        Ok(Store::open_read_only(&self.db()).await?)
    }
}

/// A usage error found after parsing (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Writes a line to stdout like `println!`, but returns the error (a closed pipe, a full disk)
/// to the caller instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// Runs the command and returns the exit status. Errors are printed here, once.
pub async fn dispatch(cli: Cli) -> u8 {
    let (db_path, _) = config::resolve_path(cli.db.as_deref(), "FOLLOWQ_DB", "followq.db");
    match dispatch_inner(cli).await {
        Ok(code) => code,
        // A reader that went away (`followq status | head -3`) ends it quietly, as ripgrep does.
        Err(e) if is_broken_pipe(&e) => EXIT_OK,
        Err(e) => {
            crate::logging::clear();
            eprintln!("followq: {}", crate::text::printable(&describe(&e, &db_path)));
            if e.downcast_ref::<ConfigError>().is_some() || e.downcast_ref::<UsageError>().is_some() {
                EXIT_USAGE
            } else {
                EXIT_FATAL
            }
        }
    }
}

/// True when the error comes from writing to a closed pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let pipe = |io: &std::io::Error| io.kind() == std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(pipe)
            || c.downcast_ref::<csv::Error>().is_some_and(|e| matches!(e.kind(), csv::ErrorKind::Io(io) if pipe(io)))
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

/// One message for an error: its causes joined, each said once (an error's text often repeats
/// its cause's), with the database named when the database failed, and what to do when it was
/// locked.
fn describe(e: &anyhow::Error, db: &std::path::Path) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    let store = e.chain().find_map(|c| c.downcast_ref::<crate::store::StoreError>());
    if let Some(err) = store {
        let db = crate::store::Db::parse(db).to_string();
        if !text.contains(&db) {
            text = format!("database {db}: {text}");
        }
        if err.is_read_only() {
            text.push_str(
                " — followq writes the database and, beside it, its -wal and -shm files: the file or its folder is read-only for this user",
            );
        }
        if err.is_busy() {
            text.push_str(
                " — another process kept it locked past the wait (an import, `followq retry`, or another program): try again when it is done",
            );
        }
    }
    text
}

async fn dispatch_inner(cli: Cli) -> anyhow::Result<u8> {
    let (config_path, explicit) = config::resolve_path(cli.config.as_deref(), "FOLLOWQ_CONFIG", "followq.toml");
    let (db_path, _) = config::resolve_path(cli.db.as_deref(), "FOLLOWQ_DB", "followq.db");
    // init writes the config; demo and sandbox have their own defaults: a broken file must not
    // stop them, but it must stop everything that would act on it.
    let settings = match &cli.command {
        Command::Init(_) => Settings::default(),
        Command::Demo(_) => Settings::default(),
        Command::Sandbox(_) if !config_path.exists() => Settings::default(),
        _ => config::load(&config::Sources { path: &config_path, explicit, env: config::process_env() })?,
    };
    let ctx = Context { settings, db_path, config_path };
    match cli.command {
        Command::Init(a) => init::run(&ctx, a).await,
        Command::Import(a) => import::run(&ctx, a).await,
        Command::Run(a) => run::run(&ctx, a).await,
        Command::Status(a) => status::run(&ctx, a).await,
        Command::Export(a) => export::run(&ctx, a).await,
        Command::Retry(a) => retry::run(&ctx, a).await,
        Command::Verify(a) => verify::run(&ctx, a).await,
        Command::Resolve(a) => resolve::run(&ctx, a).await,
        Command::Accounts(a) => accounts::run(&ctx, a).await,
        Command::Sandbox(a) => sandbox::run(&ctx, a).await,
        Command::Demo(a) => demo::run(&ctx, a).await,
    }
}

pub use crate::time::{human_ms, local_time};
