//! Malformed and hostile requests against the HTTP server, over real sockets.
//!
//! `http_wire_props.rs` checks the pure parser's verdicts; this file checks that
//! the server *acts* on them: each hostile request gets its status on the wire,
//! a refused connection is closed cleanly, an endless head is cut off at the
//! limit rather than buffered, and — after every one — a normal request on a
//! fresh connection is still answered. A property test sends arbitrary bytes
//! and checks that every one gets an answer that agrees with the parser, never
//! a hang, and that the server survives all of them.

mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{IO_TIMEOUT, read_to_eof, serve};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sockstep::http::{
    HttpConfig, Limits, Parsed, Request, Response, Router, parse_request, parse_response,
};
use sockstep::tcp::serve::Server;
use sockstep::trace::Trace;

/// A served directory with a secret next to it, removed when dropped.
struct Tree {
    base: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let base = std::env::temp_dir().join(format!(
            "sockstep-http-hostile-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(base.join("root")).expect("mkdir");
        fs::write(base.join("secret.txt"), b"secret\n").expect("write secret");
        fs::write(base.join("root/a.txt"), b"alpha\n").expect("write a.txt");
        Tree { base }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// Deadlines under the client's 5 s: a request the parser wrongly left waiting
/// gets a 408 that names the mistake, rather than a client read timeout.
fn quick() -> HttpConfig {
    HttpConfig {
        idle_timeout: Duration::from_secs(3),
        head_timeout: Duration::from_secs(3),
        body_timeout: Duration::from_secs(3),
        ..HttpConfig::default()
    }
}

/// `/hello`, `/echo` and files at `/files/`.
fn start(tree: &Tree, config: HttpConfig) -> (Server, Router) {
    let router = Router::new()
        .with_config(config)
        .route("GET", "/hello", |_: &Request| {
            Response::text(200, "hello\n")
        })
        .route("POST", "/echo", sockstep::http::server::echo)
        .files("/files/", tree.base.join("root"))
        .expect("a directory");
    let handle = router.clone();
    (serve(16, common::config(16), router, &Trace::off()), handle)
}

fn raw(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

/// Reads one response (to a request that was not `HEAD`); `Err` names what went wrong.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Response, String> {
    let mut chunk = [0; 16 * 1024];
    loop {
        match parse_response(buf, "GET", &Limits::default()) {
            Ok(Parsed::Complete { message, consumed }) => {
                buf.drain(..consumed);
                return Ok(message);
            }
            Ok(Parsed::Partial) => {}
            Err(e) => return Err(format!("{e}: {:?}", String::from_utf8_lossy(buf))),
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("end of stream after {buf:?}")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{e} after {buf:?}")),
        }
    }
}

/// The server still answers a plain request on a fresh connection.
fn assert_still_serving(addr: SocketAddr, after: &str) {
    let mut stream = raw(addr);
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap_or_else(|e| panic!("after {after}: {e}"));
    let response = read_response(&mut stream, &mut Vec::new())
        .unwrap_or_else(|e| panic!("after {after}: {e}"));
    assert_eq!(response.status, 200, "after {after}");
}

// ---------------------------------------------------------------------------
// The catalogue.
// ---------------------------------------------------------------------------

/// One hostile request and what the server must do with it.
struct Case {
    what: &'static str,
    wire: Vec<u8>,
    status: u16,
    /// Refused by the parser: the connection must close after the answer. A
    /// route's answer (405, or 403 from the files) keeps it.
    closes: bool,
    /// Half-close after sending, so the server sees the request end early.
    half_close: bool,
}

fn refused(what: &'static str, wire: impl AsRef<[u8]>, status: u16) -> Case {
    Case {
        what,
        wire: wire.as_ref().to_vec(),
        status,
        closes: true,
        half_close: false,
    }
}

fn answered(what: &'static str, wire: impl AsRef<[u8]>, status: u16) -> Case {
    Case {
        closes: false,
        ..refused(what, wire, status)
    }
}

impl Case {
    fn then_half_close(self) -> Case {
        Case {
            half_close: true,
            ..self
        }
    }
}

const CHUNKED: &str = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

fn chunked(body: &str) -> String {
    format!("{CHUNKED}{body}")
}

fn catalogue() -> Vec<Case> {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9 * 1024));
    let big_head = format!(
        "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    let many_headers: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let many_headers = format!("GET /hello HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n");
    vec![
        // Line endings and folding.
        refused(
            "bare LF after the request line",
            "GET /hello HTTP/1.1\nHost: x\r\n\r\n",
            400,
        ),
        refused(
            "bare LF after a header",
            "GET /hello HTTP/1.1\r\nHost: x\n\r\n",
            400,
        ),
        refused(
            "bare LF as the blank line",
            "GET /hello HTTP/1.1\r\nHost: x\r\n\n",
            400,
        ),
        refused(
            "bare CR inside a header",
            "GET /hello HTTP/1.1\r\nHost: x\rY: z\r\n\r\n",
            400,
        ),
        refused(
            "obs-fold with a space",
            "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n",
            400,
        ),
        refused(
            "obs-fold with a tab",
            "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\t2\r\n\r\n",
            400,
        ),
        // Header field syntax.
        refused(
            "space before the colon",
            "GET /hello HTTP/1.1\r\nHost : x\r\n\r\n",
            400,
        ),
        refused(
            "tab before the colon",
            "GET /hello HTTP/1.1\r\nHost\t: x\r\n\r\n",
            400,
        ),
        refused(
            "header without a colon",
            "GET /hello HTTP/1.1\r\nHost x\r\n\r\n",
            400,
        ),
        refused(
            "empty header name",
            "GET /hello HTTP/1.1\r\n: x\r\nHost: x\r\n\r\n",
            400,
        ),
        refused(
            "bad byte in a header name",
            "GET /hello HTTP/1.1\r\nHo(st: x\r\n\r\n",
            400,
        ),
        refused(
            "NUL in a header value",
            b"GET /hello HTTP/1.1\r\nHost: x\0y\r\n\r\n",
            400,
        ),
        refused(
            "DEL in a header value",
            b"GET /hello HTTP/1.1\r\nHost: x\x7f\r\n\r\n",
            400,
        ),
        refused(
            "ESC in a header value",
            b"GET /hello HTTP/1.1\r\nHost: x\x1b[31m\r\n\r\n",
            400,
        ),
        refused(
            "non-ASCII in a header value",
            "GET /hello HTTP/1.1\r\nHost: é\r\n\r\n",
            400,
        ),
        refused(
            "non-ASCII in a header name",
            "GET /hello HTTP/1.1\r\nHöst: x\r\n\r\n",
            400,
        ),
        // The request line.
        refused(
            "NUL in the target",
            b"GET /hel\0lo HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        refused(
            "NUL in the method",
            b"G\0T /hello HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        refused(
            "control byte in the target",
            b"GET /hel\x01lo HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        refused(
            "tab in the target",
            "GET /hel\tlo HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        refused(
            "non-ASCII in the target",
            "GET /héllo HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        refused(
            "two spaces in the request line",
            "GET  /hello HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        refused(
            "space after the version",
            "GET /hello HTTP/1.1 \r\nHost: x\r\n\r\n",
            400,
        ),
        refused("no version", "GET /hello\r\nHost: x\r\n\r\n", 400),
        refused(
            "lowercase version",
            "GET /hello http/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        refused(
            "blank line before the request",
            "\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        refused("HTTP/2.0", "GET /hello HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        refused("HTTP/1.2", "GET /hello HTTP/1.2\r\nHost: x\r\n\r\n", 505),
        refused("HTTP/0.9", "GET /hello HTTP/0.9\r\n\r\n", 505),
        refused(
            "the HTTP/2 connection preface",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            505,
        ),
        // Host.
        refused("no Host in HTTP/1.1", "GET /hello HTTP/1.1\r\n\r\n", 400),
        refused(
            "two Hosts",
            "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
        ),
        // Content-Length.
        refused(
            "conflicting Content-Length lines",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            400,
        ),
        refused(
            "conflicting Content-Length list",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\nab",
            400,
        ),
        refused(
            "negative Content-Length",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            400,
        ),
        refused(
            "plus-signed Content-Length",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na",
            400,
        ),
        refused(
            "hex Content-Length",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0x1\r\n\r\na",
            400,
        ),
        refused(
            "overflowing Content-Length",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 184467440737095516160\r\n\r\n",
            400,
        ),
        refused(
            "empty Content-Length",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n",
            400,
        ),
        refused(
            "Content-Length over the body limit",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n",
            413,
        ),
        // Transfer-Encoding.
        refused(
            "Content-Length and chunked",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        refused(
            "chunked and Content-Length",
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            400,
        ),
        refused(
            "gzip, chunked",
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
        refused(
            "chunked, gzip",
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            400,
        ),
        refused(
            "identity only",
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
            400,
        ),
        refused(
            "chunked twice",
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            400,
        ),
        refused(
            "chunked in HTTP/1.0",
            "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        // Chunks.
        refused("non-hex chunk size", chunked("zz\r\n"), 400),
        refused("negative chunk size", chunked("-1\r\n"), 400),
        refused(
            "chunk size overflowing 64 bits",
            chunked("1ffffffffffffffff\r\n"),
            400,
        ),
        refused(
            "0x-prefixed chunk size",
            chunked("0x2\r\nhi\r\n0\r\n\r\n"),
            400,
        ),
        refused(
            "chunk data without its CRLF",
            chunked("2\r\nhiXX0\r\n\r\n"),
            400,
        ),
        refused("chunk size over the body limit", chunked("100001\r\n"), 413),
        refused("no final chunk, then close", chunked("2\r\nhi\r\n"), 400).then_half_close(),
        // Cut short.
        refused(
            "body shorter than Content-Length, then close",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello",
            400,
        )
        .then_half_close(),
        refused(
            "head cut short, then close",
            "GET /hello HTTP/1.1\r\nHost: x\r\n",
            400,
        )
        .then_half_close(),
        // Sizes.
        refused("request line over 8 KiB", long_target, 414),
        refused("head over 16 KiB", big_head, 431),
        refused("101 header lines", many_headers, 431),
        // Parsed fine; answered by routing, and the connection is kept.
        answered(
            "lowercase method",
            "get /hello HTTP/1.1\r\nHost: x\r\n\r\n",
            405,
        ),
        answered(
            "unknown method",
            "BREW /hello HTTP/1.1\r\nHost: x\r\n\r\n",
            405,
        ),
        answered(
            "asterisk target",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        answered(
            "target without a slash",
            "GET hello HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        answered(
            "authority-form target",
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            400,
        ),
        // Path traversal against the files.
        answered(
            "dot-dot",
            "GET /files/../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
            403,
        ),
        answered(
            "encoded dot-dot",
            "GET /files/%2e%2e/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
            403,
        ),
        answered(
            "encoded dot-dot-slash",
            "GET /files/%2E%2e%2fsecret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
            403,
        ),
        answered(
            "absolute path",
            "GET /files//etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
            403,
        ),
        answered(
            "backslashes",
            "GET /files/..\\secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
            403,
        ),
        answered(
            "encoded NUL",
            "GET /files/a.txt%00 HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        answered(
            "bad escape",
            "GET /files/%zz HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
    ]
}

#[test]
fn every_hostile_request_gets_its_status_and_the_server_keeps_serving() {
    let cases = catalogue();
    assert!(cases.len() >= 40);
    let tree = Tree::new();
    let (server, router) = start(&tree, quick());
    let addr = server.local_addr();
    for case in &cases {
        let what = case.what;
        let mut stream = raw(addr);
        // A large request may meet a server that has already refused it; the
        // answer is what counts.
        let _ = stream.write_all(&case.wire);
        if case.half_close {
            stream.shutdown(Shutdown::Write).expect("half-close");
        }
        let mut buf = Vec::new();
        let response =
            read_response(&mut stream, &mut buf).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(response.status, case.status, "{what}: {response:?}");
        if case.closes {
            assert_eq!(response.headers.get("connection"), Some("close"), "{what}");
            match read_to_eof(&mut stream) {
                Ok(rest) => assert!(rest.is_empty() && buf.is_empty(), "{what}: bytes after"),
                Err((_, e)) => panic!("{what}: {e} instead of end of stream"),
            }
        }
        drop(stream);
        assert_still_serving(addr, what);
    }
    let refusals = cases.iter().filter(|c| c.closes).count() as u64;
    assert_eq!(router.stats().refused, refusals);
    assert_eq!(server.shutdown().panics, 0);
}

/// Exactly at the limits is still a request: 100 header lines, a line of 8 KiB.
#[test]
fn requests_exactly_at_the_limits_are_served() {
    let tree = Tree::new();
    let (server, _) = start(&tree, quick());
    let limits = Limits::default();
    let lines: String = (1..limits.max_headers)
        .map(|i| format!("X-{i}: v\r\n"))
        .collect();
    let query = "q".repeat(limits.max_request_line - "GET /hello? HTTP/1.1".len());
    for wire in [
        format!("GET /hello HTTP/1.1\r\nHost: x\r\n{lines}\r\n"),
        format!("GET /hello?{query} HTTP/1.1\r\nHost: x\r\n\r\n"),
    ] {
        let mut stream = raw(server.local_addr());
        stream.write_all(wire.as_bytes()).expect("write");
        let response = read_response(&mut stream, &mut Vec::new()).expect("a response");
        assert_eq!(response.status, 200);
    }
}

// ---------------------------------------------------------------------------
// Endless heads: refused at the limit, not buffered.
// ---------------------------------------------------------------------------

/// Sends `start`, then `piece` again and again, looking after each for an answer,
/// until more than `limit` bytes are out; then waits for the answer without
/// sending more. A server that wanted more before refusing would never answer
/// (its head deadline is longer than the client's read timeout), so the test
/// fails. Returns the answer and how many bytes had been sent.
fn feed_until_answered(
    addr: SocketAddr,
    start: &[u8],
    piece: &[u8],
    limit: usize,
) -> (Response, usize) {
    let mut stream = raw(addr);
    stream.write_all(start).expect("write the start");
    let mut sent = start.len();
    stream
        .set_read_timeout(Some(Duration::from_millis(5)))
        .expect("timeout");
    let mut buf = Vec::new();
    let mut chunk = [0; 4096];
    while sent <= limit {
        if stream.write_all(piece).is_err() {
            break;
        }
        sent += piece.len();
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                break;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            _ => break,
        }
    }
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let response = read_response(&mut stream, &mut buf).expect("an answer to the endless head");
    (response, sent)
}

#[test]
fn an_endless_head_is_refused_once_it_crosses_the_limit() {
    let tree = Tree::new();
    let (server, _) = start(&tree, HttpConfig::default());
    let limits = Limits::default();
    let header_line = format!("X-Pad: {}\r\n", "a".repeat(1024 - 9));
    let endless_value = "a".repeat(1024);
    for (what, start, piece, status, limit) in [
        (
            "endless header lines",
            "GET /hello HTTP/1.1\r\nHost: x\r\n",
            header_line.as_str(),
            431,
            limits.max_header_bytes,
        ),
        (
            "one endless header value",
            "GET /hello HTTP/1.1\r\nHost: x\r\nX-Long: ",
            endless_value.as_str(),
            431,
            limits.max_header_bytes,
        ),
        (
            "an endless request line",
            "GET /",
            endless_value.as_str(),
            414,
            limits.max_request_line,
        ),
    ] {
        let (response, sent) = feed_until_answered(
            server.local_addr(),
            start.as_bytes(),
            piece.as_bytes(),
            limit,
        );
        assert_eq!(response.status, status, "{what}");
        assert!(sent > limit, "{what}: refused after only {sent} bytes");
        assert_still_serving(server.local_addr(), what);
    }
}

// ---------------------------------------------------------------------------
// Arbitrary bytes.
// ---------------------------------------------------------------------------

/// Requests the server answers with 200 (or 100 then 200), to mutate.
const VALID: &[&[u8]] = &[
    b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /hello HTTP/1.0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    b"GET /files/a.txt?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
];

/// Replaces, inserts or deletes bytes at the given places.
fn mutate(mut wire: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, byte, op) in edits {
        let at = at % (wire.len() + 1);
        match op {
            0 if at < wire.len() => wire[at] = byte,
            1 => wire.insert(at, byte),
            _ if at < wire.len() => {
                wire.remove(at);
            }
            _ => {}
        }
    }
    wire
}

fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let near_valid = (
        select(VALID),
        vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
    )
        .prop_map(|(wire, edits)| mutate(wire.to_vec(), &edits));
    let interesting = prop_oneof![
        Just(b'\r'),
        Just(b'\n'),
        Just(b' '),
        Just(b':'),
        Just(b'0'),
        Just(b'\0'),
        any::<u8>()
    ];
    prop_oneof![
        vec(any::<u8>(), 0..300),
        near_valid.clone(),
        (select(VALID), vec(interesting, 0..200)).prop_map(|(valid, tail)| [
            valid,
            tail.as_slice()
        ]
        .concat()),
        (near_valid.clone(), near_valid).prop_map(|(a, b)| [a, b].concat()),
    ]
}

/// The status line's code, if `bytes` start with one.
fn first_status(bytes: &[u8]) -> Option<u16> {
    let code = bytes.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[test]
fn any_bytes_get_an_answer_that_agrees_with_the_parser_and_never_a_hang() {
    let tree = Tree::new();
    let (server, _) = start(&tree, quick());
    let addr = server.local_addr();
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&request_bytes(), |bytes| {
        let mut stream = raw(addr);
        stream
            .write_all(&bytes)
            .map_err(|e| TestCaseError::fail(format!("write: {e}")))?;
        // The end of the request is the end of the stream: the server never has to
        // wait out a deadline, so every answer is due at once.
        stream
            .shutdown(Shutdown::Write)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = read_to_eof(&mut stream)
            .map_err(|(got, e)| TestCaseError::fail(format!("{e} (a hang?) after {got:?}")))?;
        let status = first_status(&got);
        let wire = String::from_utf8_lossy(&bytes);
        match parse_request(&bytes, &Limits::default()) {
            _ if bytes.is_empty() => prop_assert!(got.is_empty()),
            Err(e) => prop_assert_eq!(status, Some(e.status()), "{} for {:?}", e, wire),
            Ok(Parsed::Partial) => prop_assert_eq!(status, Some(400), "cut short: {:?}", wire),
            Ok(Parsed::Complete { .. }) => {
                prop_assert!(
                    status.is_some_and(|s| (100..600).contains(&s)),
                    "{:?}",
                    wire
                )
            }
        }
        assert_still_serving(addr, &wire);
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    assert_eq!(server.shutdown().panics, 0);
}
