//! The HTTP server over real loopback sockets: each connection's life.
//!
//! The clients here are raw `TcpStream`s writing hand-made bytes, so every test
//! sees exactly what the server wrote and when it closed. What they pin down:
//! keep-alive and every way a connection ends (`Connection: close`, HTTP/1.0,
//! `keep_alive: false`, `max_requests`, idle), pipelining, `HEAD`, routing (404,
//! 405, absolute-form targets, query strings), chunked request bodies,
//! `Expect: 100-continue`, a panicking route, the status page, the three
//! deadlines against slow clients, the lingering close that keeps a `413` from
//! being destroyed by a reset, and `Action::Switch` handing the connection over.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, read_to_eof, serve, wait_until};
use sockstep::http::server::{self, HttpStats};
use sockstep::http::{
    Action, HttpConfig, Limits, Parsed, Request, Response, Router, parse_request, parse_response,
    write_chunked,
};
use sockstep::tcp::Connection;
use sockstep::tcp::serve::Server;
use sockstep::trace::Trace;

/// The deadlines of [`fast`]: short, so the timeout tests take a fraction of a second.
const DEADLINE: Duration = Duration::from_millis(300);

/// How late a deadline may fire on a busy machine before the test calls it a bug.
const SLACK: Duration = Duration::from_millis(1_500);

/// An [`HttpConfig`] whose idle, head and body deadlines are all [`DEADLINE`].
fn fast() -> HttpConfig {
    HttpConfig {
        idle_timeout: DEADLINE,
        head_timeout: DEADLINE,
        body_timeout: DEADLINE,
        ..HttpConfig::default()
    }
}

/// The routes most tests use.
fn routes() -> Router {
    Router::new()
        .route("GET", "/hello", |_: &Request| {
            Response::text(200, "hello\n")
        })
        .route("POST", "/echo", server::echo)
        .route("GET", "/echo", server::echo)
        .route("GET", "/chunked", |_: &Request| {
            Response::text(200, "sent in chunks\n").with_header("Transfer-Encoding", "chunked")
        })
        .route("GET", "/panic", |_: &Request| -> Response {
            panic!("this route panics on purpose")
        })
        .route("GET", "/lines", switch_to_line_echo)
        .status_page("/status")
}

/// Serves `router` on an ephemeral loopback port; the returned clone reads its stats.
fn start(router: Router) -> (Server, Router) {
    let handle = router.clone();
    (serve(16, common::config(16), router, &Trace::off()), handle)
}

/// A hand-written client: a plain std socket with a timeout on every read and write.
fn raw(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Reads one response to a `method` request; bytes past it stay in `buf`.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>, method: &str) -> Response {
    let mut chunk = [0; 16 * 1024];
    loop {
        match parse_response(buf, method, &Limits::default()) {
            Ok(Parsed::Complete { message, consumed }) => {
                buf.drain(..consumed);
                return message;
            }
            Ok(Parsed::Partial) => {}
            Err(e) => panic!("{e}: {:?}", String::from_utf8_lossy(buf)),
        }
        let n = stream
            .read(&mut chunk)
            .unwrap_or_else(|e| panic!("read ({e}) after {:?}", String::from_utf8_lossy(buf)));
        assert!(
            n > 0,
            "end of stream inside a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One request on a fresh connection; the connection comes back for more.
fn exchange(addr: SocketAddr, wire: &[u8]) -> (Response, TcpStream) {
    let mut stream = raw(addr);
    stream.write_all(wire).expect("write");
    let method = std::str::from_utf8(wire)
        .ok()
        .and_then(|w| w.split(' ').next())
        .unwrap_or("GET")
        .to_string();
    let mut buf = Vec::new();
    let response = read_response(&mut stream, &mut buf, &method);
    assert!(buf.is_empty(), "bytes after the response: {buf:?}");
    (response, stream)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// After a response that said `close`: the server closes, and nothing more comes.
fn assert_closed_cleanly(stream: &mut TcpStream) {
    match read_to_eof(stream) {
        Ok(rest) => assert!(rest.is_empty(), "bytes after the last response: {rest:?}"),
        Err((got, e)) => panic!("expected end of stream, got {e} after {got:?}"),
    }
}

fn stats_reach(router: &Router, check: impl Fn(&HttpStats) -> bool) -> HttpStats {
    let held = wait_until(IO_TIMEOUT, || check(&router.stats()));
    let stats = router.stats();
    assert!(held, "stats never got there: {stats:?}");
    stats
}

// ---------------------------------------------------------------------------
// Keeping and closing connections.
// ---------------------------------------------------------------------------

#[test]
fn three_requests_on_one_connection_reuse_it_twice() {
    let (server, router) = start(routes());
    let mut stream = raw(server.local_addr());
    let mut buf = Vec::new();
    for _ in 0..3 {
        stream.write_all(&get("/hello")).expect("write");
        let response = read_response(&mut stream, &mut buf, "GET");
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"hello\n"[..])
        );
        assert_eq!(
            response.headers.get("connection"),
            None,
            "HTTP/1.1 keeps by default"
        );
    }
    drop(stream);
    let stats = stats_reach(&router, |s| s.requests == 3);
    assert_eq!((stats.connections, stats.reused), (1, 2), "{stats:?}");
}

#[test]
fn connection_close_is_answered_with_close_and_the_server_closes() {
    let (server, _) = start(routes());
    let (response, mut stream) = exchange(
        server.local_addr(),
        b"GET /hello HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.headers.get("connection"), Some("close"));
    assert_closed_cleanly(&mut stream);
}

#[test]
fn http10_without_keep_alive_gets_one_response_and_a_close() {
    let (server, _) = start(routes());
    let (response, mut stream) = exchange(server.local_addr(), b"GET /hello HTTP/1.0\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_eq!(response.headers.get("connection"), Some("close"));
    assert_closed_cleanly(&mut stream);
}

#[test]
fn http10_with_keep_alive_keeps_the_connection_and_says_so() {
    let (server, router) = start(routes());
    let request = b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let (response, mut stream) = exchange(server.local_addr(), request);
    assert_eq!(response.status, 200);
    assert_eq!(response.headers.get("connection"), Some("keep-alive"));
    stream.write_all(request).expect("second request");
    let again = read_response(&mut stream, &mut Vec::new(), "GET");
    assert_eq!(
        (again.status, again.body.as_slice()),
        (200, &b"hello\n"[..])
    );
    drop(stream);
    assert_eq!(stats_reach(&router, |s| s.requests == 2).reused, 1);
}

#[test]
fn keep_alive_off_closes_every_connection_like_the_seeds_http10() {
    let config = HttpConfig {
        keep_alive: false,
        ..HttpConfig::default()
    };
    let (server, router) = start(routes().with_config(config));
    for _ in 0..2 {
        let (response, mut stream) = exchange(server.local_addr(), &get("/hello"));
        assert_eq!(response.status, 200);
        assert_eq!(response.headers.get("connection"), Some("close"));
        assert_closed_cleanly(&mut stream);
    }
    let stats = stats_reach(&router, |s| s.requests == 2);
    assert_eq!((stats.connections, stats.reused), (2, 0), "{stats:?}");
}

#[test]
fn max_requests_closes_after_the_last_allowed_request() {
    let config = HttpConfig {
        max_requests: 2,
        ..HttpConfig::default()
    };
    let (server, _) = start(routes().with_config(config));
    let mut stream = raw(server.local_addr());
    let mut buf = Vec::new();
    stream.write_all(&get("/hello")).expect("write");
    let first = read_response(&mut stream, &mut buf, "GET");
    assert_eq!(first.headers.get("connection"), None);
    stream.write_all(&get("/hello")).expect("write");
    let last = read_response(&mut stream, &mut buf, "GET");
    assert_eq!(
        (last.status, last.headers.get("connection")),
        (200, Some("close"))
    );
    assert_closed_cleanly(&mut stream);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (server, router) = start(routes());
    let mut stream = raw(server.local_addr());
    let wire = [
        get("/echo?n=1"),
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\ntwo".to_vec(),
        get("/hello"),
        get("/echo?n=4"),
    ]
    .concat();
    stream.write_all(&wire).expect("write all four at once");
    let mut buf = Vec::new();
    let bodies: Vec<Vec<u8>> = (0..4)
        .map(|_| read_response(&mut stream, &mut buf, "GET").body)
        .collect();
    assert!(
        bodies[0].starts_with(b"GET /echo?n=1 HTTP/1.1\r\n"),
        "{:?}",
        bodies[0]
    );
    assert!(
        bodies[1].starts_with(b"POST /echo HTTP/1.1\r\n"),
        "{:?}",
        bodies[1]
    );
    assert!(bodies[1].ends_with(b"\r\n\r\ntwo"), "{:?}", bodies[1]);
    assert_eq!(bodies[2], b"hello\n");
    assert!(
        bodies[3].starts_with(b"GET /echo?n=4 HTTP/1.1\r\n"),
        "{:?}",
        bodies[3]
    );
    drop(stream);
    assert_eq!(stats_reach(&router, |s| s.requests == 4).reused, 3);
}

#[test]
fn an_idle_connection_is_closed_quietly_after_the_idle_timeout() {
    let (server, _) = start(routes().with_config(fast()));
    // Never a byte sent; then once more after one request on a kept connection.
    let mut fresh = raw(server.local_addr());
    let (response, mut kept) = exchange(server.local_addr(), &get("/hello"));
    assert_eq!(response.status, 200);
    for stream in [&mut fresh, &mut kept] {
        let started = Instant::now();
        assert_closed_cleanly(stream);
        let waited = started.elapsed();
        assert!(waited < DEADLINE + SLACK, "closed only after {waited:?}");
    }
}

// ---------------------------------------------------------------------------
// Requests and routing.
// ---------------------------------------------------------------------------

#[test]
fn head_has_the_headers_of_get_but_no_body() {
    let (server, _) = start(routes());
    for path in ["/hello", "/chunked"] {
        let mut stream = raw(server.local_addr());
        let head = format!("HEAD {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).expect("write");
        let all = read_to_eof(&mut stream).expect("the whole answer, then end of stream");
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
        let head_end = text.find("\r\n\r\n").map(|i| i + 4);
        assert_eq!(
            head_end,
            Some(text.len()),
            "HEAD {path} carried a body: {text:?}"
        );
        // The framing headers are those GET would send.
        let (get_answer, _) = exchange(server.local_addr(), &get(path));
        for name in ["content-length", "transfer-encoding", "content-type"] {
            if let Some(value) = get_answer.headers.get(name) {
                assert!(
                    text.contains(&format!(": {value}\r\n")),
                    "{name} missing: {text:?}"
                );
            }
        }
    }
    // On a kept connection, the request after HEAD is read where it starts.
    let mut stream = raw(server.local_addr());
    let wire = [
        b"HEAD /chunked HTTP/1.1\r\nHost: test\r\n\r\n".to_vec(),
        get("/hello"),
    ]
    .concat();
    stream.write_all(&wire).expect("write");
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut stream, &mut buf, "HEAD").status, 200);
    let next = read_response(&mut stream, &mut buf, "GET");
    assert_eq!((next.status, next.body.as_slice()), (200, &b"hello\n"[..]));
}

#[test]
fn a_path_without_a_route_is_404() {
    let (server, _) = start(routes());
    let (response, _) = exchange(server.local_addr(), &get("/nowhere"));
    assert_eq!(response.status, 404);
}

#[test]
fn a_method_without_a_route_is_405_with_allow() {
    let (server, _) = start(routes());
    let (response, _) = exchange(
        server.local_addr(),
        b"DELETE /hello HTTP/1.1\r\nHost: test\r\n\r\n",
    );
    assert_eq!(response.status, 405);
    assert_eq!(response.headers.get("allow"), Some("GET, HEAD"));
    let (response, _) = exchange(
        server.local_addr(),
        b"PUT /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(response.status, 405);
    let allow: Vec<&str> = response
        .headers
        .get("allow")
        .unwrap_or("")
        .split(", ")
        .collect();
    assert_eq!(allow, ["POST", "GET", "HEAD"]);
}

#[test]
fn an_absolute_form_target_is_routed_by_its_path() {
    let (server, _) = start(routes());
    let (response, _) = exchange(
        server.local_addr(),
        b"GET http://example.com/hello HTTP/1.1\r\nHost: example.com\r\n\r\n",
    );
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"hello\n"[..])
    );
}

#[test]
fn the_query_string_is_ignored_in_routing() {
    let (server, _) = start(routes());
    for target in ["/hello?x=1", "/hello?", "/hello?a=/b&c=%2F"] {
        let (response, _) = exchange(server.local_addr(), &get(target));
        assert_eq!(response.status, 200, "{target}");
    }
}

#[test]
fn a_chunked_request_body_is_decoded_before_the_route_sees_it() {
    let (server, _) = start(routes());
    let head = b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n";
    let body = b"hello, chunked world";
    for chunk in [1, 3, 64] {
        let wire = [head.as_slice(), &write_chunked(body, chunk)].concat();
        let (response, _) = exchange(server.local_addr(), &wire);
        assert_eq!(response.status, 200);
        // The echo is the request as the server understood it.
        let Ok(Parsed::Complete { message, .. }) =
            parse_request(&response.body, &Limits::default())
        else {
            panic!(
                "the echo is a request: {:?}",
                String::from_utf8_lossy(&response.body)
            );
        };
        assert_eq!(message.body, body, "chunks of {chunk}");
    }
}

#[test]
fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let (server, _) = start(routes());
    let mut stream = raw(server.local_addr());
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .expect("write the head only");
    let mut buf = Vec::new();
    let interim = read_response(&mut stream, &mut buf, "POST");
    assert_eq!((interim.status, interim.reason.as_str()), (100, "Continue"));
    stream.write_all(b"hello").expect("now the body");
    let last = read_response(&mut stream, &mut buf, "POST");
    assert_eq!(last.status, 200);
    assert!(last.body.ends_with(b"\r\n\r\nhello"), "{:?}", last.body);
}

#[test]
fn a_panicking_route_gets_500_and_the_server_keeps_serving() {
    let (server, router) = start(routes());
    let (response, mut stream) = exchange(server.local_addr(), &get("/panic"));
    assert_eq!(response.status, 500);
    // The same connection still works, and so do new ones.
    stream.write_all(&get("/hello")).expect("write");
    assert_eq!(
        read_response(&mut stream, &mut Vec::new(), "GET").status,
        200
    );
    let (response, _) = exchange(server.local_addr(), &get("/hello"));
    assert_eq!(response.status, 200);
    let stats = router.stats();
    assert_eq!((stats.route_panics, stats.by_class[4]), (1, 1), "{stats:?}");
    drop(stream);
    assert_eq!(
        server.shutdown().panics,
        0,
        "the panic never reached the TCP server"
    );
}

#[test]
fn the_status_page_is_json_with_the_counts() {
    let (server, _) = start(routes());
    let mut stream = raw(server.local_addr());
    let mut buf = Vec::new();
    for path in ["/hello", "/hello", "/nowhere", "/status"] {
        stream.write_all(&get(path)).expect("write");
        let response = read_response(&mut stream, &mut buf, "GET");
        if path != "/status" {
            continue;
        }
        assert_eq!(
            response.headers.get("content-type"),
            Some("application/json")
        );
        let text = String::from_utf8(response.body).expect("UTF-8");
        check_json(&text);
        // The status request itself is counted as read, not yet as answered.
        for (key, value) in [
            ("connections", 1),
            ("requests", 4),
            ("reused", 3),
            ("refused", 0),
            ("2xx", 2),
            ("4xx", 1),
            ("route_panics", 0),
        ] {
            assert_eq!(json_number(&text, key), Some(value), "{key} in {text}");
        }
    }
}

// ---------------------------------------------------------------------------
// Slow and hostile clients: the three deadlines and the lingering close.
// ---------------------------------------------------------------------------

#[test]
fn a_head_trickled_byte_by_byte_gets_408_within_the_head_timeout_while_others_are_served() {
    let (server, router) = start(routes().with_config(fast()));
    let addr = server.local_addr();
    let slow = raw(addr);
    let mut reader = slow.try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let first_byte = Instant::now();
    let trickler = {
        let stop = Arc::clone(&stop);
        let mut slow = slow;
        thread::spawn(move || {
            let head = b"GET /hello HTTP/1.1\r\nHost: test\r\nX-Slow: ";
            // 10 ms a byte, 3 s at most: ten times the head timeout.
            for i in 0..300 {
                let byte = head.get(i).copied().unwrap_or(b'z');
                if stop.load(Ordering::SeqCst) || slow.write_all(&[byte]).is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    thread::sleep(Duration::from_millis(50));
    let (other, _) = exchange(addr, &get("/hello"));
    let other_served = first_byte.elapsed();
    assert_eq!(other.status, 200);

    let response = read_response(&mut reader, &mut Vec::new(), "GET");
    let waited = first_byte.elapsed();
    stop.store(true, Ordering::SeqCst);
    trickler.join().expect("trickler");
    assert_eq!(response.status, 408);
    assert_eq!(response.headers.get("connection"), Some("close"));
    assert!(other_served < waited, "{other_served:?} vs {waited:?}");
    assert!(waited >= DEADLINE, "408 before the deadline: {waited:?}");
    assert!(waited < DEADLINE + SLACK, "408 only after {waited:?}");
    assert_eq!(stats_reach(&router, |s| s.refused == 1).by_class[3], 1);
}

#[test]
fn half_a_body_then_silence_gets_408_after_the_body_timeout() {
    let (server, _) = start(routes().with_config(fast()));
    let mut stream = raw(server.local_addr());
    let started = Instant::now();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nhello")
        .expect("write");
    let response = read_response(&mut stream, &mut Vec::new(), "POST");
    let waited = started.elapsed();
    assert_eq!(response.status, 408);
    assert!(waited >= DEADLINE, "408 before the deadline: {waited:?}");
    assert!(waited < DEADLINE + SLACK, "408 only after {waited:?}");
    assert_closed_cleanly(&mut stream);
}

#[test]
fn a_413_arrives_intact_while_the_client_keeps_sending_its_body() {
    let (server, router) = start(routes());
    let mut stream = raw(server.local_addr());
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 104857600\r\n\r\n")
        .expect("write the head");
    let sent = Arc::new(AtomicUsize::new(0));
    let writer = {
        let mut stream = stream.try_clone().expect("clone");
        let sent = Arc::clone(&sent);
        thread::spawn(move || {
            // 4 MiB at most, sixteen times what a lingering close reads.
            let piece = [b'x'; 64 * 1024];
            for _ in 0..64 {
                if stream.write_all(&piece).is_err() {
                    break;
                }
                sent.fetch_add(piece.len(), Ordering::SeqCst);
            }
        })
    };
    // The server's FIN comes right after the 413, so the client reads end of
    // stream; a plain close(2) with the body unread would send RST instead.
    let got = read_to_eof(&mut stream)
        .unwrap_or_else(|(got, e)| panic!("{e} instead of end of stream, after {got:?}"));
    writer.join().expect("writer");
    match parse_response(&got, "POST", &Limits::default()) {
        Ok(Parsed::Complete { message, consumed }) => {
            assert_eq!(message.status, 413);
            assert_eq!(message.headers.get("connection"), Some("close"));
            assert_eq!(consumed, got.len(), "bytes after the 413");
        }
        other => panic!("{other:?} from {:?}", String::from_utf8_lossy(&got)),
    }
    assert!(
        sent.load(Ordering::SeqCst) > 0,
        "the body was being sent meanwhile"
    );
    assert_eq!(stats_reach(&router, |s| s.refused == 1).by_class[3], 1);
}

#[test]
fn a_request_pipelined_behind_close_ends_in_fin_not_reset() {
    let (server, _) = start(routes());
    let mut stream = raw(server.local_addr());
    let wire = [
        b"GET /hello HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".to_vec(),
        get("/hello"),
        vec![b'x'; 32 * 1024],
    ]
    .concat();
    stream.write_all(&wire).expect("write");
    let mut buf = Vec::new();
    let response = read_response(&mut stream, &mut buf, "GET");
    assert_eq!(
        (response.status, response.headers.get("connection")),
        (200, Some("close"))
    );
    assert!(
        buf.is_empty(),
        "the pipelined request was answered too: {buf:?}"
    );
    // Unread bytes at close(2) would make the kernel send RST; the server drains them.
    assert_closed_cleanly(&mut stream);
}

// ---------------------------------------------------------------------------
// Switching protocols.
// ---------------------------------------------------------------------------

/// `101 Switching Protocols`, then a line echo on the same connection.
fn switch_to_line_echo(_: &Request) -> Action {
    let response = Response::new(101)
        .with_header("Upgrade", "line-echo")
        .with_header("Connection", "Upgrade");
    Action::Switch(
        response,
        Box::new(|conn: &mut Connection, leftover: Vec<u8>| {
            let mut pending = leftover;
            let mut chunk = [0; 1024];
            // Each read is bounded by the connection's read timeout; end of stream ends it.
            loop {
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    conn.write_all(&line)?;
                }
                match conn.read(&mut chunk)? {
                    0 => return Ok(()),
                    n => pending.extend_from_slice(&chunk[..n]),
                }
            }
        }),
    )
}

fn read_until_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    let mut chunk = [0; 1024];
    while !buf.contains(&b'\n') {
        let n = stream.read(&mut chunk).expect("read a line");
        assert!(n > 0, "end of stream before a line: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(0);
    buf.drain(..=end).collect()
}

#[test]
fn switch_hands_the_connection_over_with_the_bytes_after_the_request() {
    // Short HTTP deadlines: the switched protocol must not inherit them.
    let (server, router) = start(routes().with_config(fast()));
    let mut stream = raw(server.local_addr());
    stream
        .write_all(b"GET /lines HTTP/1.1\r\nHost: test\r\nUpgrade: line-echo\r\nConnection: Upgrade\r\n\r\nfirst\n")
        .expect("write the request and a line after it");
    let mut buf = Vec::new();
    let response = read_response(&mut stream, &mut buf, "GET");
    assert_eq!(response.status, 101);
    assert_eq!(response.headers.get("upgrade"), Some("line-echo"));
    assert_eq!(read_until_line(&mut stream, &mut buf), b"first\n");
    // Quiet for longer than any HTTP deadline, then more: still the line echo.
    thread::sleep(DEADLINE * 2);
    stream.write_all(b"second\n").expect("write");
    assert_eq!(read_until_line(&mut stream, &mut buf), b"second\n");
    stream.shutdown(Shutdown::Write).expect("half-close");
    assert_closed_cleanly(&mut stream);
    let stats = router.stats();
    assert_eq!((stats.switched, stats.by_class[0]), (1, 1), "{stats:?}");
}

// ---------------------------------------------------------------------------
// A small JSON checker, enough for the status page.
// ---------------------------------------------------------------------------

/// Panics unless `text` is one JSON value (objects, arrays, strings, numbers,
/// literals) followed only by whitespace.
fn check_json(text: &str) {
    let bytes = text.as_bytes();
    let mut at = 0;
    let end = json_value(bytes, &mut at).and_then(|()| {
        skip_ws(bytes, &mut at);
        (at == bytes.len()).then_some(()).ok_or(at)
    });
    if let Err(at) = end {
        panic!("not JSON at byte {at}: {text}");
    }
}

fn skip_ws(s: &[u8], at: &mut usize) {
    while s.get(*at).is_some_and(|b| b" \t\r\n".contains(b)) {
        *at += 1;
    }
}

fn json_value(s: &[u8], at: &mut usize) -> Result<(), usize> {
    skip_ws(s, at);
    match s.get(*at) {
        Some(b'{') | Some(b'[') => {
            let object = s[*at] == b'{';
            let close = if object { b'}' } else { b']' };
            *at += 1;
            skip_ws(s, at);
            if s.get(*at) == Some(&close) {
                *at += 1;
                return Ok(());
            }
            loop {
                if object {
                    skip_ws(s, at);
                    if s.get(*at) != Some(&b'"') {
                        return Err(*at);
                    }
                    json_value(s, at)?;
                    skip_ws(s, at);
                    if s.get(*at) != Some(&b':') {
                        return Err(*at);
                    }
                    *at += 1;
                }
                json_value(s, at)?;
                skip_ws(s, at);
                match s.get(*at) {
                    Some(b',') => *at += 1,
                    Some(b) if *b == close => {
                        *at += 1;
                        return Ok(());
                    }
                    _ => return Err(*at),
                }
            }
        }
        Some(b'"') => {
            *at += 1;
            while let Some(&b) = s.get(*at) {
                *at += 1;
                match b {
                    b'"' => return Ok(()),
                    b'\\' => *at += 1,
                    0..=0x1f => return Err(*at - 1),
                    _ => {}
                }
            }
            Err(*at)
        }
        Some(b'-' | b'0'..=b'9') => {
            *at += 1;
            while s.get(*at).is_some_and(|b| b"0123456789.eE+-".contains(b)) {
                *at += 1;
            }
            Ok(())
        }
        _ => {
            for literal in [&b"true"[..], b"false", b"null"] {
                if s[*at..].starts_with(literal) {
                    *at += literal.len();
                    return Ok(());
                }
            }
            Err(*at)
        }
    }
}

/// The number after `"key": ` in `text`.
fn json_number(text: &str, key: &str) -> Option<u64> {
    let start = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = text[start..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
