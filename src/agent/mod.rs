//! The long-running agent: probes every enabled connector on its interval ([`schedule`]), keeps
//! per-connector [`state`] and the queue clock ([`store`]), and reloads its configuration
//! without losing either. Scrapes and the status page read copy-on-write snapshots.

pub mod clock;
pub mod schedule;
pub mod state;
pub mod store;

pub use state::{BUCKETS, ConnectorState, HISTOGRAM_PHASES, HostStats, Recent};

use crate::config::{Config, ConfigError, Connector};
use crate::probe::{ProbeReport, Prober, ProberError, ProberOptions};
use clock::Clock;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use store::{Store, Streaks};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Why a configuration could not be put into service (at start or on reload).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{file}: {source}")]
    CaFile {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Prober {
        file: String,
        #[source]
        source: ProberError,
    },
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
    /// One probing task per enabled connector, keyed by name; the connector it was started
    /// with decides whether a reload must restart it.
    tasks: Mutex<HashMap<String, (Connector, tokio::task::AbortHandle)>>,
    persist_lock: Mutex<()>,
    max_initial_spread: Option<Duration>,
    pub shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the agent down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads the trust anchors and builds the prober a config asks for.
pub fn build_prober(cfg: &Config) -> Result<Prober, LoadError> {
    let mut extra_ca = Vec::new();
    for f in &cfg.extra_ca_files {
        let pem = std::fs::read(f).map_err(|source| LoadError::CaFile {
            file: f.display().to_string(),
            source,
        })?;
        extra_ca.push((f.display().to_string(), pem));
    }
    Prober::new(ProberOptions {
        dns_servers: cfg.dns_servers.clone(),
        extra_ca,
        ..ProberOptions::default()
    })
    .map_err(|source| LoadError::Prober {
        file: cfg.source.display().to_string(),
        source,
    })
}

/// Merges a new configuration into the running states: removed connectors go, disabled ones
/// start afresh, connectors with new targets lose their per-host series, the rest keep
/// everything (queue clock included).
pub fn merge_states(states: &mut BTreeMap<String, Arc<ConnectorState>>, cfg: &Config) {
    states.retain(|name, _| cfg.connector(name).is_some());
    let expiration = cfg.defaults.message_expiration;
    for c in &cfg.connectors {
        match states.get_mut(c.name()) {
            Some(st) if !c.enabled => {
                // A disabled connector keeps no probe results: nothing stale to alert on, and
                // re-enabling it starts a fresh queue clock.
                *st = Arc::new(ConnectorState::new(c.clone(), expiration));
            }
            Some(st) => {
                let st = Arc::make_mut(st);
                if st.connector.probe.routing != c.probe.routing || st.connector.probe.port != c.probe.port {
                    // Different targets: old per-host series would be stale.
                    st.hosts.clear();
                }
                st.connector = c.clone();
                st.expiration = expiration;
            }
            None => {
                states.insert(
                    c.name().to_string(),
                    Arc::new(ConnectorState::new(c.clone(), expiration)),
                );
            }
        }
    }
}

impl Agent {
    /// Loads the config (a failure here is fatal: exit code 2) and restores the queue clock.
    pub fn new(opts: AgentOptions) -> Result<Arc<Agent>, LoadError> {
        let cfg = Config::load(&opts.config_path)?;
        let prober = build_prober(&cfg)?;
        let streaks = match &opts.storage {
            Some(s) => s.load().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "queue clock state unreadable; starting fresh");
                Streaks::new()
            }),
            None => Streaks::new(),
        };
        let mut states = BTreeMap::new();
        merge_states(&mut states, &cfg);
        for (name, st) in states.iter_mut() {
            if let Some((t, _)) = streaks.get(name) {
                Arc::make_mut(st).failing_since = Some(*t);
            }
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

    pub fn prober(&self) -> Arc<Prober> {
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
        let wanted: HashMap<&str, &Connector> = cfg
            .connectors
            .iter()
            .filter(|c| c.enabled)
            .map(|c| (c.name(), c))
            .collect();
        tasks.retain(|name, (running, handle)| {
            let keep = wanted.get(name.as_str()).is_some_and(|c| *c == running);
            if !keep {
                handle.abort();
            }
            keep
        });
        for c in cfg.connectors.iter().filter(|c| c.enabled) {
            if tasks.contains_key(c.name()) {
                continue;
            }
            let offset = schedule::first_offset(c.name(), c.interval, self.max_initial_spread);
            let handle = tokio::spawn(schedule::run_connector(
                self.clone(),
                c.name().to_string(),
                c.interval,
                offset,
            ));
            tasks.insert(c.name().to_string(), (c.clone(), handle.abort_handle()));
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
        let report = self.prober().probe(&connector.probe).await;
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
    pub fn reload(self: &Arc<Self>) -> Result<(), LoadError> {
        let result = Config::load(&self.config_path)
            .map_err(LoadError::from)
            .and_then(|cfg| build_prober(&cfg).map(|p| (cfg, p)));
        let (cfg, prober) = match result {
            Err(e) => {
                lock(&self.reload).ok = false;
                tracing::error!(error = %e, "config reload failed; keeping the running config");
                return Err(e);
            }
            Ok(x) => x,
        };
        merge_states(&mut lock(&self.states), &cfg);
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
    use std::path::Path;
    use std::time::UNIX_EPOCH;

    fn cfg(text: &str) -> Config {
        Config::parse(Path::new("t.yaml"), text).expect("config")
    }

    #[test]
    fn merge_keeps_the_queue_clock_and_drops_what_changed() {
        let first = cfg("connectors:
  - name: keep
    recipient_domains: [a.test]
  - name: retarget
    recipient_domains: [b.test]
  - name: disable
    recipient_domains: [c.test]
  - name: remove
    recipient_domains: [d.test]
");
        let mut states = BTreeMap::new();
        merge_states(&mut states, &first);
        let since = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for st in states.values_mut() {
            let st = Arc::make_mut(st);
            st.failing_since = Some(since);
            st.hosts.insert("mx.test".into(), HostStats::default());
        }
        let second = cfg("defaults: { message_expiration: 12h }
connectors:
  - name: keep
    recipient_domains: [a.test]
    interval: 5s
  - name: retarget
    recipient_domains: [other.test]
  - name: disable
    enabled: false
    recipient_domains: [c.test]
  - name: added
    recipient_domains: [e.test]
");
        merge_states(&mut states, &second);
        let names: Vec<&str> = states.keys().map(String::as_str).collect();
        assert_eq!(names, ["added", "disable", "keep", "retarget"]);
        let keep = &states["keep"];
        assert_eq!(keep.failing_since, Some(since), "the queue clock survives a reload");
        assert_eq!(keep.hosts.len(), 1);
        assert_eq!(keep.connector.interval, Duration::from_secs(5), "new settings apply");
        assert_eq!(keep.expiration, Duration::from_secs(12 * 3600));
        assert!(states["retarget"].hosts.is_empty(), "new targets: old host series go");
        assert_eq!(states["retarget"].failing_since, Some(since));
        assert_eq!(states["disable"].failing_since, None, "disabled: starts afresh");
        assert!(states["disable"].hosts.is_empty());
        assert_eq!(states["added"].failing_since, None);
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
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = Arc::new(clock::ManualClock::new(start));
        let agent = Agent::new(AgentOptions {
            config_path: path.clone(),
            storage: None,
            clock: clock.clone(),
            max_initial_spread: None,
        })
        .expect("agent");
        assert_eq!(agent.semaphore.available_permits(), 4);
        assert_eq!(agent.reload_status().success_at, Some(start));
        write(2);
        clock.advance(Duration::from_secs(90));
        agent.reload().expect("reload");
        assert_eq!(agent.reload_status().success_at, Some(start + Duration::from_secs(90)));
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
}
