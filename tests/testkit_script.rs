//! The scripted server (`testkit::script`): each step does to the connection
//! what it says, a step that cannot be played is reported with where and why,
//! and the three ways of ending — half-close, close, reset — look different
//! to the client, as they do on a real network.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, read_to_eof};
use sockstep::ErrorKind;
use sockstep::testkit::script::{self, Script, Verdict};
use sockstep::testkit::servers::Options;

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

/// The reason of the first outcome, which must be a failure at `step`.
fn failure_at(server: &script::ScriptedServer, step: usize) -> String {
    let outcomes = server.wait_for_outcomes(1, IO_TIMEOUT).expect("an outcome");
    match &outcomes[0].verdict {
        Verdict::Failed { step: s, why, .. } if *s == step => why.clone(),
        other => panic!("expected a failure at step {step}, got {other:?}"),
    }
}

#[test]
fn a_whole_exchange_plays_and_passes() {
    let server = script::serve(
        Script::new()
            .expect_line("HELLO")
            .send("HI\n")
            .expect(b"\x00\x01binary")
            .half_close()
            .expect_eof(),
    )
    .expect("scripted server");
    let mut client = connect(server.addr());
    client.write_all(b"HELLO\r\n").expect("write");
    let mut hi = [0u8; 3];
    client.read_exact(&mut hi).expect("HI");
    assert_eq!(&hi, b"HI\n");
    client.write_all(b"\x00\x01bin").expect("write");
    client.write_all(b"ary").expect("write");
    // The server's half-close: end of stream here, while it still reads.
    assert_eq!(read_to_eof(&mut client).expect("eof"), b"");
    client.shutdown(Shutdown::Write).expect("half-close");
    server.assert_script_passed();
    let outcomes = server.outcomes();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].steps, 5);
    assert_eq!(outcomes[0].peer, client.local_addr().expect("addr"));
}

#[test]
fn a_line_may_end_in_lf_or_crlf() {
    let server = script::serve(Script::new().expect_line("a").expect_line("b")).expect("server");
    let mut client = connect(server.addr());
    client.write_all(b"a\nb\r\n").expect("write");
    server.assert_script_passed();
}

#[test]
fn other_bytes_fail_the_step_at_once_with_a_diff() {
    let server = script::serve(Script::new().send("ok\n").expect(b"HELLO\r\n")).expect("server");
    let mut client = connect(server.addr());
    let started = Instant::now();
    client.write_all(b"HELP").expect("write");
    let why = failure_at(&server, 2);
    // Failed on the wrong byte, not after the 5 s step timeout.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(why.contains("the client sent other bytes"), "{why}");
    assert!(why.contains(r#"expected: b"HELLO\r\n""#), "{why}");
    assert!(why.contains(r#"got:      b"HELP""#), "{why}");
    assert!(why.contains("^ first difference at byte 3"), "{why}");
    let text = server.outcomes()[0].to_string();
    assert!(
        text.contains(r#"failed at step 2 of 2 (expect b"HELLO\r\n")"#),
        "{text}"
    );
}

#[test]
fn a_wrong_line_fails_as_soon_as_it_differs() {
    let server = script::serve(Script::new().expect_line("QUIT")).expect("server");
    let mut client = connect(server.addr());
    client.write_all(b"QUIZ").expect("write");
    let why = failure_at(&server, 1);
    assert!(why.contains("the client sent another line"), "{why}");
    assert!(why.contains("first difference at byte 3"), "{why}");
}

#[test]
fn silence_fails_the_step_after_its_timeout() {
    let script = Script::new()
        .expect("never sent")
        .step_timeout(Duration::from_millis(150));
    let server = script::serve(script).expect("server");
    let _client = connect(server.addr());
    let why = failure_at(&server, 1);
    assert!(why.contains("nothing more arrived within 150ms"), "{why}");
    assert!(why.contains("after 0 of 10 bytes"), "{why}");
}

#[test]
fn an_early_end_of_stream_says_how_far_it_got() {
    let server = script::serve(Script::new().expect("HELLO\r\n")).expect("server");
    let mut client = connect(server.addr());
    client.write_all(b"HE").expect("write");
    client.shutdown(Shutdown::Write).expect("half-close");
    let why = failure_at(&server, 1);
    assert!(why.contains("ended its stream after 2 of 7 bytes"), "{why}");
    assert!(why.contains("got stops at byte 2"), "{why}");
}

#[test]
fn expect_eof_fails_when_the_client_sends_more() {
    let server = script::serve(Script::new().expect_eof()).expect("server");
    let mut client = connect(server.addr());
    client.write_all(b"more").expect("write");
    let why = failure_at(&server, 1);
    assert!(why.contains(r#"the client sent more: b"more""#), "{why}");
}

#[test]
fn reset_sends_rst_and_the_client_read_fails_with_connection_reset() {
    // No expect step: the request stays unread, so the close is abortive.
    let server = script::serve(Script::new().reset()).expect("server");
    let mut client = connect(server.addr());
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    let mut buf = [0u8; 16];
    let result = client.read(&mut buf);
    assert!(
        matches!(&result, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
        "{result:?}"
    );
    server.assert_script_passed();
}

#[test]
fn reset_after_expect_works_when_the_client_sent_more_than_expected() {
    let server = script::serve(Script::new().expect("GET").reset()).expect("server");
    let mut client = connect(server.addr());
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    let mut buf = [0u8; 16];
    let result = client.read(&mut buf);
    assert!(
        matches!(&result, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
        "{result:?}"
    );
    server.assert_script_passed();
}

#[test]
fn reset_without_unread_bytes_fails_and_says_why() {
    let server = script::serve(Script::new().expect("all").reset()).expect("server");
    let mut client = connect(server.addr());
    client.write_all(b"all").expect("write");
    client.shutdown(Shutdown::Write).expect("half-close");
    let why = failure_at(&server, 2);
    assert!(
        why.contains("a reset needs a byte from the client left unread"),
        "{why}"
    );
    assert!(why.contains("FIN, not RST"), "{why}");
    // And the client sees the gentle close instead.
    assert_eq!(read_to_eof(&mut client).expect("eof"), b"");
}

#[test]
fn close_is_gentle_even_when_the_client_sent_bytes_nobody_read() {
    let server = script::serve(Script::new().send("bye\n").close()).expect("server");
    let mut client = connect(server.addr());
    client
        .write_all(b"bytes the script never reads")
        .expect("write");
    // Everything sent, then end of stream — not a reset that loses "bye".
    assert_eq!(read_to_eof(&mut client).expect("bye, then eof"), b"bye\n");
    server.assert_script_passed();
}

#[test]
fn after_a_half_close_the_server_still_reads() {
    let server = script::serve(Script::new().half_close().expect("after")).expect("server");
    let mut client = connect(server.addr());
    assert_eq!(read_to_eof(&mut client).expect("eof"), b"");
    client
        .write_all(b"after")
        .expect("the client can still write");
    server.assert_script_passed();
}

#[test]
fn a_wait_delays_the_next_step() {
    let pause = Duration::from_millis(200);
    let server = script::serve(Script::new().wait(pause).send("late")).expect("server");
    let started = Instant::now();
    let mut client = connect(server.addr());
    assert_eq!(read_to_eof(&mut client).expect("late"), b"late");
    assert!(started.elapsed() >= pause, "{:?}", started.elapsed());
    server.assert_script_passed();
}

#[test]
fn dropping_the_server_ends_a_long_wait_at_once() {
    let server = script::serve(Script::new().wait(Duration::from_secs(600))).expect("server");
    let mut client = connect(server.addr());
    assert!(common::wait_until(IO_TIMEOUT, || server.stats().accepted == 1));
    let started = Instant::now();
    let outcomes = server.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcomes.len(), 1);
    assert!(
        matches!(&outcomes[0].verdict, Verdict::Failed { step: 1, why, .. } if why.contains("shut down during the wait")),
        "{:?}",
        outcomes[0]
    );
    assert_eq!(read_to_eof(&mut client).expect("eof"), b"");
}

#[test]
fn each_connection_plays_its_own_script_and_one_too_many_fails() {
    let server = script::serve_each(vec![
        Script::new().reset(),
        Script::new().expect_line("try 2").send("answer\n"),
    ])
    .expect("server");

    let mut first = connect(server.addr());
    first.write_all(b"try 1\n").expect("write");
    let mut buf = [0u8; 16];
    assert!(first.read(&mut buf).is_err(), "the first attempt is reset");

    let mut second = connect(server.addr());
    second.write_all(b"try 2\n").expect("write");
    assert_eq!(read_to_eof(&mut second).expect("answer"), b"answer\n");
    server.assert_script_passed();

    let third = connect(server.addr());
    let outcomes = server.wait_for_outcomes(3, IO_TIMEOUT).expect("three");
    let why = match &outcomes[2].verdict {
        Verdict::Failed { step: 0, why, .. } => why.clone(),
        other => panic!("{other:?}"),
    };
    assert!(why.contains("no script for connection 2"), "{why}");
    drop(third);
}

#[test]
fn assert_script_passed_panics_with_every_failure() {
    let server = script::serve(Script::new().expect_line("PING")).expect("server");
    let mut client = connect(server.addr());
    client.write_all(b"PONG\n").expect("write");
    let caught = panic::catch_unwind(AssertUnwindSafe(|| server.assert_script_passed()));
    let payload = caught.expect_err("the script failed");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("failed on 1 of 1 connections"),
        "{message}"
    );
    assert!(
        message.contains("failed at step 1 of 1 (expect line b\"PING\")"),
        "{message}"
    );
    assert!(message.contains(r#"got:      b"PO"#), "{message}");
}

#[test]
fn assert_script_passed_panics_when_nobody_connects() {
    let options = Options {
        io_timeout: Duration::from_millis(100),
        ..Options::default()
    };
    let server = options.scripted(Script::new()).expect("server");
    let caught = panic::catch_unwind(AssertUnwindSafe(|| server.assert_script_passed()));
    let message = caught
        .expect_err("no client")
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("no client connected"), "{message}");
}

#[test]
fn scripts_that_could_never_pass_are_refused_before_serving() {
    for bad in [
        Script::new().close().send("too late"),
        Script::new().reset().expect("x"),
        Script::new().expect_line("two\nlines"),
        Script::new().step_timeout(Duration::ZERO),
    ] {
        let e = script::serve(bad.clone()).expect_err("refused");
        assert!(
            matches!(e.kind(), ErrorKind::InvalidInput(_)),
            "{bad:?}: {e}"
        );
    }
    let e = script::serve_each(Vec::new()).expect_err("no scripts");
    assert!(matches!(e.kind(), ErrorKind::InvalidInput(_)), "{e}");
}
