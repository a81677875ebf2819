//! Time: milliseconds since the epoch (the one unit in the database), the [`Clock`] every
//! decision reads it from, and durations and local times for people.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the dispatcher, its policies and the sandbox read "now", and how they wait for a time.
///
/// A run uses the system clock. Tests use a virtual one that stands still while work is under
/// way and jumps to the time a sleeper waits for: a run whose windows, pauses and back-offs
/// span minutes or hours then takes as long as its requests, and every deadline is met exactly.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Virtual(Arc<AtomicI64>),
}

impl Clock {
    /// A virtual clock that starts at `start_ms` (ms since the epoch).
    pub fn virtual_at(start_ms: i64) -> Clock {
        Clock::Virtual(Arc::new(AtomicI64::new(start_ms)))
    }

    /// A virtual clock that starts at the system's time now.
    pub fn virtual_now() -> Clock {
        Clock::virtual_at(now_ms())
    }

    /// Now, in ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => now_ms(),
            Clock::Virtual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Waits until `t` (ms since the epoch), or for `most` of real time if that is sooner. A
    /// virtual clock moves to `t` at once (never backwards) and returns.
    pub async fn sleep_until(&self, t: i64, most: Duration) {
        match self {
            Clock::System => {
                let wait = Duration::from_millis((t - now_ms()).max(0) as u64).min(most);
                tokio::time::sleep(wait).await;
            }
            Clock::Virtual(now) => {
                now.fetch_max(t, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        }
    }

    /// Waits for `d` of this clock's time: [`Clock::sleep_until`] `now + d`, however long.
    pub async fn sleep(&self, d: Duration) {
        let until = self.now_ms().saturating_add(d.as_millis().min(i64::MAX as u128) as i64);
        while self.now_ms() < until {
            self.sleep_until(until, d).await;
        }
    }

    /// Moves a virtual clock on by `d` (tests: a step of the system clock). No effect on the
    /// system clock.
    pub fn advance(&self, d: Duration) {
        if let Clock::Virtual(now) = self {
            now.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
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
        clock.sleep(Duration::from_secs(3_600)).await;
        assert_eq!(clock.now_ms(), 1_000 + 3_600_000);
        assert!(started.elapsed() < Duration::from_secs(1), "an hour of it passes at once");
        clock.sleep_until(5, Duration::MAX).await;
        assert_eq!(clock.now_ms(), 3_601_000, "never backwards");
        clock.advance(Duration::from_millis(7));
        assert_eq!(clock.now_ms(), 3_601_007);
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
