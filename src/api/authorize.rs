//! The PIN ("oob") flow of OAuth 1.0a, by which an account approves the app and the app gets
//! the account's access token: `POST oauth/request_token` (the app alone), the account's
//! approval at `oauth/authorize` (which shows a PIN), `POST oauth/access_token` (the PIN).

use super::{Client, Error, Response, oauth};
use crate::config::Secret;

/// A request token: good for one approval and one `oauth/access_token`, then spent.
pub struct RequestToken {
    pub token: String,
    pub secret: Secret,
}

/// An account's access token, and who X says it belongs to.
pub struct AccessToken {
    pub token: String,
    pub secret: Secret,
    pub user_id: String,
    pub screen_name: String,
}

/// Why a step of the flow did not give its token.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The request may not have reached X.
    #[error("{0}")]
    Transport(#[from] Error),
    /// X answered, but not with a token: the status, X's code and message (printable).
    #[error("HTTP {status}{}: {message}", code.map_or(String::new(), |c| format!(" code {c}")))]
    Refused { status: u16, code: Option<i64>, message: String },
    /// A 200 that is not the token it should be (or a request token X did not confirm for `oob`).
    #[error("{0}")]
    Malformed(String),
}

/// The most of an error's text that is kept: X's OAuth endpoints answer errors in plain text.
const MAX_TEXT: usize = 300;

impl Client {
    /// `POST oauth/request_token` with `oauth_callback=oob`, signed with the consumer secret
    /// alone. X must confirm the callback (`oauth_callback_confirmed=true`).
    pub async fn request_token(&self) -> Result<RequestToken, FlowError> {
        let url = format!("{}/oauth/request_token", self.base_url);
        let step = oauth::Step::RequestToken { callback: "oob" };
        let r = self.post_step(&url, step).await?;
        let fields = form_fields(&r)?;
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str()).unwrap_or("");
        if get("oauth_token").is_empty() || get("oauth_token_secret").is_empty() {
            return Err(FlowError::Malformed("X's answer holds no request token".into()));
        }
        if get("oauth_callback_confirmed") != "true" {
            return Err(FlowError::Malformed("X did not confirm the PIN (oob) callback for the request token".into()));
        }
        Ok(RequestToken { token: get("oauth_token").to_string(), secret: Secret::new(get("oauth_token_secret")) })
    }

    /// The page where the account approves the app and is shown its PIN.
    pub fn authorize_url(&self, request: &RequestToken) -> String {
        let token = percent_encoding::utf8_percent_encode(&request.token, percent_encoding::NON_ALPHANUMERIC);
        format!("{}/oauth/authorize?oauth_token={token}", self.base_url)
    }

    /// `POST oauth/access_token` with the PIN as `oauth_verifier`, signed with the request
    /// token. The request token is spent whatever the answer.
    pub async fn access_token(&self, request: RequestToken, pin: &str) -> Result<AccessToken, FlowError> {
        let url = format!("{}/oauth/access_token", self.base_url);
        let step = oauth::Step::AccessToken {
            token: &request.token,
            token_secret: request.secret.expose(),
            verifier: pin.trim(),
        };
        let r = self.post_step(&url, step).await?;
        let fields = form_fields(&r)?;
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let (token, secret) = (get("oauth_token"), get("oauth_token_secret"));
        if token.is_empty() || secret.is_empty() {
            return Err(FlowError::Malformed("X's answer holds no access token".into()));
        }
        Ok(AccessToken { token, secret: Secret::new(secret), user_id: get("user_id"), screen_name: get("screen_name") })
    }

    /// One step, sent again once if X refused its timestamp (401 code 135): signed then from
    /// X's clock, as every other request is.
    async fn post_step(&self, url: &str, step: oauth::Step<'_>) -> Result<Response, Error> {
        let mut tries = 0;
        loop {
            tries += 1;
            let sent_at = self.clock.now_ms();
            let auth = oauth::step_authorization(
                url,
                &self.consumer_key,
                self.consumer_secret.expose(),
                step,
                self.timestamp(),
                None,
            );
            let fut = self.exchange(self.http.post(url).header(reqwest::header::AUTHORIZATION, auth));
            let r = super::within_running_time(self.timeout, fut).await.unwrap_or(Err(Error::Timeout(self.timeout)))?;
            match r.date {
                Some(date)
                    if tries == 1 && r.status == 401 && super::classify::parse_error(&r.body).code == Some(135) =>
                {
                    self.correct_clock(date, sent_at);
                }
                _ => return Ok(r),
            }
        }
    }
}

/// The form-encoded fields of a 200, or what X said instead.
fn form_fields(r: &Response) -> Result<Vec<(String, String)>, FlowError> {
    if r.status != 200 {
        let e = super::classify::parse_error(&r.body);
        let message = if e.recognised { e.message } else { super::truncated(r.body.trim(), MAX_TEXT).to_string() };
        return Err(FlowError::Refused {
            status: r.status,
            code: e.code,
            message: crate::text::printable(&message).into_owned(),
        });
    }
    Ok(url::form_urlencoded::parse(r.body.trim().as_bytes()).into_owned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Response {
        Response { status: 200, body: body.into(), date: None, rl_limit: None, rl_remaining: None, rl_reset: None }
    }

    #[test]
    fn reads_the_documented_answers_and_x_s_plain_text_errors() {
        let r = ok(
            "oauth_token=Z6eEdO8MOmk394WozF5oKyuAv855l4Mlqo7hhlSLik&oauth_token_secret=Kd75W4OQfb2oJTV0vzGzeXftVAwgMnEK9MumzYcM&oauth_callback_confirmed=true",
        );
        let f = form_fields(&r).unwrap();
        assert_eq!(f[0], ("oauth_token".into(), "Z6eEdO8MOmk394WozF5oKyuAv855l4Mlqo7hhlSLik".into()));
        assert_eq!(f[2], ("oauth_callback_confirmed".into(), "true".into()));
        let refused = Response { status: 401, body: "Invalid request token.\u{1b}[2J".into(), ..ok("") };
        let e = form_fields(&refused).unwrap_err().to_string();
        assert_eq!(e, "HTTP 401: Invalid request token.\\u{1b}[2J", "X's text, escaped");
        let json =
            Response { body: r#"{"errors":[{"code":32,"message":"Could not authenticate you."}]}"#.into(), ..refused };
        assert_eq!(form_fields(&json).unwrap_err().to_string(), "HTTP 401 code 32: Could not authenticate you.");
    }
}
