//! The long-running agent: probes every enabled connector on its interval (spread over the
//! interval, one probe per connector at a time, a global concurrency cap), keeps per-connector
//! state and the queue clock, and reloads its configuration without losing either.

use crate::clock::Clock;
use crate::code::{Code, Reason};
use crate::config::{Config, Connector};
use crate::probe::tls::CertSummary;
use crate::probe::{Phase, ProbeReport, ProbeSpec, Prober, ProberOptions};
use crate::store::{Store, Streaks};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Upper bounds of the phase-latency histogram, in seconds.
pub const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Phases that get a latency histogram (plus `total`).
pub const HISTOGRAM_PHASES: [Phase; 6] = [
    Phase::Dns,
    Phase::Connect,
    Phase::Banner,
    Phase::Ehlo,
    Phase::Starttls,
    Phase::TlsHandshake,
];

const RECENT_FAILED: usize = 50;
const RECENT_OK: usize = 10;

#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Per-bucket (not cumulative) counts, one per entry of BUCKETS, plus +Inf.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len() + 1];
        }
        let i = BUCKETS.iter().position(|b| v <= *b).unwrap_or(BUCKETS.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    pub fn buckets(&self) -> Vec<(f64, u64)> {
        BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().copied().chain(std::iter::repeat(0)))
            .collect()
    }
}

/// Per probe: did any address of the host accept, else the last failure seen.
type HostOutcome = (bool, Option<(Code, Reason)>);

#[derive(Debug, Clone, Default)]
pub struct HostStats {
    pub probes: u64,
    pub failures: BTreeMap<(Code, Reason), u64>,
    pub last_success: Option<bool>,
    /// Last chain this host presented (kept while later probes fail before TLS).
    pub certs: Vec<CertSummary>,
    pub tls: Option<(String, String)>,
}

/// One entry of the recent-probe history.
#[derive(Debug, Clone)]
pub struct Recent {
    pub at: SystemTime,
    pub delivered: bool,
    pub code: Option<Code>,
    pub reason: Option<Reason>,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct ConnectorState {
    pub connector: Connector,
    pub expiration: Duration,
    pub hosts: BTreeMap<String, HostStats>,
    /// Phase name (`dns`, …, `total`) → latency histogram.
    pub durations: BTreeMap<&'static str, Histogram>,
    pub last: Option<Arc<ProbeReport>>,
    pub last_at: Option<SystemTime>,
    pub failing_since: Option<SystemTime>,
    pub recent_failed: VecDeque<Recent>,
    pub recent_ok: VecDeque<Recent>,
}

impl ConnectorState {
    pub fn new(connector: Connector, expiration: Duration) -> Self {
        ConnectorState {
            connector,
            expiration,
            hosts: BTreeMap::new(),
            durations: BTreeMap::new(),
            last: None,
            last_at: None,
            failing_since: None,
            recent_failed: VecDeque::new(),
            recent_ok: VecDeque::new(),
        }
    }

    /// Folds one probe into the state. Returns true when the failure streak started or ended.
    pub fn record(&mut self, report: ProbeReport, at: SystemTime) -> bool {
        // Per host: delivered if any of its addresses accepted; else the last failure counts.
        let mut per_host: BTreeMap<&str, HostOutcome> = BTreeMap::new();
        for a in &report.attempts {
            let e = per_host.entry(a.host.as_str()).or_insert((false, None));
            if a.delivered {
                e.0 = true;
            } else if let (Some(c), Some(r)) = (a.code, a.reason) {
                e.1 = Some((c, r));
            }
        }
        for (host, (ok, fail)) in per_host {
            let h = self.hosts.entry(host.to_string()).or_default();
            h.probes += 1;
            h.last_success = Some(ok);
            if !ok && let Some(k) = fail {
                *h.failures.entry(k).or_insert(0) += 1;
            }
        }
        for a in &report.attempts {
            if let Some(h) = self.hosts.get_mut(&a.host) {
                if !a.certificates.is_empty() {
                    h.certs = a.certificates.clone();
                }
                if let Some(t) = &a.tls {
                    h.tls = Some((t.version.clone(), t.cipher.clone()));
                }
            }
            for p in HISTOGRAM_PHASES {
                if let Some(s) = a.durations.get(&p) {
                    self.durations.entry(p.as_str()).or_default().observe(*s);
                }
            }
        }
        self.durations
            .entry("total")
            .or_default()
            .observe(report.duration_seconds);

        let was_failing = self.failing_since.is_some();
        if report.delivered {
            self.failing_since = None;
        } else if self.failing_since.is_none() {
            self.failing_since = Some(at);
        }
        let entry = Recent {
            at,
            delivered: report.delivered,
            code: report.code,
            reason: report.reason,
            message: report.message.clone(),
        };
        let (list, cap) = if report.delivered {
            (&mut self.recent_ok, RECENT_OK)
        } else {
            (&mut self.recent_failed, RECENT_FAILED)
        };
        list.push_front(entry);
        list.truncate(cap);
        self.last = Some(Arc::new(report));
        self.last_at = Some(at);
        was_failing != self.failing_since.is_some()
    }

    pub fn delivered(&self) -> Option<bool> {
        self.last.as_ref().map(|r| r.delivered)
    }

    /// The code now (None = never probed; Some(None) = delivered).
    pub fn status(&self) -> Option<Option<Code>> {
        self.last.as_ref().map(|r| r.code)
    }

    /// Age of the oldest message Exchange Online would now hold (0 when healthy).
    pub fn queue_age(&self, now: SystemTime) -> Duration {
        queue_age(self.failing_since, now, self.expiration)
    }

    pub fn time_left(&self, now: SystemTime) -> Duration {
        self.expiration.saturating_sub(self.queue_age(now))
    }
}

/// Messages older than the expiration have bounced already, so the oldest one still held is
/// at most `expiration` old.
pub fn queue_age(failing_since: Option<SystemTime>, now: SystemTime, expiration: Duration) -> Duration {
    match failing_since {
        None => Duration::ZERO,
        Some(t) => now.duration_since(t).unwrap_or(Duration::ZERO).min(expiration),
    }
}

/// Deterministic start offset within the interval, so many connectors don't fire at once and a
/// restart keeps the same rhythm.
pub fn spread(name: &str, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h % ms)
}

#[derive(Debug, Clone, Copy)]
pub struct ReloadStatus {
    pub ok: bool,
    pub success_at: Option<SystemTime>,
}

struct Running {
    config: Arc<Config>,
    prober: Arc<Prober>,
}

pub struct AgentOptions {
    pub config_path: PathBuf,
    pub storage: Option<Store>,
    pub clock: Arc<dyn Clock>,
    /// How far the first probes are spread (None = over each connector's interval).
    pub max_initial_spread: Option<Duration>,
}

/// Shared between the scheduler, the HTTP handlers and signal handlers.
pub struct Agent {
    config_path: PathBuf,
    running: RwLock<Arc<Running>>,
    /// Shared with scrapes: a scrape takes the Arcs, a probe copies on write (Arc::make_mut).
    states: Mutex<BTreeMap<String, Arc<ConnectorState>>>,
    probe_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    semaphore: Arc<Semaphore>,
    /// Permits the semaphore is meant to hold (max_concurrent_probes of the running config).
    permits: Mutex<usize>,
    reload: Mutex<ReloadStatus>,
    store: Option<Store>,
    pub clock: Arc<dyn Clock>,
    tasks: Mutex<HashMap<String, (String, tokio::task::AbortHandle)>>,
    persist_lock: Mutex<()>,
    max_initial_spread: Option<Duration>,
    pub shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the agent down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn build_prober(cfg: &Config) -> Result<Prober, String> {
    let mut extra_ca = Vec::new();
    for f in &cfg.extra_ca_files {
        let pem = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        extra_ca.push((f.display().to_string(), pem));
    }
    Prober::new(ProberOptions {
        dns_servers: cfg.dns_servers.clone(),
        extra_ca,
        ..ProberOptions::default()
    })
    .map_err(|e| format!("{}: {e}", cfg.source.display()))
}

impl Agent {
    /// Loads the config (a failure here is fatal: exit code 2) and restores the queue clock.
    pub fn new(opts: AgentOptions) -> Result<Arc<Agent>, String> {
        let cfg = Config::load(&opts.config_path).map_err(|e| e.to_string())?;
        let prober = build_prober(&cfg)?;
        let streaks = match &opts.storage {
            Some(s) => s.load().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "queue clock state unreadable; starting fresh");
                Streaks::new()
            }),
            None => Streaks::new(),
        };
        let mut states = BTreeMap::new();
        for c in &cfg.connectors {
            let mut st = ConnectorState::new(c.clone(), cfg.defaults.message_expiration);
            if let Some((t, _)) = streaks.get(&c.name) {
                st.failing_since = Some(*t);
            }
            states.insert(c.name.clone(), Arc::new(st));
        }
        let now = opts.clock.now();
        Ok(Arc::new(Agent {
            config_path: opts.config_path,
            semaphore: Arc::new(Semaphore::new(cfg.max_concurrent_probes)),
            permits: Mutex::new(cfg.max_concurrent_probes),
            running: RwLock::new(Arc::new(Running {
                config: Arc::new(cfg),
                prober: Arc::new(prober),
            })),
            states: Mutex::new(states),
            probe_locks: Mutex::new(HashMap::new()),
            reload: Mutex::new(ReloadStatus {
                ok: true,
                success_at: Some(now),
            }),
            store: opts.storage,
            clock: opts.clock,
            tasks: Mutex::new(HashMap::new()),
            persist_lock: Mutex::new(()),
            max_initial_spread: opts.max_initial_spread,
            shutdown: CancellationToken::new(),
        }))
    }

    pub fn config(&self) -> Arc<Config> {
        self.running
            .read()
            .map(|r| r.config.clone())
            .unwrap_or_else(|p| p.into_inner().config.clone())
    }

    fn prober(&self) -> Arc<Prober> {
        self.running
            .read()
            .map(|r| r.prober.clone())
            .unwrap_or_else(|p| p.into_inner().prober.clone())
    }

    pub fn reload_status(&self) -> ReloadStatus {
        *lock(&self.reload)
    }

    /// A consistent copy of every connector's state (for scrapes and the status page).
    pub fn snapshot(&self) -> Vec<Arc<ConnectorState>> {
        lock(&self.states).values().cloned().collect()
    }

    pub fn connector_state(&self, name: &str) -> Option<Arc<ConnectorState>> {
        lock(&self.states).get(name).cloned()
    }

    /// Starts (or re-syncs) one probing task per enabled connector.
    pub fn start(self: &Arc<Self>) {
        let cfg = self.config();
        let mut tasks = lock(&self.tasks);
        let wanted: HashMap<String, String> = cfg
            .connectors
            .iter()
            .filter(|c| c.enabled)
            .map(|c| (c.name.clone(), format!("{c:?}")))
            .collect();
        tasks.retain(|name, (key, handle)| {
            let keep = wanted.get(name) == Some(key);
            if !keep {
                handle.abort();
            }
            keep
        });
        for c in cfg.connectors.iter().filter(|c| c.enabled) {
            if tasks.contains_key(&c.name) {
                continue;
            }
            let agent = self.clone();
            let name = c.name.clone();
            let interval = c.interval;
            let mut offset = spread(&name, interval);
            if let Some(max) = self.max_initial_spread {
                offset = Duration::from_millis(offset.as_millis() as u64 % max.as_millis().max(1) as u64);
            }
            let handle = tokio::spawn(async move {
                let token = agent.shutdown.clone();
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(offset) => {}
                }
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = agent.probe_now(&name) => {}
                    }
                }
            });
            tasks.insert(c.name.clone(), (format!("{c:?}"), handle.abort_handle()));
        }
    }

    /// Probes one configured connector now, unless it is already being probed (then waits for
    /// that probe). Returns None for an unknown connector.
    pub async fn probe_now(&self, name: &str) -> Option<Arc<ProbeReport>> {
        let cfg = self.config();
        let connector = cfg.connector(name)?.clone();
        let guard_lock = lock(&self.probe_locks).entry(name.to_string()).or_default().clone();
        let _one_at_a_time = guard_lock.lock().await;
        let _permit = self.semaphore.clone().acquire_owned().await.ok()?;
        let at = self.clock.now();
        let report = self.prober().probe(&ProbeSpec::from_connector(&connector)).await;
        let report_arc;
        let changed = {
            let mut states = lock(&self.states);
            let st = Arc::make_mut(states.get_mut(name)?);
            let changed = st.record(report, at);
            report_arc = st.last.clone();
            changed
        };
        if let Some(r) = &report_arc {
            if r.delivered {
                tracing::debug!(connector = name, "delivered");
            } else {
                tracing::info!(
                    connector = name,
                    code = r.code.map(|c| c.as_str()).unwrap_or("?"),
                    reason = r.reason.map(|c| c.as_str()).unwrap_or("?"),
                    message = %r.message,
                    "probe failed"
                );
            }
        }
        if changed {
            self.persist();
        }
        report_arc
    }

    fn persist(&self) {
        let Some(store) = &self.store else { return };
        // One writer at a time, and the snapshot taken under the same lock, so an older
        // snapshot can never overwrite a newer one.
        let _writer = lock(&self.persist_lock);
        let streaks: Streaks = lock(&self.states)
            .iter()
            .filter_map(|(k, s)| {
                s.failing_since.map(|t| {
                    (
                        k.clone(),
                        (t, s.last.as_ref().and_then(|r| r.code).map(|c| c.to_string())),
                    )
                })
            })
            .collect();
        if let Err(e) = store.save(&streaks) {
            tracing::error!(error = %e, "cannot save the queue clock state");
        }
    }

    /// Re-reads the config file. A bad file is rejected and the running config keeps going.
    pub fn reload(self: &Arc<Self>) -> Result<(), String> {
        let result = Config::load(&self.config_path)
            .map_err(|e| e.to_string())
            .and_then(|cfg| build_prober(&cfg).map(|p| (cfg, p)));
        let (cfg, prober) = match result {
            Err(e) => {
                lock(&self.reload).ok = false;
                tracing::error!(error = %e, "config reload failed; keeping the running config");
                return Err(e);
            }
            Ok(x) => x,
        };
        {
            let mut states = lock(&self.states);
            states.retain(|name, _| cfg.connector(name).is_some());
            for c in &cfg.connectors {
                match states.get_mut(&c.name) {
                    Some(st) if !c.enabled => {
                        // A disabled connector keeps no probe results: nothing stale to alert on,
                        // and re-enabling it starts a fresh queue clock.
                        *st = Arc::new(ConnectorState::new(c.clone(), cfg.defaults.message_expiration));
                    }
                    Some(st) => {
                        let st = Arc::make_mut(st);
                        if st.connector.routing != c.routing || st.connector.port != c.port {
                            // Different targets: old per-host series would be stale.
                            st.hosts.clear();
                        }
                        st.connector = c.clone();
                        st.expiration = cfg.defaults.message_expiration;
                    }
                    None => {
                        states.insert(
                            c.name.clone(),
                            Arc::new(ConnectorState::new(c.clone(), cfg.defaults.message_expiration)),
                        );
                    }
                }
            }
        }
        self.resize_permits(cfg.max_concurrent_probes);
        if let Ok(mut r) = self.running.write() {
            *r = Arc::new(Running {
                config: Arc::new(cfg),
                prober: Arc::new(prober),
            });
        }
        *lock(&self.reload) = ReloadStatus {
            ok: true,
            success_at: Some(self.clock.now()),
        };
        self.persist();
        self.start();
        tracing::info!(file = %self.config_path.display(), "config reloaded");
        Ok(())
    }

    /// Applies a new max_concurrent_probes: grows at once, shrinks as running probes finish.
    fn resize_permits(&self, wanted: usize) {
        let mut current = lock(&self.permits);
        if wanted > *current {
            self.semaphore.add_permits(wanted - *current);
        } else if wanted < *current {
            let n = u32::try_from(*current - wanted).unwrap_or(u32::MAX);
            let sem = self.semaphore.clone();
            tokio::spawn(async move {
                if let Ok(p) = sem.acquire_many_owned(n).await {
                    p.forget();
                }
            });
        }
        *current = wanted;
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
        for (_, (_, h)) in lock(&self.tasks).drain() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_age_is_capped_by_expiration() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        assert_eq!(queue_age(None, t0, day), Duration::ZERO);
        assert_eq!(
            queue_age(Some(t0), t0 + Duration::from_secs(3600), day),
            Duration::from_secs(3600)
        );
        assert_eq!(queue_age(Some(t0), t0 + 2 * day, day), day);
        // A clock that went backwards never yields a negative age.
        assert_eq!(queue_age(Some(t0), t0 - Duration::from_secs(5), day), Duration::ZERO);
    }

    #[test]
    fn spread_is_stable_and_within_interval() {
        let i = Duration::from_secs(60);
        assert_eq!(spread("a", i), spread("a", i));
        for n in ["a", "b", "Outbound to Contoso", ""] {
            assert!(spread(n, i) < i);
        }
    }

    #[tokio::test]
    async fn reload_resizes_the_probe_concurrency_limit() {
        let dir = std::env::temp_dir().join(format!("mailflow-agent-permits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("c.yaml");
        let write = |n: usize| {
            let text = format!(
                "max_concurrent_probes: {n}\nconnectors:\n  - name: a\n    enabled: false\n    recipient_domains: [a.test]\n"
            );
            std::fs::write(&path, text).expect("write");
        };
        write(4);
        let agent = Agent::new(AgentOptions {
            config_path: path.clone(),
            storage: None,
            clock: Arc::new(crate::clock::SystemClock),
            max_initial_spread: None,
        })
        .expect("agent");
        assert_eq!(agent.semaphore.available_permits(), 4);
        write(2);
        agent.reload().expect("reload");
        for _ in 0..100 {
            if agent.semaphore.available_permits() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(agent.semaphore.available_permits(), 2);
        write(6);
        agent.reload().expect("reload");
        assert_eq!(agent.semaphore.available_permits(), 6);
        agent.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn histogram_buckets() {
        let mut h = Histogram::default();
        h.observe(0.004);
        h.observe(0.3);
        h.observe(100.0);
        let b = h.buckets();
        assert_eq!(b.len(), BUCKETS.len() + 1);
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 3);
        assert_eq!(b[0], (0.005, 1));
        assert_eq!(b.last().map(|x| x.1), Some(1));
    }
}
