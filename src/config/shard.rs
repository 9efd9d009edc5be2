//! Agent-side sharding (`--shard INDEX/COUNT`): each of COUNT agents probes the connectors whose
//! name hashes to its INDEX. The hash is Prometheus' `hashmod` (MD5 of the value, its last eight
//! bytes as a big-endian number, modulo COUNT), so agent shards and Prometheus replicas that
//! relabel `/probe?connector=` targets with `hashmod` on `__param_connector` split alike.

use md5::{Digest, Md5};
use std::fmt;

/// The most shards one fleet may have (a bound, not a recommendation).
pub const MAX_SHARDS: u32 = 1024;

/// This agent's share of the connectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// Why a `--shard` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("--shard {0:?}: expected INDEX/COUNT (e.g. 0/2) or hostname/COUNT")]
    Syntax(String),
    #[error("--shard {value:?}: COUNT must be 1 to {MAX_SHARDS}")]
    Count { value: String },
    #[error("--shard {value:?}: INDEX {index} is not below COUNT {count}")]
    Index { value: String, index: u32, count: u32 },
    #[error(
        "--shard {value:?}: the host name {host:?} does not end in -N (a StatefulSet pod's ordinal); give INDEX/COUNT instead"
    )]
    NoOrdinal { value: String, host: String },
}

impl Shard {
    /// `INDEX/COUNT`, or `hostname/COUNT` where INDEX is the trailing `-N` of `host()`.
    pub fn parse(value: &str, host: impl FnOnce() -> Option<String>) -> Result<Shard, ShardError> {
        let syntax = || ShardError::Syntax(value.to_string());
        let (index, count) = value.trim().split_once('/').ok_or_else(syntax)?;
        let count: u32 = count.trim().parse().map_err(|_| syntax())?;
        if count == 0 || count > MAX_SHARDS {
            return Err(ShardError::Count {
                value: value.to_string(),
            });
        }
        let index = match index.trim() {
            "hostname" => {
                let host = host().unwrap_or_default();
                ordinal(&host).ok_or(ShardError::NoOrdinal {
                    value: value.to_string(),
                    host,
                })?
            }
            n => n.parse().map_err(|_| syntax())?,
        };
        if index >= count {
            return Err(ShardError::Index {
                value: value.to_string(),
                index,
                count,
            });
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard probes the connector.
    pub fn owns(&self, connector: &str) -> bool {
        self.count <= 1 || hashmod(connector, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Prometheus' `hashmod` of one value.
pub fn hashmod(value: &str, modulus: u32) -> u32 {
    let digest = Md5::digest(value.as_bytes());
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&digest[8..16]);
    (u64::from_be_bytes(tail) % u64::from(modulus.max(1))) as u32
}

/// The `N` of `name-N` (a StatefulSet pod's host name).
fn ordinal(host: &str) -> Option<u32> {
    let host = host.trim().split('.').next()?;
    let (_, n) = host.rsplit_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_host() -> Option<String> {
        None
    }

    #[test]
    fn same_split_as_prometheus_hashmod() {
        // MD5's last eight bytes, big-endian, modulo: values worked out independently.
        assert_eq!(hashmod("Outbound to Contoso", 7), 0);
        assert_eq!(hashmod("Healthy", 2), 1);
        assert_eq!(hashmod("Healthy", 3), 2);
        assert_eq!(hashmod("Healthy", 7), 3);
        assert_eq!(hashmod("Refused", 2), 0);
        assert_eq!(hashmod("Refused", 7), 6);
        assert_eq!(hashmod("", 3), 1);
    }

    #[test]
    fn every_connector_has_exactly_one_owner() {
        for count in 1..=5 {
            let shards: Vec<Shard> = (0..count).map(|index| Shard { index, count }).collect();
            for i in 0..500 {
                let name = format!("Connector {i}");
                assert_eq!(shards.iter().filter(|s| s.owns(&name)).count(), 1, "{name} of {count}");
            }
        }
    }

    #[test]
    fn parses_index_count_and_ordinals() {
        assert_eq!(Shard::parse("1/3", no_host), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(Shard::parse(" 0/1 ", no_host), Ok(Shard { index: 0, count: 1 }));
        let host = || Some("mailflow-exporter-2.mailflow.svc".to_string());
        assert_eq!(Shard::parse("hostname/3", host), Ok(Shard { index: 2, count: 3 }));
        assert!(matches!(
            Shard::parse("hostname/2", host),
            Err(ShardError::Index { index: 2, count: 2, .. })
        ));
        assert!(matches!(
            Shard::parse("hostname/2", || Some("worker".into())),
            Err(ShardError::NoOrdinal { .. })
        ));
        assert!(matches!(
            Shard::parse("hostname/2", || Some("web-x1".into())),
            Err(ShardError::NoOrdinal { .. })
        ));
        for bad in ["", "1", "a/2", "1/b", "-1/2", "1/2/3"] {
            assert!(
                matches!(Shard::parse(bad, no_host), Err(ShardError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(Shard::parse("0/0", no_host), Err(ShardError::Count { .. })));
        assert!(matches!(Shard::parse("0/1025", no_host), Err(ShardError::Count { .. })));
        assert!(matches!(Shard::parse("3/3", no_host), Err(ShardError::Index { .. })));
    }
}
