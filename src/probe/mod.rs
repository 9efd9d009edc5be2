//! The probe: one file per phase (dns, connect, smtp, tls) and the orchestration (`engine`).
//! Errors are typed per phase and become a bounded `Reason` in exactly one function
//! (`ProbeError::reason`).

pub mod connect;
pub mod dns;
pub mod engine;
pub mod report;
pub mod smtp;
pub mod tls;

pub use crate::config::ProbeSpec;
pub use engine::{Prober, ProberError, ProberOptions};
pub use report::{Attempt, ProbeReport, TlsInfo};

use crate::taxonomy::Reason;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// The steps of one delivery attempt, in order. Also a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Dns,
    Connect,
    Banner,
    Ehlo,
    Starttls,
    TlsHandshake,
    /// EHLO repeated inside TLS.
    EhloTls,
    Quit,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Dns,
        Phase::Connect,
        Phase::Banner,
        Phase::Ehlo,
        Phase::Starttls,
        Phase::TlsHandshake,
        Phase::EhloTls,
        Phase::Quit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Dns => "dns",
            Phase::Connect => "connect",
            Phase::Banner => "banner",
            Phase::Ehlo => "ehlo",
            Phase::Starttls => "starttls",
            Phase::TlsHandshake => "tls_handshake",
            Phase::EhloTls => "ehlo_tls",
            Phase::Quit => "quit",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an attempt failed, per phase (in the spirit of KumoMTA's rfc5321 client errors).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    #[error("DNS {qtype} lookup of {name} failed: {failure}")]
    Dns {
        name: String,
        qtype: &'static str,
        failure: dns::DnsFailure,
    },
    #[error("TCP connect got no answer within {}", humantime::format_duration(*after))]
    ConnectTimeout { after: Duration },
    #[error("TCP connect refused")]
    ConnectRefused,
    #[error("host or network unreachable ({0})")]
    Unreachable(String),
    #[error("no complete reply to {phase} within {}", humantime::format_duration(*after))]
    TimeOutResponse { phase: Phase, after: Duration },
    #[error("server closed the connection during {phase}")]
    Closed { phase: Phase },
    #[error("connection reset during {phase}")]
    Reset { phase: Phase },
    #[error("{phase}: {detail}")]
    Protocol { phase: Phase, detail: String },
    #[error("{phase} rejected: {reply}")]
    Rejected { phase: Phase, reply: smtp::Reply },
    #[error("{phase}: unexpected reply {reply}")]
    UnexpectedReply { phase: Phase, reply: smtp::Reply },
    #[error("TLS is required but the server does not offer STARTTLS")]
    StarttlsNotOffered,
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    #[error("certificate rejected: {}", reason.describe())]
    Certificate { reason: Reason },
    #[error("local error: {0}")]
    Local(String),
}

impl ProbeError {
    /// The single mapping from what happened to a bounded reason (and so to a code).
    pub fn reason(&self) -> Reason {
        match self {
            ProbeError::Dns { failure, .. } => failure.reason(),
            ProbeError::ConnectTimeout { .. } => Reason::ConnectTimeout,
            ProbeError::ConnectRefused => Reason::Refused,
            ProbeError::Unreachable(_) => Reason::Unreachable,
            ProbeError::TimeOutResponse { .. } => Reason::ReadTimeout,
            ProbeError::Closed { .. } => Reason::Closed,
            ProbeError::Reset { .. } => Reason::Reset,
            ProbeError::Protocol { .. } => Reason::ProtocolError,
            ProbeError::Rejected { phase, .. } => match phase {
                Phase::Banner => Reason::BannerRejected,
                Phase::Starttls => Reason::StarttlsRejected,
                _ => Reason::EhloRejected,
            },
            ProbeError::UnexpectedReply { .. } => Reason::UnexpectedReply,
            ProbeError::StarttlsNotOffered => Reason::StarttlsNotOffered,
            ProbeError::Handshake(_) => Reason::TlsHandshakeFailed,
            ProbeError::Certificate { reason } => *reason,
            ProbeError::Local(_) => Reason::LocalError,
        }
    }

    pub fn phase(&self) -> Phase {
        match self {
            ProbeError::Dns { .. } => Phase::Dns,
            ProbeError::ConnectTimeout { .. } | ProbeError::ConnectRefused | ProbeError::Unreachable(_) => {
                Phase::Connect
            }
            ProbeError::TimeOutResponse { phase, .. }
            | ProbeError::Closed { phase }
            | ProbeError::Reset { phase }
            | ProbeError::Protocol { phase, .. }
            | ProbeError::Rejected { phase, .. }
            | ProbeError::UnexpectedReply { phase, .. } => *phase,
            ProbeError::StarttlsNotOffered => Phase::Ehlo,
            ProbeError::Handshake(_) | ProbeError::Certificate { .. } => Phase::TlsHandshake,
            ProbeError::Local(_) => Phase::Connect,
        }
    }

    /// The server's reply, when the failure is one.
    pub fn reply(&self) -> Option<&smtp::Reply> {
        match self {
            ProbeError::Rejected { reply, .. } | ProbeError::UnexpectedReply { reply, .. } => Some(reply),
            _ => None,
        }
    }
}

/// Escapes control and non-ASCII characters and truncates, so server text is safe to log and show.
/// Idempotent (backslashes are left alone), so text escaped at the parser can pass through again.
pub fn escape(input: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (count, c) in input.chars().enumerate() {
        if count >= max_chars {
            out.push('…');
            break;
        }
        match c {
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    out
}

/// Same as [`escape`] for raw bytes (invalid UTF-8 becomes `\xNN`).
pub fn escape_bytes(input: &[u8], max_chars: usize) -> String {
    let mut out = String::new();
    for (count, b) in input.iter().enumerate() {
        if count >= max_chars {
            out.push('…');
            break;
        }
        match *b {
            b if b.is_ascii_graphic() || b == b' ' => out.push(b as char),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_terminal_control() {
        assert_eq!(escape("ok \x1b[31mred\r\n", 100), "ok \\x1b[31mred\\r\\n");
        assert_eq!(escape("abcdef", 3), "abc…");
        assert_eq!(escape_bytes(b"a\xff\x00", 10), "a\\xff\\x00");
        assert_eq!(escape("é", 10), "\\xe9");
        let once = escape("a\x07b", 50);
        assert_eq!(escape(&once, 50), once, "escaping twice changes nothing");
    }
}
