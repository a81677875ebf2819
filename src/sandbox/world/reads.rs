//! What the sandbox lets an account read back about its follows — v1.1 `friendships/lookup` and
//! v2 `GET /2/users/:id/following` — each endpoint held to its own windows, per account and for
//! the app (a request into a full one is a violation, answered 429), and what it shows: only
//! follows older than `visible_after`, never one it dropped.

use serde_json::json;

use super::{Reply, World, user_for_id};

/// The most users a page of the following list holds (X's `max_results` bound).
const MAX_PAGE: usize = 1000;

impl World {
    /// Counts a read of `endpoint` by `token` at `now` against that endpoint's windows; the
    /// 429 to answer when one was full already (v2's problem body or v1.1's code 88).
    pub(super) fn read_gate(&mut self, endpoint: &'static str, token: &str, now: i64, v2: bool) -> Result<(), Reply> {
        *self.stats.reads.entry(endpoint.to_string()).or_default() += 1;
        let (uw, aw) = (self.config.read_user_window, self.config.read_app_window);
        let grace = self.config.grace.as_millis() as i64;
        let (u_ms, a_ms) = (uw.length.as_millis() as i64, aw.length.as_millis() as i64);
        let mine = self.read_windows.entry((endpoint, token.to_string())).or_default();
        let user_full = mine.count(now, u_ms, grace) >= uw.limit as usize;
        let frees_user = mine.frees_at(uw.limit, u_ms);
        let app = self.read_app.entry(endpoint).or_default();
        let app_full = app.count(now, a_ms, grace) >= aw.limit as usize;
        let frees_app = app.frees_at(aw.limit, a_ms);
        if !user_full && !app_full {
            return Ok(());
        }
        self.stats.read_violations += 1;
        let (limit, frees) = if user_full { (uw.limit, frees_user) } else { (aw.limit, frees_app) };
        let headers = vec![
            ("x-rate-limit-limit", limit.to_string()),
            ("x-rate-limit-remaining", "0".to_string()),
            ("x-rate-limit-reset", ((frees + 999) / 1000).to_string()),
        ];
        let body = if v2 {
            json!({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429})
                .to_string()
        } else {
            super::error_body(88, "Rate limit exceeded.")
        };
        Err(Reply::Answer(self.answer(429, body, headers)))
    }

    /// The ids `token`'s account follows and that show by `now` (its pending requests never
    /// do), the latest first, as X lists them.
    fn visible_follows(&self, token: &str, now: i64) -> Vec<u64> {
        let visible = self.config.visible_after.as_millis() as i64;
        let mut mine: Vec<(i64, u64)> = self
            .follows
            .iter()
            .filter(|((t, _), at)| t == token && now - **at >= visible)
            .map(|((_, id), at)| (*at, *id))
            .collect();
        mine.sort_by(|a, b| b.cmp(a));
        mine.into_iter().map(|(_, id)| id).collect()
    }

    /// `GET /2/users/:id/following`: a page of the account's visible follows, `max_results`
    /// (1-1000, default 100) at a time, paged with `pagination_token` (`meta.next_token`).
    pub(super) fn following_list(&mut self, token: &str, source: &str, params: &[(String, String)]) -> Reply {
        let now = self.now_ms();
        if let Err(reply) = self.read_gate("following", token, now, true) {
            return reply;
        }
        let me = super::user_for_name(&self.account_name(token)).id.to_string();
        if source != me {
            let detail = format!("Sorry, you are not authorized to see the following of user id {source}.");
            let body = json!({"title": "Forbidden", "type": "about:blank", "status": 403, "detail": detail});
            return Reply::Answer(self.answer(403, body.to_string(), Vec::new()));
        }
        let get = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str());
        let max = match get("max_results").map(str::parse::<usize>) {
            None => 100,
            Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
            Some(_) => {
                return self.invalid_request("The `max_results` query parameter value is not between 1 and 1000");
            }
        };
        let offset = match get("pagination_token") {
            None => 0,
            Some(t) => match decode_page(t) {
                Some(o) => o,
                None => return self.invalid_request("The `pagination_token` query parameter value is not valid"),
            },
        };
        let all = self.visible_follows(token, now);
        let page: Vec<serde_json::Value> = all
            .iter()
            .skip(offset)
            .take(max)
            .map(|&id| {
                let name = self.names.get(&id).cloned().unwrap_or_else(|| user_for_id(id).screen_name);
                json!({"id": id.to_string(), "name": name, "username": name})
            })
            .collect();
        self.stats.following_pages += 1;
        if offset > 0 {
            self.stats.following_later_pages += 1;
        }
        let mut meta = json!({"result_count": page.len()});
        if offset + page.len() < all.len() {
            meta["next_token"] = json!(encode_page(offset + page.len()));
        }
        if offset > 0 {
            meta["previous_token"] = json!(encode_page(offset.saturating_sub(max)));
        }
        let body = if page.is_empty() { json!({"meta": meta}) } else { json!({"data": page, "meta": meta}) };
        let answer = self.answer(200, body.to_string(), Vec::new());
        self.read_reply(answer)
    }

    fn invalid_request(&mut self, message: &str) -> Reply {
        let body = json!({"errors": [{"message": message}], "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request"});
        Reply::Answer(self.answer(400, body.to_string(), Vec::new()))
    }

    /// The ids this account follows in the sandbox's own books, shown yet or not (pending
    /// requests and dropped follows are not follows).
    pub fn follows_of(&self, account: &str) -> Vec<u64> {
        let mut ids: Vec<u64> =
            self.follows.keys().filter(|(t, _)| self.account_name(t) == account).map(|(_, id)| *id).collect();
        ids.sort_unstable();
        ids
    }

    /// Whether to drop this new follow silently (answered 200, never made): at the configured
    /// share, and a pair at most once.
    pub(super) fn drops(&mut self, token: &str, id: u64) -> bool {
        let ratio = self.config.drop_ratio;
        if ratio <= 0.0 || self.dropped.contains(&(token.to_string(), id)) {
            return false;
        }
        if !rand::Rng::random_bool(&mut self.rng, ratio.min(1.0)) {
            return false;
        }
        self.dropped.insert((token.to_string(), id));
        self.stats.dropped_follows += 1;
        true
    }
}

/// A page's offset as a token X's way: base32hex-looking, at least 16 characters.
fn encode_page(offset: usize) -> String {
    format!("{offset:016X}")
}

fn decode_page(token: &str) -> Option<usize> {
    (token.len() == 16).then(|| usize::from_str_radix(token, 16).ok()).flatten()
}
