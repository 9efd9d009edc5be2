//! The queue clock's memory: when each connector's current failure streak began. Kept in a small
//! JSON file, written atomically, so restarting the agent mid-outage does not reset how long
//! mail has been stuck.

use crate::timefmt::{from_unix_secs, unix_secs};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const FILE_NAME: &str = "queue-clock.json";
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    connectors: BTreeMap<String, Stored>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    failing_since: f64,
    #[serde(default)]
    last_code: Option<String>,
}

/// Failure streak start per connector.
pub type Streaks = BTreeMap<String, (SystemTime, Option<String>)>;

/// Why the queue clock could not be read or written. Never fatal to probing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("--storage.path {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_FILE_BYTES} bytes, ignored")]
    TooLarge { path: String },
    #[error("{path}: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Creates the directory if needed.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Store { dir: dir.to_path_buf() })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Missing file → empty. A damaged file is reported and treated as empty (never fatal).
    pub fn load(&self) -> Result<Streaks, StoreError> {
        let path = self.path();
        let shown = || path.display().to_string();
        let meta = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Streaks::new()),
            Err(source) => return Err(StoreError::Io { path: shown(), source }),
            Ok(m) => m,
        };
        if meta.len() > MAX_FILE_BYTES {
            return Err(StoreError::TooLarge { path: shown() });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| StoreError::Io { path: shown(), source })?;
        let file: StoreFile =
            serde_json::from_str(&text).map_err(|source| StoreError::Json { path: shown(), source })?;
        Ok(file
            .connectors
            .into_iter()
            .filter_map(|(k, v)| from_unix_secs(v.failing_since).map(|t| (k, (t, v.last_code))))
            .collect())
    }

    /// Write to a temporary file, fsync, rename over the old one, fsync the directory.
    pub fn save(&self, streaks: &Streaks) -> Result<(), StoreError> {
        let file = StoreFile {
            version: 1,
            connectors: streaks
                .iter()
                .map(|(k, (t, c))| {
                    (
                        k.clone(),
                        Stored {
                            failing_since: unix_secs(*t),
                            last_code: c.clone(),
                        },
                    )
                })
                .collect(),
        };
        let path = self.path();
        let data = serde_json::to_vec_pretty(&file).map_err(|source| StoreError::Json {
            path: path.display().to_string(),
            source,
        })?;
        let tmp = self.dir.join(format!(".{FILE_NAME}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            if let Ok(d) = std::fs::File::open(&self.dir) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn round_trip_and_damage() {
        let dir = std::env::temp_dir().join(format!("mailflow-store-{}", std::process::id()));
        let store = Store::open(&dir).expect("open");
        assert!(store.load().expect("empty").is_empty());
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut s = Streaks::new();
        s.insert("A: b".into(), (t, Some("4.4.316".into())));
        store.save(&s).expect("save");
        let back = store.load().expect("load");
        assert_eq!(back.get("A: b").map(|v| v.0), Some(t));
        std::fs::write(store.path(), b"{not json").expect("write");
        assert!(store.load().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
