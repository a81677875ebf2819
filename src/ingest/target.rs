//! One input value → a validated target: `@name`, `name`, a profile URL, an intent link, an id.

use crate::model::TargetKind;

/// What the column says the value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// A `screen_name` / `username` / `handle` column: digits are still a screen name.
    ScreenName,
    /// A `user_id` / `id` column: must be a decimal u64.
    UserId,
    /// A headerless file: URLs say what they are, `@x` and names are screen names, digits are ids.
    Any,
}

/// The longest value worth looking at; anything longer is rejected without copying it.
const MAX_VALUE: usize = 512;

/// True for 1–15 of `[A-Za-z0-9_]`.
pub fn is_screen_name(s: &str) -> bool {
    (1..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses a decimal user id (u64, no sign, no spaces).
pub fn parse_user_id(s: &str) -> Result<u64, String> {
    if s.starts_with('-') {
        return Err(format!("user id '{s}' is negative"));
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("user id '{}' is not a decimal number", shorten(s)));
    }
    let n: u64 = s.parse().map_err(|_| format!("user id '{}' is larger than 18446744073709551615", shorten(s)))?;
    if n == 0 {
        return Err("user id 0 does not exist".into());
    }
    Ok(n)
}

/// A value cut to a readable length for error messages.
pub fn shorten(s: &str) -> String {
    if s.chars().count() <= 40 { s.to_string() } else { format!("{}…", s.chars().take(40).collect::<String>()) }
}

/// A cell as written before `export` or a rejects file guarded it against spreadsheet formulas
/// (a `'` before a leading `=`, `+`, `-` or `@`), so that those files import back as they are.
pub fn unneutralise(v: &str) -> &str {
    match v.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@']) => rest,
        _ => v,
    }
}

/// Normalises one value. The screen name keeps its case (the dedupe key lowercases it).
pub fn parse(raw: &str, hint: Hint) -> Result<(TargetKind, String), String> {
    if raw.len() > MAX_VALUE {
        return Err(format!("value is {} bytes long; a target is at most {MAX_VALUE}", raw.len()));
    }
    if raw.contains('\0') {
        return Err("value contains a NUL byte".into());
    }
    let v = unneutralise(raw.trim());
    if v.is_empty() {
        return Err("empty target".into());
    }
    if let Some(parsed) = parse_url(v)? {
        return match (hint, parsed.0) {
            (Hint::UserId, TargetKind::ScreenName) => {
                Err(format!("'{}' names a screen name, not a user id", shorten(v)))
            }
            _ => Ok(parsed),
        };
    }
    match hint {
        Hint::UserId => Ok((TargetKind::UserId, parse_user_id(v)?.to_string())),
        Hint::ScreenName => screen_name(v.strip_prefix('@').unwrap_or(v)),
        Hint::Any => {
            if let Some(name) = v.strip_prefix('@') {
                screen_name(name)
            } else if v.bytes().all(|b| b.is_ascii_digit()) {
                Ok((TargetKind::UserId, parse_user_id(v)?.to_string()))
            } else {
                screen_name(v)
            }
        }
    }
}

fn screen_name(s: &str) -> Result<(TargetKind, String), String> {
    if s.is_empty() {
        Err("empty screen name".into())
    } else if s.len() > 15 {
        Err(format!("screen name '{}' is longer than 15 characters", shorten(s)))
    } else if !is_screen_name(s) {
        Err(format!("screen name '{}' may hold only A-Z a-z 0-9 _", shorten(s)))
    } else {
        Ok((TargetKind::ScreenName, s.to_string()))
    }
}

/// True for paths on x.com that are not profiles (X reserves these names).
pub fn is_reserved(name: &str) -> bool {
    RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r))
}

/// Paths on x.com that are not profiles.
const RESERVED: &[&str] = &[
    "home",
    "i",
    "intent",
    "search",
    "explore",
    "settings",
    "messages",
    "notifications",
    "hashtag",
    "share",
    "login",
    "signup",
    "tos",
    "privacy",
];

/// `https://x.com/name`, `twitter.com/name/status/1`, `x.com/intent/user?user_id=N` or
/// `?screen_name=x`, `x.com/i/user/N`. `Ok(None)` when the value is not a URL of X at all.
fn parse_url(v: &str) -> Result<Option<(TargetKind, String)>, String> {
    let lower = v.to_ascii_lowercase();
    let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")).unwrap_or(&lower);
    let rest = rest.strip_prefix("www.").or_else(|| rest.strip_prefix("mobile.")).unwrap_or(rest);
    let after_host = ["x.com", "twitter.com"]
        .iter()
        .find_map(|h| rest.strip_prefix(h).filter(|r| r.is_empty() || r.starts_with('/') || r.starts_with('?')));
    let Some(after_host) = after_host else {
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Err(format!("'{}' is not an x.com or twitter.com profile URL", shorten(v)));
        }
        return Ok(None);
    };
    // Work on the original text so a screen name keeps its case.
    let original = &v[v.len() - after_host.len()..];
    let (path, query) = original.split_once('?').unwrap_or((original, ""));
    let path = path.split('#').next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let query_value = |key: &str| {
        query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
    };
    match segments.as_slice() {
        [intent, user, ..]
            if intent.eq_ignore_ascii_case("intent")
                && (user.eq_ignore_ascii_case("user") || user.eq_ignore_ascii_case("follow")) =>
        {
            if let Some(id) = query_value("user_id") {
                Ok(Some((TargetKind::UserId, parse_user_id(id)?.to_string())))
            } else if let Some(name) = query_value("screen_name") {
                screen_name(name).map(Some)
            } else {
                Err(format!("'{}' has neither user_id nor screen_name", shorten(v)))
            }
        }
        [i, user, id, ..] if i.eq_ignore_ascii_case("i") && user.eq_ignore_ascii_case("user") => {
            Ok(Some((TargetKind::UserId, parse_user_id(id)?.to_string())))
        }
        [first, ..] if is_reserved(first) => Err(format!("'{}' is not a profile URL", shorten(v))),
        [name, ..] => screen_name(name.strip_prefix('@').unwrap_or(name)).map(Some),
        [] => Err(format!("'{}' names no profile", shorten(v))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sn(s: &str) -> Result<(TargetKind, String), String> {
        Ok((TargetKind::ScreenName, s.to_string()))
    }
    fn id(s: &str) -> Result<(TargetKind, String), String> {
        Ok((TargetKind::UserId, s.to_string()))
    }

    #[test]
    fn every_form_of_a_screen_name() {
        assert_eq!(parse("@Bob", Hint::Any), sn("Bob"));
        assert_eq!(parse(" bob ", Hint::Any), sn("bob"));
        assert_eq!(parse("https://x.com/BOB", Hint::Any), sn("BOB"));
        assert_eq!(parse("http://www.twitter.com/bob/", Hint::Any), sn("bob"));
        assert_eq!(parse("twitter.com/bob/status/123?s=20", Hint::Any), sn("bob"));
        assert_eq!(parse("https://mobile.twitter.com/bob", Hint::ScreenName), sn("bob"));
        assert_eq!(parse("https://x.com/intent/user?screen_name=Bob", Hint::Any), sn("Bob"));
    }

    #[test]
    fn every_form_of_a_user_id() {
        assert_eq!(parse("2244994945", Hint::Any), id("2244994945"));
        assert_eq!(parse("2244994945", Hint::UserId), id("2244994945"));
        assert_eq!(parse("twitter.com/intent/user?user_id=1111111111111111111", Hint::Any), id("1111111111111111111"));
        assert_eq!(parse("https://x.com/i/user/12345", Hint::Any), id("12345"));
    }

    #[test]
    fn a_numeric_screen_name_stays_a_screen_name() {
        assert_eq!(parse("12345", Hint::ScreenName), sn("12345"));
        assert_eq!(parse("@12345", Hint::Any), sn("12345"));
    }

    #[test]
    fn bad_values_say_why() {
        assert!(parse("abcdefghijklmnop", Hint::Any).unwrap_err().contains("longer than 15"));
        assert!(parse("bob!", Hint::Any).unwrap_err().contains("only A-Z"));
        assert!(parse("-5", Hint::UserId).unwrap_err().contains("negative"));
        assert!(parse("12a", Hint::UserId).unwrap_err().contains("not a decimal"));
        assert!(parse("99999999999999999999", Hint::UserId).unwrap_err().contains("larger than"));
        assert!(parse("https://example.com/bob", Hint::Any).unwrap_err().contains("not an x.com"));
        assert!(parse("https://x.com/home", Hint::Any).unwrap_err().contains("not a profile"));
        assert!(parse("", Hint::Any).unwrap_err().contains("empty"));
        assert!(parse("bo\0b", Hint::Any).unwrap_err().contains("NUL"));
        assert!(parse("https://x.com/bob", Hint::UserId).unwrap_err().contains("not a user id"));
        assert!(parse(&"a".repeat(10_000), Hint::Any).unwrap_err().contains("bytes long"));
    }
}
