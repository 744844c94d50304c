//! Through the fault proxy, the stream is the stream: every byte, in order,
//! each way, and each side's end of stream passed on — whatever the traffic,
//! and whatever the timing faults do to the pieces and the pace.
//!
//! A proxy that moves bytes between two kernels can get three things wrong:
//! lose or reorder bytes (TCP never does, so a proxy must not), swallow a
//! half-close (the client's `shutdown(Write)` must reach the server as end of
//! stream while the server can still answer, and the other way round), and
//! deliver more than a limit allows. So, for random data of random sizes,
//! written in random pieces, both ways at once, over several connections at
//! once:
//!
//! - with no faults, what each side reads is exactly what the other wrote,
//!   then end of stream;
//! - with a slicer and latency (with jitter), the same — only the pieces and
//!   the timing change;
//! - with limit-data N, exactly the first N bytes arrive, then end of stream.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, any_port_v4, read_to_eof};
use proptest::prelude::*;
use sockstep::testkit::proxy::{Direction, Fault, NamedFault, Proxy, ProxyConfig};
use sockstep::udp::faults::Xoshiro256StarStar;

/// How a side writes: the payload in pieces of 1..=`max_chunk` bytes drawn
/// from `seed`, then `shutdown(Write)`.
#[derive(Debug, Clone, Copy)]
struct Chunking {
    seed: u64,
    max_chunk: usize,
}

/// Writes `data` in random pieces, then half-closes. Write errors are
/// returned, not panicked on: a limit makes the proxy close on a writer.
fn write_in_chunks(mut to: &TcpStream, data: &[u8], chunking: Chunking) -> io::Result<()> {
    let mut rng = Xoshiro256StarStar::from_seed(chunking.seed);
    let mut rest = data;
    while !rest.is_empty() {
        let n = 1 + rng.below(chunking.max_chunk as u64) as usize;
        let (piece, after) = rest.split_at(n.min(rest.len()));
        to.write_all(piece)?;
        rest = after;
    }
    to.shutdown(Shutdown::Write)
}

fn with_timeouts(stream: TcpStream) -> TcpStream {
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    stream
}

/// A listener on an ephemeral loopback port, for [`accept_one`], and its address.
fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind(any_port_v4()).expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("addr");
    (listener, addr)
}

/// Accepts one connection within [`IO_TIMEOUT`]: a non-blocking listener,
/// polled, so a proxy that never connects fails the test instead of hanging it.
fn accept_one(listener: &TcpListener) -> TcpStream {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking");
                return with_timeouts(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("the proxy never connected upstream: {e}"),
        }
    }
}

/// What one upstream connection saw: its number (the first 8 bytes the client
/// sent, when numbered), and the rest of what it read, or the error that ended
/// the read.
struct Seen {
    number: usize,
    read: Result<Vec<u8>, io::ErrorKind>,
}

/// A server that accepts `connections` connections and, on each, reads to end
/// of stream while writing `replies[number]` in pieces, then half-closing.
/// With `numbered`, the client's first 8 bytes say which reply is its own.
fn start_server(
    connections: usize,
    replies: Arc<Vec<Vec<u8>>>,
    chunking: Chunking,
    numbered: bool,
) -> (SocketAddr, JoinHandle<Vec<Seen>>) {
    let (listener, addr) = listener();
    let server = thread::spawn(move || {
        let handlers: Vec<_> = (0..connections)
            .map(|_| {
                let stream = accept_one(&listener);
                let replies = replies.clone();
                thread::spawn(move || serve_one(stream, &replies, chunking, numbered))
            })
            .collect();
        handlers
            .into_iter()
            .map(|h| h.join().expect("server connection"))
            .collect()
    });
    (addr, server)
}

fn serve_one(stream: TcpStream, replies: &[Vec<u8>], chunking: Chunking, numbered: bool) -> Seen {
    let mut reader = stream.try_clone().expect("clone");
    let number = if numbered {
        let mut id = [0u8; 8];
        reader.read_exact(&mut id).expect("the connection number");
        u64::from_be_bytes(id) as usize
    } else {
        0
    };
    let reply = replies[number].clone();
    let writer = thread::spawn(move || write_in_chunks(&stream, &reply, chunking));
    let read = read_to_eof(&mut reader).map_err(|(_, e)| e.kind());
    let _ = writer.join().expect("server writer");
    Seen { number, read }
}

/// One client: connects through the proxy, writes `data` (after its number,
/// when numbered) in pieces while reading to end of stream.
fn client(
    proxy: SocketAddr,
    number: Option<usize>,
    data: Vec<u8>,
    chunking: Chunking,
) -> JoinHandle<Result<Vec<u8>, io::ErrorKind>> {
    thread::spawn(move || {
        let stream =
            with_timeouts(TcpStream::connect_timeout(&proxy, IO_TIMEOUT).expect("connect"));
        let mut reader = stream.try_clone().expect("clone");
        let mut sent = number.map_or(Vec::new(), |n| (n as u64).to_be_bytes().to_vec());
        sent.extend_from_slice(&data);
        let writer = thread::spawn(move || write_in_chunks(&stream, &sent, chunking));
        let read = read_to_eof(&mut reader).map_err(|(_, e)| e.kind());
        let _ = writer.join().expect("client writer");
        read
    })
}

/// Runs `conversations` (client bytes, server bytes) at once through a proxy
/// with `faults`, and checks every byte both ways. Returns the proxy's counts.
fn converse(
    conversations: &[(Vec<u8>, Vec<u8>)],
    faults: Vec<NamedFault>,
    seed: u64,
    chunking: Chunking,
) -> Result<sockstep::testkit::proxy::ProxyCounts, TestCaseError> {
    let replies: Arc<Vec<Vec<u8>>> =
        Arc::new(conversations.iter().map(|(_, down)| down.clone()).collect());
    let (upstream, server) = start_server(conversations.len(), replies, chunking, true);
    let config = ProxyConfig {
        faults,
        seed,
        ..ProxyConfig::default()
    };
    let proxy = Proxy::start(any_port_v4(), upstream, config).expect("proxy");
    let clients: Vec<_> = conversations
        .iter()
        .enumerate()
        .map(|(i, (up, _))| client(proxy.local_addr(), Some(i), up.clone(), chunking))
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let got = c.join().expect("client");
        prop_assert_eq!(got.as_ref().map(Vec::len), Ok(conversations[i].1.len()));
        prop_assert!(
            got == Ok(conversations[i].1.clone()),
            "client {} read other bytes",
            i
        );
    }
    for seen in server.join().expect("server") {
        let sent = &conversations[seen.number].0;
        prop_assert_eq!(seen.read.as_ref().map(Vec::len), Ok(sent.len()));
        prop_assert!(
            seen.read == Ok(sent.clone()),
            "server {} read other bytes",
            seen.number
        );
    }
    let counts = proxy.shutdown();
    let n = conversations.len() as u64;
    prop_assert_eq!((counts.connections, counts.active), (n, 0));
    let up: usize = conversations.iter().map(|(u, _)| u.len() + 8).sum();
    let down: usize = conversations.iter().map(|(_, d)| d.len()).sum();
    prop_assert_eq!(counts.upstream.bytes, up as u64);
    prop_assert_eq!(counts.downstream.bytes, down as u64);
    prop_assert_eq!(
        counts.upstream.half_closes,
        n,
        "every client's FIN reached its server"
    );
    prop_assert_eq!(
        counts.downstream.half_closes,
        n,
        "every server's FIN reached its client"
    );
    prop_assert_eq!(counts.upstream.errors + counts.downstream.errors, 0);
    Ok(counts)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn with_no_faults_every_byte_and_every_end_of_stream_arrives_both_ways(
        conversations in prop::collection::vec((bytes(40_000), bytes(40_000)), 1..4),
        seed in any::<u64>(),
        max_chunk in 1usize..20_000,
    ) {
        let counts = converse(&conversations, Vec::new(), seed, Chunking { seed, max_chunk })?;
        prop_assert_eq!(counts.faults_applied(), 0);
    }

    #[test]
    fn a_slicer_and_latency_change_the_pieces_and_the_pace_never_the_bytes(
        conversations in prop::collection::vec((bytes(3_000), bytes(3_000)), 1..4),
        seed in any::<u64>(),
        max_chunk in 1usize..4_000,
        (min, max) in (1usize..=16).prop_flat_map(|min| (Just(min), min..=16)),
        pause_us in 0u64..300,
        delay_us in 0u64..3_000,
        jitter_us in 0u64..2_000,
    ) {
        let faults = vec![
            NamedFault::new("cut", Direction::Both, Fault::Slicer {
                min, max, pause: Duration::from_micros(pause_us),
            }),
            NamedFault::new("slow", Direction::Both, Fault::Latency {
                delay: Duration::from_micros(delay_us),
                jitter: Duration::from_micros(jitter_us),
            }),
        ];
        let counts = converse(&conversations, faults, seed, Chunking { seed, max_chunk })?;
        // Every piece the slicer finished had at most `max` bytes; each of the
        // 2 streams per connection may end inside one more, unfinished.
        let total = counts.upstream.bytes + counts.downstream.bytes;
        let streams = 2 * conversations.len() as u64;
        prop_assert!(counts.upstream.slices + counts.downstream.slices + streams >= total / max as u64);
    }

    #[test]
    fn with_limit_data_exactly_the_first_n_bytes_arrive_then_end_of_stream(
        limit in 0u64..20_000,
        data in bytes(30_000),
        downstream in any::<bool>(),
        seed in any::<u64>(),
        max_chunk in 1usize..8_000,
    ) {
        let chunking = Chunking { seed, max_chunk };
        let direction = if downstream { Direction::Downstream } else { Direction::Upstream };
        let faults = vec![NamedFault::new("cap", direction, Fault::LimitData { bytes: limit })];
        // The limited way carries `data`; the other way carries nothing.
        let (up, down) = if downstream { (Vec::new(), data.clone()) } else { (data.clone(), Vec::new()) };
        let (upstream, server) = start_server(1, Arc::new(vec![down]), chunking, false);
        let config = ProxyConfig { faults, seed, ..ProxyConfig::default() };
        let proxy = Proxy::start(any_port_v4(), upstream, config).expect("proxy");
        let client_read = client(proxy.local_addr(), None, up, chunking).join().expect("client");
        let server_read = server.join().expect("server").pop().expect("one connection").read;
        let received = if downstream { client_read } else { server_read };
        let expected = &data[..data.len().min(limit as usize)];
        prop_assert_eq!(received.as_ref().map(Vec::len), Ok(expected.len()));
        prop_assert!(received.as_deref() == Ok(expected), "other bytes than the first {}", limit);
        let counts = proxy.shutdown();
        let reached = data.len() as u64 >= limit;
        prop_assert_eq!(counts.direction(direction).limits, u64::from(reached));
        prop_assert_eq!(counts.direction(direction).bytes, expected.len() as u64);
    }
}

/// The half-close, step by step: the server sees the client's end of stream
/// *before* it answers, and the client still reads the answer, then the
/// server's end of stream.
#[test]
fn each_half_close_passes_through_while_the_other_way_stays_open() {
    let (listener, upstream) = listener();
    let server = thread::spawn(move || {
        let mut conn = accept_one(&listener);
        let asked = read_to_eof(&mut conn).expect("the client's end of stream");
        conn.write_all(b"answered after your FIN").expect("answer");
        conn.shutdown(Shutdown::Write).expect("server half-close");
        asked
    });
    let proxy = Proxy::start(any_port_v4(), upstream, ProxyConfig::default()).expect("proxy");
    let mut conn = with_timeouts(
        TcpStream::connect_timeout(&proxy.local_addr(), IO_TIMEOUT).expect("connect"),
    );
    conn.write_all(b"question").expect("ask");
    conn.shutdown(Shutdown::Write).expect("client half-close");
    let answer = read_to_eof(&mut conn).expect("the answer, then end of stream");
    assert_eq!(server.join().expect("server"), b"question");
    assert_eq!(answer, b"answered after your FIN");
    drop(conn);
    let counts = proxy.shutdown();
    assert_eq!(
        (counts.upstream.half_closes, counts.downstream.half_closes),
        (1, 1)
    );
}

/// A slow reader backs the sender up instead of filling the proxy's memory:
/// with nobody reading downstream, the server's writes stop being taken,
/// while the proxy holds no more than its buffer.
#[test]
fn a_reader_that_stops_reading_backs_the_writer_up() {
    let (listener, upstream) = listener();
    let server = thread::spawn(move || {
        let conn = accept_one(&listener);
        conn.set_write_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0usize;
        // Bounded: at most 256 MiB, far past any kernel buffer; the write
        // timeout ends it long before.
        for _ in 0..4_096 {
            match (&conn).write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        written
    });
    let proxy = Proxy::start(any_port_v4(), upstream, ProxyConfig::default()).expect("proxy");
    let conn = with_timeouts(
        TcpStream::connect_timeout(&proxy.local_addr(), IO_TIMEOUT).expect("connect"),
    );
    let written = server.join().expect("server");
    assert!(
        written < 64 * 1024 * 1024,
        "{written} bytes were taken with nobody reading"
    );
    let counts = proxy.counts();
    drop(conn);
    assert!(counts.downstream.bytes <= written as u64);
    proxy.shutdown();
}
