//! DNS as Exchange Online uses it for a connector: MX (with preferences, null MX, NODATA) and
//! A/AAAA. No cache and no hosts file, so every probe sees what the DNS publishes now.

use crate::taxonomy::Reason;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What went wrong with a lookup, already in the bounded vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsFailure {
    NxDomain,
    ServFail,
    Timeout,
    Refused,
    NoAddress,
    NullMx,
    /// The answer names something that is not a host name (a hostile or broken zone).
    InvalidName(String),
    Unreachable(String),
}

impl DnsFailure {
    pub fn reason(&self) -> Reason {
        match self {
            DnsFailure::NxDomain => Reason::Nxdomain,
            DnsFailure::ServFail => Reason::Servfail,
            DnsFailure::Timeout => Reason::DnsTimeout,
            DnsFailure::Refused => Reason::DnsRefused,
            DnsFailure::NoAddress => Reason::NoAddress,
            DnsFailure::NullMx => Reason::NullMx,
            DnsFailure::InvalidName(_) => Reason::InvalidName,
            DnsFailure::Unreachable(_) => Reason::DnsUnreachable,
        }
    }
}

impl fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsFailure::NxDomain => f.write_str("NXDOMAIN (name does not exist)"),
            DnsFailure::ServFail => f.write_str("SERVFAIL"),
            DnsFailure::Timeout => f.write_str("no answer (timeout)"),
            DnsFailure::Refused => f.write_str("REFUSED"),
            DnsFailure::NoAddress => f.write_str("no A or AAAA record"),
            DnsFailure::NullMx => f.write_str("null MX (domain accepts no mail)"),
            DnsFailure::InvalidName(n) => write!(f, "the answer names an invalid host ({n})"),
            DnsFailure::Unreachable(m) => write!(f, "no DNS server reachable ({m})"),
        }
    }
}

/// The MX answer for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// Exchanges sorted by preference (stable for equal preferences); `Err` holds the escaped
    /// text of an exchange that is not a valid host name.
    Hosts(Vec<(u16, Result<String, String>)>),
    /// The name exists but has no MX: use its own A/AAAA (RFC 5321 implicit MX).
    NoData,
}

/// Why the resolver could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolverError {
    #[error("cannot read the system resolver configuration: {0}")]
    SystemConfig(String),
    #[error("cannot build the DNS resolver: {0}")]
    Build(String),
}

#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    /// `servers` empty: the system resolver configuration (/etc/resolv.conf).
    pub fn new(servers: &[SocketAddr], per_try_timeout: Duration) -> Result<Dns, ResolverError> {
        let config = if servers.is_empty() {
            let (cfg, _) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| ResolverError::SystemConfig(e.to_string()))?;
            ResolverConfig::from_parts(None, vec![], cfg.name_servers().to_vec())
        } else {
            let ns = servers
                .iter()
                .map(|sa| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = sa.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = sa.port();
                    NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
                })
                .collect();
            ResolverConfig::from_parts(None, vec![], ns)
        };
        let mut opts = ResolverOpts::default();
        // One retry per lookup; each call also has a hard deadline of its own.
        opts.timeout = per_try_timeout.max(Duration::from_millis(50));
        opts.attempts = 1;
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        opts.num_concurrent_reqs = 1;
        let resolver = hickory_resolver::Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| ResolverError::Build(e.to_string()))?;
        Ok(Dns { resolver })
    }

    pub async fn mx(&self, name: &str, timeout: Duration) -> Result<MxAnswer, DnsFailure> {
        let fqdn = fqdn(name);
        let lookup = match tokio::time::timeout(timeout, self.resolver.mx_lookup(fqdn.as_str())).await {
            Err(_) => return Err(DnsFailure::Timeout),
            Ok(Err(e)) => {
                return match classify(&e) {
                    Classified::NoData => Ok(MxAnswer::NoData),
                    Classified::Failure(f) => Err(f),
                };
            }
            Ok(Ok(l)) => l,
        };
        let mut hosts: Vec<(u16, Result<String, String>)> = Vec::new();
        let mut null = false;
        for record in lookup.answers() {
            if let RData::MX(mx) = &record.data {
                if mx.exchange.is_root() {
                    null = true;
                    continue;
                }
                let text = mx.exchange.to_ascii();
                let host = match crate::config::HostName::parse(&text) {
                    Ok(h) => Ok(h.as_str().to_string()),
                    Err(_) => Err(crate::probe::escape(&text, 100)),
                };
                if !hosts.iter().any(|(_, h)| *h == host) {
                    hosts.push((mx.preference, host));
                }
            }
        }
        if hosts.is_empty() {
            return if null {
                Err(DnsFailure::NullMx)
            } else {
                Ok(MxAnswer::NoData)
            };
        }
        hosts.sort_by_key(|(p, _)| *p);
        Ok(MxAnswer::Hosts(hosts))
    }

    /// Whether a resolver answers at all (any response code) within `timeout`: the agent's
    /// own health, apart from what the partners' zones say.
    pub async fn answers(&self, timeout: Duration) -> bool {
        match self.mx(".", timeout).await {
            Ok(_) => true,
            Err(DnsFailure::Timeout | DnsFailure::Unreachable(_)) => false,
            Err(_) => true,
        }
    }

    /// IPv4 then IPv6 addresses. An error on one family is ignored when the other has addresses.
    pub async fn addresses(&self, name: &str, timeout: Duration) -> Result<Vec<IpAddr>, DnsFailure> {
        let fqdn = fqdn(name);
        let v4 = collect_addresses(self.resolver.ipv4_lookup(fqdn.as_str()), timeout);
        let v6 = collect_addresses(self.resolver.ipv6_lookup(fqdn.as_str()), timeout);
        let (v4, v6) = tokio::join!(v4, v6);
        match (v4, v6) {
            (Err(DnsFailure::NxDomain), _) | (_, Err(DnsFailure::NxDomain)) => Err(DnsFailure::NxDomain),
            (Ok(a), Ok(b)) => {
                let all: Vec<IpAddr> = a.into_iter().chain(b).collect();
                if all.is_empty() {
                    Err(DnsFailure::NoAddress)
                } else {
                    Ok(all)
                }
            }
            (Ok(a), Err(e)) | (Err(e), Ok(a)) => {
                if a.is_empty() {
                    Err(e)
                } else {
                    Ok(a)
                }
            }
            (Err(e), Err(_)) => Err(e),
        }
    }
}

/// Runs one address lookup with a hard deadline; NODATA is an empty list, not an error.
async fn collect_addresses(
    lookup: impl std::future::Future<Output = Result<hickory_resolver::lookup::Lookup, NetError>>,
    timeout: Duration,
) -> Result<Vec<IpAddr>, DnsFailure> {
    match tokio::time::timeout(timeout, lookup).await {
        Err(_) => Err(DnsFailure::Timeout),
        Ok(Ok(l)) => Ok(l
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()),
        Ok(Err(e)) => match classify(&e) {
            Classified::NoData => Ok(vec![]),
            Classified::Failure(f) => Err(f),
        },
    }
}

fn fqdn(name: &str) -> String {
    let n = name.trim_end_matches('.');
    format!("{n}.")
}

enum Classified {
    NoData,
    Failure(DnsFailure),
}

/// The one place where resolver errors become bounded DNS failures.
fn classify(e: &NetError) -> Classified {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(nr)) => match nr.response_code {
            ResponseCode::NXDomain => Classified::Failure(DnsFailure::NxDomain),
            ResponseCode::NoError => Classified::NoData,
            ResponseCode::Refused => Classified::Failure(DnsFailure::Refused),
            _ => Classified::Failure(DnsFailure::ServFail),
        },
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => Classified::Failure(DnsFailure::Refused),
        NetError::Dns(DnsError::ResponseCode(ResponseCode::NXDomain)) => Classified::Failure(DnsFailure::NxDomain),
        NetError::Dns(_) => Classified::Failure(DnsFailure::ServFail),
        NetError::Timeout => Classified::Failure(DnsFailure::Timeout),
        NetError::NoConnections => Classified::Failure(DnsFailure::Unreachable("no connections".into())),
        NetError::Io(io) => match io.kind() {
            std::io::ErrorKind::TimedOut => Classified::Failure(DnsFailure::Timeout),
            k => Classified::Failure(DnsFailure::Unreachable(k.to_string())),
        },
        other => {
            let msg = other.to_string();
            if msg.contains("timed out") {
                Classified::Failure(DnsFailure::Timeout)
            } else {
                Classified::Failure(DnsFailure::Unreachable(crate::probe::escape(&msg, 80)))
            }
        }
    }
}
