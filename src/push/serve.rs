//! The hub served over TCP, one kept connection per member, in the
//! [line protocol](super::line).
//!
//! The existing thread-per-connection server ([`Listening::serve`]) runs a
//! [`HubHandler`] on each connection's thread. A kept connection has two
//! directions that are busy independently — the client may send a command
//! while a hundred messages are on their way to it — and a blocking socket can
//! wait for only one thing at a time, so each member has two threads:
//!
//! - **The connection's own thread reads** the client's commands and acts on
//!   them: it owns the connection's life (the server joins it, catches its
//!   panics, and shuts its socket at the grace deadline), and reading is where
//!   the client's own ending shows: end of stream, reset, idle timeout. Before
//!   acting on a command it waits for room in the member's queue for the
//!   answer ([`Member::wait_for_room`]), so a client that sends faster than it
//!   reads is slowed down by TCP rather than cut loose for its own answers.
//! - **A writer thread** (`push-PORT-ID`, with a 64 KiB stack) takes the
//!   member's queue ([`Member::next`]) and writes it out, several messages per
//!   write when they are waiting. It is the only thread that writes to the
//!   socket, so lines never interleave: replies to commands go through the
//!   queue too ([`Member::reply`]), which also keeps them in order with what is
//!   pushed.
//!
//! Whichever side ends first tells the other:
//!
//! | what happened | who sees it | how the other side learns |
//! |---|---|---|
//! | `QUIT`, end of stream | reader | it leaves the hub; the writer flushes the queue, says `BYE`, half-closes |
//! | reset, idle timeout, line too long | reader | it leaves the hub; the writer says `BYE` (best-effort) |
//! | too slow, hub shutdown | the hub | the member's [`on_close`](Member::on_close) shuts the socket's reading side: the reader's `read()` returns 0; the writer sees the closed queue |
//! | a write fails (peer gone, write timeout) | writer | it leaves the hub and shuts the socket both ways: the reader's `read()` returns |
//!
//! Then the reader waits up to [`FAREWELL`] for the writer to finish; if the
//! writer is stuck in a write to a peer that does not read, the reader shuts
//! the socket under it, which ends the write at once, and joins it. So both
//! threads are always joined before the connection's thread returns.

use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::push::hub::{self, Hub, Leave, Member, Next};
use crate::push::line::{self, Command, MAX_LINE};
use crate::step::Step;
use crate::tcp::connection::{Connection, Timeouts};
use crate::tcp::framing::{FrameReader, Framing};
use crate::tcp::handlers::Handler;
use crate::tcp::serve::{self as tcp_serve, MAX_CONNECTIONS_CEILING, ServeConfig, Server};
use crate::tcp::server::Listening;

/// How long a member may be silent by default before it is told `BYE timed
/// out`. A subscriber that only listens sends nothing at all; five minutes
/// lets a person watch, and a `PING` now and then keeps a connection longer.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the reader waits for the writer to flush what a leaving member
/// still has queued and say `BYE`, before it shuts the socket under it.
pub const FAREWELL: Duration = Duration::from_secs(2);

/// The longest a `BYE` may wait to be written. A peer cut loose for not
/// reading will not take it; nobody should wait long to find that out.
const BYE_TIMEOUT: Duration = Duration::from_millis(250);

/// After a `BYE`, how long the server keeps reading (and discarding) what the
/// client still sends, and how much. Closing a socket with unread bytes makes
/// the kernel send RST, which can destroy the `BYE` before the client reads it.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 1 << 20;

/// Threads beyond the members': a connection over the hub's maximum needs a
/// thread too, briefly, to be told `BYE hub full` in the protocol's own words
/// rather than waiting in the server's queue.
pub const REFUSAL_THREADS: usize = 8;

// Two threads per member, plus the refusing ones, must fit under the
// server's ceiling (see `hub::MAX_MEMBERS_CEILING`).
const _: () = assert!(
    2 * (hub::MAX_MEMBERS_CEILING + REFUSAL_THREADS) <= MAX_CONNECTIONS_CEILING,
    "a full hub would start more threads than tcp::serve allows"
);

/// Writer threads only render short lines and call write(); 64 KiB is plenty
/// (a thread's default is 2 MiB of address space).
const WRITER_STACK: usize = 64 * 1024;

/// How much a writer gathers from the queue into one write: a few dozen
/// lines, so a burst costs a few system calls instead of one per line.
const BATCH_BYTES: usize = 16 * 1024;

/// How long a writer waits on an empty queue before looking again. Nothing
/// depends on it: leaving always wakes the writer at once.
const WRITER_WAIT: Duration = Duration::from_secs(60);

/// How long the server lets connections finish at shutdown, after the hub has
/// told every member `BYE`: the farewell, the linger, and a margin.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// The [`Handler`] that makes each connection a member of `hub`, speaking the
/// [line protocol](super::line). See the [module docs](self).
#[derive(Debug, Clone)]
pub struct HubHandler {
    hub: Hub,
}

impl HubHandler {
    /// A handler that joins every connection to `hub`.
    pub fn new(hub: Hub) -> HubHandler {
        HubHandler { hub }
    }
}

/// How a member's reading ended.
struct Ended {
    reason: Leave,
    /// The read error behind it, for the server's counts and trace.
    error: Option<Error>,
    /// Whether the client may still be sending: then we read what comes, for a
    /// moment, before closing (see [`LINGER`]).
    linger: bool,
}

impl Handler for HubHandler {
    fn handle(&self, conn: &mut Connection) -> Result<(), Error> {
        let member = match self.hub.join(&conn.peer_endpoint().to_string()) {
            Ok(member) => member,
            Err(e) => {
                let reason = match e.kind() {
                    ErrorKind::RefusedByServer(reason) => reason.clone(),
                    _ => e.summary(),
                };
                say_bye(conn, &reason);
                linger(conn);
                return Ok(());
            }
        };
        let writer = match Writer::start(conn, &member) {
            Ok(writer) => writer,
            Err(e) => {
                member.leave(Leave::Error(format!(
                    "the server could not start a writer: {}",
                    e.summary()
                )));
                return Err(e);
            }
        };
        let stream = conn.shared_stream();
        member.on_close(move |_| {
            // Wakes this connection's reader: its read() returns 0. The writing
            // side stays open for the writer's BYE.
            let _ = stream.shutdown(Shutdown::Read);
        });
        member.reply(&format!("HELLO {}", member.id()));
        let ended = read_commands(conn, &member);
        member.leave(ended.reason);
        writer.finish(conn);
        if ended.linger {
            linger(conn);
        }
        ended.error.map_or(Ok(()), Err)
    }
}

/// The reader: commands in, until the client or the hub ends it.
fn read_commands(conn: &mut Connection, member: &Member) -> Ended {
    // As long as the writer may take to write one batch: if the queue has no
    // room by then, the client is not reading.
    let room_wait = conn
        .stream()
        .write_timeout()
        .ok()
        .flatten()
        .unwrap_or(Duration::MAX);
    let mut lines = FrameReader::new(&mut *conn, Framing::Lines).with_max(MAX_LINE);
    loop {
        // Cut loose by the hub, or by the writer: whatever is still buffered
        // from the client is not acted on.
        if let Some(reason) = member.left() {
            return ended(reason, None, false);
        }
        let line = match lines.read_frame() {
            Ok(Some(line)) => line,
            Ok(None) => return ended(member.left().unwrap_or(Leave::Eof), None, false),
            Err(e) => {
                if let Some(reason) = member.left() {
                    return ended(reason, None, false);
                }
                return match e.kind() {
                    ErrorKind::FrameTooLarge { .. } => ended(
                        Leave::Error(format!("line longer than {MAX_LINE} bytes")),
                        Some(e),
                        true,
                    ),
                    ErrorKind::TruncatedFrame { .. } => ended(Leave::Eof, None, false),
                    ErrorKind::TimedOut => ended(Leave::Timeout, Some(e), true),
                    ErrorKind::ConnectionReset => ended(Leave::Reset, Some(e), false),
                    _ => {
                        let reason = Leave::Error(e.summary());
                        ended(reason, Some(e), false)
                    }
                };
            }
        };
        if act(member, &line, room_wait) == Acted::Quit {
            return ended(Leave::Quit, None, true);
        }
    }
}

/// What [`act`] did with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acted {
    /// Answered (or ignored, for an empty line); read the next.
    Done,
    /// The client said `QUIT`.
    Quit,
}

/// One command line from a member, acted on: the part of the protocol every
/// transport shares (the lines come from TCP here, from WebSocket messages in
/// [`super::websocket`]).
pub(crate) fn act(member: &Member, line: &[u8], room_wait: Duration) -> Acted {
    let command = Command::parse(line);
    // Every command but QUIT is answered, and a PUB from a subscriber
    // brings back its MSG too (see `Member::wait_for_room`).
    let places = match &command {
        Ok(None | Some(Command::Quit)) => 0,
        Ok(Some(Command::Pub(_))) => 2,
        _ => 1,
    };
    if places > 0 {
        member.wait_for_room(places, room_wait);
    }
    match command {
        Ok(None) => {}
        Ok(Some(Command::Sub)) => {
            member.subscribe("OK SUB");
        }
        Ok(Some(Command::Unsub)) => {
            member.unsubscribe("OK UNSUB");
        }
        Ok(Some(Command::Pub(text))) => {
            if let Some(seq) = member.publish(&text) {
                member.reply(&format!("OK PUB {seq}"));
            }
        }
        Ok(Some(Command::Ping(text))) if text.is_empty() => {
            member.reply("PONG");
        }
        Ok(Some(Command::Ping(text))) => {
            member.reply(&format!("PONG {text}"));
        }
        Ok(Some(Command::Help)) => {
            member.reply(line::HELP);
        }
        Ok(Some(Command::Quit)) => return Acted::Quit,
        Err(why) => {
            member.reply(&format!("ERR {why}"));
        }
    }
    Acted::Done
}

fn ended(reason: Leave, error: Option<Error>, linger: bool) -> Ended {
    Ended {
        reason,
        error,
        linger,
    }
}

/// A member's writer thread, and the means to wait for it with a limit.
struct Writer {
    thread: JoinHandle<()>,
    // Disconnected when the thread is done (its sender is dropped on return,
    // or on a panic's unwinding), so the reader can wait with a timeout.
    done: mpsc::Receiver<()>,
}

impl Writer {
    fn start(conn: &Connection, member: &Member) -> Result<Writer, Error> {
        let out = conn.try_clone()?;
        let member = member.clone();
        let (tell_done, done) = mpsc::channel::<()>();
        let name = format!("push-{}-{}", conn.local_addr().port(), member.id());
        let thread = thread::Builder::new()
            .name(name)
            .stack_size(WRITER_STACK)
            .spawn(move || {
                let _done = tell_done;
                write_pushes(out, &member);
            })
            .map_err(|e| Error::io(Step::Serve, e).at(conn.peer_endpoint()))?;
        Ok(Writer { thread, done })
    }

    /// Waits for the writer, up to [`FAREWELL`]; then ends its write by shutting
    /// the socket, and joins it. Called after the member has left, so the
    /// writer is on its way out: its queue is closed.
    fn finish(self, conn: &Connection) {
        if let Err(mpsc::RecvTimeoutError::Timeout) = self.done.recv_timeout(FAREWELL) {
            let _ = conn.stream().shutdown(Shutdown::Both);
        }
        // A panic in the writer has already been printed by the panic hook;
        // the member has left, so nothing more is owed to it.
        let _ = self.thread.join();
    }
}

/// The writer: the member's queue out to the socket, until the queue closes.
fn write_pushes(mut out: Connection, member: &Member) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    loop {
        let first = match member.next(WRITER_WAIT) {
            Next::Idle => continue,
            Next::Message(message) => message,
            Next::Closed(reason) => {
                say_bye(&mut out, &reason.to_string());
                return;
            }
        };
        batch.clear();
        line::render(&first, &mut batch);
        // A publish wakes every waiting writer at once. A writer that wrote
        // the one message it woke for would write one line per system call
        // and sleep again, a million times for a hundred members publishing
        // a hundred each (seen: 1.4 million context switches, 26 s of system
        // time). Giving the processor away once, when the queue runs dry, lets
        // the publishers running meanwhile add to this write; on an idle
        // machine the yield returns at once.
        let mut yielded = false;
        while batch.len() < BATCH_BYTES {
            match member.try_next() {
                Some(message) => line::render(&message, &mut batch),
                None if yielded => break,
                None => {
                    yielded = true;
                    thread::yield_now();
                }
            }
        }
        if let Err(e) = out.write_all(&batch) {
            let reason = match e.kind() {
                ErrorKind::TimedOut => Leave::Timeout,
                ErrorKind::ConnectionReset => Leave::Reset,
                _ => Leave::Error(e.summary()),
            };
            member.leave(reason);
            // Wakes the reader, whichever way it is blocked.
            let _ = out.stream().shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Writes `BYE reason` if the socket takes it soon, then half-closes.
fn say_bye(conn: &mut Connection, reason: &str) {
    let _ = conn.stream().set_write_timeout(Some(BYE_TIMEOUT));
    let mut bye = b"BYE ".to_vec();
    line::push_text(reason, &mut bye);
    bye.push(b'\n');
    let _ = conn.write_all(&bye);
    let _ = conn.shutdown_write();
}

/// Reads and throws away what the client still sends, briefly (see [`LINGER`]).
fn linger(conn: &mut Connection) {
    let brief = Timeouts {
        read: Some(LINGER),
        write: Some(BYE_TIMEOUT),
    };
    if conn.set_timeouts(brief).is_err() {
        return;
    }
    let until = Instant::now() + LINGER;
    let mut scratch = [0u8; 4096];
    let mut thrown = 0;
    while thrown < LINGER_BYTES && Instant::now() < until {
        match conn.read(&mut scratch) {
            Ok(n) if n > 0 => thrown += n,
            _ => return,
        }
    }
}

/// A hub served over TCP: the [`Server`] and the [`Hub`] it feeds, stopped
/// together. Dropping it shuts both down.
#[derive(Debug)]
pub struct PushServer {
    hub: Hub,
    server: Option<Server>,
}

/// What a [`PushServer`] did, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushStats {
    /// The hub's counts: members, messages, who left why.
    pub hub: hub::Stats,
    /// The TCP server's counts: connections, threads.
    pub server: tcp_serve::Stats,
}

/// Serves `hub` on `listening`, one member per connection, each connection
/// with `timeouts`: `read` is how long a member may send nothing
/// (`None`: forever; [`DEFAULT_IDLE_TIMEOUT`] is a sensible choice), `write`
/// how long one write may wait for a peer that does not read.
///
/// The server admits [`max_members`](hub::HubConfig::max_members) +
/// [`REFUSAL_THREADS`] connections at once, so the one over the limit is told
/// `BYE hub full (N members)` rather than left waiting; the waiting room set by
/// [`listen`](crate::tcp::server::Bound::listen) holds those beyond that.
///
/// # Examples
/// ```
/// use sockstep::push::{client::Client, hub::{Hub, HubConfig}, line::ServerLine, serve};
/// use sockstep::tcp::{server, Timeouts};
/// use sockstep::trace::Trace;
/// use std::time::Duration;
///
/// let listening = server::socket("127.0.0.1:0".parse().unwrap(), &Trace::off()).bind()?.listen(16);
/// let hub = Hub::new(HubConfig::default())?;
/// let push = serve::serve(listening, hub, Timeouts::default())?;
/// let second = Duration::from_secs(5);
/// let mut alice = Client::connect(push.local_addr(), second)?;
/// let mut bob = Client::connect(push.local_addr(), second)?;
/// bob.subscribe(second)?;
/// alice.publish("hello")?;
/// let line = bob.next_published(second)?;
/// assert_eq!(line, Some(ServerLine::Msg { seq: 1, from: alice.id(), text: "hello".into() }));
/// let stats = push.shutdown();
/// assert_eq!(stats.hub.left.shutdown, 2);
/// # Ok::<(), sockstep::Error>(())
/// ```
///
/// # Errors
/// As [`Listening::serve`].
pub fn serve(listening: Listening, hub: Hub, timeouts: Timeouts) -> Result<PushServer, Error> {
    let config = ServeConfig {
        max_connections: hub.config().max_members + REFUSAL_THREADS,
        timeouts,
        max_lifetime: None,
        grace: SHUTDOWN_GRACE,
        nodelay: true,
        ..ServeConfig::default()
    };
    let server = listening.serve(config, HubHandler::new(hub.clone()))?;
    Ok(PushServer {
        hub,
        server: Some(server),
    })
}

impl PushServer {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.server().local_addr()
    }

    /// The hub, to watch it, count it, or announce on it.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The TCP server underneath, for its counts.
    pub fn server(&self) -> &Server {
        // Present from `serve` until `stop`, which only `shutdown` and `drop` call.
        self.server
            .as_ref()
            .expect("a running PushServer has its server")
    }

    /// Stops serving: the hub first — every member is told
    /// `BYE server shutting down`, and its clock is joined — then the TCP
    /// server, which stops accepting, waits for the connections to finish and
    /// joins their threads (each of which has joined its writer).
    pub fn shutdown(mut self) -> PushStats {
        self.stop()
    }

    fn stop(&mut self) -> PushStats {
        self.hub.shutdown();
        let server = self.server.take().map(Server::shutdown).unwrap_or_default();
        // Read after the connections have finished, so every copy is accounted for.
        let hub = self.hub.stats();
        PushStats { hub, server }
    }
}

impl Drop for PushServer {
    fn drop(&mut self) {
        if self.server.is_some() {
            self.stop();
        }
    }
}
