//! Time: milliseconds since the epoch (the one unit in the database), the [`Clock`] every
//! decision reads it from, and durations and local times for people.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the dispatcher, its policies and the sandbox read "now", and how they wait for a time.
///
/// A run uses the system clock. Tests use a virtual one: it stands still while anyone holds it
/// ([`Clock::hold`]: a dispatcher at work, a request out) and, when nobody does, jumps to the
/// earliest time a sleeper waits for. A run whose windows, pauses and back-offs span hours then
/// takes as long as its requests, every deadline is met exactly, and several dispatchers on one
/// virtual clock see one consistent time.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Virtual(Arc<VirtualClock>),
}

/// The state of a virtual [`Clock`].
#[derive(Debug)]
pub struct VirtualClock {
    state: Mutex<VirtualState>,
    changed: tokio::sync::Notify,
}

#[derive(Debug)]
struct VirtualState {
    now: i64,
    holds: usize,
    /// Sleepers by the time they wait for (and a number that tells two apart).
    sleepers: BTreeSet<(i64, u64)>,
    next_sleeper: u64,
}

/// While alive, a virtual clock stands still (see [`Clock::hold`]).
#[derive(Debug)]
pub struct Hold(Option<Arc<VirtualClock>>);

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            v.lock().holds -= 1;
            v.changed.notify_waiters();
        }
    }
}

/// A sleeper on a virtual clock, listed while it waits (and unlisted however its wait ends:
/// a sleep dropped unfinished, in a `select!`, must not hold the clock back).
struct Sleeper<'a> {
    clock: &'a VirtualClock,
    key: (i64, u64),
}

impl<'a> Sleeper<'a> {
    fn new(clock: &'a VirtualClock, t: i64) -> Sleeper<'a> {
        let mut s = clock.lock();
        s.next_sleeper += 1;
        let key = (t, s.next_sleeper);
        s.sleepers.insert(key);
        Sleeper { clock, key }
    }
}

impl Drop for Sleeper<'_> {
    fn drop(&mut self) {
        self.clock.lock().sleepers.remove(&self.key);
        self.clock.changed.notify_waiters();
    }
}

impl VirtualClock {
    fn lock(&self) -> std::sync::MutexGuard<'_, VirtualState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock {
    /// A virtual clock that starts at `start_ms` (ms since the epoch).
    pub fn virtual_at(start_ms: i64) -> Clock {
        let state = VirtualState { now: start_ms, holds: 0, sleepers: BTreeSet::new(), next_sleeper: 0 };
        Clock::Virtual(Arc::new(VirtualClock { state: Mutex::new(state), changed: tokio::sync::Notify::new() }))
    }

    /// A virtual clock that starts at the system's time now.
    pub fn virtual_now() -> Clock {
        Clock::virtual_at(now_ms())
    }

    /// Now, in ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => now_ms(),
            Clock::Virtual(v) => v.lock().now,
        }
    }

    /// Keeps a virtual clock where it is until the [`Hold`] is dropped: work under way takes no
    /// time on it. Nothing on the system clock.
    pub fn hold(&self) -> Hold {
        match self {
            Clock::System => Hold(None),
            Clock::Virtual(v) => {
                v.lock().holds += 1;
                Hold(Some(v.clone()))
            }
        }
    }

    /// Waits until `t` (ms since the epoch), or for `most` of real time if that is sooner. A
    /// virtual clock moves to `t` (never backwards) once nobody holds it and no sleeper waits
    /// for an earlier time.
    pub async fn sleep_until(&self, t: i64, most: Duration) {
        let v = match self {
            Clock::System => {
                let wait = Duration::from_millis((t - now_ms()).max(0) as u64).min(most);
                return tokio::time::sleep(wait).await;
            }
            Clock::Virtual(v) => v,
        };
        let me = Sleeper::new(v, t);
        let now = tokio::time::Instant::now();
        let give_up = now.checked_add(most).unwrap_or(now + Duration::from_secs(365 * 86_400));
        loop {
            let changed = v.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut s = v.lock();
                let first = s.sleepers.first() == Some(&me.key);
                if s.now >= t || first && s.holds == 0 {
                    s.now = s.now.max(t);
                    return;
                }
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(give_up) => return,
            }
        }
    }

    /// True for a virtual clock.
    pub fn is_virtual(&self) -> bool {
        matches!(self, Clock::Virtual(_))
    }
}

/// Milliseconds since the Unix epoch, UTC: the one time unit in the database.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Milliseconds since the epoch → local "YYYY-MM-DD HH:MM:SS" for people.
pub fn local_time(ms: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        _ => "-".to_string(),
    }
}

/// A duration in ms → "3m12s", "2h05m", "45s", "24.1s".
pub fn human_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 59_950 {
        let t = ms as f64 / 1000.0;
        return if ms % 1000 == 0 || t >= 10.0 && (t - t.round()).abs() < 0.05 {
            format!("{:.0}s", t.ceil())
        } else {
            format!("{t:.1}s")
        };
    }
    let s = (ms + 999) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_virtual_clock_stands_still_and_jumps_to_what_is_waited_for() {
        let clock = Clock::virtual_at(1_000);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(clock.now_ms(), 1_000, "real time passing does not move it");
        let started = std::time::Instant::now();
        clock.sleep_until(1_000 + 3_600_000, Duration::from_secs(30)).await;
        assert_eq!(clock.now_ms(), 1_000 + 3_600_000);
        assert!(started.elapsed() < Duration::from_secs(1), "an hour of it passes at once");
        clock.sleep_until(5, Duration::MAX).await;
        assert_eq!(clock.now_ms(), 3_601_000, "never backwards");
    }

    #[tokio::test]
    async fn a_held_virtual_clock_waits_and_the_earliest_sleeper_goes_first() {
        let clock = Clock::virtual_at(0);
        let hold = clock.hold();
        let (late, early) = (clock.clone(), clock.clone());
        let late = tokio::spawn(async move {
            late.sleep_until(5_000, Duration::from_secs(30)).await;
            late.now_ms()
        });
        let early = tokio::spawn(async move {
            early.sleep_until(2_000, Duration::from_secs(30)).await;
            early.now_ms()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(clock.now_ms(), 0, "held: it stands still");
        drop(hold);
        assert_eq!(early.await.unwrap(), 2_000, "the earlier sleeper wakes at its own time");
        assert_eq!(late.await.unwrap(), 5_000);
    }

    /// Defect: a sleep dropped unfinished (the other branch of a `select!` won) stayed listed
    /// as the earliest sleeper, and the clock never moved again.
    #[tokio::test]
    async fn a_sleep_dropped_unfinished_does_not_hold_the_clock_back() {
        let clock = Clock::virtual_at(0);
        let hold = clock.hold();
        let unfinished = clock.sleep_until(1_000, Duration::from_secs(30));
        assert!(tokio::time::timeout(Duration::from_millis(20), unfinished).await.is_err());
        drop(hold);
        clock.sleep_until(5_000, Duration::from_secs(5)).await;
        assert_eq!(clock.now_ms(), 5_000);
    }

    #[tokio::test]
    async fn the_system_clock_sleeps_at_most_what_it_is_told() {
        let started = std::time::Instant::now();
        Clock::System.sleep_until(now_ms() + 60_000, Duration::from_millis(30)).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(30) && waited < Duration::from_secs(30), "{waited:?}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_ms(24_120), "24.1s");
        assert_eq!(human_ms(45_000), "45s");
        assert_eq!(human_ms(192_000), "3m12s");
        assert_eq!(human_ms(7_500_000), "2h05m");
        assert_eq!(human_ms(86_400_000 * 3), "3d00h");
        assert_eq!(human_ms(-5), "0s");
    }
}
