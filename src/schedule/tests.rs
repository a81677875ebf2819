use super::*;
use crate::model::{Budget, Quota};

/// Adds an account; its index in `accounts`.
fn add(s: &mut Scheduler, id: i64, name: &str, until: i64, why: &str, stop: Option<String>, pace: f64) -> usize {
    s.add_account(id, name, until, why, stop, pace);
    s.accounts.len() - 1
}

/// One window per scope.
fn single(per_user: u32, per_app: u32, window_ms: i64, pace: Pace) -> Limits {
    let q = |limit| Quota { limit, window_ms };
    Limits::new(Budget { user: vec![q(per_user)], app: vec![q(per_app)] }, pace)
}

fn limits(pace: Pace) -> Limits {
    single(400, 1000, 86_400_000, pace)
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
    let mut s = Scheduler::new(single(10, 15, 1_000, Pace::Asap), 1);
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

/// The v2 shape, compressed: per account 5 in 2 s and 12 in 10 s, per app 30 in 10 s.
fn two_windows(pace: Pace) -> Limits {
    let q = |limit, window_ms| Quota { limit, window_ms };
    Limits::new(Budget { user: vec![q(5, 2_000), q(12, 10_000)], app: vec![q(30, 10_000)] }, pace)
}

#[test]
fn every_window_of_an_account_is_held_and_the_binding_one_is_used() {
    for pace in [Pace::Spread, Pace::Asap] {
        let mut s = Scheduler::new(two_windows(pace), 3);
        let i = add(&mut s, 1, "a", 0, "", None, 1.0);
        s.accounts[i].ready_at = Some(0);
        s.accounts[i].queued = 100_000;
        let run = 20 * 10_000;
        let sends = simulate(&mut s, run);
        assert!(max_in_window(&sends[0], 2_000) <= 5, "{pace:?}: the short window over 5");
        assert!(max_in_window(&sends[0], 10_000) <= 12, "{pace:?}: the long window over 12");
        // The long window binds (12 per 10 s is less than 5 per 2 s's 25): 20 windows' worth.
        assert!(sends[0].len() as f64 >= 0.98 * 12.0 * 20.0, "{pace:?}: only {} sends", sends[0].len());
    }
    // Spread spaces by the binding window: one every 10 s / 12, never a burst of 5.
    let s = Scheduler::new(two_windows(Pace::Spread), 3);
    assert_eq!(s.limits.user_spacing(1.0), 834);
    assert_eq!(s.limits.binding_user(), Some(Quota { limit: 12, window_ms: 10_000 }));
}

#[test]
fn asap_bursts_to_the_short_window_and_waits_for_it_then_for_the_long_one() {
    let mut s = Scheduler::new(two_windows(Pace::Asap), 3);
    let i = add(&mut s, 1, "a", 0, "", None, 1.0);
    s.accounts[i].ready_at = Some(0);
    s.accounts[i].queued = 100;
    assert_eq!(s.burst(1, 0, 100), 5, "the short window's room");
    for _ in 0..5 {
        s.record_send(i, 0);
    }
    assert_eq!(s.decide(1), Decision::Wait(2_000), "the short window frees first");
    assert_eq!(s.user_holding(1, 1), Some((Quota { limit: 5, window_ms: 2_000 }, 2_000)));
    for t in [2_000, 4_000] {
        for _ in 0..s.burst(1, t, 100) {
            s.record_send(i, t);
        }
    }
    // 5 + 5 + 2: the long window is full until the first sends leave it.
    assert_eq!(s.used(1, 4_000).iter().map(|(_, n)| *n).collect::<Vec<_>>(), [2, 12]);
    assert_eq!(s.decide(6_000), Decision::Wait(10_000));
    assert_eq!(s.user_holding(1, 6_000), Some((Quota { limit: 12, window_ms: 10_000 }, 10_000)));
}
