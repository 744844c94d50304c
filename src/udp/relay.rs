//! A UDP relay that loses, duplicates, reorders and delays datagrams on
//! purpose — loss you control.
//!
//! # What "a loss raises no error" means
//!
//! `send_to()` returning `Ok` means the kernel took the datagram: nothing more.
//! If the datagram is then lost — a full queue in a router, a Wi-Fi fade, a
//! firewall — the sender is not told, the receiver is not told, and no call
//! anywhere fails. The only sign is an absence. On loopback nothing is ever
//! lost, so the relay puts a bad network between a client and a server:
//!
//! ```text
//!  client ──▶ relay.local_addr() ─[faults: client → upstream]─▶ upstream (a server)
//!  client ◀── relay.local_addr() ◀─[faults: upstream → client]── upstream
//! ```
//!
//! Each datagram the relay receives gets a [`Fate`]
//! from a [`Faults`] engine: dropped, sent on once, or sent twice, each copy
//! after its own delay (see [`crate::udp::faults`] for the model). The sender
//! of a dropped datagram still saw its `send_to()` succeed; that is the point.
//!
//! # Why both directions, and why seeded
//!
//! A request can be lost on the way to the server, or the server's answer on
//! the way back; to the client both look the same (no answer), but to the
//! server they are different — in the second case it did the work. Each
//! direction has its own [`FaultConfig`] and its own engine so the two can be
//! tested apart. The faults are drawn from a seeded generator, so a run that
//! exposed a bug can be replayed exactly: the same seed loses the same
//! datagrams (counted in arrival order, per direction).
//!
//! # How it is built
//!
//! - **One listening socket** (bound with `udp::socket(listen, Side::Server)`)
//!   receives every client's datagrams on one thread, as any UDP server does.
//! - **One upstream socket per client**, like a NAT's table: the upstream sees
//!   each client as a different address and port, and a reply arriving on a
//!   client's upstream socket can only be for that client. Each upstream socket
//!   is `connect()`ed to the upstream, so the kernel discards datagrams from
//!   anyone else, and each has a thread that receives the replies. The table
//!   holds at most [`RelayConfig::max_clients`] (default [`MAX_CLIENTS`])
//!   clients; a datagram from a new client when it is full is dropped and
//!   counted in [`RelayCounts::clients_refused`]. A client idle for
//!   [`RelayConfig::client_idle`] loses its entry, as in a NAT.
//! - **One release thread** holds delayed copies in a binary heap ordered by
//!   release time and sends each when its time comes, sleeping on a condition
//!   variable until the earliest is due — no polling, and no receiving thread
//!   ever sleeps for a datagram. A hold counts from the moment the receiving
//!   thread took the datagram from its socket; a copy with no hold is sent at
//!   once by that thread. Copies due at the same instant go in the order they
//!   were scheduled. At most [`RelayConfig::max_held`] copies and
//!   [`RelayConfig::max_held_bytes`] bytes are held; past that, a copy is dropped
//!   and counted in [`DirectionCounts::overflowed`].
//! - **Whole datagrams.** Every receive buffer is one byte larger than the
//!   largest UDP payload, so a datagram is never cut: it is passed on whole, or
//!   its send fails and is counted.
//! - **Shutdown** ([`Relay::shutdown`], or dropping the relay) sets a stop flag
//!   that every receiving thread checks at least every [`POLL`] — each socket
//!   has a read timeout of that length — wakes the release thread, and joins
//!   every thread. A wake-up datagram, as `udp::serve` uses, cannot work here:
//!   an upstream socket is connected, and the kernel discards datagrams from
//!   anyone but the upstream.
//!
//! ```
//! use std::time::Duration;
//! use sockstep::udp::faults::FaultConfig;
//! use sockstep::udp::handlers::Echo;
//! use sockstep::udp::relay::{Direction, Relay};
//! use sockstep::udp::socket;
//! use sockstep::{trace::Trace, Side};
//!
//! let trace = Trace::off();
//! let any = "127.0.0.1:0".parse().unwrap();
//! let echo = socket::socket(any, Side::Server, &trace).bind()?.serve(Echo)?;
//! let lose_all = FaultConfig { loss: 1.0, ..FaultConfig::default() };
//! let relay = Relay::start(any, echo.local_addr(), lose_all, FaultConfig::default(), &trace)?;
//!
//! let client = socket::socket(any, Side::Client, &trace).bind()?;
//! client.set_read_timeout(Some(Duration::from_millis(200)))?;
//! let mut buf = [0; 64];
//! client.send_to(b"hello?", relay.local_addr())?; // Ok: the kernel took it...
//! assert!(client.recv_from(&mut buf).is_err()); // ...and no answer comes, no error says why.
//!
//! relay.set_faults(Direction::ClientToUpstream, FaultConfig::default())?;
//! client.send_to(b"hello!", relay.local_addr())?;
//! let (n, _) = client.recv_from(&mut buf)?;
//! assert_eq!(&buf[..n], b"hello!");
//!
//! let counts = relay.shutdown();
//! assert_eq!(counts.client_to_upstream.faults.dropped, 1);
//! assert_eq!(counts.upstream_to_client.sent, 1);
//! # Ok::<(), sockstep::Error>(())
//! ```

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::endpoint::{Endpoint, Protocol};
use crate::error::{Error, ErrorKind};
use crate::step::{Side, Step};
use crate::trace::{Event, SocketId, Trace};
use crate::udp::faults::{Fate, FaultConfig, FaultCounts, Faults};
use crate::udp::socket::{self, Bound, Connected, MAX_PAYLOAD_V6};

/// The longest a receiving thread goes without checking whether the relay is
/// stopping: the read timeout of every socket the relay holds. Shutdown takes
/// about this long. Each idle socket thread wakes this often, so a relay with
/// 1,024 clients wakes about 20,000 times a second doing nothing — a cost paid
/// for a shutdown that needs no help from outside.
pub const POLL: Duration = Duration::from_millis(50);

/// The default [`RelayConfig::max_clients`]. Each client costs a socket (a file
/// descriptor; a process here may open 20,000) and a thread with a small stack
/// (about 50 kB of memory), so 1,024 clients cost about 50 MB.
pub const MAX_CLIENTS: usize = 1_024;

/// The largest [`RelayConfig::max_clients`] accepted: far below the ~16,000
/// threads past which a process here aborts instead of getting an error.
pub const MAX_CLIENTS_CEILING: usize = 4_096;

/// The default [`RelayConfig::max_held`]: copies waiting for their release time.
pub const MAX_HELD: usize = 10_000;

/// The default [`RelayConfig::max_held_bytes`]. Without it, 10,000 held copies
/// of the largest datagram would be 655 MB.
pub const MAX_HELD_BYTES: usize = 64 * 1024 * 1024;

/// The default [`RelayConfig::client_idle`]: longer than the longest any copy
/// is held ([`MAX_HOLD`](crate::udp::faults::MAX_HOLD), 50 s), so an entry is
/// not forgotten while its datagrams are still on their way.
pub const CLIENT_IDLE: Duration = Duration::from_secs(120);

/// The shortest [`RelayConfig::client_idle`]: expiry is checked every [`POLL`],
/// so anything shorter would not mean what it says.
pub const MIN_CLIENT_IDLE: Duration = Duration::from_millis(100);

/// Each receive buffer: one byte more than the largest UDP payload of either
/// family, so no datagram is ever cut (and `recv_from` needs no scratch copy).
const RECEIVE_BUFFER: usize = MAX_PAYLOAD_V6 + 1;

/// Stack of each upstream-socket thread. It touches a few kilobytes (its
/// receive buffer is on the heap); 128 KiB leaves ample room.
const CLIENT_THREAD_STACK: usize = 128 * 1024;

/// The longest a receiving thread backs off after an unexpected error, so a
/// lasting failure is not a busy loop.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Which way a datagram travels through the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a client, received on the listening socket, to the upstream.
    ClientToUpstream,
    /// From the upstream, received on a client's upstream socket, back to that client.
    UpstreamToClient,
}

impl Direction {
    /// Both directions, client → upstream first.
    pub const BOTH: [Direction; 2] = [Direction::ClientToUpstream, Direction::UpstreamToClient];

    fn index(self) -> usize {
        match self {
            Direction::ClientToUpstream => 0,
            Direction::UpstreamToClient => 1,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::ClientToUpstream => "client → upstream",
            Direction::UpstreamToClient => "upstream → client",
        })
    }
}

/// How a [`Relay`] runs: the faults of each direction and the limits.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// Faults for datagrams from clients to the upstream.
    pub client_to_upstream: FaultConfig,
    /// Faults for datagrams from the upstream back to clients.
    pub upstream_to_client: FaultConfig,
    /// Clients (distinct addresses) with an upstream socket at once,
    /// 1 ..= [`MAX_CLIENTS_CEILING`]. A datagram from one more is dropped and
    /// counted in [`RelayCounts::clients_refused`].
    pub max_clients: usize,
    /// Delayed copies held at once, at least 1. One more is dropped and
    /// counted in [`DirectionCounts::overflowed`].
    pub max_held: usize,
    /// Bytes of delayed copies held at once, at least 1; as `max_held`.
    pub max_held_bytes: usize,
    /// How long a client may send nothing and receive nothing before its entry
    /// and upstream socket are released (at least [`MIN_CLIENT_IDLE`]). An
    /// entry with copies still held is kept until they are sent.
    pub client_idle: Duration,
}

impl Default for RelayConfig {
    /// No faults either way; the default limits.
    fn default() -> RelayConfig {
        RelayConfig {
            client_to_upstream: FaultConfig::default(),
            upstream_to_client: FaultConfig::default(),
            max_clients: MAX_CLIENTS,
            max_held: MAX_HELD,
            max_held_bytes: MAX_HELD_BYTES,
            client_idle: CLIENT_IDLE,
        }
    }
}

impl RelayConfig {
    /// The same faults both ways, with the default limits.
    ///
    /// The upstream → client direction gets `faults.seed + 1` (wrapping), so the
    /// two directions draw different coins: with one seed both ways, the *n*th
    /// request and the *n*th reply would always be lost together.
    pub fn symmetric(faults: FaultConfig) -> RelayConfig {
        let back = FaultConfig {
            seed: faults.seed.wrapping_add(1),
            ..faults.clone()
        };
        RelayConfig {
            client_to_upstream: faults,
            upstream_to_client: back,
            ..RelayConfig::default()
        }
    }

    /// The faults of one direction.
    pub fn faults(&self, direction: Direction) -> &FaultConfig {
        match direction {
            Direction::ClientToUpstream => &self.client_to_upstream,
            Direction::UpstreamToClient => &self.upstream_to_client,
        }
    }

    /// Checks both fault configs and every limit.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), Error> {
        self.client_to_upstream.validate()?;
        self.upstream_to_client.validate()?;
        let invalid = |why: String| Err(Error::new(Step::Serve, ErrorKind::InvalidInput(why)));
        if !(1..=MAX_CLIENTS_CEILING).contains(&self.max_clients) {
            return invalid(format!(
                "`max_clients` must be 1..={MAX_CLIENTS_CEILING}, not {}",
                self.max_clients
            ));
        }
        if self.max_held == 0 {
            return invalid("`max_held` must be at least 1".into());
        }
        if self.max_held_bytes == 0 {
            return invalid("`max_held_bytes` must be at least 1".into());
        }
        if self.client_idle < MIN_CLIENT_IDLE {
            return invalid(format!(
                "`client_idle` must be at least {MIN_CLIENT_IDLE:?}, not {:?}",
                self.client_idle
            ));
        }
        Ok(())
    }
}

/// What happened to the datagrams of one direction, counted.
///
/// Every copy the fault engine decided to send is in exactly one place:
/// `faults.copies() == sent + send_errors + overflowed + held +
/// discarded_at_shutdown` (see [`DirectionCounts::all_copies_accounted_for`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionCounts {
    /// What the fault engine decided: received, forwarded, dropped, duplicated,
    /// reordered, delayed.
    pub faults: FaultCounts,
    /// Copies the kernel took (`send_to()`/`send()` returned `Ok`).
    pub sent: u64,
    /// Copies whose send failed: too large for the other family, a firewall,
    /// or (upstream only) an earlier datagram refused with ICMP "port unreachable".
    pub send_errors: u64,
    /// Copies dropped because the release heap was full.
    pub overflowed: u64,
    /// Copies waiting for their release time right now.
    pub held: u64,
    /// Copies still waiting when the relay shut down, never sent.
    pub discarded_at_shutdown: u64,
}

impl DirectionCounts {
    /// Whether every copy decided on is counted in exactly one place. Always
    /// true after [`Relay::shutdown`]; while the relay runs, a datagram between
    /// its fate and its send makes it briefly false.
    pub fn all_copies_accounted_for(&self) -> bool {
        self.faults.copies()
            == self.sent
                + self.send_errors
                + self.overflowed
                + self.held
                + self.discarded_at_shutdown
    }
}

/// What a relay did, counted: each direction, and the client table. A
/// snapshot; see [`Relay::counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounts {
    /// Datagrams from clients to the upstream.
    pub client_to_upstream: DirectionCounts,
    /// Datagrams from the upstream back to clients.
    pub upstream_to_client: DirectionCounts,
    /// Clients given an upstream socket, in all.
    pub clients: u64,
    /// Clients in the table now.
    pub clients_active: u64,
    /// Clients whose entry was released after [`RelayConfig::client_idle`].
    pub clients_expired: u64,
    /// Datagrams from new clients dropped because the table was full, or
    /// because an upstream socket or its thread could not be made. The fault
    /// engine never saw them.
    pub clients_refused: u64,
    /// Receives that failed, other than timeouts and `upstream_refused`.
    pub recv_errors: u64,
    /// Receives on an upstream socket that reported ICMP "port unreachable":
    /// nothing was listening at the upstream address. The one time UDP tells of
    /// a loss — and only on a connected socket.
    pub upstream_refused: u64,
}

impl RelayCounts {
    /// The counts of one direction.
    pub fn direction(&self, direction: Direction) -> &DirectionCounts {
        match direction {
            Direction::ClientToUpstream => &self.client_to_upstream,
            Direction::UpstreamToClient => &self.upstream_to_client,
        }
    }

    fn direction_mut(&mut self, direction: Direction) -> &mut DirectionCounts {
        match direction {
            Direction::ClientToUpstream => &mut self.client_to_upstream,
            Direction::UpstreamToClient => &mut self.upstream_to_client,
        }
    }
}

/// A running relay. Dropping it shuts it down.
#[derive(Debug)]
pub struct Relay {
    shared: Arc<Shared>,
    local: SocketAddr,
    // The listening socket's thread and the release thread; client threads
    // live in the client table, since they come and go.
    threads: Vec<JoinHandle<()>>,
    stopped: Option<RelayCounts>,
}

/// What every thread of one relay shares. Locks: each critical section takes
/// one of the mutexes below and lets it go before taking another — except
/// [`Shared::counts`], which takes the queue's and then the ledger's, so that
/// its snapshot is consistent.
#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    limits: Limits,
    trace: Trace,
    /// The listening socket: received on by its thread, sent on by every thread
    /// (`send_to` takes `&self`; the kernel serialises the sends).
    listener: Bound,
    stopping: AtomicBool,
    /// The fault engines and the counters, under one lock so a datagram's fate
    /// and its counting cannot be seen half done.
    ledger: Mutex<Ledger>,
    queue: Mutex<Queue>,
    /// Signalled when a copy becomes the earliest due, and at shutdown.
    due: Condvar,
    clients: Mutex<ClientTable>,
    /// The zero of every client's `last_seen`.
    epoch: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_clients: usize,
    max_held: usize,
    max_held_bytes: usize,
    client_idle: Duration,
}

#[derive(Debug)]
struct Ledger {
    engines: [Faults; 2],
    // Everything but the engines' counts and `held`, which live with the
    // engines and the queue.
    counts: RelayCounts,
}

/// The delayed copies, earliest first.
#[derive(Debug, Default)]
struct Queue {
    heap: BinaryHeap<Reverse<HeldCopy>>,
    bytes: usize,
    held: [u64; 2],
    // Ties in release time go out in the order they were scheduled.
    next_seq: u64,
    stopping: bool,
}

/// One copy waiting for its release time, and where it goes.
#[derive(Debug)]
struct HeldCopy {
    release: Instant,
    seq: u64,
    direction: Direction,
    payload: Vec<u8>,
    route: Route,
}

impl PartialEq for HeldCopy {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for HeldCopy {}
impl PartialOrd for HeldCopy {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeldCopy {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.release, self.seq).cmp(&(other.release, other.seq))
    }
}

/// Where a copy is sent.
#[derive(Debug, Clone)]
enum Route {
    /// To the upstream, from this client's upstream socket.
    ToUpstream(Arc<Client>),
    /// To this client, from the listening socket.
    ToClient(SocketAddr),
}

/// One client's entry: its address and the socket that speaks for it upstream.
#[derive(Debug)]
struct Client {
    addr: SocketAddr,
    socket: Connected,
    /// Nanoseconds after `Shared::epoch` of the last datagram either way.
    last_seen: AtomicU64,
    /// Datagrams of this client being passed on or held for release; an entry
    /// in use is never expired.
    in_use: AtomicUsize,
}

#[derive(Debug, Default)]
struct ClientTable {
    by_addr: HashMap<SocketAddr, Arc<Client>>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay on `listen` that passes datagrams to and from `upstream`,
    /// with `client_to_upstream` faults on the way there and
    /// `upstream_to_client` faults on the way back, and the default limits.
    /// Returns at once; the relay runs on threads of its own.
    ///
    /// Underneath: `udp::socket(listen, Side::Server).bind()` for the listening
    /// socket (socket(2) + bind(2)), SO_RCVTIMEO of [`POLL`], and two threads;
    /// one more socket (bind + connect to `upstream`) and thread per client
    /// later.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] naming a fault field out of range, or when
    /// `upstream` is the relay's own address; the errors of `bind()` (such as
    /// [`ErrorKind::AddressInUse`]); the OS error if a thread cannot start.
    pub fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        client_to_upstream: FaultConfig,
        upstream_to_client: FaultConfig,
        trace: &Trace,
    ) -> Result<Relay, Error> {
        let config = RelayConfig {
            client_to_upstream,
            upstream_to_client,
            ..RelayConfig::default()
        };
        Relay::start_with(listen, upstream, config, trace)
    }

    /// Starts a relay with the same faults both ways ([`RelayConfig::symmetric`]:
    /// the way back draws from `faults.seed + 1`).
    ///
    /// # Errors
    /// As [`Relay::start`].
    pub fn start_symmetric(
        listen: SocketAddr,
        upstream: SocketAddr,
        faults: FaultConfig,
        trace: &Trace,
    ) -> Result<Relay, Error> {
        Relay::start_with(listen, upstream, RelayConfig::symmetric(faults), trace)
    }

    /// Starts a relay with every setting of `config`.
    ///
    /// # Errors
    /// As [`Relay::start`], plus [`ErrorKind::InvalidInput`] for a limit out of range.
    pub fn start_with(
        listen: SocketAddr,
        upstream: SocketAddr,
        config: RelayConfig,
        trace: &Trace,
    ) -> Result<Relay, Error> {
        config.validate()?;
        let engines = [
            Faults::new(config.client_to_upstream)?,
            Faults::new(config.upstream_to_client)?,
        ];
        let listener = socket::socket(listen, Side::Server, trace).bind()?;
        let local = listener.local_addr();
        if upstream == local {
            return Err(Error::new(
                Step::Serve,
                ErrorKind::InvalidInput(format!(
                    "the upstream {upstream} is the relay's own address; it would relay to itself"
                )),
            )
            .at(endpoint(local)));
        }
        listener.set_read_timeout(Some(POLL))?;
        let shared = Arc::new(Shared {
            upstream,
            limits: Limits {
                max_clients: config.max_clients,
                max_held: config.max_held,
                max_held_bytes: config.max_held_bytes,
                client_idle: config.client_idle,
            },
            trace: trace.clone(),
            listener,
            stopping: AtomicBool::new(false),
            ledger: Mutex::new(Ledger {
                engines,
                counts: RelayCounts::default(),
            }),
            queue: Mutex::new(Queue::default()),
            due: Condvar::new(),
            clients: Mutex::new(ClientTable::default()),
            epoch: Instant::now(),
        });
        // Built before the threads start, so that if the second cannot start,
        // dropping `relay` stops and joins the first.
        let mut relay = Relay {
            shared: shared.clone(),
            local,
            threads: Vec::new(),
            stopped: None,
        };
        let spawn = |name: String, body: fn(&Arc<Shared>)| {
            let shared = shared.clone();
            thread::Builder::new()
                .name(name)
                .spawn(move || body(&shared))
                .map_err(|e| Error::io(Step::Serve, e).at(endpoint(local)))
        };
        let port = local.port();
        relay.threads.push(spawn(
            format!("sockstep-relay-release-{port}"),
            release_loop,
        )?);
        relay
            .threads
            .push(spawn(format!("sockstep-relay-in-{port}"), listening_loop)?);
        Ok(relay)
    }

    /// The address clients send to (with the real port if port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address datagrams from clients are passed on to.
    pub fn upstream_addr(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The faults in force in one direction.
    pub fn faults(&self, direction: Direction) -> FaultConfig {
        self.shared.ledger().engines[direction.index()]
            .config()
            .clone()
    }

    /// Changes the faults of one direction while the relay runs. The next
    /// datagram that way is decided by the new config, its generator started
    /// afresh at `config.seed`; the counts carry on. Copies already held keep
    /// their release times.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] naming the field out of range; the faults in
    /// force then stay as they were.
    pub fn set_faults(&self, direction: Direction, config: FaultConfig) -> Result<(), Error> {
        self.shared.ledger().engines[direction.index()].reconfigure(config)
    }

    /// The counts so far. Taken while datagrams move, a snapshot may catch a
    /// copy between its fate and its send; after [`Relay::shutdown`] the counts
    /// are exact.
    pub fn counts(&self) -> RelayCounts {
        self.shared.counts()
    }

    /// Stops the relay and reports what it did.
    ///
    /// In order: set the stop flag; wake the release thread, which stops and
    /// discards the copies it still holds (counted in
    /// [`DirectionCounts::discarded_at_shutdown`]); join it and the listening
    /// socket's thread, which notices the flag within [`POLL`]; then join every
    /// client's thread, which does the same; then close every client's upstream
    /// socket. The listening socket closes when the relay is dropped.
    pub fn shutdown(mut self) -> RelayCounts {
        self.stop()
    }

    fn stop(&mut self) -> RelayCounts {
        if let Some(counts) = self.stopped {
            return counts;
        }
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        // Set under the queue's lock, so the release thread cannot check the flag
        // just before it is set and then sleep through the notification.
        shared.queue().stopping = true;
        shared.due.notify_all();
        for thread in self.threads.drain(..) {
            // Cannot hang: each thread checks the flag at least every POLL. A
            // thread that panicked has nothing left to join; its counts stand.
            let _ = thread.join();
        }
        // The listening thread, the only one that adds clients, has returned,
        // so this list is complete.
        let client_threads: Vec<_> = shared.clients().threads.drain(..).collect();
        for thread in client_threads {
            let _ = thread.join();
        }
        // Every thread is gone and the heap is empty, so the table holds the
        // last handle on each upstream socket: clearing it closes them all now.
        shared.clients().by_addr.clear();
        let counts = self.counts();
        self.stopped = Some(counts);
        counts
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

// --- the threads, in the order a datagram meets them -------------------------

/// The listening socket's thread: receives every client's datagrams and passes
/// each one towards the upstream.
fn listening_loop(shared: &Arc<Shared>) {
    let mut buf = vec![0u8; RECEIVE_BUFFER];
    let mut backoff = Duration::ZERO;
    while !shared.stopping.load(Ordering::SeqCst) {
        let (n, from) = match shared.listener.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => {
                shared.count(|c| c.recv_errors += 1);
                backoff = back_off(backoff);
                continue;
            }
        };
        backoff = Duration::ZERO;
        let arrived = Instant::now();
        let client = match client_for(shared, from) {
            Ok(client) => client,
            Err(why) => {
                shared.count(|c| c.clients_refused += 1);
                shared.note(
                    shared.listener.id(),
                    Side::Server,
                    shared.listener.local_addr(),
                    from,
                    n,
                    || format!("relay: new client not admitted ({why}); datagram dropped"),
                );
                continue;
            }
        };
        let received = Received {
            socket: shared.listener.id(),
            side: Side::Server,
            local: shared.listener.local_addr(),
            from,
        };
        pass_on(
            shared,
            Direction::ClientToUpstream,
            &buf[..n],
            &Route::ToUpstream(client.clone()),
            arrived,
            received,
        );
        // The pin `client_for` put on the entry, now that the copies are sent or held.
        client.in_use.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The entry for `from`, made (socket, connect, thread) if it is new, and
/// pinned against expiry until the caller unpins it; or why there is none:
/// the table is full, or the socket or thread cannot be made.
fn client_for(shared: &Arc<Shared>, from: SocketAddr) -> Result<Arc<Client>, String> {
    let mut table = shared.clients();
    if let Some(client) = table.by_addr.get(&from) {
        // Touched and pinned under the table's lock, which expiry also takes,
        // so an entry is never expired between being found and being used.
        client.touch(shared);
        client.in_use.fetch_add(1, Ordering::SeqCst);
        return Ok(client.clone());
    }
    if table.by_addr.len() >= shared.limits.max_clients {
        return Err(format!(
            "the client table is full at {}",
            shared.limits.max_clients
        ));
    }
    reap_finished_threads(&mut table);
    let socket = upstream_socket(shared).map_err(|e| e.summary())?;
    let client = Arc::new(Client {
        addr: from,
        socket,
        last_seen: AtomicU64::new(0),
        in_use: AtomicUsize::new(1),
    });
    client.touch(shared);
    let thread = {
        let (shared, client) = (shared.clone(), client.clone());
        thread::Builder::new()
            .name(format!("sockstep-relay-up-{from}"))
            .stack_size(CLIENT_THREAD_STACK)
            .spawn(move || upstream_loop(&shared, &client))
            .map_err(|e| format!("cannot start a thread: {e}"))?
    };
    table.threads.push(thread);
    table.by_addr.insert(from, client.clone());
    drop(table);
    shared.count(|c| c.clients += 1);
    Ok(client)
}

/// A new socket for one client's traffic with the upstream: bound to port 0 of
/// the upstream's family, connected to the upstream so the kernel filters out
/// everyone else, with a read timeout of [`POLL`].
fn upstream_socket(shared: &Shared) -> Result<Connected, Error> {
    let any: SocketAddr = match shared.upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = socket::socket(any, Side::Client, &shared.trace)
        .bind()?
        .connect(shared.upstream)?;
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket)
}

/// Joins client threads that already returned (their clients expired), so a
/// long-running relay does not keep their handles; done only when the list has
/// grown well past the clients in the table, since it walks the whole list.
fn reap_finished_threads(table: &mut ClientTable) {
    if table.threads.len() < 2 * table.by_addr.len().max(32) {
        return;
    }
    let (finished, running): (Vec<_>, Vec<_>) =
        table.threads.drain(..).partition(JoinHandle::is_finished);
    table.threads = running;
    for thread in finished {
        let _ = thread.join();
    }
}

/// One client's thread: receives the upstream's replies on the client's
/// upstream socket and passes each back to the client, until the relay stops
/// or the client has been idle for `client_idle`.
fn upstream_loop(shared: &Arc<Shared>, client: &Arc<Client>) {
    let mut buf = vec![0u8; RECEIVE_BUFFER];
    let mut backoff = Duration::ZERO;
    let received = Received {
        socket: client.socket.id(),
        side: Side::Client,
        local: client.socket.local_addr(),
        from: shared.upstream,
    };
    while !shared.stopping.load(Ordering::SeqCst) {
        match client.socket.recv(&mut buf) {
            Ok(n) => {
                backoff = Duration::ZERO;
                let arrived = Instant::now();
                client.touch(shared);
                pass_on(
                    shared,
                    Direction::UpstreamToClient,
                    &buf[..n],
                    &Route::ToClient(client.addr),
                    arrived,
                    received,
                );
            }
            Err(e) if is_timeout(&e) => {
                if expire_if_idle(shared, client) {
                    return;
                }
            }
            // ICMP "port unreachable" for an earlier datagram: reported once,
            // then the socket receives normally again, so no back-off.
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionRefused) => {
                shared.count(|c| c.upstream_refused += 1);
            }
            Err(_) => {
                shared.count(|c| c.recv_errors += 1);
                backoff = back_off(backoff);
            }
        }
    }
}

/// Removes `client` from the table if it has been idle for `client_idle` and
/// none of its datagrams is in use; says whether it did.
fn expire_if_idle(shared: &Shared, client: &Arc<Client>) -> bool {
    let idle = |c: &Client| {
        c.idle_for(shared) >= shared.limits.client_idle && c.in_use.load(Ordering::SeqCst) == 0
    };
    if !idle(client) {
        return false;
    }
    let mut table = shared.clients();
    // Again under the lock: the listening thread may have just found the entry.
    let ours = table
        .by_addr
        .get(&client.addr)
        .is_some_and(|c| Arc::ptr_eq(c, client));
    if !ours || !idle(client) {
        return false;
    }
    table.by_addr.remove(&client.addr);
    drop(table);
    shared.count(|c| c.clients_expired += 1);
    shared.note(
        client.socket.id(),
        Side::Client,
        client.socket.local_addr(),
        client.addr,
        0,
        || "relay: client idle; its entry and upstream socket are released".to_string(),
    );
    true
}

/// Where a datagram came in, for the trace.
#[derive(Debug, Clone, Copy)]
struct Received {
    socket: SocketId,
    side: Side,
    local: SocketAddr,
    from: SocketAddr,
}

/// Decides one datagram's fate and carries it out: nothing, or each copy sent
/// now (no hold) or handed to the release thread.
fn pass_on(
    shared: &Shared,
    direction: Direction,
    payload: &[u8],
    route: &Route,
    arrived: Instant,
    received: Received,
) {
    let fate = shared.ledger().engines[direction.index()].decide();
    if !matches!(fate, Fate::Deliver { after, .. } if after.is_zero()) {
        shared.note(
            received.socket,
            received.side,
            received.local,
            received.from,
            payload.len(),
            || describe(direction, &fate),
        );
    }
    for hold in fate.holds() {
        // `checked_add` cannot fail for holds of at most MAX_HOLD; if it ever
        // did, sending now is the least surprising answer.
        match arrived.checked_add(hold) {
            Some(release) if !hold.is_zero() => {
                schedule(shared, direction, release, payload.to_vec(), route.clone());
            }
            _ => send(shared, direction, payload, route),
        }
    }
}

/// The trace's words for a fate.
fn describe(direction: Direction, fate: &Fate) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    match *fate {
        Fate::Drop => format!("relay: lost on purpose ({direction}); the sender was not told"),
        Fate::Deliver { after, reordered } => format!(
            "relay: held {:.3} ms{} ({direction})",
            ms(after),
            if reordered {
                ", so later datagrams overtake it"
            } else {
                ""
            }
        ),
        Fate::DeliverTwice {
            first,
            second,
            reordered,
        } => format!(
            "relay: duplicated, copies held {:.3} and {:.3} ms{} ({direction})",
            ms(first),
            ms(second),
            if reordered { ", reordered" } else { "" }
        ),
    }
}

/// Hands a copy to the release thread, unless the heap is full or the relay
/// is stopping; either way it is counted.
fn schedule(
    shared: &Shared,
    direction: Direction,
    release: Instant,
    payload: Vec<u8>,
    route: Route,
) {
    let len = payload.len();
    let mut queue = shared.queue();
    if queue.stopping {
        drop(queue);
        shared.count(|c| c.direction_mut(direction).discarded_at_shutdown += 1);
        return;
    }
    let full = queue.heap.len() >= shared.limits.max_held
        || queue.bytes.saturating_add(len) > shared.limits.max_held_bytes;
    if full {
        drop(queue);
        shared.count(|c| c.direction_mut(direction).overflowed += 1);
        return;
    }
    if let Route::ToUpstream(client) = &route {
        client.in_use.fetch_add(1, Ordering::SeqCst);
    }
    let seq = queue.next_seq;
    queue.next_seq += 1;
    queue.bytes += len;
    queue.held[direction.index()] += 1;
    let earliest = queue
        .heap
        .peek()
        .is_none_or(|Reverse(first)| release < first.release);
    queue.heap.push(Reverse(HeldCopy {
        release,
        seq,
        direction,
        payload,
        route,
    }));
    drop(queue);
    // Only a new earliest copy changes how long the release thread should sleep.
    if earliest {
        shared.due.notify_one();
    }
}

/// The release thread: sleeps until the earliest held copy is due, sends it,
/// and again, until the relay stops; then discards what is left.
fn release_loop(shared: &Arc<Shared>) {
    let mut queue = shared.queue();
    while !queue.stopping {
        let now = Instant::now();
        match queue.heap.peek().map(|Reverse(first)| first.release) {
            Some(release) if release <= now => {
                let Some(Reverse(copy)) = queue.heap.pop() else {
                    continue;
                };
                queue.bytes -= copy.payload.len();
                queue.held[copy.direction.index()] -= 1;
                // Sent without the lock, so receiving threads can schedule meanwhile.
                drop(queue);
                send(shared, copy.direction, &copy.payload, &copy.route);
                if let Route::ToUpstream(client) = &copy.route {
                    client.in_use.fetch_sub(1, Ordering::SeqCst);
                }
                queue = shared.queue();
            }
            Some(release) => {
                queue = shared
                    .due
                    .wait_timeout(queue, release - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            None => {
                queue = shared
                    .due
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
    let left: Vec<_> = queue.heap.drain().map(|Reverse(copy)| copy).collect();
    queue.bytes = 0;
    queue.held = [0; 2];
    drop(queue);
    shared.count(|c| {
        for copy in &left {
            c.direction_mut(copy.direction).discarded_at_shutdown += 1;
        }
    });
}

/// Sends one copy where its route says, and counts the outcome.
fn send(shared: &Shared, direction: Direction, payload: &[u8], route: &Route) {
    let sent = match route {
        Route::ToUpstream(client) => client.socket.send(payload),
        Route::ToClient(to) => shared.listener.send_to(payload, *to),
    };
    shared.count(|c| {
        let d = c.direction_mut(direction);
        match sent {
            Ok(()) => d.sent += 1,
            Err(_) => d.send_errors += 1,
        }
    });
}

// --- small helpers ----------------------------------------------------------

impl Client {
    fn touch(&self, shared: &Shared) {
        let nanos = u64::try_from(shared.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_seen.store(nanos, Ordering::SeqCst);
    }

    fn idle_for(&self, shared: &Shared) -> Duration {
        let now = shared.epoch.elapsed();
        now.saturating_sub(Duration::from_nanos(self.last_seen.load(Ordering::SeqCst)))
    }
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // Nothing runs user code under these locks; a poisoned one can only
        // come from a bug here, and the counters in it are still whole numbers.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn clients(&self) -> MutexGuard<'_, ClientTable> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, update: impl FnOnce(&mut RelayCounts)) {
        update(&mut self.ledger().counts);
    }

    /// A snapshot in which every copy decided on is in at most one place.
    ///
    /// A copy moves: decided (ledger) → held (queue) → taken out (queue) → sent
    /// (ledger), each step under one lock. Holding both locks for the snapshot
    /// sees it between two steps, never half-way, so `sent + … + held` never
    /// exceeds the copies decided on. This is the one place that holds two
    /// locks, always the queue's first; nothing else holds either while taking
    /// the other, so it cannot deadlock.
    fn counts(&self) -> RelayCounts {
        let mut counts = {
            let queue = self.queue();
            let ledger = self.ledger();
            let mut counts = ledger.counts;
            for d in Direction::BOTH {
                let c = counts.direction_mut(d);
                c.faults = ledger.engines[d.index()].counts();
                c.held = queue.held[d.index()];
            }
            counts
        };
        counts.clients_active = self.clients().by_addr.len() as u64;
        counts
    }

    /// A trace event for something the relay did to a datagram.
    fn note(
        &self,
        socket: SocketId,
        side: Side,
        local: SocketAddr,
        peer: SocketAddr,
        bytes: usize,
        detail: impl FnOnce() -> String,
    ) {
        self.trace.emit(|| {
            Event::new(socket, side, Step::RecvFrom, Protocol::Udp)
                .local(local)
                .peer(peer)
                .bytes(bytes)
                .detail(detail())
        });
    }
}

/// Whether `e` is a read timeout. The kernel reports SO_RCVTIMEO running out as
/// EAGAIN, which std calls `WouldBlock` and sockstep's error calls
/// [`ErrorKind::TimedOut`], so a timeout is never mistaken for a failure (and
/// counted in `recv_errors`).
fn is_timeout(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::TimedOut)
}

/// Sleeps a little longer after each consecutive unexpected error (1 ms,
/// doubling, at most [`MAX_BACKOFF`]), so a lasting fault is not a busy loop.
fn back_off(previous: Duration) -> Duration {
    let next = (previous * 2).clamp(Duration::from_millis(1), MAX_BACKOFF);
    thread::sleep(next);
    next
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::from_addr(Protocol::Udp, addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Recorder;
    use crate::udp::handlers::Echo;
    use crate::udp::serve::UdpServer;

    fn any() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    fn echo() -> UdpServer {
        socket::socket(any(), Side::Server, &Trace::off())
            .bind()
            .unwrap()
            .serve(Echo)
            .unwrap()
    }

    fn client() -> Bound {
        let c = socket::socket(any(), Side::Client, &Trace::off())
            .bind()
            .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c
    }

    /// Polls `done` for up to five seconds.
    fn eventually(relay: &Relay, done: impl Fn(&RelayCounts) -> bool) -> RelayCounts {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let counts = relay.counts();
            if done(&counts) || Instant::now() > deadline {
                return counts;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn round_trip(client: &Bound, relay: &Relay, payload: &[u8]) -> Vec<u8> {
        client.send_to(payload, relay.local_addr()).unwrap();
        let mut buf = vec![0u8; RECEIVE_BUFFER];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(from, relay.local_addr(), "replies come from the relay");
        buf.truncate(n);
        buf
    }

    #[test]
    fn a_datagram_lost_on_purpose_raises_no_error_at_the_sender() {
        let server = echo();
        let lose_all = FaultConfig {
            loss: 1.0,
            ..FaultConfig::default()
        };
        let relay =
            Relay::start_symmetric(any(), server.local_addr(), lose_all, &Trace::off()).unwrap();
        let c = client();
        for _ in 0..10 {
            c.send_to(b"anyone?", relay.local_addr())
                .expect("a loss is no error");
        }
        let counts = eventually(&relay, |c| c.client_to_upstream.faults.received == 10);
        assert_eq!(counts.client_to_upstream.faults.dropped, 10);
        assert_eq!(counts.client_to_upstream.sent, 0);
        assert_eq!(server.shutdown().received, 0);
    }

    #[test]
    fn replies_go_back_to_the_client_that_asked() {
        let server = echo();
        let relay = Relay::start_symmetric(
            any(),
            server.local_addr(),
            FaultConfig::default(),
            &Trace::off(),
        )
        .unwrap();
        let (a, b) = (client(), client());
        for i in 0..5u8 {
            assert_eq!(round_trip(&a, &relay, &[b'a', i]), [b'a', i]);
            assert_eq!(round_trip(&b, &relay, &[b'b', i]), [b'b', i]);
        }
        assert_eq!(relay.counts().clients_active, 2);
        let counts = relay.shutdown();
        assert_eq!((counts.clients, counts.clients_active), (2, 0));
        assert_eq!(counts.upstream_to_client.sent, 10);
    }

    #[test]
    fn a_full_client_table_drops_and_counts() {
        let server = echo();
        let config = RelayConfig {
            max_clients: 1,
            ..RelayConfig::default()
        };
        let relay = Relay::start_with(any(), server.local_addr(), config, &Trace::off()).unwrap();
        let (first, second) = (client(), client());
        assert_eq!(round_trip(&first, &relay, b"1"), b"1");
        second.send_to(b"2", relay.local_addr()).unwrap();
        let counts = eventually(&relay, |c| c.clients_refused == 1);
        assert_eq!(counts.clients_refused, 1);
        assert_eq!(
            counts.client_to_upstream.faults.received, 1,
            "the engine never saw it"
        );
        assert_eq!(
            round_trip(&first, &relay, b"3"),
            b"3",
            "the first client still served"
        );
    }

    #[test]
    fn a_full_release_heap_drops_and_counts_and_shutdown_discards_the_rest() {
        let server = echo();
        let config = RelayConfig {
            client_to_upstream: FaultConfig {
                delay: Duration::from_secs(20),
                ..FaultConfig::default()
            },
            max_held: 2,
            ..RelayConfig::default()
        };
        let relay = Relay::start_with(any(), server.local_addr(), config, &Trace::off()).unwrap();
        let c = client();
        for _ in 0..5 {
            c.send_to(b"later", relay.local_addr()).unwrap();
        }
        let counts = eventually(&relay, |c| c.client_to_upstream.faults.received == 5);
        let d = counts.client_to_upstream;
        assert_eq!((d.held, d.overflowed), (2, 3));
        let started = Instant::now();
        let d = relay.shutdown().client_to_upstream;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "shutdown waits for no delay"
        );
        assert_eq!((d.held, d.discarded_at_shutdown, d.sent), (0, 2, 0));
        assert!(d.all_copies_accounted_for(), "{d:?}");
    }

    #[test]
    fn a_delayed_datagram_waits_its_time() {
        let server = echo();
        let delay = Duration::from_millis(150);
        let config = RelayConfig {
            client_to_upstream: FaultConfig {
                delay,
                ..FaultConfig::default()
            },
            ..RelayConfig::default()
        };
        let relay = Relay::start_with(any(), server.local_addr(), config, &Trace::off()).unwrap();
        let c = client();
        let started = Instant::now();
        assert_eq!(round_trip(&c, &relay, b"slow"), b"slow");
        assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
        assert_eq!(relay.shutdown().client_to_upstream.faults.delayed, 1);
    }

    #[test]
    fn an_idle_client_is_forgotten_and_comes_back_as_new() {
        let server = echo();
        let config = RelayConfig {
            client_idle: MIN_CLIENT_IDLE,
            ..RelayConfig::default()
        };
        let relay = Relay::start_with(any(), server.local_addr(), config, &Trace::off()).unwrap();
        let c = client();
        assert_eq!(round_trip(&c, &relay, b"hi"), b"hi");
        let counts = eventually(&relay, |c| c.clients_expired == 1);
        assert_eq!((counts.clients_expired, counts.clients_active), (1, 0));
        assert_eq!(round_trip(&c, &relay, b"again"), b"again");
        let counts = relay.shutdown();
        assert_eq!(counts.clients, 2);
    }

    #[test]
    fn set_faults_takes_effect_on_the_next_datagram() {
        let server = echo();
        let relay = Relay::start_symmetric(
            any(),
            server.local_addr(),
            FaultConfig::default(),
            &Trace::off(),
        )
        .unwrap();
        let c = client();
        assert_eq!(round_trip(&c, &relay, b"1"), b"1");
        let lose_replies = FaultConfig {
            loss: 1.0,
            ..FaultConfig::default()
        };
        relay
            .set_faults(Direction::UpstreamToClient, lose_replies.clone())
            .unwrap();
        assert_eq!(relay.faults(Direction::UpstreamToClient), lose_replies);
        c.send_to(b"2", relay.local_addr()).unwrap();
        let counts = eventually(&relay, |c| c.upstream_to_client.faults.dropped == 1);
        assert_eq!(
            counts.upstream_to_client.faults.dropped, 1,
            "the reply was lost"
        );
        let bad = FaultConfig {
            duplicate: 7.0,
            ..FaultConfig::default()
        };
        assert!(relay.set_faults(Direction::UpstreamToClient, bad).is_err());
        assert_eq!(relay.faults(Direction::UpstreamToClient), lose_replies);
    }

    #[test]
    fn nothing_listening_upstream_is_seen_only_as_icmp_on_the_connected_socket() {
        // A port that was free a moment ago: nothing listens there now.
        let gone = client().local_addr();
        let relay =
            Relay::start_symmetric(any(), gone, FaultConfig::default(), &Trace::off()).unwrap();
        let c = client();
        for _ in 0..3 {
            c.send_to(b"hello?", relay.local_addr())
                .expect("no error for the sender");
            thread::sleep(Duration::from_millis(20));
        }
        let counts = eventually(&relay, |c| c.upstream_refused > 0);
        assert!(counts.upstream_refused > 0, "{counts:?}");
    }

    #[test]
    fn bad_settings_are_refused_naming_the_field() {
        let upstream: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let cases = [
            (
                RelayConfig {
                    max_clients: 0,
                    ..RelayConfig::default()
                },
                "`max_clients`",
            ),
            (
                RelayConfig {
                    max_held: 0,
                    ..RelayConfig::default()
                },
                "`max_held`",
            ),
            (
                RelayConfig {
                    client_idle: Duration::from_millis(1),
                    ..RelayConfig::default()
                },
                "`client_idle`",
            ),
            (
                RelayConfig::symmetric(FaultConfig {
                    reorder: -1.0,
                    ..FaultConfig::default()
                }),
                "`reorder`",
            ),
        ];
        for (config, field) in cases {
            let e = Relay::start_with(any(), upstream, config, &Trace::off()).unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::InvalidInput(why) if why.starts_with(field)),
                "{e}"
            );
        }
    }

    #[test]
    fn a_relay_to_itself_is_refused() {
        // Take a free port, give it back, and ask the relay to listen and send there.
        let addr = client().local_addr();
        match Relay::start_symmetric(addr, addr, FaultConfig::default(), &Trace::off()) {
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    ErrorKind::InvalidInput(_) | ErrorKind::AddressInUse
                ),
                "{e}"
            ),
            Ok(_) => panic!("a relay to itself was started"),
        }
    }

    #[test]
    fn the_trace_shows_a_loss_the_sender_never_sees() {
        let server = echo();
        let recorder = Recorder::new();
        let lose_all = FaultConfig {
            loss: 1.0,
            ..FaultConfig::default()
        };
        let relay = Relay::start(
            any(),
            server.local_addr(),
            lose_all,
            FaultConfig::default(),
            &recorder.trace(),
        )
        .unwrap();
        client().send_to(b"x", relay.local_addr()).unwrap();
        eventually(&relay, |c| c.client_to_upstream.faults.dropped == 1);
        drop(relay);
        let noted = recorder.events().iter().any(|e| {
            e.detail
                .as_deref()
                .is_some_and(|d| d.contains("lost on purpose"))
        });
        assert!(noted);
    }

    #[test]
    fn shutdown_is_prompt_with_clients_and_held_copies() {
        let server = echo();
        let slow = FaultConfig {
            delay: Duration::from_secs(10),
            ..FaultConfig::default()
        };
        let relay =
            Relay::start_symmetric(any(), server.local_addr(), slow, &Trace::off()).unwrap();
        let clients: Vec<Bound> = (0..5).map(|_| client()).collect();
        for c in &clients {
            c.send_to(b"x", relay.local_addr()).unwrap();
        }
        eventually(&relay, |c| c.clients_active == 5);
        let started = Instant::now();
        let counts = relay.shutdown();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(counts.client_to_upstream.discarded_at_shutdown, 5);
    }
}
