//! The sandbox's API v2: `POST /2/users/:id/following`, `GET /2/users/by`, the refusals an app
//! that may not follow meets, and the `x-rate-limit-*` headers of a v2 follow.

use serde_json::json;

use super::super::Refusal;
use super::{Reply, User, World, error_body, user_for_id, user_for_name};

impl World {
    /// A v2 follow: the source must be the token's own user; the target by id, in a JSON body.
    pub(super) fn create_v2(&mut self, token: &str, source: &str, body: &str) -> Reply {
        let now = self.now_ms();
        if let Err(reply) = self.gate(token, now, true) {
            return reply;
        }
        let me = user_for_name(&self.account_name(token)).id.to_string();
        if source != me {
            let detail = format!("You are not permitted to perform this action for user id {source}.");
            let body = json!({"title": "Forbidden", "type": "about:blank", "status": 403, "detail": detail});
            return Reply::Answer(self.answer(403, body.to_string(), Vec::new()));
        }
        let target = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("target_user_id").and_then(|t| t.as_str()).map(str::to_string));
        let Some(id) = target.and_then(|t| t.parse::<u64>().ok()).filter(|&id| id > 0) else {
            let body = json!({"errors": [{"message": "$.target_user_id: is missing but it is required"}],
                              "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
                              "type": "https://api.twitter.com/2/problems/invalid-request"});
            return Reply::Answer(self.answer(400, body.to_string(), Vec::new()));
        };
        let fault = self.roll_fault();
        if let Some(reply) = self.fault_reply(fault, now) {
            return reply;
        }
        let headers = self.short_window_headers(token, now);
        let reply = self.follow_v2(token, id, headers, now);
        self.hang_if(fault, reply)
    }

    /// How X refuses an app that may not follow, as the reference's captured bodies have it.
    pub(super) fn refusal(&mut self, r: Refusal) -> Reply {
        let (status, body) = match r {
            Refusal::Code453 => (403, error_body(453, "You currently have access to a subset of X API V2 endpoints and limited v1.1 endpoints (e.g. media post, oauth) only. If you need access to this endpoint, you may need a different access level. You can learn more here: https://developer.x.com/en/portal/product")),
            Refusal::ClientForbidden => (403, json!({
                "client_id": "sandbox", "title": "Client Forbidden", "reason": "client-not-enrolled",
                "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens from a Twitter developer App that is attached to a Project. You can create a project via the developer portal.",
                "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
                "required_enrollment": "Appropriate Level of API Access",
                "type": "https://api.twitter.com/2/problems/client-forbidden"}).to_string()),
            Refusal::Credits => (402, json!({
                "account_id": 123, "title": "CreditsDepleted",
                "detail": "Your enrolled account [123] does not have any credits.",
                "type": "https://api.twitter.com/2/problems/credits"}).to_string()),
            Refusal::UsageCapped => (429, json!({
                "title": "Usage Capped", "detail": "Usage cap exceeded: Monthly product cap",
                "type": "https://api.x.com/2/problems/usage-capped"}).to_string()),
        };
        Reply::Answer(self.answer(status, body, Vec::new()))
    }

    /// `x-rate-limit-*` of the account's shortest window after this request (v2 sends them).
    fn short_window_headers(&self, token: &str, now: i64) -> Vec<(&'static str, String)> {
        let Some((i, w)) = self.config.user_windows.iter().enumerate().min_by_key(|(_, w)| w.length) else {
            return Vec::new();
        };
        let Some(r) = self.user_windows.get(token).and_then(|rs| rs.get(i)) else { return Vec::new() };
        let ms = w.length.as_millis() as i64;
        let used = r.used(now, ms);
        let remaining = (w.limit as usize).saturating_sub(used);
        let reset = (r.frees_at(w.limit.min(used as u32).max(1), ms).max(now) + 999) / 1000;
        vec![
            ("x-rate-limit-limit", w.limit.to_string()),
            ("x-rate-limit-remaining", remaining.to_string()),
            ("x-rate-limit-reset", reset.to_string()),
        ]
    }

    /// A v2 follow of the user with this id, answered as X does.
    fn follow_v2(&mut self, token: &str, id: u64, headers: Vec<(&'static str, String)>, now: i64) -> Reply {
        let user = match self.names.get(&id) {
            Some(name) => User { id, screen_name: name.clone() },
            None => user_for_id(id),
        };
        let lower = user.screen_name.to_ascii_lowercase();
        let problem = |kind: &str, title: &str, detail: String| json!({"type": format!("https://api.x.com/2/problems/{kind}"), "title": title, "detail": detail});
        if lower.starts_with("x_") || lower.starts_with("s_") {
            self.stats.follows_of_unknown += 1;
        }
        if lower.starts_with("x_") {
            let body = json!({"errors": [{"parameter": "target_user_id", "resource_id": id.to_string(), "value": id.to_string(),
                "detail": format!("Could not find user with target_user_id: [{id}]."), "title": "Not Found Error",
                "resource_type": "user", "type": "https://api.twitter.com/2/problems/resource-not-found"}]});
            return Reply::Answer(self.answer(400, body.to_string(), headers));
        }
        if lower.starts_with("s_") {
            let body = problem("resource-unavailable", "Forbidden", format!("User has been suspended: [{id}]."));
            return Reply::Answer(self.answer(403, body.to_string(), headers));
        }
        if lower.starts_with("b_") {
            let body = problem(
                "not-authorized-for-resource",
                "Forbidden",
                "You cannot follow an account that has blocked you.".into(),
            );
            return Reply::Answer(self.answer(403, body.to_string(), headers));
        }
        let key = (token.to_string(), id);
        let protected = lower.starts_with("p_");
        let already = if protected { !self.pending.insert(key.clone()) } else { self.follows.contains_key(&key) };
        if already {
            self.stats.duplicate_creates += 1;
        } else if !protected && !self.drops(token, id) {
            self.follows.insert(key, now);
        }
        let body = json!({"data": {"following": !protected, "pending_follow": protected}}).to_string();
        Reply::Answer(self.answer(200, body, headers))
    }

    /// `GET /2/users/by`: ids for names, errors for names X does not know or has suspended.
    pub(super) fn users_by(&mut self, token: &str, params: &[(String, String)]) -> Reply {
        let now = self.now_ms();
        self.stats.lookups += 1;
        let (uw, aw) = (self.config.lookup_user_window, self.config.lookup_app_window);
        let grace = self.config.grace.as_millis() as i64;
        let mine = self.lookup_windows.entry(token.to_string()).or_default();
        let user_full = mine.count(now, uw.length.as_millis() as i64, grace) >= uw.limit as usize;
        let frees_user = mine.frees_at(uw.limit, uw.length.as_millis() as i64);
        let app_full = self.lookup_app.count(now, aw.length.as_millis() as i64, grace) >= aw.limit as usize;
        if user_full || app_full {
            self.stats.lookup_violations += 1;
            let (limit, frees) = if user_full {
                (uw.limit, frees_user)
            } else {
                (aw.limit, self.lookup_app.frees_at(aw.limit, aw.length.as_millis() as i64))
            };
            let headers = vec![
                ("x-rate-limit-limit", limit.to_string()),
                ("x-rate-limit-remaining", "0".to_string()),
                ("x-rate-limit-reset", ((frees + 999) / 1000).to_string()),
            ];
            let body = json!({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429});
            return Reply::Answer(self.answer(429, body.to_string(), headers));
        }
        let names: Vec<String> = params
            .iter()
            .find(|(k, _)| k == "usernames")
            .map(|(_, v)| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        if names.is_empty() || names.len() > 100 {
            let body = json!({"errors": [{"parameters": {"usernames": [names.join(",")]},
                "message": "The number of values in the `usernames` query parameter list [1,100] is not between 1 and 100"}],
                "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
                "type": "https://api.twitter.com/2/problems/invalid-request"});
            return Reply::Answer(self.answer(400, body.to_string(), Vec::new()));
        }
        self.stats.lookup_most_names = self.stats.lookup_most_names.max(names.len() as u64);
        let (mut data, mut errors) = (Vec::new(), Vec::new());
        for name in &names {
            if !self.asked.insert(name.to_ascii_lowercase()) {
                self.stats.names_asked_again += 1;
            }
            let user = user_for_name(name);
            // Every name's id, so that a follow by the id of a name X does not know is caught.
            self.names.insert(user.id, name.clone());
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("x_") {
                errors.push(json!({"value": name, "detail": format!("Could not find user with usernames: [{name}]."),
                    "title": "Not Found Error", "resource_type": "user", "parameter": "usernames",
                    "resource_id": name, "type": "https://api.twitter.com/2/problems/resource-not-found"}));
            } else if lower.starts_with("s_") {
                errors.push(json!({"value": name, "detail": format!("User has been suspended: [{name}]."),
                    "title": "Forbidden", "resource_type": "user", "parameter": "usernames",
                    "resource_id": name, "type": "https://api.x.com/2/problems/resource-not-found"}));
            } else {
                data.push(json!({"id": user.id.to_string(), "name": name, "username": name, "protected": lower.starts_with("p_")}));
            }
        }
        let mut body = serde_json::Map::new();
        if !data.is_empty() {
            body.insert("data".into(), data.into());
        }
        if !errors.is_empty() {
            body.insert("errors".into(), errors.into());
        }
        Reply::Answer(self.answer(200, serde_json::Value::Object(body).to_string(), Vec::new()))
    }
}
