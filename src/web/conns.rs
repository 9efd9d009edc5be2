//! Who may hold a connection, and for how long. One client must not keep `/metrics` from
//! Prometheus, so connections are admitted per client address, a connection that sends
//! nothing is closed quickly, and when the server is full the idle ones (waiting for a first
//! or next request, or half-sent) make room before anyone mid-request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

/// Limits of the HTTP face.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections in all.
    pub max_connections: usize,
    /// Connections from one client address.
    pub max_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            max_per_client: 32,
        }
    }
}

/// What one connection is doing, shared between its task and the registry.
#[derive(Debug)]
pub struct ConnState {
    /// Inside a request (headers parsed, response not finished): never evicted.
    busy: AtomicBool,
    /// The client has sent at least one byte.
    spoke: AtomicBool,
    /// Milliseconds since the registry's start at the last request or accept.
    last_active_ms: AtomicU64,
    /// Fires when the registry wants the connection closed.
    pub evict: CancellationToken,
}

impl ConnState {
    pub fn spoke(&self) -> bool {
        self.spoke.load(Ordering::Relaxed)
    }
}

struct Entry {
    ip: IpAddr,
    state: Arc<ConnState>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    conns: HashMap<u64, Entry>,
    per_ip: HashMap<IpAddr, usize>,
}

/// The table of open connections.
pub struct Registry {
    limits: Limits,
    started: Instant,
    inner: Mutex<Inner>,
    /// Connections turned away or closed to make room (for the log and tests).
    pub shed: AtomicU64,
}

/// Held by a connection's task; unregisters on drop.
pub struct Admitted {
    registry: Arc<Registry>,
    id: u64,
    pub state: Arc<ConnState>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if let Some(e) = inner.conns.remove(&self.id)
            && let Some(n) = inner.per_ip.get_mut(&e.ip)
        {
            *n -= 1;
            if *n == 0 {
                inner.per_ip.remove(&e.ip);
            }
        }
    }
}

impl Registry {
    pub fn new(limits: Limits) -> Arc<Registry> {
        Arc::new(Registry {
            limits,
            started: Instant::now(),
            inner: Mutex::new(Inner::default()),
            shed: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Admits a new connection from `ip`, closing an idle one to make room when a limit is
    /// reached (that client's own first, then anyone's). None: no room without interrupting a
    /// request, so the new connection is refused.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut inner = self.lock();
        let from_ip = inner.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.limits.max_per_client && !self.evict_idle(&mut inner, Some(ip)) {
            self.shed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if inner.conns.len() >= self.limits.max_connections && !self.evict_idle(&mut inner, None) {
            self.shed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let id = inner.next;
        inner.next += 1;
        let state = Arc::new(ConnState {
            busy: AtomicBool::new(false),
            spoke: AtomicBool::new(false),
            last_active_ms: AtomicU64::new(self.now_ms()),
            evict: CancellationToken::new(),
        });
        inner.conns.insert(
            id,
            Entry {
                ip,
                state: state.clone(),
            },
        );
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        Some(Admitted {
            registry: self.clone(),
            id,
            state,
        })
    }

    /// Evicts the idle connection (of `ip`, or of anyone) that has waited longest, preferring
    /// ones that never sent a byte. It leaves the table when its task ends; until then it is
    /// not counted as a candidate again.
    fn evict_idle(&self, inner: &mut Inner, ip: Option<IpAddr>) -> bool {
        let victim = inner
            .conns
            .iter()
            .filter(|(_, e)| ip.is_none_or(|ip| e.ip == ip))
            .filter(|(_, e)| !e.state.busy.load(Ordering::Relaxed) && !e.state.evict.is_cancelled())
            .min_by_key(|(id, e)| (e.state.spoke(), e.state.last_active_ms.load(Ordering::Relaxed), **id))
            .map(|(id, _)| *id);
        let Some(id) = victim else { return false };
        if let Some(e) = inner.conns.remove(&id) {
            e.state.evict.cancel();
            if let Some(n) = inner.per_ip.get_mut(&e.ip) {
                *n -= 1;
                if *n == 0 {
                    inner.per_ip.remove(&e.ip);
                }
            }
        }
        self.shed.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().conns.len()
    }

    /// Marks a request started or finished on this connection.
    pub fn set_busy(&self, state: &ConnState, busy: bool) {
        state.busy.store(busy, Ordering::Relaxed);
        state.last_active_ms.store(self.now_ms(), Ordering::Relaxed);
    }
}

/// Marks its connection busy for as long as it lives (one request).
pub struct Busy {
    registry: Arc<Registry>,
    state: Arc<ConnState>,
}

impl Busy {
    pub fn new(registry: Arc<Registry>, state: Arc<ConnState>) -> Busy {
        registry.set_busy(&state, true);
        Busy { registry, state }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.registry.set_busy(&self.state, false);
    }
}

/// A stream that notes when the client first sends something.
pub struct Watched<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, state: Arc<ConnState>) -> Self {
        Watched { inner, state }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.state.spoke.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn one_client_is_capped_and_evicts_its_own_idle_connections() {
        let r = Registry::new(Limits {
            max_connections: 100,
            max_per_client: 3,
        });
        let held: Vec<Admitted> = (0..3).filter_map(|_| r.admit(ip(2))).collect();
        assert_eq!(held.len(), 3);
        let fourth = r.admit(ip(2)).expect("room made by closing an idle one");
        assert!(held[0].state.evict.is_cancelled(), "the oldest idle one goes");
        assert!(!held[1].state.evict.is_cancelled());
        // All of that client's connections busy: a new one is refused, not someone else's cut.
        for h in held.iter().skip(1).chain(std::iter::once(&fourth)) {
            r.set_busy(&h.state, true);
        }
        assert!(r.admit(ip(2)).is_none());
        assert!(r.admit(ip(1)).is_some(), "another client still gets in");
    }

    #[test]
    fn a_full_server_closes_silent_connections_before_others() {
        let r = Registry::new(Limits {
            max_connections: 3,
            max_per_client: 10,
        });
        let talker = r.admit(ip(1)).expect("admit");
        talker.state.spoke.store(true, Ordering::Relaxed);
        let silent = r.admit(ip(2)).expect("admit");
        let busy = r.admit(ip(3)).expect("admit");
        r.set_busy(&busy.state, true);
        let _new = r.admit(ip(4)).expect("admitted by closing the silent one");
        assert!(silent.state.evict.is_cancelled());
        assert!(!talker.state.evict.is_cancelled() && !busy.state.evict.is_cancelled());
        drop(silent);
        assert_eq!(r.open(), 3);
    }
}
