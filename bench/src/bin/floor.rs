//! The floor: what one probe costs with nothing but tokio and rustls, for the agent to be
//! compared with in the same run.
//!
//! usage: floor --target IP:PORT --mode tls|plain [--ca FILE] [--probes 2000] [--rounds 5] [--rate 0]
//!
//! tls:   connect, banner, EHLO, STARTTLS, handshake (verified against --ca, the ClientConfig
//!        built once, resumption off as in the agent, so every probe sees a full handshake),
//!        EHLO, QUIT → 221.
//! plain: connect, banner, EHLO, QUIT → 221.
//! Probes run one after another on a current-thread runtime, back to back, or with `--rate R`
//! started R times a second (as a scheduler would spread them: each probe then finds cold
//! caches and an idle thread to wake). Each round prints one JSON line with the CPU per probe:
//! the runtime thread's on-CPU time (/proc/thread-self/schedstat, ns resolution), and the
//! whole process's user+system time (/proc/self/stat) as a cross-check.
#![forbid(unsafe_code)]

use mailflow_bench::{Reply, opt, process_cpu_seconds, thread_cpu_seconds};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const EHLO: &[u8] = b"EHLO probe.bench.test\r\n";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let target: SocketAddr = opt("--target", None)?;
    let mode: String = opt("--mode", None)?;
    let probes: usize = opt("--probes", Some(2000))?;
    let rounds: usize = opt("--rounds", Some(5))?;
    let rate: f64 = opt("--rate", Some(0.0))?;
    let tls = match mode.as_str() {
        "tls" => Some(connector(&opt::<PathBuf>("--ca", None)?)?),
        "plain" => None,
        _ => return Err("--mode is tls or plain".into()),
    };
    // Warm up: connections, allocator, caches.
    for _ in 0..probes.min(50) {
        probe(target, tls.as_ref()).await?;
    }
    for round in 0..rounds {
        let (cpu0, proc0, t0) = (thread_cpu_seconds()?, process_cpu_seconds()?, Instant::now());
        let mut ticks = (rate > 0.0).then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / rate)));
        for _ in 0..probes {
            if let Some(t) = ticks.as_mut() {
                t.tick().await;
            }
            probe(target, tls.as_ref()).await?;
        }
        let cpu = thread_cpu_seconds()? - cpu0;
        let (proc_cpu, wall) = (process_cpu_seconds()? - proc0, t0.elapsed().as_secs_f64());
        println!(
            "{{\"mode\":\"{mode}\",\"rate\":{rate},\"round\":{round},\"probes\":{probes},\"cpu_s\":{cpu:.4},\
             \"process_cpu_s\":{proc_cpu:.2},\"wall_s\":{wall:.3},\"cpu_ms_per_probe\":{:.4}}}",
            cpu * 1000.0 / probes as f64
        );
    }
    Ok(())
}

fn connector(ca: &std::path::Path) -> Result<TlsConnector, Box<dyn Error>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn probe(target: SocketAddr, tls: Option<&TlsConnector>) -> io::Result<()> {
    let tcp = TcpStream::connect(target).await?;
    tcp.set_nodelay(true)?;
    let mut conn = BufReader::new(tcp);
    Reply::read(&mut conn).await?.expect("banner", 220)?;
    let ehlo = command(&mut conn, EHLO).await?.expect("EHLO", 250)?;
    let Some(tls) = tls else {
        return command(&mut conn, b"QUIT\r\n").await?.expect("QUIT", 221).map(drop);
    };
    if !ehlo.offers("STARTTLS") {
        return Err(io::Error::other("STARTTLS not offered"));
    }
    command(&mut conn, b"STARTTLS\r\n").await?.expect("STARTTLS", 220)?;
    let name = ServerName::IpAddress(target.ip().into());
    let mut conn = BufReader::new(tls.connect(name, conn.into_inner()).await?);
    command(&mut conn, EHLO).await?.expect("EHLO after STARTTLS", 250)?;
    command(&mut conn, b"QUIT\r\n").await?.expect("QUIT", 221).map(drop)
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut BufReader<S>, line: &[u8]) -> io::Result<Reply> {
    conn.write_all(line).await?;
    conn.flush().await?;
    Reply::read(conn).await
}
