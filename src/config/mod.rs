//! Configuration: a YAML file that mirrors Exchange Online outbound connectors, so an admin
//! recognises every field. [`raw`] keeps YAML locations; this module validates into the types of
//! [`connector`] and [`names`], so every error names file, line and field.

pub mod connector;
pub mod names;
mod raw;
pub mod shard;
pub mod tenant;

pub use connector::{
    Carries, Connector, ConnectorOrigin, ConnectorSource, ConnectorType, ProbeSpec, Role, Routing, TlsSettings,
    normalize_enum,
};
pub use names::{ConnectorName, DomainPattern, Host, HostName, HostPort, MAX_CONNECTOR_NAME_CHARS, NameError};

pub use shard::Shard;
pub use tenant::{Credential, TenantConfig};

use raw::{Dur, RawConfig, RawConnector, RawTenant};
use serde_saphyr::Spanned;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub source: PathBuf,
    pub defaults: Defaults,
    /// Empty: use the system resolver configuration.
    pub dns_servers: Vec<SocketAddr>,
    pub extra_ca_files: Vec<PathBuf>,
    pub max_concurrent_probes: usize,
    pub connectors: Vec<Connector>,
    /// Exchange Online's own view (`tenant:`), when configured.
    pub tenant: Option<TenantConfig>,
    pub metrics: MetricsOptions,
}

/// Series that cost more than most users need, off by default (`metrics:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsOptions {
    /// `mailflow_probe_duration_seconds{phase}`: a histogram per phase (about 100 series per
    /// connector) instead of the last probe's duration alone.
    pub phase_histograms: bool,
    /// `mailflow_tls_certificate_not_before_timestamp_seconds` beside the expiry.
    pub certificate_not_before: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub interval: Duration,
    pub timeout: Duration,
    /// None: [`default_deadline`] of each connector's interval and timeout.
    pub probe_deadline: Option<Duration>,
    pub helo: HostName,
    pub message_expiration: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            probe_deadline: None,
            helo: default_helo(),
            message_expiration: Duration::from_secs(24 * 3600),
        }
    }
}

/// Bounds of every number in the file: absurd values are config errors with a location, never
/// overflows or panics later.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
pub const MAX_CONCURRENT_PROBES: usize = 4096;
pub const MAX_CONNECTORS: usize = 50_000;
pub const MAX_SMART_HOSTS: usize = 32;
pub const MAX_DOMAINS: usize = 1000;
pub const MAX_DNS_SERVERS: usize = 8;
pub const MAX_CA_FILES: usize = 32;
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The whole-probe deadline when none is set: half the interval, but at least one step's
/// timeout, and never more than the interval.
pub fn default_deadline(interval: Duration, timeout: Duration) -> Duration {
    (interval / 2).max(timeout).min(interval)
}

/// EHLO name when none is configured: the machine's host name if it looks like an FQDN.
pub fn default_helo() -> HostName {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .filter(|h| h.trim().contains('.'))
        .and_then(|h| HostName::parse(&h).ok())
        .unwrap_or_else(HostName::fallback)
}

/// A config error that names where it is: `file:line:column: field: message`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub field: String,
    pub message: String,
}

struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        loc: &serde_saphyr::Location,
        field: impl Into<String>,
        message: impl ToString,
    ) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.file.to_string(),
            line: loc.line(),
            column: loc.column(),
            field: field.into(),
            message: message.to_string(),
        })
    }
}

pub const MIN_EXPIRATION: Duration = Duration::from_secs(12 * 3600);
pub const MAX_EXPIRATION: Duration = Duration::from_secs(24 * 3600);

impl Config {
    /// Reads and validates the file. Blocking: the agent calls it on a blocking thread.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |message: String| ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            field: "-".into(),
            message,
        };
        // A FIFO or a device would block the read or never end; only regular files are configs.
        let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        if !meta.is_file() {
            return Err(fail("not a regular file".into()));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(fail(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        Config::parse(path, &text)
    }

    /// Parses and validates; `path` is used in messages and to resolve relative CA files.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let ctx = Ctx { file: &file };
        let raw: RawConfig =
            serde_saphyr::from_str_with_options(text, parser_options()).map_err(|e| parse_error(&file, text, &e))?;

        let mut defaults = Defaults::default();
        if let Some(d) = &raw.defaults.interval {
            check_interval(&ctx, d, "defaults.interval")?;
            defaults.interval = d.value.0;
        }
        if let Some(d) = &raw.defaults.timeout {
            check_timeout(&ctx, d, "defaults.timeout")?;
            defaults.timeout = d.value.0;
        }
        if let Some(d) = &raw.defaults.probe_deadline {
            check_deadline(&ctx, d, "defaults.probe_deadline")?;
            defaults.probe_deadline = Some(d.value.0);
        }
        if let Some(h) = &raw.defaults.helo {
            defaults.helo = HostName::parse(&h.value).or_else(|m| ctx.err(&h.referenced, "defaults.helo", m))?;
        }
        if let Some(d) = &raw.defaults.message_expiration {
            if d.value.0 < MIN_EXPIRATION || d.value.0 > MAX_EXPIRATION {
                return ctx.err(
                    &d.referenced,
                    "defaults.message_expiration",
                    "Exchange Online allows 12h to 24h",
                );
            }
            defaults.message_expiration = d.value.0;
        }

        let count = |n: usize, max: usize, field: &str| -> Result<(), ConfigError> {
            if n > max {
                return Err(ConfigError {
                    file: file.clone(),
                    line: 0,
                    column: 0,
                    field: field.to_string(),
                    message: format!("at most {max} entries (found {n})"),
                });
            }
            Ok(())
        };
        count(raw.dns.servers.len(), MAX_DNS_SERVERS, "dns.servers")?;
        count(raw.trust.extra_ca_files.len(), MAX_CA_FILES, "trust.extra_ca_files")?;
        if raw.connectors.value.len() > MAX_CONNECTORS {
            return ctx.err(
                &raw.connectors.referenced,
                "connectors",
                format!("at most {MAX_CONNECTORS} connectors per agent (shard larger sets)"),
            );
        }
        let mut dns_servers = Vec::new();
        for (i, s) in raw.dns.servers.iter().enumerate() {
            match parse_dns_server(&s.value) {
                Some(sa) => dns_servers.push(sa),
                None => {
                    return ctx.err(
                        &s.referenced,
                        format!("dns.servers[{i}]"),
                        format!("{:?} is not IP or IP:PORT", s.value.trim()),
                    );
                }
            }
        }

        let base = path.parent().unwrap_or(Path::new("."));
        let mut extra_ca_files = Vec::new();
        for (i, f) in raw.trust.extra_ca_files.iter().enumerate() {
            let p = Path::new(&f.value);
            let p = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
            if !p.is_file() {
                return ctx.err(
                    &f.referenced,
                    format!("trust.extra_ca_files[{i}]"),
                    format!("no such file: {}", p.display()),
                );
            }
            extra_ca_files.push(p);
        }

        let max_concurrent_probes = match &raw.max_concurrent_probes {
            Some(m) if !(1..=MAX_CONCURRENT_PROBES).contains(&m.value) => {
                return ctx.err(
                    &m.referenced,
                    "max_concurrent_probes",
                    format!("must be between 1 and {MAX_CONCURRENT_PROBES}"),
                );
            }
            Some(m) => m.value,
            None => 32,
        };

        let tenant = match &raw.tenant {
            Some(t) => Some(build_tenant(&ctx, base, t)?),
            None => None,
        };
        // Without connectors an agent with a tenant still reads Microsoft's queue (all of it
        // unattributed) and, with sync, the tenant's connectors; without a tenant it has nothing to do.
        if raw.connectors.referenced == serde_saphyr::Location::UNKNOWN && tenant.is_none() {
            return Err(ConfigError {
                file: file.clone(),
                line: 0,
                column: 0,
                field: "connectors".into(),
                message: "missing: list connectors, or configure a tenant (see README: Connect your tenant)".into(),
            });
        }

        let mut connectors: Vec<Connector> = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, c) in raw.connectors.value.iter().enumerate() {
            let conn = build_connector(&ctx, i, c, &defaults)?;
            if !names.insert(conn.name().to_string()) {
                return ctx.err(
                    &c.value.name.referenced,
                    format!("connectors[{i}].name"),
                    format!("duplicate connector name {:?}", conn.name()),
                );
            }
            connectors.push(conn);
        }

        Ok(Config {
            source: path.to_path_buf(),
            defaults,
            dns_servers,
            extra_ca_files,
            max_concurrent_probes,
            connectors,
            tenant,
            metrics: MetricsOptions {
                phase_histograms: raw.metrics.phase_histograms.unwrap_or(false),
                certificate_not_before: raw.metrics.certificate_not_before.unwrap_or(false),
            },
        })
    }

    pub fn connector(&self, name: &str) -> Option<&Connector> {
        self.connectors.iter().find(|c| c.name() == name)
    }
}

/// The YAML parser's budget, sized so the largest config we accept ([`MAX_CONNECTORS`] with
/// their lists) parses; its other limits (depth, aliases, document count) stay at the
/// defaults that keep a hostile file cheap.
fn parser_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(parser_budget());
    options
}

/// The budget [`Config::parse`] parses with (the importer checks its output against it).
pub fn parser_budget() -> serde_saphyr::Budget {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 1_000_000;
    budget.max_events = 2_000_000;
    budget
}

/// `IP` (port 53) or `IP:PORT`.
pub fn parse_dns_server(s: &str) -> Option<SocketAddr> {
    let v = s.trim();
    v.parse::<SocketAddr>()
        .ok()
        .or_else(|| v.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

/// The per-step timeout's bounds, shared with `check --timeout`.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

fn check_timeout(ctx: &Ctx, d: &Spanned<Dur>, field: &str) -> Result<(), ConfigError> {
    if d.value.0 < MIN_TIMEOUT || d.value.0 > MAX_TIMEOUT {
        return ctx.err(&d.referenced, field, "must be between 100ms and 5m");
    }
    Ok(())
}

fn build_tenant(ctx: &Ctx, base: &Path, st: &Spanned<RawTenant>) -> Result<TenantConfig, ConfigError> {
    let t = &st.value;
    let f = |name: &str| format!("tenant.{name}");
    if let Some(s) = &t.client_secret {
        return ctx.err(
            &s.referenced,
            f("client_secret"),
            "secrets are not accepted in the file; use client_secret_file or client_secret_env",
        );
    }
    let tenant_id = t.tenant_id.value.trim().to_ascii_lowercase();
    if !tenant::is_guid(&tenant_id) && (HostName::parse(&tenant_id).is_err() || !tenant_id.contains('.')) {
        return ctx.err(
            &t.tenant_id.referenced,
            f("tenant_id"),
            "expected the directory ID (a GUID) or a verified domain",
        );
    }
    let client_id = t.client_id.value.trim().to_ascii_lowercase();
    if !tenant::is_guid(&client_id) {
        return ctx.err(
            &t.client_id.referenced,
            f("client_id"),
            "expected the application (client) ID, a GUID",
        );
    }
    let path = |p: &Spanned<String>, field: &str| -> Result<PathBuf, ConfigError> {
        let q = Path::new(p.value.trim());
        let q = if q.is_absolute() { q.to_path_buf() } else { base.join(q) };
        if !q.is_file() {
            return ctx.err(&p.referenced, f(field), format!("no such file: {}", q.display()));
        }
        Ok(q)
    };
    let mut given = Vec::new();
    if let Some(p) = &t.client_secret_file {
        given.push((&p.referenced, Credential::SecretFile(path(p, "client_secret_file")?)));
    }
    if let Some(v) = &t.client_secret_env {
        let name = v.value.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return ctx.err(
                &v.referenced,
                f("client_secret_env"),
                "expected an environment variable name",
            );
        }
        given.push((&v.referenced, Credential::SecretEnv(name.to_string())));
    }
    match (&t.certificate_file, &t.private_key_file) {
        (Some(c), Some(k)) => given.push((
            &c.referenced,
            Credential::Certificate {
                cert_file: path(c, "certificate_file")?,
                key_file: path(k, "private_key_file")?,
            },
        )),
        (Some(c), None) => {
            return ctx.err(
                &c.referenced,
                f("private_key_file"),
                "certificate_file needs private_key_file",
            );
        }
        (None, Some(k)) => {
            return ctx.err(
                &k.referenced,
                f("certificate_file"),
                "private_key_file needs certificate_file",
            );
        }
        (None, None) => {}
    }
    if let Some(p) = &t.federated_token_file {
        // Not checked for existence: the platform may mount it after the agent starts.
        let q = Path::new(p.value.trim());
        let q = if q.is_absolute() { q.to_path_buf() } else { base.join(q) };
        given.push((&p.referenced, Credential::FederatedTokenFile(q)));
    }
    let credential = match given.len() {
        1 => given.remove(0).1,
        0 => {
            return ctx.err(
                &st.referenced,
                "tenant",
                "needs one credential: client_secret_file, client_secret_env, certificate_file + private_key_file, or federated_token_file",
            );
        }
        _ => return ctx.err(given[1].0, "tenant", "give exactly one credential"),
    };
    let url = |u: &Option<Spanned<String>>, field: &str, default: &str| -> Result<String, ConfigError> {
        match u {
            None => Ok(default.to_string()),
            Some(u) => tenant::base_url(&u.value).or_else(|m| ctx.err(&u.referenced, f(field), m)),
        }
    };
    let interval = |d: &Option<Spanned<Dur>>, field: &str, default: Duration| -> Result<Duration, ConfigError> {
        match d {
            None => Ok(default),
            Some(d) if d.value.0 < tenant::MIN_POLL_INTERVAL || d.value.0 > MAX_INTERVAL => {
                ctx.err(&d.referenced, f(field), "must be between 5s and 24h")
            }
            Some(d) => Ok(d.value.0),
        }
    };
    let details_per_5min = match &t.details_per_5min {
        None => tenant::DEFAULT_DETAILS_PER_5MIN,
        Some(n) if n.value > tenant::MAX_DETAILS_PER_5MIN => {
            return ctx.err(
                &n.referenced,
                f("details_per_5min"),
                format!("Microsoft allows {} per 5 minutes", tenant::MAX_DETAILS_PER_5MIN),
            );
        }
        Some(n) => n.value,
    };
    Ok(TenantConfig {
        tenant_id,
        client_id,
        credential,
        login_url: url(&t.login_url, "login_url", tenant::DEFAULT_LOGIN_URL)?,
        graph_url: url(&t.graph_url, "graph_url", tenant::DEFAULT_GRAPH_URL)?,
        exchange_url: url(&t.exchange_url, "exchange_url", tenant::DEFAULT_EXCHANGE_URL)?,
        poll_interval: interval(&t.poll_interval, "poll_interval", tenant::DEFAULT_POLL_INTERVAL)?,
        sync: t.sync.unwrap_or(false),
        sync_interval: interval(&t.sync_interval, "sync_interval", tenant::DEFAULT_SYNC_INTERVAL)?,
        details_per_5min,
    })
}

fn check_interval(ctx: &Ctx, d: &Spanned<Dur>, field: &str) -> Result<(), ConfigError> {
    if d.value.0 < MIN_INTERVAL || d.value.0 > MAX_INTERVAL {
        return ctx.err(&d.referenced, field, "must be between 1s and 24h");
    }
    Ok(())
}

fn check_deadline(ctx: &Ctx, d: &Spanned<Dur>, field: &str) -> Result<(), ConfigError> {
    if d.value.0 < MIN_TIMEOUT || d.value.0 > MAX_INTERVAL {
        return ctx.err(&d.referenced, field, "must be between 100ms and 24h");
    }
    Ok(())
}

fn build_connector(
    ctx: &Ctx,
    i: usize,
    sc: &Spanned<RawConnector>,
    defaults: &Defaults,
) -> Result<Connector, ConfigError> {
    let c = &sc.value;
    let f = |name: &str| format!("connectors[{i}].{name}");
    let name = ConnectorName::parse(&c.name.value).or_else(|m| ctx.err(&c.name.referenced, f("name"), m))?;
    let tls_settings = c.tls_settings.as_ref().map(|t| t.value).unwrap_or_default();
    let tls_domain = match &c.tls_domain {
        Some(td) => {
            if tls_settings != TlsSettings::DomainValidation {
                return ctx.err(
                    &td.referenced,
                    f("tls_domain"),
                    "tls_domain is only used with tls_settings: domain-validation",
                );
            }
            Some(DomainPattern::parse(&td.value).or_else(|m| ctx.err(&td.referenced, f("tls_domain"), m))?)
        }
        None => None,
    };

    for (list, max, name) in [
        (&c.recipient_domains, MAX_DOMAINS, "recipient_domains"),
        (&c.sample_domains, MAX_DOMAINS, "sample_domains"),
        (&c.smart_hosts, MAX_SMART_HOSTS, "smart_hosts"),
    ] {
        if let Some(l) = list
            && l.value.len() > max
        {
            return ctx.err(&l.referenced, f(name), format!("at most {max} entries"));
        }
    }
    let mut recipient_domains = Vec::new();
    if let Some(rd) = &c.recipient_domains {
        for d in &rd.value {
            recipient_domains
                .push(DomainPattern::parse(d).or_else(|m| ctx.err(&rd.referenced, f("recipient_domains"), m))?);
        }
    }
    let mut sample_domains = Vec::new();
    if let Some(sd) = &c.sample_domains {
        for d in &sd.value {
            sample_domains.push(HostName::parse(d).or_else(|m| ctx.err(&sd.referenced, f("sample_domains"), m))?);
        }
    }

    let use_mx = c.use_mx_record.as_ref().map(|b| b.value).unwrap_or(true);
    let routing = if use_mx {
        if let Some(sh) = &c.smart_hosts
            && !sh.value.is_empty()
        {
            return ctx.err(
                &sh.referenced,
                f("smart_hosts"),
                "smart_hosts are ignored with use_mx_record: true; set use_mx_record: false",
            );
        }
        let mut domains: Vec<HostName> = recipient_domains.iter().filter_map(|d| d.concrete().cloned()).collect();
        for d in &sample_domains {
            if !domains.contains(d) {
                domains.push(d.clone());
            }
        }
        // A disabled connector is listed, never probed: it may wait for sample domains.
        if domains.is_empty() && c.enabled.unwrap_or(true) {
            let loc = c
                .recipient_domains
                .as_ref()
                .map(|r| &r.referenced)
                .unwrap_or(&c.name.referenced);
            return ctx.err(
                loc,
                f("recipient_domains"),
                "use_mx_record needs at least one concrete recipient domain (wildcards can't be looked up: list sample_domains)",
            );
        }
        Routing::Mx(domains)
    } else {
        let Some(sh) = c.smart_hosts.as_ref().filter(|s| !s.value.is_empty()) else {
            let loc = c
                .use_mx_record
                .as_ref()
                .map(|b| &b.referenced)
                .unwrap_or(&c.name.referenced);
            return ctx.err(
                loc,
                f("smart_hosts"),
                "use_mx_record: false needs at least one smart host",
            );
        };
        let mut hosts = Vec::new();
        for (j, h) in sh.value.iter().enumerate() {
            let field = format!("connectors[{i}].smart_hosts[{j}]");
            let hp = HostPort::parse(h).or_else(|m| ctx.err(&sh.referenced, field.clone(), m))?;
            if hp.port.is_some() {
                return ctx.err(
                    &sh.referenced,
                    field,
                    "Exchange Online always uses port 25; use the connector's `port:` field in a lab",
                );
            }
            hosts.push(hp);
        }
        Routing::SmartHosts(hosts)
    };

    let port = match &c.port {
        Some(p) if p.value == 0 => return ctx.err(&p.referenced, f("port"), "must be 1-65535"),
        Some(p) => p.value,
        None => 25,
    };
    let interval = match &c.interval {
        Some(d) => {
            check_interval(ctx, d, &f("interval"))?;
            d.value.0
        }
        None => defaults.interval,
    };
    let timeout = match &c.timeout {
        Some(d) => {
            check_timeout(ctx, d, &f("timeout"))?;
            d.value.0
        }
        None => defaults.timeout,
    };
    // Where the complaint goes when the values come from different places.
    let here = c
        .timeout
        .as_ref()
        .or(c.interval.as_ref())
        .map(|d| &d.referenced)
        .unwrap_or(&c.name.referenced);
    if timeout > interval {
        return ctx.err(
            here,
            f("timeout"),
            format!(
                "the step timeout ({}) must not exceed the interval ({})",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            ),
        );
    }
    let deadline = match &c.probe_deadline {
        Some(d) => {
            check_deadline(ctx, d, &f("probe_deadline"))?;
            Some((d.value.0, &d.referenced))
        }
        None => None,
    };
    let deadline = match deadline.or(defaults.probe_deadline.map(|d| (d, here))) {
        Some((d, loc)) if d > interval => {
            return ctx.err(
                loc,
                f("probe_deadline"),
                format!(
                    "the probe deadline ({}) must not exceed the interval ({})",
                    humantime::format_duration(d),
                    humantime::format_duration(interval)
                ),
            );
        }
        Some((d, _)) => d,
        None => default_deadline(interval, timeout),
    };
    let helo = match &c.helo {
        Some(h) => HostName::parse(&h.value).or_else(|m| ctx.err(&h.referenced, f("helo"), m))?,
        None => defaults.helo.clone(),
    };
    Ok(Connector {
        source: ConnectorSource::File,
        carries: Carries {
            route_all_via_on_premises: c.route_all_messages_via_on_premises.unwrap_or(false),
            cloud_services_mail: c.cloud_services_mail_enabled.unwrap_or(false),
            transport_rule_scoped: c.transport_rule_scoped.unwrap_or(false),
            all_accepted_domains: c.all_accepted_domains.unwrap_or(false),
            connector_source: c
                .connector_source
                .as_deref()
                .map(ConnectorOrigin::parse)
                .unwrap_or_default(),
        },
        enabled: c.enabled.unwrap_or(true),
        connector_type: c.connector_type.unwrap_or_default(),
        interval,
        test_mode: c.test_mode.unwrap_or(false),
        comment: c.comment.clone(),
        probe: ProbeSpec {
            connector: name.as_str().to_string(),
            routing,
            port,
            recipient_domains,
            tls_settings,
            tls_domain,
            helo,
            timeout,
            deadline,
        },
    })
}

/// Turns a YAML/serde error into our `file:line:col: field: message` shape.
fn parse_error(file: &str, text: &str, e: &serde_saphyr::Error) -> ConfigError {
    let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    let msg = e.without_snippet().to_string();
    // serde messages name the offending field (`unknown field `x``, `missing field `y``);
    // value errors (a bad duration, a number out of range) are located by their position.
    let field = extract_field(&msg)
        .or_else(|| field_at(text, line, column))
        .unwrap_or_else(|| "-".to_string());
    ConfigError {
        file: file.to_string(),
        line,
        column,
        field,
        message: first_line(&msg),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// The key path of the value at `line:column` (1-based) in block or simple flow YAML, e.g.
/// `connectors[1].timeout` or `defaults.interval`: good enough to point at the field.
fn field_at(text: &str, line: u64, column: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let idx = usize::try_from(line).ok()?.checked_sub(1)?;
    let here = *lines.get(idx)?;
    let upto: String = here
        .chars()
        .take(usize::try_from(column).ok()?.saturating_sub(1))
        .collect();
    let keys = keys_in(&upto);
    let mut path: Vec<String> = match (keys.first(), keys.last()) {
        (Some(first), Some(last)) if first != last && upto.contains('{') => vec![first.clone(), last.clone()],
        (_, Some(last)) => vec![last.clone()],
        _ => return None,
    };
    // Walk up through less indented lines: mapping parents, and sequence items with their index.
    let mut indent = indent_of(here);
    let mut i = idx;
    while i > 0 && indent > 0 {
        i -= 1;
        let l = lines[i];
        if l.trim().is_empty() || l.trim_start().starts_with('#') || indent_of(l) >= indent {
            continue;
        }
        let item_indent = indent_of(l);
        if l.trim_start().starts_with("- ") {
            // Count the items of this sequence up to here, then find the sequence's key.
            let n = lines[..i]
                .iter()
                .rev()
                .take_while(|p| p.trim().is_empty() || indent_of(p) >= item_indent)
                .filter(|p| indent_of(p) == item_indent && p.trim_start().starts_with("- "))
                .count();
            if let Some(first) = path.first_mut() {
                *first = format!("[{n}].{first}");
            }
        } else if let Some(k) = keys_in(l).first() {
            path.insert(0, k.clone());
        }
        indent = item_indent;
    }
    Some(path.join(".").replace(".[", "["))
}

fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

/// The `key:` names in a line, in order.
fn keys_in(l: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut word = String::new();
    for c in l.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            if c == ':' && !word.is_empty() {
                keys.push(word.clone());
            }
            word.clear();
        }
    }
    keys
}

fn extract_field(msg: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `", "duplicate field `"] {
        if let Some(rest) = msg.split(marker).nth(1) {
            return rest.split('`').next().map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.yaml"), text)
    }

    const GOOD: &str = r#"
defaults: { interval: 60s, timeout: 10s, helo: probe.example.net, message_expiration: 24h }
dns: { servers: ["127.0.0.53:53"] }
trust: { extra_ca_files: [] }
connectors:
  - name: Outbound to Contoso
    use_mx_record: false
    smart_hosts: [mail.contoso.com, 203.0.113.5]
    recipient_domains: [contoso.com]
    tls_settings: domain-validation
    tls_domain: "*.contoso.com"
  - name: Partner MX
    connector_type: Partner
    recipient_domains: [fabrikam.com, "*.fabrikam.net"]
    sample_domains: [eu.fabrikam.net]
    tls_settings: EncryptionOnly
"#;

    fn host(s: &str) -> HostName {
        HostName::parse(s).expect("host name")
    }

    #[test]
    fn parses_the_documented_example() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.connectors.len(), 2);
        let a = &c.connectors[0].probe;
        assert_eq!(a.tls_settings, TlsSettings::DomainValidation);
        assert_eq!(
            a.tls_domain.as_ref().map(|d| d.to_string()).as_deref(),
            Some("*.contoso.com")
        );
        assert_eq!(
            a.routing,
            Routing::SmartHosts(vec![
                HostPort::name(host("mail.contoso.com"), None),
                HostPort::ip("203.0.113.5".parse().expect("ip"), None),
            ])
        );
        assert_eq!(a.port, 25);
        assert_eq!(a.helo.as_str(), "probe.example.net");
        assert_eq!(c.dns_servers, vec!["127.0.0.53:53".parse().expect("sa")]);
        let b = &c.connectors[1];
        assert_eq!(b.probe.tls_settings, TlsSettings::EncryptionOnly);
        assert_eq!(b.connector_type, ConnectorType::Partner);
        assert_eq!(
            b.probe.routing,
            Routing::Mx(vec![host("fabrikam.com"), host("eu.fabrikam.net")])
        );
    }

    #[test]
    fn tls_spellings() {
        for (s, t) in [
            ("EncryptionOnly", TlsSettings::EncryptionOnly),
            ("encryption-only", TlsSettings::EncryptionOnly),
            ("certificate_validation", TlsSettings::CertificateValidation),
            ("DomainValidation", TlsSettings::DomainValidation),
            ("none", TlsSettings::None),
        ] {
            assert_eq!(TlsSettings::parse(s), Some(t), "{s}");
        }
        assert_eq!(TlsSettings::parse("strict"), None);
    }

    fn expect_err(text: &str) -> ConfigError {
        match parse(text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let e = expect_err("connectors:\n  - name: a\n    recipient_domains: [a.test]\n    smart_host: [x.test]\n");
        assert_eq!(e.field, "smart_host", "{e}");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.to_string().starts_with("test.yaml:4:"), "{e}");
    }

    #[test]
    fn missing_smart_host() {
        let e = expect_err("connectors:\n  - name: a\n    use_mx_record: false\n    recipient_domains: [a.test]\n");
        assert_eq!(e.field, "connectors[0].smart_hosts");
        assert_eq!(e.line, 3);
    }

    #[test]
    fn tls_domain_without_domain_validation() {
        let e = expect_err(
            "connectors:\n  - name: a\n    use_mx_record: false\n    smart_hosts: [x.test]\n    tls_settings: encryption-only\n    tls_domain: x.test\n",
        );
        assert_eq!(e.field, "connectors[0].tls_domain");
        assert_eq!(e.line, 6);
    }

    #[test]
    fn bad_duration() {
        let e = expect_err("defaults:\n  timeout: tenseconds\nconnectors: []\n");
        assert_eq!(e.line, 2, "{e}");
        assert_eq!(e.field, "defaults.timeout", "{e}");
        assert!(e.message.contains("duration"), "{e}");
        let e = expect_err("connectors:\n  - name: a\n    recipient_domains: [a.test]\n    timeout: 0s\n");
        assert_eq!(e.field, "connectors[0].timeout");
        assert_eq!(e.line, 4);
    }

    #[test]
    fn expiration_bounds_and_duplicates() {
        let e = expect_err("defaults: { message_expiration: 48h }\nconnectors: []\n");
        assert_eq!(e.field, "defaults.message_expiration");
        let e = expect_err(
            "connectors:\n  - name: a\n    recipient_domains: [a.test]\n  - name: a\n    recipient_domains: [b.test]\n",
        );
        assert_eq!(e.field, "connectors[1].name");
        assert_eq!(e.line, 4);
    }

    #[test]
    fn wildcard_only_mx_connector_needs_samples() {
        let e = expect_err("connectors:\n  - name: a\n    recipient_domains: [\"*.a.test\"]\n");
        assert!(e.message.contains("sample_domains"), "{e}");
    }

    #[test]
    fn absurd_numbers_are_config_errors() {
        let one = "connectors:\n  - name: a\n    recipient_domains: [a.test]\n";
        let e = expect_err(&format!("max_concurrent_probes: 4611686018427387904\n{one}"));
        assert_eq!((e.field.as_str(), e.line), ("max_concurrent_probes", 1), "{e}");
        let e = expect_err(&format!("max_concurrent_probes: 99999999999999999999999\n{one}"));
        assert_eq!((e.field.as_str(), e.line), ("max_concurrent_probes", 1), "{e}");
        let e = expect_err("connectors:\n  - name: a\n    recipient_domains: [a.test]\n  - name: b\n    port: 70000\n");
        assert_eq!((e.field.as_str(), e.line), ("connectors[1].port", 5), "{e}");
        let e = expect_err(&format!("defaults: {{ interval: 18446744073709551616ms }}\n{one}"));
        assert_eq!(e.field, "defaults.interval", "{e}");
        let e = expect_err(&format!("defaults: {{ interval: 25h }}\n{one}"));
        assert_eq!(e.field, "defaults.interval", "{e}");
        let e = expect_err(
            "connectors:\n  - name: a\n    recipient_domains: [a.test]\n    interval: 2s\n    timeout: 3s\n",
        );
        assert_eq!((e.field.as_str(), e.line), ("connectors[0].timeout", 5), "{e}");
        let e =
            expect_err("defaults: { probe_deadline: 2m }\nconnectors:\n  - name: a\n    recipient_domains: [a.test]\n");
        assert_eq!(e.field, "connectors[0].probe_deadline", "{e}");
        assert!(e.message.contains("interval"), "{e}");
    }

    #[test]
    fn probe_deadline_defaults_under_the_interval() {
        let c = parse("connectors:\n  - name: a\n    recipient_domains: [a.test]\n  - name: b\n    recipient_domains: [b.test]\n    interval: 1s\n    timeout: 1s\n  - name: c\n    recipient_domains: [c.test]\n    probe_deadline: 20s\n")
            .expect("config");
        let d: Vec<Duration> = c.connectors.iter().map(|c| c.probe.deadline).collect();
        assert_eq!(
            d,
            [Duration::from_secs(30), Duration::from_secs(1), Duration::from_secs(20)]
        );
    }

    #[test]
    fn tenant_section() {
        let dir = std::env::temp_dir().join(format!("mailflow-tenant-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("secret.txt"), "s3cret\n").expect("write");
        let file = dir.join("c.yaml");
        let parse = |text: &str| Config::parse(&file, text);
        let head = "tenant:\n  tenant_id: 11111111-2222-3333-4444-555555555555\n  client_id: 66666666-7777-8888-9999-000000000000\n";
        let c = parse(&format!(
            "{head}  client_secret_file: secret.txt\n  login_url: https://127.0.0.1:8443/\n  poll_interval: 10s\n  sync: true\n"
        ))
        .expect("tenant config, connectors from the tenant");
        let t = c.tenant.expect("tenant");
        assert_eq!(t.credential, Credential::SecretFile(dir.join("secret.txt")));
        assert_eq!(t.login_url, "https://127.0.0.1:8443");
        assert_eq!(t.graph_url, tenant::DEFAULT_GRAPH_URL);
        assert_eq!(t.poll_interval, Duration::from_secs(10));
        assert!(t.sync && c.connectors.is_empty());

        let e = parse(&format!("{head}  client_secret: hunter2\n")).expect_err("secret in the file");
        assert_eq!(e.field, "tenant.client_secret");
        assert!(e.message.contains("client_secret_file"), "{e}");
        let c = parse(&format!("{head}  client_secret_file: secret.txt\n")).expect("a tenant alone is enough");
        assert!(c.connectors.is_empty());
        let e = parse("defaults: { interval: 60s }\n").expect_err("neither connectors nor a tenant");
        assert_eq!(e.field, "connectors");
        let e = parse(&format!(
            "{head}  client_secret_env: X\n  federated_token_file: /t\nconnectors: []\n"
        ))
        .expect_err("two credentials");
        assert_eq!(e.field, "tenant");
        let e = parse("tenant:\n  tenant_id: x\n  client_id: y\n  client_secret_env: X\nconnectors: []\n")
            .expect_err("bad ids");
        assert_eq!((e.field.as_str(), e.line), ("tenant.tenant_id", 2), "{e}");
        let e = parse(&format!(
            "{head}  client_secret_env: X\n  graph_url: http://graph.test\nconnectors: []\n"
        ))
        .expect_err("plain http");
        assert_eq!(e.field, "tenant.graph_url");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names_are_counted_in_characters() {
        let ok = format!(
            "connectors:\n  - name: \"{}\"\n    recipient_domains: [a.test]\n",
            "é".repeat(128)
        );
        assert!(parse(&ok).is_ok());
        let e = expect_err(&format!(
            "connectors:\n  - name: \"{}\"\n    recipient_domains: [a.test]\n",
            "é".repeat(129)
        ));
        assert_eq!(e.field, "connectors[0].name");
    }
}
