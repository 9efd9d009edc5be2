//! A loopback target farm: minimal, correct, fast ESMTP listeners for the agent to probe.
//!
//! usage: farm --pki DIR [--tls IP:PORT]... [--plain IP:PORT]... [--threads 2]
//!
//! TLS targets answer banner → EHLO (offering STARTTLS) → STARTTLS → rustls handshake → EHLO →
//! QUIT → 221; plain targets the same without STARTTLS. A fresh CA and one leaf (ECDSA P-256,
//! SANs: farm.bench.test and every listener IP) are made at start; the CA goes to DIR/ca.pem for
//! the agent's `trust.extra_ca_files`. "ready" is printed once every listener is bound. Stops on
//! SIGTERM or SIGINT.
#![forbid(unsafe_code)]

use mailflow_bench::{opt, opts, read_line};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const NAME: &str = "farm.bench.test";
/// A client that stalls longer than this loses its session.
const IDLE: Duration = Duration::from_secs(30);

fn main() -> Result<(), Box<dyn Error>> {
    let pki: PathBuf = opt("--pki", None)?;
    let threads: usize = opt("--threads", Some(2))?;
    let parse = |v: Vec<String>| v.iter().map(|a| a.parse()).collect::<Result<Vec<SocketAddr>, _>>();
    let (tls, plain) = (parse(opts("--tls"))?, parse(opts("--plain"))?);
    if tls.is_empty() && plain.is_empty() {
        return Err("give at least one --tls or --plain IP:PORT".into());
    }
    std::fs::create_dir_all(&pki)?;
    let config = server_config(&pki, tls.iter().chain(&plain))?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(run(tls, plain, config))
}

async fn run(tls: Vec<SocketAddr>, plain: Vec<SocketAddr>, config: Arc<ServerConfig>) -> Result<(), Box<dyn Error>> {
    for (addr, cfg) in tls
        .iter()
        .map(|a| (a, Some(&config)))
        .chain(plain.iter().map(|a| (a, None)))
    {
        let listener = TcpListener::bind(addr).await.map_err(|e| format!("bind {addr}: {e}"))?;
        tokio::spawn(accept_loop(listener, cfg.cloned()));
    }
    println!("ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// A CA written to `dir/ca.pem` and a rustls config presenting a leaf it signed.
fn server_config<'a>(
    dir: &std::path::Path,
    addrs: impl Iterator<Item = &'a SocketAddr>,
) -> Result<Arc<ServerConfig>, Box<dyn Error>> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "mailflow bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(vec![NAME.to_string()])?;
    leaf.distinguished_name.push(DnType::CommonName, NAME);
    let mut ips: Vec<_> = addrs.map(|a| a.ip()).collect();
    ips.sort();
    ips.dedup();
    leaf.subject_alt_names.extend(ips.into_iter().map(SanType::IpAddress));
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let chain = vec![CertificateDer::from(leaf_cert.der().to_vec())];
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

async fn accept_loop(listener: TcpListener, tls: Option<Arc<ServerConfig>>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(IDLE * 4, session(stream, tls)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => eprintln!("farm: session from {peer}: {e}"),
                        Err(_) => eprintln!("farm: session from {peer}: too slow"),
                    }
                });
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(e) => {
                eprintln!("farm: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

enum Next {
    Quit,
    StartTls,
}

async fn session(stream: TcpStream, tls: Option<Arc<ServerConfig>>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut conn = BufReader::new(stream);
    send(&mut conn, b"220 farm.bench.test ESMTP bench\r\n").await?;
    let (Next::StartTls, Some(config)) = (commands(&mut conn, tls.is_some()).await?, tls) else {
        return Ok(());
    };
    // Anything the client pipelined after STARTTLS would be plaintext injection.
    if !conn.buffer().is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "data after STARTTLS"));
    }
    let stream = tokio_rustls::TlsAcceptor::from(config)
        .accept(conn.into_inner())
        .await?;
    let mut conn = BufReader::new(stream);
    commands(&mut conn, false).await?;
    Ok(())
}

/// Answers commands until QUIT (answered 221) or an accepted STARTTLS (answered 220).
async fn commands<S>(conn: &mut BufReader<S>, offer_tls: bool) -> io::Result<Next>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let Some(line) = tokio::time::timeout(IDLE, read_line(conn)).await?? else {
            return Ok(Next::Quit);
        };
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" if offer_tls => b"250-farm.bench.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
            "EHLO" => b"250-farm.bench.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            "HELO" => b"250 farm.bench.test\r\n",
            "STARTTLS" if offer_tls => {
                send(conn, b"220 2.0.0 Ready to start TLS\r\n").await?;
                return Ok(Next::StartTls);
            }
            "STARTTLS" => b"503 5.5.1 STARTTLS not available\r\n",
            "QUIT" => {
                send(conn, b"221 2.0.0 Bye\r\n").await?;
                conn.shutdown().await.ok();
                return Ok(Next::Quit);
            }
            "NOOP" | "RSET" => b"250 2.0.0 OK\r\n",
            _ => b"502 5.5.2 Command not recognized\r\n",
        };
        send(conn, reply).await?;
    }
}

async fn send<S: AsyncWrite + Unpin>(conn: &mut S, bytes: &[u8]) -> io::Result<()> {
    conn.write_all(bytes).await?;
    conn.flush().await
}
