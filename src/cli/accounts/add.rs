//! `followq accounts add NAME`: X's PIN flow for an account, then its tokens written where the
//! user keeps them (followq.toml or its secrets file) and who it is on X kept in the database.
//!
//! Everything that could stop the tokens from being written is checked before X is asked for
//! anything: an authorization is not wasted on a file that cannot be written.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use serde::{Deserialize, Serialize};

use super::super::{Context, EXIT_OK, EXIT_STOPPED, UsageError};
use crate::api::authorize::{AccessToken, FlowError, RequestToken};
use crate::api::{self, Client};
use crate::config::edit::{self, ConfigFile, SecretsFile};
use crate::config::{self, Account, ApiVersion, Secret};
use crate::store::Store;

/// Add an account with X's PIN flow (or replace its tokens)
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The account's name in followq: 1-64 of A-Z a-z 0-9 _ -, beginning with a letter or digit
    pub name: String,
    /// The PIN X showed for the page an earlier `accounts add NAME` printed (for scripts:
    /// that one leaves its page waiting when no PIN is typed) [env: FOLLOWQ_PIN]
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

/// How long a page printed and left waiting may still be completed with `--pin`.
const PENDING_FOR_MS: i64 = 15 * 60 * 1000;

/// A page printed and not completed yet: its request token, kept (mode 0600, beside the
/// config) for `accounts add NAME --pin PIN`, and deleted when used.
#[derive(Serialize, Deserialize)]
struct Pending {
    base_url: String,
    token: String,
    secret: String,
    issued_at: i64,
}

/// Runs `accounts add`.
pub async fn run(ctx: &Context, args: AddArgs) -> anyhow::Result<u8> {
    let name = args.name.as_str();
    config::require_app(&ctx.settings)?;
    config::check_new_account(ctx.settings.accounts.iter().map(|a| a.name.as_str()), name)?;
    let given_pin = args.pin.clone().or_else(|| config::process_env().remove("FOLLOWQ_PIN"));
    if let Some(pin) = &given_pin {
        check_pin(pin)?;
    }
    let mut file = ConfigFile::open(&ctx.config_path)?;
    let target = secrets_target(ctx, args.secrets_file.as_deref())?;
    // Before X is asked: both files can be written, and a name there is replaced only if meant.
    edit::writable(&ctx.config_path)?;
    if let Some(t) = &target {
        edit::writable(&t.path)?;
    }
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
    let pending_path = pending_path(&ctx.config_path, name);
    let (request, pin) = match given_pin {
        Some(pin) => {
            let request = take_pending(&pending_path, &ctx.settings.api.base_url).ok_or_else(|| {
                UsageError(format!(
                    "no page of {name} is waiting for a PIN: `followq accounts add {name}` prints one first \
                     (with no PIN typed, it leaves it waiting for --pin)"
                ))
            })?;
            (request, pin)
        }
        None => {
            let request = client.request_token().await.map_err(|e| match e {
                FlowError::Refused { status: 401, .. } => UsageError(format!(
                    "X refused the app's consumer key and secret ([app] in {config_shown}, or FOLLOWQ_CONSUMER_KEY / \
                     FOLLOWQ_CONSUMER_SECRET): oauth/request_token: {e} (nothing was written)"
                ))
                .into(),
                e => anyhow!("oauth/request_token: {e} (nothing was written)"),
            })?;
            let url = client.authorize_url(&request);
            keep_pending(&pending_path, &ctx.settings.api.base_url, &request)?;
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
            let pin = ask("X then shows a PIN. Enter it here: ")?;
            if pin.trim().is_empty() {
                crate::outln!(
                    "No PIN was given: nothing was written. The page stays good for about 15 minutes: \
                     `followq accounts add {name} --pin PIN` completes it."
                );
                return Ok(EXIT_STOPPED);
            }
            let _ = std::fs::remove_file(&pending_path);
            check_pin(&pin)?;
            (request, pin)
        }
    };
    let access = client.access_token(request, pin.trim()).await.map_err(|e| match e {
        FlowError::Refused { .. } => anyhow!(
            "X did not accept the PIN ({e}): it was mistyped, or its authorization was used or has expired. \
             Nothing was written; `followq accounts add {name}` starts again with a new page and PIN"
        ),
        e => anyhow!("oauth/access_token: {e} (nothing was written)"),
    })?;
    let (x_id, username) = identify(&client, ctx.settings.api.version, name, &access).await?;

    let created = !file.0.exists;
    let written = write_tokens(&mut file, target.as_ref(), name, &access, &config_shown)?;
    if created {
        crate::outln!("wrote {config_shown} from the template (mode 0600)");
    }
    let who = format!("@{} (id {})", crate::text::printable(&username), crate::text::printable(&x_id));
    if replacing {
        crate::outln!("replaced {name}'s tokens: {name} is {who}; {written} (mode 0600)");
    } else {
        crate::outln!("added {name} as {who}; {written} (mode 0600)");
    }
    match keep_identity(&ctx.db(), name, &x_id, &username, &access.token).await {
        Ok(Some(before)) if before.0 != x_id => crate::outln!(
            "note: {name} was @{} (id {}) before: its follows so far were made by that account, and are no \
             longer looked for; what is still queued goes from {who}",
            crate::text::printable(&before.1),
            crate::text::printable(&before.0)
        ),
        Ok(_) => {}
        Err(e) => {
            crate::outln!("(its X id is not kept in {}: {e}; the next run learns it again)", ctx.db())
        }
    }
    let up = config::env_name(name);
    let env = config::process_env();
    for key in [format!("FOLLOWQ_{up}_TOKEN"), format!("FOLLOWQ_{up}_TOKEN_SECRET")] {
        if env.get(&key).is_some_and(|v| !v.is_empty()) {
            crate::outln!("note: {key} is set, and takes the place of what was just written: unset it to use it");
        }
    }
    Ok(EXIT_OK)
}

/// A PIN as X shows one: digits (letters allowed), not too long.
fn check_pin(pin: &str) -> anyhow::Result<()> {
    let pin = pin.trim();
    if pin.is_empty() || pin.len() > 32 || !pin.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(UsageError(format!(
            "'{}' is not a PIN: X shows a number of about 7 digits (nothing was written)",
            crate::text::printable(pin)
        ))
        .into());
    }
    Ok(())
}

/// Writes the tokens: to the secrets file (and the account's name, without tokens, to the
/// config), or to the config. Both files or neither: a secrets file written before a config
/// that then cannot be is put back as it was. Says where they went.
fn write_tokens(
    file: &mut ConfigFile,
    target: Option<&SecretsTarget>,
    name: &str,
    access: &AccessToken,
    config_shown: &str,
) -> anyhow::Result<String> {
    let Some(t) = target else {
        file.set_account(name, Some((&access.token, access.secret.expose())));
        file.0.save()?;
        return Ok(format!("tokens in {config_shown}"));
    };
    let mut secrets = SecretsFile::open(&t.path)?;
    let before = secrets.0.original()?;
    secrets.set_account(name, &access.token, access.secret.expose());
    file.set_account(name, None);
    if let Some(key) = &t.name_in_config {
        file.set_secrets_path(key);
    }
    secrets.0.save()?;
    if let Err(e) = file.0.save() {
        let undone = match before {
            Some(bytes) => edit::write_private(&t.path, &String::from_utf8_lossy(&bytes)),
            None => std::fs::remove_file(&t.path),
        };
        if let Err(u) = undone {
            return Err(anyhow!("{e}; and {} could not be put back as it was: {u}", t.path.display()));
        }
        return Err(e.into());
    }
    Ok(format!("tokens in {}", t.path.display()))
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
/// with, and resumes it if it was stopped (its new token just verified). Returns who it was
/// before, if the database knew; when that was another X user, its follows are no longer
/// looked for (they are not in the new user's list).
async fn keep_identity(
    db: &crate::store::Db,
    name: &str,
    x_id: &str,
    username: &str,
    token: &str,
) -> anyhow::Result<Option<(String, String)>> {
    let store = Store::open_at(db).await?;
    let ids = store.sync_accounts(&[name]).await?;
    let id = ids.get(name).copied().ok_or_else(|| anyhow!("{name} is not in the database"))?;
    let before = store.accounts().await?.into_iter().find(|a| a.id == id);
    let before = before.filter(|a| !a.x_user_id.is_empty()).map(|a| (a.x_user_id, a.x_username));
    let kept = async {
        store.set_identity(id, x_id, username, &crate::store::token_digest(token)).await?;
        store.clear_stop(id).await?;
        if before.as_ref().is_some_and(|b| b.0 != x_id) {
            store.forget_checks(id).await?;
        }
        Ok::<_, crate::store::StoreError>(())
    }
    .await;
    store.close().await;
    kept?;
    Ok(before)
}

/// Where the tokens go: `--secrets-file`, else the secrets file the settings read tokens from
/// (FOLLOWQ_SECRETS, else followq.toml's `secrets`), else None (followq.toml itself).
fn secrets_target(ctx: &Context, flag: Option<&Path>) -> anyhow::Result<Option<SecretsTarget>> {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let in_use = ctx.settings.secrets_file.clone();
    let Some(flag) = flag else {
        return Ok(in_use.map(|path| SecretsTarget { path, name_in_config: None }));
    };
    if absolute(flag) == absolute(&ctx.config_path)
        || std::fs::canonicalize(flag).ok().is_some_and(|f| std::fs::canonicalize(&ctx.config_path).ok() == Some(f))
    {
        return Err(UsageError(format!(
            "--secrets-file {}: that is the config itself; name another file (tokens go to followq.toml without it)",
            flag.display()
        ))
        .into());
    }
    if let Some(in_use) = in_use {
        if absolute(&in_use) != absolute(flag) {
            return Err(UsageError(format!(
                "tokens are kept in {} already (followq.toml's `secrets`, or FOLLOWQ_SECRETS): leave \
                 --secrets-file out, or change that first",
                in_use.display()
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

/// Where a page left waiting for `--pin` is kept: beside the config.
fn pending_path(config: &Path, name: &str) -> PathBuf {
    edit::beside(config, Path::new(&format!(".followq-authorize-{name}.json")))
}

fn keep_pending(path: &Path, base_url: &str, request: &RequestToken) -> anyhow::Result<()> {
    let pending = Pending {
        base_url: base_url.to_string(),
        token: request.token.clone(),
        secret: request.secret.expose().to_string(),
        issued_at: crate::time::now_ms(),
    };
    edit::write_private(path, &serde_json::to_string(&pending)?)?;
    Ok(())
}

/// The page left waiting, if it is for this API and recent enough; used once (the file goes).
fn take_pending(path: &Path, base_url: &str) -> Option<RequestToken> {
    let text = std::fs::read_to_string(path).ok()?;
    let _ = std::fs::remove_file(path);
    let p: Pending = serde_json::from_str(&text).ok()?;
    let fresh = crate::time::now_ms() - p.issued_at < PENDING_FOR_MS;
    (fresh && p.base_url == base_url).then(|| RequestToken { token: p.token, secret: Secret::new(p.secret) })
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
