//! One direction of one proxied connection: read one socket, let the faults
//! decide when and how the bytes go on, write the other.
//!
//! A pump is one thread running [`run`]. It keeps a small queue of chunks it
//! has read, each with the instant it may leave (a latency fault sets it; with
//! no faults it is "now"), and goes round one loop:
//!
//! ```text
//!   stalled by a timeout fault? ── yes ─▶ sleep (≤ POLL); close when its time comes
//!   write what is due ─────────────────▶ in pieces (slicer), paced (bandwidth)
//!   nothing left and the sender ended? ▶ wait out a slow close, pass the FIN on, stop
//!   read more, if there is room ───────▶ waiting at most until the next chunk is due (≤ POLL)
//! ```
//!
//! Every blocking call in the loop has a timeout of at most [`POLL`], so the
//! pump notices within `POLL` that the proxy is stopping, that the other pump
//! ended the connection, or that the faults changed. The queue never holds
//! more than [`ProxyConfig::buffer`](super::ProxyConfig::buffer) bytes; when
//! it is full the pump stops reading, and the sender's writes back up through
//! TCP's flow control.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{Direction, DirectionCounts, Fault, NamedFault, POLL, Shared, is_timeout};
use crate::endpoint::Protocol;
use crate::step::{Side, Step};
use crate::trace::{Event, SocketId};
use crate::udp::faults::Xoshiro256StarStar;

/// The most one read takes from the kernel: a quarter of a loopback segment,
/// so a chunk held by a latency fault is never large, and the read buffer
/// costs each pump 16 KiB.
const READ_CHUNK: usize = 16 * 1024;

/// The shortest wait: a socket timeout of zero would mean "forever".
const MIN_WAIT: Duration = Duration::from_millis(1);

/// Below this, a pump waiting for its next write sleeps instead of reading
/// with a timeout: socket timeouts count in milliseconds (jiffies, in fact),
/// and a slicer's pauses are often shorter.
const SHORT_WAIT: Duration = Duration::from_millis(2);

/// A bandwidth fault writes a twentieth of a second's worth at a time, so the
/// rate is smooth at the scale of a test's timeouts.
const PACE_STEPS_PER_SECOND: u64 = 20;

/// What a graceful close reads and throws away from each socket before closing
/// it, so that bytes the proxy will never forward do not turn its FIN into RST.
const DRAIN_LIMIT: usize = 256 * 1024;

// How a connection is ending (`Conn::ending`).
const OPEN: u8 = 0;
/// FIN both ways, after draining what arrived (limit reached, timeout closed).
const GRACEFUL: u8 = 1;
/// Close without draining: a socket with unread bytes sends RST.
const ABORT: u8 = 2;

/// One proxied connection: the two sockets both pumps use, and how it ends.
///
/// The pumps share the sockets (std's `Read` and `Write` are implemented for
/// `&TcpStream`), so a connection costs two descriptors, not four. The upstream
/// pump reads `client` and writes `server`, the downstream pump the reverse, so
/// each socket option is set by one pump only: the reader's `SO_RCVTIMEO`, the
/// writer's `SO_SNDTIMEO`. The sockets close when the last pump lets go of the
/// connection (its `Drop`).
#[derive(Debug)]
pub(super) struct Conn {
    shared: Arc<Shared>,
    number: u64,
    client: TcpStream,
    client_id: SocketId,
    client_peer: SocketAddr,
    server: TcpStream,
    server_id: SocketId,
    ending: AtomicU8,
}

impl Conn {
    /// Sets both sockets up: TCP_NODELAY (the proxy must not merge the
    /// writes a slicer separates, nor delay small ones), and read and write
    /// timeouts of [`POLL`].
    pub(super) fn new(
        shared: Arc<Shared>,
        number: u64,
        client_id: SocketId,
        client: TcpStream,
        client_peer: SocketAddr,
        server_id: SocketId,
        server: TcpStream,
    ) -> io::Result<Conn> {
        for socket in [&client, &server] {
            socket.set_nodelay(true)?;
            socket.set_read_timeout(Some(POLL))?;
            socket.set_write_timeout(Some(POLL))?;
        }
        shared.trace.emit(|| {
            let event = Event::new(server_id, Side::Client, Step::Established, Protocol::Tcp)
                .peer(shared.upstream)
                .detail(format!(
                    "proxy connection #{number}: {client_peer} ⇄ proxy ⇄ {}",
                    shared.upstream
                ));
            match server.local_addr() {
                Ok(local) => event.local(local),
                Err(_) => event,
            }
        });
        Ok(Conn {
            shared,
            number,
            client,
            client_id,
            client_peer,
            server,
            server_id,
            ending: AtomicU8::new(OPEN),
        })
    }

    /// Ends the connection at once; whatever unread bytes the sockets hold
    /// make the kernel send RST.
    pub(super) fn abort(&self) {
        self.end(ABORT);
    }

    fn is_ending(&self) -> bool {
        self.ending.load(Ordering::SeqCst) != OPEN
    }

    /// Starts ending the connection, `GRACEFUL` or `ABORT`; false if it was
    /// already ending (the first reason stands).
    fn end(&self, how: u8) -> bool {
        if self
            .ending
            .compare_exchange(OPEN, how, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        // Errors are ignored: a socket the peer already reset has nothing to shut.
        for socket in [&self.client, &self.server] {
            if how == GRACEFUL {
                // FIN now, after whatever was already written.
                let _ = socket.shutdown(Shutdown::Write);
            } else {
                // Sends nothing (Linux keeps the unread bytes, so the close
                // still resets), but wakes a pump blocked reading it.
                let _ = socket.shutdown(Shutdown::Read);
            }
        }
        true
    }

    /// The socket a pump reads and the one it writes.
    fn sockets(&self, way: Direction) -> (&TcpStream, &TcpStream) {
        match way {
            Direction::Downstream => (&self.server, &self.client),
            _ => (&self.client, &self.server),
        }
    }

    /// The socket a pump writes, for trace events about what it did there.
    fn receiver(&self, way: Direction) -> (SocketId, Side) {
        match way {
            Direction::Downstream => (self.client_id, Side::Server),
            _ => (self.server_id, Side::Client),
        }
    }

    fn count(&self, way: Direction, update: impl FnOnce(&mut DirectionCounts)) {
        update(self.shared.counts().direction_mut(way));
    }

    fn note(&self, way: Direction, step: Step, detail: impl FnOnce() -> String) {
        let (id, side) = self.receiver(way);
        self.shared.trace.emit(|| {
            Event::new(id, side, step, Protocol::Tcp).detail(format!(
                "proxy #{} {}: {}",
                self.number,
                arrow(way),
                detail()
            ))
        });
    }
}

impl Drop for Conn {
    /// The last pump is gone: close both sockets (drop does the close(2)).
    fn drop(&mut self) {
        let aborted = self.ending.load(Ordering::SeqCst) == ABORT;
        if !aborted {
            drain(&self.client);
            drain(&self.server);
        }
        self.shared.counts().active -= 1;
        self.shared.trace.emit(|| {
            Event::new(self.client_id, Side::Server, Step::Close, Protocol::Tcp)
                .peer(self.client_peer)
                .detail(format!(
                    "proxy connection #{} closed{}",
                    self.number,
                    if aborted {
                        " abruptly (RST where bytes were left unread)"
                    } else {
                        ""
                    }
                ))
        });
    }
}

/// Reads and discards what has already arrived, without waiting, up to
/// [`DRAIN_LIMIT`] bytes: a close with unread bytes would be a reset.
fn drain(socket: &TcpStream) {
    if socket.set_nonblocking(true).is_err() {
        return;
    }
    let mut scratch = [0u8; 4096];
    let mut left = DRAIN_LIMIT;
    let mut socket = socket;
    while left > 0 {
        match socket.read(&mut scratch) {
            Ok(n) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
}

fn arrow(way: Direction) -> &'static str {
    match way {
        Direction::Downstream => "server → client",
        _ => "client → server",
    }
}

/// Why a pump stopped.
#[derive(Debug)]
enum Exit {
    /// The sender ended its stream and the FIN was passed on.
    Eof,
    /// The proxy is stopping, or the other pump ended the connection.
    Stopped,
    /// A limit-data fault's bytes are through.
    Limit,
    /// A timeout fault's `close_after` passed.
    TimedOut,
    /// A reset-peer fault met the sender's next byte.
    Reset,
    /// A read or write failed.
    Failed(String),
}

/// Runs one pump until its direction is done, then acts on how it ended.
pub(super) fn run(conn: &Arc<Conn>, way: Direction) {
    let mut pump = Pump::new(conn, way);
    let exit = pump.pump();
    pump.finish(exit);
}

/// A chunk read and not yet all written.
#[derive(Debug)]
struct Held {
    /// Not to be written before this.
    due: Instant,
    bytes: Vec<u8>,
    /// How much of it is already written.
    sent: usize,
}

struct Pump<'a> {
    conn: &'a Conn,
    way: Direction,
    src: &'a TcpStream,
    dst: &'a TcpStream,
    queue: VecDeque<Held>,
    /// Bytes in `queue` not yet written; at most the config's `buffer`.
    queued: usize,
    scratch: Vec<u8>,
    /// Bytes read from `src` so far: the stream position faults count in.
    read_total: u64,
    /// `src` has ended its stream.
    eof: bool,
    /// The earliest the next write may go (bandwidth pacing, slicer pauses).
    not_before: Instant,
    /// The release time of the last chunk queued: none is released before it.
    last_due: Instant,
    faults: InForce,
    /// `src`'s SO_RCVTIMEO now, so it is set only when it changes.
    read_timeout: Duration,
    /// Whether a timeout fault holds this direction now (counted once per stall).
    stalled: bool,
}

impl<'a> Pump<'a> {
    fn new(conn: &'a Conn, way: Direction) -> Pump<'a> {
        let (src, dst) = conn.sockets(way);
        let now = Instant::now();
        Pump {
            conn,
            way,
            src,
            dst,
            queue: VecDeque::new(),
            queued: 0,
            scratch: vec![0; READ_CHUNK],
            read_total: 0,
            eof: false,
            not_before: now,
            last_due: now,
            faults: InForce::new(),
            read_timeout: POLL,
            stalled: false,
        }
    }

    fn shared(&self) -> &Shared {
        &self.conn.shared
    }

    fn stop_asked(&self) -> bool {
        self.shared().stopping() || self.conn.is_ending()
    }

    fn refresh(&mut self) {
        let shared = &self.conn.shared;
        let version = shared.faults_version.load(Ordering::SeqCst);
        if version != self.faults.version {
            let list = shared.faults().clone();
            self.faults.update(
                version,
                &list,
                Key {
                    seed: shared.seed,
                    connection: self.conn.number,
                    way: self.way,
                },
                Instant::now(),
            );
        }
    }

    /// The loop of the [module docs](self). Bounded: every pass moves bytes or
    /// blocks at most [`POLL`], and it ends when the stream ends, a fault or
    /// an error ends the connection, the other pump ends it, or the proxy stops.
    fn pump(&mut self) -> Exit {
        loop {
            if self.stop_asked() {
                return Exit::Stopped;
            }
            self.refresh();
            let now = Instant::now();
            if let Some(close_at) = self.faults.stall() {
                if !self.stalled {
                    self.stalled = true;
                    self.conn.count(self.way, |c| c.stalls += 1);
                    self.conn.note(self.way, Step::Read, || {
                        "timeout fault: forwarding stopped".to_string()
                    });
                }
                if close_at.is_some_and(|t| now >= t) {
                    return Exit::TimedOut;
                }
                let wait = close_at.map_or(POLL, |t| t.saturating_duration_since(now));
                thread::sleep(wait.clamp(MIN_WAIT, POLL));
                continue;
            }
            if self.stalled {
                self.stalled = false;
                self.conn.note(self.way, Step::Read, || {
                    "timeout fault removed: forwarding again".to_string()
                });
            }
            if let Err(exit) = self.write_due() {
                return exit;
            }
            if self.queue.is_empty() {
                if self.eof {
                    return self.pass_on_eof();
                }
                if self.faults.limit_left(self.read_total) == Some(0) {
                    return Exit::Limit;
                }
            }
            if let Err(exit) = self.read_more() {
                return exit;
            }
        }
    }

    /// Writes every byte whose time has come, as the faults allow. Bounded:
    /// each pass writes at least one byte of the (finite) queue, or returns.
    fn write_due(&mut self) -> Result<(), Exit> {
        loop {
            let now = Instant::now();
            let Some(front) = self.queue.front_mut() else {
                return Ok(());
            };
            if front.due > now || self.not_before > now {
                return Ok(());
            }
            let mut len = front.bytes.len() - front.sent;
            let rate = self.faults.rate();
            if let Some(rate) = rate {
                len = len.min(pace_step(rate));
            }
            let sliced = self.faults.piece(len);
            if let Some(piece) = sliced {
                len = piece;
            }
            let start = front.sent;
            let mut dst = self.dst;
            match dst.write(&front.bytes[start..start + len]) {
                Ok(0) => return Err(self.failed("the receiver took no bytes".into())),
                Ok(k) => {
                    front.sent += k;
                    if front.sent == front.bytes.len() {
                        self.queue.pop_front();
                    }
                    self.queued -= k;
                    let pause = if sliced.is_some() {
                        self.faults.cut(k)
                    } else {
                        None
                    };
                    if let Some(rate) = rate {
                        self.not_before = self.not_before.max(now) + pace_time(k, rate);
                    }
                    if let Some(pause) = pause {
                        self.not_before = self.not_before.max(Instant::now() + pause);
                        self.conn.note(self.way, Step::Write, || {
                            format!("slicer: piece ends here, pausing {pause:?}")
                        });
                    }
                    self.conn.count(self.way, |c| {
                        c.bytes += k as u64;
                        c.throttled += u64::from(rate.is_some());
                        c.slices += u64::from(pause.is_some());
                    });
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                    return Ok(());
                }
                Err(e) => return Err(self.failed(format!("write: {e}"))),
            }
        }
    }

    /// Reads what the sender sent, if there is room and the faults allow,
    /// waiting at most until the next chunk is due.
    ///
    /// It waits with `peek` first and decides after: a fault added while the
    /// pump waited (most waits are a whole [`POLL`]) must apply to the very
    /// bytes that ended the wait — a reset added before a request arrives
    /// resets that request. One more recvfrom(MSG_PEEK) per chunk buys that.
    fn read_more(&mut self) -> Result<(), Exit> {
        let wait = self.wait(Instant::now());
        let room = self.shared().buffer.saturating_sub(self.queued);
        // A write due in less than a socket timeout's resolution: sleep for
        // it (nanosleep is precise to tens of microseconds), read afterwards.
        let soon = !self.queue.is_empty() && wait < SHORT_WAIT;
        if self.eof || room == 0 || soon || self.faults.limit_left(self.read_total) == Some(0) {
            thread::sleep(wait.max(Duration::from_micros(1)));
            return Ok(());
        }
        self.set_read_timeout(wait)?;
        let mut src = self.src;
        match src.peek(&mut [0u8; 1]) {
            Ok(0) => return self.sender_ended(),
            Ok(_) => {}
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(self.failed(format!("read: {e}"))),
        }
        // Bytes are waiting. Decide with the faults as they are now.
        self.refresh();
        if self.faults.stall().is_some() {
            return Ok(()); // the loop's top stalls
        }
        let limit = self.faults.limit_left(self.read_total);
        let reset = self.faults.reset_left(self.read_total);
        if reset == Some(0) {
            if !self.queue.is_empty() {
                // The bytes before the reset point go first (a latency may
                // still hold some): they are owed to the receiver.
                thread::sleep(wait.max(Duration::from_micros(1)));
                return Ok(());
            }
            // The next byte is the one that resets: it stays unread, so the
            // close sends RST (see the `proxy` module docs on what std can do).
            return Err(Exit::Reset);
        }
        let mut want = room.min(READ_CHUNK);
        for budget in [limit, reset].into_iter().flatten() {
            want = want.min(usize::try_from(budget).unwrap_or(usize::MAX));
        }
        if want == 0 {
            return Ok(()); // a limit just reached: the loop's top closes
        }
        match src.read(&mut self.scratch[..want]) {
            Ok(0) => self.sender_ended(),
            Ok(n) => {
                self.read_total += n as u64;
                let arrived = Instant::now();
                let hold = self.faults.hold();
                // Never before the chunk read before it: TCP does not reorder.
                let due = (arrived + hold).max(self.last_due);
                self.last_due = due;
                self.queue.push_back(Held {
                    due,
                    bytes: self.scratch[..n].to_vec(),
                    sent: 0,
                });
                self.queued += n;
                if !hold.is_zero() {
                    self.conn.count(self.way, |c| c.delayed += 1);
                    self.conn.note(self.way, Step::Read, || {
                        format!("latency: {n} bytes held {hold:?}")
                    });
                }
                Ok(())
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(self.failed(format!("read: {e}"))),
        }
    }

    /// A read returned 0: the sender's FIN — or the other pump waking us to end.
    fn sender_ended(&mut self) -> Result<(), Exit> {
        if self.conn.is_ending() {
            return Err(Exit::Stopped);
        }
        self.eof = true;
        Ok(())
    }

    /// How long until the next write may go, at most [`POLL`] (and `POLL`
    /// with nothing to write). Zero when a write is due but the receiver's
    /// buffer is full: then the next [`write_due`](Pump::write_due) blocks,
    /// for at most `POLL`.
    fn wait(&self, now: Instant) -> Duration {
        match self.queue.front() {
            Some(front) => POLL.min(
                front
                    .due
                    .max(self.not_before)
                    .saturating_duration_since(now),
            ),
            None => POLL,
        }
    }

    /// Sets `src`'s read timeout to `wait`, rounded up to a millisecond so a
    /// steady wait does not cost a setsockopt per read.
    fn set_read_timeout(&mut self, wait: Duration) -> Result<(), Exit> {
        let millis = wait.as_micros().div_ceil(1_000).max(1);
        let wait = Duration::from_millis(u64::try_from(millis).unwrap_or(1));
        if wait != self.read_timeout {
            self.src
                .set_read_timeout(Some(wait))
                .map_err(|e| self.failed(format!("setsockopt SO_RCVTIMEO: {e}")))?;
            self.read_timeout = wait;
        }
        Ok(())
    }

    /// The sender ended its stream and every byte is written: wait out any
    /// slow close, then send our FIN (shutdown(SHUT_WR)) — the half-close,
    /// passed on. Bounded: the wait ends after the delay (at most
    /// [`MAX_DELAY`](super::MAX_DELAY)), when the fault goes, or at a stop.
    fn pass_on_eof(&mut self) -> Exit {
        let started = Instant::now();
        let mut held = false;
        loop {
            if self.stop_asked() {
                return Exit::Stopped;
            }
            self.refresh();
            let Some(delay) = self.faults.slow_close() else {
                break;
            };
            let now = Instant::now();
            let until = started + delay;
            if now >= until {
                break;
            }
            if !held {
                held = true;
                self.conn.count(self.way, |c| c.slow_closes += 1);
                self.conn.note(self.way, Step::Shutdown, || {
                    format!("slow close: FIN held {delay:?}")
                });
            }
            thread::sleep((until - now).clamp(MIN_WAIT, POLL));
        }
        match self.dst.shutdown(Shutdown::Write) {
            Ok(()) => {
                self.conn.count(self.way, |c| c.half_closes += 1);
                self.conn.note(self.way, Step::Shutdown, || {
                    "end of stream passed on (FIN)".to_string()
                });
                Exit::Eof
            }
            Err(e) => self.failed(format!("shutdown: {e}")),
        }
    }

    /// The exit for a failed read or write — unless the connection is already
    /// ending, in which case the failure is only the other pump's doing.
    fn failed(&self, why: String) -> Exit {
        if self.stop_asked() {
            Exit::Stopped
        } else {
            Exit::Failed(why)
        }
    }

    /// Acts on how the pump ended, and counts it.
    fn finish(self, exit: Exit) {
        let (conn, way) = (self.conn, self.way);
        match exit {
            Exit::Eof | Exit::Stopped => {}
            Exit::Limit => {
                if conn.end(GRACEFUL) {
                    conn.count(way, |c| c.limits += 1);
                    conn.note(way, Step::Close, || {
                        format!(
                            "limit data: {} bytes through; closing both ways",
                            self.read_total
                        )
                    });
                }
            }
            Exit::TimedOut => {
                if conn.end(GRACEFUL) {
                    conn.count(way, |c| c.timeouts += 1);
                    conn.note(way, Step::Close, || {
                        "timeout fault: closing both ways".to_string()
                    });
                }
            }
            Exit::Reset => {
                if conn.end(ABORT) {
                    conn.count(way, |c| c.resets += 1);
                    conn.note(way, Step::Close, || {
                        format!(
                            "reset peer: {} bytes through; closing with the sender's next bytes unread (RST)",
                            self.read_total
                        )
                    });
                }
            }
            Exit::Failed(why) => {
                conn.count(way, |c| c.errors += 1);
                if conn.end(ABORT) {
                    conn.note(way, Step::Close, || format!("{why}; closing both ways"));
                }
            }
        }
    }
}

/// How many bytes a bandwidth-paced write takes at most.
fn pace_step(rate: u64) -> usize {
    let step = (rate / PACE_STEPS_PER_SECOND).max(1);
    usize::try_from(step).unwrap_or(usize::MAX).min(READ_CHUNK)
}

/// How long `bytes` take at `rate` bytes per second.
fn pace_time(bytes: usize, rate: u64) -> Duration {
    let nanos = (bytes as u128 * 1_000_000_000) / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

// --- the faults one pump applies, with their state -------------------------------

/// Where a fault's random draws come from: same key, same draws.
#[derive(Debug, Clone, Copy)]
struct Key {
    seed: u64,
    connection: u64,
    way: Direction,
}

impl Key {
    /// A generator for the fault named `name`: the key and the name hashed
    /// (FNV-1a, 64 bits) into one seed, which
    /// [`Xoshiro256StarStar::from_seed`] spreads through SplitMix64.
    fn generator(&self, name: &str) -> Xoshiro256StarStar {
        const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
        let way = [u8::from(self.way == Direction::Downstream)];
        let mut hash = FNV_OFFSET;
        for byte in self
            .seed
            .to_le_bytes()
            .iter()
            .chain(&self.connection.to_le_bytes())
            .chain(&way)
            .chain(name.as_bytes())
        {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME);
        }
        Xoshiro256StarStar::from_seed(hash)
    }
}

/// One fault acting on one pump, and its state.
#[derive(Debug)]
struct Active {
    name: String,
    fault: Fault,
    /// When this pump first applied it (a timeout's `close_after` counts from here).
    since: Instant,
    rng: Xoshiro256StarStar,
    /// Slicer: bytes left in the piece being written (0: draw the next size).
    piece_left: usize,
}

/// The faults in force on one pump: a copy of the proxy's list, filtered to
/// this direction, each with its state. Pure: no I/O and no clock of its own,
/// so the decisions can be tested alone.
#[derive(Debug)]
struct InForce {
    /// The proxy's `faults_version` this copy was made from.
    version: u64,
    active: Vec<Active>,
}

impl InForce {
    fn new() -> InForce {
        // No version is u64::MAX in practice, so the first refresh loads the list.
        InForce {
            version: u64::MAX,
            active: Vec::new(),
        }
    }

    /// Takes the proxy's list as of `version`. A fault that is still there,
    /// unchanged, keeps its state; a new or changed one starts afresh at `now`.
    fn update(&mut self, version: u64, list: &[NamedFault], key: Key, now: Instant) {
        let mut old = std::mem::take(&mut self.active);
        for named in list.iter().filter(|f| f.direction.covers(key.way)) {
            let kept = old
                .iter()
                .position(|a| a.name == named.name && a.fault == named.fault)
                .map(|i| old.swap_remove(i));
            self.active.push(kept.unwrap_or_else(|| Active {
                name: named.name.clone(),
                fault: named.fault.clone(),
                since: now,
                rng: key.generator(&named.name),
                piece_left: 0,
            }));
        }
        self.version = version;
    }

    /// How long to hold the next chunk: the latencies' delays plus a jitter
    /// drawn from each (one draw per latency fault per chunk).
    fn hold(&mut self) -> Duration {
        let mut hold = Duration::ZERO;
        for a in &mut self.active {
            if let Fault::Latency { delay, jitter } = a.fault {
                let span = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
                // below(n + 1) so the jitter can reach its maximum.
                hold += delay + Duration::from_nanos(a.rng.below(span.saturating_add(1)));
            }
        }
        hold
    }

    /// The smallest of the numbers `pick` finds in the faults in force.
    fn least(&self, pick: impl Fn(&Fault) -> Option<u64>) -> Option<u64> {
        self.active.iter().filter_map(|a| pick(&a.fault)).min()
    }

    /// The lowest bandwidth in force, bytes per second.
    fn rate(&self) -> Option<u64> {
        self.least(|f| match *f {
            Fault::Bandwidth { bytes_per_second } => Some(bytes_per_second),
            _ => None,
        })
    }

    /// How many more bytes may be read before a limit-data fault is reached.
    fn limit_left(&self, read_total: u64) -> Option<u64> {
        self.least(|f| match *f {
            Fault::LimitData { bytes } => Some(bytes.saturating_sub(read_total)),
            _ => None,
        })
    }

    /// How many more bytes may be read before a reset-peer fault resets.
    fn reset_left(&self, read_total: u64) -> Option<u64> {
        self.least(|f| match *f {
            Fault::ResetPeer { after_bytes } => Some(after_bytes.saturating_sub(read_total)),
            _ => None,
        })
    }

    /// `Some` while a timeout fault stalls this direction, with the instant it
    /// closes the connection, if it ever does (the earliest of several).
    fn stall(&self) -> Option<Option<Instant>> {
        let mut stalled = None;
        for a in &self.active {
            if let Fault::Timeout { close_after } = a.fault {
                let close_at = close_after.and_then(|d| a.since.checked_add(d));
                stalled = Some(match (stalled.flatten(), close_at) {
                    (Some(x), Some(y)) => Some(std::cmp::min(x, y)),
                    (x, y) => x.or(y),
                });
            }
        }
        stalled
    }

    /// The first slicer in force: the one that cuts.
    fn slicer(&mut self) -> Option<&mut Active> {
        self.active
            .iter_mut()
            .find(|a| matches!(a.fault, Fault::Slicer { .. }))
    }

    /// With a slicer in force, how many of the `available` bytes the next
    /// write may take: what is left of the current piece, drawing the next
    /// piece's size (uniform in `min..=max`) when one starts.
    fn piece(&mut self, available: usize) -> Option<usize> {
        let a = self.slicer()?;
        let Fault::Slicer { min, max, .. } = a.fault else {
            return None;
        };
        if a.piece_left == 0 {
            let span = (max - min) as u64 + 1;
            a.piece_left = min + usize::try_from(a.rng.below(span)).unwrap_or(0);
        }
        Some(a.piece_left.min(available))
    }

    /// `written` bytes of the current piece went out; at the piece's end,
    /// the pause to take (uniform in `0..=pause`), else `None`.
    fn cut(&mut self, written: usize) -> Option<Duration> {
        let a = self.slicer()?;
        let Fault::Slicer { pause, .. } = a.fault else {
            return None;
        };
        a.piece_left = a.piece_left.saturating_sub(written);
        if a.piece_left > 0 {
            return None;
        }
        let span = u64::try_from(pause.as_nanos()).unwrap_or(u64::MAX);
        Some(Duration::from_nanos(a.rng.below(span.saturating_add(1))))
    }

    /// How long a FIN waits: the slow closes' delays, added up.
    fn slow_close(&self) -> Option<Duration> {
        self.active
            .iter()
            .filter_map(|a| match a.fault {
                Fault::SlowClose { delay } => Some(delay),
                _ => None,
            })
            .reduce(|x, y| x + y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(connection: u64) -> Key {
        Key {
            seed: 7,
            connection,
            way: Direction::Upstream,
        }
    }

    fn in_force(list: &[NamedFault], key: Key) -> InForce {
        let mut f = InForce::new();
        f.update(1, list, key, Instant::now());
        f
    }

    fn slicer(min: usize, max: usize) -> NamedFault {
        NamedFault::new(
            "slice",
            Direction::Both,
            Fault::Slicer {
                min,
                max,
                pause: Duration::from_millis(2),
            },
        )
    }

    /// Cuts `total` bytes, as the pump would with everything available at
    /// once: the piece lengths and the pauses.
    fn cuts(f: &mut InForce, total: usize) -> Vec<(usize, Duration)> {
        let mut left = total;
        let mut out = Vec::new();
        while left > 0 {
            let n = f.piece(left).unwrap();
            left -= n;
            let pause = f.cut(n).unwrap_or_default();
            out.push((n, pause));
        }
        out
    }

    #[test]
    fn the_same_key_cuts_the_same_stream_the_same_way() {
        let list = [slicer(1, 16)];
        let a = cuts(&mut in_force(&list, key(1)), 10_000);
        let b = cuts(&mut in_force(&list, key(1)), 10_000);
        assert_eq!(a, b);
        assert_ne!(a, cuts(&mut in_force(&list, key(2)), 10_000));
        assert!(
            a.iter()
                .all(|&(n, p)| (1..=16).contains(&n) && p <= Duration::from_millis(2))
        );
        assert_eq!(a.iter().map(|(n, _)| n).sum::<usize>(), 10_000);
    }

    #[test]
    fn a_piece_cut_short_by_what_is_available_continues_in_the_next_write() {
        let mut f = in_force(&[slicer(10, 10)], key(1));
        assert_eq!(f.piece(4), Some(4));
        assert_eq!(f.cut(4), None, "6 bytes of the piece are still to come");
        assert_eq!(f.piece(100), Some(6));
        assert!(f.cut(6).is_some(), "the piece ends: a pause");
    }

    #[test]
    fn latency_holds_delay_plus_at_most_jitter_and_each_fault_draws_apart() {
        let delay = Duration::from_millis(20);
        let jitter = Duration::from_millis(5);
        let latency = NamedFault::new("lat", Direction::Upstream, Fault::Latency { delay, jitter });
        let mut f = in_force(std::slice::from_ref(&latency), key(3));
        let holds: Vec<_> = (0..1_000).map(|_| f.hold()).collect();
        assert!(holds.iter().all(|h| *h >= delay && *h <= delay + jitter));
        assert!(holds.iter().any(|h| *h != holds[0]), "the jitter varies");
        // Adding a slicer does not shift the latency's draws.
        let mut g = in_force(&[latency, slicer(1, 4)], key(3));
        let _ = g.piece(100);
        let _ = g.cut(100);
        let again: Vec<_> = (0..1_000).map(|_| g.hold()).collect();
        assert_eq!(holds, again);
    }

    #[test]
    fn faults_of_one_kind_combine_as_documented() {
        let ms = Duration::from_millis;
        let list = [
            NamedFault::new(
                "a",
                Direction::Both,
                Fault::Latency {
                    delay: ms(10),
                    jitter: ms(0),
                },
            ),
            NamedFault::new(
                "b",
                Direction::Upstream,
                Fault::Latency {
                    delay: ms(5),
                    jitter: ms(0),
                },
            ),
            NamedFault::new(
                "c",
                Direction::Both,
                Fault::Bandwidth {
                    bytes_per_second: 900,
                },
            ),
            NamedFault::new(
                "d",
                Direction::Both,
                Fault::Bandwidth {
                    bytes_per_second: 100,
                },
            ),
            NamedFault::new("e", Direction::Both, Fault::LimitData { bytes: 50 }),
            NamedFault::new("f", Direction::Both, Fault::LimitData { bytes: 30 }),
            NamedFault::new("g", Direction::Both, Fault::SlowClose { delay: ms(1) }),
            NamedFault::new("h", Direction::Both, Fault::SlowClose { delay: ms(2) }),
            NamedFault::new(
                "i",
                Direction::Downstream,
                Fault::ResetPeer { after_bytes: 1 },
            ),
        ];
        let mut up = in_force(&list, key(1));
        assert_eq!(up.hold(), ms(15));
        assert_eq!(up.rate(), Some(100));
        assert_eq!(up.limit_left(20), Some(10));
        assert_eq!(up.limit_left(40), Some(0));
        assert_eq!(up.slow_close(), Some(ms(3)));
        assert_eq!(up.reset_left(0), None, "the reset is downstream only");
        let down = in_force(
            &list,
            Key {
                way: Direction::Downstream,
                ..key(1)
            },
        );
        assert_eq!(down.reset_left(0), Some(1));
        assert_eq!(down.stall(), None);
    }

    #[test]
    fn a_timeout_stalls_and_closes_at_the_earliest_deadline() {
        let start = Instant::now();
        let list = [
            NamedFault::new("t1", Direction::Both, Fault::Timeout { close_after: None }),
            NamedFault::new(
                "t2",
                Direction::Both,
                Fault::Timeout {
                    close_after: Some(Duration::from_secs(3)),
                },
            ),
        ];
        let mut f = InForce::new();
        f.update(1, &list, key(1), start);
        assert_eq!(f.stall(), Some(Some(start + Duration::from_secs(3))));
        f.update(2, &list[..1], key(1), start);
        assert_eq!(f.stall(), Some(None), "stalls, never closes");
        f.update(3, &[], key(1), start);
        assert_eq!(f.stall(), None);
    }

    #[test]
    fn an_unchanged_fault_keeps_its_state_and_a_changed_one_starts_afresh() {
        let start = Instant::now();
        let later = start + Duration::from_secs(1);
        let timeout = |secs| {
            NamedFault::new(
                "t",
                Direction::Both,
                Fault::Timeout {
                    close_after: Some(Duration::from_secs(secs)),
                },
            )
        };
        let mut f = InForce::new();
        f.update(1, &[timeout(5)], key(1), start);
        f.update(2, &[timeout(5), slicer(1, 2)], key(1), later);
        assert_eq!(f.stall(), Some(Some(start + Duration::from_secs(5))));
        f.update(3, &[timeout(6)], key(1), later);
        assert_eq!(f.stall(), Some(Some(later + Duration::from_secs(6))));
    }

    #[test]
    fn pacing_spreads_a_second_of_bytes_over_twenty_writes() {
        assert_eq!(pace_step(1_000), 50);
        assert_eq!(pace_step(1), 1);
        assert_eq!(pace_step(u64::MAX), READ_CHUNK);
        assert_eq!(pace_time(50, 1_000), Duration::from_millis(50));
        assert_eq!(pace_time(1, 3), Duration::from_nanos(333_333_333));
    }
}
