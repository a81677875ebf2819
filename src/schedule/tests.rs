use super::*;

/// Adds an account; its index in `accounts`.
fn add(s: &mut Scheduler, id: i64, name: &str, until: i64, why: &str, stop: Option<String>, pace: f64) -> usize {
    s.add_account(id, name, until, why, stop, pace);
    s.accounts.len() - 1
}

fn limits(pace: Pace) -> Limits {
    Limits { per_user: 400, per_app: 1000, window_ms: 86_400_000, pace }
}

/// Runs the scheduler over simulated time, sending whenever it says so, and returns the
/// send times per account.
fn simulate(s: &mut Scheduler, until: i64) -> Vec<Vec<i64>> {
    let mut out = vec![Vec::new(); s.accounts.len()];
    let mut now = 0;
    while now < until {
        match s.decide(now) {
            Decision::Send(id) => {
                let i = s.index_of(id).unwrap();
                s.record_send(i, now);
                out[i].push(now);
            }
            Decision::Wait(t) => now = t.max(now + 1),
            Decision::Idle | Decision::Blocked => break,
        }
    }
    out
}

/// The most sends inside any window of `w` ms.
fn max_in_window(times: &[i64], w: i64) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] >= w {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

fn three_accounts(pace: Pace) -> Scheduler {
    let mut s = Scheduler::new(limits(pace), 7);
    for id in 1..=3 {
        let i = add(&mut s, id, &format!("a{id}"), 0, "", None, 1.0);
        s.accounts[i].ready_at = Some(0);
        s.accounts[i].queued = 100_000;
    }
    s
}

#[test]
fn no_window_ever_over_either_limit_and_the_binding_limit_is_used() {
    for pace in [Pace::Spread, Pace::Asap] {
        let mut s = three_accounts(pace);
        let days = 4;
        let sends = simulate(&mut s, days * 86_400_000);
        let all: Vec<i64> = sends.iter().flatten().copied().collect();
        for a in &sends {
            assert!(max_in_window(a, 86_400_000) <= 400, "{pace:?}: user window over 400");
        }
        assert!(max_in_window(&all, 86_400_000) <= 1000, "{pace:?}: app window over 1000");
        // The app (1000) binds: over 4 days, at least 98% of 4000.
        assert!(all.len() as f64 >= 0.98 * 4000.0, "{pace:?}: only {} sends", all.len());
        // Round-robin: no account starves.
        let min = sends.iter().map(Vec::len).min().unwrap();
        let max = sends.iter().map(Vec::len).max().unwrap();
        assert!(max - min <= 2, "{pace:?}: unfair split {min}..{max}");
    }
}

#[test]
fn spread_spaces_requests_and_asap_bursts() {
    let mut s = Scheduler::new(limits(Pace::Spread), 1);
    let i = add(&mut s, 1, "a", 0, "", None, 1.0);
    s.accounts[i].ready_at = Some(0);
    let sends = simulate(&mut s, 3_600_000);
    // One every 216 s less at most 5% jitter: 17 in the first hour, not 400.
    assert!((16..=18).contains(&sends[0].len()), "{}", sends[0].len());
    let mut s = Scheduler::new(limits(Pace::Asap), 1);
    let i = add(&mut s, 1, "a", 0, "", None, 1.0);
    s.accounts[i].ready_at = Some(0);
    assert_eq!(simulate(&mut s, 3_600_000)[0].len(), 400);
}

#[test]
fn history_from_the_ledger_closes_the_window_after_a_restart() {
    let mut s = Scheduler::new(limits(Pace::Asap), 1);
    let i = add(&mut s, 1, "a", 0, "", None, 1.0);
    s.accounts[i].ready_at = Some(0);
    for k in 0..400 {
        s.load_send(1, 1_000 + k);
    }
    assert_eq!(s.decide(5_000), Decision::Wait(1_000 + 86_400_000));
}

#[test]
fn pauses_stops_and_no_work() {
    let mut s = Scheduler::new(limits(Pace::Asap), 1);
    let a = add(&mut s, 1, "a", 50_000, "429", None, 1.0);
    let b = add(&mut s, 2, "b", 0, "", Some("locked".into()), 1.0);
    assert_eq!(s.decide(0), Decision::Idle);
    s.accounts[b].ready_at = Some(0);
    assert_eq!(s.decide(0), Decision::Blocked);
    s.accounts[a].ready_at = Some(0);
    assert_eq!(s.decide(0), Decision::Wait(50_000));
    assert_eq!(s.decide(50_000), Decision::Send(s.accounts[a].id));
}

#[test]
fn the_app_window_holds_back_every_account() {
    let mut s = Scheduler::new(Limits { per_user: 10, per_app: 15, window_ms: 1_000, pace: Pace::Asap }, 1);
    for id in 1..=2 {
        let i = add(&mut s, id, "x", 0, "", None, 1.0);
        s.accounts[i].ready_at = Some(0);
    }
    let sends = simulate(&mut s, 1_000);
    assert_eq!(sends[0].len() + sends[1].len(), 15);
}

#[test]
fn eta_follows_the_limits() {
    let mut s = Scheduler::new(limits(Pace::Spread), 1);
    let i = add(&mut s, 1, "a", 0, "", None, 1.0);
    s.accounts[i].ready_at = Some(0);
    s.accounts[i].queued = 401;
    // 401 requests at 216 s apart (the window with margin / 400): 400 gaps.
    assert_eq!(s.eta(0), Some(400 * 216_000));
    let mut s = Scheduler::new(limits(Pace::Asap), 1);
    let i = add(&mut s, 1, "a", 0, "", None, 1.0);
    s.accounts[i].ready_at = Some(0);
    s.accounts[i].queued = 401;
    assert_eq!(s.eta(0), Some(86_400_000));
}
