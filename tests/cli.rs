//! The real binary against the in-process sandbox: signals, a second run, secrets, the inbox
//! watch, export, retry, verify, accounts, dry run.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Env;
use followq::sandbox::{Faults, Refusal, Sandbox, Scripted};
use followq::store::{AttemptResult, JobState, Store};
use serde_json::Value;

const WINDOW_10S: &str = "[limits]\nper_user = 100\nper_app = 300\nwindow = \"10s\"\npace = \"asap\"\n";

fn spawn(env: &Env, args: &[&str]) -> Child {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("followq"));
    c.current_dir(env.dir.path()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("FOLLOWQ_") {
            c.env_remove(k);
        }
    }
    c.spawn().unwrap()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig}");
}

async fn wait(child: Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap()
}

/// Polls `f` until it is true, for at most `secs`.
async fn eventually(secs: u64, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < until, "condition not met in {secs} s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn rig(accounts: &[&str], limits: &str) -> (Sandbox, Env) {
    let sb = common::sandbox(accounts, 100, 300, Duration::from_secs(10)).await;
    let env = Env::new(accounts, &sb.base_url(), limits);
    (sb, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_records_what_is_in_flight_and_exits_4() {
    let (sb, env) = rig(
        &["alice"],
        "[limits]\nper_user = 100\nper_app = 300\nwindow = \"10s\"\npace = \"spread\"\n[run]\nconcurrency = 2\n",
    )
    .await;
    // Every request hangs past the 2 s timeout: at the signal, requests are out.
    sb.set_faults(Faults { hang: 1.0, hang_for: Duration::from_secs(5), seed: 1, ..Faults::default() });
    env.write("l.csv", (0..50).map(|i| format!("t{i}\n")).collect::<String>());
    env.cmd().args(["import", "--account", "alice", "l.csv"]).assert().success();
    let child = spawn(&env, &["run", "--no-progress"]);
    eventually(10, || sb.stats().creates.get("alice").copied().unwrap_or(0) >= 1).await;
    signal(&child, "-INT");
    let out = wait(child).await;
    assert_eq!(out.status.code(), Some(4), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stopping: no new requests"), "{stderr}");
    assert!(stderr.contains("stopped with") && stderr.contains("`followq run` resumes"), "{stderr}");
    let store = Store::open(&env.db()).await.unwrap();
    assert_eq!(store.open_attempts().await.unwrap(), 0, "the request out at the signal was recorded");
    assert!(store.job_counts().await.unwrap().iter().all(|c| c.state != JobState::InFlight));
    let log = store.attempt_log().await.unwrap();
    assert!(!log.is_empty() && log.iter().all(|a| a.result == Some(AttemptResult::Transient)), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_database_is_refused() {
    let (sb, env) =
        rig(&["alice"], "[limits]\nper_user = 100\nper_app = 300\nwindow = \"10s\"\npace = \"spread\"\n").await;
    env.write("l.csv", (0..20).map(|i| format!("t{i}\n")).collect::<String>());
    env.cmd().args(["import", "--account", "alice", "l.csv"]).assert().success();
    let first = spawn(&env, &["run", "--no-progress"]);
    eventually(10, || sb.stats().creates.get("alice").copied().unwrap_or(0) >= 1).await;
    let out = env.cmd().args(["run", "--no-progress"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another `followq run` is working on followq.db"), "{stderr}");
    signal(&first, "-TERM");
    let out = wait(first).await;
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(sb.stats().violations, 0);
    // The lock went with the first process: a new run may start.
    let out = env.cmd().args(["run", "--no-progress", "--max-duration", "300ms"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_output_logs_database_or_export() {
    let (sb, env) = rig(&["alice", "bob"], WINDOW_10S).await;
    let (alice, _) = common::token("alice");
    sb.script(&alice, &[Scripted { status: 401, code: 135 }, Scripted { status: 503, code: 130 }]);
    env.write("l.csv", "account,screen_name\nalice,a1\nalice,b_x\nbob,c1\nbob,x_y\n");
    let mut outputs = Vec::new();
    for args in [
        vec!["-vv", "--log-file", "trace.log", "import", "l.csv"],
        vec!["-vv", "--log-file", "trace.log", "run", "--no-progress"],
        vec!["-vv", "--log-file", "trace.log", "--log-format", "json", "status"],
        vec!["status", "--json"],
        vec!["export", "--format", "json"],
        vec!["export"],
        vec!["accounts", "list"],
        vec!["-vv", "accounts", "check"],
        vec!["-vv", "verify"],
    ] {
        let out = env.cmd().args(&args).output().unwrap();
        outputs.push(out.stdout);
        outputs.push(out.stderr);
    }
    let log = std::fs::read(env.path("trace.log")).unwrap();
    assert!(log.len() > 10_000, "trace logging produced {} bytes", log.len());
    outputs.push(log);
    for f in ["followq.db", "followq.db-wal"] {
        if let Ok(bytes) = std::fs::read(env.path(f)) {
            outputs.push(bytes);
        }
    }
    let mut needles = vec![common::CONSUMER_SECRET.to_string()];
    for a in ["alice", "bob"] {
        let (token, secret) = common::token(a);
        needles.push(secret);
        needles.push(token);
    }
    for n in &needles {
        for (i, o) in outputs.iter().enumerate() {
            assert!(!o.windows(n.len()).any(|w| w == n.as_bytes()), "{n} found in output {i}");
        }
    }
    assert_eq!(sb.stats().bad_signatures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_world_readable_config_is_warned_about() {
    let (_sb, env) = rig(&["alice"], WINDOW_10S).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(env.path("followq.toml"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = env.cmd().arg("status").output().unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("readable by other users"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_imports_files_dropped_into_the_inbox() {
    let (sb, env) = rig(&["alice"], WINDOW_10S).await;
    let child = spawn(&env, &["run", "--watch", "--no-progress"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.write("jobs/inbox/late.csv", "screen_name\nlate_one\nlate_two\n");
    eventually(15, || sb.stats().follows.get("alice").copied().unwrap_or(0) == 2).await;
    env.write("jobs/inbox/later.csv", "screen_name\nlate_three\n");
    eventually(15, || sb.stats().follows.get("alice").copied().unwrap_or(0) == 3).await;
    signal(&child, "-INT");
    let out = wait(child).await;
    assert_eq!(out.status.code(), Some(0), "nothing left: {}", String::from_utf8_lossy(&out.stderr));
    let s = env.status();
    assert_eq!(s["jobs"]["by_outcome"]["followed"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_export_retry_verify_and_accounts_after_a_run() {
    let (sb, env) = rig(&["alice", "bob"], WINDOW_10S).await;
    // v1.1: a name X does not know costs a request there (v2 resolves it first), and `verify`
    // reads friendships/lookup.
    env.set_api_version("1.1");
    let (bob, _) = common::token("bob");
    env.write("l.csv", "account,screen_name\nalice,one\nalice,two\nalice,p_three\nbob,x_four\nbob,five\n");
    env.cmd().args(["import", "l.csv"]).assert().success();
    let plan = env.cmd().args(["run", "--dry-run"]).output().unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.contains("dry run: nothing is sent") && plan.contains("alice") && plan.contains("3 waiting"),
        "{plan}"
    );
    assert_eq!(sb.stats().requests, 0, "a dry run sends nothing");

    sb.script(&bob, &[Scripted { status: 418, code: 0 }]);
    let out = env.cmd().args(["run", "--no-progress"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "a refused job: finished, some failed");

    let s = env.status();
    assert_eq!(s["jobs"]["total"], 5);
    assert_eq!(s["jobs"]["by_state"]["done"], 5);
    // bob's first request (x_four) got the scripted 418.
    assert_eq!(s["jobs"]["by_outcome"]["followed"], 3);
    assert_eq!(s["jobs"]["by_outcome"]["requested"], 1);
    assert_eq!(s["jobs"]["by_outcome"]["refused"], 1);
    let alice = s["accounts"].as_array().unwrap().iter().find(|a| a["name"] == "alice").unwrap();
    assert_eq!(alice["budget"], serde_json::json!({"limit": 100, "used": 3, "left": 97}));
    assert_eq!(s["app"]["budget"]["used"], 5);
    assert!(s["eta"].is_null());
    let table = String::from_utf8_lossy(&env.cmd().arg("status").output().unwrap().stdout).to_string();
    assert!(table.contains("alice") && table.contains("3/100") && table.contains("followed 2, requested 1"), "{table}");

    let json: Value = serde_json::from_slice(
        &env.cmd().args(["export", "--format", "json", "--outcome", "refused"]).output().unwrap().stdout,
    )
    .unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let keys: Vec<&str> = rows[0].as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = [
        "account",
        "target",
        "target_kind",
        "outcome",
        "attempts",
        "last_status",
        "last_code",
        "last_message",
        "created_at",
        "finished_at",
        "confirmed_at",
    ];
    want.sort();
    let mut got = keys.clone();
    got.sort();
    assert_eq!(got, want);
    assert_eq!((rows[0]["target"].as_str(), rows[0]["last_status"].as_i64()), (Some("x_four"), Some(418)));
    let csv =
        String::from_utf8_lossy(&env.cmd().args(["export", "-o", "out.csv"]).output().unwrap().stdout).to_string();
    assert!(csv.is_empty());
    let csv = common::read(&env.path("out.csv"));
    assert!(csv.starts_with(
        "account,target,target_kind,outcome,attempts,last_status,last_code,last_message,created_at,finished_at,confirmed_at\n"
    ));
    assert_eq!(csv.lines().count(), 6);
    let bad = env.cmd().args(["export", "--outcome", "nonsense"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));

    let out = env.cmd().args(["retry", "--outcome", "refused"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-queued 1 jobs"));
    env.cmd().args(["run", "--no-progress"]).assert().success();
    assert_eq!(env.status()["jobs"]["by_outcome"]["not_found"], 1, "the re-queued job was sent again");

    let out = env.cmd().arg("verify").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // v1.1's lookup shows the request to p_three too (issue 16: requests are confirmed there).
    assert!(text.contains("alice: 3 confirmed, 0 not visible yet") && text.contains("bob: 1 confirmed"), "{text}");
    assert_eq!(out.status.code(), Some(0));

    // A revoked token: check says so; once it verifies again, check resumes the account.
    sb.script_always(&bob, Scripted { status: 401, code: 89 });
    let out = env.cmd().args(["accounts", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bob: FAILED: HTTP 401 code 89 Invalid or expired token."));
    env.write("m.csv", "account,screen_name\nbob,six\n");
    env.cmd().args(["import", "m.csv"]).assert().success();
    let out = env.cmd().args(["run", "--no-progress"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "bob stopped with work left");
    let list = String::from_utf8_lossy(&env.cmd().args(["accounts", "list"]).output().unwrap().stdout).to_string();
    assert!(list.contains("bob") && list.contains("stopped: credentials rejected (code 89"), "{list}");
    sb.clear_script(&bob);
    let out = env.cmd().args(["accounts", "check"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("bob: ok (was stopped; resumed)"));
    env.cmd().args(["run", "--no-progress"]).assert().success();
    assert_eq!(env.status()["jobs"]["by_outcome"]["followed"], 4);
}

#[test]
fn run_without_credentials_is_a_configuration_error() {
    let env = Env::new(&[], "http://127.0.0.1:9", "");
    let out = env.cmd().args(["run"]).env("FOLLOWQ_CONSUMER_KEY", "").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = env.cmd().args(["run", "--stop-at", "25:00"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected HH:MM"));
}

/// The demo, as a person sees it: in a pseudo-terminal 72 columns wide (issue 12, 20 and 21:
/// the bars fit and show each account's state before anything else; the screen explains its
/// faults and verdict, and its imports show no temporary path). X's day is compressed into 2 s
/// rather than the default 24 s: the same demo, in a fraction of the time.
#[test]
fn the_demo_runs_clean_and_explains_itself_in_a_narrow_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("followq");
    let out = assert_cmd::Command::new("script")
        .current_dir(dir.path())
        .args([
            "-q",
            "-e",
            "-c",
            &format!("stty cols 72 rows 40; exec {} demo --window 2s", bin.display()),
            "/dev/null",
        ])
        .env_remove("FOLLOWQ_CONFIG")
        .env_remove("FOLLOWQ_DB")
        .timeout(Duration::from_secs(300))
        .output()
        .expect("`script` (util-linux) runs the demo in a pseudo-terminal");
    let raw = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{raw}");
    // The screen without its cursor movements: one line per drawn line.
    let mut text = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Colours (`…m`) go; cursor movements end a line.
            let mut last = ' ';
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() && n != '[' {
                    last = n;
                    break;
                }
            }
            if last != 'm' {
                text.push('\n');
            }
        } else {
            text.push(c);
        }
    }
    // indicatif fills a line to the terminal's width and lets the terminal wrap it.
    let chars: Vec<Vec<char>> = text.split(['\n', '\r']).map(|l| l.chars().collect()).collect();
    let lines: Vec<String> =
        chars.iter().flat_map(|l| l.chunks(72).map(|c| c.iter().collect::<String>().trim_end().to_string())).collect();
    let bars: Vec<&String> = lines.iter().filter(|l| l.starts_with("alice ") && l.contains('[')).collect();
    assert!(bars.len() > 10, "{raw}");
    for bar in &bars {
        let state = bar.split(']').nth(1).unwrap_or("").split_whitespace().nth(1).unwrap_or("");
        let known = ["sending", "waiting", "next", "window", "done", "paused", "STOPPED"];
        // (A bar's first frame has no message yet.)
        assert!(state.is_empty() || known.contains(&state), "the state is not first: {bar:?}");
    }
    // Each window's use follows the state: "12 of 50/250ms, 40 of 400/24s" (v2's windows, compressed).
    let with_state = bars.iter().filter(|b| b.contains(" of 50/")).count();
    assert!(with_state > 10, "{with_state} of {} bars show a state", bars.len());
    for wanted in [
        "window violations 0 | bad signatures 0",
        "OK: no limit broken",
        "1575 rows",
        "faults the sandbox injects on purpose",
        "status 0: no HTTP answer at all",
        "a repeated create is a follow sent again",
        "#1    jobs/example.csv  1575 rows",
    ] {
        assert!(text.contains(wanted), "{wanted:?} not on the screen:\n{text}");
    }
    assert!(!text.contains("/tmp"), "a temporary path on the screen:\n{text}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "the demo leaves nothing behind");
}

#[test]
fn the_sandbox_command_serves_on_loopback_and_reports_stats() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("followq"))
        .current_dir(dir.path())
        .args(["sandbox", "--port", "0", "--faults", "503=0.5,seed=3"])
        .env_remove("FOLLOWQ_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")).unwrap().to_string();
    let creds = lines.next().unwrap().unwrap();
    assert!(creds.contains("demo credentials"), "{creds}");
    // A plain HTTP/1.0 GET: the response ends when the server closes the connection.
    let mut conn = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    std::io::Write::write_all(&mut conn, b"GET /_sandbox/stats HTTP/1.0\r\nHost: sandbox\r\n\r\n").unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut conn, &mut response).unwrap();
    assert!(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"), "{response}");
    let stats: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(stats["requests"], 0);
    assert_eq!(stats["violations"], 0);
    let _ = child.kill();
    let _ = child.wait();
}

/// A connection to the test's database that gives up at once on a lock, for checking who holds
/// it.
async fn impatient(db: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    sqlx::sqlite::SqliteConnectOptions::new().filename(db).busy_timeout(Duration::ZERO).connect().await.unwrap()
}

/// Defect: `sleep 25 | followq import -` opened its transaction first and held the write lock
/// while it waited for input; ~10 s later a running `run` exited 1 ("database is locked"), and
/// `status` needed the write lock too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_waiting_for_input_holds_no_lock_and_status_needs_none() {
    use sqlx::Connection;
    use std::io::Write;
    let (sb, env) = rig(&["alice"], WINDOW_10S).await;
    env.write("l.csv", "a1\na2\na3\n");
    env.cmd().args(["import", "l.csv"]).assert().success();
    let mut import = Command::new(assert_cmd::cargo::cargo_bin("followq"));
    import.current_dir(env.dir.path()).args(["import", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut import = import.stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = import.stdin.take().unwrap();
    writeln!(stdin, "screen_name\nslow_one\nslow_two").unwrap();
    stdin.flush().unwrap();
    // The import has read its first rows and waits for more: the lock is free...
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut conn = impatient(&env.db()).await;
    sqlx::query("begin immediate").execute(&mut conn).await.expect("the waiting import holds the write lock");
    // ...and status works while another writer holds it.
    let out = env.cmd().args(["status", "--json"]).output().unwrap();
    assert!(out.status.success(), "status under a writer's lock: {}", String::from_utf8_lossy(&out.stderr));
    sqlx::query("rollback").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    // A run beside the waiting import finishes its work.
    let out = env.cmd().args(["run", "--no-progress"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sb.stats().follows.get("alice").copied(), Some(5), "the three and the two the import has so far");
    writeln!(stdin, "slow_three").unwrap();
    drop(stdin);
    let out = wait(import).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("<stdin>: 3 rows read, 3 added"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Defect: a second run through a symlink (or another path to the same file) was not refused;
/// its start-up recovery took the first run's live requests for a crash's, and 4 follows were
/// sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_through_a_symlink_or_another_path_is_refused() {
    let (sb, env) =
        rig(&["alice"], "[limits]\nper_user = 100\nper_app = 300\nwindow = \"10s\"\npace = \"spread\"\n").await;
    env.write("l.csv", (0..20).map(|i| format!("t{i}\n")).collect::<String>());
    env.cmd().args(["import", "--account", "alice", "l.csv"]).assert().success();
    std::fs::create_dir(env.path("sub")).unwrap();
    std::os::unix::fs::symlink(env.db(), env.path("sub/link.db")).unwrap();
    // (A hard link is refused by every command: see the next test.)
    let first = spawn(&env, &["run", "--no-progress"]);
    eventually(10, || sb.stats().creates.get("alice").copied().unwrap_or(0) >= 1).await;
    let absolute = env.db().display().to_string();
    for db in ["sub/link.db", "./sub/../followq.db", absolute.as_str()] {
        let out = env.cmd().args(["--db", db, "run", "--no-progress"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{db}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("another `followq run` is working on"), "{db}");
    }
    signal(&first, "-TERM");
    assert_eq!(wait(first).await.status.code(), Some(4));
    let store = Store::open(&env.db()).await.unwrap();
    let log = store.attempt_log().await.unwrap();
    assert!(log.iter().all(|a| a.result != Some(AttemptResult::Unknown)), "no second run recovered: {log:?}");
    assert_eq!(sb.stats().duplicate_creates, 0);
    assert_eq!(sb.stats().creates["alice"], log.len() as u64);
}

/// Defect: a reply that arrived while the process was stopped (SIGSTOP past the time-out, then
/// SIGCONT) was taken as a time-out and the follow sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_arrives_while_the_process_is_stopped_is_used_not_resent() {
    let (sb, env) = rig(&["alice"], WINDOW_10S).await;
    // Each answer comes a second after its request; the client's time-out is 2 s.
    sb.set_faults(Faults { hang: 1.0, hang_for: Duration::from_secs(1), seed: 3, ..Faults::default() });
    env.write("l.csv", "only_one\n");
    env.cmd().args(["import", "--account", "alice", "l.csv"]).assert().success();
    let child = spawn(&env, &["run", "--no-progress"]);
    eventually(10, || sb.stats().creates.get("alice").copied().unwrap_or(0) >= 1).await;
    signal(&child, "-STOP");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    signal(&child, "-CONT");
    let out = wait(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sb.stats().creates["alice"], 1, "the follow was sent again");
    let s = env.status();
    assert_eq!(s["jobs"]["by_outcome"]["followed"], 1);
}

/// Defect: one unreadable or malformed file in the inbox stopped `run --watch`, or was imported
/// again every 2 s forever (a warning and an unfinished import each time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_inbox_file_is_reported_once_and_the_watch_goes_on() {
    let (sb, env) = rig(&["alice"], WINDOW_10S).await;
    let child = spawn(&env, &["run", "--watch", "--no-progress"]);
    env.write("jobs/inbox/bad.csv", "name,comment\nbob,hi\n");
    env.write("jobs/inbox/good.csv", "screen_name\ngood_one\n");
    eventually(20, || sb.stats().follows.get("alice").copied().unwrap_or(0) == 1).await;
    // Three more scans of the inbox (one a second).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    signal(&child, "-INT");
    let out = wait(child).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("inbox file not imported").count(), 1, "{stderr}");
    let s = env.status();
    let imports = s["imports"].as_array().unwrap();
    assert_eq!(imports.len(), 2, "{imports:?}");
    let bad = imports.iter().find(|i| i["source"].as_str().unwrap().ends_with("bad.csv")).unwrap();
    assert!(bad["error"].as_str().unwrap().contains("no recognised column"), "{bad}");
}

/// Found from the outside (issue 11, 5): through a hard link, another command opened the same
/// database under a second name, with a WAL of its own, and corrupted it. Every command refuses
/// a database with more than one name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_two_names_is_refused_by_every_command() {
    let (_sb, env) = rig(&["alice"], WINDOW_10S).await;
    env.write("l.csv", "one\n");
    env.cmd().args(["import", "--account", "alice", "l.csv"]).assert().success();
    std::fs::hard_link(env.db(), env.path("hard.db")).unwrap();
    for args in [&["import", "--account", "alice", "l.csv"][..], &["status"], &["export"], &["run"]] {
        for db in ["followq.db", "hard.db"] {
            let out = env.cmd().arg("--db").arg(db).args(args).output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{db} {args:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("has 2 names (hard links)"), "{db} {args:?}: {stderr}");
        }
    }
    std::fs::remove_file(env.path("hard.db")).unwrap();
    assert_eq!(env.status()["jobs"]["total"], 1);
}

/// Found from the outside: `status` and `export` fell back to migrating a database that was
/// not followq's (another program's, an empty file), and failed on a read-only folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_commands_never_turn_another_file_into_a_followq_database() {
    use sqlx::{ConnectOptions, Connection};
    let (_sb, env) = rig(&["alice"], WINDOW_10S).await;
    let other = env.path("other.db");
    let mut conn =
        sqlx::sqlite::SqliteConnectOptions::new().filename(&other).create_if_missing(true).connect().await.unwrap();
    sqlx::query("create table mydata (x)").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    std::fs::write(env.path("empty.db"), "").unwrap();
    for db in ["other.db", "empty.db"] {
        let before = std::fs::read(env.path(db)).unwrap();
        for cmd in ["status", "export"] {
            let out = env.cmd().args(["--db", db, cmd]).output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{db} {cmd}");
            assert!(String::from_utf8_lossy(&out.stderr).contains("is not a followq database"), "{db} {cmd}");
        }
        assert_eq!(std::fs::read(env.path(db)).unwrap(), before, "{db} was written");
        assert!(!env.path(&format!("{db}-wal")).exists());
    }
}

/// Found from the outside: with `http_proxy` set, reqwest sent the plain-http requests meant
/// for the loopback sandbox, signed, through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_sandbox_never_goes_through_a_proxy() {
    let (sb, env) = rig(&["alice"], WINDOW_10S).await;
    // A proxy that would refuse every connection: going through it would fail the check.
    let out = env
        .cmd()
        .args(["accounts", "check"])
        .env("http_proxy", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("all_proxy", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice: ok"));
    assert_eq!(sb.stats().bad_signatures, 0);
    assert!(sb.stats().requests >= 1, "the request reached the sandbox itself");
}

/// Found from the outside: with `margin = "0s"` every claim's own commit counted as a wait for
/// a slot, and the claim was handed back unsent with its attempt counted (12 attempts for 5
/// jobs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_margin_wastes_no_budget() {
    let (sb, env) = rig(&["alice"], &format!("{WINDOW_10S}margin = \"0s\"\n")).await;
    env.write("l.csv", (0..5).map(|i| format!("m{i}\n")).collect::<String>());
    env.cmd().args(["import", "--account", "alice", "l.csv"]).assert().success();
    let out = env.cmd().args(["run", "--no-progress"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let store = Store::open(&env.db()).await.unwrap();
    let log = store.attempt_log().await.unwrap();
    assert_eq!(log.len(), 5, "{log:?}");
    assert_eq!(sb.stats().creates["alice"], 5);
}

/// Found from the outside: `import --dry-run` waited for the write lock (it registered the
/// accounts first), and counted each file apart: `a2` in two files was "2 + 2 would add"
/// where the import adds 3. A file that needs `--account` was recorded as failed for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_takes_no_lock_and_counts_like_the_import() {
    use sqlx::Connection;
    let (_sb, env) = rig(&["alice", "bob"], WINDOW_10S).await;
    env.write("a.csv", "a1\na2\n");
    env.write("b.csv", "a2\na3\n");
    let dry = env.cmd().args(["import", "--dry-run", "--account", "alice", "a.csv", "b.csv"]).output().unwrap();
    let dry_out = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(
        dry_out.contains("a.csv: 2 rows read, 2 would add") && dry_out.contains("b.csv: 2 rows read, 1 would add"),
        "{dry_out}"
    );
    assert!(!env.db().exists(), "a dry run created the database");
    env.cmd().args(["import", "--account", "alice", "a.csv"]).assert().success();
    let mut conn = impatient(&env.db()).await;
    sqlx::query("begin immediate").execute(&mut conn).await.unwrap();
    let out = env.cmd().args(["import", "--dry-run", "--account", "alice", "b.csv"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("b.csv: 2 rows read, 1 would add"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("waiting"), "{}", String::from_utf8_lossy(&out.stderr));
    sqlx::query("rollback").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    // Two accounts, no account column: the inbox file waits for --account, not recorded failed.
    env.write("jobs/inbox/noacct.csv", "screen_name\nwaits\n");
    let f = std::fs::File::options().write(true).open(env.path("jobs/inbox/noacct.csv")).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(5)).unwrap();
    let out = env.cmd().args(["import"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --account NAME"));
    let out = env.cmd().args(["import", "--account", "bob"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("noacct.csv: 1 rows read, 1 added"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Issue 12, 11: with failed jobs the run said "every job finished" and named none; transient
/// failures were not logged at the default level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_a_run_says_what_failed_why_and_what_to_do() {
    let (sb, env) = rig(&["alice", "bob", "carol"], WINDOW_10S).await;
    let (alice, bob, carol) = (common::token("alice").0, common::token("bob").0, common::token("carol").0);
    env.write("l.csv", "account,screen_name\nalice,a_one\nalice,a_two\nbob,b_one\ncarol,c_one\ncarol,c_two\n");
    env.cmd().args(["import", "l.csv"]).assert().success();
    // alice: one refusal; bob: a 503 past every retry (4); carol: revoked credentials.
    sb.script(&alice, &[Scripted { status: 418, code: 0 }]);
    sb.script(&bob, &[Scripted { status: 503, code: 130 }; 4]);
    sb.script_always(&carol, Scripted { status: 401, code: 89 });
    let out = env.cmd().args(["run", "--no-progress"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("1 jobs failed (transient errors past the retries) and 1 were refused by X"), "{stderr}");
    assert!(stderr.contains("1 × failed: Over capacity.") && stderr.contains("1 × refused:"), "{stderr}");
    assert!(stderr.contains("`followq export --outcome failed,refused` lists them; `followq retry` queues them again"));
    assert!(stderr.contains("2 jobs wait on carol, which is stopped"), "{stderr}");
    assert_eq!(stderr.matches("request failed; it will be retried").count(), 3, "once per failure: {stderr}");
    assert_eq!(stderr.matches("job failed: no more retries").count(), 1, "{stderr}");
}

/// Issue 12, 12: work waiting on a stopped account vanished from the plan ("eta: nothing
/// queued", the app's next slot "now", `run --dry-run` "nothing queued").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_waiting_on_a_stopped_account_stays_in_the_plan() {
    let (sb, env) = rig(&["alice"], WINDOW_10S).await;
    sb.script_always(&common::token("alice").0, Scripted { status: 401, code: 89 });
    env.write("l.csv", "s_one\ns_two\ns_three\n");
    env.cmd().args(["import", "--account", "alice", "l.csv"]).assert().success();
    env.cmd().args(["run", "--no-progress"]).assert().code(4);
    let s = env.status();
    assert_eq!(s["waiting_on_stopped"], 3);
    assert!(s["eta"].is_null() && s["app"]["next_slot"].is_null(), "{s}");
    let table = String::from_utf8_lossy(&env.cmd().arg("status").output().unwrap().stdout).to_string();
    assert!(table.contains("eta: none — 3 jobs wait on stopped accounts"), "{table}");
    let plan = String::from_utf8_lossy(&env.cmd().args(["run", "--dry-run"]).output().unwrap().stdout).to_string();
    assert!(plan.contains("3 jobs wait on stopped accounts: nothing can be sent until one is resumed"), "{plan}");
}

/// Issue 12, 13: `status --json` left out zero counts (`"by_state": {"done": 62}`) though the
/// README documents every state and outcome as a stable key.
#[test]
fn status_json_has_every_documented_key_even_at_zero() {
    let env = common::Env::new(&["alice"], "http://127.0.0.1:9", "");
    env.write("l.csv", "k_one\n");
    env.cmd().args(["import", "--account", "alice", "l.csv"]).assert().success();
    let s = env.status();
    for state in ["queued", "in_flight", "done"] {
        assert!(s["jobs"]["by_state"][state].is_i64(), "by_state.{state}: {s}");
        assert!(s["accounts"][0]["jobs"]["by_state"][state].is_i64(), "accounts[0] by_state.{state}: {s}");
    }
    for outcome in [
        "followed",
        "requested",
        "already_following",
        "blocked",
        "suspended",
        "not_found",
        "refused",
        "failed",
        "unconfirmed",
    ] {
        assert_eq!(s["jobs"]["by_outcome"][outcome], 0, "by_outcome.{outcome}");
        assert_eq!(s["accounts"][0]["jobs"]["by_outcome"][outcome], 0);
    }
    for key in ["now", "window_ms", "eta", "waiting_on_stopped", "imports", "app"] {
        assert!(s.get(key).is_some(), "{key}: {s}");
    }
    for key in ["confirmed", "awaiting_confirmation"] {
        assert_eq!(s[key], 0, "{key}: {s}");
        assert_eq!(s["accounts"][0][key], 0, "accounts[0].{key}: {s}");
    }
}

/// Issue 12, 15: a hung request showed every account as "sending" and nothing was logged
/// until the end. The time-out is logged when it happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_out_is_logged_when_it_happens() {
    let (sb, env) = rig(&["alice"], WINDOW_10S).await;
    sb.set_faults(Faults { hang: 1.0, hang_for: Duration::from_secs(30), seed: 5, ..Faults::default() });
    env.write("l.csv", "hangs\n");
    env.cmd().args(["import", "--account", "alice", "l.csv"]).assert().success();
    let child = spawn(&env, &["run", "--no-progress", "--log-file", "run.log"]);
    // The 2 s time-out, then the log line at once (the retry hangs again).
    eventually(8, || std::fs::read_to_string(env.path("run.log")).is_ok_and(|l| l.contains("timed out after 2s")))
        .await;
    signal(&child, "-INT");
    let out = wait(child).await;
    assert_eq!(out.status.code(), Some(4));
}

/// Issue 12, 16: in the wrong folder `followq status` silently created an empty database; a
/// reading command never creates one, and says where it looked.
#[test]
fn reading_commands_never_create_the_database_and_say_where_they_looked() {
    let env = common::Env::new(&["alice"], "http://127.0.0.1:9", "");
    for cmd in ["status", "export", "accounts"] {
        let out = env.cmd().arg(cmd).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let looked = env.db().display().to_string();
        assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("no database at {looked}")), "{cmd}");
        assert!(!env.db().exists(), "{cmd} created the database");
    }
}

/// Issue 12, 17: `followq status | head -3` printed "Broken pipe (os error 32)" and exited 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_a_command_quietly_with_status_0() {
    let env = common::Env::new(&["alice"], "http://127.0.0.1:9", "");
    env.write("l.csv", (0..3000).map(|i| format!("p{i}\n")).collect::<String>());
    env.cmd().args(["import", "--account", "alice", "l.csv"]).assert().success();
    for args in [&["status"][..], &["export"], &["export", "--format", "json"], &["run", "--dry-run"]] {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("followq"));
        c.current_dir(env.dir.path()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        drop(child.stdout.take());
        let out = wait(child).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("Broken pipe") && !stderr.contains("followq:") && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}

/// Issue 12, 18: SQLite errors were printed two or three times, some without the database.
#[test]
fn an_error_is_said_once_with_the_database_named() {
    let env = common::Env::new(&["alice"], "http://127.0.0.1:9", "");
    std::fs::write(env.path("corrupt.db"), [b"SQLite format 3\0".as_slice(), &[0xAB; 4096]].concat()).unwrap();
    let out = env.cmd().args(["--db", "corrupt.db", "status"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("followq:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert_eq!(errors[0].matches("corrupt.db").count(), 1, "{stderr}");
    assert!(errors[0].contains("file is not a database"), "{stderr}");
    assert_eq!(errors[0].matches("not a database").count(), 1, "said once: {stderr}");
    std::fs::create_dir(env.path("folder.db")).unwrap();
    let out = env.cmd().args(["--db", "folder.db", "status"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("folder.db is a folder, not a database file"));
}

/// What a user with a pay-per-use app sees on the first `run` (v2, X's answer `client-forbidden`):
/// one request, exit 5, a message that says why and what to do, every job still queued, and
/// `status` saying so until a run gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_cannot_follow_is_told_so_at_the_first_refusal() {
    let (sb, env) = rig(&["alice"], WINDOW_10S).await;
    sb.set_refusal(Some(Refusal::ClientForbidden));
    env.write("l.csv", "screen_name\none\ntwo\nthree\n");
    env.cmd().args(["import", "l.csv"]).assert().success();
    let out = env.cmd().args(["run", "--no-progress"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("since 2026-04-20 X offers follows on Enterprise plans only"), "{stderr}");
    assert!(stderr.contains("stays queued"), "{stderr}");
    assert_eq!(sb.stats().creates.values().sum::<u64>(), 1);
    let s = env.status();
    assert_eq!(s["jobs"]["by_state"]["queued"], 3);
    assert!(s["app_stopped"]["reason"].as_str().unwrap().contains("Enterprise plans only"), "{s}");
    let table = String::from_utf8_lossy(&env.cmd().arg("status").output().unwrap().stdout).to_string();
    assert!(table.contains("APP STOPPED") && table.contains("Enterprise plans only"), "{table}");
    sb.set_refusal(None);
    env.cmd().args(["run", "--no-progress"]).assert().success();
    assert!(env.status()["app_stopped"].is_null());
}

/// `followq resolve` resolves every queued name now; the names X does not know end
/// `not_found` without a follow, and a run after it asks X about none of them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_ends_unknown_names_before_any_follow() {
    let (sb, env) = rig(&["alice"], WINDOW_10S).await;
    let mut csv = String::from("screen_name\n");
    for i in 0..150 {
        csv.push_str(&format!("n{i}\n"));
    }
    csv.push_str("x_nobody\ns_banned\n");
    env.write("l.csv", &csv);
    env.cmd().args(["import", "l.csv"]).assert().success();
    // An account not configured is an error (as for `retry` and `verify`); any case is the account.
    let out = env.cmd().args(["resolve", "--account", "zed"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("zed"));
    let out = env.cmd().args(["resolve", "--no-progress", "--account", "ALICE"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("resolved 152 usernames; 2 jobs ended"));
    let st = sb.stats();
    assert_eq!((st.lookups, st.lookup_most_names, st.creates.values().sum::<u64>()), (2, 100, 0));
    let s = env.status();
    assert_eq!(
        (s["jobs"]["by_outcome"]["not_found"].as_i64(), s["jobs"]["by_outcome"]["suspended"].as_i64()),
        (Some(1), Some(1))
    );
    env.cmd().args(["run", "--no-progress"]).assert().success();
    let st = sb.stats();
    assert_eq!((st.lookups, st.names_asked_again, st.follows_of_unknown), (2, 0, 0));
    assert_eq!(st.creates.values().sum::<u64>(), 150);
    // v1.1 follows by name: nothing to resolve, and it says so.
    env.set_api_version("1.1");
    let out = env.cmd().args(["resolve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("api.version"));
}
