//! Orchestration: turn a connector into targets the way Exchange Online does (MX first for a
//! smart host name, MX of each recipient domain otherwise), then run one attempt per address:
//! connect → banner → EHLO → STARTTLS → handshake → certificate rules → EHLO → QUIT.

use super::dns::{Dns, MxAnswer, ResolverError};
use super::report::{Attempt, ProbeReport, TlsInfo};
use super::smtp::{Limits, Reply, Session, Transcript};
use super::tls::{RecordingVerifier, TlsSetupError};
use super::{Phase, ProbeError, connect, escape, sanitize, tls};
use crate::config::{Host, HostPort, ProbeSpec, Routing, TlsSettings};
use crate::taxonomy::{Code, Reason};
use futures_util::StreamExt;
use futures_util::stream;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::time_provider::TimeProvider;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::{Instant, timeout_at};

/// Bounds so a hostile DNS answer cannot make one probe run for ever.
const MAX_MX_HOSTS: usize = 8;
const MAX_ADDRS_PER_HOST: usize = 4;
const MAX_ATTEMPTS_PER_ROUTE: usize = 16;
/// Lookups in flight at once for one probe (smart hosts, recipient domains, MX exchanges).
const DNS_CONCURRENCY: usize = 4;

#[derive(Default)]
pub struct ProberOptions {
    /// Empty: the system resolver.
    pub dns_servers: Vec<SocketAddr>,
    /// Extra trust anchors (file name, PEM bytes) — labs and private CAs only.
    pub extra_ca: Vec<(String, Vec<u8>)>,
    /// Clock for certificate dates (tests inject one).
    pub time: Option<Arc<dyn TimeProvider>>,
    pub limits: Limits,
}

/// Why a prober could not be built (resolver or trust anchors).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProberError {
    #[error(transparent)]
    Resolver(#[from] ResolverError),
    #[error(transparent)]
    TrustAnchors(#[from] TlsSetupError),
}

pub struct Prober {
    dns: Dns,
    roots: Arc<rustls::RootCertStore>,
    provider: Arc<CryptoProvider>,
    time: Arc<dyn TimeProvider>,
    limits: Limits,
    private_ca: bool,
}

enum Plan {
    Connect {
        target: String,
        host: String,
        pref: Option<u16>,
        addr: SocketAddr,
        dns_secs: f64,
    },
    DnsFailed {
        target: String,
        host: String,
        pref: Option<u16>,
        error: ProbeError,
        dns_secs: f64,
    },
}

impl Plan {
    /// How the report names a target it had no time for.
    fn describe(&self) -> String {
        match self {
            Plan::Connect { host, addr, .. } => format!("{host} [{addr}]"),
            Plan::DnsFailed { host, .. } => host.clone(),
        }
    }
}

impl Prober {
    pub fn new(opts: ProberOptions) -> Result<Prober, ProberError> {
        let dns = Dns::new(&opts.dns_servers, Duration::from_secs(3))?;
        let roots = tls::root_store(&opts.extra_ca)?;
        Ok(Prober {
            dns,
            roots: Arc::new(roots),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            time: opts
                .time
                .unwrap_or_else(|| Arc::new(rustls::time_provider::DefaultTimeProvider)),
            limits: opts.limits,
            private_ca: !opts.extra_ca.is_empty(),
        })
    }

    /// Whether the resolvers answer at all (the agent's self-check).
    pub async fn resolver_answers(&self, timeout: Duration) -> bool {
        self.dns.answers(timeout).await
    }

    pub async fn probe(&self, spec: &ProbeSpec) -> ProbeReport {
        let started = SystemTime::now();
        let t0 = Instant::now();
        let deadline = t0 + spec.deadline;
        // A route is what one recipient sees: all smart hosts together, or one domain's MX set.
        // Names are resolved a few at a time, all within the probe's deadline.
        let routes: Vec<(String, Vec<Plan>)> = match &spec.routing {
            Routing::SmartHosts(hosts) => {
                // The futures are made first: a stream of futures keeps the probe future `Send`
                // where a mapping closure would not.
                let lookups: Vec<_> = hosts
                    .iter()
                    .map(|h| self.resolve_smart_host(spec, h, deadline))
                    .collect();
                let per_host: Vec<Vec<Plan>> = stream::iter(lookups).buffered(DNS_CONCURRENCY).collect().await;
                vec![("smart_hosts".to_string(), per_host.into_iter().flatten().collect())]
            }
            Routing::Mx(domains) => {
                let lookups: Vec<_> = domains
                    .iter()
                    .map(|d| self.resolve_name(spec, d.as_str(), d.as_str(), spec.port, deadline))
                    .collect();
                let per_domain: Vec<Vec<Plan>> = stream::iter(lookups).buffered(DNS_CONCURRENCY).collect().await;
                domains.iter().map(|d| d.to_string()).zip(per_domain).collect()
            }
        };

        let mut attempts = Vec::new();
        let mut failing_route_last: Option<usize> = None;
        let mut all_delivered = true;
        let mut not_reached = Vec::new();
        let mut deadline_attempt: Option<usize> = None;
        let mut over_cap = Vec::new();
        for (_route, plans) in routes {
            let mut route_ok = false;
            let mut last_idx = None;
            for (i, plan) in plans.into_iter().enumerate() {
                if i >= MAX_ATTEMPTS_PER_ROUTE {
                    over_cap.push(plan.describe());
                    continue;
                }
                // A lookup that already failed costs nothing to report, deadline or not.
                let connects = matches!(plan, Plan::Connect { .. });
                if connects && (deadline_attempt.is_some() || Instant::now() >= deadline) {
                    not_reached.push(plan.describe());
                    continue;
                }
                let (a, cut) = self.run_plan(spec, plan, deadline).await;
                route_ok |= a.delivered;
                attempts.push(a);
                last_idx = Some(attempts.len() - 1);
                if cut && deadline_attempt.is_none() {
                    deadline_attempt = last_idx;
                }
            }
            if !route_ok {
                all_delivered = false;
                if failing_route_last.is_none() {
                    failing_route_last = last_idx;
                }
            }
        }
        let deadline_reached = deadline_attempt.is_some() || !not_reached.is_empty();

        let mut warnings = Vec::new();
        if attempts.iter().any(|a| a.delivered && a.plaintext) {
            warnings.push(
                "delivered without encryption: the server does not offer STARTTLS (allowed only because tls_settings is none)".into(),
            );
        }
        for a in attempts
            .iter()
            .filter(|a| !a.certificate_problems.is_empty() && a.delivered)
        {
            warnings.push(format!(
                "{} ({}): certificate would fail validation ({}) — accepted only because tls_settings is {}",
                a.host,
                a.ip.map(|i| i.to_string()).unwrap_or_default(),
                a.certificate_problems
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                spec.tls_settings
            ));
        }
        if self.private_ca && spec.tls_settings.validates_certificate() {
            warnings.push("extra CA files are trusted: Exchange Online trusts public CAs only".into());
        }
        if !over_cap.is_empty() {
            warnings.push(sanitize(
                &format!(
                    "more than {MAX_ATTEMPTS_PER_ROUTE} addresses on a route; not tried: {}",
                    over_cap.join(", ")
                ),
                1000,
            ));
        }
        if deadline_reached {
            let mut w = format!(
                "the probe deadline of {} was reached",
                humantime::format_duration(spec.deadline)
            );
            if !not_reached.is_empty() {
                w.push_str(&format!("; not tried: {}", not_reached.join(", ")));
            }
            warnings.push(sanitize(&w, 1000));
        }

        let reported_idx = if all_delivered {
            attempts.iter().position(|a| a.delivered)
        } else {
            failing_route_last.or(deadline_attempt)
        };
        let reported = reported_idx.and_then(|i| attempts.get(i));
        let (code, reason, phase, message) = match reported {
            Some(a) if !all_delivered => (a.code, a.reason, a.phase, a.message.clone()),
            Some(a) => (None, None, None, a.message.clone()),
            None => (
                Some(Code::DnsQueryFailed),
                Some(Reason::NoAddress),
                Some(Phase::Dns),
                format!(
                    "{} {} [Message=no target to try]",
                    Code::DnsQueryFailed.smtp_prefix(),
                    Code::DnsQueryFailed.title()
                ),
            ),
        };
        ProbeReport {
            connector: spec.connector.clone(),
            delivered: all_delivered && reported.is_some(),
            code,
            reason,
            phase,
            message,
            tls_settings: spec.tls_settings,
            routing: spec.routing.label(),
            started_at: started,
            duration_seconds: t0.elapsed().as_secs_f64(),
            warnings,
            attempts,
            deadline_reached,
            not_reached,
            reported: reported_idx,
        }
    }

    async fn resolve_smart_host(&self, spec: &ProbeSpec, h: &HostPort, deadline: Instant) -> Vec<Plan> {
        let port = h.port.unwrap_or(spec.port);
        match &h.host {
            Host::Ip(ip) => vec![Plan::Connect {
                target: h.to_string(),
                host: ip.to_string(),
                pref: None,
                addr: SocketAddr::new(*ip, port),
                dns_secs: 0.0,
            }],
            // Exchange Online looks up MX first for a smart host name, then A/AAAA.
            Host::Name(name) => {
                self.resolve_name(spec, name.as_str(), &h.to_string(), port, deadline)
                    .await
            }
        }
    }

    /// MX (preference order) → addresses of each exchange; NODATA → the name's own addresses.
    async fn resolve_name(
        &self,
        spec: &ProbeSpec,
        name: &str,
        target: &str,
        port: u16,
        deadline: Instant,
    ) -> Vec<Plan> {
        let dns_failed = |host: &str, pref, qtype, failure, dns_secs| Plan::DnsFailed {
            target: target.to_string(),
            host: host.to_string(),
            pref,
            error: ProbeError::Dns {
                name: host.to_string(),
                qtype,
                failure,
            },
            dns_secs,
        };
        let cut = |host: &str, pref, dns_secs| Plan::DnsFailed {
            target: target.to_string(),
            host: host.to_string(),
            pref,
            error: ProbeError::Deadline {
                phase: Phase::Dns,
                after: spec.deadline,
            },
            dns_secs,
        };
        let t = Instant::now();
        let mx = timeout_at(deadline, self.dns.mx(name, spec.timeout)).await;
        let mx_secs = t.elapsed().as_secs_f64();
        let hosts: Vec<(Option<u16>, Result<String, String>)> = match mx {
            Err(_) => return vec![cut(name, None, mx_secs)],
            Ok(Ok(MxAnswer::Hosts(h))) => h.into_iter().take(MAX_MX_HOSTS).map(|(p, n)| (Some(p), n)).collect(),
            Ok(Ok(MxAnswer::NoData)) => vec![(None, Ok(name.to_string()))],
            Ok(Err(failure)) => return vec![dns_failed(name, None, "MX", failure, mx_secs)],
        };
        let lookups: Vec<_> = hosts
            .into_iter()
            .map(|(pref, host)| async move {
                let host = match host {
                    Ok(h) => h,
                    Err(bad) => {
                        let failure = super::dns::DnsFailure::InvalidName(bad.clone());
                        return vec![dns_failed(&bad, pref, "MX", failure, mx_secs)];
                    }
                };
                let t = Instant::now();
                let addrs = timeout_at(deadline, self.dns.addresses(&host, spec.timeout)).await;
                let dns_secs = mx_secs + t.elapsed().as_secs_f64();
                match addrs {
                    Err(_) => vec![cut(&host, pref, dns_secs)],
                    Ok(Ok(ips)) => ips
                        .into_iter()
                        .take(MAX_ADDRS_PER_HOST)
                        .map(|ip| Plan::Connect {
                            target: target.to_string(),
                            host: host.clone(),
                            pref,
                            addr: SocketAddr::new(ip, port),
                            dns_secs,
                        })
                        .collect(),
                    Ok(Err(failure)) => vec![dns_failed(&host, pref, "A/AAAA", failure, dns_secs)],
                }
            })
            .collect();
        let lookups: Vec<Vec<Plan>> = stream::iter(lookups).buffered(DNS_CONCURRENCY).collect().await;
        lookups.into_iter().flatten().collect()
    }

    /// One attempt; true when the probe's deadline cut it off.
    async fn run_plan(&self, spec: &ProbeSpec, plan: Plan, deadline: Instant) -> (Attempt, bool) {
        match plan {
            Plan::DnsFailed {
                target,
                host,
                pref,
                error,
                dns_secs,
            } => {
                let mut a = Attempt::new(target, host, pref, None, spec.port);
                a.durations.insert(Phase::Dns, dns_secs);
                let cut = matches!(error, ProbeError::Deadline { .. });
                a.fail(&error);
                (a, cut)
            }
            Plan::Connect {
                target,
                host,
                pref,
                addr,
                dns_secs,
            } => {
                let mut a = Attempt::new(target, host, pref, Some(addr.ip()), addr.port());
                if dns_secs > 0.0 {
                    a.durations.insert(Phase::Dns, dns_secs);
                }
                let mut transcript = Transcript::default();
                let result = timeout_at(deadline, self.dialogue(spec, addr, &mut a, &mut transcript)).await;
                a.transcript = transcript;
                let result = result.unwrap_or_else(|_| {
                    Err(ProbeError::Deadline {
                        phase: a.in_flight.unwrap_or(Phase::Connect),
                        after: spec.deadline,
                    })
                });
                let cut = matches!(result, Err(ProbeError::Deadline { .. }));
                match result {
                    Ok(()) => {
                        a.delivered = true;
                        a.message = format!(
                            "Delivered: {} [{}] accepted the session{}",
                            a.host,
                            addr,
                            match &a.tls {
                                Some(t) => format!(" over {} ({})", t.version, t.cipher),
                                None => " without TLS".to_string(),
                            }
                        );
                    }
                    Err(e) => a.fail(&e),
                }
                a.in_flight = None;
                (a, cut)
            }
        }
    }

    async fn dialogue(
        &self,
        spec: &ProbeSpec,
        addr: SocketAddr,
        a: &mut Attempt,
        tr: &mut Transcript,
    ) -> Result<(), ProbeError> {
        a.in_flight = Some(Phase::Connect);
        let t = Instant::now();
        let tcp = connect::connect(addr, spec.timeout).await;
        a.durations.insert(Phase::Connect, t.elapsed().as_secs_f64());
        let tcp = tcp?;
        a.source_address = tcp.local_addr().ok();
        let mut s = Session::new(tcp, spec.timeout, self.limits);

        a.in_flight = Some(Phase::Banner);
        let t = Instant::now();
        let banner = s.read_reply(Phase::Banner, tr).await;
        a.durations.insert(Phase::Banner, t.elapsed().as_secs_f64());
        let banner = banner?;
        if banner.is_negative() {
            return Err(ProbeError::Rejected {
                phase: Phase::Banner,
                reply: banner,
            });
        }
        if banner.code != 220 {
            return Err(ProbeError::UnexpectedReply {
                phase: Phase::Banner,
                reply: banner,
            });
        }

        let offered = match self.plain_steps(&mut s, spec, a, tr).await {
            Ok(offered) => offered,
            Err(e) => {
                // The server refused something but still talks: end politely, as an MTA would,
                // so its logs show a clean QUIT rather than a lost connection.
                if matches!(
                    e,
                    ProbeError::Rejected { .. } | ProbeError::UnexpectedReply { .. } | ProbeError::StarttlsNotOffered
                ) {
                    self.quit_quietly(&mut s, spec, tr).await;
                }
                return Err(e);
            }
        };
        if !offered {
            a.plaintext = true;
            self.quit(&mut s, a, tr).await;
            return Ok(());
        }
        // Whatever follows "220 Ready" is judged by its first byte, whether it came in the same
        // read as the 220 or later: TLS records go to the handshake, plaintext is an injection.
        if s.pending().first().is_some_and(|b| !tls::is_tls_record_start(*b)) {
            return Err(injection(s.pending(), tr));
        }
        let (tcp, early) = s.into_parts();
        let tcp = tls::ServerFirst::new(tcp, early);
        let first_byte = tcp.first_byte();

        let expected = self.expected_names(spec, &a.target, &a.host);
        let verifier = Arc::new(RecordingVerifier::new(
            self.roots.clone(),
            &self.provider,
            spec.tls_settings,
            expected,
        ));
        let cfg = tls::client_config(self.provider.clone(), verifier.clone(), self.time.clone())
            .map_err(|e| ProbeError::Local(e.to_string()))?;
        let server_name = match a.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(a.host.clone()).unwrap_or(ServerName::IpAddress(addr.ip().into())),
        };
        tr.push("C:", "(TLS handshake)");
        a.in_flight = Some(Phase::TlsHandshake);
        let t = Instant::now();
        let hs = tokio::time::timeout(
            spec.timeout,
            tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(server_name, tcp),
        )
        .await;
        a.durations.insert(Phase::TlsHandshake, t.elapsed().as_secs_f64());
        let verdict = verifier.take_verdict();
        if let Some(v) = &verdict {
            a.certificates = v.chain.clone();
            a.certificate_problems = v.problems.clone();
            a.certificate_detail = v.detail.clone();
        }
        let tls_stream = match hs {
            Err(_) => {
                return Err(ProbeError::TimeOutResponse {
                    phase: Phase::TlsHandshake,
                    after: spec.timeout,
                });
            }
            Ok(Err(e)) => {
                if let Some(first) = first_byte.get().copied().filter(|b| !tls::is_tls_record_start(*b)) {
                    return Err(injection(&[first], tr));
                }
                return Err(handshake_error(&e, verdict.as_ref(), spec.tls_settings));
            }
            Ok(Ok(s)) => s,
        };
        {
            let (_, conn) = tls_stream.get_ref();
            a.tls = Some(TlsInfo::from_connection(conn));
            tr.push(
                "S:",
                &format!(
                    "(TLS established: {})",
                    a.tls.as_ref().map(|t| t.version.as_str()).unwrap_or("")
                ),
            );
        }

        let mut s = Session::new(tls_stream, spec.timeout, self.limits);
        a.in_flight = Some(Phase::EhloTls);
        let t = Instant::now();
        let r = self.ehlo(&mut s, spec, Phase::EhloTls, tr).await;
        a.durations.insert(Phase::EhloTls, t.elapsed().as_secs_f64());
        r?;
        self.quit(&mut s, a, tr).await;
        Ok(())
    }

    /// EHLO and, when the server offers it, STARTTLS. Ok(false): no STARTTLS and the TLS setting
    /// allows plaintext; Ok(true): the server said 220 to STARTTLS.
    async fn plain_steps(
        &self,
        s: &mut Session<tokio::net::TcpStream>,
        spec: &ProbeSpec,
        a: &mut Attempt,
        tr: &mut Transcript,
    ) -> Result<bool, ProbeError> {
        a.in_flight = Some(Phase::Ehlo);
        let t = Instant::now();
        let ehlo = self.ehlo(s, spec, Phase::Ehlo, tr).await;
        a.durations.insert(Phase::Ehlo, t.elapsed().as_secs_f64());
        let ehlo = ehlo?;
        a.extensions = ehlo.keywords().take(32).map(|k| sanitize(&k, 40)).collect();
        if !ehlo.has_keyword("STARTTLS") {
            if spec.tls_settings.requires_tls() {
                return Err(ProbeError::StarttlsNotOffered);
            }
            return Ok(false);
        }
        a.in_flight = Some(Phase::Starttls);
        let t = Instant::now();
        let r = s.command(Phase::Starttls, "STARTTLS", tr).await;
        a.durations.insert(Phase::Starttls, t.elapsed().as_secs_f64());
        let r = r?;
        if r.code != 220 {
            return Err(ProbeError::Rejected {
                phase: Phase::Starttls,
                reply: r,
            });
        }
        Ok(true)
    }

    /// QUIT after a refusal, bounded to a short wait; never changes the verdict.
    async fn quit_quietly<S>(&self, s: &mut Session<S>, spec: &ProbeSpec, tr: &mut Transcript)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let cap = spec.timeout.min(Duration::from_secs(2));
        let _ = tokio::time::timeout(cap, s.command(Phase::Quit, "QUIT", tr)).await;
    }

    /// EHLO, with HELO as fallback when EHLO is not recognised (500/502), as MTAs do.
    async fn ehlo<S>(
        &self,
        s: &mut Session<S>,
        spec: &ProbeSpec,
        phase: Phase,
        tr: &mut Transcript,
    ) -> Result<Reply, ProbeError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let r = s.command(phase, &format!("EHLO {}", spec.helo), tr).await?;
        if r.code == 250 {
            return Ok(r);
        }
        if matches!(r.code, 500 | 502) {
            let h = s.command(phase, &format!("HELO {}", spec.helo), tr).await?;
            if h.code == 250 {
                return Ok(h);
            }
            return Err(if h.is_negative() {
                ProbeError::Rejected { phase, reply: h }
            } else {
                ProbeError::UnexpectedReply { phase, reply: h }
            });
        }
        Err(if r.is_negative() {
            ProbeError::Rejected { phase, reply: r }
        } else {
            ProbeError::UnexpectedReply { phase, reply: r }
        })
    }

    /// QUIT is a courtesy: its outcome never changes the verdict.
    async fn quit<S>(&self, s: &mut Session<S>, a: &mut Attempt, tr: &mut Transcript)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        a.in_flight = Some(Phase::Quit);
        let t = Instant::now();
        let _ = s.command(Phase::Quit, "QUIT", tr).await;
        a.durations.insert(Phase::Quit, t.elapsed().as_secs_f64());
    }

    /// Names the certificate must match under DomainValidation: the TLS domain, else the
    /// recipient domains, else the host name we connected to.
    fn expected_names(&self, spec: &ProbeSpec, target: &str, host: &str) -> Vec<String> {
        if let Some(d) = &spec.tls_domain {
            return vec![d.to_string()];
        }
        let mut names: Vec<String> = match &spec.routing {
            // Each MX route is judged against its own recipient domain.
            Routing::Mx(_) => vec![target.to_string()],
            Routing::SmartHosts(_) => spec
                .recipient_domains
                .iter()
                .filter(|d| **d != crate::config::DomainPattern::Any)
                .map(|d| d.to_string())
                .collect(),
        };
        if names.is_empty() {
            names.push(host.to_string());
        }
        names
    }
}

/// The server spoke plaintext where TLS had to start: a STARTTLS injection, or a broken server.
fn injection(bytes: &[u8], tr: &mut Transcript) -> ProbeError {
    let extra = super::escape_bytes(bytes, 80);
    tr.push("S:", &format!("{extra} (sent before the TLS handshake)"));
    ProbeError::Protocol {
        phase: Phase::Starttls,
        detail: "the server sent plaintext after \"220 Ready to start TLS\" (possible STARTTLS injection)".into(),
    }
}

fn handshake_error(e: &std::io::Error, verdict: Option<&tls::CertVerdict>, settings: TlsSettings) -> ProbeError {
    if settings.validates_certificate()
        && let Some(r) = verdict.and_then(|v| v.problems.first())
    {
        return ProbeError::Certificate { reason: *r };
    }
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::UnexpectedEof => ProbeError::Closed {
            phase: Phase::TlsHandshake,
        },
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => ProbeError::Reset {
            phase: Phase::TlsHandshake,
        },
        _ => {
            let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
            match inner {
                Some(rustls::Error::AlertReceived(alert)) => {
                    ProbeError::Handshake(format!("the server sent the TLS alert {alert:?}"))
                }
                Some(rustls::Error::PeerIncompatible(p)) => {
                    ProbeError::Handshake(format!("no common TLS version or cipher (TLS 1.2+ required): {p:?}"))
                }
                Some(rustls::Error::InvalidCertificate(_)) => ProbeError::Certificate {
                    reason: Reason::CertUntrusted,
                },
                Some(other) => ProbeError::Handshake(escape(&other.to_string(), 200)),
                None => ProbeError::Handshake(escape(&e.to_string(), 200)),
            }
        }
    }
}
