//! A TOML error as a person needs it: file, line, column and key — never the value, which may be
//! a secret.

use std::path::Path;

use super::ConfigError;

/// A TOML error as file, line, column, key and what is wrong, without the offending text: toml's
/// own message quotes the line (and so a secret typed on it), and its descriptions quote values
/// in backticks (`invalid type: integer `123``). Only what stands left of a `=` is named.
pub(super) fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let what = describe_toml_error(e.message());
    let Some(span) = e.span() else {
        return ConfigError::Parse { path: path.to_path_buf(), message: what };
    };
    let at = span.start.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let (table, key) = context_at(text, at);
    let key = key.map(|k| match table {
        Some(t) => format!("{t}.{k}"),
        None => k,
    });
    let message = match key {
        Some(k) => format!("line {line_no}, column {column}: key `{k}`: {what}"),
        None => format!("line {line_no}, column {column}: {what}"),
    };
    ConfigError::Parse { path: path.to_path_buf(), message }
}

/// toml's description of an error with every part that may quote a value taken out. Backticks
/// hold field names in "unknown field `x`, expected one of `a`, `b`" and "missing field `x`"
/// (names from followq's own structs, and the key, which the caller names from the line), and
/// values everywhere else ("invalid type: integer `123`").
fn describe_toml_error(message: &str) -> String {
    let first = message.lines().next().unwrap_or("").trim();
    if first.starts_with("unknown field") {
        return match first.split_once("expected ") {
            Some((_, expected)) => format!("unknown key; expected {expected}"),
            None => "unknown key".into(),
        };
    }
    if first.starts_with("missing field") || first.starts_with("duplicate key") {
        return first.split('`').next().unwrap_or(first).trim().to_string();
    }
    // Values are quoted in backticks or, for strings, in double quotes.
    let mut kept = String::new();
    let mut quote = None;
    for c in first.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '`' || c == '"' => quote = Some(c),
            None => kept.push(c),
        }
    }
    let kept = kept.split_whitespace().collect::<Vec<_>>().join(" ").replace(" ,", ",").replace(" :", ":");
    let kept = kept.trim_end_matches([',', ':', ' ']);
    kept.strip_suffix(", expected").unwrap_or(kept).to_string()
}

/// The table and the key being parsed at byte `at` of a TOML text: the last `[table]` header
/// and the last `key =` that begin a line outside strings and comments before it. Lines inside
/// a multi-line string are a value, never taken for a key; and a name is given only when it
/// reads as a setting's name (lower-case words), so a secret pasted where a key belongs is not
/// printed either.
fn context_at(text: &str, at: usize) -> (Option<String>, Option<String>) {
    let (mut table, mut key) = (None, None);
    let b = text.as_bytes();
    let at = at.min(b.len());
    let mut i = 0;
    let mut line_start = true;
    while i < b.len() {
        // The line `at` stands on counts too (an unknown key is reported at its line's start).
        if line_start {
            line_start = false;
            let line = text[i..].lines().next().unwrap_or("").trim_start();
            if line.starts_with('[') {
                let name = line.trim_start_matches('[').split(']').next().unwrap_or("").trim();
                table = setting_name(name);
                key = None;
            } else if let Some((left, _)) = line.split_once('=') {
                key = setting_name(left.trim());
            }
        }
        if i >= at {
            break;
        }
        let rest = &b[i..];
        let skip_to = |close: &[u8], from: usize, one_line: bool| -> usize {
            let mut j = from;
            while j < b.len() {
                if b[j] == b'\\' && close[0] == b'"' {
                    j += 2;
                    continue;
                }
                if one_line && b[j] == b'\n' {
                    return j;
                }
                if b[j..].starts_with(close) {
                    return j + close.len();
                }
                j += 1;
            }
            b.len()
        };
        i = if rest.starts_with(b"\"\"\"") {
            skip_to(b"\"\"\"", i + 3, false)
        } else if rest.starts_with(b"'''") {
            skip_to(b"'''", i + 3, false)
        } else if rest[0] == b'"' {
            skip_to(b"\"", i + 1, true)
        } else if rest[0] == b'\'' {
            skip_to(b"'", i + 1, true)
        } else if rest[0] == b'#' {
            skip_to(b"\n", i + 1, true)
        } else {
            if rest[0] == b'\n' {
                line_start = true;
            }
            i + 1
        };
    }
    (table, key)
}

/// `name` when it reads as a (dotted) setting name — words of `a-z`, `0-9` and `_` that begin
/// with a letter, as followq's own are — else nothing.
fn setting_name(name: &str) -> Option<String> {
    let word = |w: &str| {
        (1..=32).contains(&w.len())
            && w.starts_with(|c: char| c.is_ascii_lowercase())
            && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    (!name.is_empty() && name.split('.').map(str::trim).all(word)).then(|| name.replace(' ', ""))
}
