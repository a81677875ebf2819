//! Helpers shared by the integration tests: temp folders, configs, the binary, the sandbox.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use followq::config::{Account, ApiVersion, Limits, Margin, Secret, Settings, Window};
use followq::sandbox::{Config, Sandbox};

pub const CONSUMER_KEY: &str = "ck-test";
pub const CONSUMER_SECRET: &str = "cs-test-SECRET-9f8e7d";

/// The token and secret of a test account.
pub fn token(name: &str) -> (String, String) {
    (format!("tok-{name}"), format!("ts-{name}-SECRET-1a2b3c"))
}

/// A temp folder with a config for these accounts, pointed at `base_url`.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new(accounts: &[&str], base_url: &str, limits: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        // Confirming follows is issue 16's, tried by its own tests: these suites count
        // requests, and a settle would make every run wait. Reads (`verify`) at X's 15 a
        // window, but a window of 15 s, not 15 minutes.
        let mut cfg = format!(
            "[api]\nbase_url = \"{base_url}\"\ntimeout = \"2s\"\n[app]\nconsumer_key = \"{CONSUMER_KEY}\"\nconsumer_secret = \"{CONSUMER_SECRET}\"\n{limits}\n[retry]\nbase = \"50ms\"\nmax = \"400ms\"\nmax_attempts = 4\n[verify]\nconfirm = false\nper_user = \"15/15s\"\nper_app = \"15/15s\"\n"
        );
        for a in accounts {
            let (t, s) = token(a);
            cfg.push_str(&format!("[[accounts]]\nname = \"{a}\"\ntoken = \"{t}\"\ntoken_secret = \"{s}\"\n"));
        }
        let path = dir.path().join("followq.toml");
        std::fs::write(&path, cfg).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Env { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, content).unwrap();
        p
    }

    /// The real binary, run in this folder, with no FOLLOWQ_* from the outside.
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("followq").unwrap();
        c.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("FOLLOWQ_") {
                c.env_remove(k);
            }
        }
        c.timeout(Duration::from_secs(120));
        c
    }

    /// `followq status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = self.cmd().args(["status", "--json"]).output().unwrap();
        assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Sets `[api] version` ("2" is the default; "1.1" for v1.1's own behaviour).
    pub fn set_api_version(&self, version: &str) {
        let path = self.path("followq.toml");
        let text =
            read(&path).replacen("timeout = \"2s\"\n", &format!("timeout = \"2s\"\nversion = \"{version}\"\n"), 1);
        std::fs::write(&path, text).unwrap();
    }

    pub fn db(&self) -> PathBuf {
        self.path("followq.db")
    }
}

/// Settings for in-process runs against a sandbox.
pub fn settings(accounts: &[&str], base_url: &str, per_user: u32, per_app: u32, window: Duration) -> Settings {
    let mut s = Settings::default();
    s.api.base_url = base_url.to_string();
    s.api.timeout = Duration::from_secs(2);
    s.app.consumer_key = CONSUMER_KEY.into();
    s.app.consumer_secret = Secret::new(CONSUMER_SECRET);
    // v1.1, the API these suites were written for; the v2 cases set `api.version` themselves.
    s.api.version = ApiVersion::V1_1;
    s.limits = Limits::single(per_user, per_app, window);
    s.limits.margin = Margin::Share(0.01);
    s.retry.base = Duration::from_millis(50);
    s.retry.max = Duration::from_millis(400);
    s.retry.max_attempts = 4;
    // Confirming follows is tried by issue 16's own tests; these count requests.
    s.verify.confirm = false;
    s.accounts = accounts
        .iter()
        .map(|a| {
            let (t, sec) = token(a);
            Account { name: a.to_string(), token: t, token_secret: Secret::new(sec) }
        })
        .collect();
    s
}

/// A sandbox that knows these accounts.
pub async fn sandbox(accounts: &[&str], per_user: u32, per_app: u32, window: Duration) -> Sandbox {
    Sandbox::start(sandbox_config(accounts, per_user, per_app, window), 0).await.unwrap()
}

pub fn sandbox_config(accounts: &[&str], per_user: u32, per_app: u32, window: Duration) -> Config {
    let w = |limit| Window { limit, length: window };
    let mut c = Config {
        user_windows: vec![w(per_user)],
        app_windows: vec![w(per_app)],
        grace: Duration::from_millis(20),
        ..Config::default()
    };
    c.consumers.insert(CONSUMER_KEY.into(), CONSUMER_SECRET.into());
    for a in accounts {
        let (t, s) = token(a);
        c.tokens.insert(t, (s, a.to_string()));
    }
    c
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// The engine the store suites run on: SQLite, or PostgreSQL when `FOLLOWQ_TEST_ENGINE` is
/// `postgres` (the server is `FOLLOWQ_TEST_PG`; `.ci/run` starts a throwaway cluster and runs
/// the suites once on each engine).
pub fn on_postgres() -> bool {
    std::env::var("FOLLOWQ_TEST_ENGINE").is_ok_and(|e| e == "postgres")
}

/// A new, empty database for one test: a file in `dir`, or a database of its own on the
/// PostgreSQL server (left for the throwaway cluster to take away).
pub async fn fresh_db(dir: &Path) -> followq::store::Db {
    use sqlx::Connection;
    if !on_postgres() {
        return followq::store::Db::File(dir.join("q.db"));
    }
    let server = std::env::var("FOLLOWQ_TEST_PG").expect("FOLLOWQ_TEST_ENGINE=postgres needs FOLLOWQ_TEST_PG");
    let name = format!("followq_t_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(&server).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}"))).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(&format!("/{name}"));
    followq::store::Db::parse(Path::new(url.as_str()))
}
