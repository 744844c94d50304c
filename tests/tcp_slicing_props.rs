//! TCP through a relay that slices and delays: the stream stays intact and ordered.
//!
//! The UDP relay can lose, duplicate and reorder datagrams. A relay between two
//! TCP connections cannot do any of that to the *stream*: it reads bytes from
//! one kernel and writes them to another, and both kernels repair every loss
//! before the relay sees anything. What a relay can still do is cut the stream
//! into different pieces and hold them back — which is exactly what exposes
//! code that treats one `read()` as one message.
//!
//! So the property: for any data, any seed, any slice sizes and delays, what
//! comes out of the relay is byte for byte what went in, in order — and the
//! framed messages on top of it come out whole. The relay here is a small one
//! for this test (its randomness is sockstep's seeded generator); the fault
//! proxy for users' tests is a separate, larger piece of work.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use common::{IO_TIMEOUT, any_port_v4, config, connect, read_to_eof};
use proptest::prelude::*;
use sockstep::tcp::framing::{FrameReader, Framing, encode};
use sockstep::tcp::handlers::Echo;
use sockstep::tcp::server;
use sockstep::trace::Trace;
use sockstep::udp::faults::Xoshiro256StarStar;

/// How the relay cuts and delays: each forwarded piece is 1..=`max_slice`
/// bytes, and after a piece it pauses with probability `pause_chance` for up to
/// `max_pause`.
#[derive(Debug, Clone, Copy)]
struct Slicing {
    seed: u64,
    max_slice: usize,
    pause_chance: f64,
    max_pause: Duration,
}

/// Copies `from` to `to` in random slices with random pauses, then half-closes `to`.
fn pump(mut from: TcpStream, mut to: TcpStream, slicing: Slicing) {
    let mut rng = Xoshiro256StarStar::from_seed(slicing.seed);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let slice = 1 + rng.below(slicing.max_slice as u64) as usize;
            let (piece, after) = rest.split_at(slice.min(rest.len()));
            if to.write_all(piece).is_err() {
                return;
            }
            rest = after;
            if rng.next_f64() < slicing.pause_chance {
                let micros = rng.below(slicing.max_pause.as_micros() as u64 + 1);
                thread::sleep(Duration::from_micros(micros));
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// A one-connection TCP relay in front of `upstream`: both directions sliced.
fn start_relay(
    upstream: std::net::SocketAddr,
    slicing: Slicing,
) -> (std::net::SocketAddr, thread::JoinHandle<()>) {
    let listener = TcpListener::bind(any_port_v4()).expect("bind relay");
    let addr = listener.local_addr().expect("relay addr");
    let relay = thread::spawn(move || {
        let (client, _) = listener.accept().expect("relay accept");
        let server = TcpStream::connect_timeout(&upstream, IO_TIMEOUT).expect("relay connect");
        for s in [&client, &server] {
            s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
            s.set_nodelay(true).expect("nodelay");
        }
        let back = Slicing {
            seed: slicing.seed ^ 0x5eed,
            ..slicing
        };
        let (c2, s2) = (
            client.try_clone().expect("clone"),
            server.try_clone().expect("clone"),
        );
        let forth = thread::spawn(move || pump(client, server, slicing));
        pump(s2, c2, back);
        forth.join().expect("pump");
    });
    (addr, relay)
}

/// Sends `messages` length-prefixed through the relay to an echo server, and
/// returns the echoed raw stream and the framed messages read from it.
fn echo_through_relay(messages: &[Vec<u8>], slicing: Slicing) -> (Vec<u8>, Vec<u8>) {
    let echo = server::socket(any_port_v4(), &Trace::off())
        .bind()
        .expect("bind")
        .listen(4)
        .serve(config(4), Echo)
        .expect("serve");
    let (relay_addr, relay) = start_relay(echo.local_addr(), slicing);
    let mut conn = connect(relay_addr, &Trace::off());
    let mut sent = Vec::new();
    for m in messages {
        sent.extend(encode(Framing::LengthPrefixed, m, usize::MAX).expect("encode"));
    }
    // Write on another thread: echoed bytes must be read while we write, or
    // both directions' buffers fill and everything stops.
    let mut writer = conn.try_clone().expect("clone");
    let to_send = sent.clone();
    let writing = thread::spawn(move || {
        writer.write_all(&to_send).expect("write");
        writer.shutdown_write().expect("half-close");
    });
    let got = read_to_eof(&mut conn).unwrap_or_else(|(_, e)| panic!("read: {e}"));
    writing.join().expect("writer");
    relay.join().expect("relay");
    drop(conn);
    let stats = echo.shutdown();
    assert_eq!(stats.served, 1, "{stats:?}");
    (sent, got)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_sliced_and_delayed_stream_arrives_intact_and_in_order(
        messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3_000), 0..40),
        seed in any::<u64>(),
        max_slice in 1usize..2_000,
        pause_chance in 0.0f64..0.2,
        max_pause_us in 0u64..2_000,
    ) {
        let slicing = Slicing { seed, max_slice, pause_chance, max_pause: Duration::from_micros(max_pause_us) };
        let (sent, got) = echo_through_relay(&messages, slicing);
        prop_assert_eq!(got.len(), sent.len());
        prop_assert!(got == sent, "the echoed stream differs from the sent one");
        let mut frames = FrameReader::new(&got[..], Framing::LengthPrefixed).with_max(usize::MAX >> 1);
        for m in &messages {
            let frame = frames.read_frame().expect("a whole frame");
            prop_assert_eq!(frame.as_ref(), Some(m));
        }
        prop_assert_eq!(frames.read_frame().expect("clean end"), None);
    }
}

#[test]
fn one_byte_slices_still_carry_every_message_whole() {
    let messages: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; usize::from(i) * 7]).collect();
    let slicing = Slicing {
        seed: 1,
        max_slice: 1,
        pause_chance: 0.0,
        max_pause: Duration::ZERO,
    };
    let (sent, got) = echo_through_relay(&messages, slicing);
    assert_eq!(got, sent);
}
