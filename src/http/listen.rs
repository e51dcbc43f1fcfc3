//! Binding the listeners, before anything else starts.
//!
//! The router binds its sockets first, so a port that is taken (or an address that cannot be
//! resolved) stops start-up with one clear error before any actor runs: an actor started
//! and then dropped unrun, with the runtime already gone, would fail on its timers on the way
//! out and bury that error.

use std::io;
use std::net::{TcpListener, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

/// Connections the kernel queues for `accept` per listener: actix-web's default, so a burst
/// of new connections is queued rather than refused.
const BACKLOG: i32 = 1024;

/// Listeners on every address `addr` resolves to (`localhost:7070` is IPv4 and IPv6), as
/// actix-web's own `bind` makes them. Fails only when none can be bound.
pub fn bind_all(addr: &str) -> io::Result<Vec<TcpListener>> {
    bind(addr, usize::MAX)
}

/// A listener on the first address `addr` resolves to that can be bound: the admin
/// listener, which the edge tells apart by its one local address.
pub fn bind_first(addr: &str) -> io::Result<TcpListener> {
    bind(addr, 1)?
        .pop()
        .ok_or_else(|| io::Error::other("the address resolves to nothing"))
}

/// Up to `most` listeners on the addresses `addr` resolves to.
fn bind(addr: &str, most: usize) -> io::Result<Vec<TcpListener>> {
    let mut bound = Vec::new();
    let mut last_error = None;
    for a in addr.to_socket_addrs()? {
        if bound.len() >= most {
            break;
        }
        let socket = Socket::new(Domain::for_address(a), Type::STREAM, Some(Protocol::TCP)).and_then(|s| {
            // A restarted router takes its port back at once, past old connections in
            // TIME_WAIT.
            s.set_reuse_address(true)?;
            s.bind(&a.into())?;
            s.listen(BACKLOG)?;
            Ok(s)
        });
        match socket {
            Ok(s) => bound.push(s.into()),
            Err(e) => last_error = Some(e),
        }
    }
    match (bound.is_empty(), last_error) {
        (false, _) => Ok(bound),
        (true, Some(e)) => Err(e),
        (true, None) => Err(io::Error::other("the address resolves to nothing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_an_error_and_a_free_one_is_bound() {
        let first = bind_first("127.0.0.1:0").expect("a free port");
        let addr = first.local_addr().expect("its address");
        assert!(bind_all(&addr.to_string()).is_err(), "the port is taken");
        assert!(bind_first(&addr.to_string()).is_err(), "the port is taken");
        assert!(bind_all("no-such-host.invalid:80").is_err());
        assert!(bind_all("127.0.0.1:99999").is_err(), "no such port");
        assert_eq!(bind_all("127.0.0.1:0").expect("a free port").len(), 1);
    }
}
