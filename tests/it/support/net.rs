//! Loopback addresses for servers the tests do not start themselves.

use std::net::{Ipv4Addr, SocketAddr};

/// A loopback port that was free a moment ago (bound, read, released). Another process may
/// take it before the child binds it, so whoever passes it on must retry on a clash.
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}
