//! Human and machine renderings of a probe report. JSON is a contract other tools drive;
//! text is for an admin at a terminal (colour only when stdout is one).

use crate::probe::ProbeReport;
use crate::taxonomy::Code;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn json(report: &ProbeReport) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"cannot encode report: {e}\"}}"))
}

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
        for c in &a.certificates {
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
        if !a.delivered && !a.transcript.lines().is_empty() {
            let _ = writeln!(o, "      transcript:");
            for l in a
                .transcript
                .lines()
                .iter()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
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
