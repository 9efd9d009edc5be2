//! Loopback addresses for servers the tests do not start themselves.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A loopback port that was free a moment ago (bound, read, released). Another process may
/// take it before the child binds it, so whoever passes it on must retry on a clash.
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}

/// A TCP connection to `dst` from the loopback address `src` (e.g. 127.0.0.2, a second
/// "client" to a server that counts connections per address), within `limit`.
pub async fn connect_from(
    src: IpAddr,
    dst: SocketAddr,
    limit: std::time::Duration,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = match src {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(src, 0))?;
    tokio::time::timeout(limit, socket.connect(dst))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connect {src} -> {dst}")))?
}
