//! The HTTP face of the agent: the listener and connection handling here, the routes in
//! [`routes`], the `/metrics` collector in [`metrics`] and the status page in [`status`].
//! Handlers stay tiny; the work is in the agent.

pub mod conns;
pub mod metrics;
pub mod process;
pub mod routes;
pub mod status;
pub mod webconfig;

use crate::agent::Agent;
use crate::config::ConfigError;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use webconfig::WebConfig;

/// A connection that has sent nothing by then is closed (scrapers send at once).
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(5);
/// Until a request's headers are complete, counted from when the server starts waiting for
/// them: also how long an idle keep-alive connection stays open.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub struct HttpOptions {
    /// `/probe?target=…` probes arbitrary hosts; off by default because an open prober is a
    /// port scanner.
    pub enable_adhoc_probes: bool,
    /// `POST /-/reload` only when set, as Prometheus does.
    pub enable_lifecycle: bool,
    /// `/probe?connector=` answers from memory when the last report is younger.
    pub probe_max_age: std::time::Duration,
    /// Where `/metrics` is served (`--web.telemetry-path`).
    pub telemetry_path: String,
    pub demo_note: Option<String>,
    /// TLS, basic auth and headers (`--web.config.file`).
    pub web: Arc<WebFace>,
}

/// The web configuration in force, and where it comes from. Re-read on SIGHUP and when the file
/// changes; a version that does not load is logged and counted, and the one in force stays.
pub struct WebFace {
    path: Option<PathBuf>,
    current: RwLock<Option<Arc<WebConfig>>>,
    /// Size and modification time of the file last loaded, to notice changes cheaply.
    seen: Mutex<Option<(u64, SystemTime)>>,
    last_ok: AtomicBool,
}

impl WebFace {
    /// No file: plain HTTP, no auth.
    pub fn none() -> Arc<WebFace> {
        Arc::new(WebFace {
            path: None,
            current: RwLock::new(None),
            seen: Mutex::new(None),
            last_ok: AtomicBool::new(true),
        })
    }

    /// Loads the file (off the runtime, bounded); an error here is fatal at start.
    pub async fn load(path: PathBuf) -> Result<Arc<WebFace>, ConfigError> {
        let face = Arc::new(WebFace {
            path: Some(path),
            current: RwLock::new(None),
            seen: Mutex::new(None),
            last_ok: AtomicBool::new(true),
        });
        face.reload().await?;
        Ok(face)
    }

    pub fn current(&self) -> Option<Arc<WebConfig>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the last load of the file succeeded (None without a file).
    pub fn last_ok(&self) -> Option<bool> {
        self.path.as_ref().map(|_| self.last_ok.load(Ordering::Relaxed))
    }

    /// Re-reads the file; on error the configuration in force stays.
    pub async fn reload(&self) -> Result<(), ConfigError> {
        let Some(path) = self.path.clone() else { return Ok(()) };
        let shown = path.display().to_string();
        let job = tokio::task::spawn_blocking(move || {
            let stamp = std::fs::metadata(&path)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)));
            WebConfig::load(&path).map(|c| (c, stamp))
        });
        let fail = |message: String| ConfigError {
            file: shown.clone(),
            line: 0,
            column: 0,
            field: "-".into(),
            message,
        };
        let result = match tokio::time::timeout(crate::agent::LOAD_TIMEOUT, job).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(fail(format!("loading failed unexpectedly: {e}"))),
            Err(_) => Err(fail("not read within 10s".into())),
        };
        match result {
            Ok((cfg, stamp)) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(cfg));
                *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamp;
                self.last_ok.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.last_ok.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, "web config not loaded; keeping the one in force");
                Err(e)
            }
        }
    }

    /// Reloads when the file's size or modification time changed since the last load.
    async fn reload_if_changed(&self) {
        let Some(path) = self.path.clone() else { return };
        let stat = tokio::task::spawn_blocking(move || {
            std::fs::metadata(&path)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)))
        });
        let Ok(Ok(now)) = tokio::time::timeout(Duration::from_secs(5), stat).await else {
            return;
        };
        let before = *self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if now.is_some() && now != before {
            let _ = self.reload().await;
        }
    }
}

/// Why the listen address could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("--web.listen-address {0:?}: expected HOST:PORT or :PORT")]
    BadAddress(String),
    #[error("--web.listen-address {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

/// Serves until the agent's shutdown token fires, then drains connections (bounded wait).
pub async fn serve(listener: TcpListener, agent: Arc<Agent>, opts: HttpOptions) {
    serve_with(listener, agent, opts, conns::Limits::default()).await
}

/// [`serve`] with explicit connection limits.
pub async fn serve_with(listener: TcpListener, agent: Arc<Agent>, opts: HttpOptions, limits: conns::Limits) {
    let web = opts.web.clone();
    let ctx = Arc::new(routes::Ctx {
        agent: agent.clone(),
        opts,
        metrics_cache: Default::default(),
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let registry = conns::Registry::new(limits);
    let token = agent.shutdown.clone();
    // Changes to the web config file apply without a restart, as in exporter-toolkit.
    let watcher = {
        let web = web.clone();
        let token = token.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => web.reload_if_changed().await,
                }
            }
        })
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = token.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = registry.admit(peer.ip()) else {
            drop(stream); // no room without cutting a request short
            continue;
        };
        let state = admitted.state.clone();
        let io = conns::Watched::new(stream, state.clone());
        let tls = web.current().and_then(|w| w.tls().map(|t| (w, t)));
        let conn_ctx = ConnCtx {
            ctx: ctx.clone(),
            registry: registry.clone(),
            graceful: &graceful,
        };
        match tls {
            None => conn_ctx.spawn(io, admitted),
            Some((cfg, tls)) => {
                // The handshake runs in the connection's task, bounded like a request's headers.
                let conn_ctx = conn_ctx.owned();
                tokio::spawn(async move {
                    let accept = tokio_rustls::TlsAcceptor::from(tls).accept(io);
                    let stream = tokio::select! {
                        r = tokio::time::timeout(HEADER_TIMEOUT, accept) => r,
                        _ = admitted.state.evict.cancelled() => return,
                    };
                    let Ok(Ok(stream)) = stream else { return };
                    if !cfg.client_allowed(stream.get_ref().1) {
                        tracing::debug!(peer = %peer, "client certificate not among client_allowed_sans");
                        return;
                    }
                    conn_ctx.run(stream, admitted).await;
                });
            }
        }
    }
    watcher.abort();
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

/// What a connection's task needs from the server loop.
struct ConnCtx<'g> {
    ctx: Arc<routes::Ctx>,
    registry: Arc<conns::Registry>,
    graceful: &'g hyper_util::server::graceful::GracefulShutdown,
}

struct OwnedConnCtx {
    ctx: Arc<routes::Ctx>,
    registry: Arc<conns::Registry>,
}

impl ConnCtx<'_> {
    /// Serves plain HTTP on the connection (watched for graceful shutdown).
    fn spawn<IO>(self, io: IO, admitted: conns::Admitted)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = admitted.state.clone();
        let conn = self
            .graceful
            .watch(http_connection(self.ctx, self.registry, state.clone(), io));
        tokio::spawn(supervise(conn, admitted));
    }

    fn owned(self) -> OwnedConnCtx {
        OwnedConnCtx {
            ctx: self.ctx,
            registry: self.registry,
        }
    }
}

impl OwnedConnCtx {
    /// Serves HTTP on an established TLS stream.
    async fn run<IO>(self, io: IO, admitted: conns::Admitted)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = admitted.state.clone();
        let conn = http_connection(self.ctx, self.registry, state, io);
        supervise(conn, admitted).await
    }
}

/// One HTTP/1.1 connection: each request marks it busy while it is served.
fn http_connection<IO>(
    ctx: Arc<routes::Ctx>,
    registry: Arc<conns::Registry>,
    state: Arc<conns::ConnState>,
    io: IO,
) -> impl hyper_util::server::graceful::GracefulConnection<Error = hyper::Error> + Send
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        let busy = conns::Busy::new(registry.clone(), state.clone());
        async move {
            let resp = routes::handle(&ctx, req).await;
            drop(busy);
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc)
}

/// Runs a connection until it ends, is evicted, or has said nothing for [`FIRST_BYTE_TIMEOUT`].
async fn supervise<F>(conn: F, admitted: conns::Admitted)
where
    F: std::future::Future,
{
    let state = admitted.state.clone();
    let silent = async {
        tokio::time::sleep(FIRST_BYTE_TIMEOUT).await;
        if state.spoke() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = conn => {}
        _ = state.evict.cancelled() => {}
        _ = silent => {}
    }
    drop(admitted);
}

/// Binds the listen address (`:10325` means all interfaces).
pub async fn bind(addr: &str) -> Result<TcpListener, ListenError> {
    let a = match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    };
    let sa: SocketAddr = a.parse().map_err(|_| ListenError::BadAddress(addr.to_string()))?;
    TcpListener::bind(sa).await.map_err(|source| ListenError::Bind {
        address: addr.to_string(),
        source,
    })
}
