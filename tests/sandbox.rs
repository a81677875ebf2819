//! The sandbox, exercised over HTTP: signatures, windows, behaviours, faults, stats.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use followq::api::oauth::{self, Keys};
use followq::sandbox::{Faults, Sandbox, Scripted, Stats};
use serde_json::Value;

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn code(&self) -> Option<i64> {
        self.json()["errors"][0]["code"].as_i64()
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Signs with the client's signer (the sandbox verifies with its own code) and sends.
struct Caller {
    http: reqwest::Client,
    base: String,
}

#[derive(Clone, Copy)]
enum Placement {
    Query,
    Form,
}

impl Caller {
    fn new(sb: &Sandbox) -> Caller {
        followq::api::install_crypto();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        Caller { http, base: sb.base_url() }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        account: &str,
        params: &[(&str, &str)],
        how: Placement,
        tweak: impl Fn(&mut String),
    ) -> Result<Reply, reqwest::Error> {
        let (token, secret) = common::token(account);
        let keys = Keys {
            consumer_key: common::CONSUMER_KEY,
            consumer_secret: common::CONSUMER_SECRET,
            token: &token,
            token_secret: &secret,
        };
        let url = format!("{}{}", self.base, path);
        let mut auth = oauth::authorization(method, &url, params, keys, now_secs(), None);
        tweak(&mut auth);
        let qs = oauth::query_string(params);
        let req = match (method, how) {
            ("GET", _) => self.http.get(format!("{url}?{qs}")),
            (_, Placement::Query) => self.http.post(format!("{url}?{qs}")),
            (_, Placement::Form) => {
                self.http.post(&url).header("content-type", "application/x-www-form-urlencoded").body(qs)
            }
        };
        let resp = req.header("authorization", auth).send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await?;
        Ok(Reply { status, headers, body })
    }

    /// A signed POST with a JSON body (v2: OAuth 1.0a signs no body parameters).
    async fn send_json(&self, account: &str, path: &str, body: &str) -> Reply {
        let (token, secret) = common::token(account);
        let keys = Keys {
            consumer_key: common::CONSUMER_KEY,
            consumer_secret: common::CONSUMER_SECRET,
            token: &token,
            token_secret: &secret,
        };
        let url = format!("{}{}", self.base, path);
        let auth = oauth::authorization("POST", &url, &[], keys, now_secs(), None);
        let resp = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", auth)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        Reply { status, headers, body: resp.text().await.unwrap() }
    }

    async fn follow(&self, account: &str, screen_name: &str) -> Reply {
        self.send(
            "POST",
            "/1.1/friendships/create.json",
            account,
            &[("screen_name", screen_name)],
            Placement::Query,
            |_| {},
        )
        .await
        .unwrap()
    }

    async fn stats(&self) -> Stats {
        let text = self.http.get(format!("{}/_sandbox/stats", self.base)).send().await.unwrap().text().await.unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

async fn start(per_user: u32, per_app: u32, window: Duration) -> (Sandbox, Caller) {
    let sb = common::sandbox(&["alice", "bob"], per_user, per_app, window).await;
    let c = Caller::new(&sb);
    (sb, c)
}

/// Changes one character of the signature in an Authorization header.
fn tamper(h: &mut String) {
    let i = h.find("oauth_signature=\"").unwrap() + 17;
    let ch = if &h[i..i + 1] == "A" { "B" } else { "A" };
    h.replace_range(i..i + 1, ch);
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn follows_answer_as_x_does_by_target() {
    let (sb, c) = start(400, 1000, DAY).await;
    let r = c.follow("alice", "Normal_User").await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!((j["screen_name"].as_str(), j["follow_request_sent"].as_bool()), (Some("Normal_User"), Some(false)));
    assert!(j["id_str"].as_str().unwrap().parse::<u64>().is_ok());

    let r = c.follow("alice", "p_private").await;
    assert_eq!((r.status, r.json()["follow_request_sent"].as_bool()), (200, Some(true)));
    let r = c.follow("alice", "p_private").await;
    assert_eq!((r.status, r.code()), (403, Some(160)));
    assert_eq!(r.body, r#"{"errors":[{"code":160,"message":"You've already requested to follow the user."}]}"#);

    let r = c.follow("alice", "b_blocker").await;
    assert_eq!(
        r.body,
        r#"{"errors":[{"code":162,"message":"You have been blocked from following this account at the request of the user."}]}"#
    );
    assert_eq!(r.status, 403);
    let r = c.follow("alice", "x_ghost").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, r#"{"errors":[{"code":108,"message":"Cannot find specified user."}]}"#)
    );
    let r = c.follow("alice", "s_banned").await;
    assert_eq!((r.status, r.body.as_str()), (403, r#"{"errors":[{"code":63,"message":"User has been suspended."}]}"#));

    // user_id resolves to a stable user, and the same id is the same follow.
    let r = c
        .send("POST", "/1.1/friendships/create.json", "alice", &[("user_id", "2244994945")], Placement::Form, |_| {})
        .await
        .unwrap();
    assert_eq!((r.status, r.json()["id_str"].as_str()), (200, Some("2244994945")));

    let st = c.stats().await;
    assert_eq!(st.follows.get("alice"), Some(&3), "Normal_User, p_private (requested), 2244994945");
    assert_eq!(st.duplicate_creates, 1);
    drop(sb);
}

#[tokio::test]
async fn an_existing_follow_answers_403_in_either_shape_or_200() {
    let mut cfg = common::sandbox_config(&["alice"], 400, 1000, DAY);
    cfg.already_200_ratio = 0.0;
    let sb = Sandbox::start(cfg, 0).await.unwrap();
    let c = Caller::new(&sb);
    assert_eq!(c.follow("alice", "bob").await.status, 200);
    let mut shapes = std::collections::HashSet::new();
    for _ in 0..20 {
        let r = c.follow("alice", "bob").await;
        assert_eq!(r.status, 403);
        let j = r.json();
        let msg = j["error"].as_str().or(j["errors"][0]["message"].as_str()).unwrap().to_string();
        assert_eq!(msg, "Could not follow user: bob is already on your list.");
        assert!(j["errors"][0]["code"].is_null(), "X sends no code for this one");
        shapes.insert(j.get("request").is_some());
    }
    assert_eq!(shapes.len(), 2, "both the legacy and the errors shape appear");
    let mut cfg = common::sandbox_config(&["alice"], 400, 1000, DAY);
    cfg.already_200_ratio = 1.0;
    let sb2 = Sandbox::start(cfg, 0).await.unwrap();
    let c2 = Caller::new(&sb2);
    for _ in 0..3 {
        assert_eq!(c2.follow("alice", "bob").await.status, 200);
    }
    assert_eq!(sb2.stats().duplicate_creates, 2);
    assert_eq!(sb2.stats().follows.get("alice"), Some(&1));
    drop(sb);
}

#[tokio::test]
async fn signatures_nonces_and_timestamps_are_checked() {
    let (sb, c) = start(400, 1000, DAY).await;
    let create = "/1.1/friendships/create.json";
    // Parameters in a form body are signed and verified too.
    let r = c
        .send("POST", create, "alice", &[("screen_name", "formed"), ("follow", "true")], Placement::Form, |_| {})
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // A one-character change to the signature.
    let r = c.send("POST", create, "alice", &[("screen_name", "x1")], Placement::Query, tamper).await.unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, r#"{"errors":[{"code":32,"message":"Could not authenticate you."}]}"#)
    );
    // A parameter sent that is not the one signed.
    let (token, secret) = common::token("alice");
    let keys = Keys {
        consumer_key: common::CONSUMER_KEY,
        consumer_secret: common::CONSUMER_SECRET,
        token: &token,
        token_secret: &secret,
    };
    let url = format!("{}{create}", sb.base_url());
    let auth = oauth::authorization("POST", &url, &[("screen_name", "signed")], keys, now_secs(), Some("fixednonce1"));
    let http = reqwest::Client::new();
    let r = http.post(format!("{url}?screen_name=other")).header("authorization", &auth).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The right request once; the same nonce again is refused.
    let r = http.post(format!("{url}?screen_name=signed")).header("authorization", &auth).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http.post(format!("{url}?screen_name=signed")).header("authorization", &auth).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "a reused nonce");
    // An unknown token.
    let auth =
        oauth::authorization("POST", &url, &[("screen_name", "a")], Keys { token: "nobody", ..keys }, now_secs(), None);
    let r = http.post(format!("{url}?screen_name=a")).header("authorization", &auth).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The sandbox clock 10 minutes ahead: 135, and the Date header tells the server's time.
    sb.set_clock_offset(600);
    let r = c.follow("alice", "late").await;
    assert_eq!((r.status, r.body.as_str()), (401, r#"{"errors":[{"code":135,"message":"Timestamp out of bounds."}]}"#));
    let date = httpdate::parse_http_date(r.headers["date"].to_str().unwrap()).unwrap();
    let ahead = date.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 - now_secs() as i64;
    assert!((598..=602).contains(&ahead), "Date is the sandbox clock: {ahead}");
    let st = sb.stats();
    assert_eq!(st.bad_signatures, 4, "tampered, wrong parameter, reused nonce, unknown token");
    assert_eq!(st.creates.get("alice"), Some(&2), "only authenticated requests count");
}

#[tokio::test]
async fn windows_roll_rather_than_reset() {
    // 2 per 1.5 s. A fixed window starting at the first request would allow the fourth.
    let (sb, c) = start(2, 100, Duration::from_millis(1500)).await;
    let t0 = tokio::time::Instant::now();
    assert_eq!(c.follow("alice", "r1").await.status, 200);
    tokio::time::sleep_until(t0 + Duration::from_millis(800)).await;
    assert_eq!(c.follow("alice", "r2").await.status, 200);
    tokio::time::sleep_until(t0 + Duration::from_millis(1600)).await;
    assert_eq!(c.follow("alice", "r3").await.status, 200, "r1 left the window");
    let r = c.follow("alice", "r4").await;
    assert_eq!((r.status, r.code()), (429, Some(88)), "r2 and r3 are still inside the last 1.5 s");
    assert_eq!(r.headers["x-rate-limit-limit"], "2");
    assert_eq!(r.headers["x-rate-limit-remaining"], "0");
    let reset: u64 = r.headers["x-rate-limit-reset"].to_str().unwrap().parse().unwrap();
    // The refused r4 counts too, so room comes back when r3 (sent 1.6 s in) leaves: ~1.5 s on.
    assert!(reset > now_secs() && reset <= now_secs() + 3, "reset {reset}, now {}", now_secs());
    // Bob's window is his own.
    assert_eq!(c.follow("bob", "r4").await.status, 200);
    let st = c.stats().await;
    assert_eq!(st.violations, 1);
    assert_eq!(st.max_in_window.per_account.get("alice"), Some(&3), "the refused request counted too");
    drop(sb);
}

#[tokio::test]
async fn the_app_window_spans_accounts() {
    let (sb, c) = start(10, 3, DAY).await;
    for n in ["a1", "a2"] {
        assert_eq!(c.follow("alice", n).await.status, 200);
    }
    assert_eq!(c.follow("bob", "b1").await.status, 200);
    let r = c.follow("bob", "b2").await;
    assert_eq!((r.status, r.code()), (429, Some(88)), "bob has room, the app has none");
    assert_eq!(r.headers["x-rate-limit-limit"], "3");
    let st = sb.stats();
    assert_eq!((st.violations, st.max_in_window.app), (1, 4));
}

#[tokio::test]
async fn faults_answer_exactly() {
    let (sb, c) = start(400, 1000, DAY).await;
    let only = |f: Faults| Faults { seed: 1, hang_for: Duration::from_secs(4), ..f };
    sb.set_faults(only(Faults { p503: 1.0, ..Faults::default() }));
    let r = c.follow("alice", "f1").await;
    assert_eq!((r.status, r.body.as_str()), (503, r#"{"errors":[{"code":130,"message":"Over capacity."}]}"#));
    sb.set_faults(only(Faults { p500: 1.0, ..Faults::default() }));
    let r = c.follow("alice", "f1").await;
    assert_eq!((r.status, r.body.as_str()), (500, r#"{"errors":[{"code":131,"message":"Internal error."}]}"#));
    sb.set_faults(only(Faults { p429: 1.0, ..Faults::default() }));
    let r = c.follow("alice", "f1").await;
    assert_eq!((r.status, r.body.as_str()), (429, r#"{"errors":[{"code":88,"message":"Rate limit exceeded."}]}"#));
    let reset: u64 = r.headers["x-rate-limit-reset"].to_str().unwrap().parse().unwrap();
    assert!(reset > now_secs() && reset <= now_secs() + 3, "a near reset");
    sb.set_faults(only(Faults { drop: 1.0, ..Faults::default() }));
    assert!(
        c.send("POST", "/1.1/friendships/create.json", "alice", &[("screen_name", "f1")], Placement::Query, |_| {})
            .await
            .is_err(),
        "dropped"
    );
    assert_eq!(sb.stats().follows.get("alice"), None, "nothing was followed yet");
    sb.set_faults(only(Faults { hang: 1.0, ..Faults::default() }));
    let err = c
        .send("POST", "/1.1/friendships/create.json", "alice", &[("screen_name", "f1")], Placement::Query, |_| {})
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(sb.stats().follows.get("alice"), Some(&1), "a hang applies the follow first");
    let st = sb.stats();
    for k in ["503", "500", "429", "drop", "hang"] {
        assert_eq!(st.faults.get(k), Some(&1), "{k}");
    }
    assert_eq!(st.violations, 0, "a spurious 429 is not a violation");
}

#[test]
fn fault_specs_parse_and_reject_nonsense() {
    let f =
        followq::sandbox::parse_faults("503=0.1,500=0.05,hang=0.02,drop=0.02,429=0.02,seed=42,hang_for=5s").unwrap();
    assert_eq!((f.p503, f.p500, f.hang, f.drop, f.p429, f.seed), (0.1, 0.05, 0.02, 0.02, 0.02, 42));
    assert_eq!(f.hang_for, Duration::from_secs(5));
    assert!(followq::sandbox::parse_faults("503=2").is_err());
    assert!(followq::sandbox::parse_faults("404=0.1").unwrap_err().contains("unknown fault"));
    assert!(followq::sandbox::parse_faults("503=0.6,500=0.6").unwrap_err().contains("more than 1"));
}

#[tokio::test]
async fn scripted_errors_for_one_account() {
    let (sb, c) = start(400, 1000, DAY).await;
    let (alice, _) = common::token("alice");
    sb.script(&alice, &[Scripted { status: 403, code: 161 }, Scripted { status: 403, code: 226 }]);
    let r = c.follow("alice", "s1").await;
    assert_eq!((r.status, r.code()), (403, Some(161)));
    assert!(r.body.contains("You are unable to follow more people at this time. Learn more <a href="));
    let r = c.follow("alice", "s1").await;
    assert_eq!((r.status, r.code()), (403, Some(226)));
    assert_eq!(c.follow("alice", "s1").await.status, 200, "the script is used up");
    assert_eq!(c.follow("bob", "s1").await.status, 200, "bob was never scripted");
    sb.script_always(&alice, Scripted { status: 401, code: 89 });
    for path in ["/1.1/friendships/create.json", "/1.1/account/verify_credentials.json"] {
        let method = if path.contains("create") { "POST" } else { "GET" };
        let r = c.send(method, path, "alice", &[("screen_name", "s2")], Placement::Query, |_| {}).await.unwrap();
        assert_eq!(
            (r.status, r.body.as_str()),
            (401, r#"{"errors":[{"code":89,"message":"Invalid or expired token."}]}"#)
        );
    }
    sb.script_always(&alice, Scripted { status: 403, code: 326 });
    assert_eq!(c.follow("alice", "s3").await.code(), Some(326));
}

#[tokio::test]
async fn lookup_shows_follows_after_the_delay() {
    let mut cfg = common::sandbox_config(&["alice"], 400, 1000, DAY);
    cfg.visible_after = Duration::from_millis(600);
    let sb = Sandbox::start(cfg, 0).await.unwrap();
    let c = Caller::new(&sb);
    c.follow("alice", "Seen").await;
    c.follow("alice", "p_asked").await;
    let lookup = || {
        c.send(
            "GET",
            "/1.1/friendships/lookup.json",
            "alice",
            &[("screen_name", "seen,p_asked,never,x_gone")],
            Placement::Query,
            |_| {},
        )
    };
    let conns = |r: Reply| -> Vec<(String, String)> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                (u["screen_name"].as_str().unwrap().to_string(), u["connections"][0].as_str().unwrap().to_string())
            })
            .collect()
    };
    let before = conns(lookup().await.unwrap());
    assert_eq!(
        before,
        [
            ("seen".into(), "none".into()),
            ("p_asked".into(), "following_requested".into()),
            ("never".into(), "none".into())
        ]
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = conns(lookup().await.unwrap());
    assert_eq!(after[0], ("seen".into(), "following".into()));
    assert_eq!(sb.stats().creates.get("alice"), Some(&2), "lookups are not creates");
}

#[tokio::test]
async fn stats_add_up_over_a_scripted_sequence() {
    let (sb, c) = start(3, 1000, DAY).await;
    c.follow("alice", "one").await; // 200
    c.follow("alice", "one").await; // duplicate: 200 or 403
    c.follow("alice", "b_two").await; // 403
    c.follow("alice", "three").await; // 429: window full (3 before it)
    c.follow("bob", "x_four").await; // 404
    c.send("POST", "/1.1/friendships/create.json", "bob", &[("screen_name", "z")], Placement::Query, tamper)
        .await
        .unwrap(); // bad signature
    let st = c.stats().await;
    assert_eq!(st.requests, 6);
    assert_eq!(st.by_status.values().sum::<u64>(), 6);
    assert_eq!(st.by_status.get(&429), Some(&1));
    assert_eq!(st.by_status.get(&404), Some(&1));
    assert_eq!(st.by_status.get(&401), Some(&1));
    assert_eq!(st.violations, 1);
    assert_eq!(st.bad_signatures, 1);
    assert_eq!(st.duplicate_creates, 1);
    assert_eq!(st.follows.get("alice"), Some(&1));
    assert_eq!(st.creates.get("alice"), Some(&4));
    assert_eq!(st.creates.get("bob"), Some(&1));
    assert_eq!(st.max_in_window.per_account.get("alice"), Some(&4));
    assert_eq!(st.max_in_window.app, 5);
    assert_eq!(st, sb.stats(), "the endpoint and the handle agree");
}

/// Issue 16's sandbox: the following list pages up to 1000 a page, shows only what is visible
/// and never a dropped follow, and each read endpoint holds its own windows strictly.
#[tokio::test]
async fn the_following_list_pages_drops_are_silent_and_reads_have_their_own_windows() {
    let mut config = common::sandbox_config(&["alice", "bob"], 5000, 10_000, DAY);
    config.drop_ratio = 0.05;
    config.faults.seed = 9;
    config.read_user_window = followq::sandbox::Window::new(4, 60);
    config.read_app_window = followq::sandbox::Window::new(6, 60);
    let sb = Sandbox::start(config, 0).await.unwrap();
    let c = Caller::new(&sb);
    let me = followq::sandbox::user_id("alice").to_string();
    let mut answered = 0;
    for i in 0..1203 {
        let body = serde_json::json!({"target_user_id": (5_000_000 + i).to_string()}).to_string();
        let r = c.send_json("alice", &format!("/2/users/{me}/following"), &body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["data"]["following"], true);
        answered += 1;
    }
    let dropped = sb.stats().dropped_follows as usize;
    assert!(dropped > 30 && dropped < 100, "about 5% of {answered}: {dropped}");
    let made = sb.follows_of("alice");
    assert_eq!(made.len(), answered - dropped);

    let page = |token: Option<String>| {
        let c = &c;
        let me = me.clone();
        async move {
            let mut params = vec![("max_results".to_string(), "1000".to_string())];
            if let Some(t) = token {
                params.push(("pagination_token".to_string(), t));
            }
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            c.send("GET", &format!("/2/users/{me}/following"), "alice", &params, Placement::Query, |_| {})
                .await
                .unwrap()
        }
    };
    let first = page(None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let v = first.json();
    assert_eq!(v["meta"]["result_count"], 1000);
    let next = v["meta"]["next_token"].as_str().unwrap().to_string();
    assert!(next.len() >= 16);
    let second = page(Some(next)).await.json();
    assert!(second["meta"]["next_token"].is_null(), "{second}");
    let mut listed: Vec<u64> = [&v, &second]
        .iter()
        .flat_map(|p| p["data"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().parse::<u64>().unwrap()))
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, made, "the list is the sandbox's own books, dropped follows left out");

    // 4 a minute per account: alice's 5th read of her list is a violation, answered 429; the
    // lookup endpoint keeps windows of its own.
    assert_eq!(page(None).await.status, 200);
    assert_eq!(page(None).await.status, 200);
    let over = page(None).await;
    assert_eq!(over.status, 429, "{}", over.body);
    assert!(over.headers.contains_key("x-rate-limit-reset"));
    let lookup = |who: &'static str| {
        c.send("GET", "/1.1/friendships/lookup.json", who, &[("screen_name", "a")], Placement::Query, |_| {})
    };
    assert_eq!(lookup("bob").await.unwrap().status, 200, "another endpoint, its own windows");
    let st = sb.stats();
    assert_eq!(st.read_violations, 1);
    assert_eq!(st.reads.get("following"), Some(&5));
    assert_eq!(st.reads.get("lookup"), Some(&1));
    assert_eq!(st.following_pages, 4);
    // Someone else's list: refused, not served.
    let path = format!("/2/users/{me}/following");
    let bad = c.send("GET", &path, "bob", &[("max_results", "5")], Placement::Query, |_| {}).await.unwrap();
    assert_eq!(bad.status, 403, "{}", bad.body);
}
