//! STARTTLS, the handshake and the certificate rules of each TLS setting, against real rustls
//! servers on loopback presenting certificates minted by the lab PKI.
//!
//! Smart hosts are given by name (`mail.lab.test:PORT`) and resolved through a fake DNS (A →
//! 127.0.0.1, MX NoData), so the name is used for SNI and for the name check exactly as with a
//! real connector; IP literals are used only where no name matters.

use crate::support::certs::{DAY, assert_days_from_now, not_after_of, now_unix};
use crate::support::dns::{LAB_HOST, host_zone, lab_dns, lab_zone, serve};
use crate::support::sha1::{Sha1Error, sha1_leaf};
use crate::support::{probe, smtp};
use mailflow_exporter::config::TlsSettings;
use mailflow_exporter::lab::dns::{Answer, FakeDns, Qtype, Record};
use mailflow_exporter::lab::pki::{CertKey, LabPki, TestCa};
use mailflow_exporter::lab::smtp::{Behavior, FaultServer};
use mailflow_exporter::probe::tls::CertPosition;
use mailflow_exporter::probe::{Attempt, Phase, ProbeReport, ProbeSpec, ProberOptions};
use mailflow_exporter::taxonomy::{Code, Reason};
use rustls::pki_types::UnixTime;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::time_provider::TimeProvider;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A connector with the smart host `mail.lab.test:<port>`.
fn named_spec(port: u16, tls: TlsSettings, tls_domain: Option<&str>) -> ProbeSpec {
    let mut s = probe::spec(vec![probe::named(LAB_HOST, port)], tls);
    s.tls_domain = tls_domain.map(probe::pattern);
    s
}

/// Starts DNS and a STARTTLS server presenting `ck`, probes `mail.lab.test:<port>` with
/// `ca_pem` as extra trust anchor, and returns the report.
async fn probe_named(ck: &CertKey, ca_pem: Option<String>, tls: TlsSettings, tls_domain: Option<&str>) -> ProbeReport {
    probe_named_spec(ck, ca_pem, |port| named_spec(port, tls, tls_domain)).await
}

async fn probe_named_spec(ck: &CertKey, ca_pem: Option<String>, make: impl FnOnce(u16) -> ProbeSpec) -> ProbeReport {
    let dns = lab_dns().await;
    let server = smtp::starttls(ck).await;
    let spec = make(server.addr().port());
    probe::probe(probe::opts(Some(dns.addr()), ca_pem), &spec).await
}

/// The single attempt of a one-address connector, checked to be the reported one.
#[track_caller]
fn only_attempt(r: &ProbeReport) -> &Attempt {
    let dump = serde_json::to_string_pretty(r).unwrap();
    assert_eq!(r.attempts.len(), 1, "{dump}");
    let a = &r.attempts[0];
    assert!(r.reported_attempt().is_some_and(|x| std::ptr::eq(x, a)), "{dump}");
    a
}

/// Asserts a 4.7.320 failure with `reason` at tls_handshake, and that the presented leaf was
/// captured although validation failed.
#[track_caller]
fn assert_cert_failure(r: &ProbeReport, reason: Reason, presented: &CertKey) -> Attempt {
    probe::assert_fails(r, Code::CertificateValidationFailed, reason, Phase::TlsHandshake);
    assert!(
        r.message.starts_with("450 4.7.320 Certificate validation failed"),
        "{}",
        r.message
    );
    let a = only_attempt(r).clone();
    let dump = serde_json::to_string_pretty(&a).unwrap();
    assert!(!a.delivered, "{dump}");
    assert_eq!(a.code, Some(Code::CertificateValidationFailed), "{dump}");
    assert_eq!(a.reason, Some(reason), "{dump}");
    assert_eq!(a.phase, Some(Phase::TlsHandshake), "{dump}");
    assert!(a.tls.is_none(), "no TLS session after a rejected certificate\n{dump}");
    assert_eq!(a.certificate_problems.first(), Some(&reason), "{dump}");
    assert!(a.certificate_detail.is_some(), "{dump}");
    assert_eq!(
        a.error, a.certificate_detail,
        "the error is the verifier's detail\n{dump}"
    );
    assert_eq!(
        a.certificates.len(),
        presented.chain.len(),
        "chain captured on failure\n{dump}"
    );
    assert_eq!(a.certificates[0].position, CertPosition::Leaf);
    assert_eq!(
        a.certificates[0].not_after_unix,
        not_after_of(&presented.chain[0]),
        "{dump}"
    );
    a
}

/// A clock stuck at a fixed instant, for certificate dates.
#[derive(Debug)]
struct FixedTime(UnixTime);

impl FixedTime {
    fn days_from_now(days: i64) -> Arc<dyn TimeProvider> {
        let secs = now_unix() + (days * DAY) as f64;
        Arc::new(FixedTime(UnixTime::since_unix_epoch(Duration::from_secs_f64(secs))))
    }
}

impl TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// 1. A good certificate
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn good_cert_domain_validation_delivers_with_tls_and_certificate_details() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let dns = lab_dns().await;
    let server = smtp::starttls(&lab.good).await;
    let spec = named_spec(server.addr().port(), TlsSettings::DomainValidation, Some(LAB_HOST));
    let r = probe::probe(probe::opts(Some(dns.addr()), Some(lab.ca.cert_pem())), &spec).await;

    probe::assert_delivered(&r);
    assert_eq!((r.reason, r.phase), (None, None));
    let a = only_attempt(&r);
    let dump = serde_json::to_string_pretty(&r).unwrap();
    assert_eq!(a.host, LAB_HOST, "{dump}");
    assert_eq!(a.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), "{dump}");
    assert_eq!(a.port, server.addr().port());
    assert!(a.delivered && !a.plaintext, "{dump}");
    assert!(a.certificate_problems.is_empty(), "{dump}");
    assert_eq!(a.certificate_detail, None, "{dump}");

    let tls = a.tls.as_ref().expect("TLS info on a delivered TLS attempt");
    assert!(["TLSv1.3", "TLSv1.2"].contains(&tls.version.as_str()), "{dump}");
    assert!(!tls.cipher.is_empty() && tls.cipher != "unknown", "{dump}");
    assert!(tls.cipher.starts_with("TLS"), "cipher {:?}", tls.cipher);
    assert!(
        a.message.starts_with("Delivered: mail.lab.test [127.0.0.1:"),
        "{}",
        a.message
    );
    assert!(
        a.message.contains(&format!("over {} ({})", tls.version, tls.cipher)),
        "{}",
        a.message
    );
    assert_eq!(r.message, a.message);

    assert_eq!(a.certificates.len(), 1, "{dump}");
    let c = &a.certificates[0];
    assert_eq!(c.position, CertPosition::Leaf);
    assert!(c.subject.contains("CN=mail.lab.test"), "subject {:?}", c.subject);
    assert_eq!(c.subject_alt_names, ["DNS:mail.lab.test"]);
    assert!(c.issuer.contains("Mailflow Lab Test CA"), "issuer {:?}", c.issuer);
    assert!(
        !c.serial.is_empty() && c.serial.chars().all(|ch| ch.is_ascii_hexdigit()),
        "serial {:?}",
        c.serial
    );
    assert!(c.not_after_unix as f64 > now_unix(), "{dump}");
    assert_eq!(c.not_after_unix, not_after_of(&lab.good.chain[0]));
    assert_days_from_now(c.not_after_unix, 90);
    assert_days_from_now(c.not_before_unix, -1);
    let not_after = time::OffsetDateTime::parse(&c.not_after, &time::format_description::well_known::Rfc3339)
        .expect("not_after is RFC 3339");
    assert_eq!(not_after.unix_timestamp(), c.not_after_unix);
    assert_eq!(c.signature_algorithm, "ecdsa-with-SHA256");
    assert!(!c.self_signed);

    // The whole dialogue ran, EHLO repeated inside TLS.
    for phase in [Phase::Starttls, Phase::TlsHandshake, Phase::EhloTls, Phase::Quit] {
        assert!(a.durations.contains_key(&phase), "no duration for {phase}\n{dump}");
    }
    assert_eq!(
        server.transcripts(),
        ["EHLO probe.test\nSTARTTLS\nEHLO probe.test\nQUIT\n"]
    );
    // A private CA was trusted: the report says Exchange Online would not.
    assert!(r.warnings.iter().any(|w| w.contains("extra CA")), "{:?}", r.warnings);
}

// ---------------------------------------------------------------------------------------------
// 2. Dates and trust under certificate-validation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn expired_cert_fails_cert_expired() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(
        &lab.expired,
        Some(lab.ca.cert_pem()),
        TlsSettings::CertificateValidation,
        None,
    )
    .await;
    let a = assert_cert_failure(&r, Reason::CertExpired, &lab.expired);
    assert_days_from_now(a.certificates[0].not_after_unix, -30);
    assert!((a.certificates[0].not_after_unix as f64) < now_unix());
    assert!(a.error.as_deref().unwrap().contains("expired"), "{:?}", a.error);
}

#[tokio::test]
async fn not_yet_valid_cert_fails_cert_not_yet_valid() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(
        &lab.not_yet_valid,
        Some(lab.ca.cert_pem()),
        TlsSettings::CertificateValidation,
        None,
    )
    .await;
    let a = assert_cert_failure(&r, Reason::CertNotYetValid, &lab.not_yet_valid);
    assert_days_from_now(a.certificates[0].not_before_unix, 30);
    assert_days_from_now(a.certificates[0].not_after_unix, 400);
    assert!(a.error.as_deref().unwrap().contains("valid only from"), "{:?}", a.error);
}

#[tokio::test]
async fn self_signed_cert_fails_cert_untrusted() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    // The lab CA is trusted, but the self-signed leaf does not chain to it.
    let r = probe_named(
        &lab.self_signed,
        Some(lab.ca.cert_pem()),
        TlsSettings::CertificateValidation,
        None,
    )
    .await;
    let a = assert_cert_failure(&r, Reason::CertUntrusted, &lab.self_signed);
    assert!(a.certificates[0].self_signed);
    assert_eq!(a.certificates[0].subject, a.certificates[0].issuer);
    assert_days_from_now(a.certificates[0].not_after_unix, 90);
    assert_eq!(a.certificate_problems, [Reason::CertUntrusted]);
}

#[tokio::test]
async fn unknown_ca_fails_cert_untrusted() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(
        &lab.unknown_ca,
        Some(lab.ca.cert_pem()),
        TlsSettings::CertificateValidation,
        None,
    )
    .await;
    let a = assert_cert_failure(&r, Reason::CertUntrusted, &lab.unknown_ca);
    assert!(!a.certificates[0].self_signed);
    assert!(
        a.certificates[0].issuer.contains("Mailflow Lab Unknown CA"),
        "{:?}",
        a.certificates[0]
    );
    assert_days_from_now(a.certificates[0].not_after_unix, 90);
    assert_eq!(a.certificate_problems, [Reason::CertUntrusted]);
}

#[tokio::test]
async fn good_cert_without_its_ca_fails_cert_untrusted() {
    // Nothing extra trusted: the lab CA is not a public root.
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(&lab.good, None, TlsSettings::CertificateValidation, None).await;
    assert_cert_failure(&r, Reason::CertUntrusted, &lab.good);
    assert!(!r.warnings.iter().any(|w| w.contains("extra CA")), "{:?}", r.warnings);
}

#[tokio::test]
async fn expired_cert_fails_under_domain_validation_too() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(
        &lab.expired,
        Some(lab.ca.cert_pem()),
        TlsSettings::DomainValidation,
        Some(LAB_HOST),
    )
    .await;
    let a = assert_cert_failure(&r, Reason::CertExpired, &lab.expired);
    assert!(!a.certificate_problems.contains(&Reason::CertNameMismatch), "{a:?}");
}

// ---------------------------------------------------------------------------------------------
// 3./4. Names
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_name_passes_certificate_validation() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(
        &lab.wrong_name,
        Some(lab.ca.cert_pem()),
        TlsSettings::CertificateValidation,
        None,
    )
    .await;
    probe::assert_delivered(&r);
    let a = only_attempt(&r);
    assert!(a.tls.is_some() && !a.plaintext);
    assert!(
        a.certificate_problems.is_empty(),
        "no name check under certificate-validation: {a:?}"
    );
    assert_eq!(a.certificates[0].subject_alt_names, ["DNS:other.example"]);
}

#[tokio::test]
async fn wrong_name_fails_domain_validation() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(
        &lab.wrong_name,
        Some(lab.ca.cert_pem()),
        TlsSettings::DomainValidation,
        Some(LAB_HOST),
    )
    .await;
    let a = assert_cert_failure(&r, Reason::CertNameMismatch, &lab.wrong_name);
    assert_eq!(a.certificate_problems, [Reason::CertNameMismatch]);
    assert_eq!(a.certificates[0].subject_alt_names, ["DNS:other.example"]);
    let err = a.error.as_deref().unwrap();
    assert!(err.contains("other.example") && err.contains(LAB_HOST), "{err}");
    assert!(r.message.contains("other.example"), "{}", r.message);
}

#[tokio::test]
async fn wildcard_tls_domain_accepts_subdomain_cert() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(
        &lab.good,
        Some(lab.ca.cert_pem()),
        TlsSettings::DomainValidation,
        Some("*.lab.test"),
    )
    .await;
    probe::assert_delivered(&r);
    assert!(only_attempt(&r).certificate_problems.is_empty());
}

#[tokio::test]
async fn wildcard_tls_domain_rejects_other_domain_cert() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(
        &lab.wrong_name,
        Some(lab.ca.cert_pem()),
        TlsSettings::DomainValidation,
        Some("*.lab.test"),
    )
    .await;
    let a = assert_cert_failure(&r, Reason::CertNameMismatch, &lab.wrong_name);
    assert!(a.error.as_deref().unwrap().contains("*.lab.test"), "{:?}", a.error);
}

#[tokio::test]
async fn wildcard_cert_covers_tls_domain() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(
        &lab.wildcard,
        Some(lab.ca.cert_pem()),
        TlsSettings::DomainValidation,
        Some(LAB_HOST),
    )
    .await;
    probe::assert_delivered(&r);
    let a = only_attempt(&r);
    assert!(a.certificate_problems.is_empty(), "{a:?}");
    assert_eq!(a.certificates[0].subject_alt_names, ["DNS:*.lab.test"]);
}

#[tokio::test]
async fn wildcard_cert_does_not_cover_two_labels_down() {
    // `*.lab.test` covers one label only (RFC 6125).
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(
        &lab.wildcard,
        Some(lab.ca.cert_pem()),
        TlsSettings::DomainValidation,
        Some("a.mail.lab.test"),
    )
    .await;
    assert_cert_failure(&r, Reason::CertNameMismatch, &lab.wildcard);
}

// ---------------------------------------------------------------------------------------------
// 5. Domain validation without a TLS domain (expected_names)
// ---------------------------------------------------------------------------------------------

/// A connector for `mail.lab.test:<port>` with these recipient domains and no TLS domain.
fn recipient_spec(port: u16, recipients: &[&str]) -> ProbeSpec {
    let mut s = named_spec(port, TlsSettings::DomainValidation, None);
    s.recipient_domains = recipients.iter().map(|d| probe::pattern(d)).collect();
    s
}

#[tokio::test]
async fn no_tls_domain_expects_recipient_domain_pass() {
    let ca = TestCa::new("Mailflow Lab Test CA").unwrap();
    let ck = ca.leaf_valid(&[LAB_HOST, "contoso.test"]).unwrap();
    let r = probe_named_spec(&ck, Some(ca.cert_pem()), |port| recipient_spec(port, &["contoso.test"])).await;
    probe::assert_delivered(&r);
    assert!(only_attempt(&r).certificate_problems.is_empty());
}

#[tokio::test]
async fn no_tls_domain_expects_recipient_domain_not_host_name() {
    // The certificate matches the smart host's name, but the expected name is the recipient
    // domain when no TLS domain is set.
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named_spec(&lab.good, Some(lab.ca.cert_pem()), |port| {
        recipient_spec(port, &["contoso.test"])
    })
    .await;
    let a = assert_cert_failure(&r, Reason::CertNameMismatch, &lab.good);
    assert_eq!(a.certificate_problems, [Reason::CertNameMismatch]);
    assert!(a.error.as_deref().unwrap().contains("contoso.test"), "{:?}", a.error);
}

#[tokio::test]
async fn no_tls_domain_any_recipient_domain_matches() {
    let ca = TestCa::new("Mailflow Lab Test CA").unwrap();
    let ck = ca.leaf_valid(&["fabrikam.test"]).unwrap();
    let r = probe_named_spec(&ck, Some(ca.cert_pem()), |port| {
        recipient_spec(port, &["contoso.test", "fabrikam.test"])
    })
    .await;
    probe::assert_delivered(&r);
}

#[tokio::test]
async fn no_tls_domain_and_no_recipient_domain_falls_back_to_host_name() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    // `*` (all domains) names nothing to match; nor does an empty list.
    for recipients in [&[][..], &["*"][..]] {
        let r = probe_named_spec(&lab.good, Some(lab.ca.cert_pem()), |port| {
            recipient_spec(port, recipients)
        })
        .await;
        probe::assert_delivered(&r);
        let r = probe_named_spec(&lab.wrong_name, Some(lab.ca.cert_pem()), |port| {
            recipient_spec(port, recipients)
        })
        .await;
        let a = assert_cert_failure(&r, Reason::CertNameMismatch, &lab.wrong_name);
        assert!(a.error.as_deref().unwrap().contains(LAB_HOST), "{:?}", a.error);
    }
}

// ---------------------------------------------------------------------------------------------
// 6. encryption-only accepts anything but reports it
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn encryption_only_accepts_expired_cert_with_warning() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(&lab.expired, Some(lab.ca.cert_pem()), TlsSettings::EncryptionOnly, None).await;
    probe::assert_delivered(&r);
    let a = only_attempt(&r);
    assert!(a.tls.is_some() && !a.plaintext, "{a:?}");
    assert_eq!(a.certificate_problems, [Reason::CertExpired]);
    assert_eq!(a.certificates[0].not_after_unix, not_after_of(&lab.expired.chain[0]));
    let w: Vec<_> = r.warnings.iter().filter(|w| w.contains("cert_expired")).collect();
    assert_eq!(w.len(), 1, "{:?}", r.warnings);
    assert!(w[0].contains("encryption-only") && w[0].contains(LAB_HOST), "{}", w[0]);
    // No validation, so no remark about trusting extra CAs.
    assert!(!r.warnings.iter().any(|w| w.contains("extra CA")), "{:?}", r.warnings);
}

#[tokio::test]
async fn encryption_only_accepts_self_signed_cert_with_warning() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(&lab.self_signed, None, TlsSettings::EncryptionOnly, None).await;
    probe::assert_delivered(&r);
    let a = only_attempt(&r);
    assert!(a.tls.is_some() && !a.plaintext, "{a:?}");
    assert_eq!(a.certificate_problems, [Reason::CertUntrusted]);
    assert!(a.certificates[0].self_signed);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("cert_untrusted") && w.contains("encryption-only")),
        "{:?}",
        r.warnings
    );
}

#[tokio::test]
async fn encryption_only_does_not_check_names() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(
        &lab.wrong_name,
        Some(lab.ca.cert_pem()),
        TlsSettings::EncryptionOnly,
        Some(LAB_HOST),
    )
    .await;
    probe::assert_delivered(&r);
    assert!(only_attempt(&r).certificate_problems.is_empty());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

// ---------------------------------------------------------------------------------------------
// 7./8. Signature algorithm and chains
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sha1_leaf_fails_cert_sha1() {
    let (ca_pem, ck) = sha1_leaf(&[LAB_HOST]).expect("openssl makes a SHA-1 leaf");
    let r = probe_named(&ck, Some(ca_pem), TlsSettings::CertificateValidation, None).await;
    let a = assert_cert_failure(&r, Reason::CertSha1, &ck);
    assert_eq!(a.certificates[0].signature_algorithm, "sha1WithRSAEncryption");
    assert!(!a.certificates[0].self_signed);
    assert!(
        a.error.as_deref().unwrap().contains("sha1WithRSAEncryption"),
        "{:?}",
        a.error
    );
}

/// The SHA-1 fixture is what it claims (webpki itself refuses it), so the probe test above
/// cannot pass for another reason.
#[test]
fn sha1_leaf_is_sha1() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use x509_parser::extensions::GeneralName;
    use x509_parser::oid_registry::OID_PKCS1_SHA1WITHRSA;

    fn parse(der: &[u8]) -> x509_parser::certificate::X509Certificate<'_> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der).expect("parses");
        assert!(rest.is_empty());
        cert
    }
    let (ca_pem, ck) = sha1_leaf(&[LAB_HOST, "127.0.0.1"]).expect("openssl sha1 leaf");
    let leaf = parse(&ck.chain[0]);
    assert_eq!(leaf.signature_algorithm.algorithm, OID_PKCS1_SHA1WITHRSA);
    let cn = leaf.subject().iter_common_name().next().expect("has CN").as_str();
    assert_eq!(cn.expect("CN is a string"), LAB_HOST);
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .expect("SAN ok")
        .expect("has SAN")
        .value
        .general_names
        .iter()
        .map(|gn| match gn {
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::IPAddress(b) => match <[u8; 4]>::try_from(*b) {
                Ok(v4) => format!("IP:{}", IpAddr::from(v4)),
                Err(_) => format!("IP:{b:?}"),
            },
            other => format!("other:{other:?}"),
        })
        .collect();
    assert_eq!(sans, [format!("DNS:{LAB_HOST}"), "IP:127.0.0.1".to_owned()]);
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("ca pem");
    let ca = parse(&ca_der);
    assert!(ca.is_ca());
    assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw());
    assert!(leaf.validity().is_valid());
    // webpki does not accept SHA-1 signatures, which is exactly the fault to detect.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.clone()).expect("add root");
    let ee = rustls::server::ParsedCertificate::try_from(&ck.chain[0]).expect("leaf parses for rustls");
    let res = rustls::client::verify_server_cert_signed_by_trust_anchor(
        &ee,
        &roots,
        &ck.chain[1..],
        UnixTime::now(),
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all,
    );
    assert!(
        matches!(
            res,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            ))
        ),
        "{res:?}"
    );
    ck.server_config().expect("RSA key usable by rustls");
    assert!(matches!(sha1_leaf(&[]), Err(Sha1Error::NoNames)));
    assert!(matches!(sha1_leaf(&["a b"]), Err(Sha1Error::InvalidName(_))));
    assert!(matches!(sha1_leaf(&["a/CN=x"]), Err(Sha1Error::InvalidName(_))));
}

#[tokio::test]
async fn intermediate_chain_delivers_and_is_recorded() {
    let root = TestCa::new("Mailflow Lab Root").unwrap();
    let inter = root.intermediate("Mailflow Lab Intermediate").unwrap();
    let ck = inter.leaf_valid(&[LAB_HOST]).unwrap();
    assert_eq!(ck.chain.len(), 2);
    let r = probe_named(
        &ck,
        Some(root.cert_pem()),
        TlsSettings::DomainValidation,
        Some(LAB_HOST),
    )
    .await;
    probe::assert_delivered(&r);
    let a = only_attempt(&r);
    let dump = serde_json::to_string_pretty(a).unwrap();
    assert!(a.certificate_problems.is_empty(), "{dump}");
    let positions: Vec<_> = a.certificates.iter().map(|c| c.position).collect();
    assert_eq!(positions, [CertPosition::Leaf, CertPosition::Intermediate], "{dump}");
    assert!(a.certificates[0].subject.contains("CN=mail.lab.test"), "{dump}");
    assert!(a.certificates[0].issuer.contains("Mailflow Lab Intermediate"), "{dump}");
    assert!(
        a.certificates[1].subject.contains("Mailflow Lab Intermediate"),
        "{dump}"
    );
    assert!(a.certificates[1].issuer.contains("Mailflow Lab Root"), "{dump}");
    assert!(!a.certificates[1].self_signed);
    assert_eq!(a.certificates[1].not_after_unix, not_after_of(&ck.chain[1]));
}

// ---------------------------------------------------------------------------------------------
// 9. Handshake failures that are not about the certificate
// ---------------------------------------------------------------------------------------------

/// Options for IP-literal smart hosts: nothing is resolved, so the DNS server (an unused
/// loopback port) is never asked.
fn ip_opts() -> ProberOptions {
    probe::opts(Some("127.0.0.1:9".parse().unwrap()), None)
}

/// Probes a lab server with this behaviour by IP literal.
async fn probe_behavior_ip(b: Behavior, tls: TlsSettings) -> ProbeReport {
    let server = FaultServer::start(b).await.expect("lab SMTP server starts");
    let spec = probe::spec(vec![probe::at(server.addr())], tls);
    probe::probe(ip_opts(), &spec).await
}

#[tokio::test]
async fn tls_alert_handshake_failure_is_4_4_317() {
    let r = probe_behavior_ip(Behavior::TlsAlert(40), TlsSettings::EncryptionOnly).await;
    probe::assert_fails(&r, Code::CannotConnect, Reason::TlsHandshakeFailed, Phase::TlsHandshake);
    assert!(
        r.message.starts_with("450 4.4.317 Cannot connect to remote server"),
        "{}",
        r.message
    );
    let a = only_attempt(&r);
    assert!(
        a.error.as_deref().unwrap().contains("HandshakeFailure"),
        "{:?}",
        a.error
    );
    assert!(a.certificates.is_empty() && a.tls.is_none(), "{a:?}");
}

#[tokio::test]
async fn tls_alert_protocol_version_is_4_4_317() {
    let r = probe_behavior_ip(Behavior::TlsAlert(70), TlsSettings::EncryptionOnly).await;
    probe::assert_fails(&r, Code::CannotConnect, Reason::TlsHandshakeFailed, Phase::TlsHandshake);
    let a = only_attempt(&r);
    assert!(a.error.as_deref().unwrap().contains("ProtocolVersion"), "{:?}", a.error);
}

#[tokio::test]
async fn tls_alert_under_certificate_validation_is_still_4_4_317() {
    // No certificate was seen, so there is nothing to blame on it.
    let r = probe_behavior_ip(Behavior::TlsAlert(40), TlsSettings::CertificateValidation).await;
    probe::assert_fails(&r, Code::CannotConnect, Reason::TlsHandshakeFailed, Phase::TlsHandshake);
}

#[tokio::test]
async fn close_after_starttls_is_4_4_318_closed() {
    let r = probe_behavior_ip(Behavior::CloseAfterStarttls, TlsSettings::EncryptionOnly).await;
    probe::assert_fails(&r, Code::ConnectionClosedAbruptly, Reason::Closed, Phase::TlsHandshake);
    assert!(r.message.starts_with("450 4.4.318"), "{}", r.message);
}

// ---------------------------------------------------------------------------------------------
// 10. tls_settings none: opportunistic TLS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn none_uses_starttls_without_validation() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let r = probe_named(&lab.self_signed, None, TlsSettings::None, None).await;
    probe::assert_delivered(&r);
    let a = only_attempt(&r);
    let dump = serde_json::to_string_pretty(&r).unwrap();
    assert!(!a.plaintext, "{dump}");
    assert!(a.tls.is_some(), "{dump}");
    assert!(a.certificates[0].self_signed, "{dump}");
    assert!(a.message.contains(" over TLS"), "{}", a.message);
    assert!(!r.warnings.iter().any(|w| w.contains("without encryption")), "{dump}");
    // Not enforced, but still reported.
    assert_eq!(a.certificate_problems, [Reason::CertUntrusted], "{dump}");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("cert_untrusted") && w.contains("tls_settings is none")),
        "{dump}"
    );
}

#[tokio::test]
async fn none_without_starttls_delivers_in_plaintext_with_warning() {
    let dns = lab_dns().await;
    let server = smtp::plain().await;
    let spec = named_spec(server.addr().port(), TlsSettings::None, None);
    let r = probe::probe(probe::opts(Some(dns.addr()), None), &spec).await;
    probe::assert_delivered(&r);
    let a = only_attempt(&r);
    let dump = serde_json::to_string_pretty(&r).unwrap();
    assert!(a.plaintext, "{dump}");
    assert!(a.tls.is_none() && a.certificates.is_empty(), "{dump}");
    assert!(
        !a.extensions.iter().any(|e| e.eq_ignore_ascii_case("STARTTLS")),
        "{dump}"
    );
    assert!(a.message.ends_with("without TLS"), "{}", a.message);
    assert!(r.warnings.iter().any(|w| w.contains("without encryption")), "{dump}");
    assert_eq!(server.transcripts(), ["EHLO probe.test\nQUIT\n"]);
}

#[tokio::test]
async fn encryption_only_without_starttls_fails() {
    let server = smtp::plain().await;
    let spec = probe::spec(vec![probe::at(server.addr())], TlsSettings::EncryptionOnly);
    let r = probe::probe(ip_opts(), &spec).await;
    probe::assert_fails(&r, Code::CannotConnect, Reason::StarttlsNotOffered, Phase::Ehlo);
}

// ---------------------------------------------------------------------------------------------
// 11. Injected clock
// ---------------------------------------------------------------------------------------------

async fn probe_at_time(ck: &CertKey, ca_pem: String, days_ahead: i64, tls: TlsSettings) -> ProbeReport {
    let dns = lab_dns().await;
    let server = smtp::starttls(ck).await;
    let spec = named_spec(server.addr().port(), tls, Some(LAB_HOST));
    let o = ProberOptions {
        time: Some(FixedTime::days_from_now(days_ahead)),
        ..probe::opts(Some(dns.addr()), Some(ca_pem))
    };
    probe::probe(o, &spec).await
}

#[tokio::test]
async fn injected_clock_expires_a_valid_cert() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    // `good` is valid for 90 days; 200 days from now it has expired.
    let r = probe_at_time(&lab.good, lab.ca.cert_pem(), 200, TlsSettings::CertificateValidation).await;
    let a = assert_cert_failure(&r, Reason::CertExpired, &lab.good);
    assert_days_from_now(a.certificates[0].not_after_unix, 90);
}

#[tokio::test]
async fn injected_clock_makes_a_future_cert_valid() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    // `not_yet_valid` runs from +30 to +400 days.
    let r = probe_at_time(
        &lab.not_yet_valid,
        lab.ca.cert_pem(),
        200,
        TlsSettings::DomainValidation,
    )
    .await;
    probe::assert_delivered(&r);
    assert!(only_attempt(&r).certificate_problems.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 12. STARTTLS response injection
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn starttls_injection_is_refused() {
    let r = probe_behavior_ip(Behavior::StarttlsInjection, TlsSettings::EncryptionOnly).await;
    probe::assert_fails(&r, Code::CannotConnect, Reason::ProtocolError, Phase::Starttls);
    let a = only_attempt(&r);
    let dump = serde_json::to_string_pretty(a).unwrap();
    assert!(
        a.tls.is_none() && a.certificates.is_empty(),
        "no handshake after the injection\n{dump}"
    );
    assert!(!a.durations.contains_key(&Phase::TlsHandshake), "{dump}");
    assert!(
        a.transcript
            .lines()
            .any(|l| l.contains("250 injected") && l.contains("sent before the TLS handshake")),
        "{dump}"
    );
}

#[tokio::test]
async fn starttls_injection_is_refused_even_with_tls_none() {
    let r = probe_behavior_ip(Behavior::StarttlsInjection, TlsSettings::None).await;
    probe::assert_fails(&r, Code::CannotConnect, Reason::ProtocolError, Phase::Starttls);
}

// ---------------------------------------------------------------------------------------------
// Extra: SNI, TLS 1.2, handshake timeout, per-address verdicts, MX routes
// ---------------------------------------------------------------------------------------------

/// Serves `ck` whatever the client asks for and records the SNI of every ClientHello.
#[derive(Debug)]
struct SniRecorder {
    key: Arc<CertifiedKey>,
    seen: Mutex<Vec<Option<String>>>,
}

impl ResolvesServerCert for SniRecorder {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.seen.lock().unwrap().push(hello.server_name().map(str::to_string));
        Some(Arc::clone(&self.key))
    }
}

/// A server config presenting `ck` with only these protocol versions, recording SNI.
fn recording_config(
    ck: &CertKey,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (Arc<rustls::ServerConfig>, Arc<SniRecorder>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = CertifiedKey::from_der(ck.chain.clone(), ck.key.clone_key(), &provider).expect("certified key");
    let recorder = Arc::new(SniRecorder {
        key: Arc::new(key),
        seen: Mutex::new(Vec::new()),
    });
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(recorder.clone());
    (Arc::new(config), recorder)
}

#[tokio::test]
async fn smart_host_name_is_sent_as_sni_and_ip_literal_sends_none() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let (config, sni) = recording_config(&lab.good, &[&rustls::version::TLS13, &rustls::version::TLS12]);
    let dns = lab_dns().await;
    let server = smtp::starttls_with(config).await;

    let spec = named_spec(server.addr().port(), TlsSettings::DomainValidation, Some(LAB_HOST));
    let r = probe::probe(probe::opts(Some(dns.addr()), Some(lab.ca.cert_pem())), &spec).await;
    probe::assert_delivered(&r);
    assert_eq!(*sni.seen.lock().unwrap(), [Some(LAB_HOST.to_string())]);

    // By address there is no name to send (and none to check under encryption-only).
    let spec = probe::spec(vec![probe::at(server.addr())], TlsSettings::EncryptionOnly);
    let r = probe::probe(ip_opts(), &spec).await;
    probe::assert_delivered(&r);
    assert_eq!(only_attempt(&r).host, "127.0.0.1");
    assert_eq!(*sni.seen.lock().unwrap(), [Some(LAB_HOST.to_string()), None]);
}

#[tokio::test]
async fn ip_literal_under_domain_validation_checks_the_tls_domain() {
    // No SNI, but the certificate is still held against the TLS domain.
    let lab = LabPki::new(LAB_HOST).unwrap();
    let server = smtp::starttls(&lab.good).await;
    let mut spec = probe::spec(vec![probe::at(server.addr())], TlsSettings::DomainValidation);
    spec.tls_domain = Some(probe::pattern(LAB_HOST));
    let r = probe::probe(
        probe::opts(Some("127.0.0.1:9".parse().unwrap()), Some(lab.ca.cert_pem())),
        &spec,
    )
    .await;
    probe::assert_delivered(&r);
    spec.tls_domain = Some(probe::pattern("other.lab.test"));
    let r = probe::probe(
        probe::opts(Some("127.0.0.1:9".parse().unwrap()), Some(lab.ca.cert_pem())),
        &spec,
    )
    .await;
    assert_cert_failure(&r, Reason::CertNameMismatch, &lab.good);
}

#[tokio::test]
async fn tls12_only_server_is_accepted_and_reported() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let (config, _) = recording_config(&lab.good, &[&rustls::version::TLS12]);
    let dns = lab_dns().await;
    let server = smtp::starttls_with(config).await;
    let spec = named_spec(server.addr().port(), TlsSettings::DomainValidation, Some(LAB_HOST));
    let r = probe::probe(probe::opts(Some(dns.addr()), Some(lab.ca.cert_pem())), &spec).await;
    probe::assert_delivered(&r);
    let tls = only_attempt(&r).tls.clone().expect("TLS info");
    assert_eq!(tls.version, "TLSv1.2");
    assert!(tls.cipher.starts_with("TLS_ECDHE_ECDSA_WITH_"), "{}", tls.cipher);
}

#[tokio::test]
async fn tls12_only_server_with_expired_cert_fails_the_same_way() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let (config, _) = recording_config(&lab.expired, &[&rustls::version::TLS12]);
    let dns = lab_dns().await;
    let server = smtp::starttls_with(config).await;
    let spec = named_spec(server.addr().port(), TlsSettings::CertificateValidation, None);
    let r = probe::probe(probe::opts(Some(dns.addr()), Some(lab.ca.cert_pem())), &spec).await;
    assert_cert_failure(&r, Reason::CertExpired, &lab.expired);
}

/// Banner, EHLO offering STARTTLS, `220` to STARTTLS, then silence until the client leaves.
async fn silent_after_starttls() -> std::net::SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let mut io = BufReader::new(stream);
        let mut line = String::new();
        let replies: [&[u8]; 3] = [
            b"220 silent.lab.test ESMTP\r\n",
            b"250-silent.lab.test\r\n250 STARTTLS\r\n",
            b"220 2.0.0 Ready\r\n",
        ];
        for (i, reply) in replies.iter().enumerate() {
            if i > 0 {
                line.clear();
                if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
            }
            if io.get_mut().write_all(reply).await.is_err() {
                return;
            }
        }
        // Swallow the ClientHello and anything else until the client gives up.
        let mut sink = [0u8; 1024];
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    addr
}

#[tokio::test]
async fn handshake_without_answer_times_out() {
    let addr = silent_after_starttls().await;
    let mut spec = probe::spec(vec![probe::at(addr)], TlsSettings::EncryptionOnly);
    spec.timeout = Duration::from_secs(1);
    let r = probe::probe(ip_opts(), &spec).await;
    probe::assert_fails(
        &r,
        Code::ConnectionClosedAbruptly,
        Reason::ReadTimeout,
        Phase::TlsHandshake,
    );
    let a = only_attempt(&r);
    assert!(a.certificates.is_empty() && a.tls.is_none(), "{a:?}");
}

/// Two servers on the same port of 127.0.0.1 and 127.0.0.2 (the port is retried if taken).
async fn server_pair(first: &CertKey, second: &CertKey) -> (FaultServer, FaultServer) {
    for _ in 0..20 {
        let a = smtp::starttls(first).await;
        let other = std::net::SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), a.addr().port()));
        let b = FaultServer::start_on(
            other,
            Behavior::Smtp(smtp::starttls_options(second.server_config().unwrap())),
        )
        .await;
        if let Ok(b) = b {
            return (a, b);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

/// `LAB_HOST` with two addresses.
async fn two_address_dns() -> FakeDns {
    serve(host_zone(LAB_HOST, &[Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2)])).await
}

#[tokio::test]
async fn each_address_gets_its_own_certificate_verdict() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let dns = two_address_dns().await;
    let (bad, good) = server_pair(&lab.expired, &lab.good).await;
    let spec = named_spec(bad.addr().port(), TlsSettings::DomainValidation, Some(LAB_HOST));
    let r = probe::probe(probe::opts(Some(dns.addr()), Some(lab.ca.cert_pem())), &spec).await;
    let dump = serde_json::to_string_pretty(&r).unwrap();

    // The route delivers through the second address: the connector is fine.
    probe::assert_delivered(&r);
    assert_eq!(r.attempts.len(), 2, "{dump}");
    let (first, second) = (&r.attempts[0], &r.attempts[1]);
    assert_eq!(first.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), "{dump}");
    assert_eq!(first.reason, Some(Reason::CertExpired), "{dump}");
    assert_eq!(
        first.certificates[0].not_after_unix,
        not_after_of(&lab.expired.chain[0])
    );
    assert!(second.delivered, "{dump}");
    assert_eq!(second.ip, Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))), "{dump}");
    assert!(second.certificate_problems.is_empty(), "{dump}");
    assert_eq!(second.certificates[0].not_after_unix, not_after_of(&lab.good.chain[0]));
    assert!(r.reported_attempt().is_some_and(|a| std::ptr::eq(a, second)), "{dump}");
    assert_eq!((good.connections(), bad.connections()), (1, 1));
}

#[tokio::test]
async fn all_addresses_failing_reports_the_last_one() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let dns = two_address_dns().await;
    let (first, _second) = server_pair(&lab.expired, &lab.self_signed).await;
    let spec = named_spec(first.addr().port(), TlsSettings::CertificateValidation, None);
    let r = probe::probe(probe::opts(Some(dns.addr()), Some(lab.ca.cert_pem())), &spec).await;
    assert_eq!(r.attempts.len(), 2);
    assert_eq!(r.attempts[0].reason, Some(Reason::CertExpired));
    let a = assert_cert_failure_last(&r);
    assert_eq!(a.reason, Some(Reason::CertUntrusted));
    assert!(a.certificates[0].self_signed);
    assert!(r.message.contains("[LastAttemptedIP=127.0.0.2:"), "{}", r.message);
}

#[track_caller]
fn assert_cert_failure_last(r: &ProbeReport) -> &Attempt {
    probe::assert_fails(
        r,
        Code::CertificateValidationFailed,
        Reason::CertUntrusted,
        Phase::TlsHandshake,
    );
    let last = r.attempts.last().expect("attempts");
    assert!(r.reported_attempt().is_some_and(|a| std::ptr::eq(a, last)));
    last
}

/// A zone where `contoso.test` and `fabrikam.test` both use `mail.lab.test` as MX.
async fn shared_mx_dns() -> FakeDns {
    let mut zone = lab_zone();
    for d in ["contoso.test", "fabrikam.test"] {
        zone.set(d, Qtype::Mx, Answer::Records(vec![Record::Mx(10, LAB_HOST.into())]));
    }
    serve(zone).await
}

#[tokio::test]
async fn mx_routing_without_tls_domain_expects_the_recipient_domain() {
    let lab = LabPki::new(LAB_HOST).unwrap();
    let dns = shared_mx_dns().await;
    let server = smtp::starttls(&lab.good).await;
    let o = || probe::opts(Some(dns.addr()), Some(lab.ca.cert_pem()));

    // The MX host's certificate does not name the recipient domain.
    let spec = probe::mx_spec(&["contoso.test"], server.addr().port(), TlsSettings::DomainValidation);
    let r = probe::probe(o(), &spec).await;
    let a = assert_cert_failure(&r, Reason::CertNameMismatch, &lab.good);
    assert_eq!((a.target.as_str(), a.host.as_str()), ("contoso.test", LAB_HOST));

    // With the TLS domain set to the MX host, it passes.
    let mut spec = spec;
    spec.tls_domain = Some(probe::pattern(LAB_HOST));
    probe::assert_delivered(&probe::probe(o(), &spec).await);
}

/// Each MX route is what one recipient domain sees, so its certificate must be judged against
/// that domain alone: a certificate for fabrikam.test must not pass for contoso.test's route
/// just because the connector also lists fabrikam.test.
#[tokio::test]
async fn mx_route_is_judged_against_its_own_domain() {
    let ca = TestCa::new("Mailflow Lab Test CA").unwrap();
    let ck = ca.leaf_valid(&["fabrikam.test"]).unwrap();
    let dns = shared_mx_dns().await;
    let server = smtp::starttls(&ck).await;
    let o = || probe::opts(Some(dns.addr()), Some(ca.cert_pem()));

    let alone = probe::mx_spec(&["contoso.test"], server.addr().port(), TlsSettings::DomainValidation);
    let r = probe::probe(o(), &alone).await;
    assert_cert_failure(&r, Reason::CertNameMismatch, &ck);

    let both = probe::mx_spec(
        &["contoso.test", "fabrikam.test"],
        server.addr().port(),
        TlsSettings::DomainValidation,
    );
    let r = probe::probe(o(), &both).await;
    let dump = serde_json::to_string_pretty(&r).unwrap();
    let contoso = r
        .attempts
        .iter()
        .find(|a| a.target == "contoso.test")
        .expect("contoso attempt");
    assert_eq!(contoso.reason, Some(Reason::CertNameMismatch), "{dump}");
    assert!(!r.delivered, "{dump}");
}
