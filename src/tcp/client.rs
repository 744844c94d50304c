//! The client socket (클라이언트 소켓): `socket()` → `connect()` → `read()`/`write()`.
//!
//! The seed's client opens a socket and asks the server's IP and port for a
//! connection; when the server's `accept()` returns, both hold a connected
//! socket and take turns to `read()` and `write()` — the seed notes that the
//! client socket is where the data actually flows.
//!
//! ```text
//! client::socket(addr) -> ClientSocket --connect(timeout)--> Connection --read/write...--> close
//! ```
//!
//! A client socket cannot read or write before it is connected:
//!
//! ```compile_fail,E0599
//! use sockstep::{tcp::client, trace::Trace};
//! let socket = client::socket("127.0.0.1:9".parse().unwrap(), &Trace::off());
//! socket.write_all(b"hello"); // no such method: connect() comes first
//! ```
//!
//! Waiting for a server that is still starting is a different thing from
//! connecting, so it has its own function, [`connect_with_retry`], built on the
//! plain step.

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::endpoint::{Endpoint, Protocol, family};
use crate::error::{Error, ErrorKind};
use crate::step::{Side, Step};
use crate::tcp::connection::{Connection, Timeouts};
use crate::trace::{Event, SocketId, Trace};

/// Client step 1 of 4 — `socket()`: decide what kind of socket to make.
///
/// Underneath: **nothing yet**. std has no unconnected TCP socket; socket(2)
/// runs inside [`ClientSocket::connect`]. This step fixes what socket(2) will be
/// given — TCP, and the address family of the server's address — and records
/// the step. The client never calls bind(): connect(2) gives the socket an
/// ephemeral port chosen by the kernel, visible afterwards in
/// [`Connection::local_addr`].
///
/// # Examples
/// ```
/// use sockstep::{tcp::client, trace::Trace};
/// let socket = client::socket("[::1]:7878".parse().unwrap(), &Trace::off());
/// assert!(socket.server().is_ipv6());
/// ```
pub fn socket(server: SocketAddr, trace: &Trace) -> ClientSocket {
    let id = SocketId::next();
    trace.emit(|| {
        Event::new(id, Side::Client, Step::Socket, Protocol::Tcp).detail(format!(
            "SOCK_STREAM, {}, to reach {}",
            family(&server),
            Endpoint::from_addr(Protocol::Tcp, server)
        ))
    });
    ClientSocket {
        id,
        server,
        timeouts: Timeouts::default(),
        trace: trace.clone(),
    }
}

/// A client socket not yet connected (after step 1).
#[derive(Debug)]
pub struct ClientSocket {
    id: SocketId,
    server: SocketAddr,
    timeouts: Timeouts,
    trace: Trace,
}

impl ClientSocket {
    /// The server address this socket will connect to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The read and write timeouts the connection will have (default: 30 s each).
    pub fn timeouts(mut self, timeouts: Timeouts) -> ClientSocket {
        self.timeouts = timeouts;
        self
    }

    /// Client step 2 of 4 — `connect()`: reach the server's IP and port.
    ///
    /// The kernel sends SYN, the server's kernel answers SYN-ACK, ours sends ACK:
    /// the three-way handshake. It completes in the server's kernel even before
    /// the server calls `accept()` (client step 3 is the server's `accept()`
    /// returning), so a successful connect does not mean the server has seen us.
    ///
    /// Underneath: std's `TcpStream::connect_timeout`, which makes the socket and
    /// waits at most `timeout` — socket(SOCK_STREAM|SOCK_CLOEXEC),
    /// ioctl(FIONBIO, 1), connect (EINPROGRESS), ioctl(FIONBIO, 0),
    /// poll(POLLOUT, timeout). Then setsockopt(SO_RCVTIMEO/SO_SNDTIMEO) for the
    /// connection's timeouts.
    ///
    /// # Errors
    /// [`ErrorKind::ConnectionRefused`] when nothing listens there (the server's
    /// kernel answered RST); [`ErrorKind::TimedOut`] when nothing answered in time
    /// (host unreachable, packets dropped, or the server's kernel queue is full);
    /// [`ErrorKind::InvalidInput`] for a zero timeout. Each names the endpoint.
    pub fn connect(self, timeout: Duration) -> Result<Connection, Error> {
        let endpoint = Endpoint::from_addr(Protocol::Tcp, self.server);
        if timeout.is_zero() {
            return Err(Error::new(
                Step::Connect,
                ErrorKind::InvalidInput("a connect timeout of zero".into()),
            )
            .at(endpoint));
        }
        self.trace.emit(|| {
            Event::new(self.id, Side::Client, Step::Connect, Protocol::Tcp)
                .peer(self.server)
                .detail("SYN sent; waiting for the handshake")
        });
        let stream = TcpStream::connect_timeout(&self.server, timeout).map_err(|e| {
            let error = Error::io(Step::Connect, e).at(endpoint.clone());
            self.trace.emit(|| {
                Event::new(self.id, Side::Client, Step::Connect, Protocol::Tcp)
                    .peer(self.server)
                    .detail(format!("failed: {}", error.summary()))
            });
            error
        })?;
        let mut conn = Connection::new(
            self.id,
            stream,
            Side::Client,
            None,
            self.server,
            self.trace.clone(),
        )?;
        self.trace.emit(|| {
            Event::new(self.id, Side::Client, Step::Established, Protocol::Tcp)
                .local(conn.local_addr())
                .peer(conn.peer_addr())
                .detail("connected; the kernel chose our port")
        });
        conn.set_timeouts(self.timeouts)?;
        Ok(conn)
    }
}

/// How [`connect_with_retry`] waits for a server to come up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The longest to keep trying, in all.
    pub total: Duration,
    /// The pause after the first failure; each later pause doubles.
    pub first_pause: Duration,
    /// The longest single pause.
    pub max_pause: Duration,
}

impl Default for Retry {
    /// Up to 5 s in all, pausing 10 ms, 20 ms, 40 ms … at most 500 ms.
    fn default() -> Retry {
        Retry {
            total: Duration::from_secs(5),
            first_pause: Duration::from_millis(10),
            max_pause: Duration::from_millis(500),
        }
    }
}

/// Connects, retrying with exponential backoff while the server is not there yet.
///
/// For "wait until the server is up" in tests and scripts. Only refusals and
/// timeouts are retried — the answers of a server that has not started; any
/// other error is returned at once. Each attempt is a full client step 1 + 2.
///
/// # Errors
/// The last attempt's error once `retry.total` has passed.
pub fn connect_with_retry(
    server: SocketAddr,
    trace: &Trace,
    timeouts: Timeouts,
    retry: Retry,
) -> Result<Connection, Error> {
    let deadline = Instant::now() + retry.total;
    let mut pause = retry.first_pause;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = socket(server, trace)
            .timeouts(timeouts)
            .connect(left.max(Duration::from_millis(1)));
        match attempt {
            Ok(conn) => return Ok(conn),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::TimedOut) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(e);
                }
                thread::sleep(pause.min(left));
                pause = (pause * 2).min(retry.max_pause);
            }
            Err(e) => return Err(e),
        }
    }
}
