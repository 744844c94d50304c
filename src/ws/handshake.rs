//! The opening handshake (RFC 6455 §4): an HTTP request that turns the connection into a WebSocket.
//!
//! # The idea
//!
//! A WebSocket begins as an ordinary HTTP/1.1 request on an ordinary TCP
//! connection, so it passes wherever HTTP passes (port 80 or 443, proxies,
//! load balancers). The client asks to switch protocols:
//!
//! ```text
//! GET /chat HTTP/1.1
//! Host: server.example.com
//! Upgrade: websocket                          ← the protocol it wants
//! Connection: Upgrade                         ← "Upgrade is for this hop"
//! Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ== ← 16 random bytes, Base64
//! Sec-WebSocket-Version: 13
//! ```
//!
//! and a server that agrees answers `101 Switching Protocols`:
//!
//! ```text
//! HTTP/1.1 101 Switching Protocols
//! Upgrade: websocket
//! Connection: Upgrade
//! Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
//! ```
//!
//! From the byte after that blank line on, both sides speak frames
//! ([`frame`](super::frame)); HTTP is over for this connection.
//!
//! `Sec-WebSocket-Accept` is Base64(SHA-1(key + [`GUID`])). It proves the answer
//! came from a server that read *this* request and speaks WebSocket — not from
//! a plain HTTP server or a cache that replays an old `101`. It is not
//! security: anyone can compute it. The key only has to be fresh, not secret.
//!
//! # What the server refuses
//!
//! [`accept`] checks §4.2.1 and answers an HTTP error, which the caller sends
//! before closing:
//!
//! | request | answer |
//! |---|---|
//! | not `GET`, or not HTTP/1.1 | 400 |
//! | no `Upgrade: websocket` (a token, any case, in a list) | 426 Upgrade Required, with `Upgrade: websocket` |
//! | no `upgrade` token in `Connection` | 400 |
//! | `Sec-WebSocket-Version` missing, repeated or not `13` | 426, with `Sec-WebSocket-Version: 13` |
//! | `Sec-WebSocket-Key` missing, repeated, or not Base64 of 16 bytes | 400 |
//!
//! 426 says "this resource speaks another protocol (version)", which tells a
//! plain browser visit or an old client what to do; every other fault is a
//! malformed upgrade, 400. Subprotocols (`Sec-WebSocket-Protocol`) and
//! extensions (`Sec-WebSocket-Extensions`, e.g. compression) are not
//! negotiated: the answer names none, which the RFC allows and which tells the
//! client that none is in use. `Origin` is not checked: a server that serves
//! browsers and cares which pages may connect checks it itself.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind};
use crate::http::{Headers, Request, Response, Version};
use crate::step::Step;
use crate::ws::base64;
use crate::ws::sha1::sha1;

/// The fixed GUID of RFC 6455 §1.3, appended to the key before hashing.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version: 13, the RFC's (8 and below were drafts).
pub const VERSION: &str = "13";

/// How many random bytes a key carries (§4.1): 16, which is 24 characters of Base64.
pub const KEY_BYTES: usize = 16;

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
///
/// # Examples
/// ```
/// use sockstep::ws::handshake::accept_key;
///
/// // The example of RFC 6455 §1.3.
/// assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let mut input = String::with_capacity(key.len() + GUID.len());
    input.push_str(key);
    input.push_str(GUID);
    base64::encode(&sha1(input.as_bytes()))
}

/// Whether any `name` field holds `token` in its comma-separated list, in any case.
fn has_token(headers: &Headers, name: &str, token: &str) -> bool {
    headers
        .get_all(name)
        .flat_map(|value| value.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The value of `name` when it appears exactly once.
fn single<'a>(headers: &'a Headers, name: &'a str) -> Option<&'a str> {
    let mut values = headers.get_all(name);
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// An error answer: the status, a plain-text body saying why, and `Connection: close`.
pub(crate) fn refusal(status: u16, why: &str, extra: &[(&str, &str)]) -> Response {
    let mut headers = Headers::new();
    for (name, value) in extra {
        headers.append(*name, *value);
    }
    headers.append("Content-Type", "text/plain; charset=utf-8");
    headers.append("Connection", "close");
    Response {
        version: Version::Http11,
        status,
        reason: match status {
            413 => "Content Too Large",
            414 => "URI Too Long",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            501 => "Not Implemented",
            505 => "HTTP Version Not Supported",
            _ => "Bad Request",
        }
        .into(),
        headers,
        body: format!("{why}\n").into_bytes(),
    }
}

/// Server side: checks an upgrade request and returns the `101` answer, or the
/// error answer to send instead (400 or 426; the table in the [module docs](self)).
///
/// The error answer's body says what was wrong, in one line. After sending it,
/// close the connection.
///
/// # Examples
/// ```
/// use sockstep::http::{parse_request, Limits, Parsed};
/// use sockstep::ws::handshake;
///
/// let wire = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
///              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///              Sec-WebSocket-Version: 13\r\n\r\n";
/// let Parsed::Complete { message, .. } = parse_request(wire, &Limits::default())? else {
///     panic!("whole request");
/// };
/// let answer = handshake::accept(&message).expect("a valid upgrade");
/// assert_eq!(answer.status, 101);
/// assert_eq!(answer.headers.get("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
/// # Ok::<(), sockstep::http::HttpError>(())
/// ```
///
/// # Errors
/// The error [`Response`] to send, when the request is not a valid upgrade.
pub fn accept(request: &Request) -> Result<Response, Response> {
    if request.method != "GET" {
        return Err(refusal(400, "a WebSocket upgrade must be a GET", &[]));
    }
    if request.version != Version::Http11 {
        return Err(refusal(400, "a WebSocket upgrade needs HTTP/1.1", &[]));
    }
    if !has_token(&request.headers, "upgrade", "websocket") {
        return Err(refusal(
            426,
            "this is a WebSocket endpoint: send Upgrade: websocket",
            &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", VERSION)],
        ));
    }
    if !has_token(&request.headers, "connection", "upgrade") {
        return Err(refusal(
            400,
            "Connection must include the upgrade token",
            &[],
        ));
    }
    if single(&request.headers, "sec-websocket-version") != Some(VERSION) {
        return Err(refusal(
            426,
            "only Sec-WebSocket-Version 13 is spoken here",
            &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", VERSION)],
        ));
    }
    let key = match single(&request.headers, "sec-websocket-key") {
        Some(key) if base64::decode(key).is_ok_and(|k| k.len() == KEY_BYTES) => key,
        _ => {
            return Err(refusal(
                400,
                "Sec-WebSocket-Key must appear once, as Base64 of 16 bytes",
                &[],
            ));
        }
    };
    let mut headers = Headers::new();
    headers.append("Upgrade", "websocket");
    headers.append("Connection", "Upgrade");
    headers.append("Sec-WebSocket-Accept", accept_key(key));
    Ok(Response {
        version: Version::Http11,
        status: 101,
        reason: "Switching Protocols".into(),
        headers,
        body: Vec::new(),
    })
}

/// Client side: the upgrade request for `path` on `host` (the `Host` header:
/// `name:port`, or `[v6]:port`), carrying `key` (see [`new_key`]).
///
/// ```
/// use sockstep::ws::handshake;
///
/// let request = handshake::request("127.0.0.1:8080", "/chat", "dGhlIHNhbXBsZSBub25jZQ==");
/// let wire = String::from_utf8(request.to_bytes()?).unwrap();
/// assert!(wire.starts_with("GET /chat HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n"));
/// # Ok::<(), sockstep::http::HttpError>(())
/// ```
pub fn request(host: &str, path: &str, key: &str) -> Request {
    let mut headers = Headers::new();
    headers.append("Host", host);
    headers.append("Upgrade", "websocket");
    headers.append("Connection", "Upgrade");
    headers.append("Sec-WebSocket-Key", key);
    headers.append("Sec-WebSocket-Version", VERSION);
    Request {
        method: "GET".into(),
        target: path.into(),
        version: Version::Http11,
        headers,
        body: Vec::new(),
    }
}

/// Client side: checks the server's answer to a request that carried `key`.
///
/// # Errors
/// [`ErrorKind::Http`] at [`Step::Upgrade`] with the answer's status, when it
/// is not `101`, lacks `Upgrade: websocket` or the `upgrade` connection token,
/// carries the wrong `Sec-WebSocket-Accept`, or names an extension or
/// subprotocol we did not offer (§4.1, the client's checks).
pub fn check_response(response: &Response, key: &str) -> Result<(), Error> {
    let fail = |reason: String| {
        Err(Error::new(
            Step::Upgrade,
            ErrorKind::Http {
                status: response.status,
                reason,
            },
        ))
    };
    if response.status != 101 {
        let body = String::from_utf8_lossy(&response.body);
        let body = body.trim();
        return fail(format!(
            "the server answered {} {} instead of 101 Switching Protocols{}{}",
            response.status,
            response.reason,
            if body.is_empty() { "" } else { ": " },
            body.chars().take(200).collect::<String>()
        ));
    }
    if !has_token(&response.headers, "upgrade", "websocket") {
        return fail("the 101 answer lacks Upgrade: websocket".into());
    }
    if !has_token(&response.headers, "connection", "upgrade") {
        return fail("the 101 answer lacks Connection: Upgrade".into());
    }
    if single(&response.headers, "sec-websocket-accept") != Some(accept_key(key).as_str()) {
        return fail("Sec-WebSocket-Accept does not match our key".into());
    }
    if response.headers.contains("sec-websocket-extensions") {
        return fail("the server chose an extension we did not offer".into());
    }
    if response.headers.contains("sec-websocket-protocol") {
        return fail("the server chose a subprotocol we did not offer".into());
    }
    Ok(())
}

/// A fresh `Sec-WebSocket-Key`: 16 bytes from [`fresh_bits`], in Base64.
///
/// There is no `rand` crate here. The key need not be secret (it is sent in the
/// clear and only proves that the server read this request), only different
/// each time, so that no cache can answer with an old `101`.
///
/// ```
/// use sockstep::ws::{base64, handshake};
///
/// let (a, b) = (handshake::new_key(), handshake::new_key());
/// assert_ne!(a, b);
/// assert_eq!(base64::decode(&a).unwrap().len(), 16);
/// ```
pub fn new_key() -> String {
    let mut key = [0u8; KEY_BYTES];
    for half in key.chunks_exact_mut(8) {
        half.copy_from_slice(&fresh_bits().to_le_bytes());
    }
    base64::encode(&key)
}

/// 64 fresh bits: the clock, a counter and the process id, hashed with std's
/// `RandomState` — SipHash under a key drawn from the operating system's random
/// source (once per thread, then stepped on every call).
///
/// Without that key nobody can compute or predict the output, even after seeing
/// earlier ones — unlike a plain generator such as SplitMix, whose state can be
/// read back from one output. Still, SipHash-1-3 is not a vetted cryptographic
/// generator, and needs not be: it makes the handshake keys and the clients'
/// masking keys fresh (see [`apply_mask`](super::frame::apply_mask) for why
/// masks must not be guessable), and protects no secret.
pub fn fresh_bits() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let count = CALLS.fetch_add(1, Ordering::Relaxed);
    // A clock before 1970 only loses the clock's share of the mixing.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one((nanos, count, std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade() -> Request {
        request("example.com", "/", "dGhlIHNhbXBsZSBub25jZQ==")
    }

    fn status(request: &Request) -> u16 {
        accept(request).expect_err("should be refused").status
    }

    #[test]
    fn a_good_request_gets_101_with_the_rfc_accept() {
        let answer = accept(&upgrade()).unwrap();
        assert_eq!(
            answer.headers.get("Sec-WebSocket-Accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        check_response(&answer, "dGhlIHNhbXBsZSBub25jZQ==").unwrap();
    }

    #[test]
    fn tokens_are_matched_in_lists_and_in_any_case() {
        let mut r = upgrade();
        r.headers.insert("Upgrade", "h2c, WebSocket");
        r.headers.insert("Connection", "keep-alive, UPGRADE");
        assert!(accept(&r).is_ok());
    }

    #[test]
    fn each_missing_piece_gets_its_status() {
        let mut r = upgrade();
        r.method = "POST".into();
        assert_eq!(status(&r), 400);
        let mut r = upgrade();
        r.headers.remove("upgrade");
        assert_eq!(status(&r), 426);
        let mut r = upgrade();
        r.headers.insert("Connection", "keep-alive");
        assert_eq!(status(&r), 400);
        let mut r = upgrade();
        r.headers.insert("Sec-WebSocket-Version", "8");
        let answer = accept(&r).unwrap_err();
        assert_eq!(answer.status, 426);
        assert_eq!(answer.headers.get("sec-websocket-version"), Some("13"));
        let mut r = upgrade();
        r.headers.insert("Sec-WebSocket-Key", "c2hvcnQ="); // "short": 5 bytes
        assert_eq!(status(&r), 400);
        let mut r = upgrade();
        r.headers
            .append("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(status(&r), 400);
    }

    #[test]
    fn error_answers_serialise_and_say_why() {
        let mut r = upgrade();
        r.headers.remove("sec-websocket-key");
        let wire = accept(&r).unwrap_err().to_bytes().unwrap();
        let text = String::from_utf8(wire).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.ends_with("Sec-WebSocket-Key must appear once, as Base64 of 16 bytes\n"));
    }

    #[test]
    fn the_client_refuses_a_wrong_accept_or_a_plain_200() {
        let mut answer = accept(&upgrade()).unwrap();
        answer.headers.insert(
            "Sec-WebSocket-Accept",
            accept_key("c29tZSBvdGhlciBrZXkhIQ=="),
        );
        let e = check_response(&answer, "dGhlIHNhbXBsZSBub25jZQ==").unwrap_err();
        assert_eq!(e.step(), Step::Upgrade);
        let ok = Response {
            version: Version::Http11,
            status: 200,
            reason: "OK".into(),
            headers: Headers::new(),
            body: b"hello".to_vec(),
        };
        let e = check_response(&ok, "dGhlIHNhbXBsZSBub25jZQ==").unwrap_err();
        assert!(e.to_string().contains("200 OK instead of 101"), "{e}");
    }
}
