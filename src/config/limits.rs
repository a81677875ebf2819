//! The `[limits]` section: rolling windows per account and per app, the profiles that name X's
//! published ones, the pace and the safety margin.

use std::fmt;
use std::time::Duration;

use super::{ConfigError, MAX_WINDOW, duration, invalid};

/// One rolling window: at most `limit` requests in any interval of `length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: u32,
    pub length: Duration,
}

impl Window {
    pub const fn new(limit: u32, secs: u64) -> Window {
        Window { limit, length: Duration::from_secs(secs) }
    }

    /// Parses `50/15m` (a whole number of requests, a slash, a duration); `key` names the setting.
    pub fn parse(key: &str, text: &str) -> Result<Window, ConfigError> {
        let t = text.trim();
        let Some((n, d)) = t.split_once('/') else {
            return Err(invalid(key, format!("'{t}' is not a window: write requests/duration, e.g. \"50/15m\"")));
        };
        let limit: u32 =
            n.trim().parse().map_err(|_| invalid(key, format!("'{t}': '{}' is not a whole number", n.trim())))?;
        let length = duration(key, d)?;
        let w = Window { limit, length };
        w.check(key)?;
        Ok(w)
    }

    fn check(&self, key: &str) -> Result<(), ConfigError> {
        if self.limit == 0 {
            return Err(invalid(key, format!("'{self}': a window lets at least 1 request through")));
        }
        if self.length < Duration::from_secs(1) {
            return Err(invalid(key, format!("'{self}': a window is at least 1s long")));
        }
        if self.length > MAX_WINDOW {
            return Err(invalid(key, format!("'{self}': a window is at most 366 days long")));
        }
        Ok(())
    }
}

impl fmt::Display for Window {
    /// `50/15m`, `400/24h`: the largest whole unit of hours, minutes, seconds or milliseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.length.as_millis();
        let (n, unit) = match ms {
            _ if ms.is_multiple_of(3_600_000) => (ms / 3_600_000, "h"),
            _ if ms.is_multiple_of(60_000) => (ms / 60_000, "m"),
            _ if ms.is_multiple_of(1000) => (ms / 1000, "s"),
            _ => (ms, "ms"),
        };
        write!(f, "{}/{n}{unit}", self.limit)
    }
}

/// The safety margin added to every window's length: a share of it, or a fixed duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Margin {
    /// A share of each window (0.005 = 0.5 %).
    Share(f64),
    Fixed(Duration),
}

impl Margin {
    /// Parses "0.5%" or "2m".
    pub fn parse(v: &str) -> Result<Margin, ConfigError> {
        if let Some(pct) = v.trim().strip_suffix('%') {
            let p: f64 =
                pct.trim().parse().map_err(|_| invalid("limits.margin", format!("'{v}' is not a percentage")))?;
            if !(0.0..=50.0).contains(&p) {
                return Err(invalid("limits.margin", format!("'{v}' must be between 0% and 50%")));
            }
            Ok(Margin::Share(p / 100.0))
        } else {
            let d = duration("limits.margin", v)?;
            if d > MAX_WINDOW {
                return Err(invalid("limits.margin", "must be at most 366 days"));
            }
            Ok(Margin::Fixed(d))
        }
    }

    /// The margin for a window of this length.
    pub fn of(&self, length: Duration) -> Duration {
        match *self {
            Margin::Share(p) => length.min(MAX_WINDOW).mul_f64(p),
            Margin::Fixed(d) => d,
        }
    }
}

/// A named set of windows: X's published limits for an API version, or the user's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// v1.1 `friendships/create`: 400 per account and 1000 per app in 24 hours.
    V1_1,
    /// v2 `POST /2/users/:id/following`: 50 per account in 15 minutes and 400 in 24 hours;
    /// 1000 per app in 24 hours.
    V2,
    /// Windows the user set (`user` and `app`, or the older `per_user`/`per_app`/`window`):
    /// Enterprise plans have custom limits.
    Custom,
}

impl Profile {
    pub fn parse(v: &str) -> Result<Profile, ConfigError> {
        match v.trim() {
            "v1.1" | "1.1" => Ok(Profile::V1_1),
            "v2" | "2" => Ok(Profile::V2),
            "custom" => Ok(Profile::Custom),
            other => Err(invalid("limits.profile", format!("'{other}' is not 'v2', 'v1.1' or 'custom'"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::V1_1 => "v1.1",
            Profile::V2 => "v2",
            Profile::Custom => "custom",
        }
    }

    /// The profile's windows per account and per app (none for `custom`).
    pub fn windows(self) -> (Vec<Window>, Vec<Window>) {
        match self {
            Profile::V1_1 => (vec![Window::new(400, 86_400)], vec![Window::new(1000, 86_400)]),
            Profile::V2 => (vec![Window::new(50, 900), Window::new(400, 86_400)], vec![Window::new(1000, 86_400)]),
            Profile::Custom => (Vec::new(), Vec::new()),
        }
    }
}

/// How requests are spread over the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Each account's (and the app's) requests evenly over the binding window, with jitter.
    Spread,
    /// As soon as every window allows.
    Asap,
}

/// The `[limits]` section.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Where the windows came from.
    pub profile: Profile,
    /// Every window an account's requests are held to.
    pub user: Vec<Window>,
    /// Every window the app's requests (all accounts together) are held to.
    pub app: Vec<Window>,
    pub pace: Pace,
    /// Added to each window for latency and clock skew.
    pub margin: Margin,
}

impl Limits {
    /// X's published limits for this profile, spread pacing, a 0.5 % margin.
    pub fn of_profile(profile: Profile) -> Limits {
        let (user, app) = profile.windows();
        Limits { profile, user, app, pace: Pace::Spread, margin: Margin::Share(0.005) }
    }

    /// One window per scope, as the older keys (`per_user`, `per_app`, `window`) set them.
    pub fn single(per_user: u32, per_app: u32, window: Duration) -> Limits {
        Limits {
            profile: Profile::Custom,
            user: vec![Window { limit: per_user, length: window }],
            app: vec![Window { limit: per_app, length: window }],
            ..Limits::of_profile(Profile::V1_1)
        }
    }

    /// The length followq enforces for `w`: X's plus the safety margin, in ms.
    pub fn enforced_ms(&self, w: &Window) -> i64 {
        (w.length + self.margin.of(w.length)).as_millis() as i64
    }

    /// The account's longest window (a code 161's pause and a 226's cool-down are shares of it).
    pub fn longest_user(&self) -> Window {
        self.user.iter().copied().max_by_key(|w| w.length).unwrap_or(Window::new(400, 86_400))
    }

    /// `50/15m + 400/24h`.
    pub fn describe(windows: &[Window]) -> String {
        windows.iter().map(Window::to_string).collect::<Vec<_>>().join(" + ")
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for (key, list) in [("limits.user", &self.user), ("limits.app", &self.app)] {
            if list.is_empty() {
                return Err(invalid(
                    key,
                    "needs at least one window, e.g. [\"400/24h\"] (profile = \"custom\" sets none)",
                ));
            }
            for (i, w) in list.iter().enumerate() {
                w.check(key)?;
                if list[..i].iter().any(|o| o.length == w.length) {
                    let length = humantime::format_duration(w.length);
                    return Err(invalid(key, format!("two windows of {length}: keep the one you mean")));
                }
            }
        }
        Ok(())
    }
}

/// The `[limits]` keys as written, merged with the environment by the caller.
#[derive(Debug, Default)]
pub(super) struct RawWindows {
    pub profile: Option<String>,
    pub user: Option<Vec<String>>,
    pub app: Option<Vec<String>>,
    pub per_user: Option<u32>,
    pub per_app: Option<u32>,
    pub window: Option<String>,
}

/// The windows from the profile (by default the API version's), then `user`/`app`, or the
/// older single-window keys. Mixing the two forms is refused: which would win is a guess.
pub(super) fn windows(raw: RawWindows, default: Profile) -> Result<(Profile, Vec<Window>, Vec<Window>), ConfigError> {
    let legacy = raw.per_user.is_some() || raw.per_app.is_some() || raw.window.is_some();
    if legacy && (raw.user.is_some() || raw.app.is_some()) {
        return Err(invalid(
            "limits",
            "per_user/per_app/window and user/app both set: use user = [\"400/24h\"], app = [\"1000/24h\"] alone",
        ));
    }
    if legacy {
        let window = match raw.window {
            Some(w) => duration("limits.window", &w)?,
            None => Duration::from_secs(86_400),
        };
        if window > MAX_WINDOW {
            return Err(invalid("limits.window", "must be at most 366 days"));
        }
        if window < Duration::from_secs(1) {
            return Err(invalid("limits.window", "must be at least 1s"));
        }
        let l = Limits::single(raw.per_user.unwrap_or(400), raw.per_app.unwrap_or(1000), window);
        if l.user[0].limit == 0 || l.app[0].limit == 0 {
            return Err(invalid("limits", "per_user and per_app must be at least 1"));
        }
        if raw.profile.is_some() {
            return Err(invalid(
                "limits.profile",
                "per_user/per_app/window set their own window: drop one or the other",
            ));
        }
        return Ok((Profile::Custom, l.user, l.app));
    }
    let profile = match raw.profile {
        Some(p) => Profile::parse(&p)?,
        None if raw.user.is_some() && raw.app.is_some() => Profile::Custom,
        None => default,
    };
    let (mut user, mut app) = profile.windows();
    let parse =
        |key: &str, list: Vec<String>| list.iter().map(|t| Window::parse(key, t)).collect::<Result<Vec<_>, _>>();
    let mut own = false;
    if let Some(list) = raw.user {
        user = parse("limits.user", list)?;
        own = true;
    }
    if let Some(list) = raw.app {
        app = parse("limits.app", list)?;
        own = true;
    }
    Ok((if own { Profile::Custom } else { profile }, user, app))
}

/// A list from the environment: `50/15m,400/24h`.
pub(super) fn env_list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}
