//! `mailflow-exporter serve`: the long-running exporter Prometheus scrapes.

use crate::agent::clock::SystemClock;
use crate::agent::store::{Store, StoreError};
use crate::agent::{Agent, AgentOptions, LoadError};
use crate::config::Shard;
use crate::web::{self, HttpOptions, ListenError, WebFace};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Default port: outside 9100-9999 (fully allocated to other exporters) and away from the
/// mail-filter ports 10024/10025.
pub const DEFAULT_LISTEN: &str = ":10325";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Configuration file (YAML, see README).
    #[arg(long = "config.file", value_name = "FILE")]
    pub config_file: PathBuf,
    /// Address to listen on for HTTP (`:PORT` = all interfaces).
    #[arg(long = "web.listen-address", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    #[arg(long = "log.format", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// error, warn, info, debug or trace.
    #[arg(long = "log.level", default_value = "info")]
    pub log_level: String,
    /// Directory for the queue clock state (survives restarts).
    #[arg(long = "storage.path", default_value = "data")]
    pub storage_path: PathBuf,
    /// Allow `/probe?target=HOST` for arbitrary hosts. Off by default: an open prober is a port scanner.
    #[arg(long = "web.enable-adhoc-probes")]
    pub enable_adhoc_probes: bool,
    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", default_value = "/metrics", value_parser = telemetry_path)]
    pub telemetry_path: String,
    /// Check the configuration (and the web config) and exit: 0 valid, 2 not. Nothing is probed.
    #[arg(long = "config.check")]
    pub config_check: bool,
    /// TLS, basic auth and response headers, in the Prometheus exporter-toolkit format.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// Allow `POST /-/reload` (as Prometheus does); otherwise it answers 403. SIGHUP always works.
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,
    /// `/probe?connector=` serves a report younger than this from memory instead of probing the
    /// partner's server again (0s: always probe, still one probe for concurrent requests).
    #[arg(long = "web.probe-max-age", value_parser = super::args::max_age, default_value = "5s")]
    pub probe_max_age: Duration,
    /// Probe only this agent's share of the connectors: INDEX/COUNT (0/2, 1/2), or hostname/COUNT
    /// to take INDEX from a StatefulSet pod's name (`name-N`). Same split as Prometheus' hashmod.
    #[arg(long = "shard", env = "MAILFLOW_SHARD", value_name = "INDEX/COUNT", value_parser = shard)]
    pub shard: Option<Shard>,
    /// How often to look whether the config file changed (then reload it as SIGHUP would);
    /// 0s turns it off.
    #[arg(long = "config.watch-interval", value_parser = super::args::watch_interval, default_value = "10s")]
    pub config_watch_interval: Duration,
    /// Probe nothing on a schedule: only `/probe?connector=` probes, so Prometheus schedules (and
    /// shards with hashmod) as with blackbox_exporter. `/metrics` still shows every result.
    #[arg(long = "probe.on-demand-only")]
    pub on_demand_only: bool,
}

fn shard(s: &str) -> Result<Shard, crate::config::shard::ShardError> {
    Shard::parse(s, || {
        Some(rustix::system::uname().nodename().to_string_lossy().into_owned())
    })
}

/// Failure to start: the message names the file/line/field; the caller exits with 2.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("--web.config.file: {0}")]
    WebConfig(#[from] crate::config::ConfigError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// A path that starts with `/`, without a query, and not one the agent uses for something else.
fn telemetry_path(s: &str) -> Result<String, super::args::ValueError> {
    let bad = |problem: &str| super::args::ValueError {
        value: s.to_string(),
        problem: problem.to_string(),
    };
    if !s.starts_with('/') || s.contains(['?', '#', ' ']) {
        return Err(bad("a path starting with / (no query)"));
    }
    if ["/", "/probe", "/api/status", "/-/healthy", "/-/ready", "/-/reload"].contains(&s) {
        return Err(bad("taken by another endpoint"));
    }
    Ok(s.to_string())
}

/// `--config.check`: everything a start would read, without probing or listening.
pub async fn check_only(args: &ServeArgs) -> ExitCode {
    let path = args.config_file.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let cfg = crate::config::Config::load(&path).map_err(|e| e.to_string())?;
        crate::agent::build_prober(&cfg).map_err(|e| e.to_string())?;
        Ok::<_, String>(cfg)
    })
    .await;
    let cfg = match loaded {
        Ok(Ok(cfg)) => cfg,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(p) = &args.web_config_file
        && let Err(e) = WebFace::load(p.clone()).await
    {
        eprintln!("error: --web.config.file: {e}");
        return ExitCode::from(2);
    }
    println!(
        "{}: ok, {} connector(s), {} enabled{}",
        cfg.source.display(),
        cfg.connectors.len(),
        cfg.connectors.iter().filter(|c| c.enabled).count(),
        if cfg.tenant.is_some() {
            ", tenant configured"
        } else {
            ""
        }
    );
    ExitCode::SUCCESS
}

pub async fn main(args: &ServeArgs) -> ExitCode {
    if args.config_check {
        return check_only(args).await;
    }
    match run(args, None, None).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs until SIGTERM/SIGINT (or `agent.shutdown`). SIGHUP reloads the config.
pub async fn run(
    args: &ServeArgs,
    demo_note: Option<String>,
    max_initial_spread: Option<Duration>,
) -> Result<(), StartError> {
    let web = match &args.web_config_file {
        Some(p) => WebFace::load(p.clone()).await?,
        None => WebFace::none(),
    };
    let store = Store::open(&args.storage_path)?;
    let agent = Agent::new(AgentOptions {
        config_path: args.config_file.clone(),
        storage: Some(store),
        clock: Arc::new(SystemClock),
        max_initial_spread,
        shard: args.shard,
        on_demand_only: args.on_demand_only,
    })
    .await?;
    let listener = web::bind(&args.listen).await?;
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let cfg = agent.config();
    tracing::info!(
        address = %local,
        config = %cfg.source.display(),
        connectors = cfg.connectors.len(),
        enabled = cfg.connectors.iter().filter(|c| c.enabled).count(),
        "mailflow-exporter listening"
    );
    spawn_signal_handlers(agent.clone(), web.clone()).map_err(StartError::Signals)?;
    agent.start();
    if !args.config_watch_interval.is_zero() {
        tokio::spawn(agent.clone().watch_config(args.config_watch_interval));
    }
    web::serve(
        listener,
        agent.clone(),
        HttpOptions {
            enable_adhoc_probes: args.enable_adhoc_probes,
            enable_lifecycle: args.enable_lifecycle,
            probe_max_age: args.probe_max_age,
            telemetry_path: args.telemetry_path.clone(),
            demo_note,
            web,
        },
    )
    .await;
    agent.stop();
    tracing::info!("stopped");
    Ok(())
}

/// Installs the handlers before returning, so a signal that arrives once the listener answers
/// is never met by the default action (which would end the process).
fn spawn_signal_handlers(agent: Arc<Agent>, web: Arc<WebFace>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let a = agent.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // In a task of its own: whatever happens in one reload, the next SIGHUP is served.
            let agent = a.clone();
            let web = web.clone();
            let reload = async move {
                let _ = web.reload().await;
                agent.reload().await
            };
            if let Err(e) = tokio::spawn(reload).await {
                tracing::error!(error = %e, "config reload crashed; keeping the running config");
            }
        }
    });
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = agent.shutdown.cancelled() => return,
        }
        tracing::info!("shutting down");
        agent.stop();
    });
    Ok(())
}

/// A logging setup that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("--log.level {level:?}: {detail}")]
    Level { level: String, detail: String },
    #[error("cannot install the logger: {0}")]
    Install(String),
}

/// Logging to stderr; server text in fields is escaped by the probe before it gets here.
pub fn init_logging(format: LogFormat, level: &str) -> Result<(), LogError> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(level).map_err(|e| LogError::Level {
        level: level.to_string(),
        detail: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let r = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    r.map_err(|e| LogError::Install(e.to_string()))
}
