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
    #[error("the probe deadline of {} was reached during {phase}", humantime::format_duration(*after))]
    Deadline { phase: Phase, after: Duration },
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
            // The step in flight timed out, as far as Exchange Online could tell.
            ProbeError::Deadline { phase, .. } => match phase {
                Phase::Dns => Reason::DnsTimeout,
                Phase::Connect => Reason::ConnectTimeout,
                _ => Reason::ReadTimeout,
            },
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
            | ProbeError::UnexpectedReply { phase, .. }
            | ProbeError::Deadline { phase, .. } => *phase,
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

/// Makes raw server text safe to log and show, once, where it enters: control and non-ASCII
/// characters become `\r`, `\n`, `\t`, `\xNN`, `\u{N}`, a backslash becomes `\\` (so a literal
/// `\x1b` sent by a server cannot pass for an escaped byte), and the text is cut at `max_chars`.
pub fn escape(input: &str, max_chars: usize) -> String {
    encode(input.chars(), max_chars, true)
}

/// [`escape`] for raw bytes (invalid UTF-8 becomes `\xNN`).
pub fn escape_bytes(input: &[u8], max_chars: usize) -> String {
    encode(input.iter().map(|&b| b as char), max_chars, true)
}

/// For text that is already safe (escaped server text, our own words): neutralises any control
/// or non-ASCII character that slipped in and truncates, but leaves backslashes alone, so
/// passing escaped text through again changes nothing.
pub fn sanitize(input: &str, max_chars: usize) -> String {
    encode(input.chars(), max_chars, false)
}

fn encode(input: impl Iterator<Item = char>, max_chars: usize, raw: bool) -> String {
    let mut out = String::new();
    for (count, c) in input.enumerate() {
        if count >= max_chars {
            out.push('…');
            break;
        }
        match c {
            '\\' if raw => out.push_str("\\\\"),
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            '…' if !raw => out.push(c),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
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
        assert_eq!(sanitize(&once, 50), once, "sanitizing escaped text changes nothing");
        // A server that sends the characters `\x1b` must not look like one that sent ESC.
        assert_eq!(escape("\\x1b", 50), "\\\\x1b");
        assert_ne!(escape("\\x1b", 50), escape("\x1b", 50));
        assert_eq!(escape_bytes(b"a\\b", 10), "a\\\\b");
        let cut = escape("abcdef", 3);
        assert_eq!(sanitize(&cut, 50), cut, "the ellipsis survives");
    }
}
