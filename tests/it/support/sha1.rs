//! A SHA-1-signed leaf, the one certificate fault rcgen (and ring) cannot mint: made with the
//! `openssl` command line. Test-only, so the crate itself never shells out to openssl.

use super::process::try_run_with_deadline;
use super::scratch::Scratch;
use mailflow_exporter::lab::pki::CertKey;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use x509_parser::oid_registry::OID_PKCS1_SHA1WITHRSA;

/// One `openssl` step (an RSA key and a signature): generous, but bounded.
const OPENSSL_DEADLINE: Duration = Duration::from_secs(60);

/// Why no SHA-1 leaf was made: bad input, or openssl could not be run or misbehaved.
#[derive(Debug, thiserror::Error)]
pub enum Sha1Error {
    #[error("no subject names given")]
    NoNames,
    /// A name that would be unsafe to pass to `openssl`.
    #[error("unusable subject name {0:?}")]
    InvalidName(String),
    #[error("{0}")]
    Openssl(String),
    #[error("openssl produced a leaf signed with {found}, expected sha1WithRSAEncryption")]
    NotSha1 { found: String },
}

/// A leaf for `names` (IP literals become IP SANs) signed with sha1WithRSAEncryption by a
/// fresh RSA CA. Returns `(ca_pem, leaf)`; the chain holds only the leaf.
pub fn sha1_leaf(names: &[&str]) -> Result<(String, CertKey), Sha1Error> {
    let first = *names.first().ok_or(Sha1Error::NoNames)?;
    let mut sans = Vec::with_capacity(names.len());
    for name in names {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*' | ':' | '_'))
        {
            return Err(Sha1Error::InvalidName((*name).to_owned()));
        }
        if name.parse::<IpAddr>().is_ok() {
            sans.push(format!("IP:{name}"));
        } else {
            sans.push(format!("DNS:{name}"));
        }
    }

    let dir = Scratch::new("sha1");
    // Our own config keeps the distribution's openssl.cnf (security levels, default
    // extensions) from influencing the result.
    dir.write(
        "openssl.cnf",
        "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
",
    );
    dir.write(
        "leaf.ext",
        &format!(
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\n\
             subjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid\n\
             subjectAltName = {}\n",
            sans.join(", ")
        ),
    );

    openssl(
        &dir,
        "req (CA)",
        &[
            "req",
            "-x509",
            "-config",
            "openssl.cnf",
            "-extensions",
            "v3_ca",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=Mailflow Lab SHA-1 Test CA",
            "-days",
            "3650",
            "-sha256",
        ],
    )?;
    openssl(
        &dir,
        "req (leaf)",
        &[
            "req",
            "-new",
            "-config",
            "openssl.cnf",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            &format!("/CN={first}"),
        ],
    )?;
    // Unique per leaf, so two leaves never share issuer and serial.
    static SERIALS: AtomicU64 = AtomicU64::new(0);
    let serial = format!(
        "0x{:x}{:08x}",
        std::process::id(),
        SERIALS.fetch_add(1, Ordering::Relaxed)
    );
    openssl(
        &dir,
        "x509 -req -sha1",
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial,
            "-days",
            "90",
            "-sha1",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    )?;

    let ca_pem = dir.read("ca.pem");
    let leaf_pem = dir.read("leaf.pem");
    let key_pem = dir.read("leaf.key");
    let leaf = CertificateDer::from_pem_slice(leaf_pem.as_bytes())
        .map_err(|e| Sha1Error::Openssl(format!("openssl leaf certificate is not PEM: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| Sha1Error::Openssl(format!("openssl leaf key is not PEM: {e}")))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| Sha1Error::Openssl(format!("openssl leaf does not parse: {e}")))?;
    let alg = &parsed.signature_algorithm.algorithm;
    if *alg != OID_PKCS1_SHA1WITHRSA {
        return Err(Sha1Error::NotSha1 {
            found: alg.to_id_string(),
        });
    }
    Ok((
        ca_pem,
        CertKey {
            chain: vec![leaf],
            key,
            chain_pem: leaf_pem,
            key_pem,
        },
    ))
}

/// Runs `openssl` in `dir` with only our config, under [`OPENSSL_DEADLINE`].
fn openssl(dir: &Scratch, step: &str, args: &[&str]) -> Result<(), Sha1Error> {
    let mut cmd = Command::new("openssl");
    cmd.args(args)
        .current_dir(&dir.0)
        .env("OPENSSL_CONF", dir.path("openssl.cnf"))
        .env_remove("RANDFILE");
    let out = try_run_with_deadline(cmd, &[], OPENSSL_DEADLINE).map_err(|e| {
        Sha1Error::Openssl(format!(
            "cannot run the `openssl` command line tool (needed because rcgen cannot sign with SHA-1); \
             is it installed and on PATH? {e}"
        ))
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Sha1Error::Openssl(format!(
            "`openssl {step}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
