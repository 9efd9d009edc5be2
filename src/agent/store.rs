//! The queue clock's memory: when each connector's current failure streak began. Kept in a small
//! JSON file, written atomically, so restarting the agent mid-outage does not reset how long
//! mail has been stuck.
//!
//! The file is read entry by entry: a damaged entry is skipped on its own and counted, a start
//! time in the future is clamped to now, and nothing in the file can stop the agent starting.
//! The directory is locked while an agent uses it, so two agents never race on one file.

use crate::config::MAX_CONNECTOR_NAME_CHARS;
use crate::timefmt::{from_unix_secs, unix_secs};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

const FILE_NAME: &str = "queue-clock.json";
const LOCK_NAME: &str = "lock";
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Serialize)]
struct StoreFile<'a> {
    version: u32,
    connectors: BTreeMap<&'a str, Stored<'a>>,
}

#[derive(Debug, Serialize)]
struct Stored<'a> {
    failing_since: f64,
    last_code: Option<&'a str>,
}

/// Failure streak start per connector, and the code it was failing with.
pub type Streaks = BTreeMap<String, (SystemTime, Option<String>)>;

/// What a read of the file gave: the usable entries, and what was wrong with the rest.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Loaded {
    pub streaks: Streaks,
    /// Entries dropped because they could not be used (bad name, bad or absurd time).
    pub skipped: usize,
    /// Entries whose start lay in the future, set to now.
    pub clamped: usize,
}

/// Why the queue clock could not be read or written. Never fatal to probing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("--storage.path {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--storage.path {path} is in use by another mailflow-exporter (lock {lock} held); give each agent its own directory"
    )]
    Locked { path: String, lock: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_FILE_BYTES} bytes, ignored")]
    TooLarge { path: String },
    #[error("{path}: not a queue clock file: {detail}")]
    Format { path: String, detail: String },
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    /// Held (locked) for as long as any clone of the store lives.
    _lock: Arc<File>,
}

impl Store {
    /// Creates the directory if needed and takes its lock.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let shown = || dir.display().to_string();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir { path: shown(), source })?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::Dir { path: shown(), source })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: shown(),
                    lock: lock_path.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(StoreError::Dir { path: shown(), source }),
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: Arc::new(lock),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Missing file → empty. A damaged file is an error the caller logs (never fatal).
    pub fn load(&self, now: SystemTime) -> Result<Loaded, StoreError> {
        let path = self.path();
        let shown = || path.display().to_string();
        let meta = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
            Err(source) => return Err(StoreError::Io { path: shown(), source }),
            Ok(m) => m,
        };
        if !meta.is_file() {
            return Err(StoreError::Format {
                path: shown(),
                detail: "not a regular file".into(),
            });
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(StoreError::TooLarge { path: shown() });
        }
        let bytes = std::fs::read(&path).map_err(|source| StoreError::Io { path: shown(), source })?;
        parse(&bytes, now).map_err(|e| StoreError::Format {
            path: shown(),
            detail: e.to_string(),
        })
    }

    /// Write to a temporary file, fsync, rename over the old one, fsync the directory.
    pub fn save(&self, streaks: &Streaks) -> Result<(), StoreError> {
        let path = self.path();
        let data = serialize(streaks);
        let tmp = self.dir.join(format!(".{FILE_NAME}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// The file's bytes for these streaks.
pub fn serialize(streaks: &Streaks) -> Vec<u8> {
    let file = StoreFile {
        version: 1,
        connectors: streaks
            .iter()
            .map(|(k, (t, c))| {
                (
                    k.as_str(),
                    Stored {
                        failing_since: unix_secs(*t),
                        last_code: c.as_deref(),
                    },
                )
            })
            .collect(),
    };
    // Serialising plain strings and floats cannot fail; an empty file would only reset the clock.
    serde_json::to_vec_pretty(&file).unwrap_or_default()
}

/// The file as a whole is not a queue clock file (its entries are judged one by one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(String);

/// Reads the file's bytes entry by entry (the fuzz target drives this directly).
pub fn parse(bytes: &[u8], now: SystemTime) -> Result<Loaded, FormatError> {
    let root: Value = serde_json::from_slice(bytes).map_err(|e| FormatError(e.to_string()))?;
    let Some(entries) = root.get("connectors").and_then(Value::as_object) else {
        return Err(FormatError("no \"connectors\" object".into()));
    };
    let mut out = Loaded::default();
    for (name, entry) in entries {
        let name_ok = !name.trim().is_empty()
            && name.chars().count() <= MAX_CONNECTOR_NAME_CHARS
            && !name.chars().any(char::is_control);
        let since = entry
            .get("failing_since")
            .and_then(Value::as_f64)
            .and_then(from_unix_secs);
        let (true, Some(mut since)) = (name_ok, since) else {
            out.skipped += 1;
            continue;
        };
        if since > now {
            since = now;
            out.clamped += 1;
        }
        // Only a short printable code is kept; anything else is dropped without losing the time.
        let code = entry
            .get("last_code")
            .and_then(Value::as_str)
            .filter(|c| c.len() <= 16 && c.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_string);
        out.streaks.insert(name.clone(), (since, code));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_900_000_000)
    }

    #[test]
    fn round_trip_and_damage() {
        let dir = std::env::temp_dir().join(format!("mailflow-store-{}", std::process::id()));
        let store = Store::open(&dir).expect("open");
        assert_eq!(store.load(now()).expect("empty"), Loaded::default());
        let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut s = Streaks::new();
        s.insert("A: b".into(), (t, Some("4.4.316".into())));
        store.save(&s).expect("save");
        let back = store.load(now()).expect("load");
        assert_eq!(back.streaks, s);
        std::fs::write(store.path(), b"{not json").expect("write");
        assert!(matches!(store.load(now()), Err(StoreError::Format { .. })));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_agent_cannot_take_the_directory() {
        let dir = std::env::temp_dir().join(format!("mailflow-store-lock-{}", std::process::id()));
        let first = Store::open(&dir).expect("open");
        let again = Store::open(&dir);
        assert!(matches!(again, Err(StoreError::Locked { .. })), "{again:?}");
        drop(first);
        assert!(Store::open(&dir).is_ok(), "the lock goes with the agent");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn damaged_entries_are_skipped_alone_and_the_future_is_clamped() {
        let text = r#"{"version":1,"connectors":{
            "good": {"failing_since": 1800000000.5, "last_code": "4.4.316"},
            "huge": {"failing_since": 1.9e19},
            "huger": {"failing_since": 1e308},
            "negative": {"failing_since": -5},
            "text": {"failing_since": "yesterday"},
            "missing": {},
            "future": {"failing_since": 2100000000, "last_code": "\u001b[31m"},
            "": {"failing_since": 1800000000}
        }}"#;
        let l = parse(text.as_bytes(), now()).expect("parse");
        assert_eq!(l.skipped, 6);
        assert_eq!(l.clamped, 1);
        assert_eq!(l.streaks.len(), 2);
        assert_eq!(l.streaks["future"], (now(), None), "clamped, and the odd code dropped");
        assert_eq!(l.streaks["good"].1.as_deref(), Some("4.4.316"));
        assert!(parse(b"[]", now()).is_err());
        assert!(parse(b"{\"connectors\": 5}", now()).is_err());
    }
}
