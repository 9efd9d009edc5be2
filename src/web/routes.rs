//! The routes: `/metrics`, `/probe`, `/-/healthy`, `/-/ready`, `/-/reload`, `/api/status` and
//! the status page at `/`. Each handler only reads the agent and renders.

use super::HttpOptions;
use super::metrics::{Scrape, encode_openmetrics, to_prometheus_text};
use crate::agent::{Agent, ConnectorState};
use crate::config::{Connector, DomainPattern, HostPort, ProbeSpec, Routing, TlsSettings};
use crate::probe::Prober;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

const MAX_BODY: usize = 4096;

pub(super) struct Ctx {
    pub agent: Arc<Agent>,
    pub opts: HttpOptions,
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

pub(super) async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Response<Full<Bytes>> {
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
            let page = super::status::render(&ctx.agent, ctx.opts.demo_note.clone());
            respond(StatusCode::OK, super::status::CONTENT_TYPE, page)
        }
        (&Method::GET, "/api/status") => {
            let body = super::status::json(&ctx.agent);
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
            return respond(StatusCode::OK, "application/json", report.to_json());
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
    let tls_domain = match tls_domain.filter(|_| tls_settings == TlsSettings::DomainValidation) {
        None => None,
        Some(d) => match DomainPattern::parse(d) {
            Ok(d) => Some(d),
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("tls_domain: {e}\n")),
        },
    };
    let cfg = ctx.agent.config();
    // A fresh prober without the config's extra CA files: an ad-hoc probe judges a host the way
    // Exchange Online would, by public CAs only.
    let prober = match Prober::new(crate::probe::ProberOptions {
        dns_servers: cfg.dns_servers.clone(),
        ..Default::default()
    }) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    let connector = Connector {
        enabled: true,
        connector_type: Default::default(),
        interval: cfg.defaults.interval,
        test_mode: false,
        comment: None,
        probe: ProbeSpec {
            connector: format!("adhoc:{hp}"),
            routing: Routing::SmartHosts(vec![hp]),
            port: 25,
            recipient_domains: vec![],
            tls_settings,
            tls_domain,
            helo: cfg.defaults.helo.clone(),
            timeout: cfg.defaults.timeout,
        },
    };
    let report = prober.probe(&connector.probe).await;
    if json {
        return respond(StatusCode::OK, "application/json", report.to_json());
    }
    let mut st = ConnectorState::new(connector, cfg.defaults.message_expiration);
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
    form_urlencoded::parse(q.as_bytes())
        .take(16)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
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
