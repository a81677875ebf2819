//! The sandbox's OAuth 1.0a PIN flow, strict where X is: a request token is signed with the
//! consumer secret alone and asks for `oob`; it is approved once (at `/oauth/authorize`, or
//! `/_sandbox/authorize` for tests), which gives its PIN; `oauth/access_token` must be signed
//! with the request token's secret and carry that PIN, and spends the request token whatever
//! it answers. The access token it gives is known to the sandbox from then on.

use rand::Rng;
use rand::distr::Alphanumeric;

use super::{Reply, World, error_body, user_for_name};

/// How long a request token may wait for its approval and PIN.
pub const REQUEST_TOKEN_TTL_MS: i64 = 15 * 60 * 1000;

/// A request token waiting for its access token.
pub(super) struct Pending {
    secret: String,
    consumer_key: String,
    issued_at: i64,
    /// The PIN and the account that approved, once approved.
    approved: Option<(String, String)>,
}

/// Why a request token cannot be approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotApproved {
    /// Unknown, spent, or expired.
    Invalid,
    /// Approved before: a request token is approved once.
    AlreadyApproved,
    /// The name is not one a user could have.
    BadName,
}

impl World {
    /// `POST oauth/request_token`: `consumer_key` signed with its secret alone.
    pub(super) fn request_token(&mut self, consumer_key: &str, callback: Option<&str>) -> Reply {
        if callback != Some("oob") {
            // X's code 417: "Desktop applications only support the oauth_callback value 'oob'".
            self.stats.oauth_refused += 1;
            let body = error_body(417, "Desktop applications only support the oauth_callback value 'oob'");
            return Reply::Answer(self.answer(401, body, Vec::new()));
        }
        let now = self.now_ms();
        self.request_tokens.retain(|_, p| now - p.issued_at < REQUEST_TOKEN_TTL_MS);
        let token = random_text(42);
        let secret = random_text(40);
        self.request_tokens.insert(
            token.clone(),
            Pending { secret: secret.clone(), consumer_key: consumer_key.to_string(), issued_at: now, approved: None },
        );
        self.stats.request_tokens += 1;
        let body =
            form(&[("oauth_token", &token), ("oauth_token_secret", &secret), ("oauth_callback_confirmed", "true")]);
        Reply::Answer(self.answer(200, body, vec![("content-type", "text/html; charset=utf-8".into())]))
    }

    /// True while a request token can still be approved (the page shows its form).
    pub fn approvable(&self, token: &str) -> bool {
        self.request_tokens
            .get(token)
            .is_some_and(|p| p.approved.is_none() && self.now_ms() - p.issued_at < REQUEST_TOKEN_TTL_MS)
    }

    /// The consumer key and secret of a live request token, to check a signature with.
    pub(super) fn request_token_secret(&self, token: &str) -> Option<(String, String)> {
        let p = self.request_tokens.get(token)?;
        (self.now_ms() - p.issued_at < REQUEST_TOKEN_TTL_MS).then(|| (p.consumer_key.clone(), p.secret.clone()))
    }

    /// The account `screen_name` approves the app: the PIN it is shown.
    pub fn approve(&mut self, token: &str, screen_name: &str) -> Result<String, NotApproved> {
        let valid_name = !screen_name.is_empty()
            && screen_name.len() <= 15
            && screen_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let now = self.now_ms();
        let pin = format!("{:07}", rand::rng().random_range(0..10_000_000u32));
        let p = self.request_tokens.get_mut(token).filter(|p| now - p.issued_at < REQUEST_TOKEN_TTL_MS);
        let Some(p) = p else { return Err(NotApproved::Invalid) };
        if p.approved.is_some() {
            return Err(NotApproved::AlreadyApproved);
        }
        if !valid_name {
            return Err(NotApproved::BadName);
        }
        p.approved = Some((pin.clone(), screen_name.to_string()));
        Ok(pin)
    }

    /// `POST oauth/access_token`, its signature already checked against the request token.
    pub(super) fn access_token(&mut self, token: &str, verifier: Option<&str>) -> Reply {
        // Spent by this request, whatever it answers.
        let pending = self.request_tokens.remove(token);
        let approved = pending.and_then(|p| p.approved);
        let Some((_, screen_name)) = approved.filter(|(pin, _)| verifier == Some(pin.as_str())) else {
            self.stats.oauth_refused += 1;
            // X answers these in plain text.
            let body = "Error processing your OAuth request: Invalid oauth_verifier parameter".to_string();
            return Reply::Answer(self.answer(401, body, vec![("content-type", "text/plain; charset=utf-8".into())]));
        };
        let user = user_for_name(&screen_name);
        // As X's: the user's id first; then, the sandbox's own, the name it was approved as, so
        // that a sandbox started again knows the token as the same user (`name_in_token`).
        let access = format!("{}-{}-{}", user.id, screen_name, random_text(40));
        let secret = random_text(45);
        self.config.tokens.insert(access.clone(), (secret.clone(), screen_name.clone()));
        self.stats.access_tokens += 1;
        let id = user.id.to_string();
        let body = form(&[
            ("oauth_token", &access),
            ("oauth_token_secret", &secret),
            ("user_id", &id),
            ("screen_name", &screen_name),
        ]);
        Reply::Answer(self.answer(200, body, vec![("content-type", "text/html; charset=utf-8".into())]))
    }
}

/// Tokens, secrets and PINs from the system's generator: unpredictable, and never the same in
/// two sandboxes (the world's generator is seeded, for faults that replay).
fn random_text(len: usize) -> String {
    rand::rng().sample_iter(Alphanumeric).take(len).map(char::from).collect()
}

/// The name an access token of the sandbox's PIN flow was approved as: `ID-NAME-…` where ID is
/// that name's id.
pub fn name_in_token(token: &str) -> Option<String> {
    let mut parts = token.splitn(3, '-');
    let (id, name) = (parts.next()?.parse::<u64>().ok()?, parts.next()?);
    (parts.next().is_some() && user_for_name(name).id == id).then(|| name.to_string())
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// The page `GET /oauth/authorize` shows: a form for the account's name, then its PIN.
pub fn authorize_page(token: &str, outcome: Option<Result<(String, String), NotApproved>>) -> (u16, String) {
    let esc = |s: &str| {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
    };
    let (status, inner) = match outcome {
        None => (
            200,
            format!(
                "<p>followq's sandbox: sign in as any name to approve the app.</p>\
                 <form method=\"get\"><input type=\"hidden\" name=\"oauth_token\" value=\"{}\">\
                 <label>Username <input name=\"screen_name\" autofocus></label> <button>Authorize app</button></form>",
                esc(token)
            ),
        ),
        Some(Ok((pin, name))) => (
            200,
            format!(
                "<p>You approved the app as @{}.</p><p>Enter this PIN to complete the authorization:</p>\
                 <p style=\"font-size:2em\"><code>{}</code></p>",
                esc(&name),
                esc(&pin)
            ),
        ),
        Some(Err(NotApproved::BadName)) => (400, "<p>A username is 1-15 of A-Z a-z 0-9 _.</p>".to_string()),
        Some(Err(NotApproved::AlreadyApproved)) => (403, "<p>This request token was approved already.</p>".to_string()),
        Some(Err(NotApproved::Invalid)) => {
            (404, "<p>This page is no longer valid: it has been used or has expired.</p>".to_string())
        }
    };
    (status, format!("<!doctype html><html><head><title>Authorize app</title></head><body>{inner}</body></html>"))
}
