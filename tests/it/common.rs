//! Helpers shared by the test areas.
#![allow(dead_code)]

use mailflow_exporter::config::{DomainPattern, HostName, HostPort, Routing, TlsSettings};
use mailflow_exporter::probe::{Phase, ProbeReport, ProbeSpec, Prober, ProberOptions};
use mailflow_exporter::taxonomy::{Code, Reason};
use std::net::SocketAddr;
use std::time::Duration;

/// A smart host given by address (lab servers listen on ephemeral ports).
pub fn at(sa: SocketAddr) -> HostPort {
    HostPort::from(sa)
}

/// A smart host given by name with an explicit port.
pub fn named(name: &str, port: u16) -> HostPort {
    HostPort::name(host_name(name), Some(port))
}

pub fn host_name(name: &str) -> HostName {
    HostName::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn pattern(name: &str) -> DomainPattern {
    DomainPattern::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn spec(hosts: Vec<HostPort>, tls: TlsSettings) -> ProbeSpec {
    ProbeSpec {
        connector: "test".into(),
        routing: Routing::SmartHosts(hosts),
        port: 25,
        recipient_domains: vec![],
        tls_settings: tls,
        tls_domain: None,
        helo: host_name("probe.test"),
        timeout: Duration::from_secs(2),
    }
}

pub fn mx_spec(domains: &[&str], port: u16, tls: TlsSettings) -> ProbeSpec {
    ProbeSpec {
        connector: "test-mx".into(),
        routing: Routing::Mx(domains.iter().map(|d| host_name(d)).collect()),
        port,
        recipient_domains: domains.iter().map(|d| pattern(d)).collect(),
        tls_settings: tls,
        tls_domain: None,
        helo: host_name("probe.test"),
        timeout: Duration::from_secs(2),
    }
}

/// Options with a given DNS server and optional extra CA (PEM).
pub fn opts(dns: Option<SocketAddr>, ca_pem: Option<String>) -> ProberOptions {
    ProberOptions {
        dns_servers: dns.into_iter().collect(),
        extra_ca: ca_pem
            .into_iter()
            .map(|p| ("test CA".to_string(), p.into_bytes()))
            .collect(),
        ..ProberOptions::default()
    }
}

pub async fn probe(o: ProberOptions, s: &ProbeSpec) -> ProbeReport {
    Prober::new(o).expect("prober").probe(s).await
}

/// Asserts a failed report with this code, reason and phase, and a consistent Exchange line.
#[track_caller]
pub fn assert_fails(r: &ProbeReport, code: Code, reason: Reason, phase: Phase) {
    let dump = serde_json::to_string_pretty(r).unwrap();
    assert!(!r.delivered, "expected failure, got delivered:\n{dump}");
    assert_eq!(r.code, Some(code), "code\n{dump}");
    assert_eq!(r.reason, Some(reason), "reason\n{dump}");
    assert_eq!(r.phase, Some(phase), "phase\n{dump}");
    assert!(r.message.starts_with(code.smtp_prefix()), "message {:?}", r.message);
    assert!(
        r.message.contains("[LastAttemptedServerName="),
        "message {:?}",
        r.message
    );
}

#[track_caller]
pub fn assert_delivered(r: &ProbeReport) {
    let dump = serde_json::to_string_pretty(r).unwrap();
    assert!(r.delivered, "expected delivered:\n{dump}");
    assert_eq!(r.code, None, "{dump}");
    assert!(r.attempts.iter().any(|a| a.delivered), "{dump}");
}

/// What a child process left behind.
pub struct ChildOutput {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `cmd` to completion with piped output, killing it (and panicking with its stderr) when it
/// outlives `deadline`. Pipes are drained on their own threads so a chatty child never blocks,
/// and a reader held open by a grandchild is abandoned after a bounded wait.
pub fn run_with_deadline(mut cmd: std::process::Command, deadline: Duration) -> ChildOutput {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::Instant;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            b
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout pipe")));
    let err = drain(Box::new(child.stderr.take().expect("stderr pipe")));
    let started = Instant::now();
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => break status,
            None if started.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = join_for(out, Duration::from_secs(5));
                let stderr = join_for(err, Duration::from_secs(5));
                panic!(
                    "{what} still running after {deadline:?}; killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    String::from_utf8_lossy(&stdout),
                    String::from_utf8_lossy(&stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    ChildOutput {
        status,
        stdout: join_for(out, Duration::from_secs(10)),
        stderr: join_for(err, Duration::from_secs(10)),
    }
}

/// The bytes a pipe reader collected, or nothing if it is still stuck after `limit`.
fn join_for(h: std::thread::JoinHandle<Vec<u8>>, limit: Duration) -> Vec<u8> {
    let started = std::time::Instant::now();
    while !h.is_finished() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
    if h.is_finished() {
        h.join().unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// A fresh directory under Cargo's per-target scratch space. Removed on drop, except when the
/// test is failing: then it is kept (and named) for inspection.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> std::path::PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).expect("write scratch file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed: kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
