//! Time: milliseconds since the epoch (the one unit in the database), durations and local
//! times for people.

use std::time::{SystemTime, UNIX_EPOCH};

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
    use super::human_ms;

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
