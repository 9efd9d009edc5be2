//! The HTTP face of the agent: `/metrics`, `/probe`, `/-/healthy`, `/-/ready`, `/-/reload` and
//! the status page at `/`. Handlers stay tiny; the work is in the agent.

use crate::agent::Agent;
use crate::config::{HostPort, Routing, TlsSettings};
use crate::metrics::{Scrape, encode_openmetrics, to_prometheus_text};
use crate::probe::{ProbeSpec, Prober};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

const MAX_CONNECTIONS: usize = 256;
const MAX_BODY: usize = 4096;

pub struct HttpOptions {
    /// `/probe?target=…` probes arbitrary hosts; off by default because an open prober is a
    /// port scanner.
    pub enable_adhoc_probes: bool,
    pub demo_note: Option<String>,
}

struct Ctx {
    agent: Arc<Agent>,
    opts: HttpOptions,
}

/// Serves until the agent's shutdown token fires, then drains connections (bounded wait).
pub async fn serve(listener: TcpListener, agent: Arc<Agent>, opts: HttpOptions) {
    let ctx = Arc::new(Ctx {
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
            async move { Ok::<_, std::convert::Infallible>(handle(&ctx, req).await) }
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

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body.into())
}

fn respond(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let openmetrics = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    match (req.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let agent = &ctx.agent;
            let scrape = Scrape {
                now: agent.clock.now(),
                connectors: agent.snapshot(),
                process: Some(agent.reload_status()),
            };
            metrics_response(scrape, openmetrics)
        }
        (&Method::GET, "/probe") => probe(ctx, &query, openmetrics).await,
        (&Method::GET | &Method::HEAD, "/-/healthy") => text(StatusCode::OK, "Healthy.\n"),
        (&Method::GET | &Method::HEAD, "/-/ready") => text(StatusCode::OK, "Ready.\n"),
        (&Method::POST | &Method::PUT, "/-/reload") => {
            // The body is not used; read (bounded) and drop it.
            let _ = Limited::new(req.into_body(), MAX_BODY).collect().await;
            match ctx.agent.reload() {
                Ok(()) => text(StatusCode::OK, "Reloaded.\n"),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reload failed, running config kept: {e}\n"),
                ),
            }
        }
        (_, "/-/reload") => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        (&Method::GET | &Method::HEAD, "/") => {
            let page = crate::status_view::render(&ctx.agent, ctx.opts.demo_note.clone());
            respond(StatusCode::OK, "text/html; charset=utf-8", page)
        }
        (&Method::GET, "/api/status") => {
            let body = crate::status_view::json(&ctx.agent);
            respond(StatusCode::OK, "application/json", body)
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /, /metrics, /probe?connector=NAME, /-/healthy\n",
        ),
    }
}

fn metrics_response(scrape: Scrape, openmetrics: bool) -> Response<Full<Bytes>> {
    let om = encode_openmetrics(scrape);
    if openmetrics {
        respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            om,
        )
    } else {
        respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            to_prometheus_text(&om),
        )
    }
}

async fn probe(ctx: &Ctx, query: &[(String, String)], openmetrics: bool) -> Response<Full<Bytes>> {
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let json = get("format") == Some("json");
    if let Some(name) = get("connector") {
        let Some(report) = ctx.agent.probe_now(name).await else {
            return text(
                StatusCode::NOT_FOUND,
                format!("unknown connector {:?}\n", crate::probe::escape(name, 100)),
            );
        };
        if json {
            return respond(StatusCode::OK, "application/json", crate::report::json(&report));
        }
        let connectors = ctx.agent.connector_state(name).into_iter().collect();
        return metrics_response(
            Scrape {
                now: ctx.agent.clock.now(),
                connectors,
                process: None,
            },
            openmetrics,
        );
    }
    if let Some(target) = get("target") {
        if !ctx.opts.enable_adhoc_probes {
            return text(
                StatusCode::FORBIDDEN,
                "ad-hoc targets are disabled (start with --web.enable-adhoc-probes); use ?connector=NAME\n",
            );
        }
        return adhoc(ctx, target, get("tls_settings"), get("tls_domain"), json, openmetrics).await;
    }
    text(StatusCode::BAD_REQUEST, "give ?connector=NAME\n")
}

/// Probes an arbitrary host (only behind the explicit flag); nothing is recorded.
async fn adhoc(
    ctx: &Ctx,
    target: &str,
    tls: Option<&str>,
    tls_domain: Option<&str>,
    json: bool,
    openmetrics: bool,
) -> Response<Full<Bytes>> {
    let hp = match HostPort::parse(target) {
        Ok(h) => h,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("target: {e}\n")),
    };
    let tls_settings = match tls.map(TlsSettings::parse) {
        None => TlsSettings::None,
        Some(Some(t)) => t,
        Some(None) => return text(StatusCode::BAD_REQUEST, "bad tls_settings\n"),
    };
    let cfg = ctx.agent.config();
    let prober = match Prober::new(crate::probe::ProberOptions {
        dns_servers: cfg.dns_servers.clone(),
        ..Default::default()
    }) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    let spec = ProbeSpec {
        connector: format!("adhoc:{hp}"),
        routing: Routing::SmartHosts(vec![hp]),
        port: 25,
        recipient_domains: vec![],
        tls_settings,
        tls_domain: tls_domain
            .filter(|_| tls_settings == TlsSettings::DomainValidation)
            .map(str::to_string),
        helo: cfg.defaults.helo.clone(),
        timeout: cfg.defaults.timeout,
    };
    let report = prober.probe(&spec).await;
    if json {
        return respond(StatusCode::OK, "application/json", crate::report::json(&report));
    }
    let connector = crate::config::Connector {
        name: spec.connector.clone(),
        enabled: true,
        connector_type: Default::default(),
        routing: spec.routing.clone(),
        recipient_domains: vec![],
        tls_settings,
        tls_domain: spec.tls_domain.clone(),
        port: 25,
        interval: cfg.defaults.interval,
        timeout: cfg.defaults.timeout,
        helo: spec.helo.clone(),
        test_mode: false,
        comment: None,
    };
    let mut st = crate::agent::ConnectorState::new(connector, cfg.defaults.message_expiration);
    let now = ctx.agent.clock.now();
    st.record(report, now);
    metrics_response(
        Scrape {
            now,
            connectors: vec![Arc::new(st)],
            process: None,
        },
        openmetrics,
    )
}

/// `a=b&c=d` with percent-decoding and `+` as space; bounded to 16 pairs.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .take(16)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Binds the listen address (`:10325` means all interfaces).
pub async fn bind(addr: &str) -> Result<TcpListener, String> {
    let a = if let Some(port) = addr.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else {
        addr.to_string()
    };
    let sa: SocketAddr = a
        .parse()
        .map_err(|_| format!("--web.listen-address {addr:?}: expected HOST:PORT or :PORT"))?;
    TcpListener::bind(sa)
        .await
        .map_err(|e| format!("--web.listen-address {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query("connector=Outbound%20to%20Contoso&format=json&x=%zz&y=a+b&z=%4");
        assert_eq!(q[0], ("connector".into(), "Outbound to Contoso".into()));
        assert_eq!(q[1], ("format".into(), "json".into()));
        assert_eq!(q[2].1, "%zz");
        assert_eq!(q[3].1, "a b");
        assert_eq!(q[4].1, "%4");
    }
}
