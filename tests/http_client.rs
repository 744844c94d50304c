//! The HTTP client (`sockstep::http::client`) against servers whose every byte
//! the test writes by hand — a std `TcpListener` and a script — so what the
//! server does is exact, and against our own `Router` for keep-alive and
//! redirects.
//!
//! Every socket has a timeout, every accept is a bounded poll, and every client
//! has a response deadline, so a bug fails a test in seconds instead of hanging.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, TIMEOUTS};
use sockstep::http::client::{self, Client, ClientConfig, Url};
use sockstep::http::server::{Router, echo};
use sockstep::http::{Headers, Limits, Parsed, Request, Response, parse_request};
use sockstep::tcp::serve::Server;
use sockstep::trace::Trace;
use sockstep::{Endpoint, ErrorKind, Host, Protocol};

// ---------------------------------------------------------------------------
// A scripted server: std sockets, bounded waits.
// ---------------------------------------------------------------------------

/// One accepted connection of a scripted server, with the bytes read past the
/// last request.
struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Peer {
    /// Reads until a whole request has arrived; `None` if the client closed first.
    fn request(&mut self) -> Option<Request> {
        let limits = Limits {
            max_body: 64 << 20,
            ..Limits::default()
        };
        let mut chunk = [0; 64 * 1024];
        loop {
            match parse_request(&self.buf, &limits).expect("the client sent a valid request") {
                Parsed::Complete { message, consumed } => {
                    self.buf.drain(..consumed);
                    return Some(message);
                }
                Parsed::Partial => {}
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("scripted server: read: {e}"),
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("scripted server: write");
    }

    /// Writes `bytes` in pieces of 1, 2, 3, 5, 7, 11 … bytes with a pause after
    /// each, so the client's reads see every split a slow network could make.
    fn send_slowly(&mut self, bytes: &[u8]) {
        const PIECES: [usize; 6] = [1, 2, 3, 5, 7, 11];
        let mut rest = bytes;
        for size in PIECES.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at((*size).min(rest.len()));
            self.send(piece);
            rest = after;
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The listener side of a scripted server.
struct Script {
    listener: TcpListener,
}

impl Script {
    /// The next connection, within `within`; `None` if nobody connected.
    fn accept_within(&self, within: Duration) -> Option<Peer> {
        let deadline = Instant::now() + within;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).expect("blocking");
                    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
                    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
                    return Some(Peer {
                        stream,
                        buf: Vec::new(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("scripted server: accept: {e}"),
            }
        }
    }

    fn accept(&self) -> Peer {
        self.accept_within(IO_TIMEOUT)
            .expect("the client connected within the timeout")
    }
}

/// Starts `script` on a thread with a listener on an ephemeral loopback port;
/// returns `http://127.0.0.1:PORT` and the thread, whose result is the script's.
fn scripted<T: Send + 'static>(
    script: impl FnOnce(Script) -> T + Send + 'static,
) -> (String, JoinHandle<T>) {
    let listener = TcpListener::bind(common::any_port_v4()).expect("bind 127.0.0.1:0");
    listener.set_nonblocking(true).expect("nonblocking accept");
    let base = format!("http://{}", listener.local_addr().expect("local_addr"));
    (base, thread::spawn(move || script(Script { listener })))
}

/// Waits for the script and hands back its result (its panic fails the test).
fn finish<T>(script: JoinHandle<T>) -> T {
    script.join().expect("the scripted server panicked")
}

// ---------------------------------------------------------------------------
// Clients and our own server.
// ---------------------------------------------------------------------------

/// A client config with every wait bounded by the tests' timeout.
fn config() -> ClientConfig {
    ClientConfig {
        connect_timeout: IO_TIMEOUT,
        timeouts: TIMEOUTS,
        response_timeout: IO_TIMEOUT,
        ..ClientConfig::default()
    }
}

fn client() -> Client {
    Client::with_config(config())
}

/// Serves `router` on an ephemeral loopback port; returns the server and its base URL.
fn serve(router: Router) -> (Server, String) {
    let server = common::serve(64, common::config(16), router, &Trace::off());
    let base = format!("http://{}", server.local_addr());
    (server, base)
}

/// The request our server's echo route saw, parsed back from the response body.
fn echoed(response: &Response) -> Request {
    assert_eq!(response.status, 200, "{response:?}");
    match parse_request(&response.body, &Limits::default()).expect("echo body is a request") {
        Parsed::Complete { message, consumed } => {
            assert_eq!(consumed, response.body.len());
            message
        }
        Parsed::Partial => panic!("echo body is a whole request: {response:?}"),
    }
}

fn ok_with(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn header_names(headers: &Headers) -> Vec<String> {
    headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect()
}

// ---------------------------------------------------------------------------
// Framing of the response body.
// ---------------------------------------------------------------------------

#[test]
fn a_content_length_body_is_read_exactly_and_the_request_names_the_host() {
    let (base, script) = scripted(|s| {
        let mut peer = s.accept();
        let request = peer.request().expect("a request");
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Two: a\r\nX-Two: b\r\nContent-Length: 11\r\n\r\nhello world");
        request
    });
    let response = client().get(&format!("{base}/path?q=1")).expect("GET");
    assert_eq!((response.status, response.reason.as_str()), (200, "OK"));
    assert_eq!(response.body, b"hello world");
    assert_eq!(response.headers.get("content-type"), Some("text/plain"));
    assert_eq!(
        response.headers.get_all("x-two").collect::<Vec<_>>(),
        ["a", "b"]
    );
    let request = finish(script);
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("GET", "/path?q=1")
    );
    let authority = base.strip_prefix("http://").expect("http://");
    assert_eq!(request.headers.get("host"), Some(authority));
    assert!(request.body.is_empty());
}

#[test]
fn a_chunked_body_split_into_odd_pieces_and_written_slowly_is_decoded_exactly() {
    let (base, script) = scripted(|s| {
        let mut peer = s.accept();
        peer.request().expect("first request");
        peer.send_slowly(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n1;ext=\"x\"\r\n \r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n\
              0\r\nX-Trailer: dropped\r\n\r\n",
        );
        // The same connection carries the next answer: the client took exactly
        // the chunked body, not a byte more or less.
        peer.request()
            .expect("second request on the same connection");
        peer.send(&ok_with("next"));
    });
    let mut client = client();
    let response = client.get(&format!("{base}/chunked")).expect("GET");
    assert_eq!(response.body, b"hello abcdefghijklmnopqrstuvwxyz");
    assert_eq!(response.headers.get("transfer-encoding"), Some("chunked"));
    assert_eq!(
        client.get(&format!("{base}/next")).expect("GET").body,
        b"next"
    );
    assert_eq!(client.connections_opened(), 1);
    finish(script);
}

#[test]
fn a_chunked_body_as_large_as_the_default_limit_arrives_in_seconds() {
    // The parser starts from the top after every read; were every read 8 KiB,
    // 16 MiB in 4 KiB chunks would cost 2,048 decodes of up to 16 MiB each.
    let body: Vec<u8> = (0..16 << 20).map(|i| (i % 251) as u8).collect();
    let wire = sockstep::http::write_chunked(&body, 4096);
    let (base, script) = scripted(move |s| {
        let mut peer = s.accept();
        peer.request().expect("a request");
        peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        peer.send(&wire);
    });
    let started = Instant::now();
    let response = client().get(&format!("{base}/")).expect("GET");
    assert!(
        started.elapsed() < IO_TIMEOUT,
        "took {:?}",
        started.elapsed()
    );
    assert!(response.body == body, "the body differs");
    finish(script);
}

#[test]
fn an_http10_body_without_length_runs_until_the_server_closes() {
    let (base, script) = scripted(|s| {
        for _ in 0..2 {
            let mut peer = s.accept();
            peer.request().expect("a request");
            peer.send(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n");
            peer.send_slowly(b"all of this, until the close");
            // Dropping `peer` closes: that is the end of the body.
        }
    });
    let mut client = client();
    for _ in 0..2 {
        let response = client.get(&format!("{base}/")).expect("GET");
        assert_eq!(response.body, b"all of this, until the close");
    }
    // A body ended by the close leaves no connection to reuse.
    assert_eq!(client.connections_opened(), 2);
    finish(script);
}

#[test]
fn an_http10_response_that_says_keep_alive_keeps_the_connection() {
    let (base, script) = scripted(|s| {
        let mut peer = s.accept();
        for body in ["one", "two"] {
            peer.request().expect("a request on the kept connection");
            peer.send(
                format!(
                    "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 3\r\n\r\n{body}"
                )
                .as_bytes(),
            );
        }
    });
    let mut client = client();
    assert_eq!(client.get(&format!("{base}/")).expect("GET").body, b"one");
    assert_eq!(client.get(&format!("{base}/")).expect("GET").body, b"two");
    assert_eq!(client.connections_opened(), 1);
    finish(script);
}

#[test]
fn a_body_cut_off_before_its_content_length_is_an_http_error() {
    let (base, script) = scripted(|s| {
        let mut peer = s.accept();
        peer.request().expect("a request");
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
    });
    let e = client().get(&format!("{base}/")).expect_err("cut off");
    assert!(
        matches!(e.kind(), ErrorKind::Http { status: 400, .. }),
        "{e}"
    );
    finish(script);
}

#[test]
fn interim_1xx_responses_are_skipped_and_the_final_one_returned() {
    let (base, script) = scripted(|s| {
        let mut peer = s.accept();
        peer.request().expect("a request");
        peer.send_slowly(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX-Step: 1\r\n\r\n\
              HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone",
        );
    });
    let response = client()
        .post(&format!("{base}/"), "text/plain", b"data")
        .expect("POST");
    assert_eq!(
        (response.status, response.body.as_slice()),
        (201, &b"done"[..])
    );
    assert!(response.headers.get("x-step").is_none());
    finish(script);
}

#[test]
fn head_204_and_304_end_with_their_head_whatever_their_headers_say() {
    let (base, script) = scripted(|s| {
        let mut peer = s.accept();
        let mut methods = Vec::new();
        for answer in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"[..],
            b"HTTP/1.1 204 No Content\r\nContent-Length: 100\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
        ] {
            methods.push(peer.request().expect("a request").method);
            peer.send(answer);
        }
        peer.request()
            .expect("a fourth request on the same connection");
        peer.send(&ok_with("after"));
        methods
    });
    let mut client = client();
    let no_headers = Headers::new();
    let head = client
        .request("HEAD", &format!("{base}/"), &no_headers, Vec::new())
        .expect("HEAD");
    assert_eq!(
        (head.status, head.headers.get("content-length")),
        (200, Some("100"))
    );
    assert!(head.body.is_empty());
    let no_content = client.get(&format!("{base}/204")).expect("GET 204");
    assert_eq!((no_content.status, no_content.body.len()), (204, 0));
    let not_modified = client.get(&format!("{base}/304")).expect("GET 304");
    assert_eq!((not_modified.status, not_modified.body.len()), (304, 0));
    // Had the client waited for a body, the next answer would have been eaten as one.
    assert_eq!(client.get(&format!("{base}/")).expect("GET").body, b"after");
    assert_eq!(client.connections_opened(), 1);
    assert_eq!(finish(script), ["HEAD", "GET", "GET"]);
}

// ---------------------------------------------------------------------------
// Keeping the connection.
// ---------------------------------------------------------------------------

#[test]
fn keep_alive_carries_many_requests_on_one_connection() {
    let router = Router::new().route("GET", "/n", |r: &Request| {
        Response::text(200, r.target.clone())
    });
    let stats = router.clone();
    let (server, base) = serve(router);
    let mut client = client();
    for i in 0..20 {
        let response = client.get(&format!("{base}/n?{i}")).expect("GET");
        assert_eq!(response.body, format!("/n?{i}").as_bytes());
    }
    assert_eq!(client.connections_opened(), 1);
    drop(client);
    server.shutdown();
    let stats = stats.stats();
    assert_eq!(
        (stats.connections, stats.requests, stats.reused),
        (1, 20, 19)
    );
}

#[test]
fn without_keep_alive_every_request_says_close_and_opens_its_own_connection() {
    let router = Router::new().prefix("GET", "/echo", echo);
    let (_server, base) = serve(router);
    let mut client = client().without_keep_alive();
    for _ in 0..3 {
        let request = echoed(&client.get(&format!("{base}/echo")).expect("GET"));
        assert_eq!(request.headers.get("connection"), Some("close"));
    }
    assert_eq!(client.connections_opened(), 3);
    // The one-shot function is the same: all five steps, then close.
    let request = echoed(&client::get(&format!("{base}/echo")).expect("GET"));
    assert_eq!(request.headers.get("connection"), Some("close"));
}

#[test]
fn connection_close_from_the_server_forces_a_new_connection() {
    let (base, script) = scripted(|s| {
        let mut peer = s.accept();
        peer.request().expect("first request");
        peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\none");
        // Keep the socket open: the client must leave because it was told, not
        // because it saw the close.
        let mut second = s.accept();
        second
            .request()
            .expect("second request, on a new connection");
        second.send(&ok_with("two"));
        drop(peer);
    });
    let mut client = client();
    assert_eq!(client.get(&format!("{base}/1")).expect("GET").body, b"one");
    assert_eq!(client.get(&format!("{base}/2")).expect("GET").body, b"two");
    assert_eq!(client.connections_opened(), 2);
    finish(script);
}

#[test]
fn a_connection_switched_by_101_is_not_reused_for_http() {
    let (base, script) = scripted(|s| {
        let mut peer = s.accept();
        peer.request().expect("the upgrade request");
        peer.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        );
        // From here on this connection is not HTTP; the next request needs its own.
        let mut second = s.accept();
        second.request().expect("a request on a new connection");
        second.send(&ok_with("http again"));
        drop(peer);
    });
    let mut client = client();
    let mut headers = Headers::new();
    headers.append("Connection", "Upgrade");
    headers.append("Upgrade", "websocket");
    let switched = client
        .request("GET", &format!("{base}/ws"), &headers, Vec::new())
        .expect("GET");
    assert_eq!(switched.status, 101);
    let response = client.get(&format!("{base}/")).expect("GET");
    assert_eq!(response.body, b"http again");
    assert_eq!(client.connections_opened(), 2);
    finish(script);
}

#[test]
fn our_servers_request_limit_per_connection_makes_the_client_reconnect() {
    let config = sockstep::http::HttpConfig {
        max_requests: 2,
        ..sockstep::http::HttpConfig::default()
    };
    let router = Router::new()
        .with_config(config)
        .route("GET", "/", |_: &Request| Response::text(200, "hi"));
    let (_server, base) = serve(router);
    let mut client = client();
    for _ in 0..5 {
        assert_eq!(client.get(&format!("{base}/")).expect("GET").status, 200);
    }
    assert_eq!(client.connections_opened(), 3);
}

#[test]
fn a_kept_connection_for_another_server_is_not_used() {
    let hello = |_: &Request| Response::text(200, "hi");
    let (_a, base_a) = serve(Router::new().route("GET", "/", hello));
    let (_b, base_b) = serve(Router::new().route("GET", "/", hello));
    let mut client = client();
    for base in [&base_a, &base_a, &base_b, &base_b, &base_a] {
        assert_eq!(client.get(&format!("{base}/")).expect("GET").status, 200);
    }
    assert_eq!(client.connections_opened(), 3);
}

// ---------------------------------------------------------------------------
// The reuse race: the server closes a kept connection as the client uses it.
// ---------------------------------------------------------------------------

/// A script whose first connection answers one request, keeping the connection
/// alive, and then closes it; `closed` hears when it has. Then it waits up to
/// `second_within` for a second connection and answers its request with
/// "again". Returns the second request, if one came.
fn closes_the_kept_connection(
    closed: mpsc::Sender<()>,
    second_within: Duration,
) -> impl FnOnce(Script) -> Option<Request> + Send + 'static {
    move |s| {
        let mut peer = s.accept();
        peer.request().expect("first request");
        peer.send(&ok_with("first"));
        drop(peer);
        closed.send(()).expect("the test waits");
        let mut second = s.accept_within(second_within)?;
        let request = second.request()?;
        second.send(&ok_with("again"));
        Some(request)
    }
}

#[test]
fn a_get_on_a_kept_connection_the_server_closed_is_retried_once_on_a_new_one() {
    let (closed, was_closed) = mpsc::channel();
    let (base, script) = scripted(closes_the_kept_connection(closed, IO_TIMEOUT));
    let mut client = client();
    assert_eq!(
        client.get(&format!("{base}/a")).expect("GET").body,
        b"first"
    );
    was_closed.recv_timeout(IO_TIMEOUT).expect("server closed");
    let response = client.get(&format!("{base}/b")).expect("GET is retried");
    assert_eq!(response.body, b"again");
    assert_eq!(client.connections_opened(), 2);
    let second = finish(script).expect("the retry arrived");
    assert_eq!(
        (second.method.as_str(), second.target.as_str()),
        ("GET", "/b")
    );
}

#[test]
fn a_post_on_a_kept_connection_the_server_closed_is_an_error_and_not_retried() {
    let (closed, was_closed) = mpsc::channel();
    let (base, script) = scripted(closes_the_kept_connection(
        closed,
        Duration::from_millis(500),
    ));
    let mut client = client();
    assert_eq!(
        client.get(&format!("{base}/a")).expect("GET").body,
        b"first"
    );
    was_closed.recv_timeout(IO_TIMEOUT).expect("server closed");
    let e = client
        .post(&format!("{base}/b"), "text/plain", b"once only")
        .expect_err("a POST may have been acted on: never repeated silently");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Http { .. } | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "{e}"
    );
    assert_eq!(client.connections_opened(), 1);
    assert!(finish(script).is_none(), "the POST was sent a second time");
}

#[test]
fn a_large_put_whose_write_meets_the_closed_connection_is_retried() {
    // The body is far larger than the socket buffers: the server's RST arrives
    // while the client is still writing, so the failure is in send(), not receive().
    let body = vec![b'x'; 8 << 20];
    let (closed, was_closed) = mpsc::channel();
    let (base, script) = scripted(closes_the_kept_connection(closed, IO_TIMEOUT));
    let mut client = client();
    assert_eq!(
        client.get(&format!("{base}/a")).expect("GET").body,
        b"first"
    );
    was_closed.recv_timeout(IO_TIMEOUT).expect("server closed");
    let response = client
        .request("PUT", &format!("{base}/big"), &Headers::new(), body.clone())
        .expect("PUT is idempotent: retried");
    assert_eq!(response.body, b"again");
    assert_eq!(client.connections_opened(), 2);
    let second = finish(script).expect("the retry arrived");
    assert_eq!(second.body.len(), body.len());
}

#[test]
fn our_servers_idle_timeout_closing_a_kept_connection_is_survived_by_a_get() {
    let config = sockstep::http::HttpConfig {
        idle_timeout: Duration::from_millis(100),
        ..sockstep::http::HttpConfig::default()
    };
    let router = Router::new()
        .with_config(config)
        .route("GET", "/", |_: &Request| Response::text(200, "hi"));
    let stats = router.clone();
    let (server, base) = serve(router);
    let mut client = client();
    assert_eq!(client.get(&format!("{base}/")).expect("GET").body, b"hi");
    assert!(common::wait_until(IO_TIMEOUT, || {
        // The server has closed the idle connection once its thread has returned.
        stats.stats().connections == 1 && server.serving() == 0
    }));
    assert_eq!(client.get(&format!("{base}/")).expect("GET").body, b"hi");
    assert_eq!(client.connections_opened(), 2);
}

#[test]
fn a_kept_connection_that_goes_silent_times_out_once_without_a_retry() {
    let response_timeout = Duration::from_millis(400);
    let (done, test_done) = mpsc::channel::<()>();
    let (base, script) = scripted(move |s| {
        let mut peer = s.accept();
        peer.request().expect("first request");
        peer.send(&ok_with("first"));
        peer.request().expect("second request");
        // Never answer, on this connection or on a second one (a retry).
        let retry = s.accept_within(Duration::from_millis(600));
        let _ = test_done.recv_timeout(IO_TIMEOUT);
        retry.is_some()
    });
    let mut client = Client::with_config(ClientConfig {
        response_timeout,
        ..config()
    });
    assert_eq!(
        client.get(&format!("{base}/a")).expect("GET").body,
        b"first"
    );
    let started = Instant::now();
    let e = client.get(&format!("{base}/b")).expect_err("no answer");
    let waited = started.elapsed();
    drop(done);
    assert_eq!(e.kind(), &ErrorKind::TimedOut, "{e}");
    // One wait, not two: the retry would have started a second one.
    assert!(
        waited >= response_timeout && waited < IO_TIMEOUT,
        "waited {waited:?} for a response timeout of {response_timeout:?}"
    );
    assert_eq!(client.connections_opened(), 1);
    assert!(
        !finish(script),
        "a silent server is not the reuse race: no retry"
    );
}

// ---------------------------------------------------------------------------
// Redirects.
// ---------------------------------------------------------------------------

fn redirecting_router() -> Router {
    Router::new()
        .route("GET", "/old", |_: &Request| {
            Response::new(302).with_header("Location", "/echo/new")
        })
        .route("POST", "/form", |_: &Request| {
            Response::new(303).with_header("Location", "/echo/result")
        })
        .route("POST", "/moved", |_: &Request| {
            Response::new(307).with_header("Location", "/echo/kept")
        })
        .route("GET", "/dir/page", |_: &Request| {
            Response::new(302).with_header("Location", "other?x=1")
        })
        .route("GET", "/dir/other", echo)
        .route("GET", "/loop", |_: &Request| {
            Response::new(302).with_header("Location", "/loop")
        })
        .prefix("GET", "/echo/", echo)
        .prefix("POST", "/echo/", echo)
}

fn following(redirects: usize) -> Client {
    Client::with_config(ClientConfig {
        follow_redirects: redirects,
        ..config()
    })
}

#[test]
fn redirects_are_returned_as_they_are_by_default() {
    let (_server, base) = serve(redirecting_router());
    let response = client().get(&format!("{base}/old")).expect("GET");
    assert_eq!(response.status, 302);
    assert_eq!(response.headers.get("location"), Some("/echo/new"));
}

#[test]
fn a_303_after_a_post_is_followed_with_a_get_without_a_body() {
    let (_server, base) = serve(redirecting_router());
    let mut headers = Headers::new();
    headers.append("Content-Type", "text/plain");
    headers.append("Transfer-Encoding", "chunked");
    headers.append("X-Kept", "yes");
    let response = following(5)
        .request(
            "POST",
            &format!("{base}/form"),
            &headers,
            b"form data".to_vec(),
        )
        .expect("POST");
    let request = echoed(&response);
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("GET", "/echo/result")
    );
    assert!(request.body.is_empty());
    let names = header_names(&request.headers);
    for gone in ["content-length", "transfer-encoding", "content-type"] {
        assert!(!names.contains(&gone.to_string()), "{gone} in {names:?}");
    }
    assert_eq!(request.headers.get("x-kept"), Some("yes"));
}

#[test]
fn a_307_repeats_the_method_and_the_body() {
    let (_server, base) = serve(redirecting_router());
    let response = following(5)
        .post(
            &format!("{base}/moved"),
            "application/octet-stream",
            b"\x00body\xff",
        )
        .expect("POST");
    let request = echoed(&response);
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("POST", "/echo/kept")
    );
    assert_eq!(request.body, b"\x00body\xff");
    assert_eq!(
        request.headers.get("content-type"),
        Some("application/octet-stream")
    );
}

#[test]
fn a_relative_location_is_resolved_against_the_requests_directory() {
    let (_server, base) = serve(redirecting_router());
    let request = echoed(&following(1).get(&format!("{base}/dir/page")).expect("GET"));
    assert_eq!(request.target, "/dir/other?x=1");
}

#[test]
fn credentials_follow_a_redirect_on_the_same_server_but_not_to_another() {
    let (_other, other_base) = serve(Router::new().prefix("GET", "/echo/", echo));
    let elsewhere = format!("{other_base}/echo/elsewhere");
    let router = redirecting_router().route("GET", "/away", move |_: &Request| {
        Response::new(302).with_header("Location", elsewhere.clone())
    });
    let (_server, base) = serve(router);
    let mut headers = Headers::new();
    headers.append("Authorization", "Bearer secret");
    headers.append("Cookie", "session=1");
    headers.append("X-Kept", "yes");
    let mut client = following(1);
    let same = client
        .request("GET", &format!("{base}/old"), &headers, Vec::new())
        .expect("GET");
    let same = echoed(&same);
    assert_eq!(same.headers.get("authorization"), Some("Bearer secret"));
    assert_eq!(same.headers.get("cookie"), Some("session=1"));
    let away = client
        .request("GET", &format!("{base}/away"), &headers, Vec::new())
        .expect("GET");
    let away = echoed(&away);
    assert_eq!(away.target, "/echo/elsewhere");
    let authority = other_base.strip_prefix("http://").expect("http://");
    assert_eq!(away.headers.get("host"), Some(authority));
    assert_eq!(away.headers.get("authorization"), None);
    assert_eq!(away.headers.get("cookie"), None);
    assert_eq!(away.headers.get("x-kept"), Some("yes"));
}

#[test]
fn too_many_redirects_is_limit_exceeded_after_following_that_many() {
    let router = redirecting_router();
    let stats = router.clone();
    let (_server, base) = serve(router);
    let e = following(3)
        .get(&format!("{base}/loop"))
        .expect_err("an endless loop");
    assert!(
        matches!(e.kind(), ErrorKind::LimitExceeded { limit: 3, .. }),
        "{e}"
    );
    // The first request and three redirects followed.
    assert_eq!(stats.stats().requests, 4);
}

// ---------------------------------------------------------------------------
// Deadlines and limits.
// ---------------------------------------------------------------------------

#[test]
fn a_server_that_never_answers_is_timed_out_at_the_response_timeout() {
    let response_timeout = Duration::from_millis(300);
    let (done, test_done) = mpsc::channel::<()>();
    let (base, script) = scripted(move |s| {
        let mut peer = s.accept();
        peer.request().expect("a request");
        let _ = test_done.recv_timeout(IO_TIMEOUT);
    });
    let mut client = Client::with_config(ClientConfig {
        response_timeout,
        ..config()
    });
    let started = Instant::now();
    let e = client.get(&format!("{base}/")).expect_err("no answer");
    let waited = started.elapsed();
    drop(done);
    assert_eq!(e.kind(), &ErrorKind::TimedOut, "{e}");
    assert!(
        waited >= response_timeout && waited < IO_TIMEOUT,
        "waited {waited:?}"
    );
    finish(script);
}

#[test]
fn a_server_trickling_past_the_response_deadline_is_timed_out() {
    let response_timeout = Duration::from_millis(400);
    let (done, test_done) = mpsc::channel::<()>();
    let (base, script) = scripted(move |s| {
        let mut peer = s.accept();
        peer.request().expect("a request");
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        // One byte every 20 ms: each read succeeds long before any read timeout.
        for _ in 0..1000 {
            let test_over = test_done.try_recv() == Err(mpsc::TryRecvError::Disconnected);
            if test_over || peer.stream.write_all(b"x").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    let mut client = Client::with_config(ClientConfig {
        response_timeout,
        ..config()
    });
    let started = Instant::now();
    let e = client.get(&format!("{base}/")).expect_err("too slow");
    let waited = started.elapsed();
    drop(done);
    assert_eq!(e.kind(), &ErrorKind::TimedOut, "{e}");
    // The trickle would last 20 s, and no single read waits near the read timeout.
    assert!(
        waited >= response_timeout && waited < IO_TIMEOUT,
        "waited {waited:?}"
    );
    finish(script);
}

/// A client whose responses may carry at most 64 KiB of body.
fn small_limit_client() -> Client {
    Client::with_config(ClientConfig {
        limits: Limits {
            max_body: 64 * 1024,
            ..Limits::default()
        },
        ..config()
    })
}

#[test]
fn an_announced_body_over_the_limit_is_refused_with_413_before_it_arrives() {
    let (base, script) = scripted(|s| {
        for head in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n",
        ] {
            let mut peer = s.accept();
            peer.request().expect("a request");
            peer.send(head);
            peer.send(&[b'x'; 1000]);
            // Hold the connection: the client must refuse from the head alone.
            let mut rest = Vec::new();
            let _ = peer.stream.read_to_end(&mut rest);
        }
    });
    let mut client = small_limit_client();
    for _ in 0..2 {
        let started = Instant::now();
        let e = client.get(&format!("{base}/")).expect_err("too large");
        assert!(
            matches!(e.kind(), ErrorKind::Http { status: 413, .. }),
            "{e}"
        );
        assert!(started.elapsed() < IO_TIMEOUT / 2);
    }
    drop(client);
    finish(script);
}

#[test]
fn a_close_delimited_body_over_the_limit_is_refused_once_it_crosses_it() {
    let (base, script) = scripted(|s| {
        let mut peer = s.accept();
        peer.request().expect("a request");
        peer.send(b"HTTP/1.1 200 OK\r\n\r\n");
        // Up to 64 MiB and never a close: a client waiting for the close would
        // time out. Far more than loopback's socket buffers hold (a few MiB each
        // way), so the writes fail once the client has closed.
        let mut written = 0;
        while written < 64 << 20 && peer.stream.write_all(&[b'x'; 16 * 1024]).is_ok() {
            written += 16 * 1024;
        }
        written
    });
    let started = Instant::now();
    let e = small_limit_client()
        .get(&format!("{base}/"))
        .expect_err("too large");
    assert!(
        matches!(e.kind(), ErrorKind::Http { status: 413, .. }),
        "{e}"
    );
    assert!(started.elapsed() < IO_TIMEOUT / 2);
    // The client stopped reading, and closed, well before the server ran out of body.
    assert!(finish(script) < 64 << 20);
}

#[test]
fn a_malformed_status_line_is_an_http_error() {
    let answers: [&[u8]; 4] = [
        b"HTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\n\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
    ];
    let (base, script) = scripted(move |s| {
        for answer in answers {
            let mut peer = s.accept();
            peer.request().expect("a request");
            peer.send(answer);
        }
    });
    let mut client = client();
    for answer in answers {
        let e = client.get(&format!("{base}/")).expect_err("malformed");
        assert!(
            matches!(e.kind(), ErrorKind::Http { status: 400, .. }),
            "{:?}: {e}",
            String::from_utf8_lossy(answer)
        );
    }
    assert_eq!(client.connections_opened(), 4);
    finish(script);
}

#[test]
fn a_refused_connection_is_connection_refused_naming_the_endpoint() {
    let addr: SocketAddr = common::free_port_v4();
    let e = client()
        .get(&format!("http://{addr}/"))
        .expect_err("nothing listens there");
    assert_eq!(e.kind(), &ErrorKind::ConnectionRefused, "{e}");
    assert_eq!(
        e.endpoint(),
        Some(&Endpoint::from_addr(Protocol::Tcp, addr))
    );
    assert!(e.to_string().contains(&format!("tcp://{addr}")), "{e}");
}

// ---------------------------------------------------------------------------
// URLs.
// ---------------------------------------------------------------------------

#[test]
fn url_parse_defaults_the_port_and_the_path() {
    let url = Url::parse("http://127.0.0.1").expect("url");
    assert_eq!(url.endpoint.port(), 80);
    assert_eq!(url.target, "/");
    assert_eq!(url.authority(), "127.0.0.1");
    let url = Url::parse("http://example.com:8080").expect("url");
    assert_eq!(url.endpoint.host(), &Host::Name("example.com".into()));
    assert_eq!((url.endpoint.port(), url.target.as_str()), (8080, "/"));
    assert_eq!(url.authority(), "example.com:8080");
}

#[test]
fn url_parse_reads_ipv6_literals_with_and_without_a_port() {
    let url = Url::parse("http://[::1]:8080/a").expect("url");
    assert_eq!(url.endpoint.host(), &Host::Ip("::1".parse().unwrap()));
    assert_eq!(
        (url.endpoint.port(), url.authority().as_str()),
        (8080, "[::1]:8080")
    );
    let url = Url::parse("http://[::1]/a").expect("url");
    assert_eq!(
        (url.endpoint.port(), url.authority().as_str()),
        (80, "[::1]")
    );
}

#[test]
fn url_parse_keeps_a_query_without_a_path_and_drops_the_fragment() {
    let url = Url::parse("http://h?q=1").expect("url");
    assert_eq!(url.target, "/?q=1");
    let url = Url::parse("http://h/p?q=1#section").expect("url");
    assert_eq!(url.target, "/p?q=1");
    let url = Url::parse("http://h#top").expect("url");
    assert_eq!(url.target, "/");
}

#[test]
fn url_parse_takes_the_scheme_in_any_case() {
    for spelled in ["HTTP://h:81/p", "Http://h:81/p", "hTtP://h:81/p"] {
        let url = Url::parse(spelled).expect(spelled);
        assert_eq!((url.endpoint.port(), url.target.as_str()), (81, "/p"));
    }
    // Cut short inside a multi-byte character: refused, not a panic.
    assert!(Url::parse("http:/\u{e9}").is_err());
    assert!(Url::parse("é").is_err());
}

#[test]
fn url_parse_refuses_https_other_schemes_and_user_info() {
    for refused in [
        "https://example.com/",
        "ftp://example.com/",
        "example.com/",
        "http://user:secret@example.com/",
    ] {
        let e = Url::parse(refused).expect_err(refused);
        assert!(
            matches!(e.kind(), ErrorKind::InvalidInput(_)),
            "{refused}: {e}"
        );
    }
    let e = Url::parse("https://example.com/").expect_err("https");
    assert!(e.to_string().contains("TLS"), "{e}");
}

#[test]
fn url_parse_refuses_a_bad_host_or_port() {
    for bad in [
        "http://:80/",
        "http://h:99999/",
        "http://h:port/",
        "http://[::1/",
    ] {
        let e = Url::parse(bad).expect_err(bad);
        assert!(
            matches!(e.kind(), ErrorKind::BadEndpoint { .. }),
            "{bad}: {e}"
        );
    }
}

#[test]
fn url_join_resolves_absolute_rooted_and_relative_locations() {
    let url = Url::parse("http://h:81/a/b/c?q").expect("url");
    assert_eq!(url.join("/x").expect("join").target, "/x");
    assert_eq!(url.join("d").expect("join").target, "/a/b/d");
    let other = url.join("http://other/y").expect("join");
    assert_eq!(
        (other.authority().as_str(), other.target.as_str()),
        ("other", "/y")
    );
    assert!(url.join("https://other/").is_err());
}

#[test]
fn url_join_handles_network_path_query_only_fragment_and_urls_in_queries() {
    let url = Url::parse("http://h:81/a/b/c?q").expect("url");
    let other = url.join("//other:82/p?x").expect("join");
    assert_eq!(
        (other.authority().as_str(), other.target.as_str()),
        ("other:82", "/p?x")
    );
    assert_eq!(url.join("?r=2").expect("join").target, "/a/b/c?r=2");
    assert_eq!(url.join("d#part").expect("join").target, "/a/b/d");
    assert_eq!(url.join("/x?y#z").expect("join").target, "/x?y");
    let login = url.join("/login?next=http://h:81/a").expect("join");
    assert_eq!(
        (login.authority().as_str(), login.target.as_str()),
        ("h:81", "/login?next=http://h:81/a")
    );
    let relative = url.join("go?to=http://elsewhere/").expect("join");
    assert_eq!(relative.target, "/a/b/go?to=http://elsewhere/");
}
