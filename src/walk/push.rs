//! `sockstep walk push`: the kept socket on loopback — two clients connect once,
//! and messages flow both ways on those connections while every socket step and
//! every line is printed.
//!
//! `sockstep walk http` ends where the seed's HTTP ends: each request opens a
//! connection (or reuses a kept one), and the server speaks only when asked.
//! This walkthrough is the seed's other mode, socket communication (소켓 통신):
//!
//! 1. **The server**: socket → bind → listen, serving a [push hub](crate::push)
//!    whose clock ticks every [`TICK`].
//! 2. **alice and bob connect, once each**: socket → connect → the server's
//!    `HELLO`; then `SUB`.
//! 3. **Both ways, nobody reconnects**: alice publishes and bob's `read()`
//!    returns her message without his asking; bob publishes and alice receives.
//! 4. **The server speaks first**: nobody sends anything, and a `TICK` arrives.
//! 5. **Two endings**: alice sends `QUIT` (`BYE quit`, then both close); the
//!    server shuts down, and bob is told `BYE server shutting down`.
//!
//! The hub's own code notes no lines: its bytes show as the server's reads and
//! writes. The `message` lines are the walkthrough's two clients saying what
//! they send, and what they made of each line that arrived — an answer to
//! something they sent, or a push nobody asked for.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::endpoint::{Endpoint, Protocol};
use crate::error::{Error, ErrorKind};
use crate::push::client::{Client, Publisher};
use crate::push::hub::{Hub, HubConfig, HubEvent};
use crate::push::line::{Command, ServerLine};
use crate::push::serve::{self, DEFAULT_IDLE_TIMEOUT, PushServer, PushStats};
use crate::step::{Side, Step};
use crate::tcp::connection::{DEFAULT_TIMEOUT, Timeouts};
use crate::tcp::{client, server};
use crate::trace::{Event, Printer, Recorder, SocketId, Tee, Trace, Tracer};
use crate::walk::{SharedOut, WalkOptions};

/// How often the hub's clock pushes a `TICK`: often enough that one comes
/// within the walkthrough's second, rarely enough not to drown the other lines.
/// With `--slow`, four pauses, so the printout keeps up with the clock.
pub const TICK: Duration = Duration::from_millis(200);

/// How long the walkthrough waits for any one thing (a message to arrive, a
/// client to finish), plus [`PAUSES_PER_WAIT`] pauses under `--slow`. Loopback
/// takes well under a millisecond; this is room for a loaded machine.
const WAIT: Duration = Duration::from_secs(5);

/// Under `--slow`, every event on the way (a note, a write, the server's read,
/// its write, the client's read) pauses once; a wait allows this many.
const PAUSES_PER_WAIT: u32 = 40;

/// What alice and bob say to each other.
const ALICE_SAYS: &str = "hi bob, are you there?";
const BOB_SAYS: &str = "yes! same connection as before";

/// What the push walkthrough did.
#[derive(Debug, Clone)]
pub struct PushWalkReport {
    /// The trace of the run, sorted by time.
    pub events: Vec<Event>,
    /// What alice did and heard. She leaves with `QUIT`.
    pub alice: ClientReport,
    /// What bob did and heard. He stays until the server shuts down.
    pub bob: ClientReport,
    /// The hub's and the TCP server's counts at shutdown.
    pub server: PushStats,
}

impl PushWalkReport {
    /// Lines the server wrote that no client asked for: ticks, other people's
    /// messages, a `BYE` at shutdown.
    pub fn unasked(&self) -> usize {
        self.alice.unasked() + self.bob.unasked()
    }
}

/// One client of the walkthrough: its connections, and every line each way.
#[derive(Debug, Clone)]
pub struct ClientReport {
    /// `"alice"` or `"bob"`.
    pub name: &'static str,
    /// Its member number in the hub, from `HELLO`.
    pub member: u64,
    /// The client socket of each connection it opened, in the trace's numbering.
    pub sockets: Vec<SocketId>,
    /// The lines it sent, in order.
    pub sent: Vec<String>,
    /// The lines it received, in order.
    pub received: Vec<Received>,
    /// The read error that ended its listening, as a sentence, if it did not
    /// end with the server's close (end of stream).
    pub error: Option<String>,
}

impl ClientReport {
    /// Connections it opened.
    pub fn connections(&self) -> usize {
        self.sockets.len()
    }

    /// Lines it received without having asked for them.
    pub fn unasked(&self) -> usize {
        self.received.iter().filter(|r| r.unasked).count()
    }

    /// The reason in the last `BYE` it received, if any.
    pub fn bye(&self) -> Option<&str> {
        self.received.iter().rev().find_map(|r| match &r.line {
            ServerLine::Bye(reason) => Some(reason.as_str()),
            _ => None,
        })
    }
}

/// One line a client received, and whether it asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The line.
    pub line: ServerLine,
    /// `true` for a push: a `TICK` or `SYS`, another member's `MSG`, a `BYE`
    /// it did not `QUIT` for. `false` for an answer to what it sent (`HELLO`
    /// to its connect, `OK`, its own `MSG` back, `BYE quit`).
    pub unasked: bool,
}

/// Runs the push walkthrough, printing to `out`.
///
/// # Errors
/// Any step's error, for example if loopback is unavailable;
/// [`ErrorKind::InvalidInput`], naming the client and what it waited for, if
/// a line the walkthrough waits for does not come in time (or the connection
/// ends first).
pub fn run(options: &WalkOptions, out: Box<dyn Write + Send>) -> Result<PushWalkReport, Error> {
    let out = SharedOut::new(out);
    let recorder = Recorder::new();
    let printer = Printer::to(Box::new(out.clone())).pausing(options.pause);
    let tracers: Vec<Arc<dyn Tracer>> = vec![Arc::new(printer), recorder.clone()];
    let trace = Trace::to(Arc::new(Tee(tracers)));
    let wait = WAIT + options.pause * PAUSES_PER_WAIT;
    let tick = if options.pause.is_zero() {
        TICK
    } else {
        TICK.max(options.pause * 4)
    };

    out.line("sockstep walk push — one connection each, kept; both sides talk whenever they like");
    out.line("In 'walk http' every request opened a connection (or reused a kept one) and the");
    out.line("server spoke only when asked. Here two clients connect once, and the server");
    out.line("pushes to them. Socket steps print as in 'walk tcp'; 'message' lines are the");
    out.line("clients' own: each line they send, and what each line that arrived was.");
    out.line("A connection prints close() twice: its reading and writing threads each hold a");
    out.line("descriptor (dup) of the one socket, and it closes with the last.");
    out.line("");
    out.line(&format!(
        "== Server: 1 socket() → 2 bind() → 3 listen(); a hub whose clock ticks every {} ms ==",
        tick.as_millis()
    ));
    let hub = Hub::new(HubConfig {
        tick: Some(tick),
        ..HubConfig::default()
    })?;
    let said = out.clone();
    hub.watch(move |event| said.line(&hub_line(event)));
    let listening = server::socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &trace)
        .bind()?
        .listen(4);
    let timeouts = Timeouts {
        read: Some(DEFAULT_IDLE_TIMEOUT),
        write: Some(DEFAULT_TIMEOUT),
    };
    let push = serve::serve(listening, hub, timeouts)?;
    out.line(&format!(
        "   (a push hub at tcp://{}; each connection gets a reading and a writing thread)",
        push.local_addr()
    ));

    out.line("");
    out.line(
        "== alice: 1 socket() → 2 connect() → 3 connected; HELLO; then SUB — her only connect ==",
    );
    let mut alice = Person::join("alice", &push, &trace, wait)?;
    out.line("");
    out.line("== bob: the same — his only connect ==");
    let mut bob = Person::join("bob", &push, &trace, wait)?;

    out.line("");
    out.line("== alice publishes; bob's read() returns it without his asking ==");
    alice.send(&Command::Pub(ALICE_SAYS.into()))?;
    let from_alice = alice.member;
    bob.wait_for(
        "alice's message",
        wait,
        |line| matches!(line, ServerLine::Msg { from, .. } if *from == from_alice),
    )?;
    alice.wait_for(
        "OK PUB",
        wait,
        |line| matches!(line, ServerLine::Ok(what) if what.starts_with("PUB ")),
    )?;

    out.line("");
    out.line("== bob answers on the same connection; alice receives it, pushed ==");
    bob.send(&Command::Pub(BOB_SAYS.into()))?;
    let from_bob = bob.member;
    alice.wait_for(
        "bob's message",
        wait,
        |line| matches!(line, ServerLine::Msg { from, .. } if *from == from_bob),
    )?;
    bob.wait_for(
        "OK PUB",
        wait,
        |line| matches!(line, ServerLine::Ok(what) if what.starts_with("PUB ")),
    )?;

    out.line("");
    out.line("== Nobody sends anything: the server's clock pushes a TICK to both ==");
    // Sequence numbers count every publication, so a TICK numbered past this
    // one was published after this heading.
    let now = push.hub().stats().published;
    let fresh_tick = |line: &ServerLine| matches!(line, ServerLine::Tick { seq, .. } if *seq > now);
    alice.wait_for("a TICK", wait, fresh_tick)?;
    bob.wait_for("a TICK", wait, fresh_tick)?;

    out.line("");
    out.line("== alice leaves: QUIT → BYE quit → the server half-closes → both close() ==");
    alice.send(&Command::Quit)?;
    let alice = alice.finish(wait)?;
    wait_until_served(&push, 1, wait);

    out.line("");
    out.line("== The server shuts down: bob, who asked for nothing, is told BYE and closed ==");
    // Bob sends nothing more: only his reading thread keeps his socket now.
    bob.stop_sending();
    let server = push.shutdown();
    let bob = bob.finish(wait)?;

    let report = PushWalkReport {
        events: recorder.events(),
        alice,
        bob,
        server,
    };
    out.line("");
    out.line("== What it took ==");
    for client in [&report.alice, &report.bob] {
        out.line(&format!(
            "   {:<5}  {} connection{}, {} lines sent, {} received ({} of them pushed unasked)",
            client.name,
            client.connections(),
            if client.connections() == 1 { "" } else { "s" },
            client.sent.len(),
            client.received.len(),
            client.unasked()
        ));
    }
    out.line(&format!(
        "   the server wrote {} lines nobody asked for: ticks, the other's message, bob's BYE",
        report.unasked()
    ));
    let threads = &report.server.server;
    out.line(&format!(
        "   server: {} connections accepted; {} threads started, {} joined at shutdown",
        threads.accepted, threads.threads_started, threads.threads_joined
    ));
    out.line("   Over HTTP, each of those pushes would have needed the client to ask first.");
    Ok(report)
}

/// One client of the walkthrough while it runs: it sends from the walkthrough's
/// thread, and a thread of its own reads everything the server writes.
struct Person {
    name: &'static str,
    member: u64,
    socket: SocketId,
    voice: Voice,
    /// The sending half; `None` once the person sends nothing more, so that
    /// the reading thread alone holds the socket and closes it.
    publisher: Option<Publisher>,
    sent: Vec<String>,
    /// Each line the reading thread receives, for [`Person::wait_for`];
    /// disconnected when the thread is done.
    heard: Receiver<ServerLine>,
    listener: JoinHandle<Heard>,
}

/// What a client's reading thread collected.
struct Heard {
    received: Vec<Received>,
    error: Option<Error>,
}

impl Person {
    /// Connects once (client steps 1–3), reads `HELLO`, subscribes, and starts
    /// the thread that reads whatever comes next.
    fn join(
        name: &'static str,
        push: &PushServer,
        trace: &Trace,
        wait: Duration,
    ) -> Result<Person, Error> {
        let conn = client::socket(push.local_addr(), trace)
            .timeouts(Timeouts {
                read: Some(wait),
                write: Some(wait),
            })
            .connect(wait)?;
        let voice = Voice {
            name,
            socket: conn.id(),
            local: conn.local_addr(),
            peer: conn.peer_addr(),
            trace: trace.clone(),
        };
        let mut client = Client::over(conn, wait)?;
        let member = client.id();
        // `over` and `subscribe` read these two lines themselves; the thread
        // below reads the rest.
        let mut received = vec![voice.heard(ServerLine::Hello(member), member)];
        voice.note(format!("{name} sends: {}", Command::Sub));
        client.subscribe(wait)?;
        received.push(voice.heard(ServerLine::Ok("SUB".into()), member));

        let publisher = client.publisher();
        let (tell, heard) = mpsc::channel();
        let listening = voice.clone();
        let listener = thread::Builder::new()
            .name(format!("walk-push-{name}"))
            .spawn(move || listen(client, &listening, received, &tell, wait))
            .map_err(|e| Error::io(Step::Serve, e))?;
        Ok(Person {
            name,
            member,
            socket: voice.socket,
            voice,
            publisher: Some(publisher),
            sent: vec![Command::Sub.to_string()],
            heard,
            listener,
        })
    }

    /// Sends one command on the kept connection.
    fn send(&mut self, command: &Command) -> Result<(), Error> {
        let Some(publisher) = &self.publisher else {
            return Err(self.gave_up("sent a line after it stopped sending".into()));
        };
        let line = command.to_string();
        self.voice.note(format!("{} sends: {line}", self.name));
        publisher.send(command)?;
        self.sent.push(line);
        Ok(())
    }

    /// Waits up to `wait` until the reading thread receives a line that `wanted`
    /// accepts, passing over the others (they were printed as they came).
    fn wait_for(
        &mut self,
        what: &str,
        wait: Duration,
        wanted: impl Fn(&ServerLine) -> bool,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.heard.recv_timeout(left) {
                Ok(line) if wanted(&line) => return Ok(()),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.gave_up(format!("waited {wait:?} for {what} in vain")));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.gave_up(format!("the connection ended before {what}")));
                }
            }
        }
    }

    /// Lets go of the sending half: from now on the reading thread alone holds
    /// the socket, and its close() is the socket's last.
    fn stop_sending(&mut self) {
        self.publisher = None;
    }

    /// Sends nothing more, waits up to `wait` for the server to close the
    /// connection and the reading thread to close its end, and reports.
    fn finish(mut self, wait: Duration) -> Result<ClientReport, Error> {
        self.stop_sending();
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.heard.recv_timeout(left) {
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.gave_up(format!(
                        "the server did not close the connection within {wait:?}"
                    )));
                }
            }
        }
        // The thread has dropped its sender, so it is returning: this join is short.
        let panicked = self.gave_up("its reading thread panicked".into());
        let heard = self.listener.join().map_err(|_| panicked)?;
        Ok(ClientReport {
            name: self.name,
            member: self.member,
            sockets: vec![self.socket],
            sent: self.sent,
            received: heard.received,
            error: heard.error.map(|e| e.to_string()),
        })
    }

    fn gave_up(&self, why: String) -> Error {
        Error::new(
            Step::Message,
            ErrorKind::InvalidInput(format!("{}: {why}", self.name)),
        )
        .at(Endpoint::from_addr(Protocol::Tcp, self.voice.peer))
    }
}

/// A client's reading thread: every line the server writes, noted as it
/// arrives and passed to the walkthrough, until the server closes (or a read
/// fails, or nothing comes for `wait`). Returning drops the client: close().
fn listen(
    mut client: Client,
    voice: &Voice,
    mut received: Vec<Received>,
    tell: &Sender<ServerLine>,
    wait: Duration,
) -> Heard {
    let member = client.id();
    let error = loop {
        match client.next(wait) {
            Ok(Some(line)) => {
                let heard = voice.heard(line, member);
                // The walkthrough may have stopped listening; the line is kept anyway.
                let _ = tell.send(heard.line.clone());
                received.push(heard);
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    Heard { received, error }
}

/// What a client says in the trace: `message` events on its own socket.
#[derive(Clone)]
struct Voice {
    name: &'static str,
    socket: SocketId,
    local: SocketAddr,
    peer: SocketAddr,
    trace: Trace,
}

impl Voice {
    fn note(&self, detail: String) {
        self.trace.emit(|| {
            Event::new(self.socket, Side::Client, Step::Message, Protocol::Tcp)
                .local(self.local)
                .peer(self.peer)
                .detail(detail)
        });
    }

    /// Notes a line that arrived, saying whether this client asked for it.
    fn heard(&self, line: ServerLine, me: u64) -> Received {
        let name = self.name;
        let (unasked, why) = match &line {
            ServerLine::Hello(id) => (false, format!("the answer to connecting: member {id}")),
            ServerLine::Msg { from, .. } if *from == me => (
                false,
                format!("{name}'s own message, sent back: {name} is subscribed"),
            ),
            ServerLine::Msg { from, .. } => (
                true,
                format!("pushed: member {from}'s message; {name} asked for nothing"),
            ),
            ServerLine::Tick { .. } => (true, "pushed by the server's clock; nobody asked".into()),
            ServerLine::Sys { .. } => (true, "pushed by the server; nobody asked".into()),
            ServerLine::Bye(reason) if reason == "quit" => {
                (false, "the answer to QUIT; the server closes next".into())
            }
            ServerLine::Bye(_) => (
                true,
                format!("pushed: the server is closing; {name} did not ask"),
            ),
            ServerLine::Ok(what) => {
                let command = what.split(' ').next().unwrap_or_default();
                (false, format!("the answer to {name}'s {command}"))
            }
            ServerLine::Pong(_) => (false, format!("the answer to {name}'s PING")),
            ServerLine::Err(_) => (false, format!("the answer to a line {name} sent")),
            ServerLine::Other(_) => (false, "not a line of the protocol".into()),
        };
        self.note(format!("{} received: {line}  ({why})", self.name));
        Received { line, unasked }
    }
}

/// The hub's view of a member joining or leaving, as a line of the printout.
fn hub_line(event: &HubEvent) -> String {
    match event {
        HubEvent::Joined { id, name } => format!("   hub: member {id} joined ({name})"),
        HubEvent::Left { id, reason, .. } => format!("   hub: member {id} left: {reason}"),
        HubEvent::Refused { name, reason } => format!("   hub: refused {name}: {reason}"),
    }
}

/// Waits until the server has finished `n` connections, or `wait` has passed
/// (then the next part's lines only interleave a little with this one's end).
fn wait_until_served(push: &PushServer, n: u64, wait: Duration) {
    let deadline = Instant::now() + wait;
    while push.server().stats().served < n && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(2));
    }
}
