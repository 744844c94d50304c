//! The HTTP/1.1 wire format: what we write we read back, and nothing crashes it.
//!
//! Three kinds of checks, all on bytes in memory (the wire format does no I/O):
//!
//! 1. Round trips: any request or response our emitters write — random methods,
//!    targets, header fields, bodies, `Content-Length` or chunked with random
//!    chunk sizes — parses back to the same message, also when the bytes arrive
//!    in arbitrary pieces (`Partial` until the last one).
//! 2. Hostile input: any byte string yields `Complete`, `Partial` (only while
//!    under every limit) or an error with a 4xx/5xx status, never a panic; an
//!    endless head ends in 431 at the limit.
//! 3. A table of malformed and hostile requests, each with the status it must get.
//! 4. The resuming parsers (`parse_request_resuming` and
//!    `parse_response_resuming`, which a server and a client call after every
//!    read without starting over) answer every prefix of any byte string, and
//!    the end of the stream, exactly as the plain parsers do.

use proptest::collection::vec;
use proptest::prelude::*;
use sockstep::http::{
    Headers, HttpError, Limits, Parsed, Request, RequestProgress, Response, ResponseProgress,
    Version, parse_request, parse_request_resuming, parse_response, parse_response_at_eof,
    parse_response_resuming,
};

/// Small limits, so that random input reaches them often.
const SMALL: Limits = Limits {
    max_request_line: 64,
    max_header_bytes: 256,
    max_headers: 8,
    max_body: 512,
};

const TCHARS: &str = "[A-Za-z0-9!#$%&'*+.^_`|~-]";

fn token() -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("{TCHARS}{{1,12}}")).unwrap()
}

fn target() -> impl Strategy<Value = String> {
    proptest::string::string_regex("/[!-~]{0,40}").unwrap()
}

/// A field value: visible ASCII with inner spaces and tabs, none at the ends.
fn value() -> impl Strategy<Value = String> {
    proptest::string::string_regex("([!-~]([!-~ \t]{0,20}[!-~])?)?").unwrap()
}

/// Extra fields whose names cannot be mistaken for framing or Host.
fn fields() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((token().prop_map(|t| format!("X-{t}")), value()), 0..8)
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::Http10), Just(Version::Http11)]
}

/// How the body is framed: by Content-Length, or chunked in chunks of this size.
fn chunking() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![Just(None), (1usize..64).prop_map(Some)]
}

/// Feeds `wire` in pieces cut at `cuts`, expecting `Partial` before the last one.
fn feed<T>(
    wire: &[u8],
    cuts: &[usize],
    parse: impl Fn(&[u8]) -> Result<Parsed<T>, HttpError>,
) -> T {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % wire.len()).collect();
    ends.sort_unstable();
    for end in ends {
        match parse(&wire[..end]) {
            Ok(Parsed::Partial) => {}
            other => panic!("prefix of {end}/{} bytes: {:?}", wire.len(), other.err()),
        }
    }
    match parse(wire) {
        Ok(Parsed::Complete { message, consumed }) => {
            assert_eq!(consumed, wire.len());
            message
        }
        Ok(Parsed::Partial) => panic!("the whole message is still Partial"),
        Err(e) => panic!("refused our own message: {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_request_we_write_parses_back_even_in_pieces(
        method in token(),
        target in target(),
        version in version(),
        extra in fields(),
        body in vec(any::<u8>(), 0..300),
        chunk in chunking(),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        let mut headers = Headers::new();
        headers.append("Host", "example.com");
        for (n, v) in &extra {
            headers.append(n.as_str(), v.as_str());
        }
        let chunk = chunk.filter(|_| version == Version::Http11);
        if chunk.is_some() {
            headers.append("Transfer-Encoding", "chunked");
        }
        let request = Request { method, target, version, headers, body };
        let wire = request.to_bytes_chunked(chunk.unwrap_or(1)).unwrap();
        let back = feed(&wire, &cuts, |b| parse_request(b, &Limits::default()));
        prop_assert_eq!(&back.method, &request.method);
        prop_assert_eq!(&back.target, &request.target);
        prop_assert_eq!(back.version, request.version);
        prop_assert_eq!(&back.body, &request.body);
        // Every field we gave comes back in order; the emitter may add Content-Length.
        let given: Vec<_> = request.headers.iter().collect();
        let got: Vec<_> = back.headers.iter().filter(|(n, _)| *n != "Content-Length").collect();
        prop_assert_eq!(got, given);
    }

    #[test]
    fn any_response_we_write_parses_back_even_in_pieces(
        status in (200u16..600).prop_filter("has a body", |s| *s != 204 && *s != 304),
        reason in proptest::string::string_regex("[!-~ \t]{0,20}").unwrap(),
        version in version(),
        extra in fields(),
        body in vec(any::<u8>(), 0..300),
        chunk in chunking(),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        let mut headers = Headers::new();
        for (n, v) in &extra {
            headers.append(n.as_str(), v.as_str());
        }
        let chunk = chunk.filter(|_| version == Version::Http11);
        if chunk.is_some() {
            headers.append("Transfer-Encoding", "chunked");
        }
        let response = Response { version, status, reason, headers, body };
        let wire = response.to_bytes_chunked(chunk.unwrap_or(1)).unwrap();
        let back = feed(&wire, &cuts, |b| parse_response(b, "GET", &Limits::default()));
        prop_assert_eq!(back.status, response.status);
        prop_assert_eq!(&back.reason, &response.reason);
        prop_assert_eq!(&back.body, &response.body);
        let given: Vec<_> = response.headers.iter().collect();
        let got: Vec<_> = back.headers.iter().filter(|(n, _)| *n != "Content-Length").collect();
        prop_assert_eq!(got, given);
    }

    #[test]
    fn any_bytes_are_complete_partial_under_the_limits_or_a_4xx_5xx(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..600),
            // Mostly valid-looking heads, so the parser gets past the first line.
            (vec(prop_oneof![Just(b'a'), Just(b':'), Just(b' '), Just(b'\r'), Just(b'\n'), Just(b'0'), any::<u8>()], 0..600))
                .prop_map(|tail| [b"POST / HTTP/1.1\r\nHost: x\r\n".as_slice(), &tail].concat()),
        ],
    ) {
        for limits in [SMALL, Limits::default()] {
            match parse_request(&bytes, &limits) {
                Ok(Parsed::Complete { consumed, .. }) => prop_assert!(consumed <= bytes.len()),
                Ok(Parsed::Partial) => {
                    if !bytes.contains(&b'\n') {
                        prop_assert!(bytes.len() <= limits.max_request_line + 1);
                    }
                    if !bytes.windows(4).any(|w| w == b"\r\n\r\n") {
                        prop_assert!(bytes.len() <= limits.max_header_bytes);
                    }
                }
                Err(e) => prop_assert!((400..600).contains(&e.status()), "{e}"),
            }
        }
    }

    #[test]
    fn the_resuming_parser_answers_every_prefix_as_the_plain_one_does(
        wire in prop_oneof![
            // Requests we write, chunked in small pieces or not...
            (vec(any::<u8>(), 0..300), 1usize..40, any::<bool>()).prop_map(|(body, chunk, chunked)| {
                let mut headers = Headers::new();
                headers.append("Host", "x");
                if chunked {
                    headers.append("Transfer-Encoding", "chunked");
                }
                let request = Request {
                    method: "POST".into(),
                    target: "/up".into(),
                    version: Version::Http11,
                    headers,
                    body,
                };
                request.to_bytes_chunked(chunk).unwrap()
            }),
            // ...followed by anything (a pipelined request, garbage)...
            (vec(any::<u8>(), 0..100), vec(prop_oneof![Just(b'0'), Just(b'\r'), Just(b'\n'), Just(b'a'), Just(b';'), any::<u8>()], 0..200))
                .prop_map(|(garbage, tail)| [
                    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".as_slice(),
                    &tail,
                    &garbage,
                ].concat()),
            // ...or anything at all.
            vec(any::<u8>(), 0..400),
        ],
        cuts in vec(any::<usize>(), 1..12),
        small in any::<bool>(),
    ) {
        let limits = if small { SMALL } else { Limits::default() };
        let mut progress = RequestProgress::default();
        agree_on_prefixes(&wire, &cuts, |end| (
            parse_request_resuming(&wire[..end], &limits, &mut progress),
            parse_request(&wire[..end], &limits),
        ))?;
    }

    #[test]
    fn the_resuming_response_parser_answers_every_prefix_and_the_end_as_the_plain_one(
        wire in prop_oneof![
            (vec(any::<u8>(), 0..300), 1usize..40, 0u8..3).prop_map(|(body, chunk, framing)| {
                let mut headers = Headers::new();
                match framing {
                    0 => headers.append("Transfer-Encoding", "chunked"),
                    1 => headers.append("Content-Length", body.len().to_string()),
                    _ => headers.append("Connection", "close"),
                }
                let response = Response {
                    version: Version::Http11,
                    status: 200,
                    reason: "OK".into(),
                    headers,
                    body,
                };
                // A body to the close has no framing to write: cut the Content-Length.
                let wire = response.to_bytes_chunked(chunk).unwrap();
                if framing == 2 {
                    String::from_utf8_lossy(&wire)
                        .replacen(&format!("Content-Length: {}\r\n", response.body.len()), "", 1)
                        .into_bytes()
                } else {
                    wire
                }
            }),
            (vec(any::<u8>(), 0..200)).prop_map(|tail| [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".as_slice(),
                &tail,
            ].concat()),
            vec(any::<u8>(), 0..400),
        ],
        cuts in vec(any::<usize>(), 1..12),
        method in prop::sample::select(vec!["GET", "HEAD"]),
        small in any::<bool>(),
    ) {
        let limits = if small { SMALL } else { Limits::default() };
        let mut progress = ResponseProgress::default();
        let over = agree_on_prefixes(&wire, &cuts, |end| (
            parse_response_resuming(&wire[..end], method, &limits, false, &mut progress),
            parse_response(&wire[..end], method, &limits),
        ))?;
        if !over {
            // Still waiting at the last byte: the peer closes.
            agree(
                &parse_response_resuming(&wire, method, &limits, true, &mut progress),
                &parse_response_at_eof(&wire, method, &limits),
            )?;
        }
    }

    #[test]
    fn an_endless_head_is_refused_with_431_at_the_limit(
        lines in vec((token(), value()), 1..40),
        one_endless_line in any::<bool>(),
    ) {
        let mut wire = b"GET / HTTP/1.1\r\n".to_vec();
        let mut i = 0;
        loop {
            if one_endless_line {
                wire.extend_from_slice(b"X-Long: aaaaaaaaaaaaaaaa");
            } else {
                let (n, v) = &lines[i % lines.len()];
                wire.extend_from_slice(format!("X-{n}: {v}\r\n").as_bytes());
                i += 1;
            }
            match parse_request(&wire, &SMALL) {
                Ok(Parsed::Partial) => prop_assert!(wire.len() <= SMALL.max_header_bytes),
                Ok(Parsed::Complete { .. }) => prop_assert!(false, "a head without its blank line completed"),
                Err(e) => {
                    prop_assert_eq!(e.status(), 431, "{}", e);
                    prop_assert!(wire.len() <= SMALL.max_header_bytes + 64);
                    break;
                }
            }
        }
    }
}

/// Two parsers' answers agree: the same message and length, both `Partial`, or
/// errors with the same status.
fn agree<T: PartialEq + std::fmt::Debug>(
    a: &Result<Parsed<T>, HttpError>,
    b: &Result<Parsed<T>, HttpError>,
) -> Result<(), TestCaseError> {
    match (a, b) {
        (Err(x), Err(y)) => prop_assert_eq!(x.status(), y.status(), "{} / {}", x, y),
        (x, y) => prop_assert_eq!(x, y),
    }
    Ok(())
}

/// Asks `both(end)` — a resuming parser's answer and the plain one's — for
/// the prefixes of `wire` ending at `cuts` and at its end, in order, until
/// they stop being `Partial`; they must agree each time. Whether the message
/// ended (complete or refused) before the bytes did.
fn agree_on_prefixes<T: PartialEq + std::fmt::Debug>(
    wire: &[u8],
    cuts: &[usize],
    mut both: impl FnMut(usize) -> (Result<Parsed<T>, HttpError>, Result<Parsed<T>, HttpError>),
) -> Result<bool, TestCaseError> {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    ends.push(wire.len());
    ends.sort_unstable();
    ends.dedup();
    for end in ends {
        let (resumed, plain) = both(end);
        agree(&resumed, &plain)?;
        if !matches!(resumed, Ok(Parsed::Partial)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Each hostile request and the status a server must answer it with.
const HOSTILE: &[(&str, &[u8], u16)] = &[
    ("bare LF after request line", b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),
    ("bare LF after a header", b"GET / HTTP/1.1\r\nHost: x\n\r\n", 400),
    ("bare LF as the blank line", b"GET / HTTP/1.1\r\nHost: x\r\n\n", 400),
    ("bare CR inside a header", b"GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", 400),
    ("obs-fold with a space", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", 400),
    ("obs-fold with a tab", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\t2\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    ("tab before colon", b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", 400),
    ("header without colon", b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400),
    ("empty header name", b"GET / HTTP/1.1\r\n: x\r\nHost: x\r\n\r\n", 400),
    ("invalid char in header name", b"GET / HTTP/1.1\r\nHo(st: x\r\n\r\n", 400),
    ("NUL in header value", b"GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n", 400),
    ("NUL in target", b"GET /\0 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("DEL in header value", b"GET / HTTP/1.1\r\nHost: x\x7f\r\n\r\n", 400),
    ("non-ASCII in header value", "GET / HTTP/1.1\r\nHost: é\r\n\r\n".as_bytes(), 400),
    ("non-ASCII in target", "GET /é HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes(), 400),
    ("non-ASCII in header name", "GET / HTTP/1.1\r\nHöst: x\r\n\r\n".as_bytes(), 400),
    ("invalid char in method", b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("double space in request line", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("tab separator in request line", b"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("missing version", b"GET /\r\nHost: x\r\n\r\n", 400),
    ("lowercase version", b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
    ("leading blank line", b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ("HTTP/0.9 style version", b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505),
    ("missing Host in HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("conflicting Content-Length lines", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    ("conflicting Content-Length list", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\nab", 400),
    ("negative Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    ("plus-signed Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na", 400),
    ("hex Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x1\r\n\r\na", 400),
    ("space inside Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 0\r\n\r\n", 400),
    ("empty Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400),
    ("overflowing Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    ("Content-Length over the body limit", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 513\r\n\r\n", 413),
    ("CL and chunked", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("chunked and CL", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("chunked not final", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("unknown coding only", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", 400),
    ("gzip before chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ("chunked twice", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
    ("chunked in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("empty Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n", 400),
    ("non-hex chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ("negative chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400),
    ("empty chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 400),
    ("overflowing chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n", 400),
    ("chunk size over the body limit", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n", 413),
    ("0x-prefixed chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nhi\r\n0\r\n\r\n", 400),
    ("missing CRLF after chunk data", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX0\r\n\r\n", 400),
    ("bare LF after chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\nhi\r\n0\r\n\r\n", 400),
    ("space after chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nhi\r\n0\r\n\r\n", 400),
    ("NUL in chunk extension", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;a=\0\r\nhi\r\n0\r\n\r\n", 400),
    ("obs-fold in trailer", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n 2\r\n\r\n", 400),
];

#[test]
fn hostile_requests_get_the_status_they_deserve() {
    assert!(HOSTILE.len() >= 40);
    for (what, wire, expected) in HOSTILE {
        match parse_request(wire, &SMALL) {
            Err(e) => assert_eq!(e.status(), *expected, "{what}: {e}"),
            Ok(p) => panic!("{what}: accepted as {p:?}"),
        }
    }
}

#[test]
fn a_chunked_body_growing_past_the_limit_is_refused_at_the_chunk_that_crosses_it() {
    let mut wire = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    // 0x100 = 256 bytes, twice, fills SMALL's 512-byte limit exactly.
    for _ in 0..2 {
        wire.extend_from_slice(b"100\r\n");
        wire.extend_from_slice(&[b'a'; 256]);
        wire.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&wire, &SMALL), Ok(Parsed::Partial));
    }
    // One more byte announced: refused before its data arrives.
    wire.extend_from_slice(b"1\r\n");
    assert_eq!(parse_request(&wire, &SMALL).unwrap_err().status(), 413);
}

#[test]
fn oversized_heads_get_414_and_431() {
    let long_line = [b"GET /".as_slice(), &[b'a'; 100], b" HTTP/1.1\r\n"].concat();
    assert_eq!(parse_request(&long_line, &SMALL).unwrap_err().status(), 414);
    // Refused before the line ends, too: nobody waits for the rest of it.
    assert_eq!(
        parse_request(&long_line[..70], &SMALL)
            .unwrap_err()
            .status(),
        414
    );

    let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..8 {
        many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
    }
    assert_eq!(parse_request(&many, &SMALL).unwrap_err().status(), 431);

    let big = [
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".as_slice(),
        &[b'a'; 300],
        b"\r\n\r\n",
    ]
    .concat();
    assert_eq!(parse_request(&big, &SMALL).unwrap_err().status(), 431);
}

#[test]
fn valid_edge_cases_are_accepted() {
    let ok: &[&[u8]] = &[
        b"GET / HTTP/1.0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\nhi",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n2;ext=1\r\nhi\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0002\r\n\r\nhi",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n",
    ];
    for wire in ok {
        assert!(
            matches!(parse_request(wire, &SMALL), Ok(Parsed::Complete { consumed, .. }) if consumed == wire.len()),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn pipelined_requests_are_cut_where_each_ends() {
    let wire = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nzGET";
    let Ok(Parsed::Complete { message, consumed }) = parse_request(wire, &SMALL) else {
        panic!("first request is complete");
    };
    assert_eq!(message.target, "/a");
    let rest = &wire[consumed..];
    let Ok(Parsed::Complete { message, consumed }) = parse_request(rest, &SMALL) else {
        panic!("second request is complete");
    };
    assert_eq!(
        (message.target.as_str(), message.body.as_slice()),
        ("/b", &b"z"[..])
    );
    assert_eq!(&rest[consumed..], b"GET");
}

#[test]
fn responses_are_held_to_the_same_framing_rules() {
    let both =
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(
        parse_response(both, "GET", &SMALL).unwrap_err().status(),
        400
    );
    let bare_lf = b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        parse_response(bare_lf, "GET", &SMALL).unwrap_err().status(),
        400
    );
    // An interim 100 Continue is a whole message; the final response follows it.
    let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    let Ok(Parsed::Complete { message, consumed }) = parse_response(wire, "POST", &SMALL) else {
        panic!("the interim response is complete");
    };
    assert_eq!(message.status, 100);
    let Ok(Parsed::Complete { message, .. }) = parse_response(&wire[consumed..], "POST", &SMALL)
    else {
        panic!("the final response is complete");
    };
    assert_eq!((message.status, message.body.as_slice()), (200, &b"hi"[..]));
}
