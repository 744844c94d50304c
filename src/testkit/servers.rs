//! Servers on demand: a real socket that behaves in a known way, for one test.
//!
//! # The idea
//!
//! A test of a client needs something on the other end. A mock object is not a
//! socket: it never returns half a message, never times out, never sees the
//! client close early. A real server does — but starting one by hand is twenty
//! lines of bind, listen, threads and shutdown in every test, and forgetting the
//! shutdown leaves threads and ports behind. So one call here starts a server
//! with a known behaviour on an ephemeral loopback port, and hands back a
//! *guard*:
//!
//! ```text
//! let server = servers::tcp_echo()?;   // bind 127.0.0.1:0, listen, accept in the background
//! client_under_test(server.addr());    // the port the OS chose
//! drop(server);                        // stop accepting, end connections, join every thread
//! ```
//!
//! The behaviours, each over TCP and over UDP:
//!
//! | call | does | a test uses it to |
//! |---|---|---|
//! | [`tcp_echo`], [`udp_echo`] | sends back what it gets | check a round trip |
//! | [`tcp_sink`], [`udp_sink`] | reads and throws away | give a client somewhere to write |
//! | [`tcp_reply`], [`udp_reply`] | answers every connection (datagram) with the same bytes | feed a client a canned answer |
//! | [`tcp_recorder`], [`udp_recorder`] | keeps what it got, per connection (per datagram, with its sender) | assert exactly what a client sent |
//!
//! For a conversation step by step (expect these bytes, answer those, wait,
//! reset) see [`script`](super::script); for HTTP, [`http_mock`](super::http_mock).
//!
//! # What the guard promises
//!
//! - **Loopback only, unless asked.** Everything binds `127.0.0.1:0` unless
//!   [`Options::bind`] says otherwise, so a test never opens a port to the network.
//! - **Dropping it is the shutdown.** The TCP guard wraps a
//!   [`tcp::serve::Server`](crate::tcp::serve::Server): it stops accepting, lets
//!   connections in flight finish for [`Options::grace`], shuts down the sockets
//!   of any still open, and joins every thread. The UDP guard wraps a
//!   [`udp::serve::UdpServer`](crate::udp::serve::UdpServer), whose one thread
//!   notices the stop within a [`POLL`](crate::udp::serve::POLL). Nothing in a
//!   drop panics, so a guard dropped while a failing test unwinds cleans up too,
//!   instead of turning one failure into an abort.
//! - **Every wait has a timeout.** Each connection has read and write timeouts
//!   ([`Options::io_timeout`]); every `wait_…` method takes the longest it may
//!   wait and says what it saw when it gives up.
//! - **Recorders are bounded.** They keep at most [`Options::max_recorded`]
//!   connections or datagrams and [`Options::max_recorded_bytes`] bytes in all;
//!   what arrives beyond is read, counted, and thrown away, so a runaway client
//!   costs a counter, not the test machine's memory.
//!
//! # Waiting instead of sleeping
//!
//! A client's bytes reach the server's thread some time after the client's
//! `write` returned. A test that sleeps "long enough" before looking is slow on
//! a quiet machine and flaky on a busy one. The recorders instead wake anyone
//! waiting in [`TcpRecorder::wait_until`] each time bytes arrive, so the test
//! continues the moment its condition holds, and fails with what was recorded
//! when it does not hold in time.
//!
//! ```
//! use sockstep::testkit::servers;
//! use std::io::Write;
//! use std::net::TcpStream;
//! use std::time::Duration;
//!
//! let recorder = servers::tcp_recorder()?;
//! let mut client = TcpStream::connect(recorder.addr())?;
//! client.write_all(b"HELO test\r\n")?;
//! let seen = recorder.wait_until(Duration::from_secs(5), |conns| {
//!     conns.first().is_some_and(|c| c.bytes.ends_with(b"\r\n"))
//! })?;
//! assert_eq!(seen[0].bytes, b"HELO test\r\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::step::{Side, Step};
use crate::tcp::connection::{Connection, Timeouts};
use crate::tcp::handlers::{self, Handler};
use crate::tcp::serve::{ServeConfig, Server, Stats};
use crate::tcp::server::{self, Listening};
use crate::trace::Trace;
use crate::udp::handlers::{self as udp_handlers, DatagramHandler};
use crate::udp::serve::{UdpServer as UdpServe, UdpStats};
use crate::udp::socket as udp_socket;

/// One datagram a [`UdpRecorder`] kept: its sender and its payload (the type
/// the UDP recorder of [`udp::handlers`](crate::udp::handlers) keeps too).
pub use crate::udp::handlers::Received;

/// The default [`Options::io_timeout`]: far longer than any loopback exchange
/// takes, short enough that a client which went silent frees its thread soon.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The default [`Options::grace`]. At a guard's drop the test is over; a
/// connection still open then is one the test forgot, and a quarter of a
/// second is long enough for one that is about to finish.
pub const DEFAULT_GRACE: Duration = Duration::from_millis(250);

/// The default [`Options::max_connections`]: more than a test opens at once,
/// few enough threads that a runaway loop in a test cannot exhaust the process.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// The default [`Options::max_recorded`]: connections, datagrams or requests kept.
pub const DEFAULT_MAX_RECORDED: usize = 1_024;

/// The default [`Options::max_recorded_bytes`]: 16 MiB kept in all, more than a
/// test sends and a bound on what a runaway client can make a recorder hold.
pub const DEFAULT_MAX_RECORDED_BYTES: usize = 16 << 20;

/// The waiting room of a TCP test server: clients beyond `max_connections`
/// that wait for a thread instead of being refused.
const BACKLOG: usize = 64;

/// How much a recorder reads at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The most a lingering close reads and discards before it closes anyway.
const LINGER_BYTES: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Options: where and how a test server runs.
// ---------------------------------------------------------------------------

/// Where a test server binds and how it treats connections. The defaults suit a
/// test on one machine; change a field with struct-update syntax:
///
/// ```
/// use sockstep::testkit::servers::Options;
/// use std::time::Duration;
///
/// let options = Options { io_timeout: Duration::from_secs(2), ..Options::default() };
/// let echo = options.tcp_echo()?;
/// assert!(echo.addr().ip().is_loopback());
/// # Ok::<(), sockstep::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    /// The address to bind. Default `127.0.0.1:0`: loopback, a port the OS
    /// chooses. Anything else is the test's explicit choice.
    pub bind: SocketAddr,
    /// The read and write timeout of every TCP connection (a silent client is
    /// cut off after this), and how long `assert_…` helpers wait. Not zero.
    pub io_timeout: Duration,
    /// How long a dropped guard lets TCP connections in flight finish before it
    /// shuts down their sockets.
    pub grace: Duration,
    /// TCP connections served at once, one thread each; more wait their turn.
    pub max_connections: usize,
    /// Connections (TCP), datagrams (UDP) or requests (HTTP) a recorder keeps;
    /// later ones are served and counted but not kept.
    pub max_recorded: usize,
    /// Bytes a recorder keeps in all; later bytes are read, counted, and dropped.
    pub max_recorded_bytes: usize,
    /// Where the server's socket steps are reported. Default: nowhere.
    pub trace: Trace,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            io_timeout: DEFAULT_IO_TIMEOUT,
            grace: DEFAULT_GRACE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_recorded: DEFAULT_MAX_RECORDED,
            max_recorded_bytes: DEFAULT_MAX_RECORDED_BYTES,
            trace: Trace::off(),
        }
    }
}

impl Options {
    /// These options with `addr` to bind instead of `127.0.0.1:0`.
    pub fn bind(mut self, addr: SocketAddr) -> Options {
        self.bind = addr;
        self
    }

    /// A TCP server that writes back every byte it reads (tcp::handlers::Echo).
    ///
    /// # Errors
    /// As [`Options::tcp_handler`].
    pub fn tcp_echo(&self) -> Result<TcpServer, Error> {
        self.tcp_handler(handlers::Echo)
    }

    /// A TCP server that reads and discards everything (tcp::handlers::Sink).
    ///
    /// # Errors
    /// As [`Options::tcp_handler`].
    pub fn tcp_sink(&self) -> Result<TcpServer, Error> {
        self.tcp_handler(handlers::Sink)
    }

    /// A TCP server that answers every connection with `reply`, at once, without
    /// waiting to be asked; then half-closes (the client reads `reply`, then end
    /// of stream) and reads and discards whatever the client sends until the
    /// client closes too. The reading keeps the close from becoming a reset that
    /// could destroy `reply` before the client has read it.
    ///
    /// # Errors
    /// As [`Options::tcp_handler`].
    pub fn tcp_reply(&self, reply: impl Into<Vec<u8>>) -> Result<TcpServer, Error> {
        let reply: Vec<u8> = reply.into();
        self.tcp_handler(move |conn: &mut Connection| {
            conn.write_all(&reply)?;
            close_gently(conn, None);
            Ok(())
        })
    }

    /// A TCP server that keeps what each connection sent; see [`TcpRecorder`].
    ///
    /// # Errors
    /// As [`Options::tcp_handler`].
    pub fn tcp_recorder(&self) -> Result<TcpRecorder, Error> {
        let book = Arc::new(Watched::new(TcpBook::default()));
        let limits = (self.max_recorded, self.max_recorded_bytes);
        let handler_book = book.clone();
        let server = self.tcp_handler(move |conn: &mut Connection| {
            record_connection(&handler_book, limits, conn)
        })?;
        Ok(TcpRecorder { server, book })
    }

    /// A TCP server running your own `handler` on each connection, with these
    /// options' binding, timeouts, limits and shutdown.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a zero `io_timeout` or a
    /// `max_connections` out of range; the bind error (for example
    /// [`ErrorKind::AddressInUse`] when [`Options::bind`] names a taken port).
    pub fn tcp_handler(&self, handler: impl Handler) -> Result<TcpServer, Error> {
        let server = self.listen()?.serve(self.serve_config(), handler)?;
        Ok(TcpServer { server })
    }

    /// A UDP server that sends every datagram back to its sender (udp::handlers::Echo).
    ///
    /// # Errors
    /// As [`Options::udp_handler`].
    pub fn udp_echo(&self) -> Result<UdpServer, Error> {
        self.udp_handler(udp_handlers::Echo)
    }

    /// A UDP server that receives every datagram and answers none.
    ///
    /// # Errors
    /// As [`Options::udp_handler`].
    pub fn udp_sink(&self) -> Result<UdpServer, Error> {
        self.udp_handler(|_: SocketAddr, _: &[u8]| None)
    }

    /// A UDP server that answers every datagram with `reply`, sent to its sender.
    ///
    /// # Errors
    /// As [`Options::udp_handler`].
    pub fn udp_reply(&self, reply: impl Into<Vec<u8>>) -> Result<UdpServer, Error> {
        let reply: Vec<u8> = reply.into();
        self.udp_handler(move |_: SocketAddr, _: &[u8]| Some(reply.clone()))
    }

    /// A UDP server that keeps every datagram with its sender; see [`UdpRecorder`].
    ///
    /// # Errors
    /// As [`Options::udp_handler`].
    pub fn udp_recorder(&self) -> Result<UdpRecorder, Error> {
        let book = Arc::new(Watched::new(UdpBook::default()));
        let (max, max_bytes) = (self.max_recorded, self.max_recorded_bytes);
        let handler_book = book.clone();
        let server = self.udp_handler(move |from: SocketAddr, payload: &[u8]| {
            handler_book.update(|b| {
                if b.kept.len() < max && b.bytes + payload.len() <= max_bytes {
                    b.bytes += payload.len();
                    b.kept.push(Received {
                        from,
                        payload: payload.to_vec(),
                    });
                } else {
                    b.not_kept += 1;
                }
            });
            None
        })?;
        Ok(UdpRecorder { server, book })
    }

    /// A UDP server running your own `handler` on each datagram.
    ///
    /// # Errors
    /// The bind error, or the OS error if the server's thread cannot start.
    pub fn udp_handler(&self, handler: impl DatagramHandler) -> Result<UdpServer, Error> {
        let server = udp_socket::socket(self.bind, Side::Server, &self.trace)
            .bind()?
            .serve(handler)?;
        Ok(UdpServer { server })
    }

    /// Server steps 1–3 on [`Options::bind`], after checking the options.
    pub(crate) fn listen(&self) -> Result<Listening, Error> {
        if self.io_timeout.is_zero() {
            return Err(Error::new(
                Step::Serve,
                ErrorKind::InvalidInput("io_timeout must not be zero".into()),
            ));
        }
        Ok(server::socket(self.bind, &self.trace)
            .bind()?
            .listen(BACKLOG))
    }

    /// The TCP server's configuration: these timeouts, limits and grace.
    pub(crate) fn serve_config(&self) -> ServeConfig {
        ServeConfig {
            max_connections: self.max_connections,
            timeouts: Timeouts {
                read: Some(self.io_timeout),
                write: Some(self.io_timeout),
            },
            grace: self.grace,
            ..ServeConfig::default()
        }
    }
}

/// A TCP echo server on `127.0.0.1:0`. See [`Options::tcp_echo`].
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::TcpStream;
///
/// let echo = sockstep::testkit::servers::tcp_echo()?;
/// let mut client = TcpStream::connect(echo.addr())?;
/// client.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
/// client.write_all(b"ping")?;
/// let mut back = [0; 4];
/// client.read_exact(&mut back)?;
/// assert_eq!(&back, b"ping");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// As [`Options::tcp_handler`].
pub fn tcp_echo() -> Result<TcpServer, Error> {
    Options::default().tcp_echo()
}

/// A TCP sink (discard) server on `127.0.0.1:0`. See [`Options::tcp_sink`].
///
/// # Errors
/// As [`Options::tcp_handler`].
pub fn tcp_sink() -> Result<TcpServer, Error> {
    Options::default().tcp_sink()
}

/// A TCP server on `127.0.0.1:0` that answers every connection with `reply`.
/// See [`Options::tcp_reply`].
///
/// # Errors
/// As [`Options::tcp_handler`].
pub fn tcp_reply(reply: impl Into<Vec<u8>>) -> Result<TcpServer, Error> {
    Options::default().tcp_reply(reply)
}

/// A recording TCP server on `127.0.0.1:0`. See [`TcpRecorder`].
///
/// # Errors
/// As [`Options::tcp_handler`].
pub fn tcp_recorder() -> Result<TcpRecorder, Error> {
    Options::default().tcp_recorder()
}

/// A UDP echo server on `127.0.0.1:0`. See [`Options::udp_echo`].
///
/// ```
/// use std::net::UdpSocket;
///
/// let echo = sockstep::testkit::servers::udp_echo()?;
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
/// client.send_to(b"ping", echo.addr())?;
/// let mut buf = [0; 16];
/// let (n, _) = client.recv_from(&mut buf)?;
/// assert_eq!(&buf[..n], b"ping");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// As [`Options::udp_handler`].
pub fn udp_echo() -> Result<UdpServer, Error> {
    Options::default().udp_echo()
}

/// A UDP server on `127.0.0.1:0` that answers nothing. See [`Options::udp_sink`].
///
/// # Errors
/// As [`Options::udp_handler`].
pub fn udp_sink() -> Result<UdpServer, Error> {
    Options::default().udp_sink()
}

/// A UDP server on `127.0.0.1:0` that answers every datagram with `reply`.
///
/// # Errors
/// As [`Options::udp_handler`].
pub fn udp_reply(reply: impl Into<Vec<u8>>) -> Result<UdpServer, Error> {
    Options::default().udp_reply(reply)
}

/// A recording UDP server on `127.0.0.1:0`. See [`UdpRecorder`].
///
/// # Errors
/// As [`Options::udp_handler`].
pub fn udp_recorder() -> Result<UdpRecorder, Error> {
    Options::default().udp_recorder()
}

// ---------------------------------------------------------------------------
// The TCP guard.
// ---------------------------------------------------------------------------

/// A running TCP test server. Dropping it shuts the server down and joins its
/// threads; [`shutdown`](TcpServer::shutdown) does the same and says what it did.
#[derive(Debug)]
pub struct TcpServer {
    server: Server,
}

impl TcpServer {
    /// The address to connect to, with the port the OS chose.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// What the server has done so far: connections accepted, served, cut off.
    pub fn stats(&self) -> Stats {
        self.server.stats()
    }

    /// The last few errors its connections ended with, as sentences (a client
    /// that reset, a read that timed out).
    pub fn recent_errors(&self) -> Vec<String> {
        self.server.recent_errors()
    }

    /// Stops the server and joins its threads (as dropping it does), and returns
    /// its final counts; `threads_abandoned` is 0 unless a handler is stuck
    /// outside socket I/O.
    pub fn shutdown(self) -> Stats {
        self.server.shutdown()
    }
}

// ---------------------------------------------------------------------------
// The TCP recorder.
// ---------------------------------------------------------------------------

/// What a [`TcpRecorder`] kept of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRecording {
    /// The client's address.
    pub peer: SocketAddr,
    /// The bytes it sent, in order (at most what the recorder's byte limit left room for).
    pub bytes: Vec<u8>,
    /// Bytes it sent past the recorder's limit: read and thrown away.
    pub bytes_not_kept: u64,
    /// Whether the connection has ended: the client closed its side, it reset,
    /// the read timed out, or the server shut down.
    pub ended: bool,
    /// How it ended, if not with a clean end of stream (for example
    /// "connection reset by peer").
    pub error: Option<String>,
}

impl fmt::Display for TcpRecording {
    /// `from 127.0.0.1:40212: b"HELO\r\n" (open)`: the bytes as a byte string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "from {}: {}", self.peer, show_bytes(&self.bytes, 64))?;
        if self.bytes_not_kept > 0 {
            write!(f, " (+{} bytes not kept)", self.bytes_not_kept)?;
        }
        match (&self.error, self.ended) {
            (Some(e), _) => write!(f, " (ended: {e})"),
            (None, true) => f.write_str(" (ended)"),
            (None, false) => f.write_str(" (open)"),
        }
    }
}

/// A TCP server that keeps what each connection sent, connections in the
/// order their threads started (for one client connecting after another, the
/// order it connected). It answers nothing.
///
/// Start one with [`tcp_recorder`] or [`Options::tcp_recorder`].
#[derive(Debug)]
pub struct TcpRecorder {
    server: TcpServer,
    book: Arc<Watched<TcpBook>>,
}

#[derive(Debug, Default)]
struct TcpBook {
    connections: Vec<TcpRecording>,
    bytes: usize,
    connections_not_kept: u64,
}

/// A recorder's handler: reads until the end, keeping what the limits allow.
fn record_connection(
    book: &Watched<TcpBook>,
    (max_connections, max_bytes): (usize, usize),
    conn: &mut Connection,
) -> Result<(), Error> {
    let index = book.update(|b| {
        if b.connections.len() < max_connections {
            b.connections.push(TcpRecording {
                peer: conn.peer_addr(),
                bytes: Vec::new(),
                bytes_not_kept: 0,
                ended: false,
                error: None,
            });
            Some(b.connections.len() - 1)
        } else {
            b.connections_not_kept += 1;
            None
        }
    });
    let mut buf = vec![0; READ_CHUNK];
    let result = loop {
        match conn.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Some(i) = index {
                    book.update(|b| {
                        let room = max_bytes.saturating_sub(b.bytes).min(n);
                        b.bytes += room;
                        let rec = &mut b.connections[i];
                        rec.bytes.extend_from_slice(&buf[..room]);
                        rec.bytes_not_kept += (n - room) as u64;
                    });
                }
            }
            Err(e) => break Err(e),
        }
    };
    if let Some(i) = index {
        book.update(|b| {
            let rec = &mut b.connections[i];
            rec.ended = true;
            rec.error = result.as_ref().err().map(Error::summary);
        });
    }
    result
}

impl TcpRecorder {
    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// What the server has done so far.
    pub fn stats(&self) -> Stats {
        self.server.stats()
    }

    /// Every connection kept so far, with what it sent up to now.
    pub fn recordings(&self) -> Vec<TcpRecording> {
        self.book.read(|b| b.connections.clone())
    }

    /// Connections that arrived after [`Options::max_recorded`] were kept:
    /// served, read to the end, not recorded.
    pub fn connections_not_kept(&self) -> u64 {
        self.book.read(|b| b.connections_not_kept)
    }

    /// Waits until `condition` holds for the recordings, checking it each time
    /// bytes arrive or a connection ends, and returns the recordings it held for.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] if it did not hold within `timeout`; the error's
    /// text shows what had been recorded.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&[TcpRecording]) -> bool,
    ) -> Result<Vec<TcpRecording>, Error> {
        self.book
            .wait_until(timeout, |b| condition(&b.connections))
            .map(|b| b.connections.clone())
            .map_err(|b| {
                let seen: Vec<String> = b.connections.iter().map(ToString::to_string).collect();
                wait_timed_out(
                    Step::Read,
                    timeout,
                    "the condition on the recordings",
                    &seen,
                )
            })
    }

    /// Waits until `count` connections have ended (so what they sent is
    /// complete), and returns every recording.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] if fewer ended within `timeout`.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Result<Vec<TcpRecording>, Error> {
        self.wait_until(timeout, |conns| {
            conns.iter().filter(|c| c.ended).count() >= count
        })
    }

    /// Stops the server, joins its threads, and returns everything recorded:
    /// afterwards every recording has `ended`.
    pub fn shutdown(self) -> Vec<TcpRecording> {
        let TcpRecorder { server, book } = self;
        server.shutdown();
        book.read(|b| b.connections.clone())
    }
}

// ---------------------------------------------------------------------------
// The UDP guard and recorder.
// ---------------------------------------------------------------------------

/// A running UDP test server. Dropping it stops the server's thread and joins
/// it (within [`POLL`](crate::udp::serve::POLL)).
#[derive(Debug)]
pub struct UdpServer {
    server: UdpServe,
}

impl UdpServer {
    /// The address to send datagrams to.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Datagrams received, replies sent, errors so far.
    pub fn stats(&self) -> UdpStats {
        self.server.stats()
    }

    /// Stops the server, joins its thread, and returns its final counts.
    pub fn shutdown(self) -> UdpStats {
        self.server.shutdown()
    }
}

/// A UDP server that keeps every datagram with its sender, in arrival order,
/// and answers none. Start one with [`udp_recorder`] or [`Options::udp_recorder`].
///
/// ```
/// use std::net::UdpSocket;
/// use std::time::Duration;
///
/// let recorder = sockstep::testkit::servers::udp_recorder()?;
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.send_to(b"one", recorder.addr())?;
/// client.send_to(b"two", recorder.addr())?;
/// let got = recorder.wait_for(2, Duration::from_secs(5))?;
/// assert_eq!((got[0].payload.as_slice(), got[1].payload.as_slice()), (&b"one"[..], &b"two"[..]));
/// assert_eq!(got[0].from, client.local_addr()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct UdpRecorder {
    server: UdpServer,
    book: Arc<Watched<UdpBook>>,
}

#[derive(Debug, Default)]
struct UdpBook {
    kept: Vec<Received>,
    bytes: usize,
    not_kept: u64,
}

impl UdpRecorder {
    /// The address to send datagrams to.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Datagrams received and errors so far.
    pub fn stats(&self) -> UdpStats {
        self.server.stats()
    }

    /// Every datagram kept so far, in arrival order, each with its sender.
    pub fn received(&self) -> Vec<Received> {
        self.book.read(|b| b.kept.clone())
    }

    /// Datagrams that arrived once the limits were reached: counted, not kept.
    pub fn not_kept(&self) -> u64 {
        self.book.read(|b| b.not_kept)
    }

    /// Waits until `condition` holds for the datagrams kept, checking it at each
    /// arrival, and returns them.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] if it did not hold within `timeout` — with UDP
    /// that may simply mean a datagram was lost; the error's text shows what came.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&[Received]) -> bool,
    ) -> Result<Vec<Received>, Error> {
        self.book
            .wait_until(timeout, |b| condition(&b.kept))
            .map(|b| b.kept.clone())
            .map_err(|b| {
                let seen: Vec<String> = b
                    .kept
                    .iter()
                    .map(|d| format!("from {}: {}", d.from, show_bytes(&d.payload, 64)))
                    .collect();
                wait_timed_out(
                    Step::RecvFrom,
                    timeout,
                    "the condition on the datagrams",
                    &seen,
                )
            })
    }

    /// Waits until at least `count` datagrams have been kept, and returns them.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] if fewer arrived within `timeout`.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Result<Vec<Received>, Error> {
        self.wait_until(timeout, |kept| kept.len() >= count)
    }

    /// Stops the server, joins its thread, and returns every datagram kept.
    pub fn shutdown(self) -> Vec<Received> {
        let UdpRecorder { server, book } = self;
        server.shutdown();
        book.read(|b| b.kept.clone())
    }
}

// ---------------------------------------------------------------------------
// Shared by the testkit: state a test waits on, gentle closes, readable bytes.
// ---------------------------------------------------------------------------

/// State written by server threads and waited on by the test: a mutex for the
/// state and a condition variable signalled after every change, so a waiter
/// wakes exactly when something it might be waiting for has happened.
#[derive(Debug, Default)]
pub(crate) struct Watched<S> {
    state: Mutex<S>,
    changed: Condvar,
}

impl<S> Watched<S> {
    pub(crate) fn new(state: S) -> Watched<S> {
        Watched {
            state: Mutex::new(state),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, S> {
        // Every update is a few field assignments that cannot panic half-way
        // (they only push, add and set), so a poisoned lock still guards whole
        // state; and a guard's drop must never panic on it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the state and wakes every waiter.
    pub(crate) fn update<R>(&self, change: impl FnOnce(&mut S) -> R) -> R {
        let result = change(&mut self.lock());
        self.changed.notify_all();
        result
    }

    /// Looks at the state.
    pub(crate) fn read<R>(&self, look: impl FnOnce(&S) -> R) -> R {
        look(&self.lock())
    }

    /// Waits until `condition` holds or `timeout` passes; the state, locked,
    /// either way (`Err` when the condition never held).
    pub(crate) fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&S) -> bool,
    ) -> Result<MutexGuard<'_, S>, MutexGuard<'_, S>> {
        let (state, _) = self
            .changed
            .wait_timeout_while(self.lock(), timeout, |s| !condition(s))
            .unwrap_or_else(PoisonError::into_inner);
        if condition(&state) {
            Ok(state)
        } else {
            Err(state)
        }
    }
}

/// The timeout of a `wait_…` helper, with what the test was waiting for and
/// what had happened by then (one line per item) in the error's text.
pub(crate) fn wait_timed_out(
    step: Step,
    waited: Duration,
    for_what: &str,
    seen: &[String],
) -> Error {
    const SHOWN: usize = 8;
    let mut text = format!(
        "waited {waited:?} for {for_what}; {} seen by then",
        seen.len()
    );
    for (i, item) in seen.iter().take(SHOWN).enumerate() {
        text.push_str(&format!("\n    [{i}] {}", clip(item, 300)));
    }
    if seen.len() > SHOWN {
        text.push_str(&format!("\n    … and {} more", seen.len() - SHOWN));
    }
    Error::new(step, ErrorKind::TimedOut).with_io(io::Error::new(io::ErrorKind::TimedOut, text))
}

/// `text` cut to about `max` characters, on a character boundary.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Ends a connection from the server's side without losing what it wrote:
/// shutdown(SHUT_WR) sends FIN after everything written, then read and discard
/// until the client closes too (or `linger` passes — by default the read
/// timeout), so no unread byte of the client's turns our close(2) into an RST
/// that could destroy our last bytes before the client reads them.
pub(crate) fn close_gently(conn: &mut Connection, linger: Option<Duration>) {
    // An error here means the write side is already shut (a script's
    // half-close) or the client reset; either way, reading is what is left.
    let _ = conn.shutdown_write();
    if let Some(linger) = linger {
        conn.set_deadline(Some(Instant::now() + linger));
    }
    let mut chunk = [0; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    conn.set_deadline(None);
}

/// `bytes` as a Rust byte-string literal (`b"GET /\r\n"`), cut after `max`
/// bytes with the total said: readable in a failure message whatever the bytes.
pub(crate) fn show_bytes(bytes: &[u8], max: usize) -> String {
    let mut text = String::from("b\"");
    for &b in bytes.iter().take(max) {
        text.extend(std::ascii::escape_default(b).map(char::from));
    }
    text.push('"');
    if bytes.len() > max {
        text.push_str(&format!("… ({} bytes in all)", bytes.len()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_escaped_and_clipped() {
        assert_eq!(show_bytes(b"a\r\n\x00\"", 64), r#"b"a\r\n\x00\"""#);
        assert_eq!(show_bytes(b"abcdef", 3), "b\"abc\"… (6 bytes in all)");
    }

    #[test]
    fn a_wait_that_times_out_says_what_it_saw() {
        let seen = ["1".to_string(), "2".to_string()];
        let e = wait_timed_out(Step::Read, Duration::from_millis(5), "two things", &seen);
        assert_eq!(e.kind(), &ErrorKind::TimedOut);
        let text = e.to_string();
        assert!(text.contains("two things; 2 seen"), "{text}");
        assert!(text.contains("[1] 2"), "{text}");
    }

    #[test]
    fn a_zero_io_timeout_is_refused_before_anything_binds() {
        let options = Options {
            io_timeout: Duration::ZERO,
            ..Options::default()
        };
        let e = options.tcp_echo().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidInput(_)), "{e}");
    }

    #[test]
    fn watched_state_wakes_a_waiter_when_it_changes() {
        let watched = Arc::new(Watched::new(0u32));
        let writer = {
            let watched = watched.clone();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    watched.update(|n| *n += 1);
                }
            })
        };
        let got = watched.wait_until(Duration::from_secs(5), |n| *n == 3);
        assert_eq!(got.map(|n| *n).ok(), Some(3));
        writer.join().expect("writer thread");
    }
}
