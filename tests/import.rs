//! `followq import` and `status`, through the real binary on real SQLite files.

mod common;

use common::Env;
use serde_json::Value;

fn env() -> Env {
    Env::new(&["alice", "bob"], "http://127.0.0.1:9", "")
}

fn total(status: &Value) -> i64 {
    status["jobs"]["total"].as_i64().unwrap()
}

fn account<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["accounts"].as_array().unwrap().iter().find(|a| a["name"] == name).unwrap()
}

fn export(env: &Env) -> Vec<Value> {
    let out = env.cmd().args(["export", "--format", "json"]).output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

#[test]
fn every_input_form_goes_in() {
    let e = env();
    // Header in any order and case, BOM, CRLF, semicolons, a quoted field.
    e.write("a.csv", "\u{feff}Follow;HANDLE;Account\r\ntrue;@Carol_1;alice\r\n;\"https://x.com/dave\";bob\r\n");
    // Tabs, the id column, intent links and twitter.com URLs.
    e.write("b.tsv", "account\tid\tusername\nalice\t2244994945\t\nbob\t\ttwitter.com/erin/status/1\nalice\t\thttps://twitter.com/intent/user?screen_name=Frank\n");
    // Headerless: one column of targets for --account.
    e.write("c.txt", "@gina\nhttps://x.com/i/user/777\n12345\n");
    let archive = r#"window.YTD.following.part0 = [
  { "following" : { "accountId" : "1111111111111111111", "userLink" : "https://twitter.com/intent/user?user_id=1111111111111111111" } },
  { "following" : { "accountId" : "2222" } }
]"#;
    e.write("following.js", archive);
    e.cmd().args(["import", "a.csv", "b.tsv"]).assert().success();
    e.cmd().args(["import", "--account", "bob", "c.txt", "following.js"]).assert().success();
    e.cmd().args(["import", "--account", "alice", "-"]).write_stdin("henry\n@ivy\n").assert().success();

    let s = e.status();
    assert_eq!(total(&s), 12);
    assert_eq!(account(&s, "alice")["jobs"]["total"], 5);
    assert_eq!(account(&s, "bob")["jobs"]["total"], 7);
    assert_eq!(s["jobs"]["by_state"]["queued"], 12);
    let rows = export(&e);
    let find = |t: &str| rows.iter().find(|r| r["target"] == t).unwrap_or_else(|| panic!("{t} missing"));
    assert_eq!(find("Carol_1")["target_kind"], "screen_name");
    assert_eq!(find("2244994945")["target_kind"], "user_id");
    assert_eq!(find("Frank")["account"], "alice");
    assert_eq!(find("777")["target_kind"], "user_id");
    assert_eq!(find("12345")["target_kind"], "user_id", "a bare number in a headerless file is an id");
    assert_eq!(find("1111111111111111111")["account"], "bob");
    assert_eq!(find("ivy")["account"], "alice");
}

#[test]
fn equivalent_forms_dedupe_across_files() {
    let e = env();
    e.write("1.csv", "screen_name\n@Bob\n");
    e.write("2.csv", "screen_name\nbob\n");
    e.write("3.csv", "screen_name\nhttps://x.com/BOB\n");
    let out = e.cmd().args(["import", "--account", "alice", "1.csv", "2.csv", "3.csv"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1.csv: 1 rows read, 1 added, 0 already queued, 0 rejected"), "{text}");
    assert!(text.contains("3.csv: 1 rows read, 0 added, 1 already queued, 0 rejected"), "{text}");
    assert_eq!(total(&e.status()), 1);
    // The same target for another account is another job.
    e.cmd().args(["import", "--account", "bob", "2.csv"]).assert().success();
    assert_eq!(total(&e.status()), 2);
}

#[test]
fn a_numeric_screen_name_stays_a_screen_name() {
    let e = env();
    e.write("n.csv", "screen_name,user_id\n12345,\n,12345\n");
    e.cmd().args(["import", "--account", "alice", "n.csv"]).assert().success();
    let rows = export(&e);
    let kinds: Vec<&str> = rows.iter().map(|r| r["target_kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["screen_name", "user_id"]);
    assert!(rows.iter().all(|r| r["target"] == "12345"));
}

#[test]
fn bad_rows_are_reported_and_good_rows_go_in() {
    let e = env();
    let mut bad = b"account,screen_name,user_id\n".to_vec();
    bad.extend_from_slice(b"alice,good_one,\n");
    bad.extend_from_slice(b"alice,abcdefghijklmnop,\n");
    bad.extend_from_slice(b"alice,bad!name,\n");
    bad.extend_from_slice(b"alice,,-5\n");
    bad.extend_from_slice(b"alice,,12ab\n");
    bad.extend_from_slice(b"alice,,99999999999999999999\n");
    bad.extend_from_slice(b"mallory,someone,\n");
    bad.extend_from_slice(b"alice,,\n");
    bad.extend_from_slice(b"alice,caf\xe9,\n");
    bad.extend_from_slice(b"bob,good_two,\n");
    e.write("bad.csv", &bad);
    let out = e.cmd().args(["import", "bad.csv", "--rejects", "rejects.csv"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "rejected rows exit 3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expect in [
        "bad.csv:3: screen name 'abcdefghijklmnop' is longer than 15 characters",
        "bad.csv:4: screen name 'bad!name' may hold only A-Z a-z 0-9 _",
        "bad.csv:5: user id '-5' is negative",
        "bad.csv:6: user id '12ab' is not a decimal number",
        "bad.csv:7: user id '99999999999999999999' is larger than 18446744073709551615",
        "bad.csv:8: unknown account 'mallory'",
        "bad.csv:9: no target: screen_name and user_id are both empty",
        "bad.csv:10: screen_name: not valid UTF-8",
    ] {
        assert!(stderr.contains(expect), "missing {expect:?} in:\n{stderr}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("10 rows read, 2 added, 0 already queued, 8 rejected"), "{stdout}");
    let rejects = common::read(&e.path("rejects.csv"));
    assert_eq!(rejects.lines().count(), 9, "{rejects}");
    assert!(rejects.contains("bad.csv,5,user id '-5' is negative"), "{rejects}");
    assert_eq!(total(&e.status()), 2);
}

#[test]
fn reimporting_adds_nothing_and_dry_run_writes_nothing() {
    let e = env();
    e.write("l.csv", "account,screen_name\nalice,a1\nalice,a2\nbob,b1\nalice,A1\n");
    let out = e.cmd().args(["import", "--dry-run", "l.csv"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 rows read, 3 would add, 1 already queued"));
    // It wrote nothing: it did not even create the database.
    assert!(!e.db().exists(), "dry run wrote nothing");
    e.cmd().args(["import", "l.csv"]).assert().success();
    let out = e.cmd().args(["import", "l.csv"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 rows read, 0 added, 4 already queued, 0 rejected"));
    let s = e.status();
    assert_eq!(total(&s), 3);
    let imports = s["imports"].as_array().unwrap();
    assert_eq!(imports.len(), 2);
    assert_eq!(imports[1]["added"], 3);
    assert_eq!(imports[0]["added"], 0);
}

/// Writes `name` as a file that stopped changing a while ago (as an inbox file a one-shot import
/// takes at once; how a file settles is tested in `ingest::inbox`).
fn settled(e: &Env, name: &str, content: &str) {
    let path = e.write(name, content);
    let f = std::fs::File::options().append(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(5)).unwrap();
}

#[test]
fn the_inbox_ingests_each_content_once() {
    let e = env();
    settled(&e, "jobs/inbox/one.csv", "account,screen_name\nalice,x1\nbob,x2\n");
    let out = e.cmd().arg("import").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("one.csv: 2 rows read, 2 added"));
    // The same bytes under another name, and a partial copy, are not new.
    settled(&e, "jobs/inbox/copy.csv", "account,screen_name\nalice,x1\nbob,x2\n");
    settled(&e, "jobs/inbox/next.csv.part", "account,screen_name\nalice,x9\n");
    let out = e.cmd().arg("import").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("no new files"), "{}", String::from_utf8_lossy(&out.stdout));
    settled(&e, "jobs/inbox/two.csv", "account,screen_name\nalice,x3\n");
    let out = e.cmd().arg("import").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("two.csv: 1 rows read, 1 added") && !text.contains("one.csv"), "{text}");
    assert_eq!(total(&e.status()), 3);
}

#[test]
fn unreadable_inputs_name_themselves_and_leave_nothing_half_done() {
    let e = env();
    std::fs::create_dir(e.path("adir")).unwrap();
    e.write("ok.csv", "screen_name\nzed\n");
    let out = e.cmd().args(["import", "--account", "alice", "missing.csv", "adir", "ok.csv"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing.csv: no such file"), "{stderr}");
    assert!(stderr.contains("adir: is a directory"), "{stderr}");
    assert_eq!(total(&e.status()), 1, "the good file still went in");

    let out = e.cmd().args(["import", "--account", "nobody", "ok.csv"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown account 'nobody'"));

    e.write("two.csv", "screen_name\nzed\n");
    let out = e.cmd().args(["import", "two.csv"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no 'account' column and no default account"),
        "two accounts: the CSV must say which"
    );

    e.write("trunc.js", "window.YTD.following.part0 = [\n { \"following\" : { \"accountId\" : \"1\" } },\n {");
    let out = e.cmd().args(["import", "--account", "alice", "trunc.js"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("trunc.js: line 3: not a JSON array"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The archive is read as a stream: the whole entry before the truncation went in (as a
    // CSV's rows before an I/O error do), and the import is recorded as failed with its reason.
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(total(&e.status()), 2);
    let imports = e.status()["imports"].clone();
    assert!(imports[0]["error"].as_str().unwrap().contains("is the file truncated?"), "{imports}");

    e.write("dup.csv", "screen_name,handle\nx,y\n");
    let out = e.cmd().args(["import", "--account", "alice", "dup.csv"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("dup.csv: line 1: column 'handle' repeats"));
    assert_eq!(total(&e.status()), 2);
}

#[test]
fn init_writes_private_files_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = assert_cmd::Command::cargo_bin("followq").unwrap();
    cmd.current_dir(dir.path()).arg("init").assert().success();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["followq.toml", "followq.db"] {
            let mode = std::fs::metadata(dir.path().join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }
    let mut cmd = assert_cmd::Command::cargo_bin("followq").unwrap();
    let out = cmd.current_dir(dir.path()).arg("init").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --force"));
    // Found from the outside: `--force` said "created followq.db" over the existing database.
    let mut cmd = assert_cmd::Command::cargo_bin("followq").unwrap();
    let out = cmd.current_dir(dir.path()).args(["init", "--force"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept followq.db (its jobs and ledger are untouched)"));
}

#[test]
fn the_environment_overrides_the_file() {
    let e = env();
    // A database with no jobs (status reads one; it never creates it).
    e.write("none.csv", "screen_name\n");
    e.cmd().args(["import", "--account", "alice", "none.csv"]).assert().success();
    let out = e.cmd().args(["status", "--json"]).env("FOLLOWQ_LIMITS_PER_USER", "123").output().unwrap();
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    // No account has jobs yet, so the per-account rows are there only for configured accounts.
    assert_eq!(account(&s, "alice")["budget"]["limit"], 123);
    assert_eq!(s["app"]["budget"]["limit"], 1000);
    let out = e.cmd().args(["status"]).env("FOLLOWQ_LIMITS_PACE", "fast").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.pace"));
}

/// Defect (issue 12, 3): `--rejects` kept only file, line and reason, so a rejected row could
/// not be fixed and imported again; a file named `=1+2.csv` went into it as a formula.
#[test]
fn the_rejects_file_carries_the_rows_and_imports_back_after_editing() {
    let e = env();
    e.write("=1+2.csv", "account,screen_name,follow\nalice,good_one,\nalice,bad-name,true\nbob,12345678901234567,\n");
    let out = e.cmd().args(["import", "--rejects", "rejects.csv", "=1+2.csv"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let text = common::read(&e.path("rejects.csv"));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("account,target,follow,file,line,reason"));
    let row = lines.next().unwrap();
    assert!(row.starts_with("alice,'@bad-name,true,'=1+2.csv,3,"), "{row}");
    assert!(lines.next().unwrap().starts_with("bob,'@12345678901234567,,'=1+2.csv,4,"), "{text}");
    // Fixed by hand (a digit too many, a dash for an underscore) and imported back as it is.
    let fixed = text.replace("bad-name", "bad_name").replace("12345678901234567", "1234567890123456");
    e.write("fixed.csv", fixed.replace("1234567890123456,", "123456789012345,"));
    let out = e.cmd().args(["import", "fixed.csv"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let jobs = export(&e);
    let find = |t: &str| jobs.iter().find(|j| j["target"] == t).cloned();
    assert_eq!(find("bad_name").unwrap()["target_kind"], "screen_name");
    assert_eq!(find("123456789012345").unwrap()["target_kind"], "screen_name", "digits stay a screen name");
    assert_eq!(jobs.len(), 3);
}

/// Defect (issue 12, 5): headers a person writes were taken as a data row and rejected.
#[test]
fn headers_a_person_would_write_are_recognised() {
    for header in
        ["Screen Name", "Twitter Handle", "X handle", " USERNAME ", "twitter-handle", "User ID", "Profile URL"]
    {
        let e = env();
        let value = if header.contains("ID") { "12345" } else { "@hdr_ok" };
        e.write("h.csv", format!("{header},Notes\n{value},x\n"));
        let out = e.cmd().args(["import", "--account", "alice", "h.csv"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{header}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(total(&e.status()), 1, "{header}");
    }
}

/// Defect (issue 12, 6): a 44 MB header (5 M columns) gave a 58.9 MB error message, and 3 M
/// unknown columns a 34.9 MB warning. Messages name a few columns and a count.
#[test]
fn huge_headers_make_short_messages() {
    let e = env();
    let many: Vec<String> = (0..200_000).map(|i| format!("col{i}")).collect();
    e.write("wide.csv", format!("{}\nx,y\n", many.join(",")));
    let out = e.cmd().args(["import", "--account", "alice", "wide.csv"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("'col0', 'col1', 'col2', 'col3', 'col4' and 199995 more"), "{stderr}");
    assert!(stderr.len() < 1000, "{} bytes of message", stderr.len());
    e.write("wide2.csv", format!("screen_name,{}\nwide_ok\n", many.join(",")));
    let out = e.cmd().args(["import", "--account", "alice", "wide2.csv"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("columns='col0', 'col1', 'col2', 'col3', 'col4' and 199995 more"), "{stderr}");
    assert!(stderr.len() < 1000, "{} bytes of warning", stderr.len());
}

/// Peak resident memory (KiB) of `followq` with `args`, sampled from /proc while it runs.
fn peak_rss_kib(e: &Env, args: &[&str]) -> u64 {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("followq"));
    let mut child = child.current_dir(e.dir.path()).args(args).stdout(std::process::Stdio::null()).spawn().unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1))
        {
            peak = peak.max(kib.parse().unwrap_or(0));
        }
        if child.try_wait().unwrap().is_some() {
            return peak;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Defect (issue 12, 7): `following.js` was parsed whole (a 211 MB archive took 2.4 GB), and
/// `export` loaded every job (2 M jobs: 676 MB for CSV, 769 MB for JSON, unbuffered). With
/// 200,000 entries the old code needed ~100 MB for the archive and ~70 MB for an export; a
/// stream needs SQLite's page caches (24 MiB at most) and little more.
#[test]
fn archive_import_and_export_memory_stays_flat() {
    const BOUND_KIB: u64 = 48 * 1024;
    let entries: Vec<String> = (1..=200_000)
        .map(|i| format!("{{\"following\":{{\"accountId\":\"{i}\",\"userLink\":\"https://twitter.com/intent/user?user_id={i}\"}}}}"))
        .collect();
    let e = env();
    e.write("following.js", format!("window.YTD.following.part0 = [\n{}\n]", entries.join(",\n")));
    let rss = peak_rss_kib(&e, &["import", "--account", "alice", "following.js"]);
    assert_eq!(total(&e.status()), 200_000);
    assert!(rss < BOUND_KIB, "archive of 200k entries: {rss} KiB");
    for format in ["csv", "json"] {
        let rss = peak_rss_kib(&e, &["export", "--format", format, "-o", "out"]);
        assert!(rss < BOUND_KIB, "export {format} of 200k jobs: {rss} KiB");
    }
    let exported = common::read(&e.path("out"));
    assert_eq!(serde_json::from_str::<Value>(&exported).unwrap().as_array().unwrap().len(), 200_000);
}

/// Defect (issue 12, 8): a newline in an inbox file's name broke `file:line:` and the status
/// table; a control character in a name reached the terminal raw.
#[test]
fn control_characters_in_file_names_are_shown_escaped() {
    let e = env();
    let name = "evil\nname\u{1b}[2J.csv";
    e.write(&format!("jobs/inbox/{name}"), "screen_name\nok_name\nbad-name\n");
    let file = e.path(&format!("jobs/inbox/{name}"));
    let f = std::fs::File::options().write(true).open(&file).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(5)).unwrap();
    let out = e.cmd().args(["import", "--account", "alice"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("evil\\nname\\u{1b}[2J.csv:3: screen name 'bad-name'"), "{stderr}");
    assert!(!stderr.contains('\u{1b}') && !stdout_has_raw(&out.stdout), "{stderr}");
    let table = e.cmd().arg("status").output().unwrap();
    assert!(!stdout_has_raw(&table.stdout), "{}", String::from_utf8_lossy(&table.stdout));
    assert!(String::from_utf8_lossy(&table.stdout).contains("evil\\nname\\u{1b}[2J.csv"));
    // Stored as it is: the JSON (machine-readable) has the real name.
    assert!(e.status()["imports"][0]["source"].as_str().unwrap().ends_with(name));
}

fn stdout_has_raw(out: &[u8]) -> bool {
    String::from_utf8_lossy(out).lines().any(|l| l.contains('\u{1b}') || l.starts_with("name"))
}

/// Defect (issue 12, 10): an import killed part-way showed "0 rows: 0 added" although its
/// rows were committed. Every commit writes the counts so far.
#[test]
fn an_import_killed_part_way_says_what_it_committed() {
    use std::io::Write;
    let e = env();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("followq"));
    let mut child = child
        .current_dir(e.dir.path())
        .args(["import", "--account", "alice", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let rows: String = (0..2500).map(|i| format!("killed_{i}\n")).collect();
    stdin.write_all(rows.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // Every row read is sent on before the reader waits for more and, the input then
    // pausing, committed with its counts (a kill loses nothing that was read).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    let s = e.status();
    assert_eq!(total(&s), 2500);
    let import = &s["imports"][0];
    assert_eq!((import["rows_read"].as_i64(), import["added"].as_i64()), (Some(2500), Some(2500)), "{import}");
    assert_eq!(import["finished_at"], 0);
}

/// Found from the outside: after an account was renamed in case (`Bob` → `bob`) rows landed at
/// random on the old, unconfigured account (never sent) or the new one; rows for an account
/// removed from the config were accepted into it.
#[test]
fn rows_never_land_on_a_renamed_or_removed_account() {
    let e = Env::new(&["alice", "Bob", "carol"], "http://127.0.0.1:9", "");
    e.write("first.csv", "account,handle\nBob,old_one\ncarol,c_one\n");
    e.cmd().args(["import", "first.csv"]).assert().success();
    // `Bob` renamed `bob`, carol removed.
    let mut config = String::from("[api]\nbase_url = \"http://127.0.0.1:9\"\n");
    for a in ["alice", "bob"] {
        let (t, s) = common::token(a);
        config.push_str(&format!("[[accounts]]\nname = \"{a}\"\ntoken = \"{t}\"\ntoken_secret = \"{s}\"\n"));
    }
    e.write("followq.toml", config);
    let rows: String = (0..6).map(|i| format!("bob,new_{i}\nBOB,big_{i}\n")).collect();
    e.write("second.csv", format!("account,handle\n{rows}carol,c_two\n"));
    let out = e.cmd().args(["import", "second.csv"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("second.csv:14: unknown account 'carol' (configured: alice, bob)"), "{stderr}");
    let jobs = export(&e);
    let on = |account: &str| jobs.iter().filter(|j| j["account"] == account).count();
    assert_eq!((on("bob"), on("Bob"), on("carol")), (12, 1, 1), "{jobs:?}");
    let out = e.cmd().args(["retry", "--account", "BOB"]).output().unwrap();
    assert!(out.status.success(), "retry takes a name in any case: {}", String::from_utf8_lossy(&out.stderr));
    // The unconfigured accounts' rows stay in line with the others.
    let table = String::from_utf8_lossy(&e.cmd().arg("status").output().unwrap().stdout).to_string();
    let rows: Vec<&str> = table.lines().take_while(|l| !l.starts_with("budget:")).collect();
    assert!(rows.iter().any(|l| l.starts_with("Bob (unconfigured)")), "{table}");
    let slash: Vec<Option<usize>> = rows[1..].iter().map(|l| l.find('/')).collect();
    assert!(slash.windows(2).all(|w| w[0] == w[1]), "columns out of line:\n{table}");
}

/// Found from the outside: `--rejects` naming the input emptied the input before reading it.
#[test]
fn a_rejects_file_that_is_an_input_is_refused() {
    let e = env();
    e.write("same.csv", "screen_name\nok_one\nbad-one\n");
    let out = e.cmd().args(["import", "--account", "alice", "same.csv", "--rejects", "./same.csv"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("that is the input same.csv"));
    assert_eq!(common::read(&e.path("same.csv")), "screen_name\nok_one\nbad-one\n");
}

/// Found from the outside: a lone header that is also a valid screen name (`Name`, `Handles`,
/// `id_str`) was queued as a target.
#[test]
fn header_words_that_are_valid_screen_names_are_not_followed() {
    for (header, added, message) in [
        ("Name", 1, "'Name' looks like a header"),
        ("Usernames", 1, ""),
        ("Handles", 1, ""),
        ("id_str", 0, "user id 'x_one' is not a decimal number"),
    ] {
        let e = env();
        e.write("h.csv", format!("{header}\nx_one\n"));
        let out = e.cmd().args(["import", "--account", "alice", "h.csv"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{header}: {stderr}");
        let jobs = export(&e);
        assert_eq!(jobs.len(), added, "{header}: {jobs:?}");
        assert!(jobs.iter().all(|j| j["target"] == "x_one"), "{header} was queued: {jobs:?}");
    }
    let e = env();
    e.write("rows.csv", "ID,Name,Twitter Handle\n1,Jack,jack\n");
    let out = e.cmd().args(["import", "--account", "alice", "rows.csv"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("if 'ID' numbers the rows, rename or remove it"));
}
