//! The sandbox's limits and misbehaviour: rolling windows of request times, and seeded faults.

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use serde::Serialize;

/// Fault rates (0–1 each) and their seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Faults {
    pub p503: f64,
    pub p500: f64,
    /// Apply the follow, then answer only after `hang_for` (past the client's timeout).
    pub hang: f64,
    /// Drop the connection without applying the follow.
    pub drop: f64,
    /// A spurious 429 with a reset a second or two away.
    pub p429: f64,
    pub seed: u64,
    pub hang_for: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Faults { p503: 0.0, p500: 0.0, hang: 0.0, drop: 0.0, p429: 0.0, seed: 0, hang_for: Duration::from_secs(40) }
    }
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    P503,
    P500,
    P429,
    Drop,
    Hang,
}

impl Fault {
    /// Its name in the stats.
    pub fn name(self) -> &'static str {
        match self {
            Fault::P503 => "503",
            Fault::P500 => "500",
            Fault::P429 => "429",
            Fault::Drop => "drop",
            Fault::Hang => "hang",
        }
    }
}

impl Faults {
    /// The fault for one request, if any: one roll against the stacked rates.
    pub fn roll(&self, rng: &mut StdRng) -> Option<Fault> {
        let roll: f64 = rng.random();
        let mut edge = 0.0;
        [
            (self.p503, Fault::P503),
            (self.p500, Fault::P500),
            (self.p429, Fault::P429),
            (self.drop, Fault::Drop),
            (self.hang, Fault::Hang),
        ]
        .into_iter()
        .find(|&(p, _)| {
            edge += p;
            roll < edge
        })
        .map(|(_, f)| f)
    }
}

/// The request times of one rolling window.
#[derive(Default)]
pub struct Rolling {
    times: VecDeque<i64>,
    /// The most requests it ever held.
    pub max: u64,
}

impl Rolling {
    /// Counts a request at `now` (ms); returns how many came before it in the window, where
    /// the edge is moved in by `grace`.
    pub fn count(&mut self, now: i64, window: i64, grace: i64) -> usize {
        while self.times.front().is_some_and(|&t| t <= now - window) {
            self.times.pop_front();
        }
        // Times arrive in order (one lock, one clock), so the window's edge is a binary search.
        let edge = self.times.partition_point(|&t| t <= now - window + grace);
        let before = self.times.len() - edge;
        self.times.push_back(now);
        self.max = self.max.max(self.times.len() as u64);
        before
    }

    /// Requests inside the window that ends at `now`.
    pub fn used(&self, now: i64, window: i64) -> usize {
        self.times.len() - self.times.partition_point(|&t| t <= now - window)
    }

    /// When the window next has room below `limit` (ms).
    pub fn frees_at(&self, limit: u32, window: i64) -> i64 {
        let n = self.times.len();
        let limit = limit as usize;
        if n < limit { 0 } else { self.times[n - limit] + window }
    }
}

/// Parses a fault spec: `503=0.1,500=0.05,hang=0.02,drop=0.02,429=0.02,seed=42,hang_for=5s`.
pub fn parse_faults(spec: &str) -> Result<Faults, String> {
    let mut f = Faults::default();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| format!("'{part}': expected key=value"))?;
        let rate = || -> Result<f64, String> {
            let r: f64 = v.parse().map_err(|_| format!("'{part}': '{v}' is not a number"))?;
            if (0.0..=1.0).contains(&r) { Ok(r) } else { Err(format!("'{part}': a rate is between 0 and 1")) }
        };
        match k {
            "503" => f.p503 = rate()?,
            "500" => f.p500 = rate()?,
            "hang" => f.hang = rate()?,
            "drop" => f.drop = rate()?,
            "429" => f.p429 = rate()?,
            "seed" => f.seed = v.parse().map_err(|_| format!("'{part}': seed is a whole number"))?,
            "hang_for" => f.hang_for = humantime::parse_duration(v).map_err(|e| format!("'{part}': {e}"))?,
            _ => return Err(format!("'{k}': unknown fault (503, 500, hang, drop, 429, seed, hang_for)")),
        }
    }
    if f.p503 + f.p500 + f.hang + f.drop + f.p429 > 1.0 {
        return Err("fault rates add up to more than 1".into());
    }
    Ok(f)
}
