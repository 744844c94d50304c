//! Servers on demand (`testkit::servers`): each behaves as documented, binds
//! only loopback unless told otherwise, keeps its recordings bounded, and
//! leaves no thread behind when its guard is dropped — also while a failing
//! test unwinds.
//!
//! The last test counts the process's threads, so it must run alone: every
//! other test here holds a shared lock, and that one holds it exclusively.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, read_to_eof, wait_until};
use sockstep::ErrorKind;
use sockstep::testkit::http_mock::HttpMock;
use sockstep::testkit::script::{self, Script};
use sockstep::testkit::servers::{self, Options};

static THREAD_COUNTING: RwLock<()> = RwLock::new(());

/// Taken by every test that starts servers, so the thread-counting test can
/// wait until none is running.
fn shared() -> RwLockReadGuard<'static, ()> {
    THREAD_COUNTING
        .read()
        .unwrap_or_else(PoisonError::into_inner)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

fn udp_client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a client");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    socket
}

#[test]
fn an_echo_server_binds_an_ephemeral_loopback_port_and_echoes() {
    let _shared = shared();
    let echo = servers::tcp_echo().expect("echo");
    assert!(echo.addr().ip().is_loopback(), "{}", echo.addr());
    assert_ne!(echo.addr().port(), 0);

    let mut client = connect(echo.addr());
    client.write_all(b"hello, echo").expect("write");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    assert_eq!(read_to_eof(&mut client).expect("read"), b"hello, echo");

    let stats = echo.shutdown();
    assert_eq!((stats.accepted, stats.served), (1, 1), "{stats:?}");
    assert_eq!(stats.threads_started, stats.threads_joined, "{stats:?}");
}

#[test]
fn a_sink_reads_everything_and_answers_nothing() {
    let _shared = shared();
    let sink = servers::tcp_sink().expect("sink");
    let mut client = connect(sink.addr());
    client.write_all(&vec![7u8; 1 << 20]).expect("a megabyte");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    assert_eq!(read_to_eof(&mut client).expect("read"), b"");
    assert!(wait_until(IO_TIMEOUT, || sink.stats().served == 1));
}

#[test]
fn a_fixed_reply_server_answers_every_connection_then_ends_its_side() {
    let _shared = shared();
    let server = servers::tcp_reply("220 ready\r\n").expect("reply server");
    for _ in 0..2 {
        let mut client = connect(server.addr());
        // The client may write before or after reading: the server reads and
        // discards, so this cannot turn its close into a reset.
        client.write_all(b"QUIT\r\n").expect("write");
        assert_eq!(read_to_eof(&mut client).expect("read"), b"220 ready\r\n");
    }
    assert!(wait_until(IO_TIMEOUT, || server.stats().served == 2));
}

#[test]
fn a_recorder_keeps_each_connection_apart_and_in_order() {
    let _shared = shared();
    let recorder = servers::tcp_recorder().expect("recorder");
    let mut first = connect(recorder.addr());
    first.write_all(b"one ").expect("write");
    // Waiting on bytes of a connection that is still open: no sleep needed.
    recorder
        .wait_until(IO_TIMEOUT, |c| c.len() == 1 && c[0].bytes == b"one ")
        .expect("the first bytes");
    first.write_all(b"two").expect("write");
    drop(first);
    let mut second = connect(recorder.addr());
    second.write_all(b"three").expect("write");
    let peer = second.local_addr().expect("local addr");
    drop(second);

    let got = recorder
        .wait_for(2, IO_TIMEOUT)
        .expect("two connections ended");
    assert_eq!(got[0].bytes, b"one two");
    assert_eq!(got[1].bytes, b"three");
    assert_eq!(got[1].peer, peer);
    assert!(got.iter().all(|c| c.ended && c.error.is_none()), "{got:?}");
}

#[test]
fn a_recorder_keeps_no_more_than_its_limits_and_counts_the_rest() {
    let _shared = shared();
    let options = Options {
        max_recorded: 1,
        max_recorded_bytes: 10,
        ..Options::default()
    };
    let recorder = options.tcp_recorder().expect("recorder");
    let mut big = connect(recorder.addr());
    big.write_all(&[b'x'; 100]).expect("write");
    drop(big);
    // Connections are kept in the order their threads start; let the first start first.
    recorder
        .wait_for(1, IO_TIMEOUT)
        .expect("the first connection ended");
    let mut extra = connect(recorder.addr());
    extra.write_all(b"not kept").expect("write");
    drop(extra);

    assert!(wait_until(IO_TIMEOUT, || recorder.stats().served == 2));
    let got = recorder.shutdown();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].bytes, [b'x'; 10]);
    assert_eq!(got[0].bytes_not_kept, 90);
}

#[test]
fn a_recorder_wait_that_times_out_says_what_was_recorded() {
    let _shared = shared();
    let recorder = servers::tcp_recorder().expect("recorder");
    let mut client = connect(recorder.addr());
    client.write_all(b"partial").expect("write");
    recorder
        .wait_until(IO_TIMEOUT, |c| {
            c.first().is_some_and(|c| !c.bytes.is_empty())
        })
        .expect("some bytes");
    let started = Instant::now();
    let e = recorder
        .wait_for(1, Duration::from_millis(100))
        .expect_err("the connection is still open");
    assert!(started.elapsed() < IO_TIMEOUT);
    assert_eq!(e.kind(), &ErrorKind::TimedOut);
    let text = e.to_string();
    assert!(
        text.contains("1 seen") && text.contains(r#"b"partial" (open)"#),
        "{text}"
    );
}

#[test]
fn a_client_that_closes_without_sending_is_recorded_as_a_clean_empty_connection() {
    let _shared = shared();
    let recorder = servers::tcp_recorder().expect("recorder");
    let client = connect(recorder.addr());
    drop(client);
    let got = recorder.wait_for(1, IO_TIMEOUT).expect("ended");
    assert_eq!(got[0].bytes, b"");
    assert_eq!(got[0].error, None, "a plain close is a clean end of stream");
}

#[test]
fn udp_servers_echo_reply_sink_and_record_with_the_sender() {
    let _shared = shared();
    let client = udp_client();
    let mut buf = [0u8; 64];

    let echo = servers::udp_echo().expect("echo");
    client.send_to(b"ping", echo.addr()).expect("send");
    let (n, from) = client.recv_from(&mut buf).expect("echo");
    assert_eq!((&buf[..n], from), (&b"ping"[..], echo.addr()));

    let reply = servers::udp_reply("pong").expect("reply");
    client.send_to(b"anything", reply.addr()).expect("send");
    let (n, _) = client.recv_from(&mut buf).expect("reply");
    assert_eq!(&buf[..n], b"pong");

    let sink = servers::udp_sink().expect("sink");
    client.send_to(b"into the void", sink.addr()).expect("send");
    assert!(wait_until(IO_TIMEOUT, || sink.stats().received == 1));
    assert_eq!(sink.shutdown().replied, 0);

    let recorder = servers::udp_recorder().expect("recorder");
    for i in 0..3u8 {
        client.send_to(&[i], recorder.addr()).expect("send");
    }
    let got = recorder.wait_for(3, IO_TIMEOUT).expect("three datagrams");
    let payloads: Vec<&[u8]> = got.iter().map(|d| d.payload.as_slice()).collect();
    assert_eq!(payloads, [&[0u8][..], &[1], &[2]]);
    let me = client.local_addr().expect("local addr");
    assert!(got.iter().all(|d| d.from == me), "{got:?}");
}

#[test]
fn a_udp_recorder_keeps_no_more_than_its_limit() {
    let _shared = shared();
    let options = Options {
        max_recorded: 2,
        ..Options::default()
    };
    let recorder = options.udp_recorder().expect("recorder");
    let client = udp_client();
    for _ in 0..5 {
        client.send_to(b"d", recorder.addr()).expect("send");
    }
    assert!(wait_until(IO_TIMEOUT, || recorder.stats().received == 5));
    assert_eq!(recorder.not_kept(), 3);
    assert_eq!(recorder.shutdown().len(), 2);
}

#[test]
fn the_bind_option_is_the_only_way_off_the_default_and_a_taken_port_is_an_error() {
    let _shared = shared();
    let held = TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken = held.local_addr().expect("addr");
    let e = Options::default()
        .bind(taken)
        .tcp_echo()
        .expect_err("the port is taken");
    assert_eq!(e.kind(), &ErrorKind::AddressInUse, "{e}");

    let v6: SocketAddr = "[::1]:0".parse().expect("addr");
    if let Ok(echo) = Options::default().bind(v6).tcp_echo() {
        assert!(echo.addr().is_ipv6());
    } // else: no IPv6 loopback on this machine; nothing to check
}

#[test]
fn dropping_a_guard_cuts_off_a_connection_the_test_left_open() {
    let _shared = shared();
    let echo = Options {
        grace: Duration::from_millis(50),
        ..Options::default()
    }
    .tcp_echo()
    .expect("echo");
    let mut client = connect(echo.addr());
    client.write_all(b"x").expect("write");
    let mut one = [0u8; 1];
    client.read_exact(&mut one).expect("echoed");
    let started = Instant::now();
    let stats = echo.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stats.cut_off, 1, "{stats:?}");
    assert_eq!(stats.threads_abandoned, 0, "{stats:?}");
    // The client sees end of stream: the server shut its socket down.
    assert_eq!(client.read(&mut one).expect("eof"), 0);
}

/// The threads whose names say sockstep started them (`sockstep-accept-…`,
/// `sockstep-conn-…`, `sockstep-udp-…`), as the kernel lists this process's threads.
fn sockstep_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with("sockstep-"))
        .count()
}

#[test]
fn guards_dropped_while_a_test_panics_shut_down_cleanly_and_leave_no_thread() {
    // Alone: no other test's servers may come and go while threads are counted.
    let _alone = THREAD_COUNTING
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    assert!(
        std::fs::metadata("/proc/self/task").is_ok(),
        "this test counts threads in /proc, which Linux has"
    );
    assert!(
        wait_until(IO_TIMEOUT, || sockstep_threads() == 0),
        "{} sockstep threads before the test started",
        sockstep_threads()
    );

    // A connection left open across the panic: the drop must cut it off.
    let mut left_open: Option<TcpStream> = None;
    let mut during = 0;
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let echo = servers::tcp_echo().expect("echo");
        let _recorder = servers::tcp_recorder().expect("recorder");
        let _udp = servers::udp_echo().expect("udp");
        let scripted =
            script::serve(Script::new().wait(Duration::from_secs(60))).expect("scripted");
        let _mock = HttpMock::start().expect("mock");
        let mut client = connect(echo.addr());
        client.write_all(b"x").expect("write");
        let mut one = [0u8; 1];
        client.read_exact(&mut one).expect("echoed");
        left_open = Some(client);
        // A script in the middle of a long wait when the panic comes.
        let _waiting = connect(scripted.addr());
        // Accept threads of 5 servers (4 TCP and the UDP one), and connection
        // threads for the echo and the script (started just after the accept).
        wait_until(IO_TIMEOUT, || sockstep_threads() >= 7);
        during = sockstep_threads();
        panic!("the test under test fails here");
    }));
    let started = Instant::now();

    let payload = outcome.expect_err("the closure panicked");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"the test under test fails here"),
        "the one panic, not a second one from a drop"
    );
    assert!(
        during >= 7,
        "{during} sockstep threads while the servers ran"
    );
    assert!(
        wait_until(IO_TIMEOUT, || sockstep_threads() == 0),
        "{} sockstep threads left after the guards were dropped",
        sockstep_threads()
    );
    assert!(started.elapsed() < IO_TIMEOUT);
    // The connection left open was shut down by the server, not left hanging.
    let mut client = left_open.expect("the client connection");
    let mut buf = [0u8; 8];
    match client.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("expected end of stream from the stopped server, got {other:?}"),
    }
}
