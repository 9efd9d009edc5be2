//! Throw-away PKI for loopback TLS tests of the STARTTLS prober.
//!
//! Every certificate fault the prober must classify (expired, not yet valid, wrong name,
//! self-signed, unknown CA, wildcard, chains with intermediates) is minted here in memory, so
//! the demo and the integration tests exercise the same certificates and never depend on files
//! checked into the repository or on the wall clock of their creation. (A SHA-1 signature needs
//! the `openssl` command line, which rcgen cannot replace; that fixture lives with the
//! integration tests.)

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// Why test PKI material could not be produced; callers are tests and the demo, so the
/// variants carry enough context to explain a failure without a debugger.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or failed to sign.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls rejected the generated certificate/key when building a config.
    #[error("rustls rejected the test certificate: {0}")]
    Rustls(#[from] rustls::Error),
    /// A certificate needs at least one subject name.
    #[error("no subject names given")]
    NoNames,
    /// A subject name cannot be used (e.g. an IP address where a wildcard must be derived).
    #[error("unusable subject name {0:?}")]
    InvalidName(String),
}

/// A certificate chain plus its private key, in both DER (for rustls) and PEM (for files or
/// other TLS stacks), so a test server can be stood up from whichever form is convenient.
pub struct CertKey {
    /// Leaf first, then any intermediates, exactly as a server should send them.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
    /// `chain` as concatenated PEM blocks, same order.
    pub chain_pem: String,
    /// `key` as PEM.
    pub key_pem: String,
}

impl CertKey {
    /// A rustls server config presenting this chain, so loopback servers need no TLS
    /// boilerplate. The ring provider is chosen explicitly because the process-wide default
    /// provider may not be installed; TLS 1.2 and 1.3 are both offered, no client auth.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        Ok(Arc::new(config))
    }

    /// The leaf certificate (first element of the chain).
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }
}

// `PrivateKeyDer` is deliberately not `Clone` (it wants an explicit `clone_key`).
impl Clone for CertKey {
    fn clone(&self) -> Self {
        CertKey {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            chain_pem: self.chain_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }
}

// Hand-written so the private key never lands in test logs.
impl fmt::Debug for CertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertKey")
            .field("chain_len", &self.chain.len())
            .field("key", &"[elided]")
            .finish()
    }
}

/// A test certificate authority (root or intermediate): its certificate plus the signing key,
/// so tests can mint leaves that a client trusting [`TestCa::cert_der`] accepts.
#[derive(Debug)]
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    cert_pem: String,
    /// Certificates a server must send after a leaf issued by this CA (this CA itself when it
    /// is an intermediate, then its parents' intermediates); empty for a root.
    intermediates: Vec<CertificateDer<'static>>,
    intermediates_pem: String,
}

impl TestCa {
    /// A fresh self-signed root CA, valid from a day ago (clock-skew slack) for ten years.
    pub fn new(common_name: &str) -> Result<TestCa, PkiError> {
        let key = KeyPair::generate()?;
        let params = ca_params(common_name);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        Ok(TestCa {
            issuer: Issuer::new(params, key),
            cert: cert.der().clone(),
            cert_pem,
            intermediates: Vec::new(),
            intermediates_pem: String::new(),
        })
    }

    /// This CA's certificate, e.g. to put into a client's root store.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// This CA's certificate as PEM.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// A leaf for `names` (DNS SANs; strings that parse as IP addresses become IP SANs),
    /// CN = first name, serverAuth EKU, valid over exactly the given window so that validity
    /// faults can be produced on demand. Its chain includes this CA if it is an intermediate.
    pub fn leaf(
        &self,
        names: &[&str],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<CertKey, PkiError> {
        let key = KeyPair::generate()?;
        let params = leaf_params(names, not_before, not_after)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.intermediates.iter().cloned());
        let mut chain_pem = cert.pem();
        chain_pem.push_str(&self.intermediates_pem);
        Ok(cert_key(chain, chain_pem, &key))
    }

    /// A currently valid leaf (from a day ago to 90 days ahead, like a typical ACME cert).
    /// A currently valid certificate for TLS clients (clientAuth usage), e.g. a Prometheus
    /// scraping a server that requires client certificates.
    pub fn client_leaf(&self, names: &[&str]) -> Result<CertKey, PkiError> {
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate()?;
        let mut params = leaf_params(names, now - time::Duration::days(1), now + time::Duration::days(30))?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.intermediates.iter().cloned());
        let mut chain_pem = cert.pem();
        chain_pem.push_str(&self.intermediates_pem);
        Ok(cert_key(chain, chain_pem, &key))
    }

    pub fn leaf_valid(&self, names: &[&str]) -> Result<CertKey, PkiError> {
        let now = OffsetDateTime::now_utc();
        self.leaf(names, now - Duration::days(1), now + Duration::days(90))
    }

    /// An intermediate CA signed by this CA, so chain-building (server sends intermediates)
    /// can be tested. Leaves it issues carry the intermediate (and any further ones) in
    /// [`CertKey::chain`]; clients should trust only the root.
    pub fn intermediate(&self, common_name: &str) -> Result<TestCa, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params(common_name);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_pem = cert.pem();
        let mut intermediates = vec![cert.der().clone()];
        intermediates.extend(self.intermediates.iter().cloned());
        let intermediates_pem = format!("{cert_pem}{}", self.intermediates_pem);
        Ok(TestCa {
            issuer: Issuer::new(params, key),
            cert: cert.der().clone(),
            cert_pem,
            intermediates,
            intermediates_pem,
        })
    }
}

/// A self-signed end-entity certificate for `names` (no CA behind it), the classic
/// "someone left the default cert on the MTA" fault.
pub fn self_signed(names: &[&str], not_before: OffsetDateTime, not_after: OffsetDateTime) -> Result<CertKey, PkiError> {
    let key = KeyPair::generate()?;
    let params = leaf_params(names, not_before, not_after)?;
    let cert = params.self_signed(&key)?;
    let chain_pem = cert.pem();
    Ok(cert_key(vec![cert.der().clone()], chain_pem, &key))
}

/// Every certificate the demo and the integration tests need, minted at once for one
/// server name so each fault scenario differs from `good` in exactly one respect.
#[derive(Debug)]
pub struct LabPki {
    /// The CA clients should trust.
    pub ca: TestCa,
    /// Valid, correct name, signed by `ca`.
    pub good: CertKey,
    /// Expired 30 days ago (valid from -400 to -30 days).
    pub expired: CertKey,
    /// Becomes valid only in 30 days (valid from +30 to +400 days).
    pub not_yet_valid: CertKey,
    /// Signed by `ca` and currently valid, but for `other.example`.
    pub wrong_name: CertKey,
    /// Self-signed leaf for the name.
    pub self_signed: CertKey,
    /// Valid leaf for the name, signed by a CA that is not returned (so never trusted).
    pub unknown_ca: CertKey,
    /// `*.<parent of name>` signed by `ca` (for a single-label name, `*.<name>`; note that
    /// a wildcard only covers the name if the parent has at least two labels).
    pub wildcard: CertKey,
}

impl LabPki {
    /// Mint the full set for `name`. Fails for an IP address because a wildcard cannot be
    /// derived from one.
    pub fn new(name: &str) -> Result<LabPki, PkiError> {
        if name.is_empty() || name.parse::<IpAddr>().is_ok() {
            return Err(PkiError::InvalidName(name.to_owned()));
        }
        let wildcard_name = match name.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => format!("*.{parent}"),
            _ => format!("*.{name}"),
        };
        let now = OffsetDateTime::now_utc();
        let ca = TestCa::new("Mailflow Lab Test CA")?;
        let good = ca.leaf_valid(&[name])?;
        let expired = ca.leaf(&[name], now - Duration::days(400), now - Duration::days(30))?;
        let not_yet_valid = ca.leaf(&[name], now + Duration::days(30), now + Duration::days(400))?;
        let wrong_name = ca.leaf_valid(&["other.example"])?;
        let self_signed = self_signed(&[name], now - Duration::days(1), now + Duration::days(90))?;
        let unknown_ca = TestCa::new("Mailflow Lab Unknown CA")?.leaf_valid(&[name])?;
        let wildcard = ca.leaf_valid(&[wildcard_name.as_str()])?;
        Ok(LabPki {
            ca,
            good,
            expired,
            not_yet_valid,
            wrong_name,
            self_signed,
            unknown_ca,
            wildcard,
        })
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(3650);
    params
}

fn leaf_params(
    names: &[&str],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, PkiError> {
    let first = *names.first().ok_or(PkiError::NoNames)?;
    // `CertificateParams::new` already turns strings that parse as IPs into IP SANs.
    let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, first);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    Ok(params)
}

fn cert_key(chain: Vec<CertificateDer<'static>>, chain_pem: String, key: &KeyPair) -> CertKey {
    CertKey {
        chain,
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        chain_pem,
        key_pem: key.serialize_pem(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::verify_server_cert_signed_by_trust_anchor;
    use rustls::server::ParsedCertificate;
    use rustls::{CertificateError, RootCertStore};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{ServerName, UnixTime};
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::GeneralName;

    const NAME: &str = "mx.lab.example";

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der).expect("parses");
        assert!(rest.is_empty());
        cert
    }

    fn cn<'a>(cert: &'a X509Certificate<'_>) -> &'a str {
        cert.subject()
            .iter_common_name()
            .next()
            .expect("has CN")
            .as_str()
            .expect("CN is a string")
    }

    fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
        let ext = cert.subject_alternative_name().expect("SAN ok").expect("has SAN");
        ext.value
            .general_names
            .iter()
            .map(|gn| match gn {
                GeneralName::DNSName(d) => format!("DNS:{d}"),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*b).expect("4")),
                        16 => IpAddr::from(<[u8; 16]>::try_from(*b).expect("16")),
                        n => panic!("bad IP length {n}"),
                    };
                    format!("IP:{ip}")
                }
                other => format!("other:{other:?}"),
            })
            .collect()
    }

    fn roots(ca: &CertificateDer<'_>) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned()).expect("add root");
        roots
    }

    /// Chain + name verification the way a rustls client would do it.
    fn verify(chain: &[CertificateDer<'static>], root: &CertificateDer<'_>, name: &str) -> Result<(), rustls::Error> {
        let provider = rustls::crypto::ring::default_provider();
        let ee = ParsedCertificate::try_from(&chain[0])?;
        verify_server_cert_signed_by_trust_anchor(
            &ee,
            &roots(root),
            &chain[1..],
            UnixTime::now(),
            provider.signature_verification_algorithms.all,
        )?;
        let server_name = ServerName::try_from(name.to_owned()).expect("server name");
        rustls::client::verify_server_name(&ee, &server_name)
    }

    /// Asserts a certificate verification failure matching `pattern` (rustls 0.23 reports
    /// the `*Context` variants, older code paths the bare ones; accept both).
    macro_rules! assert_cert_err {
        ($res:expr, $($pattern:tt)+) => {
            match $res {
                Err(rustls::Error::InvalidCertificate(got)) => assert!(
                    matches!(got, $($pattern)+),
                    "got {got:?}, want {}",
                    stringify!($($pattern)+)
                ),
                other => panic!("expected {}, got {other:?}", stringify!($($pattern)+)),
            }
        };
    }

    /// Asserts that `time` is `days` days from now, give or take a minute (generation time
    /// and rcgen's truncation to whole seconds).
    fn assert_days_from_now(time: &x509_parser::time::ASN1Time, days: i64) {
        let delta = time.timestamp() - OffsetDateTime::now_utc().unix_timestamp();
        assert!(
            (delta - days * 86_400).abs() < 60,
            "{time} is {delta}s from now, expected {days} days"
        );
    }

    #[test]
    fn ca_is_self_signed_ca() {
        let ca = TestCa::new("Unit CA").expect("ca");
        let der = ca.cert_der();
        let cert = parse(&der);
        assert_eq!(cn(&cert), "Unit CA");
        assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());
        assert!(cert.is_ca());
        assert_days_from_now(&cert.validity().not_before, -1);
        assert_days_from_now(&cert.validity().not_after, 3650);
        let from_pem = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("pem");
        assert_eq!(from_pem, der);
    }

    #[test]
    fn leaf_fields_and_ip_sans() {
        let ca = TestCa::new("Unit CA").expect("ca");
        let ck = ca
            .leaf_valid(&["mx.example.test", "127.0.0.1", "::1", "alt.example.test"])
            .expect("leaf");
        assert_eq!(ck.chain.len(), 1);
        let leaf = parse(&ck.chain[0]);
        let ca_der = ca.cert_der();
        let ca_cert = parse(&ca_der);
        assert_eq!(cn(&leaf), "mx.example.test");
        assert_eq!(leaf.issuer().as_raw(), ca_cert.subject().as_raw());
        assert!(!leaf.is_ca());
        assert_eq!(
            sans(&leaf),
            ["DNS:mx.example.test", "IP:127.0.0.1", "IP:::1", "DNS:alt.example.test"]
        );
        let eku = leaf.extended_key_usage().expect("eku ok").expect("has eku");
        assert!(eku.value.server_auth);
        assert_days_from_now(&leaf.validity().not_before, -1);
        assert_days_from_now(&leaf.validity().not_after, 90);
        // PEM forms match DER forms.
        let pem_chain: Vec<_> = CertificateDer::pem_slice_iter(ck.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("chain pem");
        assert_eq!(pem_chain, ck.chain);
        let pem_key = PrivateKeyDer::from_pem_slice(ck.key_pem.as_bytes()).expect("key pem");
        assert_eq!(pem_key.secret_der(), ck.key.secret_der());
        // Verifies for the IP too.
        verify(&ck.chain, &ca_der, "127.0.0.1").expect("ip name verifies");
        assert!(matches!(
            leaf_params(&[], OffsetDateTime::now_utc(), OffsetDateTime::now_utc()),
            Err(PkiError::NoNames)
        ));
    }

    #[test]
    fn lab_pki_certificates() {
        let lab = LabPki::new(NAME).expect("lab pki");
        let ca_der = lab.ca.cert_der();
        let ca = parse(&ca_der);

        for (label, ck, want_cn) in [
            ("good", &lab.good, NAME),
            ("expired", &lab.expired, NAME),
            ("not_yet_valid", &lab.not_yet_valid, NAME),
            ("wrong_name", &lab.wrong_name, "other.example"),
            ("wildcard", &lab.wildcard, "*.lab.example"),
        ] {
            assert_eq!(ck.chain.len(), 1, "{label}");
            let leaf = parse(&ck.chain[0]);
            assert_eq!(cn(&leaf), want_cn, "{label}");
            assert_eq!(sans(&leaf), [format!("DNS:{want_cn}")], "{label}");
            assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw(), "{label}");
        }

        let expired = parse(&lab.expired.chain[0]);
        assert_days_from_now(&expired.validity().not_before, -400);
        assert_days_from_now(&expired.validity().not_after, -30);
        let nyv = parse(&lab.not_yet_valid.chain[0]);
        assert_days_from_now(&nyv.validity().not_before, 30);
        assert_days_from_now(&nyv.validity().not_after, 400);

        let ss = parse(&lab.self_signed.chain[0]);
        assert_eq!(cn(&ss), NAME);
        assert_eq!(ss.issuer().as_raw(), ss.subject().as_raw());
        assert_ne!(ss.issuer().as_raw(), ca.subject().as_raw());

        let unknown = parse(&lab.unknown_ca.chain[0]);
        assert_eq!(cn(&unknown), NAME);
        assert_ne!(unknown.issuer().as_raw(), ca.subject().as_raw());

        // rustls/webpki verdicts.
        verify(&lab.good.chain, &ca_der, NAME).expect("good verifies");
        verify(&lab.wildcard.chain, &ca_der, NAME).expect("wildcard covers name");
        assert_cert_err!(
            verify(&lab.expired.chain, &ca_der, NAME),
            CertificateError::Expired | CertificateError::ExpiredContext { .. }
        );
        assert_cert_err!(
            verify(&lab.not_yet_valid.chain, &ca_der, NAME),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
        );
        assert_cert_err!(
            verify(&lab.wrong_name.chain, &ca_der, NAME),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        );
        assert_cert_err!(
            verify(&lab.self_signed.chain, &ca_der, NAME),
            CertificateError::UnknownIssuer
        );
        assert_cert_err!(
            verify(&lab.unknown_ca.chain, &ca_der, NAME),
            CertificateError::UnknownIssuer
        );

        for ck in [
            &lab.good,
            &lab.expired,
            &lab.not_yet_valid,
            &lab.wrong_name,
            &lab.self_signed,
            &lab.unknown_ca,
            &lab.wildcard,
        ] {
            ck.server_config().expect("server config builds");
        }
    }

    #[test]
    fn lab_pki_edge_names() {
        let lab = LabPki::new("localhost").expect("single label");
        assert_eq!(cn(&parse(&lab.wildcard.chain[0])), "*.localhost");
        assert!(matches!(LabPki::new("127.0.0.1"), Err(PkiError::InvalidName(_))));
        assert!(matches!(LabPki::new(""), Err(PkiError::InvalidName(_))));
    }

    #[test]
    fn intermediate_chain() {
        let root = TestCa::new("Unit Root").expect("root");
        let inter = root.intermediate("Unit Intermediate").expect("intermediate");
        let ck = inter.leaf_valid(&[NAME]).expect("leaf");
        assert_eq!(ck.chain.len(), 2);
        assert_eq!(ck.chain[1], inter.cert_der());

        let root_der = root.cert_der();
        let root_cert = parse(&root_der);
        let inter_cert = parse(&ck.chain[1]);
        let leaf = parse(&ck.chain[0]);
        assert!(inter_cert.is_ca());
        assert_eq!(cn(&inter_cert), "Unit Intermediate");
        assert_eq!(inter_cert.issuer().as_raw(), root_cert.subject().as_raw());
        assert_eq!(leaf.issuer().as_raw(), inter_cert.subject().as_raw());

        let pem_chain: Vec<_> = CertificateDer::pem_slice_iter(ck.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("chain pem");
        assert_eq!(pem_chain, ck.chain);

        verify(&ck.chain, &root_der, NAME).expect("leaf+intermediate chains to root");
        // Without the intermediate the root alone cannot vouch for the leaf.
        assert_cert_err!(verify(&ck.chain[..1], &root_der, NAME), CertificateError::UnknownIssuer);

        // Two levels deep: chain is leaf, inter2, inter.
        let inter2 = inter.intermediate("Unit Intermediate 2").expect("inter2");
        let ck2 = inter2.leaf_valid(&[NAME]).expect("leaf2");
        assert_eq!(ck2.chain.len(), 3);
        assert_eq!(ck2.chain[1], inter2.cert_der());
        assert_eq!(ck2.chain[2], inter.cert_der());
        verify(&ck2.chain, &root_der, NAME).expect("two-level chain verifies");
    }

    #[test]
    fn self_signed_fn() {
        let now = OffsetDateTime::now_utc();
        let ck = self_signed(
            &["a.example", "b.example"],
            now - Duration::days(2),
            now + Duration::days(5),
        )
        .expect("self-signed");
        let cert = parse(&ck.chain[0]);
        assert_eq!(cn(&cert), "a.example");
        assert_eq!(sans(&cert), ["DNS:a.example", "DNS:b.example"]);
        assert_eq!(cert.issuer().as_raw(), cert.subject().as_raw());
        assert!(!cert.is_ca());
        ck.server_config().expect("server config builds");
    }

    /// Full in-memory TLS 1.2 and 1.3 handshakes against `server_config()` with an
    /// intermediate in the chain, to prove the config is really usable.
    #[test]
    fn server_config_handshakes() {
        let root = TestCa::new("Unit Root").expect("root");
        let inter = root.intermediate("Unit Intermediate").expect("intermediate");
        let ck = inter.leaf_valid(&[NAME]).expect("leaf");
        let server_config = ck.server_config().expect("server config");
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            let client_config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_protocol_versions(&[version])
                    .expect("versions")
                    .with_root_certificates(roots(&root.cert_der()))
                    .with_no_client_auth();
            let mut client =
                rustls::ClientConnection::new(Arc::new(client_config), ServerName::try_from(NAME).expect("name"))
                    .expect("client");
            let mut server = rustls::ServerConnection::new(server_config.clone()).expect("server");
            for _ in 0..10 {
                if !client.is_handshaking() && !server.is_handshaking() {
                    break;
                }
                let mut buf = Vec::new();
                client.write_tls(&mut buf).expect("client write");
                server.read_tls(&mut buf.as_slice()).expect("server read");
                server.process_new_packets().expect("server process");
                let mut buf = Vec::new();
                server.write_tls(&mut buf).expect("server write");
                client.read_tls(&mut buf.as_slice()).expect("client read");
                client.process_new_packets().expect("client process");
            }
            assert!(!client.is_handshaking() && !server.is_handshaking());
            assert_eq!(client.protocol_version(), Some(version.version));
            let peer = client.peer_certificates().expect("peer certs");
            assert_eq!(peer, ck.chain.as_slice());
        }
    }

    #[test]
    fn certkey_clone_and_debug() {
        let ca = TestCa::new("Unit CA").expect("ca");
        let ck = ca.leaf_valid(&[NAME]).expect("leaf");
        let copy = ck.clone();
        assert_eq!(copy.chain, ck.chain);
        assert_eq!(copy.key.secret_der(), ck.key.secret_der());
        assert_eq!(copy.key_pem, ck.key_pem);
        assert_eq!(copy.chain_pem, ck.chain_pem);
        assert_eq!(copy.leaf(), ck.chain.first());
        let dbg = format!("{ck:?}");
        assert!(!dbg.contains(&ck.key_pem));
        assert!(dbg.contains("elided"));
    }
}
