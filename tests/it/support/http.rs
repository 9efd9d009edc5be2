//! A small HTTP/1.1 client: one request per connection, read to the end within a deadline. Hand
//! rolled so the tests see the exporter's bytes (status, headers, chunking) exactly as sent.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// One exchange with the exporter (a `/probe` runs a probe with 1 s step timeouts).
pub const HTTP_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end, within
/// [`HTTP_DEADLINE`]. Errors are strings for the caller's panic message.
pub async fn request(addr: SocketAddr, method: &str, target: &str, accept: Option<&str>) -> Result<Resp, String> {
    tokio::time::timeout(HTTP_DEADLINE, exchange(addr, method, target, accept))
        .await
        .map_err(|_| format!("{method} {target}: no complete response within {HTTP_DEADLINE:?}"))?
}

/// [`request`] from the loopback address `src` (a client other than 127.0.0.1).
pub async fn request_from(
    src: IpAddr,
    addr: SocketAddr,
    method: &str,
    target: &str,
    accept: Option<&str>,
) -> Result<Resp, String> {
    tokio::time::timeout(HTTP_DEADLINE, async {
        let s = super::net::connect_from(src, addr, HTTP_DEADLINE)
            .await
            .map_err(|e| format!("connect {src} -> {addr}: {e}"))?;
        exchange_on(s, addr, method, target, accept).await
    })
    .await
    .map_err(|_| format!("{method} {target} from {src}: no complete response within {HTTP_DEADLINE:?}"))?
}

async fn exchange(addr: SocketAddr, method: &str, target: &str, accept: Option<&str>) -> Result<Resp, String> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    exchange_on(s, addr, method, target, accept).await
}

async fn exchange_on(
    s: TcpStream,
    addr: SocketAddr,
    method: &str,
    target: &str,
    accept: Option<&str>,
) -> Result<Resp, String> {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    exchange_with(s, &addr.to_string(), method, target, &headers).await
}

/// One request with extra headers over any stream (plain TCP or TLS), read to the end. A TLS
/// peer that closes without close_notify after a complete response is not an error.
pub async fn exchange_with<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<Resp, String> {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    if method == "POST" || method == "PUT" {
        req += "Content-Length: 0\r\n";
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(format!("read: {e}")),
    }
    parse_response(&raw).map_err(|e| format!("{method} {target}: {e}\n{}", String::from_utf8_lossy(&raw)))
}

fn parse_response(raw: &[u8]) -> Result<Resp, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| format!("head not UTF-8: {e}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for l in lines {
        let (n, v) = l.split_once(':').ok_or_else(|| format!("bad header {l:?}"))?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let rest = &raw[end + 4..];
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().map_err(|_| format!("bad content-length {len:?}"))?;
        if rest.len() < len {
            return Err(format!("body cut short: {} of {len} bytes", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    // A gzip body is checked to be whole gzip and read decompressed (bounded: 256 MB).
    let body = if get("content-encoding").is_some_and(|e| e.eq_ignore_ascii_case("gzip")) {
        use std::io::Read;
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(body.as_slice())
            .take(256 << 20)
            .read_to_end(&mut text)
            .map_err(|e| format!("gzip body: {e}"))?;
        text
    } else {
        body
    };
    let body = String::from_utf8(body).map_err(|e| format!("body not UTF-8: {e}"))?;
    Ok(Resp { status, headers, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or("chunk size line")?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|e| e.to_string())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err("chunk cut short".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(b as char);
        } else {
            o += &format!("%{b:02X}");
        }
    }
    o
}
