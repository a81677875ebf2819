//! The X client: OAuth 1.0a signing ([`oauth`]), the requests, and what answers mean ([`classify`]).

pub mod classify;
pub mod oauth;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{AUTHORIZATION, DATE, HeaderMap};

use crate::config::{Account, Settings};
use crate::store::TargetKind;

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
    /// A client for the configured API and app.
    pub fn new(settings: &Settings) -> Result<Client, Error> {
        install_crypto();
        let http = reqwest::Client::builder()
            .timeout(settings.api.timeout)
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
        })
    }

    /// The clock offset in seconds currently applied to signatures.
    pub fn clock_offset(&self) -> i64 {
        self.offset.load(Ordering::Relaxed)
    }

    /// Adopts the server's clock from a `Date` header (after a 401 code 135).
    pub fn correct_clock(&self, server_epoch_secs: i64) {
        let local = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        self.offset.store(server_epoch_secs - local, Ordering::Relaxed);
    }

    fn timestamp(&self) -> u64 {
        let local = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
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

fn header_i64(h: &HeaderMap, name: &str) -> Option<i64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn header_date(h: &HeaderMap) -> Option<i64> {
    let t = httpdate::parse_http_date(h.get(DATE)?.to_str().ok()?).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64)
}
