//! Loopback SMTP servers that each misbehave in one precise way.
//!
//! Used by the prober's tests and by `demo` to show how the prober reports what Exchange Online
//! would see (connect → banner → EHLO → STARTTLS → TLS → EHLO → QUIT). Every server listens on
//! a loopback address and runs as tokio tasks that are aborted when the handle is dropped.
//!
//! Server-side input handling is defensive: lines are bounded ([`MAX_LINE`] bytes), CRLF and
//! bare LF are both accepted, verbs are case-insensitive, idle clients are dropped after
//! [`IDLE_TIMEOUT`], and nothing a client sends can make a server task panic.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream as StdTcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

/// Longest accepted command line, terminator included.
pub const MAX_LINE: usize = 4096;
/// A client that sends nothing for this long is disconnected.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many connections get a transcript; later ones are served but not recorded.
const MAX_TRANSCRIPTS: usize = 256;
/// Each transcript is cut off at this many bytes.
const MAX_TRANSCRIPT_BYTES: usize = 16 * 1024;
/// Largest TLS record body (2^14 plus the TLS 1.2 ciphertext expansion allowance).
const MAX_TLS_RECORD: usize = 16384 + 2048;
/// Line repeated, byte by byte, by [`Behavior::Tarpit`].
const TARPIT_LINE: &[u8] = b"220-lab.test tarpit: please keep waiting\r\n";

/// How a [`FaultServer`] treats every connection it accepts.
#[derive(Clone, Debug)]
pub enum Behavior {
    /// Well-behaved ESMTP: multiline banner if `banner` has more than one line, EHLO answered
    /// with `capabilities` (in the given order), STARTTLS → `220 2.0.0 Ready` then a TLS
    /// handshake with `tls` (`None`: STARTTLS is neither advertised nor accepted, it gets 502),
    /// EHLO after TLS (STARTTLS no longer advertised), QUIT → 221.
    Smtp(SmtpOptions),
    /// `421 4.3.2 Service not available, closing transmission channel`, then close.
    Banner421,
    /// Accept and close at once (FIN).
    CloseAtConnect,
    /// Accept and close with `SO_LINGER` 0 (RST): the client's first read fails with ECONNRESET.
    ResetAtConnect,
    /// Send the 220 banner, then close on the first command without replying.
    CloseAfterBanner,
    /// Send the 220 banner, read EHLO, then RST.
    ResetAfterEhlo,
    /// 220, EHLO offers STARTTLS, `220 2.0.0 Ready`, read the ClientHello, close.
    CloseAfterStarttls,
    /// 220, EHLO offers STARTTLS, `220 2.0.0 Ready`, read the ClientHello, send a fatal TLS
    /// alert record with this description (40 handshake_failure, 70 protocol_version), close.
    TlsAlert(u8),
    /// Accept and never send anything (the client's read times out).
    Silent,
    /// Send a syntactically valid 220 banner one byte at a time, repeating `220-` continuation
    /// lines forever so that the reply never ends.
    Tarpit {
        /// Pause between two bytes.
        byte_interval: Duration,
    },
    /// `220 ` followed by `len` `A`s and no line terminator, written as fast as the client
    /// reads; afterwards the connection is held open.
    HugeLine {
        /// Number of `A`s after `220 `.
        len: usize,
    },
    /// Send these bytes as the "banner" (e.g. `b"SSH-2.0-OpenSSH_9.2\r\n"` or an HTTP response),
    /// then hold the connection until the client closes it.
    Garbage(Vec<u8>),
    /// EHLO → `502 5.5.2 Error: command not recognized`; HELO → 250 if `helo_ok`, else
    /// `550 5.7.1 go away`; otherwise like [`Behavior::Smtp`] without STARTTLS.
    EhloRejected {
        /// Whether HELO is accepted.
        helo_ok: bool,
    },
    /// EHLO offers STARTTLS; STARTTLS → `454 4.7.0 TLS not available due to local problem`.
    StarttlsRejected,
    /// STARTTLS → `220 2.0.0 Ready` and, in the same write, `250 injected` before the TLS
    /// handshake (a client that finds plaintext left over after the 220 must flag it). The
    /// server then really does TLS (self-signed certificate for `lab.test`) and continues like
    /// [`Behavior::Smtp`], so only the leftover distinguishes it from a good server.
    StarttlsInjection,
    /// STARTTLS → `220 2.0.0 Ready`, then `bytes` unasked: in the same write when `split` is
    /// false, 200 ms later when true. Then the connection is held until the client closes it.
    /// A client must judge both timings the same way.
    StarttlsEarly {
        /// What follows the 220 (a TLS record, or plaintext).
        bytes: Vec<u8>,
        /// Sent in a write of its own after a pause.
        split: bool,
    },
    /// 220 banner, EHLO → `354 3.0.0 unexpected` (valid syntax, wrong code for EHLO).
    UnexpectedReply,
    /// A well-behaved session (STARTTLS offered, self-signed certificate for `lab.test`) that
    /// ends without a reply at one point of the dialogue: with FIN, or with RST when `reset`.
    HangUp {
        /// Where the connection ends.
        at: HangUpAt,
        /// RST (`SO_LINGER` 0) instead of FIN.
        reset: bool,
    },
}

/// Where [`Behavior::HangUp`] ends the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HangUpAt {
    /// On the STARTTLS command, before any reply.
    Starttls,
    /// After `220 2.0.0 Ready` and the client's first TLS record (the ClientHello).
    TlsHandshake,
    /// On the EHLO sent inside TLS, after a completed handshake (no TLS close_notify: the TCP
    /// connection just ends).
    EhloTls,
}

/// Settings of the well-behaved [`Behavior::Smtp`] server.
#[derive(Clone, Debug)]
pub struct SmtpOptions {
    /// Banner lines without the reply code. Empty: `<hostname> ESMTP`.
    pub banner: Vec<String>,
    /// EHLO keywords, sent in this order. `STARTTLS` (any case) is only advertised when `tls`
    /// is `Some` and TLS is not active yet.
    pub capabilities: Vec<String>,
    /// Server configuration for STARTTLS; `None` disables STARTTLS.
    pub tls: Option<Arc<ServerConfig>>,
    /// Host name in the EHLO/HELO greeting lines.
    pub hostname: String,
}

impl Default for SmtpOptions {
    fn default() -> Self {
        Self {
            banner: vec!["lab.test ESMTP".to_owned()],
            capabilities: ["PIPELINING", "SIZE 10240000", "8BITMIME", "STARTTLS"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
            tls: None,
            hostname: "lab.test".to_owned(),
        }
    }
}

/// A loopback server that applies one [`Behavior`] to every connection.
///
/// The accept loop and all connection tasks are aborted when this is dropped.
#[derive(Debug)]
pub struct FaultServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultServer {
    /// Starts a server on `127.0.0.1:0`.
    pub async fn start(b: Behavior) -> io::Result<FaultServer> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), b).await
    }

    /// Starts a server on `addr` (meant for loopback addresses such as `127.0.0.2:2525`).
    pub async fn start_on(addr: SocketAddr, b: Behavior) -> io::Result<FaultServer> {
        let mode = Arc::new(Mode::from_behavior(b)?);
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(listener, mode, Arc::clone(&shared)));
        Ok(FaultServer { addr, shared, task })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// What clients sent, one string per accepted connection in accept order (the first
    /// [`MAX_TRANSCRIPTS`] connections only). Each command line the server read is appended
    /// without its line terminator and followed by `\n`, e.g. `"EHLO probe\nSTARTTLS\nEHLO
    /// probe\nQUIT\n"`; TLS handshake bytes are not recorded. Transcripts are cut off at 16 KiB.
    pub fn transcripts(&self) -> Vec<String> {
        lock(&self.shared.transcripts).clone()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener with backlog 0 that never accepts and whose accept queue is already full, so the
/// kernel drops further SYNs: connecting to it times out, on loopback and without privileges.
#[derive(Debug)]
pub struct BlackholeListener {
    addr: SocketAddr,
    _listener: Socket,
    _fillers: Vec<StdTcpStream>,
}

impl BlackholeListener {
    /// Binds `127.0.0.1:0`, listens with backlog 0 and fills the accept queue.
    ///
    /// Blocks for up to a few hundred milliseconds while filling.
    pub fn start() -> io::Result<Self> {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        listener.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
        listener.listen(0)?;
        let addr = listener
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("listener has no IP address"))?;
        // With backlog 0, Linux queues one connection (the queue is full once it holds more
        // than `backlog`); SYNs arriving while it is full are dropped, whether or not SYN
        // cookies are enabled. Connect until one attempt hangs: then the queue is full.
        let mut fillers = Vec::new();
        for _ in 0..8 {
            match StdTcpStream::connect_timeout(&addr, Duration::from_millis(150)) {
                Ok(s) => fillers.push(s),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                Err(e) => return Err(e),
            }
        }
        Ok(Self {
            addr,
            _listener: listener,
            _fillers: fillers,
        })
    }

    /// The address whose connection attempts time out.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A port on 127.0.0.1 with nothing listening: connecting to it is refused (RST).
///
/// The port was free a moment ago; another process could grab it in between.
pub fn closed_port() -> io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(addr)
}

// ---------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Shared {
    connections: AtomicUsize,
    transcripts: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Appends command lines to one connection's transcript.
struct Transcript {
    shared: Arc<Shared>,
    index: Option<usize>,
}

impl Transcript {
    fn register(shared: &Arc<Shared>) -> Self {
        let mut all = lock(&shared.transcripts);
        let index = (all.len() < MAX_TRANSCRIPTS).then(|| {
            all.push(String::new());
            all.len() - 1
        });
        Self {
            shared: Arc::clone(shared),
            index,
        }
    }

    fn record(&self, line: &str) {
        let Some(index) = self.index else { return };
        let mut all = lock(&self.shared.transcripts);
        if let Some(t) = all.get_mut(index)
            && t.len() + line.len() < MAX_TRANSCRIPT_BYTES
        {
            t.push_str(line);
            t.push('\n');
        }
    }
}

/// [`Behavior`] prepared for serving (certificates generated once, not per connection).
#[derive(Debug)]
enum Mode {
    Session(Policy),
    Banner421,
    CloseAtConnect,
    ResetAtConnect,
    CloseAfterBanner,
    ResetAfterEhlo,
    Silent,
    Tarpit(Duration),
    HugeLine(usize),
    Garbage(Vec<u8>),
}

#[derive(Debug)]
struct Policy {
    banner: Vec<String>,
    hostname: String,
    capabilities: Vec<String>,
    ehlo: EhloMode,
    starttls: StarttlsMode,
}

#[derive(Debug, Clone, Copy)]
enum EhloMode {
    Normal,
    Reject { helo_ok: bool },
    Unexpected,
    HangUpInTls(bool),
}

#[derive(Debug)]
enum StarttlsMode {
    Unavailable,
    Tls(Arc<ServerConfig>),
    Reject,
    Inject(Arc<ServerConfig>),
    Early(Vec<u8>, bool),
    CloseAfterHello,
    Alert(u8),
    /// STARTTLS ends the connection, at once or after `220 Ready` and the ClientHello.
    HangUp {
        after_hello: bool,
        reset: bool,
    },
}

impl StarttlsMode {
    fn offered(&self) -> bool {
        !matches!(self, StarttlsMode::Unavailable)
    }
}

impl Mode {
    fn from_behavior(b: Behavior) -> io::Result<Self> {
        let policy = |ehlo, starttls| {
            let d = SmtpOptions::default();
            Mode::Session(Policy {
                banner: d.banner,
                hostname: d.hostname,
                capabilities: d.capabilities,
                ehlo,
                starttls,
            })
        };
        Ok(match b {
            Behavior::Smtp(o) => Mode::Session(Policy {
                banner: o.banner,
                hostname: o.hostname,
                capabilities: o.capabilities,
                ehlo: EhloMode::Normal,
                starttls: o.tls.map_or(StarttlsMode::Unavailable, StarttlsMode::Tls),
            }),
            Behavior::Banner421 => Mode::Banner421,
            Behavior::CloseAtConnect => Mode::CloseAtConnect,
            Behavior::ResetAtConnect => Mode::ResetAtConnect,
            Behavior::CloseAfterBanner => Mode::CloseAfterBanner,
            Behavior::ResetAfterEhlo => Mode::ResetAfterEhlo,
            Behavior::CloseAfterStarttls => policy(EhloMode::Normal, StarttlsMode::CloseAfterHello),
            Behavior::TlsAlert(d) => policy(EhloMode::Normal, StarttlsMode::Alert(d)),
            Behavior::Silent => Mode::Silent,
            Behavior::Tarpit { byte_interval } => Mode::Tarpit(byte_interval),
            Behavior::HugeLine { len } => Mode::HugeLine(len),
            Behavior::Garbage(bytes) => Mode::Garbage(bytes),
            Behavior::EhloRejected { helo_ok } => policy(EhloMode::Reject { helo_ok }, StarttlsMode::Unavailable),
            Behavior::StarttlsRejected => policy(EhloMode::Normal, StarttlsMode::Reject),
            Behavior::StarttlsInjection => {
                policy(EhloMode::Normal, StarttlsMode::Inject(self_signed_config("lab.test")?))
            }
            Behavior::StarttlsEarly { bytes, split } => policy(EhloMode::Normal, StarttlsMode::Early(bytes, split)),
            Behavior::UnexpectedReply => policy(EhloMode::Unexpected, StarttlsMode::Unavailable),
            Behavior::HangUp {
                at: HangUpAt::Starttls,
                reset,
            } => policy(
                EhloMode::Normal,
                StarttlsMode::HangUp {
                    after_hello: false,
                    reset,
                },
            ),
            Behavior::HangUp {
                at: HangUpAt::TlsHandshake,
                reset,
            } => policy(
                EhloMode::Normal,
                StarttlsMode::HangUp {
                    after_hello: true,
                    reset,
                },
            ),
            Behavior::HangUp {
                at: HangUpAt::EhloTls,
                reset,
            } => policy(
                EhloMode::HangUpInTls(reset),
                StarttlsMode::Tls(self_signed_config("lab.test")?),
            ),
        })
    }
}

/// A TLS server configuration with a fresh self-signed certificate for `name`.
fn self_signed_config(name: &str) -> io::Result<Arc<ServerConfig>> {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).map_err(io::Error::other)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(io::Error::other)?;
    Ok(Arc::new(config))
}

async fn accept_loop(listener: TcpListener, mode: Arc<Mode>, shared: Arc<Shared>) {
    // Dropping the JoinSet (when this task is aborted) aborts every connection task.
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, peer)) => {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let transcript = Transcript::register(&shared);
                let mode = Arc::clone(&mode);
                tasks.spawn(async move {
                    if let Err(e) = serve(stream, &mode, transcript).await {
                        tracing::debug!(%peer, error = %e, "lab smtp connection ended with error");
                    }
                });
            }
            Err(e) => {
                // E.g. EMFILE: back off instead of spinning.
                tracing::debug!(error = %e, "lab smtp accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn serve(stream: TcpStream, mode: &Mode, transcript: Transcript) -> io::Result<()> {
    match mode {
        Mode::Session(policy) => smtp_session(stream, policy, transcript).await,
        Mode::Banner421 => {
            let mut stream = stream;
            stream
                .write_all(b"421 4.3.2 Service not available, closing transmission channel\r\n")
                .await?;
            stream.shutdown().await
        }
        Mode::CloseAtConnect => {
            let mut stream = stream;
            stream.shutdown().await
        }
        Mode::ResetAtConnect => reset(stream),
        Mode::CloseAfterBanner => {
            let mut conn = LineConn::new(stream, transcript);
            conn.write(b"220 lab.test ESMTP\r\n").await?;
            let _ = conn.read_line().await?;
            conn.io.shutdown().await
        }
        Mode::ResetAfterEhlo => {
            let mut conn = LineConn::new(stream, transcript);
            conn.write(b"220 lab.test ESMTP\r\n").await?;
            let _ = conn.read_line().await?;
            reset(conn.io)
        }
        Mode::Silent => {
            hold(&mut LineConn::new(stream, transcript)).await;
            Ok(())
        }
        Mode::Tarpit(interval) => {
            let mut stream = stream;
            let (rd, mut wr) = stream.split();
            let mut conn = LineConn::new(rd, transcript);
            tokio::select! {
                () = hold(&mut conn) => Ok(()),
                r = drip(&mut wr, *interval) => r,
            }
        }
        Mode::HugeLine(len) => {
            let mut conn = LineConn::new(stream, transcript);
            conn.write(b"220 ").await?;
            let chunk = [b'A'; 8192];
            let mut left = *len;
            while left > 0 {
                let n = left.min(chunk.len());
                conn.io.write_all(&chunk[..n]).await?;
                left -= n;
            }
            conn.io.flush().await?;
            hold(&mut conn).await;
            Ok(())
        }
        Mode::Garbage(bytes) => {
            let mut conn = LineConn::new(stream, transcript);
            conn.write(bytes).await?;
            hold(&mut conn).await;
            Ok(())
        }
    }
}

/// Closes with `SO_LINGER` 0 so that the kernel sends RST instead of FIN.
fn reset(stream: TcpStream) -> io::Result<()> {
    SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
    drop(stream);
    Ok(())
}

/// Reads (and records) whatever the client sends, never replying, until it closes, errs or
/// stays idle for [`IDLE_TIMEOUT`].
async fn hold<S: AsyncRead + Unpin>(conn: &mut LineConn<S>) {
    loop {
        match conn.read_line().await {
            Ok(Read::Line(_)) => {}
            Ok(Read::TooLong) => conn.buf.clear(),
            Ok(Read::Eof) | Err(_) => return,
        }
    }
}

/// Sends [`TARPIT_LINE`] forever, one byte per `interval`.
async fn drip<W: AsyncWrite + Unpin>(wr: &mut W, interval: Duration) -> io::Result<()> {
    loop {
        for &b in TARPIT_LINE {
            wr.write_all(&[b]).await?;
            wr.flush().await?;
            if interval.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(interval).await;
            }
        }
    }
}

enum Read {
    Line(String),
    TooLong,
    Eof,
}

/// A stream plus our own read buffer: bytes are only buffered up to the end of what the client
/// has sent, and we never read past a line the client waits on (e.g. STARTTLS).
struct LineConn<S> {
    io: S,
    buf: Vec<u8>,
    transcript: Transcript,
}

impl<S> LineConn<S> {
    fn new(io: S, transcript: Transcript) -> Self {
        Self {
            io,
            buf: Vec::with_capacity(512),
            transcript,
        }
    }
}

impl<S: AsyncRead + Unpin> LineConn<S> {
    /// Reads more bytes into the buffer; `Ok(0)` at EOF.
    async fn fill(&mut self, max: usize) -> io::Result<usize> {
        let mut chunk = [0u8; 1024];
        let want = max.clamp(1, chunk.len());
        let n = timeout(IDLE_TIMEOUT, self.io.read(&mut chunk[..want]))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client idle"))??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one line (CRLF or LF), records it in the transcript and returns it without its
    /// terminator. A partial line at EOF is discarded.
    async fn read_line(&mut self) -> io::Result<Read> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                if pos >= MAX_LINE {
                    return Ok(Read::TooLong);
                }
                let raw: Vec<u8> = self.buf.drain(..=pos).collect();
                let body = raw.strip_suffix(b"\n").unwrap_or(&raw);
                let body = body.strip_suffix(b"\r").unwrap_or(body);
                let line = String::from_utf8_lossy(body).into_owned();
                self.transcript.record(&line);
                return Ok(Read::Line(line));
            }
            if self.buf.len() >= MAX_LINE {
                return Ok(Read::TooLong);
            }
            if self.fill(MAX_LINE - self.buf.len()).await? == 0 {
                return Ok(Read::Eof);
            }
        }
    }

    /// Reads exactly `n` bytes (buffered ones first); `Ok(None)` on EOF before that.
    async fn read_exact_buffered(&mut self, n: usize) -> io::Result<Option<Vec<u8>>> {
        while self.buf.len() < n {
            if self.fill(n - self.buf.len()).await? == 0 {
                return Ok(None);
            }
        }
        Ok(Some(self.buf.drain(..n).collect()))
    }

    /// Reads one TLS record (normally the ClientHello); `Ok(false)` if the client closed first.
    async fn read_tls_record(&mut self) -> io::Result<bool> {
        let Some(header) = self.read_exact_buffered(5).await? else {
            return Ok(false);
        };
        let len = usize::from(u16::from_be_bytes([header[3], header[4]])).min(MAX_TLS_RECORD);
        Ok(self.read_exact_buffered(len).await?.is_some())
    }
}

impl<S: AsyncWrite + Unpin> LineConn<S> {
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }
}

enum End {
    Close,
    /// End without a reply: FIN, or RST when `reset`.
    HangUp {
        reset: bool,
    },
    StartTls(Arc<ServerConfig>),
}

async fn smtp_session(stream: TcpStream, policy: &Policy, transcript: Transcript) -> io::Result<()> {
    let mut conn = LineConn::new(stream, transcript);
    conn.write(banner(policy).as_bytes()).await?;
    match commands(&mut conn, policy, false).await? {
        End::Close | End::HangUp { reset: false } => conn.io.shutdown().await,
        End::HangUp { reset: true } => reset(conn.io),
        End::StartTls(config) => {
            // `commands` only returns StartTls with an empty buffer, so the acceptor sees the
            // ClientHello from its first byte.
            let LineConn { io, transcript, .. } = conn;
            let tls = timeout(IDLE_TIMEOUT, tokio_rustls::TlsAcceptor::from(config).accept(io))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
            let mut conn = LineConn::new(tls, transcript);
            // With TLS active, `commands` never asks for another handshake.
            match commands(&mut conn, policy, true).await? {
                // Abrupt: the TCP connection ends under TLS, without close_notify.
                End::HangUp { reset: true } => reset(conn.io.into_inner().0),
                End::HangUp { reset: false } => conn.io.into_inner().0.shutdown().await,
                End::Close | End::StartTls(_) => conn.io.shutdown().await,
            }
        }
    }
}

fn banner(policy: &Policy) -> String {
    let lines: Vec<String> = if policy.banner.is_empty() {
        vec![format!("{} ESMTP", policy.hostname)]
    } else {
        policy.banner.clone()
    };
    multiline(220, &lines)
}

/// Formats a (possibly multiline) reply: `code-text` lines, the last one `code text`.
fn multiline(code: u16, lines: &[String]) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.push_str(&format!("{code}{sep}{line}\r\n"));
    }
    out
}

/// The command loop, shared by the plaintext and the TLS phase.
async fn commands<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineConn<S>,
    policy: &Policy,
    tls_active: bool,
) -> io::Result<End> {
    loop {
        let line = match conn.read_line().await? {
            Read::Line(line) => line,
            Read::Eof => return Ok(End::Close),
            Read::TooLong => {
                conn.write(b"500 5.5.2 Error: line too long\r\n").await?;
                return Ok(End::Close);
            }
        };
        let (verb, arg) = match line.trim().split_once(char::is_whitespace) {
            Some((verb, arg)) => (verb.to_ascii_uppercase(), arg.trim()),
            None => (line.trim().to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" => match policy.ehlo {
                EhloMode::Reject { .. } => {
                    conn.write(b"502 5.5.2 Error: command not recognized\r\n").await?;
                }
                EhloMode::Unexpected => conn.write(b"354 3.0.0 unexpected\r\n").await?,
                // Normal before TLS; the EHLO inside TLS ends the connection (RST when true).
                EhloMode::HangUpInTls(reset) if tls_active => return Ok(End::HangUp { reset }),
                EhloMode::Normal | EhloMode::HangUpInTls(_) if arg.is_empty() => {
                    conn.write(b"501 5.5.4 Syntax: EHLO hostname\r\n").await?;
                }
                EhloMode::Normal | EhloMode::HangUpInTls(_) => {
                    let offer_tls = policy.starttls.offered() && !tls_active;
                    let mut lines = vec![format!("{} Hello {arg}", policy.hostname)];
                    lines.extend(
                        policy
                            .capabilities
                            .iter()
                            .filter(|c| offer_tls || !c.trim().eq_ignore_ascii_case("STARTTLS"))
                            .cloned(),
                    );
                    conn.write(multiline(250, &lines).as_bytes()).await?;
                }
            },
            "HELO" => match policy.ehlo {
                EhloMode::Reject { helo_ok: false } => {
                    conn.write(b"550 5.7.1 go away\r\n").await?;
                }
                _ if arg.is_empty() => {
                    conn.write(b"501 5.5.4 Syntax: HELO hostname\r\n").await?;
                }
                _ => {
                    conn.write(format!("250 {}\r\n", policy.hostname).as_bytes()).await?;
                }
            },
            "STARTTLS" if tls_active => {
                conn.write(b"503 5.5.1 Error: TLS already active\r\n").await?;
            }
            "STARTTLS" => {
                if !matches!(policy.starttls, StarttlsMode::Unavailable | StarttlsMode::Reject) && !conn.buf.is_empty()
                {
                    // Pipelined bytes after STARTTLS would be taken as TLS (or worse, as
                    // commands "inside" TLS): refuse, like a careful server does.
                    conn.write(b"554 5.5.1 Error: data pipelined after STARTTLS\r\n")
                        .await?;
                    return Ok(End::Close);
                }
                match &policy.starttls {
                    StarttlsMode::Unavailable => {
                        conn.write(b"502 5.5.1 Error: command not implemented\r\n").await?;
                    }
                    StarttlsMode::Reject => {
                        conn.write(b"454 4.7.0 TLS not available due to local problem\r\n")
                            .await?;
                    }
                    StarttlsMode::Tls(config) => {
                        conn.write(b"220 2.0.0 Ready\r\n").await?;
                        return Ok(End::StartTls(Arc::clone(config)));
                    }
                    StarttlsMode::Inject(config) => {
                        conn.write(b"220 2.0.0 Ready\r\n250 injected\r\n").await?;
                        return Ok(End::StartTls(Arc::clone(config)));
                    }
                    StarttlsMode::Early(bytes, split) => {
                        if *split {
                            conn.write(b"220 2.0.0 Ready\r\n").await?;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            conn.write(bytes).await?;
                        } else {
                            let mut all = b"220 2.0.0 Ready\r\n".to_vec();
                            all.extend_from_slice(bytes);
                            conn.write(&all).await?;
                        }
                        hold(conn).await;
                        return Ok(End::Close);
                    }
                    StarttlsMode::HangUp { after_hello, reset } => {
                        if *after_hello {
                            conn.write(b"220 2.0.0 Ready\r\n").await?;
                            conn.read_tls_record().await?;
                        }
                        return Ok(End::HangUp { reset: *reset });
                    }
                    StarttlsMode::CloseAfterHello => {
                        conn.write(b"220 2.0.0 Ready\r\n").await?;
                        conn.read_tls_record().await?;
                        return Ok(End::Close);
                    }
                    StarttlsMode::Alert(description) => {
                        conn.write(b"220 2.0.0 Ready\r\n").await?;
                        if conn.read_tls_record().await? {
                            // Alert record, TLS 1.2 record version, level 2 = fatal.
                            conn.write(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, *description]).await?;
                        }
                        return Ok(End::Close);
                    }
                }
            }
            "QUIT" => {
                conn.write(b"221 2.0.0 Bye\r\n").await?;
                return Ok(End::Close);
            }
            "NOOP" | "RSET" => conn.write(b"250 2.0.0 Ok\r\n").await?,
            "MAIL" | "RCPT" | "DATA" | "BDAT" | "VRFY" | "EXPN" => {
                conn.write(b"502 5.5.1 Error: not implemented by the lab server\r\n")
                    .await?;
            }
            _ => {
                conn.write(b"500 5.5.2 Error: command not recognized\r\n").await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

    const WAIT: Duration = Duration::from_secs(5);

    /// Minimal SMTP client with its own buffer (so nothing is swallowed before TLS).
    struct Client<S> {
        io: S,
        buf: Vec<u8>,
    }

    impl Client<TcpStream> {
        async fn connect(addr: SocketAddr) -> Self {
            let io = timeout(WAIT, TcpStream::connect(addr))
                .await
                .expect("connect timed out")
                .expect("connect");
            Client { io, buf: Vec::new() }
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
        async fn fill(&mut self) -> usize {
            let mut chunk = [0u8; 4096];
            let n = timeout(WAIT, self.io.read(&mut chunk))
                .await
                .expect("read timed out")
                .expect("read");
            self.buf.extend_from_slice(&chunk[..n]);
            n
        }

        /// Reads one complete (possibly multiline) reply.
        async fn reply(&mut self) -> String {
            let mut out = String::new();
            loop {
                let pos = loop {
                    if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                        break pos;
                    }
                    assert!(self.fill().await > 0, "EOF inside reply: {out:?}");
                };
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8(line).expect("utf8");
                let last = line.as_bytes().get(3) == Some(&b' ');
                out.push_str(&line);
                if last {
                    return out;
                }
            }
        }

        async fn send(&mut self, cmd: &str) {
            self.io.write_all(cmd.as_bytes()).await.expect("write");
        }

        async fn cmd(&mut self, cmd: &str) -> String {
            self.send(&format!("{cmd}\r\n")).await;
            self.reply().await
        }

        /// Asserts that the server closes (FIN) without sending anything more.
        async fn expect_eof(&mut self) {
            assert!(self.buf.is_empty(), "unexpected {:?}", self.buf);
            assert_eq!(self.fill().await, 0, "expected EOF, got {:?}", self.buf);
        }

        /// Asserts that nothing arrives within `d`.
        async fn expect_silence(&mut self, d: Duration) {
            let mut chunk = [0u8; 64];
            let r = timeout(d, self.io.read(&mut chunk)).await;
            assert!(r.is_err(), "expected silence, got {r:?}");
        }
    }

    async fn expect_reset(stream: &mut TcpStream) {
        let mut chunk = [0u8; 64];
        let r = timeout(WAIT, stream.read(&mut chunk)).await.expect("read timed out");
        match r {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
            Ok(n) => panic!("expected RST, read {n} bytes"),
        }
    }

    #[derive(Debug)]
    struct AcceptAnything(rustls::crypto::CryptoProvider);

    impl ServerCertVerifier for AcceptAnything {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    fn tls_connector() -> tokio_rustls::TlsConnector {
        let provider = rustls::crypto::ring::default_provider();
        let config = ClientConfig::builder_with_provider(Arc::new(provider.clone()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    async fn tls_handshake(client: Client<TcpStream>) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        assert!(client.buf.is_empty(), "plaintext left over before TLS");
        let name = ServerName::try_from("lab.test").expect("server name");
        timeout(WAIT, tls_connector().connect(name, client.io))
            .await
            .expect("TLS handshake timed out")
    }

    /// A syntactically plausible TLS record standing in for a ClientHello.
    const FAKE_CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00];

    #[tokio::test]
    async fn smtp_without_tls_hides_and_refuses_starttls() {
        let opts = SmtpOptions {
            banner: vec!["lab.test ESMTP first".into(), "second line".into()],
            ..SmtpOptions::default()
        };
        let server = FaultServer::start(Behavior::Smtp(opts)).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        assert_eq!(c.reply().await, "220-lab.test ESMTP first\r\n220 second line\r\n");
        assert_eq!(
            c.cmd("EHLO probe.example").await,
            "250-lab.test Hello probe.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"
        );
        assert!(c.cmd("STARTTLS").await.starts_with("502 "));
        assert!(c.cmd("NOOP").await.starts_with("250 "));
        assert!(c.cmd("FROB").await.starts_with("500 "));
        assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
        c.expect_eof().await;
        assert_eq!(server.connections(), 1);
        assert_eq!(
            server.transcripts(),
            vec!["EHLO probe.example\nSTARTTLS\nNOOP\nFROB\nQUIT\n".to_owned()]
        );
    }

    #[tokio::test]
    async fn smtp_tolerates_lf_and_lowercase() {
        let server = FaultServer::start(Behavior::Smtp(SmtpOptions::default()))
            .await
            .expect("start");
        let mut c = Client::connect(server.addr()).await;
        assert_eq!(c.reply().await, "220 lab.test ESMTP\r\n");
        c.send("ehlo x\n").await;
        assert!(c.reply().await.starts_with("250-lab.test Hello x\r\n"));
        c.send("quit\n").await;
        assert!(c.reply().await.starts_with("221 "));
        c.expect_eof().await;
    }

    #[tokio::test]
    async fn smtp_rejects_overlong_line() {
        let server = FaultServer::start(Behavior::Smtp(SmtpOptions::default()))
            .await
            .expect("start");
        let mut c = Client::connect(server.addr()).await;
        c.reply().await;
        c.send(&"A".repeat(MAX_LINE + 10)).await;
        assert!(c.reply().await.starts_with("500 "));
        // The server closes with unread bytes possibly pending: FIN or RST are both fine.
        let mut chunk = [0u8; 64];
        let r = timeout(WAIT, c.io.read(&mut chunk)).await.expect("timeout");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }

    #[tokio::test]
    async fn smtp_starttls_then_ehlo_over_tls() {
        let opts = SmtpOptions {
            capabilities: vec!["STARTTLS".into(), "PIPELINING".into()],
            tls: Some(self_signed_config("lab.test").expect("cert")),
            ..SmtpOptions::default()
        };
        let server = FaultServer::start(Behavior::Smtp(opts)).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        c.reply().await;
        assert_eq!(
            c.cmd("EHLO probe").await,
            "250-lab.test Hello probe\r\n250-STARTTLS\r\n250 PIPELINING\r\n"
        );
        assert_eq!(c.cmd("STARTTLS").await, "220 2.0.0 Ready\r\n");
        let tls = tls_handshake(c).await.expect("TLS handshake");
        let mut c = Client {
            io: tls,
            buf: Vec::new(),
        };
        assert_eq!(
            c.cmd("EHLO probe").await,
            "250-lab.test Hello probe\r\n250 PIPELINING\r\n"
        );
        assert!(c.cmd("STARTTLS").await.starts_with("503 "));
        assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
        assert_eq!(
            server.transcripts(),
            vec!["EHLO probe\nSTARTTLS\nEHLO probe\nSTARTTLS\nQUIT\n".to_owned()]
        );
    }

    #[tokio::test]
    async fn smtp_refuses_data_pipelined_after_starttls() {
        let opts = SmtpOptions {
            tls: Some(self_signed_config("lab.test").expect("cert")),
            ..SmtpOptions::default()
        };
        let server = FaultServer::start(Behavior::Smtp(opts)).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        c.reply().await;
        c.send("STARTTLS\r\nNOOP\r\n").await;
        // Both lines may arrive in one segment (then 554), or separately (then 220 + TLS).
        let r = c.reply().await;
        assert!(r.starts_with("554 ") || r.starts_with("220 "), "{r}");
    }

    #[tokio::test]
    async fn banner_421() {
        let server = FaultServer::start(Behavior::Banner421).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        assert_eq!(
            c.reply().await,
            "421 4.3.2 Service not available, closing transmission channel\r\n"
        );
        c.expect_eof().await;
    }

    #[tokio::test]
    async fn close_at_connect() {
        let server = FaultServer::start(Behavior::CloseAtConnect).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        c.expect_eof().await;
        assert_eq!(server.connections(), 1);
    }

    #[tokio::test]
    async fn reset_at_connect() {
        let server = FaultServer::start(Behavior::ResetAtConnect).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        expect_reset(&mut c.io).await;
    }

    #[tokio::test]
    async fn close_after_banner() {
        let server = FaultServer::start(Behavior::CloseAfterBanner).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        assert!(c.reply().await.starts_with("220 "));
        c.send("EHLO probe\r\n").await;
        c.expect_eof().await;
        assert_eq!(server.transcripts(), vec!["EHLO probe\n".to_owned()]);
    }

    #[tokio::test]
    async fn reset_after_ehlo() {
        let server = FaultServer::start(Behavior::ResetAfterEhlo).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        assert!(c.reply().await.starts_with("220 "));
        c.send("EHLO probe\r\n").await;
        expect_reset(&mut c.io).await;
    }

    #[tokio::test]
    async fn close_after_starttls() {
        let server = FaultServer::start(Behavior::CloseAfterStarttls).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        c.reply().await;
        assert!(c.cmd("EHLO probe").await.contains("250 STARTTLS\r\n"));
        assert_eq!(c.cmd("STARTTLS").await, "220 2.0.0 Ready\r\n");
        c.io.write_all(FAKE_CLIENT_HELLO).await.expect("write");
        c.expect_eof().await;

        // A real TLS client sees the connection end during the handshake.
        let mut c = Client::connect(server.addr()).await;
        c.reply().await;
        c.cmd("EHLO probe").await;
        c.cmd("STARTTLS").await;
        assert!(tls_handshake(c).await.is_err());
    }

    #[tokio::test]
    async fn tls_alert_record() {
        let server = FaultServer::start(Behavior::TlsAlert(40)).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        c.reply().await;
        assert!(c.cmd("EHLO probe").await.contains("STARTTLS"));
        assert_eq!(c.cmd("STARTTLS").await, "220 2.0.0 Ready\r\n");
        c.io.write_all(FAKE_CLIENT_HELLO).await.expect("write");
        while c.buf.len() < 7 {
            assert!(c.fill().await > 0, "EOF before alert");
        }
        assert_eq!(c.buf, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 40]);
        c.buf.clear();
        c.expect_eof().await;
    }

    #[tokio::test]
    async fn tls_alert_seen_by_rustls() {
        let server = FaultServer::start(Behavior::TlsAlert(70)).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        c.reply().await;
        c.cmd("EHLO probe").await;
        c.cmd("STARTTLS").await;
        let err = tls_handshake(c).await.expect_err("handshake must fail");
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .expect("rustls error");
        assert_eq!(
            inner,
            &rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion)
        );
    }

    #[tokio::test]
    async fn silent() {
        let server = FaultServer::start(Behavior::Silent).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        c.expect_silence(Duration::from_millis(300)).await;
        c.send("QUIT\r\n").await;
        c.expect_silence(Duration::from_millis(200)).await;
        assert_eq!(server.transcripts(), vec!["QUIT\n".to_owned()]);
    }

    #[tokio::test]
    async fn tarpit_drips_a_never_ending_banner() {
        let server = FaultServer::start(Behavior::Tarpit {
            byte_interval: Duration::from_millis(1),
        })
        .await
        .expect("start");
        let mut c = Client::connect(server.addr()).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(400);
        while tokio::time::Instant::now() < deadline {
            c.fill().await;
        }
        let got = String::from_utf8(c.buf.clone()).expect("ascii");
        // Slow: at most one byte per ms (the last read may end a little late), yet more than
        // one full line, none of which ends the reply.
        assert!(got.len() > TARPIT_LINE.len(), "{got:?}");
        assert!(got.len() <= 420, "{} bytes in 400 ms", got.len());
        assert!(got.starts_with("220-"));
        for line in got.split_inclusive('\n') {
            assert!(line.starts_with("220-"), "{line:?}");
        }
    }

    #[tokio::test]
    async fn huge_line() {
        let len = 1_000_000;
        let server = FaultServer::start(Behavior::HugeLine { len }).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        while c.buf.len() < 4 + len {
            assert!(c.fill().await > 0, "EOF after {} bytes", c.buf.len());
        }
        assert_eq!(c.buf.len(), 4 + len);
        assert!(c.buf.starts_with(b"220 AAAA"));
        assert!(c.buf[4..].iter().all(|&b| b == b'A'));
        c.expect_silence(Duration::from_millis(200)).await;
    }

    #[tokio::test]
    async fn garbage_then_hold() {
        let bytes = b"SSH-2.0-OpenSSH_9.2\r\n".to_vec();
        let server = FaultServer::start(Behavior::Garbage(bytes.clone()))
            .await
            .expect("start");
        let mut c = Client::connect(server.addr()).await;
        while c.buf.len() < bytes.len() {
            assert!(c.fill().await > 0);
        }
        assert_eq!(c.buf, bytes);
        c.expect_silence(Duration::from_millis(300)).await;
    }

    #[tokio::test]
    async fn ehlo_rejected_helo_ok() {
        let server = FaultServer::start(Behavior::EhloRejected { helo_ok: true })
            .await
            .expect("start");
        let mut c = Client::connect(server.addr()).await;
        assert!(c.reply().await.starts_with("220 "));
        assert_eq!(c.cmd("EHLO probe").await, "502 5.5.2 Error: command not recognized\r\n");
        assert_eq!(c.cmd("HELO probe").await, "250 lab.test\r\n");
        assert!(c.cmd("STARTTLS").await.starts_with("502 "));
        assert!(c.cmd("QUIT").await.starts_with("221 "));
        c.expect_eof().await;
    }

    #[tokio::test]
    async fn ehlo_rejected_helo_refused() {
        let server = FaultServer::start(Behavior::EhloRejected { helo_ok: false })
            .await
            .expect("start");
        let mut c = Client::connect(server.addr()).await;
        c.reply().await;
        assert!(c.cmd("EHLO probe").await.starts_with("502 "));
        assert_eq!(c.cmd("HELO probe").await, "550 5.7.1 go away\r\n");
        assert!(c.cmd("QUIT").await.starts_with("221 "));
    }

    #[tokio::test]
    async fn starttls_rejected() {
        let server = FaultServer::start(Behavior::StarttlsRejected).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        c.reply().await;
        assert!(c.cmd("EHLO probe").await.ends_with("250 STARTTLS\r\n"));
        assert_eq!(
            c.cmd("STARTTLS").await,
            "454 4.7.0 TLS not available due to local problem\r\n"
        );
        assert!(c.cmd("QUIT").await.starts_with("221 "));
    }

    #[tokio::test]
    async fn starttls_injection_leaves_plaintext_then_does_tls() {
        let server = FaultServer::start(Behavior::StarttlsInjection).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        c.reply().await;
        assert!(c.cmd("EHLO probe").await.contains("STARTTLS"));
        c.send("STARTTLS\r\n").await;
        c.fill().await;
        // Written in one go, so a single read normally sees both lines.
        while c.buf.len() < 31 {
            assert!(c.fill().await > 0);
        }
        assert_eq!(c.buf, b"220 2.0.0 Ready\r\n250 injected\r\n");
        c.buf.clear();
        // A client that ignored the leftover would go on happily.
        let tls = tls_handshake(c).await.expect("TLS handshake");
        let mut c = Client {
            io: tls,
            buf: Vec::new(),
        };
        assert!(c.cmd("EHLO probe").await.starts_with("250-lab.test"));
        assert!(c.cmd("QUIT").await.starts_with("221 "));
    }

    #[tokio::test]
    async fn hang_up_on_starttls_with_fin_or_rst() {
        for reset in [false, true] {
            let server = FaultServer::start(Behavior::HangUp {
                at: HangUpAt::Starttls,
                reset,
            })
            .await
            .expect("start");
            let mut c = Client::connect(server.addr()).await;
            assert!(c.reply().await.starts_with("220 "));
            assert!(c.cmd("EHLO probe").await.contains("250 STARTTLS\r\n"));
            c.send("STARTTLS\r\n").await;
            if reset {
                expect_reset(&mut c.io).await;
            } else {
                c.expect_eof().await;
            }
            assert_eq!(server.transcripts(), vec!["EHLO probe\nSTARTTLS\n".to_owned()]);
        }
    }

    #[tokio::test]
    async fn hang_up_in_the_tls_handshake_with_fin_or_rst() {
        for reset in [false, true] {
            let server = FaultServer::start(Behavior::HangUp {
                at: HangUpAt::TlsHandshake,
                reset,
            })
            .await
            .expect("start");
            let mut c = Client::connect(server.addr()).await;
            c.reply().await;
            assert!(c.cmd("EHLO probe").await.contains("250 STARTTLS\r\n"));
            assert_eq!(c.cmd("STARTTLS").await, "220 2.0.0 Ready\r\n");
            c.io.write_all(FAKE_CLIENT_HELLO).await.expect("write");
            if reset {
                expect_reset(&mut c.io).await;
            } else {
                c.expect_eof().await;
            }
        }
    }

    #[tokio::test]
    async fn hang_up_on_ehlo_inside_tls() {
        for reset in [false, true] {
            let server = FaultServer::start(Behavior::HangUp {
                at: HangUpAt::EhloTls,
                reset,
            })
            .await
            .expect("start");
            let mut c = Client::connect(server.addr()).await;
            c.reply().await;
            assert!(c.cmd("EHLO probe").await.contains("250 STARTTLS\r\n"));
            assert_eq!(c.cmd("STARTTLS").await, "220 2.0.0 Ready\r\n");
            let mut tls = tls_handshake(c).await.expect("TLS handshake");
            tls.write_all(b"EHLO probe\r\n").await.expect("write");
            tls.flush().await.expect("flush");
            // No reply: the connection ends under TLS without close_notify (an error), or
            // with a reset.
            let mut chunk = [0u8; 64];
            let r = timeout(WAIT, tls.read(&mut chunk)).await.expect("read timed out");
            assert!(r.is_err(), "expected an abrupt end, got {r:?}");
            assert_eq!(
                server.transcripts(),
                vec!["EHLO probe\nSTARTTLS\nEHLO probe\n".to_owned()]
            );
        }
    }

    #[tokio::test]
    async fn unexpected_reply_to_ehlo() {
        let server = FaultServer::start(Behavior::UnexpectedReply).await.expect("start");
        let mut c = Client::connect(server.addr()).await;
        assert!(c.reply().await.starts_with("220 "));
        assert_eq!(c.cmd("EHLO probe").await, "354 3.0.0 unexpected\r\n");
        assert!(c.cmd("QUIT").await.starts_with("221 "));
    }

    #[tokio::test]
    async fn start_on_other_loopback_address_and_count_connections() {
        let addr: SocketAddr = "127.0.0.2:0".parse().expect("addr");
        let server = FaultServer::start_on(addr, Behavior::Banner421).await.expect("start");
        assert_eq!(server.addr().ip(), addr.ip());
        for _ in 0..3 {
            let mut c = Client::connect(server.addr()).await;
            c.reply().await;
            c.expect_eof().await;
        }
        assert_eq!(server.connections(), 3);
        assert_eq!(server.transcripts().len(), 3);
    }

    #[tokio::test]
    async fn drop_stops_the_server() {
        let server = FaultServer::start(Behavior::Silent).await.expect("start");
        let addr = server.addr();
        let mut c = Client::connect(addr).await;
        drop(server);
        // The connection task is aborted too: the client sees the connection close.
        let mut chunk = [0u8; 8];
        let r = timeout(WAIT, c.io.read(&mut chunk)).await.expect("timeout");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        let refused = timeout(WAIT, TcpStream::connect(addr)).await.expect("timeout");
        assert_eq!(
            refused.expect_err("listener closed").kind(),
            io::ErrorKind::ConnectionRefused
        );
    }

    #[tokio::test]
    async fn blackhole_connect_times_out() {
        let hole = BlackholeListener::start().expect("blackhole");
        for _ in 0..2 {
            let r = timeout(Duration::from_millis(500), TcpStream::connect(hole.addr())).await;
            assert!(r.is_err(), "connect did not time out: {r:?}");
        }
    }

    #[tokio::test]
    async fn closed_port_refuses() {
        let addr = closed_port().expect("closed port");
        let err = TcpStream::connect(addr).await.expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
