//! Our HTTP client and server over real loopback sockets: what one side writes,
//! the other reads as the same message.
//!
//! 1. Requests: any request our client writes — random method token, target,
//!    header fields, body, `Content-Length` or chunked — reaches our server's echo
//!    route as the same method, target, fields and body. The echo answers with the
//!    request as the server understood it, parsed back here with `parse_request`.
//! 2. Responses: any response a route returns — random status, reason, fields,
//!    body, `Content-Length` or chunked — is read by our client as the same
//!    message, apart from the fields the server adds (`Connection`, `Content-Length`).
//! 3. Responses in pieces: any response our emitter writes, with any chunk size,
//!    written by a plain socket in random pieces (and sometimes after a
//!    `100 Continue`), is read by our client exactly as the wire parser reads the
//!    whole bytes.
//!
//! Each case starts a server of its own on an ephemeral loopback port, so cases
//! are few (64 each) and every wait is bounded by the tests' timeouts.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, TIMEOUTS};
use proptest::collection::vec;
use proptest::prelude::*;
use sockstep::http::client::{Client, ClientConfig};
use sockstep::http::server::{Router, echo};
use sockstep::http::{
    Headers, Limits, Parsed, Request, Response, Version, parse_request, parse_response,
};
use sockstep::tcp::serve::Server;
use sockstep::trace::Trace;

const TCHARS: &str = "[A-Za-z0-9!#$%&'*+.^_`|~-]";

/// Fields whose meaning the client, the server or the framing sets: never random.
const RESERVED: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
    "upgrade",
];

fn token(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("{TCHARS}{{1,{max}}}")).expect("regex")
}

/// A method our router can route and whose response has a body: not `HEAD`
/// (no body) or `CONNECT` (a tunnel).
fn method() -> impl Strategy<Value = String> {
    token(12).prop_filter("HEAD and CONNECT frame differently", |m| {
        m != "HEAD" && m != "CONNECT"
    })
}

/// An origin-form target: `/` and visible ASCII, without `#` (a URL's fragment
/// never travels).
fn target() -> impl Strategy<Value = String> {
    proptest::string::string_regex("/[!-\"$-~]{0,40}").expect("regex")
}

/// A field value: visible ASCII with inner spaces and tabs, none at the ends.
fn value() -> impl Strategy<Value = String> {
    proptest::string::string_regex("([!-~]([!-~ \t]{0,20}[!-~])?)?").expect("regex")
}

/// Header fields with any token for a name except the [`RESERVED`] ones.
fn fields() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = token(16).prop_filter("reserved field", |n| {
        !RESERVED.iter().any(|r| n.eq_ignore_ascii_case(r))
    });
    vec((name, value()), 0..8)
}

/// Mostly small bodies, sometimes larger than one 8 KiB chunk of our emitters.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..64),
        1 => vec(any::<u8>(), 0..20_000),
    ]
}

fn headers_of(fields: &[(String, String)]) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in fields {
        headers.append(name.as_str(), value.as_str());
    }
    headers
}

fn pairs(headers: &Headers) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn client() -> Client {
    Client::with_config(ClientConfig {
        connect_timeout: IO_TIMEOUT,
        timeouts: TIMEOUTS,
        response_timeout: IO_TIMEOUT,
        ..ClientConfig::default()
    })
}

fn serve(router: Router) -> (Server, String) {
    let server = common::serve(16, common::config(4), router, &Trace::off());
    let base = format!("http://{}", server.local_addr());
    (server, base)
}

/// The next connection on a non-blocking `listener`, polled until `within` passes.
fn accept_within(listener: &TcpListener, within: Duration) -> std::io::Result<TcpStream> {
    let deadline = Instant::now() + within;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_request_our_client_writes_reaches_our_echo_route_unchanged(
        method in method(),
        target in target(),
        fields in fields(),
        body in body(),
        chunked in any::<bool>(),
    ) {
        let (server, base) = serve(Router::new().prefix(&method, "/", echo));
        let mut headers = headers_of(&fields);
        if chunked {
            headers.append("Transfer-Encoding", "chunked");
        }
        let mut client = client();
        let response = client
            .request(&method, &format!("{base}{target}"), &headers, body.clone())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        drop(client);
        server.shutdown();
        prop_assert_eq!(response.status, 200, "{:?}", response);
        let Parsed::Complete { message: seen, consumed } =
            parse_request(&response.body, &Limits::default())
                .map_err(|e| TestCaseError::fail(e.to_string()))?
        else {
            return Err(TestCaseError::fail("the echo body is not a whole request"));
        };
        prop_assert_eq!(consumed, response.body.len());

        let mut expected = vec![("Host".to_string(), base["http://".len()..].to_string())];
        expected.extend(fields);
        if chunked {
            expected.push(("Transfer-Encoding".into(), "chunked".into()));
        } else if !body.is_empty() {
            expected.push(("Content-Length".into(), body.len().to_string()));
        }
        prop_assert_eq!(&seen.method, &method);
        prop_assert_eq!(&seen.target, &target);
        prop_assert_eq!(seen.version, Version::Http11);
        prop_assert_eq!(pairs(&seen.headers), expected);
        prop_assert!(seen.body == body, "the body differs");
    }

    #[test]
    fn any_response_a_route_returns_reaches_our_client_unchanged(
        status in (200u16..600),
        reason in proptest::string::string_regex("[!-~ \t]{0,20}").expect("regex"),
        fields in fields(),
        body in body(),
        chunked in any::<bool>(),
    ) {
        let bodiless = matches!(status, 204 | 304);
        let body = if bodiless { Vec::new() } else { body };
        let chunked = chunked && !bodiless;
        let mut headers = headers_of(&fields);
        if chunked {
            headers.append("Transfer-Encoding", "chunked");
        }
        let sent = Response {
            version: Version::Http11,
            status,
            reason,
            headers,
            body,
        };
        let answer = sent.clone();
        let (server, base) = serve(Router::new().route("GET", "/r", move |_: &Request| {
            answer.clone()
        }));
        let mut client = client();
        // Twice on one connection: the first response's framing left nothing behind.
        let mut received = Vec::new();
        for _ in 0..2 {
            received.push(
                client
                    .get(&format!("{base}/r"))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?,
            );
        }
        let opened = client.connections_opened();
        drop(client);
        server.shutdown();
        prop_assert_eq!(opened, 1);
        for mut got in received {
            // What the server adds to frame and keep the connection.
            got.headers.remove("connection");
            got.headers.remove("content-length");
            prop_assert_eq!(got.version, sent.version);
            prop_assert_eq!(got.status, sent.status);
            prop_assert_eq!(&got.reason, &sent.reason);
            prop_assert_eq!(pairs(&got.headers), pairs(&sent.headers));
            prop_assert!(got.body == sent.body, "the body differs");
        }
    }

    #[test]
    fn any_response_written_in_pieces_is_read_as_the_parser_reads_it_whole(
        status in (200u16..600),
        fields in fields(),
        body in body(),
        framing in prop_oneof![
            Just(None),
            (1usize..5_000).prop_map(Some),
        ],
        http10 in any::<bool>(),
        interim in any::<bool>(),
        cuts in vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let bodiless = matches!(status, 204 | 304);
        let body = if bodiless { Vec::new() } else { body };
        // Chunked coding is HTTP/1.1's; an HTTP/1.0 response is framed by length.
        let (chunk, version) = match (framing, http10) {
            (Some(chunk), false) if !bodiless => (Some(chunk), Version::Http11),
            (_, true) => (None, Version::Http10),
            _ => (None, Version::Http11),
        };
        let mut headers = headers_of(&fields);
        if chunk.is_some() {
            headers.append("Transfer-Encoding", "chunked");
        }
        let response = Response {
            version,
            status,
            reason: "Reason".into(),
            headers,
            body,
        };
        let mut wire = Vec::new();
        if interim {
            wire.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let at = wire.len();
        wire.extend(
            response
                .to_bytes_chunked(chunk.unwrap_or(8 * 1024))
                .map_err(|e| TestCaseError::fail(e.to_string()))?,
        );
        let Ok(Parsed::Complete { message: expected, .. }) =
            parse_response(&wire[at..], "GET", &ClientConfig::default().limits)
        else {
            return Err(TestCaseError::fail("the emitter wrote a response the parser refuses"));
        };
        prop_assert!(expected.body == response.body, "the parser lost the body");

        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();
        cuts.dedup();
        let listener = TcpListener::bind(common::any_port_v4()).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking accept");
        let base = format!("http://{}", listener.local_addr().expect("local_addr"));
        let server = thread::spawn(move || -> std::io::Result<()> {
            let mut stream = accept_within(&listener, IO_TIMEOUT)?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.set_write_timeout(Some(IO_TIMEOUT))?;
            stream.set_nodelay(true)?;
            let mut request = Vec::new();
            let mut buf = [0; 4096];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut buf)? {
                    0 => return Ok(()),
                    n => request.extend_from_slice(&buf[..n]),
                }
            }
            let mut from = 0;
            for cut in cuts {
                stream.write_all(&wire[from..cut])?;
                from = cut;
                thread::sleep(Duration::from_millis(1));
            }
            // Hold the connection until the client is done with it.
            let _ = stream.read(&mut buf);
            Ok(())
        });
        let mut client = client();
        let got = client.get(&format!("{base}/"));
        drop(client);
        server
            .join()
            .expect("the scripted server panicked")
            .map_err(|e| TestCaseError::fail(format!("scripted server: {e}")))?;
        let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got, expected);
    }
}
