//! Serving: after `listen()`, a real server accepts in a loop and gives every
//! connection a thread of its own.
//!
//! The seed stops at `accept()`. A server that only accepted one client would be
//! useless, so [`Listening::serve`] runs the loop every server runs, and makes
//! its limits explicit:
//!
//! - **At most `max_connections` are served at once**, one thread each. Threads
//!   are started on demand, not kept in a pool, so an idle server holds none;
//!   a thread that finishes its connection takes the next waiting one before
//!   it exits. Asked to ([`ServeConfig::keep_warm`]), a thread with nobody
//!   waiting stays *warm* for a while in case a client comes: a server of many
//!   short connections then does not start a thread for each (starting one
//!   costs about as much as the whole rest of a short connection: see
//!   `sockstep bench connect`). The ceiling exists because a process that starts too many threads
//!   does not get an error — it aborts (about 16,000 here; see `docs/tcp.md`).
//! - **Up to `backlog` more wait**, accepted, in arrival order: this is the
//!   waiting room (연결 대기열) that the seed's `listen()` decides the size of.
//! - **Beyond that, a client is refused**: it reads one line saying why, then end
//!   of stream. Refusals are counted; nobody is dropped in silence.
//! - **Timeouts** on every connection, so a silent or slow client cannot hold a
//!   thread forever. On Linux they are set once, on the listening socket: the
//!   kernel copies a listener's options (SO_RCVTIMEO, SO_SNDTIMEO,
//!   TCP_NODELAY) into every socket `accept()` returns, which saves three
//!   setsockopt calls per connection ([`Listening::serve`] says how). One
//!   side effect: `accept()` itself honours SO_RCVTIMEO, so the accept loop
//!   wakes once per read timeout when nobody comes, and simply waits again.
//! - **A panicking handler** is caught and counted; everyone else is still served.
//! - **Shutdown** ([`Server::shutdown`], or dropping the [`Server`]) stops
//!   accepting, refuses whoever is still in the kernel's queue, lets connections
//!   in flight finish until a grace deadline, then cuts the rest off, and joins
//!   every thread it started.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::endpoint::Protocol;
use crate::error::{Error, ErrorKind};
use crate::step::{Side, Step};
use crate::tcp::connection::{Connection, Timeouts};
use crate::tcp::handlers::Handler;
use crate::tcp::server::Listening;
use crate::trace::{Event, Trace};

/// The most connections one server may serve at once. Past roughly 16,000
/// threads a Linux process here cannot map another thread's signal stack and
/// std aborts the whole process instead of returning an error; 10,000 leaves
/// room for everything else the process runs.
pub const MAX_CONNECTIONS_CEILING: usize = 10_000;

/// The largest waiting room. Each waiting client holds a file descriptor, and a
/// process here may open 20,000 at most, shared with the served connections.
pub const BACKLOG_CEILING: usize = 4_096;

/// How a [`Server`] runs its connections.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Connections served at once, one thread each (1 ..= [`MAX_CONNECTIONS_CEILING`]).
    pub max_connections: usize,
    /// Read and write timeouts applied to every accepted connection.
    pub timeouts: Timeouts,
    /// The longest any one connection may last, however active; `None` for no limit.
    pub max_lifetime: Option<Duration>,
    /// How long [`Server::shutdown`] lets connections in flight finish before it
    /// cuts them off.
    pub grace: Duration,
    /// Stack size of each connection thread; `None` for std's default (2 MiB of
    /// address space, of which only the touched pages cost memory).
    pub stack_size: Option<usize>,
    /// Turn Nagle's algorithm off on every connection (request/response traffic).
    pub nodelay: bool,
    /// How long a connection thread with nothing left to serve waits for a
    /// new connection before it exits; `Duration::ZERO` (the default): it
    /// exits at once. [`KEEP_WARM_SHORT`] suits a server of many short
    /// connections (HTTP without keep-alive), and `sockstep http serve` uses
    /// it. Why it is not the default: on one machine a warm thread tends to be
    /// woken on the core its client runs on, and a long stream between the
    /// two then shares one core — measured on loopback, 0.5–0.9× the
    /// throughput at writes of 128 KiB and more, where a new thread, placed on
    /// the idlest core, keeps level with raw std (docs/BENCHMARKS.md).
    pub keep_warm: Duration,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            max_connections: 256,
            timeouts: Timeouts::default(),
            max_lifetime: None,
            grace: Duration::from_secs(5),
            stack_size: None,
            nodelay: true,
            keep_warm: Duration::ZERO,
        }
    }
}

/// A `keep_warm` for servers of many short connections: long enough to
/// bridge the gaps between a busy client's connections, short enough that
/// an idle server soon holds no threads.
pub const KEEP_WARM_SHORT: Duration = Duration::from_secs(1);

/// What a server did, counted. A snapshot; see [`Server::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections taken from the kernel by `accept()` (not counting refusals at shutdown).
    pub accepted: u64,
    /// Connections whose handler returned `Ok` (and were not cut off).
    pub served: u64,
    /// Connections turned away: waiting room full, or the server shutting down.
    pub refused: u64,
    /// Connections whose handler returned an error (timeouts included) and were
    /// not cut off, plus failed `accept()` calls.
    pub errors: u64,
    /// Handlers that panicked.
    pub panics: u64,
    /// Connections still being served when the grace period ran out, whose
    /// sockets shutdown then shut down (their handlers saw end of stream). Not
    /// also counted as served or as errors.
    pub cut_off: u64,
    /// Connection threads started.
    pub threads_started: u64,
    /// Connection threads joined at shutdown (or seen finished before it).
    pub threads_joined: u64,
    /// Connection threads still running when shutdown gave up on them (a handler
    /// stuck outside socket I/O). 0 unless something is badly wrong.
    pub threads_abandoned: u64,
}

/// How many times shutdown tries to wake the accept thread before giving up on it.
const WAKE_ATTEMPTS: usize = 5;

/// The most recent errors a server keeps for [`Server::recent_errors`].
const RECENT_ERRORS: usize = 32;

/// A running thread-per-connection server. Dropping it shuts it down.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    local: SocketAddr,
    grace: Duration,
    acceptor: Option<JoinHandle<()>>,
    stopped: Option<Stats>,
}

#[derive(Debug)]
struct Shared {
    config: ServeConfig,
    backlog: usize,
    handler: Arc<dyn HandlerDyn>,
    trace: Trace,
    stopping: AtomicBool,
    /// Accepted sockets inherit the timeouts and TCP_NODELAY from the listener.
    inherited: bool,
    room: Mutex<Room>,
    // Signalled whenever a connection finishes, so shutdown can wait for the last.
    finished: Condvar,
    // Signalled when a connection is handed to a warm thread, and at shutdown.
    handed: Condvar,
    counts: Mutex<Stats>,
    errors: Mutex<VecDeque<String>>,
    // Where the shutdown's wake-up connection comes from, so it is not counted.
    wake_from: Mutex<Option<SocketAddr>>,
    wake_known: Condvar,
}

// `dyn Handler` is not Debug; this wrapper lets `Shared` derive it.
trait HandlerDyn: Handler {}
impl<H: Handler> HandlerDyn for H {}
impl std::fmt::Debug for dyn HandlerDyn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handler")
    }
}

/// The waiting room and who is being served, under one lock so admission is atomic.
#[derive(Debug, Default)]
struct Room {
    serving: usize,
    waiting: VecDeque<Connection>,
    // Streams of connections given a thread, so shutdown can cut them off. A
    // connection enters here in the same critical section that takes it off the
    // waiting room (or admits it straight to a thread), so at every instant each
    // admitted connection is in exactly one of `waiting` and `in_flight`.
    in_flight: HashMap<u64, Arc<TcpStream>>,
    next_id: u64,
    // Set when the grace period ran out and the connections in flight were cut off.
    cutting: bool,
    // Every connection thread not yet joined, by a key of its own.
    threads: HashMap<u64, JoinHandle<()>>,
    next_thread: u64,
    // Keys of threads that served their last connection and are returning:
    // the accept loop joins them at its next admission (`reap_exited`).
    exited: Vec<u64>,
    // Threads waiting on `finished` (shutdown): a connection's end signals the
    // condvar only if someone waits, since a signal is a futex system call
    // even when nobody does.
    watchers: usize,
    // Warm threads: done with their connections, waiting on `handed` for a new
    // one until `keep_warm` runs out.
    warm: usize,
    // Connections admitted for a warm thread (already counted in `serving`),
    // not yet taken by one. Every admitted connection is in exactly one of
    // `waiting`, `handoff` and `in_flight`.
    handoff: VecDeque<Connection>,
}

impl Room {
    /// Moves `conn` into the set being served, and returns its key there.
    fn enter(&mut self, conn: &Connection) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.insert(id, conn.shared_stream());
        id
    }
}

impl Listening {
    /// Runs the server: accepts in a background thread and serves each connection
    /// on a thread of its own with `handler`, within the limits of `config` and the
    /// waiting room set by [`listen`](crate::tcp::server::Bound::listen). Returns at once.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when `max_connections` or the backlog is out of
    /// range; the OS error when the accept thread cannot be started.
    pub fn serve(self, config: ServeConfig, handler: impl Handler) -> Result<Server, Error> {
        let invalid = |why: String| {
            Err(Error::new(Step::Serve, ErrorKind::InvalidInput(why)).at(self.local_endpoint()))
        };
        if !(1..=MAX_CONNECTIONS_CEILING).contains(&config.max_connections) {
            return invalid(format!(
                "max_connections must be 1..={MAX_CONNECTIONS_CEILING}, not {}",
                config.max_connections
            ));
        }
        if self.backlog > BACKLOG_CEILING {
            return invalid(format!(
                "backlog must be at most {BACKLOG_CEILING}, not {}",
                self.backlog
            ));
        }
        let local = self.local;
        let grace = config.grace;
        let inherited = self.pass_on_options(&config);
        let shared = Arc::new(Shared {
            config,
            backlog: self.backlog,
            handler: Arc::new(handler),
            trace: self.trace.clone(),
            stopping: AtomicBool::new(false),
            inherited,
            room: Mutex::new(Room::default()),
            finished: Condvar::new(),
            handed: Condvar::new(),
            counts: Mutex::new(Stats::default()),
            errors: Mutex::new(VecDeque::new()),
            wake_from: Mutex::new(None),
            wake_known: Condvar::new(),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("sockstep-accept-{}", local.port()))
                .spawn(move || accept_loop(&shared, self))
                .map_err(|e| Error::io(Step::Serve, e))?
        };
        Ok(Server {
            shared,
            local,
            grace,
            acceptor: Some(acceptor),
            stopped: None,
        })
    }
}

impl Listening {
    /// Sets `config`'s timeouts and TCP_NODELAY on the listening socket, for
    /// every accepted socket to inherit; whether that worked. Linux copies a
    /// listener's socket options into each socket `accept()` creates (checked
    /// by `tests/tcp_lifecycle.rs`); elsewhere this is not counted
    /// on, and each connection sets its own.
    ///
    /// Underneath: std has no setter for these on a listener, so a duplicate
    /// of its descriptor (fcntl F_DUPFD_CLOEXEC) is viewed as a stream for
    /// the setsockopt calls, then closed; the options belong to the socket,
    /// not to the descriptor.
    #[cfg(target_os = "linux")]
    fn pass_on_options(&self, config: &ServeConfig) -> bool {
        use std::os::fd::OwnedFd;
        let Ok(dup) = self.listener.try_clone() else {
            return false;
        };
        let view = TcpStream::from(OwnedFd::from(dup));
        view.set_read_timeout(config.timeouts.read)
            .and_then(|()| view.set_write_timeout(config.timeouts.write))
            .and_then(|()| view.set_nodelay(config.nodelay))
            .is_ok()
    }

    #[cfg(not(target_os = "linux"))]
    fn pass_on_options(&self, _config: &ServeConfig) -> bool {
        false
    }
}

/// Accepts until shutdown, admitting each connection to a thread, the waiting
/// room, or a refusal.
fn accept_loop(shared: &Arc<Shared>, listening: Listening) {
    let mut backoff = Duration::ZERO;
    while !shared.stopping.load(Ordering::SeqCst) {
        match listening.accept() {
            Ok(conn) if shared.stopping.load(Ordering::SeqCst) => {
                refuse_unless_wake(shared, conn);
                break;
            }
            Ok(conn) => {
                backoff = Duration::ZERO;
                shared.count(|s| s.accepted += 1);
                admit(shared, conn);
            }
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset) => {
                // That one client gave up between its handshake and our accept;
                // nothing is wrong with the listener.
                shared.record_error(&e);
            }
            // The listener's own read timeout (see `pass_on_options`): nobody
            // came for that long. Nothing is wrong; wait again.
            Err(e)
                if shared.inherited
                    && e.io_error()
                        .is_some_and(|io| io.kind() == io::ErrorKind::WouldBlock) => {}
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: the listener still works but the
                // process or the kernel is short of something. Wait a little so a
                // lasting shortage is not a busy loop, as mini-redis does, and keep
                // serving whoever is already in.
                shared.record_error(&e);
                backoff = (backoff * 2).clamp(Duration::from_millis(1), Duration::from_secs(1));
                thread::sleep(backoff);
            }
        }
    }
    drain_kernel_queue(shared, &listening);
}

/// Gives `conn` a thread if one is free, a place in the waiting room if not, or a refusal.
///
/// The decision is taken under the room's lock, so admission is atomic; the
/// thread is started after the lock is let go. Starting a thread (clone3, and
/// the new thread's set-up) takes tens of microseconds, and connection threads
/// that finish need the same lock to take the next waiting client or leave:
/// under the lock, every admission would make them wait that long.
fn admit(shared: &Arc<Shared>, conn: Connection) {
    let mut room = shared.room();
    if room.serving < shared.config.max_connections {
        room.serving += 1;
        if room.warm > room.handoff.len() {
            // A warm thread is waiting: no thread to start.
            room.handoff.push_back(conn);
            drop(room);
            shared.handed.notify_one();
            return;
        }
        let id = room.enter(&conn);
        let key = room.next_thread;
        room.next_thread += 1;
        let finished = take_exited(&mut room);
        drop(room);
        join(shared, finished);
        match spawn_worker(shared, key, id, conn) {
            Ok(handle) => {
                shared.room().threads.insert(key, handle);
                shared.count(|s| s.threads_started += 1);
            }
            Err(failure) => {
                {
                    let mut room = shared.room();
                    room.serving -= 1;
                    room.in_flight.remove(&id);
                }
                let (conn, e) = *failure;
                shared.record_error(&e);
                if let Some(conn) = conn {
                    refuse(shared, conn, "the server cannot start a thread for you");
                }
            }
        }
    } else if room.waiting.len() < shared.backlog {
        room.waiting.push_back(conn);
    } else {
        let reason = format!(
            "server busy: {} connections served, {} waiting; try again later",
            room.serving,
            room.waiting.len()
        );
        drop(room);
        refuse(shared, conn, &reason);
    }
}

/// Takes out the threads that said they were done (in `exited`) and have
/// returned, to be joined once the lock is let go, so that their stacks go
/// back to the allocator's cache while the server runs and the next thread
/// reuses one. Unjoined, a thread's stack stays mapped: every new thread would
/// then map a fresh one and fault its pages in — measured by `sockstep bench
/// connect`, about 1.4 page faults and 0.7 mmap + mprotect + munmap per
/// connection when joins came only in batches. Costs nothing when no thread
/// has exited; a thread that announced itself but has not quite returned, or
/// whose handle the accept loop has not stored yet, is left for the next
/// admission.
fn take_exited(room: &mut Room) -> Vec<JoinHandle<()>> {
    let mut finished = Vec::new();
    if room.exited.is_empty() {
        return finished;
    }
    let mut later = Vec::new();
    for key in std::mem::take(&mut room.exited) {
        match room.threads.remove(&key) {
            Some(thread) if thread.is_finished() => finished.push(thread),
            Some(thread) => {
                room.threads.insert(key, thread);
                later.push(key);
            }
            None => later.push(key),
        }
    }
    room.exited = later;
    finished
}

/// Joins threads that have returned, and counts them.
fn join(shared: &Shared, finished: Vec<JoinHandle<()>>) {
    if finished.is_empty() {
        return;
    }
    let joined = finished.into_iter().map(JoinHandle::join).count() as u64;
    shared.count(|s| s.threads_joined += joined);
}

/// A thread that would not start: the OS error, and the connection it was for
/// (always there, since the thread never ran to take it).
type SpawnFailure = Box<(Option<Connection>, io::Error)>;

/// Starts a thread for `conn`, one of the `max_connections`; `key` is the
/// thread's own, `id` the connection's in the room.
fn spawn_worker(
    shared: &Arc<Shared>,
    key: u64,
    id: u64,
    conn: Connection,
) -> Result<JoinHandle<()>, SpawnFailure> {
    let mut builder = thread::Builder::new().name(format!("sockstep-conn-{}", conn.peer_addr()));
    if let Some(size) = shared.config.stack_size {
        builder = builder.stack_size(size);
    }
    let me = shared.clone();
    // The connection goes into a slot the thread takes it from, so that if the
    // thread cannot start we still hold the connection and can refuse it properly.
    let slot = Arc::new(Mutex::new(Some(conn)));
    let for_thread = slot.clone();
    builder
        .spawn(move || {
            let first = for_thread
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(conn) = first {
                serve_until_room_is_empty(&me, key, id, conn);
            }
        })
        .map_err(|e| {
            Box::new((
                slot.lock().unwrap_or_else(PoisonError::into_inner).take(),
                e,
            ))
        })
}

/// A connection thread's life: serve one connection, then the oldest waiting
/// one, until nobody waits; then say so (`exited`) and return.
fn serve_until_room_is_empty(shared: &Arc<Shared>, key: u64, id: u64, first: Connection) {
    let mut next = Some((id, first));
    while let Some((id, conn)) = next {
        serve_one(shared, id, conn);
        let mut room = shared.room();
        next = room
            .waiting
            .pop_front()
            .map(|conn| (room.enter(&conn), conn));
        if next.is_none() {
            room.serving -= 1;
            if room.watchers > 0 {
                shared.finished.notify_all();
            }
            next = stay_warm(shared, room, key);
        }
    }
}

/// Waits up to `keep_warm` for the accept loop to hand this thread a new
/// connection (entered in the room, as `admit` would) — or, when the time
/// runs out or the server stops, says this thread is done (`exited`) and
/// returns `None`.
fn stay_warm(
    shared: &Shared,
    mut room: MutexGuard<'_, Room>,
    key: u64,
) -> Option<(u64, Connection)> {
    let until = Instant::now() + shared.config.keep_warm;
    room.warm += 1;
    loop {
        // Checked first: a connection handed over just as the time ran out,
        // or as shutdown began, was admitted and is still served.
        if let Some(conn) = room.handoff.pop_front() {
            room.warm -= 1;
            return Some((room.enter(&conn), conn));
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || shared.stopping.load(Ordering::SeqCst) {
            room.warm -= 1;
            room.exited.push(key);
            return None;
        }
        room = shared
            .handed
            .wait_timeout(room, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// Runs the handler on one connection, already entered in the room as `id`.
fn serve_one(shared: &Shared, id: u64, mut conn: Connection) {
    conn.set_deadline(shared.config.max_lifetime.map(|d| Instant::now() + d));
    let setup = if shared.inherited {
        conn.assume_timeouts(shared.config.timeouts);
        Ok(())
    } else {
        conn.set_timeouts(shared.config.timeouts).and_then(|()| {
            if shared.config.nodelay {
                conn.set_nodelay(true)
            } else {
                Ok(())
            }
        })
    };
    // Shutdown may have begun while this connection waited; it still gets served
    // (it was accepted), but within the grace period like everyone else.
    let outcome = match setup {
        Ok(()) => panic::catch_unwind(AssertUnwindSafe(|| shared.handler.handle(&mut conn))),
        Err(e) => Ok(Err(e)),
    };
    let was_cut_off = {
        let mut room = shared.room();
        room.in_flight.remove(&id);
        room.cutting
    };
    match outcome {
        Err(payload) => {
            let message = panic_message(&payload);
            let e = Error::new(Step::Serve, ErrorKind::HandlerPanicked(message))
                .at(conn.peer_endpoint());
            shared.count(|s| s.panics += 1);
            shared.remember(e.to_string());
        }
        // Counted once, in `cut_off`, however the handler took the cut.
        Ok(_) if was_cut_off => {}
        Ok(Ok(())) => shared.count(|s| s.served += 1),
        Ok(Err(e)) => {
            shared.trace.emit(|| {
                Event::new(conn.id(), Side::Server, Step::Serve, Protocol::Tcp)
                    .local(conn.local_addr())
                    .peer(conn.peer_addr())
                    .detail(format!("handler ended with an error: {}", e.summary()))
            });
            shared.record_error(&e);
        }
    }
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}

/// The prefix of every refusal line, so clients and tests can recognise one.
pub const REFUSAL_PREFIX: &str = "sockstep: refused: ";

/// Tells the client why, closes, and counts. Never blocks the accept loop for long.
fn refuse(shared: &Shared, conn: Connection, reason: &str) {
    shared.count(|s| s.refused += 1);
    shared.trace.emit(|| {
        Event::new(conn.id(), Side::Server, Step::Refuse, Protocol::Tcp)
            .local(conn.local_addr())
            .peer(conn.peer_addr())
            .detail(reason.to_string())
    });
    let stream = conn.stream();
    // A fresh connection's send buffer is empty, so this write cannot block in
    // practice; the timeout makes sure of it.
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = (&*stream).write_all(format!("{REFUSAL_PREFIX}{reason}\n").as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
    // Closing with unread bytes from the client makes the kernel send RST, which
    // can destroy our reason before the client reads it. Read what already came,
    // without waiting for more.
    if stream.set_nonblocking(true).is_ok() {
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            match (&*stream).read(&mut scratch) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }
}

/// After the stop: refuse, with a reason, every client the kernel had already
/// connected but we had not accepted — they believe they are connected.
fn drain_kernel_queue(shared: &Shared, listening: &Listening) {
    if listening.listener.set_nonblocking(true).is_err() {
        return;
    }
    // Bounded: the kernel queue holds at most 128 (+1) connections, and new ones
    // may still arrive while we drain. A client that arrives after the last
    // accept here is reset by the kernel when the listener closes; std cannot
    // close a listener's queue any more gently.
    for _ in 0..1_024 {
        match listening.accept() {
            Ok(conn) => {
                let _ = conn.stream().set_nonblocking(false);
                refuse_unless_wake(shared, conn);
            }
            Err(e)
                if e.io_error()
                    .is_some_and(|io| io.kind() == io::ErrorKind::WouldBlock) =>
            {
                break;
            }
            // That client already gave up; the next may not have.
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset) => continue,
            Err(e) => {
                shared.record_error(&e);
                break;
            }
        }
    }
}

/// Refuses `conn` as "shutting down", unless it is shutdown's own wake-up call.
fn refuse_unless_wake(shared: &Shared, conn: Connection) {
    let wake = {
        let guard = shared
            .wake_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The waker publishes its address right after its connect returns, which
        // can be just after our accept returned; wait for it, briefly.
        shared
            .wake_known
            .wait_timeout_while(guard, Duration::from_secs(1), |w| w.is_none())
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .to_owned()
    };
    if wake == Some(conn.peer_addr()) {
        shared.trace.emit(|| {
            Event::new(conn.id(), Side::Server, Step::Serve, Protocol::Tcp)
                .local(conn.local_addr())
                .peer(conn.peer_addr())
                .detail("that was shutdown's own wake-up call; the accept loop stops")
        });
    } else {
        refuse(shared, conn, "the server is shutting down");
    }
}

impl Shared {
    fn room(&self) -> MutexGuard<'_, Room> {
        // Handlers run outside this lock, so a poisoned lock means a bug in this
        // file, not in user code; the data is still consistent counters and queues.
        self.room.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, update: impl FnOnce(&mut Stats)) {
        update(&mut self.counts.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn record_error(&self, e: &dyn std::fmt::Display) {
        self.count(|s| s.errors += 1);
        self.remember(e.to_string());
    }

    fn remember(&self, text: String) {
        let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        if errors.len() == RECENT_ERRORS {
            errors.pop_front();
        }
        errors.push_back(text);
    }
}

impl Server {
    /// The address clients connect to (with the real port if port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The counts so far.
    pub fn stats(&self) -> Stats {
        *self
            .shared
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many accepted connections are waiting for a thread right now.
    pub fn waiting(&self) -> usize {
        self.shared.room().waiting.len()
    }

    /// How many connections are being served right now.
    pub fn serving(&self) -> usize {
        self.shared.room().serving
    }

    /// How many threads are warm right now: done with their connections and
    /// waiting, up to `keep_warm`, for the next one.
    pub fn warm(&self) -> usize {
        self.shared.room().warm
    }

    /// The last few errors (at most 32), oldest first, as sentences.
    pub fn recent_errors(&self) -> Vec<String> {
        self.shared
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Stops the server and reports what it did.
    ///
    /// In order: stop accepting (a wake-up connection unblocks the accept thread);
    /// refuse, with a reason, everyone still in the kernel's queue; let the
    /// connections being served and those waiting finish, until the grace period
    /// ends; then shut down the sockets of any still running (their reads see end
    /// of stream, their writes fail) and refuse those still waiting; join every
    /// thread. A thread stuck outside socket I/O for another grace period is left
    /// running and counted in [`Stats::threads_abandoned`], rather than hanging
    /// the caller.
    pub fn shutdown(mut self) -> Stats {
        self.stop()
    }

    fn stop(&mut self) -> Stats {
        if let Some(stats) = self.stopped {
            return stats;
        }
        let shared = self.shared.clone();
        shared.stopping.store(true, Ordering::SeqCst);
        self.stop_acceptor();
        // Warm threads wake, serve what was handed to them, and exit. Under the
        // lock, so that none checks `stopping` just before this and then sleeps.
        {
            let _room = shared.room();
            shared.handed.notify_all();
        }
        if !self.wait_until_idle(self.grace) {
            let (streams, waiting) = {
                let mut room = shared.room();
                room.cutting = true;
                let streams: Vec<_> = room.in_flight.values().cloned().collect();
                // Handed to a warm thread but not taken: counted as served, so
                // no longer.
                let handed: Vec<_> = room.handoff.drain(..).collect();
                room.serving -= handed.len();
                let waiting: Vec<_> = room.waiting.drain(..).chain(handed).collect();
                (streams, waiting)
            };
            shared.count(|s| s.cut_off += streams.len() as u64);
            for stream in streams {
                let _ = stream.shutdown(Shutdown::Both);
            }
            for conn in waiting {
                refuse(&shared, conn, "the server is shutting down");
            }
            // A cut-off thread only has to notice and return; a floor on this wait
            // keeps a loaded machine from making a slow thread look stuck.
            self.wait_until_idle(self.grace.max(Duration::from_secs(1)));
        }
        let (threads, all_idle) = {
            let mut room = shared.room();
            (
                room.threads
                    .drain()
                    .map(|(_, thread)| thread)
                    .collect::<Vec<_>>(),
                room.serving == 0,
            )
        };
        // With nobody served, every thread is past its last connection and about
        // to return, so joining cannot hang; otherwise join only those finished.
        let (done, stuck): (Vec<_>, Vec<_>) = threads
            .into_iter()
            .partition(|t| all_idle || t.is_finished());
        let joined = done.into_iter().map(JoinHandle::join).count() as u64;
        shared.count(|s| {
            s.threads_joined += joined;
            s.threads_abandoned += stuck.len() as u64;
        });
        let stats = self.stats();
        self.stopped = Some(stats);
        stats
    }

    /// Wakes the accept thread and joins it. If it does not finish (a wake-up that
    /// could not connect), try again a few times, then leave it rather than hang.
    fn stop_acceptor(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        for _ in 0..WAKE_ATTEMPTS {
            self.wake_acceptor();
            let deadline = Instant::now() + Duration::from_secs(1);
            while !acceptor.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            if acceptor.is_finished() {
                let _ = acceptor.join();
                return;
            }
        }
        self.shared.count(|s| s.threads_abandoned += 1);
        self.shared
            .remember("the accept thread did not stop; it was left running".into());
    }

    /// Connects to our own listener so the accept thread, blocked in accept(),
    /// wakes up and sees that it must stop. std offers no other way to interrupt
    /// a blocking accept.
    fn wake_acceptor(&self) {
        let mut target = self.local;
        if target.ip().is_unspecified() {
            target.set_ip(match target {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let from = TcpStream::connect_timeout(&target, Duration::from_secs(1))
            .and_then(|s| s.local_addr())
            .ok();
        // Publish even a failure (as an address nobody has) so the acceptor stops waiting.
        let unreachable = SocketAddr::from(([0, 0, 0, 0], 0));
        *self
            .shared
            .wake_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(from.unwrap_or(unreachable));
        self.shared.wake_known.notify_all();
    }

    /// Waits up to `timeout` for every connection, served or waiting, to finish.
    fn wait_until_idle(&self, timeout: Duration) -> bool {
        let busy = |room: &mut Room| room.serving > 0 || !room.waiting.is_empty();
        let mut room = self.shared.room();
        room.watchers += 1;
        let (mut room, _) = self
            .shared
            .finished
            .wait_timeout_while(room, timeout, busy)
            .unwrap_or_else(PoisonError::into_inner);
        room.watchers -= 1;
        !busy(&mut room)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
