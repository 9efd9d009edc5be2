//! Graph message trace: pending messages, attributed to connectors by recipient domain, and the
//! defer reasons of the oldest within a budget.
//!
//! One poll reads `GET /v1.0/admin/exchange/tracing/messageTraces` over the window, split into
//! slices of at most 10 days (Graph's limit), with `status eq 'pending'` in the filter (the
//! resource documents `status` as filterable with `eq`) and the same test again on our side,
//! case-insensitively, so a server that ignores the filter cannot inflate the queue. Pages are
//! followed whole through `@odata.nextLink`, at most [`MAX_PAGES_PER_POLL`] per poll: the list
//! call shares Graph's 100-requests-per-5-minutes limit with the details call.
//!
//! Nothing here logs or returns an address, subject or message id: logs say counts.

use super::api::{Api, ApiError, ApiName, pct};
use super::{ConnectorQueue, DeferReason, QueueCode, QueueRoute, QueueView, UNATTRIBUTED, led};
use crate::config::DomainPattern;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Graph accepts at most 10 days per query.
pub const MAX_SLICE: Duration = Duration::from_secs(10 * 86_400);
/// Graph keeps 90 days of trace data; a longer window is cut to that.
pub const MAX_WINDOW: Duration = Duration::from_secs(90 * 86_400);
/// `$top`: Graph's maximum page size, so a queue of thousands costs a few requests.
pub const PAGE_SIZE: u32 = 5000;
/// Pages read per poll, over all slices (up to 50,000 traces); the rest waits for the next poll
/// and the view is built from what was read.
pub const MAX_PAGES_PER_POLL: usize = 10;
/// Defer reasons fetched per connector and poll at most: its oldest few messages.
pub const DETAILS_PER_CONNECTOR: usize = 3;
/// Reasons kept in [`DetailCache`] at most (entries also leave once their message is no
/// longer pending).
pub const MAX_CACHED_REASONS: usize = 10_000;
const WINDOW_5MIN: Duration = Duration::from_secs(300);

/// Detail requests allowed in any 5 minutes (rolling), so the agent stays under Microsoft's
/// per-tenant limit and leaves room for admins running their own traces.
pub struct DetailBudget {
    per_5min: u32,
    taken: Mutex<VecDeque<SystemTime>>,
}

impl DetailBudget {
    pub fn new(per_5min: u32) -> DetailBudget {
        DetailBudget {
            per_5min,
            taken: Mutex::new(VecDeque::new()),
        }
    }

    /// Takes one request from the budget at `now`, if any is left. Uses the poll's clock so
    /// tests can step time; a timestamp more than 5 minutes away either way (the wall clock
    /// jumped) no longer counts.
    pub fn try_take(&self, now: SystemTime) -> bool {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        taken.retain(|t| {
            let age = now.duration_since(*t).unwrap_or_else(|e| e.duration());
            age < WINDOW_5MIN
        });
        if taken.len() < self.per_5min as usize {
            taken.push_back(now);
            true
        } else {
            false
        }
    }

    /// Requests still allowed at `now`.
    pub fn remaining(&self, now: SystemTime) -> u32 {
        let taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let used = taken
            .iter()
            .filter(|t| now.duration_since(**t).unwrap_or_else(|e| e.duration()) < WINDOW_5MIN)
            .count();
        self.per_5min.saturating_sub(used as u32)
    }
}

/// A message in the queue: one trace row (message × recipient).
type Key = (String, String);

struct CachedReason {
    /// `None`: the details were read and held no defer reason (not asked again).
    reason: Option<DeferReason>,
    /// Fetch order, to find a connector's newest reason and the entry to evict.
    seq: u64,
}

/// Defer reasons already fetched, by message trace id (and recipient: a trace id is shared by
/// the recipients of one message, each with its own row and fate).
#[derive(Default)]
pub struct DetailCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<Key, CachedReason>,
    seq: u64,
}

impl DetailCache {
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn retain_pending(&self, pending: &HashSet<Key>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.entries.retain(|k, _| pending.contains(k));
    }

    fn insert(&self, key: Key, reason: Option<DeferReason>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.seq += 1;
        let seq = inner.seq;
        if inner.entries.len() >= MAX_CACHED_REASONS
            && !inner.entries.contains_key(&key)
            && let Some(oldest) = inner.entries.iter().min_by_key(|(_, v)| v.seq).map(|(k, _)| k.clone())
        {
            inner.entries.remove(&oldest);
        }
        inner.entries.insert(key, CachedReason { reason, seq });
    }

    fn get(&self, key: &Key) -> Option<(Option<DeferReason>, u64)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.entries.get(key).map(|c| (c.reason.clone(), c.seq))
    }
}

/// A pending trace row, reduced to what the poll needs.
#[derive(Debug, Clone)]
struct Pending {
    key: Key,
    received: Option<SystemTime>,
    connector: String,
}

/// The connector a recipient domain routes to: the most specific matching pattern (exact,
/// then the longest `*.suffix`, then `*`), the first route on a tie; none → [`UNATTRIBUTED`].
pub fn attribute<'a>(routes: &'a [QueueRoute], domain: &str) -> &'a str {
    let mut best: Option<((u8, usize), &str)> = None;
    for route in routes {
        for p in &route.recipient_domains {
            if !p.matches(domain) {
                continue;
            }
            let rank = match p {
                DomainPattern::Exact(h) => (2, h.as_str().len()),
                DomainPattern::Subdomains(h) => (1, h.as_str().len()),
                DomainPattern::Any => (0, 0),
            };
            if best.is_none_or(|(r, _)| rank > r) {
                best = Some((rank, route.connector.as_str()));
            }
        }
    }
    best.map_or(UNATTRIBUTED, |(_, c)| c)
}

/// The domain of an address (after the last `@`), lower-case, without a trailing dot.
fn domain_of(addr: &str) -> Option<String> {
    let (_, d) = addr.trim().rsplit_once('@')?;
    let d = d.trim_end_matches('.').to_ascii_lowercase();
    (!d.is_empty()).then_some(d)
}

/// ISO-8601 UTC as Graph's filter wants it (`YYYY-MM-DDThh:mm:ssZ`).
pub fn iso(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let dt = time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    dt.format(&fmt).unwrap_or_default()
}

/// A Graph timestamp (`2026-12-01T10:15:32Z`, fractions allowed, offset optional).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let rfc = time::format_description::well_known::Rfc3339;
    let dt = time::OffsetDateTime::parse(s, &rfc)
        .or_else(|_| time::OffsetDateTime::parse(&format!("{s}Z"), &rfc))
        .ok()?;
    let nanos = dt.unix_timestamp_nanos();
    if nanos < 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).ok()?))
}

/// `[start, end]` cut into slices of at most [`MAX_SLICE`], oldest first.
pub fn slices(start: SystemTime, end: SystemTime) -> Vec<(SystemTime, SystemTime)> {
    let mut out = Vec::new();
    let mut from = start;
    while from < end {
        let to = (from + MAX_SLICE).min(end);
        out.push((from, to));
        from = to;
    }
    if out.is_empty() {
        out.push((start, end));
    }
    out
}

/// The first page's URL for one slice.
pub fn list_url(graph_base: &str, from: SystemTime, to: SystemTime) -> String {
    let filter = format!(
        "receivedDateTime ge {} and receivedDateTime le {} and status eq 'pending'",
        iso(from),
        iso(to)
    );
    format!(
        "{graph_base}/v1.0/admin/exchange/tracing/messageTraces?$filter={}&$top={PAGE_SIZE}",
        pct(&filter, b":")
    )
}

/// The details URL for one message and recipient: the address goes into an OData string
/// literal (quotes doubled), then into the path (percent-encoded).
pub fn details_url(graph_base: &str, id: &str, recipient: &str) -> String {
    format!(
        "{graph_base}/v1.0/admin/exchange/tracing/messageTraces/{}/getDetailsByRecipient(recipientAddress='{}')",
        pct(id, b""),
        pct(&recipient.replace('\'', "''"), b"@")
    )
}

/// Reads the queue; see the module doc. Codes per connector follow one rule:
/// a message whose defer reason was fetched counts under its code; one without counts under
/// the newest reason fetched for its connector (the same connector fails for the same cause),
/// and under [`QueueCode::Unknown`] while its connector has none.
pub async fn poll(
    api: &Api,
    budget: &DetailBudget,
    cache: &DetailCache,
    routes: &[QueueRoute],
    window: Duration,
    now: SystemTime,
) -> Result<QueueView, ApiError> {
    let window = window.min(MAX_WINDOW);
    let start = now.checked_sub(window).unwrap_or(UNIX_EPOCH);
    let mut traces_read = 0u64;
    let mut pending: Vec<Pending> = Vec::new();
    let mut seen: HashSet<Key> = HashSet::new();
    let mut pages = 0usize;
    let mut truncated = false;
    'slices: for (from, to) in slices(start, now).into_iter().rev() {
        let mut url = Some(list_url(api.graph_base(), from, to));
        while let Some(u) = url.take() {
            if pages >= MAX_PAGES_PER_POLL {
                truncated = true;
                break 'slices;
            }
            let page = api.page(ApiName::MessageTrace, &u, None).await?;
            pages += 1;
            for item in &page.items {
                traces_read += 1;
                if let Some(p) = pending_row(item, routes)
                    && seen.insert(p.key.clone())
                {
                    pending.push(p);
                }
            }
            url = page.next;
        }
    }
    if truncated {
        tracing::warn!(
            pages,
            traces_read,
            "message trace: stopped after {MAX_PAGES_PER_POLL} pages this poll; the queue view is partial"
        );
    }
    let keys: HashSet<Key> = pending.iter().map(|p| p.key.clone()).collect();
    cache.retain_pending(&keys);

    let details_fetched = fetch_details(api, budget, cache, &pending, now).await;
    let connectors = build_view(cache, &pending);
    tracing::debug!(
        traces_read,
        pending = pending.len(),
        details_fetched,
        connectors = connectors.len(),
        "message trace poll"
    );
    Ok(QueueView {
        fetched_at: now,
        connectors,
        traces_read,
        pending: pending.len() as u64,
        details_fetched,
    })
}

/// A pending row of the list, or None (not pending, or missing what we need).
fn pending_row(item: &Value, routes: &[QueueRoute]) -> Option<Pending> {
    let status = item.get("status").and_then(Value::as_str)?;
    if !status.trim().eq_ignore_ascii_case("pending") {
        return None;
    }
    let id = item.get("id").and_then(Value::as_str)?.trim();
    let recipient = item.get("recipientAddress").and_then(Value::as_str)?.trim();
    if id.is_empty() || recipient.is_empty() {
        return None;
    }
    let connector = match domain_of(recipient) {
        Some(d) => attribute(routes, &d).to_string(),
        None => UNATTRIBUTED.to_string(),
    };
    Some(Pending {
        key: (id.to_string(), recipient.to_ascii_lowercase()),
        received: item
            .get("receivedDateTime")
            .and_then(Value::as_str)
            .and_then(parse_time),
        connector,
    })
}

/// Fetches defer reasons within the budget: connectors without any reason first (their code
/// is unknown), each connector's oldest message before anyone's second, older before newer,
/// real connectors before [`UNATTRIBUTED`]. Stops at the first error (a 429 means the budget
/// is shared with someone else); the poll itself still succeeds.
async fn fetch_details(
    api: &Api,
    budget: &DetailBudget,
    cache: &DetailCache,
    pending: &[Pending],
    now: SystemTime,
) -> u32 {
    let mut by_conn: BTreeMap<&str, Vec<&Pending>> = BTreeMap::new();
    for p in pending {
        by_conn.entry(p.connector.as_str()).or_default().push(p);
    }
    // Sort key: (unattributed, connector already has a reason, rank within connector, received).
    type Priority = (bool, bool, usize, SystemTime);
    let mut candidates: Vec<(Priority, &Pending)> = Vec::new();
    for (conn, mut msgs) in by_conn {
        let known = msgs.iter().any(|p| cache.get(&p.key).is_some_and(|(r, _)| r.is_some()));
        msgs.sort_by_key(|p| p.received.unwrap_or(UNIX_EPOCH));
        let uncached = msgs.into_iter().filter(|p| cache.get(&p.key).is_none());
        for (rank, p) in uncached.take(DETAILS_PER_CONNECTOR).enumerate() {
            let key = (conn == UNATTRIBUTED, known, rank, p.received.unwrap_or(UNIX_EPOCH));
            candidates.push((key, p));
        }
    }
    candidates.sort_by_key(|c| c.0);
    let mut fetched = 0u32;
    let mut skipped = 0usize;
    for (_, p) in &candidates {
        if !budget.try_take(now) {
            skipped = candidates.len() - fetched as usize;
            break;
        }
        let url = details_url(api.graph_base(), &p.key.0, &p.key.1);
        fetched += 1;
        match api.get_json(ApiName::MessageTraceDetails, &url).await {
            Ok(v) => cache.insert(p.key.clone(), last_defer(&v)),
            Err(e) => {
                tracing::warn!(error = %e, fetched, "message trace details: stopping for this poll");
                break;
            }
        }
    }
    if skipped > 0 {
        tracing::debug!(skipped, "message trace details: budget used up; the rest waits");
    }
    fetched
}

/// The reason of the last `Defer` event of a details answer (by time, then order).
pub fn last_defer(v: &Value) -> Option<DeferReason> {
    let events = v.get("value").and_then(Value::as_array)?;
    let defer = events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.get("event")
                .and_then(Value::as_str)
                .is_some_and(|s| s.trim().eq_ignore_ascii_case("defer"))
        })
        .max_by_key(|(i, e)| {
            let t = e.get("dateTime").and_then(Value::as_str).and_then(parse_time);
            (t, *i)
        })
        .map(|(_, e)| e)?;
    let text = |k: &str| defer.get(k).and_then(Value::as_str).unwrap_or("");
    let mut reason = led::parse(text("description")).or_else(|| led::parse(&led::xml_unescape(text("data"))))?;
    if reason.at.is_none() {
        reason.at = defer.get("dateTime").and_then(Value::as_str).and_then(parse_time);
    }
    Some(reason)
}

fn build_view(cache: &DetailCache, pending: &[Pending]) -> BTreeMap<String, ConnectorQueue> {
    // The newest reason fetched per connector, among its messages still pending.
    let mut newest: HashMap<&str, (u64, DeferReason)> = HashMap::new();
    let mut own: HashMap<&Key, Option<DeferReason>> = HashMap::new();
    for p in pending {
        if let Some((reason, seq)) = cache.get(&p.key) {
            if let Some(r) = &reason
                && newest.get(p.connector.as_str()).is_none_or(|(s, _)| seq > *s)
            {
                newest.insert(p.connector.as_str(), (seq, r.clone()));
            }
            own.insert(&p.key, reason);
        }
    }
    let mut out: BTreeMap<String, ConnectorQueue> = BTreeMap::new();
    for p in pending {
        let q = out.entry(p.connector.clone()).or_default();
        let code = match own.get(&p.key) {
            Some(Some(r)) => r.code,
            _ => newest.get(p.connector.as_str()).and_then(|(_, r)| r.code),
        };
        let code = code.map_or(QueueCode::Unknown, QueueCode::Code);
        *q.pending.entry(code).or_insert(0) += 1;
        if let Some(t) = p.received {
            q.oldest_received = Some(q.oldest_received.map_or(t, |o| o.min(t)));
        }
    }
    for (conn, (_, r)) in newest {
        if let Some(q) = out.get_mut(conn) {
            q.last_reason = Some(r);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::taxonomy::Code;

    fn route(name: &str, pats: &[&str]) -> QueueRoute {
        QueueRoute {
            connector: name.into(),
            recipient_domains: pats.iter().map(|p| DomainPattern::parse(p).unwrap()).collect(),
        }
    }

    #[test]
    fn attribution_most_specific_wins_first_on_tie() {
        let routes = [
            route("catch-all", &["*"]),
            route("fabrikam-wild", &["*.fabrikam.example"]),
            route("fabrikam-eu", &["*.eu.fabrikam.example"]),
            route("contoso", &["contoso.example"]),
            route("contoso-2", &["contoso.example"]),
        ];
        assert_eq!(attribute(&routes, "contoso.example"), "contoso");
        assert_eq!(attribute(&routes, "mail.fabrikam.example"), "fabrikam-wild");
        assert_eq!(attribute(&routes, "x.eu.fabrikam.example"), "fabrikam-eu");
        assert_eq!(attribute(&routes, "tailspin.example"), "catch-all");
        assert_eq!(attribute(&routes[1..], "tailspin.example"), UNATTRIBUTED);
        assert_eq!(domain_of("Robert@Contoso.Example."), Some("contoso.example".into()));
        assert_eq!(domain_of("no-at-sign"), None);
    }

    #[test]
    fn windows_are_split_at_ten_days() {
        let end = UNIX_EPOCH + Duration::from_secs(100 * 86_400);
        let s = slices(end - Duration::from_secs(25 * 86_400), end);
        assert_eq!(s.len(), 3);
        assert!(s.iter().all(|(a, b)| b.duration_since(*a).unwrap() <= MAX_SLICE));
        assert_eq!(s[0].0, end - Duration::from_secs(25 * 86_400));
        assert_eq!(s[2].1, end);
        assert_eq!(slices(end, end).len(), 1);
    }

    #[test]
    fn urls_and_times() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_126_400);
        assert_eq!(iso(t), "2026-12-01T12:00:00Z");
        assert_eq!(parse_time("2026-12-01T12:00:00Z"), Some(t));
        assert_eq!(
            parse_time("2026-12-01T12:00:00.5Z"),
            Some(t + Duration::from_millis(500))
        );
        assert_eq!(parse_time("2026-12-01T12:00:00"), Some(t));
        assert_eq!(parse_time("yesterday"), None);
        let u = list_url("https://graph.example", t - Duration::from_secs(3600), t);
        assert_eq!(
            u,
            "https://graph.example/v1.0/admin/exchange/tracing/messageTraces?$filter=receivedDateTime%20ge%202026-12-01T11:00:00Z%20and%20receivedDateTime%20le%202026-12-01T12:00:00Z%20and%20status%20eq%20%27pending%27&$top=5000"
        );
        assert_eq!(
            details_url("https://g", "a1/b", "o'brien@contoso.example"),
            "https://g/v1.0/admin/exchange/tracing/messageTraces/a1%2Fb/getDetailsByRecipient(recipientAddress='o%27%27brien@contoso.example')"
        );
    }

    #[test]
    fn budget_is_rolling() {
        let b = DetailBudget::new(2);
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(b.try_take(t));
        assert!(b.try_take(t + Duration::from_secs(10)));
        assert!(!b.try_take(t + Duration::from_secs(20)));
        assert_eq!(b.remaining(t + Duration::from_secs(20)), 0);
        assert!(b.try_take(t + Duration::from_secs(300)));
        assert!(!b.try_take(t + Duration::from_secs(301)));
        assert!(b.try_take(t + Duration::from_secs(310)));
    }

    #[test]
    fn last_defer_event_wins() {
        let v = serde_json::json!({"value": [
            {"event": "Receive", "description": "Message received by: X"},
            {"event": "Defer", "dateTime": "2026-12-01T10:00:00Z",
             "description": "Reason: [{LED=450 4.4.315 Connection timed out};{MSG=}]"},
            {"event": "Defer", "dateTime": "2026-12-01T11:00:00Z", "description": "",
             "data": "<root><MEP Name=&quot;x&quot; String=&quot;Reason: [{LED=450 4.4.316 Connection refused [LastAttemptedIP=203.0.113.5:25]};{MSG=}]&quot;/></root>"},
        ]});
        let r = last_defer(&v).unwrap();
        assert_eq!(r.code, Some(Code::ConnectionRefused));
        assert_eq!(r.at, parse_time("2026-12-01T11:00:00Z"));
        assert_eq!(last_defer(&serde_json::json!({"value": []})), None);
    }

    #[test]
    fn view_counts_by_own_then_connector_reason() {
        let cache = DetailCache::default();
        let t = UNIX_EPOCH + Duration::from_secs(1_000);
        let p = |id: &str, conn: &str, secs: u64| Pending {
            key: (id.into(), format!("{id}@x.example")),
            received: Some(t + Duration::from_secs(secs)),
            connector: conn.into(),
        };
        let pending = vec![p("a", "c1", 5), p("b", "c1", 1), p("c", "c1", 9), p("d", "c2", 3)];
        cache.insert(pending[0].key.clone(), led::parse("450 4.4.316 refused"));
        cache.insert(pending[1].key.clone(), led::parse("450 4.4.315 timeout"));
        let view = build_view(&cache, &pending);
        let c1 = &view["c1"];
        assert_eq!(c1.pending.get(&QueueCode::Code(Code::ConnectionRefused)), Some(&1));
        // "c" has no reason: it takes the newest fetched for c1 (4.4.315).
        assert_eq!(c1.pending.get(&QueueCode::Code(Code::ConnectionTimedOut)), Some(&2));
        assert_eq!(c1.oldest_received, Some(t + Duration::from_secs(1)));
        assert_eq!(
            c1.last_reason.as_ref().and_then(|r| r.code),
            Some(Code::ConnectionTimedOut)
        );
        assert_eq!(view["c2"].pending.get(&QueueCode::Unknown), Some(&1));
        assert_eq!(view["c2"].total(), 1);
        // Delivered messages leave the cache.
        cache.retain_pending(&HashSet::from([pending[0].key.clone()]));
        assert_eq!(cache.len(), 1);
    }
}
