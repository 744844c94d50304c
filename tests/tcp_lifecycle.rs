//! The TCP lifecycle, step by step, against the real loopback.
//!
//! The server goes socket → bind → listen → accept, the client goes socket →
//! connect, and both read and write. Each test pins down one thing a reader of
//! `src/tcp/` is promised: the steps work on IPv4 and IPv6, port 0 comes back
//! as the real port, the errors name the step and the endpoint and carry a
//! hint, half-close works both ways, timeouts are called timeouts, retrying
//! connects wait for a late server but not forever, a panicking handler does
//! not take the server down, and `max_lifetime` stops a client that trickles.

mod common;

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    IO_TIMEOUT, TIMEOUTS, any_port_v4, config, connect, free_port_v4, read_to_eof, wait_until,
};
use sockstep::tcp::client::{self, Retry};
use sockstep::tcp::handlers::{Echo, Handler};
use sockstep::tcp::serve::ServeConfig;
use sockstep::tcp::server;
use sockstep::tcp::{Connection, Timeouts};
use sockstep::trace::{Recorder, Trace};
use sockstep::{Error, ErrorKind, Side, Step};

/// Runs one conversation through every step on `addr` (port 0) and checks
/// what each step reports.
fn steps_in_order(addr: SocketAddr) {
    let recorder = Recorder::new();
    let trace = recorder.trace();

    let socket = server::socket(addr, &trace);
    assert_eq!(socket.addr(), addr);
    let bound = socket.bind().expect("bind");
    let listening = bound.listen(4);
    let server_addr = listening.local_addr();
    assert_eq!(server_addr.ip(), addr.ip());

    let mut client = connect(server_addr, &trace);
    let mut accepted = listening.accept().expect("accept");
    accepted.set_timeouts(TIMEOUTS).expect("timeouts");

    // The connection both sides hold is one socket pair: each end's local
    // address is the other's peer, and the server end keeps the listening port.
    assert_eq!(client.peer_addr(), server_addr);
    assert_eq!(accepted.local_addr(), server_addr);
    assert_eq!(accepted.peer_addr(), client.local_addr());
    assert_eq!(accepted.side(), Side::Server);
    assert_eq!(client.side(), Side::Client);

    client.write_all(b"ping").expect("client write");
    let mut buf = [0u8; 4];
    accepted.read_exact(&mut buf).expect("server read");
    assert_eq!(&buf, b"ping");
    accepted.write_all(b"pong").expect("server write");
    client.read_exact(&mut buf).expect("client read");
    assert_eq!(&buf, b"pong");

    let server_steps: Vec<Step> = recorder
        .events()
        .iter()
        .filter(|e| e.side == Side::Server)
        .map(|e| e.step)
        .take(4)
        .collect();
    assert_eq!(
        server_steps,
        [Step::Socket, Step::Bind, Step::Listen, Step::Accept]
    );
}

#[test]
fn server_and_client_steps_work_in_order_on_ipv4() {
    steps_in_order(any_port_v4());
}

#[test]
fn server_and_client_steps_work_in_order_on_ipv6() {
    let addr: SocketAddr = "[::1]:0".parse().expect("literal");
    if let Err(e) = TcpListener::bind(addr) {
        eprintln!(
            "SKIPPED server_and_client_steps_work_in_order_on_ipv6: IPv6 loopback [::1] is unavailable here ({e})"
        );
        return;
    }
    steps_in_order(addr);
}

#[test]
fn port_zero_is_reported_back_as_the_real_port_after_bind() {
    let recorder = Recorder::new();
    let bound = server::socket(any_port_v4(), &recorder.trace())
        .bind()
        .expect("bind");
    let port = bound.local_addr().port();
    assert_ne!(port, 0, "bind must report the port the OS chose");
    assert_eq!(
        bound.local_endpoint().to_string(),
        format!("tcp://127.0.0.1:{port}")
    );

    let bind_event = recorder
        .events()
        .into_iter()
        .find(|e| e.step == Step::Bind)
        .expect("a bind event");
    assert_eq!(bind_event.local.map(|a| a.port()), Some(port));

    // It is the real port: a client reaches the listener there.
    let listening = bound.listen(1);
    assert_eq!(listening.local_addr().port(), port);
    let raw = TcpStream::connect_timeout(&listening.local_addr(), IO_TIMEOUT).expect("raw connect");
    let accepted = listening.accept().expect("accept");
    assert_eq!(accepted.peer_addr(), raw.local_addr().expect("local_addr"));
}

#[test]
fn second_bind_on_a_held_port_names_the_endpoint() {
    let held = server::socket(any_port_v4(), &Trace::off())
        .bind()
        .expect("first bind");
    let port = held.local_addr().port();

    let err = server::socket(held.local_addr(), &Trace::off())
        .bind()
        .expect_err("a second bind on a held port must fail");

    assert_eq!(err.kind(), &ErrorKind::AddressInUse);
    assert_eq!(err.step(), Step::Bind);
    let endpoint = format!("tcp://127.0.0.1:{port}");
    assert_eq!(
        err.endpoint().map(ToString::to_string),
        Some(endpoint.clone())
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("bind() {endpoint} failed")),
        "{text}"
    );
    assert!(
        text.contains("hint: "),
        "the message must carry a hint: {text}"
    );
}

#[test]
fn connect_where_nothing_listens_is_refused_and_names_the_endpoint() {
    let addr = free_port_v4();
    let err = client::socket(addr, &Trace::off())
        .connect(IO_TIMEOUT)
        .expect_err("nothing listens there");

    assert_eq!(err.kind(), &ErrorKind::ConnectionRefused);
    assert_eq!(err.step(), Step::Connect);
    let text = err.to_string();
    assert!(
        text.contains(&format!("tcp://127.0.0.1:{}", addr.port())),
        "{text}"
    );
    assert!(text.contains("hint: "), "{text}");
}

#[test]
fn half_close_lets_the_server_read_to_end_and_still_answer() {
    let listening = server::socket(any_port_v4(), &Trace::off())
        .bind()
        .expect("bind")
        .listen(1);
    let mut client = connect(listening.local_addr(), &Trace::off());
    let mut accepted = listening.accept().expect("accept");
    accepted.set_timeouts(TIMEOUTS).expect("timeouts");

    let question = vec![b'q'; 100_000];
    client.write_all(&question).expect("client write");
    client.shutdown_write().expect("half-close");

    // The server sees every byte, then end of stream (a read of 0)...
    let got = read_to_eof(&mut accepted).expect("server reads to end of stream");
    assert_eq!(got.len(), question.len());
    assert_eq!(
        accepted.read(&mut [0u8; 8]).expect("read after EOF"),
        0,
        "end of stream stays end of stream"
    );

    // ...and can still answer on its own half, which the client reads.
    accepted
        .write_all(b"answer: 100000 bytes")
        .expect("server writes after the client's FIN");
    accepted.close();
    let answer = read_to_eof(&mut client).expect("client reads the answer");
    assert_eq!(answer, b"answer: 100000 bytes");
}

#[test]
fn read_timeout_surfaces_as_timed_out_at_the_read_step() {
    let listening = server::socket(any_port_v4(), &Trace::off())
        .bind()
        .expect("bind")
        .listen(1);
    let read_timeout = Duration::from_millis(200);
    let mut client = client::socket(listening.local_addr(), &Trace::off())
        .timeouts(Timeouts {
            read: Some(read_timeout),
            write: Some(IO_TIMEOUT),
        })
        .connect(IO_TIMEOUT)
        .expect("connect");
    let _silent_server = listening.accept().expect("accept");

    let started = Instant::now();
    let err = client
        .read(&mut [0u8; 16])
        .expect_err("the server never writes");
    assert!(
        started.elapsed() >= read_timeout - Duration::from_millis(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), &ErrorKind::TimedOut, "not WouldBlock: {err}");
    assert_eq!(err.step(), Step::Read);
    assert_eq!(err.endpoint(), Some(&listening.local_endpoint()));

    // Through std's Read trait the kind is TimedOut too, and the step survives.
    let io_err = Read::read(&mut client, &mut [0u8; 16]).expect_err("still silent");
    assert_eq!(io_err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(Error::io(Step::Write, io_err).step(), Step::Read);
}

#[test]
fn connect_with_retry_waits_for_a_server_that_starts_late() {
    let addr = free_port_v4();
    let recorder = Recorder::new();
    let delay = Duration::from_millis(200);
    let (accepted_tx, accepted_rx) = mpsc::channel();
    let started = Instant::now();
    thread::spawn(move || {
        thread::sleep(delay); // the server is late on purpose: that is the scenario
        let result = server::socket(addr, &Trace::off())
            .bind()
            .and_then(|bound| bound.listen(1).accept())
            .map(|conn| conn.peer_addr());
        let _ = accepted_tx.send(result);
    });

    let conn = client::connect_with_retry(addr, &recorder.trace(), TIMEOUTS, Retry::default())
        .unwrap_or_else(|e| panic!("the late server should be reached: {e}"));
    assert!(
        started.elapsed() >= delay,
        "connected before the server existed?"
    );

    let peer = accepted_rx
        .recv_timeout(IO_TIMEOUT)
        .expect("the late server accepts within the timeout")
        .unwrap_or_else(|e| {
            panic!("late server (another process may have taken the reserved port): {e}")
        });
    assert_eq!(peer, conn.local_addr());
    let failed_attempts = recorder
        .events()
        .iter()
        .filter(|e| {
            e.step == Step::Connect && e.detail.as_deref().is_some_and(|d| d.starts_with("failed"))
        })
        .count();
    assert!(
        failed_attempts >= 1,
        "the first attempts must have been refused and retried"
    );
}

#[test]
fn connect_with_retry_gives_up_within_its_total_when_nothing_listens() {
    let addr = free_port_v4();
    let retry = Retry {
        total: Duration::from_millis(400),
        first_pause: Duration::from_millis(10),
        max_pause: Duration::from_millis(100),
    };
    let started = Instant::now();
    let err = client::connect_with_retry(addr, &Trace::off(), TIMEOUTS, retry)
        .expect_err("nothing ever listens");
    let elapsed = started.elapsed();

    assert!(elapsed >= retry.total, "gave up early, after {elapsed:?}");
    assert!(
        elapsed < retry.total + Duration::from_millis(500),
        "overran its total: {elapsed:?}"
    );
    assert_eq!(err.kind(), &ErrorKind::ConnectionRefused);
    assert_eq!(err.step(), Step::Connect);
    let text = err.to_string();
    assert!(
        text.contains(&format!("tcp://127.0.0.1:{}", addr.port())),
        "{text}"
    );
    assert!(text.contains("hint: "), "{text}");
}

/// Panics when the client's first byte is `!`; echoes otherwise.
fn panic_on_bang(conn: &mut Connection) -> Result<(), Error> {
    let mut first = [0u8; 1];
    if conn.read(&mut first)? == 0 {
        return Ok(());
    }
    if first[0] == b'!' {
        panic!("asked to panic by the client");
    }
    conn.write_all(&first)?;
    Echo.handle(conn)
}

#[test]
fn a_handler_panic_is_counted_reported_and_the_next_client_is_served() {
    let server = common::serve(4, config(2), panic_on_bang, &Trace::off());

    let mut doomed = connect(server.local_addr(), &Trace::off());
    doomed.write_all(b"!").expect("write");
    doomed.shutdown_write().expect("half-close");
    // The handler died: the connection ends (EOF, or a reset) without an echo.
    if let Ok(echo) = read_to_eof(&mut doomed) {
        assert!(echo.is_empty(), "a panicked handler echoed {echo:?}");
    }
    assert!(
        wait_until(IO_TIMEOUT, || server.stats().panics == 1),
        "panic not counted: {:?}",
        server.stats()
    );
    let errors = server.recent_errors();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("panicked") && e.contains("asked to panic by the client")),
        "{errors:?}"
    );

    let mut next = connect(server.local_addr(), &Trace::off());
    next.write_all(b"still here?").expect("write");
    next.shutdown_write().expect("half-close");
    assert_eq!(read_to_eof(&mut next).expect("echo"), b"still here?");

    let stats = server.shutdown();
    assert_eq!((stats.panics, stats.served), (1, 1), "{stats:?}");
    assert_eq!(stats.threads_started, stats.threads_joined, "{stats:?}");
}

#[test]
fn max_lifetime_cuts_off_a_client_that_trickles_one_byte_at_a_time() {
    let max_lifetime = Duration::from_millis(300);
    let read_timeout = Duration::from_secs(1);
    let server = common::serve(
        1,
        ServeConfig {
            timeouts: Timeouts {
                read: Some(read_timeout),
                write: Some(IO_TIMEOUT),
            },
            max_lifetime: Some(max_lifetime),
            ..config(2)
        },
        Echo,
        &Trace::off(),
    );

    let mut client = connect(server.local_addr(), &Trace::off());
    let started = Instant::now();
    let mut echoed = 0;
    let mut cut_off = None;
    // A byte every 50 ms never trips the 1 s read timeout; only the lifetime can
    // end this. 60 rounds (3 s) is the bound if nothing does.
    for _ in 0..60 {
        if client.write_all(b"x").is_err() {
            cut_off = Some(started.elapsed());
            break;
        }
        match client.read(&mut [0u8; 1]) {
            Ok(1) => echoed += 1,
            Ok(_) => {
                cut_off = Some(started.elapsed());
                break;
            }
            Err(e) if e.kind() == &ErrorKind::ConnectionReset => {
                cut_off = Some(started.elapsed());
                break;
            }
            Err(e) => panic!("unexpected client error: {e}"),
        }
        thread::sleep(Duration::from_millis(50)); // the trickle itself
    }

    let cut_off = cut_off.expect("the server never cut the trickling client off");
    assert!(echoed >= 1, "the client was served before the cut");
    assert!(
        cut_off >= max_lifetime,
        "cut off before max_lifetime: {cut_off:?}"
    );
    assert!(
        cut_off < read_timeout,
        "cut off by something other than max_lifetime: {cut_off:?}"
    );
    assert!(
        wait_until(IO_TIMEOUT, || server.stats().errors == 1),
        "{:?}",
        server.stats()
    );
    let errors = server.recent_errors();
    assert!(errors.iter().any(|e| e.contains("timed out")), "{errors:?}");
}

/// Answers with what the accepted socket holds: its read and write timeouts,
/// TCP_NODELAY, and its own address, as one line.
fn describe_socket(conn: &mut Connection) -> Result<(), Error> {
    let stream = conn.stream();
    let line = format!(
        "{:?} {:?} {:?} {}\n",
        stream.read_timeout().ok().flatten(),
        stream.write_timeout().ok().flatten(),
        stream.nodelay().ok(),
        conn.local_addr()
    );
    conn.write_all(line.as_bytes())
}

fn described(addr: SocketAddr) -> String {
    let mut client = connect(addr, &Trace::off());
    String::from_utf8(read_to_eof(&mut client).expect("the description")).expect("UTF-8")
}

#[test]
fn every_accepted_connection_has_the_configured_timeouts_and_nodelay() {
    // Set once on the listener and inherited on Linux, set per connection
    // elsewhere: either way the socket a handler gets must hold them.
    for (read, write, nodelay) in [
        (
            Duration::from_millis(1_500),
            Duration::from_millis(2_500),
            true,
        ),
        (
            Duration::from_millis(700),
            Duration::from_millis(900),
            false,
        ),
    ] {
        let server = common::serve(
            4,
            ServeConfig {
                timeouts: Timeouts {
                    read: Some(read),
                    write: Some(write),
                },
                nodelay,
                ..config(2)
            },
            describe_socket,
            &Trace::off(),
        );
        for _ in 0..3 {
            assert_eq!(
                described(server.local_addr()),
                format!(
                    "{:?} {:?} {:?} {}\n",
                    Some(read),
                    Some(write),
                    Some(nodelay),
                    server.local_addr()
                )
            );
        }
        let stats = server.shutdown();
        assert_eq!((stats.served, stats.errors), (3, 0), "{stats:?}");
    }
}

#[test]
fn a_server_left_idle_past_its_read_timeout_still_accepts_and_counts_no_error() {
    // On Linux the listener holds the read timeout too, so accept() itself
    // times out while nobody comes: that must be no error, just another wait.
    let read = Duration::from_millis(100);
    let server = common::serve(
        4,
        ServeConfig {
            timeouts: Timeouts {
                read: Some(read),
                write: Some(IO_TIMEOUT),
            },
            ..config(2)
        },
        Echo,
        &Trace::off(),
    );
    thread::sleep(read * 4);
    let mut client = connect(server.local_addr(), &Trace::off());
    client.write_all(b"after a quiet while").expect("write");
    client.shutdown_write().expect("half-close");
    assert_eq!(
        read_to_eof(&mut client).expect("echo"),
        b"after a quiet while"
    );
    let errors = server.recent_errors();
    let stats = server.shutdown();
    assert_eq!((stats.served, stats.errors), (1, 0), "{stats:?} {errors:?}");
}

#[test]
fn on_every_address_a_connection_still_knows_which_one_the_client_reached() {
    let server = server::socket(SocketAddr::from(([0, 0, 0, 0], 0)), &Trace::off())
        .bind()
        .expect("bind 0.0.0.0:0")
        .listen(4)
        .serve(config(2), describe_socket)
        .expect("serve");
    let reached = SocketAddr::from(([127, 0, 0, 1], server.local_addr().port()));
    let text = described(reached);
    assert!(text.ends_with(&format!(" {reached}\n")), "{text}");
    let stats = server.shutdown();
    assert_eq!(stats.served, 1, "{stats:?}");
}
