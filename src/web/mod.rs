//! The HTTP face of the agent: the listener and connection handling here, the routes in
//! [`routes`], the `/metrics` collector in [`metrics`] and the status page in [`status`].
//! Handlers stay tiny; the work is in the agent.

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
use tokio::sync::Semaphore;

const MAX_CONNECTIONS: usize = 256;

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
    let ctx = Arc::new(routes::Ctx {
        agent: agent.clone(),
        opts,
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let token = agent.shutdown.clone();
    loop {
        let (stream, _peer) = tokio::select! {
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
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream); // over the connection cap: shed load
            continue;
        };
        let ctx = ctx.clone();
        let svc = hyper::service::service_fn(move |req| {
            let ctx = ctx.clone();
            async move { Ok::<_, std::convert::Infallible>(routes::handle(&ctx, req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
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
