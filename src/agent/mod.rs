//! The long-running agent: probes every enabled connector on its interval ([`schedule`]), keeps
//! per-connector [`state`] and the queue clock ([`store`]), and reloads its configuration
//! without losing either. Scrapes and the status page read copy-on-write snapshots.

pub mod clock;
pub mod exo;
pub mod schedule;
pub mod state;
pub mod store;
pub mod writer;

pub use state::{BUCKETS, ConnectorState, HISTOGRAM_PHASES, HostStats, Recent};

use crate::config::{Config, ConfigError, Connector, Shard};
use crate::probe::{ProbeReport, Prober, ProberError, ProberOptions};
use crate::tenant::{QueueRoute, Tenant};
use clock::Clock;
use exo::{ExoState, Synced};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use store::{Store, Streaks};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use writer::StateWriter;

/// How long reading the config (and its CA files) may take before a load is given up. The read
/// runs on a blocking thread, so a path that hangs (a FIFO, a dead network share) costs a
/// reload, never the scrapes or the probes.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

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
    #[error("{file}: not read within {}; is it on a hung file system, or a FIFO?", humantime::format_duration(*after))]
    Timeout { file: String, after: Duration },
    #[error("{file}: an earlier read of it has not returned yet; not trying again until it does")]
    Stuck { file: String },
    #[error("{file}: loading failed unexpectedly: {detail}")]
    Crashed { file: String, detail: String },
    #[error("{file}: {source}")]
    Tenant {
        file: String,
        #[source]
        source: crate::tenant::TenantError,
    },
}

/// What the scrape shows about the agent itself (not about connectors).
#[derive(Debug, Clone, Copy, Default)]
pub struct SelfStatus {
    pub reload: ReloadStatus,
    /// Whether the queue-clock file could be read at start (absent counts as read).
    pub state_load_ok: bool,
    /// Entries of the file dropped at start (unusable) and clamped (start time in the future).
    pub state_skipped: usize,
    pub state_clamped: usize,
    pub state_write_failures: u64,
    pub self_check: SelfCheck,
    /// Not sharded, or shard 0: writes the series that belong to no connector once per fleet.
    pub primary_shard: bool,
}

/// Why `/probe?connector=` gives no report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDemandError {
    Unknown,
    Disabled,
    /// Another shard probes it (the shard that does).
    OtherShard(Shard),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ReloadStatus {
    pub ok: bool,
    pub success_at: Option<SystemTime>,
}

struct Running {
    /// The effective configuration: the file's connectors plus the tenant's (when synced), only
    /// those of this agent's shard.
    config: Arc<Config>,
    /// The same before sharding (Microsoft's queue is attributed against every connector).
    all: Arc<Config>,
    /// The file as loaded.
    file: Arc<Config>,
    prober: Arc<Prober>,
    /// The tenant client, when `tenant:` is configured.
    tenant: Option<Arc<Tenant>>,
    /// `config`'s connectors by name: every probe looks its connector up, and a scan of 10,000
    /// names per probe made the agent's work grow with the square of its connectors.
    index: HashMap<String, usize>,
}

impl Running {
    fn index(config: &Config) -> HashMap<String, usize> {
        config
            .connectors
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name().to_string(), i))
            .collect()
    }

    fn connector(&self, name: &str) -> Option<&Connector> {
        self.index.get(name).and_then(|i| self.config.connectors.get(*i))
    }
}

/// What a load gives: the file's config, its prober, and the tenant client.
struct Loaded {
    cfg: Config,
    prober: Prober,
    tenant: Option<Tenant>,
}

pub struct AgentOptions {
    pub config_path: PathBuf,
    pub storage: Option<Store>,
    pub clock: Arc<dyn Clock>,
    /// How far the first probes are spread (None = over each connector's interval).
    pub max_initial_spread: Option<Duration>,
    /// This agent's share of the connectors (None: all of them).
    pub shard: Option<Shard>,
    /// Probe only when asked (`/probe?connector=`): Prometheus schedules, as with blackbox_exporter.
    pub on_demand_only: bool,
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
    /// One reload at a time.
    reload_lock: tokio::sync::Mutex<()>,
    /// Set while a blocking read of the config is out; cleared when it returns.
    load_stuck: Arc<AtomicBool>,
    writer: Option<StateWriter>,
    state_load: (bool, usize, usize),
    pub clock: Arc<dyn Clock>,
    /// One probing task per enabled connector, keyed by name; the connector it was started
    /// with decides whether a reload must restart it.
    tasks: Mutex<HashMap<String, (Connector, tokio::task::AbortHandle)>>,
    max_initial_spread: Option<Duration>,
    /// What every connector's schedule counts from (see [`schedule`]).
    epoch: tokio::time::Instant,
    shard: Option<Shard>,
    on_demand_only: bool,
    /// Stamp of the config file as last read (see [`Agent::reload_if_changed`]).
    config_stamp: Mutex<Option<FileStamp>>,
    /// The agent's own checks (its resolvers answer), apart from the partners'.
    self_check: Mutex<SelfCheck>,
    self_check_started: AtomicBool,
    /// Exchange Online's view (tenant data), kept beside the probes' states.
    exo: Mutex<ExoState>,
    /// The tenant tasks (queue poll, sync) and the tenant config they were started for.
    tenant_tasks: Mutex<Option<(crate::config::TenantConfig, Vec<tokio::task::AbortHandle>)>>,
    pub shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the agent down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads the trust anchors and builds the prober a config asks for.
pub fn build_prober(cfg: &Config) -> Result<Prober, LoadError> {
    Ok(build(cfg)?.0)
}

/// The prober and the tenant client a config asks for (both trust the extra CA files).
fn build(cfg: &Config) -> Result<(Prober, Option<Tenant>), LoadError> {
    let mut extra_ca = Vec::new();
    for f in &cfg.extra_ca_files {
        let pem = std::fs::read(f).map_err(|source| LoadError::CaFile {
            file: f.display().to_string(),
            source,
        })?;
        extra_ca.push((f.display().to_string(), pem));
    }
    let file = || cfg.source.display().to_string();
    let tenant = match &cfg.tenant {
        Some(t) => Some(Tenant::new(t, &extra_ca).map_err(|source| LoadError::Tenant { file: file(), source })?),
        None => None,
    };
    let prober = Prober::new(ProberOptions {
        dns_servers: cfg.dns_servers.clone(),
        extra_ca,
        ..ProberOptions::default()
    })
    .map_err(|source| LoadError::Prober { file: file(), source })?;
    Ok((prober, tenant))
}

/// The file's connectors plus the synced ones, and of those the shard's.
fn effective(file: &Config, synced: Option<&Synced>, shard: Option<Shard>) -> (Config, Config) {
    let all = exo::merge(file, synced);
    let mut mine = all.clone();
    if let Some(shard) = shard {
        mine.connectors.retain(|c| shard.owns(c.name()));
    }
    (mine, all)
}

/// Size, modification time and inode of a file: a ConfigMap update swaps a symlink to a new
/// file, an editor rewrites in place; either changes one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl FileStamp {
    pub fn of(path: &std::path::Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            len: m.len(),
            modified: m.modified().ok(),
            inode: m.ino(),
        })
    }
}

/// The agent's own health (`mailflow_self_check_successful`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SelfCheck {
    /// Whether one of the resolvers answered the last query of the agent's own (None: not yet).
    pub dns: Option<bool>,
}

/// Merges a new configuration into the running states: removed connectors go, disabled ones
/// start afresh, connectors with new targets lose their per-host series, the rest keep
/// everything (queue clock included).
pub fn merge_states(states: &mut BTreeMap<String, Arc<ConnectorState>>, cfg: &Config) {
    let names: std::collections::HashSet<&str> = cfg.connectors.iter().map(|c| c.name()).collect();
    states.retain(|name, _| names.contains(name.as_str()));
    let expiration = cfg.defaults.message_expiration;
    let histograms = cfg.metrics.phase_histograms;
    let fresh = |c: &Connector| {
        let mut st = ConnectorState::new(c.clone(), expiration);
        st.histograms = histograms;
        Arc::new(st)
    };
    for c in &cfg.connectors {
        match states.get_mut(c.name()) {
            Some(st) if !c.enabled => {
                // A disabled connector keeps no probe results: nothing stale to alert on, and
                // re-enabling it starts a fresh queue clock.
                *st = fresh(c);
            }
            Some(st) => {
                if st.connector == *c && st.expiration == expiration && st.histograms == histograms {
                    // Unchanged: no copy of the state.
                    continue;
                }
                let st = ConnectorState::edit(st);
                if st.connector.probe.routing != c.probe.routing || st.connector.probe.port != c.probe.port {
                    // Different targets: old per-host series would be stale.
                    st.hosts.clear();
                }
                st.connector = c.clone();
                st.expiration = expiration;
                if !histograms {
                    st.durations.clear();
                }
                st.histograms = histograms;
            }
            None => {
                states.insert(c.name().to_string(), fresh(c));
            }
        }
    }
}

impl Agent {
    /// Loads the config (a failure here is fatal: exit code 2) and restores the queue clock.
    pub async fn new(opts: AgentOptions) -> Result<Arc<Agent>, LoadError> {
        let load_stuck = Arc::new(AtomicBool::new(false));
        let Loaded { cfg, prober, tenant } = load_off_runtime(opts.config_path.clone(), load_stuck.clone()).await?;
        let now = opts.clock.now();
        let mut state_load = (true, 0, 0);
        let mut streaks = Streaks::new();
        if let Some(store) = &opts.storage {
            let store = store.clone();
            let read = tokio::task::spawn_blocking(move || store.load(now));
            match tokio::time::timeout(LOAD_TIMEOUT, read).await {
                Ok(Ok(Ok(l))) => {
                    if l.skipped > 0 || l.clamped > 0 {
                        tracing::warn!(
                            skipped = l.skipped,
                            clamped = l.clamped,
                            "queue clock state: damaged entries skipped, start times in the future set to now"
                        );
                    }
                    state_load = (true, l.skipped, l.clamped);
                    streaks = l.streaks;
                }
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "queue clock state unreadable; starting fresh");
                    state_load.0 = false;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "queue clock state: reading failed; starting fresh");
                    state_load.0 = false;
                }
                Err(_) => {
                    tracing::warn!("queue clock state: not read within {LOAD_TIMEOUT:?}; starting fresh");
                    state_load.0 = false;
                }
            }
        }
        let stamp = FileStamp::of(&opts.config_path);
        let (mine, all) = effective(&cfg, None, opts.shard);
        if let Some(shard) = opts.shard {
            tracing::info!(
                shard = %shard,
                connectors = mine.connectors.len(),
                of = all.connectors.len(),
                "probing this shard's connectors"
            );
        }
        let mut states = BTreeMap::new();
        merge_states(&mut states, &mine);
        for (name, st) in states.iter_mut() {
            if let Some((t, _)) = streaks.get(name)
                && st.connector.enabled
            {
                ConnectorState::edit(st).failing_since = Some(*t);
            }
        }
        let writer = match opts.storage {
            Some(store) => Some(StateWriter::start(store).map_err(|e| LoadError::Crashed {
                file: opts.config_path.display().to_string(),
                detail: format!("cannot start the state writer: {e}"),
            })?),
            None => None,
        };
        Ok(Arc::new(Agent {
            config_path: opts.config_path,
            semaphore: Arc::new(Semaphore::new(cfg.max_concurrent_probes)),
            permits: Mutex::new(cfg.max_concurrent_probes),
            exo: Mutex::new(ExoState {
                poll_interval: cfg.tenant.as_ref().map(|t| t.poll_interval).unwrap_or_default(),
                ..ExoState::default()
            }),
            tenant_tasks: Mutex::new(None),
            running: RwLock::new(Arc::new(Running {
                file: Arc::new(cfg),
                index: Running::index(&mine),
                config: Arc::new(mine),
                all: Arc::new(all),
                prober: Arc::new(prober),
                tenant: tenant.map(Arc::new),
            })),
            states: Mutex::new(states),
            probe_locks: Mutex::new(HashMap::new()),
            reload: Mutex::new(ReloadStatus {
                ok: true,
                success_at: Some(now),
            }),
            reload_lock: tokio::sync::Mutex::new(()),
            load_stuck,
            writer,
            state_load,
            clock: opts.clock,
            tasks: Mutex::new(HashMap::new()),
            max_initial_spread: opts.max_initial_spread,
            epoch: tokio::time::Instant::now(),
            shard: opts.shard,
            on_demand_only: opts.on_demand_only,
            config_stamp: Mutex::new(stamp),
            self_check: Mutex::new(SelfCheck::default()),
            self_check_started: AtomicBool::new(false),
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

    fn running(&self) -> Arc<Running> {
        self.running.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// This agent's share of the connectors, when sharded.
    pub fn shard(&self) -> Option<Shard> {
        self.shard
    }

    /// How many connectors there are in all shards together (the effective config's count
    /// when not sharded).
    pub fn connectors_in_all_shards(&self) -> usize {
        self.running().all.connectors.len()
    }

    /// The tenant client, when configured.
    pub fn tenant(&self) -> Option<Arc<Tenant>> {
        self.running().tenant.clone()
    }

    /// Exchange Online's view as the agent holds it now.
    pub fn exo(&self) -> ExoState {
        lock(&self.exo).clone()
    }

    pub fn reload_status(&self) -> ReloadStatus {
        *lock(&self.reload)
    }

    pub fn self_status(&self) -> SelfStatus {
        SelfStatus {
            reload: self.reload_status(),
            state_load_ok: self.state_load.0,
            state_skipped: self.state_load.1,
            state_clamped: self.state_load.2,
            state_write_failures: self.writer.as_ref().map(StateWriter::failures).unwrap_or(0),
            self_check: self.self_check(),
            primary_shard: self.shard.is_none_or(|s| s.index == 0),
        }
    }

    /// A consistent copy of every connector's state (for scrapes and the status page).
    pub fn snapshot(&self) -> Vec<Arc<ConnectorState>> {
        lock(&self.states).values().cloned().collect()
    }

    pub fn connector_state(&self, name: &str) -> Option<Arc<ConnectorState>> {
        lock(&self.states).get(name).cloned()
    }

    /// Starts (or re-syncs) one probing task per enabled connector, and the tenant tasks.
    pub fn start(self: &Arc<Self>) {
        self.start_tenant();
        if !self.self_check_started.swap(true, Ordering::SeqCst) {
            tokio::spawn(self.clone().self_check_loop());
        }
        let cfg = self.config();
        let mut tasks = lock(&self.tasks);
        let wanted: HashMap<&str, &Connector> = cfg
            .connectors
            .iter()
            .filter(|c| c.enabled && !self.on_demand_only)
            .map(|c| (c.name(), c))
            .collect();
        tasks.retain(|name, (running, handle)| {
            let keep = wanted.get(name.as_str()).is_some_and(|c| *c == running);
            if !keep {
                handle.abort();
            }
            keep
        });
        for c in cfg.connectors.iter().filter(|c| c.enabled && !self.on_demand_only) {
            if tasks.contains_key(c.name()) {
                continue;
            }
            let offset = schedule::first_offset(c.name(), c.interval, self.max_initial_spread);
            let handle = tokio::spawn(schedule::run_connector(
                self.clone(),
                c.name().to_string(),
                c.interval,
                offset,
                self.epoch,
            ));
            tasks.insert(c.name().to_string(), (c.clone(), handle.abort_handle()));
        }
    }

    /// Probes one configured connector now, unless it is already being probed (then waits for
    /// that probe and returns its report). None for an unknown or disabled connector.
    pub async fn probe_now(&self, name: &str) -> Option<Arc<ProbeReport>> {
        self.probe_shared(name, self.clock.now()).await
    }

    /// For `/probe?connector=`: a report no older than `max_age` is served from memory,
    /// concurrent requests share one probe, and a disabled connector is never probed.
    pub async fn probe_on_demand(&self, name: &str, max_age: Duration) -> Result<Arc<ProbeReport>, OnDemandError> {
        let running = self.running();
        let Some(connector) = running.connector(name) else {
            return Err(match self.shard {
                Some(s) if running.all.connector(name).is_some() => OnDemandError::OtherShard(Shard {
                    index: crate::config::shard::hashmod(name, s.count),
                    count: s.count,
                }),
                _ => OnDemandError::Unknown,
            });
        };
        if !connector.enabled {
            return Err(OnDemandError::Disabled);
        }
        let asked = self.clock.now();
        if let Some(st) = self.connector_state(name)
            && let (Some(at), Some(last)) = (st.last_at, &st.last)
            && asked.duration_since(at).is_ok_and(|age| age <= max_age)
        {
            return Ok(last.clone());
        }
        self.probe_shared(name, asked).await.ok_or(OnDemandError::Unknown)
    }

    /// Probes unless a probe that started at or after `asked` finished while we waited.
    async fn probe_shared(&self, name: &str, asked: SystemTime) -> Option<Arc<ProbeReport>> {
        let connector = self.running().connector(name).filter(|c| c.enabled)?.clone();
        let guard_lock = lock(&self.probe_locks).entry(name.to_string()).or_default().clone();
        let _one_at_a_time = guard_lock.lock().await;
        if let Some(st) = self.connector_state(name)
            && st.last_at.is_some_and(|at| at >= asked)
        {
            return st.last.clone();
        }
        let _permit = self.semaphore.clone().acquire_owned().await.ok()?;
        let at = self.clock.now();
        let report = self.prober().probe(&connector.probe).await;
        let report_arc;
        let changed = {
            let mut states = lock(&self.states);
            let st = states.get_mut(name)?;
            // A reload may have disabled or replaced the connector while we probed.
            if !st.connector.enabled || st.connector.probe != connector.probe {
                return None;
            }
            let st = ConnectorState::edit(st);
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
                    line = %r.message,
                    "probe failed"
                );
            }
        }
        if changed {
            self.persist();
        }
        report_arc
    }

    /// Hands the current streaks to the writer thread (never blocks on the disk).
    fn persist(&self) {
        let Some(writer) = &self.writer else { return };
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
        writer.submit(streaks);
    }

    /// Re-reads the config file. A bad file is rejected and the running config keeps going;
    /// a good one applies completely (states, limits, tasks) or not at all.
    pub async fn reload(self: &Arc<Self>) -> Result<(), LoadError> {
        let _one = self.reload_lock.lock().await;
        // Taken before the read: a change during the read is seen by the next check.
        *lock(&self.config_stamp) = FileStamp::of(&self.config_path);
        let Loaded { cfg, prober, tenant } =
            match load_off_runtime(self.config_path.clone(), self.load_stuck.clone()).await {
                Err(e) => {
                    lock(&self.reload).ok = false;
                    tracing::error!(error = %e, "config reload failed; keeping the running config");
                    return Err(e);
                }
                Ok(x) => x,
            };
        let synced = lock(&self.exo).sync.clone();
        let (merged, all) = effective(&cfg, synced.as_deref(), self.shard);
        merge_states(&mut lock(&self.states), &merged);
        self.resize_permits(merged.max_concurrent_probes);
        {
            let mut r = self.running.write().unwrap_or_else(|p| p.into_inner());
            // The tenant client carries a token cache: keep it while the tenant config is the same.
            let tenant = match (&r.tenant, tenant) {
                (Some(old), Some(_)) if r.file.tenant == cfg.tenant => Some(old.clone()),
                (_, new) => new.map(Arc::new),
            };
            *r = Arc::new(Running {
                index: Running::index(&merged),
                config: Arc::new(merged),
                all: Arc::new(all),
                file: Arc::new(cfg),
                prober: Arc::new(prober),
                tenant,
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

    /// Starts the queue poll (and the sync) for the configured tenant, restarting them when the
    /// tenant config changed and stopping them when it went away.
    fn start_tenant(self: &Arc<Self>) {
        let running = self.running();
        let mut tasks = lock(&self.tenant_tasks);
        let wanted = running.file.tenant.clone();
        if tasks.as_ref().map(|(c, _)| c) == wanted.as_ref() {
            return;
        }
        if let Some((_, handles)) = tasks.take() {
            handles.iter().for_each(|h| h.abort());
        }
        {
            let mut exo = lock(&self.exo);
            exo.poll_interval = wanted.as_ref().map(|t| t.poll_interval).unwrap_or_default();
            if wanted.is_none() {
                *exo = ExoState::default();
            }
        }
        let (Some(cfg), Some(tenant)) = (wanted, running.tenant.clone()) else {
            return;
        };
        let mut handles = vec![tokio::spawn(self.clone().poll_queue_loop(tenant.clone())).abort_handle()];
        if cfg.sync {
            handles.push(tokio::spawn(self.clone().sync_loop(tenant)).abort_handle());
        }
        *tasks = Some((cfg, handles));
    }

    /// Reads Microsoft's queue every poll interval; errors back off and keep the last good view.
    async fn poll_queue_loop(self: Arc<Self>, tenant: Arc<Tenant>) {
        let interval = tenant.config().poll_interval;
        let mut failures = 0u32;
        loop {
            // Every connector, not only this shard's: mail is attributed against all of them.
            let cfg = self.running().all.clone();
            let routes: Vec<QueueRoute> = cfg
                .connectors
                .iter()
                .filter(|c| c.enabled)
                .map(|c| QueueRoute {
                    connector: c.name().to_string(),
                    recipient_domains: c.probe.recipient_domains.clone(),
                })
                .collect();
            let window = cfg.defaults.message_expiration;
            let wait = match tenant.poll_queue(&routes, window, self.clock.now()).await {
                Ok(view) => {
                    failures = 0;
                    tracing::debug!(
                        pending = view.pending,
                        traces = view.traces_read,
                        "Exchange Online queue read"
                    );
                    let mut exo = lock(&self.exo);
                    exo.view = Some(Arc::new(view));
                    exo.last_poll_ok = Some(true);
                    exo.last_poll_error = None;
                    interval
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "reading Exchange Online's queue failed; keeping the last good data");
                    let mut exo = lock(&self.exo);
                    exo.last_poll_ok = Some(false);
                    exo.last_poll_error = Some(exo::describe(&e));
                    exo::backoff(&e, failures, interval)
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Reads the tenant's connectors, message expiration and accepted domains on an interval,
    /// and merges them into the running configuration. A failed sync keeps the last good set.
    async fn sync_loop(self: Arc<Self>, tenant: Arc<Tenant>) {
        let interval = tenant.config().sync_interval;
        let mut failures = 0u32;
        loop {
            let wait = match tenant.sync(self.clock.now()).await {
                Ok(view) => {
                    let defaults = self.running().file.defaults.clone();
                    match exo::connectors_from_sync(&view.connectors, &defaults) {
                        Ok(connectors) => {
                            failures = 0;
                            tracing::info!(connectors = connectors.len(), "tenant configuration read");
                            let synced = Synced {
                                at: view.fetched_at,
                                connectors,
                                message_expiration: view.message_expiration,
                                accepted_domains: view.accepted_domains,
                            };
                            {
                                let mut exo = lock(&self.exo);
                                exo.sync = Some(Arc::new(synced));
                                exo.last_sync_ok = Some(true);
                                exo.last_sync_error = None;
                            }
                            self.apply_sync();
                            interval
                        }
                        Err(e) => {
                            failures = failures.saturating_add(1);
                            tracing::warn!(error = %e, "the tenant's connectors could not be imported; keeping the last good set");
                            let mut exo = lock(&self.exo);
                            exo.last_sync_ok = Some(false);
                            exo.last_sync_error = Some(crate::probe::escape(&e, 300));
                            interval
                        }
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "reading the tenant's configuration failed; keeping the last good set");
                    let mut exo = lock(&self.exo);
                    exo.last_sync_ok = Some(false);
                    exo.last_sync_error = Some(exo::describe(&e));
                    exo::backoff(&e, failures, interval)
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Re-merges the file's connectors with the last sync, as a reload would (without reading
    /// the file again).
    fn apply_sync(self: &Arc<Self>) {
        let synced = lock(&self.exo).sync.clone();
        {
            let mut r = self.running.write().unwrap_or_else(|p| p.into_inner());
            let (merged, all) = effective(&r.file, synced.as_deref(), self.shard);
            merge_states(&mut lock(&self.states), &merged);
            *r = Arc::new(Running {
                index: Running::index(&merged),
                config: Arc::new(merged),
                all: Arc::new(all),
                file: r.file.clone(),
                prober: r.prober.clone(),
                tenant: r.tenant.clone(),
            });
        }
        self.persist();
        self.start();
    }

    /// Reloads when the config file's stamp changed since it was last read (a failed reload
    /// is not retried until the file changes again).
    pub async fn reload_if_changed(self: &Arc<Self>) {
        let path = self.config_path.clone();
        let stat = tokio::task::spawn_blocking(move || FileStamp::of(&path));
        let Ok(Ok(now)) = tokio::time::timeout(Duration::from_secs(5), stat).await else {
            return;
        };
        if now.is_some() && now != *lock(&self.config_stamp) {
            tracing::info!(file = %self.config_path.display(), "config file changed; reloading");
            let _ = self.reload().await;
        }
    }

    /// [`Agent::reload_if_changed`] every `every` until shutdown.
    pub async fn watch_config(self: Arc<Self>, every: Duration) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => self.reload_if_changed().await,
            }
        }
    }

    /// The agent's own checks as last run.
    pub fn self_check(&self) -> SelfCheck {
        *lock(&self.self_check)
    }

    /// Asks the resolvers something every recursive resolver answers at once (the root's MX),
    /// every `every` (the shortest connector interval, 5s to 60s). Any answer, even REFUSED,
    /// shows the resolver is reachable; only silence or a network error counts against it.
    async fn self_check_loop(self: Arc<Self>) {
        loop {
            let cfg = self.config();
            let every = cfg
                .connectors
                .iter()
                .filter(|c| c.enabled)
                .map(|c| c.interval)
                .min()
                .unwrap_or(Duration::from_secs(60))
                .clamp(Duration::from_secs(5), Duration::from_secs(60));
            let timeout = cfg
                .defaults
                .timeout
                .clamp(Duration::from_secs(1), Duration::from_secs(10));
            // Only when some connector asks DNS: with IP smart hosts alone, no resolver matters.
            let ok = if cfg.connectors.iter().any(|c| c.enabled && c.probe.routing.needs_dns()) {
                Some(self.prober().resolver_answers(timeout).await)
            } else {
                None
            };
            if ok == Some(false) && lock(&self.self_check).dns != Some(false) {
                tracing::warn!(
                    "self-check: none of the agent's DNS resolvers answers; DNS failures are the agent's, not the partners'"
                );
            }
            lock(&self.self_check).dns = ok;
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
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

    /// Stops probing and waits (bounded) for the last queue-clock save.
    pub fn stop(&self) {
        self.shutdown.cancel();
        for (_, (_, h)) in lock(&self.tasks).drain() {
            h.abort();
        }
        if let Some((_, handles)) = lock(&self.tenant_tasks).take() {
            handles.iter().for_each(|h| h.abort());
        }
        if let Some(w) = &self.writer
            && !w.flush(Duration::from_secs(5))
        {
            tracing::warn!("the last queue clock save did not finish within 5s");
        }
    }
}

/// Reads and validates the config and builds its prober on a blocking thread, within
/// [`LOAD_TIMEOUT`]. While a read is stuck, later loads fail at once instead of piling up threads.
async fn load_off_runtime(path: PathBuf, stuck: Arc<AtomicBool>) -> Result<Loaded, LoadError> {
    let file = path.display().to_string();
    let load = move || {
        let cfg = Config::load(&path)?;
        let (prober, tenant) = build(&cfg)?;
        Ok(Loaded { cfg, prober, tenant })
    };
    off_runtime(file, stuck, LOAD_TIMEOUT, load).await
}

/// Runs a blocking load on a blocking thread within `limit`; see [`load_off_runtime`].
async fn off_runtime<T: Send + 'static>(
    file: String,
    stuck: Arc<AtomicBool>,
    limit: Duration,
    load: impl FnOnce() -> Result<T, LoadError> + Send + 'static,
) -> Result<T, LoadError> {
    if stuck.swap(true, Ordering::SeqCst) {
        return Err(LoadError::Stuck { file });
    }
    let flag = stuck.clone();
    let job = tokio::task::spawn_blocking(move || {
        let r = load();
        flag.store(false, Ordering::SeqCst);
        r
    });
    match tokio::time::timeout(limit, job).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            stuck.store(false, Ordering::SeqCst);
            Err(LoadError::Crashed {
                file,
                detail: e.to_string(),
            })
        }
        Err(_) => Err(LoadError::Timeout { file, after: limit }),
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
    fn a_shard_probes_its_share_but_sees_every_connector() {
        let text: String = (0..20).fold(String::from("connectors:\n"), |t, i| {
            t + &format!("  - name: c{i}\n    use_mx_record: false\n    smart_hosts: [192.0.2.1]\n")
        });
        let file = cfg(&text);
        let mut owned = 0;
        for index in 0..3 {
            let shard = Shard { index, count: 3 };
            let (mine, all) = effective(&file, None, Some(shard));
            assert_eq!(all.connectors.len(), 20, "attribution sees all");
            assert!(mine.connectors.iter().all(|c| shard.owns(c.name())));
            owned += mine.connectors.len();
        }
        assert_eq!(owned, 20);
        let (mine, _) = effective(&file, None, None);
        assert_eq!(mine.connectors.len(), 20);
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
            let st = ConnectorState::edit(st);
            st.failing_since = Some(since);
            st.hosts.insert("mx.test".into(), HostStats::default());
        }
        let second = cfg("defaults: { message_expiration: 12h }
connectors:
  - name: keep
    recipient_domains: [a.test]
    interval: 5s
    timeout: 2s
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
    async fn a_read_that_hangs_costs_one_load_not_the_runtime() {
        let stuck = Arc::new(AtomicBool::new(false));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let hang = move || {
            let _ = wait.recv_timeout(Duration::from_secs(30));
            Ok(1)
        };
        let r = off_runtime("f.yaml".into(), stuck.clone(), Duration::from_millis(100), hang).await;
        assert!(matches!(r, Err(LoadError::Timeout { .. })), "{r:?}");
        // While that read is out, later loads give up at once instead of piling up threads.
        let r = off_runtime("f.yaml".into(), stuck.clone(), Duration::from_secs(5), || Ok(2)).await;
        assert!(matches!(r, Err(LoadError::Stuck { .. })), "{r:?}");
        // The runtime kept working all along (this test runs on it); once the read returns,
        // loads work again.
        let _ = release.send(());
        for _ in 0..200 {
            if !stuck.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let r = off_runtime("f.yaml".into(), stuck, Duration::from_secs(5), || Ok(3)).await;
        assert_eq!(r.ok(), Some(3));
    }

    #[test]
    fn a_fifo_is_not_a_config_file() {
        let dir = std::env::temp_dir().join(format!("mailflow-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let fifo = dir.join("config.yaml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.map(|s| s.success()).unwrap_or(false) {
            // Returns at once: opening a FIFO for reading would block until a writer comes.
            let e = Config::load(&fifo).expect_err("a FIFO is refused");
            assert!(e.message.contains("not a regular file"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
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
            shard: None,
            on_demand_only: false,
        })
        .await
        .expect("agent");
        assert_eq!(agent.semaphore.available_permits(), 4);
        assert_eq!(agent.reload_status().success_at, Some(start));
        write(2);
        clock.advance(Duration::from_secs(90));
        agent.reload().await.expect("reload");
        assert_eq!(agent.reload_status().success_at, Some(start + Duration::from_secs(90)));
        for _ in 0..100 {
            if agent.semaphore.available_permits() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(agent.semaphore.available_permits(), 2);
        write(6);
        agent.reload().await.expect("reload");
        assert_eq!(agent.semaphore.available_permits(), 6);
        agent.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
