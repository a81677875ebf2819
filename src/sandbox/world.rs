//! The sandbox's world: users, follows, the answers X gives, and the statistics. Pure apart
//! from the clock it is configured with: every answer is decided here under one lock.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use serde_json::json;

use super::Window;
use super::limits::{Fault, Faults, Rolling};
use super::{Config, Scripted, auth};

mod oauth;
mod reads;
mod v2;

pub use oauth::{NotApproved, authorize_page, name_in_token};

/// What the sandbox saw.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// Every request to the API paths.
    pub requests: u64,
    /// friendships/create requests by account (authenticated ones).
    pub creates: BTreeMap<String, u64>,
    pub by_status: BTreeMap<u16, u64>,
    /// Requests that arrived while their window (account or app) was already full.
    pub violations: u64,
    pub bad_signatures: u64,
    /// Distinct targets each account follows (or has requested).
    pub follows: BTreeMap<String, u64>,
    /// Creates for a pair that was already followed or requested.
    pub duplicate_creates: u64,
    /// The most create requests seen inside any one of the longest windows (of each scope).
    pub max_in_window: MaxInWindow,
    /// The most create requests seen inside any one of each window, of both scopes.
    pub windows: Vec<WindowMax>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// `GET /2/users/by` requests, the most names one asked for, and names asked for more than
    /// once (over the sandbox's life).
    pub lookups: u64,
    pub lookup_most_names: u64,
    pub names_asked_again: u64,
    /// Follow requests for a name X does not know or has suspended (v2: by the id a lookup gave).
    pub follows_of_unknown: u64,
    /// Follows answered with a configured refusal (453, client-forbidden, 402, usage-capped).
    pub refused: u64,
    /// Lookups that arrived while a lookup window was full.
    pub lookup_violations: u64,
    /// The PIN flow: request tokens given, access tokens given, and steps refused (a wrong or
    /// missing PIN, a spent or unknown request token, a callback other than `oob`).
    pub request_tokens: u64,
    pub access_tokens: u64,
    pub oauth_refused: u64,
    /// Follows answered 200 but never made (`drop_ratio`): X's eventual consistency at its worst.
    pub dropped_follows: u64,
    /// Reads of follows (`lookup`: friendships/lookup, `following`: /2/users/:id/following) by
    /// endpoint, those that arrived while one of the endpoint's windows was full, and the
    /// following-list pages answered.
    pub reads: BTreeMap<String, u64>,
    pub read_violations: u64,
    pub following_pages: u64,
    /// Following-list pages asked for with a `pagination_token` (a page after the first).
    pub following_later_pages: u64,
    /// Follow requests that arrived while a slow read (`read_delay`) was out.
    pub creates_while_reading: u64,
}

/// The most requests inside any one window, per account and for the app.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct MaxInWindow {
    pub per_account: BTreeMap<String, u64>,
    pub app: u64,
}

/// The most requests seen inside any one interval of a window: per account (by name) for an
/// account's window, under "app" for the app's.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct WindowMax {
    /// "user" or "app".
    pub scope: String,
    /// `5/2s`.
    pub window: String,
    pub limit: u32,
    pub most: BTreeMap<String, u64>,
}

/// A request, as the handler saw it.
pub struct Request {
    pub method: String,
    pub base_uri: String,
    pub path: String,
    pub query: String,
    pub form: String,
    /// The body when it is not a form (v2's JSON): OAuth 1.0a does not sign it.
    pub json: String,
    pub authorization: Option<String>,
}

/// What the handler should do.
pub enum Reply {
    Answer(Answer),
    Hang(Duration, Answer),
    /// A read of follows answered late (`read_delay`): counted out until it is answered.
    SlowRead(Duration, Answer),
    Drop,
}

/// A status, a JSON body, extra headers, and the Date of the sandbox clock.
pub struct Answer {
    status: u16,
    body: String,
    headers: Vec<(&'static str, String)>,
    date: SystemTime,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut r =
            (StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), self.body).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(self.date)) {
            h.insert(header::DATE, v);
        }
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        r
    }
}

/// A user the sandbox knows: a stable id for every name, a stable name for every id.
struct User {
    id: u64,
    screen_name: String,
}

/// The id the sandbox gives the user with this name (its `GET /2/users/me` and `/2/users/by`).
pub fn user_id(name: &str) -> u64 {
    user_for_name(name).id
}

fn user_for_name(name: &str) -> User {
    // FNV-1a of the lower-case name: the same name is the same user, in every run.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.to_ascii_lowercase().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    User { id: 1_000_000_000 + (h % 1_000_000_000_000), screen_name: name.to_string() }
}

fn user_for_id(id: u64) -> User {
    User { id, screen_name: format!("user{id}") }
}

/// Everything the sandbox remembers.
pub struct World {
    pub config: Config,
    rng: StdRng,
    nonces: auth::Nonces,
    /// Per token, one per configured account window.
    user_windows: HashMap<String, Vec<Rolling>>,
    /// Lookup windows, per token and for the app.
    lookup_windows: HashMap<String, Rolling>,
    lookup_app: Rolling,
    /// Every name a lookup has asked for (lower case), and the names behind the ids it gave.
    asked: HashSet<String>,
    names: HashMap<u64, String>,
    /// One per configured app window.
    app_windows: Vec<Rolling>,
    /// (token, user id) → when followed.
    follows: HashMap<(String, u64), i64>,
    /// (token, user id) → a request is pending (protected target).
    pending: HashSet<(String, u64)>,
    scripts: HashMap<String, VecDeque<Scripted>>,
    sticky: HashMap<String, Scripted>,
    /// Request tokens of the PIN flow, not yet spent.
    request_tokens: HashMap<String, oauth::Pending>,
    /// Read windows, per (endpoint, token) and per endpoint for the app.
    read_windows: HashMap<(&'static str, String), Rolling>,
    read_app: HashMap<&'static str, Rolling>,
    /// (token, user id) of follows dropped silently: each pair once.
    dropped: HashSet<(String, u64)>,
    /// Slow reads out now.
    reads_out: usize,
    stats: Stats,
}

/// A request whose signature verified: its token (empty for [`Signed::App`]), its own
/// parameters, and its `Authorization` header.
struct Authenticated {
    token: String,
    params: Vec<(String, String)>,
    header: auth::Header,
}

/// What a request's signature is made with, beyond the consumer secret.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Signed {
    /// An access token the sandbox knows: every API call.
    Token,
    /// Nothing more, and no `oauth_token`: `oauth/request_token`.
    App,
    /// A live request token of the same consumer: `oauth/access_token`.
    RequestToken,
}

fn error_body(code: i64, message: &str) -> String {
    json!({"errors": [{"code": code, "message": message}]}).to_string()
}

fn message_for(code: i64) -> &'static str {
    match code {
        32 => "Could not authenticate you.",
        63 => "User has been suspended.",
        64 => "Your account is suspended and is not permitted to access this feature.",
        88 => "Rate limit exceeded.",
        89 => "Invalid or expired token.",
        108 => "Cannot find specified user.",
        130 => "Over capacity.",
        131 => "Internal error.",
        135 => "Timestamp out of bounds.",
        160 => "You've already requested to follow the user.",
        161 => {
            "You are unable to follow more people at this time. Learn more <a href='http://support.twitter.com/articles/66885-i-can-t-follow-people-follow-limits'>here</a>."
        }
        162 => "You have been blocked from following this account at the request of the user.",
        226 => {
            "This request looks like it might be automated. To protect our users from spam and other malicious activity, we can't complete this action right now."
        }
        261 => "Your App cannot perform write actions.",
        326 => "To protect our users from spam and other malicious activity, this account is temporarily locked.",
        416 => "Invalid / suspended App.",
        _ => "Error.",
    }
}

impl World {
    pub fn new(config: Config) -> World {
        let seed = config.faults.seed;
        World {
            config,
            rng: StdRng::seed_from_u64(seed),
            nonces: auth::Nonces::default(),
            user_windows: HashMap::new(),
            app_windows: Vec::new(),
            lookup_windows: HashMap::new(),
            lookup_app: Rolling::default(),
            asked: HashSet::new(),
            names: HashMap::new(),
            follows: HashMap::new(),
            pending: HashSet::new(),
            scripts: HashMap::new(),
            sticky: HashMap::new(),
            request_tokens: HashMap::new(),
            read_windows: HashMap::new(),
            read_app: HashMap::new(),
            dropped: HashSet::new(),
            reads_out: 0,
            stats: Stats::default(),
        }
    }

    /// A slow read was answered.
    pub fn read_answered(&mut self) {
        self.reads_out = self.reads_out.saturating_sub(1);
    }

    /// A read's answer, late when reads are slow (`read_delay`).
    fn read_reply(&mut self, answer: Answer) -> Reply {
        if self.config.read_delay.is_zero() {
            return Reply::Answer(answer);
        }
        self.reads_out += 1;
        Reply::SlowRead(self.config.read_delay, answer)
    }

    pub fn set_faults(&mut self, faults: Faults) {
        self.rng = StdRng::seed_from_u64(faults.seed);
        self.config.faults = faults;
    }

    pub fn script(&mut self, token: &str, replies: &[Scripted], sticky: bool) {
        if sticky {
            if let Some(r) = replies.first() {
                self.sticky.insert(token.to_string(), *r);
            }
        } else {
            self.scripts.entry(token.to_string()).or_default().extend(replies.iter().copied());
        }
    }

    pub fn clear_script(&mut self, token: &str) {
        self.sticky.remove(token);
        self.scripts.remove(token);
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        let longest = |ws: &[Window]| ws.iter().enumerate().max_by_key(|(_, w)| w.length).map(|(i, _)| i);
        if let Some(i) = longest(&self.config.user_windows) {
            s.max_in_window.per_account =
                self.user_windows.iter().map(|(token, w)| (self.account_name(token), w[i].max)).collect();
        }
        if let Some(i) = longest(&self.config.app_windows) {
            s.max_in_window.app = self.app_windows.get(i).map_or(0, |w| w.max);
        }
        for (i, w) in self.config.user_windows.iter().enumerate() {
            let most = self.user_windows.iter().map(|(token, r)| (self.account_name(token), r[i].max)).collect();
            s.windows.push(WindowMax { scope: "user".into(), window: w.to_string(), limit: w.limit, most });
        }
        for (i, w) in self.config.app_windows.iter().enumerate() {
            let most = BTreeMap::from([("app".to_string(), self.app_windows.get(i).map_or(0, |r| r.max))]);
            s.windows.push(WindowMax { scope: "app".into(), window: w.to_string(), limit: w.limit, most });
        }
        let mut follows: BTreeMap<String, u64> = BTreeMap::new();
        for (token, _) in self.follows.keys() {
            *follows.entry(self.account_name(token)).or_default() += 1;
        }
        for (token, _) in &self.pending {
            *follows.entry(self.account_name(token)).or_default() += 1;
        }
        s.follows = follows;
        s
    }

    fn account_name(&self, token: &str) -> String {
        self.config.tokens.get(token).map(|(_, n)| n.clone()).unwrap_or_else(|| token.to_string())
    }

    /// The sandbox clock (ms): the configured clock with its offset.
    fn now_ms(&self) -> i64 {
        self.config.clock.now_ms() + self.config.clock_offset * 1000
    }

    fn answer(&mut self, status: u16, body: String, headers: Vec<(&'static str, String)>) -> Answer {
        *self.stats.by_status.entry(status).or_default() += 1;
        let now = self.now_ms();
        Answer { status, body, headers, date: UNIX_EPOCH + Duration::from_millis(now.max(0) as u64) }
    }

    fn error(&mut self, status: u16, code: i64) -> Reply {
        let body = error_body(code, message_for(code));
        // A scripted 429 carries the headers a real one does, with a reset two seconds away.
        let headers = if status == 429 {
            let reset = self.now_ms() / 1000 + 2;
            vec![
                ("x-rate-limit-limit", self.shortest_user_limit().to_string()),
                ("x-rate-limit-remaining", "0".to_string()),
                ("x-rate-limit-reset", reset.to_string()),
            ]
        } else {
            Vec::new()
        };
        Reply::Answer(self.answer(status, body, headers))
    }

    /// Decides the answer to one request.
    pub fn handle(&mut self, req: &Request) -> Reply {
        self.stats.requests += 1;
        let v2_follow = req.path.strip_prefix("/2/users/").and_then(|r| r.strip_suffix("/following"));
        let route = match (req.method.as_str(), req.path.as_str(), v2_follow) {
            ("GET", _, Some(source)) => Route::FollowingList(source.to_string()),
            ("POST", "/1.1/friendships/create.json", _) => Route::Create,
            ("GET", "/1.1/friendships/lookup.json", _) => Route::Lookup,
            ("GET", "/1.1/account/verify_credentials.json", _) => Route::Verify,
            ("GET", "/2/users/me", _) => Route::Me,
            ("GET", "/2/users/by", _) => Route::UsersBy,
            ("POST", _, Some(source)) => Route::FollowV2(source.to_string()),
            ("POST", "/oauth/request_token", _) => Route::RequestToken,
            ("POST", "/oauth/access_token", _) => Route::AccessToken,
            _ => {
                let body = error_body(34, "Sorry, that page does not exist.");
                return Reply::Answer(self.answer(404, body, Vec::new()));
            }
        };
        let signed = match route {
            Route::RequestToken => Signed::App,
            Route::AccessToken => Signed::RequestToken,
            _ => Signed::Token,
        };
        let Authenticated { token, params, header } = match self.authenticate(req, signed) {
            Ok(x) => x,
            Err(reply) => return reply,
        };
        match route {
            Route::RequestToken => {
                let ck = header.get("oauth_consumer_key").unwrap_or_default().to_string();
                // In the header, or (X takes it there too) among the request's parameters.
                let callback = header
                    .get("oauth_callback")
                    .map(str::to_string)
                    .or_else(|| params.iter().find(|(k, _)| k == "oauth_callback").map(|(_, v)| v.clone()));
                return self.request_token(&ck, callback.as_deref());
            }
            Route::AccessToken => return self.access_token(&token, header.get("oauth_verifier")),
            _ => {}
        }
        if let Some(s) = self.sticky.get(&token).copied() {
            return self.error(s.status, s.code);
        }
        match route {
            Route::Me => {
                let name = self.account_name(&token);
                let id = user_for_name(&name).id;
                let body = json!({"data": {"id": id.to_string(), "name": name, "username": name}}).to_string();
                Reply::Answer(self.answer(200, body, Vec::new()))
            }
            Route::UsersBy => self.users_by(&token, &params),
            Route::FollowV2(source) => self.create_v2(&token, &source, &req.json),
            Route::FollowingList(source) => self.following_list(&token, &source, &params),
            Route::Create => self.create(&token, &params),
            Route::Lookup => self.lookup(&token, &params),
            Route::Verify => {
                let name = self.account_name(&token);
                let body = json!({"id_str": user_for_name(&name).id.to_string(), "screen_name": name}).to_string();
                Reply::Answer(self.answer(200, body, Vec::new()))
            }
            Route::RequestToken | Route::AccessToken => unreachable!("answered above"),
        }
    }

    /// Verifies the OAuth signature, made as `signed` says; returns the token (empty for
    /// [`Signed::App`]), the request's own parameters and the header.
    fn authenticate(&mut self, req: &Request, signed: Signed) -> Result<Authenticated, Reply> {
        let Some(header) = req.authorization.as_deref().and_then(auth::parse_header) else {
            self.stats.bad_signatures += 1;
            return Err(self.error(400, 215));
        };
        let (Some(mut params), Some(form)) = (auth::parse_pairs(&req.query), auth::parse_pairs(&req.form)) else {
            return Err(self.error(400, 215));
        };
        params.extend(form);
        let request_params = params.clone();
        params.extend(header.params.iter().cloned());
        let get = |k: &str| header.get(k).map(str::to_string);
        let token = get("oauth_token");
        let (Some(ck), Some(ts), Some(nonce)) = (get("oauth_consumer_key"), get("oauth_timestamp"), get("oauth_nonce"))
        else {
            self.stats.bad_signatures += 1;
            return Err(self.error(400, 215));
        };
        if token.is_some() == (signed == Signed::App) {
            self.stats.bad_signatures += 1;
            return Err(self.error(400, 215));
        }
        let token = token.unwrap_or_default();
        if header.get("oauth_signature_method") != Some("HMAC-SHA1")
            || header.get("oauth_version").is_some_and(|v| v != "1.0")
        {
            self.stats.bad_signatures += 1;
            return Err(self.error(401, 32));
        }
        let secret = match signed {
            Signed::Token => self.config.tokens.get(&token).map(|(s, _)| s.clone()),
            Signed::App => Some(String::new()),
            Signed::RequestToken => match self.request_token_secret(&token) {
                Some((of, secret)) if of == ck => Some(secret),
                _ => {
                    // Unknown, spent or expired: X answers in plain text.
                    self.stats.oauth_refused += 1;
                    let body = "Invalid request token.".to_string();
                    let headers = vec![("content-type", "text/plain; charset=utf-8".into())];
                    return Err(Reply::Answer(self.answer(401, body, headers)));
                }
            },
        };
        let (Some(cs), Some(secret)) = (self.config.consumers.get(&ck).cloned(), secret) else {
            self.stats.bad_signatures += 1;
            return Err(self.error(401, 32));
        };
        let now = self.now_ms();
        let Ok(ts) = ts.parse::<i64>() else {
            return Err(self.error(401, 32));
        };
        if (ts - now / 1000).abs() > self.config.max_skew_secs {
            return Err(self.error(401, 135));
        }
        let base = auth::base_string(&req.method, &req.base_uri, &params);
        if !auth::verify(&base, &cs, &secret, &header.signature) {
            self.stats.bad_signatures += 1;
            return Err(self.error(401, 32));
        }
        if !self.nonces.first_use(&ck, &nonce, ts, now / 1000 - 2 * self.config.max_skew_secs) {
            self.stats.bad_signatures += 1;
            return Err(self.error(401, 32));
        }
        Ok(Authenticated { token, params: request_params, header })
    }

    fn create(&mut self, token: &str, params: &[(String, String)]) -> Reply {
        let now = self.now_ms();
        if let Err(reply) = self.gate(token, now, false) {
            return reply;
        }
        let fault = self.roll_fault();
        if let Some(reply) = self.fault_reply(fault, now) {
            return reply;
        }
        let reply = self.follow(token, params, now);
        self.hang_if(fault, reply)
    }

    /// What every follow passes first: its windows (a violation is answered 429), a configured
    /// refusal, a scripted answer. The request counts against the windows in every case, as
    /// at X.
    fn gate(&mut self, token: &str, now: i64, v2: bool) -> Result<(), Reply> {
        if self.reads_out > 0 {
            self.stats.creates_while_reading += 1;
        }
        let name = self.account_name(token);
        *self.stats.creates.entry(name).or_default() += 1;
        if let Err((limit, frees)) = self.count_windows(token, now) {
            self.stats.violations += 1;
            let reset = (frees + 999) / 1000;
            let headers = vec![
                ("x-rate-limit-limit", limit.to_string()),
                ("x-rate-limit-remaining", "0".to_string()),
                ("x-rate-limit-reset", reset.to_string()),
            ];
            let body = if v2 {
                json!({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429})
                    .to_string()
            } else {
                error_body(88, message_for(88))
            };
            return Err(Reply::Answer(self.answer(429, body, headers)));
        }
        if let Some(r) = self.config.refuse {
            self.stats.refused += 1;
            return Err(self.refusal(r));
        }
        if let Some(s) = self.scripts.get_mut(token).and_then(|q| q.pop_front()) {
            return Err(self.error(s.status, s.code));
        }
        Ok(())
    }

    fn roll_fault(&mut self) -> Option<Fault> {
        let fault = self.config.faults.roll(&mut self.rng);
        if let Some(f) = fault {
            *self.stats.faults.entry(f.name().into()).or_default() += 1;
        }
        fault
    }

    /// The reply a fault gives instead of the answer (a hang answers, later).
    fn fault_reply(&mut self, fault: Option<Fault>, now: i64) -> Option<Reply> {
        match fault {
            Some(Fault::P503) => Some(self.error(503, 130)),
            Some(Fault::P500) => Some(self.error(500, 131)),
            Some(Fault::P429) => Some(self.spurious_429(now)),
            Some(Fault::Drop) => {
                *self.stats.by_status.entry(0).or_default() += 1;
                Some(Reply::Drop)
            }
            Some(Fault::Hang) | None => None,
        }
    }

    fn hang_if(&self, fault: Option<Fault>, reply: Reply) -> Reply {
        match (fault, reply) {
            (Some(Fault::Hang), Reply::Answer(a)) => Reply::Hang(self.config.faults.hang_for, a),
            (_, r) => r,
        }
    }

    /// A 429 that no window explains, with a reset a second or two away.
    fn spurious_429(&mut self, now: i64) -> Reply {
        let reset = now / 1000 + 1 + self.rng.random_range(0..2);
        let headers = vec![
            ("x-rate-limit-limit", self.shortest_user_limit().to_string()),
            ("x-rate-limit-remaining", "0".to_string()),
            ("x-rate-limit-reset", reset.to_string()),
        ];
        let body = error_body(88, message_for(88));
        Reply::Answer(self.answer(429, body, headers))
    }

    /// The limit of the account's shortest window: what `x-rate-limit-limit` reports.
    fn shortest_user_limit(&self) -> u32 {
        self.config.user_windows.iter().min_by_key(|w| w.length).map_or(0, |w| w.limit)
    }

    /// Counts a follow request of `token` at `now` in every window of both scopes. When one was
    /// already full, the 429 to answer (a violation): the limit and reset of the window that
    /// frees last.
    fn count_windows(&mut self, token: &str, now: i64) -> Result<(), (u32, i64)> {
        let grace = self.config.grace.as_millis() as i64;
        let (user, app) = (&self.config.user_windows, &self.config.app_windows);
        if self.app_windows.len() != app.len() {
            self.app_windows = app.iter().map(|_| Rolling::default()).collect();
        }
        let mine = self
            .user_windows
            .entry(token.to_string())
            .or_insert_with(|| user.iter().map(|_| Rolling::default()).collect());
        let mut full: Option<(u32, i64)> = None;
        let scopes = [(user, mine), (app, &mut self.app_windows)];
        for (windows, rolling) in scopes {
            for (w, r) in windows.iter().zip(rolling.iter_mut()) {
                let ms = w.length.as_millis() as i64;
                if r.count(now, ms, grace) >= w.limit as usize {
                    let frees = r.frees_at(w.limit, ms);
                    if full.is_none_or(|(_, f)| frees > f) {
                        full = Some((w.limit, frees));
                    }
                }
            }
        }
        full.map_or(Ok(()), Err)
    }

    /// Applies a follow and answers as X does.
    fn follow(&mut self, token: &str, params: &[(String, String)], now: i64) -> Reply {
        let get = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone());
        let user = match (get("user_id"), get("screen_name")) {
            (Some(id), _) => match id.parse::<u64>() {
                Ok(id) if id > 0 => user_for_id(id),
                _ => return self.error(404, 108),
            },
            (None, Some(name)) if !name.is_empty() => user_for_name(&name),
            _ => return self.error(404, 108),
        };
        let lower = user.screen_name.to_ascii_lowercase();
        if lower.starts_with("x_") {
            return self.error(404, 108);
        }
        if lower.starts_with("s_") {
            return self.error(403, 63);
        }
        if lower.starts_with("b_") {
            return self.error(403, 162);
        }
        let key = (token.to_string(), user.id);
        if lower.starts_with("p_") {
            if !self.pending.insert(key) {
                self.stats.duplicate_creates += 1;
                return self.error(403, 160);
            }
            return Reply::Answer(self.user_answer(&user, true));
        }
        if self.follows.contains_key(&key) {
            self.stats.duplicate_creates += 1;
            let ratio = self.config.already_200_ratio;
            if self.rng.random_bool(ratio.clamp(0.0, 1.0)) {
                return Reply::Answer(self.user_answer(&user, false));
            }
            let message = format!("Could not follow user: {} is already on your list.", user.screen_name);
            let body = if self.rng.random_bool(0.5) {
                json!({"request": "/1.1/friendships/create.json", "error": message}).to_string()
            } else {
                json!({"errors": [{"message": message}]}).to_string()
            };
            return Reply::Answer(self.answer(403, body, Vec::new()));
        }
        if !self.drops(token, user.id) {
            self.follows.insert(key, now);
        }
        Reply::Answer(self.user_answer(&user, false))
    }

    fn user_answer(&mut self, user: &User, protected: bool) -> Answer {
        let body = json!({
            "id": user.id,
            "id_str": user.id.to_string(),
            "screen_name": user.screen_name,
            "protected": protected,
            "follow_request_sent": protected,
            "following": null,
        })
        .to_string();
        self.answer(200, body, Vec::new())
    }

    fn lookup(&mut self, token: &str, params: &[(String, String)]) -> Reply {
        if let Err(reply) = self.read_gate("lookup", token, self.now_ms(), false) {
            return reply;
        }
        let get = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone());
        let users: Vec<User> = match (get("user_id"), get("screen_name")) {
            (Some(ids), _) => ids.split(',').filter_map(|s| s.trim().parse().ok()).map(user_for_id).collect(),
            (None, Some(names)) => {
                names.split(',').map(str::trim).filter(|s| !s.is_empty()).map(user_for_name).collect()
            }
            _ => return self.error(404, 108),
        };
        if users.len() > 100 {
            return self.error(400, 195);
        }
        let now = self.now_ms();
        let visible = self.config.visible_after.as_millis() as i64;
        let out: Vec<serde_json::Value> = users
            .iter()
            .filter(|u| !u.screen_name.to_ascii_lowercase().starts_with("x_"))
            .map(|u| {
                let key = (token.to_string(), u.id);
                let conn = match self.follows.get(&key) {
                    Some(&t) if now - t >= visible => "following",
                    _ if self.pending.contains(&key) => "following_requested",
                    _ => "none",
                };
                json!({"name": u.screen_name, "screen_name": u.screen_name, "id": u.id, "id_str": u.id.to_string(), "connections": [conn]})
            })
            .collect();
        let body = serde_json::Value::Array(out).to_string();
        let answer = self.answer(200, body, Vec::new());
        self.read_reply(answer)
    }
}

enum Route {
    RequestToken,
    AccessToken,
    Me,
    UsersBy,
    /// `POST /2/users/{source}/following`.
    FollowV2(String),
    /// `GET /2/users/{source}/following`.
    FollowingList(String),
    Create,
    Lookup,
    Verify,
}
