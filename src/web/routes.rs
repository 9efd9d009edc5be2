//! The routes: `/metrics`, `/probe`, `/-/healthy`, `/-/ready`, `/-/reload`, `/api/status` and
//! the status page at `/`. Each handler only reads the agent and renders.

use super::HttpOptions;
use super::metrics::{ExoScrape, Scrape, encode_openmetrics, to_prometheus_text};
use super::webconfig::{AuthError, CHALLENGE};
use crate::agent::{Agent, ConnectorState, OnDemandError};
use crate::config::{Connector, DomainPattern, HostPort, ProbeSpec, Routing, TlsSettings};
use crate::probe::Prober;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

const MAX_BODY: usize = 4096;
const MAX_QUERY_PAIRS: usize = 16;

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

/// Every request: basic auth when configured, the route, then the configured headers.
pub(super) async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let web = ctx.opts.web.current();
    let mut resp = match &web {
        Some(w) => match w.authorize(req.headers().get(hyper::header::AUTHORIZATION)).await {
            Ok(()) => route(ctx, req).await,
            Err(AuthError::Internal(e)) => {
                tracing::error!(error = %e, "basic auth check failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
            }
            Err(_) => {
                let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
                r.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static(CHALLENGE),
                );
                r
            }
        },
        None => route(ctx, req).await,
    };
    if let Some(w) = &web {
        for (k, v) in w.headers() {
            resp.headers_mut().insert(k.clone(), v.clone());
        }
    }
    resp
}

async fn route(ctx: &Ctx, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let Some(query) = parse_query(req.uri().query().unwrap_or("")) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("too many query parameters (at most {MAX_QUERY_PAIRS})\n"),
        );
    };
    let openmetrics = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let telemetry = path == ctx.opts.telemetry_path;
    match (req.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, _) if telemetry => {
            let agent = &ctx.agent;
            let scrape = Scrape {
                now: agent.clock.now(),
                connectors: agent.snapshot(),
                process: Some(agent.self_status()),
                web_config_ok: ctx.opts.web.last_ok(),
                exo: exo_scrape(agent),
                options: agent.config().metrics,
            };
            metrics_response(scrape, openmetrics)
        }
        (&Method::GET, "/probe") => probe(ctx, &query, openmetrics).await,
        (&Method::GET | &Method::HEAD, "/-/healthy") => text(StatusCode::OK, "Healthy.\n"),
        (&Method::GET | &Method::HEAD, "/-/ready") => text(StatusCode::OK, "Ready.\n"),
        (&Method::POST | &Method::PUT, "/-/reload") if !ctx.opts.enable_lifecycle => text(
            StatusCode::FORBIDDEN,
            "lifecycle APIs are not enabled (start with --web.enable-lifecycle, or send SIGHUP)\n",
        ),
        (&Method::POST | &Method::PUT, "/-/reload") => {
            // The body is not used; read (bounded) and drop it.
            let _ = Limited::new(req.into_body(), MAX_BODY).collect().await;
            let _ = ctx.opts.web.reload().await;
            match ctx.agent.reload().await {
                Ok(()) => text(StatusCode::OK, "Reloaded.\n"),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reload failed, running config kept: {e}\n"),
                ),
            }
        }
        (_, "/-/reload") => not_allowed("POST"),
        (&Method::GET | &Method::HEAD, "/") => {
            let page = super::status::render(&ctx.agent, ctx.opts.demo_note.clone());
            respond(StatusCode::OK, super::status::CONTENT_TYPE, page)
        }
        (&Method::GET, "/api/status") => {
            let body = super::status::json(&ctx.agent);
            respond(StatusCode::OK, "application/json", body)
        }
        (_, "/-/healthy" | "/-/ready" | "/") => not_allowed("GET, HEAD"),
        _ if telemetry => not_allowed("GET, HEAD"),
        (_, "/probe" | "/api/status") => not_allowed("GET"),
        _ => text(
            StatusCode::NOT_FOUND,
            format!(
                "not found: try /, {}, /probe?connector=NAME, /-/healthy\n",
                ctx.opts.telemetry_path
            ),
        ),
    }
}

/// The tenant part of a scrape, when a tenant is configured.
fn exo_scrape(agent: &Agent) -> Option<ExoScrape> {
    let tenant = agent.tenant()?;
    Some(ExoScrape {
        state: agent.exo(),
        requests: tenant.requests(),
        sync_enabled: tenant.config().sync,
    })
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}\n"),
    );
    r.headers_mut()
        .insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static(allow));
    r
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
        let report = match ctx.agent.probe_on_demand(name, ctx.opts.probe_max_age).await {
            Ok(r) => r,
            Err(OnDemandError::Unknown) => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("unknown connector {:?}\n", crate::probe::escape(name, 100)),
                );
            }
            Err(OnDemandError::OtherShard(owner)) => {
                let mine = ctx.agent.shard().map(|s| s.to_string()).unwrap_or_default();
                return text(
                    StatusCode::NOT_FOUND,
                    format!(
                        "connector {:?} is probed by shard {owner}; this agent is shard {mine}\n",
                        crate::probe::escape(name, 100)
                    ),
                );
            }
            Err(OnDemandError::Disabled) => {
                return text(
                    StatusCode::CONFLICT,
                    format!(
                        "connector {:?} is disabled: not probed\n",
                        crate::probe::escape(name, 100)
                    ),
                );
            }
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
                web_config_ok: None,
                exo: None,
                options: ctx.agent.config().metrics,
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
        source: Default::default(),
        carries: Default::default(),
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
            deadline: cfg
                .defaults
                .probe_deadline
                .unwrap_or_else(|| crate::config::default_deadline(cfg.defaults.interval, cfg.defaults.timeout)),
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
            web_config_ok: None,
            exo: None,
            options: cfg.metrics,
        },
        openmetrics,
    )
}

/// `a=b&c=d` with percent-decoding and `+` as space; None beyond 16 pairs (said, not dropped).
pub fn parse_query(q: &str) -> Option<Vec<(String, String)>> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
        .take(MAX_QUERY_PAIRS + 1)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (pairs.len() <= MAX_QUERY_PAIRS).then_some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query("connector=Outbound%20to%20Contoso&format=json&x=%zz&y=a+b&z=%4").expect("5 pairs");
        assert_eq!(q[0], ("connector".into(), "Outbound to Contoso".into()));
        assert_eq!(q[1], ("format".into(), "json".into()));
        assert_eq!(q[2].1, "%zz");
        assert_eq!(q[3].1, "a b");
        assert_eq!(q[4].1, "%4");
        let many = (0..17).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join("&");
        assert!(parse_query(&many).is_none(), "the 17th pair is refused, not dropped");
        assert_eq!(
            parse_query(&many[..many.rfind('&').unwrap_or(0)]).map(|q| q.len()),
            Some(16)
        );
    }
}
