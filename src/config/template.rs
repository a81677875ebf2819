//! The commented `followq.toml` that `followq init` writes.

/// The commented template `followq init` writes.
pub const TEMPLATE: &str = r#"# followq configuration. Every key can also be set from the environment:
# FOLLOWQ_<SECTION>_<KEY>, e.g. FOLLOWQ_LIMITS_PER_USER=300, FOLLOWQ_API_BASE_URL=http://127.0.0.1:8080.
# This file holds secrets: keep it mode 0600 (followq warns otherwise).

[api]
base_url = "https://api.twitter.com"   # the sandbox: http://127.0.0.1:PORT
# "2": POST /2/users/:id/following, what X sells follows on (Enterprise plans) since 2026-04-20.
# "1.1": the legacy friendships/create, for an app that still has it.
version = "2"
timeout = "30s"                        # a request still out after this is retried

[app]                                  # or FOLLOWQ_CONSUMER_KEY / FOLLOWQ_CONSUMER_SECRET
consumer_key = ""
consumer_secret = ""

[limits]
# Rolling windows, each "requests/duration": followq never sends more than that in ANY interval
# of that length, counting every request it sent, across restarts. A profile names X's
# published limits: "v2" (per account 50/15m and 400/24h; per app 1000/24h, the default with
# api.version "2") or "v1.1" (400/24h; 1000/24h). Enterprise plans have custom limits: set
# user and app yourself (that is profile "custom"). Unset, the profile follows api.version.
# profile = "v2"
# user = ["50/15m", "400/24h"]         # per account
# app = ["1000/24h"]                   # for the whole app, every account together
pace = "spread"                        # "spread": evenly over the binding window; "asap": as soon as allowed
margin = "0.5%"                        # added to each window: a share of it, or a duration ("2m")

[retry]                                # transient failures: 5xx, timeouts, dropped connections
max_attempts = 5                       # then the job ends 'failed'; `followq retry` re-queues it
base = "2s"                            # first backoff, doubled each time, with jitter
max = "5m"

[resolve]                              # GET /2/users/by (v2): usernames to ids, 100 a request
per_user = "900/15m"                   # X's published read limits; a restart forgets this pacing,
per_app = "300/15m"                    # which is fine for a read (a 429 only costs a wait)

[verify]                               # follows confirmed against what X shows, not assumed
confirm = true                         # `run` looks for each follow it made, and ends when each is settled
settle = "2m"                          # a follow is looked for once it is this old (X is eventually consistent)
retry_after = "10m"                    # one still not visible this long after is sent again, once;
                                       # still not visible a settle later, it ends 'unconfirmed'
per_user = "15/15m"                    # the read endpoint's published limits (friendships/lookup in
per_app = "15/15m"                     # v1.1, the account's following list in v2), paced in memory

[run]
concurrency = 1                        # requests in flight at once (a crash can leave this many unanswered)

# One block per X account to follow from: `followq accounts add NAME` writes it, through X's
# PIN flow. Tokens may come from FOLLOWQ_<NAME>_TOKEN and FOLLOWQ_<NAME>_TOKEN_SECRET instead
# (NAME in upper case, '-' as '_'), or from a file of their own named at the top of this file
# (`secrets = "followq.secrets.toml"`; `accounts add --secrets-file` writes both).
# [[accounts]]
# name = "alice"
# token = ""
# token_secret = ""
"#;
