//! The X client: OAuth 1.0a signing ([`oauth`]), the requests, and what answers mean ([`classify`]).

pub mod classify;
pub mod oauth;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use reqwest::header::{AUTHORIZATION, DATE, HeaderMap};

use crate::config::{Account, Settings};
use crate::model::TargetKind;
use crate::time::Clock;

/// The bodies kept from an answer are cut to this size: enough to see what went wrong.
const MAX_BODY: usize = 4096;

/// A transport failure: the request may or may not have reached X.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connection: {0}")]
    Connect(String),
    #[error("request: {0}")]
    Other(String),
}

/// An answer from X.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
    /// The server's clock, from the `Date` header (epoch seconds).
    pub date: Option<i64>,
    pub rl_limit: Option<i64>,
    pub rl_remaining: Option<i64>,
    pub rl_reset: Option<i64>,
}

/// The client: one reqwest client shared by all accounts, and the clock offset learned from X.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    consumer_key: String,
    consumer_secret: crate::config::Secret,
    timeout: Duration,
    /// Seconds to add to the local clock when signing (learned from a 401 code 135).
    offset: Arc<AtomicI64>,
    /// The local clock that signatures are stamped from.
    clock: Clock,
}

/// Installs rustls's ring provider once (reqwest is built without a default provider); call it
/// before building any reqwest client.
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Client {
    /// A client for the configured API and app, stamping signatures from the system clock.
    pub fn new(settings: &Settings) -> Result<Client, Error> {
        Client::with_clock(settings, Clock::System)
    }

    /// A client that stamps signatures from `clock` (a test's clock, shared with its sandbox).
    pub fn with_clock(settings: &Settings, clock: Clock) -> Result<Client, Error> {
        install_crypto();
        // No reqwest `.timeout()`: its clock runs on while the process is stopped, so an answer
        // that arrived meanwhile was dropped as a time-out and the follow sent again. `send`
        // bounds each request with [`within_running_time`] instead.
        let mut builder = reqwest::Client::builder();
        if settings.api.base_url.starts_with("http://") {
            // Plain http goes to the loopback sandbox only: never through an `http_proxy`,
            // which would carry signed requests off the machine in clear text.
            builder = builder.no_proxy();
        }
        let http = builder
            .connect_timeout(settings.api.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("followq/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| Error::Other(e.to_string()))?;
        Ok(Client {
            http,
            base_url: settings.api.base_url.clone(),
            consumer_key: settings.app.consumer_key.clone(),
            consumer_secret: settings.app.consumer_secret.clone(),
            timeout: settings.api.timeout,
            offset: Arc::new(AtomicI64::new(0)),
            clock,
        })
    }

    /// The clock offset in seconds currently applied to signatures.
    pub fn clock_offset(&self) -> i64 {
        self.offset.load(Ordering::Relaxed)
    }

    /// Adopts the server's clock from a `Date` header (after a 401 code 135) that came back when
    /// the local clock said `local_ms`.
    pub fn correct_clock(&self, server_epoch_secs: i64, local_ms: i64) {
        self.offset.store(server_epoch_secs - local_ms.div_euclid(1000), Ordering::Relaxed);
    }

    fn timestamp(&self) -> u64 {
        let local = self.clock.now_ms().div_euclid(1000);
        (local + self.clock_offset()).max(1) as u64
    }

    /// POST friendships/create for one target.
    pub async fn follow(
        &self,
        account: &Account,
        kind: TargetKind,
        target: &str,
        notify: bool,
    ) -> Result<Response, Error> {
        let mut params = vec![(kind.as_str(), target)];
        if notify {
            params.push(("follow", "true"));
        }
        self.send("POST", "/1.1/friendships/create.json", &params, account).await
    }

    /// GET friendships/lookup for up to 100 targets of one kind.
    pub async fn lookup(&self, account: &Account, kind: TargetKind, targets: &[String]) -> Result<Response, Error> {
        let joined = targets.join(",");
        self.send("GET", "/1.1/friendships/lookup.json", &[(kind.as_str(), &joined)], account).await
    }

    /// GET account/verify_credentials: does X accept this account's token?
    pub async fn verify_credentials(&self, account: &Account) -> Result<Response, Error> {
        self.send("GET", "/1.1/account/verify_credentials.json", &[("skip_status", "true")], account).await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        account: &Account,
    ) -> Result<Response, Error> {
        within_running_time(self.timeout, self.send_unbounded(method, path, params, account))
            .await
            .unwrap_or(Err(Error::Timeout(self.timeout)))
    }

    async fn send_unbounded(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        account: &Account,
    ) -> Result<Response, Error> {
        let url = format!("{}{}", self.base_url, path);
        let keys = oauth::Keys {
            consumer_key: &self.consumer_key,
            consumer_secret: self.consumer_secret.expose(),
            token: &account.token,
            token_secret: account.token_secret.expose(),
        };
        let auth = oauth::authorization(method, &url, params, keys, self.timestamp(), None);
        // The parameters go in the query string, encoded exactly as they were signed.
        let full = format!("{url}?{}", oauth::query_string(params));
        let req = match method {
            "POST" => self.http.post(full),
            _ => self.http.get(full),
        };
        let resp = req.header(AUTHORIZATION, auth).send().await.map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        let mut body = String::from_utf8_lossy(&bytes).into_owned();
        if body.len() > MAX_BODY {
            let mut cut = MAX_BODY;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
        }
        Ok(Response {
            status,
            body,
            date: header_date(&headers),
            rl_limit: header_i64(&headers, "x-rate-limit-limit"),
            rl_remaining: header_i64(&headers, "x-rate-limit-remaining"),
            rl_reset: header_i64(&headers, "x-rate-limit-reset"),
        })
    }

    fn transport(&self, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            Error::Timeout(self.timeout)
        } else if e.is_connect() {
            Error::Connect(e.to_string())
        } else {
            // reqwest's error text has no secrets: the URL holds only the target parameters.
            Error::Other(format!("{e}"))
        }
    }
}

/// How often [`within_running_time`] counts the time that passed, at most: a quarter of its
/// limit when that is shorter, so a short time-out is kept to within a quarter.
const TICK: Duration = Duration::from_millis(250);

/// `fut`'s output, or `None` once it has been pending for `limit` of time this process was
/// running. A time-out counted on the wall clock fires the moment a stopped process
/// (SIGSTOP, Ctrl-Z, a debugger) resumes, before the answer that reached its socket meanwhile is
/// read: the request is taken as lost and sent again. Here time is counted in ticks, and a gap
/// between two ticks longer than two of them (the process was not running) does not count, so
/// after a stop the answer has at least a tick's time to be read: a stop never times a request
/// out.
pub async fn within_running_time<F: std::future::Future>(limit: Duration, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut last = tokio::time::Instant::now();
    let tick = TICK.min(limit / 4).max(Duration::from_millis(1));
    // The first tick a whole tick from now: an interval's immediate first tick would still wait
    // for the timer wheel's next turn (a millisecond), on every request.
    let mut ticks = tokio::time::interval_at(last + tick, tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut counted = Duration::ZERO;
    loop {
        tokio::select! {
            biased;
            out = &mut fut => return Some(out),
            _ = ticks.tick() => {
                let now = tokio::time::Instant::now();
                let gap = now - last;
                last = now;
                if gap <= 2 * tick {
                    counted += gap;
                    if counted >= limit {
                        return None;
                    }
                }
            }
        }
    }
}

fn header_i64(h: &HeaderMap, name: &str) -> Option<i64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn header_date(h: &HeaderMap) -> Option<i64> {
    let t = httpdate::parse_http_date(h.get(DATE)?.to_str().ok()?).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stall of the whole runtime stands in for SIGSTOP: the answer arrives (on another
    /// thread) while nothing runs, and is read after, not taken for a time-out.
    #[test]
    fn an_answer_that_arrived_while_the_process_was_stopped_is_used() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let (relay_tx, relay_rx) = tokio::sync::oneshot::channel();
            // As hyper does: a connection task reads the socket and, some polls later, hands the
            // answer on.
            tokio::spawn(async move {
                let answer = rx.await.unwrap();
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                let _ = relay_tx.send(answer);
            });
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                tx.send("answer").unwrap();
            });
            let guarded = tokio::spawn(within_running_time(Duration::from_millis(600), relay_rx));
            tokio::task::yield_now().await;
            // "Stopped" for longer than the time-out; the answer came in meanwhile.
            std::thread::sleep(Duration::from_millis(1500));
            assert_eq!(guarded.await.unwrap().map(Result::unwrap), Some("answer"));
        });
    }

    #[tokio::test]
    async fn a_request_that_never_answers_times_out_after_its_running_time() {
        let started = std::time::Instant::now();
        let out = within_running_time(Duration::from_millis(600), std::future::pending::<()>()).await;
        assert!(out.is_none());
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(600) && took < Duration::from_secs(5), "{took:?}");
    }

    /// Defect (found from the outside): time was counted in quarter-second ticks whatever the
    /// limit, so a 100 ms time-out fired after 250 ms.
    #[tokio::test]
    async fn a_short_time_out_is_kept_to_within_a_quarter_of_it() {
        let started = std::time::Instant::now();
        let out = within_running_time(Duration::from_millis(100), std::future::pending::<()>()).await;
        assert!(out.is_none());
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(100) && took < Duration::from_millis(240), "{took:?}");
    }
}
