//! The standard `process_*` metrics, named as the Prometheus client libraries name them, read
//! from `/proc/self` at scrape time (Linux; elsewhere they are left out), and the build's facts.

use std::time::{SystemTime, UNIX_EPOCH};

/// One reading of this process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// Reads `/proc/self`; None where there is no procfs.
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())
    });
    let mut s = parse_stat(
        &stat,
        rustix::param::clock_ticks_per_second(),
        rustix::param::page_size() as u64,
    )?;
    if let Some(boot) = boot {
        s.start_time_seconds += boot as f64;
    } else {
        s.start_time_seconds = 0.0;
    }
    s.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
    s.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| parse_max_open_files(&l));
    Some(s)
}

/// Fields of `/proc/self/stat` after the command name (which may hold spaces and parentheses):
/// utime (14), stime (15), starttime (22), vsize (23), rss (24), 1-based as in proc(5). The
/// start time is returned in seconds since boot.
fn parse_stat(stat: &str, ticks: u64, page: u64) -> Option<ProcessStats> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `f[0]` is field 3 (state).
    let field = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    let ticks = ticks.max(1) as f64;
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        start_time_seconds: field(22)? as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(page),
        open_fds: None,
        max_fds: None,
    })
}

fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// What the binary was built from, for `mailflow_build_info`.
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
    pub rustc: &'static str,
    pub target: &'static str,
}

pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    revision: env!("MAILFLOW_BUILD_REVISION"),
    rustc: env!("MAILFLOW_BUILD_RUSTC"),
    target: env!("MAILFLOW_BUILD_TARGET"),
};

/// Seconds since the epoch now (for tests that compare with the start time).
pub fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_hostile_command_name() {
        let stat = "4242 (mail) flow (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 12345 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(stat, 100, 4096).expect("parse");
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.start_time_seconds, 123.45);
        assert_eq!(s.virtual_bytes, 104_857_600);
        assert_eq!(s.resident_bytes, 2560 * 4096);
        assert_eq!(parse_stat("garbage", 100, 4096), None);
    }

    #[test]
    fn reads_this_process() {
        let s = read().expect("procfs on Linux");
        assert!(s.resident_bytes > 0 && s.open_fds.is_some_and(|n| n > 0));
        assert!(s.start_time_seconds > 1.0e9 && s.start_time_seconds <= now_seconds());
        assert_eq!(
            parse_max_open_files("Max open files            1024                 524288               files     "),
            Some(1024)
        );
    }
}
