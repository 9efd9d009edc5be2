//! Saves the queue clock on a thread of its own: probes and scrapes never wait for the disk, a
//! hung file system stalls only this thread, and when saves pile up only the newest is written.

use super::store::{Store, Streaks};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Slot {
    next: Option<Streaks>,
    busy: bool,
    stop: bool,
}

struct Shared {
    slot: Mutex<Slot>,
    cv: Condvar,
    failures: AtomicU64,
}

impl Shared {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct StateWriter {
    shared: Arc<Shared>,
}

impl StateWriter {
    pub fn start(store: Store) -> std::io::Result<StateWriter> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            cv: Condvar::new(),
            failures: AtomicU64::new(0),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("queue-clock-writer".into())
            .spawn(move || run(&s, &store))?;
        Ok(StateWriter { shared })
    }

    /// Queues a save; replaces one that has not started yet.
    pub fn submit(&self, streaks: Streaks) {
        self.shared.slot().next = Some(streaks);
        self.shared.cv.notify_all();
    }

    /// Saves that failed since start.
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// Waits until every queued save is written, at most `limit`. False when it timed out.
    pub fn flush(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut slot = self.shared.slot();
        while slot.next.is_some() || slot.busy {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            slot = match self.shared.cv.wait_timeout(slot, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        self.shared.slot().stop = true;
        self.shared.cv.notify_all();
    }
}

fn run(shared: &Shared, store: &Store) {
    loop {
        let next = {
            let mut slot = shared.slot();
            loop {
                if let Some(n) = slot.next.take() {
                    slot.busy = true;
                    break n;
                }
                if slot.stop {
                    return;
                }
                slot = match shared.cv.wait(slot) {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
            }
        };
        if let Err(e) = store.save(&next) {
            shared.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "cannot save the queue clock state");
        }
        shared.slot().busy = false;
        shared.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn writes_the_newest_and_flushes() {
        let dir = std::env::temp_dir().join(format!("mailflow-writer-{}", std::process::id()));
        let store = Store::open(&dir).expect("store");
        let w = StateWriter::start(store.clone()).expect("writer");
        let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for i in 0..50u64 {
            let mut s = Streaks::new();
            s.insert(format!("c{i}"), (t, None));
            w.submit(s);
        }
        assert!(w.flush(Duration::from_secs(10)));
        let back = store.load(SystemTime::now()).expect("load");
        assert_eq!(
            back.streaks.keys().collect::<Vec<_>>(),
            ["c49"],
            "the last submitted wins"
        );
        assert_eq!(w.failures(), 0);
        drop(w);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
