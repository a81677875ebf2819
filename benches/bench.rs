//! followq's benchmarks (BENCHMARKS.md), each side by side with its baseline in one run.
//!
//!   cargo bench                  all four
//!   cargo bench -- import        1. import vs sqlite3 .import, and peak RSS at 1M and 5M rows
//!   cargo bench -- dispatch      2. followq vs a bare signed-request loop, limits lifted
//!   cargo bench -- pacing        3. window use in both pace modes (about two minutes)
//!   cargo bench -- scale         4. status and time to first request with 1M jobs, 1000 accounts
//!
//! Data is generated at run time in a temporary folder. FOLLOWQ_BENCH_RUNS sets the repeats
//! (default 3); medians are reported.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use followq::api::{Client, Target};
use followq::config::{Account, ApiVersion, Limits, Pace, Secret, Settings, Window};
use followq::ingest::{self, Accounts, Input};
use followq::sandbox::{Config, Sandbox};
use followq::store::{
    Ask, AttemptResult, Budget, ClaimResult, Outcome, Quota, Record, RecordJob, Store, TargetKind, now_ms,
};
use followq::time::Clock;
use followq::worker::{self, Ending, Silent};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_followq");

fn runs() -> usize {
    std::env::var("FOLLOWQ_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// User + system CPU seconds of this process so far (from /proc, in clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Runs a command under /usr/bin/time: (wall seconds, peak RSS in KiB).
fn timed(cmd: &mut Command) -> (f64, u64) {
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("BENCH %e %M")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .current_dir(cmd.get_current_dir().unwrap_or(Path::new(".")))
        .stdout(Stdio::null())
        .output()
        .expect("/usr/bin/time (Debian package 'time')");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.starts_with("BENCH ")).unwrap_or_else(|| panic!("no timing: {err}"));
    let mut it = line.split_whitespace().skip(1);
    (it.next().unwrap().parse().unwrap(), it.next().unwrap().parse().unwrap())
}

fn credentials(names: &[String]) -> (Settings, Config) {
    let mut s = Settings::default();
    s.app.consumer_key = "bench-ck".into();
    s.app.consumer_secret = Secret::new("bench-cs");
    // The benchmarks measure follows; confirming them is reads at X's read limits.
    s.verify.confirm = false;
    s.accounts = names
        .iter()
        .map(|n| Account { name: n.clone(), token: format!("tok-{n}"), token_secret: Secret::new(format!("sec-{n}")) })
        .collect();
    let mut c = Config::default();
    c.consumers.insert("bench-ck".into(), "bench-cs".into());
    for a in &s.accounts {
        c.tokens.insert(a.token.clone(), (a.token_secret.expose().to_string(), a.name.clone()));
    }
    (s, c)
}

fn config_toml(settings: &Settings, base_url: &str, limits: &str) -> String {
    let mut t = format!(
        "[api]\nbase_url = \"{base_url}\"\n[app]\nconsumer_key = \"{}\"\nconsumer_secret = \"{}\"\n[verify]\nconfirm = false\n{limits}\n",
        settings.app.consumer_key,
        settings.app.consumer_secret.expose()
    );
    for a in &settings.accounts {
        let _ = write!(
            t,
            "[[accounts]]\nname = \"{}\"\ntoken = \"{}\"\ntoken_secret = \"{}\"\n",
            a.name,
            a.token,
            a.token_secret.expose()
        );
    }
    t
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

// ---- 1. import ----

/// A CSV of `n` rows over `accounts`, mixed forms, about 1 % duplicates; beside it (`.norm`),
/// the same rows as followq stores them (account number, target kind, target), for the
/// schema baseline.
fn generate_csv(path: &Path, n: usize, accounts: &[String], seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut norm = std::io::BufWriter::new(std::fs::File::create(path.with_extension("norm")).unwrap());
    writeln!(w, "account,screen_name,user_id").unwrap();
    let mut recent: Vec<(String, String)> = Vec::with_capacity(1024);
    for i in 0..n {
        if !recent.is_empty() && rng.random_bool(0.01) {
            let (line, normal) = &recent[rng.random_range(0..recent.len())];
            w.write_all(line.as_bytes()).unwrap();
            norm.write_all(normal.as_bytes()).unwrap();
            continue;
        }
        let (k, acc) = (i % accounts.len(), &accounts[i % accounts.len()]);
        let (line, normal) = match rng.random_range(0..100) {
            0..40 => {
                let t = format!("u{i:x}_{}", rng.random_range(0..1000));
                (format!("{acc},{t},\n"), format!("{},screen_name,{t}\n", k + 1))
            }
            40..60 => (format!("{acc},@N{i:x},\n"), format!("{},screen_name,N{i:x}\n", k + 1)),
            60..75 => (format!("{acc},https://x.com/h{i:x},\n"), format!("{},screen_name,h{i:x}\n", k + 1)),
            _ => {
                let id = rng.random_range(1_000_000_000u64..1_000_000_000_000_000_000);
                (format!("{acc},,{id}\n"), format!("{},user_id,{id}\n", k + 1))
            }
        };
        w.write_all(line.as_bytes()).unwrap();
        norm.write_all(normal.as_bytes()).unwrap();
        if recent.len() < 1024 {
            recent.push((line, normal));
        } else {
            let k = rng.random_range(0..1024);
            recent[k] = (line, normal);
        }
    }
    w.flush().unwrap();
    norm.flush().unwrap();
}

/// Runs a script through the sqlite3 CLI on a fresh database; wall seconds.
fn sqlite3_script(db: &Path, script: &str) -> f64 {
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    let start = Instant::now();
    let mut child = Command::new("sqlite3")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sqlite3");
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    child.wait().unwrap();
    start.elapsed().as_secs_f64()
}

/// The issue's baseline: `.import` into a three-column table with the same unique key.
fn sqlite3_import(dir: &Path, csv: &Path) -> f64 {
    let script = format!(
        "create table jobs (account text not null, screen_name text, user_id text);\n\
         create unique index jobs_key on jobs(account, screen_name, user_id);\n\
         .mode csv\n.import --skip 1 {} jobs\n",
        csv.display()
    );
    sqlite3_script(&dir.join("baseline.db"), &script)
}

/// What SQLite alone takes to put the same rows, already normalised, into followq's own schema
/// (every migration, WAL, its indexes and trigger; foreign keys off as in followq's import).
fn sqlite3_schema_import(dir: &Path, csv: &Path) -> f64 {
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).unwrap();
    let mut files: Vec<PathBuf> = migrations.map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut script = String::from("pragma journal_mode = wal;\npragma cache_size = -16384;\n");
    for f in files {
        script.push_str(&std::fs::read_to_string(f).unwrap());
        script.push('\n');
    }
    script.push_str(&format!(
        "insert into accounts (id, name, created_at) values (1, 'alice', 0), (2, 'bob', 0);\n\
         insert into imports (id, source, started_at) values (1, 'bench', 0);\n\
         .mode csv\ncreate temp table s (a, k, t);\n.import {} s\n\
         insert or ignore into jobs (account_id, target_kind, target, notify, import_id, created_at)\n\
         select a, k, t, 0, 1, 0 from s;\n",
        csv.with_extension("norm").display()
    ));
    sqlite3_script(&dir.join("schema.db"), &script)
}

fn followq_import(dir: &Path, csv: &Path) -> (f64, u64) {
    for f in ["followq.db", "followq.db-wal", "followq.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    timed(Command::new(BIN).current_dir(dir).arg("import").arg(csv))
}

fn bench_import(out: &mut String) {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["alice".to_string(), "bob".to_string()];
    let (settings, _) = credentials(&names);
    write_private(&dir.path().join("followq.toml"), &config_toml(&settings, "http://127.0.0.1:9", ""));
    let csv1 = dir.path().join("1m.csv");
    generate_csv(&csv1, 1_000_000, &names, 1);
    let (mut fq, mut sq, mut sch, mut rss1) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs() {
        let (t, rss) = followq_import(dir.path(), &csv1);
        fq.push(t);
        rss1.push(rss as f64);
        sq.push(sqlite3_import(dir.path(), &csv1));
        sch.push(sqlite3_schema_import(dir.path(), &csv1));
    }
    let csv5 = dir.path().join("5m.csv");
    generate_csv(&csv5, 5_000_000, &names, 5);
    let (t5, rss5) = followq_import(dir.path(), &csv5);
    let db_bytes = std::fs::metadata(dir.path().join("followq.db")).map(|m| m.len()).unwrap_or(0);
    let (f, s, sc) = (median(fq.clone()), median(sq.clone()), median(sch.clone()));
    let r1 = median(rss1) / 1024.0;
    let r5 = rss5 as f64 / 1024.0;
    let _ =
        writeln!(out, "## 1. Import (1,000,000 rows, 2 accounts, mixed forms, ~1 % duplicates; {} runs)\n", fq.len());
    let _ = writeln!(out, "| | median wall | runs |\n|---|---|---|");
    let _ = writeln!(out, "| followq import | {f:.2} s | {} |", fmt_list(&fq));
    let _ = writeln!(out, "| sqlite3 .import, same unique index | {s:.2} s | {} |", fmt_list(&sq));
    let _ = writeln!(
        out,
        "| sqlite3, the same rows already normalised, into followq's schema (INSERT … SELECT) | {sc:.2} s | {} |",
        fmt_list(&sch)
    );
    let _ = writeln!(out, "\nratio followq / sqlite3: **{:.2}×** (target ≤ 2×)", f / s);
    let _ = writeln!(out, "ratio followq / sqlite3 into followq's schema: {:.2}×\n", f / sc);
    let _ = writeln!(out, "| rows | wall | peak RSS |\n|---|---|---|");
    let _ = writeln!(out, "| 1,000,000 | {f:.2} s | {r1:.1} MiB |");
    let _ = writeln!(out, "| 5,000,000 | {t5:.2} s | {r5:.1} MiB |");
    let _ = writeln!(
        out,
        "\nRSS 5M / 1M: {:+.1} % (target within 10 %, under 64 MiB); database {:.0} bytes per job\n",
        (r5 / r1 - 1.0) * 100.0,
        db_bytes as f64 / 5_000_000.0
    );
}

fn fmt_list(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")
}

/// A fresh database in a temporary folder with `n` jobs queued round-robin over `names`.
async fn queued_store(names: &[String], n: usize) -> (tempfile::TempDir, Store) {
    queued_store_as(names, n, false).await
}

/// `n` jobs over `names`, round robin, by screen name (`t{i}`) or by id.
async fn queued_store_as(names: &[String], n: usize, by_id: bool) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("q.db")).await.unwrap();
    let ids = store.sync_accounts(&names.iter().map(String::as_str).collect::<Vec<_>>()).await.unwrap();
    let csv = dir.path().join("jobs.csv");
    let mut text = String::from(if by_id { "account,user_id\n" } else { "account,screen_name\n" });
    for i in 0..n {
        if by_id {
            let _ = writeln!(text, "{},{}", names[i % names.len()], 1_000_000 + i);
        } else {
            let _ = writeln!(text, "{},t{i}", names[i % names.len()]);
        }
    }
    std::fs::write(&csv, text).unwrap();
    let accounts = Accounts::new(ids, None).unwrap();
    let mut on_reject = |_: &ingest::Reject| {};
    let opts =
        ingest::Options { accounts: &accounts, dry_run: false, on_reject: &mut on_reject, content_hash: String::new() };
    ingest::import(&store, &Input::File(csv), opts).await.unwrap();
    (dir, store)
}

// ---- 2. dispatch overhead ----

const DISPATCH_JOBS: usize = 20_000;
const DISPATCH_ACCOUNTS: usize = 10;
/// Request slots (`run.concurrency`, and the bare loop's tasks): each claim takes at most the
/// free slots, so the slots are what a claim's transaction is shared among.
const CONCURRENCIES: [usize; 2] = [8, 32];

/// An in-process sandbox and settings for it, both with the limits lifted.
async fn lifted(names: &[String], concurrency: usize) -> (Sandbox, Settings) {
    let (mut s, mut cfg) = credentials(names);
    // v1.1, by screen name: the request the bare loop sends, so the two are compared like for
    // like (v2's resolution is a read ahead of the follows, not part of a follow's cost).
    s.api.version = ApiVersion::V1_1;
    s.limits = Limits::single(1_000_000_000, 1_000_000_000, Duration::from_secs(3600));
    (cfg.user_windows, cfg.app_windows) = (s.limits.user.clone(), s.limits.app.clone());
    let sb = Sandbox::start(cfg, 0).await.unwrap();
    s.api.base_url = sb.base_url();
    s.limits.pace = Pace::Asap;
    s.run.concurrency = concurrency;
    (sb, s)
}

/// Wall and CPU seconds of the run, and the largest the WAL file grew during it (sampled every
/// 10 ms: the turns come back to back, and the WAL must still start over now and then).
/// `synced`: every commit synced before its request leaves (followq's only mode); false: the
/// `synchronous = NORMAL` it had before, to show what the sync costs.
async fn dispatch_followq(names: &[String], concurrency: usize, synced: bool) -> (f64, f64, u64) {
    let (sb, settings) = lifted(names, concurrency).await;
    let (dir, mut store) = queued_store(names, DISPATCH_JOBS).await;
    if !synced {
        store.close().await;
        store = Store::open_unsynced_for_benchmark(&dir.path().join("q.db")).await.unwrap();
    }
    let client = Client::new(&settings).unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (wal, running) = (dir.path().join("q.db-wal"), running.clone());
        tokio::spawn(async move {
            let mut largest = 0;
            while running.load(Ordering::Relaxed) {
                largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            largest
        })
    };
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let opts = worker::Options { seed: 1, ..worker::Options::default() };
    let ending = worker::run(&store, &settings, &client, CancellationToken::new(), opts, &mut Silent).await.unwrap();
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    running.store(false, Ordering::Relaxed);
    assert_eq!(ending, Ending::Finished);
    assert_eq!(sb.stats().creates.values().sum::<u64>(), DISPATCH_JOBS as u64);
    (wall, cpu, sampler.await.unwrap())
}

/// The ledger alone, no HTTP: CPU µs per transaction that records `k` answers and claims `k`
/// jobs (`Store::record_and_claim`, what each of the run's claims is when every slot is busy),
/// with the limits lifted and the window holding every request so far.
async fn ledger_alone(names: &[String], k: usize) -> f64 {
    let (_dir, store) = queued_store(names, DISPATCH_JOBS).await;
    let accounts = store.accounts().await.unwrap();
    let lifted = Quota { limit: 1_000_000_000, window_ms: 3_600_000 };
    let budget = Budget { user: vec![lifted], app: vec![lifted] };
    let mut records: Vec<Record> = Vec::new();
    let (cpu0, mut transactions, mut claimed) = (cpu_seconds(), 0, 0);
    for i in 0.. {
        let ask = Ask { account_id: accounts[i % accounts.len()].id, budget: &budget, want: k, ids_only: false };
        let (_, result) = store.record_and_claim(&records, &Clock::System, ask).await.unwrap();
        transactions += 1;
        records.clear();
        let ClaimResult::Claimed(claims) = result else { break };
        claimed += claims.len();
        records.extend(claims.iter().map(|c| Record {
            result: AttemptResult::Followed,
            http_status: Some(200),
            body: r#"{"id":1,"screen_name":"t","following":true}"#.into(),
            job: RecordJob::Done(Outcome::Followed),
            ..Record::for_claim(c)
        }));
    }
    assert_eq!(claimed, DISPATCH_JOBS);
    (cpu_seconds() - cpu0) * 1e6 / transactions as f64
}

async fn dispatch_bare(names: &[String], concurrency: usize) -> (f64, f64) {
    let (_sb, settings) = lifted(names, concurrency).await;
    let client = Client::new(&settings).unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, accounts) = (client.clone(), next.clone(), settings.accounts.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= DISPATCH_JOBS {
                    break;
                }
                let a = &accounts[i % accounts.len()];
                let target = format!("t{i}");
                let target = Target { kind: TargetKind::ScreenName, value: &target, notify: false };
                let r = client.follow(a, "", target).await.unwrap();
                assert_eq!(r.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let wall = start.elapsed().as_secs_f64();
    (wall, cpu_seconds() - cpu0)
}

async fn bench_dispatch(out: &mut String) {
    let names: Vec<String> = (0..DISPATCH_ACCOUNTS).map(|i| format!("acct{i}")).collect();
    let _ = writeln!(
        out,
        "## 2. Dispatch overhead ({DISPATCH_JOBS} jobs, {DISPATCH_ACCOUNTS} accounts, limits lifted, in-process sandbox on loopback; {} runs of each, interleaved)\n",
        runs()
    );
    let _ = writeln!(
        out,
        "| slots | | median follows/s | runs | CPU per request (process, incl. sandbox) |\n|---|---|---|---|---|"
    );
    let mut ratios = Vec::new();
    for concurrency in CONCURRENCIES {
        let (mut fq, mut bare, mut fq_cpu, mut bare_cpu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut normal, mut normal_cpu) = (Vec::new(), Vec::new());
        let mut wal_max = 0;
        for _ in 0..runs() {
            let (w, c) = dispatch_bare(&names, concurrency).await;
            bare.push(DISPATCH_JOBS as f64 / w);
            bare_cpu.push(c * 1e6 / DISPATCH_JOBS as f64);
            let (w, c, wal) = dispatch_followq(&names, concurrency, true).await;
            wal_max = wal_max.max(wal);
            fq.push(DISPATCH_JOBS as f64 / w);
            fq_cpu.push(c * 1e6 / DISPATCH_JOBS as f64);
            let (w, c, _) = dispatch_followq(&names, concurrency, false).await;
            normal.push(DISPATCH_JOBS as f64 / w);
            normal_cpu.push(c * 1e6 / DISPATCH_JOBS as f64);
        }
        let (fc, bc) = (median(fq_cpu), median(bare_cpu));
        let row = |out: &mut String, what: &str, rate: &[f64], cpu: f64| {
            let _ = writeln!(
                out,
                "| {concurrency} | {what} | {:.0} | {} | {cpu:.0} µs |",
                median(rate.to_vec()),
                fmt_list0(rate)
            );
        };
        row(out, "followq run", &fq, fc);
        row(out, "followq run, commits not synced (synchronous = NORMAL)", &normal, median(normal_cpu));
        row(out, "bare signed loop", &bare, bc);
        ratios.push(format!(
            "{concurrency} slots: CPU per request followq / bare **{:.2}×** (target ≤ 2×); throughput {:.0} % of bare; largest WAL {:.1} MB",
            fc / bc,
            median(fq) / median(bare) * 100.0,
            wal_max as f64 / 1e6
        ));
    }
    let _ = writeln!(out);
    for r in ratios {
        let _ = writeln!(out, "- {r}");
    }
    let k = CONCURRENCIES[0];
    let mut alone = Vec::new();
    for _ in 0..runs() {
        alone.push(ledger_alone(&names, k).await);
    }
    let _ = writeln!(
        out,
        "- The ledger alone (no HTTP): one transaction recording {k} answers and claiming {k} jobs costs **{:.0} µs** of CPU (runs {}), {:.0} µs per request\n",
        median(alone.clone()),
        fmt_list0(&alone),
        median(alone.clone()) / k as f64
    );
}

fn fmt_list0(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ")
}

// ---- 3. pacing efficiency ----

async fn pacing(pace: Pace, version: ApiVersion) -> (Vec<f64>, u64, u64, HashMap<String, u64>) {
    let names: Vec<String> = ["alice", "bob", "carol"].iter().map(|s| s.to_string()).collect();
    let (mut settings, mut cfg) = credentials(&names);
    let window = Duration::from_secs(10);
    // v1.1, one window per scope: the figures this table has carried since the first wave; and
    // v2, whose names are resolved at `[resolve]`'s defaults (one lookup every 3 s, uncompressed).
    settings.api.version = version;
    settings.limits = Limits::single(40, 100, window);
    (cfg.user_windows, cfg.app_windows) = (settings.limits.user.clone(), settings.limits.app.clone());
    let sb = Sandbox::start(cfg, 0).await.unwrap();
    settings.api.base_url = sb.base_url();
    settings.limits.pace = pace;
    let (_dir, store) = queued_store(&names, 600).await;
    let client = Client::new(&settings).unwrap();
    let opts = worker::Options { deadline: Some(now_ms() + 120_000), seed: 3, ..worker::Options::default() };
    worker::run(&store, &settings, &client, CancellationToken::new(), opts, &mut Silent).await.unwrap();
    let log = store.attempt_log().await.unwrap();
    let w = window.as_millis() as i64;
    let first = log.first().map_or(0, |a| a.sent_at);
    let last = log.last().map_or(0, |a| a.sent_at);
    let mut shares = Vec::new();
    let mut start = first;
    // Full windows of X's length, back to back from the first request.
    while start + w <= last {
        let n = log.iter().filter(|a| a.sent_at >= start && a.sent_at < start + w).count();
        shares.push(n as f64 / 100.0);
        start += w;
    }
    let st = sb.stats();
    (shares, st.max_in_window.app, st.violations, st.max_in_window.per_account.into_iter().collect())
}

/// v2's shape compressed 90× (15 min → 10 s): per account 12 per 2 s and 30 per 10 s (the
/// binding one), per app 100 per 10 s; names resolved in v2 with `[resolve]` compressed alike.
/// Returns each account's share of 30 in every full 10 s window, the most in any window per
/// window and account, and the violations.
async fn pacing_two_windows(pace: Pace) -> (Vec<f64>, Vec<String>, u64) {
    let names: Vec<String> = ["alice", "bob", "carol"].iter().map(|s| s.to_string()).collect();
    let (mut settings, mut cfg) = credentials(&names);
    settings.api.version = ApiVersion::V2;
    settings.limits.user = vec![Window::new(12, 2), Window::new(30, 10)];
    settings.limits.app = vec![Window::new(100, 10)];
    settings.limits.pace = pace;
    settings.resolve.per_user = Window::new(900, 10);
    settings.resolve.per_app = Window::new(300, 10);
    (cfg.user_windows, cfg.app_windows) = (settings.limits.user.clone(), settings.limits.app.clone());
    (cfg.lookup_user_window, cfg.lookup_app_window) = (settings.resolve.per_user, settings.resolve.per_app);
    let sb = Sandbox::start(cfg, 0).await.unwrap();
    settings.api.base_url = sb.base_url();
    let (_dir, store) = queued_store(&names, 540).await;
    let client = Client::new(&settings).unwrap();
    let opts = worker::Options { deadline: Some(now_ms() + 120_000), seed: 3, ..worker::Options::default() };
    worker::run(&store, &settings, &client, CancellationToken::new(), opts, &mut Silent).await.unwrap();
    let log = store.attempt_log().await.unwrap();
    let w = 10_000;
    let mut shares = Vec::new();
    for who in &names {
        let mine: Vec<i64> = log.iter().filter(|a| &a.account == who).map(|a| a.sent_at).collect();
        let (first, last) = (mine.first().copied().unwrap_or(0), mine.last().copied().unwrap_or(0));
        let mut start = first;
        while start + w <= last {
            let n = mine.iter().filter(|&&t| t >= start && t < start + w).count();
            shares.push(n as f64 / 30.0);
            start += w;
        }
    }
    let st = sb.stats();
    let most = st
        .windows
        .iter()
        .map(|m| format!("{} {}: {} / {}", m.scope, m.window, m.most.values().max().unwrap_or(&0), m.limit))
        .collect();
    (shares, most, st.violations + st.lookup_violations)
}

async fn bench_pacing(out: &mut String) {
    let _ = writeln!(
        out,
        "## 3. Pacing efficiency (3 accounts, 40 per account, 100 per app, window 10 s, 600 jobs = 6 windows)\n"
    );
    let _ = writeln!(
        out,
        "| pace | full windows | share of the binding limit per full window (min / median) | most in any window (app; per account) | violations |\n|---|---|---|---|---|"
    );
    for (pace, version) in
        [(Pace::Asap, ApiVersion::V1_1), (Pace::Spread, ApiVersion::V1_1), (Pace::Spread, ApiVersion::V2)]
    {
        let (shares, app_max, violations, per) = pacing(pace, version).await;
        let min = shares.iter().copied().fold(f64::INFINITY, f64::min);
        let mut per: Vec<String> = per.iter().map(|(k, v)| format!("{k} {v}")).collect();
        per.sort();
        let _ = writeln!(
            out,
            "| {pace:?}{} | {} | {:.1} % / {:.1} % | {app_max} / 100; {} / 40 | {violations} |",
            if version == ApiVersion::V2 { ", v2" } else { "" },
            shares.len(),
            min * 100.0,
            median(shares.clone()) * 100.0,
            per.join(", ")
        );
    }
    let _ =
        writeln!(out, "\nTargets: asap ≥ 99 %, spread ≥ 98 % per full window; never over the limit; 0 violations.\n");
    let _ = writeln!(
        out,
        "### Two windows per account (v2's shape compressed 90×: per account 12 per 2 s and 30 per 10 s, per app 100 per 10 s; 3 accounts, 540 jobs by name, resolved first)\n"
    );
    let _ = writeln!(
        out,
        "| pace | full 10 s windows (all accounts) | share of the binding 30/10s per full window (min / median) | most in any window (of all accounts) | violations |\n|---|---|---|---|---|"
    );
    for pace in [Pace::Asap, Pace::Spread] {
        let (shares, most, violations) = pacing_two_windows(pace).await;
        let min = shares.iter().copied().fold(f64::INFINITY, f64::min);
        let _ = writeln!(
            out,
            "| {pace:?} | {} | {:.1} % / {:.1} % | {} | {violations} |",
            shares.len(),
            min * 100.0,
            median(shares.clone()) * 100.0,
            most.join("; ")
        );
    }
    let _ = writeln!(out, "\nTargets: asap ≥ 99 %, spread ≥ 98 % of the binding window; 0 violations.\n");
}

// ---- 5. many accounts ----

/// 10,000 accounts of 4 jobs (by id), asap, 8 slots, for `secs` seconds: with v2's two windows
/// per account (compressed: 2 per 1 s and 4 per 5 s) or one (4 per 5 s); the app's lifted.
/// Returns (requests, CPU µs per request, fewest and most requests of an account, accounts
/// served at all).
async fn many_accounts(two: bool, secs: i64) -> (usize, f64, usize, usize, usize) {
    let names: Vec<String> = (0..10_000).map(|i| format!("m{i:05}")).collect();
    let (mut settings, mut cfg) = credentials(&names);
    settings.api.version = ApiVersion::V2;
    settings.limits.user = if two { vec![Window::new(2, 1), Window::new(4, 5)] } else { vec![Window::new(4, 5)] };
    settings.limits.app = vec![Window::new(1_000_000_000, 5)];
    settings.limits.pace = Pace::Asap;
    settings.run.concurrency = 8;
    (cfg.user_windows, cfg.app_windows) = (settings.limits.user.clone(), settings.limits.app.clone());
    let sb = Sandbox::start(cfg, 0).await.unwrap();
    settings.api.base_url = sb.base_url();
    let (_dir, store) = queued_store_as(&names, 40_000, true).await;
    // Identified before (GET /2/users/me is once per account, ever): this measures the follows.
    for a in store.accounts().await.unwrap() {
        let id = followq::sandbox::user_id(&a.name).to_string();
        let token = settings.account(&a.name).unwrap().token.clone();
        store.set_identity(a.id, &id, &a.name, &followq::store::token_digest(&token)).await.unwrap();
    }
    let client = Client::new(&settings).unwrap();
    let cpu0 = cpu_seconds();
    let opts = worker::Options { deadline: Some(now_ms() + secs * 1000), seed: 5, ..worker::Options::default() };
    worker::run(&store, &settings, &client, CancellationToken::new(), opts, &mut Silent).await.unwrap();
    let cpu = cpu_seconds() - cpu0;
    let log = store.attempt_log().await.unwrap();
    let mut per: HashMap<String, usize> = names.iter().map(|n| (n.clone(), 0)).collect();
    for a in &log {
        *per.entry(a.account.clone()).or_default() += 1;
    }
    let (few, most) = (per.values().copied().min().unwrap_or(0), per.values().copied().max().unwrap_or(0));
    let served = per.values().filter(|&&n| n > 0).count();
    (log.len(), cpu * 1e6 / log.len().max(1) as f64, few, most, served)
}

async fn bench_accounts(out: &mut String) {
    let secs = 15;
    let _ = writeln!(
        out,
        "## 5. Many accounts (10,000 accounts × 4 jobs by id, asap, 8 slots, app lifted, {secs} s a run; {} runs of each, interleaved)\n",
        runs()
    );
    let _ = writeln!(
        out,
        "| windows per account | median requests | median CPU per request (process, incl. sandbox) | fewest / most requests of an account at the end (median run) | accounts served |\n|---|---|---|---|---|"
    );
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..runs() {
        one.push(many_accounts(false, secs).await);
        two.push(many_accounts(true, secs).await);
    }
    for (what, runs) in [("one: 4/5s", &one), ("two (v2's shape): 2/1s + 4/5s", &two)] {
        let mut by_cpu = runs.clone();
        by_cpu.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mid = by_cpu[by_cpu.len() / 2];
        let _ = writeln!(
            out,
            "| {what} | {:.0} | {:.0} µs (runs {}) | {} / {} | {} |",
            median(runs.iter().map(|r| r.0 as f64).collect()),
            mid.1,
            fmt_list0(&runs.iter().map(|r| r.1).collect::<Vec<_>>()),
            mid.2,
            mid.3,
            mid.4
        );
    }
    let _ = writeln!(out);
}

// ---- 4. scale of the queue ----

async fn bench_scale(out: &mut String) {
    let names: Vec<String> = (0..1000).map(|i| format!("a{i:04}")).collect();
    let (settings, mut cfg) = credentials(&names);
    (cfg.user_windows, cfg.app_windows) = (settings.limits.user.clone(), settings.limits.app.clone());
    let sb = Sandbox::start(cfg, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // asap: this measures start-up, and in spread mode a restart rightly waits for the app's
    // next pacing slot (86.4 s at 1000 a day) after the previous iteration's request.
    write_private(
        &dir.path().join("followq.toml"),
        &config_toml(&settings, &sb.base_url(), "[limits]\npace = \"asap\"\n"),
    );
    let csv = dir.path().join("1m.csv");
    generate_csv(&csv, 1_000_000, &names, 9);
    let (t_import, _) = timed(Command::new(BIN).current_dir(dir.path()).arg("import").arg(&csv));
    let mut status = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let o = Command::new(BIN).current_dir(dir.path()).args(["status", "--json"]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        status.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let mut first = Vec::new();
    for _ in 0..runs() {
        let before = sb.stats().requests;
        let start = Instant::now();
        let log = std::fs::File::create(dir.path().join("run.log")).unwrap();
        let mut child = Command::new(BIN)
            .current_dir(dir.path())
            .args(["run", "--no-progress", "-q"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        while sb.stats().requests == before {
            if start.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                panic!("no request: {}", std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        first.push(start.elapsed().as_secs_f64() * 1000.0);
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        child.wait().unwrap();
    }
    let _ =
        writeln!(out, "## 4. Scale of the queue (1,000,000 jobs over 1,000 accounts; import took {t_import:.1} s)\n");
    let _ = writeln!(out, "| | median | runs (ms) | target |\n|---|---|---|---|");
    let _ = writeln!(
        out,
        "| `status --json` (process start to exit) | {:.0} ms | {} | ≤ 100 ms |",
        median(status.clone()),
        fmt_list0(&status)
    );
    let _ = writeln!(
        out,
        "| `run` start to the first request at the sandbox | {:.0} ms | {} | ≤ 1000 ms |\n",
        median(first.clone()),
        fmt_list0(&first)
    );
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let all = which.is_empty() || which.iter().any(|w| w == "all");
    let want = |name: &str| all || which.iter().any(|w| w == name);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut out = format!(
        "# followq benchmarks\n\nMachine: {} cores, {}; release build; medians of {} runs unless stated. Generated {}.\n\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string()))
            .map(|kb| format!("{} GiB", kb.parse::<u64>().unwrap_or(0) / 1024 / 1024))
            .unwrap_or_default(),
        runs(),
        followq::cli::local_time(now_ms())
    );
    let report = |out: &str| {
        print!("{out}");
        let _ = std::io::stdout().flush();
    };
    for name in ["import", "dispatch", "pacing", "scale", "accounts"] {
        if !want(name) {
            continue;
        }
        let mut s = String::new();
        match name {
            "import" => bench_import(&mut s),
            "dispatch" => rt.block_on(bench_dispatch(&mut s)),
            "pacing" => rt.block_on(bench_pacing(&mut s)),
            "accounts" => rt.block_on(bench_accounts(&mut s)),
            _ => rt.block_on(bench_scale(&mut s)),
        }
        report(&s);
        out.push_str(&s);
    }
    let path = PathBuf::from(std::env::var("FOLLOWQ_BENCH_OUT").unwrap_or_else(|_| "target/bench-results.md".into()));
    if std::fs::write(&path, &out).is_ok() {
        eprintln!("results written to {}", path.display());
    }
}
