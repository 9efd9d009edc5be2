//! `mailflow-exporter healthcheck`: asks a running agent's `/-/healthy` on this machine, for a
//! container `HEALTHCHECK` (the slim image has no curl). Exit 0 healthy, 1 not.

use clap::Args;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, Args, Clone)]
pub struct HealthcheckArgs {
    /// The agent's listen address, as given to `serve` (`:PORT` = this machine).
    #[arg(long = "web.listen-address", default_value = super::serve::DEFAULT_LISTEN)]
    pub listen: String,
    /// The agent's web config: with TLS configured, the check speaks TLS (without checking the
    /// certificate: it only asks whether the process on this machine answers).
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// How long to wait for the answer.
    #[arg(long, value_parser = super::args::step_timeout, default_value = "3s")]
    pub timeout: Duration,
}

/// Where to connect for a listen address: the wildcard addresses mean this machine.
pub fn target(listen: &str) -> Option<SocketAddr> {
    let a = match listen.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => listen.to_string(),
    };
    let mut sa: SocketAddr = a.parse().ok()?;
    match sa.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => sa.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(ip) if ip.is_unspecified() => sa.set_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        _ => {}
    }
    Some(sa)
}

pub async fn main(args: &HealthcheckArgs) -> ExitCode {
    let Some(addr) = target(&args.listen) else {
        eprintln!(
            "error: --web.listen-address {:?}: expected HOST:PORT or :PORT",
            args.listen
        );
        return ExitCode::from(2);
    };
    let tls = match &args.web_config_file {
        Some(p) => match crate::web::webconfig::WebConfig::load(p) {
            Ok(w) => w.tls().is_some(),
            Err(e) => {
                eprintln!("error: --web.config.file: {e}");
                return ExitCode::from(2);
            }
        },
        None => false,
    };
    match tokio::time::timeout(args.timeout, ask(addr, tls)).await {
        Ok(Ok(status)) if status == 200 || status == 401 => {
            // 401: basic auth is on, and the agent answered: it is alive.
            println!("healthy ({status})");
            ExitCode::SUCCESS
        }
        Ok(Ok(status)) => {
            eprintln!("unhealthy: HTTP {status}");
            ExitCode::from(1)
        }
        Ok(Err(e)) => {
            eprintln!("unhealthy: {e}");
            ExitCode::from(1)
        }
        Err(_) => {
            eprintln!("unhealthy: no answer within {:?}", args.timeout);
            ExitCode::from(1)
        }
    }
}

async fn ask(addr: SocketAddr, tls: bool) -> std::io::Result<u16> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    if !tls {
        return exchange(tcp, addr).await;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(rustls::crypto::ring::default_provider())))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await?;
    exchange(stream, addr).await
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, addr: SocketAddr) -> std::io::Result<u16> {
    s.write_all(format!("GET /-/healthy HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).await?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))
}

/// Accepts any server certificate: the check only asks whether the local process answers, and
/// the agent's certificate may name another host.
#[derive(Debug)]
struct AnyServer(rustls::crypto::CryptoProvider);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_mean_this_machine() {
        assert_eq!(target(":10325"), "127.0.0.1:10325".parse().ok());
        assert_eq!(target("0.0.0.0:9"), "127.0.0.1:9".parse().ok());
        assert_eq!(target("[::]:9"), "[::1]:9".parse().ok());
        assert_eq!(target("127.0.0.2:9"), "127.0.0.2:9".parse().ok());
        assert_eq!(target("nonsense"), None);
    }
}
