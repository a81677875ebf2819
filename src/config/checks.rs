//! What the configuration refuses (a config error, exit status 2) and what it warns about.

use std::collections::HashMap;
use std::time::Duration;

use super::{ConfigError, Limits, Settings, Window, env_name, invalid};

/// X's published follow limits: 400 per account and 1000 per app in 24 hours.
const X_PER_USER: u32 = 400;
const X_PER_APP: u32 = 1000;
const X_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Every environment variable followq reads, but the per-account token ones.
const ENV_KEYS: &[&str] = &[
    "FOLLOWQ_DB",
    "FOLLOWQ_CONFIG",
    "FOLLOWQ_INBOX",
    "FOLLOWQ_API_BASE_URL",
    "FOLLOWQ_BASE_URL",
    "FOLLOWQ_API_TIMEOUT",
    "FOLLOWQ_API_VERSION",
    "FOLLOWQ_APP_CONSUMER_KEY",
    "FOLLOWQ_CONSUMER_KEY",
    "FOLLOWQ_APP_CONSUMER_SECRET",
    "FOLLOWQ_CONSUMER_SECRET",
    "FOLLOWQ_LIMITS_PROFILE",
    "FOLLOWQ_LIMITS_USER",
    "FOLLOWQ_LIMITS_APP",
    "FOLLOWQ_LIMITS_PER_USER",
    "FOLLOWQ_LIMITS_PER_APP",
    "FOLLOWQ_LIMITS_WINDOW",
    "FOLLOWQ_LIMITS_PACE",
    "FOLLOWQ_LIMITS_MARGIN",
    "FOLLOWQ_RETRY_MAX_ATTEMPTS",
    "FOLLOWQ_RETRY_BASE",
    "FOLLOWQ_RETRY_MAX",
    "FOLLOWQ_RESOLVE_PER_USER",
    "FOLLOWQ_RESOLVE_PER_APP",
    "FOLLOWQ_RUN_CONCURRENCY",
    "FOLLOWQ_VERIFY_CONFIRM",
    "FOLLOWQ_VERIFY_SETTLE",
    "FOLLOWQ_VERIFY_RETRY_AFTER",
    "FOLLOWQ_VERIFY_PER_USER",
    "FOLLOWQ_VERIFY_PER_APP",
    "FOLLOWQ_SECRETS",
    "FOLLOWQ_PIN",
];

/// What is allowed but probably a mistake: limits above X's published ones (they hold only for
/// Enterprise plans with custom limits), and environment variables that look like followq's
/// but name no setting (a typo is otherwise silently ignored).
pub(super) fn warnings(s: &Settings, env: &HashMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    // The most a scope's windows let through in some 24 hours: each window lets `limit` through
    // in as many windows as start in 24 hours (the strictest reading, as the ledger's), and the
    // scope is held to the tightest of them.
    let per_day = |windows: &[Window]| {
        windows
            .iter()
            .map(|w| {
                let len = w.length.as_secs_f64().max(1.0);
                w.limit as f64 * (X_WINDOW.as_secs_f64() / len).ceil().max(1.0)
            })
            .fold(f64::INFINITY, f64::min)
    };
    if per_day(&s.limits.user) > X_PER_USER as f64 + 0.5 {
        out.push(format!(
            "limits: {} per account lets more through than X's published {X_PER_USER} per 24 h (only custom Enterprise limits allow it; X will refuse the rest)",
            Limits::describe(&s.limits.user)
        ));
    }
    if per_day(&s.limits.app) > X_PER_APP as f64 + 0.5 {
        out.push(format!(
            "limits: {} for the app lets more through than X's published {X_PER_APP} per 24 h (only custom Enterprise limits allow it)",
            Limits::describe(&s.limits.app)
        ));
    }
    let mut known: Vec<String> = ENV_KEYS.iter().map(|k| k.to_string()).collect();
    for a in &s.accounts {
        let up = env_name(&a.name);
        known.push(format!("FOLLOWQ_{up}_TOKEN"));
        known.push(format!("FOLLOWQ_{up}_TOKEN_SECRET"));
    }
    let mut unknown: Vec<&String> = env
        .keys()
        .filter(|k| !known.contains(k) && !k.starts_with("FOLLOWQ_TEST_") && !k.starts_with("FOLLOWQ_BENCH_"))
        .collect();
    unknown.sort();
    for k in unknown {
        let near = known.iter().min_by_key(|c| strsim::levenshtein(k, c)).filter(|c| strsim::levenshtein(k, c) <= 3);
        out.push(match near {
            Some(c) => format!("{k} is not a followq setting and is ignored: did you mean {c}?"),
            None => format!("{k} is not a followq setting and is ignored"),
        });
    }
    out
}

pub(super) fn validate(s: &Settings) -> Result<(), ConfigError> {
    check_base_url(&s.api.base_url)?;
    if s.api.timeout.is_zero() {
        return Err(invalid("api.timeout", "must be more than 0"));
    }
    s.limits.check()?;
    if s.run.concurrency == 0 || s.run.concurrency > 256 {
        return Err(invalid("run.concurrency", "must be between 1 and 256"));
    }
    if s.verify.retry_after < s.verify.settle {
        return Err(invalid(
            "verify.retry_after",
            format!(
                "{} is shorter than verify.settle ({}): a follow is sent again only after it was looked for",
                humantime::format_duration(s.verify.retry_after),
                humantime::format_duration(s.verify.settle)
            ),
        ));
    }
    if s.retry.max_attempts == 0 {
        return Err(invalid("retry.max_attempts", "must be at least 1"));
    }
    let mut seen = HashMap::new();
    for a in &s.accounts {
        check_account_name(&a.name)?;
        if let Some(other) = seen.insert(env_name(&a.name), a.name.as_str()) {
            return Err(name_clash(other, &a.name));
        }
    }
    Ok(())
}

/// An account name followq accepts: 1-64 of A-Z a-z 0-9 _ -.
pub fn check_account_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(invalid(
            "accounts.name",
            format!("'{}' must be 1-64 of A-Z a-z 0-9 _ -", crate::text::printable(name)),
        ));
    }
    Ok(())
}

/// Whether `name` can join `existing` (a name already there is replaced, not a clash).
/// Names that differ only in case or in `-` against `_` would read the same
/// FOLLOWQ_<NAME>_TOKEN: one account's requests could go out as another X account.
pub fn check_new_account<'a>(existing: impl IntoIterator<Item = &'a str>, name: &str) -> Result<(), ConfigError> {
    check_account_name(name)?;
    // Not `-alice` or `--`: a name the command line would read as a flag.
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid("accounts.name", format!("'{name}' must begin with a letter or a digit")));
    }
    match existing.into_iter().find(|other| *other != name && env_name(other) == env_name(name)) {
        Some(other) => Err(name_clash(other, name)),
        None => Ok(()),
    }
}

fn name_clash(other: &str, name: &str) -> ConfigError {
    let message = if other == name {
        format!("'{name}' is configured twice")
    } else {
        format!(
            "'{other}' and '{name}' share the environment names FOLLOWQ_{}_TOKEN/_TOKEN_SECRET: rename one",
            env_name(name)
        )
    };
    invalid("accounts.name", message)
}

/// The app's credentials must be present for anything signed (`accounts add` needs no account).
pub fn require_app(s: &Settings) -> Result<(), ConfigError> {
    if s.app.consumer_key.is_empty() || s.app.consumer_secret.is_empty() {
        return Err(invalid(
            "app",
            "consumer_key and consumer_secret are required (or FOLLOWQ_CONSUMER_KEY / FOLLOWQ_CONSUMER_SECRET)",
        ));
    }
    Ok(())
}

/// The API's address: https anywhere; plain http (signed requests in clear text) only to a
/// loopback address — `localhost` or a loopback IP, read from the parsed URL, never from a
/// prefix of its text — and never with user info, which would also go out in clear.
fn check_base_url(text: &str) -> Result<(), ConfigError> {
    let url = match reqwest::Url::parse(text) {
        Ok(u) => u,
        // Not echoed: what is not a URL may be anything, a secret pasted in the wrong place.
        Err(e) => return Err(invalid("api.base_url", format!("not a URL ({e})"))),
    };
    // Shown without its user name and password, which must not reach a terminal or a log.
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let bad = |why: &str| Err(invalid("api.base_url", format!("'{shown}': {why}")));
    if !url.username().is_empty() || url.password().is_some() {
        return bad("must not carry a user name or password");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("must not have a query or fragment");
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => bad("plain http is allowed only to localhost or a loopback IP (the sandbox)"),
        _ => bad("must start with http:// or https://"),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Credentials must be present before anything is sent; import and status do not need them.
pub fn require_credentials(s: &Settings) -> Result<(), ConfigError> {
    require_app(s)?;
    if s.accounts.is_empty() {
        return Err(invalid("accounts", "no [[accounts]] configured (`followq accounts add NAME` adds one)"));
    }
    for a in &s.accounts {
        if a.token.is_empty() || a.token_secret.is_empty() {
            let up = env_name(&a.name);
            let missing = match &s.secrets_file {
                Some(p) if !p.exists() => format!("; the secrets file {} does not exist", p.display()),
                _ => String::new(),
            };
            return Err(invalid(
                &format!("accounts.{}", a.name),
                format!(
                    "token and token_secret are required (or FOLLOWQ_{up}_TOKEN / FOLLOWQ_{up}_TOKEN_SECRET; `followq accounts add {}` gets them){missing}",
                    a.name
                ),
            ));
        }
    }
    Ok(())
}
