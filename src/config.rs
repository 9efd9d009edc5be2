//! Configuration: a YAML file that mirrors Exchange Online outbound connectors, so an admin
//! recognises every field. Parsing keeps YAML locations so every error names file, line and field.

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exchange Online `TlsSettings`. `None` is the connector's null: opportunistic TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsSettings {
    #[default]
    None,
    EncryptionOnly,
    CertificateValidation,
    DomainValidation,
}

impl TlsSettings {
    pub const ALL: [TlsSettings; 4] = [
        TlsSettings::None,
        TlsSettings::EncryptionOnly,
        TlsSettings::CertificateValidation,
        TlsSettings::DomainValidation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TlsSettings::None => "none",
            TlsSettings::EncryptionOnly => "encryption-only",
            TlsSettings::CertificateValidation => "certificate-validation",
            TlsSettings::DomainValidation => "domain-validation",
        }
    }

    /// Accepts our kebab-case names and Exchange's spellings (`EncryptionOnly`, `$null`, integers
    /// as Windows PowerShell 5.1 prints them are handled by the importer).
    pub fn parse(s: &str) -> Option<TlsSettings> {
        match normalize_enum(s).as_str() {
            "" | "none" | "null" | "$null" | "opportunistic" => Some(TlsSettings::None),
            "encryptiononly" => Some(TlsSettings::EncryptionOnly),
            "certificatevalidation" => Some(TlsSettings::CertificateValidation),
            "domainvalidation" => Some(TlsSettings::DomainValidation),
            _ => None,
        }
    }

    /// STARTTLS is mandatory for every setting but the null one.
    pub fn requires_tls(self) -> bool {
        self != TlsSettings::None
    }

    /// Whether the certificate chain and dates must be valid.
    pub fn validates_certificate(self) -> bool {
        matches!(self, TlsSettings::CertificateValidation | TlsSettings::DomainValidation)
    }
}

impl fmt::Display for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TlsSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        let s = s.unwrap_or_default();
        TlsSettings::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown tls_settings {s:?}; expected none, encryption-only, certificate-validation or domain-validation"
            ))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectorType {
    #[default]
    OnPremises,
    Partner,
}

impl ConnectorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorType::OnPremises => "on-premises",
            ConnectorType::Partner => "partner",
        }
    }
}

impl ConnectorType {
    /// Accepts `on-premises`/`OnPremises`/`on_premises` and `partner` in any case.
    pub fn parse(s: &str) -> Option<ConnectorType> {
        match normalize_enum(s).as_str() {
            "onpremises" => Some(ConnectorType::OnPremises),
            "partner" => Some(ConnectorType::Partner),
            _ => None,
        }
    }
}

/// Lower-cases and drops `-`, `_` and spaces, so Exchange's and our spellings compare equal.
pub fn normalize_enum(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '-' | '_' | ' '))
        .collect::<String>()
        .to_ascii_lowercase()
}

impl<'de> Deserialize<'de> for ConnectorType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ConnectorType::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown connector_type {s:?}; expected on-premises or partner"))
        })
    }
}

/// A duration written as `60s`, `10s`, `24h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(Dur)
            .map_err(|e| serde::de::Error::custom(format!("bad duration {s:?}: {e} (write e.g. 10s, 5m, 24h)")))
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    interval: Option<Spanned<Dur>>,
    timeout: Option<Spanned<Dur>>,
    helo: Option<Spanned<String>>,
    message_expiration: Option<Spanned<Dur>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDns {
    #[serde(default)]
    servers: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    #[serde(default)]
    extra_ca_files: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    name: Spanned<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    connector_type: Option<ConnectorType>,
    #[serde(default)]
    use_mx_record: Option<Spanned<bool>>,
    #[serde(default)]
    smart_hosts: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    recipient_domains: Option<Spanned<Vec<String>>>,
    /// Concrete domains to probe when recipient_domains holds wildcards.
    #[serde(default)]
    sample_domains: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    tls_settings: Option<Spanned<TlsSettings>>,
    #[serde(default)]
    tls_domain: Option<Spanned<String>>,
    /// Lab only: Exchange Online always uses 25.
    #[serde(default)]
    port: Option<Spanned<u16>>,
    #[serde(default)]
    interval: Option<Spanned<Dur>>,
    #[serde(default)]
    timeout: Option<Spanned<Dur>>,
    #[serde(default)]
    helo: Option<Spanned<String>>,
    #[serde(default)]
    test_mode: Option<bool>,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    dns: RawDns,
    #[serde(default)]
    trust: RawTrust,
    #[serde(default)]
    max_concurrent_probes: Option<Spanned<usize>>,
    connectors: Spanned<Vec<Spanned<RawConnector>>>,
}

/// A validated connector.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Connector {
    pub name: String,
    pub enabled: bool,
    pub connector_type: ConnectorType,
    pub routing: Routing,
    /// The connector's own recipient domains (may hold wildcards), for display.
    pub recipient_domains: Vec<String>,
    pub tls_settings: TlsSettings,
    pub tls_domain: Option<String>,
    pub port: u16,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub helo: String,
    pub test_mode: bool,
    /// Free text for admins (the importer writes the connector's comment here).
    pub comment: Option<String>,
}

/// Where Exchange Online sends the connector's mail.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "targets")]
pub enum Routing {
    /// Smart hosts (FQDN or IP literal), tried in the order given.
    SmartHosts(Vec<HostPort>),
    /// MX of each domain.
    Mx(Vec<String>),
}

impl Routing {
    pub fn label(&self) -> &'static str {
        match self {
            Routing::SmartHosts(_) => "smart_host",
            Routing::Mx(_) => "mx",
        }
    }
}

/// A smart host with an optional explicit port (labs only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

impl HostPort {
    /// Parses `name`, `name:port`, `1.2.3.4`, `1.2.3.4:25`, `[::1]:25`, `::1`.
    pub fn parse(s: &str) -> Result<HostPort, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty host".into());
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(HostPort {
                host: ip.to_string(),
                port: None,
            });
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(HostPort {
                host: sa.ip().to_string(),
                port: Some(sa.port()),
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => {
                let port = p.parse::<u16>().map_err(|_| format!("bad port in {s:?}"))?;
                if port == 0 {
                    return Err(format!("port 0 in {s:?}"));
                }
                (h, Some(port))
            }
            None => (s, None),
        };
        validate_hostname(host)?;
        Ok(HostPort {
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port,
        })
    }

    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip(), self.port) {
            (Some(IpAddr::V6(ip)), Some(p)) => write!(f, "[{ip}]:{p}"),
            (_, Some(p)) => write!(f, "{}:{p}", self.host),
            (_, None) => f.write_str(&self.host),
        }
    }
}

/// Checks a DNS host name (letters, digits, hyphens, dots; labels of 1..=63; total <= 253).
pub fn validate_hostname(name: &str) -> Result<(), String> {
    let n = name.trim_end_matches('.');
    if n.is_empty() || n.len() > 253 {
        return Err(format!("{name:?} is not a valid host name"));
    }
    for label in n.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{name:?} is not a valid host name"));
        }
    }
    Ok(())
}

/// Checks a domain pattern: a host name, optionally starting with `*.`.
fn validate_domain_pattern(name: &str) -> Result<(), String> {
    if name == "*" {
        return Ok(());
    }
    validate_hostname(name.strip_prefix("*.").unwrap_or(name))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub source: PathBuf,
    pub defaults: Defaults,
    /// Empty: use the system resolver configuration.
    pub dns_servers: Vec<SocketAddr>,
    pub extra_ca_files: Vec<PathBuf>,
    pub max_concurrent_probes: usize,
    pub connectors: Vec<Connector>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub interval: Duration,
    pub timeout: Duration,
    pub helo: String,
    pub message_expiration: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            helo: default_helo(),
            message_expiration: Duration::from_secs(24 * 3600),
        }
    }
}

/// EHLO name when none is configured: the machine's host name if it looks like an FQDN.
pub fn default_helo() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|h| h.contains('.') && validate_hostname(h).is_ok())
        .unwrap_or_else(|| "mailflow-exporter.invalid".to_string())
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
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.file.to_string(),
            line: loc.line(),
            column: loc.column(),
            field: field.into(),
            message: message.into(),
        })
    }
}

pub const MIN_EXPIRATION: Duration = Duration::from_secs(12 * 3600);
pub const MAX_EXPIRATION: Duration = Duration::from_secs(24 * 3600);

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            field: "-".into(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Parses and validates; `path` is used in messages and to resolve relative CA files.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let ctx = Ctx { file: &file };
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| parse_error(&file, &e))?;

        let mut defaults = Defaults::default();
        if let Some(d) = &raw.defaults.interval {
            if d.value.0 < Duration::from_secs(1) {
                return ctx.err(&d.referenced, "defaults.interval", "must be at least 1s");
            }
            defaults.interval = d.value.0;
        }
        if let Some(d) = &raw.defaults.timeout {
            check_timeout(&ctx, d, "defaults.timeout")?;
            defaults.timeout = d.value.0;
        }
        if let Some(h) = &raw.defaults.helo {
            if let Err(m) = validate_hostname(&h.value) {
                return ctx.err(&h.referenced, "defaults.helo", m);
            }
            defaults.helo = h.value.clone();
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

        let mut dns_servers = Vec::new();
        for (i, s) in raw.dns.servers.iter().enumerate() {
            let v = s.value.trim();
            let parsed = v
                .parse::<SocketAddr>()
                .or_else(|_| v.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
            match parsed {
                Ok(sa) => dns_servers.push(sa),
                Err(_) => {
                    return ctx.err(
                        &s.referenced,
                        format!("dns.servers[{i}]"),
                        format!("{v:?} is not IP or IP:PORT"),
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
            Some(m) if m.value == 0 => return ctx.err(&m.referenced, "max_concurrent_probes", "must be at least 1"),
            Some(m) => m.value,
            None => 32,
        };

        let mut connectors: Vec<Connector> = Vec::new();
        for (i, c) in raw.connectors.value.iter().enumerate() {
            let conn = build_connector(&ctx, i, c, &defaults)?;
            if connectors.iter().any(|o| o.name == conn.name) {
                return ctx.err(
                    &c.value.name.referenced,
                    format!("connectors[{i}].name"),
                    format!("duplicate connector name {:?}", conn.name),
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
        })
    }

    pub fn connector(&self, name: &str) -> Option<&Connector> {
        self.connectors.iter().find(|c| c.name == name)
    }
}

fn check_timeout(ctx: &Ctx, d: &Spanned<Dur>, field: &str) -> Result<(), ConfigError> {
    if d.value.0 < Duration::from_millis(100) || d.value.0 > Duration::from_secs(300) {
        return ctx.err(&d.referenced, field, "must be between 100ms and 5m");
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
    let name = c.name.value.trim().to_string();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(|ch| ch.is_control()) {
        return ctx.err(&c.name.referenced, f("name"), "must be 1-128 printable characters");
    }
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
            let v = td.value.trim().trim_end_matches('.').to_ascii_lowercase();
            if let Err(m) = validate_domain_pattern(&v) {
                return ctx.err(&td.referenced, f("tls_domain"), m);
            }
            Some(v)
        }
        None => None,
    };

    let mut recipient_domains = Vec::new();
    if let Some(rd) = &c.recipient_domains {
        for d in &rd.value {
            let v = d.trim().trim_end_matches('.').to_ascii_lowercase();
            if let Err(m) = validate_domain_pattern(&v) {
                return ctx.err(&rd.referenced, f("recipient_domains"), m);
            }
            recipient_domains.push(v);
        }
    }
    let mut sample_domains = Vec::new();
    if let Some(sd) = &c.sample_domains {
        for d in &sd.value {
            let v = d.trim().trim_end_matches('.').to_ascii_lowercase();
            if let Err(m) = validate_hostname(&v) {
                return ctx.err(&sd.referenced, f("sample_domains"), m);
            }
            sample_domains.push(v);
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
        let mut domains: Vec<String> = recipient_domains
            .iter()
            .filter(|d| !d.starts_with('*'))
            .cloned()
            .collect();
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
            let hp = HostPort::parse(h)
                .or_else(|m| ctx.err(&sh.referenced, format!("connectors[{i}].smart_hosts[{j}]"), m))?;
            if hp.port.is_some() {
                return ctx.err(
                    &sh.referenced,
                    format!("connectors[{i}].smart_hosts[{j}]"),
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
        Some(d) if d.value.0 < Duration::from_secs(1) => {
            return ctx.err(&d.referenced, f("interval"), "must be at least 1s");
        }
        Some(d) => d.value.0,
        None => defaults.interval,
    };
    let timeout = match &c.timeout {
        Some(d) => {
            check_timeout(ctx, d, &f("timeout"))?;
            d.value.0
        }
        None => defaults.timeout,
    };
    let helo = match &c.helo {
        Some(h) => {
            if let Err(m) = validate_hostname(&h.value) {
                return ctx.err(&h.referenced, f("helo"), m);
            }
            h.value.clone()
        }
        None => defaults.helo.clone(),
    };
    Ok(Connector {
        name,
        enabled: c.enabled.unwrap_or(true),
        connector_type: c.connector_type.unwrap_or_default(),
        routing,
        recipient_domains,
        tls_settings,
        tls_domain,
        port,
        interval,
        timeout,
        helo,
        test_mode: c.test_mode.unwrap_or(false),
        comment: c.comment.clone(),
    })
}

/// Turns a YAML/serde error into our `file:line:col: field: message` shape.
fn parse_error(file: &str, e: &serde_saphyr::Error) -> ConfigError {
    let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    let msg = e.without_snippet().to_string();
    // serde messages name the offending field (`unknown field `x``, `missing field `y``).
    let field = extract_field(&msg).unwrap_or_else(|| "-".to_string());
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

    #[test]
    fn parses_the_documented_example() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.connectors.len(), 2);
        let a = &c.connectors[0];
        assert_eq!(a.tls_settings, TlsSettings::DomainValidation);
        assert_eq!(a.tls_domain.as_deref(), Some("*.contoso.com"));
        assert_eq!(
            a.routing,
            Routing::SmartHosts(vec![
                HostPort {
                    host: "mail.contoso.com".into(),
                    port: None
                },
                HostPort {
                    host: "203.0.113.5".into(),
                    port: None
                }
            ])
        );
        assert_eq!(a.port, 25);
        assert_eq!(a.helo, "probe.example.net");
        assert_eq!(c.dns_servers, vec!["127.0.0.53:53".parse().expect("sa")]);
        let b = &c.connectors[1];
        assert_eq!(b.tls_settings, TlsSettings::EncryptionOnly);
        assert_eq!(b.connector_type, ConnectorType::Partner);
        assert_eq!(
            b.routing,
            Routing::Mx(vec!["fabrikam.com".into(), "eu.fabrikam.net".into()])
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
    fn hostport_forms() {
        assert_eq!(
            HostPort::parse("[::1]:2525"),
            Ok(HostPort {
                host: "::1".into(),
                port: Some(2525)
            })
        );
        assert_eq!(
            HostPort::parse("Mail.Test:26"),
            Ok(HostPort {
                host: "mail.test".into(),
                port: Some(26)
            })
        );
        assert_eq!(HostPort::parse("127.0.0.1").map(|h| h.port), Ok(None));
        assert!(HostPort::parse("bad host").is_err());
        assert!(HostPort::parse("x.test:0").is_err());
    }
}
