//! The reliable channel delivers every message once, in order — whatever the link does.
//!
//! `udp::reliable` promises what TCP promises: every message, exactly once,
//! in order, or an error — never a hang, never garbage. These properties let
//! proptest choose the messages and how bad the link is, and check the promise:
//!
//! - **The wire format**: any bytes decode without panicking, what decodes
//!   encodes back to the same bytes, and every frame survives a round trip.
//! - **In memory, through a seeded lossy link** (below: [`LossyEnd`]) that
//!   loses, duplicates, delays and reorders with rates proptest picks, up to
//!   half of all datagrams lost: the receiver gets exactly the messages sent.
//! - **Through real loopback UDP**, with our connected sockets, and through
//!   `udp::relay` with loss, duplicates and reordering: the same.
//! - **Flow control**: a slow receiver with a small window holds a sender
//!   with a large one to the room it advertises.
//! - **A peer that vanishes**: a cut link gives the receiver a prefix of the
//!   messages and then `TimedOut`; a sender whose receiver never answers, or
//!   is gone, fails with `TimedOut` within the give-up time plus a margin.
//!
//! Every blocking call is bounded: the channel's own give-up timeout covers
//! every wait, and the links never wait longer than they are asked to.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use sockstep::trace::Trace;
use sockstep::udp::faults::{FaultConfig, Faults};
use sockstep::udp::relay::Relay;
use sockstep::udp::reliable::{
    Config, DATA_HEADER, FirstPeer, Frame, Link, MAX_WINDOW, ReliableReceiver, ReliableSender,
    Stats, decode, encode,
};
use sockstep::udp::socket::{self, Bound, Connected, max_payload};
use sockstep::{Error, ErrorKind, Side, Step};

/// Slack on top of a give-up timeout before a test calls the wait a hang:
/// enough for a loaded machine, small next to "forever".
const MARGIN: Duration = Duration::from_millis(1500);

/// A protocol config for tests over an in-memory or loopback link: a short
/// RTO so that losses cost milliseconds (but not shorter: on a loaded machine
/// a thread can wait that long to run, and every timer that fires early sends
/// a duplicate), a give-up far above anything a healthy run needs, and enough
/// retransmissions that half the datagrams lost, both ways, cannot use them
/// up (0.75⁶⁰ ≈ 3·10⁻⁸ per message).
fn test_config(window: usize) -> Config {
    Config {
        window,
        rto: Duration::from_millis(10),
        give_up: Duration::from_secs(5),
        max_retransmissions: 60,
        linger: Duration::from_millis(500),
    }
}

// --- an in-memory link that misbehaves on purpose ----------------------------

/// One direction of the in-memory link: datagrams in flight, each with the
/// time it arrives, earliest first.
#[derive(Default)]
struct Wire {
    state: Mutex<WireState>,
    arrived: Condvar,
}

#[derive(Default)]
struct WireState {
    /// (arrival time, order of sending, datagram): a delayed datagram is
    /// overtaken by those sent after it that arrive earlier.
    queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    sent: u64,
    /// The sending end was dropped: once the queue is empty, nothing more comes.
    closed: bool,
}

impl Wire {
    fn lock(&self) -> MutexGuard<'_, WireState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One end of an in-memory link whose faults — loss, duplication, delay,
/// reordering — come from the crate's seeded fault engine (`udp::faults`),
/// datagram by datagram, so a failing case replays exactly the same fates.
struct LossyEnd {
    outgoing: Arc<Wire>,
    incoming: Arc<Wire>,
    faults: Faults,
    /// After this many datagrams, every further one this end sends is lost:
    /// the link is cut (the sending program vanished).
    cut_after: Option<u64>,
    /// Whether dropping this end tells the other one (see `Drop`).
    announce_close: bool,
    max_datagram: usize,
}

/// Two connected ends. `a_to_b` and `b_to_a` are the faults of each direction.
fn lossy_pair(
    a_to_b: FaultConfig,
    b_to_a: FaultConfig,
    a_cut_after: Option<u64>,
) -> (LossyEnd, LossyEnd) {
    let ab = Arc::new(Wire::default());
    let ba = Arc::new(Wire::default());
    let end = |outgoing: &Arc<Wire>, incoming: &Arc<Wire>, faults, cut_after| LossyEnd {
        outgoing: outgoing.clone(),
        incoming: incoming.clone(),
        faults: Faults::new(faults).expect("valid faults"),
        cut_after,
        announce_close: a_cut_after.is_none(),
        max_datagram: 1500,
    };
    (
        end(&ab, &ba, a_to_b, a_cut_after),
        end(&ba, &ab, b_to_a, None),
    )
}

impl Link for LossyEnd {
    fn send(&mut self, datagram: &[u8]) -> Result<(), Error> {
        assert!(
            datagram.len() <= self.max_datagram,
            "the protocol sent too much"
        );
        let fate = self.faults.decide();
        let now = Instant::now();
        let mut wire = self.outgoing.lock();
        wire.sent += 1;
        if self.cut_after.is_some_and(|cut| wire.sent > cut) {
            return Ok(());
        }
        for hold in fate.holds() {
            let order = wire.sent;
            wire.queue
                .push(Reverse((now + hold, order, datagram.to_vec())));
        }
        self.outgoing.arrived.notify_all();
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, Error> {
        let deadline = Instant::now() + timeout;
        let mut wire = self.incoming.lock();
        loop {
            let now = Instant::now();
            let next = wire.queue.peek().map(|Reverse((at, _, _))| *at);
            if next.is_some_and(|at| at <= now) {
                let Some(Reverse((_, _, datagram))) = wire.queue.pop() else {
                    unreachable!("peeked above")
                };
                buf[..datagram.len()].copy_from_slice(&datagram);
                return Ok(Some(datagram.len()));
            }
            if wire.closed && next.is_none() {
                return Err(Error::new(Step::RecvFrom, ErrorKind::ConnectionReset));
            }
            if now >= deadline {
                return Ok(None);
            }
            let until = next.map_or(deadline, |at| at.min(deadline));
            wire = self
                .incoming
                .arrived
                .wait_timeout(wire, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn max_datagram(&self) -> usize {
        self.max_datagram
    }
}

impl Drop for LossyEnd {
    /// The peer's `recv` learns at once that nothing more will come, so a
    /// lingering receiver need not wait out its quiet time in every case.
    /// Not on a cut link: there neither end hears anything, ever, as over UDP.
    fn drop(&mut self) {
        if self.announce_close {
            self.outgoing.lock().closed = true;
            self.outgoing.arrived.notify_all();
        }
    }
}

// --- running a transfer ------------------------------------------------------

/// What a transfer ended with, on both sides.
struct Outcome {
    /// The sender's `finish()` result (or its first `send` error).
    sent: Result<Stats, Error>,
    /// Every message the receiver handed out, in order.
    delivered: Vec<Vec<u8>>,
    /// `Ok(stats)` if the receiver saw the end of the stream, else its error.
    received: Result<Stats, Error>,
    /// How long the receiver's last `recv` call took.
    last_recv: Duration,
}

/// Sends `messages` from a thread over `sender_link` and receives them here
/// over `receiver_link`. Every call is bounded by the config's give-up.
fn transfer(
    sender_link: impl Link + Send + 'static,
    sender_config: Config,
    receiver_link: impl Link,
    receiver_config: Config,
    messages: &[Vec<u8>],
    pause_between_recv: Duration,
) -> Outcome {
    let to_send = messages.to_vec();
    let sending = thread::spawn(move || {
        let mut sender = ReliableSender::new(sender_link, sender_config)?;
        for message in &to_send {
            sender.send(message)?;
        }
        sender.finish()
    });
    let mut receiver = ReliableReceiver::new(receiver_link, receiver_config).expect("config");
    let mut delivered = Vec::new();
    let (received, last_recv) = loop {
        thread::sleep(pause_between_recv);
        let started = Instant::now();
        let got = receiver.recv();
        let took = started.elapsed();
        match got {
            Ok(Some(message)) => delivered.push(message),
            Ok(None) => break (Ok(receiver.close()), took),
            Err(e) => break (Err(e), took),
        }
    };
    let sent = sending.join().expect("the sender thread panicked");
    Outcome {
        sent,
        delivered,
        received,
        last_recv,
    }
}

/// Asserts the whole promise: everything delivered, once, in order, and both
/// ends finished cleanly.
fn assert_delivered_exactly(outcome: &Outcome, messages: &[Vec<u8>]) -> (Stats, Stats) {
    let sent = outcome.sent.as_ref().expect("the sender finished");
    let received = outcome.received.as_ref().expect("the receiver saw the end");
    assert_eq!(
        outcome.delivered.len(),
        messages.len(),
        "how many delivered"
    );
    for (i, (got, want)) in outcome.delivered.iter().zip(messages).enumerate() {
        assert!(got == want, "message {i} differs");
    }
    let total: u64 = messages.iter().map(|m| m.len() as u64).sum();
    assert_eq!(sent.payload_bytes, total);
    assert_eq!(received.payload_bytes, total);
    assert_eq!(sent.messages, messages.len() as u64);
    assert_eq!(
        sent.data_sent,
        messages.len() as u64 + 1,
        "each message and the FIN, once"
    );
    (*sent, *received)
}

// --- strategies ------------------------------------------------------------------

/// Up to `max_count` messages of 0..`max_len` bytes, empty ones included.
fn messages(max_count: usize, max_len: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
    vec(vec(any::<u8>(), 0..max_len), 0..max_count)
}

/// How one direction misbehaves: up to half lost, a third duplicated, half
/// reordered, a few milliseconds of jitter.
fn faults() -> impl Strategy<Value = FaultConfig> {
    (
        0.0..=0.5f64,
        0.0..=0.3f64,
        0.0..=0.5f64,
        0..4u64,
        any::<u64>(),
    )
        .prop_map(|(loss, duplicate, reorder, jitter_ms, seed)| FaultConfig {
            loss,
            duplicate,
            reorder,
            jitter: Duration::from_millis(jitter_ms),
            seed,
            ..FaultConfig::default()
        })
}

/// The parts of any frame: a kind (0 DATA, 1 ACK, 2 FIN), two numbers, a
/// window and a payload; [`build`] makes the frame, using what its kind needs.
fn frame() -> impl Strategy<Value = (u8, u64, u64, u16, Vec<u8>)> {
    (
        0..3u8,
        any::<u64>(),
        any::<u64>(),
        any::<u16>(),
        vec(any::<u8>(), 0..2000),
    )
}

fn build(&(kind, a, b, w, ref payload): &(u8, u64, u64, u16, Vec<u8>)) -> Frame<'_> {
    match kind {
        0 => Frame::Data { seq: a, payload },
        1 => Frame::Ack {
            cumulative: a,
            selective: b,
            window: w,
        },
        _ => Frame::Fin { seq: a },
    }
}

// --- the wire format ---------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_decode_without_panic_and_what_decodes_encodes_back(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..64),
            // Starting with a kind letter, to get past the first check often.
            (prop_oneof![Just(b'D'), Just(b'A'), Just(b'F')], vec(any::<u8>(), 0..40))
                .prop_map(|(k, mut rest)| { rest.insert(0, k); rest }),
        ]
    ) {
        if let Ok(frame) = decode(&bytes) {
            prop_assert_eq!(encode(&frame).expect("a decoded frame encodes"), bytes);
        }
    }

    #[test]
    fn every_frame_survives_a_round_trip(parts in frame()) {
        let frame = build(&parts);
        let bytes = encode(&frame).expect("fits");
        prop_assert_eq!(decode(&bytes), Ok(frame));
        // And any one byte fewer is refused, never read as a different frame.
        prop_assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}

// --- in memory, through a lossy link -------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_message_arrives_once_in_order_over_a_lossy_link(
        messages in messages(200, 1200),
        there in faults(),
        back in faults(),
        window in 2..=32usize,
    ) {
        let (a, b) = lossy_pair(there, back, None);
        let config = test_config(window);
        let outcome = transfer(a, config, b, config, &messages, Duration::ZERO);
        assert_delivered_exactly(&outcome, &messages);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn a_link_cut_mid_stream_gives_a_prefix_then_timed_out(
        messages in messages(60, 300),
        there in faults(),
        back in faults(),
        window in 1..=16usize,
        cut_after in 0..80u64,
    ) {
        let (a, b) = lossy_pair(there, back, Some(cut_after));
        let config = Config { give_up: Duration::from_millis(300), ..test_config(window) };
        let outcome = transfer(a, config, b, config, &messages, Duration::ZERO);
        // Never anything but a prefix, message for message.
        prop_assert!(outcome.delivered.len() <= messages.len());
        for (i, (got, want)) in outcome.delivered.iter().zip(&messages).enumerate() {
            prop_assert!(got == want, "message {} differs", i);
        }
        match &outcome.received {
            Ok(_) => prop_assert_eq!(outcome.delivered.len(), messages.len()),
            Err(e) => {
                prop_assert_eq!(e.kind(), &ErrorKind::TimedOut, "{}", e);
                prop_assert!(outcome.last_recv < config.give_up + MARGIN);
            }
        }
        match &outcome.sent {
            // The FIN was acknowledged, so everything had arrived.
            Ok(_) => prop_assert!(outcome.received.is_ok()),
            Err(e) => prop_assert_eq!(e.kind(), &ErrorKind::TimedOut, "{}", e),
        }
    }
}

// --- flow control ---------------------------------------------------------------------

/// Wraps the sender's link and checks every frame that passes against the
/// ACKs seen so far: a DATA frame may only go below the receiver's advertised
/// edge (cumulative + window), or be the one probe at the cumulative point
/// when the window is closed.
struct WindowWatch<L> {
    inner: L,
    seen: Arc<Mutex<Watched>>,
}

#[derive(Default, Debug)]
struct Watched {
    cumulative: u64,
    edge: u64,
    most_in_flight: u64,
    violations: Vec<String>,
}

impl<L: Link> Link for WindowWatch<L> {
    fn send(&mut self, datagram: &[u8]) -> Result<(), Error> {
        if let Ok(Frame::Data { seq, .. }) = decode(datagram) {
            let mut seen = self.seen.lock().unwrap();
            if seq >= seen.edge && seq != seen.cumulative {
                let text = format!(
                    "DATA {seq} sent past the edge {} (cumulative {})",
                    seen.edge, seen.cumulative
                );
                seen.violations.push(text);
            }
            seen.most_in_flight = seen.most_in_flight.max(seq + 1 - seen.cumulative);
        }
        self.inner.send(datagram)
    }

    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, Error> {
        let got = self.inner.recv(buf, timeout)?;
        if let Some(n) = got
            && let Ok(Frame::Ack {
                cumulative, window, ..
            }) = decode(&buf[..n])
        {
            let mut seen = self.seen.lock().unwrap();
            seen.cumulative = seen.cumulative.max(cumulative);
            seen.edge = seen.edge.max(cumulative + u64::from(window));
        }
        Ok(got)
    }

    fn max_datagram(&self) -> usize {
        self.inner.max_datagram()
    }
}

#[test]
fn a_slow_receiver_holds_a_fast_sender_to_the_room_it_advertises() {
    let messages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 100]).collect();
    let (a, b) = lossy_pair(FaultConfig::default(), FaultConfig::default(), None);
    let seen = Arc::new(Mutex::new(Watched::default()));
    let watched = WindowWatch {
        inner: a,
        seen: seen.clone(),
    };
    let outcome = transfer(
        watched,
        test_config(MAX_WINDOW),
        b,
        test_config(2),
        &messages,
        Duration::from_millis(2),
    );
    assert_delivered_exactly(&outcome, &messages);
    let seen = seen.lock().unwrap();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert!(
        seen.most_in_flight <= 2,
        "the receiver's window of 2 binds a sender whose own is {MAX_WINDOW}: {seen:?}"
    );
}

// --- over real loopback UDP --------------------------------------------------------------

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn bind(side: Side) -> Bound {
    socket::socket(any_port(), side, &Trace::off())
        .bind()
        .expect("bind 127.0.0.1:0")
}

/// Two UDP sockets on loopback, connected to each other: (sender's, receiver's).
fn udp_pair() -> (Connected, Connected) {
    let (a, b) = (bind(Side::Client), bind(Side::Server));
    let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    (
        a.connect(b_addr).expect("connect"),
        b.connect(a_addr).expect("connect"),
    )
}

/// Mostly small messages, now and then one near the largest a UDP datagram
/// takes after the header.
fn udp_messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let largest = max_payload(&any_port()) - DATA_HEADER;
    let message = prop_oneof![
        8 => vec(any::<u8>(), 0..1500),
        1 => (largest - 100..=largest, any::<u8>()).prop_map(|(len, b)| vec![b; len]),
    ];
    vec(message, 0..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn every_message_arrives_once_in_order_over_loopback_udp(
        messages in udp_messages(),
        window in 1..=MAX_WINDOW,
    ) {
        let (a, b) = udp_pair();
        let config = Config { rto: Duration::from_millis(50), ..test_config(window) };
        let outcome = transfer(a, config, b, config, &messages, Duration::ZERO);
        let (sent, received) = assert_delivered_exactly(&outcome, &messages);
        // One ACK per DATA or FIN that arrived; every ACK the sender read was sent.
        prop_assert!(received.acks_sent > messages.len() as u64);
        prop_assert!(sent.acks_received <= received.acks_sent);
        prop_assert!(sent.overhead().is_none_or(|o| o > 1.0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn every_message_arrives_once_in_order_through_the_lossy_relay(
        messages in messages(60, 1200),
        loss in 0.05..=0.3f64,
        duplicate in 0.0..=0.2f64,
        reorder in 0.0..=0.3f64,
        seed in any::<u64>(),
    ) {
        let receiving = bind(Side::Server);
        let faults = FaultConfig {
            loss,
            duplicate,
            reorder,
            jitter: Duration::from_millis(2),
            seed,
            ..FaultConfig::default()
        };
        let relay = Relay::start_symmetric(any_port(), receiving.local_addr(), faults, &Trace::off())
            .expect("relay");
        let sending = bind(Side::Client).connect(relay.local_addr()).expect("connect");
        let config = Config { rto: Duration::from_millis(30), ..test_config(16) };
        let outcome = transfer(
            sending,
            config,
            FirstPeer::new(receiving),
            config,
            &messages,
            Duration::ZERO,
        );
        let counts = relay.shutdown();
        let (sent, _) = assert_delivered_exactly(&outcome, &messages);
        // The relay really did lose datagrams, and retransmission made up for them.
        if counts.client_to_upstream.faults.dropped > 0 {
            prop_assert!(sent.retransmissions > 0);
        }
    }
}

// --- a peer that vanishes ------------------------------------------------------------------

/// A config that gives up quickly, by the give-up timeout rather than by
/// counting retransmissions.
fn impatient() -> Config {
    Config {
        rto: Duration::from_millis(50),
        give_up: Duration::from_millis(500),
        max_retransmissions: 1000,
        ..Config::default()
    }
}

fn assert_timed_out_in_time(result: Result<(), Error>, started: Instant, config: Config) {
    let elapsed = started.elapsed();
    let e = result.expect_err("must time out");
    assert_eq!(e.kind(), &ErrorKind::TimedOut, "{e}");
    assert!(
        elapsed >= config.give_up && elapsed < config.give_up + MARGIN,
        "gave up after {elapsed:?}, give-up is {:?}",
        config.give_up
    );
    assert!(e.to_string().contains("no acknowledgement"), "{e}");
}

#[test]
fn a_sender_whose_receiver_never_reads_times_out_within_give_up() {
    let config = impatient();
    let (a, _never_read) = udp_pair();
    let mut sender = ReliableSender::new(a, config).expect("config");
    let started = Instant::now();
    // The first message goes; the second waits for an ACK that never comes.
    let result = sender
        .send(b"anyone?")
        .and_then(|()| sender.send(b"hello?"));
    assert_timed_out_in_time(result, started, config);
    assert!(sender.stats().retransmissions >= 3, "{:?}", sender.stats());
}

#[test]
fn a_sender_whose_receiver_is_gone_times_out_within_give_up() {
    let config = impatient();
    let (a, gone) = udp_pair();
    drop(gone); // its port now answers with ICMP "port unreachable"
    let mut sender = ReliableSender::new(a, config).expect("config");
    let started = Instant::now();
    let result = sender
        .send(b"anyone?")
        .and_then(|()| sender.finish().map(drop));
    // ECONNREFUSED from the ICMP is treated as loss, so this is a timeout too.
    assert_timed_out_in_time(result, started, config);
}

#[test]
fn a_receiver_whose_sender_vanishes_mid_stream_times_out_after_a_prefix() {
    let config = impatient();
    let (a, b) = udp_pair();
    let sent: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
    let to_send = sent.clone();
    let sending = thread::spawn(move || -> Result<(), Error> {
        let mut sender = ReliableSender::new(a, test_config(8))?;
        for message in &to_send {
            sender.send(message)?;
        }
        // Gone without a FIN: the program crashed, say.
        Ok(())
    });
    let mut receiver = ReliableReceiver::new(b, config).expect("config");
    let mut delivered = Vec::new();
    let result = loop {
        let started = Instant::now();
        match receiver.recv() {
            Ok(Some(message)) => delivered.push(message),
            Ok(None) => panic!("no FIN was sent"),
            Err(e) => break (e, started.elapsed()),
        }
    };
    sending
        .join()
        .expect("the sender thread panicked")
        .expect("sent");
    let (e, waited) = result;
    assert_eq!(e.kind(), &ErrorKind::TimedOut, "{e}");
    assert!(waited < config.give_up + MARGIN, "waited {waited:?}");
    assert!(e.to_string().contains("no new data"), "{e}");
    assert!(
        delivered.len() <= sent.len() && delivered[..] == sent[..delivered.len()],
        "only a prefix, whole messages in order"
    );
}
