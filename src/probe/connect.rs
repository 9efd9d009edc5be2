//! TCP connect with a deadline. Distinguishes "no answer" (4.4.315) from "refused/unreachable"
//! (4.4.316), which is all Exchange Online can tell at this step.

use super::ProbeError;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ProbeError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(ProbeError::ConnectTimeout { after: timeout }),
        Ok(Ok(s)) => {
            // Nagle only delays our small command lines.
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(classify(&e, timeout)),
    }
}

fn classify(e: &io::Error, timeout: Duration) -> ProbeError {
    const ENETUNREACH: i32 = 101;
    const ETIMEDOUT: i32 = 110;
    const EHOSTUNREACH: i32 = 113;
    match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::ConnectionRefused, _) => ProbeError::ConnectRefused,
        // Accepted, then reset before connect() returned: the session was cut, as at any later step.
        (io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted, _) => ProbeError::Reset {
            phase: super::Phase::Connect,
        },
        (io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable, _)
        | (_, Some(ENETUNREACH | EHOSTUNREACH)) => ProbeError::Unreachable(e.kind().to_string()),
        (io::ErrorKind::TimedOut, _) | (_, Some(ETIMEDOUT)) => ProbeError::ConnectTimeout { after: timeout },
        _ => ProbeError::Local(format!("connect: {e}")),
    }
}
