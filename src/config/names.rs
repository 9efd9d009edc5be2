//! Validated names: host names, recipient-domain patterns, smart hosts and connector names.
//! Parsed once at the edge (config file, `check` flags, importer, `/probe`), so everything
//! further in can rely on lower-case, dot-free, length-checked values.

use serde::Serialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Longest connector name, in characters (Exchange Online allows 64; imports may carry more).
pub const MAX_CONNECTOR_NAME_CHARS: usize = 128;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty host name")]
    Empty,
    #[error("{0:?} is not a valid host name (letters, digits, hyphens; labels of 1-63; at most 253 in all)")]
    InvalidHost(String),
    #[error("bad port in {0:?}")]
    BadPort(String),
    #[error("port 0 in {0:?}")]
    PortZero(String),
    #[error("connector name must be 1-{MAX_CONNECTOR_NAME_CHARS} printable characters")]
    ConnectorName,
}

/// A DNS host name: ASCII letters, digits, `-` and `_`, labels of 1..=63, at most 253 in all;
/// stored lower-case without the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct HostName(String);

impl HostName {
    pub fn parse(s: &str) -> Result<HostName, NameError> {
        let n = s.trim().trim_end_matches('.');
        if n.is_empty() {
            return Err(NameError::Empty);
        }
        // All characters are ASCII once the label check passes, so bytes and characters agree.
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if n.len() > 253 || !n.split('.').all(label_ok) {
            return Err(NameError::InvalidHost(s.to_string()));
        }
        Ok(HostName(n.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `mailflow-exporter.invalid`: an EHLO name under a reserved TLD (RFC 6761) for machines
    /// without an FQDN.
    pub fn fallback() -> HostName {
        HostName("mailflow-exporter.invalid".to_string())
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for HostName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        HostName::parse(s)
    }
}

impl AsRef<str> for HostName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A recipient domain or TLS domain as Exchange Online writes it: `contoso.com`,
/// `*.contoso.com` (any subdomain, any depth) or `*` (everything).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DomainPattern {
    Any,
    Exact(HostName),
    Subdomains(HostName),
}

impl DomainPattern {
    pub fn parse(s: &str) -> Result<DomainPattern, NameError> {
        let v = s.trim();
        if v == "*" {
            return Ok(DomainPattern::Any);
        }
        match v.strip_prefix("*.") {
            Some(rest) => HostName::parse(rest).map(DomainPattern::Subdomains),
            None => HostName::parse(v).map(DomainPattern::Exact),
        }
    }

    /// The domain itself when it is concrete (can be looked up by MX).
    pub fn concrete(&self) -> Option<&HostName> {
        match self {
            DomainPattern::Exact(h) => Some(h),
            _ => None,
        }
    }

    /// Whether a concrete domain falls under this pattern.
    pub fn matches(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        match self {
            DomainPattern::Any => true,
            DomainPattern::Exact(h) => d == h.as_str(),
            DomainPattern::Subdomains(h) => d
                .strip_suffix(h.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Any => f.write_str("*"),
            DomainPattern::Exact(h) => f.write_str(h.as_str()),
            DomainPattern::Subdomains(h) => write!(f, "*.{h}"),
        }
    }
}

impl FromStr for DomainPattern {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        DomainPattern::parse(s)
    }
}

impl Serialize for DomainPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A smart host: a name or an IP literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Name(HostName),
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n.as_str()),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl Serialize for Host {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A smart host with an optional explicit port (labs only: Exchange Online always uses 25).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct HostPort {
    pub host: Host,
    pub port: Option<u16>,
}

impl HostPort {
    /// Parses `name`, `name:port`, `1.2.3.4`, `1.2.3.4:25`, `[::1]:25`, `::1`.
    pub fn parse(s: &str) -> Result<HostPort, NameError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(HostPort::ip(ip, None));
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            if sa.port() == 0 {
                return Err(NameError::PortZero(s.to_string()));
            }
            return Ok(HostPort::ip(sa.ip(), Some(sa.port())));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => {
                let port = p.parse::<u16>().map_err(|_| NameError::BadPort(s.to_string()))?;
                if port == 0 {
                    return Err(NameError::PortZero(s.to_string()));
                }
                (h, Some(port))
            }
            None => (s, None),
        };
        Ok(HostPort {
            host: Host::Name(HostName::parse(host)?),
            port,
        })
    }

    pub fn ip(ip: IpAddr, port: Option<u16>) -> HostPort {
        HostPort {
            host: Host::Ip(ip),
            port,
        }
    }

    pub fn name(name: HostName, port: Option<u16>) -> HostPort {
        HostPort {
            host: Host::Name(name),
            port,
        }
    }
}

impl From<SocketAddr> for HostPort {
    fn from(sa: SocketAddr) -> HostPort {
        HostPort::ip(sa.ip(), Some(sa.port()))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.port) {
            (Host::Ip(IpAddr::V6(ip)), Some(p)) => write!(f, "[{ip}]:{p}"),
            (h, Some(p)) => write!(f, "{h}:{p}"),
            (h, None) => write!(f, "{h}"),
        }
    }
}

impl FromStr for HostPort {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        HostPort::parse(s)
    }
}

/// A connector's name: 1..=128 characters (counted as characters, not bytes), no control
/// characters, trimmed. Also a metrics label value, so it is bounded here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ConnectorName(String);

impl ConnectorName {
    pub fn parse(s: &str) -> Result<ConnectorName, NameError> {
        let n = s.trim();
        if n.is_empty() || n.chars().count() > MAX_CONNECTOR_NAME_CHARS || n.chars().any(char::is_control) {
            return Err(NameError::ConnectorName);
        }
        Ok(ConnectorName(n.to_string()))
    }

    /// Makes any text a valid name: control characters become spaces, and it is cut to the
    /// character limit. `None` when nothing printable is left.
    pub fn sanitize(s: &str) -> Option<ConnectorName> {
        let clean: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let cut: String = clean.trim().chars().take(MAX_CONNECTOR_NAME_CHARS).collect();
        ConnectorName::parse(&cut).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(
            HostName::parse("Mail.Contoso.COM.").map(|h| h.0),
            Ok("mail.contoso.com".into())
        );
        assert!(HostName::parse("bad host").is_err());
        assert!(HostName::parse("-a.test").is_err());
        assert!(HostName::parse(&format!("{}.test", "a".repeat(64))).is_err());
        assert!(
            HostName::parse(&format!("{}ab", "a.".repeat(126))).is_err(),
            "254 characters"
        );
        assert!(HostName::parse(&"a.".repeat(127)).is_ok(), "253 and the root dot");
        assert_eq!(HostName::parse(""), Err(NameError::Empty));
        assert!(HostName::parse("é.test").is_err(), "IDNs must be written as A-labels");
    }

    #[test]
    fn domain_patterns() {
        let p = DomainPattern::parse("*.Contoso.com").expect("pattern");
        assert_eq!(p.to_string(), "*.contoso.com");
        assert!(p.matches("mail.contoso.com") && p.matches("a.b.contoso.com"));
        assert!(!p.matches("contoso.com") && !p.matches("evilcontoso.com"));
        assert_eq!(DomainPattern::parse("*"), Ok(DomainPattern::Any));
        assert!(DomainPattern::parse("a.*.test").is_err());
        assert_eq!(
            DomainPattern::parse("contoso.com")
                .ok()
                .and_then(|p| p.concrete().cloned()),
            HostName::parse("contoso.com").ok()
        );
    }

    #[test]
    fn hostport_forms() {
        let hp = HostPort::parse("[::1]:2525").expect("v6");
        assert_eq!(hp.to_string(), "[::1]:2525");
        assert_eq!(hp.port, Some(2525));
        let hp = HostPort::parse("Mail.Test:26").expect("name");
        assert_eq!(hp.to_string(), "mail.test:26");
        assert_eq!(HostPort::parse("127.0.0.1").map(|h| h.port), Ok(None));
        assert!(HostPort::parse("bad host").is_err());
        assert!(HostPort::parse("x.test:0").is_err());
        assert!(HostPort::parse("127.0.0.1:0").is_err());
    }

    #[test]
    fn connector_names_count_characters() {
        let long = "é".repeat(128);
        assert!(ConnectorName::parse(&long).is_ok(), "128 characters, 256 bytes");
        assert!(ConnectorName::parse(&"é".repeat(129)).is_err());
        assert!(ConnectorName::parse("a\u{7}b").is_err());
        assert_eq!(
            ConnectorName::sanitize(&format!(" x\u{7}{}", "é".repeat(200))).map(|n| n.as_str().chars().count()),
            Some(128)
        );
        assert_eq!(ConnectorName::sanitize("\u{7}\u{8}"), None);
    }
}
