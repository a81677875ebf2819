//! Settings: built-in defaults, then `followq.toml`, then the environment, then flags — validated
//! once, here, and passed down by reference. This is the only module that reads the environment.
//!
//! [`checks`] holds what is refused and what is warned about; [`toml_error`] the errors of a
//! file that does not parse, which never show a value; [`template`] what `followq init` writes.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod checks;
pub mod edit;
mod limits;
mod template;
mod toml_error;

pub use limits::{Limits, Margin, Pace, Profile, Window};

pub use checks::{check_new_account, require_app, require_credentials};
use checks::{validate, warnings};
use toml_error::parse_error;

/// A configuration problem; the CLI maps it to exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

pub(crate) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), message: message.into() }
}

/// A secret string: never printed by `Debug` or `Display`, so it cannot leak through logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// True when no value was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"<redacted>\"" })
    }
}

/// Which X API followq speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `POST /2/users/:id/following`: what X sells follows on (Enterprise plans) since 2026-04-20.
    V2,
    /// `POST 1.1/friendships/create.json`: legacy, for apps that still have it.
    V1_1,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V2 => "2",
            ApiVersion::V1_1 => "1.1",
        }
    }

    /// The limits profile that holds X's published limits for this version.
    pub fn profile(self) -> Profile {
        match self {
            ApiVersion::V2 => Profile::V2,
            ApiVersion::V1_1 => Profile::V1_1,
        }
    }
}

/// The `[api]` section.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `https://api.twitter.com`, or the sandbox's `http://127.0.0.1:PORT`.
    pub base_url: String,
    pub version: ApiVersion,
    /// Per-request timeout; a request still out after it is a transient failure.
    pub timeout: Duration,
}

/// The `[app]` section: the consumer credentials.
#[derive(Debug, Clone, Default)]
pub struct AppSettings {
    pub consumer_key: String,
    pub consumer_secret: Secret,
}

/// The `[retry]` section: transient failures (5xx, timeouts, dropped connections).
#[derive(Debug, Clone)]
pub struct RetrySettings {
    /// Transient failures a job may have before it ends `failed`.
    pub max_attempts: u32,
    /// First backoff; doubled each time, with jitter.
    pub base: Duration,
    /// Backoff never exceeds this.
    pub max: Duration,
}

/// The `[resolve]` section: `GET /2/users/by`'s own budget (X's published 900 per 15 minutes per
/// account, 300 per app), paced with governor: a read's budget need not survive a restart.
#[derive(Debug, Clone)]
pub struct ResolveSettings {
    pub per_user: Window,
    pub per_app: Window,
}

/// The `[verify]` section: follows confirmed against what X shows (friendships/lookup in v1.1,
/// the account's following list in v2), read within X's published read limits, paced with
/// governor like `[resolve]`.
#[derive(Debug, Clone)]
pub struct VerifySettings {
    /// `run` confirms its follows as it goes (and ends only when each is confirmed or settled).
    pub confirm: bool,
    /// A follow is looked for once it is at least this old.
    pub settle: Duration,
    /// A follow still not visible this long after X answered it is sent again, once.
    pub retry_after: Duration,
    /// The read endpoint's windows, per account and for the app.
    pub per_user: Window,
    pub per_app: Window,
}

/// The `[run]` section.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Requests in flight at once, over all accounts.
    pub concurrency: usize,
}

/// One `[[accounts]]` entry.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub token: String,
    pub token_secret: Secret,
}

/// Every setting, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api: ApiSettings,
    pub app: AppSettings,
    pub limits: Limits,
    pub retry: RetrySettings,
    pub resolve: ResolveSettings,
    pub verify: VerifySettings,
    pub run: RunSettings,
    pub accounts: Vec<Account>,
    /// The spool folder `import` (no file) and `run --watch` read.
    pub inbox: PathBuf,
    /// The file the settings came from, if it existed.
    pub source: Option<PathBuf>,
    /// The secrets file account tokens were also read from (`secrets`, or FOLLOWQ_SECRETS).
    pub secrets_file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            api: ApiSettings {
                base_url: "https://api.twitter.com".into(),
                version: ApiVersion::V2,
                timeout: Duration::from_secs(30),
            },
            app: AppSettings::default(),
            limits: Limits::of_profile(Profile::V2),
            retry: RetrySettings { max_attempts: 5, base: Duration::from_secs(2), max: Duration::from_secs(300) },
            resolve: ResolveSettings { per_user: Window::new(900, 900), per_app: Window::new(300, 900) },
            verify: VerifySettings {
                confirm: true,
                settle: Duration::from_secs(120),
                retry_after: Duration::from_secs(600),
                per_user: Window::new(15, 900),
                per_app: Window::new(15, 900),
            },
            run: RunSettings { concurrency: 1 },
            accounts: Vec::new(),
            inbox: PathBuf::from("jobs/inbox"),
            source: None,
            secrets_file: None,
        }
    }
}

impl Settings {
    /// The account with this name, if configured.
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// Every secret value configured: what must never appear in output.
    pub fn secrets(&self) -> Vec<&str> {
        let mut out = vec![self.app.consumer_secret.expose()];
        out.extend(self.accounts.iter().map(|a| a.token_secret.expose()));
        out.retain(|s| !s.is_empty());
        out
    }
}

// ---- the file, as written: every field optional so the layers can merge ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    app: RawApp,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    resolve: RawResolve,
    #[serde(default)]
    verify: RawVerify,
    #[serde(default)]
    run: RawRun,
    #[serde(default)]
    accounts: Vec<RawAccount>,
    inbox: Option<PathBuf>,
    /// A file of account tokens (`[accounts.NAME]`), relative to this file's folder.
    secrets: Option<PathBuf>,
}

/// The secrets file: tokens by account name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    #[serde(default)]
    accounts: std::collections::BTreeMap<String, RawTokens>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    token: Option<String>,
    token_secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    base_url: Option<String>,
    version: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    consumer_key: Option<String>,
    consumer_secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    profile: Option<String>,
    user: Option<Vec<String>>,
    app: Option<Vec<String>>,
    per_user: Option<u32>,
    per_app: Option<u32>,
    window: Option<String>,
    pace: Option<String>,
    margin: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<u32>,
    base: Option<String>,
    max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResolve {
    per_user: Option<String>,
    per_app: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    confirm: Option<bool>,
    settle: Option<String>,
    retry_after: Option<String>,
    per_user: Option<String>,
    per_app: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    concurrency: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: String,
    token: Option<String>,
    token_secret: Option<String>,
}

/// Where the layers come from. `env` is a snapshot so tests can pass their own.
pub struct Sources<'a> {
    /// The config file path, and whether it was named explicitly (then it must exist).
    pub path: &'a Path,
    pub explicit: bool,
    pub env: HashMap<String, String>,
}

/// The process environment, for [`Sources::env`].
pub fn process_env() -> HashMap<String, String> {
    std::env::vars().filter(|(k, _)| k.starts_with("FOLLOWQ_")).collect()
}

/// The database path and config path from flags or the environment (`FOLLOWQ_DB`, `FOLLOWQ_CONFIG`).
pub fn resolve_path(flag: Option<&Path>, env_key: &str, default: &str) -> (PathBuf, bool) {
    if let Some(p) = flag {
        return (p.to_path_buf(), true);
    }
    match std::env::var_os(env_key) {
        Some(v) if !v.is_empty() => (PathBuf::from(v), true),
        _ => (PathBuf::from(default), false),
    }
}

/// Loads and validates the settings: defaults → file → environment.
pub fn load(src: &Sources<'_>) -> Result<Settings, ConfigError> {
    let raw = match std::fs::read_to_string(src.path) {
        Ok(text) => {
            warn_if_world_readable(src.path);
            toml::from_str::<RawFile>(&text).map_err(|e| parse_error(src.path, &text, &e))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !src.explicit => RawFile::default(),
        Err(e) => return Err(ConfigError::Read { path: src.path.to_path_buf(), source: e }),
    };
    let source = src.path.exists().then(|| src.path.to_path_buf());
    let secrets_file = env_or(&src.env, &["FOLLOWQ_SECRETS"])
        .map(PathBuf::from)
        .or_else(|| raw.secrets.as_ref().map(|p| edit::beside(src.path, p)));
    let secrets = match &secrets_file {
        Some(path) => read_secrets(path)?,
        None => RawSecrets::default(),
    };
    if let Some(path) = &secrets_file {
        for name in secrets.accounts.keys().filter(|n| !raw.accounts.iter().any(|a| &a.name == *n)) {
            tracing::warn!(
                "{}: tokens for '{name}', who has no [[accounts]] entry in {}: ignored",
                path.display(),
                src.path.display()
            );
        }
    }
    let mut s = merge(raw, &src.env, secrets)?;
    s.source = source;
    s.secrets_file = secrets_file;
    validate(&s)?;
    for w in warnings(&s, &src.env) {
        tracing::warn!("{w}");
    }
    Ok(s)
}

/// Reads a secrets file (it must exist: the config names it).
fn read_secrets(path: &Path) -> Result<RawSecrets, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        // A fresh checkout has the config and not its secrets (kept out of version control):
        // said, and no token comes from it (`accounts add` writes it).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), "the secrets file the config names (`secrets`) does not exist: no tokens from it");
            return Ok(RawSecrets::default());
        }
        Err(e) => return Err(ConfigError::Read { path: path.to_path_buf(), source: e }),
    };
    warn_if_world_readable(path);
    toml::from_str::<RawSecrets>(&text).map_err(|e| parse_error(path, &text, &e))
}

fn env_or<'a>(env: &'a HashMap<String, String>, keys: &[&str]) -> Option<&'a String> {
    keys.iter().find_map(|k| env.get(*k).filter(|v| !v.is_empty()))
}

fn merge(raw: RawFile, env: &HashMap<String, String>, mut secrets: RawSecrets) -> Result<Settings, ConfigError> {
    let mut s = Settings::default();
    let e = |keys: &[&str]| env_or(env, keys).cloned();

    if let Some(v) = e(&["FOLLOWQ_API_BASE_URL", "FOLLOWQ_BASE_URL"]).or(raw.api.base_url) {
        s.api.base_url = v.trim_end_matches('/').to_string();
    }
    if let Some(v) = e(&["FOLLOWQ_API_VERSION"]).or(raw.api.version) {
        s.api.version = match v.trim() {
            "2" => ApiVersion::V2,
            "1.1" => ApiVersion::V1_1,
            other => return Err(invalid("api.version", format!("'{other}' is not \"2\" or \"1.1\""))),
        };
    }
    if let Some(v) = e(&["FOLLOWQ_API_TIMEOUT"]).or(raw.api.timeout) {
        s.api.timeout = duration("api.timeout", &v)?;
    }
    if let Some(v) = e(&["FOLLOWQ_APP_CONSUMER_KEY", "FOLLOWQ_CONSUMER_KEY"]).or(raw.app.consumer_key) {
        s.app.consumer_key = v;
    }
    if let Some(v) = e(&["FOLLOWQ_APP_CONSUMER_SECRET", "FOLLOWQ_CONSUMER_SECRET"]).or(raw.app.consumer_secret) {
        s.app.consumer_secret = Secret::new(v);
    }
    let per_user = match e(&["FOLLOWQ_LIMITS_PER_USER"]) {
        Some(v) => Some(number("limits.per_user", &v)?),
        None => raw.limits.per_user,
    };
    let per_app = match e(&["FOLLOWQ_LIMITS_PER_APP"]) {
        Some(v) => Some(number("limits.per_app", &v)?),
        None => raw.limits.per_app,
    };
    let (profile, user, app) = limits::windows(
        limits::RawWindows {
            profile: e(&["FOLLOWQ_LIMITS_PROFILE"]).or(raw.limits.profile),
            user: e(&["FOLLOWQ_LIMITS_USER"]).map(|v| limits::env_list(&v)).or(raw.limits.user),
            app: e(&["FOLLOWQ_LIMITS_APP"]).map(|v| limits::env_list(&v)).or(raw.limits.app),
            per_user,
            per_app,
            window: e(&["FOLLOWQ_LIMITS_WINDOW"]).or(raw.limits.window),
        },
        s.api.version.profile(),
    )?;
    (s.limits.profile, s.limits.user, s.limits.app) = (profile, user, app);
    if let Some(v) = e(&["FOLLOWQ_LIMITS_PACE"]).or(raw.limits.pace) {
        s.limits.pace = match v.as_str() {
            "spread" => Pace::Spread,
            "asap" => Pace::Asap,
            other => return Err(invalid("limits.pace", format!("'{other}' is not 'spread' or 'asap'"))),
        };
    }
    if let Some(v) = e(&["FOLLOWQ_LIMITS_MARGIN"]).or(raw.limits.margin) {
        s.limits.margin = Margin::parse(&v)?;
    }

    if let Some(v) = e(&["FOLLOWQ_RETRY_MAX_ATTEMPTS"]) {
        s.retry.max_attempts = number("retry.max_attempts", &v)?;
    } else if let Some(v) = raw.retry.max_attempts {
        s.retry.max_attempts = v;
    }
    if let Some(v) = e(&["FOLLOWQ_RETRY_BASE"]).or(raw.retry.base) {
        s.retry.base = duration("retry.base", &v)?;
    }
    if let Some(v) = e(&["FOLLOWQ_RETRY_MAX"]).or(raw.retry.max) {
        s.retry.max = duration("retry.max", &v)?;
    }
    if let Some(v) = e(&["FOLLOWQ_RESOLVE_PER_USER"]).or(raw.resolve.per_user) {
        s.resolve.per_user = Window::parse("resolve.per_user", &v)?;
    }
    if let Some(v) = e(&["FOLLOWQ_RESOLVE_PER_APP"]).or(raw.resolve.per_app) {
        s.resolve.per_app = Window::parse("resolve.per_app", &v)?;
    }
    if let Some(v) = e(&["FOLLOWQ_VERIFY_CONFIRM"]) {
        s.verify.confirm = match v.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            other => return Err(invalid("verify.confirm", format!("'{other}' is not true or false"))),
        };
    } else if let Some(v) = raw.verify.confirm {
        s.verify.confirm = v;
    }
    if let Some(v) = e(&["FOLLOWQ_VERIFY_SETTLE"]).or(raw.verify.settle) {
        s.verify.settle = duration("verify.settle", &v)?;
    }
    if let Some(v) = e(&["FOLLOWQ_VERIFY_RETRY_AFTER"]).or(raw.verify.retry_after) {
        s.verify.retry_after = duration("verify.retry_after", &v)?;
    }
    if let Some(v) = e(&["FOLLOWQ_VERIFY_PER_USER"]).or(raw.verify.per_user) {
        s.verify.per_user = Window::parse("verify.per_user", &v)?;
    }
    if let Some(v) = e(&["FOLLOWQ_VERIFY_PER_APP"]).or(raw.verify.per_app) {
        s.verify.per_app = Window::parse("verify.per_app", &v)?;
    }
    if let Some(v) = e(&["FOLLOWQ_RUN_CONCURRENCY"]) {
        s.run.concurrency = number("run.concurrency", &v)?;
    } else if let Some(v) = raw.run.concurrency {
        s.run.concurrency = v;
    }
    if let Some(v) = e(&["FOLLOWQ_INBOX"]).map(PathBuf::from).or(raw.inbox) {
        s.inbox = v;
    }

    for a in raw.accounts {
        let upper = env_name(&a.name);
        let kept = secrets.accounts.remove(&a.name).unwrap_or_default();
        let token = e(&[&format!("FOLLOWQ_{upper}_TOKEN")]).or(a.token).or(kept.token).unwrap_or_default();
        let secret =
            e(&[&format!("FOLLOWQ_{upper}_TOKEN_SECRET")]).or(a.token_secret).or(kept.token_secret).unwrap_or_default();
        s.accounts.push(Account { name: a.name, token, token_secret: Secret::new(secret) });
    }
    Ok(s)
}

/// `alice-2` → `ALICE_2`, for `FOLLOWQ_<NAME>_TOKEN`.
pub fn env_name(account: &str) -> String {
    account.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.trim().parse().map_err(|_| invalid(key, format!("'{v}' is not a whole number")))
}

/// The longest window (and margin) followq accepts: a year and a day. Anything longer is surely
/// a typo, and millisecond arithmetic on it could overflow.
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 86_400);

/// The longest duration any setting or flag accepts (ten years): every sum followq makes of
/// durations and times in milliseconds stays far inside `i64`.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 366 * 86_400);

/// Parses "30s", "24h", "1h 30m", "250ms" — at most [`MAX_DURATION`].
pub fn duration(key: &str, v: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(v.trim()).map_err(|e| invalid(key, format!("'{}': {e}", v.trim())))?;
    if d > MAX_DURATION {
        return Err(invalid(key, format!("'{}' is longer than the 10 years followq accepts", v.trim())));
    }
    Ok(d)
}

#[cfg(unix)]
fn warn_if_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "config file is readable by other users; it holds secrets: chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_world_readable(_: &Path) {}

pub use template::TEMPLATE;

#[cfg(test)]
mod tests;
