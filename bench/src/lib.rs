//! Shared by the farm and the floor: command-line options, process CPU time, SMTP replies.
#![forbid(unsafe_code)]

use std::io;
use std::str::FromStr;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// The unit of utime/stime in /proc/PID/stat: USER_HZ, 100 on every Linux ABI this runs on.
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds of this process (all its threads, living and exited).
pub fn process_cpu_seconds() -> io::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Field 2 (the command) may hold spaces; the fields after its closing ')' are fixed:
    // state is field 3, utime 14, stime 15.
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/self/stat");
    let rest = stat.rsplit_once(')').ok_or_else(bad)?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or_else(bad);
    Ok((tick(11)? + tick(12)?) as f64 / USER_HZ)
}

/// On-CPU seconds of the calling thread (user + system, nanosecond resolution), from
/// /proc/thread-self/schedstat. For a single-threaded loop this is the process's CPU, without
/// the 10 ms granularity of /proc/self/stat.
pub fn thread_cpu_seconds() -> io::Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let ns = stat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok());
    ns.map(|ns| ns as f64 / 1e9)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected schedstat"))
}

/// Every value of `--name VALUE` on the command line, in order.
pub fn opts(name: &str) -> Vec<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).filter(|w| w[0] == name).map(|w| w[1].clone()).collect()
}

/// The last `--name VALUE`, parsed, or `default` when absent.
pub fn opt<T: FromStr>(name: &str, default: Option<T>) -> Result<T, String> {
    match opts(name).pop() {
        Some(v) => v.parse().map_err(|_| format!("{name}: cannot parse {v:?}")),
        None => default.ok_or_else(|| format!("{name} is required")),
    }
}

/// Longest line either side reads (RFC 5321 allows 1000 with CRLF).
pub const MAX_LINE: u64 = 1000;

/// One line, without CRLF; `None` at end of stream. Longer lines are an error.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Option<String>> {
    let mut line = String::new();
    let n = r.take(MAX_LINE + 1).read_line(&mut line).await?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with('\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long or cut"));
    }
    line.truncate(line.trim_end_matches(['\r', '\n']).len());
    Ok(Some(line))
}

/// A whole (possibly multi-line) SMTP reply: its code and its lines' text.
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub async fn read<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = read_line(r).await?.ok_or(io::ErrorKind::UnexpectedEof)?;
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
            let (Some(code), sep) = (code, line.as_bytes().get(3).copied()) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad reply {line:?}"),
                ));
            };
            lines.push(line.get(4..).unwrap_or("").to_string());
            if sep != Some(b'-') {
                return Ok(Reply { code, lines });
            }
            if lines.len() > 64 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"));
            }
        }
    }

    /// The reply, or an error naming `step` when its code is not `want`.
    pub fn expect(self, step: &str, want: u16) -> io::Result<Reply> {
        if self.code == want {
            Ok(self)
        } else {
            let text = self.lines.join(" / ");
            Err(io::Error::other(format!(
                "{step}: expected {want}, got {} {text}",
                self.code
            )))
        }
    }

    pub fn offers(&self, keyword: &str) -> bool {
        self.lines.iter().any(|l| l.eq_ignore_ascii_case(keyword))
    }
}
