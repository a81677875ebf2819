//! The bad-input corpus: every file under tests/data/bad/ (and a few made at run time: a 10 MB
//! field, a directory, a missing and an unreadable file) with the exact message or reject it must
//! produce. No input makes followq panic, and no bad row keeps the good rows of its file out.

mod common;

use common::Env;

/// (file, exit status, the message on stderr, jobs the file adds).
const CORPUS: &[(&str, i32, &str, i64)] = &[
    ("invalid_utf8.csv", 3, "invalid_utf8.csv:3: screen_name: not valid UTF-8", 1),
    ("nul_byte.csv", 3, "nul_byte.csv:3: value contains a NUL byte", 1),
    (
        "unterminated_quote.csv",
        3,
        "unterminated_quote.csv:3: a quote opened here is never closed (it runs to line 5, the end of the file): the lines after this one are read as rows",
        3,
    ),
    ("empty.csv", 0, "empty.csv: no rows to import (an empty file, or a header only)", 0),
    ("bom_only.csv", 0, "bom_only.csv: no rows to import", 0),
    ("header_only.csv", 0, "header_only.csv: no rows to import", 0),
    ("unknown_columns.csv", 1, "unknown_columns.csv: line 1: no recognised column among 'name', 'email'", 0),
    (
        "unknown_extra_column.csv",
        0,
        "ignoring columns followq does not use file=\"unknown_extra_column.csv\" columns='email'",
        1,
    ),
    ("name_too_long.csv", 3, "name_too_long.csv:3: screen name 'abcdefghijklmnop' is longer than 15 characters", 1),
    ("name_illegal_chars.csv", 3, "name_illegal_chars.csv:3: screen name 'bob-smith' may hold only A-Z a-z 0-9 _", 1),
    ("at_sign_only.csv", 3, "at_sign_only.csv:2: empty screen name", 0),
    ("id_negative.csv", 3, "id_negative.csv:3: user id '-42' is negative", 1),
    ("id_non_numeric.csv", 3, "id_non_numeric.csv:3: user id '12ab' is not a decimal number", 1),
    ("id_over_u64.csv", 3, "id_over_u64.csv:3: user id '18446744073709551616' is larger than 18446744073709551615", 1),
    ("id_zero.csv", 3, "id_zero.csv:3: user id 0 does not exist", 1),
    (
        "archive_truncated.js",
        1,
        "archive_truncated.js: line 3: not a JSON array (EOF while parsing a string at line 3 column 24); is the file truncated?",
        1,
    ),
    (
        "archive_not_js.js",
        1,
        "archive_not_js.js: not an X archive file: expected it to start with 'window.YTD.following.part0 = ['",
        0,
    ),
    ("archive_missing_accountid.js", 3, "archive_missing_accountid.js:2: entry 2: entry has no following.accountId", 1),
    ("archive_bad_id.js", 3, "archive_bad_id.js:1: entry 1: user id 'abc' is not a decimal number", 1),
    ("unknown_account.csv", 3, "unknown_account.csv:3: unknown account 'mallory'", 1),
    (
        "conflicting_columns.csv",
        1,
        "conflicting_columns.csv: line 1: column 'username' repeats a column already given",
        0,
    ),
    ("no_target_column.csv", 1, "no_target_column.csv: line 1: the header names no target column", 0),
    ("bad_follow_flag.csv", 3, "bad_follow_flag.csv:3: follow 'maybe' is not true or false", 1),
    ("url_not_x.csv", 3, "url_not_x.csv:3: 'https://example.com/bob' is not an x.com or twitter.com profile URL", 1),
    ("url_not_profile.txt", 3, "url_not_profile.txt:2: 'https://x.com/home' is not a profile URL", 0),
    ("empty_target.csv", 3, "empty_target.csv:3: no target: screen_name and user_id are both empty", 1),
    ("headerless_two_columns.txt", 3, "headerless_two_columns.txt:2: 2 columns in a one-column file", 1),
    // Issue 12: line numbers are the file's own, whatever the line ends and blank lines.
    ("crlf_line_numbers.csv", 3, "crlf_line_numbers.csv:4: screen name 'bad-name' may hold only", 2),
    ("blank_lines.csv", 3, "blank_lines.csv:6: screen name 'bad-name' may hold only", 1),
    ("cr_only.csv", 3, "cr_only.csv:3: screen name 'bad-name' may hold only", 2),
    // A quoted value over two lines is a good row; the row after it keeps its own line number.
    ("quoted_line_break.csv", 3, "quoted_line_break.csv:4: screen name 'bad-name' may hold only", 2),
    // Found from the outside: a closed note whose lines read like rows queued follows nobody
    // asked for. The text of a cell is never read as rows; a target cell cannot hold a break.
    (
        "note_that_reads_like_rows.csv",
        0,
        "ignoring columns followq does not use file=\"note_that_reads_like_rows.csv\" columns='notes'",
        2,
    ),
    (
        "line_break_in_target.csv",
        3,
        "line_break_in_target.csv:2: a line break inside a quoted cell followq reads (lines 2 to 3)",
        1,
    ),
    (
        "unterminated_quote_rows_after.csv",
        3,
        "unterminated_quote_rows_after.csv:2: a quote opened here is never closed (it runs to line 5, the end of the file): the lines after this one are read as rows",
        3,
    ),
    ("utf16_excel_unicode_text.txt", 3, "utf16_excel_unicode_text.txt:3: screen name 'bad-name' may hold only", 1),
    (
        "excel_workbook.xlsx",
        1,
        "followq: excel_workbook.xlsx: this is a zip archive, such as an Excel workbook (.xlsx): save it as CSV (UTF-8)",
        0,
    ),
    ("gzipped.csv.gz", 1, "followq: gzipped.csv.gz: this is a gzip-compressed file: decompress it first", 0),
    ("header_variants.csv", 0, "ignoring columns followq does not use file=\"header_variants.csv\" columns='Notes'", 2),
    (
        "header_like_single.csv",
        3,
        "header_like_single.csv:1: 'People to follow' looks like a header, but names no column followq reads",
        2,
    ),
    // The cell's escape sequences are shown escaped, never sent to the terminal.
    ("control_characters.csv", 3, "control_characters.csv:3: screen name 'bad\\u{1b}]0;PWNED\\u{7}\\u{1b}[2J'", 1),
    ("account_case.csv", 3, "account_case.csv:3: unknown account 'Mallory' (configured: alice)", 1),
    (
        "intent_without_id.txt",
        3,
        "intent_without_id.txt:2: 'https://twitter.com/intent/user?foo=1' has neither user_id nor screen_name",
        1,
    ),
];

fn env() -> Env {
    Env::new(&["alice"], "http://127.0.0.1:9", "")
}

fn import(env: &Env, file: &str) -> (i32, String, i64) {
    // `status` only reads: before the first import there is no database, and no job.
    let before = if env.db().exists() { env.status()["jobs"]["total"].as_i64().unwrap() } else { 0 };
    let out = env.cmd().args(["import", file]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{file}: {stderr}");
    let after = env.status()["jobs"]["total"].as_i64().unwrap();
    (out.status.code().unwrap_or(-1), stderr, after - before)
}

#[test]
fn every_file_in_the_corpus_gives_its_exact_message() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad");
    let on_disk = std::fs::read_dir(&dir).unwrap().count();
    assert!(on_disk >= 25, "the corpus has {on_disk} files");
    assert_eq!(on_disk, CORPUS.len(), "every corpus file has an expectation here");
    for (file, code, message, added) in CORPUS {
        // A fresh database each time, so "added" is this file's alone.
        let e = env();
        std::fs::copy(dir.join(file), e.path(file)).unwrap();
        let (got_code, stderr, got_added) = import(&e, file);
        assert!(stderr.contains(message), "{file}: expected {message:?} in:\n{stderr}");
        assert!(!stderr.contains('\u{1b}'), "{file}: a raw escape reached the terminal:\n{stderr}");
        assert_eq!(got_code, *code, "{file}: exit status; stderr:\n{stderr}");
        assert_eq!(got_added, *added, "{file}: the good rows go in");
    }
}

#[test]
fn a_ten_megabyte_field_is_rejected_without_sinking_the_file() {
    let e = env();
    let mut content = b"screen_name\ngood_one\n".to_vec();
    content.extend(std::iter::repeat_n(b'a', 10 << 20));
    content.extend_from_slice(b"\ngood_two\n");
    e.write("huge.csv", &content);
    let (code, stderr, added) = import(&e, "huge.csv");
    assert!(stderr.contains("huge.csv:3: value is 10485760 bytes long; a target is at most 512"), "{stderr}");
    assert_eq!((code, added), (3, 2));
}

#[test]
fn missing_directory_and_unreadable_inputs_name_themselves() {
    let e = env();
    std::fs::create_dir(e.path("folder")).unwrap();
    let (code, stderr, _) = import(&e, "folder");
    assert_eq!(code, 1);
    assert!(stderr.contains("followq: folder: is a directory"), "{stderr}");
    let (code, stderr, _) = import(&e, "nope.csv");
    assert_eq!(code, 1);
    assert!(stderr.contains("followq: nope.csv: no such file"), "{stderr}");
    // Unreadable even for root: the kernel refuses reads of this file at offset 0.
    let (code, stderr, _) = import(&e, "/proc/self/mem");
    assert_eq!(code, 1);
    assert!(stderr.contains("followq: /proc/self/mem: cannot read: Input/output error"), "{stderr}");
    #[cfg(unix)]
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        let p = e.write("locked.csv", "screen_name\nx\n");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        let (code, stderr, _) = import(&e, "locked.csv");
        assert_eq!(code, 1);
        assert!(stderr.contains("locked.csv: cannot read: Permission denied"), "{stderr}");
    }
}

#[cfg(unix)]
fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(true)
}

#[test]
fn an_unknown_account_flag_is_refused_before_reading() {
    let e = env();
    e.write("l.csv", "screen_name\nx\n");
    let out = e.cmd().args(["import", "--account", "mallory", "l.csv"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unknown account 'mallory': it is not in the config's [[accounts]]")
    );
    assert_eq!(e.status()["jobs"]["total"], 0);
}
