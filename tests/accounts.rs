//! `followq accounts add|remove|list` through the real binary and the sandbox's PIN flow: the
//! user's terminal played by the test (it reads the page from stdout, approves it at the
//! sandbox, types the PIN).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{CONSUMER_KEY, CONSUMER_SECRET, Env};
use followq::api::Client;
use followq::api::authorize::{FlowError, RequestToken};
use followq::config::{Secret, TEMPLATE};
use followq::sandbox::{NotApproved, Sandbox};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// What a command printed and how it ended.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// A folder with `followq init`'s commented template, pointed at the sandbox with the test
/// app's keys and no account; limits that let a few follows go at once.
fn env_from_template(base_url: &str) -> Env {
    let env = Env::new(&[], base_url, "");
    let text = TEMPLATE
        .replace("base_url = \"https://api.twitter.com\"", &format!("base_url = \"{base_url}\""))
        .replace("consumer_key = \"\"", &format!("consumer_key = \"{CONSUMER_KEY}\""))
        .replace("consumer_secret = \"\"", &format!("consumer_secret = \"{CONSUMER_SECRET}\""))
        .replace("pace = \"spread\"", "pace = \"asap\"")
        .replace("settle = \"2m\"", "settle = \"100ms\"")
        .replace("retry_after = \"10m\"", "retry_after = \"1s\"")
        // 15 a window, as the sandbox holds it to, but not one a minute.
        .replace("per_user = \"15/15m\"", "per_user = \"15/15s\"")
        .replace("per_app = \"15/15m\"", "per_app = \"15/15s\"");
    env.write("followq.toml", text);
    set_mode(&env.path("followq.toml"), 0o600);
    env
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn command_with(env: &Env, args: &[&str], path: Option<&str>, vars: &[(&str, &str)]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(assert_cmd::cargo::cargo_bin("followq"));
    c.current_dir(env.dir.path()).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("FOLLOWQ_") {
            c.env_remove(k);
        }
    }
    if let Some(p) = path {
        c.env("PATH", p);
    }
    for (k, v) in vars {
        c.env(k, v);
    }
    c.kill_on_drop(true);
    c
}

/// `followq ARGS` as a person at the terminal: reads stdout up to the authorization page,
/// approves it at the sandbox as `screen_name`, and types the PIN shown. `pin` overrides what
/// is typed (a mistyped PIN).
async fn add(env: &Env, sb: &Sandbox, args: &[&str], screen_name: &str, pin: Option<&str>) -> Ran {
    add_with_path(env, sb, args, screen_name, pin, None).await
}

async fn add_with_path(
    env: &Env,
    sb: &Sandbox,
    args: &[&str],
    screen_name: &str,
    pin: Option<&str>,
    path: Option<&str>,
) -> Ran {
    add_with(env, sb, args, screen_name, pin, path, &[]).await
}

async fn add_with(
    env: &Env,
    sb: &Sandbox,
    args: &[&str],
    screen_name: &str,
    pin: Option<&str>,
    path: Option<&str>,
    vars: &[(&str, &str)],
) -> Ran {
    let mut child = command_with(env, args, path, vars).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        stderr.read_to_string(&mut s).await.unwrap();
        s
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let mut token = None;
    while token.is_none() {
        let Some(line) = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.unwrap().unwrap()
        else {
            break;
        };
        token = line.split("oauth_token=").nth(1).map(|t| t.split_whitespace().next().unwrap_or("").to_string());
        stdout.push_str(&line);
        stdout.push('\n');
    }
    if let Some(token) = &token {
        let shown = sb.approve(token, screen_name).unwrap();
        let typed = pin.unwrap_or(&shown);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{typed}\n").as_bytes()).await.unwrap();
    }
    while let Some(line) = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.unwrap().unwrap() {
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.unwrap().unwrap();
    Ran { code: status.code(), stdout, stderr: err_task.await.unwrap() }
}

/// `followq ARGS` with nothing typed.
async fn run(env: &Env, args: &[&str]) -> Ran {
    run_with(env, args, &[]).await
}

/// [`run`] with these environment variables.
async fn run_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Ran {
    let child = command_with(env, args, None, vars).stdin(Stdio::null()).spawn().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await.unwrap().unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The tokens `accounts add` wrote for `name`, from the config or the secrets file.
fn tokens_of(env: &Env, file: &str, name: &str) -> (String, String) {
    let t: toml::Table = toml::from_str(&common::read(&env.path(file))).unwrap();
    let entry = match t.get("accounts").unwrap() {
        toml::Value::Array(list) => list.iter().find(|a| a["name"].as_str() == Some(name)).unwrap().clone(),
        toml::Value::Table(by_name) => by_name[name].clone(),
        other => panic!("{other:?}"),
    };
    (entry["token"].as_str().unwrap().to_string(), entry["token_secret"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_added_with_the_pin_flow_then_follow_with_no_bad_signature() {
    let sb = common::sandbox(&[], 400, 1000, Duration::from_secs(86_400)).await;
    let env = env_from_template(&sb.base_url());
    // --open: a stand-in for the desktop's opener records the page it was given.
    let bin = tempfile::tempdir().unwrap();
    let opened = bin.path().join("opened");
    let opener = bin.path().join("xdg-open");
    std::fs::write(&opener, format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", opened.display())).unwrap();
    set_mode(&opener, 0o755);
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());

    let alice =
        add_with_path(&env, &sb, &["-vv", "accounts", "add", "alice", "--open"], "alice_real", None, Some(&path)).await;
    assert_eq!(alice.code, Some(0), "{}\n{}", alice.stdout, alice.stderr);
    let id = followq::sandbox::user_id("alice_real");
    assert!(
        alice.stdout.contains(&format!("added alice as @alice_real (id {id}); tokens in followq.toml (mode 0600)")),
        "{}",
        alice.stdout
    );
    let page = alice.stdout.lines().find(|l| l.contains("/oauth/authorize?oauth_token=")).unwrap().trim().to_string();
    assert_eq!(common::read(&opened), page, "--open opened the page it printed");
    assert!(alice.stdout.contains("X then shows a PIN. Enter it here: "), "{}", alice.stdout);

    let bob =
        add(&env, &sb, &["-vv", "accounts", "add", "bob", "--secrets-file", "followq.secrets.toml"], "bob_real", None)
            .await;
    assert_eq!(bob.code, Some(0), "{}\n{}", bob.stdout, bob.stderr);
    assert!(bob.stdout.contains("added bob as @bob_real"), "{}", bob.stdout);
    assert!(bob.stdout.contains("tokens in followq.secrets.toml (mode 0600)"), "{}", bob.stdout);

    // The template's every comment is still there, the files are private, the tokens where asked.
    let config = common::read(&env.path("followq.toml"));
    for line in TEMPLATE.lines().filter(|l| l.trim_start().starts_with('#')) {
        assert!(config.contains(line), "lost comment {line:?}:\n{config}");
    }
    let key = config.find("\nsecrets = \"followq.secrets.toml\"\n").expect("the secrets key");
    assert!(config.starts_with("# followq configuration") && key < config.find("[api]").unwrap(), "{config}");
    assert_eq!(mode(&env.path("followq.toml")), 0o600);
    assert_eq!(mode(&env.path("followq.secrets.toml")), 0o600);
    let (alice_token, alice_secret) = tokens_of(&env, "followq.toml", "alice");
    let (bob_token, bob_secret) = tokens_of(&env, "followq.secrets.toml", "bob");
    assert!(!config.contains(&bob_token), "bob's tokens only in the secrets file");

    let list = run(&env, &["accounts", "list"]).await;
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    assert!(list.stdout.contains(&format!("@alice_real ({id})")), "{}", list.stdout);
    assert!(list.stdout.contains("@bob_real"), "{}", list.stdout);

    env.write("a.csv", "target\none\ntwo\nthree\n");
    env.write("b.csv", "target\nfour\nfive\n");
    for (account, file) in [("alice", "a.csv"), ("bob", "b.csv")] {
        let r = run(&env, &["import", "--account", account, file]).await;
        assert_eq!(r.code, Some(0), "{}", r.stderr);
    }
    let ran = run(&env, &["-vv", "run", "--no-progress"]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let stats = sb.stats();
    assert_eq!(stats.bad_signatures, 0, "{stats:?}");
    assert_eq!(stats.follows.get("alice_real"), Some(&3), "{stats:?}");
    assert_eq!(stats.follows.get("bob_real"), Some(&2), "{stats:?}");
    assert_eq!((stats.request_tokens, stats.access_tokens, stats.oauth_refused), (2, 2, 0));
    // Each account's follows looked for in its following list (a look takes the follows due
    // then), and every one seen.
    let reads = stats.reads.get("following").copied().unwrap_or(0);
    assert!((2..=5).contains(&reads) && stats.read_violations == 0, "{stats:?}");
    let status = env.status();
    assert_eq!((status["confirmed"].as_i64(), status["awaiting_confirmation"].as_i64()), (Some(5), Some(0)));

    // Not one secret, nor a token, in anything printed at -vv.
    let printed = [&alice, &bob, &list, &ran].iter().map(|r| format!("{}{}", r.stdout, r.stderr)).collect::<String>();
    for secret in [&alice_token, &alice_secret, &bob_token, &bob_secret, &CONSUMER_SECRET.to_string()] {
        assert!(!printed.contains(secret.as_str()), "{secret} was printed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_a_wrong_consumer_secret_and_an_existing_name_each_say_so_and_write_nothing() {
    let sb = common::sandbox(&[], 400, 1000, Duration::from_secs(86_400)).await;
    let env = env_from_template(&sb.base_url());
    let first = add(&env, &sb, &["accounts", "add", "alice"], "alice_real", None).await;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let config = std::fs::read(env.path("followq.toml")).unwrap();
    let unchanged = |why: &str| {
        assert_eq!(std::fs::read(env.path("followq.toml")).unwrap(), config, "{why}: the config changed");
        assert_eq!(mode(&env.path("followq.toml")), 0o600, "{why}");
        let stray: Vec<_> = std::fs::read_dir(env.dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.contains(".tmp") || n.contains("secrets"))
            .collect();
        assert!(stray.is_empty(), "{why}: {stray:?}");
    };

    let wrong = add(&env, &sb, &["accounts", "add", "bob"], "bob_real", Some("0000000")).await;
    assert_eq!(wrong.code, Some(1), "{}\n{}", wrong.stdout, wrong.stderr);
    assert!(wrong.stderr.contains("X did not accept the PIN"), "{}", wrong.stderr);
    assert!(wrong.stderr.contains("Nothing was written; `followq accounts add bob` starts again"), "{}", wrong.stderr);
    unchanged("a wrong PIN");

    let garbled = add(&env, &sb, &["accounts", "add", "bob"], "bob_real", Some("12 34")).await;
    assert_eq!(garbled.code, Some(2), "{}", garbled.stderr);
    assert!(garbled.stderr.contains("'12 34' is not a PIN"), "{}", garbled.stderr);
    unchanged("a PIN that is not one");

    let taken = run(&env, &["accounts", "add", "alice", "--pin", "1234567"]).await;
    assert_eq!(taken.code, Some(2), "{}", taken.stderr);
    assert!(
        taken
            .stderr
            .contains("alice is already in followq.toml: `followq accounts add alice --force` replaces its tokens"),
        "{}",
        taken.stderr
    );
    unchanged("an existing name");

    let clash = run(&env, &["accounts", "add", "Alice", "--pin", "1234567"]).await;
    assert_eq!(clash.code, Some(2), "{}", clash.stderr);
    assert!(clash.stderr.contains("share the environment names FOLLOWQ_ALICE_TOKEN"), "{}", clash.stderr);
    unchanged("a name that reads as another's");

    let before = sb.stats().bad_signatures;
    let text = String::from_utf8(config.clone()).unwrap();
    let other_env = Env::new(&[], &sb.base_url(), "");
    other_env.write("followq.toml", text.replace(CONSUMER_SECRET, "not-the-secret"));
    set_mode(&other_env.path("followq.toml"), 0o600);
    let kept = std::fs::read(other_env.path("followq.toml")).unwrap();
    let refused = run(&other_env, &["accounts", "add", "bob"]).await;
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(refused.stderr.contains("X refused the app's consumer key and secret"), "{}", refused.stderr);
    assert!(refused.stderr.contains("HTTP 401 code 32"), "{}", refused.stderr);
    assert_eq!(std::fs::read(other_env.path("followq.toml")).unwrap(), kept, "a wrong consumer secret");
    assert_eq!(sb.stats().bad_signatures, before + 1);

    // --force replaces, in place; the old tokens are gone and the new ones work.
    let (old_token, _) = tokens_of(&env, "followq.toml", "alice");
    let again = add(&env, &sb, &["accounts", "add", "alice", "--force"], "alice_real", None).await;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(again.stdout.contains("replaced alice's tokens: alice is @alice_real"), "{}", again.stdout);
    let (new_token, _) = tokens_of(&env, "followq.toml", "alice");
    assert_ne!(old_token, new_token);
    let now = common::read(&env.path("followq.toml"));
    assert_eq!(now.matches("[[accounts]]").count(), 2, "the template's example and alice's one entry:\n{now}");
    let check = run(&env, &["accounts", "check"]).await;
    assert_eq!(check.code, Some(0), "{}{}", check.stdout, check.stderr);
}

/// The sandbox is strict where X is: a request token is spent by its first `access_token`,
/// right PIN or wrong, and is approved once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_token_is_used_once_and_approved_once() {
    let sb = common::sandbox(&[], 400, 1000, Duration::from_secs(86_400)).await;
    let settings = common::settings(&[], &sb.base_url(), 400, 1000, Duration::from_secs(86_400));
    let client = Client::new(&settings).unwrap();
    let copy = |r: &RequestToken| RequestToken { token: r.token.clone(), secret: Secret::new(r.secret.expose()) };

    let request = client.request_token().await.unwrap();
    let pin = sb.approve(&request.token, "carol").unwrap();
    assert_eq!(sb.approve(&request.token, "mallory"), Err(NotApproved::AlreadyApproved));
    let again = copy(&request);
    let access = client.access_token(request, &pin).await.unwrap();
    assert_eq!(access.screen_name, "carol");
    assert_eq!(access.user_id, followq::sandbox::user_id("carol").to_string());
    match client.access_token(again, &pin).await {
        Err(FlowError::Refused { status: 401, message, .. }) => assert_eq!(message, "Invalid request token."),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a request token was used twice"),
    }

    // A wrong PIN spends the request token too: the right one cannot follow it.
    let request = client.request_token().await.unwrap();
    let pin = sb.approve(&request.token, "dave").unwrap();
    let again = copy(&request);
    let wrong = if pin == "0000000" { "1111111" } else { "0000000" };
    assert!(matches!(client.access_token(request, wrong).await, Err(FlowError::Refused { status: 401, .. })));
    assert!(matches!(client.access_token(again, &pin).await, Err(FlowError::Refused { status: 401, .. })));
    assert_eq!(sb.approve("no-such-token", "dave"), Err(NotApproved::Invalid));
    let stats = sb.stats();
    assert_eq!((stats.request_tokens, stats.access_tokens, stats.oauth_refused), (2, 1, 3));
    assert_eq!(stats.bad_signatures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_added_in_v1_1_mode_is_confirmed_with_verify_credentials() {
    let sb = common::sandbox(&[], 400, 1000, Duration::from_secs(86_400)).await;
    let env = Env::new(&[], &sb.base_url(), "");
    env.set_api_version("1.1");
    let r = add(&env, &sb, &["accounts", "add", "erin"], "erin_x", None).await;
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&format!("added erin as @erin_x (id {})", followq::sandbox::user_id("erin_x"))));
    // The config had no [[accounts]]: one now, and the file still loads with everything it had.
    let config = common::read(&env.path("followq.toml"));
    assert!(config.contains("version = \"1.1\"") && config.contains("[[accounts]]\nname = \"erin\"\n"), "{config}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_keeps_the_jobs_unless_asked_and_waits_for_a_run() {
    let sb = common::sandbox(&[], 400, 1000, Duration::from_secs(86_400)).await;
    let env = env_from_template(&sb.base_url());
    for (name, on_x) in [("alice", "alice_real"), ("bob", "bob_real")] {
        let r = add(&env, &sb, &["accounts", "add", name, "--secrets-file", "s.toml"], on_x, None).await;
        assert_eq!(r.code, Some(0), "{}", r.stderr);
    }
    env.write("l.csv", "target\none\ntwo\nthree\n");
    for account in ["alice", "bob"] {
        assert_eq!(run(&env, &["import", "--account", account, "l.csv"]).await.code, Some(0));
    }

    let none = run(&env, &["accounts", "remove", "carol"]).await;
    assert_eq!(none.code, Some(2));
    assert!(none.stderr.contains("followq.toml has no account 'carol'"), "{}", none.stderr);

    // While a run holds the database (its lock, taken here as a run takes it), nothing changes.
    let config = std::fs::read(env.path("followq.toml")).unwrap();
    let lock = followq::worker::lock(&env.db()).unwrap();
    let busy = run(&env, &["accounts", "remove", "alice"]).await;
    assert_eq!(busy.code, Some(2), "{}", busy.stderr);
    assert!(
        busy.stderr.contains("another `followq run` is working on") && busy.stderr.contains("alice was not removed")
    );
    assert_eq!(std::fs::read(env.path("followq.toml")).unwrap(), config);
    drop(lock);

    let kept = run(&env, &["accounts", "remove", "alice"]).await;
    assert_eq!(kept.code, Some(0), "{}", kept.stderr);
    assert!(kept.stdout.contains("removed alice from followq.toml and its tokens from s.toml"), "{}", kept.stdout);
    assert!(kept.stdout.contains("its 3 queued jobs stay in followq.db"), "{}", kept.stdout);
    let secrets = common::read(&env.path("s.toml"));
    assert!(!secrets.contains("alice") && secrets.contains("[accounts.bob]"), "{secrets}");
    assert_eq!(mode(&env.path("s.toml")), 0o600);

    let dropped = run(&env, &["accounts", "remove", "bob", "--drop-jobs"]).await;
    assert_eq!(dropped.code, Some(0), "{}", dropped.stderr);
    assert!(dropped.stdout.contains("dropped its 3 queued jobs that were never sent"), "{}", dropped.stdout);
    let status = env.status();
    let queued = |name: &str| {
        // An unconfigured account with no jobs is not listed at all.
        let a = status["accounts"].as_array().unwrap().iter().find(|a| a["name"] == name);
        a.map_or(0, |a| a["jobs"]["by_state"]["queued"].as_u64().unwrap())
    };
    assert_eq!((queued("alice"), queued("bob")), (3, 0), "{status}");
    let config = common::read(&env.path("followq.toml"));
    let parsed: toml::Table = toml::from_str(&config).unwrap();
    assert!(parsed.get("accounts").is_none_or(|a| a.as_array().unwrap().is_empty()), "{config}");
    assert!(config.contains("# [[accounts]]\n# name = \"alice\""), "the template's example stays: {config}");
    let list = run(&env, &["accounts", "list"]).await;
    assert!(list.stdout.contains("unconfigured"), "{}", list.stdout);
}

/// Found from the outside: `--pin` could never succeed (each run asked for a new request
/// token). A run with no PIN typed leaves its page waiting; `--pin` (or FOLLOWQ_PIN) completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_left_waiting_by_a_script_is_completed_with_pin() {
    let sb = common::sandbox(&[], 400, 1000, Duration::from_secs(86_400)).await;
    let env = env_from_template(&sb.base_url());
    let none = run(&env, &["accounts", "add", "bob", "--pin", "1234567"]).await;
    assert_eq!(none.code, Some(2));
    assert!(none.stderr.contains("no page of bob is waiting for a PIN"), "{}", none.stderr);
    assert_eq!(sb.stats().request_tokens, 0, "nothing asked of X");

    let waiting = run(&env, &["accounts", "add", "alice"]).await;
    assert_eq!(waiting.code, Some(4), "{}{}", waiting.stdout, waiting.stderr);
    assert!(waiting.stdout.contains("`followq accounts add alice --pin PIN` completes it"), "{}", waiting.stdout);
    let token = waiting.stdout.split("oauth_token=").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let pending = env.path(".followq-authorize-alice.json");
    assert_eq!(mode(&pending), 0o600, "the waiting page's request token is kept private");
    let pin = sb.approve(&token, "alice_real").unwrap();
    let done = run(&env, &["accounts", "add", "alice", "--pin", &pin]).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(done.stdout.contains("added alice as @alice_real"), "{}", done.stdout);
    assert!(!pending.exists(), "used once");

    // FOLLOWQ_PIN, for a script that keeps it out of the command line.
    let waiting = run(&env, &["accounts", "add", "carol"]).await;
    let token = waiting.stdout.split("oauth_token=").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let pin = sb.approve(&token, "carol_c").unwrap();
    let done = run_with(&env, &["accounts", "add", "carol"], &[("FOLLOWQ_PIN", &pin)]).await;
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(done.stdout.contains("added carol as @carol_c"), "{}", done.stdout);
}

/// Found from the outside: a sandbox started again knew an added token by the followq name,
/// not by the user who approved it, and the follows went from the wrong id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_account_is_the_same_user_to_a_sandbox_started_again() {
    let sb = common::sandbox(&[], 400, 1000, Duration::from_secs(86_400)).await;
    let env = env_from_template(&sb.base_url());
    assert_eq!(add(&env, &sb, &["accounts", "add", "alice"], "alice_real", None).await.code, Some(0));
    let path = env.path("followq.toml");
    let settings =
        followq::config::load(&followq::config::Sources { path: &path, explicit: true, env: Default::default() })
            .unwrap();
    let (config, from_config) = followq::cli::sandbox::config_from(&settings);
    assert!(from_config);
    let token = &settings.account("alice").unwrap().token;
    assert_eq!(config.tokens[token].1, "alice_real");
    drop(sb);
    let again = Sandbox::start(config, 0).await.unwrap();
    let moved = common::read(&path).replace(&settings.api.base_url, &again.base_url());
    std::fs::write(&path, moved).unwrap();
    env.write("a.csv", "target\none\n");
    assert_eq!(run(&env, &["import", "--account", "alice", "a.csv"]).await.code, Some(0));
    let ran = run(&env, &["run", "--no-progress"]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(again.stats().follows.get("alice_real"), Some(&1));
}

/// Found from the outside: each of these wrote something, or went through X's page first, and
/// then failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_cannot_be_written_is_refused_before_x_is_asked() {
    let sb = common::sandbox(&[], 400, 1000, Duration::from_secs(86_400)).await;
    let env = env_from_template(&sb.base_url());
    let config = std::fs::read(env.path("followq.toml")).unwrap();
    let itself = run(&env, &["accounts", "add", "n", "--secrets-file", "followq.toml"]).await;
    assert_eq!(itself.code, Some(2));
    assert!(itself.stderr.contains("that is the config itself"), "{}", itself.stderr);
    let nowhere = run(&env, &["accounts", "add", "n", "--secrets-file", "nodir/s.toml"]).await;
    assert_eq!(nowhere.code, Some(2));
    assert!(nowhere.stderr.contains("cannot write nodir/s.toml"), "{}", nowhere.stderr);
    assert_eq!(std::fs::read(env.path("followq.toml")).unwrap(), config);
    assert_eq!(sb.stats().request_tokens, 0, "nothing asked of X");
    let flag = run(&env, &["accounts", "add", "-x"]).await;
    assert_ne!(flag.code, Some(0));
}

/// Found from the outside: a secrets file the config names but that is not there (a fresh
/// checkout) blocked every command; FOLLOWQ_SECRETS and `secrets` were read two ways; a token
/// in the environment silently won over what was just written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secrets_file_in_use_is_the_one_written_and_a_missing_one_is_made() {
    let sb = common::sandbox(&[], 400, 1000, Duration::from_secs(86_400)).await;
    let env = env_from_template(&sb.base_url());
    let path = env.path("followq.toml");
    std::fs::write(&path, format!("secrets = \"gone.toml\"\n{}", common::read(&path))).unwrap();
    let list = run(&env, &["accounts", "list"]).await;
    assert!(list.stderr.contains("does not exist: no tokens from it"), "{}", list.stderr);
    let made = add(&env, &sb, &["accounts", "add", "alice"], "alice_real", None).await;
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    assert!(made.stdout.contains("tokens in ") && made.stdout.contains("gone.toml"), "{}", made.stdout);
    assert_eq!(mode(&env.path("gone.toml")), 0o600);

    // FOLLOWQ_SECRETS names another file: that is where tokens are read, so written too.
    assert_eq!(run(&env, &["accounts", "remove", "alice"]).await.code, Some(0));
    env.write("env.toml", "");
    let vars = [("FOLLOWQ_SECRETS", "env.toml"), ("FOLLOWQ_BOB_TOKEN", "t")];
    let bob = add_with(&env, &sb, &["accounts", "add", "bob"], "bob_real", None, None, &vars).await;
    assert_eq!(bob.code, Some(0), "{}", bob.stderr);
    assert!(bob.stdout.contains("tokens in env.toml"), "the file FOLLOWQ_SECRETS names: {}", bob.stdout);
    assert!(bob.stdout.contains("note: FOLLOWQ_BOB_TOKEN is set"), "{}", bob.stdout);
    assert!(common::read(&env.path("env.toml")).contains("[accounts.bob]"));
    let check = run_with(&env, &["accounts", "check"], &[("FOLLOWQ_SECRETS", "env.toml")]).await;
    assert!(check.stdout.contains("bob: ok"), "{}{}", check.stdout, check.stderr);
}

/// Found from the outside: a token replaced by another X user's went on looking for (and
/// re-sending) the old user's follows; a stopped account re-added stayed stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_another_user_is_said_and_a_re_added_account_is_resumed() {
    let sb = common::sandbox(&[], 400, 1000, Duration::from_secs(86_400)).await;
    let env = env_from_template(&sb.base_url());
    let path = env.path("followq.toml");
    // Looked for only after a minute: the run stops with its follow still to look for.
    std::fs::write(
        &path,
        common::read(&path)
            .replace("settle = \"100ms\"", "settle = \"1m\"")
            .replace("retry_after = \"1s\"", "retry_after = \"2m\""),
    )
    .unwrap();
    assert_eq!(add(&env, &sb, &["accounts", "add", "alice"], "alice_real", None).await.code, Some(0));
    env.write("a.csv", "target\njack\n");
    assert_eq!(run(&env, &["import", "--account", "alice", "a.csv"]).await.code, Some(0));
    let ran = run(&env, &["run", "--no-progress", "--max-duration", "2s"]).await;
    assert_eq!(ran.code, Some(4), "{}", ran.stderr);
    assert_eq!(env.status()["awaiting_confirmation"], 1);
    let store = followq::store::Store::open(&env.db()).await.unwrap();
    let id = store.accounts().await.unwrap()[0].id;
    store.stop_account(id, "credentials rejected (code 89)").await.unwrap();
    store.close().await;

    let other = add(&env, &sb, &["accounts", "add", "alice", "--force"], "alice_new", None).await;
    assert_eq!(other.code, Some(0), "{}", other.stderr);
    assert!(other.stdout.contains("note: alice was @alice_real"), "{}", other.stdout);
    let status = env.status();
    assert_eq!(status["awaiting_confirmation"], 0, "the old user's follow is not looked for in the new one's list");
    assert!(status["accounts"][0]["stopped"].is_null(), "the new token verified: resumed: {status}");
}
