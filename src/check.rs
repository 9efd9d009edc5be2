//! `mailflow-exporter check`: one diagnosis, the way Exchange Online would attempt delivery.
//! The flags are a contract (other tools drive them); exit 0 delivered, 1 not, 2 usage/config.

use crate::config::{Config, HostPort, Routing, TlsSettings, default_helo, validate_hostname};
use crate::probe::{ProbeReport, ProbeSpec, Prober, ProberOptions};
use clap::{Args, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
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
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
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

fn parse_tls(s: &str) -> Result<TlsSettings, String> {
    TlsSettings::parse(s)
        .ok_or_else(|| format!("{s:?}: expected none, encryption-only, certificate-validation or domain-validation"))
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (write e.g. 10s)"))?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(300) {
        return Err(format!("{s:?}: must be between 100ms and 5m"));
    }
    Ok(d)
}

/// A usage or configuration problem (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Builds the prober options and spec from flags (and the config file when given).
pub fn build(args: &CheckArgs) -> Result<(ProberOptions, ProbeSpec), UsageError> {
    let u = |m: String| UsageError(m);
    let mut dns_servers = Vec::new();
    for s in &args.dns_servers {
        let sa = s
            .parse::<SocketAddr>()
            .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map_err(|_| u(format!("--dns-server {s:?}: expected IP or IP:PORT")))?;
        dns_servers.push(sa);
    }
    let mut ca_files: Vec<PathBuf> = args.ca_files.clone();

    let mut spec = if let (Some(path), Some(name)) = (&args.config, &args.connector) {
        let cfg = Config::load(path).map_err(|e| u(e.to_string()))?;
        let c = cfg
            .connector(name)
            .ok_or_else(|| u(format!("{}: no connector named {name:?}", path.display())))?;
        if dns_servers.is_empty() {
            dns_servers = cfg.dns_servers.clone();
        }
        ca_files.extend(cfg.extra_ca_files.iter().cloned());
        ProbeSpec::from_connector(c)
    } else {
        if args.smart_hosts.is_empty() && args.domains.is_empty() {
            return Err(u(
                "give --smart-host HOST or --domain DOMAIN (or --config FILE --connector NAME)".into(),
            ));
        }
        if !args.smart_hosts.is_empty() && !args.domains.is_empty() {
            return Err(u(
                "--smart-host and --domain are exclusive (a connector uses smart hosts or MX, not both)".into(),
            ));
        }
        let routing = if args.smart_hosts.is_empty() {
            let mut ds = Vec::new();
            for d in &args.domains {
                let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
                validate_hostname(&d).map_err(|m| u(format!("--domain: {m}")))?;
                ds.push(d);
            }
            Routing::Mx(ds)
        } else {
            let mut hs = Vec::new();
            for h in &args.smart_hosts {
                hs.push(HostPort::parse(h).map_err(|m| u(format!("--smart-host: {m}")))?);
            }
            Routing::SmartHosts(hs)
        };
        ProbeSpec {
            connector: "check".into(),
            recipient_domains: args.domains.clone(),
            routing,
            port: 25,
            tls_settings: TlsSettings::None,
            tls_domain: None,
            helo: default_helo(),
            timeout: Duration::from_secs(10),
        }
    };
    if let Some(p) = args.port {
        if p == 0 {
            return Err(u("--port must be 1-65535".into()));
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
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        validate_hostname(d.strip_prefix("*.").unwrap_or(&d)).map_err(|m| u(format!("--tls-domain: {m}")))?;
        spec.tls_domain = Some(d);
    }
    if spec.tls_domain.is_some() && spec.tls_settings != TlsSettings::DomainValidation {
        return Err(u(
            "--tls-domain is only used with --tls-settings domain-validation".into()
        ));
    }
    if let Some(t) = args.timeout {
        spec.timeout = t;
    }
    if let Some(h) = &args.helo {
        validate_hostname(h).map_err(|m| u(format!("--helo: {m}")))?;
        spec.helo = h.clone();
    }
    let mut extra_ca = Vec::new();
    for f in &ca_files {
        let pem = std::fs::read(f).map_err(|e| u(format!("--ca-file {}: {e}", f.display())))?;
        extra_ca.push((f.display().to_string(), pem));
    }
    Ok((
        ProberOptions {
            dns_servers,
            extra_ca,
            ..ProberOptions::default()
        },
        spec,
    ))
}

/// Runs the check; returns the report (the caller renders and picks the exit code).
pub async fn run(args: &CheckArgs) -> Result<ProbeReport, UsageError> {
    let (opts, spec) = build(args)?;
    let prober = Prober::new(opts).map_err(UsageError)?;
    Ok(prober.probe(&spec).await)
}
