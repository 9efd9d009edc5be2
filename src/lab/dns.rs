//! In-process fake authoritative DNS server for loopback tests.
//!
//! The wire format (RFC 1035) is hand-rolled instead of borrowed from hickory so that the
//! resolver under test is checked against bytes we control, and so that faults real servers
//! produce only occasionally (silence, SERVFAIL, REFUSED, null MX, truncation) are one line of
//! test setup away. UDP and TCP share one port because resolvers fall back from one to the other
//! on the same address.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;
use tracing::{debug, warn};

/// Largest UDP datagram we read; anything longer is cut by the kernel and then rejected.
const UDP_BUF: usize = 4096;
/// Payload size a UDP answer may use when the query carries no EDNS (RFC 1035 §4.2.1).
const CLASSIC_UDP_LIMIT: usize = 512;
/// UDP payload size we advertise in our own OPT record (the DNS flag day 2020 value).
const OUR_EDNS_PAYLOAD: u16 = 1232;
/// A stalled or idle TCP peer must not pin a task forever.
const TCP_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Queries served per TCP connection before we close it, so one peer cannot hold a task forever.
const TCP_MAX_QUERIES: usize = 16;
/// Concurrent TCP connections; more are closed on accept.
const TCP_MAX_CONNS: usize = 64;
/// How often `start` retries when the TCP side of the chosen UDP port is already taken.
const BIND_ATTEMPTS: usize = 16;
/// TTL of every record we serve.
const TTL: u32 = 60;
/// Back-off after an accept/recv error, so a persistent error cannot spin a core.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

const HEADER_LEN: usize = 12;
const MAX_LABEL_LEN: usize = 63;
const MAX_NAME_WIRE_LEN: usize = 255;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_MX: u16 = 15;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
const OPCODE_MASK: u16 = 0x7800;

const RCODE_NOERROR: u16 = 0;
const RCODE_SERVFAIL: u16 = 2;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_REFUSED: u16 = 5;

/// One resource record in an answer; the owner name is always the queried name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Mail exchanger: preference and exchange host. Exchange `"."` is a null MX (RFC 7505),
    /// the domain's way of saying it accepts no mail, which mail code must not treat as a host.
    Mx(u16, String),
    /// Alias, served verbatim whatever the query type, so tests see whether the client chases it.
    Cname(String),
}

/// What the server does with a query, covering the outcomes a DNS client must distinguish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// NOERROR with these records in the answer section (of any kind, whatever was asked).
    Records(Vec<Record>),
    /// NOERROR with an empty answer: the name exists but has no data of this type.
    NoData,
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// SERVFAIL: the server could not answer (e.g. broken upstream or DNSSEC).
    ServFail,
    /// REFUSED: the server will not answer for this name.
    Refused,
    /// Never answer (client times out).
    Silent,
}

/// Query types a mail client asks for; other types fall back to the default rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qtype {
    /// IPv4 address (type 1).
    A,
    /// IPv6 address (type 28).
    Aaaa,
    /// Mail exchanger (type 15).
    Mx,
}

impl Qtype {
    fn from_code(code: u16) -> Option<Self> {
        match code {
            TYPE_A => Some(Self::A),
            TYPE_AAAA => Some(Self::Aaaa),
            TYPE_MX => Some(Self::Mx),
            _ => None,
        }
    }
}

/// Answers for one owner name.
#[derive(Debug, Default, Clone)]
struct NameEntry {
    by_type: HashMap<Qtype, Answer>,
    all: Option<Answer>,
}

/// The answers a [`FakeDns`] gives, keyed by lower-cased name without trailing dot.
///
/// Anything not set follows what a real authoritative server does: a name that has an answer
/// set for some other type gets NoData, an unknown name gets NXDOMAIN.
#[derive(Debug, Default, Clone)]
pub struct Zone {
    names: HashMap<String, NameEntry>,
}

static NO_DATA: Answer = Answer::NoData;
static NX_DOMAIN: Answer = Answer::NxDomain;
static REFUSED: Answer = Answer::Refused;

impl Zone {
    /// An empty zone: every name is NXDOMAIN.
    pub fn new() -> Self {
        Self::default()
    }

    /// answer for (name, qtype); names case-insensitive, trailing dot optional
    pub fn set(&mut self, name: &str, qtype: Qtype, answer: Answer) -> &mut Self {
        self.names
            .entry(normalize(name))
            .or_default()
            .by_type
            .insert(qtype, answer);
        self
    }

    /// answer for every qtype of `name` not set explicitly (e.g. whole name is NXDOMAIN/SERVFAIL/Silent)
    ///
    /// This also covers query types outside [`Qtype`], so a whole-name fault looks the same to
    /// any query.
    pub fn set_all(&mut self, name: &str, answer: Answer) -> &mut Self {
        self.names.entry(normalize(name)).or_default().all = Some(answer);
        self
    }

    /// `name` must already be normalized (see [`normalize`]).
    fn lookup(&self, name: &str, qtype: u16) -> &Answer {
        let Some(entry) = self.names.get(name) else {
            return &NX_DOMAIN;
        };
        let explicit = Qtype::from_code(qtype).and_then(|t| entry.by_type.get(&t));
        match explicit.or(entry.all.as_ref()) {
            Some(answer) => answer,
            None if entry.by_type.is_empty() => &NX_DOMAIN,
            None => &NO_DATA,
        }
    }
}

/// Zone key: ASCII lower case, one trailing dot dropped; the root is `""`.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// A running fake DNS server; dropping it stops the server.
pub struct FakeDns {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    zone: RwLock<Arc<Zone>>,
    queries: AtomicUsize,
}

impl FakeDns {
    /// Serve `zone` over UDP and TCP on one ephemeral port of 127.0.0.1.
    ///
    /// Must be called inside a Tokio runtime, which runs the server tasks.
    pub async fn start(zone: Zone) -> io::Result<FakeDns> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), zone).await
    }

    /// Serve `zone` over UDP and TCP on `addr`; port 0 picks one port free for both.
    pub async fn start_on(addr: SocketAddr, zone: Zone) -> io::Result<FakeDns> {
        let (udp, tcp) = bind_pair(addr).await?;
        let addr = udp.local_addr()?;
        let shared = Arc::new(Shared {
            zone: RwLock::new(Arc::new(zone)),
            queries: AtomicUsize::new(0),
        });
        let tasks = vec![
            tokio::spawn(serve_udp(udp, Arc::clone(&shared))),
            tokio::spawn(serve_tcp(tcp, Arc::clone(&shared))),
        ];
        debug!(%addr, "fake DNS listening");
        Ok(FakeDns { addr, shared, tasks })
    }

    /// Address to point the resolver at (same port for UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Well-formed queries received over UDP and TCP, answered or not (Silent counts too), so
    /// tests can tell "client never asked" from "client asked and gave up". Malformed packets
    /// are not counted.
    pub fn queries(&self) -> usize {
        self.shared.queries.load(Ordering::SeqCst)
    }

    /// Swap the answers at runtime, e.g. to make a healthy name fail mid-test.
    pub fn replace_zone(&self, zone: Zone) {
        *self.shared.zone.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(zone);
    }
}

impl fmt::Debug for FakeDns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeDns")
            .field("addr", &self.addr)
            .field("queries", &self.queries())
            .finish_non_exhaustive()
    }
}

impl Drop for FakeDns {
    /// Abort the server tasks so the sockets close with the value; aborting the TCP accept
    /// task drops its `JoinSet`, which aborts every connection task too.
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Bind UDP and TCP on the same address. With port 0 the kernel picks the UDP port, and the
/// TCP port of that number may be taken by someone else, so retry with a fresh UDP port.
async fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(addr).await?;
        return Ok((udp, tcp));
    }
    let mut last_err = None;
    for _ in 0..BIND_ATTEMPTS {
        let udp = UdpSocket::bind(addr).await?;
        let chosen = udp.local_addr()?;
        match TcpListener::bind(chosen).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(err) => {
                debug!(%chosen, %err, "TCP side of UDP port taken, retrying");
                last_err = Some(err);
            }
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no port free for both UDP and TCP")))
}

impl Shared {
    fn handle(&self, packet: &[u8], transport: Transport) -> Outcome {
        let zone = Arc::clone(&self.zone.read().unwrap_or_else(PoisonError::into_inner));
        let outcome = respond(&zone, packet, transport);
        if !matches!(outcome, Outcome::Malformed) {
            self.queries.fetch_add(1, Ordering::SeqCst);
        }
        outcome
    }
}

async fn serve_udp(sock: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0u8; UDP_BUF];
    loop {
        let (len, peer) = match sock.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(err) => {
                debug!(%err, "fake DNS UDP receive failed");
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let Some(packet) = buf.get(..len) else {
            continue;
        };
        match shared.handle(packet, Transport::Udp) {
            Outcome::Reply(reply) => {
                if let Err(err) = sock.send_to(&reply, peer).await {
                    debug!(%peer, %err, "fake DNS UDP send failed");
                }
            }
            Outcome::Malformed => debug!(%peer, len, "fake DNS ignored malformed UDP packet"),
            Outcome::Silent => {}
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while conns.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                if conns.len() >= TCP_MAX_CONNS {
                    debug!(%peer, "fake DNS at TCP connection limit, closing");
                    continue;
                }
                conns.spawn(serve_tcp_conn(stream, Arc::clone(&shared)));
            }
            Err(err) => {
                debug!(%err, "fake DNS TCP accept failed");
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
}

/// One connection: length-prefixed messages (RFC 1035 §4.2.2), closed on malformed input,
/// timeout or after [`TCP_MAX_QUERIES`].
async fn serve_tcp_conn(mut stream: TcpStream, shared: Arc<Shared>) {
    for _ in 0..TCP_MAX_QUERIES {
        let message = match timeout(TCP_IO_TIMEOUT, read_frame(&mut stream)).await {
            Ok(Ok(message)) => message,
            Ok(Err(_)) | Err(_) => return,
        };
        let reply = match shared.handle(&message, Transport::Tcp) {
            Outcome::Reply(reply) => reply,
            Outcome::Silent => continue,
            Outcome::Malformed => {
                debug!("fake DNS closing TCP connection after malformed message");
                return;
            }
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if !matches!(timeout(TCP_IO_TIMEOUT, stream.write_all(&framed)).await, Ok(Ok(()))) {
            return;
        }
    }
}

/// Read one length-prefixed message; the u16 prefix bounds it to 65535 bytes.
async fn read_frame(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut message = vec![0u8; usize::from(len)];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Not a query we understand: ignore (UDP) or close (TCP).
    Malformed,
    /// Deliberately no answer.
    Silent,
    /// The response message, without TCP length prefix.
    Reply(Vec<u8>),
}

/// Parse `packet` and build the response `zone` dictates. Pure, so the fuzz test covers it all.
fn respond(zone: &Zone, packet: &[u8], transport: Transport) -> Outcome {
    let Some(query) = parse_query(packet) else {
        return Outcome::Malformed;
    };
    // Everything we serve is class IN; a client asking another class gets a clear refusal.
    let answer = if query.qclass == CLASS_IN {
        zone.lookup(&query.name, query.qtype)
    } else {
        &REFUSED
    };
    match build_response(&query, answer, transport) {
        Some(reply) => Outcome::Reply(reply),
        None => Outcome::Silent,
    }
}

/// The parts of a query the response needs.
#[derive(Debug)]
struct Query<'a> {
    id: u16,
    rd: bool,
    /// The whole question section as received, echoed verbatim so the client's case (0x20
    /// randomization) survives.
    question: &'a [u8],
    /// The query name as received, used as owner of every answer record.
    qname_wire: &'a [u8],
    /// Normalized query name (see [`normalize`]) for the zone lookup.
    name: String,
    qtype: u16,
    qclass: u16,
    /// UDP payload size from the client's OPT record, if it sent one.
    edns_payload: Option<u16>,
}

/// Bounds-checked reader over a packet; every accessor returns `None` past the end.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// Read an uncompressed name and return it normalized. Compression pointers (and the reserved
/// 0x40/0x80 label types) are rejected outright: a query never needs them, and refusing them
/// rules out pointer loops without any loop detection.
fn parse_name(cursor: &mut Cursor<'_>) -> Option<String> {
    let start = cursor.pos;
    let mut name = String::new();
    loop {
        let len = usize::from(cursor.u8()?);
        if len == 0 {
            break;
        }
        if len > MAX_LABEL_LEN {
            return None;
        }
        let label = cursor.take(len)?;
        if cursor.pos - start >= MAX_NAME_WIRE_LEN {
            return None;
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
    }
    Some(name)
}

/// Parse a standard query with exactly one question. Records in the other sections are
/// skipped (bounds-checked); only an OPT in the additional section is noted.
fn parse_query(packet: &[u8]) -> Option<Query<'_>> {
    let mut c = Cursor::new(packet);
    let id = c.u16()?;
    let flags = c.u16()?;
    let qdcount = c.u16()?;
    let ancount = c.u16()?;
    let nscount = c.u16()?;
    let arcount = c.u16()?;
    // Never answer a response: two fake servers (or a spoofed source) could ping-pong forever.
    if flags & FLAG_QR != 0 || flags & OPCODE_MASK != 0 || qdcount != 1 {
        return None;
    }
    let question_start = c.pos;
    let name = parse_name(&mut c)?;
    let qname_wire = packet.get(question_start..c.pos)?;
    let qtype = c.u16()?;
    let qclass = c.u16()?;
    let question = packet.get(question_start..c.pos)?;

    let before_additional = u32::from(ancount) + u32::from(nscount);
    let mut edns_payload = None;
    for index in 0..before_additional + u32::from(arcount) {
        parse_name(&mut c)?;
        let rtype = c.u16()?;
        let class = c.u16()?;
        let _ttl = c.u32()?;
        let rdlen = c.u16()?;
        c.take(usize::from(rdlen))?;
        if index >= before_additional && rtype == TYPE_OPT {
            edns_payload = Some(class);
        }
    }
    Some(Query {
        id,
        rd: flags & FLAG_RD != 0,
        question,
        qname_wire,
        name,
        qtype,
        qclass,
        edns_payload,
    })
}

/// Append `name` in uncompressed wire form; `false` if it is not a valid domain name.
fn encode_name(name: &str, out: &mut Vec<u8>) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let start = out.len();
    if !name.is_empty() {
        for label in name.split('.') {
            let Ok(len) = u8::try_from(label.len()) else {
                return false;
            };
            if len == 0 || usize::from(len) > MAX_LABEL_LEN {
                return false;
            }
            out.push(len);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    out.len() - start <= MAX_NAME_WIRE_LEN
}

fn push_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// Append one answer record owned by the query name; `false` if the record's data is invalid.
fn encode_record(owner: &[u8], record: &Record, out: &mut Vec<u8>) -> bool {
    let mut rdata = Vec::new();
    let rtype = match record {
        Record::A(ip) => {
            rdata.extend_from_slice(&ip.octets());
            TYPE_A
        }
        Record::Aaaa(ip) => {
            rdata.extend_from_slice(&ip.octets());
            TYPE_AAAA
        }
        Record::Mx(preference, exchange) => {
            push_u16(&mut rdata, *preference);
            if !encode_name(exchange, &mut rdata) {
                return false;
            }
            TYPE_MX
        }
        Record::Cname(target) => {
            if !encode_name(target, &mut rdata) {
                return false;
            }
            TYPE_CNAME
        }
    };
    let Ok(rdlen) = u16::try_from(rdata.len()) else {
        return false;
    };
    out.extend_from_slice(owner);
    push_u16(out, rtype);
    push_u16(out, CLASS_IN);
    out.extend_from_slice(&TTL.to_be_bytes());
    push_u16(out, rdlen);
    out.extend_from_slice(&rdata);
    true
}

/// The response message for `answer`, or `None` for [`Answer::Silent`].
///
/// Over UDP an answer that does not fit the client's payload size (512 without EDNS) is
/// replaced by an empty one with TC set, which sends a correct client to TCP.
fn build_response(query: &Query<'_>, answer: &Answer, transport: Transport) -> Option<Vec<u8>> {
    let (rcode, records): (u16, &[Record]) = match answer {
        Answer::Records(records) => (RCODE_NOERROR, records),
        Answer::NoData => (RCODE_NOERROR, &[]),
        Answer::NxDomain => (RCODE_NXDOMAIN, &[]),
        Answer::ServFail => (RCODE_SERVFAIL, &[]),
        Answer::Refused => (RCODE_REFUSED, &[]),
        Answer::Silent => return None,
    };
    let mut answers = Vec::new();
    let count = u16::try_from(records.len()).ok();
    let valid = count.is_some()
        && records
            .iter()
            .all(|record| encode_record(query.qname_wire, record, &mut answers));
    let Some(count) = count.filter(|_| valid) else {
        warn!(name = %query.name, ?records, "fake DNS zone holds an unencodable answer, sending SERVFAIL");
        return Some(message(query, RCODE_SERVFAIL, 0, &[], false));
    };
    let full = message(query, rcode, count, &answers, false);
    let limit = match query.edns_payload {
        Some(payload) => usize::from(payload).max(CLASSIC_UDP_LIMIT),
        None => CLASSIC_UDP_LIMIT,
    };
    if transport == Transport::Udp && full.len() > limit {
        return Some(message(query, rcode, 0, &[], true));
    }
    Some(full)
}

/// Assemble header, echoed question, answers and (if the client used EDNS) a minimal OPT.
fn message(query: &Query<'_>, rcode: u16, ancount: u16, answers: &[u8], truncated: bool) -> Vec<u8> {
    let mut flags = FLAG_QR | FLAG_AA | FLAG_RA | rcode;
    if query.rd {
        flags |= FLAG_RD;
    }
    if truncated {
        flags |= FLAG_TC;
    }
    let edns = query.edns_payload.is_some();
    let mut out = Vec::with_capacity(HEADER_LEN + query.question.len() + answers.len() + 11);
    push_u16(&mut out, query.id);
    push_u16(&mut out, flags);
    push_u16(&mut out, 1);
    push_u16(&mut out, ancount);
    push_u16(&mut out, 0);
    push_u16(&mut out, u16::from(edns));
    out.extend_from_slice(query.question);
    out.extend_from_slice(answers);
    if edns {
        // OPT (RFC 6891): root owner, class = our UDP payload size, TTL = extended rcode 0,
        // version 0, no DO bit; no options.
        out.push(0);
        push_u16(&mut out, TYPE_OPT);
        push_u16(&mut out, OUR_EDNS_PAYLOAD);
        out.extend_from_slice(&0u32.to_be_bytes());
        push_u16(&mut out, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const TYPE_TXT: u16 = 16;
    const REPLY_WAIT: Duration = Duration::from_secs(2);
    const SILENCE_WAIT: Duration = Duration::from_millis(300);

    fn query_packet(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut p = Vec::new();
        push_u16(&mut p, id);
        push_u16(&mut p, FLAG_RD);
        push_u16(&mut p, 1);
        push_u16(&mut p, 0);
        push_u16(&mut p, 0);
        push_u16(&mut p, u16::from(edns.is_some()));
        assert!(encode_name(name, &mut p), "test name {name:?} must encode");
        push_u16(&mut p, qtype);
        push_u16(&mut p, CLASS_IN);
        if let Some(payload) = edns {
            p.push(0);
            push_u16(&mut p, TYPE_OPT);
            push_u16(&mut p, payload);
            p.extend_from_slice(&0u32.to_be_bytes());
            push_u16(&mut p, 0);
        }
        p
    }

    #[derive(Debug)]
    struct Rr {
        owner: String,
        rtype: u16,
        class: u16,
        ttl: u32,
        rdata: Vec<u8>,
    }

    #[derive(Debug)]
    struct Decoded {
        id: u16,
        flags: u16,
        qname: String,
        qtype: u16,
        answers: Vec<Rr>,
        authority_count: u16,
        additionals: Vec<Rr>,
    }

    impl Decoded {
        fn rcode(&self) -> u16 {
            self.flags & 0x000f
        }
        fn has(&self, flag: u16) -> bool {
            self.flags & flag != 0
        }
    }

    /// Question name with the case as sent (the parser lower-cases, so re-read raw labels).
    fn raw_name(wire: &[u8]) -> String {
        let mut labels = Vec::new();
        let mut c = Cursor::new(wire);
        while let Some(len) = c.u8().filter(|&l| l != 0) {
            let label = c.take(usize::from(len)).expect("label");
            labels.push(String::from_utf8_lossy(label).into_owned());
        }
        labels.join(".")
    }

    fn read_rr(c: &mut Cursor<'_>) -> Rr {
        let owner = parse_name(c).expect("owner name");
        let rtype = c.u16().expect("type");
        let class = c.u16().expect("class");
        let ttl = c.u32().expect("ttl");
        let rdlen = c.u16().expect("rdlen");
        let rdata = c.take(usize::from(rdlen)).expect("rdata").to_vec();
        Rr {
            owner,
            rtype,
            class,
            ttl,
            rdata,
        }
    }

    fn decode(bytes: &[u8]) -> Decoded {
        let mut c = Cursor::new(bytes);
        let id = c.u16().expect("id");
        let flags = c.u16().expect("flags");
        let qd = c.u16().expect("qdcount");
        let an = c.u16().expect("ancount");
        let ns = c.u16().expect("nscount");
        let ar = c.u16().expect("arcount");
        assert_eq!(qd, 1, "question must be echoed");
        let qstart = c.pos;
        parse_name(&mut c).expect("question name");
        let qname = raw_name(&bytes[qstart..c.pos]);
        let qtype = c.u16().expect("qtype");
        assert_eq!(c.u16(), Some(CLASS_IN));
        let answers = (0..an).map(|_| read_rr(&mut c)).collect();
        for _ in 0..ns {
            read_rr(&mut c);
        }
        let additionals = (0..ar).map(|_| read_rr(&mut c)).collect();
        assert_eq!(c.pos, bytes.len(), "no trailing bytes");
        Decoded {
            id,
            flags,
            qname,
            qtype,
            answers,
            authority_count: ns,
            additionals,
        }
    }

    fn rdata_name(rdata: &[u8]) -> String {
        let mut c = Cursor::new(rdata);
        let name = parse_name(&mut c).expect("name in rdata");
        assert_eq!(c.pos, rdata.len());
        name
    }

    async fn udp_exchange(addr: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind client");
        sock.send_to(packet, addr).await.expect("send");
        let mut buf = vec![0u8; 65535];
        match timeout(wait, sock.recv_from(&mut buf)).await {
            Ok(Ok((len, _))) => Some(buf[..len].to_vec()),
            _ => None,
        }
    }

    async fn udp_ask(addr: SocketAddr, packet: &[u8]) -> Decoded {
        let reply = udp_exchange(addr, packet, REPLY_WAIT).await.expect("UDP reply");
        decode(&reply)
    }

    async fn tcp_send(stream: &mut TcpStream, packet: &[u8]) {
        let len = u16::try_from(packet.len()).expect("fits");
        stream.write_all(&len.to_be_bytes()).await.expect("write");
        stream.write_all(packet).await.expect("write");
    }

    async fn tcp_recv(stream: &mut TcpStream) -> Option<Vec<u8>> {
        timeout(REPLY_WAIT, read_frame(stream))
            .await
            .expect("TCP reply in time")
            .ok()
    }

    fn sample_zone() -> Zone {
        let mut zone = Zone::new();
        zone.set(
            "host.example.test",
            Qtype::A,
            Answer::Records(vec![
                Record::A(Ipv4Addr::new(192, 0, 2, 1)),
                Record::A(Ipv4Addr::new(192, 0, 2, 2)),
            ]),
        )
        .set(
            "host.example.test.",
            Qtype::Aaaa,
            Answer::Records(vec![Record::Aaaa("2001:db8::1".parse().expect("v6"))]),
        )
        .set(
            "example.test",
            Qtype::Mx,
            Answer::Records(vec![
                Record::Mx(10, "mx1.example.test".into()),
                Record::Mx(20, "MX2.example.test.".into()),
            ]),
        )
        .set(
            "nomail.test",
            Qtype::Mx,
            Answer::Records(vec![Record::Mx(0, ".".into())]),
        )
        .set(
            "alias.example.test",
            Qtype::A,
            Answer::Records(vec![Record::Cname("host.example.test".into())]),
        )
        .set_all("broken.test", Answer::ServFail)
        .set("refused.test", Qtype::A, Answer::Refused)
        .set_all("silent.test", Answer::Silent)
        .set_all("gone.test", Answer::NxDomain)
        .set(
            "gone.test",
            Qtype::Mx,
            Answer::Records(vec![Record::Mx(5, "mx.gone.test".into())]),
        );
        zone
    }

    async fn server() -> FakeDns {
        FakeDns::start(sample_zone()).await.expect("start")
    }

    #[tokio::test]
    async fn a_records_over_udp() {
        let dns = server().await;
        assert!(dns.addr().ip().is_loopback());
        let r = udp_ask(dns.addr(), &query_packet(0x1234, "host.example.test", TYPE_A, None)).await;
        assert_eq!(r.id, 0x1234);
        assert_eq!(r.rcode(), RCODE_NOERROR);
        assert!(r.has(FLAG_QR) && r.has(FLAG_AA) && r.has(FLAG_RD) && r.has(FLAG_RA));
        assert!(!r.has(FLAG_TC));
        assert_eq!((r.qname.as_str(), r.qtype), ("host.example.test", TYPE_A));
        assert_eq!(r.answers.len(), 2);
        assert_eq!(r.authority_count, 0);
        assert!(r.additionals.is_empty(), "no OPT without EDNS in the query");
        for rr in &r.answers {
            assert_eq!(rr.owner, "host.example.test");
            assert_eq!((rr.rtype, rr.class, rr.ttl), (TYPE_A, CLASS_IN, TTL));
        }
        assert_eq!(r.answers[0].rdata, [192, 0, 2, 1]);
        assert_eq!(r.answers[1].rdata, [192, 0, 2, 2]);
        assert_eq!(dns.queries(), 1);
    }

    #[tokio::test]
    async fn aaaa_record() {
        let dns = server().await;
        let r = udp_ask(dns.addr(), &query_packet(7, "host.example.test", TYPE_AAAA, None)).await;
        assert_eq!(r.rcode(), RCODE_NOERROR);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].rtype, TYPE_AAAA);
        let v6: Ipv6Addr = "2001:db8::1".parse().expect("v6");
        assert_eq!(r.answers[0].rdata, v6.octets());
    }

    #[tokio::test]
    async fn mx_records_and_null_mx() {
        let dns = server().await;
        let r = udp_ask(dns.addr(), &query_packet(8, "example.test", TYPE_MX, None)).await;
        assert_eq!(r.rcode(), RCODE_NOERROR);
        let mx: Vec<(u16, String)> = r
            .answers
            .iter()
            .map(|rr| {
                assert_eq!(rr.rtype, TYPE_MX);
                let pref = u16::from_be_bytes([rr.rdata[0], rr.rdata[1]]);
                (pref, rdata_name(&rr.rdata[2..]))
            })
            .collect();
        assert_eq!(
            mx,
            [(10, "mx1.example.test".to_owned()), (20, "mx2.example.test".to_owned())]
        );

        let r = udp_ask(dns.addr(), &query_packet(9, "nomail.test", TYPE_MX, None)).await;
        assert_eq!(r.rcode(), RCODE_NOERROR);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].rdata, [0, 0, 0], "preference 0, root exchange");
    }

    #[tokio::test]
    async fn cname_is_served_for_any_qtype() {
        let dns = server().await;
        let r = udp_ask(dns.addr(), &query_packet(1, "alias.example.test", TYPE_A, None)).await;
        assert_eq!(r.rcode(), RCODE_NOERROR);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].rtype, TYPE_CNAME);
        assert_eq!(rdata_name(&r.answers[0].rdata), "host.example.test");
    }

    #[tokio::test]
    async fn nxdomain_and_nodata_defaults() {
        let dns = server().await;
        let addr = dns.addr();
        let cases = [
            ("unknown.test", TYPE_A, RCODE_NXDOMAIN),
            ("unknown.test", TYPE_TXT, RCODE_NXDOMAIN),
            // host has A and AAAA set, so MX and unknown types are NoData.
            ("host.example.test", TYPE_MX, RCODE_NOERROR),
            ("HOST.example.test", TYPE_TXT, RCODE_NOERROR),
            ("example.test", TYPE_A, RCODE_NOERROR),
            // set_all applies to every qtype not set explicitly.
            ("gone.test", TYPE_A, RCODE_NXDOMAIN),
            ("gone.test", TYPE_TXT, RCODE_NXDOMAIN),
        ];
        for (id, (name, qtype, rcode)) in (1u16..).zip(cases) {
            let r = udp_ask(addr, &query_packet(id, name, qtype, None)).await;
            assert_eq!(r.rcode(), rcode, "{name} type {qtype}");
            assert!(r.answers.is_empty(), "{name} type {qtype}");
            assert!(r.has(FLAG_AA));
        }
        let r = udp_ask(addr, &query_packet(99, "gone.test", TYPE_MX, None)).await;
        assert_eq!(r.rcode(), RCODE_NOERROR, "explicit set wins over set_all");
        assert_eq!(r.answers.len(), 1);
    }

    #[tokio::test]
    async fn servfail_and_refused() {
        let dns = server().await;
        for qtype in [TYPE_A, TYPE_MX, TYPE_TXT] {
            let r = udp_ask(dns.addr(), &query_packet(3, "broken.test", qtype, None)).await;
            assert_eq!(r.rcode(), RCODE_SERVFAIL);
            assert!(r.answers.is_empty());
        }
        let r = udp_ask(dns.addr(), &query_packet(4, "refused.test", TYPE_A, None)).await;
        assert_eq!(r.rcode(), RCODE_REFUSED);
        let r = udp_ask(dns.addr(), &query_packet(5, "refused.test", TYPE_MX, None)).await;
        assert_eq!(r.rcode(), RCODE_NOERROR, "only the A type was refused");
    }

    #[tokio::test]
    async fn silent_never_answers() {
        let dns = server().await;
        let started = std::time::Instant::now();
        let reply = udp_exchange(dns.addr(), &query_packet(6, "silent.test", TYPE_A, None), SILENCE_WAIT).await;
        assert!(reply.is_none());
        assert!(started.elapsed() >= SILENCE_WAIT);
        assert_eq!(dns.queries(), 1, "silent queries are still counted");

        // Over TCP the connection stays usable after a silent query.
        let mut stream = TcpStream::connect(dns.addr()).await.expect("connect");
        tcp_send(&mut stream, &query_packet(7, "silent.test", TYPE_MX, None)).await;
        tcp_send(&mut stream, &query_packet(8, "host.example.test", TYPE_A, None)).await;
        let r = decode(&tcp_recv(&mut stream).await.expect("reply"));
        assert_eq!(r.id, 8);
        assert_eq!(dns.queries(), 3);
    }

    #[tokio::test]
    async fn tcp_framing_several_queries_per_connection() {
        let dns = server().await;
        let mut stream = TcpStream::connect(dns.addr()).await.expect("connect");
        tcp_send(&mut stream, &query_packet(21, "host.example.test", TYPE_A, None)).await;
        let r = decode(&tcp_recv(&mut stream).await.expect("reply"));
        assert_eq!((r.id, r.rcode(), r.answers.len()), (21, RCODE_NOERROR, 2));

        // Length prefix and message in one write, as most clients do.
        let packet = query_packet(22, "example.test", TYPE_MX, None);
        let mut framed = u16::try_from(packet.len()).expect("fits").to_be_bytes().to_vec();
        framed.extend_from_slice(&packet);
        stream.write_all(&framed).await.expect("write");
        let r = decode(&tcp_recv(&mut stream).await.expect("reply"));
        assert_eq!((r.id, r.rcode(), r.answers.len()), (22, RCODE_NOERROR, 2));

        tcp_send(&mut stream, &query_packet(23, "unknown.test", TYPE_A, None)).await;
        let r = decode(&tcp_recv(&mut stream).await.expect("reply"));
        assert_eq!((r.id, r.rcode()), (23, RCODE_NXDOMAIN));
        assert_eq!(dns.queries(), 3);
    }

    #[tokio::test]
    async fn tcp_connection_closed_after_query_limit() {
        let dns = server().await;
        let mut stream = TcpStream::connect(dns.addr()).await.expect("connect");
        for id in 0..u16::try_from(TCP_MAX_QUERIES).expect("small") {
            tcp_send(&mut stream, &query_packet(id, "host.example.test", TYPE_A, None)).await;
            assert!(tcp_recv(&mut stream).await.is_some());
        }
        let mut byte = [0u8; 1];
        let read = timeout(REPLY_WAIT, stream.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed: {read:?}");
    }

    #[tokio::test]
    async fn edns_query_gets_opt_back() {
        let dns = server().await;
        let r = udp_ask(dns.addr(), &query_packet(31, "host.example.test", TYPE_A, Some(4096))).await;
        assert_eq!(r.rcode(), RCODE_NOERROR);
        assert_eq!(r.answers.len(), 2);
        assert_eq!(r.additionals.len(), 1);
        let opt = &r.additionals[0];
        assert_eq!((opt.owner.as_str(), opt.rtype), ("", TYPE_OPT));
        assert_eq!((opt.class, opt.ttl), (OUR_EDNS_PAYLOAD, 0));
        assert!(opt.rdata.is_empty());
    }

    #[tokio::test]
    async fn large_answer_truncated_over_udp_only() {
        let records = (0..40).map(|i| Record::A(Ipv4Addr::new(198, 51, 100, i))).collect();
        let mut zone = Zone::new();
        zone.set("big.test", Qtype::A, Answer::Records(records));
        let dns = FakeDns::start(zone).await.expect("start");

        let r = udp_ask(dns.addr(), &query_packet(41, "big.test", TYPE_A, None)).await;
        assert!(r.has(FLAG_TC));
        assert_eq!((r.rcode(), r.answers.len()), (RCODE_NOERROR, 0));

        let r = udp_ask(dns.addr(), &query_packet(42, "big.test", TYPE_A, Some(1232))).await;
        assert!(!r.has(FLAG_TC), "fits the EDNS payload size");
        assert_eq!(r.answers.len(), 40);

        let mut stream = TcpStream::connect(dns.addr()).await.expect("connect");
        tcp_send(&mut stream, &query_packet(43, "big.test", TYPE_A, None)).await;
        let r = decode(&tcp_recv(&mut stream).await.expect("reply"));
        assert!(!r.has(FLAG_TC));
        assert_eq!(r.answers.len(), 40);
    }

    #[tokio::test]
    async fn names_are_case_insensitive_and_case_is_echoed() {
        let mut zone = Zone::new();
        zone.set(
            "MiXeD.Example.TEST.",
            Qtype::A,
            Answer::Records(vec![Record::A(Ipv4Addr::LOCALHOST)]),
        );
        let dns = FakeDns::start(zone).await.expect("start");
        let r = udp_ask(dns.addr(), &query_packet(51, "mIxEd.eXample.test.", TYPE_A, None)).await;
        assert_eq!(r.rcode(), RCODE_NOERROR);
        assert_eq!(r.qname, "mIxEd.eXample.test");
        assert_eq!(r.answers.len(), 1);
    }

    #[tokio::test]
    async fn replace_zone_swaps_answers() {
        let dns = server().await;
        let packet = query_packet(61, "host.example.test", TYPE_A, None);
        assert_eq!(udp_ask(dns.addr(), &packet).await.rcode(), RCODE_NOERROR);
        let mut zone = Zone::new();
        zone.set_all("host.example.test", Answer::ServFail);
        dns.replace_zone(zone);
        assert_eq!(udp_ask(dns.addr(), &packet).await.rcode(), RCODE_SERVFAIL);
        dns.replace_zone(Zone::new());
        assert_eq!(udp_ask(dns.addr(), &packet).await.rcode(), RCODE_NXDOMAIN);
    }

    #[tokio::test]
    async fn invalid_zone_data_gives_servfail() {
        let mut zone = Zone::new();
        zone.set(
            "bad.test",
            Qtype::Mx,
            Answer::Records(vec![Record::Mx(10, "a..b".into())]),
        );
        let dns = FakeDns::start(zone).await.expect("start");
        let r = udp_ask(dns.addr(), &query_packet(71, "bad.test", TYPE_MX, None)).await;
        assert_eq!((r.rcode(), r.answers.len()), (RCODE_SERVFAIL, 0));
    }

    /// Header + `name` bytes as given + type A, class IN.
    fn packet_with_raw_name(name: &[u8]) -> Vec<u8> {
        let mut p = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(name);
        p.extend_from_slice(&[0, 1, 0, 1]);
        p
    }

    fn malformed_packets() -> Vec<Vec<u8>> {
        let valid = query_packet(1, "host.example.test", TYPE_A, None);
        let mut response = valid.clone();
        response[2] |= 0x80;
        let mut notify = valid.clone();
        notify[2] |= 4 << 3;
        let mut two_questions = valid.clone();
        two_questions[5] = 2;
        let mut missing_additional = valid.clone();
        missing_additional[11] = 1;
        let mut long_name = Vec::new();
        for _ in 0..5 {
            long_name.push(63);
            long_name.extend_from_slice(&[b'a'; 63]);
        }
        long_name.push(0);
        vec![
            Vec::new(),
            vec![0; 11],
            vec![0xff; 64],
            valid[..valid.len() - 1].to_vec(),
            response,
            notify,
            two_questions,
            missing_additional,
            // Compression pointer to offset 12: a pointer to itself, i.e. a loop.
            packet_with_raw_name(&[0xc0, 12]),
            // Pointer after a label, pointing back at the label.
            packet_with_raw_name(&[1, b'a', 0xc0, 12]),
            // Reserved label types 0x40 and 0x80.
            packet_with_raw_name(&[0x40, 0]),
            packet_with_raw_name(&[0x80, 0]),
            packet_with_raw_name(&long_name),
            // Label length past the end of the packet.
            vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 40, b'a'],
        ]
    }

    #[test]
    fn parser_rejects_malformed_and_compressed_names() {
        for (i, packet) in malformed_packets().iter().enumerate() {
            assert!(parse_query(packet).is_none(), "case {i} must be rejected");
            assert_eq!(
                respond(&sample_zone(), packet, Transport::Udp),
                Outcome::Malformed,
                "case {i}"
            );
        }
        let ok = packet_with_raw_name(&[4, b'h', b'o', b's', b't', 0]);
        let q = parse_query(&ok).expect("plain name parses");
        assert_eq!((q.name.as_str(), q.qtype, q.id), ("host", TYPE_A, 0xabcd));
        let root_packet = packet_with_raw_name(&[0]);
        let root = parse_query(&root_packet).expect("root parses");
        assert_eq!(root.name, "");
    }

    #[tokio::test]
    async fn malformed_udp_does_not_kill_server() {
        let dns = server().await;
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind");
        for packet in malformed_packets() {
            sock.send_to(&packet, dns.addr()).await.expect("send");
        }
        let mut buf = [0u8; 512];
        let stray = timeout(SILENCE_WAIT, sock.recv_from(&mut buf)).await;
        assert!(stray.is_err(), "malformed packets get no reply");
        let r = udp_ask(dns.addr(), &query_packet(81, "host.example.test", TYPE_A, None)).await;
        assert_eq!((r.id, r.rcode(), r.answers.len()), (81, RCODE_NOERROR, 2));
        assert_eq!(dns.queries(), 1, "malformed packets are not counted");
    }

    #[tokio::test]
    async fn malformed_tcp_closes_only_that_connection() {
        let dns = server().await;
        let mut bad = TcpStream::connect(dns.addr()).await.expect("connect");
        tcp_send(&mut bad, &packet_with_raw_name(&[0xc0, 12])).await;
        assert!(tcp_recv(&mut bad).await.is_none(), "closed without reply");

        // A frame announcing more bytes than ever arrive, then EOF.
        let mut short = TcpStream::connect(dns.addr()).await.expect("connect");
        short.write_all(&[0x01, 0x00, 0xab]).await.expect("write");
        short.shutdown().await.expect("shutdown");

        let mut good = TcpStream::connect(dns.addr()).await.expect("connect");
        tcp_send(&mut good, &query_packet(91, "example.test", TYPE_MX, None)).await;
        let r = decode(&tcp_recv(&mut good).await.expect("reply"));
        assert_eq!((r.id, r.rcode(), r.answers.len()), (91, RCODE_NOERROR, 2));
    }

    #[tokio::test]
    async fn drop_stops_the_server() {
        let dns = server().await;
        let addr = dns.addr();
        drop(dns);
        tokio::task::yield_now().await;
        let reply = udp_exchange(addr, &query_packet(1, "host.example.test", TYPE_A, None), SILENCE_WAIT).await;
        assert!(reply.is_none());
    }

    #[tokio::test]
    async fn start_on_explicit_port() {
        let first = server().await;
        let taken = first.addr();
        assert!(FakeDns::start_on(taken, Zone::new()).await.is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let zone = sample_zone();
            let _ = parse_query(&bytes);
            let _ = respond(&zone, &bytes, Transport::Udp);
            let _ = respond(&zone, &bytes, Transport::Tcp);
        }

        /// A plausible header in front of random bytes reaches the name and record parsers.
        #[test]
        fn random_bodies_never_panic(
            counts in proptest::collection::vec(0u16..4, 4),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut packet = vec![0x12, 0x34, 0x01, 0x00];
            for count in counts {
                push_u16(&mut packet, count);
            }
            packet[5] = 1;
            packet.extend_from_slice(&body);
            let _ = respond(&sample_zone(), &packet, Transport::Udp);
        }

        /// Queries for any encodable name and type always get a well-formed answer.
        #[test]
        fn valid_queries_always_answered(
            labels in proptest::collection::vec("[a-zA-Z0-9-]{1,20}", 0..5),
            qtype in any::<u16>(),
            edns in proptest::option::of(any::<u16>()),
        ) {
            let name = labels.join(".");
            let packet = query_packet(1, &name, qtype, edns);
            match respond(&sample_zone(), &packet, Transport::Udp) {
                Outcome::Reply(reply) => {
                    let r = decode(&reply);
                    prop_assert_eq!(r.qtype, qtype);
                    prop_assert_eq!(r.rcode(), RCODE_NXDOMAIN);
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}

#[cfg(test)]
mod hickory_tests {
    use super::*;
    use hickory_resolver::Resolver;
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    use hickory_resolver::net::{DnsError, NetError};
    use hickory_resolver::proto::op::ResponseCode;
    use hickory_resolver::proto::rr::RData;
    use std::net::Ipv4Addr;

    const REPLY_WAIT: Duration = Duration::from_secs(2);
    const SILENCE_WAIT: Duration = Duration::from_millis(300);

    /// A resolver that only talks to `addr`, without retries, cache or hosts file, so each
    /// lookup maps to what the fake server said.
    fn resolver(addr: SocketAddr, wait: Duration) -> Resolver<TokioRuntimeProvider> {
        let mut udp = ConnectionConfig::udp();
        udp.port = addr.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = addr.port();
        let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
        let config = ResolverConfig::from_parts(None, vec![], vec![server]);
        let mut opts = ResolverOpts::default();
        opts.timeout = wait;
        opts.attempts = 0;
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .expect("resolver")
    }

    fn mail_zone() -> Zone {
        let mut zone = Zone::new();
        zone.set(
            "example.test",
            Qtype::Mx,
            Answer::Records(vec![
                Record::Mx(10, "mx1.example.test".into()),
                Record::Mx(20, "mx2.example.test".into()),
            ]),
        )
        .set(
            "mx1.example.test",
            Qtype::A,
            Answer::Records(vec![Record::A(Ipv4Addr::new(192, 0, 2, 1))]),
        )
        .set(
            "nomail.test",
            Qtype::Mx,
            Answer::Records(vec![Record::Mx(0, ".".into())]),
        )
        .set(
            "alias.test",
            Qtype::A,
            Answer::Records(vec![Record::Cname("mx1.example.test".into())]),
        )
        .set(
            "big.test",
            Qtype::A,
            Answer::Records((0..80).map(|i| Record::A(Ipv4Addr::new(198, 51, 100, i))).collect()),
        )
        .set_all("broken.test", Answer::ServFail)
        .set_all("refused.test", Answer::Refused)
        .set_all("silent.test", Answer::Silent);
        zone
    }

    #[tokio::test]
    async fn hickory_resolves_mx_and_a() {
        let dns = FakeDns::start(mail_zone()).await.expect("start");
        let resolver = resolver(dns.addr(), REPLY_WAIT);

        let mx = resolver.mx_lookup("example.test.").await.expect("MX");
        let exchanges: Vec<(u16, String)> = mx
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                _ => None,
            })
            .collect();
        assert_eq!(
            exchanges,
            [
                (10, "mx1.example.test.".to_owned()),
                (20, "mx2.example.test.".to_owned())
            ]
        );

        let a = resolver.ipv4_lookup("mx1.example.test.").await.expect("A");
        assert!(matches!(
            a.answers(),
            [record] if record.data == RData::A(Ipv4Addr::new(192, 0, 2, 1).into())
        ));
        // lookup_ip asks A and AAAA; the AAAA NoData must not spoil the A result.
        let ips: Vec<_> = resolver
            .lookup_ip("mx1.example.test.")
            .await
            .expect("lookup_ip")
            .iter()
            .collect();
        assert_eq!(ips, [std::net::IpAddr::from(Ipv4Addr::new(192, 0, 2, 1))]);

        let null = resolver.mx_lookup("nomail.test.").await.expect("null MX");
        assert!(matches!(
            null.answers(),
            [record] if matches!(&record.data, RData::MX(mx) if mx.preference == 0 && mx.exchange.is_root())
        ));

        // hickory chases a bare CNAME with a second query of its own.
        let before = dns.queries();
        let alias = resolver.ipv4_lookup("alias.test.").await.expect("CNAME");
        assert!(
            alias
                .answers()
                .iter()
                .any(|record| record.data == RData::A(Ipv4Addr::new(192, 0, 2, 1).into()))
        );
        assert!(dns.queries() - before >= 2);

        // 80 A records exceed hickory's 1232-byte EDNS size: TC over UDP, then TCP.
        let before = dns.queries();
        let big = resolver.ipv4_lookup("big.test.").await.expect("big");
        assert_eq!(big.answers().len(), 80);
        // (>= rather than ==: hickory re-sends over UDP after 333 ms on a slow machine.)
        assert!(dns.queries() - before >= 2);
    }

    #[tokio::test]
    async fn hickory_sees_negative_and_error_answers() {
        let dns = FakeDns::start(mail_zone()).await.expect("start");
        let resolver = resolver(dns.addr(), SILENCE_WAIT);

        let nx = resolver.mx_lookup("nope.test.").await.expect_err("NXDOMAIN");
        assert!(nx.is_nx_domain(), "{nx:?}");

        let nodata = resolver.ipv4_lookup("example.test.").await.expect_err("NoData");
        assert!(nodata.is_no_records_found() && !nodata.is_nx_domain(), "{nodata:?}");

        let servfail = resolver.mx_lookup("broken.test.").await.expect_err("SERVFAIL");
        assert!(
            matches!(servfail, NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))),
            "{servfail:?}"
        );

        let refused = resolver.mx_lookup("refused.test.").await.expect_err("REFUSED");
        assert!(
            matches!(refused, NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused))),
            "{refused:?}"
        );

        let silent = resolver.mx_lookup("silent.test.").await.expect_err("timeout");
        assert!(matches!(silent, NetError::Timeout), "{silent:?}");
    }
}
