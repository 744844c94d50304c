//! The connected socket: what `accept()` gives the server and `connect()` gives the client.
//!
//! After the handshake both sides hold the same kind of thing — a [`Connection`] —
//! and the seed's last step is the same for both: "read() and write(), over and
//! over". TCP is two-way (양방향): either side may write at any time, and each
//! side's writes arrive at the other in order, as a stream of bytes with no
//! message boundaries (see [`framing`](super::framing) for putting them back).
//!
//! Ending a conversation has two halves. [`Connection::shutdown_write`] is the
//! half-close: it sends FIN, so the peer reads end-of-stream, while this side can
//! still read what the peer sends back. Dropping the connection (or calling
//! [`Connection::close`]) releases the socket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::endpoint::{Endpoint, Protocol};
use crate::error::{Error, ErrorKind};
use crate::step::{Side, Step};
use crate::trace::{Event, SocketId, Trace};

/// How long a connection waits for its peer before giving up.
///
/// Without timeouts a blocking socket waits forever: one silent client would
/// hold a server thread for good. Both default to 30 seconds — long enough for a
/// person typing into `nc`, short enough that a vanished peer frees its thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The longest wait for the next bytes to arrive (so also the longest idle
    /// time between messages). `None` waits forever.
    pub read: Option<Duration>,
    /// The longest wait for the kernel to take bytes we write (a peer that stops
    /// reading fills its window, then ours). `None` waits forever.
    pub write: Option<Duration>,
}

/// The default for both timeouts.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            read: Some(DEFAULT_TIMEOUT),
            write: Some(DEFAULT_TIMEOUT),
        }
    }
}

impl Timeouts {
    /// No timeouts at all: block as long as it takes.
    pub const NONE: Timeouts = Timeouts {
        read: None,
        write: None,
    };
}

/// A connected TCP socket, on either side. Implements [`Read`] and [`Write`].
///
/// The inherent [`read`](Connection::read), [`write`](Connection::write) and
/// [`write_all`](Connection::write_all) return sockstep's [`Error`]; through the
/// `Read`/`Write` traits the same error travels inside an [`io::Error`] and
/// [`Error::io`] recovers it.
#[derive(Debug)]
pub struct Connection {
    id: SocketId,
    // Shared so a server can force a connection closed at its shutdown deadline
    // without duplicating the file descriptor (see `serve`).
    stream: Arc<TcpStream>,
    side: Side,
    local: SocketAddr,
    peer: SocketAddr,
    read_timeout: Option<Duration>,
    deadline: Option<Instant>,
    /// The socket's read timeout was shortened to meet a deadline and must be
    /// put back once no deadline is set.
    shortened: bool,
    trace: Trace,
}

impl Connection {
    /// Wraps a stream std just connected to or accepted from `peer`; `id` is the
    /// socket's identity in the trace.
    pub(crate) fn new(
        id: SocketId,
        stream: TcpStream,
        side: Side,
        peer: SocketAddr,
        trace: Trace,
    ) -> Result<Connection, Error> {
        let local = stream
            .local_addr()
            .map_err(|e| Error::io(Step::Accept, e).at(Endpoint::from_addr(Protocol::Tcp, peer)))?;
        Ok(Connection {
            id,
            stream: Arc::new(stream),
            side,
            local,
            peer,
            read_timeout: None,
            deadline: None,
            shortened: false,
            trace,
        })
    }

    /// This socket's identity in the trace.
    pub fn id(&self) -> SocketId {
        self.id
    }

    /// This socket's own address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The other end's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The other end as an endpoint, `tcp://IP:PORT`.
    pub fn peer_endpoint(&self) -> Endpoint {
        Endpoint::from_addr(Protocol::Tcp, self.peer)
    }

    /// Which side of the conversation this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The underlying std socket, for options sockstep does not wrap.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub(crate) fn shared_stream(&self) -> Arc<TcpStream> {
        self.stream.clone()
    }

    /// A second handle on the same socket, so one thread can read while another
    /// writes — TCP is two-way, and a blocking read would otherwise stop this side
    /// from writing until something arrives.
    ///
    /// Underneath: dup(2) (fcntl F_DUPFD_CLOEXEC). Both handles share the socket,
    /// its options and its timeouts; dropping one closes only its descriptor, and
    /// the connection ends when the last is closed. To tell the peer "no more from
    /// me" while the other handle still reads, use [`shutdown_write`](Connection::shutdown_write).
    ///
    /// # Errors
    /// The OS error, for example EMFILE when the process is out of descriptors.
    pub fn try_clone(&self) -> Result<Connection, Error> {
        let stream = self
            .stream
            .try_clone()
            .map_err(|e| self.io_error(Step::Socket, e))?;
        Ok(Connection {
            id: self.id,
            stream: Arc::new(stream),
            side: self.side,
            local: self.local,
            peer: self.peer,
            read_timeout: self.read_timeout,
            deadline: self.deadline,
            shortened: self.shortened,
            trace: self.trace.clone(),
        })
    }

    /// Sets both timeouts (setsockopt SO_RCVTIMEO and SO_SNDTIMEO).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a zero duration, which the OS would read as "forever".
    pub fn set_timeouts(&mut self, timeouts: Timeouts) -> Result<(), Error> {
        for d in [timeouts.read, timeouts.write].into_iter().flatten() {
            if d.is_zero() {
                return Err(self.error(
                    Step::Read,
                    ErrorKind::InvalidInput("a timeout of zero".into()),
                ));
            }
        }
        self.stream
            .set_read_timeout(timeouts.read)
            .and_then(|()| self.stream.set_write_timeout(timeouts.write))
            .map_err(|e| self.io_error(Step::Read, e))?;
        self.read_timeout = timeouts.read;
        Ok(())
    }

    /// Ends the connection's reading at `deadline`, however steadily the peer
    /// trickles bytes: a read timeout alone cannot stop a peer that sends one byte
    /// just before each timeout. Costs one setsockopt per read while set. `None`
    /// removes the deadline; the next read has the plain read timeout again.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// The deadline in force, if any: a protocol that sets deadlines of its own
    /// (an HTTP request's) keeps within this one (the server's `max_lifetime`).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Turns Nagle's algorithm off (setsockopt TCP_NODELAY) so small writes leave
    /// at once instead of waiting to be merged — what request/response traffic wants.
    ///
    /// # Errors
    /// The OS error, if the option cannot be set.
    pub fn set_nodelay(&self, nodelay: bool) -> Result<(), Error> {
        self.stream
            .set_nodelay(nodelay)
            .map_err(|e| self.io_error(Step::Write, e))
    }

    /// Step 4, `read()`: takes up to `buf.len()` bytes that have arrived, waiting
    /// for at least one. Returns 0 at end of stream (the peer shut down its writing).
    ///
    /// Underneath: recvfrom(fd, buf, len, 0, NULL, NULL). A read may return fewer
    /// bytes than the peer wrote in one call, or bytes of several writes at once.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] when nothing arrived within the read timeout or the
    /// deadline passed; [`ErrorKind::ConnectionReset`] when the peer aborted.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.apply_deadline()?;
        let result = loop {
            match (&*self.stream).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(n) => {
                self.emit(Step::Read, Some(n), (n == 0).then_some("end of stream"));
                Ok(n)
            }
            Err(e) => Err(self.io_error(Step::Read, e)),
        }
    }

    /// Step 4, `write()`: hands up to `buf.len()` bytes to the kernel and returns
    /// how many it took. The kernel sends them when the network and the peer's
    /// window allow; returning does not mean the peer has them.
    ///
    /// Underneath: sendto(fd, buf, len, MSG_NOSIGNAL, NULL, 0). MSG_NOSIGNAL is
    /// why writing to a closed peer is an error here rather than a SIGPIPE.
    ///
    /// # Errors
    /// [`ErrorKind::BrokenPipe`] or [`ErrorKind::ConnectionReset`] when the peer
    /// is gone; [`ErrorKind::TimedOut`] when the peer stopped reading for longer
    /// than the write timeout.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        let result = loop {
            match (&*self.stream).write(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(n) => {
                self.emit(Step::Write, Some(n), None);
                Ok(n)
            }
            Err(e) => Err(self.io_error(Step::Write, e)),
        }
    }

    /// Writes all of `buf`, calling [`write`](Connection::write) as often as needed.
    ///
    /// # Errors
    /// As for `write`; a write that takes nothing is reported as [`ErrorKind::BrokenPipe`].
    pub fn write_all(&mut self, mut buf: &[u8]) -> Result<(), Error> {
        while !buf.is_empty() {
            match self.write(buf)? {
                0 => return Err(self.error(Step::Write, ErrorKind::BrokenPipe)),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }

    /// Half-close: "I will write nothing more". The peer reads end-of-stream once it
    /// has read everything before it; this side can still read the peer's answer.
    ///
    /// Underneath: shutdown(fd, SHUT_WR), which sends a FIN.
    ///
    /// # Errors
    /// The OS error, for example ENOTCONN when the peer already reset the connection.
    pub fn shutdown_write(&mut self) -> Result<(), Error> {
        self.stream
            .shutdown(Shutdown::Write)
            .map_err(|e| self.io_error(Step::Shutdown, e))?;
        self.emit(Step::Shutdown, None, Some("half-close: no more writes"));
        Ok(())
    }

    /// Releases the socket: close(2). The same happens when a connection is dropped.
    ///
    /// If the peer sent bytes this side never read, the kernel answers the close
    /// with RST instead of FIN and the peer sees "connection reset".
    pub fn close(self) {}

    /// Records what a protocol above TCP made of the bytes (an HTTP request read,
    /// a response written) as an event on this connection's trace, so a walkthrough
    /// shows messages beside the reads and writes that carried them. `detail` runs
    /// only when tracing is on.
    pub fn note(&self, step: Step, detail: impl FnOnce() -> String) {
        self.trace.emit(|| Event {
            local: Some(self.local),
            peer: Some(self.peer),
            detail: Some(detail()),
            ..Event::new(self.id, self.side, step, Protocol::Tcp)
        });
    }

    fn apply_deadline(&mut self) -> Result<(), Error> {
        let Some(deadline) = self.deadline else {
            if self.shortened {
                self.stream
                    .set_read_timeout(self.read_timeout)
                    .map_err(|e| self.io_error(Step::Read, e))?;
                self.shortened = false;
            }
            return Ok(());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.error(Step::Read, ErrorKind::TimedOut));
        }
        let wait = self.read_timeout.map_or(left, |t| t.min(left));
        self.shortened = true;
        self.stream
            .set_read_timeout(Some(wait))
            .map_err(|e| self.io_error(Step::Read, e))
    }

    fn emit(&self, step: Step, bytes: Option<usize>, detail: Option<&str>) {
        self.trace.emit(|| Event {
            local: Some(self.local),
            peer: Some(self.peer),
            bytes,
            detail: detail.map(str::to_string),
            ..Event::new(self.id, self.side, step, Protocol::Tcp)
        });
    }

    fn error(&self, step: Step, kind: ErrorKind) -> Error {
        Error::new(step, kind).at(self.peer_endpoint())
    }

    fn io_error(&self, step: Step, e: io::Error) -> Error {
        Error::io(step, e).at(self.peer_endpoint())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.emit(Step::Close, None, None);
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Connection::read(self, buf).map_err(io::Error::from)
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Connection::write(self, buf).map_err(io::Error::from)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Connection::write_all(self, buf).map_err(io::Error::from)
    }

    /// TCP has no user-space buffer to flush: every write already went to the kernel.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
