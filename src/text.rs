//! Text for people: what a file, a cell or an answer from X may hold is shown, never obeyed.

use std::borrow::Cow;

/// `s` with every control character escaped (`\n`, `\t`, `\u{1b}`…), so that a CSV cell, a
/// file name or a message from X cannot move the cursor, clear the screen, retitle the
/// terminal or break a `file:line:` line. Text without control characters comes back as it is.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(printable("plain — ünïcode"), "plain — ünïcode");
        assert_eq!(printable("\u{1b}]0;PWNED\u{7}\u{1b}[2J"), "\\u{1b}]0;PWNED\\u{7}\\u{1b}[2J");
        assert_eq!(printable("a\nb\tc\r\u{9b}"), "a\\nb\\tc\\r\\u{9b}");
    }
}
