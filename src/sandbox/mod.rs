//! The local X API stand-in: strict where X is strict (signatures, timestamps, nonces, rolling
//! windows), able to misbehave on purpose (seeded faults, scripted errors), and honest about what
//! it saw (`GET /_sandbox/stats`). Binds 127.0.0.1 only; stops when its handle is dropped.

pub mod auth;
mod limits;
mod world;

pub use limits::{Faults, parse_faults};
pub use world::{MaxInWindow, Stats, WindowMax, name_in_token, user_id};

pub use crate::config::Window;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::time::Clock;

pub use world::NotApproved;
use world::{Reply, World, authorize_page};

/// A scripted answer: HTTP status and X error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scripted {
    pub status: u16,
    pub code: i64,
}

/// An answer the sandbox gives every follow, whatever the target: how X refuses an app that
/// may not follow, so that followq's handling of each can be tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 403 code 453: "You currently have access to a subset of X API V2 endpoints…".
    Code453,
    /// 403 problem `client-forbidden`.
    ClientForbidden,
    /// 402 `CreditsDepleted`.
    Credits,
    /// 429 problem `usage-capped`.
    UsageCapped,
}

impl Refusal {
    pub fn parse(s: &str) -> Result<Refusal, String> {
        match s {
            "453" => Ok(Refusal::Code453),
            "client-forbidden" => Ok(Refusal::ClientForbidden),
            "402" | "credits" => Ok(Refusal::Credits),
            "usage-capped" => Ok(Refusal::UsageCapped),
            other => Err(format!("'{other}': expected 453, client-forbidden, 402 or usage-capped")),
        }
    }
}

/// The sandbox's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// consumer key → consumer secret.
    pub consumers: HashMap<String, String>,
    /// token → (token secret, account name for stats).
    pub tokens: HashMap<String, (String, String)>,
    /// The rolling windows every account's follows are held to, and the app's (every
    /// account's together); a request into a full one is a violation, answered 429.
    pub user_windows: Vec<Window>,
    pub app_windows: Vec<Window>,
    /// `GET /2/users/by`'s windows, per account and for the app (X: 900 and 300 per 15 minutes).
    pub lookup_user_window: Window,
    pub lookup_app_window: Window,
    /// The windows of each read of follows (friendships/lookup, /2/users/:id/following), per
    /// account and for the app (X's published 15 per 15 minutes for both).
    pub read_user_window: Window,
    pub read_app_window: Window,
    /// Share of new follows answered 200 and never made (each pair dropped at most once).
    pub drop_ratio: f64,
    /// Every read of follows (lookup, following list) is answered only after this long.
    pub read_delay: Duration,
    /// When set, every follow is answered with this refusal.
    pub refuse: Option<Refusal>,
    /// Requests that arrive this much inside the window's edge are still let through (latency).
    pub grace: Duration,
    /// Seconds added to the sandbox's clock (to exercise clock-skew handling).
    pub clock_offset: i64,
    /// Share of repeated follows answered 200 rather than 403.
    pub already_200_ratio: f64,
    /// A follow shows in friendships/lookup only this long after it was made.
    pub visible_after: Duration,
    /// Allowed difference between oauth_timestamp and the sandbox clock.
    pub max_skew_secs: i64,
    pub faults: Faults,
    /// The clock its windows, resets, `Date` headers and timestamp checks read (a test shares
    /// its virtual clock with the run it serves).
    pub clock: Clock,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            consumers: HashMap::new(),
            tokens: HashMap::new(),
            user_windows: vec![Window::new(400, 86_400)],
            app_windows: vec![Window::new(1000, 86_400)],
            lookup_user_window: Window::new(900, 900),
            lookup_app_window: Window::new(300, 900),
            read_user_window: Window::new(15, 900),
            read_app_window: Window::new(15, 900),
            drop_ratio: 0.0,
            read_delay: Duration::ZERO,
            refuse: None,
            grace: Duration::from_millis(100),
            clock_offset: 0,
            already_200_ratio: 0.5,
            visible_after: Duration::ZERO,
            max_skew_secs: 300,
            faults: Faults::default(),
            clock: Clock::System,
        }
    }
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    pub addr: SocketAddr,
    world: Arc<Mutex<World>>,
    stop: CancellationToken,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Sandbox {
    /// Starts on 127.0.0.1:`port` (0: any free port).
    pub async fn start(config: Config, port: u16) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let world = Arc::new(Mutex::new(World::new(config)));
        let stop = CancellationToken::new();
        let app = Router::new()
            .route("/_sandbox/stats", get(stats_handler))
            .route("/_sandbox/authorize", get(approve_handler))
            .route("/oauth/authorize", get(authorize_page_handler))
            .fallback(api_handler)
            .with_state(world.clone());
        let token = stop.clone();
        tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move { token.cancelled().await });
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "sandbox server stopped");
            }
        });
        Ok(Sandbox { addr, world, stop })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the sandbox has seen so far.
    pub fn stats(&self) -> Stats {
        self.world.lock().unwrap_or_else(|p| p.into_inner()).stats()
    }

    /// Shifts the sandbox clock by `secs` seconds.
    pub fn set_clock_offset(&self, secs: i64) {
        self.world.lock().unwrap_or_else(|p| p.into_inner()).config.clock_offset = secs;
    }

    /// Answers the next create requests of `token` with these, in order.
    pub fn script(&self, token: &str, replies: &[Scripted]) {
        self.world.lock().unwrap_or_else(|p| p.into_inner()).script(token, replies, false);
    }

    /// Answers every request of `token` with this, from now on (a locked or revoked account).
    pub fn script_always(&self, token: &str, reply: Scripted) {
        self.world.lock().unwrap_or_else(|p| p.into_inner()).script(token, &[reply], true);
    }

    /// Stops answering every request of `token` with a sticky script.
    pub fn clear_script(&self, token: &str) {
        self.world.lock().unwrap_or_else(|p| p.into_inner()).clear_script(token);
    }

    /// Answers every follow with `refusal` from now on (None: as usual again).
    pub fn set_refusal(&self, refusal: Option<Refusal>) {
        self.world.lock().unwrap_or_else(|p| p.into_inner()).config.refuse = refusal;
    }

    /// From now on a follow shows in reads only once it is `after` old (the sandbox's
    /// `visible_after`): a test holds follows out of sight, then lets them show, on no clock.
    pub fn set_visible_after(&self, after: Duration) {
        self.world.lock().unwrap_or_else(|p| p.into_inner()).config.visible_after = after;
    }

    /// The account `screen_name` approves the app for this request token (as at
    /// `oauth/authorize`): the PIN it is shown.
    pub fn approve(&self, request_token: &str, screen_name: &str) -> Result<String, NotApproved> {
        self.world.lock().unwrap_or_else(|p| p.into_inner()).approve(request_token, screen_name)
    }

    /// The ids this account (by its name in the sandbox) follows in the sandbox's own books.
    pub fn follows_of(&self, account: &str) -> Vec<u64> {
        self.world.lock().unwrap_or_else(|p| p.into_inner()).follows_of(account)
    }

    /// Changes the fault rates.
    pub fn set_faults(&self, faults: Faults) {
        self.world.lock().unwrap_or_else(|p| p.into_inner()).set_faults(faults);
    }
}

async fn stats_handler(State(world): State<Arc<Mutex<World>>>) -> Response {
    let stats = world.lock().unwrap_or_else(|p| p.into_inner()).stats();
    axum::Json(stats).into_response()
}

/// `oauth_token` and `screen_name`, from a query.
#[derive(serde::Deserialize)]
struct Approval {
    #[serde(default)]
    oauth_token: String,
    screen_name: Option<String>,
}

/// `GET /_sandbox/authorize?oauth_token=…&screen_name=…`: approves as that account and answers
/// `{"pin": …}` — what a test does in place of a person at the browser.
async fn approve_handler(State(world): State<Arc<Mutex<World>>>, Query(q): Query<Approval>) -> Response {
    let name = q.screen_name.unwrap_or_default();
    match world.lock().unwrap_or_else(|p| p.into_inner()).approve(&q.oauth_token, &name) {
        Ok(pin) => axum::Json(serde_json::json!({"pin": pin, "screen_name": name})).into_response(),
        Err(e) => {
            let status = match e {
                NotApproved::Invalid => StatusCode::NOT_FOUND,
                NotApproved::AlreadyApproved => StatusCode::FORBIDDEN,
                NotApproved::BadName => StatusCode::BAD_REQUEST,
            };
            (status, axum::Json(serde_json::json!({"error": format!("{e:?}")}))).into_response()
        }
    }
}

/// `GET /oauth/authorize?oauth_token=…`: the page a person sees — a name to sign in as, then
/// the PIN.
async fn authorize_page_handler(State(world): State<Arc<Mutex<World>>>, Query(q): Query<Approval>) -> Response {
    let mut w = world.lock().unwrap_or_else(|p| p.into_inner());
    let outcome = match q.screen_name {
        Some(name) => Some(w.approve(&q.oauth_token, &name).map(|pin| (pin, name))),
        // The form only for a request token that can still be approved.
        None if !w.approvable(&q.oauth_token) => Some(Err(NotApproved::Invalid)),
        None => None,
    };
    drop(w);
    let (status, html) = authorize_page(&q.oauth_token, outcome);
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::response::Html(html)).into_response()
}

async fn api_handler(
    State(world): State<Arc<Mutex<World>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_ascii_lowercase();
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let request = world::Request {
        method: method.as_str().to_string(),
        base_uri: format!("http://{host}{}", uri.path()),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        form: if is_form { String::from_utf8_lossy(&body).into_owned() } else { String::new() },
        json: if is_form { String::new() } else { String::from_utf8_lossy(&body).into_owned() },
        authorization: headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).map(str::to_string),
    };
    let reply = world.lock().unwrap_or_else(|p| p.into_inner()).handle(&request);
    match reply {
        Reply::Answer(r) => r.into_response(),
        Reply::Hang(after, r) => {
            tokio::time::sleep(after).await;
            r.into_response()
        }
        Reply::SlowRead(after, r) => {
            tokio::time::sleep(after).await;
            world.lock().unwrap_or_else(|p| p.into_inner()).read_answered();
            r.into_response()
        }
        Reply::Drop => {
            // Headers go out, then the body fails: hyper aborts the connection mid-response.
            let stream =
                futures_util::stream::once(async { Err::<Bytes, std::io::Error>(std::io::Error::other("dropped")) });
            Response::builder().status(StatusCode::OK).body(Body::from_stream(stream)).unwrap_or_default()
        }
    }
}
