use super::*;
use crate::model::AttemptResult;
use crate::model::NewJob;
use crate::store::{Quota, Settlement};
use crate::time::now_ms;

/// A store with `n` queued jobs for one account; its id.
async fn store_with(n: usize) -> (tempfile::TempDir, SqliteStore, i64) {
    let dir = tempfile::tempdir().unwrap();
    let (store, id) = store_at(&dir.path().join("t.db"), n).await;
    (dir, store, id)
}

/// [`store_with`] at `path`.
async fn store_at(path: &std::path::Path, n: usize) -> (SqliteStore, i64) {
    let store = SqliteStore::open(path).await.unwrap();
    let id = store.sync_accounts(&["alice"]).await.unwrap()["alice"];
    queue(&store, id, "t", n).await;
    (store, id)
}

/// Imports `n` jobs for `account_id`, targets `{prefix}0`, `{prefix}1`, ...
async fn queue(store: &SqliteStore, account_id: i64, prefix: &str, n: usize) {
    let mut session = store.import_session(false).await.unwrap();
    let source = format!("{prefix}.csv");
    let import = session.begin_import(&source, "").await.unwrap();
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| NewJob { account_id, kind: TargetKind::ScreenName, target: format!("{prefix}{i}"), notify: false })
        .collect();
    session.insert_jobs(import, &jobs).await.unwrap();
    let summary = crate::model::Summary { source, rows_read: n as u64, added: n as u64, duplicates: 0, rejected: 0 };
    session.finish(import, &summary).await.unwrap();
}

/// One window per scope: `per_user` for the account and `per_app` for the app in `window_ms`.
fn single(window_ms: i64, per_user: u32, per_app: u32) -> Budget {
    Budget { user: vec![Quota { limit: per_user, window_ms }], app: vec![Quota { limit: per_app, window_ms }] }
}

fn budget() -> Budget {
    single(60_000, 100, 100)
}

/// A clock that says `ms`.
fn at(ms: i64) -> Clock {
    Clock::virtual_at(ms)
}

fn ask(account_id: i64, budget: &Budget, want: usize) -> Ask<'_> {
    Ask { account_id, budget, want, ids_only: false }
}

fn answer(c: &Claim) -> Record {
    Record {
        result: AttemptResult::Followed,
        http_status: Some(200),
        job: RecordJob::Done(Outcome::Followed),
        ..Record::for_claim(c)
    }
}

fn claims(r: ClaimResult) -> Vec<Claim> {
    match r {
        ClaimResult::Claimed(claims) => claims,
        other => panic!("expected a claim, got {other:?}"),
    }
}

#[tokio::test]
async fn a_claim_counts_the_ledger_and_takes_only_what_both_budgets_allow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let (store, id) = store_at(&path, 20).await;
    let now = 1_000_000;
    let budget = single(60_000, 5, 7);
    let first = claims(store.claim(&at(now), ask(id, &budget, 3)).await.unwrap());
    assert_eq!(first.iter().map(|c| c.target.as_str()).collect::<Vec<_>>(), ["t0", "t1", "t2"]);
    assert!(first.iter().all(|c| c.sent_at == now));
    // Another process's claim counts too: the ledger, not a mirror, is what is counted.
    let other = SqliteStore::open(&path).await.unwrap();
    assert_eq!(claims(other.claim(&at(now + 1), ask(id, &budget, 1)).await.unwrap()).len(), 1);
    assert_eq!(claims(store.claim(&at(now + 2), ask(id, &budget, 10)).await.unwrap()).len(), 1, "5 per account");
    assert!(matches!(store.claim(&at(now + 3), ask(id, &budget, 1)).await.unwrap(), ClaimResult::UserFull));
    // The window slides: a minute after the first three, they no longer count.
    let later = now + 60_000;
    let app_first = single(60_000, 100, 7);
    assert_eq!(
        claims(store.claim(&at(later), ask(id, &app_first, 10)).await.unwrap()).len(),
        5,
        "7 per app, 2 still in"
    );
    assert!(matches!(store.claim(&at(later), ask(id, &app_first, 1)).await.unwrap(), ClaimResult::AppFull));
    assert_eq!(store.open_attempts().await.unwrap(), 10);
}

#[tokio::test]
async fn a_late_answer_changes_nothing_a_repeated_one_is_an_error_and_a_pause_stops_the_next_claim() {
    let (_dir, store, id) = store_with(10).await;
    let now = now_ms();
    let first = claims(store.claim(&at(now), ask(id, &budget(), 3)).await.unwrap());
    let answers: Vec<Record> = first.iter().map(answer).collect();
    // Another run's start-up recovery closes the last one as `unknown` (and queues its job):
    // its answer, when it comes, is late and changes nothing.
    sqlx::query("update attempts set finished_at = ?2, result = 'unknown' where id = ?1")
        .bind(first[2].attempt_id)
        .bind(now + 1)
        .execute(&store.pool)
        .await
        .unwrap();
    sqlx::query("update jobs set state = 'queued', attempt_id = null where id = ?1")
        .bind(first[2].job_id)
        .execute(&store.pool)
        .await
        .unwrap();
    assert_eq!(store.record(&answers, &at(now + 5)).await.unwrap(), [Written::Yes, Written::Yes, Written::Late]);
    assert_eq!(store.open_attempts().await.unwrap(), 0);
    // The same answer twice is a transition that changes nothing: an error, and nothing moves.
    let again = store.record(&answers[..1], &at(now + 6)).await.unwrap_err();
    assert!(matches!(again, StoreError::Stale(_)), "{again}");
    let log = store.attempt_log().await.unwrap();
    assert_eq!(log[0].finished_at, Some(now + 5));
    assert_eq!(log[2].result, Some(AttemptResult::Unknown));

    let next = claims(store.claim(&at(now + 10), ask(id, &budget(), 1)).await.unwrap());
    let mut pause = answer(&next[0]);
    pause.account = Some(RecordAccount::Pause { until: now + 60_000, reason: "test".into(), pace_factor: None });
    store.record(&[pause], &at(now + 11)).await.unwrap();
    let r = store.claim(&at(now + 12), ask(id, &budget(), 1)).await.unwrap();
    assert!(matches!(r, ClaimResult::Paused { until, .. } if until == now + 60_000), "{r:?}");
    assert!(matches!(store.claim(&at(now + 60_000), ask(id, &budget(), 1)).await.unwrap(), ClaimResult::Claimed(_)));

    // The counts kept by the trigger agree with a recount.
    let mut kept = store.job_counts().await.unwrap();
    let mut counted = store.recount_jobs().await.unwrap();
    kept.retain(|c| c.n > 0);
    counted.retain(|c| c.n > 0);
    assert_eq!(format!("{kept:?}"), format!("{counted:?}"));
}

#[tokio::test]
async fn an_answer_whose_job_left_its_attempt_is_an_error_and_writes_nothing() {
    let (_dir, store, id) = store_with(2).await;
    let now = now_ms();
    let claimed = claims(store.claim(&at(now), ask(id, &budget(), 2)).await.unwrap());
    sqlx::query("update jobs set attempt_id = null where id = ?1")
        .bind(claimed[1].job_id)
        .execute(&store.pool)
        .await
        .unwrap();
    let answers: Vec<Record> = claimed.iter().map(answer).collect();
    let err = store.record(&answers, &at(now + 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err}");
    assert_eq!(store.open_attempts().await.unwrap(), 2, "the whole batch was rolled back");
}

#[tokio::test]
async fn every_attempt_result_reads_back_as_it_was_written() {
    use AttemptResult::*;
    let all = [
        Followed,
        Requested,
        AlreadyFollowing,
        Blocked,
        Suspended,
        NotFound,
        Refused,
        RateLimited,
        FollowLimit,
        Automated,
        AccountStopped,
        AppStopped,
        ClockSkew,
        Transient,
        Unknown,
    ];
    let (_dir, store, id) = store_with(all.len()).await;
    let claimed = claims(store.claim(&at(now_ms()), ask(id, &budget(), all.len())).await.unwrap());
    let answers: Vec<Record> =
        claimed.iter().zip(all).map(|(c, result)| Record { result, ..Record::for_claim(c) }).collect();
    store.record(&answers, &Clock::System).await.unwrap();
    let stored: Vec<String> =
        sqlx::query_scalar("select result from attempts order by id").fetch_all(&store.pool).await.unwrap();
    assert_eq!(stored[0], "followed");
    assert_eq!(stored[2], "already_following");
    assert_eq!(stored[9], "automated");
    let read: Vec<Option<AttemptResult>> = store.attempt_log().await.unwrap().into_iter().map(|a| a.result).collect();
    assert_eq!(read, all.map(Some));
}

/// Defect: with `synchronous = NORMAL` a claim's WAL frames reached the disk only at a
/// checkpoint, after its request had left: a power loss erased attempts X had seen, the
/// next run overspent, and their jobs were sent twice. Every commit (claim, record,
/// recover) is synced before it returns.
#[tokio::test]
async fn the_claiming_connection_syncs_every_commit_before_the_request_leaves() {
    let (_dir, store, _) = store_with(1).await;
    let mut conn = store.pool.acquire().await.unwrap();
    let on_pool: i64 = sqlx::query_scalar("pragma synchronous").fetch_one(&mut *conn).await.unwrap();
    // 2 is FULL: in WAL mode the WAL is fsynced at every commit.
    assert_eq!(on_pool, 2);
    let mode: String = sqlx::query_scalar("pragma journal_mode").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(mode, "wal");
}

/// Takes `other`'s write lock (a write in a transaction left open) and releases it after `ms`.
async fn hold(other: &SqliteStore, ms: u64) -> tokio::task::JoinHandle<()> {
    let mut held = other.pool.begin_with("begin immediate").await.unwrap();
    sqlx::query("update accounts set pace_factor = 1.0").execute(&mut *held).await.unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        held.commit().await.unwrap();
    })
}

/// Defect: a writer that held the lock longer than the busy timeout (an import waiting on
/// a pipe) made `run` exit 1 with "database is locked". The run's writes wait it out.
#[tokio::test]
async fn a_run_outlasts_a_writer_that_holds_the_lock_past_the_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(store_at(&path, 1).await);
    let store = SqliteStore::open_with(&path, std::time::Duration::from_millis(100)).await.unwrap();
    let id = store.sync_accounts(&["alice"]).await.unwrap()["alice"];
    let other = SqliteStore::open(&path).await.unwrap();
    let release = hold(&other, 700).await;
    let started = std::time::Instant::now();
    let claimed = store.claim(&Clock::System, ask(id, &budget(), 1)).await.unwrap();
    assert!(matches!(claimed, ClaimResult::Claimed(_)), "{claimed:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(500), "it waited for the lock");
    release.await.unwrap();
    let release = hold(&other, 400).await;
    assert_eq!(store.recover(&Clock::System).await.unwrap().requeued_jobs, 1);
    release.await.unwrap();
}

/// Defect (found from the outside): the claim was stamped with the time the dispatcher
/// decided, before it waited for another writer's lock (a `sqlite3` shell, an import). The
/// ledger then placed the requests earlier than they left, freed their window early, and a
/// lock held past the safety margin made the run overspend (the sandbox saw 6 in a window of
/// 3). The time is read once the lock is held.
#[tokio::test]
async fn a_claim_that_waited_for_the_write_lock_is_stamped_when_it_got_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let (store, id) = store_at(&path, 2).await;
    let other = SqliteStore::open(&path).await.unwrap();
    let asked = now_ms();
    let release = hold(&other, 600).await;
    let claimed = claims(store.claim(&Clock::System, ask(id, &budget(), 2)).await.unwrap());
    release.await.unwrap();
    assert!(claimed[0].sent_at >= asked + 550, "stamped {} ms after it asked", claimed[0].sent_at - asked);
    let sent: Vec<i64> =
        sqlx::query_scalar("select sent_at from attempts order by id").fetch_all(&store.pool).await.unwrap();
    assert!(sent.iter().all(|&t| t == claimed[0].sent_at), "{sent:?}");
}

/// The window counts read per-minute tallies and the rest of the first minute (`sent_after!`):
/// at every kind of start (on a minute's boundary, a millisecond either side of one, on an
/// attempt's own time and either side of it, before and after every attempt) they equal a
/// count of the attempts themselves, for each account and for the app, and a claim with one
/// place left in either window takes exactly one.
#[tokio::test]
async fn a_window_count_is_exact_wherever_its_start_falls_in_a_minute() {
    let (_dir, store, alice) = store_with(60).await;
    let bob = store.sync_accounts(&["alice", "bob"]).await.unwrap()["bob"];
    queue(&store, bob, "b", 60).await;

    // Claims over five minutes, some on a minute's first or last millisecond.
    let base = 29_400_000 * 60_000; // a minute's first millisecond
    let mut times: Vec<i64> = (0..30).map(|k| base + k * 9_973).collect();
    times.extend([base + 60_000, base + 119_999, base + 120_000, base + 180_000 - 1]);
    times.sort();
    let open = single(3_600_000, 1_000, 1_000);
    for (k, &t) in times.iter().enumerate() {
        let who = if k % 3 == 0 { bob } else { alice };
        claims(store.claim(&at(t), ask(who, &open, 1 + k % 3)).await.unwrap());
    }
    let sent: Vec<i64> =
        sqlx::query_scalar("select sent_at from attempts order by id").fetch_all(&store.pool).await.unwrap();
    let mut starts: Vec<i64> = sent.iter().flat_map(|&t| [t - 1, t, t + 1]).collect();
    for m in 0..7 {
        starts.extend([base + m * 60_000 - 1, base + m * 60_000, base + m * 60_000 + 1]);
    }
    starts.extend([0, base - 3_600_000, base + 10 * 60_000]);
    for &start in &starts {
        for account in [alice, bob] {
            let sql = format!(
                "select {}, {}, (select count(*) from attempts where account_id = ?1 and sent_at > ?2),
                   (select count(*) from attempts where sent_at > ?2)",
                sent_after(Some("?1"), "?2"),
                sent_after(None, "?2")
            );
            let (user, app, user_counted, app_counted): (i64, i64, i64, i64) =
                sqlx::query_as(AssertSqlSafe(sql)).bind(account).bind(start).fetch_one(&store.pool).await.unwrap();
            assert_eq!((user, app), (user_counted, app_counted), "start {} ms after base", start - base);
        }
    }
    // The claim reads the same counts: one place left in the account's window, one claimed.
    let now = base + 150_000;
    let start = base + 60_000;
    let used: i64 = sqlx::query_scalar("select count(*) from attempts where account_id = ?1 and sent_at > ?2")
        .bind(alice)
        .bind(start)
        .fetch_one(&store.pool)
        .await
        .unwrap();
    let tight = single(now - start, used as u32 + 1, 1_000);
    assert_eq!(claims(store.claim(&at(now), ask(alice, &tight, 5)).await.unwrap()).len(), 1);
    assert!(matches!(store.claim(&at(now), ask(alice, &tight, 5)).await.unwrap(), ClaimResult::UserFull));
}

/// Several windows per scope: a claim takes only what every one of them has room for, and
/// which window is full, the account's or the app's, is told apart.
#[tokio::test]
async fn a_claim_takes_only_what_every_window_of_both_scopes_allows() {
    let (_dir, store, alice) = store_with(40).await;
    let bob = store.sync_accounts(&["alice", "bob"]).await.unwrap()["bob"];
    queue(&store, bob, "b", 40).await;
    let q = |limit, window_ms| Quota { limit, window_ms };
    let budget = Budget { user: vec![q(3, 1_000), q(5, 10_000)], app: vec![q(8, 10_000), q(100, 60_000)] };
    let base = 50_000_000;
    let take = |who, t, want| {
        let (store, budget) = (&store, &budget);
        async move { store.claim(&at(t), ask(who, budget, want)).await.unwrap() }
    };
    assert_eq!(claims(take(alice, base, 10).await).len(), 3, "the short window's 3");
    assert!(matches!(take(alice, base + 999, 1).await, ClaimResult::UserFull));
    assert_eq!(claims(take(alice, base + 1_000, 10).await).len(), 2, "the long window's 5");
    assert!(matches!(take(alice, base + 5_000, 1).await, ClaimResult::UserFull), "the long window is full");
    // The app's 8 in 10 s: bob has 3 of his own, and the app 3 left.
    assert_eq!(claims(take(bob, base + 5_000, 10).await).len(), 3);
    assert!(matches!(take(bob, base + 6_000, 10).await, ClaimResult::AppFull));
    // Ten seconds after alice's first three they leave both of her windows and the app's.
    assert_eq!(claims(take(alice, base + 10_000, 10).await).len(), 3);
    let used: i64 = sqlx::query_scalar("select count(*) from attempts").fetch_one(&store.pool).await.unwrap();
    assert_eq!(used, 11);
}

/// v2 follows by id: with `ids_only` a claim takes jobs named by an id, or by a screen name
/// resolved to one (and hands over that id), and leaves unresolved names queued.
#[tokio::test]
async fn an_ids_only_claim_takes_resolved_names_and_ids_and_leaves_the_rest() {
    let (_dir, store, id) = store_with(3).await; // t0, t1, t2 by screen name
    let mut session = store.import_session(false).await.unwrap();
    let import = session.begin_import("ids.csv", "").await.unwrap();
    let job = NewJob { account_id: id, kind: TargetKind::UserId, target: "777".into(), notify: false };
    session.insert_jobs(import, &[job]).await.unwrap();
    let summary =
        crate::model::Summary { source: "ids.csv".into(), rows_read: 1, added: 1, duplicates: 0, rejected: 0 };
    session.finish(import, &summary).await.unwrap();
    let found = |name: &str, uid: &str| crate::model::ResolvedUser {
        username: name.into(),
        user_id: uid.into(),
        state: crate::model::UserState::Found,
        protected: false,
    };
    store.record_users(&[found("T1", "41")], 1).await.unwrap();
    let b = budget();
    let got =
        claims(store.claim(&at(1_000), Ask { account_id: id, budget: &b, want: 10, ids_only: true }).await.unwrap());
    let taken: Vec<(&str, Option<&str>)> = got.iter().map(|c| (c.target.as_str(), c.resolved.as_deref())).collect();
    assert_eq!(taken, [("t1", Some("41")), ("777", None)]);
    let r = store.claim(&at(1_001), Ask { account_id: id, budget: &b, want: 10, ids_only: true }).await.unwrap();
    assert!(matches!(r, ClaimResult::NoJob), "{r:?}");
    // Without `ids_only` (v1.1, which follows by name), the rest go.
    assert_eq!(claims(store.claim(&at(1_002), ask(id, &b, 10)).await.unwrap()).len(), 2);
}

/// Issue 16: a follow X answered is looked for once settled; seen, confirmed; not seen, looked
/// for again at `retry_after`, then sent again once (an ordinary attempt, counted), and not seen
/// a settle after that, it ends `unconfirmed`. The counts follow every step.
#[tokio::test]
async fn a_follow_not_seen_is_looked_for_again_sent_again_once_then_ends_unconfirmed() {
    let (_dir, store, id) = store_with(3).await;
    let (settle, retry) = (120_000, 600_000);
    let budget = budget();
    let t0 = 1_000_000;
    let sent = claims(store.claim(&at(t0), ask(id, &budget, 3)).await.unwrap());
    let records: Vec<Record> = sent.iter().map(|c| Record { check_after: Some(settle), ..answer(c) }).collect();
    store.record(&records, &at(t0 + 10)).await.unwrap();
    let (a, b, c) = (sent[0].job_id, sent[1].job_id, sent[2].job_id);
    assert!(store.due_checks(id, t0 + 10 + settle - 1, 100).await.unwrap().is_empty(), "not settled yet");
    let due = store.due_checks(id, t0 + 10 + settle, 100).await.unwrap();
    assert_eq!(due.iter().map(|c| c.job_id).collect::<Vec<_>>(), [a, b, c]);
    assert_eq!(due[0].outcome, Outcome::Followed);
    assert_eq!(store.next_checks().await.unwrap(), [(id, t0 + 10 + settle)]);

    // a seen; b and c not, before retry_after: looked for again then.
    let first = t0 + 10 + settle;
    let s = store.settle_checks(&[(a, true), (b, false), (c, false)], first, retry).await.unwrap();
    assert_eq!(s, [(a, Settlement::Confirmed), (b, Settlement::Later), (c, Settlement::Later)]);
    assert_eq!(store.next_checks().await.unwrap(), [(id, t0 + 10 + retry)]);
    // At retry_after: b seen at last, c still not: c goes back to the queue.
    let second = t0 + 10 + retry;
    let s = store.settle_checks(&[(b, true), (c, false)], second, retry).await.unwrap();
    assert_eq!(s, [(b, Settlement::Confirmed), (c, Settlement::Resent)]);
    assert!(store.next_checks().await.unwrap().is_empty());
    assert_eq!(store.job_counts().await.unwrap(), store.recount_jobs().await.unwrap());
    // Sent again: an ordinary attempt in the ledger.
    let again = claims(store.claim(&at(second + 5), ask(id, &budget, 3)).await.unwrap());
    assert_eq!(again.iter().map(|c| c.job_id).collect::<Vec<_>>(), [c]);
    let record = Record { check_after: Some(settle), ..answer(&again[0]) };
    store.record(&[record], &at(second + 6)).await.unwrap();
    assert_eq!(store.attempt_log().await.unwrap().len(), 4);
    // Not seen a settle after the re-send: unconfirmed, nothing more to look for.
    let third = second + 6 + settle;
    let s = store.settle_checks(&[(c, false)], third, retry).await.unwrap();
    assert_eq!(s, [(c, Settlement::Unconfirmed)]);
    assert!(store.next_checks().await.unwrap().is_empty());
    // Settling a job no longer looked for changes nothing.
    assert!(store.settle_checks(&[(a, false)], third, retry).await.unwrap().is_empty());
    let counts = store.job_counts().await.unwrap();
    assert_eq!(counts, store.recount_jobs().await.unwrap());
    let n = |o: Outcome| counts.iter().filter(|r| r.outcome == Some(o)).map(|r| r.n).sum::<i64>();
    assert_eq!((n(Outcome::Followed), n(Outcome::Unconfirmed)), (2, 1));
    let confirmed = store.confirmations().await.unwrap();
    assert_eq!(confirmed, [(id, crate::store::Confirmations { confirmed: 2, awaiting: 0 })]);
    // `retry --outcome unconfirmed` starts the job afresh.
    assert_eq!(store.requeue(&["unconfirmed".into()], Some(id)).await.unwrap(), 1);
    let fresh = claims(store.claim(&at(third + 1), ask(id, &budget, 3)).await.unwrap());
    store.record(&[Record { check_after: Some(settle), ..answer(&fresh[0]) }], &at(third + 2)).await.unwrap();
    let s = store.settle_checks(&[(c, false)], third + 2 + retry, retry).await.unwrap();
    assert_eq!(s, [(c, Settlement::Resent)], "a fresh start gets its one re-send again");
}
