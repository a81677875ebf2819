//! Settings: built-in defaults, then `followq.toml`, then the environment, then flags — validated
//! once, here, and passed down by reference. This is the only module that reads the environment.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A configuration problem; the CLI maps it to exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
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

/// How requests are spread over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Each account's (and the app's) requests evenly over the window, with jitter.
    Spread,
    /// As soon as both windows allow.
    Asap,
}

/// The `[api]` section.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `https://api.twitter.com`, or the sandbox's `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Per-request timeout; a request still out after it is a transient failure.
    pub timeout: Duration,
}

/// The `[app]` section: the consumer credentials.
#[derive(Debug, Clone, Default)]
pub struct AppSettings {
    pub consumer_key: String,
    pub consumer_secret: Secret,
}

/// The `[limits]` section.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests per account in any window.
    pub per_user: u32,
    /// Requests for the whole app in any window.
    pub per_app: u32,
    /// The window's length as X states it.
    pub window: Duration,
    pub pace: Pace,
    /// Added to the window for latency and clock skew.
    pub margin: Duration,
}

impl Limits {
    /// The window followq actually enforces: X's window plus the safety margin, in ms.
    pub fn effective_window_ms(&self) -> i64 {
        (self.window + self.margin).as_millis() as i64
    }
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
    pub run: RunSettings,
    pub accounts: Vec<Account>,
    /// The spool folder `import` (no file) and `run --watch` read.
    pub inbox: PathBuf,
    /// The file the settings came from, if it existed.
    pub source: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            api: ApiSettings { base_url: "https://api.twitter.com".into(), timeout: Duration::from_secs(30) },
            app: AppSettings::default(),
            limits: Limits {
                per_user: 400,
                per_app: 1000,
                window: Duration::from_secs(24 * 3600),
                pace: Pace::Spread,
                margin: Duration::from_secs(432), // 0.5 % of 24 h
            },
            retry: RetrySettings { max_attempts: 5, base: Duration::from_secs(2), max: Duration::from_secs(300) },
            run: RunSettings { concurrency: 1 },
            accounts: Vec::new(),
            inbox: PathBuf::from("jobs/inbox"),
            source: None,
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
    run: RawRun,
    #[serde(default)]
    accounts: Vec<RawAccount>,
    inbox: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    base_url: Option<String>,
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
            toml::from_str::<RawFile>(&text).map_err(|e| ConfigError::Parse {
                path: src.path.to_path_buf(),
                message: e.to_string().trim_end().replace('\n', " "),
            })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !src.explicit => RawFile::default(),
        Err(e) => return Err(ConfigError::Read { path: src.path.to_path_buf(), source: e }),
    };
    let source = src.path.exists().then(|| src.path.to_path_buf());
    let mut s = merge(raw, &src.env)?;
    s.source = source;
    validate(&s)?;
    Ok(s)
}

fn env_or<'a>(env: &'a HashMap<String, String>, keys: &[&str]) -> Option<&'a String> {
    keys.iter().find_map(|k| env.get(*k).filter(|v| !v.is_empty()))
}

fn merge(raw: RawFile, env: &HashMap<String, String>) -> Result<Settings, ConfigError> {
    let mut s = Settings::default();
    let e = |keys: &[&str]| env_or(env, keys).cloned();

    if let Some(v) = e(&["FOLLOWQ_API_BASE_URL", "FOLLOWQ_BASE_URL"]).or(raw.api.base_url) {
        s.api.base_url = v.trim_end_matches('/').to_string();
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
    if let Some(v) = e(&["FOLLOWQ_LIMITS_PER_USER"]) {
        s.limits.per_user = number("limits.per_user", &v)?;
    } else if let Some(v) = raw.limits.per_user {
        s.limits.per_user = v;
    }
    if let Some(v) = e(&["FOLLOWQ_LIMITS_PER_APP"]) {
        s.limits.per_app = number("limits.per_app", &v)?;
    } else if let Some(v) = raw.limits.per_app {
        s.limits.per_app = v;
    }
    if let Some(v) = e(&["FOLLOWQ_LIMITS_WINDOW"]).or(raw.limits.window) {
        s.limits.window = duration("limits.window", &v)?;
    }
    if let Some(v) = e(&["FOLLOWQ_LIMITS_PACE"]).or(raw.limits.pace) {
        s.limits.pace = match v.as_str() {
            "spread" => Pace::Spread,
            "asap" => Pace::Asap,
            other => return Err(invalid("limits.pace", format!("'{other}' is not 'spread' or 'asap'"))),
        };
    }
    let margin = e(&["FOLLOWQ_LIMITS_MARGIN"]).or(raw.limits.margin).unwrap_or_else(|| "0.5%".into());
    s.limits.margin = parse_margin(&margin, s.limits.window)?;

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
        let token = e(&[&format!("FOLLOWQ_{upper}_TOKEN")]).or(a.token).unwrap_or_default();
        let secret = e(&[&format!("FOLLOWQ_{upper}_TOKEN_SECRET")]).or(a.token_secret).unwrap_or_default();
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

/// Parses "30s", "24h", "1h 30m", "250ms".
pub fn duration(key: &str, v: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(v.trim()).map_err(|e| invalid(key, format!("'{v}': {e}")))
}

/// The margin is a share of the window ("0.5%") or a duration ("2m").
fn parse_margin(v: &str, window: Duration) -> Result<Duration, ConfigError> {
    if let Some(pct) = v.trim().strip_suffix('%') {
        let p: f64 = pct.trim().parse().map_err(|_| invalid("limits.margin", format!("'{v}' is not a percentage")))?;
        if !(0.0..=50.0).contains(&p) {
            return Err(invalid("limits.margin", format!("'{v}' must be between 0% and 50%")));
        }
        Ok(window.mul_f64(p / 100.0))
    } else {
        duration("limits.margin", v)
    }
}

fn validate(s: &Settings) -> Result<(), ConfigError> {
    if !(s.api.base_url.starts_with("http://") || s.api.base_url.starts_with("https://")) {
        return Err(invalid("api.base_url", format!("'{}' must start with http:// or https://", s.api.base_url)));
    }
    if s.api.base_url.starts_with("http://") && !is_loopback_url(&s.api.base_url) {
        return Err(invalid("api.base_url", "plain http is allowed only to a loopback address (the sandbox)"));
    }
    if s.api.timeout.is_zero() {
        return Err(invalid("api.timeout", "must be more than 0"));
    }
    if s.limits.per_user == 0 || s.limits.per_app == 0 {
        return Err(invalid("limits", "per_user and per_app must be at least 1"));
    }
    if s.limits.window < Duration::from_secs(1) {
        return Err(invalid("limits.window", "must be at least 1s"));
    }
    if s.run.concurrency == 0 || s.run.concurrency > 256 {
        return Err(invalid("run.concurrency", "must be between 1 and 256"));
    }
    if s.retry.max_attempts == 0 {
        return Err(invalid("retry.max_attempts", "must be at least 1"));
    }
    let mut seen = std::collections::HashSet::new();
    for a in &s.accounts {
        if a.name.is_empty()
            || a.name.len() > 64
            || !a.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid("accounts.name", format!("'{}' must be 1-64 of A-Z a-z 0-9 _ -", a.name)));
        }
        if !seen.insert(a.name.as_str()) {
            return Err(invalid("accounts.name", format!("'{}' is configured twice", a.name)));
        }
    }
    Ok(())
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url.trim_start_matches("http://");
    rest.starts_with("127.") || rest.starts_with("localhost") || rest.starts_with("[::1]")
}

/// Credentials must be present before anything is sent; import and status do not need them.
pub fn require_credentials(s: &Settings) -> Result<(), ConfigError> {
    if s.app.consumer_key.is_empty() || s.app.consumer_secret.is_empty() {
        return Err(invalid(
            "app",
            "consumer_key and consumer_secret are required (or FOLLOWQ_CONSUMER_KEY / FOLLOWQ_CONSUMER_SECRET)",
        ));
    }
    if s.accounts.is_empty() {
        return Err(invalid("accounts", "no [[accounts]] configured"));
    }
    for a in &s.accounts {
        if a.token.is_empty() || a.token_secret.is_empty() {
            let up = env_name(&a.name);
            return Err(invalid(
                &format!("accounts.{}", a.name),
                format!("token and token_secret are required (or FOLLOWQ_{up}_TOKEN / FOLLOWQ_{up}_TOKEN_SECRET)"),
            ));
        }
    }
    Ok(())
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

/// The commented template `followq init` writes.
pub const TEMPLATE: &str = r#"# followq configuration. Every key can also be set from the environment:
# FOLLOWQ_<SECTION>_<KEY>, e.g. FOLLOWQ_LIMITS_PER_USER=300, FOLLOWQ_API_BASE_URL=http://127.0.0.1:8080.
# This file holds secrets: keep it mode 0600 (followq warns otherwise).

[api]
base_url = "https://api.twitter.com"   # the sandbox: http://127.0.0.1:PORT
timeout = "30s"                        # a request still out after this is retried

[app]                                  # or FOLLOWQ_CONSUMER_KEY / FOLLOWQ_CONSUMER_SECRET
consumer_key = ""
consumer_secret = ""

[limits]
# X: 400 follows per user and 1000 per app in a 24-hour window. followq never exceeds these in ANY
# 24-hour interval, counting every request it sent, across restarts.
per_user = 400
per_app = 1000
window = "24h"                         # any duration: "15m", "24s"
pace = "spread"                        # "spread": evenly over the window; "asap": as soon as allowed
margin = "0.5%"                        # added to the window: a share of it, or a duration ("2m")

[retry]                                # transient failures: 5xx, timeouts, dropped connections
max_attempts = 5                       # then the job ends 'failed'; `followq retry` re-queues it
base = "2s"                            # first backoff, doubled each time, with jitter
max = "5m"

[run]
concurrency = 1                        # requests in flight at once (a crash can leave this many unanswered)

# One block per X account to follow from. Tokens may come from FOLLOWQ_<NAME>_TOKEN and
# FOLLOWQ_<NAME>_TOKEN_SECRET instead (NAME in upper case, '-' as '_').
# [[accounts]]
# name = "alice"
# token = ""
# token_secret = ""
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("followq.toml");
        std::fs::write(&path, text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        load(&Sources { path: &path, explicit: true, env })
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.toml");
        let s = load(&Sources { path: &path, explicit: false, env: HashMap::new() }).unwrap();
        assert_eq!(s.limits.per_user, 400);
        assert_eq!(s.limits.per_app, 1000);
        assert_eq!(s.limits.margin, Duration::from_secs(432));
        assert!(s.source.is_none());
    }

    #[test]
    fn an_explicit_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.toml");
        let err = load(&Sources { path: &path, explicit: true, env: HashMap::new() }).unwrap_err();
        assert!(err.to_string().contains("none.toml"), "{err}");
    }

    #[test]
    fn environment_wins_over_file_and_file_over_defaults() {
        let s = load_str(
            "[limits]\nper_user = 300\nper_app = 900\nwindow = \"15m\"\n[[accounts]]\nname = \"alice-2\"\ntoken = \"t-file\"\n",
            &[("FOLLOWQ_LIMITS_PER_APP", "800"), ("FOLLOWQ_ALICE_2_TOKEN_SECRET", "s-env")],
        )
        .unwrap();
        assert_eq!(s.limits.per_user, 300, "file over default");
        assert_eq!(s.limits.per_app, 800, "env over file");
        assert_eq!(s.limits.window, Duration::from_secs(900));
        assert_eq!(s.limits.margin, Duration::from_millis(4500), "0.5% of 15m");
        assert_eq!(s.accounts[0].token, "t-file");
        assert_eq!(s.accounts[0].token_secret.expose(), "s-env");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = load_str("[limits]\npace = \"fast\"\n", &[]).unwrap_err();
        assert!(err.to_string().starts_with("limits.pace"), "{err}");
        let err = load_str("[limits]\nwindow = \"soon\"\n", &[]).unwrap_err();
        assert!(err.to_string().starts_with("limits.window"), "{err}");
        let err = load_str("[limits]\nbogus = 1\n", &[]).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = load_str("[api]\nbase_url = \"http://example.com\"\n", &[]).unwrap_err();
        assert!(err.to_string().starts_with("api.base_url"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = load_str("[app]\nconsumer_key = \"ck\"\nconsumer_secret = \"very-secret\"\n", &[]).unwrap();
        assert!(!format!("{s:?}").contains("very-secret"));
        assert_eq!(s.secrets(), vec!["very-secret"]);
    }

    #[test]
    fn the_template_parses() {
        let s = load_str(TEMPLATE, &[]).unwrap();
        assert_eq!(s.limits.pace, Pace::Spread);
        assert_eq!(s.retry.max_attempts, 5);
    }
}
