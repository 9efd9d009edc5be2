//! The HTTP face of the agent: the listener and connection handling here, the routes in
//! [`routes`], the `/metrics` collector in [`metrics`] and the status page in [`status`].
//! Handlers stay tiny; the work is in the agent.

pub mod conns;
pub mod metrics;
pub mod routes;
pub mod status;
pub mod webconfig;

use crate::agent::Agent;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

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
    pub demo_note: Option<String>,
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
    let ctx = Arc::new(routes::Ctx {
        agent: agent.clone(),
        opts,
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let registry = conns::Registry::new(limits);
    let token = agent.shutdown.clone();
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
        let ctx = ctx.clone();
        let svc_registry = registry.clone();
        let svc_state = state.clone();
        let svc = hyper::service::service_fn(move |req| {
            let ctx = ctx.clone();
            let busy = conns::Busy::new(svc_registry.clone(), svc_state.clone());
            async move {
                let resp = routes::handle(&ctx, req).await;
                drop(busy);
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        let io = conns::Watched::new(stream, state.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(io), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
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
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
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
