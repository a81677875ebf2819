//! What an answer from friendships/create means (README's "How it keeps its promises" lists
//! what each leads to). By status and error code; by message text only where X sends no code
//! (the already-following 403). Pure.

use serde_json::Value;

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

/// Parses `{"errors":[{"code":N,"message":"…"}]}` or `{"request":"…","error":"…"}`, by key.
pub fn parse_error(body: &str) -> ErrorBody {
    let Ok(v) = serde_json::from_str::<Value>(body) else { return ErrorBody::default() };
    if let Some(first) = v.get("errors").and_then(Value::as_array).and_then(|a| a.first()) {
        return ErrorBody {
            code: first.get("code").and_then(Value::as_i64),
            message: first.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
            recognised: true,
        };
    }
    if let Some(msg) = v.get("error").and_then(Value::as_str) {
        return ErrorBody { code: None, message: msg.to_string(), recognised: true };
    }
    ErrorBody::default()
}

fn already_following(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("already on your list") || m.contains("already following") || m.contains("already followed")
}

/// Classifies one answer. `reset` is `x-rate-limit-reset` (epoch seconds), if sent.
pub fn classify(status: u16, body: &str, reset: Option<i64>) -> (Verdict, ErrorBody) {
    let err = parse_error(body);
    let verdict = match (status, err.code) {
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

    #[test]
    fn error_bodies_are_parsed_by_key_in_any_order() {
        let e = parse_error(r#"{"errors":[{"message":"Timestamp out of bounds","code":135}]}"#);
        assert_eq!((e.code, e.message.as_str(), e.recognised), (Some(135), "Timestamp out of bounds", true));
        assert!(!parse_error("<html>oops</html>").recognised);
    }
}
