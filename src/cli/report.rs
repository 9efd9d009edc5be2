//! Human and machine renderings of a probe report. JSON is a contract other tools drive;
//! text is for an admin at a terminal (colour only when stdout is one).

use crate::config::Connector;
use crate::probe::ProbeReport;
use crate::taxonomy::Code;
use crate::tenant::{AcceptedDomain, ConnectorQueue};
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn red(&self, s: &str) -> String {
        self.paint("1;31", s)
    }
    fn green(&self, s: &str) -> String {
        self.paint("1;32", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
}

/// Renders the report for a person. All server-controlled text in the report is already escaped.
pub fn text(report: &ProbeReport, colour: bool) -> String {
    let st = Style { on: colour };
    let mut o = String::new();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if report.delivered {
        let _ = writeln!(
            o,
            "{} Connector \"{}\": Exchange Online would deliver (tls_settings: {}).",
            st.green("DELIVERED"),
            report.connector,
            report.tls_settings
        );
        let _ = writeln!(o, "  {}", report.message);
    } else {
        let code = report.code.unwrap_or(Code::Other);
        let _ = writeln!(
            o,
            "{} Connector \"{}\": mail would queue in Exchange Online with {} {}.",
            st.red("NOT DELIVERED"),
            report.connector,
            st.bold(code.as_str()),
            code.title()
        );
        let _ = writeln!(o, "  {}", report.message);
        if let Some(r) = report.reason {
            let _ = writeln!(
                o,
                "  Seen: {} (reason {}, phase {})",
                r.describe(),
                r.as_str(),
                report.phase.map(|p| p.as_str()).unwrap_or("-")
            );
        }
        let _ = writeln!(o, "  Likely causes:");
        for c in code.causes() {
            let _ = writeln!(o, "    - {c}");
        }
        let _ = writeln!(o, "  Fix: {}", code.fix());
        let _ = writeln!(
            o,
            "  {}",
            st.dim(
                "Exchange Online retries for up to 24 h (the tenant's message expiration), then bounces with an NDR."
            )
        );
    }
    for w in &report.warnings {
        let _ = writeln!(o, "  {} {w}", st.yellow("warning:"));
    }
    let _ = writeln!(o, "\nAttempts ({}):", report.attempts.len());
    for a in &report.attempts {
        let addr = match a.ip {
            Some(ip) => std::net::SocketAddr::new(ip, a.port).to_string(),
            None => "-".into(),
        };
        let verdict = if a.delivered {
            st.green("ok")
        } else {
            st.red(&format!(
                "{} {}",
                a.code.map(|c| c.as_str()).unwrap_or("?"),
                a.reason.map(|r| r.as_str()).unwrap_or("?")
            ))
        };
        let pref = a.mx_preference.map(|p| format!(" MX {p}")).unwrap_or_default();
        let _ = writeln!(o, "  {} {}{} [{}] via {}", verdict, a.host, pref, addr, a.target);
        if let Some(e) = &a.error {
            let _ = writeln!(o, "      {e}");
        }
        if !a.durations.is_empty() {
            let d: Vec<String> = a
                .durations
                .iter()
                .map(|(p, s)| format!("{}={:.0}ms", p.as_str(), s * 1000.0))
                .collect();
            let _ = writeln!(o, "      {}", st.dim(&d.join(" ")));
        }
        if let Some(t) = &a.tls {
            let _ = writeln!(o, "      TLS: {} {}", t.version, t.cipher);
        }
        for c in a.certificates.iter() {
            let days = (c.not_after_unix - now) / 86_400;
            let expiry = if c.not_after_unix < now {
                st.red(&format!("EXPIRED {} days ago", -days))
            } else if days < 14 {
                st.yellow(&format!("expires in {days} days"))
            } else {
                format!("expires in {days} days")
            };
            let _ = writeln!(
                o,
                "      {} cert: {} (issuer {}) — {} ({})",
                c.position, c.subject, c.issuer, expiry, c.not_after
            );
            if !c.subject_alt_names.is_empty() {
                let _ = writeln!(o, "        SAN: {}", c.subject_alt_names.join(", "));
            }
            let _ = writeln!(o, "        serial {} · {}", c.serial, c.signature_algorithm);
        }
        if !a.certificate_problems.is_empty() {
            let p: Vec<&str> = a.certificate_problems.iter().map(|r| r.as_str()).collect();
            let _ = writeln!(o, "      certificate problems: {}", p.join(", "));
        }
        if !a.delivered && !a.transcript.is_empty() {
            let _ = writeln!(o, "      transcript:");
            for l in a.transcript.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev() {
                let _ = writeln!(o, "        {}", st.dim(l));
            }
        }
    }
    if let Some(src) = report.attempts.iter().find_map(|a| a.source_address) {
        let _ = writeln!(
            o,
            "\n{}",
            st.dim(&format!(
                "Probed from {}. Exchange Online connects from Microsoft 365's addresses: a firewall that admits only those can look refused or silent from here.",
                src.ip()
            ))
        );
    }
    o
}

/// Exchange Online's own view of the checked connector (`check --config` with a tenant).
#[derive(Debug, Clone, Default)]
pub struct Microsoft {
    /// Microsoft's queue for the connector (None when it could not be read).
    pub queue: Option<ConnectorQueue>,
    /// Accepted domains, when `tenant.sync` is on and they could be read.
    pub accepted_domains: Vec<AcceptedDomain>,
    /// Why the queue could not be read, escaped.
    pub error: Option<String>,
}

impl Microsoft {
    fn exo(&self) -> crate::agent::exo::ExoState {
        crate::agent::exo::ExoState {
            sync: Some(std::sync::Arc::new(crate::agent::exo::Synced {
                at: SystemTime::now(),
                connectors: vec![],
                message_expiration: None,
                accepted_domains: self.accepted_domains.clone(),
            })),
            ..Default::default()
        }
    }

    fn migrated(&self, report: &ProbeReport, connector: &Connector) -> Option<String> {
        let exo = self.exo();
        crate::agent::exo::migrated_domain(&exo, connector, report.code)
            .map(|d| crate::agent::exo::migrated_fix(connector.name(), d))
    }

    fn mismatch(&self, report: &ProbeReport) -> bool {
        crate::agent::exo::vantage_mismatch(self.queue.as_ref(), Some(report.delivered))
    }
}

/// The `check` JSON, with Exchange Online's view under `microsoft` when there is one.
pub fn json_with_microsoft(report: &ProbeReport, ms: Option<&Microsoft>, connector: Option<&Connector>) -> String {
    let (Some(m), Ok(mut v)) = (ms, serde_json::to_value(report)) else {
        return report.to_json();
    };
    let now = SystemTime::now();
    let q = m.queue.as_ref();
    let reason = q.and_then(|q| q.last_reason.as_ref());
    let microsoft = serde_json::json!({
        "held": q.map(|q| q.total()),
        "by_code": q.map(|q| q.pending.iter().map(|(c, n)| (c.as_str().to_string(), serde_json::Value::from(*n))).collect::<serde_json::Map<_, _>>()),
        "oldest_age_seconds": q.and_then(|q| q.oldest_received).map(|t| now.duration_since(t).map(|d| d.as_secs_f64()).unwrap_or(0.0)),
        "code": reason.and_then(|r| r.status.clone()),
        "reason": reason.map(|r| r.text.clone()),
        "server": reason.and_then(|r| r.server.clone()),
        "ip": reason.and_then(|r| r.ip.clone()),
        "error": m.error,
        "vantage_mismatch": m.mismatch(report),
        "migrated_fix": connector.and_then(|c| m.migrated(report, c)),
    });
    if let Some(o) = v.as_object_mut() {
        o.insert("microsoft".into(), microsoft);
    }
    serde_json::to_string_pretty(&v).unwrap_or_else(|_| report.to_json())
}

/// Exchange Online's view for a person, after the probe's.
pub fn microsoft_text(report: &ProbeReport, m: &Microsoft, connector: &Connector) -> String {
    let mut o = String::from("\nExchange Online's view (message trace):\n");
    match (&m.queue, &m.error) {
        (_, Some(e)) => {
            let _ = writeln!(o, "  could not be read: {e}");
        }
        (Some(q), None) if q.total() == 0 => {
            let _ = writeln!(o, "  nothing held for this connector");
        }
        (Some(q), None) => {
            let codes: Vec<String> = q.pending.iter().map(|(c, n)| format!("{} x{n}", c.as_str())).collect();
            let age = q
                .oldest_received
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(|d| {
                    format!(
                        ", oldest received {} ago",
                        humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(o, "  {} message(s) held ({}){age}", q.total(), codes.join(", "));
            if let Some(r) = &q.last_reason {
                let _ = writeln!(o, "  last defer reason: {}", r.text);
            }
        }
        (None, None) => {
            let _ = writeln!(o, "  not read");
        }
    }
    if m.mismatch(report) {
        let _ = writeln!(
            o,
            "  The views disagree: Microsoft holds mail while this probe is delivered. Something admits this \
             machine but not Microsoft 365's addresses (allow Microsoft 365's IP ranges on port 25), or \
             Exchange Online takes a route this probe does not."
        );
    }
    if let Some(fix) = m.migrated(report, connector) {
        let _ = writeln!(o, "  {fix}");
    }
    o
}
