//! Metrics, rendered at scrape time from a snapshot of the agent's state. A collector (rather
//! than live families) makes a removed connector's series vanish on reload with no bookkeeping;
//! typed label sets keep every label to a bounded vocabulary (never raw error text).
//!
//! Output is OpenMetrics when the scraper asks for it, else Prometheus text 0.0.4 (which
//! `promtool check metrics` and older scrapers read).

use crate::agent::exo::ExoState;
use crate::agent::{ConnectorState, SelfStatus};
use crate::taxonomy::{Code, Reason};
use crate::tenant::api::{ApiName, Outcome};
use crate::timefmt::unix_secs;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

impl EncodeLabelValue for Code {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Reason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    connector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    connector: String,
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    connector: String,
    host: String,
    code: Code,
    reason: Reason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    connector: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    connector: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    connector: String,
    host: String,
    position: &'static str,
    subject: String,
    issuer: String,
    serial: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlsLabels {
    connector: String,
    host: String,
    version: String,
    cipher: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    connector: String,
    connector_type: &'static str,
    routing: &'static str,
    tls_settings: &'static str,
    tls_domain: String,
    enabled: &'static str,
    test_mode: &'static str,
    source: &'static str,
    role: &'static str,
    route_all_messages_via_on_premises: &'static str,
    cloud_services_mail_enabled: &'static str,
    transport_rule_scoped: &'static str,
    all_accepted_domains: &'static str,
    connector_source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
    rustc: &'static str,
    target: &'static str,
}

/// What one scrape shows: owned, so encoding holds no lock.
#[derive(Debug)]
pub struct Scrape {
    pub now: SystemTime,
    pub connectors: Vec<std::sync::Arc<ConnectorState>>,
    /// None for a `/probe` response, which carries only the probed connector's series.
    pub process: Option<SelfStatus>,
    /// Whether the web config file last loaded (None: no file).
    pub web_config_ok: Option<bool>,
    /// Exchange Online's view, when a tenant is configured.
    pub exo: Option<ExoScrape>,
    /// Which optional series to write.
    pub options: crate::config::MetricsOptions,
}

/// What a scrape shows of the tenant integration.
#[derive(Debug, Clone)]
pub struct ExoScrape {
    pub state: ExoState,
    pub requests: Vec<((ApiName, Outcome), u64)>,
    pub sync_enabled: bool,
}

/// Reads one per-connector gauge value from the state at `now`, given Microsoft's oldest pending
/// message when fresh tenant data exists.
type GaugeFn = fn(&ConnectorState, SystemTime, Option<Option<SystemTime>>) -> Option<f64>;

fn b(v: bool) -> &'static str {
    if v { "true" } else { "false" }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = self.now;
        let all = &self.connectors;
        // A disabled connector is listed (info) but has no probe series to alert on.
        let enabled: Vec<&ConnectorState> = all.iter().map(|c| c.as_ref()).filter(|c| c.connector.enabled).collect();
        let cs = enabled.as_slice();

        let mut m = enc.encode_descriptor(
            "mailflow_probes",
            "Probes of each target host (one per host per connector probe).",
            None,
            MetricType::Counter,
        )?;
        for c in cs {
            for (host, h) in &c.hosts {
                ConstCounter::new(h.probes).encode(m.encode_family(&HostLabels {
                    connector: c.connector.name().to_string(),
                    host: host.clone(),
                })?)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "mailflow_probe_failures",
            "Failed probes of a host, by the code Exchange Online would report and the observed reason.",
            None,
            MetricType::Counter,
        )?;
        for c in cs {
            for (host, h) in &c.hosts {
                for ((code, reason), n) in &h.failures {
                    let l = FailureLabels {
                        connector: c.connector.name().to_string(),
                        host: host.clone(),
                        code: *code,
                        reason: *reason,
                    };
                    ConstCounter::new(*n).encode(m.encode_family(&l)?)?;
                }
            }
        }
        let mut m = enc.encode_descriptor(
            "mailflow_probe_success",
            "1 if the host accepted the last probe.",
            None,
            MetricType::Gauge,
        )?;
        for c in cs {
            for (host, h) in &c.hosts {
                if let Some(ok) = h.last_success {
                    ConstGauge::new(ok as i64).encode(m.encode_family(&HostLabels {
                        connector: c.connector.name().to_string(),
                        host: host.clone(),
                    })?)?;
                }
            }
        }
        let mut m = enc.encode_descriptor(
            "mailflow_connector_up",
            "1 if every route of the connector had a host accept at the last probe.",
            None,
            MetricType::Gauge,
        )?;
        for c in cs {
            if let Some(d) = c.delivered() {
                ConstGauge::new(d as i64).encode(m.encode_family(&ConnectorLabels {
                    connector: c.connector.name().to_string(),
                })?)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "mailflow_connector_status",
            "State set: 1 for the code Exchange Online would report now (ok when delivered), 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for c in cs {
            if let Some(current) = c.status() {
                let current = current.map(|c| c.as_str()).unwrap_or("ok");
                for code in std::iter::once("ok").chain(Code::ALL.iter().map(|c| c.as_str())) {
                    ConstGauge::new((code == current) as i64).encode(m.encode_family(&StatusLabels {
                        connector: c.connector.name().to_string(),
                        code,
                    })?)?;
                }
            }
        }
        let mut m = enc.encode_descriptor(
            "mailflow_probe_last_duration_seconds",
            "How long the connector's last probe took, all hosts and steps together.",
            None,
            MetricType::Gauge,
        )?;
        for c in cs {
            if let Some(r) = &c.last {
                ConstGauge::new(r.duration_seconds).encode(m.encode_family(&ConnectorLabels {
                    connector: c.connector.name().to_string(),
                })?)?;
            }
        }
        if self.options.phase_histograms {
            let mut m = enc.encode_descriptor(
                "mailflow_probe_duration_seconds",
                "Time spent in each phase of a delivery attempt (total: the whole connector probe). Only with metrics.phase_histograms.",
                None,
                MetricType::Histogram,
            )?;
            for c in cs {
                for (phase, h) in &c.durations {
                    let l = PhaseLabels {
                        connector: c.connector.name().to_string(),
                        phase,
                    };
                    m.encode_family(&l)?
                        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                            h.sum,
                            h.count,
                            &h.buckets(),
                            None,
                        )?;
                }
            }
        }
        let mut cert_metrics = vec![(
            "mailflow_tls_certificate_not_after_timestamp_seconds",
            "Expiry of each certificate the host presented, also when it failed validation.",
            true,
        )];
        if self.options.certificate_not_before {
            cert_metrics.push((
                "mailflow_tls_certificate_not_before_timestamp_seconds",
                "Start of validity of each certificate the host presented. Only with metrics.certificate_not_before.",
                false,
            ));
        }
        for (name, help, pick) in cert_metrics {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for c in cs {
                for (host, h) in &c.hosts {
                    for cert in &h.certs {
                        let l = CertLabels {
                            connector: c.connector.name().to_string(),
                            host: host.clone(),
                            position: cert.position.as_str(),
                            subject: cert.subject.clone(),
                            issuer: cert.issuer.clone(),
                            serial: cert.serial.clone(),
                        };
                        let v = if pick {
                            cert.not_after_unix
                        } else {
                            cert.not_before_unix
                        };
                        ConstGauge::new(v).encode(m.encode_family(&l)?)?;
                    }
                }
            }
        }
        let mut m = enc.encode_descriptor(
            "mailflow_tls_info",
            "TLS version and cipher last negotiated with the host (value 1).",
            None,
            MetricType::Gauge,
        )?;
        for c in cs {
            for (host, h) in &c.hosts {
                if let Some(tls) = &h.tls {
                    let l = TlsLabels {
                        connector: c.connector.name().to_string(),
                        host: host.clone(),
                        version: tls.version.clone(),
                        cipher: tls.cipher.clone(),
                    };
                    ConstGauge::new(1).encode(m.encode_family(&l)?)?;
                }
            }
        }
        let per_connector: [(&str, &str, GaugeFn); 5] = [
            (
                "mailflow_connector_failing_since_timestamp_seconds",
                "Start of the current failure streak (first failed probe after a success); 0 when healthy.",
                |c, _, _| c.last.as_ref().map(|_| c.failing_since.map(unix_secs).unwrap_or(0.0)),
            ),
            (
                "mailflow_connector_queue_oldest_age_seconds",
                "Age of the oldest message Exchange Online holds for this connector (its own data when fresh, else the probe's model); 0 when none.",
                |c, now, ms| Some(c.queue_age_seen(now, ms).as_secs_f64()),
            ),
            (
                "mailflow_connector_queue_time_left_seconds",
                "Time before the oldest held message expires and its sender gets an NDR.",
                |c, now, ms| Some(c.time_left_seen(now, ms).as_secs_f64()),
            ),
            (
                "mailflow_connector_queue_expiry_seconds",
                "Message expiration (the tenant's when synced; Exchange Online default 24 h, allowed 12-24 h).",
                |c, _, _| Some(c.expiration.as_secs_f64()),
            ),
            (
                "mailflow_connector_last_probe_timestamp_seconds",
                "When the connector was last probed.",
                |c, _, _| c.last_at.map(unix_secs),
            ),
        ];
        let exo = self.exo.as_ref().map(|e| &e.state);
        for (name, help, f) in per_connector {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for c in cs {
                let ms = exo.and_then(|e| e.oldest(&c.connector, now));
                if let Some(v) = f(c, now, ms) {
                    ConstGauge::new(v).encode(m.encode_family(&ConnectorLabels {
                        connector: c.connector.name().to_string(),
                    })?)?;
                }
            }
        }
        let mut m = enc.encode_descriptor(
            "mailflow_connector_info",
            "Connector settings (value 1).",
            None,
            MetricType::Gauge,
        )?;
        for c in all {
            let k = &c.connector;
            let l = InfoLabels {
                connector: k.name().to_string(),
                connector_type: k.connector_type.as_str(),
                routing: k.probe.routing.label(),
                tls_settings: k.probe.tls_settings.as_str(),
                tls_domain: k.probe.tls_domain.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                enabled: b(k.enabled),
                test_mode: b(k.test_mode),
                source: k.source.as_str(),
                role: k.role().as_str(),
                route_all_messages_via_on_premises: b(k.carries.route_all_via_on_premises),
                cloud_services_mail_enabled: b(k.carries.cloud_services_mail),
                transport_rule_scoped: b(k.carries.transport_rule_scoped),
                all_accepted_domains: b(k.carries.all_accepted_domains),
                connector_source: k.carries.connector_source.as_str(),
            };
            ConstGauge::new(1).encode(m.encode_family(&l)?)?;
        }
        if let Some(x) = &self.exo {
            let primary = self.process.is_none_or(|p| p.primary_shard);
            encode_exo(&mut enc, x, cs, now, primary)?;
        }
        if let Some(p) = &self.process {
            let mut m = enc.encode_descriptor(
                "mailflow_self_check_successful",
                "The agent's own health, apart from the partners': dns = one of its resolvers answers; outbound_port_25 = not every recent connection attempt (to 3 or more hosts) failed.",
                None,
                MetricType::Gauge,
            )?;
            let checks = [("dns", p.self_check.dns), ("outbound_port_25", outbound_ok(cs))];
            for (check, ok) in checks {
                if let Some(ok) = ok {
                    ConstGauge::new(ok as i64).encode(m.encode_family(&[("check", check)])?)?;
                }
            }
            let m = enc.encode_descriptor(
                "mailflow_config_last_reload_successful",
                "1 if the last configuration reload succeeded.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(p.reload.ok as i64).encode(m)?;
            let m = enc.encode_descriptor(
                "mailflow_config_last_reload_success_timestamp_seconds",
                "When the configuration was last loaded successfully.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(p.reload.success_at.map(unix_secs).unwrap_or(0.0)).encode(m)?;
            if let Some(ok) = self.web_config_ok {
                let m = enc.encode_descriptor(
                    "mailflow_web_config_last_reload_successful",
                    "1 if the web config file (--web.config.file) last loaded; 0: the previous one is in force.",
                    None,
                    MetricType::Gauge,
                )?;
                ConstGauge::new(ok as i64).encode(m)?;
            }
            let m = enc.encode_descriptor(
                "mailflow_queue_clock_load_successful",
                "1 if the queue clock file could be read at start (a missing file counts as read).",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(p.state_load_ok as i64).encode(m)?;
            let mut m = enc.encode_descriptor(
                "mailflow_queue_clock_damaged_entries",
                "Entries of the queue clock file that were unusable at start (skipped) or lay in the future (clamped to the start time).",
                None,
                MetricType::Gauge,
            )?;
            for (action, n) in [("skipped", p.state_skipped), ("clamped", p.state_clamped)] {
                ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                    .encode(m.encode_family(&[("action", action)])?)?;
            }
            let m = enc.encode_descriptor(
                "mailflow_queue_clock_write_failures",
                "Saves of the queue clock file that failed.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(p.state_write_failures).encode(m)?;
            let mut m = enc.encode_descriptor(
                "mailflow_build_info",
                "Build information (value 1): version, git revision, compiler and target.",
                None,
                MetricType::Gauge,
            )?;
            let b = &super::process::BUILD;
            ConstGauge::new(1).encode(m.encode_family(&BuildLabels {
                version: b.version,
                revision: b.revision,
                rustc: b.rustc,
                target: b.target,
            })?)?;
            if let Some(ps) = super::process::read() {
                encode_process(&mut enc, &ps)?;
            }
        }
        Ok(())
    }
}

/// The standard process metrics, as client libraries name them.
fn encode_process(enc: &mut DescriptorEncoder, p: &super::process::ProcessStats) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds.",
        None,
        MetricType::Counter,
    )?;
    prometheus_client::metrics::counter::ConstCounter::new(p.cpu_seconds).encode(m)?;
    let gauges: [(&str, &str, Option<f64>); 5] = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            Some(p.resident_bytes as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            Some(p.virtual_bytes as f64),
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            (p.start_time_seconds > 0.0).then_some(p.start_time_seconds),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds.map(|n| n as f64),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.max_fds.map(|n| n as f64),
        ),
    ];
    for (name, help, v) in gauges {
        if let Some(v) = v {
            let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(v).encode(m)?;
        }
    }
    Ok(())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExoCodeLabels {
    connector: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: &'static str,
    outcome: &'static str,
}

/// Whether outbound connections work from here, judged by the last probe of every connector:
/// false when no attempt got past connecting and at least three distinct addresses failed to
/// connect (one partner down is the partner's problem; every partner down is ours). None when
/// nothing has been tried yet.
fn outbound_ok(cs: &[&ConnectorState]) -> Option<bool> {
    let mut failed = std::collections::HashSet::new();
    let mut tried = false;
    for a in cs
        .iter()
        .filter_map(|c| c.last.as_ref())
        .flat_map(|r| r.attempts.iter())
    {
        let Some(ip) = a.ip else { continue };
        tried = true;
        if a.phase == Some(crate::probe::Phase::Connect) {
            failed.insert(ip);
        } else if a.phase.is_some() || a.delivered {
            return Some(true);
        }
    }
    tried.then_some(failed.len() < 3)
}

/// Exchange Online's view: Microsoft's queue per connector (the last good read, however old:
/// `mailflow_exo_last_success_timestamp_seconds` says how old), requests, sync, and where the
/// two views disagree.
fn encode_exo(
    enc: &mut DescriptorEncoder,
    x: &ExoScrape,
    cs: &[&ConnectorState],
    now: SystemTime,
    primary: bool,
) -> Result<(), std::fmt::Error> {
    // Sharded: each agent writes its own connectors, and shard 0 the mail no connector claims.
    let mine: std::collections::HashSet<&str> = cs.iter().map(|c| c.connector.name()).collect();
    let shown = |connector: &str| {
        if connector == crate::tenant::UNATTRIBUTED {
            primary
        } else {
            mine.contains(connector)
        }
    };
    let view = x.state.view.as_deref();
    let gauge = |enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64| -> Result<(), std::fmt::Error> {
        let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(v).encode(m)
    };
    let mut m = enc.encode_descriptor(
        "mailflow_exo_pending_messages",
        "Messages Exchange Online holds (status pending) by connector and by the code of their last defer reason (unknown: not fetched).",
        None,
        MetricType::Gauge,
    )?;
    if let Some(v) = view {
        for (connector, q) in v.connectors.iter().filter(|(c, _)| shown(c)) {
            for (code, n) in &q.pending {
                let l = ExoCodeLabels {
                    connector: connector.clone(),
                    code: code.as_str(),
                };
                ConstGauge::new(i64::try_from(*n).unwrap_or(i64::MAX)).encode(m.encode_family(&l)?)?;
            }
        }
    }
    // Age and time left for every enabled connector (0 / the full expiration when nothing is
    // held), so alerts see a series that goes back to normal.
    for (name, help, left) in [
        (
            "mailflow_exo_oldest_pending_age_seconds",
            "Age of the oldest message Exchange Online holds for the connector, by its own data; 0 when none.",
            false,
        ),
        (
            "mailflow_exo_oldest_pending_time_left_seconds",
            "Time before Exchange Online's oldest held message for the connector expires and its sender gets an NDR.",
            true,
        ),
    ] {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        if let Some(v) = view {
            let mut names: Vec<(&str, Duration)> = cs
                .iter()
                .filter(|c| crate::agent::exo::attributable(&c.connector))
                .map(|c| (c.connector.name(), c.expiration))
                .collect();
            let default_expiration = cs.first().map(|c| c.expiration).unwrap_or(Duration::from_secs(86_400));
            if primary && v.connectors.contains_key(crate::tenant::UNATTRIBUTED) {
                names.push((crate::tenant::UNATTRIBUTED, default_expiration));
            }
            for (name, expiration) in names {
                let oldest = v.connectors.get(name).and_then(|q| q.oldest_received);
                let age = crate::agent::state::queue_age(oldest, now, expiration);
                let value = if left { expiration.saturating_sub(age) } else { age };
                ConstGauge::new(value.as_secs_f64()).encode(m.encode_family(&ConnectorLabels {
                    connector: name.to_string(),
                })?)?;
            }
        }
    }
    let mut m = enc.encode_descriptor(
        "mailflow_connector_vantage_mismatch",
        "1 when Exchange Online holds mail for the connector while this agent's probe delivers (Microsoft's addresses or route are treated differently).",
        None,
        MetricType::Gauge,
    )?;
    for c in cs {
        let q = x.state.queue(c.connector.name(), now);
        let mismatch = crate::agent::exo::vantage_mismatch(q, c.delivered());
        if x.state.fresh_view(now).is_some() && crate::agent::exo::attributable(&c.connector) {
            ConstGauge::new(mismatch as i64).encode(m.encode_family(&ConnectorLabels {
                connector: c.connector.name().to_string(),
            })?)?;
        }
    }
    let success = view.map(|v| unix_secs(v.fetched_at)).unwrap_or(0.0);
    gauge(
        enc,
        "mailflow_exo_last_success_timestamp_seconds",
        "When Exchange Online's queue was last read successfully (0: never).",
        success,
    )?;
    gauge(
        enc,
        "mailflow_exo_poll_successful",
        "1 if the last read of Exchange Online's queue succeeded.",
        (x.state.last_poll_ok == Some(true)) as i64 as f64,
    )?;
    let mut m = enc.encode_descriptor(
        "mailflow_exo_requests",
        "Requests to Microsoft's endpoints by API and outcome.",
        None,
        MetricType::Counter,
    )?;
    for api in ApiName::ALL {
        for outcome in Outcome::ALL {
            let n = x
                .requests
                .iter()
                .find(|((a, o), _)| *a == api && *o == outcome)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            ConstCounter::new(n).encode(m.encode_family(&RequestLabels {
                api: api.as_str(),
                outcome: outcome.as_str(),
            })?)?;
        }
    }
    if x.sync_enabled {
        let sync = x.state.sync.as_deref();
        gauge(
            enc,
            "mailflow_exo_sync_successful",
            "1 if the last read of the tenant's connectors, message expiration and accepted domains succeeded.",
            (x.state.last_sync_ok == Some(true)) as i64 as f64,
        )?;
        gauge(
            enc,
            "mailflow_exo_sync_last_success_timestamp_seconds",
            "When the tenant's configuration was last read successfully (0: never).",
            sync.map(|s| unix_secs(s.at)).unwrap_or(0.0),
        )?;
        gauge(
            enc,
            "mailflow_exo_synced_connectors",
            "Connectors read from the tenant (those also in the file are probed as the file says).",
            sync.map(|s| s.connectors.len() as f64).unwrap_or(0.0),
        )?;
    }
    Ok(())
}

pub fn encode_openmetrics(scrape: Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        return "# EOF\n".into();
    }
    out
}

/// OpenMetrics → Prometheus text 0.0.4: counters are named with `_total` in HELP/TYPE, and the
/// `# UNIT`/`# EOF` lines go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut pending_help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, help));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, typ) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let out_name = if typ == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            if let Some((hn, help)) = pending_help.take()
                && hn == name
            {
                let _ = writeln!(out, "# HELP {out_name} {help}");
            }
            let _ = writeln!(out, "# TYPE {out_name} {typ}");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_counters_and_drops_openmetrics_lines() {
        let om = "# HELP x_probes Probes.\n# TYPE x_probes counter\nx_probes_total{a=\"b\"} 3\n# HELP g G.\n# TYPE g gauge\n# UNIT g seconds\ng 1\n# EOF\n";
        let p = to_prometheus_text(om);
        assert_eq!(
            p,
            "# HELP x_probes_total Probes.\n# TYPE x_probes_total counter\nx_probes_total{a=\"b\"} 3\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
    }
}
