//! One send is one receive over UDP; over TCP only the bytes survive.
//!
//! The seed calls TCP a byte stream (바이트 스트림) and UDP datagrams (데이터그램).
//! The difference a program feels is the message boundary (메시지 경계): a
//! datagram is received exactly as it was sent — whole, alone, never merged
//! with the next or split — while TCP keeps the bytes and their order and
//! forgets where one write ended and the next began. The property below sends
//! the same messages both ways, side by side, and checks each promise: over UDP
//! every receive is exactly one sent message (same bytes, same count, same
//! order on loopback); over TCP the reads, put together, are the messages put
//! together, whatever pieces they came in. The deterministic tests show the
//! difference on two small messages, and on an empty one.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, TIMEOUTS, any_port_v4, connect};
use proptest::collection::vec;
use proptest::prelude::*;
use sockstep::tcp::server;
use sockstep::trace::Trace;
use sockstep::udp::socket::{self, Connected};
use sockstep::{Error, Side};

/// The largest message the strategy makes (exclusive).
const LARGEST: usize = 2000;

/// The most datagrams in flight — sent and not yet received. The receiver's
/// kernel buffer (net.core.rmem_default, 212,992 bytes here) is charged for
/// each queued datagram's whole kernel buffer, a few KiB for one of 2,000
/// bytes; a sender that outruns its receiver loses datagrams to that full
/// buffer with no error anywhere (shared/FACTS.md: 256 of 2,000 arrived). 16
/// in flight stay far below it, so any loss here would be a real failure.
const IN_FLIGHT: usize = 16;

/// Mostly ordinary messages, some empty: an empty datagram is a message too.
fn messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let message = prop_oneof![
        1 => Just(Vec::new()),
        9 => vec(any::<u8>(), 0..LARGEST),
    ];
    vec(message, 1..50)
}

/// A UDP socket pair on loopback, each end connected to the other, with read
/// timeouts so nothing can hang.
fn udp_pair() -> (Connected, Connected) {
    let bind = |side| {
        socket::socket(any_port_v4(), side, &Trace::off())
            .bind()
            .expect("bind 127.0.0.1:0")
    };
    let (a, b) = (bind(Side::Client), bind(Side::Server));
    let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    let sender = a.connect(b_addr).expect("connect");
    let receiver = b.connect(a_addr).expect("connect");
    receiver
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("timeout");
    (sender, receiver)
}

/// Sends each message as one datagram and returns what each receive gave,
/// receiving on another thread while sending, at most [`IN_FLIGHT`] ahead.
fn over_udp(messages: &[Vec<u8>], pace: bool) -> Result<Vec<Vec<u8>>, Error> {
    let (sender, receiver) = udp_pair();
    let received = AtomicUsize::new(0);
    thread::scope(|s| {
        let reader = s.spawn(|| {
            // Larger than any message, so a merge of two could not hide.
            let mut buf = vec![0u8; 4 * LARGEST];
            let mut got = Vec::with_capacity(messages.len());
            for _ in messages {
                let n = receiver.recv(&mut buf)?;
                got.push(buf[..n].to_vec());
                received.fetch_add(1, Ordering::SeqCst);
            }
            Ok(got)
        });
        for (i, msg) in messages.iter().enumerate() {
            let deadline = Instant::now() + IO_TIMEOUT;
            while i >= received.load(Ordering::SeqCst) + IN_FLIGHT && Instant::now() < deadline {
                thread::sleep(Duration::from_micros(50));
            }
            sender.send(msg)?;
            if pace {
                thread::sleep(Duration::from_micros(100));
            }
        }
        reader.join().expect("the receiving thread panicked")
    })
}

/// Writes each message with one `write_all` on a TCP connection (Nagle on,
/// as std leaves it) and returns what each read gave, up to end of stream.
fn over_tcp(messages: &[Vec<u8>], pace: bool) -> Result<Vec<Vec<u8>>, Error> {
    let listening = server::socket(any_port_v4(), &Trace::off())
        .bind()?
        .listen(1);
    let mut writer = connect(listening.local_addr(), &Trace::off());
    let mut reader = listening.accept()?;
    reader.set_timeouts(TIMEOUTS)?;
    thread::scope(|s| {
        let reads = s.spawn(move || {
            let mut buf = vec![0u8; 4 * LARGEST];
            let mut reads = Vec::new();
            loop {
                match reader.read(&mut buf)? {
                    0 => return Ok(reads),
                    n => reads.push(buf[..n].to_vec()),
                }
            }
        });
        for msg in messages {
            writer.write_all(msg)?;
            if pace {
                thread::sleep(Duration::from_micros(100));
            }
        }
        writer.shutdown_write()?;
        reads.join().expect("the reading thread panicked")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn one_send_is_one_receive_over_udp_and_only_the_bytes_survive_over_tcp(
        messages in messages(),
        pace in any::<bool>(),
    ) {
        let datagrams = over_udp(&messages, pace).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&datagrams, &messages, "UDP: each receive must be exactly one send");

        let reads = over_tcp(&messages, pace).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(reads.concat(), messages.concat(), "TCP: the bytes, in order");
        // A read of 0 bytes is end of stream, so every read before it carries
        // bytes: an empty write leaves no trace in a byte stream.
        prop_assert!(reads.iter().all(|r| !r.is_empty()));
    }
}

/// Sends `a` then `b` over a UDP pair; the receiver waits before it receives.
fn udp_two_sends_after_a_wait(a: &[u8], b: &[u8], wait: Duration) -> Vec<Vec<u8>> {
    let (sender, receiver) = udp_pair();
    sender.send(a).expect("send");
    sender.send(b).expect("send");
    thread::sleep(wait);
    let mut buf = [0u8; 64 * 1024];
    (0..2)
        .map(|_| {
            let n = receiver.recv(&mut buf).expect("recv");
            buf[..n].to_vec()
        })
        .collect()
}

#[test]
fn two_tcp_writes_may_arrive_in_one_read_two_datagrams_never_do() {
    let wait = Duration::from_millis(200);
    let (first, second) = (&b"first,"[..], &b"second"[..]);

    // TCP, Nagle on (std does not set TCP_NODELAY): two writes, and a reader
    // that waits until both have surely arrived before it reads once.
    let listening = server::socket(any_port_v4(), &Trace::off())
        .bind()
        .expect("bind")
        .listen(1);
    let mut writer = connect(listening.local_addr(), &Trace::off());
    let mut reader = listening.accept().expect("accept");
    reader.set_timeouts(TIMEOUTS).expect("timeouts");
    writer.write_all(first).expect("write");
    writer.write_all(second).expect("write");
    thread::sleep(wait);
    let mut buf = [0u8; 64 * 1024];
    let mut reads: Vec<Vec<u8>> = Vec::new();
    // Bounded: at most one read per byte, each bounded by the read timeout.
    while reads.concat().len() < first.len() + second.len() {
        assert!(reads.len() < 12, "more reads than bytes: {reads:?}");
        let n = reader.read(&mut buf).expect("read");
        assert_ne!(n, 0, "end of stream before all bytes arrived");
        reads.push(buf[..n].to_vec());
    }
    assert_eq!(reads.concat(), [first, second].concat());
    // Whether the kernel merged the two writes is its business, not a promise;
    // show what it did rather than assert it.
    eprintln!(
        "TCP: writes of {} and {} bytes came back as reads of {:?} bytes",
        first.len(),
        second.len(),
        reads.iter().map(Vec::len).collect::<Vec<_>>()
    );

    // UDP, the same two messages, the same wait, a buffer large enough for
    // both: still two receives, one message each. This one is a promise.
    let datagrams = udp_two_sends_after_a_wait(first, second, wait);
    assert_eq!(datagrams, [first.to_vec(), second.to_vec()]);
}

#[test]
fn an_empty_message_is_a_datagram_over_udp_and_nothing_over_tcp() {
    let messages = [b"before".to_vec(), Vec::new(), b"after".to_vec()];

    let datagrams = over_udp(&messages, false).expect("over UDP");
    assert_eq!(datagrams, messages, "three sends, three receives");

    let reads = over_tcp(&messages, false).expect("over TCP");
    assert_eq!(reads.concat(), b"beforeafter");
    assert!(
        reads.iter().all(|r| !r.is_empty()),
        "TCP cannot deliver an empty message: {reads:?}"
    );
}
