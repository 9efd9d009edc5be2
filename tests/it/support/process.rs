//! The real binary as a child process: either run to completion under a deadline, or served
//! in the background behind a guard that is killed when dropped.

use super::http::{self, Resp};
use super::metrics::Metrics;
use super::net::free_port;
use super::scratch::Scratch;
use serde_json::Value;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mailflow-exporter");

/// Until a started exporter answers `/-/healthy`.
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// Until a state we wait for shows up in a scrape (probes run every second).
pub const WAIT_DEADLINE: Duration = Duration::from_secs(20);
/// Until the process exits after SIGTERM (its HTTP drain is bounded by 10 s).
pub const EXIT_DEADLINE: Duration = Duration::from_secs(20);
/// Pause between two polls.
pub const POLL: Duration = Duration::from_millis(100);

// ------------------------------------------------------------------------------------------
// Run to completion
// ------------------------------------------------------------------------------------------

/// What a child process left behind.
pub struct ChildOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `cmd` to completion with `stdin` as its input (none: `/dev/null`) and piped output,
/// killing it (and panicking with its output) when it outlives `deadline`. Pipes are fed and
/// drained on their own threads so a chatty or slow-reading child never blocks us, and a
/// reader held open by a grandchild is abandoned after a bounded wait. Only a failure to start
/// is an error, so callers can explain a missing tool.
pub fn try_run_with_deadline(mut cmd: Command, stdin: &[u8], deadline: Duration) -> std::io::Result<ChildOutput> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let feed = child.stdin.take().map(|mut w| {
        let input = stdin.to_vec();
        // Dropping the pipe at the end is the child's end of input.
        std::thread::spawn(move || w.write_all(&input))
    });
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
    // The child is gone, so the writer has finished or failed by now.
    if let Some(Ok(Err(e))) = feed.map(JoinHandle::join) {
        panic!("{what}: writing its input failed: {e}");
    }
    Ok(ChildOutput {
        status,
        stdout: join_for(out, Duration::from_secs(10)),
        stderr: join_for(err, Duration::from_secs(10)),
    })
}

/// [`try_run_with_deadline`] for commands that must start.
pub fn run_with_deadline(cmd: Command, stdin: &[u8], deadline: Duration) -> ChildOutput {
    let what = format!("{cmd:?}");
    try_run_with_deadline(cmd, stdin, deadline).unwrap_or_else(|e| panic!("cannot start {what}: {e}"))
}

/// The bytes a pipe reader collected, or nothing if it is still stuck after `limit`.
fn join_for(h: JoinHandle<Vec<u8>>, limit: Duration) -> Vec<u8> {
    let started = Instant::now();
    while !h.is_finished() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
    if h.is_finished() {
        h.join().unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// A finished run of the binary, with everything a failure message needs.
pub struct Run {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8(self.stdout.clone()).unwrap_or_else(|e| panic!("stdout is not UTF-8 ({e}):\n{}", self.dump()))
    }

    pub fn dump(&self) -> String {
        format!(
            "args: {:?}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args,
            self.code,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }

    #[track_caller]
    pub fn assert_exit(&self, code: i32) {
        assert_eq!(self.code, Some(code), "exit code\n{}", self.dump());
    }

    /// stdout as exactly one JSON object.
    #[track_caller]
    pub fn json(&self) -> Value {
        let v: Value = serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e})\n{}", self.dump()));
        assert!(v.is_object(), "stdout is not a JSON object\n{}", self.dump());
        v
    }

    /// A usage/config error: exit 2, a message on stderr, nothing on stdout.
    #[track_caller]
    pub fn assert_usage_error(&self, needles: &[&str]) {
        self.assert_exit(2);
        assert!(
            self.stdout.is_empty(),
            "stdout must stay empty on usage errors\n{}",
            self.dump()
        );
        assert!(!self.stderr.trim().is_empty(), "stderr must explain\n{}", self.dump());
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks {n:?}\n{}", self.dump());
        }
    }
}

/// Runs the binary with `args` to completion on a blocking thread (killed after `deadline`),
/// with the log filter pinned so the environment cannot change what lands on stderr.
pub async fn run<S: AsRef<str>>(args: &[S], deadline: Duration) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.as_ref().to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        cmd.args(&args).env("MAILFLOW_LOG", "warn").env_remove("RUST_LOG");
        let out = run_with_deadline(cmd, &[], deadline);
        Run {
            args,
            code: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("runner thread")
}

// ------------------------------------------------------------------------------------------
// Serving in the background
// ------------------------------------------------------------------------------------------

/// A running `serve` or `demo`, listening on loopback; killed (and reaped) when dropped. Its
/// output goes to files in the scratch directory, quoted by every failure.
pub struct Exporter {
    child: Child,
    pub addr: SocketAddr,
    /// The state directory (`--storage.path`), which outlives the process.
    pub storage: PathBuf,
    stderr_path: PathBuf,
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// When a started exporter counts as up.
#[derive(Clone, Copy)]
enum Ready {
    Healthy,
    Listening,
}

impl Exporter {
    /// `serve` on `config` with its state in `scratch/data` and info logging.
    pub async fn serve(scratch: &Scratch, config: &Path, extra: &[&str]) -> Exporter {
        Exporter::serve_until(scratch, config, extra, Ready::Healthy).await
    }

    /// `serve` that counts as started once its port accepts TCP, for a locked-down HTTP face
    /// (TLS or basic auth) that a plain `/-/healthy` cannot pass.
    pub async fn serve_locked(scratch: &Scratch, config: &Path, extra: &[&str]) -> Exporter {
        Exporter::serve_until(scratch, config, extra, Ready::Listening).await
    }

    async fn serve_until(scratch: &Scratch, config: &Path, extra: &[&str], ready: Ready) -> Exporter {
        let storage = scratch.path("data");
        let mut args: Vec<OsString> = vec![
            "serve".into(),
            "--config.file".into(),
            config.into(),
            "--storage.path".into(),
            storage.clone().into(),
            "--log.level".into(),
            "info".into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        Exporter::start(scratch, storage, &args, ready).await
    }

    /// `demo` (the built-in fault lab) probing every second, with its files in `scratch/demo`.
    pub async fn demo(scratch: &Scratch) -> Exporter {
        let dir = scratch.path("demo");
        let mut args: Vec<OsString> = [
            "demo",
            "--interval",
            "1s",
            "--timeout",
            "1s",
            "--exit-after",
            "120s",
            "--dir",
        ]
        .map(OsString::from)
        .into();
        args.push(dir.clone().into());
        Exporter::start(scratch, dir.join("data"), &args, Ready::Healthy).await
    }

    /// Starts the binary with `args` on a free port and waits until it is healthy. A lost race
    /// for the port is retried with another one; any other early exit fails the test.
    async fn start(scratch: &Scratch, storage: PathBuf, args: &[OsString], ready: Ready) -> Exporter {
        for _ in 0..3 {
            match Exporter::try_start(scratch, &storage, args, ready).await {
                Ok(e) => return e,
                Err(stderr) if stderr.contains("--web.listen-address") => continue,
                Err(stderr) => panic!("exporter failed to start:\n{stderr}"),
            }
        }
        panic!("no free port for the exporter after 3 attempts");
    }

    async fn try_start(scratch: &Scratch, storage: &Path, args: &[OsString], ready: Ready) -> Result<Exporter, String> {
        let addr = free_port();
        let n = RUNS.fetch_add(1, Ordering::SeqCst);
        let stderr_path = scratch.path(&format!("stderr-{n}.log"));
        let stdout_path = scratch.path(&format!("stdout-{n}.log"));
        let child = Command::new(BIN)
            .args(args)
            .arg("--web.listen-address")
            .arg(addr.to_string())
            .env_remove("RUST_LOG")
            .env_remove("MAILFLOW_LOG")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("stdout file"))
            .stderr(File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let mut ex = Exporter {
            child,
            addr,
            storage: storage.to_path_buf(),
            stderr_path,
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = ex.child.try_wait().expect("try_wait") {
                return Err(format!("exited with {status} before becoming healthy\n{}", ex.stderr()));
            }
            let up = match ready {
                Ready::Healthy => http::request(addr, "GET", "/-/healthy", None)
                    .await
                    .is_ok_and(|r| r.status == 200),
                Ready::Listening => tokio::net::TcpStream::connect(addr).await.is_ok(),
            };
            if up {
                return Ok(ex);
            }
            if Instant::now() > deadline {
                panic!("exporter not healthy after {START_DEADLINE:?}\n{}", ex.stderr());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://ADDR/path`, for a browser.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The process's stderr so far, headed by its file name.
    pub fn stderr(&self) -> String {
        format!(
            "--- exporter stderr ({}) ---\n{}",
            self.stderr_path.display(),
            std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
        )
    }

    /// The process's stderr so far, as written (for tests of the log format itself).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("exporter exited unexpectedly with {status}\n{}", self.stderr());
        }
    }

    pub async fn req(&self, method: &str, target: &str, accept: Option<&str>) -> Resp {
        http::request(self.addr, method, target, accept)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.stderr()))
    }

    pub async fn get(&self, target: &str) -> Resp {
        self.req("GET", target, None).await
    }

    pub async fn post(&self, target: &str) -> Resp {
        self.req("POST", target, None).await
    }

    /// `/metrics` in the Prometheus text format, parsed.
    pub async fn scrape(&mut self) -> Metrics {
        self.assert_running();
        let r = self.get("/metrics").await;
        assert_eq!(r.status, 200, "/metrics: {r:?}");
        assert!(
            r.content_type().starts_with("text/plain; version=0.0.4"),
            "content type {:?}",
            r.content_type()
        );
        Metrics::parse(&r.body)
    }

    /// Scrapes until `ok` holds, failing after [`WAIT_DEADLINE`].
    pub async fn wait_for(&mut self, what: &str, ok: impl Fn(&Metrics) -> bool) -> Metrics {
        self.wait_for_within(WAIT_DEADLINE, what, ok).await
    }

    /// Scrapes until `ok` holds, failing after `limit` with the last scrape and the log.
    pub async fn wait_for_within(&mut self, limit: Duration, what: &str, ok: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = Instant::now() + limit;
        loop {
            let m = self.scrape().await;
            if ok(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {limit:?} waiting for {what}\n--- last scrape ---\n{}\n{}",
                    m.text,
                    self.stderr()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every named connector has been probed at least `n` times.
    pub async fn wait_probed(&mut self, connectors: &[&str], n: f64) -> Metrics {
        self.wait_for(&format!("{connectors:?} probed {n} times"), |m| {
            connectors.iter().all(|c| m.probes(c) >= n)
        })
        .await
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {}: {status}", self.child.id());
    }

    /// SIGTERM, then the exit status (within [`EXIT_DEADLINE`]).
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + EXIT_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!("still running {EXIT_DEADLINE:?} after SIGTERM\n{}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
