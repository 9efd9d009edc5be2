//! SMTP client side: a bounded reply parser and a session that gives every step its own deadline.
//! The server is untrusted: lines, line counts and reply size are capped, and a server that
//! trickles bytes still fails when the step's deadline passes.

use super::{Phase, ProbeError, escape_bytes, sanitize};
use serde::Serialize;
use std::fmt;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

/// Caps on what a server may send in one reply.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes per line, CRLF included (RFC 5321 says 512; real servers stay far below 1000).
    pub max_line: usize,
    /// Lines per multiline reply.
    pub max_lines: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 1000,
            max_lines: 64,
        }
    }
}

/// One complete SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub code: u16,
    /// Text of each line after the code and separator (escaped, never raw control bytes).
    pub lines: Vec<String>,
}

impl Reply {
    pub fn class(&self) -> u16 {
        self.code / 100
    }
    /// Whether the server means "I am not serving you" (4xx/5xx).
    pub fn is_negative(&self) -> bool {
        matches!(self.class(), 4 | 5)
    }
    /// EHLO keywords (first word of every line but the first), upper-cased.
    pub fn keywords(&self) -> impl Iterator<Item = String> + '_ {
        self.lines
            .iter()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(|k| k.to_ascii_uppercase())
    }
    pub fn has_keyword(&self, kw: &str) -> bool {
        self.keywords().any(|k| k == kw)
    }
    /// First line, for Exchange-style messages.
    pub fn first_line(&self) -> String {
        match self.lines.first() {
            Some(t) if !t.is_empty() => format!("{} {}", self.code, t),
            _ => self.code.to_string(),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.first_line())?;
        if self.lines.len() > 1 {
            write!(f, " (+{} lines)", self.lines.len() - 1)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("reply with more than {0} lines")]
    TooManyLines(usize),
    #[error("not an SMTP reply: \"{0}\"")]
    NotSmtp(String),
    #[error("multiline reply changed code from {0} to {1}")]
    CodeMismatch(u16, u16),
}

/// Tries to parse one complete reply from the front of `buf`.
/// Returns `Ok(None)` when more bytes are needed, else the reply and the bytes it used.
/// Bare LF is accepted as a line end (some servers and proxies send it).
pub fn parse_reply(buf: &[u8], limits: Limits) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code: Option<u16> = None;
    let mut lines = Vec::new();
    loop {
        let rest = &buf[pos..];
        let nl = rest.iter().take(limits.max_line).position(|&b| b == b'\n');
        let Some(nl) = nl else {
            if rest.len() >= limits.max_line {
                return Err(ReplyError::LineTooLong(limits.max_line));
            }
            // Incomplete line: reject garbage early instead of waiting for a newline.
            check_prefix(rest)?;
            return Ok(None);
        };
        let mut line = &rest[..nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        pos += nl + 1;
        let (c, last, text) = parse_line(line)?;
        match code {
            None => code = Some(c),
            Some(prev) if prev != c => return Err(ReplyError::CodeMismatch(prev, c)),
            _ => {}
        }
        if lines.len() >= limits.max_lines {
            return Err(ReplyError::TooManyLines(limits.max_lines));
        }
        lines.push(escape_bytes(text, 400));
        if last {
            return Ok(Some((Reply { code: c, lines }, pos)));
        }
    }
}

/// Rejects a partial line that can no longer become a reply line (e.g. `SSH-2.0` or `HTTP/1.1`).
fn check_prefix(partial: &[u8]) -> Result<(), ReplyError> {
    for (i, &b) in partial.iter().enumerate().take(4) {
        let ok = match i {
            0 => (b'1'..=b'5').contains(&b),
            1 | 2 => b.is_ascii_digit(),
            _ => b == b' ' || b == b'-' || b == b'\r',
        };
        if !ok {
            return Err(ReplyError::NotSmtp(escape_bytes(partial, 60)));
        }
    }
    Ok(())
}

fn parse_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    let bad = || ReplyError::NotSmtp(escape_bytes(line, 60));
    if line.len() < 3 || !(b'1'..=b'5').contains(&line[0]) || !line[1].is_ascii_digit() || !line[2].is_ascii_digit() {
        return Err(bad());
    }
    let code = (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
    match line.get(3) {
        None => Ok((code, true, &[])),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(bad()),
    }
}

/// A short, escaped record of the dialogue for humans (bounded). One string with a line per
/// step: every connector keeps its last report, and a string per line cost an allocation each.
#[derive(Debug, Default, Clone)]
pub struct Transcript {
    text: String,
    lines: usize,
}

impl Transcript {
    const MAX_LINES: usize = 60;

    pub fn push(&mut self, who: &str, text: &str) {
        if self.lines > Self::MAX_LINES {
            return;
        }
        if self.lines > 0 {
            self.text.push('\n');
        }
        if self.lines < Self::MAX_LINES {
            // Escaped: no line break of the server's can split a line here.
            self.text.push_str(who);
            self.text.push(' ');
            self.text.push_str(&sanitize(text, 200));
        } else {
            self.text.push_str("… (transcript truncated)");
        }
        self.lines += 1;
    }

    pub fn lines(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.text.split('\n').filter(|_| self.lines > 0)
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Gives back what growing the text reserved (the report is kept).
    pub fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
    }
}

impl Serialize for Transcript {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.lines())
    }
}

/// An SMTP dialogue over any stream (plain TCP, then TLS).
pub struct Session<S> {
    pub stream: S,
    buf: Vec<u8>,
    limits: Limits,
    step_timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(stream: S, step_timeout: Duration, limits: Limits) -> Self {
        Session {
            stream,
            buf: Vec::with_capacity(1024),
            limits,
            step_timeout,
        }
    }

    /// Bytes received but not yet consumed (must be empty before a TLS handshake).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.stream, self.buf)
    }

    /// Reads one reply; the whole reply must arrive within one step timeout.
    pub async fn read_reply(&mut self, phase: Phase, transcript: &mut Transcript) -> Result<Reply, ProbeError> {
        let deadline = Instant::now() + self.step_timeout;
        let after = self.step_timeout;
        match timeout_at(deadline, self.read_reply_inner(phase)).await {
            Ok(Ok(reply)) => {
                for (i, l) in reply.lines.iter().enumerate() {
                    let sep = if i + 1 == reply.lines.len() { ' ' } else { '-' };
                    transcript.push("S:", &format!("{}{sep}{l}", reply.code));
                }
                Ok(reply)
            }
            Ok(Err(e)) => {
                if !self.buf.is_empty() {
                    transcript.push("S:", &format!("{} (incomplete)", escape_bytes(&self.buf, 120)));
                }
                Err(e)
            }
            Err(_) => {
                if !self.buf.is_empty() {
                    transcript.push("S:", &format!("{} (incomplete)", escape_bytes(&self.buf, 120)));
                }
                Err(ProbeError::TimeOutResponse { phase, after })
            }
        }
    }

    async fn read_reply_inner(&mut self, phase: Phase) -> Result<Reply, ProbeError> {
        let mut chunk = [0u8; 2048];
        loop {
            match parse_reply(&self.buf, self.limits) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(ProbeError::Protocol {
                        phase,
                        detail: e.to_string(),
                    });
                }
            }
            // Bounded: parse_reply errors once a line exceeds max_line or lines exceed max_lines.
            let n = self.stream.read(&mut chunk).await.map_err(|e| io_error(phase, &e))?;
            if n == 0 {
                return Err(ProbeError::Closed { phase });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one command line (CRLF added) within one step timeout.
    pub async fn send(&mut self, phase: Phase, line: &str, transcript: &mut Transcript) -> Result<(), ProbeError> {
        transcript.push("C:", line);
        let data = format!("{line}\r\n");
        let write = async {
            self.stream.write_all(data.as_bytes()).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.step_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io_error(phase, &e)),
            Err(_) => Err(ProbeError::TimeOutResponse {
                phase,
                after: self.step_timeout,
            }),
        }
    }

    /// Sends a command and reads its reply.
    pub async fn command(
        &mut self,
        phase: Phase,
        line: &str,
        transcript: &mut Transcript,
    ) -> Result<Reply, ProbeError> {
        self.send(phase, line, transcript).await?;
        self.read_reply(phase, transcript).await
    }
}

/// Maps an I/O error mid-dialogue to closed/reset (both 4.4.318).
pub(crate) fn io_error(phase: Phase, e: &io::Error) -> ProbeError {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe => {
            ProbeError::Reset { phase }
        }
        io::ErrorKind::UnexpectedEof => ProbeError::Closed { phase },
        io::ErrorKind::TimedOut => ProbeError::TimeOutResponse {
            phase,
            after: Duration::ZERO,
        },
        _ => ProbeError::Reset { phase },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<Option<(Reply, usize)>, ReplyError> {
        parse_reply(s.as_bytes(), Limits::default())
    }

    #[test]
    fn single_and_multiline() {
        let (r, n) = parse("220 mail.test ESMTP\r\n").expect("ok").expect("complete");
        assert_eq!((r.code, n), (220, 21));
        assert_eq!(r.lines, vec!["mail.test ESMTP"]);
        let (r, _) = parse("220-first\r\n220-second\r\n220 last\r\n")
            .expect("ok")
            .expect("complete");
        assert_eq!(r.lines.len(), 3);
        let ehlo = "250-mail.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 STARTTLS\r\n";
        let (r, _) = parse(ehlo).expect("ok").expect("complete");
        assert!(r.has_keyword("STARTTLS") && r.has_keyword("SIZE"));
        assert!(!r.has_keyword("MAIL.TEST"), "the greeting line is not a keyword");
    }

    #[test]
    fn bare_lf_and_code_only() {
        let (r, _) = parse("250-a\n250 b\n").expect("ok").expect("complete");
        assert_eq!(r.lines, vec!["a", "b"]);
        let (r, _) = parse("250\r\n").expect("ok").expect("complete");
        assert_eq!(r.code, 250);
    }

    #[test]
    fn incomplete_needs_more() {
        assert_eq!(parse("220-first\r\n220 la"), Ok(None));
        assert_eq!(parse("22"), Ok(None));
        assert_eq!(parse(""), Ok(None));
    }

    #[test]
    fn rejects_non_smtp_early() {
        assert!(matches!(parse("SSH-2.0-OpenSSH"), Err(ReplyError::NotSmtp(_))));
        assert!(matches!(parse("HTTP/1.1 400"), Err(ReplyError::NotSmtp(_))));
        assert!(matches!(parse("220x\r\n"), Err(ReplyError::NotSmtp(_))));
        assert!(matches!(parse("620 x\r\n"), Err(ReplyError::NotSmtp(_))));
    }

    #[test]
    fn limits() {
        let long = format!("220 {}", "A".repeat(2000));
        assert_eq!(parse(&long), Err(ReplyError::LineTooLong(1000)));
        let many = "250-x\r\n".repeat(100);
        assert_eq!(parse(&many), Err(ReplyError::TooManyLines(64)));
        assert_eq!(parse("250-a\r\n251 b\r\n"), Err(ReplyError::CodeMismatch(250, 251)));
    }

    #[test]
    fn control_bytes_are_escaped() {
        let (r, _) = parse("220 evil\x1b[2J\r\n").expect("ok").expect("complete");
        assert_eq!(r.lines[0], "evil\\x1b[2J");
    }

    proptest! {
        #[test]
        fn never_panics_and_consumes_within_input(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            if let Ok(Some((_, used))) = parse_reply(&data, Limits::default()) {
                prop_assert!(used <= data.len());
            }
        }

        #[test]
        fn split_points_do_not_change_the_result(
            lines in proptest::collection::vec("[ -~]{0,40}", 1..8),
            code in 200u16..=599,
            cut in 0usize..400,
        ) {
            let mut text = String::new();
            for (i, l) in lines.iter().enumerate() {
                let sep = if i + 1 == lines.len() { ' ' } else { '-' };
                text.push_str(&format!("{code}{sep}{l}\r\n"));
            }
            let bytes = text.as_bytes();
            let whole = parse_reply(bytes, Limits::default());
            let (reply, used) = whole.clone().expect("valid").expect("complete");
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(reply.lines.len(), lines.len());
            let cut = cut.min(bytes.len());
            if cut < bytes.len() {
                prop_assert_eq!(parse_reply(&bytes[..cut], Limits::default()), Ok(None));
            }
        }
    }
}
