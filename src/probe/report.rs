//! What a probe found: one [`Attempt`] per address tried and the connector's verdict
//! ([`ProbeReport`]), shaped like Exchange Online's queue view. Serialised as `check`'s JSON.

use super::smtp::Transcript;
use super::tls::CertSummary;
use super::{Phase, ProbeError, sanitize};
use crate::config::TlsSettings;
use crate::taxonomy::{Code, Reason};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

/// What was negotiated, in rustls' own names (`TLSv1.3`, `TLS13_AES_256_GCM_SHA384`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

impl TlsInfo {
    /// rustls' names; the version's `TLSv1_3` is written the usual way, `TLSv1.3`.
    pub fn from_connection(conn: &rustls::ClientConnection) -> TlsInfo {
        let unknown = || "unknown".to_string();
        TlsInfo {
            version: conn
                .protocol_version()
                .and_then(|v| v.as_str())
                .map(|v| v.replace('_', "."))
                .unwrap_or_else(unknown),
            cipher: conn
                .negotiated_cipher_suite()
                .and_then(|c| c.suite().as_str())
                .map(str::to_string)
                .unwrap_or_else(unknown),
        }
    }
}

/// One attempt at one address (or a DNS failure for one name).
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// What the connector names: the smart host or the recipient domain.
    pub target: String,
    /// The server name tried (MX exchange or smart host).
    pub host: String,
    pub mx_preference: Option<u16>,
    pub ip: Option<IpAddr>,
    pub port: u16,
    /// Our side of the connection: Exchange Online connects from Microsoft's ranges, not this.
    pub source_address: Option<SocketAddr>,
    pub delivered: bool,
    pub code: Option<Code>,
    pub reason: Option<Reason>,
    pub phase: Option<Phase>,
    pub message: String,
    pub error: Option<String>,
    pub server_reply: Option<String>,
    /// Delivered without TLS (allowed only with tls_settings none).
    pub plaintext: bool,
    pub durations: BTreeMap<Phase, f64>,
    pub tls: Option<TlsInfo>,
    pub certificates: Arc<[CertSummary]>,
    /// Certificate rules the chain breaks (reported even when the TLS setting does not enforce them).
    pub certificate_problems: Vec<Reason>,
    pub certificate_detail: Option<String>,
    pub extensions: Vec<String>,
    pub transcript: Transcript,
    /// The step under way, so a probe deadline can name what it interrupted.
    #[serde(skip)]
    pub in_flight: Option<Phase>,
}

/// The verdict for a connector, shaped like Exchange Online's queue view.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub connector: String,
    pub delivered: bool,
    pub code: Option<Code>,
    pub reason: Option<Reason>,
    pub phase: Option<Phase>,
    pub message: String,
    pub tls_settings: TlsSettings,
    pub routing: &'static str,
    #[serde(serialize_with = "crate::timefmt::serialize_rfc3339")]
    pub started_at: SystemTime,
    pub duration_seconds: f64,
    pub warnings: Vec<String>,
    pub attempts: Vec<Attempt>,
    /// Whether the whole-probe deadline cut the probe short.
    pub deadline_reached: bool,
    /// Targets the probe had no time left for (`host [ip:port]` or `host`).
    pub not_reached: Vec<String>,
    /// Index into `attempts` of the one the top level reports.
    #[serde(skip)]
    pub reported: Option<usize>,
}

impl ProbeReport {
    /// The attempt the top level reports: the last one of the first failing route, or the
    /// first delivering one.
    pub fn reported_attempt(&self) -> Option<&Attempt> {
        self.reported.and_then(|i| self.attempts.get(i))
    }

    /// The JSON other tools drive (`check --output json`, `/probe?format=json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"cannot encode report: {e}\"}}"))
    }
}

impl Attempt {
    pub fn new(target: String, host: String, pref: Option<u16>, ip: Option<IpAddr>, port: u16) -> Attempt {
        Attempt {
            target,
            host,
            mx_preference: pref,
            ip,
            port,
            source_address: None,
            delivered: false,
            code: None,
            reason: None,
            phase: None,
            message: String::new(),
            error: None,
            server_reply: None,
            plaintext: false,
            durations: BTreeMap::new(),
            tls: None,
            certificates: Arc::default(),
            certificate_problems: vec![],
            certificate_detail: None,
            extensions: vec![],
            transcript: Transcript::default(),
            in_flight: None,
        }
    }

    /// Marks the attempt failed with this error, and writes the Exchange-style message.
    pub fn fail(&mut self, e: &ProbeError) {
        let reason = e.reason();
        let code = reason.code();
        self.delivered = false;
        self.code = Some(code);
        self.reason = Some(reason);
        self.phase = Some(e.phase());
        let detail = match (e, &self.certificate_detail) {
            (ProbeError::Certificate { .. }, Some(d)) => d.clone(),
            _ => e.to_string(),
        };
        self.error = Some(sanitize(&detail, 300));
        self.server_reply = e.reply().map(|r| r.first_line());
        let msg_text = match e.reply() {
            Some(r) => r.first_line(),
            None => detail,
        };
        let ip = match self.ip {
            Some(ip) => format!(" [LastAttemptedIP={}]", SocketAddr::new(ip, self.port)),
            None => String::new(),
        };
        self.message = format!(
            "{} {} [Message={}] [LastAttemptedServerName={}]{}",
            code.smtp_prefix(),
            code.title(),
            sanitize(&msg_text, 200),
            self.host,
            ip
        );
    }
}
