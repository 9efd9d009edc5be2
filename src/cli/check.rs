//! `mailflow-exporter check`: one diagnosis, the way Exchange Online would attempt delivery.
//! The flags are a contract (other tools drive them); exit 0 delivered, 1 not, 2 usage/config.

use super::args;
use super::report;
use crate::config::{
    Config, DomainPattern, HostName, HostPort, ProbeSpec, Routing, TlsSettings, default_helo, parse_dns_server,
};
use crate::probe::{ProbeReport, Prober, ProberOptions};
use clap::{Args, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// Smart host to probe (FQDN or IP, optional :PORT for labs); repeat for several.
    #[arg(long = "smart-host", value_name = "HOST[:PORT]")]
    pub smart_hosts: Vec<String>,
    /// Route by the MX of this recipient domain; repeat for several.
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// Port for hosts without one (Exchange Online always uses 25).
    #[arg(long)]
    pub port: Option<u16>,
    /// The connector's TLS setting.
    #[arg(long = "tls-settings", value_name = "none|encryption-only|certificate-validation|domain-validation", value_parser = parse_tls)]
    pub tls_settings: Option<TlsSettings>,
    /// Name the certificate must match (domain-validation); `*.contoso.com` allowed.
    #[arg(long = "tls-domain")]
    pub tls_domain: Option<String>,
    /// DNS server to ask (default: the system resolver); repeat for several.
    #[arg(long = "dns-server", value_name = "IP:PORT")]
    pub dns_servers: Vec<String>,
    /// Extra trust anchor (PEM) for labs and private CAs; Exchange Online trusts public CAs only.
    #[arg(long = "ca-file", value_name = "PEM")]
    pub ca_files: Vec<PathBuf>,
    /// Deadline of each step (connect, every reply, the TLS handshake, each DNS lookup).
    #[arg(long, value_parser = args::step_timeout)]
    pub timeout: Option<Duration>,
    /// Deadline of the whole check, all hosts and steps together (default 60s).
    #[arg(long, value_parser = args::deadline)]
    pub deadline: Option<Duration>,
    /// Name sent in EHLO.
    #[arg(long)]
    pub helo: Option<String>,
    /// Take the connector from this config file (with --connector).
    #[arg(long, requires = "connector")]
    pub config: Option<PathBuf>,
    /// Connector name in --config.
    #[arg(long, requires = "config")]
    pub connector: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

fn parse_tls(s: &str) -> Result<TlsSettings, args::ValueError> {
    TlsSettings::parse(s).ok_or_else(|| args::ValueError {
        value: s.to_string(),
        problem: "expected none, encryption-only, certificate-validation or domain-validation".into(),
    })
}

/// `check`'s whole-probe deadline unless `--deadline` or the connector says otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// A usage or configuration problem (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("{0}")]
    Usage(&'static str),
    #[error("{flag}: {source}")]
    Name {
        flag: &'static str,
        #[source]
        source: crate::config::NameError,
    },
    #[error("--dns-server {0:?}: expected IP or IP:PORT")]
    DnsServer(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{file}: no connector named {name:?}")]
    NoSuchConnector { file: String, name: String },
    #[error("--ca-file {file}: {source}")]
    CaFile {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Prober(#[from] crate::probe::ProberError),
}

fn name_err(flag: &'static str) -> impl Fn(crate::config::NameError) -> UsageError {
    move |source| UsageError::Name { flag, source }
}

/// What `check` runs: the prober, the connector to probe, and with `--config` the config it came
/// from (for Exchange Online's own view when the config has a tenant).
pub struct Built {
    pub opts: ProberOptions,
    pub spec: ProbeSpec,
    pub from_config: Option<(Config, crate::config::Connector)>,
}

/// Builds the prober options and spec from flags (and the config file when given).
pub fn build(args: &CheckArgs) -> Result<Built, UsageError> {
    let mut from_config = None;
    let mut dns_servers = Vec::new();
    for s in &args.dns_servers {
        dns_servers.push(parse_dns_server(s).ok_or_else(|| UsageError::DnsServer(s.clone()))?);
    }
    let mut ca_files: Vec<PathBuf> = args.ca_files.clone();

    let mut spec = if let (Some(path), Some(name)) = (&args.config, &args.connector) {
        let cfg = Config::load(path)?;
        let c = cfg.connector(name).ok_or_else(|| UsageError::NoSuchConnector {
            file: path.display().to_string(),
            name: name.clone(),
        })?;
        if dns_servers.is_empty() {
            dns_servers = cfg.dns_servers.clone();
        }
        ca_files.extend(cfg.extra_ca_files.iter().cloned());
        let spec = c.probe.clone();
        from_config = Some((cfg.clone(), c.clone()));
        spec
    } else {
        if args.smart_hosts.is_empty() && args.domains.is_empty() {
            return Err(UsageError::Usage(
                "give --smart-host HOST or --domain DOMAIN (or --config FILE --connector NAME)",
            ));
        }
        if !args.smart_hosts.is_empty() && !args.domains.is_empty() {
            return Err(UsageError::Usage(
                "--smart-host and --domain are exclusive (a connector uses smart hosts or MX, not both)",
            ));
        }
        let mut domains = Vec::new();
        for d in &args.domains {
            domains.push(HostName::parse(d).map_err(name_err("--domain"))?);
        }
        let routing = if args.smart_hosts.is_empty() {
            Routing::Mx(domains.clone())
        } else {
            let mut hs = Vec::new();
            for h in &args.smart_hosts {
                hs.push(HostPort::parse(h).map_err(name_err("--smart-host"))?);
            }
            Routing::SmartHosts(hs)
        };
        ProbeSpec {
            connector: "check".into(),
            recipient_domains: domains.into_iter().map(DomainPattern::Exact).collect(),
            routing,
            port: 25,
            tls_settings: TlsSettings::None,
            tls_domain: None,
            helo: default_helo(),
            timeout: Duration::from_secs(10),
            deadline: DEFAULT_DEADLINE,
        }
    };
    if let Some(p) = args.port {
        if p == 0 {
            return Err(UsageError::Usage("--port must be 1-65535"));
        }
        spec.port = p;
    }
    if let Some(t) = args.tls_settings {
        spec.tls_settings = t;
        // A connector's tls_domain means nothing once the flag picks a setting without a name check.
        if t != TlsSettings::DomainValidation {
            spec.tls_domain = None;
        }
    }
    if let Some(d) = &args.tls_domain {
        spec.tls_domain = Some(DomainPattern::parse(d).map_err(name_err("--tls-domain"))?);
    }
    if spec.tls_domain.is_some() && spec.tls_settings != TlsSettings::DomainValidation {
        return Err(UsageError::Usage(
            "--tls-domain is only used with --tls-settings domain-validation",
        ));
    }
    if let Some(t) = args.timeout {
        spec.timeout = t;
    }
    if let Some(d) = args.deadline {
        spec.deadline = d;
    }
    if let Some(h) = &args.helo {
        spec.helo = HostName::parse(h).map_err(name_err("--helo"))?;
    }
    let mut extra_ca = Vec::new();
    for f in &ca_files {
        let pem = std::fs::read(f).map_err(|source| UsageError::CaFile {
            file: f.display().to_string(),
            source,
        })?;
        extra_ca.push((f.display().to_string(), pem));
    }
    Ok(Built {
        opts: ProberOptions {
            dns_servers,
            extra_ca,
            ..ProberOptions::default()
        },
        spec,
        from_config,
    })
}

/// Runs the check; returns the report and, with `--config` and a tenant, Exchange Online's own
/// view of the connector (the caller renders and picks the exit code).
pub async fn run(args: &CheckArgs) -> Result<Checked, UsageError> {
    let built = build(args)?;
    let extra_ca = built.opts.extra_ca.clone();
    let prober = Prober::new(built.opts)?;
    let probe = prober.probe(&built.spec);
    Ok(match built.from_config {
        Some((cfg, connector)) if cfg.tenant.is_some() => {
            let (report, ms) = tokio::join!(probe, microsoft_view(&cfg, &connector, &extra_ca));
            Checked {
                report,
                microsoft: Some(ms),
                connector: Some(connector),
            }
        }
        from_config => Checked {
            report: probe.await,
            microsoft: None,
            connector: from_config.map(|(_, c)| c),
        },
    })
}

/// What `check` found.
pub struct Checked {
    pub report: ProbeReport,
    /// Exchange Online's view, when the config has a tenant.
    pub microsoft: Option<report::Microsoft>,
    /// The connector from `--config`.
    pub connector: Option<crate::config::Connector>,
}

/// Reads Microsoft's queue for one connector (and, with `tenant.sync`, the accepted domains for
/// the migrated-tenant check). Failures are part of the answer, not a usage error.
async fn microsoft_view(
    cfg: &Config,
    connector: &crate::config::Connector,
    extra_ca: &[(String, Vec<u8>)],
) -> report::Microsoft {
    use crate::tenant::{QueueRoute, Tenant};
    let Some(tcfg) = &cfg.tenant else {
        return report::Microsoft::default();
    };
    let tenant = match Tenant::new(tcfg, extra_ca) {
        Ok(t) => t,
        Err(e) => {
            return report::Microsoft {
                error: Some(crate::probe::escape(&e.to_string(), 300)),
                ..Default::default()
            };
        }
    };
    let now = std::time::SystemTime::now();
    let routes = [QueueRoute {
        connector: connector.name().to_string(),
        recipient_domains: connector.probe.recipient_domains.clone(),
    }];
    let queue = tenant.poll_queue(&routes, cfg.defaults.message_expiration, now);
    let sync = async { if tcfg.sync { Some(tenant.sync(now).await) } else { None } };
    let (queue, sync) = tokio::join!(queue, sync);
    let mut m = report::Microsoft::default();
    match queue {
        Ok(view) => m.queue = Some(view.connectors.get(connector.name()).cloned().unwrap_or_default()),
        Err(e) => m.error = Some(crate::agent::exo::describe(&e)),
    }
    if let Some(Ok(s)) = sync {
        m.accepted_domains = s.accepted_domains;
    }
    m
}

pub async fn main(args: &CheckArgs) -> ExitCode {
    match run(args).await {
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Ok(Checked {
            report: r,
            microsoft: ms,
            connector,
        }) => {
            match args.output {
                Output::Json => println!("{}", report::json_with_microsoft(&r, ms.as_ref(), connector.as_ref())),
                Output::Text => {
                    print!("{}", report::text(&r, std::io::stdout().is_terminal()));
                    if let (Some(m), Some(c)) = (&ms, &connector) {
                        print!("{}", report::microsoft_text(&r, m, c));
                    }
                }
            }
            if r.delivered {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}
