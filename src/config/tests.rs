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
    assert_eq!(s.api.version, ApiVersion::V2);
    assert_eq!(s.limits.profile, Profile::V2);
    assert_eq!(s.limits.user, [Window::new(50, 900), Window::new(400, 86_400)]);
    assert_eq!(s.limits.app, [Window::new(1000, 86_400)]);
    assert_eq!(s.limits.margin.of(Duration::from_secs(86_400)), Duration::from_secs(432));
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
    assert_eq!(s.limits.user, [Window::new(300, 900)], "file over default");
    assert_eq!(s.limits.app, [Window::new(800, 900)], "env over file");
    assert_eq!(s.limits.profile, Profile::Custom);
    assert_eq!(s.limits.enforced_ms(&s.limits.user[0]), 904_500, "0.5% of 15m");
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

/// Defect (found from the outside): the template set `profile = "v2"`, so the older keys its
/// own header suggests (`FOLLOWQ_LIMITS_PER_USER=300`) were refused, and `version = "1.1"` kept
/// v2's limits.
#[test]
fn the_template_lets_the_version_pick_the_profile_and_the_old_keys_work() {
    let s = load_str(TEMPLATE, &[("FOLLOWQ_LIMITS_PER_USER", "300")]).unwrap();
    assert_eq!((s.limits.profile, s.limits.user.clone()), (Profile::Custom, vec![Window::new(300, 86_400)]));
    let s = load_str(TEMPLATE, &[("FOLLOWQ_API_VERSION", "1.1")]).unwrap();
    assert_eq!(s.limits.profile, Profile::V1_1);
    let s = load_str(&TEMPLATE.replace("version = \"2\"", "version = \"1.1\""), &[]).unwrap();
    assert_eq!((s.limits.profile, s.limits.user.clone()), (Profile::V1_1, vec![Window::new(400, 86_400)]));
}

#[test]
fn the_template_parses() {
    let s = load_str(TEMPLATE, &[]).unwrap();
    assert_eq!(s.limits.pace, Pace::Spread);
    assert_eq!(s.retry.max_attempts, 5);
}

/// Defect: `window = "300000000y"` wrapped to a negative window in ms, which disabled the
/// budget (20 creates at once with per_user = 3); u64::MAX seconds panicked (exit 101).
#[test]
fn a_huge_window_or_margin_is_a_config_error_not_a_negative_window() {
    for (text, key) in [
        ("[limits]\nwindow = \"300000000y\"\nper_user = 3\n", "limits.window"),
        ("[limits]\nwindow = \"18446744073709551615s\"\n", "limits.window"),
        ("[limits]\nwindow = \"367d\"\n", "limits.window"),
        ("[limits]\nmargin = \"400d\"\n", "limits.margin"),
        ("[limits]\nmargin = \"18446744073709551615s\"\n", "limits.margin"),
    ] {
        let err = load_str(text, &[]).unwrap_err();
        assert!(err.to_string().starts_with(key), "{text}: {err}");
    }
    let s = load_str("[limits]\nwindow = \"366d\"\nmargin = \"50%\"\n", &[]).unwrap();
    let ms = s.limits.enforced_ms(&s.limits.user[0]);
    assert!(ms > 0 && ms < i64::MAX / 1000);
}

/// Defect: any duration past Duration's or i64's reach panicked with exit 101.
#[test]
fn no_duration_overflows_or_panics() {
    for key in ["api]\ntimeout", "retry]\nbase", "retry]\nmax", "limits]\nwindow", "limits]\nmargin"] {
        for v in ["18446744073709551615s", "300000000y", "99999999999999999999999s"] {
            let text = format!("[{key} = \"{v}\"\n");
            let r = std::panic::catch_unwind(|| load_str(&text, &[]));
            assert!(matches!(r, Ok(Err(_))), "{text}: not a clean error");
        }
    }
    let err = load_str("", &[("FOLLOWQ_API_TIMEOUT", "18446744073709551615s")]).unwrap_err();
    assert!(err.to_string().starts_with("api.timeout"), "{err}");
    assert!(duration("--max-duration", "11y").is_err());
    assert_eq!(duration("--max-duration", "8h").unwrap(), Duration::from_secs(8 * 3600));
}

/// Defect: `team-a` and `team_a` both read FOLLOWQ_TEAM_A_TOKEN, and one account's follows
/// went out as the other X account.
#[test]
fn account_names_that_share_environment_variables_are_refused() {
    let two = |a: &str, b: &str| format!("[[accounts]]\nname = \"{a}\"\n[[accounts]]\nname = \"{b}\"\n");
    for (a, b) in [("team-a", "team_a"), ("Team_A", "team-a"), ("alice", "ALICE")] {
        let err = load_str(&two(a, b), &[("FOLLOWQ_TEAM_A_TOKEN", "t")]).unwrap_err();
        assert!(err.to_string().contains("share the environment names"), "{a}/{b}: {err}");
    }
    let err = load_str(&two("bob", "bob"), &[]).unwrap_err();
    assert!(err.to_string().contains("configured twice"), "{err}");
    assert_eq!(load_str(&two("team-a", "team-b"), &[]).unwrap().accounts.len(), 2);
}

/// Defect: a prefix test let `http://127.0.0.1@attacker.example` and friends through, and
/// signed requests went out in clear text to them.
#[test]
fn plain_http_only_to_a_parsed_loopback_host() {
    let url = |u: &str| load_str(&format!("[api]\nbase_url = \"{u}\"\n"), &[]);
    for bad in [
        "http://127.0.0.1@attacker.example",
        "http://localhost.attacker.example",
        "http://127.0.0.1.nip.io",
        "http://localhost@evil.example:80",
        "http://user:pw@127.0.0.1:8080",
        "https://user@api.twitter.com",
        "http://[::ffff:8.8.8.8]",
        "http://example.com",
        "ftp://127.0.0.1",
        "127.0.0.1:8080",
    ] {
        let err = url(bad).unwrap_err();
        assert!(err.to_string().starts_with("api.base_url"), "{bad}: {err}");
    }
    for good in
        ["http://127.0.0.1:8080", "http://127.8.9.1", "http://localhost:9", "http://[::1]:80", "https://api.x.com"]
    {
        assert!(url(good).is_ok(), "{good}");
    }
    // The refusal never prints the password it refuses.
    let err = load_str("", &[("FOLLOWQ_API_BASE_URL", "https://admin:Sup3rS3cretPW@api.example.com")]).unwrap_err();
    assert!(!err.to_string().contains("Sup3rS3cretPW") && !err.to_string().contains("admin"), "{err}");
    let err = url("not a url Sup3rS3cretPW").unwrap_err();
    assert!(!err.to_string().contains("Sup3rS3cretPW"), "{err}");
}

/// Defect (issue 12, 19): `per_user = 500` and `FOLLOWQ_LIMITS_PER_USR` were taken silently.
#[test]
fn limits_above_x_and_unknown_environment_variables_are_warned_about() {
    let s = load_str("[limits]\nper_user = 500\n[[accounts]]\nname = \"alice\"\n", &[]).unwrap();
    let env: HashMap<String, String> = [
        ("FOLLOWQ_LIMITS_PER_USR", "3"),
        ("FOLLOWQ_ALICE_TOKEN", "t"),
        ("FOLLOWQ_BOB_TOKEN", "t"),
        ("FOLLOWQ_DB", "x.db"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let w = warnings(&s, &env);
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w[0].contains("500/24h per account lets more through than X's published 400"), "{w:?}");
    assert!(w[1].starts_with("FOLLOWQ_BOB_TOKEN is not a followq setting"), "{w:?}");
    assert!(
        w[2].contains(
            "FOLLOWQ_LIMITS_PER_USR is not a followq setting and is ignored: did you mean FOLLOWQ_LIMITS_PER_USER?"
        ),
        "{w:?}"
    );
    // The same limits over a shorter window are above X's too (a minute short of 24 h lets
    // twice them through in some 24 hours); X's own limits are not.
    for window in ["1h", "23h59m"] {
        let fast = load_str(&format!("[limits]\nwindow = \"{window}\"\nmargin = \"0s\"\n"), &[]).unwrap();
        assert_eq!(warnings(&fast, &HashMap::new()).len(), 2, "{window}");
    }
    assert!(warnings(&Settings::default(), &HashMap::new()).is_empty());
}

/// Defect: toml's message quotes the offending line, so a misspelt `consumer_secrte = "…"`
/// (or an unterminated string, a duplicate key, an integer secret) printed the secret.
#[test]
fn toml_errors_name_file_line_column_and_key_never_the_value() {
    let secret = "s3cr3t-VALUE-9911";
    for (text, line, key) in [
        (format!("[app]\nconsumer_key = \"ck\"\nconsumer_secrte = \"{secret}\"\n"), 3, Some("app.consumer_secrte")),
        (format!("[app]\nconsumer_secret = \"{secret}\n"), 2, Some("app.consumer_secret")),
        (format!("[app]\nconsumer_secret = \"{secret}\"\nconsumer_secret = \"{secret}\"\n"), 3, None),
        ("[[accounts]]\nname = \"a\"\ntoken_secret = 91823746\n".to_string(), 3, Some("accounts.token_secret")),
        (format!("[[accounts]]\nname = \"a\"\ntoken_secret = [\"{secret}\"]\n"), 3, Some("accounts.token_secret")),
        (format!("[limits]\nper_user = \"{secret}\"\n"), 2, Some("limits.per_user")),
        // Found from the outside: lines inside a multi-line string were read as keys and
        // table headers, and secrets typed where a key belongs were printed as the key.
        (format!("[[accounts]]\nname = \"a\"\ntoken_secret = \"\"\"\n{secret}=="), 4, Some("accounts.token_secret")),
        (format!("[app]\nconsumer_secret = \"\"\"\n{secret}=\\q\n\"\"\"\n"), 3, None),
        (
            format!("[app]\nconsumer_secret = \"\"\"\n[{secret}]\n\"\"\"\nconsumer_sec = \"x\"\n"),
            5,
            Some("app.consumer_sec"),
        ),
        (format!("[app]\n{secret} = \"x\"\n"), 2, None),
        (format!("[app]\n\"{secret}\" = \"x\"\n"), 2, None),
        (format!("[app]\nconsumer_secret = '''{secret}\n"), 3, None),
    ] {
        let err = load_str(&text, &[]).unwrap_err().to_string();
        assert!(!err.contains(secret) && !err.contains("91823746"), "leaked: {err}");
        assert!(err.contains("followq.toml") && err.contains(&format!("line {line}")), "{err}");
        if let Some(k) = key {
            assert!(err.contains(&format!("key `{k}`")), "{err}");
        }
    }
}

#[test]
fn several_windows_per_scope_from_the_file_the_environment_or_a_profile() {
    let s = load_str("[limits]\nuser = [\"5/2s\", \"12/10s\"]\napp = [\"30/10s\"]\n", &[]).unwrap();
    assert_eq!(s.limits.user, [Window::new(5, 2), Window::new(12, 10)]);
    assert_eq!(s.limits.app, [Window::new(30, 10)]);
    assert_eq!(s.limits.profile, Profile::Custom);
    let s = load_str("", &[("FOLLOWQ_LIMITS_USER", "50/15m, 400/24h"), ("FOLLOWQ_LIMITS_APP", "900/24h")]).unwrap();
    assert_eq!((s.limits.user.len(), s.limits.app[0].limit), (2, 900));
    // A profile names X's limits; the API version picks one by default.
    let s = load_str("[api]\nversion = \"1.1\"\n", &[]).unwrap();
    assert_eq!((s.limits.profile, s.limits.user.clone()), (Profile::V1_1, vec![Window::new(400, 86_400)]));
    let s = load_str("[limits]\nprofile = \"v2\"\n", &[("FOLLOWQ_API_VERSION", "1.1")]).unwrap();
    assert_eq!((s.api.version, s.limits.user.len()), (ApiVersion::V1_1, 2));
    // One scope set, the other from the profile.
    let s = load_str("[limits]\nuser = [\"20/15m\"]\n", &[]).unwrap();
    assert_eq!(
        (s.limits.user.clone(), s.limits.app.clone()),
        (vec![Window::new(20, 900)], vec![Window::new(1000, 86_400)])
    );
    assert_eq!(Limits::describe(&Profile::V2.windows().0), "50/15m + 400/24h");
}

#[test]
fn a_bad_window_or_a_mix_of_old_and_new_keys_names_its_key() {
    for (text, key, says) in [
        ("[limits]\nuser = [\"50\"]\n", "limits.user", "requests/duration"),
        ("[limits]\nuser = [\"x/15m\"]\n", "limits.user", "not a whole number"),
        ("[limits]\nuser = [\"0/15m\"]\n", "limits.user", "at least 1 request"),
        ("[limits]\napp = [\"5/500ms\"]\n", "limits.app", "at least 1s"),
        ("[limits]\napp = [\"5/400d\"]\n", "limits.app", "at most 366 days"),
        ("[limits]\nuser = []\n", "limits.user", "at least one window"),
        ("[limits]\nuser = [\"5/15m\", \"9/15m\"]\n", "limits.user", "two windows of 15m"),
        ("[limits]\nprofile = \"custom\"\n", "limits.user", "at least one window"),
        ("[limits]\nprofile = \"pro\"\n", "limits.profile", "'pro'"),
        ("[limits]\nper_user = 3\nuser = [\"5/15m\"]\n", "limits", "both set"),
        ("[api]\nversion = \"3\"\n", "api.version", "'3'"),
    ] {
        let err = load_str(text, &[]).unwrap_err().to_string();
        assert!(err.starts_with(key) && err.contains(says), "{text}: {err}");
    }
}

#[test]
fn a_secrets_file_fills_tokens_after_the_environment_and_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("followq.toml");
    std::fs::write(
        &path,
        "secrets = \"private/s.toml\"\n[[accounts]]\nname = \"alice\"\n[[accounts]]\nname = \"bob\"\ntoken = \"t-bob-config\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("private")).unwrap();
    let secrets = dir.path().join("private/s.toml");
    std::fs::write(
        &secrets,
        "[accounts.alice]\ntoken = \"t-alice\"\ntoken_secret = \"s-alice\"\n[accounts.bob]\ntoken = \"t-bob-file\"\ntoken_secret = \"s-bob\"\n",
    )
    .unwrap();
    let env = HashMap::from([("FOLLOWQ_ALICE_TOKEN_SECRET".to_string(), "s-alice-env".to_string())]);
    // Read from another folder: the secrets path is the config's folder's, not the process's.
    let s = load(&Sources { path: &path, explicit: true, env }).unwrap();
    let a = s.account("alice").unwrap();
    assert_eq!((a.token.as_str(), a.token_secret.expose()), ("t-alice", "s-alice-env"), "env over file");
    let b = s.account("bob").unwrap();
    assert_eq!((b.token.as_str(), b.token_secret.expose()), ("t-bob-config", "s-bob"), "config over file");
    assert_eq!(s.secrets_file.as_deref(), Some(secrets.as_path()));
    assert!(s.secrets().contains(&"s-bob"));

    std::fs::write(&secrets, "[accounts.alice]\ntoken = \"t\"\ntokn_secret = \"oops\"\n").unwrap();
    let err = load(&Sources { path: &path, explicit: true, env: HashMap::new() }).unwrap_err().to_string();
    assert!(err.contains("s.toml") && err.contains("tokn_secret") && !err.contains("oops"), "{err}");
    // Missing (a fresh checkout, the file kept out of version control): no tokens from it, and
    // the error for a missing token names the file.
    std::fs::remove_file(&secrets).unwrap();
    let mut s = load(&Sources { path: &path, explicit: true, env: HashMap::new() }).unwrap();
    assert!(s.account("alice").unwrap().token.is_empty());
    (s.app.consumer_key, s.app.consumer_secret) = ("k".into(), Secret::new("s"));
    let err = require_credentials(&s).unwrap_err().to_string();
    assert!(err.contains("private/s.toml does not exist"), "{err}");
}
