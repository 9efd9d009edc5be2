//! Builds the status page's view model from the agent's state (the page itself is in
//! [`super::page`], which only sees the view model).

use super::page::{
    AttemptView, CertExpiry, ConnectorView, MicrosoftView, StatusView, SyncBanner, TenantBanner, ViewState,
    render as render_page,
};
use crate::agent::exo::{self, ExoState};
use crate::agent::{Agent, ConnectorState, Recent};
use crate::probe::tls::CertPosition;
use crate::timefmt::from_unix_secs;
use std::time::{Duration, SystemTime};

pub fn view(agent: &Agent, note: Option<String>) -> StatusView {
    let now = agent.clock.now();
    let cfg = agent.config();
    let tenant = agent.tenant();
    let exo = tenant.as_ref().map(|_| agent.exo());
    let mut connectors: Vec<ConnectorView> = agent
        .snapshot()
        .iter()
        .map(|c| connector_view(c, now, exo.as_ref()))
        .collect();
    // Failing first, then by name: what needs attention is at the top.
    connectors.sort_by_key(|c| (c.state != ViewState::Failing, c.name.clone()));
    StatusView {
        generated_at: now,
        version: env!("CARGO_PKG_VERSION").to_string(),
        config_file: cfg.source.display().to_string(),
        last_reload_ok: agent.reload_status().ok,
        listen_note: match (note, agent.shard()) {
            (note, Some(shard)) => Some(
                [
                    note,
                    Some(format!(
                        "shard {shard}: this agent probes {} of {} connectors",
                        cfg.connectors.len(),
                        agent.connectors_in_all_shards()
                    )),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" · "),
            ),
            (note, None) => note,
        },
        tenant: exo.as_ref().map(|e| TenantBanner {
            last_success: e.view.as_ref().map(|v| v.fetched_at),
            ok: e.last_poll_ok,
            error: e.last_poll_error.clone(),
            sync: tenant.as_ref().filter(|t| t.config().sync).map(|_| SyncBanner {
                ok: e.last_sync_ok,
                at: e.sync.as_ref().map(|s| s.at),
                connectors: e.sync.as_ref().map(|s| s.connectors.len()).unwrap_or(0),
                error: e.last_sync_error.clone(),
            }),
        }),
        connectors,
    }
}

/// Microsoft's queue for a connector (the last good read, marked stale when old).
fn microsoft_view(exo: &ExoState, name: &str, now: SystemTime) -> Option<MicrosoftView> {
    let v = exo.view.as_deref()?;
    let stale = exo.fresh_view(now).is_none();
    let q = v.connectors.get(name);
    let reason = q.and_then(|q| q.last_reason.as_ref());
    Some(MicrosoftView {
        held: q.map(|q| q.total()).unwrap_or(0),
        by_code: q
            .map(|q| q.pending.iter().map(|(c, n)| (c.as_str().to_string(), *n)).collect())
            .unwrap_or_default(),
        oldest_age: q
            .and_then(|q| q.oldest_received)
            .map(|t| now.duration_since(t).unwrap_or(Duration::ZERO)),
        reason: reason.map(|r| r.text.clone()),
        server: reason.and_then(|r| r.server.clone()),
        ip: reason.and_then(|r| r.ip.clone()),
        stale,
    })
}

pub fn render(agent: &Agent, note: Option<String>) -> String {
    render_page(&view(agent, note))
}

fn connector_view(c: &ConnectorState, now: SystemTime, exo: Option<&ExoState>) -> ConnectorView {
    let k = &c.connector;
    let ms = exo.and_then(|e| e.oldest(k, now));
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
        role: k.role(),
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
        // Microsoft's own oldest pending message when fresh tenant data exists, else the model.
        queue_age: match ms {
            Some(oldest) => oldest.map(|_| c.queue_age_seen(now, ms)),
            None => c.failing_since.map(|_| c.queue_age(now)),
        },
        time_left: match ms {
            Some(oldest) => oldest.map(|_| c.time_left_seen(now, ms)),
            None => c.failing_since.map(|_| c.time_left(now)),
        },
        expiration: c.expiration,
        cert_expiry,
        last_probe_at: c.last_at,
        last_duration: last.map(|r| Duration::from_secs_f64(r.duration_seconds.max(0.0))),
        attempts,
        recent,
        warnings: last.map(|r| r.warnings.clone()).unwrap_or_default(),
        microsoft: exo
            .filter(|_| exo::attributable(k))
            .and_then(|e| microsoft_view(e, k.name(), now)),
        mismatch: exo.is_some_and(|e| exo::vantage_mismatch(e.queue(k.name(), now), c.delivered())),
        migrated_fix: exo
            .and_then(|e| exo::migrated_domain(e, k, last.and_then(|r| r.code)))
            .map(|d| exo::migrated_fix(k.name(), d)),
    }
}

/// A machine-readable summary of the same view (for scripts and the lab).
pub fn json(agent: &Agent) -> String {
    let now = agent.clock.now();
    let exo = agent.tenant().map(|_| agent.exo());
    let rows: Vec<serde_json::Value> = agent
        .snapshot()
        .iter()
        .map(|c| {
            let v = connector_view(c, now, exo.as_ref());
            let microsoft = v.microsoft.as_ref().map(|m| {
                serde_json::json!({
                    "held": m.held,
                    "by_code": m.by_code.iter().map(|(c, n)| (c.clone(), serde_json::Value::from(*n))).collect::<serde_json::Map<_, _>>(),
                    "oldest_age_seconds": m.oldest_age.map(|d| d.as_secs_f64()),
                    "reason": m.reason,
                    "server": m.server,
                    "ip": m.ip,
                    "stale": m.stale,
                })
            });
            serde_json::json!({
                "connector": v.name,
                "state": format!("{:?}", v.state).to_lowercase(),
                "role": v.role.as_str(),
                "code": v.code.map(|c| c.as_str()),
                "reason": v.reason.map(|r| r.as_str()),
                "message": v.message,
                "failing_since": v.failing_since.map(crate::timefmt::unix_secs),
                "queue_age_seconds": v.queue_age.map(|d| d.as_secs_f64()),
                "time_left_seconds": v.time_left.map(|d| d.as_secs_f64()),
                "microsoft": microsoft,
                "vantage_mismatch": v.mismatch,
                "migrated_fix": v.migrated_fix,
            })
        })
        .collect();
    serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into())
}
