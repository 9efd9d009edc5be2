//! In-process fake authoritative DNS server for loopback tests.
//!
//! Messages are parsed and built with hickory-proto's `Message`: one well-tested codec instead
//! of a second, hand-rolled one that needs its own fuzzing. What goes into the answers stays
//! ours, so faults real servers produce only occasionally (silence, SERVFAIL, REFUSED, null MX,
//! truncation) are one line of test setup away. UDP and TCP share one port because resolvers
//! fall back from one to the other on the same address.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hickory_resolver::proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, MX};
use hickory_resolver::proto::rr::{self, DNSClass, Name, RData, RecordType};
use hickory_resolver::proto::serialize::binary::BinDecodable;
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
    fn from_record_type(rtype: RecordType) -> Option<Self> {
        match rtype {
            RecordType::A => Some(Self::A),
            RecordType::AAAA => Some(Self::Aaaa),
            RecordType::MX => Some(Self::Mx),
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
    fn lookup(&self, name: &str, qtype: RecordType) -> &Answer {
        let Some(entry) = self.names.get(name) else {
            return &NX_DOMAIN;
        };
        let explicit = Qtype::from_record_type(qtype).and_then(|t| entry.by_type.get(&t));
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
    let Some(question) = parse_query(packet) else {
        return Outcome::Malformed;
    };
    // Everything we serve is class IN; a client asking another class gets a clear refusal.
    let answer = if question.query.query_class() == DNSClass::IN {
        zone.lookup(&question.name, question.query.query_type())
    } else {
        &REFUSED
    };
    match build_response(&question, answer, transport) {
        Some(reply) => Outcome::Reply(reply),
        None => Outcome::Silent,
    }
}

/// The parts of a query the response needs.
#[derive(Debug)]
struct Question {
    id: u16,
    rd: bool,
    /// The question as received, echoed so the client's case (0x20 randomization) survives; its
    /// name owns every answer record.
    query: Query,
    /// Normalized query name (see [`normalize`]) for the zone lookup.
    name: String,
    /// UDP payload size from the client's OPT record, if it sent one.
    edns_payload: Option<u16>,
}

/// Parse a standard query with exactly one question.
fn parse_query(packet: &[u8]) -> Option<Question> {
    // The header alone first: cheap, and hickory sizes its question buffer by the count.
    let header = Header::from_bytes(packet).ok()?;
    // Never answer a response: two fake servers (or a spoofed source) could ping-pong forever.
    if header.message_type != MessageType::Query || header.op_code != OpCode::Query || header.counts.queries != 1 {
        return None;
    }
    let mut message = Message::from_vec(packet).ok()?;
    let query = message.queries.pop()?;
    Some(Question {
        id: header.id,
        rd: header.recursion_desired,
        name: zone_key(query.name()),
        edns_payload: message.edns.as_ref().map(Edns::max_payload),
        query,
    })
}

/// [`normalize`] for a name off the wire, label bytes taken as they are.
fn zone_key(name: &Name) -> String {
    let labels: Vec<String> = name
        .iter()
        .map(|label| String::from_utf8_lossy(label).to_ascii_lowercase())
        .collect();
    labels.join(".")
}

/// A name from zone data as raw labels (no escapes, no IDNA), so what the test wrote is what goes
/// on the wire; `None` if it is not a valid domain name.
fn zone_name(name: &str) -> Option<Name> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Some(Name::root());
    }
    Name::from_labels(name.split('.').map(str::as_bytes)).ok()
}

/// One answer record owned by `owner`; `None` if the record's data is invalid.
fn wire_record(owner: &Name, record: &Record) -> Option<rr::Record> {
    let data = match record {
        Record::A(ip) => RData::A(A::from(*ip)),
        Record::Aaaa(ip) => RData::AAAA(AAAA::from(*ip)),
        Record::Mx(preference, exchange) => RData::MX(MX::new(*preference, zone_name(exchange)?)),
        Record::Cname(target) => RData::CNAME(CNAME(zone_name(target)?)),
    };
    Some(rr::Record::from_rdata(owner.clone(), TTL, data))
}

/// The response message for `answer`, or `None` for [`Answer::Silent`] (and, in theory, when
/// not even a bare SERVFAIL for the decoded question encodes).
///
/// Over UDP an answer that does not fit the client's payload size (512 without EDNS) is
/// replaced by an empty one with TC set, which sends a correct client to TCP.
fn build_response(question: &Question, answer: &Answer, transport: Transport) -> Option<Vec<u8>> {
    let (rcode, records): (ResponseCode, &[Record]) = match answer {
        Answer::Records(records) => (ResponseCode::NoError, records),
        Answer::NoData => (ResponseCode::NoError, &[]),
        Answer::NxDomain => (ResponseCode::NXDomain, &[]),
        Answer::ServFail => (ResponseCode::ServFail, &[]),
        Answer::Refused => (ResponseCode::Refused, &[]),
        Answer::Silent => return None,
    };
    let owner = question.query.name();
    let full = records
        .iter()
        .map(|record| wire_record(owner, record))
        .collect::<Option<Vec<_>>>()
        .and_then(|answers| encode(question, rcode, answers, false));
    let Some(full) = full else {
        warn!(name = %question.name, ?records, "fake DNS zone holds an unencodable answer, sending SERVFAIL");
        return encode(question, ResponseCode::ServFail, Vec::new(), false);
    };
    let limit = match (transport, question.edns_payload) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(payload)) => usize::from(payload).max(CLASSIC_UDP_LIMIT),
        (Transport::Udp, None) => CLASSIC_UDP_LIMIT,
    };
    // hickory itself drops records (and sets TC) past 65535 bytes; treat that like any overflow.
    let cut_by_codec = Header::from_bytes(&full).is_ok_and(|header| header.truncation);
    if full.len() > limit || cut_by_codec {
        return encode(question, rcode, Vec::new(), true);
    }
    Some(full)
}

/// Header, echoed question, `answers` and (if the client used EDNS) our OPT; `None` if hickory
/// cannot encode it.
fn encode(question: &Question, rcode: ResponseCode, answers: Vec<rr::Record>, truncated: bool) -> Option<Vec<u8>> {
    let mut message = Message::response(question.id, OpCode::Query);
    message.metadata.authoritative = true;
    message.metadata.recursion_desired = question.rd;
    message.metadata.recursion_available = true;
    message.metadata.truncation = truncated;
    message.metadata.response_code = rcode;
    message.add_query(question.query.clone());
    message.add_answers(answers);
    if question.edns_payload.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(OUR_EDNS_PAYLOAD);
        message.set_edns(edns);
    }
    match message.to_vec() {
        Ok(bytes) => Some(bytes),
        Err(err) => {
            debug!(%err, name = %question.name, "fake DNS could not encode a response");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::serialize::binary::{BinDecoder, BinEncodable};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const TYPE_A: u16 = 1;
    const TYPE_CNAME: u16 = 5;
    const TYPE_MX: u16 = 15;
    const TYPE_TXT: u16 = 16;
    const TYPE_AAAA: u16 = 28;
    const TYPE_OPT: u16 = 41;
    const CLASS_IN: u16 = 1;

    const FLAG_QR: u16 = 0x8000;
    const FLAG_AA: u16 = 0x0400;
    const FLAG_TC: u16 = 0x0200;
    const FLAG_RD: u16 = 0x0100;
    const FLAG_RA: u16 = 0x0080;

    const RCODE_NOERROR: u16 = 0;
    const RCODE_SERVFAIL: u16 = 2;
    const RCODE_NXDOMAIN: u16 = 3;
    const RCODE_REFUSED: u16 = 5;

    const REPLY_WAIT: Duration = Duration::from_secs(2);
    const SILENCE_WAIT: Duration = Duration::from_millis(300);

    /// A query with RD set; `name` is taken label by label, case kept.
    fn query_packet(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        let name = zone_name(name).unwrap_or_else(|| panic!("test name {name:?} must encode"));
        m.add_query(Query::query(name, RecordType::from(qtype)));
        if edns.is_some() {
            m.set_edns(Edns::new());
        }
        let mut p = m.to_vec().expect("encode query");
        if let Some(payload) = edns {
            // hickory raises payload sizes below 512 when encoding; patch the OPT class (the
            // last record: root, type, class, TTL, empty rdata) so any size reaches the server.
            let class = p.len() - 8;
            p[class..class + 2].copy_from_slice(&payload.to_be_bytes());
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

    /// Owner lower-cased like zone keys; rdata re-encoded alone, so names in it are uncompressed.
    fn read_rr(record: &rr::Record) -> Rr {
        Rr {
            owner: zone_key(&record.name),
            rtype: u16::from(record.record_type()),
            class: u16::from(record.dns_class),
            ttl: record.ttl,
            rdata: BinEncodable::to_bytes(&record.data).expect("rdata"),
        }
    }

    fn decode(bytes: &[u8]) -> Decoded {
        let mut decoder = BinDecoder::new(bytes);
        let message = Message::read(&mut decoder).expect("well-formed reply");
        assert!(decoder.is_empty(), "no trailing bytes");
        assert_eq!(message.queries.len(), 1, "question must be echoed");
        let question = &message.queries[0];
        assert_eq!(question.query_class(), DNSClass::IN);
        // Question name with the case as sent.
        let qname: Vec<String> = question
            .name()
            .iter()
            .map(|label| String::from_utf8_lossy(label).into_owned())
            .collect();
        // hickory lifts the OPT out of the additional section; put it back to check it.
        let opt = message.edns.as_ref().map(rr::Record::from);
        Decoded {
            id: message.id,
            flags: u16::from_be_bytes([bytes[2], bytes[3]]),
            qname: qname.join("."),
            qtype: u16::from(question.query_type()),
            answers: message.answers.iter().map(read_rr).collect(),
            authority_count: u16::try_from(message.authorities.len()).expect("count"),
            additionals: message.additionals.iter().chain(opt.as_ref()).map(read_rr).collect(),
        }
    }

    fn rdata_name(rdata: &[u8]) -> String {
        let mut decoder = BinDecoder::new(rdata);
        let name = Name::read(&mut decoder).expect("name in rdata");
        assert!(decoder.is_empty());
        zone_key(&name)
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
        assert_eq!(
            (q.name.as_str(), u16::from(q.query.query_type()), q.id),
            ("host", TYPE_A, 0xabcd)
        );
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
                packet.extend_from_slice(&count.to_be_bytes());
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
