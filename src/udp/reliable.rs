//! Reliability rebuilt: what TCP does for you, done by hand over UDP.
//!
//! # The idea
//!
//! UDP hands a datagram to the network and forgets it. On the way it may be
//! lost, arrive twice, or arrive after the one sent behind it, and the other
//! end may vanish without a word. TCP hides all of that behind one promise:
//! *every byte, once, in order, or an error*. This module earns the same
//! promise for whole messages, one mechanism per thing that can go wrong:
//!
//! | what goes wrong              | what repairs it                                                   |
//! |------------------------------|-------------------------------------------------------------------|
//! | a datagram is **lost**       | the receiver **acknowledges** (ACK) what it got; the sender keeps a **timer** per message and **retransmits** when it runs out |
//! | a datagram arrives **twice** | every message carries a **sequence number**; the receiver drops a number it already has |
//! | datagrams arrive **out of order** | the receiver holds early arrivals in a **receive buffer** until the gap before them is filled |
//! | a **fast sender** meets a **slow receiver** | a **sliding window**: at most `window` messages unacknowledged, and never past the free room the receiver **advertises** (flow control) |
//! | the **peer vanishes**        | a **give-up timeout**: so long without progress is [`ErrorKind::TimedOut`], never a hang |
//!
//! That is the overhead TCP charges: headers on every segment, a stream of
//! acknowledgements back, copies kept for retransmission, timers, and waiting
//! when the window is full. [`Stats`] counts it, so you can weigh it.
//!
//! A conversation with one loss, window 4:
//!
//! ```text
//!  ReliableSender                                  ReliableReceiver
//!   DATA 0 "socket" ──────────────────────────────►  have 0           recv() → "socket"
//!           ◄───────────────────────────────────── ACK cum=1
//!   DATA 1 "bind"   ───────────X  lost
//!   DATA 2 "listen" ──────────────────────────────►  have 0 . 2       hold 2: 1 is missing
//!           ◄───────────────────────────────────── ACK cum=1 sack=0b1  ("I lack 1; I hold 2")
//!   ... 1's timer runs out; 2 is acknowledged, so only 1 goes again ...
//!   DATA 1 "bind"   ──────────────────────────────►  have 0 1 2       recv() → "bind", "listen"
//!           ◄───────────────────────────────────── ACK cum=3
//!   FIN 3 ────────────────────────────────────────►  end at 3         recv() → None
//!           ◄───────────────────────────────────── ACK cum=4
//!   finish() → Ok(stats)                             close(): linger for a lost ACK
//! ```
//!
//! The sender's view of its sequence numbers is the sliding window:
//!
//! ```text
//!                 base                      base + window (here 6)
//!                  ↓                          ↓
//!   ...  2   3  │  4  [5]   6  │  7   8   9  │  10  11 ...
//!   acknowledged    in flight     may go now     must wait
//!
//!   [5]: selectively acknowledged, but 4 is still missing, so base stays at 4
//! ```
//!
//! `base` moves right as cumulative ACKs arrive. `send` blocks while the window
//! is full — or while the receiver's advertised room ends sooner — reading ACKs
//! and retransmitting meanwhile.
//!
//! # Selective repeat, not go-back-N
//!
//! There are two classic ways to retransmit. **Go-back-N**: the receiver keeps
//! nothing out of order and only says "I have everything below n"; when a timer
//! runs out the sender resends the whole window from n. Simple, but one loss
//! costs a window of retransmissions, and at the loss rates `udp::relay` lets
//! you dial in (10–50 %) most of the traffic becomes resends. **Selective
//! repeat**, chosen here: the receiver buffers early arrivals and says exactly
//! which it holds (a cumulative ACK plus a 64-bit *selective* ACK bitmap, like
//! TCP's SACK option, RFC 2018); every message has its own timer and only the
//! missing ones go again. It costs a receive buffer and a bitmap per ACK.
//!
//! # The wire format
//!
//! Three kinds of frame, each one UDP datagram, all numbers big-endian
//! (network byte order). The kind is an ASCII letter, so a hexdump of the
//! traffic reads `D…`, `A…`, `F…`.
//!
//! ```text
//! DATA  'D' | seq: u64 | len: u16 | payload (len bytes)          11 bytes + payload
//! ACK   'A' | cumulative: u64 | selective: u64 | window: u16     19 bytes
//! FIN   'F' | seq: u64                                            9 bytes
//! ```
//!
//! - `cumulative` is the first sequence number the receiver lacks: it holds
//!   every one below it. Bit `i` of `selective` says it also holds
//!   `cumulative + 1 + i`. `window` is how many sequence numbers from
//!   `cumulative` on it has room for.
//! - `len` repeats what UDP already knows, the datagram's size; it is there so
//!   that a datagram cut short or padded is refused instead of delivered.
//! - FIN takes a sequence number of its own, after the last message, so it is
//!   ordered, acknowledged and retransmitted exactly like data.
//!
//! [`encode`] and [`decode`] are pure functions over bytes; [`decode`] refuses
//! anything that is not exactly a frame, and a datagram it refuses is counted
//! ([`Stats::garbage`]) and dropped — never delivered.
//!
//! **Sequence numbers are 64 bits, so they never wrap.** At ten million
//! messages a second, 2⁶⁴ lasts 58,000 years. TCP's are 32 bits and count
//! bytes; at 10 Gbit/s they wrap every 3.4 seconds, which is why TCP compares
//! them modulo 2³² (RFC 1982) and stamps segments with timestamps to reject
//! old ones (PAWS, RFC 7323). Eight bytes instead of four buys all that away.
//!
//! **No checksum.** UDP already carries one over header and payload (mandatory
//! over IPv6; optional over IPv4, and Linux sends it unless told not to); a datagram that fails it
//! is dropped by the kernel and looks to us like a loss, which retransmission
//! repairs. It is the same 16-bit checksum TCP uses, so TCP would not do better.
//!
//! # Timers
//!
//! The retransmission timeout is fixed ([`Config::rto`]). TCP measures the
//! round-trip time and adapts (RFC 6298: a smoothed RTT plus four times its
//! variation, never below a minimum, doubled after each timeout; RTTs measured
//! on retransmitted segments are ignored, Karn's algorithm). That matters on
//! the Internet, where RTTs run from 1 ms to 1 s; on loopback and through a
//! relay a fixed timeout is predictable and makes the tests easy to reason
//! about. A timer that fires too early costs a duplicate, which the receiver
//! drops (and on a loaded machine, where a thread may wait milliseconds to run,
//! a whole window of them); one that fires too late costs only time.
//!
//! Why not measure anyway? The two halves of RFC 6298 come together. Karn's
//! rule (no sample from a message sent twice) needs the doubling: on a path
//! whose round trip is longer than the timeout, every message is sent twice,
//! no sample is ever taken, and only a timeout that doubles until it outlasts
//! the round trip gets one. And the doubling fights [`Config::give_up`]: tried
//! here, with the timeout doubling from 10 ms, the in-memory property test
//! with half the datagrams lost each way gave up within seconds (a message
//! lost nine times in a row had waited 5 s), where the fixed timeout delivers
//! every message. TCP lives with the same trade — it is why TCP collapses at
//! loss rates this channel rides through (`docs/udp.md`) — and pays for it
//! with minutes of retries where this channel's contract is seconds.
//!
//! Two things bound how long anything waits: [`Config::give_up`] (this long
//! with no progress in one blocking call is [`ErrorKind::TimedOut`]) and
//! [`Config::max_retransmissions`] per message. So a sender whose receiver is
//! gone, and a receiver whose sender is gone, both fail within `give_up`.
//!
//! # Ending: FIN, and lingering for the last ACK
//!
//! [`ReliableSender::finish`] sends FIN and waits until it and everything
//! before it is acknowledged. The receiver acknowledges the FIN, but that ACK
//! can be lost, and then the sender retransmits the FIN to a receiver that may
//! have gone away — and fails although everything arrived. Nobody can fix this
//! for certain (the two generals' problem); TCP makes it unlikely with
//! TIME_WAIT: the end that sent the last ACK stays around for a while to
//! acknowledge a retransmitted FIN again. [`ReliableReceiver::close`] does the
//! same: it keeps answering until the link has been quiet for [`Config::linger`].
//!
//! # Where this is not TCP
//!
//! - **Everything runs inside your calls.** TCP's kernel acknowledges and
//!   retransmits while your program sleeps. Here the receiver reads the network
//!   only inside [`ReliableReceiver::recv`] — which is also its flow control: a
//!   receiver that stops asking stops acknowledging, and the sender's window
//!   stays full. But a receiver that does not call `recv` for longer than the
//!   sender's `give_up` looks exactly like a vanished one. Likewise the sender
//!   retransmits only while it is blocked in `send` or `finish`.
//! - **No congestion control.** The window is fixed; TCP also keeps a
//!   congestion window that shrinks on loss, so that a congested network is not
//!   made worse. No fast retransmit, no delayed ACKs, no ACKs piggybacked on
//!   data (the channel is one-way), no keepalives.
//! - **No handshake.** Both ends start at sequence number 0, and the first
//!   message waits alone for its ACK, which brings the receiver's window.
//!   TCP's SYN exchange also picks random initial sequence numbers, so that
//!   stray segments of an old connection between the same ports are not taken
//!   for new data; two runs of this protocol on the same ports could mix.
//!
//! # Example
//!
//! Two UDP sockets on loopback, connected to each other; the sender on a thread:
//!
//! ```
//! use sockstep::udp::reliable::{Config, ReliableReceiver, ReliableSender};
//! use sockstep::udp::socket;
//! use sockstep::{Side, trace::Trace};
//!
//! let trace = Trace::off();
//! let a = socket::socket("127.0.0.1:0".parse()?, Side::Client, &trace).bind()?;
//! let b = socket::socket("127.0.0.1:0".parse()?, Side::Server, &trace).bind()?;
//! let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
//! let mut sender = ReliableSender::new(a.connect(b_addr)?, Config::default())?;
//! let mut receiver = ReliableReceiver::new(b.connect(a_addr)?, Config::default())?;
//!
//! let sending = std::thread::spawn(move || {
//!     for step in ["socket", "bind", "listen", "accept"] {
//!         sender.send(step.as_bytes())?;
//!     }
//!     sender.finish() // waits until everything is acknowledged
//! });
//! let mut got = Vec::new();
//! while let Some(message) = receiver.recv()? {
//!     got.push(String::from_utf8(message)?);
//! }
//! receiver.close();
//! let stats = sending.join().expect("the sender thread panicked")?;
//! assert_eq!(got, ["socket", "bind", "listen", "accept"]);
//! assert_eq!(stats.messages, 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::endpoint::{Endpoint, Protocol};
use crate::error::{Error, ErrorKind};
use crate::step::Step;
use crate::udp::socket::{Bound, Connected, max_payload};

// --- the wire format: pure functions over bytes ------------------------------

/// Frame kind of DATA: `'D'`.
const DATA: u8 = b'D';
/// Frame kind of ACK: `'A'`.
const ACK: u8 = b'A';
/// Frame kind of FIN: `'F'`.
const FIN: u8 = b'F';

/// Bytes in front of a DATA frame's payload: kind (1) + seq (8) + len (2).
pub const DATA_HEADER: usize = 1 + 8 + 2;
/// Size of an ACK frame: kind (1) + cumulative (8) + selective (8) + window (2).
pub const ACK_LEN: usize = 1 + 8 + 8 + 2;
/// Size of a FIN frame: kind (1) + seq (8).
pub const FIN_LEN: usize = 1 + 8;

/// The largest payload a DATA frame can describe: its length field is a `u16`.
/// It is larger than any UDP datagram can carry after the header, so in
/// practice [`ReliableSender::max_message`] is the limit.
pub const MAX_FRAME_PAYLOAD: usize = u16::MAX as usize;

/// The largest window, in messages: an ACK's selective bitmap is one `u64`, so
/// it can describe the 64 sequence numbers after `cumulative` — and with a
/// window of at most 64 the receiver never holds anything further out.
pub const MAX_WINDOW: usize = 64;

/// One frame of the protocol, as it travels in one UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A message, numbered.
    Data {
        /// Its sequence number: 0 for the first message, then 1, 2, …
        seq: u64,
        /// The message.
        payload: &'a [u8],
    },
    /// The receiver's report: what it holds and how much room it has.
    Ack {
        /// The first sequence number the receiver lacks; it holds all below.
        cumulative: u64,
        /// Bit `i` set: the receiver also holds `cumulative + 1 + i`.
        selective: u64,
        /// How many sequence numbers from `cumulative` on the receiver has room for.
        window: u16,
    },
    /// The end of the stream: no message has a sequence number `seq` or above.
    Fin {
        /// The sequence number after the last message's.
        seq: u64,
    },
}

/// The bytes of `frame` on the wire. No I/O.
///
/// ```
/// use sockstep::udp::reliable::{decode, encode, Frame};
///
/// let bytes = encode(&Frame::Data { seq: 1, payload: b"hi" })?;
/// assert_eq!(bytes, [b'D', 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, b'h', b'i']);
/// assert_eq!(decode(&bytes), Ok(Frame::Data { seq: 1, payload: b"hi" }));
/// # Ok::<(), sockstep::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::DatagramTooLarge`] for a payload over [`MAX_FRAME_PAYLOAD`]
/// bytes, which the length field cannot describe.
pub fn encode(frame: &Frame<'_>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    match *frame {
        Frame::Data { seq, payload } => {
            let len = u16::try_from(payload.len()).map_err(|_| {
                Error::new(
                    Step::Frame,
                    ErrorKind::DatagramTooLarge {
                        len: payload.len(),
                        max: MAX_FRAME_PAYLOAD,
                    },
                )
            })?;
            out.reserve(DATA_HEADER + payload.len());
            out.push(DATA);
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(payload);
        }
        Frame::Ack {
            cumulative,
            selective,
            window,
        } => {
            out.reserve(ACK_LEN);
            out.push(ACK);
            out.extend_from_slice(&cumulative.to_be_bytes());
            out.extend_from_slice(&selective.to_be_bytes());
            out.extend_from_slice(&window.to_be_bytes());
        }
        Frame::Fin { seq } => {
            out.reserve(FIN_LEN);
            out.push(FIN);
            out.extend_from_slice(&seq.to_be_bytes());
        }
    }
    Ok(out)
}

/// Reads one frame from a datagram. No I/O; never panics, whatever the bytes.
///
/// Only a datagram that is exactly a frame is accepted — the right kind
/// letter, the whole header, and for DATA exactly `len` payload bytes after
/// it, nothing more or less — so `encode(decode(bytes)) == bytes` for every
/// datagram it accepts.
///
/// ```
/// use sockstep::udp::reliable::{decode, DecodeError, Frame};
///
/// assert_eq!(decode(b"F\0\0\0\0\0\0\0\x07"), Ok(Frame::Fin { seq: 7 }));
/// assert_eq!(decode(b"hello"), Err(DecodeError::UnknownKind(b'h')));
/// ```
///
/// # Errors
/// A [`DecodeError`] saying why the datagram is not a frame.
pub fn decode(datagram: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let (&kind, rest) = datagram.split_first().ok_or(DecodeError::Empty)?;
    let too_short = |need| DecodeError::TooShort {
        kind,
        need,
        got: datagram.len(),
    };
    let exactly = |expected: usize| {
        if datagram.len() == expected {
            Ok(())
        } else {
            Err(DecodeError::WrongLength {
                expected,
                got: datagram.len(),
            })
        }
    };
    match kind {
        DATA => {
            let (seq, rest) = take_u64(rest).ok_or(too_short(DATA_HEADER))?;
            let (len, payload) = take_u16(rest).ok_or(too_short(DATA_HEADER))?;
            exactly(DATA_HEADER + usize::from(len))?;
            Ok(Frame::Data { seq, payload })
        }
        ACK => {
            let (cumulative, rest) = take_u64(rest).ok_or(too_short(ACK_LEN))?;
            let (selective, rest) = take_u64(rest).ok_or(too_short(ACK_LEN))?;
            let (window, _) = take_u16(rest).ok_or(too_short(ACK_LEN))?;
            exactly(ACK_LEN)?;
            Ok(Frame::Ack {
                cumulative,
                selective,
                window,
            })
        }
        FIN => {
            let (seq, _) = take_u64(rest).ok_or(too_short(FIN_LEN))?;
            exactly(FIN_LEN)?;
            Ok(Frame::Fin { seq })
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// A big-endian `u64` from the front of `bytes`, and the rest; `None` if too short.
fn take_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*head), rest))
}

/// A big-endian `u16` from the front of `bytes`, and the rest; `None` if too short.
fn take_u16(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<2>()?;
    Some((u16::from_be_bytes(*head), rest))
}

/// Why a datagram is not a frame.
///
/// This is not a sockstep [`Error`] because it never reaches a user of the
/// channel: like the kernel with a datagram whose UDP checksum is wrong, the
/// channel counts such a datagram ([`Stats::garbage`]) and drops it. Only
/// [`decode`] itself returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The datagram has no bytes at all.
    Empty,
    /// The first byte is not `'D'`, `'A'` or `'F'`.
    UnknownKind(u8),
    /// The datagram ends inside the header.
    TooShort {
        /// The kind letter.
        kind: u8,
        /// How long this kind's header is.
        need: usize,
        /// How long the datagram is.
        got: usize,
    },
    /// The datagram is longer or shorter than its header says it is.
    WrongLength {
        /// The length the header implies.
        expected: usize,
        /// The datagram's real length.
        got: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::Empty => write!(f, "an empty datagram is not a frame"),
            DecodeError::UnknownKind(kind) => {
                write!(
                    f,
                    "unknown frame kind 0x{kind:02x} (expected 'D', 'A' or 'F')"
                )
            }
            DecodeError::TooShort { kind, need, got } => write!(
                f,
                "a '{}' frame needs at least {need} bytes; the datagram has {got}",
                char::from(kind)
            ),
            DecodeError::WrongLength { expected, got } => write!(
                f,
                "the header describes a {expected}-byte frame; the datagram has {got} bytes"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

// --- the link: what carries the datagrams ------------------------------------

/// The shortest wait handed to a [`Link`]. A socket's read timeout cannot be
/// zero (SO_RCVTIMEO of zero means "wait forever", and ours refuses it), and
/// the kernel rounds a timeout up to its clock tick anyway.
const SHORTEST_WAIT: Duration = Duration::from_millis(1);

/// Whatever carries datagrams between the two ends: a connected UDP socket, or
/// an in-memory imitation of one that loses, duplicates and reorders on purpose.
///
/// The protocol asks only this of a link: send a datagram (maybe it arrives,
/// maybe not, maybe twice), and wait a bounded time for one. Keeping it this
/// small lets the same protocol code run over a real socket and over a seeded,
/// lossy link in tests.
///
/// # Examples
///
/// A perfect in-memory link made of two channels:
///
/// ```
/// use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
/// use std::time::Duration;
/// use sockstep::udp::reliable::{Config, Link, ReliableReceiver, ReliableSender};
/// use sockstep::{Error, ErrorKind, Step};
///
/// struct Pipe(Sender<Vec<u8>>, Receiver<Vec<u8>>);
///
/// impl Link for Pipe {
///     fn send(&mut self, datagram: &[u8]) -> Result<(), Error> {
///         let _ = self.0.send(datagram.to_vec()); // nobody there: lost, as in UDP
///         Ok(())
///     }
///     fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, Error> {
///         match self.1.recv_timeout(timeout) {
///             Ok(datagram) => {
///                 buf[..datagram.len()].copy_from_slice(&datagram);
///                 Ok(Some(datagram.len()))
///             }
///             Err(RecvTimeoutError::Timeout) => Ok(None),
///             Err(RecvTimeoutError::Disconnected) => {
///                 Err(Error::new(Step::RecvFrom, ErrorKind::ConnectionReset))
///             }
///         }
///     }
///     fn max_datagram(&self) -> usize {
///         1200
///     }
/// }
///
/// let (to_b, from_a) = channel();
/// let (to_a, from_b) = channel();
/// let mut sender = ReliableSender::new(Pipe(to_b, from_b), Config::default())?;
/// let mut receiver = ReliableReceiver::new(Pipe(to_a, from_a), Config::default())?;
/// let sending = std::thread::spawn(move || {
///     sender.send(b"over a pipe")?;
///     sender.finish()
/// });
/// assert_eq!(receiver.recv()?, Some(b"over a pipe".to_vec()));
/// assert_eq!(receiver.recv()?, None);
/// sending.join().unwrap()?;
/// receiver.close(); // ends at once: the sender's end of the pipe is gone
/// # Ok::<(), sockstep::Error>(())
/// ```
pub trait Link {
    /// Sends one datagram. `Ok` means it left, not that it will arrive.
    ///
    /// # Errors
    /// Only errors that make the link unusable. A datagram that is merely
    /// lost must be `Ok`: retransmission deals with losses.
    fn send(&mut self, datagram: &[u8]) -> Result<(), Error>;

    /// Waits up to `timeout` for one datagram and copies it into `buf`.
    /// `Ok(None)`: nothing arrived in time. Returning early with `Ok(None)` is
    /// allowed; the protocol keeps its own clock.
    ///
    /// The protocol hands over a `buf` one byte larger than
    /// [`max_datagram`](Link::max_datagram), so any datagram the link carries fits.
    ///
    /// # Errors
    /// Only errors that make the link unusable, as for [`Link::send`].
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, Error>;

    /// The largest datagram this link carries, in bytes.
    fn max_datagram(&self) -> usize;

    /// The other end, for error messages, if the link has an address.
    fn peer(&self) -> Option<Endpoint> {
        None
    }
}

/// A connected UDP socket is the real link: `send` is send(2) to the peer,
/// `recv` is recv(2) with SO_RCVTIMEO set to the timeout first.
///
/// Two errors of the socket are not errors of the link:
///
/// - **A read timeout** (the kernel says EAGAIN) is just "nothing arrived": `Ok(None)`.
/// - **ConnectionRefused.** When a datagram reaches a host where nothing is
///   bound to its port, that host answers with ICMP "port unreachable", and
///   Linux reports it on the *next* `send` or `recv` of a connected socket as
///   ECONNREFUSED. For this protocol that is one more lost datagram: the
///   receiver may simply not be up yet (it is started a moment after the
///   sender), or be restarting. So it is treated like a loss and left to
///   retransmission and the give-up timeout, which tell "not yet" from "gone".
impl Link for Connected {
    fn send(&mut self, datagram: &[u8]) -> Result<(), Error> {
        match Connected::send(self, datagram) {
            Err(e) if *e.kind() == ErrorKind::ConnectionRefused => Ok(()),
            other => other,
        }
    }

    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, Error> {
        self.set_read_timeout(Some(timeout.max(SHORTEST_WAIT)))?;
        match Connected::recv(self, buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if is_silence(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn max_datagram(&self) -> usize {
        max_payload(&self.peer_addr())
    }

    fn peer(&self) -> Option<Endpoint> {
        Some(Endpoint::from_addr(Protocol::Udp, self.peer_addr()))
    }
}

/// A receiving end on an unconnected socket that takes its peer from the first
/// datagram — UDP's nearest thing to `accept()` — and ignores anyone else.
///
/// Useful behind a relay, where the port the sender's datagrams come from is
/// the relay's and not known in advance. Until the first datagram arrives
/// there is nobody to answer, so a `send` before it is as good as lost.
#[derive(Debug)]
pub struct FirstPeer {
    socket: Bound,
    peer: Option<SocketAddr>,
}

impl FirstPeer {
    /// Wraps a bound socket; its peer is whoever sends first.
    pub fn new(socket: Bound) -> FirstPeer {
        FirstPeer { socket, peer: None }
    }

    /// The peer, once someone has sent.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }
}

impl Link for FirstPeer {
    fn send(&mut self, datagram: &[u8]) -> Result<(), Error> {
        match self.peer {
            Some(peer) => self.socket.send_to(datagram, peer),
            None => Ok(()),
        }
    }

    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, Error> {
        self.socket
            .set_read_timeout(Some(timeout.max(SHORTEST_WAIT)))?;
        match self.socket.recv_from(buf) {
            Ok((n, from)) if *self.peer.get_or_insert(from) == from => Ok(Some(n)),
            Ok(_) => Ok(None),
            Err(e) if is_silence(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn max_datagram(&self) -> usize {
        max_payload(&self.socket.local_addr())
    }

    fn peer(&self) -> Option<Endpoint> {
        self.peer.map(|p| Endpoint::from_addr(Protocol::Udp, p))
    }
}

/// Whether a receive error only means "no datagram came": the read timeout ran
/// out (the kernel's EAGAIN, which sockstep's errors call `TimedOut`), or an
/// ICMP "port unreachable" (see the `Link` impl for `Connected`).
fn is_silence(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::ConnectionRefused)
}

// --- configuration and counters -----------------------------------------------

/// The knobs of the protocol; both ends should use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Sender: how many messages may be unacknowledged at once. Receiver: how
    /// many messages it buffers (and so the most it advertises). 1 to
    /// [`MAX_WINDOW`]; 1 is stop-and-wait.
    pub window: usize,
    /// Retransmission timeout: how long an unacknowledged message waits before
    /// it is sent again. Fixed; see the [module docs](self#timers).
    pub rto: Duration,
    /// How long one blocking call may go without progress (a new
    /// acknowledgement for the sender, new data for the receiver) before it
    /// fails with [`ErrorKind::TimedOut`]. Twice that at most if datagrams keep
    /// arriving that bring nothing new.
    pub give_up: Duration,
    /// How many times one message may be retransmitted before the sender fails
    /// with [`ErrorKind::TimedOut`].
    pub max_retransmissions: u32,
    /// Receiver: after the end of the stream, how long [`ReliableReceiver::close`]
    /// keeps answering until the link has been quiet (TCP's TIME_WAIT).
    pub linger: Duration,
}

impl Default for Config {
    /// Window 16, RTO 200 ms, give up after 5 s, 15 retransmissions, linger 1 s.
    ///
    /// 16 messages keep loopback busy while a loss costs little. 200 ms is
    /// Linux TCP's smallest RTO; 15 retransmissions is Linux's `tcp_retries2`.
    /// A linger of 1 s outlasts four lost FINs in a row at that RTO.
    fn default() -> Config {
        Config {
            window: 16,
            rto: Duration::from_millis(200),
            give_up: Duration::from_secs(5),
            max_retransmissions: 15,
            linger: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// Checks that every knob is in range.
    fn check(&self) -> Result<(), Error> {
        let invalid = |why: String| Err(Error::new(Step::Socket, ErrorKind::InvalidInput(why)));
        if !(1..=MAX_WINDOW).contains(&self.window) {
            return invalid(format!(
                "a window of {} messages; it must be 1 to {MAX_WINDOW}",
                self.window
            ));
        }
        if self.rto.is_zero() || self.give_up.is_zero() {
            return invalid("a zero retransmission or give-up timeout".into());
        }
        Ok(())
    }
}

/// What one end did, counted: the cost of reliability.
///
/// Both ends keep the same counters; each fills in the ones that apply to it.
/// Bytes count only what this protocol puts in UDP payloads; the 28 bytes of
/// IPv4 and UDP header under every datagram come on top.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages accepted by `send` (sender) or handed out by `recv` (receiver).
    pub messages: u64,
    /// The payload bytes of those messages, each counted once.
    pub payload_bytes: u64,
    /// DATA and FIN frames sent for the first time.
    pub data_sent: u64,
    /// DATA and FIN frames sent again because their timer ran out.
    pub retransmissions: u64,
    /// ACK frames sent (receiver: one per DATA or FIN that arrived).
    pub acks_sent: u64,
    /// ACK frames received (sender).
    pub acks_received: u64,
    /// DATA or FIN frames that arrived again and were dropped (receiver).
    pub duplicates: u64,
    /// DATA frames dropped because the receive buffer had no room for them.
    pub out_of_window: u64,
    /// Datagrams that were not frames, or frames that made no sense here (an
    /// ACK acknowledging what was never sent, data after the end): dropped.
    pub garbage: u64,
    /// Bytes this end sent: frames, headers, retransmissions, ACKs.
    pub wire_bytes_sent: u64,
    /// Bytes this end received, garbage included.
    pub wire_bytes_received: u64,
}

impl Stats {
    /// Bytes on the wire (sent plus received) per payload byte: 1.0 would mean
    /// reliability was free. `None` before any payload byte has moved.
    pub fn overhead(&self) -> Option<f64> {
        (self.payload_bytes > 0).then(|| {
            (self.wire_bytes_sent + self.wire_bytes_received) as f64 / self.payload_bytes as f64
        })
    }
}

/// A [`ErrorKind::TimedOut`] that says why, naming the peer when known.
fn timed_out(step: Step, peer: Option<Endpoint>, why: String) -> Error {
    let e =
        Error::new(step, ErrorKind::TimedOut).with_io(io::Error::new(io::ErrorKind::TimedOut, why));
    match peer {
        Some(peer) => e.at(peer),
        None => e,
    }
}

// --- the sender ----------------------------------------------------------------

/// One message sent and not yet cumulatively acknowledged.
struct InFlight {
    /// The encoded frame, kept to be sent again as is.
    datagram: Vec<u8>,
    /// When to send it again if no acknowledgement has come.
    deadline: Instant,
    /// How many times it has been sent again.
    retransmissions: u32,
    /// The receiver said (selectively) that it holds it: no more retransmissions.
    acked: bool,
}

/// The sending end: numbers messages, keeps them until acknowledged,
/// retransmits on timeout, and never runs more than a window ahead.
pub struct ReliableSender<L: Link> {
    link: L,
    config: Config,
    /// The oldest unacknowledged sequence number: the window's left edge.
    base: u64,
    /// The messages from `base` on, in order: `in_flight[i]` is `base + i`.
    /// Its front is always unacknowledged (acknowledged ones leave at once),
    /// and it never holds more than `config.window`.
    in_flight: VecDeque<InFlight>,
    /// The receiver has room for sequence numbers below this (its advertised
    /// window's right edge). It only ever grows: the receiver's buffer frees
    /// slots, it never takes them back.
    peer_edge: u64,
    stats: Stats,
    /// Where ACKs are received.
    buf: Vec<u8>,
}

impl<L: Link> ReliableSender<L> {
    /// A sender over `link`. Sends nothing yet: there is no handshake.
    ///
    /// The first message does a handshake's other job: until its ACK says how
    /// much room the receiver has, nothing else is sent (TCP learns the window
    /// from the SYN-ACK).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when a [`Config`] value is out of range.
    pub fn new(link: L, config: Config) -> Result<ReliableSender<L>, Error> {
        config.check()?;
        let buf = receive_buffer(&link);
        Ok(ReliableSender {
            link,
            config,
            base: 0,
            in_flight: VecDeque::with_capacity(config.window),
            // No room known yet: only the probe rule of `has_room` lets the
            // first message go.
            peer_edge: 0,
            stats: Stats::default(),
            buf,
        })
    }

    /// The largest message [`send`](Self::send) takes: one datagram of the
    /// link minus the 11-byte DATA header (65,496 bytes over UDP/IPv4).
    pub fn max_message(&self) -> usize {
        (self.link.max_datagram().saturating_sub(DATA_HEADER)).min(MAX_FRAME_PAYLOAD)
    }

    /// Sends one message: waits for room in the window, then sends it as one
    /// DATA frame and keeps a copy until it is acknowledged.
    ///
    /// Returns as soon as the message is on its way; [`finish`](Self::finish)
    /// waits for the acknowledgements. While the window is full — or the
    /// receiver has advertised no more room, as before its first ACK — it
    /// blocks, reading ACKs and retransmitting whatever has waited longer than
    /// [`Config::rto`].
    ///
    /// # Errors
    /// - [`ErrorKind::DatagramTooLarge`] when `message` is over
    ///   [`max_message`](Self::max_message), before anything is sent.
    /// - [`ErrorKind::TimedOut`] when the window stayed full for
    ///   [`Config::give_up`] without progress, or a message went unacknowledged
    ///   through [`Config::max_retransmissions`]: the receiver is gone, or the
    ///   path drops everything.
    /// - Errors of the link, such as a failed send(2).
    ///
    /// After an error the channel's state is unknown; drop it.
    pub fn send(&mut self, message: &[u8]) -> Result<(), Error> {
        let max = self.max_message();
        if message.len() > max {
            let e = Error::new(
                Step::SendTo,
                ErrorKind::DatagramTooLarge {
                    len: message.len(),
                    max,
                },
            );
            return Err(match self.link.peer() {
                Some(peer) => e.at(peer),
                None => e,
            });
        }
        self.wait_until(Self::has_room)?;
        let seq = self.next_seq();
        self.transmit_new(encode(&Frame::Data {
            seq,
            payload: message,
        })?)?;
        self.stats.messages += 1;
        self.stats.payload_bytes += message.len() as u64;
        Ok(())
    }

    /// Ends the stream: sends FIN after the last message and waits until every
    /// message and the FIN are acknowledged. Returns what it cost.
    ///
    /// # Errors
    /// As for [`send`](Self::send): [`ErrorKind::TimedOut`] when the
    /// acknowledgements stop coming.
    pub fn finish(mut self) -> Result<Stats, Error> {
        self.wait_until(Self::has_room)?;
        let seq = self.next_seq();
        self.transmit_new(encode(&Frame::Fin { seq })?)?;
        self.wait_until(|s| s.in_flight.is_empty())?;
        Ok(self.stats)
    }

    /// What this sender has done so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The sequence number the next new frame gets.
    fn next_seq(&self) -> u64 {
        self.base + self.in_flight.len() as u64
    }

    /// Whether a new frame may go: fewer than `window` in flight, and within
    /// the receiver's advertised room. With nothing in flight one frame may
    /// always go, even past that room: it is the *window probe*. Without it, a
    /// receiver that advertised no room would have nothing to acknowledge and
    /// never tell us when room appears; the probe is retransmitted like any
    /// frame until the receiver takes it.
    fn has_room(&self) -> bool {
        let in_flight = self.in_flight.len();
        in_flight < self.config.window && (in_flight == 0 || self.next_seq() < self.peer_edge)
    }

    /// Sends a frame for the first time and starts its timer.
    fn transmit_new(&mut self, datagram: Vec<u8>) -> Result<(), Error> {
        self.link.send(&datagram)?;
        self.stats.data_sent += 1;
        self.stats.wire_bytes_sent += datagram.len() as u64;
        self.in_flight.push_back(InFlight {
            datagram,
            deadline: Instant::now() + self.config.rto,
            retransmissions: 0,
            acked: false,
        });
        Ok(())
    }

    /// Reads ACKs and retransmits until `done`, or gives up.
    ///
    /// The give-up clock starts at the call and restarts at every ACK that
    /// tells something new; time between calls, when nobody listens, does not
    /// count against the receiver.
    fn wait_until(&mut self, done: impl Fn(&Self) -> bool) -> Result<(), Error> {
        let mut progress_at = Instant::now();
        while !done(self) {
            let give_up_at = progress_at + self.config.give_up;
            // `done` is false, so something is in flight, and the front is unacknowledged.
            let next_timer = self
                .in_flight
                .iter()
                .filter(|m| !m.acked)
                .map(|m| m.deadline)
                .min()
                .unwrap_or(give_up_at);
            let wait = next_timer
                .min(give_up_at)
                .saturating_duration_since(Instant::now());
            // Both deadlines are checked only after the link has been read: a
            // thread that the OS kept from running past a deadline must first
            // see what arrived meanwhile, or it would give up on (or resend) a
            // message whose ACK is waiting in the socket.
            match self.link.recv(&mut self.buf, wait.max(SHORTEST_WAIT))? {
                Some(n) => {
                    if self.on_datagram(n) {
                        progress_at = Instant::now();
                    } else if Instant::now() >= give_up_at + self.config.give_up {
                        // A stream of datagrams that bring nothing new must not
                        // keep us here forever.
                        return Err(self.gave_up());
                    }
                }
                // Silence: now the deadlines mean what they say.
                None if Instant::now() >= give_up_at => return Err(self.gave_up()),
                None => self.retransmit_expired()?,
            }
        }
        Ok(())
    }

    /// The error when [`Config::give_up`] has passed without progress.
    fn gave_up(&self) -> Error {
        timed_out(
            Step::SendTo,
            self.link.peer(),
            format!(
                "no acknowledgement for {:?} with {} message(s) in flight; \
                 the receiver is gone or the path loses everything",
                self.config.give_up,
                self.in_flight.len()
            ),
        )
    }

    /// Handles one received datagram; true if it told us something new.
    fn on_datagram(&mut self, n: usize) -> bool {
        self.stats.wire_bytes_received += n as u64;
        match decode(&self.buf[..n]) {
            Ok(Frame::Ack {
                cumulative,
                selective,
                window,
            }) => {
                self.stats.acks_received += 1;
                self.on_ack(cumulative, selective, window)
            }
            _ => {
                self.stats.garbage += 1;
                false
            }
        }
    }

    /// Applies an ACK; true if it acknowledged something new or opened the window.
    ///
    /// ACKs may arrive late, twice, or out of order. Each only states facts
    /// that stay true ("I hold everything below c", "I hold s"), so applying an
    /// old one again is harmless.
    fn on_ack(&mut self, cumulative: u64, selective: u64, window: u16) -> bool {
        let next_seq = self.next_seq();
        if cumulative > next_seq {
            // Acknowledges what was never sent: not from our receiver.
            self.stats.garbage += 1;
            return false;
        }
        let mut progress = false;
        for bit in 0..u64::BITS {
            let seq = cumulative + 1 + u64::from(bit);
            if seq >= next_seq {
                break;
            }
            if selective & (1 << bit) != 0 && seq >= self.base {
                let message = &mut self.in_flight[(seq - self.base) as usize];
                progress |= !message.acked;
                message.acked = true;
            }
        }
        // Slide the window past everything the receiver holds: below
        // `cumulative`, and any selectively acknowledged run at the front.
        while self.base < cumulative || self.in_flight.front().is_some_and(|m| m.acked) {
            self.in_flight.pop_front();
            self.base += 1;
            progress = true;
        }
        let edge = cumulative.saturating_add(u64::from(window));
        if edge > self.peer_edge {
            self.peer_edge = edge;
            progress = true;
        }
        progress
    }

    /// Sends again every unacknowledged frame whose timer has run out.
    fn retransmit_expired(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        for (i, message) in self.in_flight.iter_mut().enumerate() {
            if message.acked || message.deadline > now {
                continue;
            }
            if message.retransmissions >= self.config.max_retransmissions {
                return Err(timed_out(
                    Step::SendTo,
                    self.link.peer(),
                    format!(
                        "message {} went unacknowledged through {} retransmissions, \
                         one every {:?}; the receiver is gone or the path loses everything",
                        self.base + i as u64,
                        message.retransmissions,
                        self.config.rto
                    ),
                ));
            }
            self.link.send(&message.datagram)?;
            message.retransmissions += 1;
            message.deadline = now + self.config.rto;
            self.stats.retransmissions += 1;
            self.stats.wire_bytes_sent += message.datagram.len() as u64;
        }
        Ok(())
    }
}

/// A buffer one byte larger than the largest datagram `link` carries. Over UDP
/// that means no datagram can be cut short (and our socket skips the copy it
/// makes to detect cutting).
fn receive_buffer(link: &impl Link) -> Vec<u8> {
    vec![0; link.max_datagram() + 1]
}

// --- the receiver ----------------------------------------------------------------

/// What one slot of the receive buffer holds.
enum Slot {
    /// A message, waiting to be handed out.
    Message(Vec<u8>),
    /// The FIN: the stream ends here.
    End,
}

/// The receiving end: acknowledges everything, drops duplicates, puts
/// messages back in order, and hands them out one by one.
pub struct ReliableReceiver<L: Link> {
    link: L,
    config: Config,
    /// The sequence number `recv` hands out next: the window's left edge.
    next_deliver: u64,
    /// The first sequence number not yet received: everything below it is in
    /// `buffer` or already handed out.
    cumulative: u64,
    /// Exactly `config.window` slots: `buffer[i]` is for sequence number
    /// `next_deliver + i`. A frame with no slot is out of the window and dropped.
    buffer: VecDeque<Option<Slot>>,
    /// The FIN's sequence number, once it has arrived.
    end: Option<u64>,
    /// `recv` has returned `None`.
    ended: bool,
    stats: Stats,
    /// Where datagrams are received.
    buf: Vec<u8>,
}

impl<L: Link> ReliableReceiver<L> {
    /// A receiver over `link`, expecting sequence number 0 first.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when a [`Config`] value is out of range.
    pub fn new(link: L, config: Config) -> Result<ReliableReceiver<L>, Error> {
        config.check()?;
        let buf = receive_buffer(&link);
        Ok(ReliableReceiver {
            link,
            config,
            next_deliver: 0,
            cumulative: 0,
            buffer: (0..config.window).map(|_| None).collect(),
            end: None,
            ended: false,
            stats: Stats::default(),
            buf,
        })
    }

    /// The next message, in the order they were sent, each exactly once;
    /// `None` once the sender has finished and every message has been handed out.
    ///
    /// If the next message has already arrived, returns it without touching the
    /// network. Otherwise reads datagrams — acknowledging each DATA and FIN,
    /// dropping duplicates, holding early arrivals — until it has arrived.
    /// After `None`, call [`close`](Self::close).
    ///
    /// # Errors
    /// - [`ErrorKind::TimedOut`] when no new data came for [`Config::give_up`]:
    ///   the sender is gone (or is silent for that long). Messages before the
    ///   gap have all been handed out, in order; nothing partial ever is.
    /// - Errors of the link.
    pub fn recv(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let mut progress_at = Instant::now();
        while !self.ended {
            if self.next_deliver < self.cumulative {
                return Ok(self.deliver());
            }
            let give_up_at = progress_at + self.config.give_up;
            let wait = give_up_at.saturating_duration_since(Instant::now());
            // As in the sender, the deadline is believed only after a read.
            match self.link.recv(&mut self.buf, wait.max(SHORTEST_WAIT))? {
                Some(n) => {
                    if self.on_datagram(n)? {
                        progress_at = Instant::now();
                    } else if Instant::now() >= give_up_at + self.config.give_up {
                        return Err(self.gave_up());
                    }
                }
                None if Instant::now() >= give_up_at => return Err(self.gave_up()),
                None => {}
            }
        }
        Ok(None)
    }

    /// Ends the conversation: if the FIN has arrived, keeps acknowledging
    /// retransmitted FINs until the link has been quiet for [`Config::linger`]
    /// (and never longer than `linger` + [`Config::give_up`] in all), then
    /// returns what it cost.
    ///
    /// Why: our ACK of the FIN may have been lost, and a sender that never sees
    /// one fails although everything arrived. TCP's TIME_WAIT is the same wait.
    /// If the FIN has not arrived, returns at once; the sender will time out.
    /// Errors of the link end the lingering early and are not reported: the
    /// stream is complete either way.
    pub fn close(mut self) -> Stats {
        if self.end.is_none() {
            return self.stats;
        }
        let give_up_at = Instant::now() + self.config.linger + self.config.give_up;
        let mut heard_at = Instant::now();
        while Instant::now() < give_up_at {
            let quiet_at = heard_at + self.config.linger;
            let wait = quiet_at.saturating_duration_since(Instant::now());
            match self.link.recv(&mut self.buf, wait.max(SHORTEST_WAIT)) {
                Ok(Some(n)) => {
                    if self.on_datagram(n).is_err() {
                        break;
                    }
                    heard_at = Instant::now();
                }
                // Quiet only counts once a read has found nothing.
                Ok(None) if Instant::now() >= quiet_at => break,
                Ok(None) => {}
                Err(_) => break,
            }
        }
        self.stats
    }

    /// The error when [`Config::give_up`] has passed without new data.
    fn gave_up(&self) -> Error {
        timed_out(
            Step::RecvFrom,
            self.link.peer(),
            format!(
                "no new data for {:?} while waiting for message {}; \
                 the sender is gone or the path loses everything",
                self.config.give_up, self.next_deliver
            ),
        )
    }

    /// What this receiver has done so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Hands out the front slot; the caller checked `next_deliver < cumulative`,
    /// so it is filled.
    fn deliver(&mut self) -> Option<Vec<u8>> {
        let slot = self
            .buffer
            .pop_front()
            .flatten()
            .expect("`take` moves `cumulative` only over filled slots");
        self.buffer.push_back(None);
        self.next_deliver += 1;
        match slot {
            Slot::Message(message) => {
                self.stats.messages += 1;
                self.stats.payload_bytes += message.len() as u64;
                Some(message)
            }
            Slot::End => {
                self.ended = true;
                None
            }
        }
    }

    /// Handles one received datagram: a DATA or FIN is taken or dropped, then
    /// acknowledged. True if it brought something new.
    fn on_datagram(&mut self, n: usize) -> Result<bool, Error> {
        self.stats.wire_bytes_received += n as u64;
        // The payload borrows the receive buffer while `take` needs all of
        // `self`: lend the buffer out for the moment.
        let buf = std::mem::take(&mut self.buf);
        let new = match decode(&buf[..n]) {
            Ok(Frame::Data { seq, payload }) => Some(self.take(seq, Some(payload))),
            Ok(Frame::Fin { seq }) => Some(self.take(seq, None)),
            Ok(Frame::Ack { .. }) | Err(_) => None,
        };
        self.buf = buf;
        match new {
            Some(new) => {
                self.send_ack()?;
                Ok(new)
            }
            None => {
                self.stats.garbage += 1;
                Ok(false)
            }
        }
    }

    /// Puts a DATA (`payload` is `Some`) or FIN into its slot; true if it was new.
    fn take(&mut self, seq: u64, payload: Option<&[u8]>) -> bool {
        if seq < self.cumulative {
            // We hold it or handed it out already: our ACK was probably lost,
            // and the ACK sent back for this duplicate repairs that.
            self.stats.duplicates += 1;
            return false;
        }
        let index = seq - self.next_deliver;
        if index >= self.buffer.len() as u64 {
            self.stats.out_of_window += 1;
            return false;
        }
        let index = index as usize;
        if self.buffer[index].is_some() {
            self.stats.duplicates += 1;
            return false;
        }
        // Nothing may follow the end, and the end cannot move: a frame that
        // says otherwise is not from a sender of this protocol.
        let contradicts_end = match payload {
            Some(_) => self.end.is_some_and(|end| seq > end),
            None => self.end.is_some() || self.buffer.range(index..).any(Option::is_some),
        };
        if contradicts_end {
            self.stats.garbage += 1;
            return false;
        }
        self.buffer[index] = Some(match payload {
            Some(payload) => Slot::Message(payload.to_vec()),
            None => {
                self.end = Some(seq);
                Slot::End
            }
        });
        while self
            .buffer
            .get((self.cumulative - self.next_deliver) as usize)
            .is_some_and(Option::is_some)
        {
            self.cumulative += 1;
        }
        true
    }

    /// Tells the sender what we hold and how much room is left.
    fn send_ack(&mut self) -> Result<(), Error> {
        // Slots after the first missing one (the one for `cumulative`).
        let first_missing = (self.cumulative - self.next_deliver) as usize;
        let mut selective = 0u64;
        for (bit, slot) in self.buffer.iter().skip(first_missing + 1).enumerate() {
            if slot.is_some() {
                selective |= 1 << bit;
            }
        }
        // Room from `cumulative` to the end of the buffer; at most MAX_WINDOW.
        let window = (self.buffer.len() - first_missing) as u16;
        let datagram = encode(&Frame::Ack {
            cumulative: self.cumulative,
            selective,
            window,
        })?;
        self.link.send(&datagram)?;
        self.stats.acks_sent += 1;
        self.stats.wire_bytes_sent += datagram.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    // --- wire format -----------------------------------------------------------

    #[test]
    fn data_encodes_as_kind_seq_len_payload_in_network_byte_order() {
        let bytes = encode(&Frame::Data {
            seq: 0x0102_0304_0506_0708,
            payload: b"abc",
        })
        .unwrap();
        assert_eq!(bytes, b"D\x01\x02\x03\x04\x05\x06\x07\x08\x00\x03abc");
        assert_eq!(bytes.len(), DATA_HEADER + 3);
    }

    #[test]
    fn ack_and_fin_encode_to_their_fixed_sizes() {
        let ack = encode(&Frame::Ack {
            cumulative: 5,
            selective: 0b101,
            window: 16,
        })
        .unwrap();
        assert_eq!(
            ack, b"A\0\0\0\0\0\0\0\x05\0\0\0\0\0\0\0\x05\0\x10",
            "{ack:?}"
        );
        assert_eq!(ack.len(), ACK_LEN);
        let fin = encode(&Frame::Fin { seq: 256 }).unwrap();
        assert_eq!(fin, b"F\0\0\0\0\0\0\x01\0");
        assert_eq!(fin.len(), FIN_LEN);
    }

    #[test]
    fn every_kind_round_trips() {
        let frames = [
            Frame::Data {
                seq: u64::MAX,
                payload: b"",
            },
            Frame::Data {
                seq: 0,
                payload: &[0; 1000],
            },
            Frame::Ack {
                cumulative: 1,
                selective: u64::MAX,
                window: u16::MAX,
            },
            Frame::Fin { seq: 42 },
        ];
        for frame in frames {
            assert_eq!(decode(&encode(&frame).unwrap()), Ok(frame));
        }
    }

    #[test]
    fn a_payload_the_length_field_cannot_describe_is_refused() {
        let big = vec![0; MAX_FRAME_PAYLOAD + 1];
        let e = encode(&Frame::Data {
            seq: 0,
            payload: &big,
        })
        .unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::DatagramTooLarge {
                len: MAX_FRAME_PAYLOAD + 1,
                max: MAX_FRAME_PAYLOAD
            }
        );
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        assert_eq!(decode(b""), Err(DecodeError::Empty));
        assert_eq!(
            decode(b"GET / HTTP/1.1"),
            Err(DecodeError::UnknownKind(b'G'))
        );
        assert_eq!(
            decode(b"D\0\0\0"),
            Err(DecodeError::TooShort {
                kind: b'D',
                need: DATA_HEADER,
                got: 4
            })
        );
        assert_eq!(
            decode(b"A\0\0\0\0\0\0\0\x01"),
            Err(DecodeError::TooShort {
                kind: b'A',
                need: ACK_LEN,
                got: 9
            })
        );
        // DATA announcing 5 bytes and carrying 3: cut short on the way.
        assert_eq!(
            decode(b"D\0\0\0\0\0\0\0\0\0\x05abc"),
            Err(DecodeError::WrongLength {
                expected: DATA_HEADER + 5,
                got: DATA_HEADER + 3
            })
        );
        // FIN with a byte after it.
        assert_eq!(
            decode(b"F\0\0\0\0\0\0\0\0!"),
            Err(DecodeError::WrongLength {
                expected: FIN_LEN,
                got: FIN_LEN + 1
            })
        );
        let text = DecodeError::UnknownKind(7).to_string();
        assert!(text.contains("0x07"), "{text}");
    }

    // --- a scripted link: datagrams in, datagrams out ---------------------------

    /// A link that hands out prepared datagrams, one per `recv`, then silence,
    /// and records what is sent.
    #[derive(Clone, Default)]
    struct Script {
        incoming: Rc<RefCell<VecDeque<Vec<u8>>>>,
        sent: Rc<RefCell<Vec<Vec<u8>>>>,
    }

    impl Script {
        fn push(&self, frame: Frame<'_>) {
            self.incoming
                .borrow_mut()
                .push_back(encode(&frame).unwrap());
        }

        fn sent_frames(&self) -> Vec<Vec<u8>> {
            self.sent.borrow().clone()
        }
    }

    impl Link for Script {
        fn send(&mut self, datagram: &[u8]) -> Result<(), Error> {
            self.sent.borrow_mut().push(datagram.to_vec());
            Ok(())
        }

        fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, Error> {
            match self.incoming.borrow_mut().pop_front() {
                Some(d) => {
                    buf[..d.len()].copy_from_slice(&d);
                    Ok(Some(d.len()))
                }
                None => {
                    std::thread::sleep(timeout);
                    Ok(None)
                }
            }
        }

        fn max_datagram(&self) -> usize {
            100
        }
    }

    fn fast(window: usize) -> Config {
        Config {
            window,
            rto: Duration::from_millis(5),
            give_up: Duration::from_millis(200),
            max_retransmissions: 3,
            linger: Duration::from_millis(20),
        }
    }

    fn data(seq: u64, payload: &[u8]) -> Frame<'_> {
        Frame::Data { seq, payload }
    }

    fn last_ack(script: &Script) -> Frame<'static> {
        let sent = script.sent_frames();
        let last = sent.last().expect("an ACK was sent");
        match decode(last).unwrap() {
            Frame::Ack {
                cumulative,
                selective,
                window,
            } => Frame::Ack {
                cumulative,
                selective,
                window,
            },
            other => panic!("expected an ACK, got {other:?}"),
        }
    }

    // --- the receiver ------------------------------------------------------------

    #[test]
    fn early_arrivals_wait_for_the_gap_and_come_out_in_order() {
        let script = Script::default();
        let mut rx = ReliableReceiver::new(script.clone(), fast(4)).unwrap();
        script.push(data(2, b"two"));
        script.push(data(1, b"one"));
        script.push(data(0, b"zero"));
        script.push(Frame::Fin { seq: 3 });
        assert_eq!(rx.recv().unwrap().as_deref(), Some(&b"zero"[..]));
        assert_eq!(rx.recv().unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(rx.recv().unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(rx.recv().unwrap(), None);
        assert_eq!(rx.recv().unwrap(), None, "None again, without waiting");
        assert_eq!(rx.stats().messages, 3);
    }

    #[test]
    fn the_ack_after_a_gap_says_what_is_held_and_how_much_room_is_left() {
        let script = Script::default();
        let mut rx = ReliableReceiver::new(script.clone(), fast(4)).unwrap();
        script.push(data(1, b"one"));
        script.push(data(3, b"three"));
        assert!(rx.recv().is_err(), "0 never comes: times out");
        assert_eq!(
            last_ack(&script),
            Frame::Ack {
                cumulative: 0,
                selective: 0b101, // 1 and 3 held, 2 missing
                window: 4,
            }
        );
    }

    #[test]
    fn a_duplicate_is_dropped_and_acknowledged_again() {
        let script = Script::default();
        let mut rx = ReliableReceiver::new(script.clone(), fast(4)).unwrap();
        script.push(data(0, b"once"));
        script.push(data(0, b"once"));
        script.push(Frame::Fin { seq: 1 });
        assert_eq!(rx.recv().unwrap().as_deref(), Some(&b"once"[..]));
        assert_eq!(rx.recv().unwrap(), None);
        assert_eq!(rx.stats().duplicates, 1);
        assert_eq!(
            rx.stats().acks_sent,
            3,
            "every DATA and FIN is acknowledged"
        );
    }

    #[test]
    fn data_beyond_the_window_is_dropped_and_the_room_advertised() {
        let script = Script::default();
        let mut rx = ReliableReceiver::new(script.clone(), fast(2)).unwrap();
        script.push(data(2, b"too far"));
        assert!(rx.recv().is_err());
        assert_eq!(rx.stats().out_of_window, 1);
        assert_eq!(
            last_ack(&script),
            Frame::Ack {
                cumulative: 0,
                selective: 0,
                window: 2
            }
        );
    }

    #[test]
    fn messages_waiting_to_be_taken_shrink_the_advertised_window() {
        let script = Script::default();
        let mut rx = ReliableReceiver::new(script.clone(), fast(4)).unwrap();
        script.push(data(1, b"b"));
        script.push(data(2, b"c"));
        script.push(data(0, b"a"));
        assert_eq!(rx.recv().unwrap().as_deref(), Some(&b"a"[..]));
        // At the moment of that ACK, 0..=2 were held and not yet taken.
        assert_eq!(
            last_ack(&script),
            Frame::Ack {
                cumulative: 3,
                selective: 0,
                window: 1
            }
        );
    }

    #[test]
    fn garbage_and_frames_that_contradict_the_end_are_never_delivered() {
        let script = Script::default();
        let mut rx = ReliableReceiver::new(script.clone(), fast(4)).unwrap();
        script.incoming.borrow_mut().push_back(b"noise".to_vec());
        script.push(Frame::Fin { seq: 1 });
        script.push(data(2, b"after the end"));
        script.push(Frame::Fin { seq: 3 });
        script.push(data(0, b"real"));
        assert_eq!(rx.recv().unwrap().as_deref(), Some(&b"real"[..]));
        assert_eq!(rx.recv().unwrap(), None);
        assert_eq!(rx.stats().garbage, 3);
    }

    #[test]
    fn a_silent_sender_is_timed_out_within_give_up() {
        let mut rx = ReliableReceiver::new(Script::default(), fast(4)).unwrap();
        let started = Instant::now();
        let e = rx.recv().unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(e.to_string().contains("no new data"), "{e}");
    }

    #[test]
    fn close_lingers_to_acknowledge_a_retransmitted_fin() {
        let script = Script::default();
        let mut rx = ReliableReceiver::new(script.clone(), fast(4)).unwrap();
        script.push(Frame::Fin { seq: 0 });
        assert_eq!(rx.recv().unwrap(), None);
        script.push(Frame::Fin { seq: 0 }); // our first ACK was lost
        let stats = rx.close();
        assert_eq!(stats.duplicates, 1);
        assert_eq!(stats.acks_sent, 2);
    }

    // --- the sender ----------------------------------------------------------------

    fn ack(cumulative: u64, selective: u64, window: u16) -> Frame<'static> {
        Frame::Ack {
            cumulative,
            selective,
            window,
        }
    }

    /// The sequence numbers of the frames among `datagrams`, FIN as `None`.
    fn seqs(datagrams: &[Vec<u8>]) -> Vec<Option<u64>> {
        datagrams
            .iter()
            .map(|d| match decode(d).unwrap() {
                Frame::Data { seq, .. } => Some(seq),
                Frame::Fin { .. } => None,
                other => panic!("the sender sent {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_message_over_one_datagram_is_refused_naming_the_limit_after_the_header() {
        let mut tx = ReliableSender::new(Script::default(), fast(4)).unwrap();
        let limit = 100 - DATA_HEADER;
        assert_eq!(tx.max_message(), limit);
        let e = tx.send(&[0; 100 - DATA_HEADER + 1]).unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::DatagramTooLarge {
                len: limit + 1,
                max: limit
            }
        );
        tx.send(&[0; 100 - DATA_HEADER]).unwrap();
    }

    #[test]
    fn a_config_out_of_range_is_refused() {
        for config in [
            Config {
                window: 0,
                ..fast(1)
            },
            Config {
                window: MAX_WINDOW + 1,
                ..fast(1)
            },
            Config {
                rto: Duration::ZERO,
                ..fast(1)
            },
        ] {
            let e = ReliableSender::new(Script::default(), config)
                .err()
                .expect("refused");
            assert!(matches!(e.kind(), ErrorKind::InvalidInput(_)), "{e}");
        }
    }

    #[test]
    fn the_first_message_waits_alone_for_the_receivers_window() {
        let script = Script::default();
        let mut tx = ReliableSender::new(script.clone(), fast(4)).unwrap();
        tx.send(b"a").unwrap();
        script.push(ack(1, 0, 4)); // room for 1, 2, 3 and 4
        tx.send(b"b").unwrap(); // reads that ACK first
        tx.send(b"c").unwrap();
        tx.send(b"d").unwrap();
        assert_eq!(seqs(&script.sent_frames()), [0, 1, 2, 3].map(Some));
        assert_eq!(tx.stats().acks_received, 1);
    }

    #[test]
    fn unanswered_messages_are_retransmitted_then_given_up() {
        let script = Script::default();
        let config = Config {
            give_up: Duration::from_secs(10),
            ..fast(2)
        };
        let mut tx = ReliableSender::new(script.clone(), config).unwrap();
        tx.send(b"a").unwrap();
        let started = Instant::now();
        let e = tx.send(b"b").unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::TimedOut);
        assert!(e.to_string().contains("3 retransmissions"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(tx.stats().retransmissions, 3);
        assert_eq!(seqs(&script.sent_frames()), [0, 0, 0, 0].map(Some));
    }

    #[test]
    fn without_progress_the_sender_gives_up_after_give_up() {
        let config = Config {
            max_retransmissions: u32::MAX,
            ..fast(2)
        };
        let mut tx = ReliableSender::new(Script::default(), config).unwrap();
        tx.send(b"a").unwrap();
        let started = Instant::now();
        let e = tx.send(b"b").unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::TimedOut);
        assert!(
            e.to_string().contains("no acknowledgement for 200ms"),
            "{e}"
        );
        assert!(started.elapsed() >= config.give_up);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_full_window_blocks_until_an_ack_slides_it() {
        let script = Script::default();
        let mut tx = ReliableSender::new(script.clone(), fast(2)).unwrap();
        tx.send(b"a").unwrap();
        script.push(ack(1, 0, 2));
        tx.send(b"b").unwrap();
        tx.send(b"c").unwrap(); // 1 and 2 in flight: full
        script.push(ack(2, 0, 2));
        tx.send(b"d").unwrap(); // waited for that ACK
        assert_eq!(seqs(&script.sent_frames()), [0, 1, 2, 3].map(Some));
        assert_eq!(tx.stats().acks_received, 2);
        assert_eq!(tx.stats().retransmissions, 0);
    }

    #[test]
    fn only_the_unacknowledged_message_is_retransmitted() {
        let script = Script::default();
        let mut tx = ReliableSender::new(script.clone(), fast(3)).unwrap();
        tx.send(b"a").unwrap();
        script.push(ack(1, 0, 3));
        tx.send(b"b").unwrap();
        tx.send(b"c").unwrap();
        // The receiver holds 2; 1 is missing.
        script.push(ack(1, 0b1, 3));
        // No further ACK comes: finish retransmits until it gives up.
        assert!(tx.finish().is_err());
        let sent = seqs(&script.sent_frames());
        assert_eq!(sent[..4], [Some(0), Some(1), Some(2), None]);
        let resent = &sent[4..];
        assert_eq!(resent.iter().filter(|s| **s == Some(1)).count(), 3);
        assert_eq!(resent.iter().filter(|s| s.is_none()).count(), 3, "the FIN");
        assert!(
            !resent.contains(&Some(0)) && !resent.contains(&Some(2)),
            "never what the receiver holds: {resent:?}"
        );
    }

    #[test]
    fn an_ack_for_what_was_never_sent_is_ignored() {
        let script = Script::default();
        let mut tx = ReliableSender::new(script.clone(), fast(1)).unwrap();
        tx.send(b"a").unwrap();
        script.push(ack(5, 0, 1));
        assert!(tx.send(b"b").is_err());
        assert_eq!(tx.stats().garbage, 1);
        assert_eq!(seqs(&script.sent_frames()), [0, 0, 0, 0].map(Some));
    }

    #[test]
    fn a_closed_window_lets_one_probe_through() {
        let script = Script::default();
        let mut tx = ReliableSender::new(script.clone(), fast(4)).unwrap();
        tx.send(b"a").unwrap();
        // Held, but no room: the receiver's application is behind.
        script.push(ack(1, 0, 0));
        tx.send(b"b").unwrap(); // nothing in flight: b goes as the probe
        script.push(ack(1, 0, 0)); // still no room, b was dropped there
        // b is retransmitted until it is given up; c never goes.
        assert!(tx.send(b"c").is_err());
        assert_eq!(seqs(&script.sent_frames()), [0, 1, 1, 1, 1].map(Some));
    }

    #[test]
    fn finish_returns_the_stats_once_the_fin_is_acknowledged() {
        let script = Script::default();
        let mut tx = ReliableSender::new(script.clone(), fast(4)).unwrap();
        tx.send(b"hello").unwrap();
        script.push(ack(1, 0, 4));
        script.push(ack(2, 0, 4));
        let stats = tx.finish().unwrap();
        assert_eq!(stats.messages, 1);
        assert_eq!(stats.payload_bytes, 5);
        assert_eq!(stats.data_sent, 2);
        assert_eq!(stats.acks_received, 2);
        assert_eq!(stats.wire_bytes_sent, (DATA_HEADER + 5 + FIN_LEN) as u64);
        assert_eq!(stats.wire_bytes_received, 2 * ACK_LEN as u64);
        let overhead = stats.overhead().unwrap();
        assert!((overhead - (16.0 + 9.0 + 2.0 * 19.0) / 5.0).abs() < 1e-9);
    }
}
