//! Per-connector state: what the probes found, folded into counters, histograms, the
//! certificates last seen, the recent-probe history and the queue clock. Pure data and pure
//! functions of it, so they are tested without sockets or a runtime.

use crate::config::Connector;
use crate::probe::tls::CertSummary;
use crate::probe::{Phase, ProbeReport, TlsInfo};
use crate::taxonomy::{Code, Reason};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Source of [`ConnectorState::generation`]: process-wide, so a replaced state never reuses a
/// number the `/metrics` cache has seen.
static GENERATION: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATION.fetch_add(1, Ordering::Relaxed)
}

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

/// A host not reached by this many consecutive probes loses its series.
pub const HOST_STALE_PROBES: u64 = 3;
/// Hosts kept per connector (each carries a few series).
pub const MAX_HOSTS: usize = 64;

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
    pub certs: Arc<[CertSummary]>,
    pub tls: Option<TlsInfo>,
    /// The connector probe (its number) that last reached this host.
    pub last_seen: u64,
}

/// The hosts of one connector, by name (sorted). A sorted vector: a connector has one or a few
/// hosts, and a B-tree node sized for eleven entries cost ~1.4 KB per connector.
#[derive(Debug, Clone, Default)]
pub struct HostMap(Vec<(String, HostStats)>);

impl HostMap {
    fn find(&self, host: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(host))
    }

    pub fn get(&self, host: &str) -> Option<&HostStats> {
        self.find(host).ok().and_then(|i| self.0.get(i)).map(|(_, h)| h)
    }

    pub fn get_mut(&mut self, host: &str) -> Option<&mut HostStats> {
        self.find(host).ok().and_then(|i| self.0.get_mut(i)).map(|(_, h)| h)
    }

    /// The host's stats, created empty when new.
    pub fn entry(&mut self, host: &str) -> &mut HostStats {
        let i = match self.find(host) {
            Ok(i) => i,
            Err(i) => {
                // Exact: a first insert would otherwise reserve room for four hosts.
                self.0.reserve_exact(1);
                self.0.insert(i, (host.to_string(), HostStats::default()));
                i
            }
        };
        &mut self.0[i].1
    }

    pub fn insert(&mut self, host: String, stats: HostStats) {
        match self.find(&host) {
            Ok(i) => self.0[i].1 = stats,
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, (host, stats));
            }
        }
    }

    pub fn contains_key(&self, host: &str) -> bool {
        self.find(host).is_ok()
    }

    pub fn remove(&mut self, host: &str) {
        if let Ok(i) = self.find(host) {
            self.0.remove(i);
        }
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str, &HostStats) -> bool) {
        self.0.retain(|(k, h)| keep(k, h));
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&String, &HostStats)> {
        self.0.iter().map(|(k, h)| (k, h))
    }

    pub fn values(&self) -> impl Iterator<Item = &HostStats> {
        self.0.iter().map(|(_, h)| h)
    }
}

impl<'a> IntoIterator for &'a HostMap {
    type Item = (&'a String, &'a HostStats);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, HostStats)>,
        fn(&'a (String, HostStats)) -> (&'a String, &'a HostStats),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, h)| (k, h))
    }
}

#[cfg(test)]
impl std::ops::Index<&str> for HostMap {
    type Output = HostStats;

    fn index(&self, host: &str) -> &HostStats {
        match self.get(host) {
            Some(h) => h,
            None => panic!("no host {host:?}"),
        }
    }
}

/// One entry of the recent-probe history (the status page shows these).
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
    pub hosts: HostMap,
    /// Phase name (`dns`, …, `total`) → latency histogram (only with `metrics.phase_histograms`).
    pub durations: BTreeMap<&'static str, Histogram>,
    /// Whether to keep those histograms.
    pub histograms: bool,
    pub last: Option<Arc<ProbeReport>>,
    pub last_at: Option<SystemTime>,
    pub failing_since: Option<SystemTime>,
    pub recent_failed: VecDeque<Recent>,
    pub recent_ok: VecDeque<Recent>,
    /// Probes recorded so far (the clock of `HostStats::last_seen`).
    pub probes: u64,
    /// Changes with every change of this state, so `/metrics` re-encodes only the connectors
    /// that changed. Change a shared state through [`ConnectorState::edit`].
    pub generation: u64,
}

impl ConnectorState {
    pub fn new(connector: Connector, expiration: Duration) -> Self {
        ConnectorState {
            connector,
            expiration,
            hosts: HostMap::default(),
            durations: BTreeMap::new(),
            histograms: false,
            last: None,
            last_at: None,
            failing_since: None,
            recent_failed: VecDeque::new(),
            recent_ok: VecDeque::new(),
            probes: 0,
            generation: next_generation(),
        }
    }

    /// The one way to change a state shared with scrapes: copy on write, and a new generation.
    pub fn edit(st: &mut Arc<ConnectorState>) -> &mut ConnectorState {
        let st = Arc::make_mut(st);
        st.generation = next_generation();
        st
    }

    /// Folds one probe into the state. Returns true when the failure streak started or ended.
    pub fn record(&mut self, report: ProbeReport, at: SystemTime) -> bool {
        self.generation = next_generation();
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
        self.probes += 1;
        for (host, (ok, fail)) in per_host {
            let h = self.hosts.entry(host);
            h.probes += 1;
            h.last_seen = self.probes;
            h.last_success = Some(ok);
            if !ok && let Some(k) = fail {
                *h.failures.entry(k).or_insert(0) += 1;
            }
        }
        self.prune_hosts();
        for a in &report.attempts {
            if let Some(h) = self.hosts.get_mut(&a.host) {
                if !a.certificates.is_empty() {
                    h.certs = a.certificates.clone();
                }
                if let Some(t) = &a.tls {
                    h.tls = Some(t.clone());
                }
            }
            if self.histograms {
                for p in HISTOGRAM_PHASES {
                    if let Some(s) = a.durations.get(&p) {
                        self.durations.entry(p.as_str()).or_default().observe(*s);
                    }
                }
            }
        }
        if self.histograms {
            self.durations
                .entry("total")
                .or_default()
                .observe(report.duration_seconds);
        }

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
        // Room made first and reserved exactly: a full list must not grow to twice its size.
        list.truncate(cap.saturating_sub(1));
        if list.capacity() < cap {
            list.reserve_exact(cap - list.len());
        }
        list.push_front(entry);
        self.last = Some(Arc::new(report));
        self.last_at = Some(at);
        was_failing != self.failing_since.is_some()
    }

    /// Drops hosts the last few probes did not reach (an MX set that changes names must not
    /// grow the `host` label for ever), and keeps at most [`MAX_HOSTS`], newest first.
    fn prune_hosts(&mut self) {
        let now = self.probes;
        self.hosts.retain(|_, h| now - h.last_seen < HOST_STALE_PROBES);
        if self.hosts.len() > MAX_HOSTS {
            let mut seen: Vec<u64> = self.hosts.values().map(|h| h.last_seen).collect();
            seen.sort_unstable_by(|a, b| b.cmp(a));
            let cutoff = seen[MAX_HOSTS - 1];
            self.hosts.retain(|_, h| h.last_seen >= cutoff);
            while self.hosts.len() > MAX_HOSTS {
                // Equal ages at the cut: drop by name, deterministically.
                let Some(k) = self
                    .hosts
                    .iter()
                    .filter(|(_, h)| h.last_seen == cutoff)
                    .map(|(k, _)| k.clone())
                    .next_back()
                else {
                    break;
                };
                self.hosts.remove(&k);
            }
        }
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

    /// The queue clock with Exchange Online's own data preferred: `microsoft` is `Some` when
    /// fresh tenant data exists, holding the oldest pending message's receipt time (`None`:
    /// Microsoft holds nothing for this connector). Without tenant data, the probe's model.
    pub fn queue_age_seen(&self, now: SystemTime, microsoft: Option<Option<SystemTime>>) -> Duration {
        match microsoft {
            Some(oldest) => queue_age(oldest, now, self.expiration),
            None => self.queue_age(now),
        }
    }

    pub fn time_left_seen(&self, now: SystemTime, microsoft: Option<Option<SystemTime>>) -> Duration {
        self.expiration.saturating_sub(self.queue_age_seen(now, microsoft))
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;
    use crate::probe::tls::{CertPosition, CertSummary};
    use crate::probe::{Attempt, ProbeError};
    use std::path::Path;
    use std::time::UNIX_EPOCH;

    const CONFIG: &str = "connectors:\n  - name: a\n    use_mx_record: false\n    smart_hosts: [mx1.a.test, mx2.a.test]\n    recipient_domains: [a.test]\n";

    fn connector() -> Connector {
        let cfg = Config::parse(Path::new("t.yaml"), CONFIG).expect("config");
        cfg.connectors[0].clone()
    }

    pub(crate) fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    pub(crate) fn ok_attempt(host: &str) -> Attempt {
        let mut a = Attempt::new("smart_hosts".into(), host.into(), None, Some([127, 0, 0, 1].into()), 25);
        a.delivered = true;
        a.durations.insert(Phase::Connect, 0.002);
        a.tls = Some(TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
        });
        a.certificates = Arc::from(vec![CertSummary {
            position: CertPosition::Leaf,
            subject: format!("CN={host}"),
            subject_alt_names: vec![format!("DNS:{host}")],
            issuer: "CN=ca".into(),
            serial: "01".into(),
            not_before: String::new(),
            not_after: String::new(),
            not_before_unix: 0,
            not_after_unix: 2_000_000_000,
            signature_algorithm: "ecdsa-with-SHA256".into(),
            self_signed: false,
        }]);
        a
    }

    pub(crate) fn failed_attempt(host: &str) -> Attempt {
        let mut a = Attempt::new("smart_hosts".into(), host.into(), None, Some([127, 0, 0, 1].into()), 25);
        a.fail(&ProbeError::ConnectRefused);
        a
    }

    pub(crate) fn report(attempts: Vec<Attempt>) -> ProbeReport {
        let delivered = attempts.iter().any(|a| a.delivered);
        let last_failed = attempts.iter().rposition(|a| !a.delivered);
        let (code, reason) = match (delivered, last_failed.and_then(|i| attempts.get(i))) {
            (false, Some(a)) => (a.code, a.reason),
            _ => (None, None),
        };
        ProbeReport {
            connector: "a".into(),
            delivered,
            code,
            reason,
            phase: None,
            message: if delivered {
                "ok".into()
            } else {
                "450 4.4.316 Connection refused".into()
            },
            tls_settings: Default::default(),
            routing: "smart_host",
            started_at: t(0),
            duration_seconds: 0.01,
            warnings: vec![],
            attempts,
            deadline_reached: false,
            not_reached: vec![],
            reported: if delivered { Some(0) } else { last_failed },
        }
    }

    #[test]
    fn record_counts_hosts_codes_and_keeps_the_last_chain() {
        let mut st = ConnectorState::new(connector(), Duration::from_secs(86_400));
        st.histograms = true;
        assert_eq!(st.status(), None, "never probed");
        assert!(!st.record(
            report(vec![ok_attempt("mx1.a.test"), failed_attempt("mx2.a.test")]),
            t(0)
        ));
        assert_eq!(st.status(), Some(None), "delivered: one host accepted");
        let mx1 = &st.hosts["mx1.a.test"];
        assert_eq!((mx1.probes, mx1.last_success), (1, Some(true)));
        assert_eq!(mx1.certs.len(), 1);
        assert_eq!(mx1.tls.as_ref().map(|t| t.version.as_str()), Some("TLSv1.3"));
        let mx2 = &st.hosts["mx2.a.test"];
        assert_eq!(mx2.failures.get(&(Code::ConnectionRefused, Reason::Refused)), Some(&1));

        // A later probe failing before TLS keeps the chain last seen (certificate gauges stay).
        assert!(
            st.record(report(vec![failed_attempt("mx1.a.test")]), t(60)),
            "streak starts"
        );
        assert_eq!(st.hosts["mx1.a.test"].certs.len(), 1);
        assert_eq!(st.hosts["mx1.a.test"].last_success, Some(false));
        assert_eq!(st.status(), Some(Some(Code::ConnectionRefused)));
        assert_eq!(st.durations["connect"].count, 1);
        assert_eq!(st.durations["total"].count, 2);
    }

    #[test]
    fn hosts_that_stop_appearing_are_pruned_and_bounded() {
        let mut st = ConnectorState::new(connector(), Duration::from_secs(86_400));
        // An MX answer that changes names every probe.
        for i in 0..5000 {
            st.record(report(vec![failed_attempt(&format!("mx{i}.a.test"))]), t(i));
            assert!(
                st.hosts.len() <= HOST_STALE_PROBES as usize,
                "probe {i}: {}",
                st.hosts.len()
            );
        }
        assert!(st.hosts.contains_key("mx4999.a.test"));
        // A stable host stays however many others come and go.
        for i in 0..10 {
            st.record(
                report(vec![
                    failed_attempt("stable.a.test"),
                    failed_attempt(&format!("x{i}.a.test")),
                ]),
                t(6000 + i),
            );
        }
        assert!(st.hosts.contains_key("stable.a.test"));
        // Many hosts in one probe: at most MAX_HOSTS kept.
        let many: Vec<Attempt> = (0..200).map(|i| failed_attempt(&format!("h{i:03}.a.test"))).collect();
        st.record(report(many), t(7000));
        assert_eq!(st.hosts.len(), MAX_HOSTS);
    }

    #[test]
    fn queue_clock_starts_at_the_first_failure_and_resets_on_delivery() {
        let day = Duration::from_secs(86_400);
        let mut st = ConnectorState::new(connector(), day);
        assert!(st.record(report(vec![failed_attempt("mx1.a.test")]), t(100)));
        assert!(
            !st.record(report(vec![failed_attempt("mx1.a.test")]), t(160)),
            "still the same streak"
        );
        assert_eq!(st.failing_since, Some(t(100)));
        assert_eq!(st.queue_age(t(3700)), Duration::from_secs(3600));
        assert_eq!(st.time_left(t(3700)), day - Duration::from_secs(3600));
        assert_eq!(st.queue_age(t(100) + 2 * day), day, "capped: older mail has bounced");
        assert_eq!(st.time_left(t(100) + 2 * day), Duration::ZERO);
        assert!(st.record(report(vec![ok_attempt("mx1.a.test")]), t(200)), "streak ends");
        assert_eq!(st.failing_since, None);
        assert_eq!(st.queue_age(t(300)), Duration::ZERO);
    }

    #[test]
    fn recent_history_is_bounded_per_outcome() {
        let mut st = ConnectorState::new(connector(), Duration::from_secs(86_400));
        for i in 0..200 {
            st.record(report(vec![failed_attempt("mx1.a.test")]), t(i));
            st.record(report(vec![ok_attempt("mx1.a.test")]), t(i));
        }
        assert_eq!(st.recent_failed.len(), RECENT_FAILED);
        assert_eq!(st.recent_ok.len(), RECENT_OK);
        assert_eq!(st.recent_failed.front().map(|r| r.at), Some(t(199)), "newest first");
    }

    #[test]
    fn queue_age_is_capped_by_expiration() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
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
