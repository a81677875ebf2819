//! The commented `followq.toml` that `followq init` writes.

/// The commented template `followq init` writes.
pub const TEMPLATE: &str = r#"# followq configuration. Every key can also be set from the environment:
# FOLLOWQ_<SECTION>_<KEY>, e.g. FOLLOWQ_LIMITS_PER_USER=300, FOLLOWQ_API_BASE_URL=http://127.0.0.1:8080.
# This file holds secrets: keep it mode 0600 (followq warns otherwise).

[api]
base_url = "https://api.twitter.com"   # the sandbox: http://127.0.0.1:PORT
timeout = "30s"                        # a request still out after this is retried

[app]                                  # or FOLLOWQ_CONSUMER_KEY / FOLLOWQ_CONSUMER_SECRET
consumer_key = ""
consumer_secret = ""

[limits]
# X: 400 follows per user and 1000 per app in a 24-hour window. followq never exceeds these in ANY
# 24-hour interval, counting every request it sent, across restarts.
per_user = 400
per_app = 1000
window = "24h"                         # any duration: "15m", "24s"
pace = "spread"                        # "spread": evenly over the window; "asap": as soon as allowed
margin = "0.5%"                        # added to the window: a share of it, or a duration ("2m")

[retry]                                # transient failures: 5xx, timeouts, dropped connections
max_attempts = 5                       # then the job ends 'failed'; `followq retry` re-queues it
base = "2s"                            # first backoff, doubled each time, with jitter
max = "5m"

[run]
concurrency = 1                        # requests in flight at once (a crash can leave this many unanswered)

# One block per X account to follow from. Tokens may come from FOLLOWQ_<NAME>_TOKEN and
# FOLLOWQ_<NAME>_TOKEN_SECRET instead (NAME in upper case, '-' as '_').
# [[accounts]]
# name = "alice"
# token = ""
# token_secret = ""
"#;
