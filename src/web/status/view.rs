//! Builds the status page's view model from the agent's state (the page itself is in
//! [`super::page`], which only sees the view model).

use super::page::{AttemptView, CertExpiry, ConnectorView, StatusView, ViewState, render as render_page};
use crate::agent::{Agent, ConnectorState, Recent};
use crate::probe::tls::CertPosition;
use crate::timefmt::from_unix_secs;
use std::time::{Duration, SystemTime};

pub fn view(agent: &Agent, note: Option<String>) -> StatusView {
    let now = agent.clock.now();
    let cfg = agent.config();
    let mut connectors: Vec<ConnectorView> = agent.snapshot().iter().map(|c| connector_view(c, now)).collect();
    // Failing first, then by name: what needs attention is at the top.
    connectors.sort_by_key(|c| (c.state != ViewState::Failing, c.name.clone()));
    StatusView {
        generated_at: now,
        version: env!("CARGO_PKG_VERSION").to_string(),
        config_file: cfg.source.display().to_string(),
        last_reload_ok: agent.reload_status().ok,
        listen_note: note,
        connectors,
    }
}

pub fn render(agent: &Agent, note: Option<String>) -> String {
    render_page(&view(agent, note))
}

fn connector_view(c: &ConnectorState, now: SystemTime) -> ConnectorView {
    let k = &c.connector;
    let state = if !k.enabled {
        ViewState::Disabled
    } else {
        match c.delivered() {
            None => ViewState::Pending,
            Some(true) => ViewState::Ok,
            Some(false) => ViewState::Failing,
        }
    };
    let routing = k.probe.routing.to_string();
    let tls_settings = match &k.probe.tls_domain {
        Some(d) => format!("{} ({d})", k.probe.tls_settings),
        None => k.probe.tls_settings.to_string(),
    };
    let last = c.last.as_deref();
    let failing = state == ViewState::Failing;
    let cert_expiry = c
        .hosts
        .iter()
        .flat_map(|(host, h)| {
            h.certs
                .iter()
                .filter(|x| x.position == CertPosition::Leaf)
                .map(move |x| (host, x))
        })
        .min_by_key(|(_, x)| x.not_after_unix)
        .and_then(|(host, x)| {
            let problems = last
                .map(|r| {
                    r.attempts
                        .iter()
                        .filter(|a| &a.host == host)
                        .flat_map(|a| a.certificate_problems.iter().copied())
                        .collect()
                })
                .unwrap_or_default();
            Some(CertExpiry {
                host: host.clone(),
                subject: x.subject.clone(),
                not_after: from_unix_secs(x.not_after_unix as f64)?,
                problems,
            })
        });
    let attempts = last
        .map(|r| {
            r.attempts
                .iter()
                .map(|a| AttemptView {
                    host: a.host.clone(),
                    address: a
                        .ip
                        .map(|ip| std::net::SocketAddr::new(ip, a.port).to_string())
                        .unwrap_or_else(|| "-".into()),
                    delivered: a.delivered,
                    code: a.code,
                    reason: a.reason,
                    error: a.error.clone(),
                    tls: a.tls.as_ref().map(|t| format!("{} {}", t.version, t.cipher)),
                    transcript: a.transcript.lines().to_vec(),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut recent: Vec<Recent> = c.recent_failed.iter().chain(c.recent_ok.iter()).cloned().collect();
    recent.sort_by_key(|r| std::cmp::Reverse(r.at));
    ConnectorView {
        name: k.name().to_string(),
        enabled: k.enabled,
        test_mode: k.test_mode,
        routing,
        tls_settings,
        state,
        code: if failing { last.and_then(|r| r.code) } else { None },
        reason: if failing { last.and_then(|r| r.reason) } else { None },
        phase: if failing {
            last.and_then(|r| r.phase).map(|p| p.as_str().to_string())
        } else {
            None
        },
        message: last.map(|r| r.message.clone()),
        failing_since: c.failing_since,
        queue_age: c.failing_since.map(|_| c.queue_age(now)),
        time_left: c.failing_since.map(|_| c.time_left(now)),
        expiration: c.expiration,
        cert_expiry,
        last_probe_at: c.last_at,
        last_duration: last.map(|r| Duration::from_secs_f64(r.duration_seconds.max(0.0))),
        attempts,
        recent,
        warnings: last.map(|r| r.warnings.clone()).unwrap_or_default(),
    }
}

/// A machine-readable summary of the same view (for scripts and the lab).
pub fn json(agent: &Agent) -> String {
    let now = agent.clock.now();
    let rows: Vec<serde_json::Value> = agent
        .snapshot()
        .iter()
        .map(|c| {
            let v = connector_view(c, now);
            serde_json::json!({
                "connector": v.name,
                "state": format!("{:?}", v.state).to_lowercase(),
                "code": v.code.map(|c| c.as_str()),
                "reason": v.reason.map(|r| r.as_str()),
                "message": v.message,
                "failing_since": v.failing_since.map(crate::timefmt::unix_secs),
                "queue_age_seconds": v.queue_age.map(|d| d.as_secs_f64()),
                "time_left_seconds": v.time_left.map(|d| d.as_secs_f64()),
            })
        })
        .collect();
    serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into())
}
