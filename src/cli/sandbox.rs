//! `followq sandbox`: the local X API stand-in, for trying followq (and other tools) safely.

use std::collections::HashMap;

use super::{Context, EXIT_OK, UsageError};
use crate::config::Settings;
use crate::sandbox::{self, Config, Sandbox};

/// Run the local X API stand-in (127.0.0.1 only).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port on 127.0.0.1 (0: any free port)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Faults to inject, e.g. "503=0.1,500=0.05,hang=0.02,drop=0.02,429=0.02,seed=42"
    #[arg(long)]
    pub faults: Option<String>,
    /// Answer every follow with a refusal: 453, client-forbidden, 402 or usage-capped
    #[arg(long)]
    pub refuse: Option<String>,
    /// Follows show (friendships/lookup, the following list) only after this long
    #[arg(long, default_value = "0s")]
    pub visible_after: String,
    /// Share of new follows answered 200 and never made (0-1), as X's eventual consistency
    /// at its worst
    #[arg(long, default_value_t = 0.0)]
    pub drop_follows: f64,
}

/// The sandbox's credentials and limits: the followq config's when it has app keys and
/// accounts (so a followq.toml pointed at the sandbox just works), else demo ones.
pub fn config_from(settings: &Settings) -> (Config, bool) {
    let mut c = Config {
        user_windows: settings.limits.user.clone(),
        app_windows: settings.limits.app.clone(),
        lookup_user_window: settings.resolve.per_user,
        lookup_app_window: settings.resolve.per_app,
        read_user_window: settings.verify.per_user,
        read_app_window: settings.verify.per_app,
        ..Config::default()
    };
    // App keys alone are enough: `followq accounts add` gets the accounts' tokens from here.
    let from_config = !settings.app.consumer_key.is_empty();
    if from_config {
        c.consumers.insert(settings.app.consumer_key.clone(), settings.app.consumer_secret.expose().to_string());
        // An account added through the sandbox's PIN flow is the user it was approved as.
        for a in settings.accounts.iter().filter(|a| !a.token.is_empty()) {
            let name = sandbox::name_in_token(&a.token).unwrap_or_else(|| a.name.clone());
            c.tokens.insert(a.token.clone(), (a.token_secret.expose().to_string(), name));
        }
    } else {
        let demo = demo_settings(&["alice", "bob", "carol"]);
        c.consumers.insert(demo.app.consumer_key.clone(), demo.app.consumer_secret.expose().to_string());
        for a in &demo.accounts {
            c.tokens.insert(a.token.clone(), (a.token_secret.expose().to_string(), a.name.clone()));
        }
    }
    (c, from_config)
}

/// Settings with made-up credentials that only the sandbox accepts.
pub fn demo_settings(accounts: &[&str]) -> Settings {
    let mut s = Settings::default();
    s.app.consumer_key = "sandbox-consumer-key".into();
    s.app.consumer_secret = crate::config::Secret::new("sandbox-consumer-secret");
    s.accounts = accounts
        .iter()
        .map(|n| crate::config::Account {
            name: n.to_string(),
            token: format!("{n}-sandbox-token"),
            token_secret: crate::config::Secret::new(format!("{n}-sandbox-token-secret")),
        })
        .collect();
    s
}

/// Runs `sandbox` until Ctrl-C.
pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let (mut config, from_config) = config_from(&ctx.settings);
    if let Some(spec) = &args.faults {
        config.faults = sandbox::parse_faults(spec).map_err(|e| UsageError(format!("--faults: {e}")))?;
    }
    config.visible_after = crate::config::duration("--visible-after", &args.visible_after)?;
    if !(0.0..=1.0).contains(&args.drop_follows) {
        return Err(UsageError(format!("--drop-follows: {} is not between 0 and 1", args.drop_follows)).into());
    }
    config.drop_ratio = args.drop_follows;
    if let Some(r) = &args.refuse {
        config.refuse = Some(sandbox::Refusal::parse(r).map_err(|e| UsageError(format!("--refuse: {e}")))?);
    }
    let sb = Sandbox::start(config, args.port).await?;
    crate::outln!("sandbox listening on {} (loopback only); stats at {}/_sandbox/stats", sb.base_url(), sb.base_url());
    if from_config {
        crate::outln!("credentials: those of {} (point its [api] base_url here)", ctx.config_path.display());
    } else {
        let demo = demo_settings(&["alice", "bob", "carol"]);
        let tokens: HashMap<&str, &str> = demo.accounts.iter().map(|a| (a.name.as_str(), a.token.as_str())).collect();
        crate::outln!(
            "demo credentials (accepted only here): consumer key {} / secret {}",
            demo.app.consumer_key,
            demo.app.consumer_secret.expose()
        );
        for a in &demo.accounts {
            crate::outln!(
                "  account {}: token {} / secret {}",
                a.name,
                tokens[a.name.as_str()],
                a.token_secret.expose()
            );
        }
    }
    tokio::signal::ctrl_c().await?;
    crate::outln!("sandbox stopped: {}", serde_json::to_string(&sb.stats())?);
    Ok(EXIT_OK)
}
