//! TLS as Exchange Online applies it: TLS 1.2 minimum, and certificate rules that depend on the
//! connector's TLS setting. The presented chain is always captured and summarised — also when
//! it fails — because an admin needs to see *which* certificate is wrong.

use crate::config::TlsSettings;
use crate::taxonomy::Reason;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use x509_parser::prelude::*;

/// Where a certificate sits in the presented chain. Also a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertPosition {
    Leaf,
    /// Anything after the leaf.
    Intermediate,
}

impl CertPosition {
    pub fn as_str(self) -> &'static str {
        match self {
            CertPosition::Leaf => "leaf",
            CertPosition::Intermediate => "intermediate",
        }
    }
}

impl std::fmt::Display for CertPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the trust anchors or the TLS client configuration could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{file}: not a PEM certificate file: {detail}")]
    NotPem { file: String, detail: String },
    #[error("{file}: unusable CA certificate: {detail}")]
    BadCa { file: String, detail: String },
    #[error("{file}: no certificate found")]
    Empty { file: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// One certificate of the presented chain, as an admin wants to read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    pub position: CertPosition,
    pub subject: String,
    pub subject_alt_names: Vec<String>,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    pub signature_algorithm: String,
    pub self_signed: bool,
}

impl CertSummary {
    /// DNS names the certificate covers (SANs; the CN only when there are no SANs).
    pub fn dns_names(&self) -> Vec<String> {
        let sans: Vec<String> = self
            .subject_alt_names
            .iter()
            .filter_map(|s| s.strip_prefix("DNS:"))
            .map(|s| s.to_ascii_lowercase())
            .collect();
        // RFC 6125: the CN counts only when the certificate has no subjectAltName at all.
        if !self.subject_alt_names.is_empty() {
            return sans;
        }
        self.subject
            .split(", ")
            .filter_map(|p| p.strip_prefix("CN="))
            .map(|s| s.to_ascii_lowercase())
            .collect()
    }
}

const SHA1_OIDS: [&str; 4] = [
    "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
    "1.2.840.10045.4.1",    // ecdsa-with-SHA1
    "1.2.840.10040.4.3",    // dsa-with-sha1
    "1.3.14.3.2.29",        // sha1WithRSASignature (OIW)
];

fn sig_alg_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => "sha1WithRSAEncryption",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10040.4.3" => "dsa-with-SHA1",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "rsassaPss",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.3.101.112" => "ed25519",
        other => return other.to_string(),
    }
    .to_string()
}

/// Summarises one DER certificate; `None` if it does not parse.
pub(crate) fn summarize(der: &[u8], position: CertPosition) -> Option<CertSummary> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for gn in ext.value.general_names.iter().take(100) {
            match gn {
                GeneralName::DNSName(d) => sans.push(format!("DNS:{}", crate::probe::escape(d, 253))),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b)
                            .ok()
                            .map(|a| std::net::IpAddr::from(a).to_string()),
                        16 => <[u8; 16]>::try_from(*b)
                            .ok()
                            .map(|a| std::net::IpAddr::from(a).to_string()),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.push(format!("IP:{ip}"));
                    }
                }
                _ => {}
            }
        }
    }
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    let fmt_time = |t: ASN1Time| crate::timefmt::rfc3339_unix(t.timestamp()).unwrap_or_else(|| t.to_string());
    Some(CertSummary {
        position,
        subject: crate::probe::escape(&cert.subject().to_string(), 300),
        subject_alt_names: sans,
        issuer: crate::probe::escape(&cert.issuer().to_string(), 300),
        serial: cert.raw_serial_as_string().replace(':', ""),
        not_before: fmt_time(cert.validity().not_before),
        not_after: fmt_time(cert.validity().not_after),
        not_before_unix: cert.validity().not_before.timestamp(),
        not_after_unix: cert.validity().not_after.timestamp(),
        signature_algorithm: sig_alg_name(&oid),
        self_signed: cert.subject() == cert.issuer(),
    })
}

/// Does a certificate name cover the connector's expected name?
/// `expected` may be `*.contoso.com` (Exchange Online: any subdomain of contoso.com);
/// `presented` may be a one-label wildcard `*.contoso.com` (RFC 6125).
pub fn name_matches(expected: &str, presented: &str) -> bool {
    let e = expected.trim_end_matches('.').to_ascii_lowercase();
    let p = presented.trim_end_matches('.').to_ascii_lowercase();
    if e.is_empty() || p.is_empty() {
        return false;
    }
    if e == p {
        return true;
    }
    if let Some(suffix) = e.strip_prefix('*') {
        // suffix = ".contoso.com": any name below it, or the same wildcard
        let p_body = p.strip_prefix("*.").map(|b| format!(".{b}"));
        return (p.ends_with(suffix) && p.len() > suffix.len() && !p.starts_with('*'))
            || p_body
                .as_deref()
                .is_some_and(|b| b.ends_with(suffix) && b.len() > suffix.len());
    }
    if let Some(base) = p.strip_prefix("*.") {
        return e
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == base);
    }
    false
}

/// What the verifier saw: the chain and every rule it broke (first = the reason reported).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CertVerdict {
    /// Shared: the same chain is kept by the report, the host's state and the [`ChainCache`].
    pub chain: Arc<[CertSummary]>,
    pub problems: Vec<Reason>,
    /// Human detail for the first problem.
    pub detail: Option<String>,
}

/// Chains seen lately, by SHA-256 of their DER: the summary and the chain check's result. A
/// connector probed every minute presents the same chain each time, and parsing it and checking
/// its signatures was a fifth of a probe's CPU; the handshake's own signature (the server
/// holding the key) is still checked on every probe. Entries live an hour (a root could
/// expire); results that depend on the date are never kept; at most [`ChainCache::MAX`].
#[derive(Debug, Default)]
pub struct ChainCache {
    entries: Mutex<std::collections::HashMap<[u8; 32], CachedChain>>,
}

#[derive(Debug, Clone)]
struct CachedChain {
    chain: Arc<[CertSummary]>,
    /// The chain check's verdict (None: leads to a trust anchor).
    error: Option<(Reason, String)>,
    checked_at: u64,
}

impl ChainCache {
    pub const MAX: usize = 1024;
    const TTL_SECS: u64 = 3600;

    fn key(end_entity: &[u8], intermediates: &[CertificateDer<'_>]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for der in std::iter::once(end_entity).chain(intermediates.iter().map(|c| c.as_ref())) {
            ctx.update(&(der.len() as u64).to_be_bytes());
            ctx.update(der);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    fn get(&self, key: &[u8; 32], now: u64) -> Option<CachedChain> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|e| e.checked_at <= now && now - e.checked_at < Self::TTL_SECS)
            .cloned()
    }

    fn put(&self, key: [u8; 32], entry: CachedChain) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= Self::MAX {
                // Bounded, and simple: more distinct chains than this start over.
                entries.clear();
            }
            entries.insert(key, entry);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Applies the TLS setting's certificate rules and records the chain, even for settings that
/// accept anything.
#[derive(Debug)]
pub struct RecordingVerifier {
    roots: Arc<RootCertStore>,
    chains: Arc<ChainCache>,
    algs: WebPkiSupportedAlgorithms,
    settings: TlsSettings,
    /// Names the certificate must cover under DomainValidation.
    expected_names: Vec<String>,
    verdict: Mutex<Option<CertVerdict>>,
}

impl RecordingVerifier {
    pub fn new(
        roots: Arc<RootCertStore>,
        chains: Arc<ChainCache>,
        provider: &CryptoProvider,
        settings: TlsSettings,
        expected_names: Vec<String>,
    ) -> Self {
        RecordingVerifier {
            roots,
            chains,
            algs: provider.signature_verification_algorithms,
            settings,
            expected_names,
            verdict: Mutex::new(None),
        }
    }

    pub fn take_verdict(&self) -> Option<CertVerdict> {
        self.verdict.lock().ok().and_then(|mut v| v.take())
    }

    /// Parses the presented chain (at most 10 certificates) and checks it leads to a trust
    /// anchor: the part of the verdict that depends only on the bytes (and, rarely, the date).
    fn check_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> CachedChain {
        let chain: Vec<CertSummary> = std::iter::once(end_entity)
            .chain(intermediates.iter())
            .take(10)
            .enumerate()
            .filter_map(|(i, der)| {
                let position = if i == 0 {
                    CertPosition::Leaf
                } else {
                    CertPosition::Intermediate
                };
                summarize(der.as_ref(), position)
            })
            .collect();
        let error = match rustls::server::ParsedCertificate::try_from(end_entity) {
            Err(e) => Some((Reason::CertUntrusted, format!("leaf certificate cannot be parsed: {e}"))),
            Ok(parsed) => rustls::client::verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &self.roots,
                intermediates,
                now,
                self.algs.all,
            )
            .err()
            .map(|e| chain_error(&e)),
        };
        CachedChain {
            chain: chain.into(),
            error,
            checked_at: now.as_secs(),
        }
    }

    fn evaluate(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> CertVerdict {
        let mut v = CertVerdict::default();
        let add = |v: &mut CertVerdict, r: Reason, d: String| {
            if !v.problems.contains(&r) {
                v.problems.push(r);
            }
            if v.detail.is_none() {
                v.detail = Some(d);
            }
        };
        let now_s = now.as_secs();
        let key = ChainCache::key(end_entity.as_ref(), intermediates);
        let cached = self.chains.get(&key, now_s).unwrap_or_else(|| {
            let entry = self.check_chain(end_entity, intermediates, now);
            let dated = entry
                .error
                .as_ref()
                .is_some_and(|(r, _)| matches!(r, Reason::CertExpired | Reason::CertNotYetValid));
            if !dated {
                self.chains.put(key, entry.clone());
            }
            entry
        });
        v.chain = cached.chain;
        let now_s = now_s as i64;
        // Dates first: the most common and most actionable problem.
        for c in v.chain.clone().iter() {
            if now_s > c.not_after_unix {
                add(
                    &mut v,
                    Reason::CertExpired,
                    format!("{} certificate {} expired on {}", c.position, c.subject, c.not_after),
                );
            } else if now_s < c.not_before_unix {
                add(
                    &mut v,
                    Reason::CertNotYetValid,
                    format!(
                        "{} certificate {} is valid only from {}",
                        c.position, c.subject, c.not_before
                    ),
                );
            }
        }
        for c in v.chain.clone().iter() {
            if !c.self_signed && SHA1_OIDS.iter().any(|o| sig_alg_name(o) == c.signature_algorithm) {
                add(
                    &mut v,
                    Reason::CertSha1,
                    format!(
                        "{} certificate {} is signed with {}",
                        c.position, c.subject, c.signature_algorithm
                    ),
                );
            }
        }
        if let Some((reason, detail)) = cached.error {
            add(&mut v, reason, detail);
        }
        if self.settings == TlsSettings::DomainValidation {
            let names = v.chain.first().map(|c| c.dns_names()).unwrap_or_default();
            let ok = self
                .expected_names
                .iter()
                .any(|e| names.iter().any(|n| name_matches(e, n)));
            if !ok {
                add(
                    &mut v,
                    Reason::CertNameMismatch,
                    format!(
                        "certificate names [{}] do not match the TLS domain {}",
                        names.join(", "),
                        self.expected_names.join(" / ")
                    ),
                );
            }
        }
        v
    }
}

/// Maps webpki's first chain error to a reason (both bare and *Context forms).
fn chain_error(e: &rustls::Error) -> (Reason, String) {
    let reason = match e {
        rustls::Error::InvalidCertificate(ce) => match ce {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Reason::CertExpired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => Reason::CertNotYetValid,
            _ => Reason::CertUntrusted,
        },
        _ => Reason::CertUntrusted,
    };
    let detail = match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the chain does not lead to a trusted root CA (self-signed or private CA)".to_string()
        }
        other => format!("chain validation failed: {other}"),
    };
    (reason, detail)
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.evaluate(end_entity, intermediates, now);
        let reject = self.settings.validates_certificate() && !verdict.problems.is_empty();
        if let Ok(mut slot) = self.verdict.lock() {
            *slot = Some(verdict);
        }
        if reject {
            // Exchange Online aborts the handshake; the recorded verdict says why.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        } else {
            Ok(ServerCertVerified::assertion())
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Trust anchors: Mozilla's public CA list (close to what Exchange Online trusts) plus optional
/// extra CA files for labs.
pub fn root_store(extra_ca_pems: &[(String, Vec<u8>)]) -> Result<RootCertStore, TlsSetupError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for (name, pem) in extra_ca_pems {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| TlsSetupError::NotPem {
                file: name.clone(),
                detail: e.to_string(),
            })?;
            roots.add(cert).map_err(|e| TlsSetupError::BadCa {
                file: name.clone(),
                detail: e.to_string(),
            })?;
            n += 1;
        }
        if n == 0 {
            return Err(TlsSetupError::Empty { file: name.clone() });
        }
    }
    Ok(roots)
}

/// Whether a byte can start a TLS record (content types 20-24: change_cipher_spec, alert,
/// handshake, application_data, heartbeat).
pub fn is_tls_record_start(b: u8) -> bool {
    (0x14..=0x18).contains(&b)
}

/// The stream the TLS handshake runs on: first the bytes the SMTP reader had already taken
/// after "220 Ready", then the socket. Remembers the server's first byte, so a failed handshake
/// can tell plaintext (an injection) from TLS however the bytes were split across reads.
pub struct ServerFirst<S> {
    inner: S,
    early: Vec<u8>,
    pos: usize,
    first: Arc<std::sync::OnceLock<u8>>,
}

impl<S> ServerFirst<S> {
    pub fn new(inner: S, early: Vec<u8>) -> Self {
        let first = Arc::new(std::sync::OnceLock::new());
        if let Some(b) = early.first() {
            let _ = first.set(*b);
        }
        ServerFirst {
            inner,
            early,
            pos: 0,
            first,
        }
    }

    /// The server's first byte after "220 Ready", once one has arrived.
    pub fn first_byte(&self) -> Arc<std::sync::OnceLock<u8>> {
        self.first.clone()
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for ServerFirst<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.early.len() {
            let n = buf.remaining().min(this.early.len() - this.pos);
            buf.put_slice(&this.early[this.pos..this.pos + n]);
            this.pos += n;
            return std::task::Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Some(b) = buf.filled().get(before) {
            let _ = this.first.set(*b);
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for ServerFirst<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A client config for one attempt (its own verifier, so the verdict is per attempt).
pub fn client_config(
    provider: Arc<CryptoProvider>,
    verifier: Arc<RecordingVerifier>,
    time: Arc<dyn rustls::time_provider::TimeProvider>,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let mut cfg = rustls::ClientConfig::builder_with_details(provider, time)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // A resumed session shows no certificate, and each probe must see the chain.
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.enable_sni = true;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn self_signed(not_after_unix: i64) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["mx.cache.test".to_string()]).expect("params");
        params.not_before = ::time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("date");
        params.not_after = ::time::OffsetDateTime::from_unix_timestamp(not_after_unix).expect("date");
        params.self_signed(&key).expect("cert").der().clone()
    }

    fn verifier(chains: &Arc<ChainCache>) -> RecordingVerifier {
        RecordingVerifier::new(
            Arc::new(RootCertStore::empty()),
            chains.clone(),
            &rustls::crypto::ring::default_provider(),
            TlsSettings::CertificateValidation,
            vec![],
        )
    }

    #[test]
    fn a_chain_is_checked_once_and_its_dates_every_time() {
        let not_after = 1_900_000_000;
        let leaf = self_signed(not_after);
        let chains = Arc::new(ChainCache::default());
        let at = |s: i64| UnixTime::since_unix_epoch(Duration::from_secs(s as u64));
        let first = verifier(&chains).evaluate(&leaf, &[], at(not_after - 1800));
        assert_eq!(chains.len(), 1, "checked and kept");
        assert!(first.problems.contains(&Reason::CertUntrusted), "{first:?}");
        assert!(!first.problems.contains(&Reason::CertExpired), "{first:?}");
        // Another probe of the same chain: the same summary (shared), the same chain verdict.
        let again = verifier(&chains).evaluate(&leaf, &[], at(not_after - 60));
        assert!(Arc::ptr_eq(&first.chain, &again.chain), "taken from the cache");
        assert_eq!(again.problems, first.problems);
        // Within the hour but past its expiry: the cached chain, and the date checked anew.
        let later = verifier(&chains).evaluate(&leaf, &[], at(not_after + 60));
        assert!(Arc::ptr_eq(&first.chain, &later.chain));
        assert_eq!(later.problems.first(), Some(&Reason::CertExpired), "{later:?}");
        // Another chain is another entry; an hour later the first is checked again.
        let other = self_signed(not_after);
        verifier(&chains).evaluate(&other, &[], at(not_after - 1800));
        assert_eq!(chains.len(), 2);
        let fresh = verifier(&chains).evaluate(&leaf, &[], at(not_after + 3600));
        assert!(!Arc::ptr_eq(&first.chain, &fresh.chain), "re-checked after the hour");
    }

    #[test]
    fn tls_domain_matching() {
        assert!(name_matches("mail.contoso.com", "mail.contoso.com"));
        assert!(name_matches("MAIL.contoso.com.", "mail.CONTOSO.com"));
        assert!(name_matches("mail.contoso.com", "*.contoso.com"));
        assert!(!name_matches("a.mail.contoso.com", "*.contoso.com"));
        assert!(!name_matches("contoso.com", "*.contoso.com"));
        // Exchange's *.contoso.com: any subdomain, any depth
        assert!(name_matches("*.contoso.com", "mail.contoso.com"));
        assert!(name_matches("*.contoso.com", "a.b.contoso.com"));
        assert!(name_matches("*.contoso.com", "*.contoso.com"));
        assert!(name_matches("*.contoso.com", "*.eu.contoso.com"));
        assert!(!name_matches("*.contoso.com", "contoso.com"));
        assert!(!name_matches("*.contoso.com", "mail.fabrikam.com"));
        assert!(!name_matches("*.contoso.com", "evilcontoso.com"));
        assert!(!name_matches("mail.contoso.com", "other.example"));
    }
}
