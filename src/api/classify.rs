//! What an answer from friendships/create means (README's "How it keeps its promises" lists
//! what each leads to). By status and error code; by message text only where X sends no code
//! (the already-following 403). Pure.

use serde_json::Value;

use crate::config::ApiVersion;

pub use crate::model::{AttemptResult, Outcome};

/// What to do about an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The job is finished.
    Done(Outcome),
    /// 429 (or 420): wait until `reset` (epoch seconds) if given, else back off. Not a failure.
    RateLimited { reset: Option<i64> },
    /// 403 + 161: the account hit X's own follow limit: pause it. Not a failure.
    FollowLimit,
    /// 403 + 226: "looks automated": cool down, then slow the account's pace.
    Automated,
    /// The account cannot go on: locked, suspended, bad or revoked credentials.
    AccountStopped(String),
    /// The app cannot go on: stop the run.
    AppStopped(String),
    /// 401 + 135: our clock is off; correct from `Date`, re-sign, retry.
    ClockSkew,
    /// 5xx, timeout, connection error: retry with backoff, up to a limit.
    Transient(String),
}

impl Verdict {
    /// What the attempt's answer was.
    pub fn result(&self) -> AttemptResult {
        match self {
            Verdict::Done(o) => AttemptResult::finishing(*o).unwrap_or(AttemptResult::Transient),
            Verdict::RateLimited { .. } => AttemptResult::RateLimited,
            Verdict::FollowLimit => AttemptResult::FollowLimit,
            Verdict::Automated => AttemptResult::Automated,
            Verdict::AccountStopped(_) => AttemptResult::AccountStopped,
            Verdict::AppStopped(_) => AttemptResult::AppStopped,
            Verdict::ClockSkew => AttemptResult::ClockSkew,
            Verdict::Transient(_) => AttemptResult::Transient,
        }
    }
}

/// An error body, whichever shape it came in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: Option<i64>,
    pub message: String,
    /// False when the body was not JSON of either known shape (then it is kept whole).
    pub recognised: bool,
}

/// The most of an error's text kept as its message (the body, whole or cut to the ledger's
/// size, is kept apart): what a log line and a stop reason carry.
const MAX_MESSAGE: usize = 512;

/// Parses `{"errors":[{"code":N,"message":"…"}]}` or `{"request":"…","error":"…"}`, by key.
pub fn parse_error(body: &str) -> ErrorBody {
    let Ok(v) = serde_json::from_str::<Value>(body) else { return ErrorBody::default() };
    if let Some(first) = v.get("errors").and_then(Value::as_array).and_then(|a| a.first()) {
        return ErrorBody {
            code: first.get("code").and_then(Value::as_i64),
            message: crate::api::truncated(first.get("message").and_then(Value::as_str).unwrap_or(""), MAX_MESSAGE)
                .to_string(),
            recognised: true,
        };
    }
    if let Some(msg) = v.get("error").and_then(Value::as_str) {
        return ErrorBody {
            code: None,
            message: crate::api::truncated(msg, MAX_MESSAGE).to_string(),
            recognised: true,
        };
    }
    ErrorBody::default()
}

fn already_following(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("already on your list") || m.contains("already following") || m.contains("already followed")
}

/// What followq tells a user whose app X will not let follow (code 453, `client-forbidden`).
pub const NO_FOLLOW_ACCESS: &str = "your app's access level cannot follow through the API; since 2026-04-20 X offers follows on Enterprise plans only (README: \"Can I use this with my X account?\")";

/// Classifies one answer of the configured API version. `reset` is `x-rate-limit-reset`
/// (epoch seconds), if sent.
pub fn classify_for(version: ApiVersion, status: u16, body: &str, reset: Option<i64>) -> (Verdict, ErrorBody) {
    match version {
        ApiVersion::V1_1 => classify(status, body, reset),
        ApiVersion::V2 => classify_v2(status, body, reset),
    }
}

/// Classifies one v1.1 answer. `reset` is `x-rate-limit-reset` (epoch seconds), if sent.
pub fn classify(status: u16, body: &str, reset: Option<i64>) -> (Verdict, ErrorBody) {
    let err = parse_error(body);
    let verdict = match (status, err.code) {
        (403, Some(453)) => Verdict::AppStopped(format!("{NO_FOLLOW_ACCESS} (X said: code 453, {})", err.message)),
        (200..=299, _) => Verdict::Done(success_outcome(body)),
        (429, _) | (420, _) => Verdict::RateLimited { reset },
        (401, Some(135)) => Verdict::ClockSkew,
        (403, Some(160)) => Verdict::Done(Outcome::Requested),
        (403, Some(161)) => Verdict::FollowLimit,
        (403, Some(162)) => Verdict::Done(Outcome::Blocked),
        (403, Some(63)) => Verdict::Done(Outcome::Suspended),
        (404, Some(34 | 50 | 108)) | (403, Some(108)) => Verdict::Done(Outcome::NotFound),
        (403, Some(226)) => Verdict::Automated,
        (403, Some(326)) => Verdict::AccountStopped(
            "X locked this account (code 326): log in at x.com to unlock it, then run `followq accounts check`".into(),
        ),
        (403, Some(64)) => Verdict::AccountStopped("X suspended this account (code 64)".into()),
        (401 | 403, Some(c @ (32 | 89 | 99 | 220))) | (400, Some(c @ 215)) => Verdict::AccountStopped(format!(
            "credentials rejected (code {c}: {}): fix the token, then run `followq accounts check`",
            err.message
        )),
        (403, Some(c @ (261 | 87))) | (401, Some(c @ 416)) => {
            Verdict::AppStopped(format!("X refuses this app (code {c}: {})", err.message))
        }
        (403, None) if already_following(&err.message) => Verdict::Done(Outcome::AlreadyFollowing),
        (401, None) => Verdict::AccountStopped(format!("401 unauthorized: {}", err.message)),
        (500..=599, _) => Verdict::Transient(format!("HTTP {status} {}", err.message).trim_end().to_string()),
        _ => Verdict::Done(Outcome::Refused),
    };
    (verdict, err)
}

/// A v2 problem (`application/problem+json`, or one entry of `{"errors": […]}`): its type by the
/// last part of the path (X sends both `api.x.com/2/problems/…` and `api.twitter.com/2/problems/…`),
/// title and detail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problem {
    pub kind: String,
    pub title: String,
    pub detail: String,
    /// A v1.1-style code in the same body (`{"errors":[{"code":453,…}]}` comes on v2 too).
    pub code: Option<i64>,
}

/// The first problem of a v2 body, whichever shape it came in.
pub fn parse_problem(body: &str) -> Option<Problem> {
    let v: Value = serde_json::from_str(body).ok()?;
    let p = match v.get("errors").and_then(Value::as_array).and_then(|a| a.first()) {
        Some(first) if v.get("data").is_none() || first.get("type").is_some() => first.clone(),
        _ if v.get("type").is_some() || v.get("title").is_some() => v.clone(),
        _ => return None,
    };
    let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let kind = text("type");
    let kind = match kind.rsplit_once("/2/problems/") {
        Some((_, suffix)) => suffix.to_string(),
        None => kind,
    };
    let detail = if text("detail").is_empty() { text("message") } else { text("detail") };
    Some(Problem { kind, title: text("title"), detail, code: p.get("code").and_then(Value::as_i64) })
}

/// Classifies one v2 answer: `{"data":{"following":…,"pending_follow":…}}` on success, a
/// problem by its type (and status) otherwise. What fits nothing is `refused`, its body kept.
pub fn classify_v2(status: u16, body: &str, reset: Option<i64>) -> (Verdict, ErrorBody) {
    let problem = parse_problem(body);
    let err = match &problem {
        Some(p) => ErrorBody {
            code: p.code,
            message: {
                let text: Vec<&str> =
                    [p.title.as_str(), p.detail.as_str()].into_iter().filter(|s| !s.is_empty()).collect();
                crate::api::truncated(&text.join(": "), MAX_MESSAGE).to_string()
            },
            recognised: true,
        },
        None => ErrorBody::default(),
    };
    let kind = problem.as_ref().map_or("", |p| p.kind.as_str());
    let says = |what: &str| err.message.to_ascii_lowercase().contains(what);
    let verdict = match (status, kind, err.code) {
        (200..=299, _, _) => match v2_follow_state(body) {
            Some((_, true)) => Verdict::Done(Outcome::Requested),
            Some((true, _)) => Verdict::Done(Outcome::Followed),
            _ => Verdict::Done(Outcome::Refused),
        },
        (_, _, Some(453)) | (403, "client-forbidden", _) => {
            Verdict::AppStopped(format!("{NO_FOLLOW_ACCESS} (X said: {})", err.message))
        }
        // A v1.1-shaped error with a code and no problem type: v1.1's table knows it.
        (_, "", Some(_)) => classify(status, body, reset).0,
        (402, _, _) | (_, "credits", _) => Verdict::AppStopped(format!(
            "X refuses requests for lack of credits ({}): add credits or raise the spending limit in X's developer console, then run again",
            err.message
        )),
        (_, "usage-capped", _) => Verdict::AppStopped(format!(
            "the app reached X's usage cap ({}): requests are refused until it resets (the next billing cycle) or is raised",
            err.message
        )),
        (429, _, _) | (_, "rate-limit-exceeded", _) => Verdict::RateLimited { reset },
        (401, _, Some(135)) => Verdict::ClockSkew,
        (401, _, _) => Verdict::AccountStopped(format!(
            "credentials rejected (401 {}): fix the token, then run `followq accounts check`",
            err.message
        )),
        (_, _, _) if says("suspended") && says("your account") => {
            Verdict::AccountStopped(format!("X suspended this account ({})", err.message))
        }
        (_, _, _) if says("locked") && says("your account") => Verdict::AccountStopped(format!(
            "X locked this account ({}): log in at x.com to unlock it, then run `followq accounts check`",
            err.message
        )),
        (_, _, _) if says("suspended") => Verdict::Done(Outcome::Suspended),
        (_, "resource-not-found", _) | (404, _, _) => Verdict::Done(Outcome::NotFound),
        (_, "not-authorized-for-resource", _) => Verdict::Done(Outcome::Blocked),
        (_, "resource-unavailable", _) => Verdict::Done(Outcome::Suspended),
        // A bare 403 ("about:blank", "Forbidden"): how X refuses an app the access it lacks. It
        // says nothing about the target, so every other request would meet it too.
        (403, "about:blank" | "", _) => Verdict::AppStopped(format!(
            "X answered 403 Forbidden with no reason ({}): {NO_FOLLOW_ACCESS}",
            if err.message.is_empty() { "no body" } else { &err.message }
        )),
        (500..=599, _, _) => Verdict::Transient(format!("HTTP {status} {}", err.message).trim_end().to_string()),
        _ => Verdict::Done(Outcome::Refused),
    };
    (verdict, err)
}

/// `data.following` and `data.pending_follow` of a v2 follow's answer.
fn v2_follow_state(body: &str) -> Option<(bool, bool)> {
    let v: Value = serde_json::from_str(body).ok()?;
    let data = v.get("data")?;
    let flag = |k: &str| data.get(k).and_then(Value::as_bool).unwrap_or(false);
    Some((flag("following"), flag("pending_follow")))
}

/// A 200's outcome: a protected account answers with `follow_request_sent: true`.
fn success_outcome(body: &str) -> Outcome {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if v.get("follow_request_sent").and_then(Value::as_bool) == Some(true) {
        Outcome::Requested
    } else {
        Outcome::Followed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(status: u16, body: &str) -> Verdict {
        classify(status, body, Some(1700000000)).0
    }

    fn err(code: i64) -> String {
        format!(r#"{{"errors":[{{"code":{code},"message":"m"}}]}}"#)
    }

    #[test]
    fn the_design_table() {
        assert_eq!(v(200, r#"{"id_str":"1","follow_request_sent":false}"#), Verdict::Done(Outcome::Followed));
        assert_eq!(v(200, r#"{"protected":true,"follow_request_sent":true}"#), Verdict::Done(Outcome::Requested));
        assert_eq!(v(403, &err(160)), Verdict::Done(Outcome::Requested));
        assert_eq!(
            v(
                403,
                r#"{"request":"/1.1/friendships/create.json","error":"Could not follow user: bob is already on your list."}"#
            ),
            Verdict::Done(Outcome::AlreadyFollowing)
        );
        assert_eq!(
            v(403, r#"{"errors":[{"message":"Could not follow user: bob is already on your list."}]}"#),
            Verdict::Done(Outcome::AlreadyFollowing)
        );
        assert_eq!(v(403, &err(161)), Verdict::FollowLimit);
        assert_eq!(v(403, &err(162)), Verdict::Done(Outcome::Blocked));
        assert_eq!(v(403, &err(63)), Verdict::Done(Outcome::Suspended));
        assert_eq!(v(404, &err(34)), Verdict::Done(Outcome::NotFound));
        assert_eq!(v(404, &err(50)), Verdict::Done(Outcome::NotFound));
        assert_eq!(v(404, &err(108)), Verdict::Done(Outcome::NotFound));
        assert_eq!(v(403, &err(226)), Verdict::Automated);
        assert!(matches!(v(403, &err(326)), Verdict::AccountStopped(_)));
        assert!(matches!(v(403, &err(64)), Verdict::AccountStopped(_)));
        for (s, c) in [(401, 32), (401, 89), (401, 99), (400, 215)] {
            assert!(matches!(v(s, &err(c)), Verdict::AccountStopped(_)), "{s} {c}");
        }
        assert_eq!(v(401, &err(135)), Verdict::ClockSkew);
        assert!(matches!(v(403, &err(261)), Verdict::AppStopped(_)));
        assert!(matches!(v(401, &err(416)), Verdict::AppStopped(_)));
        assert_eq!(v(429, &err(88)), Verdict::RateLimited { reset: Some(1700000000) });
        assert!(matches!(v(503, &err(130)), Verdict::Transient(_)));
        assert!(matches!(v(500, &err(131)), Verdict::Transient(_)));
        assert_eq!(v(418, "I'm a teapot"), Verdict::Done(Outcome::Refused));
        assert_eq!(v(403, r#"{"errors":[{"message":"something new"}]}"#), Verdict::Done(Outcome::Refused));
    }

    fn v2(status: u16, body: &str) -> Verdict {
        classify_v2(status, body, Some(1700000000)).0
    }

    fn problem(host: &str, kind: &str, title: &str, detail: &str) -> String {
        serde_json::json!({"type": format!("https://{host}/2/problems/{kind}"), "title": title, "detail": detail})
            .to_string()
    }

    #[test]
    fn v2_answers_by_shape_type_suffix_and_status() {
        assert_eq!(v2(200, r#"{"data":{"following":true,"pending_follow":false}}"#), Verdict::Done(Outcome::Followed));
        assert_eq!(v2(200, r#"{"data":{"following":false,"pending_follow":true}}"#), Verdict::Done(Outcome::Requested));
        assert_eq!(v2(200, r#"{"data":{}}"#), Verdict::Done(Outcome::Refused), "a 200 that says neither is kept");
        for host in ["api.x.com", "api.twitter.com"] {
            let p = |k: &str, t: &str, d: &str| problem(host, k, t, d);
            assert_eq!(
                v2(404, &p("resource-not-found", "Not Found Error", "Could not find user")),
                Verdict::Done(Outcome::NotFound)
            );
            assert_eq!(v2(400, &p("resource-not-found", "Not Found Error", "x")), Verdict::Done(Outcome::NotFound));
            assert_eq!(
                v2(403, &p("resource-unavailable", "Forbidden", "User has been suspended: [s_x].")),
                Verdict::Done(Outcome::Suspended)
            );
            assert_eq!(
                v2(403, &p("not-authorized-for-resource", "Forbidden", "blocked")),
                Verdict::Done(Outcome::Blocked)
            );
            assert_eq!(
                v2(429, &p("rate-limit-exceeded", "Too Many Requests", "")),
                Verdict::RateLimited { reset: Some(1700000000) }
            );
            let forbidden = v2(403, &p("client-forbidden", "Client Forbidden", "not enrolled"));
            assert!(
                matches!(&forbidden, Verdict::AppStopped(m) if m.contains("Enterprise plans only") && m.contains("not enrolled")),
                "{forbidden:?}"
            );
            assert!(
                matches!(v2(429, &p("usage-capped", "Usage Capped", "cap")), Verdict::AppStopped(m) if m.contains("usage cap"))
            );
            assert!(
                matches!(v2(402, &p("credits", "CreditsDepleted", "no credits")), Verdict::AppStopped(m) if m.contains("credits"))
            );
        }
        // The {"errors":[…]} shape, and v1.1's 453 arriving on v2.
        let shaped = r#"{"errors":[{"type":"https://api.x.com/2/problems/resource-not-found","title":"Not Found Error","detail":"nope"}]}"#;
        assert_eq!(v2(400, shaped), Verdict::Done(Outcome::NotFound));
        assert!(matches!(v2(403, &err(453)), Verdict::AppStopped(m) if m.contains("code") || m.contains("Enterprise")));
        assert!(matches!(
            v2(403, r#"{"title":"Forbidden","type":"about:blank","status":403,"detail":"Forbidden"}"#),
            Verdict::AppStopped(_)
        ));
        assert!(matches!(
            v2(401, r#"{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}"#),
            Verdict::AccountStopped(_)
        ));
        assert!(matches!(v2(503, "<html>"), Verdict::Transient(_)));
        assert_eq!(v2(418, "I'm a teapot"), Verdict::Done(Outcome::Refused));
        let (_, e) = classify_v2(404, &problem("api.x.com", "resource-not-found", "Not Found Error", "gone"), None);
        assert_eq!(e.message, "Not Found Error: gone");
    }

    /// Defect (found from the outside): a 200 kB problem detail became a 200 kB stop reason,
    /// printed twice and kept whole in the database. (Control characters in it are escaped where
    /// it is printed, by `text::printable`.)
    #[test]
    fn a_huge_error_text_is_cut_to_a_message() {
        let huge = "EVIL\u{1b}[2J".to_string() + &"x".repeat(200_000);
        let (verdict, e) = classify_v2(403, &problem("api.x.com", "client-forbidden", "Client Forbidden", &huge), None);
        assert!(e.message.len() <= MAX_MESSAGE, "{}", e.message.len());
        assert!(matches!(verdict, Verdict::AppStopped(m) if m.len() < 1_000));
        let (_, e) =
            classify(403, &format!(r#"{{"errors":[{{"code":326,"message":"{}"}}]}}"#, "y".repeat(9_000)), None);
        assert!(e.message.len() <= MAX_MESSAGE);
    }

    #[test]
    fn v1_code_453_stops_the_run_with_what_to_do() {
        assert!(
            matches!(v(403, &err(453)), Verdict::AppStopped(m) if m.contains("since 2026-04-20 X offers follows on Enterprise plans only"))
        );
    }

    #[test]
    fn error_bodies_are_parsed_by_key_in_any_order() {
        let e = parse_error(r#"{"errors":[{"message":"Timestamp out of bounds","code":135}]}"#);
        assert_eq!((e.code, e.message.as_str(), e.recognised), (Some(135), "Timestamp out of bounds", true));
        assert!(!parse_error("<html>oops</html>").recognised);
    }
}
