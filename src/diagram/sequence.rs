//! The diagram's model: lifelines, rows and arrows, built from a recorded trace.
//!
//! [`Sequence::from_events`] does all the deciding; the SVG and Mermaid
//! writers only draw what it decided. It works in five passes:
//!
//! 1. **Sockets.** Every [`SocketId`] in the trace becomes a [`Lifeline`]. A
//!    TCP socket with a `listen()` or an `accept()` is a listening socket; a TCP
//!    socket with both addresses is one end of a connection, and two ends whose
//!    addresses mirror each other (local L, peer P and local P, peer L) are the
//!    two ends of one connection.
//! 2. **Links.** What one socket's step did to another's, as [`Arrow`]s:
//!    bytes written on one end of a connection to the reads on the other end
//!    that took them; a datagram's `send_to()` to the `recv_from()` that
//!    received it; `connect()` to the `accept()` that took the connection off
//!    the queue; `accept()` to the socket it made; a `shutdown()`/`close()` to
//!    the read that saw end of stream.
//! 3. **Rows.** One row per event, in the order things happened. The trace's
//!    timestamps are taken when each call *returns*, on whichever thread made
//!    it, so a write can be stamped after the read that took its bytes. The
//!    rows are therefore the trace's order corrected just enough that every
//!    arrow points down: a stable topological sort that keeps each socket's
//!    own events in their recorded order too, unless two threads sharing one
//!    socket stamped them in an order the bytes contradict.
//! 4. **Lifeline order.** Left to right in order of first appearance, the two
//!    ends of a connection side by side, the server's end first.
//! 5. **Lives.** Each lifeline is drawn alive from its first row (for an
//!    accepted socket, the `accept()` that made it) to its last.
//!
//! # What an arrow between a write and a read means
//!
//! TCP carries a stream of bytes, not messages: one `write()` can arrive in
//! several `read()`s, and one `read()` can take the bytes of several writes.
//! The diagram draws what happened, byte for byte: the bytes each side wrote
//! are queued in order, each read takes its count from the front of the
//! queue, and there is one arrow for every (write, read) pair that shared
//! bytes, labelled with how many. A write that reached one read whole says
//! `6 B`; a part of a larger write says `4 of 6 B`. If the trace ends with
//! bytes written that the other end never read, they get an arrow that ends
//! in an open circle. A read the other end's writes cannot explain (its peer
//! is not in the trace) has no arrow.
//!
//! UDP keeps each datagram whole, so a `recv_from()` is matched to the oldest
//! datagram of the same size sent from its peer's address to its own (a
//! socket bound to the wildcard `0.0.0.0` matches any address with its port:
//! it sends from whichever of its host's addresses the route picks). A
//! datagram sent to a socket in the trace that never received it is drawn as
//! an arrow that ends in a cross: it never arrived.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;

use crate::endpoint::Protocol;
use crate::readable::grouped;
use crate::step::{Side, Step};
use crate::trace::{Event, SocketId};

/// A sequence diagram of one recorded trace.
///
/// ```
/// use sockstep::diagram::Sequence;
/// use sockstep::tcp::{client, server};
/// use sockstep::trace::Recorder;
/// use std::io::{Read, Write};
/// use std::time::Duration;
///
/// let recorder = Recorder::new();
/// let trace = recorder.trace();
/// let listening = server::socket("127.0.0.1:0".parse()?, &trace).bind()?.listen(1);
/// let mut conn = client::socket(listening.local_addr(), &trace).connect(Duration::from_secs(5))?;
/// let mut accepted = listening.accept()?;
/// conn.write_all(b"hello")?;
/// accepted.read_exact(&mut [0; 5])?;
///
/// let diagram = Sequence::from_events("hello", &recorder.events());
/// assert_eq!(diagram.lifelines.len(), 3); // listening, accepted, client
/// assert!(diagram.arrows.iter().any(|a| a.label == "5 B"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sequence {
    /// The heading drawn above the diagram.
    pub title: String,
    /// One per socket, left to right.
    pub lifelines: Vec<Lifeline>,
    /// One per event, top to bottom.
    pub rows: Vec<Row>,
    /// What one socket's step did to another's.
    pub arrows: Vec<Arrow>,
    /// Sentences drawn under the diagram: what it shows and how to read it.
    pub notes: Vec<String>,
    /// A sample of datagrams that went through a lossy link, drawn below the
    /// diagram (the UDP walkthrough's part 2, which is not traced).
    pub loss: Option<LossSample>,
}

/// One socket's column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifeline {
    /// The socket, as the trace numbers it.
    pub socket: SocketId,
    /// The side its first event names.
    pub side: Side,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// What the socket is for.
    pub role: Role,
    /// A name given by whoever drew the diagram ("alice"), if any.
    pub name: Option<String>,
    /// Its own address, once the trace showed one.
    pub local: Option<SocketAddr>,
    /// The other end's address: a TCP connection's peer, a connected UDP
    /// socket's default peer.
    pub peer: Option<SocketAddr>,
    /// The other end of its TCP connection, when the trace has it: always the
    /// lifeline beside this one.
    pub partner: Option<SocketId>,
    /// The row where its life starts: its first event, or for an accepted
    /// socket the `accept()` that made it.
    pub first_row: usize,
    /// The row of its last event.
    pub last_row: usize,
    /// Whether its last event is a `close()`.
    pub closed: bool,
}

/// What a socket is for, as the header of its lifeline says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A TCP server socket that listens and accepts: it never carries data.
    Listening,
    /// A socket `accept()` made for one client.
    Accepted,
    /// A TCP client socket.
    Client,
    /// A UDP socket (server or client: the same kind of socket).
    Datagram,
}

impl Role {
    /// The role in a few words, for a lifeline's header.
    pub fn describe(self, side: Side) -> &'static str {
        match (self, side) {
            (Role::Listening, _) => "listening socket",
            (Role::Accepted, _) => "accepted socket",
            (Role::Client, _) => "client socket",
            (Role::Datagram, Side::Server) => "UDP server socket",
            (Role::Datagram, Side::Client) => "UDP client socket",
        }
    }
}

/// One event, drawn on its socket's lifeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The event's index in the slice given to [`Sequence::from_events`].
    pub event: usize,
    /// The lifeline it is drawn on (an index into [`Sequence::lifelines`]).
    pub lifeline: usize,
    /// The socket.
    pub socket: SocketId,
    /// The side.
    pub side: Side,
    /// The step.
    pub step: Step,
    /// How it is drawn.
    pub mark: Mark,
    /// The short label of a box: the step, numbered as in the seed (`2 bind()`).
    pub label: String,
    /// Bytes moved, as the event says.
    pub bytes: Option<usize>,
    /// The event's own detail.
    pub detail: Option<String>,
    /// This socket's address at this event (the event's, or the socket's last known).
    pub local: Option<SocketAddr>,
    /// The other end's address at this event: the event's; for a send on a
    /// connected UDP socket, its default peer.
    pub peer: Option<SocketAddr>,
}

/// How a row is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A lifecycle step: a labelled box.
    Step,
    /// A write or `send_to()`: a dot arrows leave from.
    Send,
    /// A read or `recv_from()`: a dot arrows end at.
    Receive,
    /// A read that returned 0: end of stream.
    EndOfStream,
    /// `shutdown()`: a half-close.
    Shutdown,
    /// `close()`.
    Close,
    /// The server turned the client away.
    Refuse,
    /// Something the program said about the bytes (an HTTP message, a hub
    /// line), or about serving: a small marker, the words beside the diagram.
    Note,
}

/// An arrow from one row to another lifeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrow {
    /// The row it leaves from.
    pub from: usize,
    /// The row it ends at, when it ends at an event: `None` for
    /// [`Link::Accept`] (drawn level) and for what never arrived.
    pub to: Option<usize>,
    /// The lifeline it points at.
    pub toward: usize,
    /// What it stands for.
    pub link: Link,
    /// Bytes it carries, if any.
    pub bytes: Option<usize>,
    /// Its label: `6 B`, `4 of 6 B`, `SYN`, `FIN`.
    pub label: String,
}

/// What an arrow stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// TCP: bytes of a write, taken by a read on the other end.
    Bytes,
    /// TCP: bytes written that the other end never read before the trace ended.
    Unread,
    /// UDP: one datagram, from `send_to()` to the `recv_from()` that received it.
    Datagram,
    /// UDP: a datagram sent to a socket of the trace that never received it.
    Lost,
    /// `connect()`: the handshake, to the `accept()` that took it off the queue.
    Handshake,
    /// `accept()`: the listening socket hands out a new socket.
    Accept,
    /// The peer's `shutdown()` or `close()` (its FIN), to the read that saw end of stream.
    EndOfStream,
}

/// A sample of a lossy link's datagrams, for a trace that could not hold
/// them all (the UDP walkthrough's part 2 sends 1,000, untraced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossSample {
    /// The heading of this part of the picture.
    pub title: String,
    /// The three columns: sender, link, receiver.
    pub columns: [String; 3],
    /// The numbers sent, in sending order.
    pub sent: Vec<u32>,
    /// The numbers of `sent` that arrived, in arrival order, duplicates included.
    pub arrivals: Vec<u32>,
    /// Sentences under the sample: the whole run's counts.
    pub summary: Vec<String>,
}

impl LossSample {
    /// The numbers of the sample that never arrived, in sending order.
    pub fn lost(&self) -> Vec<u32> {
        self.sent
            .iter()
            .copied()
            .filter(|n| !self.arrivals.contains(n))
            .collect()
    }
}

impl Sequence {
    /// The diagram of `events`, headed `title`. Events may come in any order:
    /// they are put in the order they were recorded first (by timestamp).
    pub fn from_events(title: impl Into<String>, events: &[Event]) -> Sequence {
        let recorded = recorded_order(events);
        let sockets = survey(events, &recorded);
        let ends = endpoints(events, &recorded, &sockets);
        let pairs = pair_connections(&sockets);
        let mut links = Vec::new();
        link_bytes(events, &sockets, &ends, &pairs, &mut links);
        link_datagrams(events, &recorded, &sockets, &ends, &mut links);
        let accepted = link_accepts(events, &sockets, &mut links);
        link_end_of_stream(events, &recorded, &sockets, &pairs, &mut links);

        let order = causal_order(events, &recorded, &sockets, &links);
        let mut row_of = vec![0; events.len()];
        for (row, &event) in order.iter().enumerate() {
            row_of[event] = row;
        }
        let lifeline_order = arrange(&sockets, &pairs, &row_of);
        let mut column = HashMap::new();
        for (i, &s) in lifeline_order.iter().enumerate() {
            column.insert(sockets[s].id, i);
        }

        let mut partner = HashMap::new();
        for &(a, b) in &pairs {
            partner.insert(sockets[a].id, sockets[b].id);
            partner.insert(sockets[b].id, sockets[a].id);
        }
        let lifelines = lifeline_order
            .iter()
            .map(|&s| {
                let socket = &sockets[s];
                let rows = socket.events.iter().map(|&e| row_of[e]);
                let born = accepted.get(&socket.id).map(|&e| row_of[e]);
                let last = socket.events.iter().copied().max_by_key(|&e| row_of[e]);
                Lifeline {
                    socket: socket.id,
                    side: socket.side,
                    protocol: socket.protocol,
                    role: socket.role(),
                    name: None,
                    local: socket.local,
                    peer: socket.peer,
                    partner: partner.get(&socket.id).copied(),
                    first_row: rows.clone().chain(born).min().unwrap_or(0),
                    last_row: rows.max().unwrap_or(0),
                    closed: last.is_some_and(|e| events[e].step == Step::Close),
                }
            })
            .collect();

        let rows = order
            .iter()
            .map(|&e| {
                let event = &events[e];
                Row {
                    event: e,
                    lifeline: column[&event.socket],
                    socket: event.socket,
                    side: event.side,
                    step: event.step,
                    mark: mark(event),
                    label: label(event),
                    bytes: event.bytes,
                    detail: event.detail.clone(),
                    local: ends[e].0,
                    peer: ends[e].1,
                }
            })
            .collect();

        let arrows = links
            .into_iter()
            // Only a made-up, contradictory trace has these (see causal_order).
            .filter(|l| l.to.is_none_or(|to| row_of[to] > row_of[l.from]))
            .map(|l| Arrow {
                from: row_of[l.from],
                to: l.to.map(|e| row_of[e]),
                toward: column[&l.toward],
                link: l.link,
                bytes: l.bytes,
                label: l.label,
            })
            .collect();

        Sequence {
            title: title.into(),
            lifelines,
            rows,
            arrows,
            notes: Vec::new(),
            loss: None,
        }
    }

    /// Gives `socket`'s lifeline a name ("alice") for its header.
    pub fn name(mut self, socket: SocketId, name: &str) -> Sequence {
        for lifeline in &mut self.lifelines {
            if lifeline.socket == socket {
                lifeline.name = Some(name.to_string());
            }
        }
        self
    }

    /// Adds a sentence under the diagram.
    pub fn note(mut self, sentence: impl Into<String>) -> Sequence {
        self.notes.push(sentence.into());
        self
    }

    /// Adds a sample of a lossy link, drawn below the diagram.
    pub fn with_loss(mut self, sample: LossSample) -> Sequence {
        self.loss = Some(sample);
        self
    }

    /// The arrows that end at `row`.
    pub fn arrows_into(&self, row: usize) -> impl Iterator<Item = &Arrow> {
        self.arrows.iter().filter(move |a| a.to == Some(row))
    }
}

/// The seed's number and the step's name: `2 bind()`, or `close()` for a
/// step the seed does not number.
fn label(event: &Event) -> String {
    match event.step.seed_number(event.side) {
        Some(n) => format!("{n} {}", event.step.name()),
        None => event.step.name().to_string(),
    }
}

fn mark(event: &Event) -> Mark {
    match event.step {
        Step::Write | Step::SendTo => Mark::Send,
        Step::Read if event.bytes == Some(0) => Mark::EndOfStream,
        Step::Read | Step::RecvFrom => Mark::Receive,
        Step::Shutdown => Mark::Shutdown,
        Step::Close => Mark::Close,
        Step::Refuse => Mark::Refuse,
        Step::Message | Step::Serve => Mark::Note,
        _ => Mark::Step,
    }
}

/// Event indices sorted by timestamp; equal stamps keep their slice order.
fn recorded_order(events: &[Event]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| events[i].at);
    order
}

/// One socket as the trace shows it.
struct Socket {
    id: SocketId,
    side: Side,
    protocol: Protocol,
    listening: bool,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    /// Its events, in recorded order.
    events: Vec<usize>,
}

impl Socket {
    /// A TCP socket on the server's side that does not listen is one
    /// `accept()` made, whether or not the trace shows that `accept()`.
    fn role(&self) -> Role {
        match (self.protocol, self.listening, self.side) {
            (Protocol::Udp, _, _) => Role::Datagram,
            (Protocol::Tcp, true, _) => Role::Listening,
            (Protocol::Tcp, false, Side::Server) => Role::Accepted,
            (Protocol::Tcp, false, Side::Client) => Role::Client,
        }
    }

    /// A TCP socket that carries a connection, with both of its addresses known.
    fn connection(&self) -> Option<(SocketAddr, SocketAddr)> {
        match (self.protocol, self.listening, self.local, self.peer) {
            (Protocol::Tcp, false, Some(local), Some(peer)) => Some((local, peer)),
            _ => None,
        }
    }
}

/// The sockets of the trace, in order of first appearance.
fn survey(events: &[Event], recorded: &[usize]) -> Vec<Socket> {
    let mut sockets: Vec<Socket> = Vec::new();
    let mut index: HashMap<SocketId, usize> = HashMap::new();
    for &e in recorded {
        let event = &events[e];
        let s = *index.entry(event.socket).or_insert_with(|| {
            sockets.push(Socket {
                id: event.socket,
                side: event.side,
                protocol: event.protocol,
                listening: false,
                local: None,
                peer: None,
                events: Vec::new(),
            });
            sockets.len() - 1
        });
        let socket = &mut sockets[s];
        socket.events.push(e);
        // Only TCP listens; a made-up trace may say otherwise of a UDP socket.
        if matches!(event.step, Step::Listen | Step::Accept) && socket.protocol == Protocol::Tcp {
            socket.listening = true;
        }
        socket.local = socket.local.or(event.local);
        // An accept() names the client it took, not a peer of the listening
        // socket; a UDP socket's peer is the one connect() set, not whoever
        // last sent it a datagram.
        let names_peer = match event.protocol {
            Protocol::Tcp => event.step != Step::Accept,
            Protocol::Udp => event.step == Step::Connect,
        };
        if names_peer {
            socket.peer = socket.peer.or(event.peer);
        }
    }
    // A socket that listened never had a peer, whatever its events said first.
    for socket in &mut sockets {
        if socket.listening {
            socket.peer = None;
        }
    }
    sockets
}

/// Each event's (local, peer): the event's own, else what its socket had shown
/// by then — a connected UDP socket's `send()` names no peer, but has one.
fn endpoints(
    events: &[Event],
    recorded: &[usize],
    sockets: &[Socket],
) -> Vec<(Option<SocketAddr>, Option<SocketAddr>)> {
    let listening: BTreeSet<SocketId> = sockets
        .iter()
        .filter(|s| s.listening)
        .map(|s| s.id)
        .collect();
    let mut known: HashMap<SocketId, (Option<SocketAddr>, Option<SocketAddr>)> = HashMap::new();
    let mut ends = vec![(None, None); events.len()];
    for &e in recorded {
        let event = &events[e];
        let so_far = known.entry(event.socket).or_default();
        so_far.0 = event.local.or(so_far.0);
        let local = so_far.0;
        let peer = if listening.contains(&event.socket) {
            // A listening socket's accept() names the client it took.
            event.peer
        } else if event.protocol == Protocol::Udp && event.step != Step::Connect {
            // A datagram's peer is its own; only connect() sets the default.
            event.peer.or(so_far.1)
        } else {
            so_far.1 = event.peer.or(so_far.1);
            so_far.1
        };
        ends[e] = (local, peer);
    }
    ends
}

/// The two ends of each TCP connection in the trace, as indices into
/// `sockets`, paired first come first served: A (local L, peer P) with B
/// (local P, peer L). A socket whose other end is not in the trace stays
/// unpaired.
fn pair_connections(sockets: &[Socket]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    let mut taken = vec![false; sockets.len()];
    for a in 0..sockets.len() {
        let Some((local, peer)) = sockets[a].connection() else {
            continue;
        };
        if taken[a] {
            continue;
        }
        let mirror = (a + 1..sockets.len())
            .find(|&b| !taken[b] && sockets[b].connection() == Some((peer, local)));
        if let Some(b) = mirror {
            taken[a] = true;
            taken[b] = true;
            pairs.push((a, b));
        }
    }
    pairs
}

/// An arrow before its rows are known: event indices, a socket to point at.
struct Pending {
    from: usize,
    to: Option<usize>,
    toward: SocketId,
    link: Link,
    bytes: Option<usize>,
    label: String,
}

fn bytes_label(n: usize) -> String {
    format!("{} B", grouped(n as u64))
}

/// TCP: for each direction of each connection, queue the writer's bytes in
/// order and let each of the reader's reads take its count from the front.
fn link_bytes(
    events: &[Event],
    sockets: &[Socket],
    ends: &[(Option<SocketAddr>, Option<SocketAddr>)],
    pairs: &[(usize, usize)],
    links: &mut Vec<Pending>,
) {
    // A step of this connection: on its socket, with the connection's addresses
    // (a made-up trace can give one socket several).
    let on = |socket: &Socket, e: usize, step: Step| {
        let addresses = socket.connection().map(|(l, p)| (Some(l), Some(p)));
        events[e].step == step && Some(ends[e]) == addresses
    };
    for &(a, b) in pairs {
        for (writer, reader) in [(&sockets[a], &sockets[b]), (&sockets[b], &sockets[a])] {
            // (write event, its size, bytes of it not yet read)
            let mut queue: VecDeque<(usize, usize, usize)> = writer
                .events
                .iter()
                .filter(|&&e| on(writer, e, Step::Write))
                .filter_map(|&e| Some((e, events[e].bytes?, events[e].bytes?)))
                .filter(|&(_, n, _)| n > 0)
                .collect();
            for &read in &reader.events {
                if !on(reader, read, Step::Read) {
                    continue;
                }
                let mut wanted = events[read].bytes.unwrap_or(0);
                while wanted > 0 {
                    let Some(front) = queue.front_mut() else {
                        break;
                    };
                    let (write, size, left) = *front;
                    let taken = left.min(wanted);
                    links.push(Pending {
                        from: write,
                        to: Some(read),
                        toward: reader.id,
                        link: Link::Bytes,
                        bytes: Some(taken),
                        label: if taken == size {
                            bytes_label(taken)
                        } else {
                            format!("{} of {}", grouped(taken as u64), bytes_label(size))
                        },
                    });
                    wanted -= taken;
                    front.2 -= taken;
                    if front.2 == 0 {
                        queue.pop_front();
                    }
                }
            }
            for (write, _, left) in queue {
                links.push(Pending {
                    from: write,
                    to: None,
                    toward: reader.id,
                    link: Link::Unread,
                    bytes: Some(left),
                    label: format!("{} never read", bytes_label(left)),
                });
            }
        }
    }
}

/// UDP: each `recv_from()` takes the oldest datagram of its size sent from
/// its peer's address to its own; what is left was sent and never received.
fn link_datagrams(
    events: &[Event],
    recorded: &[usize],
    sockets: &[Socket],
    ends: &[(Option<SocketAddr>, Option<SocketAddr>)],
    links: &mut Vec<Pending>,
) {
    let udp = |e: usize| match (events[e].protocol, ends[e]) {
        (Protocol::Udp, (Some(local), Some(peer))) => Some((local, peer)),
        _ => None,
    };
    // Datagrams sent and not yet received, oldest first: (event, from, to, size).
    // All of them from the start: a receiver's thread (or process) can stamp
    // its recv_from() before the sender's thread stamps its send_to().
    let mut flying: Vec<(usize, SocketAddr, SocketAddr, usize)> = recorded
        .iter()
        .filter(|&&e| events[e].step == Step::SendTo)
        .filter_map(|&e| {
            let (local, peer) = udp(e)?;
            Some((e, local, peer, events[e].bytes?))
        })
        .collect();
    for &e in recorded {
        let Some((local, peer)) = udp(e).filter(|_| events[e].step == Step::RecvFrom) else {
            continue;
        };
        let received = events[e].bytes;
        // A datagram cut to fit the buffer reports no size: it is the oldest.
        let found = flying.iter().position(|&(_, from, to, size)| {
            same(from, peer) && same(to, local) && received.is_none_or(|n| n == size)
        });
        let Some(i) = found else { continue };
        let (send, _, _, size) = flying.remove(i);
        links.push(Pending {
            from: send,
            to: Some(e),
            toward: events[e].socket,
            link: Link::Datagram,
            bytes: Some(size),
            label: match received {
                Some(_) => bytes_label(size),
                None => format!("{}, cut", bytes_label(size)),
            },
        });
    }
    // Only a datagram sent to a socket the trace shows can be said to be lost:
    // one sent elsewhere may well have arrived where we cannot see.
    for (send, _, to, size) in flying {
        let receiver = sockets
            .iter()
            .find(|s| s.protocol == Protocol::Udp && s.local.is_some_and(|l| same(l, to)));
        if let Some(receiver) = receiver {
            links.push(Pending {
                from: send,
                to: None,
                toward: receiver.id,
                link: Link::Lost,
                bytes: Some(size),
                label: format!("{}, never received", bytes_label(size)),
            });
        }
    }
}

/// Whether two addresses name the same UDP endpoint: equal, or the same port
/// where one side bound the wildcard address (`0.0.0.0:4000` receives, and
/// sends as, any of its host's addresses on port 4000).
pub fn same(a: SocketAddr, b: SocketAddr) -> bool {
    a == b || (a.port() == b.port() && (a.ip().is_unspecified() || b.ip().is_unspecified()))
}

/// `accept()` → the socket it made, and the client's `connect()` → that
/// `accept()`. Returns each accepted socket's `accept()` event.
fn link_accepts(
    events: &[Event],
    sockets: &[Socket],
    links: &mut Vec<Pending>,
) -> HashMap<SocketId, usize> {
    let mut made = HashMap::new();
    let mut connected = BTreeSet::new();
    for listener in sockets.iter().filter(|s| s.listening) {
        for &accept in &listener.events {
            let event = &events[accept];
            let (Step::Accept, Some(local), Some(peer)) = (event.step, event.local, event.peer)
            else {
                continue;
            };
            let new = sockets.iter().find(|s| {
                !s.listening
                    && s.side == Side::Server
                    && s.id != listener.id
                    && !made.contains_key(&s.id)
                    && s.connection() == Some((local, peer))
            });
            if let Some(new) = new {
                made.insert(new.id, accept);
                links.push(Pending {
                    from: accept,
                    to: None,
                    toward: new.id,
                    link: Link::Accept,
                    bytes: None,
                    label: format!("new socket {}", new.id),
                });
            }
            let client = sockets.iter().find(|s| {
                !s.listening
                    && s.side == Side::Client
                    && !connected.contains(&s.id)
                    && s.connection() == Some((peer, local))
            });
            let connect = client.and_then(|c| {
                c.events
                    .iter()
                    .copied()
                    .find(|&e| events[e].step == Step::Connect)
                    .map(|e| (c.id, e))
            });
            if let Some((client, connect)) = connect {
                connected.insert(client);
                links.push(Pending {
                    from: connect,
                    to: Some(accept),
                    toward: listener.id,
                    link: Link::Handshake,
                    bytes: None,
                    label: "SYN".into(),
                });
            }
        }
    }
    made
}

/// A read that returned 0 saw the other end's FIN. `shutdown()` sends it at
/// once, so the other end's first `shutdown()` is the cause, however the two
/// threads' stamps fell. Without one, its first `close()` is, when stamped
/// before the read (`close()` is stamped before the descriptor goes). When
/// the trace shows neither (the end of stream came from something untraced,
/// such as this end's own `shutdown(SHUT_RD)`), there is no arrow.
fn link_end_of_stream(
    events: &[Event],
    recorded: &[usize],
    sockets: &[Socket],
    pairs: &[(usize, usize)],
    links: &mut Vec<Pending>,
) {
    let mut rank = vec![0; events.len()];
    for (r, &e) in recorded.iter().enumerate() {
        rank[e] = r;
    }
    for &(a, b) in pairs {
        for (reader, other) in [(&sockets[a], &sockets[b]), (&sockets[b], &sockets[a])] {
            let first = |step: Step| {
                other
                    .events
                    .iter()
                    .copied()
                    .find(|&e| events[e].step == step)
            };
            let eofs = reader
                .events
                .iter()
                .copied()
                .filter(|&e| events[e].step == Step::Read && events[e].bytes == Some(0));
            let (fin, eof) = match first(Step::Shutdown) {
                Some(shutdown) => (shutdown, eofs.min_by_key(|&e| rank[e])),
                None => match first(Step::Close) {
                    Some(close) => (
                        close,
                        eofs.filter(|&e| rank[e] > rank[close])
                            .min_by_key(|&e| rank[e]),
                    ),
                    None => continue,
                },
            };
            if let Some(eof) = eof {
                links.push(Pending {
                    from: fin,
                    to: Some(eof),
                    toward: reader.id,
                    link: Link::EndOfStream,
                    bytes: None,
                    label: "FIN".into(),
                });
            }
        }
    }
}

/// The rows' order: the recorded order, changed only where an arrow would
/// point up. A topological sort (Kahn's) that always takes the earliest
/// recorded event that is free to go, under two kinds of constraint:
///
/// - hard: an arrow that ends at an event starts above it (a read comes after
///   the write whose bytes it took; `accept()` after the `connect()` it took
///   off the queue, and before the first step of the socket it made);
/// - soft: a socket's events keep their recorded order.
///
/// Soft constraints give way where they contradict hard ones: where the two
/// kinds together make a cycle. That happens when two threads use one socket
/// (the push server reads on one and writes on another; so do its clients)
/// and one's stamp comes late: the server's read of the client's answer
/// stamped before its own write the client answered. `untangle` drops the
/// soft constraints that close such cycles. Hard ones cannot contradict each other
/// in a real run; if a made-up trace makes them, the earliest event caught
/// goes first and [`Sequence::from_events`] drops the arrows that would point up.
fn causal_order(
    events: &[Event],
    recorded: &[usize],
    sockets: &[Socket],
    links: &[Pending],
) -> Vec<usize> {
    let n = events.len();
    let mut rank = vec![0; n];
    for (r, &e) in recorded.iter().enumerate() {
        rank[e] = r;
    }
    let first_event: HashMap<SocketId, usize> = sockets
        .iter()
        .filter_map(|s| Some((s.id, *s.events.first()?)))
        .collect();
    let mut hard_edges = Vec::new();
    for link in links {
        match (link.to, link.link) {
            (Some(to), _) => hard_edges.push((link.from, to)),
            (None, Link::Accept) => {
                if let Some(&first) = first_event.get(&link.toward) {
                    hard_edges.push((link.from, first));
                }
            }
            (None, _) => {}
        }
    }
    let soft_edges: Vec<(usize, usize)> = sockets
        .iter()
        .flat_map(|s| s.events.windows(2).map(|pair| (pair[0], pair[1])))
        .collect();
    let soft_edges = untangle(events, &rank, &hard_edges, soft_edges);

    // after[a]: (b, hard) — b waits for a.
    let mut after: Vec<Vec<(usize, bool)>> = vec![Vec::new(); n];
    let mut hard = vec![0usize; n];
    let mut soft = vec![0usize; n];
    for (edges, is_hard) in [(&hard_edges, true), (&soft_edges, false)] {
        for &(a, b) in edges.iter().filter(|(a, b)| a != b) {
            after[a].push((b, is_hard));
            if is_hard {
                hard[b] += 1;
            } else {
                soft[b] += 1;
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<(usize, usize)>> = (0..n)
        .filter(|&e| hard[e] == 0 && soft[e] == 0)
        .map(|e| Reverse((rank[e], e)))
        .collect();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = match ready.pop() {
            Some(Reverse((_, e))) if placed[e] => continue,
            Some(Reverse((_, e))) => e,
            // Stuck on contradictory arrows (a made-up trace): the earliest
            // event no arrow holds back goes first, or else simply the earliest.
            None => {
                let unplaced = || recorded.iter().copied().filter(|&e| !placed[e]);
                let free = unplaced().find(|&e| hard[e] == 0);
                match free.or_else(|| unplaced().next()) {
                    Some(e) => e,
                    None => break,
                }
            }
        };
        placed[next] = true;
        order.push(next);
        for &(b, is_hard) in &after[next] {
            let count = if is_hard { &mut hard[b] } else { &mut soft[b] };
            *count = count.saturating_sub(1);
            if hard[b] == 0 && soft[b] == 0 && !placed[b] {
                ready.push(Reverse((rank[b], b)));
            }
        }
    }
    order
}

/// The soft constraints (a socket's recorded order) less those that close a
/// cycle with the others and the hard ones. Such a cycle means some event was
/// stamped late: its thread was paused between the call's return and the
/// stamp, long enough for the other end to answer. The latest stamped event
/// in the cycle is that one, so while a cycle is left, the soft constraint
/// into the latest stamped event of it goes, letting that event move up.
fn untangle(
    events: &[Event],
    rank: &[usize],
    hard: &[(usize, usize)],
    mut soft: Vec<(usize, usize)>,
) -> Vec<(usize, usize)> {
    // Each pass removes one constraint, so this ends.
    loop {
        let all: Vec<(usize, usize)> = hard.iter().chain(&soft).copied().collect();
        let component = components(events.len(), &all);
        let tangled = soft
            .iter()
            .enumerate()
            .filter(|&(_, &(a, b))| a != b && component[a] == component[b])
            .max_by_key(|&(_, &(_, b))| rank[b])
            .map(|(i, _)| i);
        match tangled {
            Some(i) => {
                soft.remove(i);
            }
            None => return soft,
        }
    }
}

/// The strongly connected components of a graph on `0..n` (Tarjan's, without
/// recursion): two nodes share a number exactly when each reaches the other.
fn components(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in edges {
        out[a].push(b);
    }
    let (mut index, mut low) = (vec![UNSEEN; n], vec![0; n]);
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut component = vec![UNSEEN; n];
    let (mut next_index, mut next_component) = (0, 0);
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        // (node, how many of its edges are done)
        let mut work = vec![(root, 0)];
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&(v, done)) = work.last() {
            if let Some(&w) = out[v].get(done) {
                if let Some(top) = work.last_mut() {
                    top.1 += 1;
                }
                if index[w] == UNSEEN {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component[w] = next_component;
                    if w == v {
                        break;
                    }
                }
                next_component += 1;
            }
        }
    }
    component
}

/// Lifelines left to right: in order of first appearance, the two ends of a
/// connection side by side with the server's end first.
fn arrange(sockets: &[Socket], pairs: &[(usize, usize)], row_of: &[usize]) -> Vec<usize> {
    let first_row = |s: usize| {
        sockets[s]
            .events
            .iter()
            .map(|&e| row_of[e])
            .min()
            .unwrap_or(0)
    };
    let mut partner = vec![None; sockets.len()];
    for &(a, b) in pairs {
        partner[a] = Some(b);
        partner[b] = Some(a);
    }
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (s, &partner) in partner.iter().enumerate() {
        match partner {
            Some(p) if p < s => continue, // already grouped with its partner
            Some(p) => {
                let mut pair = vec![s, p];
                pair.sort_by_key(|&x| (sockets[x].side == Side::Client, first_row(x)));
                groups.push((first_row(s).min(first_row(p)), pair));
            }
            None => groups.push((first_row(s), vec![s])),
        }
    }
    groups.sort_by_key(|(first, _)| *first);
    groups.into_iter().flat_map(|(_, g)| g).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn components_group_exactly_the_nodes_that_reach_each_other() {
        let c = components(5, &[(0, 1), (1, 2), (2, 0), (2, 3), (4, 4)]);
        assert!(c[0] == c[1] && c[1] == c[2]);
        assert!(c[3] != c[0] && c[4] != c[0] && c[3] != c[4]);
    }

    /// The push server reads on one thread and writes on another: its read
    /// of the client's answer can be stamped before its own write that the
    /// client answered. The rows still show the write, the client's read and
    /// answer, then the server's read — and the client's own order is kept.
    #[test]
    fn a_socket_with_two_threads_is_drawn_in_the_order_the_bytes_say() {
        let (server, client) = (
            "127.0.0.1:7000".parse().unwrap(),
            "127.0.0.1:5000".parse().unwrap(),
        );
        let start = Instant::now();
        let at = |us: u64| start + Duration::from_micros(us);
        let (s, c, tcp) = (SocketId(2), SocketId(3), Protocol::Tcp);
        let step = |socket, side, step, us, local, peer, n| Event {
            at: at(us),
            ..Event::new(socket, side, step, tcp)
                .local(local)
                .peer(peer)
                .bytes(n)
        };
        let events = vec![
            step(c, Side::Client, Step::Established, 0, client, server, 0),
            step(s, Side::Server, Step::Read, 10, server, client, 4), // stamped early
            step(c, Side::Client, Step::Read, 20, client, server, 8),
            step(c, Side::Client, Step::Write, 30, client, server, 4),
            step(s, Side::Server, Step::Write, 40, server, client, 8), // stamped late
        ];
        let sequence = Sequence::from_events("two threads", &events);
        let order: Vec<usize> = sequence.rows.iter().map(|r| r.event).collect();
        assert_eq!(order, [0, 4, 2, 3, 1]);

        // The other way round: the client's writing thread stamps its QUIT
        // after its reading thread has read the answer and closed.
        let events = vec![
            step(s, Side::Server, Step::Read, 10, server, client, 5),
            step(s, Side::Server, Step::Write, 20, server, client, 9),
            step(c, Side::Client, Step::Read, 30, client, server, 9),
            step(c, Side::Client, Step::Close, 40, client, server, 0),
            step(c, Side::Client, Step::Write, 50, client, server, 5), // stamped late
        ];
        let sequence = Sequence::from_events("two threads, late write", &events);
        let order: Vec<usize> = sequence.rows.iter().map(|r| r.event).collect();
        assert_eq!(order, [4, 0, 1, 2, 3]);
        assert!(
            sequence
                .arrows
                .iter()
                .all(|a| a.to.is_none_or(|to| to > a.from))
        );
    }
}
