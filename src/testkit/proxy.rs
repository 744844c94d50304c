//! A fault-injecting TCP proxy: put a bad network between a client and a server,
//! on purpose, and change how bad while they talk.
//!
//! # The idea
//!
//! Loopback never loses, delays or cuts anything, so a client tested only
//! against a server on `127.0.0.1` has never met a slow link, a reply that
//! arrives a few bytes at a time, a connection cut in the middle of a message,
//! or a server that resets. A [`Proxy`] sits in between and does those things
//! to the bytes as they pass:
//!
//! ```text
//!                 upstream: client → server, through the upstream faults
//!  client ──────▶ proxy.local_addr() ─────────────────────────────────▶ server
//!  client ◀────── proxy.local_addr() ◀───────────────────────────────── server
//!                 downstream: server → client, through the downstream faults
//! ```
//!
//! The client connects to [`Proxy::local_addr`] instead of the server; for each
//! connection it accepts, the proxy opens one to the server and moves bytes
//! both ways. With no faults it is invisible: the same bytes, in the same
//! order, and each side's half-close (`shutdown(Write)`, a FIN) passed on as
//! the other side's end of stream. Faults ([`Fault`]) are added and removed by
//! name while it runs, each on one [`Direction`] or both, and apply to the
//! connections already open as well as new ones — the same model as Shopify's
//! toxiproxy, built on std alone.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::time::{Duration, Instant};
//! use sockstep::tcp::{client, handlers::Echo, serve::ServeConfig, server};
//! use sockstep::testkit::proxy::{Direction, Fault, Proxy, ProxyConfig};
//! use sockstep::trace::Trace;
//!
//! let any = "127.0.0.1:0".parse().unwrap();
//! let echo = server::socket(any, &Trace::off()).bind()?.listen(8).serve(ServeConfig::default(), Echo)?;
//! let proxy = Proxy::start(any, echo.local_addr(), ProxyConfig::default())?;
//! let delay = Duration::from_millis(50);
//! proxy.add_fault("slow", Direction::Upstream, Fault::Latency { delay, jitter: Duration::ZERO })?;
//!
//! let mut conn = client::socket(proxy.local_addr(), &Trace::off()).connect(Duration::from_secs(5))?;
//! let started = Instant::now();
//! conn.write_all(b"ping")?;
//! let mut reply = [0; 4];
//! conn.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"ping");                 // the same bytes...
//! assert!(started.elapsed() >= delay);         // ...later
//!
//! proxy.remove_fault("slow");                  // and now at loopback speed again
//! drop(conn);
//! let counts = proxy.shutdown();               // joins every thread it started
//! assert_eq!(counts.upstream.bytes, 4);
//! assert_eq!(counts.upstream.delayed, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What each fault does to the bytes
//!
//! | fault | the bytes | the connection |
//! |---|---|---|
//! | [`Fault::Latency`] | each chunk read is held `delay + U[0, jitter]`, never reordered | open |
//! | [`Fault::Bandwidth`] | written at most `bytes_per_second`, in small paced writes | open |
//! | [`Fault::Slicer`] | written in pieces of `min..=max` bytes with pauses between | open |
//! | [`Fault::LimitData`] | the first `bytes` of the connection this way pass, no more | closed with FIN both ways once they are through |
//! | [`Fault::Timeout`] | nothing moves this way while it is on; nothing is lost | open, or closed with FIN after `close_after` |
//! | [`Fault::ResetPeer`] | the first `after_bytes` pass | aborted: the side sending the next byte gets RST |
//! | [`Fault::SlowClose`] | unchanged | the FIN that passes on an end of stream waits `delay` |
//!
//! Byte counts ([`Fault::LimitData`], [`Fault::ResetPeer`]) are positions in
//! the connection's stream that way, counted from the connection's first
//! byte, whenever the fault was added: "the first 100 bytes pass". A
//! connection already past the position when the fault arrives forwards
//! nothing more that way: a limit closes it at once, a reset resets it at the
//! sender's next byte. Several faults of one kind on one direction combine: latencies
//! and slow closes add up, the lowest bandwidth wins, each limit counts on its
//! own (the smallest bites first), and the first slicer cuts.
//!
//! **Removing a fault mid-flight** changes what happens to bytes from then on:
//! bytes already held by a latency keep their release time (so nothing
//! overtakes them), a slicer writes the rest of the chunk it was cutting
//! whole, a timeout's held bytes flow again, intact and in order, and a FIN
//! waiting out a slow close goes at once. What a fault already did stays done:
//! a connection it closed or reset stays closed.
//!
//! # The reset, and what std cannot do
//!
//! A reset (RST) is the abrupt end of a TCP connection: the peer's next read or
//! write fails with "connection reset by peer" ([`ErrorKind::ConnectionReset`]),
//! where a FIN would have read as a clean end of stream. The usual way to send
//! one on purpose is `SO_LINGER` with a zero timeout before `close()`; std's
//! `TcpStream::set_linger` is still unstable (rust-lang/rust#88494). What std
//! *can* do is the other way Linux sends RST: **closing a socket while bytes
//! its peer sent sit unread in its receive buffer** (RFC 2525 §2.17: data
//! would be lost, so the peer must be told). So [`Fault::ResetPeer`] does
//! exactly that: once the first `after_bytes` have passed, the proxy stops
//! reading that way, [`peek`](std::net::TcpStream::peek)s until the sender's next bytes arrive,
//! and closes its socket with them unread. The sender of that direction always
//! gets RST — for [`Direction::Upstream`], a client whose request is answered
//! by a reset, the case most client tests want. The other side gets RST too
//! if the proxy holds unread bytes from it, and a FIN otherwise; and a side
//! that sends nothing more cannot be reset at all, which is what std cannot
//! do. No `unsafe`, no `extern "C"`.
//!
//! # Refusing new connections
//!
//! [`Proxy::set_refusing`] closes the listening socket, so the kernel answers
//! every new SYN with RST and `connect()` fails at once with
//! [`ErrorKind::ConnectionRefused`] — the clearest error a client can get, and
//! exactly what a stopped server looks like. Connections already open carry on.
//! The two alternatives are worse: accepting and closing at once lets
//! `connect()` succeed, so the failure shows up later as an end of stream that
//! looks like a crash; and merely not calling `accept()` refuses nobody — the
//! kernel completes up to 128 handshakes by itself and the clients hang until
//! their timeouts. `set_refusing(false)` binds the same address again (std sets
//! `SO_REUSEADDR`, so nothing lingers in the way).
//!
//! # Threads, and what bounds them
//!
//! - **One accept thread.** A blocking `accept()` cannot be interrupted in std,
//!   but Linux's accept(2) honours `SO_RCVTIMEO` (socket(7)); std only lacks a
//!   setter for listeners, so the listener passes through an [`OwnedFd`] to a
//!   `TcpStream`, gets its read timeout of [`POLL`], and comes back. The thread
//!   checks its stop flag at least every `POLL`: no wake-up connection needed.
//! - **Two threads per connection**, one pump per direction, each reading one
//!   socket and writing the other with read and write timeouts of at most
//!   `POLL`, so each notices a stop or a fault change within `POLL`. A pump
//!   holds at most [`ProxyConfig::buffer`] bytes read and not yet written; when
//!   it is full it stops reading, so a slow receiver backs up to the sender
//!   through TCP's own flow control. (A latency fault therefore caps the rate
//!   at `buffer / delay`, as a real link's window does.)
//! - **At most [`ProxyConfig::max_connections`]** (default
//!   [`MAX_CONNECTIONS`], at most [`MAX_CONNECTIONS_CEILING`]): each costs two
//!   threads with [`PUMP_STACK`] stacks (about 100 kB of memory in all) and two
//!   file descriptors, so the ceiling of 4,096 is 8,193 threads and 8,192
//!   descriptors, well below the ~16,000 threads past which a process here
//!   aborts and the 20,000 descriptors it may open. One more is accepted and
//!   closed at once, and counted in [`ProxyCounts::over_limit`].
//! - **Shutdown** ([`Proxy::shutdown`], or drop) sets the stop flag and joins
//!   every thread: within `POLL`, plus a connect to the server in progress
//!   (at most [`ProxyConfig::connect_timeout`]).
//!
//! # Reproducible
//!
//! Every random choice — a jitter, a slice's size, a pause — comes from a
//! [`Xoshiro256StarStar`](crate::udp::faults::Xoshiro256StarStar) seeded from
//! [`ProxyConfig::seed`], the connection's number (in accept order, from 1),
//! the direction and the fault's name; each fault has its own generator, so
//! adding one never shifts another's draws. The same seed cuts the same stream
//! at the same byte offsets, pauses the same pauses and gives the *n*th chunk
//! read the same jitter; connect sequentially to get the same numbering.
//!
//! [`OwnedFd`]: std::os::fd::OwnedFd
//! [`ErrorKind::ConnectionReset`]: crate::ErrorKind::ConnectionReset
//! [`ErrorKind::ConnectionRefused`]: crate::ErrorKind::ConnectionRefused

mod pump;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::endpoint::{Endpoint, Protocol};
use crate::error::{Error, ErrorKind};
use crate::step::{Side, Step};
use crate::trace::{Event, SocketId, Trace};

use pump::Conn;

/// The longest any proxy thread blocks before it checks whether to stop or
/// whether the faults changed: the accept timeout, and the longest read or
/// write timeout of a pump. Shutdown takes about this long; an idle connection
/// costs its two threads a wake-up this often.
pub const POLL: Duration = Duration::from_millis(50);

/// The default [`ProxyConfig::max_connections`].
pub const MAX_CONNECTIONS: usize = 1_024;

/// The largest [`ProxyConfig::max_connections`]: 8,193 threads and 8,192
/// descriptors at most, far below the ~16,000 threads past which a process
/// here aborts instead of getting an error, and the 20,000 files it may open.
pub const MAX_CONNECTIONS_CEILING: usize = 4_096;

/// The default [`ProxyConfig::buffer`]: what one direction of one connection
/// may hold, read and not yet written. 64 KiB is one loopback segment; at
/// 1,024 connections both ways it is 128 MiB at worst.
pub const BUFFER: usize = 64 * 1024;

/// The smallest and largest [`ProxyConfig::buffer`].
pub const BUFFER_RANGE: std::ops::RangeInclusive<usize> = 1024..=16 * 1024 * 1024;

/// Stack of each pump thread: it touches a few kilobytes (its buffers are on
/// the heap), so 128 KiB is ample and costs only the pages touched.
pub const PUMP_STACK: usize = 128 * 1024;

/// The longest [`Fault::Latency`] delay, [`Fault::SlowClose`] delay and
/// [`Fault::Slicer`] pause: longer is not a network any more.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// The longest [`Fault::Latency`] jitter.
pub const MAX_JITTER: Duration = Duration::from_secs(10);

/// The longest [`Fault::Timeout`] `close_after`: a day. Deadlines are
/// `Instant::now() + close_after`, which must not overflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// The largest [`Fault::Slicer`] piece.
pub const MAX_SLICE: usize = 64 * 1024;

/// The longest fault name.
pub const MAX_NAME: usize = 64;

/// The most faults in force at once: each pump consults every one per chunk.
pub const MAX_FAULTS: usize = 64;

/// Which way bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → server: what the client writes, on its way to the server.
    Upstream,
    /// Server → client: what the server writes, on its way back.
    Downstream,
    /// Both ways, each with its own state (and random draws).
    Both,
}

impl Direction {
    /// Whether a fault on `self` applies to bytes flowing `way`
    /// ([`Direction::Upstream`] or [`Direction::Downstream`]).
    pub fn covers(self, way: Direction) -> bool {
        self == Direction::Both || self == way
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Upstream => "upstream (client → server)",
            Direction::Downstream => "downstream (server → client)",
            Direction::Both => "both ways",
        })
    }
}

/// Something bad to do to the bytes of one direction. See the [module
/// docs](self) for the table, how faults of one kind combine, and what
/// removing one mid-flight does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Hold each chunk read for `delay` plus a uniform random `0..=jitter`,
    /// drawn per chunk. A chunk is never released before the one read before
    /// it: TCP does not reorder, so neither does the proxy.
    Latency {
        /// The fixed part (at most [`MAX_DELAY`]).
        delay: Duration,
        /// The random part's maximum (at most [`MAX_JITTER`]).
        jitter: Duration,
    },
    /// Write at most this many bytes per second, in writes of at most a
    /// twentieth of a second's worth, each paced after the last.
    Bandwidth {
        /// The rate, at least 1.
        bytes_per_second: u64,
    },
    /// Cut the stream into pieces of `min..=max` bytes, each its own write,
    /// with a random pause of `0..=pause` after each — the classic finder of
    /// code that takes one `read()` for one message.
    Slicer {
        /// The smallest piece, at least 1.
        min: usize,
        /// The largest piece, from `min` to [`MAX_SLICE`].
        max: usize,
        /// The longest pause after a piece (at most [`MAX_DELAY`]).
        pause: Duration,
    },
    /// Let the connection's first `bytes` through this way, then close the
    /// connection: each side reads what it was sent, then end of stream.
    LimitData {
        /// How many bytes pass.
        bytes: u64,
    },
    /// Stop forwarding this way while the fault is on; the connection stays
    /// open and nothing is lost (the sender backs up through flow control).
    /// With `close_after`, close the connection once the fault has been on
    /// that long for it.
    Timeout {
        /// Close (FIN both ways) after this long (at most [`MAX_TIMEOUT`]);
        /// `None` keeps the connection open until the fault is removed.
        close_after: Option<Duration>,
    },
    /// Let the connection's first `after_bytes` through this way, then abort
    /// it: the sender of the next byte gets RST (see [the reset](self#the-reset-and-what-std-cannot-do)).
    ResetPeer {
        /// How many bytes pass before the reset.
        after_bytes: u64,
    },
    /// When this way's sender ends its stream, pass the FIN on only after
    /// `delay` (at most [`MAX_DELAY`]).
    SlowClose {
        /// How long the end of stream waits.
        delay: Duration,
    },
}

impl Fault {
    /// Checks every field against its range.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] naming the fault and the field out of range.
    pub fn validate(&self) -> Result<(), Error> {
        let at_most = |what: &str, d: Duration, max: Duration| {
            if d > max {
                invalid(format!("{what} must be at most {max:?}, not {d:?}"))
            } else {
                Ok(())
            }
        };
        match *self {
            Fault::Latency { delay, jitter } => {
                at_most("latency `delay`", delay, MAX_DELAY)?;
                at_most("latency `jitter`", jitter, MAX_JITTER)
            }
            Fault::Bandwidth {
                bytes_per_second: 0,
            } => invalid("bandwidth `bytes_per_second` must be at least 1".into()),
            Fault::Slicer { min, max, pause } => {
                if min == 0 || min > max || max > MAX_SLICE {
                    return invalid(format!(
                        "slicer sizes must be 1 <= min <= max <= {MAX_SLICE}, not {min}..={max}"
                    ));
                }
                at_most("slicer `pause`", pause, MAX_DELAY)
            }
            Fault::Timeout {
                close_after: Some(d),
            } => at_most("timeout `close_after`", d, MAX_TIMEOUT),
            Fault::SlowClose { delay } => at_most("slow close `delay`", delay, MAX_DELAY),
            Fault::Bandwidth { .. }
            | Fault::LimitData { .. }
            | Fault::Timeout { close_after: None }
            | Fault::ResetPeer { .. } => Ok(()),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Latency { delay, jitter } if jitter.is_zero() => write!(f, "latency {delay:?}"),
            Fault::Latency { delay, jitter } => {
                write!(f, "latency {delay:?} + 0..={jitter:?} jitter")
            }
            Fault::Bandwidth { bytes_per_second } => {
                write!(f, "bandwidth {bytes_per_second} bytes/s")
            }
            Fault::Slicer { min, max, pause } => {
                write!(f, "slicer {min}-{max} bytes, pauses 0..={pause:?}")
            }
            Fault::LimitData { bytes } => write!(f, "limit data {bytes} bytes"),
            Fault::Timeout { close_after: None } => f.write_str("timeout (stall, never close)"),
            Fault::Timeout {
                close_after: Some(d),
            } => write!(f, "timeout (stall, close after {d:?})"),
            Fault::ResetPeer { after_bytes } => write!(f, "reset peer after {after_bytes} bytes"),
            Fault::SlowClose { delay } => write!(f, "slow close {delay:?}"),
        }
    }
}

/// A fault in force: its name, its direction, what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFault {
    /// The name it is removed by (unique in one proxy; 1 to [`MAX_NAME`] bytes).
    pub name: String,
    /// Which way it applies.
    pub direction: Direction,
    /// What it does.
    pub fault: Fault,
}

impl NamedFault {
    /// A fault named `name` on `direction`.
    pub fn new(name: impl Into<String>, direction: Direction, fault: Fault) -> NamedFault {
        NamedFault {
            name: name.into(),
            direction,
            fault,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if self.name.is_empty() || self.name.len() > MAX_NAME {
            return invalid(format!(
                "a fault name must be 1 to {MAX_NAME} bytes, not {:?}",
                self.name
            ));
        }
        self.fault.validate()
    }
}

/// How a [`Proxy`] runs. The default: no faults, seed 0, the default limits.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Faults in force from the first connection on (each can be removed by
    /// name later). Names must be unique.
    pub faults: Vec<NamedFault>,
    /// Start refusing new connections (see [`Proxy::set_refusing`]).
    pub refuse: bool,
    /// Where every random draw starts. Same seed, same draws.
    pub seed: u64,
    /// Connections open at once, 1 ..= [`MAX_CONNECTIONS_CEILING`].
    pub max_connections: usize,
    /// Bytes one direction of one connection may hold, read and not yet
    /// written ([`BUFFER_RANGE`]).
    pub buffer: usize,
    /// The longest the connect to the server may take, per connection.
    pub connect_timeout: Duration,
    /// Where the proxy reports what it does: accepts, connects, faults applied,
    /// half-closes, resets. Off by default.
    pub trace: Trace,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            faults: Vec::new(),
            refuse: false,
            seed: 0,
            max_connections: MAX_CONNECTIONS,
            buffer: BUFFER,
            // A server on loopback answers at once or refuses; 2 s is a slow
            // LAN's worth and bounds how long shutdown can wait for a connect.
            connect_timeout: Duration::from_secs(2),
            trace: Trace::off(),
        }
    }
}

impl ProxyConfig {
    /// Checks the limits and every fault.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] naming the first field out of range, or a
    /// fault name given twice.
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=MAX_CONNECTIONS_CEILING).contains(&self.max_connections) {
            return invalid(format!(
                "`max_connections` must be 1..={MAX_CONNECTIONS_CEILING}, not {}",
                self.max_connections
            ));
        }
        if !BUFFER_RANGE.contains(&self.buffer) {
            return invalid(format!(
                "`buffer` must be {}..={} bytes, not {}",
                BUFFER_RANGE.start(),
                BUFFER_RANGE.end(),
                self.buffer
            ));
        }
        if self.connect_timeout.is_zero() || self.connect_timeout > MAX_TIMEOUT {
            return invalid(format!(
                "`connect_timeout` must be above zero and at most {MAX_TIMEOUT:?}, not {:?}",
                self.connect_timeout
            ));
        }
        if self.faults.len() > MAX_FAULTS {
            return invalid(format!(
                "at most {MAX_FAULTS} faults, not {}",
                self.faults.len()
            ));
        }
        for (i, f) in self.faults.iter().enumerate() {
            f.validate()?;
            if self.faults[..i].iter().any(|g| g.name == f.name) {
                return invalid(format!("the fault name {:?} is given twice", f.name));
            }
        }
        Ok(())
    }
}

/// What happened to the bytes of one direction, and which faults acted on
/// them, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionCounts {
    /// Bytes written to the receiving side.
    pub bytes: u64,
    /// Chunks held back by a latency fault.
    pub delayed: u64,
    /// Writes paced by a bandwidth fault.
    pub throttled: u64,
    /// Pieces written by a slicer.
    pub slices: u64,
    /// Times a timeout fault stopped this direction of a connection.
    pub stalls: u64,
    /// Connections closed because a limit-data fault was reached this way.
    pub limits: u64,
    /// Connections closed by a timeout fault's `close_after`.
    pub timeouts: u64,
    /// Connections aborted by a reset-peer fault this way.
    pub resets: u64,
    /// Ends of stream whose FIN a slow-close fault held back.
    pub slow_closes: u64,
    /// Ends of stream passed on (the sender's FIN, forwarded as ours).
    pub half_closes: u64,
    /// Reads or writes that failed (a peer's reset, a broken pipe); the
    /// connection was then closed.
    pub errors: u64,
}

impl DirectionCounts {
    /// How many times a fault acted: every count but `bytes`, `half_closes`
    /// and `errors`.
    pub fn faults_applied(&self) -> u64 {
        self.delayed
            + self.throttled
            + self.slices
            + self.stalls
            + self.limits
            + self.timeouts
            + self.resets
            + self.slow_closes
    }
}

/// What a proxy did, counted. A snapshot; see [`Proxy::counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyCounts {
    /// Connections accepted and given a pair of pumps (or trying to reach the
    /// server), in all.
    pub connections: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections that reached the proxy while it was switching to refusing,
    /// and were closed at once. (Once it refuses, the kernel refuses for it
    /// and nothing reaches the proxy to count.)
    pub refused: u64,
    /// Connections closed at once because [`ProxyConfig::max_connections`]
    /// were open.
    pub over_limit: u64,
    /// Connections whose connect to the server failed; the client's socket
    /// was closed.
    pub upstream_failed: u64,
    /// Client → server.
    pub upstream: DirectionCounts,
    /// Server → client.
    pub downstream: DirectionCounts,
}

impl ProxyCounts {
    /// The counts of one way ([`Direction::Both`] gives the sum).
    pub fn direction(&self, direction: Direction) -> DirectionCounts {
        match direction {
            Direction::Upstream => self.upstream,
            Direction::Downstream => self.downstream,
            Direction::Both => {
                let (a, b) = (self.upstream, self.downstream);
                DirectionCounts {
                    bytes: a.bytes + b.bytes,
                    delayed: a.delayed + b.delayed,
                    throttled: a.throttled + b.throttled,
                    slices: a.slices + b.slices,
                    stalls: a.stalls + b.stalls,
                    limits: a.limits + b.limits,
                    timeouts: a.timeouts + b.timeouts,
                    resets: a.resets + b.resets,
                    slow_closes: a.slow_closes + b.slow_closes,
                    half_closes: a.half_closes + b.half_closes,
                    errors: a.errors + b.errors,
                }
            }
        }
    }

    /// Faults applied, both ways.
    pub fn faults_applied(&self) -> u64 {
        self.direction(Direction::Both).faults_applied()
    }

    pub(crate) fn direction_mut(&mut self, way: Direction) -> &mut DirectionCounts {
        match way {
            Direction::Downstream => &mut self.downstream,
            _ => &mut self.upstream,
        }
    }
}

/// A running proxy. Dropping it shuts it down. See the [module docs](self).
#[derive(Debug)]
pub struct Proxy {
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    stopped: Option<ProxyCounts>,
}

/// What every thread of one proxy shares. Each lock is taken alone, never
/// while holding another.
#[derive(Debug)]
struct Shared {
    local: SocketAddr,
    upstream: SocketAddr,
    seed: u64,
    max_connections: usize,
    buffer: usize,
    connect_timeout: Duration,
    trace: Trace,
    stopping: AtomicBool,
    /// The faults in force, and a version number bumped on every change so a
    /// pump can see a change with one atomic load.
    faults: Mutex<Vec<NamedFault>>,
    faults_version: AtomicU64,
    counts: Mutex<ProxyCounts>,
    /// The listening socket's state, shared with [`Proxy::set_refusing`].
    gate: Mutex<Gate>,
    gate_changed: Condvar,
    /// Pump threads; finished ones are joined now and then, the rest at shutdown.
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_connection: AtomicU64,
}

/// Whether the proxy listens, and the hand-over of a new listener.
#[derive(Debug, Default)]
struct Gate {
    /// What the owner asked for.
    refusing: bool,
    /// Whether the accept thread holds an open listener right now.
    open: bool,
    /// A listener bound by `set_refusing(false)`, for the accept thread to take.
    replacement: Option<TcpListener>,
}

impl Proxy {
    /// Starts a proxy listening on `listen` that passes every connection on to
    /// `upstream`, with `config`'s faults and limits. Returns at once; the
    /// proxy runs on threads of its own.
    ///
    /// Underneath: `TcpListener::bind` (socket + SO_REUSEADDR + bind +
    /// listen(128)), SO_RCVTIMEO of [`POLL`] on the listener, one accept
    /// thread. Each connection accepted later costs a `connect()` to
    /// `upstream` and two threads.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a config out of range, or an `upstream`
    /// that is the proxy's own address (it would connect to itself forever);
    /// the errors of bind, such as [`ErrorKind::AddressInUse`]; the OS error
    /// if the accept thread cannot start.
    pub fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        config: ProxyConfig,
    ) -> Result<Proxy, Error> {
        config.validate()?;
        let listener = bind(listen)?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io(Step::Bind, e).at(tcp(listen)))?;
        if is_self(local, upstream) {
            return Err(invalid_error(format!(
                "the upstream {upstream} is the proxy's own address; it would connect to itself"
            ))
            .at(tcp(local)));
        }
        let refusing = config.refuse;
        let shared = Arc::new(Shared {
            local,
            upstream,
            seed: config.seed,
            max_connections: config.max_connections,
            buffer: config.buffer,
            connect_timeout: config.connect_timeout,
            trace: config.trace,
            stopping: AtomicBool::new(false),
            faults: Mutex::new(config.faults),
            faults_version: AtomicU64::new(0),
            counts: Mutex::new(ProxyCounts::default()),
            gate: Mutex::new(Gate {
                refusing,
                open: !refusing,
                replacement: None,
            }),
            gate_changed: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            next_connection: AtomicU64::new(1),
        });
        shared.trace.emit(|| {
            Event::new(SocketId::next(), Side::Server, Step::Listen, Protocol::Tcp)
                .local(local)
                .peer(upstream)
                .detail(format!(
                    "proxy listening, passing connections on to {upstream}"
                ))
        });
        // Refusing from the start: the port was bound only to learn it; close it.
        let first = (!refusing).then_some(listener);
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("sockstep-proxy-accept-{}", local.port()))
                .spawn(move || accept_loop(&shared, first))
                .map_err(|e| Error::io(Step::Serve, e).at(tcp(local)))?
        };
        Ok(Proxy {
            shared,
            acceptor: Some(acceptor),
            stopped: None,
        })
    }

    /// The address clients connect to instead of the server (with the real
    /// port if port 0 was asked for). It stays the same while refusing.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// The server every connection is passed on to.
    pub fn upstream_addr(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Adds a fault named `name` on `direction`, or replaces the fault of that
    /// name (its state — byte counts aside — starts afresh). It applies to the
    /// connections already open, from their next read or write (within
    /// [`POLL`]), and to every new one.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a field out of range, an empty or
    /// overlong name, or a fault beyond [`MAX_FAULTS`]; the faults in force
    /// then stay as they were.
    pub fn add_fault(&self, name: &str, direction: Direction, fault: Fault) -> Result<(), Error> {
        let named = NamedFault::new(name, direction, fault);
        named.validate()?;
        let mut faults = self.shared.faults();
        let count = faults.len();
        match faults.iter_mut().find(|f| f.name == name) {
            Some(existing) => *existing = named,
            None if count == MAX_FAULTS => {
                return invalid(format!(
                    "at most {MAX_FAULTS} faults may be in force at once"
                ));
            }
            None => faults.push(named),
        }
        self.shared.faults_version.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Removes the fault named `name`; whether there was one. See the [module
    /// docs](self) for what happens to bytes it was acting on.
    pub fn remove_fault(&self, name: &str) -> bool {
        let mut faults = self.shared.faults();
        let before = faults.len();
        faults.retain(|f| f.name != name);
        self.shared.faults_version.fetch_add(1, Ordering::SeqCst);
        faults.len() < before
    }

    /// Removes every fault: the proxy is invisible again.
    pub fn clear_faults(&self) {
        self.shared.faults().clear();
        self.shared.faults_version.fetch_add(1, Ordering::SeqCst);
    }

    /// The faults in force, in the order they were added.
    pub fn faults(&self) -> Vec<NamedFault> {
        self.shared.faults().clone()
    }

    /// Refuses new connections (`true`) or accepts them again (`false`). Open
    /// connections are not touched. See [refusing](self#refusing-new-connections).
    ///
    /// `true` returns once the listening socket is closed (within about
    /// [`POLL`]), so a `connect()` made after it is refused. `false` binds the
    /// same address again before it returns, so a `connect()` made after it
    /// succeeds.
    ///
    /// # Errors
    /// [`ErrorKind::AddressInUse`] if, while the proxy refused, another socket
    /// took its port (the proxy then goes on refusing); [`ErrorKind::TimedOut`]
    /// if the accept thread did not close the listener within a second.
    pub fn set_refusing(&self, refusing: bool) -> Result<(), Error> {
        let shared = &self.shared;
        let mut gate = shared.gate();
        if refusing {
            gate.refusing = true;
            // A listener bound by a `set_refusing(false)` the accept thread has
            // not taken yet is already listening: close it too.
            gate.replacement = None;
            shared.gate_changed.notify_all();
            let (gate, timeout) = shared
                .gate_changed
                .wait_timeout_while(gate, Duration::from_secs(1), |g| g.open)
                .unwrap_or_else(PoisonError::into_inner);
            if timeout.timed_out() && gate.open {
                return Err(Error::new(Step::Close, ErrorKind::TimedOut).at(tcp(shared.local)));
            }
            return Ok(());
        }
        if !gate.refusing {
            return Ok(());
        }
        // The accept thread closed the old listener before `open` went false,
        // and nothing reopens it but this; wait for that close if a
        // `set_refusing(true)` that timed out is still in progress.
        let (mut gate, _) = shared
            .gate_changed
            .wait_timeout_while(gate, Duration::from_secs(1), |g| g.open)
            .unwrap_or_else(PoisonError::into_inner);
        let listener = bind(shared.local)?;
        gate.replacement = Some(listener);
        gate.refusing = false;
        shared.gate_changed.notify_all();
        Ok(())
    }

    /// Whether the proxy is refusing new connections.
    pub fn is_refusing(&self) -> bool {
        self.shared.gate().refusing
    }

    /// The counts so far. While bytes move, a snapshot may be a write behind;
    /// after [`Proxy::shutdown`] the counts are exact.
    pub fn counts(&self) -> ProxyCounts {
        *self.shared.counts()
    }

    /// Stops the proxy and reports what it did.
    ///
    /// In order: set the stop flag; join the accept thread, which notices it
    /// within [`POLL`] and closes the listener; join every pump, each of which
    /// notices within `POLL` (a pump still connecting to the server first
    /// finishes its connect, at most [`ProxyConfig::connect_timeout`]). The
    /// last pump of each connection closes both its sockets: a FIN each way,
    /// or RST where the proxy holds bytes it never read.
    pub fn shutdown(mut self) -> ProxyCounts {
        self.stop()
    }

    fn stop(&mut self) -> ProxyCounts {
        if let Some(counts) = self.stopped {
            return counts;
        }
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        shared.gate_changed.notify_all();
        if let Some(acceptor) = self.acceptor.take() {
            // Cannot hang: accept times out every POLL, and the gate's wait too.
            let _ = acceptor.join();
        }
        // The accept thread has returned, so no pump starts a connection now;
        // but an upstream pump may still start its downstream partner, so go
        // round until the list stays empty. Each round joins threads that end
        // within POLL (or a connect timeout); a connection adds at most one
        // thread after its first, so three rounds always suffice.
        for _ in 0..3 {
            let threads: Vec<_> = shared.threads().drain(..).collect();
            if threads.is_empty() {
                break;
            }
            for thread in threads {
                // A pump that panicked has nothing left to join; its
                // connection closed as it unwound.
                let _ = thread.join();
            }
        }
        let counts = self.counts();
        self.stopped = Some(counts);
        counts
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

// --- the accept thread --------------------------------------------------------

/// Accepts until the stop, closing and reopening the listener as the gate says.
fn accept_loop(shared: &Arc<Shared>, first: Option<TcpListener>) {
    let mut listener = first;
    let mut backoff = Duration::ZERO;
    while !shared.stopping() {
        // Obey the gate: close the listener to refuse, take a new one to accept.
        {
            let mut gate = shared.gate();
            if gate.refusing && listener.is_some() {
                listener = None; // close(2): new SYNs now meet RST
                gate.open = false;
                shared.gate_changed.notify_all();
                shared
                    .note_listener("refusing: listener closed; the kernel refuses new connections");
            }
            if !gate.refusing && listener.is_none() {
                listener = gate.replacement.take();
                gate.open = listener.is_some();
                if gate.open {
                    shared.note_listener("accepting again: listener bound anew");
                }
            }
            if listener.is_none() {
                // Bounded: wakes for a gate change, the stop, or after POLL.
                let _ = shared
                    .gate_changed
                    .wait_timeout(gate, POLL)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
        }
        let Some(open) = &listener else { continue };
        match open.accept() {
            Ok((stream, peer)) => {
                backoff = Duration::ZERO;
                admit(shared, stream, peer);
            }
            // The accept timeout: time to look at the flags again.
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                between_accepts();
            }
            // That client gave up between its handshake and our accept.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(_) => {
                // EMFILE and friends: the listener works, the process is short
                // of something. Back off so a lasting shortage is not a busy loop.
                backoff = (backoff * 2).clamp(Duration::from_millis(1), POLL);
                thread::sleep(backoff);
            }
        }
    }
    // Dropping `listener` here closes it: connections still in the kernel's
    // queue are reset by the kernel.
}

/// Gives an accepted client its pumps, or closes it.
fn admit(shared: &Arc<Shared>, client: TcpStream, peer: SocketAddr) {
    let id = SocketId::next();
    let refusing = shared.gate().refusing;
    let (admitted, number) = {
        let mut counts = shared.counts();
        if refusing {
            counts.refused += 1;
            (false, 0)
        } else if counts.active >= shared.max_connections as u64 {
            counts.over_limit += 1;
            (false, 0)
        } else {
            counts.connections += 1;
            counts.active += 1;
            (true, shared.next_connection.fetch_add(1, Ordering::SeqCst))
        }
    };
    if !admitted {
        shared.trace.emit(|| {
            Event::new(id, Side::Server, Step::Refuse, Protocol::Tcp)
                .local(shared.local)
                .peer(peer)
                .detail(if refusing {
                    "proxy refusing: closed at once"
                } else {
                    "proxy at max_connections: closed at once"
                })
        });
        return; // dropping `client` closes it
    }
    shared.trace.emit(|| {
        Event::new(id, Side::Server, Step::Accept, Protocol::Tcp)
            .local(shared.local)
            .peer(peer)
            .detail(format!("proxy connection #{number}"))
    });
    let me = shared.clone();
    let spawned = thread::Builder::new()
        .name(format!("sockstep-proxy-{number}-up"))
        .stack_size(PUMP_STACK)
        .spawn(move || connect_and_pump(&me, number, id, client, peer));
    match spawned {
        Ok(handle) => shared.keep_thread(handle),
        // The closure never ran, so the client socket went with it: closed.
        Err(_) => shared.counts().active -= 1,
    }
}

/// A connection's first thread: connect to the server, start the downstream
/// pump, then pump upstream.
fn connect_and_pump(
    shared: &Arc<Shared>,
    number: u64,
    client_id: SocketId,
    client: TcpStream,
    peer: SocketAddr,
) {
    let server_id = SocketId::next();
    let server = TcpStream::connect_timeout(&shared.upstream, shared.connect_timeout);
    let server = match server {
        Ok(server) if !shared.stopping() => server,
        other => {
            let why = match other {
                Err(e) => Error::io(Step::Connect, e)
                    .at(tcp(shared.upstream))
                    .summary(),
                Ok(_) => "the proxy is stopping".to_string(),
            };
            shared.trace.emit(|| {
                Event::new(server_id, Side::Client, Step::Connect, Protocol::Tcp)
                    .peer(shared.upstream)
                    .detail(format!(
                        "proxy connection #{number}: could not reach the server ({why}); closing the client"
                    ))
            });
            let mut counts = shared.counts();
            counts.upstream_failed += 1;
            counts.active -= 1;
            return;
        }
    };
    let conn = match Conn::new(
        shared.clone(),
        number,
        client_id,
        client,
        peer,
        server_id,
        server,
    ) {
        Ok(conn) => Arc::new(conn),
        // Setting the timeouts failed: the sockets are already dropped, and
        // `Conn` was never built to count the close, so count it here.
        Err(_) => {
            shared.counts().active -= 1;
            return;
        }
    };
    let partner = {
        let conn = conn.clone();
        thread::Builder::new()
            .name(format!("sockstep-proxy-{number}-down"))
            .stack_size(PUMP_STACK)
            .spawn(move || pump::run(&conn, Direction::Downstream))
    };
    match partner {
        Ok(handle) => shared.keep_thread(handle),
        Err(_) => {
            conn.abort();
            return;
        }
    }
    pump::run(&conn, Direction::Upstream);
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    // Nothing runs user code under these locks; a poisoned one can only come
    // from a bug here, and what it guards is still whole numbers and lists.
    fn faults(&self) -> MutexGuard<'_, Vec<NamedFault>> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn counts(&self) -> MutexGuard<'_, ProxyCounts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps a pump's handle for shutdown, joining finished ones now and then
    /// so a long-running proxy does not hoard them.
    fn keep_thread(&self, handle: JoinHandle<()>) {
        let mut threads = self.threads();
        threads.push(handle);
        // At most two pumps per open connection run, so past twice that many
        // handles at least half are finished: the list stays within bounds.
        if threads.len() > 4 * self.max_connections + 64 {
            let (done, running): (Vec<_>, Vec<_>) =
                threads.drain(..).partition(JoinHandle::is_finished);
            *threads = running;
            for thread in done {
                let _ = thread.join();
            }
        }
    }

    fn note_listener(&self, detail: &str) {
        self.trace.emit(|| {
            Event::new(SocketId::next(), Side::Server, Step::Listen, Protocol::Tcp)
                .local(self.local)
                .detail(format!("proxy {detail}"))
        });
    }
}

/// The examples of `docs/proxy.md`, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../docs/proxy.md")]
pub struct ProxyDocDoctests;

// --- small helpers --------------------------------------------------------------

/// Binds a listener with an accept timeout of [`POLL`].
fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    let listener = TcpListener::bind(addr).map_err(|e| Error::io(Step::Bind, e).at(tcp(addr)))?;
    with_accept_timeout(listener, POLL).map_err(|e| Error::io(Step::Listen, e).at(tcp(addr)))
}

/// Gives a listener's accept(2) a timeout.
///
/// Linux's accept(2) honours `SO_RCVTIMEO` (socket(7) lists it among the calls
/// the timeout applies to) and fails with EAGAIN when it runs out, as a read
/// does. std has `set_read_timeout` only on streams; but a listener and a
/// stream are the same kind of file descriptor, and std converts both to and
/// from [`OwnedFd`](std::os::fd::OwnedFd) safely. So: listener → descriptor →
/// stream, set the option (setsockopt SO_RCVTIMEO), and back. No `unsafe`.
#[cfg(unix)]
fn with_accept_timeout(listener: TcpListener, timeout: Duration) -> io::Result<TcpListener> {
    use std::os::fd::OwnedFd;
    let as_stream = TcpStream::from(OwnedFd::from(listener));
    as_stream.set_read_timeout(Some(timeout))?;
    Ok(TcpListener::from(OwnedFd::from(as_stream)))
}

/// Elsewhere, a non-blocking listener polled every [`POLL`]: `accept` then
/// fails with `WouldBlock` at once, and the accept loop sleeps instead.
#[cfg(not(unix))]
fn with_accept_timeout(listener: TcpListener, _timeout: Duration) -> io::Result<TcpListener> {
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// After an accept timed out: nothing to do where accept(2) itself waited.
#[cfg(unix)]
fn between_accepts() {}

/// After an accept found nobody: the non-blocking listener did not wait, so wait here.
#[cfg(not(unix))]
fn between_accepts() {
    thread::sleep(POLL / 5);
}

/// Whether an I/O error is a read, write or accept timeout (SO_RCVTIMEO and
/// SO_SNDTIMEO surface as EAGAIN, which std calls `WouldBlock`).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Whether connecting to `upstream` would reach the proxy listening on
/// `local`: the same address, or the same port on a loopback address when the
/// proxy listens on all of them (`0.0.0.0`, `::`).
fn is_self(local: SocketAddr, upstream: SocketAddr) -> bool {
    upstream == local
        || (upstream.port() == local.port()
            && local.ip().is_unspecified()
            && (upstream.ip().is_loopback() || upstream.ip().is_unspecified()))
}

fn tcp(addr: SocketAddr) -> Endpoint {
    Endpoint::from_addr(Protocol::Tcp, addr)
}

fn invalid_error(why: String) -> Error {
    Error::new(Step::Serve, ErrorKind::InvalidInput(why))
}

fn invalid(why: String) -> Result<(), Error> {
    Err(invalid_error(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_to_itself_is_recognised_on_any_of_its_addresses() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(is_self(at("127.0.0.1:80"), at("127.0.0.1:80")));
        assert!(is_self(at("0.0.0.0:80"), at("127.0.0.1:80")));
        assert!(is_self(at("[::]:80"), at("[::1]:80")));
        assert!(!is_self(at("0.0.0.0:80"), at("127.0.0.1:81")));
        assert!(!is_self(at("127.0.0.1:80"), at("127.0.0.2:80")));
    }

    #[test]
    #[cfg(unix)]
    fn an_accept_times_out_instead_of_blocking_forever() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let started = std::time::Instant::now();
        let e = listener.accept().unwrap_err();
        assert!(is_timeout(&e), "{e}");
        assert!(started.elapsed() >= POLL / 2, "{:?}", started.elapsed());
    }

    #[test]
    fn counts_of_both_ways_add_up() {
        let mut counts = ProxyCounts::default();
        counts.upstream.delayed = 2;
        counts.downstream.resets = 1;
        counts.downstream.bytes = 9;
        assert_eq!(counts.faults_applied(), 3);
        assert_eq!(counts.direction(Direction::Both).bytes, 9);
    }
}
