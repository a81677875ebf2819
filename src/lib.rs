//! followq: follow long lists of X accounts within the API's limits, from a persistent SQLite
//! queue, recorded so that a crash, a lost response or a flaky API never loses or double-counts a
//! follow. The modules follow the pipeline — input, queue and ledger, scheduler, client, display:
//!
//! - [`model`]: the domain's types — how a target is named, a job to queue, an import's counts.
//! - [`time`]: now, durations and local times.
//! - [`config`]: settings — defaults, `followq.toml`, environment, flags — validated once.
//! - [`store`]: the only place with SQL — jobs (the queue), attempts (the ledger), imports, accounts.
//! - [`ingest`]: CSV, X archive and inbox readers → validated targets → batched inserts.
//! - [`api`]: the X client — OAuth 1.0a signing, requests, outcome classification.
//! - [`resolve`]: screen names to ids (v2), paced with governor.
//! - [`schedule`]: when may the next request go — pacing, ledger budgets, pauses. Pure.
//! - [`worker`]: claim → send → record, two-phase, with the shutdown signal.
//! - [`logging`]: log flags and set-up; the writer that does not tear the bars.
//! - [`progress`]: the terminal's bars (drawing only).
//! - [`sandbox`]: the strict local stand-in for the X API.
//! - [`text`]: text for people, with control characters escaped.
//! - [`cli`]: one module per subcommand.

pub mod api;
pub mod cli;
pub mod config;
pub mod confirm;
pub mod ingest;
pub mod logging;
pub mod model;
pub mod progress;
pub mod reads;
pub mod resolve;
pub mod sandbox;
pub mod schedule;
pub mod store;
pub mod text;
pub mod time;
pub mod worker;
