//! sockstep's own clients through each fault of the proxy, against sockstep's
//! own servers: each fails, or recovers, exactly as its documentation says.
//!
//! The TCP client ([`client::socket`] + [`FrameReader`]) talks to the [`Echo`]
//! server; the HTTP client ([`Client`], [`client::get`](http_get)) to a
//! [`Router`]. Each test puts one fault between them and checks the error
//! kind a program would match on: [`ErrorKind::TimedOut`] within the read
//! timeout for a stall, [`ErrorKind::ConnectionReset`] for a reset,
//! [`ErrorKind::TruncatedFrame`] or an HTTP 400 for a cut stream (never a
//! short message handed out as a whole one), [`ErrorKind::ConnectionRefused`]
//! for a refusing proxy — and the HTTP client's one retry when a kept
//! connection is reset before any byte of the answer. Timing is checked only
//! from below (a delay is at least what was asked), except the loose "no
//! hang" bound of [`IO_TIMEOUT`]: the machine is shared and noisy.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, TIMEOUTS, any_port_v4, config, serve, wait_until};
use sockstep::http::client::{self as http_client, Client};
use sockstep::http::{Response, Router};
use sockstep::tcp::framing::{FrameReader, FrameWriter, Framing};
use sockstep::tcp::handlers::Echo;
use sockstep::tcp::serve::Server;
use sockstep::tcp::{Connection, Timeouts, client};
use sockstep::testkit::proxy::{Direction, Fault, Proxy, ProxyConfig};
use sockstep::trace::Trace;
use sockstep::{ErrorKind, Step};

use http_client::get as http_get;

/// The read timeout the stall tests wait out.
const SHORT: Duration = Duration::from_millis(300);

fn echo_server() -> Server {
    serve(16, config(16), Echo, &Trace::off())
}

/// A router with `/` (a short answer) and `/big` (a 4,000-byte body).
fn http_server() -> Server {
    let router = Router::new()
        .route("GET", "/", |_: &_| Response::text(200, "hello"))
        .route("GET", "/big", |_: &_| {
            Response::text(200, "x".repeat(4_000))
        })
        .route("POST", "/", |_: &_| Response::text(200, "posted"));
    serve(16, config(16), router, &Trace::off())
}

fn proxy_to(server: &Server) -> Proxy {
    Proxy::start(any_port_v4(), server.local_addr(), ProxyConfig::default()).expect("proxy")
}

fn connect_with(addr: SocketAddr, timeouts: Timeouts) -> Connection {
    client::socket(addr, &Trace::off())
        .timeouts(timeouts)
        .connect(IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// A framed conversation over one connection: messages out, messages back.
struct Framed {
    writer: FrameWriter<Connection>,
    reader: FrameReader<Connection>,
}

impl Framed {
    fn connect(addr: SocketAddr, timeouts: Timeouts) -> Framed {
        let conn = connect_with(addr, timeouts);
        let writer = FrameWriter::new(conn.try_clone().expect("clone"), Framing::LengthPrefixed);
        Framed {
            writer,
            reader: FrameReader::new(conn, Framing::LengthPrefixed),
        }
    }

    fn round_trip(&mut self, msg: &[u8]) -> Result<Option<Vec<u8>>, sockstep::Error> {
        self.writer.write_frame(msg)?;
        self.reader.read_frame()
    }
}

fn url(proxy: &Proxy, path: &str) -> String {
    format!("http://{}{path}", proxy.local_addr())
}

#[test]
fn latency_delays_each_round_trip_by_at_least_both_delays() {
    let server = echo_server();
    let proxy = proxy_to(&server);
    let mut framed = Framed::connect(proxy.local_addr(), TIMEOUTS);
    assert_eq!(
        framed.round_trip(b"warm").expect("round trip").as_deref(),
        Some(&b"warm"[..])
    );
    // Added while the connection is open: it applies from the next bytes.
    let (up, down) = (Duration::from_millis(60), Duration::from_millis(40));
    let latency = |delay| Fault::Latency {
        delay,
        jitter: Duration::from_millis(10),
    };
    proxy
        .add_fault("up", Direction::Upstream, latency(up))
        .expect("fault");
    proxy
        .add_fault("down", Direction::Downstream, latency(down))
        .expect("fault");
    let started = Instant::now();
    let echoed = framed.round_trip(b"hello").expect("round trip");
    let took = started.elapsed();
    assert_eq!(echoed.as_deref(), Some(&b"hello"[..]));
    assert!(took >= up + down, "a round trip took only {took:?}");
    // Removed: the next round trip owes the proxy nothing (not timed: only
    // lower bounds are checked on this machine).
    assert!(proxy.remove_fault("up") && proxy.remove_fault("down"));
    assert_eq!(
        framed.round_trip(b"fast").expect("round trip").as_deref(),
        Some(&b"fast"[..])
    );
    drop(framed);
    let counts = proxy.shutdown();
    assert!(
        counts.upstream.delayed >= 1 && counts.downstream.delayed >= 1,
        "{counts:?}"
    );
    server.shutdown();
}

#[test]
fn a_stall_is_timed_out_by_the_client_then_removing_it_delivers_everything_intact() {
    let server = echo_server();
    let proxy = proxy_to(&server);
    let timeouts = Timeouts {
        read: Some(SHORT),
        write: Some(IO_TIMEOUT),
    };
    let mut framed = Framed::connect(proxy.local_addr(), timeouts);
    proxy
        .add_fault(
            "stall",
            Direction::Downstream,
            Fault::Timeout { close_after: None },
        )
        .expect("fault");
    let message = vec![42u8; 10_000];
    let started = Instant::now();
    let e = framed
        .round_trip(&message)
        .expect_err("no answer gets through a stall");
    let took = started.elapsed();
    assert_eq!(e.kind(), &ErrorKind::TimedOut, "{e}");
    assert!(took >= SHORT, "timed out after only {took:?}");
    assert!(took < IO_TIMEOUT, "hung for {took:?}");
    // The stall lost nothing: the echo waited in the proxy and the kernels.
    assert!(proxy.remove_fault("stall"));
    let frame = framed.reader.read_frame().expect("the held answer");
    assert_eq!(frame, Some(message), "the whole message, not part of it");
    drop(framed);
    let counts = proxy.shutdown();
    assert_eq!(counts.downstream.stalls, 1);
    assert_eq!(counts.downstream.timeouts, 0, "never closed");
    server.shutdown();
}

#[test]
fn a_timeout_with_close_after_ends_the_connection_and_http_says_so() {
    let server = http_server();
    let proxy = proxy_to(&server);
    let close_after = Duration::from_millis(200);
    proxy
        .add_fault(
            "cut",
            Direction::Upstream,
            Fault::Timeout {
                close_after: Some(close_after),
            },
        )
        .expect("fault");
    let started = Instant::now();
    let e = http_get(&url(&proxy, "/")).expect_err("the request never reached the server");
    let took = started.elapsed();
    // Closed before a byte of the answer: an HTTP error (400, the message
    // never completed), not a timeout and not an empty response.
    assert!(
        matches!(e.kind(), ErrorKind::Http { status: 400, .. }),
        "{e}"
    );
    assert!(took >= close_after, "closed after only {took:?}");
    assert!(took < IO_TIMEOUT, "hung for {took:?}");
    let counts = proxy.shutdown();
    assert_eq!(counts.upstream.timeouts, 1);
    server.shutdown();
}

#[test]
fn a_reset_peer_reaches_the_tcp_client_as_connection_reset() {
    let server = echo_server();
    let proxy = proxy_to(&server);
    proxy
        .add_fault(
            "rst",
            Direction::Upstream,
            Fault::ResetPeer { after_bytes: 0 },
        )
        .expect("fault");
    let mut framed = Framed::connect(proxy.local_addr(), TIMEOUTS);
    let started = Instant::now();
    let e = framed.round_trip(b"are you there?").expect_err("reset");
    assert_eq!(e.kind(), &ErrorKind::ConnectionReset, "{e}");
    assert!(started.elapsed() < IO_TIMEOUT, "the reset came late");
    drop(framed);
    let counts = proxy.shutdown();
    assert_eq!(counts.upstream.resets, 1);
    assert_eq!(counts.upstream.bytes, 0, "the server was sent nothing");
    server.shutdown();
}

#[test]
fn limit_data_cuts_a_frame_and_the_reader_reports_it_truncated() {
    let server = echo_server();
    let proxy = proxy_to(&server);
    proxy
        .add_fault("cap", Direction::Downstream, Fault::LimitData { bytes: 50 })
        .expect("fault");
    let mut framed = Framed::connect(proxy.local_addr(), TIMEOUTS);
    let e = framed
        .round_trip(&[1u8; 200])
        .expect_err("only 50 bytes come back");
    // 50 of the frame's 204 bytes (4 of length prefix, 46 of the message):
    // reported as a cut frame, never handed out as a short message.
    assert_eq!(e.kind(), &ErrorKind::TruncatedFrame { got: 50 }, "{e}");
    assert_eq!(e.step(), Step::Frame);
    drop(framed);
    let counts = proxy.shutdown();
    assert_eq!((counts.downstream.limits, counts.downstream.bytes), (1, 50));
    server.shutdown();
}

#[test]
fn limit_data_cuts_an_http_response_into_an_error_not_a_short_body() {
    let server = http_server();
    let proxy = proxy_to(&server);
    proxy
        .add_fault(
            "cap",
            Direction::Downstream,
            Fault::LimitData { bytes: 1_000 },
        )
        .expect("fault");
    let e = http_get(&url(&proxy, "/big")).expect_err("the body is cut");
    assert!(
        matches!(e.kind(), ErrorKind::Http { status: 400, .. }),
        "{e}"
    );
    // A response that fits is untouched.
    assert_eq!(http_get(&url(&proxy, "/")).expect("small").body, b"hello");
    let counts = proxy.shutdown();
    assert_eq!(
        counts.downstream.limits, 1,
        "only the big answer met the limit"
    );
    server.shutdown();
}

/// A keep-alive HTTP client that has made one request through `proxy` and
/// kept its connection, and how many bytes that request was.
fn kept_alive(proxy: &Proxy) -> (Client, u64) {
    let mut client = Client::new();
    assert_eq!(client.get(&url(proxy, "/")).expect("first").status, 200);
    assert!(wait_until(IO_TIMEOUT, || proxy.counts().upstream.bytes > 0));
    (client, proxy.counts().upstream.bytes)
}

#[test]
fn the_http_client_retries_once_when_its_kept_connection_is_reset_before_any_byte() {
    let server = http_server();
    let proxy = proxy_to(&server);
    let (mut client, request) = kept_alive(&proxy);
    // One and a half requests pass on each connection: the kept one is reset
    // in the middle of the second request, before any byte of its answer; a
    // new connection carries one request well within the limit.
    proxy
        .add_fault(
            "rst",
            Direction::Upstream,
            Fault::ResetPeer {
                after_bytes: request * 3 / 2,
            },
        )
        .expect("fault");
    let second = client
        .get(&url(&proxy, "/"))
        .expect("retried on a new connection");
    assert_eq!(
        (second.status, second.body.as_slice()),
        (200, &b"hello"[..])
    );
    assert_eq!(client.connections_opened(), 2, "exactly one retry");
    assert_eq!(proxy.counts().upstream.resets, 1);
    drop(client);
    proxy.shutdown();
    server.shutdown();
}

#[test]
fn the_http_client_does_not_retry_a_post_or_a_fresh_connection() {
    let server = http_server();
    let proxy = proxy_to(&server);
    let (mut client, request) = kept_alive(&proxy);
    proxy
        .add_fault(
            "rst",
            Direction::Upstream,
            Fault::ResetPeer {
                after_bytes: request,
            },
        )
        .expect("fault");
    // POST is not idempotent: a reset kept connection is an error, not a retry.
    let e = client
        .post(&url(&proxy, "/"), "text/plain", b"once")
        .expect_err("reset");
    assert_eq!(e.kind(), &ErrorKind::ConnectionReset, "{e}");
    assert_eq!(client.connections_opened(), 1);
    // Every connection reset at its first byte: a fresh one is not retried either.
    proxy
        .add_fault(
            "rst",
            Direction::Upstream,
            Fault::ResetPeer { after_bytes: 0 },
        )
        .expect("replace");
    let e = http_get(&url(&proxy, "/")).expect_err("reset");
    assert_eq!(e.kind(), &ErrorKind::ConnectionReset, "{e}");
    assert_eq!(proxy.counts().upstream.resets, 2);
    drop(client);
    proxy.shutdown();
    server.shutdown();
}

#[test]
fn a_refusing_proxy_is_refused_at_connect_and_open_connections_carry_on() {
    let server = echo_server();
    let proxy = proxy_to(&server);
    let mut open = Framed::connect(proxy.local_addr(), TIMEOUTS);
    assert_eq!(
        open.round_trip(b"before").expect("echo").as_deref(),
        Some(&b"before"[..])
    );
    proxy.set_refusing(true).expect("refuse");
    assert!(proxy.is_refusing());
    let e = client::socket(proxy.local_addr(), &Trace::off())
        .connect(IO_TIMEOUT)
        .expect_err("refused");
    assert_eq!(
        (e.kind(), e.step()),
        (&ErrorKind::ConnectionRefused, Step::Connect),
        "{e}"
    );
    let e = http_get(&url(&proxy, "/")).expect_err("refused");
    assert_eq!(e.kind(), &ErrorKind::ConnectionRefused, "{e}");
    assert_eq!(
        open.round_trip(b"during").expect("echo").as_deref(),
        Some(&b"during"[..])
    );
    proxy.set_refusing(false).expect("accept again");
    let mut again = Framed::connect(proxy.local_addr(), TIMEOUTS);
    assert_eq!(
        again.round_trip(b"after").expect("echo").as_deref(),
        Some(&b"after"[..])
    );
    drop((open, again));
    let counts = proxy.shutdown();
    assert_eq!(
        counts.connections, 2,
        "the refused ones never reached the proxy"
    );
    server.shutdown();
}

#[test]
fn starting_refused_gives_a_known_port_that_refuses() {
    let server = echo_server();
    let config = ProxyConfig {
        refuse: true,
        ..ProxyConfig::default()
    };
    let proxy = Proxy::start(any_port_v4(), server.local_addr(), config).expect("proxy");
    let e = client::socket(proxy.local_addr(), &Trace::off())
        .connect(IO_TIMEOUT)
        .expect_err("refused");
    assert_eq!(e.kind(), &ErrorKind::ConnectionRefused, "{e}");
    proxy.set_refusing(false).expect("accept");
    let mut framed = Framed::connect(proxy.local_addr(), TIMEOUTS);
    assert_eq!(
        framed.round_trip(b"hi").expect("echo").as_deref(),
        Some(&b"hi"[..])
    );
    drop(framed);
    proxy.shutdown();
    server.shutdown();
}

#[test]
fn sliced_both_ways_every_frame_and_every_http_answer_still_arrives_whole() {
    let server = echo_server();
    let proxy = proxy_to(&server);
    let slicer = Fault::Slicer {
        min: 1,
        max: 3,
        pause: Duration::from_micros(200),
    };
    proxy
        .add_fault("cut", Direction::Both, slicer.clone())
        .expect("fault");
    let mut framed = Framed::connect(proxy.local_addr(), TIMEOUTS);
    for i in 0..20u8 {
        let msg = vec![i; usize::from(i) * 5];
        assert_eq!(framed.round_trip(&msg).expect("round trip"), Some(msg));
    }
    drop(framed);
    let counts = proxy.shutdown();
    assert!(
        counts.upstream.slices > 20 && counts.downstream.slices > 20,
        "{counts:?}"
    );
    server.shutdown();

    let server = http_server();
    let proxy = proxy_to(&server);
    proxy
        .add_fault("cut", Direction::Both, slicer)
        .expect("fault");
    let response = http_get(&url(&proxy, "/")).expect("a response in pieces");
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"hello"[..])
    );
    proxy.shutdown();
    server.shutdown();
}

#[test]
fn bandwidth_takes_at_least_the_bytes_over_the_rate() {
    let server = echo_server();
    let proxy = proxy_to(&server);
    let rate = 100_000;
    proxy
        .add_fault(
            "thin",
            Direction::Downstream,
            Fault::Bandwidth {
                bytes_per_second: rate,
            },
        )
        .expect("fault");
    let mut framed = Framed::connect(proxy.local_addr(), TIMEOUTS);
    let message = vec![9u8; 30_000];
    let started = Instant::now();
    assert_eq!(
        framed.round_trip(&message).expect("round trip"),
        Some(message)
    );
    let took = started.elapsed();
    // The first twentieth of a second's worth goes at once; the rest is paced.
    let at_least = Duration::from_secs_f64((30_004 - rate / 20) as f64 / rate as f64);
    assert!(took >= at_least, "30 kB at {rate} B/s took only {took:?}");
    drop(framed);
    assert!(proxy.shutdown().downstream.throttled > 1);
    server.shutdown();
}

#[test]
fn a_slow_close_holds_the_end_of_stream_back() {
    let server = echo_server();
    let proxy = proxy_to(&server);
    let delay = Duration::from_millis(200);
    proxy
        .add_fault("lag", Direction::Upstream, Fault::SlowClose { delay })
        .expect("fault");
    let mut conn = connect_with(proxy.local_addr(), TIMEOUTS);
    conn.write_all(b"bye").expect("write");
    let started = Instant::now();
    conn.shutdown_write().expect("half-close");
    // Echo answers, then ends only when it sees our end of stream — late.
    let echoed = common::read_to_eof(&mut conn).expect("echo, then end of stream");
    assert_eq!(echoed, b"bye");
    let took = started.elapsed();
    assert!(took >= delay, "the end of stream came after only {took:?}");
    drop(conn);
    assert_eq!(proxy.shutdown().upstream.slow_closes, 1);
    server.shutdown();
}

#[test]
fn a_fault_added_mid_flight_applies_to_the_open_connection_and_to_new_ones() {
    let server = echo_server();
    let proxy = proxy_to(&server);
    let timeouts = Timeouts {
        read: Some(SHORT),
        write: Some(IO_TIMEOUT),
    };
    let mut old = Framed::connect(proxy.local_addr(), timeouts);
    assert!(old.round_trip(b"1").expect("echo").is_some());
    proxy
        .add_fault(
            "stall",
            Direction::Upstream,
            Fault::Timeout { close_after: None },
        )
        .expect("fault");
    let mut new = Framed::connect(proxy.local_addr(), timeouts);
    for framed in [&mut old, &mut new] {
        let e = framed.round_trip(b"2").expect_err("stalled");
        assert_eq!(e.kind(), &ErrorKind::TimedOut, "{e}");
    }
    proxy.clear_faults();
    assert!(proxy.faults().is_empty());
    for framed in [&mut old, &mut new] {
        assert_eq!(
            framed.reader.read_frame().expect("released").as_deref(),
            Some(&b"2"[..])
        );
    }
    drop((old, new));
    assert_eq!(proxy.shutdown().upstream.stalls, 2);
    server.shutdown();
}

#[test]
fn nothing_listening_upstream_closes_the_client_and_counts_it() {
    let gone = common::free_port_v4();
    let proxy = Proxy::start(any_port_v4(), gone, ProxyConfig::default()).expect("proxy");
    let mut conn = connect_with(proxy.local_addr(), TIMEOUTS);
    // The proxy accepted, could not reach the server, and closed: end of stream.
    assert_eq!(
        common::read_to_eof(&mut conn).map_err(|(_, e)| e.kind()),
        Ok(Vec::new())
    );
    assert!(wait_until(IO_TIMEOUT, || proxy.counts().upstream_failed == 1));
    drop(conn);
    assert_eq!(proxy.shutdown().active, 0);
}

#[test]
fn bad_faults_and_settings_are_refused_naming_the_field() {
    let server = echo_server();
    let proxy = proxy_to(&server);
    let cases = [
        (
            Fault::Bandwidth {
                bytes_per_second: 0,
            },
            "bandwidth",
        ),
        (
            Fault::Slicer {
                min: 5,
                max: 2,
                pause: Duration::ZERO,
            },
            "slicer sizes",
        ),
        (
            Fault::Latency {
                delay: Duration::from_secs(31),
                jitter: Duration::ZERO,
            },
            "latency `delay`",
        ),
    ];
    for (fault, field) in cases {
        let e = proxy
            .add_fault("bad", Direction::Both, fault)
            .expect_err("refused");
        assert!(
            matches!(e.kind(), ErrorKind::InvalidInput(why) if why.starts_with(field)),
            "{e}"
        );
    }
    assert!(proxy.faults().is_empty(), "a refused fault changes nothing");
    let e = proxy
        .add_fault("", Direction::Both, Fault::LimitData { bytes: 1 })
        .expect_err("no name");
    assert!(matches!(e.kind(), ErrorKind::InvalidInput(_)), "{e}");
    let to_itself = Proxy::start(
        proxy.local_addr(),
        proxy.local_addr(),
        ProxyConfig::default(),
    );
    assert!(to_itself.is_err());
    let zero = ProxyConfig {
        max_connections: 0,
        ..ProxyConfig::default()
    };
    let e = Proxy::start(any_port_v4(), server.local_addr(), zero).expect_err("refused");
    assert!(
        matches!(e.kind(), ErrorKind::InvalidInput(why) if why.contains("max_connections")),
        "{e}"
    );
    proxy.shutdown();
    server.shutdown();
}

#[test]
fn shutdown_is_prompt_with_connections_open_and_stalled() {
    let server = echo_server();
    let proxy = proxy_to(&server);
    proxy
        .add_fault(
            "stall",
            Direction::Both,
            Fault::Timeout { close_after: None },
        )
        .expect("fault");
    let conns: Vec<_> = (0..5)
        .map(|_| connect_with(proxy.local_addr(), TIMEOUTS))
        .collect();
    assert!(wait_until(IO_TIMEOUT, || proxy.counts().active == 5));
    let started = Instant::now();
    let counts = proxy.shutdown();
    assert!(started.elapsed() < IO_TIMEOUT, "{:?}", started.elapsed());
    assert_eq!(counts.active, 0);
    drop(conns);
    server.shutdown();
}

#[test]
fn a_reset_behind_a_latency_still_lets_the_first_bytes_through_first() {
    let server = echo_server();
    let proxy = proxy_to(&server);
    let delay = Duration::from_millis(30);
    proxy
        .add_fault(
            "slow",
            Direction::Upstream,
            Fault::Latency {
                delay,
                jitter: Duration::ZERO,
            },
        )
        .expect("fault");
    proxy
        .add_fault(
            "rst",
            Direction::Upstream,
            Fault::ResetPeer { after_bytes: 5 },
        )
        .expect("fault");
    let mut conn = connect_with(proxy.local_addr(), TIMEOUTS);
    conn.write_all(b"12345 and the rest").expect("write");
    assert!(wait_until(IO_TIMEOUT, || proxy.counts().upstream.resets == 1));
    let counts = proxy.shutdown();
    assert_eq!(
        counts.upstream.bytes, 5,
        "the first 5 bytes were owed to the server"
    );
    drop(conn);
    server.shutdown();
}

#[test]
fn refusing_right_after_accepting_again_still_refuses() {
    let server = echo_server();
    let proxy = proxy_to(&server);
    for _ in 0..5 {
        proxy.set_refusing(true).expect("refuse");
        proxy.set_refusing(false).expect("accept");
        proxy.set_refusing(true).expect("refuse again at once");
        let e = client::socket(proxy.local_addr(), &Trace::off())
            .connect(IO_TIMEOUT)
            .expect_err("refused");
        assert_eq!(e.kind(), &ErrorKind::ConnectionRefused, "{e}");
        proxy.set_refusing(false).expect("accept");
    }
    let mut framed = Framed::connect(proxy.local_addr(), TIMEOUTS);
    assert_eq!(
        framed.round_trip(b"ok").expect("echo").as_deref(),
        Some(&b"ok"[..])
    );
    drop(framed);
    proxy.shutdown();
    server.shutdown();
}
