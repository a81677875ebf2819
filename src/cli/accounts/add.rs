//! `followq accounts add NAME`: X's PIN flow for an account, then its tokens written where the
//! user keeps them (followq.toml or its secrets file) and who it is on X kept in the database.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::anyhow;

use super::super::{Context, EXIT_OK, UsageError};
use crate::api::authorize::{AccessToken, FlowError};
use crate::api::{self, Client};
use crate::config::edit::{ConfigFile, SecretsFile};
use crate::config::{self, Account, ApiVersion};
use crate::store::Store;

/// Add an account with X's PIN flow (or replace its tokens)
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The account's name in followq: 1-64 of A-Z a-z 0-9 _ -
    pub name: String,
    /// The PIN X shows once the account has authorized the app (else it is asked for)
    /// [env: FOLLOWQ_PIN]
    #[arg(long, value_name = "PIN")]
    pub pin: Option<String>,
    /// Open the authorization page in the desktop's browser
    #[arg(long)]
    pub open: bool,
    /// Replace the tokens of an account of this name without asking
    #[arg(long)]
    pub force: bool,
    /// Keep the tokens in this file (mode 0600) rather than in followq.toml, which names it
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
}

/// Where the tokens are written: a secrets file, and what followq.toml's `secrets` key should
/// become (None: it names that file already).
struct SecretsTarget {
    path: PathBuf,
    name_in_config: Option<String>,
}

/// Runs `accounts add`.
pub async fn run(ctx: &Context, args: AddArgs) -> anyhow::Result<u8> {
    let name = args.name.as_str();
    config::require_app(&ctx.settings)?;
    config::check_new_account(ctx.settings.accounts.iter().map(|a| a.name.as_str()), name)?;
    let mut file = ConfigFile::open(&ctx.config_path)?;
    let target = secrets_target(ctx, &file, args.secrets_file.as_deref())?;
    let config_shown = ctx.config_path.display().to_string();
    let replacing = file.has_account(name);
    if replacing && !args.force {
        if !std::io::stdin().is_terminal() {
            return Err(UsageError(format!(
                "{name} is already in {config_shown}: `followq accounts add {name} --force` replaces its tokens \
                 (nothing was written)"
            ))
            .into());
        }
        let answer = ask(&format!("{name} is already in {config_shown}. Replace its tokens? [y/N] "))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            crate::outln!("{name} kept as it was: nothing was written");
            return Ok(EXIT_OK);
        }
    }

    let client = Client::new(&ctx.settings)?;
    let request = client.request_token().await.map_err(|e| match e {
        FlowError::Refused { status: 401, .. } => UsageError(format!(
            "X refused the app's consumer key and secret ([app] in {config_shown}, or FOLLOWQ_CONSUMER_KEY / \
             FOLLOWQ_CONSUMER_SECRET): oauth/request_token: {e} (nothing was written)"
        ))
        .into(),
        e => anyhow!("oauth/request_token: {e} (nothing was written)"),
    })?;
    let url = client.authorize_url(&request);
    crate::outln!(
        "To add {name}, open this page, sign in to X as the account to add, and authorize the app:\n\n    {url}\n"
    );
    if args.open {
        let shown = url.clone();
        match tokio::task::spawn_blocking(move || open::that(&shown)).await? {
            Ok(()) => crate::outln!("(opened in your browser)"),
            Err(e) => crate::outln!("(could not open a browser: {e}; open the page yourself)"),
        }
    }
    let pin = match args.pin.clone().or_else(|| config::process_env().remove("FOLLOWQ_PIN")) {
        Some(pin) => pin,
        None => ask("X then shows a PIN. Enter it here: ")?,
    };
    let pin = pin.trim().to_string();
    if pin.is_empty() {
        return Err(anyhow!("no PIN was given (nothing was written)"));
    }
    if pin.len() > 32 || !pin.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(UsageError(format!(
            "'{}' is not a PIN: X shows a number of about 7 digits (nothing was written)",
            crate::text::printable(&pin)
        ))
        .into());
    }
    let access = client.access_token(request, &pin).await.map_err(|e| match e {
        FlowError::Refused { .. } => anyhow!(
            "X did not accept the PIN ({e}): it was mistyped, or its authorization was used or has expired. \
             Nothing was written; `followq accounts add {name}` starts again with a new page and PIN"
        ),
        e => anyhow!("oauth/access_token: {e} (nothing was written)"),
    })?;
    let (x_id, username) = identify(&client, ctx.settings.api.version, name, &access).await?;

    let written = match &target {
        Some(t) => {
            let mut secrets = SecretsFile::open(&t.path)?;
            secrets.set_account(name, &access.token, access.secret.expose());
            file.set_account(name, None);
            if let Some(key) = &t.name_in_config {
                file.set_secrets_path(key);
            }
            secrets.0.save()?;
            file.0.save()?;
            format!("tokens in {}", t.path.display())
        }
        None => {
            file.set_account(name, Some((&access.token, access.secret.expose())));
            file.0.save()?;
            format!("tokens in {config_shown}")
        }
    };
    let who = format!("@{} (id {})", crate::text::printable(&username), crate::text::printable(&x_id));
    if replacing {
        crate::outln!("replaced {name}'s tokens: {name} is {who}; {written} (mode 0600)");
    } else {
        crate::outln!("added {name} as {who}; {written} (mode 0600)");
    }
    if let Err(e) = keep_identity(&ctx.db_path, name, &x_id, &username, &access.token).await {
        crate::outln!("(its X id is not kept in {}: {e}; the next run learns it again)", ctx.db_path.display());
    }
    Ok(EXIT_OK)
}

/// Who X says the new token is: `GET /2/users/me` (v1.1: `account/verify_credentials`).
async fn identify(
    client: &Client,
    version: ApiVersion,
    name: &str,
    access: &AccessToken,
) -> anyhow::Result<(String, String)> {
    let account = Account { name: name.to_string(), token: access.token.clone(), token_secret: access.secret.clone() };
    let (endpoint, answer) = match version {
        ApiVersion::V2 => ("GET /2/users/me", client.me(&account).await),
        ApiVersion::V1_1 => ("GET account/verify_credentials", client.verify_credentials(&account).await),
    };
    let refused = |why: String| {
        anyhow!(
            "X gave {name}'s tokens but {endpoint} did not confirm them ({why}). Nothing was written; \
             `followq accounts add {name}` tries again"
        )
    };
    let r = answer.map_err(|e| refused(e.to_string()))?;
    let parsed = match version {
        ApiVersion::V2 => api::parse_me(&r.body),
        ApiVersion::V1_1 => api::parse_verify_credentials(&r.body),
    };
    match parsed {
        Some(who) if r.status == 200 => {
            if !access.user_id.is_empty() && access.user_id != who.0 {
                tracing::warn!(
                    token_user = %crate::text::printable(&access.user_id),
                    confirmed = %crate::text::printable(&who.0),
                    "X's access token names another user id than {endpoint}; keeping {endpoint}'s"
                );
            }
            Ok(who)
        }
        _ => {
            let e = api::classify::classify_for(version, r.status, &r.body, None).1;
            let code = e.code.map_or(String::new(), |c| format!(" code {c}"));
            Err(refused(format!("HTTP {}{code} {}", r.status, crate::text::printable(&e.message))))
        }
    }
}

/// Keeps who the account is on X in the database, with the digest of the token it was learnt
/// with (a run uses the id only while the token is the same).
async fn keep_identity(db: &Path, name: &str, x_id: &str, username: &str, token: &str) -> anyhow::Result<()> {
    let store = Store::open(db).await?;
    let ids = store.sync_accounts(&[name]).await?;
    let id = ids.get(name).copied().ok_or_else(|| anyhow!("{name} is not in the database"))?;
    let kept = store.set_identity(id, x_id, username, &crate::store::token_digest(token)).await;
    store.close().await;
    Ok(kept?)
}

/// Where the tokens go: `--secrets-file`, else the secrets file followq.toml (or
/// FOLLOWQ_SECRETS) names, else None (followq.toml itself).
fn secrets_target(ctx: &Context, file: &ConfigFile, flag: Option<&Path>) -> anyhow::Result<Option<SecretsTarget>> {
    let named = file.secrets_path();
    let Some(flag) = flag else {
        let path = named.or_else(|| ctx.settings.secrets_file.clone());
        return Ok(path.map(|path| SecretsTarget { path, name_in_config: None }));
    };
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if let Some(named) = named {
        if absolute(&named) != absolute(flag) {
            return Err(UsageError(format!(
                "{} keeps tokens in {} already: leave --secrets-file out, or change its `secrets` key first",
                ctx.config_path.display(),
                named.display()
            ))
            .into());
        }
        return Ok(Some(SecretsTarget { path: flag.to_path_buf(), name_in_config: None }));
    }
    // The key is read relative to the config's folder.
    let flag_abs = absolute(flag);
    let dir = absolute(&ctx.config_path).parent().map(Path::to_path_buf).unwrap_or_default();
    let key = flag_abs.strip_prefix(&dir).map(Path::to_path_buf).unwrap_or_else(|_| flag_abs.clone());
    let key = key.to_str().ok_or_else(|| UsageError(format!("--secrets-file {}: not UTF-8", flag.display())))?;
    Ok(Some(SecretsTarget { path: flag.to_path_buf(), name_in_config: Some(key.to_string()) }))
}

/// Asks on the terminal (stdout) and reads a line (stdin); an empty string at end of input.
fn ask(question: &str) -> anyhow::Result<String> {
    let mut out = std::io::stdout().lock();
    out.write_all(question.as_bytes())?;
    out.flush()?;
    drop(out);
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if !line.ends_with('\n') || !std::io::stdin().is_terminal() {
        // Read from a pipe (or at end of input) nothing was echoed: end the question's line.
        crate::outln!();
    }
    Ok(line)
}
