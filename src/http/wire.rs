//! The HTTP/1.1 wire format (RFC 9112): parse and emit messages as pure functions over bytes.
//!
//! # The idea
//!
//! A request is a request line, header lines, a blank line, then a body:
//!
//! ```text
//! POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi
//! ```
//!
//! A response is the same with a status line (`HTTP/1.1 200 OK`) in front. The
//! body's length is told by the head, in this order (RFC 9112 §6.3):
//!
//! 1. Some responses never have a body: every `1xx`, `204`, `304`, any answer to
//!    `HEAD`, and a `2xx` answer to `CONNECT` (the connection becomes a tunnel).
//! 2. `Transfer-Encoding: chunked`: the body comes as chunks, each a hex size, CRLF,
//!    that many bytes, CRLF; a chunk of size 0 (then optional trailer fields and a
//!    blank line) ends it. The sender need not know the length in advance.
//! 3. `Content-Length: N`: exactly N bytes follow.
//! 4. Neither: a request has no body; a response's body runs until the server
//!    closes the connection ([`parse_response_at_eof`]).
//!
//! # Incremental parsing
//!
//! A socket hands us bytes in whatever pieces TCP delivered. The caller keeps
//! appending them to one buffer and calls [`parse_request`] (or
//! [`parse_response`]) on the whole buffer after every read. The answer is
//! [`Parsed::Partial`] (read more and call again), [`Parsed::Complete`] with the
//! message and how many bytes it took (the rest belongs to the next message on a
//! kept-alive connection), or an [`HttpError`]. These parsers are stateless:
//! they start from the top each time, which is simple and costs little for
//! heads of a few KiB. A server, which must not let a client make it work in
//! proportion to the square of what it sends, calls
//! [`parse_request_resuming`] instead: the same answers, but each call looks
//! only at what arrived since the last; a client calls
//! [`parse_response_resuming`], for the same reason the other way round.
//!
//! Every line is checked as soon as it is whole, and every [`Limits`] check is
//! made on what has arrived so far, so `Partial` is never the answer once a limit
//! is exceeded: a peer that sends an endless head gets `431` when it crosses the
//! limit, not a server that waits and buffers forever.
//!
//! # Strict on purpose: request smuggling
//!
//! When two programs on the path (a proxy and the server behind it) disagree about
//! where a request ends, an attacker can hide a second request inside the body of
//! the first: the proxy forwards one request, the server sees two. This is
//! *request smuggling*, and every known variant lives in a rule that one parser
//! bent and the other did not. So where RFC 9112 lets a recipient choose between
//! tolerating and refusing, this module refuses:
//!
//! - **Bare LF** (a line ending in `\n` without `\r`): refused with 400. §2.2 lets a
//!   recipient accept it; a proxy that does not would see different lines.
//! - **obs-fold** (a header line starting with space or tab, continuing the one
//!   before): 400, one of the two answers §5.2 allows a server.
//! - **Whitespace between field name and colon**: 400, as §5.1 requires.
//! - **NUL, other control bytes, DEL and any byte ≥ 0x80 in the head**: 400. RFC 9110
//!   §5.5 allows `obs-text` (0x80–0xFF) in values; we do not, so every head is ASCII.
//! - **Both `Content-Length` and `Transfer-Encoding`**: 400. §6.3 says
//!   `Transfer-Encoding` wins but that the message "ought to be handled as an
//!   error"; this disagreement is the classic CL.TE / TE.CL smuggling.
//! - **`Content-Length` that is not one number**: differing values, signs, spaces
//!   inside, non-digits or a value beyond `u64`: 400. Identical repeated values
//!   (`5, 5`) are accepted, as RFC 9110 §8.6 allows.
//! - **`Transfer-Encoding` on a request**: if `chunked` is not the final coding the
//!   length cannot be known, 400 (§6.3 item 4); `chunked` after codings we do not
//!   implement (`gzip, chunked`) is 501 (§6.1: "SHOULD respond with 501"); `chunked`
//!   twice is 400 (§6.1 forbids it). In an HTTP/1.0 message it is 400 (§6.1: treat
//!   the framing as faulty).
//! - **HTTP/1.1 request without exactly one `Host`**: 400 (§3.2).
//! - **Blank lines before the request line**: 400. §2.2 says a server SHOULD ignore
//!   them; we refuse them like any other malformed request line.
//!
//! A chunked body may not spend more bytes on framing (size lines, extensions,
//! CRLFs) than [`Limits::max_body`] allows for the data: 413, like a large body.
//!
//! Chunk extensions (`1a;name=value`) are checked for allowed bytes and ignored,
//! and trailer fields are checked and dropped (RFC 9110 §6.5 lets a recipient
//! discard them).

use std::fmt;

use crate::error::{Error, ErrorKind};
use crate::step::Step;

/// How much a peer may send before we refuse it. See [`Limits::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line or status line, without its CRLF. Over it: 414.
    pub max_request_line: usize,
    /// Longest head: start line, header lines and the blank line together; also the
    /// longest trailer section of a chunked body. Over it: 431.
    pub max_header_bytes: usize,
    /// Most header lines in a head (or trailer lines after a chunked body). Over it: 431.
    pub max_headers: usize,
    /// Largest body, after chunked decoding. Over it: 413.
    pub max_body: usize,
}

impl Default for Limits {
    /// 8 KiB request line, 16 KiB head, 100 header lines, 1 MiB body.
    fn default() -> Limits {
        Limits {
            // RFC 9112 §3 recommends supporting request lines of at least 8000
            // octets; 8 KiB is what nginx and Apache allow by default, so real URLs fit.
            max_request_line: 8 * 1024,
            // Twice the line: room for a long URL plus cookies and the usual dozen
            // headers. A thread-per-connection server holds one head per connection,
            // so a thousand slow clients pin 16 MiB, not gigabytes.
            max_header_bytes: 16 * 1024,
            // Browsers send 10–30 headers. 100 is generous for those and bounds the
            // work spent on a head of thousands of one-byte headers.
            max_headers: 100,
            // The same 1 MiB as `tcp::framing::DEFAULT_MAX_FRAME`: far above what the
            // walkthroughs send, small enough to buffer for every connection at once.
            max_body: 1 << 20,
        }
    }
}

/// Longest chunk-size line (hex size plus extensions), without its CRLF.
///
/// A size needs at most 16 hex digits; the rest is for chunk extensions, which
/// nobody we talk to sends. 1 KiB stops a peer from streaming an endless line.
const MAX_CHUNK_LINE: usize = 1024;

/// The chunk size [`Request::to_bytes`] and [`Response::to_bytes`] use for chunked
/// bodies: 8 KiB, one read of the framing reader.
const DEFAULT_CHUNK: usize = 8 * 1024;

/// The protocol version on the start line. Only these two speak RFC 9112's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `HTTP/1.0`: no `Host` required, no chunked coding, closes by default.
    Http10,
    /// `HTTP/1.1`: `Host` required, chunked coding, keeps the connection by default.
    Http11,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        })
    }
}

/// Header fields in the order they arrived, names compared without regard to case.
///
/// Order matters (repeated fields like `Set-Cookie` keep theirs), so this is a
/// list, not a map. Names keep the spelling they were given.
///
/// ```
/// use sockstep::http::Headers;
///
/// let mut headers = Headers::new();
/// headers.append("Accept", "text/plain");
/// headers.append("accept", "text/html");
/// assert_eq!(headers.get("ACCEPT"), Some("text/plain"));
/// assert_eq!(headers.get_all("Accept").count(), 2);
/// headers.insert("Accept", "*/*");
/// assert_eq!(headers.get_all("accept").collect::<Vec<_>>(), ["*/*"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, String)>,
}

impl Headers {
    /// No fields.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// The value of the first field called `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The values of every field called `name` (any case), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Adds a field at the end, keeping any others of the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.push((name.into(), value.into()));
    }

    /// Replaces every field called `name` with this one, at the end.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.remove(&name);
        self.fields.push((name, value.into()));
    }

    /// Removes every field called `name` (any case).
    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Whether a field called `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every (name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// An HTTP request: what a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, … — a token, case-sensitive.
    pub method: String,
    /// The request target as sent, e.g. `/index.html?q=1`.
    pub target: String,
    /// The version on the request line.
    pub version: Version,
    /// The header fields, in order.
    pub headers: Headers,
    /// The body, after chunked decoding.
    pub body: Vec<u8>,
}

/// An HTTP response: what a server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The version on the status line.
    pub version: Version,
    /// The status code, 100–599.
    pub status: u16,
    /// The reason phrase (`OK`), which carries no meaning and may be empty.
    pub reason: String,
    /// The header fields, in order.
    pub headers: Headers,
    /// The body, after chunked decoding.
    pub body: Vec<u8>,
}

/// The answer of an incremental parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// A whole message, which took the first `consumed` bytes of the buffer.
    Complete {
        /// The message.
        message: T,
        /// How many bytes of the buffer it took; the rest is the next message's.
        consumed: usize,
    },
    /// The bytes so far are a valid beginning under every limit: read more, call again.
    Partial,
}

/// Why a message was refused, with the status a server should answer.
///
/// For a request the status is what to send back (then close the connection:
/// after a framing error nobody knows where the next request starts). For a
/// response there is nobody to answer; the status says what kind of fault it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    status: u16,
    reason: &'static str,
}

impl HttpError {
    fn new(status: u16, reason: &'static str) -> HttpError {
        HttpError { status, reason }
    }

    /// The status code to answer with: 400, 413, 414, 431, 501 or 505.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// What was wrong, in a few words.
    pub fn reason(&self) -> &str {
        self.reason
    }

    pub(crate) fn static_reason(&self) -> &'static str {
        self.reason
    }
}

/// The standard reason phrase (RFC 9110 §15) of the statuses sockstep sends or
/// meets; `""` for others, which is allowed: the phrase carries no meaning.
///
/// ```
/// assert_eq!(sockstep::http::status_text(404), "Not Found");
/// ```
pub fn status_text(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            status_text(self.status),
            self.reason
        )
    }
}

impl std::error::Error for HttpError {}

/// An HTTP error becomes a sockstep error at [`Step::Frame`]: like a bad frame, it
/// means the bytes on the stream cannot be cut into messages.
impl From<HttpError> for Error {
    fn from(e: HttpError) -> Error {
        Error::new(
            Step::Frame,
            ErrorKind::Http {
                status: e.status(),
                reason: e.reason().to_string(),
            },
        )
    }
}

fn bad(reason: &'static str) -> HttpError {
    HttpError::new(400, reason)
}

// ---------------------------------------------------------------------------
// Bytes: which ones may appear where (RFC 9110 §5.6.2, §5.5).
// ---------------------------------------------------------------------------

/// `tchar`: the bytes of a method or a field name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Bytes allowed in a field value or reason phrase: visible ASCII, space, tab.
fn is_field_byte(b: u8) -> bool {
    b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s
        && is_ows(*first)
    {
        s = rest;
    }
    while let [rest @ .., last] = s
        && is_ows(*last)
    {
        s = rest;
    }
    s
}

/// Bytes already checked to be ASCII, as a `String`: one copy (ASCII is UTF-8,
/// so nothing is replaced), not a `char` at a time.
fn ascii(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

// ---------------------------------------------------------------------------
// Lines.
// ---------------------------------------------------------------------------

/// One line of the buffer, found by [`next_line`].
enum Line<'a> {
    /// The line without its CRLF, and where the next one starts.
    Complete(&'a [u8], usize),
    /// No line end yet, and still within the limit.
    Partial,
    /// No line end within `max` bytes.
    TooLong,
}

/// The line starting at `start`, if it ends (CRLF included) within `max` bytes.
///
/// A LF without the CR before it is refused at once (strict RFC 9112 §2.2).
fn next_line(buf: &[u8], start: usize, max: usize) -> Result<Line<'_>, HttpError> {
    let end = buf.len().min(start.saturating_add(max));
    match buf[start..end].iter().position(|&b| b == b'\n') {
        Some(i) => {
            let lf = start + i;
            if lf == start || buf[lf - 1] != b'\r' {
                return Err(bad("line ends in a bare LF, not CRLF"));
            }
            Ok(Line::Complete(&buf[start..lf - 1], lf + 1))
        }
        None if buf.len() - start >= max => Ok(Line::TooLong),
        None => Ok(Line::Partial),
    }
}

// ---------------------------------------------------------------------------
// The head.
// ---------------------------------------------------------------------------

/// `HTTP/1.0` or `HTTP/1.1`; another `HTTP/x.y` is 505, anything else 400.
fn parse_version(v: &[u8]) -> Result<Version, HttpError> {
    match v {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(HttpError::new(
                505,
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ))
        }
        _ => Err(bad("malformed HTTP version")),
    }
}

/// `method SP request-target SP HTTP-version`, single spaces only (RFC 9112 §3).
fn parse_request_line(line: &[u8]) -> Result<(String, String, Version), HttpError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("request line is not METHOD SP TARGET SP VERSION"));
    };
    if !is_token(method) {
        return Err(bad("method is not a token"));
    }
    if target.is_empty() || !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(bad(
            "request target is empty or has bytes outside visible ASCII",
        ));
    }
    let version = parse_version(version)?;
    Ok((ascii(method), ascii(target), version))
}

/// `HTTP-version SP 3DIGIT SP reason` (RFC 9112 §4). A missing reason and its
/// space are tolerated: the reason means nothing, and servers do omit it.
fn parse_status_line(line: &[u8]) -> Result<(Version, u16, String), HttpError> {
    if line.len() < 12 || line[8] != b' ' {
        return Err(bad("status line is not VERSION SP STATUS SP REASON"));
    }
    let version = parse_version(&line[..8])?;
    let digits = &line[9..12];
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad("status code is not three digits"));
    }
    let status = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&status) {
        return Err(bad("status code outside 100–599"));
    }
    let reason = match &line[12..] {
        [] => &[][..],
        [b' ', reason @ ..] if reason.iter().all(|&b| is_field_byte(b)) => reason,
        _ => return Err(bad("malformed reason phrase")),
    };
    Ok((version, status, ascii(reason)))
}

/// `field-name ":" OWS field-value OWS` (RFC 9112 §5).
fn parse_field(line: &[u8]) -> Result<(String, String), HttpError> {
    if line.first().is_some_and(|&b| is_ows(b)) {
        return Err(bad(
            "obsolete line folding (a header line starting with whitespace)",
        ));
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(bad("header line without a colon"));
    };
    let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
    if name.last().is_some_and(|&b| is_ows(b)) {
        return Err(bad("whitespace between header name and colon"));
    }
    if !is_token(name) {
        return Err(bad("header name is empty or not a token"));
    }
    if !value.iter().all(|&b| is_field_byte(b)) {
        return Err(bad("control or non-ASCII byte in a header value"));
    }
    Ok((ascii(name), ascii(value)))
}

/// Header lines from `pos` up to and including the blank line, as long as they
/// end before `budget_end` and number at most `max_count`. `Ok(None)`: need more.
fn parse_fields(
    buf: &[u8],
    mut pos: usize,
    budget_end: usize,
    max_count: usize,
) -> Result<Option<(Headers, usize)>, HttpError> {
    let mut headers = Headers::new();
    loop {
        match next_line(buf, pos, budget_end.saturating_sub(pos))? {
            Line::Partial => return Ok(None),
            Line::TooLong => return Err(HttpError::new(431, "header section too large")),
            Line::Complete([], next) => return Ok(Some((headers, next))),
            Line::Complete(line, next) => {
                if headers.len() == max_count {
                    return Err(HttpError::new(431, "too many header fields"));
                }
                let (name, value) = parse_field(line)?;
                headers.append(name, value);
                pos = next;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The body's length (RFC 9112 §6.3).
// ---------------------------------------------------------------------------

/// How the body's end is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    NoBody,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The elements of a comma-separated list field over all its lines; empty
/// elements are skipped, as RFC 9110 §5.6.1.2 asks of a recipient.
fn list<'a>(headers: &'a Headers, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .flat_map(|v| v.split(','))
        .map(|e| e.trim_matches([' ', '\t']))
        .filter(|e| !e.is_empty())
}

/// The one length every `Content-Length` element agrees on, if there is the field.
fn content_length(headers: &Headers) -> Result<Option<u64>, HttpError> {
    if !headers.contains("content-length") {
        return Ok(None);
    }
    let mut length = None;
    let mut elements = 0;
    for element in list(headers, "content-length") {
        elements += 1;
        if !element.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("Content-Length is not a non-negative decimal number"));
        }
        let n: u64 = element
            .parse()
            .map_err(|_| bad("Content-Length is too large to represent"))?;
        if length.is_some_and(|l| l != n) {
            return Err(bad("conflicting Content-Length values"));
        }
        length = Some(n);
    }
    if elements == 0 {
        return Err(bad("empty Content-Length"));
    }
    Ok(length)
}

/// The framing a request or response head announces. Rules in the module docs.
fn framing(headers: &Headers, version: Version, is_request: bool) -> Result<Framing, HttpError> {
    let length = content_length(headers)?;
    if !headers.contains("transfer-encoding") {
        return Ok(match length {
            Some(n) => Framing::Length(n),
            None if is_request => Framing::NoBody,
            None => Framing::UntilClose,
        });
    }
    if length.is_some() {
        return Err(bad(
            "both Content-Length and Transfer-Encoding (a request smuggling pattern)",
        ));
    }
    if version == Version::Http10 {
        return Err(bad("Transfer-Encoding in an HTTP/1.0 message"));
    }
    let codings: Vec<&str> = list(headers, "transfer-encoding")
        .map(|c| c.split(';').next().unwrap_or(c).trim_matches([' ', '\t']))
        .collect();
    let chunked = |c: &&str| c.eq_ignore_ascii_case("chunked");
    let Some((last, before)) = codings.split_last() else {
        return Err(bad("empty Transfer-Encoding"));
    };
    if before.iter().any(chunked) {
        return Err(bad("chunked applied more than once"));
    }
    match (chunked(last), before.is_empty(), is_request) {
        (true, true, _) => Ok(Framing::Chunked),
        (true, false, _) => Err(HttpError::new(
            501,
            "transfer codings other than chunked are not implemented",
        )),
        (false, _, true) => Err(bad("Transfer-Encoding whose final coding is not chunked")),
        (false, _, false) => Ok(Framing::UntilClose),
    }
}

/// A body that cannot be longer than `max_body`.
fn too_large() -> HttpError {
    HttpError::new(413, "body larger than the limit")
}

/// `1*HEXDIG [ BWS ";" chunk-ext ]` (RFC 9112 §7.1).
fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(bad("chunk size is not hexadecimal"));
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let d = u64::from(char::from(b).to_digit(16).unwrap_or(0));
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(d))
            .ok_or_else(|| bad("chunk size overflows 64 bits"))?;
    }
    let ext = trim_ows(&line[digits..]);
    match ext {
        [] if digits == line.len() => Ok(size),
        [b';', rest @ ..] if rest.iter().all(|&b| is_field_byte(b)) => Ok(size),
        _ => Err(bad("malformed chunk size line")),
    }
}

/// A chunked body decoded as far as its last whole chunk: where the next
/// chunk starts, the data so far, and the bytes of framing so far. Kept
/// between calls by [`RequestProgress`], so that each call decodes only
/// what arrived since.
#[derive(Debug, Clone, Default)]
struct Chunks {
    pos: usize,
    body: Vec<u8>,
    // Bytes of chunk-size lines and CRLFs so far. Tiny chunks with long extensions
    // would otherwise let a peer send gigabytes on the wire for a small body.
    overhead: usize,
}

/// Decodes chunks from `chunks.pos` on, keeping each whole chunk in `chunks`;
/// the body's end once the last chunk and the trailers are there. `Ok(None)`:
/// need more bytes.
///
/// The limit is checked against each announced size before its data is waited
/// for, so a body that would grow past `max_body` is refused as soon as it says so.
/// The framing around the data (size lines, extensions, CRLFs) may not exceed
/// `max_body` either, which bounds the whole body on the wire to about twice it.
fn decode_chunks(
    buf: &[u8],
    chunks: &mut Chunks,
    limits: &Limits,
) -> Result<Option<usize>, HttpError> {
    loop {
        let mut pos = chunks.pos;
        let (size, overhead) = match next_line(buf, pos, MAX_CHUNK_LINE + 2)? {
            Line::Partial => return Ok(None),
            Line::TooLong => return Err(bad("chunk size line too long")),
            Line::Complete(line, next) => {
                let overhead = chunks.overhead + (next - pos + 2);
                if overhead > limits.max_body {
                    return Err(HttpError::new(
                        413,
                        "chunk framing larger than the body limit (too many small chunks)",
                    ));
                }
                pos = next;
                (parse_chunk_size(line)?, overhead)
            }
        };
        if size == 0 {
            let budget_end = pos.saturating_add(limits.max_header_bytes);
            return Ok(
                parse_fields(buf, pos, budget_end, limits.max_headers)?.map(|(_trailers, end)| end)
            );
        }
        let room = limits.max_body - chunks.body.len();
        let size = match usize::try_from(size) {
            Ok(size) if size <= room => size,
            _ => return Err(too_large()),
        };
        let Some(data) = buf.get(pos..pos + size) else {
            return Ok(None);
        };
        let after = &buf[pos + size..buf.len().min(pos + size + 2)];
        if !b"\r\n".starts_with(after) {
            return Err(bad("chunk data not followed by CRLF"));
        }
        if after.len() < 2 {
            return Ok(None);
        }
        chunks.body.extend_from_slice(data);
        chunks.pos = pos + size + 2;
        chunks.overhead = overhead;
    }
}

/// The body from `pos` on, framed as `framing`, and where it ends. `Ok(None)`:
/// need more bytes. At `eof` there are no more bytes: an unfinished body is an
/// error. A chunked body resumes from `chunks` (see [`Progress`]).
fn read_body(
    buf: &[u8],
    pos: usize,
    framing: Framing,
    limits: &Limits,
    eof: bool,
    chunks: &mut Chunks,
) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let body = match framing {
        Framing::NoBody => Some((Vec::new(), pos)),
        Framing::Length(n) => {
            let n = match usize::try_from(n) {
                Ok(n) if n <= limits.max_body => n,
                _ => return Err(too_large()),
            };
            buf.get(pos..pos + n).map(|b| (b.to_vec(), pos + n))
        }
        Framing::Chunked => {
            decode_chunks(buf, chunks, limits)?.map(|end| (std::mem::take(&mut chunks.body), end))
        }
        Framing::UntilClose => {
            if buf.len() - pos > limits.max_body {
                return Err(too_large());
            }
            eof.then(|| (buf[pos..].to_vec(), buf.len()))
        }
    };
    if body.is_none() && eof {
        return Err(bad("connection closed before the body was complete"));
    }
    Ok(body)
}

// ---------------------------------------------------------------------------
// Parsing whole messages.
// ---------------------------------------------------------------------------

/// Parses one request from the start of `buf`, or says that more bytes are needed.
///
/// Call it again with the grown buffer after every read. On
/// [`Parsed::Complete`], `buf[consumed..]` is the start of the next request.
///
/// # Examples
///
/// ```
/// use sockstep::http::{parse_request, Limits, Parsed};
///
/// let wire = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
/// assert_eq!(parse_request(&wire[..20], &Limits::default())?, Parsed::Partial);
/// let Parsed::Complete { message, consumed } = parse_request(wire, &Limits::default())? else {
///     panic!("the whole request is there");
/// };
/// assert_eq!((message.method.as_str(), message.body.as_slice()), ("POST", &b"hi"[..]));
/// assert_eq!(consumed, wire.len());
/// # Ok::<(), sockstep::http::HttpError>(())
/// ```
///
/// # Errors
///
/// An [`HttpError`] whose [`status`](HttpError::status) is the answer to send:
/// 400 for malformed syntax or framing, 413/414/431 for a body, request line or
/// head over `limits`, 501 for transfer codings we do not implement, 505 for
/// an HTTP version other than 1.0 and 1.1. The [module docs](self) list the rules.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parsed<Request>, HttpError> {
    parse_request_resuming(buf, limits, &mut RequestProgress::default())
}

/// What a resuming parser learnt of a message still arriving: its head, once
/// whole, and a chunked body decoded as far as its last whole chunk. Start
/// each message with `default()`; between calls the buffer may only grow.
#[derive(Debug, Clone)]
pub struct Progress<M> {
    head: Option<(M, usize, Framing)>,
    chunks: Chunks,
}

impl<M> Default for Progress<M> {
    fn default() -> Progress<M> {
        Progress {
            head: None,
            chunks: Chunks::default(),
        }
    }
}

/// The progress of [`parse_request_resuming`].
pub type RequestProgress = Progress<Request>;

/// The progress of [`parse_response_resuming`].
pub type ResponseProgress = Progress<Response>;

impl<M> Progress<M> {
    /// The message, once its body is whole: the head from `parse_head` (asked
    /// once, then kept), the body framed as it says — resuming a chunked one
    /// where the last call stopped — joined by `with_body`. At `eof` an
    /// unfinished body is an error.
    fn resume(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        eof: bool,
        parse_head: impl FnOnce() -> Result<Option<(M, usize, Framing)>, HttpError>,
        with_body: impl FnOnce(M, Vec<u8>) -> M,
    ) -> Result<Parsed<M>, HttpError> {
        let (pos, framing) = match &self.head {
            Some((_, pos, framing)) => (*pos, *framing),
            None => {
                let Some((head, pos, framing)) = parse_head()? else {
                    return Ok(Parsed::Partial);
                };
                self.chunks = Chunks {
                    pos,
                    ..Chunks::default()
                };
                self.head = Some((head, pos, framing));
                (pos, framing)
            }
        };
        let body = read_body(buf, pos, framing, limits, eof, &mut self.chunks)?;
        Ok(match (body, self.head.take()) {
            (Some((body, consumed)), Some((head, ..))) => Parsed::Complete {
                message: with_body(head, body),
                consumed,
            },
            (_, head) => {
                self.head = head;
                Parsed::Partial
            }
        })
    }
}

/// [`parse_request`] for a buffer that grows between calls: the same answers,
/// but each call looks only at what arrived since the last one (the head is
/// parsed once; a chunked body resumes at its last whole chunk). Parsing the
/// whole buffer again after every read costs time in proportion to the
/// buffer, so a body trickled in many small reads would cost time in
/// proportion to its square — a peer sending a 1 MiB chunked body a few
/// bytes at a time could keep a core busy for the whole body deadline.
///
/// ```
/// use sockstep::http::{parse_request_resuming, Limits, Parsed, RequestProgress};
///
/// let wire = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
/// let mut progress = RequestProgress::default();
/// for end in 1..wire.len() {
///     assert_eq!(parse_request_resuming(&wire[..end], &Limits::default(), &mut progress)?, Parsed::Partial);
/// }
/// let Parsed::Complete { message, consumed } =
///     parse_request_resuming(wire, &Limits::default(), &mut progress)?
/// else {
///     panic!("the whole request is there");
/// };
/// assert_eq!((message.body.as_slice(), consumed), (&b"hi"[..], wire.len()));
/// # Ok::<(), sockstep::http::HttpError>(())
/// ```
///
/// # Errors
///
/// As [`parse_request`].
pub fn parse_request_resuming(
    buf: &[u8],
    limits: &Limits,
    progress: &mut RequestProgress,
) -> Result<Parsed<Request>, HttpError> {
    let parse_head = || {
        let Some((head, pos)) = parse_request_head(buf, limits)? else {
            return Ok(None);
        };
        let framing = framing(&head.headers, head.version, true)?;
        Ok(Some((head, pos, framing)))
    };
    progress.resume(buf, limits, false, parse_head, |head, body| Request {
        body,
        ..head
    })
}

/// Parses only the head of the request at the start of `buf`: the request with
/// an empty body, and the head's length. `Ok(None)`: the head is not complete yet.
///
/// A server uses it to act before the body has arrived: to answer
/// `Expect: 100-continue`, or to start the body's own deadline. The head passes
/// every check [`parse_request`] makes on it, including a `Content-Length` over
/// [`Limits::max_body`] (413), so a server can refuse before reading the body.
///
/// ```
/// use sockstep::http::{parse_request_head, Limits};
///
/// let wire = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nonly";
/// let (head, len) = parse_request_head(wire, &Limits::default())?.expect("the head is whole");
/// assert_eq!((head.method.as_str(), len), ("POST", wire.len() - 4));
/// # Ok::<(), sockstep::http::HttpError>(())
/// ```
///
/// # Errors
///
/// As [`parse_request`], for the faults a head can have.
pub fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(Request, usize)>, HttpError> {
    let (line, pos) = match next_line(buf, 0, limits.max_request_line.saturating_add(2))? {
        Line::Partial => return Ok(None),
        Line::TooLong => return Err(HttpError::new(414, "request line too long")),
        Line::Complete(line, next) => (line, next),
    };
    let (method, target, version) = parse_request_line(line)?;
    let Some((headers, pos)) = parse_fields(buf, pos, limits.max_header_bytes, limits.max_headers)?
    else {
        return Ok(None);
    };
    check_host(&headers, version)?;
    if let Framing::Length(n) = framing(&headers, version, true)?
        && usize::try_from(n).map_or(true, |n| n > limits.max_body)
    {
        return Err(too_large());
    }
    let head = Request {
        method,
        target,
        version,
        headers,
        body: Vec::new(),
    };
    Ok(Some((head, pos)))
}

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one `Host`; HTTP/1.0 at most one.
fn check_host(headers: &Headers, version: Version) -> Result<(), HttpError> {
    let hosts = headers.get_all("host").count();
    if hosts > 1 || (hosts == 0 && version == Version::Http11) {
        return Err(bad("an HTTP/1.1 request needs exactly one Host header"));
    }
    Ok(())
}

/// Parses one response to a `request_method` request from the start of `buf`.
///
/// The method matters: an answer to `HEAD` has no body whatever its headers say,
/// and a `2xx` answer to `CONNECT` turns the connection into a tunnel. A `1xx`
/// response is a complete message of its own; the final response follows it.
/// A response framed by the connection closing stays [`Parsed::Partial`] here;
/// once the peer has closed, call [`parse_response_at_eof`].
///
/// # Examples
///
/// ```
/// use sockstep::http::{parse_response, Limits, Parsed};
///
/// let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
/// let Parsed::Complete { message, .. } = parse_response(wire, "GET", &Limits::default())? else {
///     panic!("the whole response is there");
/// };
/// assert_eq!((message.status, message.body.as_slice()), (200, &b"hi"[..]));
/// # Ok::<(), sockstep::http::HttpError>(())
/// ```
///
/// # Errors
///
/// The same as [`parse_request`], with the status line's limit the request line's.
pub fn parse_response(
    buf: &[u8],
    request_method: &str,
    limits: &Limits,
) -> Result<Parsed<Response>, HttpError> {
    response(buf, request_method, limits, false)
}

/// Parses the response in `buf` after the peer closed the connection.
///
/// Nothing more will arrive, so this never answers [`Parsed::Partial`]: a body
/// framed by the close is everything after the head, and any unfinished message
/// is an error.
///
/// ```
/// use sockstep::http::{parse_response_at_eof, Limits, Parsed};
///
/// let wire = b"HTTP/1.0 200 OK\r\n\r\nall of it";
/// let Parsed::Complete { message, .. } = parse_response_at_eof(wire, "GET", &Limits::default())?
/// else {
///     unreachable!("at EOF the answer is never Partial");
/// };
/// assert_eq!(message.body, b"all of it");
/// # Ok::<(), sockstep::http::HttpError>(())
/// ```
///
/// # Errors
///
/// As [`parse_response`], plus 400 when the connection closed before the head or
/// a length-delimited or chunked body was complete.
pub fn parse_response_at_eof(
    buf: &[u8],
    request_method: &str,
    limits: &Limits,
) -> Result<Parsed<Response>, HttpError> {
    response(buf, request_method, limits, true)
}

fn response(
    buf: &[u8],
    request_method: &str,
    limits: &Limits,
    eof: bool,
) -> Result<Parsed<Response>, HttpError> {
    parse_response_resuming(
        buf,
        request_method,
        limits,
        eof,
        &mut ResponseProgress::default(),
    )
}

/// [`parse_response`] (or, with `eof`, [`parse_response_at_eof`]) for a buffer
/// that grows between calls, looking only at what arrived since the last
/// call — so a server that trickles a large chunked body cannot make the
/// client work in proportion to its square. See [`parse_request_resuming`].
///
/// # Errors
///
/// As [`parse_response`] and [`parse_response_at_eof`].
pub fn parse_response_resuming(
    buf: &[u8],
    request_method: &str,
    limits: &Limits,
    eof: bool,
    progress: &mut ResponseProgress,
) -> Result<Parsed<Response>, HttpError> {
    progress.resume(
        buf,
        limits,
        eof,
        || response_head(buf, request_method, limits, eof),
        |head, body| Response { body, ..head },
    )
}

/// The head of the response at the start of `buf` (with an empty body), its
/// length and the body's framing; `None` while the head is not whole.
fn response_head(
    buf: &[u8],
    request_method: &str,
    limits: &Limits,
    eof: bool,
) -> Result<Option<(Response, usize, Framing)>, HttpError> {
    let closed_early = || bad("connection closed before the response head was complete");
    let (line, pos) = match next_line(buf, 0, limits.max_request_line.saturating_add(2))? {
        Line::Partial if eof => return Err(closed_early()),
        Line::Partial => return Ok(None),
        Line::TooLong => return Err(HttpError::new(414, "status line too long")),
        Line::Complete(line, next) => (line, next),
    };
    let (version, status, reason) = parse_status_line(line)?;
    let Some((headers, pos)) = parse_fields(buf, pos, limits.max_header_bytes, limits.max_headers)?
    else {
        return if eof { Err(closed_early()) } else { Ok(None) };
    };
    let framing = if response_has_no_body(status, request_method) {
        Framing::NoBody
    } else {
        framing(&headers, version, false)?
    };
    let head = Response {
        version,
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    Ok(Some((head, pos, framing)))
}

/// RFC 9112 §6.3 items 1 and 2: responses that end with their head.
fn response_has_no_body(status: u16, request_method: &str) -> bool {
    request_method == "HEAD"
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (request_method == "CONNECT" && (200..300).contains(&status))
}

// ---------------------------------------------------------------------------
// Emitting.
// ---------------------------------------------------------------------------

/// `body` in the chunked transfer coding, in chunks of `chunk` bytes (0 counts as 1),
/// ending with the zero-size chunk and no trailers.
///
/// ```
/// use sockstep::http::write_chunked;
///
/// assert_eq!(write_chunked(b"hello", 3), b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n");
/// ```
pub fn write_chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk.max(1) * 8 + 8);
    for piece in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Checks header fields as the parser would, and writes them.
fn emit_fields(out: &mut Vec<u8>, headers: &Headers) -> Result<(), HttpError> {
    for (name, value) in headers.iter() {
        if !is_token(name.as_bytes()) {
            return Err(bad("header name is empty or not a token"));
        }
        let v = value.as_bytes();
        // A CR or LF in a value would end the line early: header injection.
        if !v.iter().all(|&b| is_field_byte(b)) || trim_ows(v).len() != v.len() {
            return Err(bad(
                "header value has a control or non-ASCII byte, or surrounding whitespace",
            ));
        }
        for piece in [name.as_bytes(), b": ", v, b"\r\n"] {
            out.extend_from_slice(piece);
        }
    }
    Ok(())
}

/// Writes the fields, the blank line and the body, framed as the headers say.
///
/// `body_allowed` is false for statuses that never carry a body; `add_empty_length`
/// says whether an empty body still needs `Content-Length: 0` (a response does,
/// or it would be read until close).
fn emit_rest(
    out: &mut Vec<u8>,
    headers: &Headers,
    version: Version,
    body: &[u8],
    is_request: bool,
    body_allowed: bool,
    chunk: usize,
) -> Result<(), HttpError> {
    emit_fields(out, headers)?;
    if !body_allowed {
        if !body.is_empty() {
            return Err(bad("this status cannot carry a body"));
        }
        out.extend_from_slice(b"\r\n");
        return Ok(());
    }
    match framing(headers, version, is_request)? {
        Framing::Chunked => {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&write_chunked(body, chunk));
        }
        Framing::Length(n) if n == body.len() as u64 => {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body);
        }
        Framing::Length(_) => return Err(bad("Content-Length does not match the body")),
        Framing::NoBody | Framing::UntilClose => {
            if headers.contains("transfer-encoding") {
                return Err(HttpError::new(
                    501,
                    "only the chunked transfer coding can be written",
                ));
            }
            if !body.is_empty() || !is_request {
                out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body);
        }
    }
    Ok(())
}

impl Request {
    /// The request as bytes on the wire; a chunked body goes in 8 KiB chunks.
    ///
    /// Adds `Content-Length` when there is a body and neither `Content-Length`
    /// nor `Transfer-Encoding: chunked` is given. What it writes, [`parse_request`]
    /// reads back as the same request.
    ///
    /// ```
    /// use sockstep::http::{Headers, Request, Version};
    ///
    /// let mut headers = Headers::new();
    /// headers.append("Host", "example.com");
    /// let request = Request {
    ///     method: "POST".into(),
    ///     target: "/echo".into(),
    ///     version: Version::Http11,
    ///     headers,
    ///     body: b"hi".to_vec(),
    /// };
    /// assert_eq!(
    ///     request.to_bytes()?,
    ///     b"POST /echo HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nhi"
    /// );
    /// # Ok::<(), sockstep::http::HttpError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Refuses to write what [`parse_request`] would refuse to read: a method or
    /// header name that is not a token, a target or value with a control byte (a
    /// CR or LF there would let a value inject headers), no `Host` in HTTP/1.1, a
    /// `Content-Length` that does not match the body, or conflicting framing.
    pub fn to_bytes(&self) -> Result<Vec<u8>, HttpError> {
        self.to_bytes_chunked(DEFAULT_CHUNK)
    }

    /// As [`to_bytes`](Request::to_bytes), with a chunked body cut into `chunk`-byte chunks.
    ///
    /// # Errors
    ///
    /// As [`to_bytes`](Request::to_bytes).
    pub fn to_bytes_chunked(&self, chunk: usize) -> Result<Vec<u8>, HttpError> {
        let line = format!("{} {} {}", self.method, self.target, self.version);
        parse_request_line(line.as_bytes())?;
        check_host(&self.headers, self.version)?;
        let mut out = Vec::with_capacity(line.len() + 256 + self.body.len());
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        emit_rest(
            &mut out,
            &self.headers,
            self.version,
            &self.body,
            true,
            true,
            chunk,
        )?;
        Ok(out)
    }
}

impl Response {
    /// The response as bytes on the wire; a chunked body goes in 8 KiB chunks.
    ///
    /// Adds `Content-Length` (even `0`) unless the headers frame the body already,
    /// so the reader never has to wait for the close. `1xx`, `204` and `304` get no
    /// framing and must have an empty body. An answer to `HEAD` is the server's
    /// business: it sends the head of the `GET` answer and not the body.
    ///
    /// ```
    /// use sockstep::http::{Headers, Response, Version};
    ///
    /// let response = Response {
    ///     version: Version::Http11,
    ///     status: 200,
    ///     reason: "OK".into(),
    ///     headers: Headers::new(),
    ///     body: b"hi".to_vec(),
    /// };
    /// assert_eq!(response.to_bytes()?, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    /// # Ok::<(), sockstep::http::HttpError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Request::to_bytes`], and a status outside 100–599, a reason phrase with
    /// a control byte, or a body on a status that cannot have one.
    pub fn to_bytes(&self) -> Result<Vec<u8>, HttpError> {
        self.to_bytes_chunked(DEFAULT_CHUNK)
    }

    /// As [`to_bytes`](Response::to_bytes), with a chunked body cut into `chunk`-byte chunks.
    ///
    /// # Errors
    ///
    /// As [`to_bytes`](Response::to_bytes).
    pub fn to_bytes_chunked(&self, chunk: usize) -> Result<Vec<u8>, HttpError> {
        let line = format!("{} {:03} {}", self.version, self.status, self.reason);
        parse_status_line(line.as_bytes())?;
        let mut out = Vec::with_capacity(line.len() + 256 + self.body.len());
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        let body_allowed = !response_has_no_body(self.status, "");
        emit_rest(
            &mut out,
            &self.headers,
            self.version,
            &self.body,
            false,
            body_allowed,
            chunk,
        )?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(wire: &[u8]) -> Result<Parsed<Request>, HttpError> {
        parse_request(wire, &Limits::default())
    }

    fn status_of(wire: &[u8]) -> u16 {
        req(wire).expect_err("should be refused").status()
    }

    #[test]
    fn a_simple_get_parses_and_reports_what_it_consumed() {
        let wire = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next";
        let Parsed::Complete { message, consumed } = req(wire).unwrap() else {
            panic!("complete");
        };
        assert_eq!(message.method, "GET");
        assert_eq!(message.headers.get("HOST"), Some("x"));
        assert_eq!(&wire[consumed..], b"GET /next");
    }

    #[test]
    fn every_prefix_of_a_request_is_partial() {
        let wire =
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
        for end in 0..wire.len() {
            assert_eq!(req(&wire[..end]).unwrap(), Parsed::Partial, "prefix {end}");
        }
        assert!(
            matches!(req(wire).unwrap(), Parsed::Complete { consumed, .. } if consumed == wire.len())
        );
    }

    #[test]
    fn content_length_with_transfer_encoding_is_refused_as_smuggling() {
        let wire =
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status_of(wire), 400);
    }

    #[test]
    fn a_bare_lf_is_refused() {
        assert_eq!(status_of(b"GET / HTTP/1.1\nHost: x\r\n\r\n"), 400);
    }

    #[test]
    fn an_announced_body_over_the_limit_is_refused_before_it_arrives() {
        let limits = Limits {
            max_body: 10,
            ..Limits::default()
        };
        let wire = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(parse_request(wire, &limits).unwrap_err().status(), 413);
        let chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n3\r\n";
        assert_eq!(parse_request(chunked, &limits).unwrap_err().status(), 413);
    }

    #[test]
    fn many_tiny_chunks_cannot_multiply_the_bytes_on_the_wire() {
        let limits = Limits {
            max_body: 100,
            ..Limits::default()
        };
        let mut wire = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..10 {
            wire.extend_from_slice(b"1;padding-padding-padding\r\na\r\n");
        }
        assert_eq!(parse_request(&wire, &limits).unwrap_err().status(), 413);
    }

    #[test]
    fn unknown_versions_get_505() {
        assert_eq!(status_of(b"GET / HTTP/2.0\r\n\r\n"), 505);
    }

    #[test]
    fn responses_to_head_and_204_have_no_body() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        let parsed = parse_response(wire, "HEAD", &Limits::default()).unwrap();
        assert!(matches!(parsed, Parsed::Complete { message, .. } if message.body.is_empty()));
        let wire = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert!(matches!(
            parse_response(wire, "GET", &Limits::default()).unwrap(),
            Parsed::Complete { .. }
        ));
    }

    #[test]
    fn a_close_delimited_response_waits_for_eof() {
        let wire = b"HTTP/1.1 200 OK\r\n\r\nabc";
        assert_eq!(
            parse_response(wire, "GET", &Limits::default()).unwrap(),
            Parsed::Partial
        );
        let truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc";
        assert_eq!(
            parse_response_at_eof(truncated, "GET", &Limits::default())
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn the_emitter_refuses_header_injection() {
        let mut headers = Headers::new();
        headers.append("Host", "x\r\nEvil: 1");
        let request = Request {
            method: "GET".into(),
            target: "/".into(),
            version: Version::Http11,
            headers,
            body: Vec::new(),
        };
        assert_eq!(request.to_bytes().unwrap_err().status(), 400);
    }

    #[test]
    fn http_errors_become_sockstep_errors_at_the_frame_step() {
        let e: Error = HttpError::new(431, "too many header fields").into();
        assert_eq!(e.step(), Step::Frame);
        assert_eq!(
            e.kind(),
            &ErrorKind::Http {
                status: 431,
                reason: "too many header fields".into()
            }
        );
        assert!(e.to_string().contains("431"), "{e}");
    }
}
