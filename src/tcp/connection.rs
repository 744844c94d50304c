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
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The read timeout the socket holds now (see [`Armed`]); shared with the
    /// handles of [`try_clone`](Connection::try_clone), which share the socket
    /// and so its options.
    armed: Arc<Armed>,
    trace: Trace,
}

impl Connection {
    /// Wraps a stream std just connected to or accepted from `peer`; `id` is the
    /// socket's identity in the trace. `local` is the socket's own address if
    /// the caller knows it; otherwise the kernel is asked (getsockname).
    pub(crate) fn new(
        id: SocketId,
        stream: TcpStream,
        side: Side,
        local: Option<SocketAddr>,
        peer: SocketAddr,
        trace: Trace,
    ) -> Result<Connection, Error> {
        let local = match local {
            Some(local) => local,
            None => stream.local_addr().map_err(|e| {
                Error::io(Step::Accept, e).at(Endpoint::from_addr(Protocol::Tcp, peer))
            })?,
        };
        Ok(Connection {
            id,
            stream: Arc::new(stream),
            side,
            local,
            peer,
            read_timeout: None,
            deadline: None,
            armed: Arc::new(Armed::new(None)),
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
    ///
    /// A read timeout set here holds until a deadline needs another (see
    /// [`set_deadline`](Connection::set_deadline)); for one the connection
    /// keeps, use [`set_timeouts`](Connection::set_timeouts).
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
            armed: self.armed.clone(),
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
        self.armed.set(timeouts.read);
        Ok(())
    }

    /// Records `timeouts` as the socket's without setting them: for a socket
    /// that already has them, because it inherited them from its listener
    /// (see [`serve`](crate::tcp::serve)).
    pub(crate) fn assume_timeouts(&mut self, timeouts: Timeouts) {
        self.read_timeout = timeouts.read;
        self.armed.set(timeouts.read);
    }

    /// Ends the connection's reading at `deadline`, however steadily the peer
    /// trickles bytes: a read timeout alone cannot stop a peer that sends one byte
    /// just before each timeout. `None` removes the deadline; the next read has
    /// the plain read timeout again.
    ///
    /// A read waits at most until the deadline, give or take
    /// [`DEADLINE_SLACK`]: each read shortens the socket's read timeout to the
    /// time left (setsockopt SO_RCVTIMEO), but only when the timeout it holds
    /// is off by more than the slack — so a stream of quick reads under one
    /// deadline costs a setsockopt every few milliseconds, not one per read.
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

    /// Gives the socket the read timeout the next read should have: the plain
    /// one, or the time left before the deadline if that is shorter — unless
    /// it already holds one close enough.
    fn apply_deadline(&mut self) -> Result<(), Error> {
        let wanted = match self.deadline {
            None => self.read_timeout,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(self.error(Step::Read, ErrorKind::TimedOut));
                }
                Some(self.read_timeout.map_or(left, |t| t.min(left)))
            }
        };
        if self.armed.is_close_to(wanted) {
            return Ok(());
        }
        self.stream
            .set_read_timeout(wanted)
            .map_err(|e| self.io_error(Step::Read, e))?;
        self.armed.set(wanted);
        Ok(())
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

/// How far a read may end from its deadline: the most a read timeout the
/// socket already holds may differ from the exact time left before it is
/// set again — 4 ms, or an eighth of the time left when that is less. The
/// kernel's own timers have a granularity of 1 to 4 ms (a jiffy), so a
/// deadline was never kept more exactly than that.
pub const DEADLINE_SLACK: Duration = Duration::from_millis(4);

/// The read timeout the socket holds, as far as this connection set it, in
/// nanoseconds (0: none, wait forever). An atomic because the handles of one
/// socket may read on two threads.
#[derive(Debug)]
struct Armed(AtomicU64);

impl Armed {
    fn new(timeout: Option<Duration>) -> Armed {
        Armed(AtomicU64::new(Armed::encode(timeout)))
    }

    fn encode(timeout: Option<Duration>) -> u64 {
        timeout.map_or(0, |t| {
            u64::try_from(t.as_nanos()).unwrap_or(u64::MAX).max(1)
        })
    }

    fn set(&self, timeout: Option<Duration>) {
        self.0.store(Armed::encode(timeout), Ordering::Relaxed);
    }

    /// Whether a read started now with the timeout held would end within the
    /// slack of one started with `wanted`.
    fn is_close_to(&self, wanted: Option<Duration>) -> bool {
        let held = self.0.load(Ordering::Relaxed);
        let wanted = Armed::encode(wanted);
        if held == 0 || wanted == 0 {
            return held == wanted;
        }
        let slack = Armed::encode(Some(DEADLINE_SLACK)).min(wanted / 8);
        held.abs_diff(wanted) <= slack
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::client;
    use std::net::TcpListener;
    use std::thread;

    /// Our connection to a raw std peer on loopback.
    fn pair() -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let conn = client::socket(listener.local_addr().unwrap(), &Trace::off())
            .timeouts(Timeouts {
                read: Some(Duration::from_secs(5)),
                write: Some(Duration::from_secs(5)),
            })
            .connect(Duration::from_secs(5))
            .unwrap();
        let (peer, _) = listener.accept().unwrap();
        (conn, peer)
    }

    #[test]
    fn a_held_timeout_is_close_enough_within_the_slack_and_never_across_forever() {
        let ms = Duration::from_millis;
        let armed = Armed::new(Some(ms(1_000)));
        assert!(armed.is_close_to(Some(ms(1_000))));
        assert!(armed.is_close_to(Some(ms(997))));
        assert!(!armed.is_close_to(Some(ms(995))));
        assert!(!armed.is_close_to(Some(ms(1_005))));
        assert!(!armed.is_close_to(None));
        // Near the deadline the slack shrinks with the time left.
        armed.set(Some(ms(16)));
        assert!(armed.is_close_to(Some(ms(15))));
        assert!(!armed.is_close_to(Some(ms(12))));
        armed.set(None);
        assert!(armed.is_close_to(None));
        assert!(!armed.is_close_to(Some(ms(1))));
    }

    #[test]
    fn a_trickling_peer_is_cut_off_at_the_deadline() {
        let (mut conn, mut peer) = pair();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let trickle = {
            let stop = stop.clone();
            thread::spawn(move || {
                // A byte every 2 ms, for at most 5 s.
                for _ in 0..2_500 {
                    if stop.load(Ordering::Relaxed) || peer.write_all(b"x").is_err() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let started = Instant::now();
        conn.set_deadline(Some(started + Duration::from_millis(200)));
        let mut buf = [0; 64];
        let mut reads = 0;
        let error = loop {
            match conn.read(&mut buf) {
                Ok(_) => reads += 1,
                Err(e) => break e,
            }
            assert!(started.elapsed() < Duration::from_secs(3), "never cut off");
        };
        stop.store(true, Ordering::Relaxed);
        trickle.join().unwrap();
        assert_eq!(error.kind(), &ErrorKind::TimedOut, "{error}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200),
            "cut off early: {took:?}"
        );
        assert!(
            reads > 10,
            "the peer trickled, the reads should have seen it: {reads}"
        );
    }

    #[test]
    fn a_later_deadline_waits_longer_than_the_one_before() {
        let (mut conn, peer) = pair();
        let mut buf = [0; 8];
        conn.set_deadline(Some(Instant::now() + Duration::from_millis(50)));
        let error = conn.read(&mut buf).unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::TimedOut, "{error}");
        // The socket now holds a timeout of about 50 ms; the next deadline is
        // later, and the read must wait for it, not for the old timeout.
        conn.set_deadline(Some(Instant::now() + Duration::from_secs(2)));
        let writer = after_300_ms(peer, b"late");
        let n = conn.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"late");
        // No deadline: the plain five-second read timeout again.
        conn.set_deadline(None);
        let writer = after_300_ms(writer.join().unwrap(), b"plain");
        let n = conn.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"plain");
        drop(writer.join().unwrap());
    }

    /// Writes `bytes` to `peer` 300 ms from now, on a thread that then hands
    /// the peer back.
    fn after_300_ms(mut peer: TcpStream, bytes: &'static [u8]) -> thread::JoinHandle<TcpStream> {
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            peer.write_all(bytes).unwrap();
            peer
        })
    }
}
