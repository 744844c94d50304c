//! The HTTP server: each connection's life, one request and one response at a time.
//!
//! # The idea
//!
//! The seed describes HTTP as: the client asks, the server answers, then the
//! connection ends. On a thread-per-connection TCP server that is a loop of four
//! steps on the connection's own thread, and this file has one function per step,
//! in the order they run:
//!
//! ```text
//! accept()                      (tcp::serve, before this file runs)
//!   ┌→ read_request()           bytes until a whole request has arrived
//!   │  respond()                method + path → a route → a Response
//!   │  write_response()         the response's bytes, framed by Content-Length
//!   └─ keep the connection?     HTTP/1.1: yes unless someone said "close"
//! close()                       shutdown(SHUT_WR), drain, close(2)
//! ```
//!
//! **The seed's description is HTTP/1.0.** In 1.0 a connection carries one request
//! and closes after the response (unless both sides ask for `keep-alive`). HTTP/1.1
//! made the opposite the default: a connection stays open for more requests until
//! either side sends `Connection: close` or goes quiet, which saves a TCP handshake
//! (one round trip) per request. Set [`HttpConfig::keep_alive`] to `false` to run
//! exactly the seed's version: every response carries `Connection: close` and the
//! server closes. `sockstep walk http` shows both.
//!
//! Even kept alive, HTTP stays one-way and on demand: the server speaks only when
//! asked, once per request. That is the difference from the kept socket in
//! [`push`](crate::push), where the server writes whenever it has something to say.
//!
//! # Limits, and who pays for a slow client
//!
//! Every connection holds a thread, so a client that sends its request slowly
//! ("slowloris") holds one too. Three deadlines bound that, each from the moment
//! its phase starts, however steadily the bytes trickle:
//!
//! - [`HttpConfig::idle_timeout`]: until the first byte of a request. A quiet
//!   connection is closed without a word (nothing was asked, nothing is owed).
//! - [`HttpConfig::head_timeout`]: from the first byte to the end of the head; past
//!   it the answer is `408 Request Timeout` and the connection closes.
//! - [`HttpConfig::body_timeout`]: from the end of the head to the end of the body; `408`.
//!
//! A request the [`wire`](super::wire) parser refuses gets its status (400, 413,
//! 414, 431, 501, 505) and the connection closes, because after a framing error
//! nobody knows where the next request would start. A route that panics gets the
//! client a `500`; the server counts it and keeps serving everyone else.
//!
//! # Closing without losing the answer
//!
//! If a socket is closed while bytes it never read sit in its receive buffer (the
//! rest of a 413's oversized body, a pipelined request), the kernel answers with
//! RST instead of FIN, and the client may lose the response it has not read yet.
//! So a server-initiated close here is *lingering*: shutdown(SHUT_WR) sends FIN
//! after the response, then the server reads and discards what still arrives
//! until the client closes too (or [`LINGER`] passes), and only then closes.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::http::files::StaticDir;
use crate::http::wire::{
    Headers, HttpError, Limits, Parsed, Request, RequestProgress, Response, Version,
    parse_request_head, parse_request_resuming, status_text,
};
use crate::step::Step;
use crate::tcp::connection::Connection;
use crate::tcp::handlers::Handler;

/// How the server reads requests and keeps connections. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Sizes a request may not exceed, each with its status (see [`Limits`]).
    pub limits: Limits,
    /// Wait this long for the first byte of a request, then close the connection quietly.
    pub idle_timeout: Duration,
    /// From a request's first byte, the whole head must arrive within this; else 408.
    pub head_timeout: Duration,
    /// From the end of the head, the whole body must arrive within this; else 408.
    pub body_timeout: Duration,
    /// `true`: HTTP/1.1's persistent connections. `false`: the seed's HTTP/1.0
    /// shape, one request per connection, closed after the response.
    pub keep_alive: bool,
    /// The most requests one connection may carry; the last response says `Connection: close`.
    pub max_requests: usize,
}

impl Default for HttpConfig {
    /// Default [`Limits`]; 10 s idle, 10 s for a head, 30 s for a body;
    /// keep-alive on, 1,000 requests per connection.
    fn default() -> HttpConfig {
        HttpConfig {
            limits: Limits::default(),
            // Long enough for a person typing a request into nc, short enough that
            // idle kept-alive connections give their threads back soon.
            idle_timeout: Duration::from_secs(10),
            // A real client sends a head in one write; 10 s is a slow network's worth.
            head_timeout: Duration::from_secs(10),
            // 1 MiB (the default body limit) at a slow 35 KB/s.
            body_timeout: Duration::from_secs(30),
            keep_alive: true,
            // Bounds how long one client can keep one thread by always asking again.
            max_requests: 1_000,
        }
    }
}

/// How long a lingering close waits for the client to close its side. See the
/// [module docs](self): long enough for a client to read its response and close,
/// short enough that a client that never closes gives the thread back soon.
pub const LINGER: Duration = Duration::from_secs(1);

/// The most a lingering close reads and throws away before it closes anyway.
const LINGER_BYTES: usize = 256 * 1024;

/// Bytes asked of the kernel per read while a head arrives: a typical head in one call.
const READ_CHUNK: usize = 8 * 1024;

/// The largest read: a request body arrives in reads of up to 1 MiB (the default
/// body limit), each into room zeroed once.
const MAX_READ: usize = 1 << 20;

// ---------------------------------------------------------------------------
// What a route answers.
// ---------------------------------------------------------------------------

/// What the server does after a route has seen the request.
pub enum Action {
    /// Write this response; then the connection serves the next request or closes.
    Respond(Response),
    /// Write this response (`101 Switching Protocols`), then hand the connection to
    /// `then`, with the bytes that arrived after the request. HTTP is over for this
    /// connection; another protocol (WebSocket) runs on it until `then` returns.
    Switch(Response, Switcher),
}

/// The protocol a connection switches to: it gets the connection and the bytes
/// already read past the request.
pub type Switcher = Box<dyn FnOnce(&mut Connection, Vec<u8>) -> Result<(), Error> + Send>;

impl From<Response> for Action {
    fn from(response: Response) -> Action {
        Action::Respond(response)
    }
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Respond(r) => f.debug_tuple("Respond").field(r).finish(),
            Action::Switch(r, _) => f.debug_tuple("Switch").field(r).finish(),
        }
    }
}

/// Answers requests for one method and path. Any `Fn(&Request) -> Response` (or
/// `-> Action`) closure is a route.
pub trait Route: Send + Sync + 'static {
    /// The answer to `request`. Runs on the connection's thread; it may block
    /// (long polling does), bounded by the server's write timeout for the answer.
    fn respond(&self, request: &Request) -> Action;
}

impl<F, R> Route for F
where
    F: Fn(&Request) -> R + Send + Sync + 'static,
    R: Into<Action>,
{
    fn respond(&self, request: &Request) -> Action {
        self(request).into()
    }
}

impl Response {
    /// A response with `status`, its standard reason phrase, no headers and no body.
    ///
    /// ```
    /// let r = sockstep::http::Response::new(204);
    /// assert_eq!((r.status, r.reason.as_str()), (204, "No Content"));
    /// ```
    pub fn new(status: u16) -> Response {
        Response {
            version: Version::Http11,
            status,
            reason: status_text(status).to_string(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain` response with `body`.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status).with_body("text/plain; charset=utf-8", body.into().into_bytes())
    }

    /// This response with `body` and its `Content-Type`.
    pub fn with_body(mut self, content_type: &str, body: Vec<u8>) -> Response {
        self.headers.insert("Content-Type", content_type);
        self.body = body;
        self
    }

    /// This response with one more header field.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.append(name, value);
        self
    }
}

// ---------------------------------------------------------------------------
// The router: method + path → route.
// ---------------------------------------------------------------------------

/// Method + path → route, and the HTTP server's connection loop.
///
/// A `Router` is a [`Handler`]: give it to [`Listening::serve`](crate::tcp::server::Listening::serve)
/// and every connection runs the loop in the [module docs](self). Clone it first
/// to keep a handle on its [`stats`](Router::stats).
///
/// ```
/// use sockstep::http::{client, server::Router, Response};
/// use sockstep::tcp::{serve::ServeConfig, server};
/// use sockstep::trace::Trace;
///
/// let router = Router::new()
///     .route("GET", "/hello", |_: &_| Response::text(200, "hello\n"))
///     .route("POST", "/echo", sockstep::http::server::echo);
/// let listening = server::socket("127.0.0.1:0".parse().unwrap(), &Trace::off()).bind()?.listen(16);
/// let server = listening.serve(ServeConfig::default(), router)?;
///
/// let url = format!("http://{}/hello", server.local_addr());
/// let response = client::get(&url)?;
/// assert_eq!((response.status, response.body.as_slice()), (200, &b"hello\n"[..]));
/// # Ok::<(), sockstep::Error>(())
/// ```
#[derive(Clone)]
pub struct Router {
    routes: Vec<Arc<Entry>>,
    config: HttpConfig,
    counters: Arc<Counters>,
}

struct Entry {
    method: String,
    path: String,
    /// Matches every path under `path` (which ends in `/`), not only `path` itself.
    prefix: bool,
    route: Box<dyn Route>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|e| format!("{} {}{}", e.method, e.path, if e.prefix { "*" } else { "" }))
            .collect();
        f.debug_struct("Router")
            .field("routes", &routes)
            .field("config", &self.config)
            .finish()
    }
}

impl Default for Router {
    fn default() -> Router {
        Router::new()
    }
}

impl Router {
    /// No routes (every request gets 404) and the default [`HttpConfig`].
    pub fn new() -> Router {
        Router {
            routes: Vec::new(),
            config: HttpConfig::default(),
            counters: Arc::default(),
        }
    }

    /// This router with `config`.
    pub fn with_config(mut self, config: HttpConfig) -> Router {
        self.config = config;
        self
    }

    /// Answers `method` requests for exactly `path` (the target without its
    /// `?query`, compared as sent, before any percent-decoding). A `GET` route
    /// answers `HEAD` too, with the body left out. The first matching route wins.
    pub fn route(mut self, method: &str, path: &str, route: impl Route) -> Router {
        self.routes.push(Arc::new(Entry {
            method: method.to_string(),
            path: path.to_string(),
            prefix: false,
            route: Box::new(route),
        }));
        self
    }

    /// Answers `method` requests for every path that starts with `prefix`.
    pub fn prefix(mut self, method: &str, prefix: &str, route: impl Route) -> Router {
        self.routes.push(Arc::new(Entry {
            method: method.to_string(),
            path: prefix.to_string(),
            prefix: true,
            route: Box::new(route),
        }));
        self
    }

    /// Serves the files under `dir` at `prefix` (`GET` and `HEAD`), refusing every
    /// path that would leave `dir` (see [`StaticDir`]).
    ///
    /// # Errors
    /// When `dir` is not a readable directory.
    pub fn files(self, prefix: &str, dir: impl AsRef<std::path::Path>) -> Result<Router, Error> {
        let files = StaticDir::new(dir, prefix)?;
        Ok(self.prefix("GET", prefix, move |r: &Request| files.respond(r)))
    }

    /// Serves this server's own [`stats`](Router::stats) as JSON at `path`.
    pub fn status_page(self, path: &str) -> Router {
        let counters = Arc::clone(&self.counters);
        let started = Instant::now();
        self.route("GET", path, move |_: &Request| {
            status_response(&counters.snapshot(), started.elapsed())
        })
    }

    /// What this router's connections have done so far (shared by its clones).
    pub fn stats(&self) -> HttpStats {
        self.counters.snapshot()
    }

    /// Step 2 of a request: method + path → the route's answer. 404 when no route
    /// has the path, 405 (with `Allow`) when some have it for other methods.
    pub fn respond(&self, request: &Request) -> Action {
        let Some(path) = request_path(&request.target) else {
            return Response::text(
                400,
                "the request target must be a path such as /index.html\n",
            )
            .into();
        };
        let mut allowed: Vec<&str> = Vec::new();
        // RFC 9110 §9.3.2: HEAD is GET without the body (write_response drops it),
        // unless a route answers HEAD itself.
        let mut get_for_head = None;
        for entry in &self.routes {
            let matches = if entry.prefix {
                path.starts_with(&entry.path)
            } else {
                path == entry.path
            };
            if !matches {
                continue;
            }
            if entry.method == request.method {
                return self.run_route(entry, request);
            }
            if request.method == "HEAD" && entry.method == "GET" {
                get_for_head = get_for_head.or(Some(entry));
            }
            for method in [entry.method.as_str(), "HEAD"] {
                if (method != "HEAD" || entry.method == "GET") && !allowed.contains(&method) {
                    allowed.push(method);
                }
            }
        }
        if let Some(entry) = get_for_head {
            return self.run_route(entry, request);
        }
        if allowed.is_empty() {
            return Response::text(404, format!("nothing at {path}\n")).into();
        }
        Response::text(405, format!("{path} answers {}\n", allowed.join(", ")))
            .with_header("Allow", allowed.join(", "))
            .into()
    }

    /// Runs a route, turning a panic into a 500 so the client gets an answer.
    fn run_route(&self, entry: &Entry, request: &Request) -> Action {
        match panic::catch_unwind(AssertUnwindSafe(|| entry.route.respond(request))) {
            Ok(action) => action,
            Err(_) => {
                self.counters.route_panics.fetch_add(1, Ordering::Relaxed);
                Response::text(500, "the route handling this request failed\n").into()
            }
        }
    }
}

/// The path part of a request target: origin-form `/a/b?q` → `/a/b`; the
/// absolute-form a proxy would send (`http://host/a/b`, any case of `http`)
/// → `/a/b`, as RFC 9112 §3.2.2 requires a server to accept, with an empty
/// path meaning `/`. `None` for the other forms (`*`, `host:port`).
pub(crate) fn request_path(target: &str) -> Option<&str> {
    let target = match target.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("http://") => {
            let rest = &target[7..];
            match rest.find(['/', '?']) {
                Some(i) if rest[i..].starts_with('/') => &rest[i..],
                _ => "/",
            }
        }
        _ => target,
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    path.starts_with('/').then_some(path)
}

// ---------------------------------------------------------------------------
// One connection's life.
// ---------------------------------------------------------------------------

impl Handler for Router {
    /// The connection loop: read a request, respond, write the response, and go
    /// round again while the connection is kept alive.
    fn handle(&self, conn: &mut Connection) -> Result<(), Error> {
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        // The TCP server's deadline for the whole connection (`max_lifetime`), if
        // any: each request's deadlines stay within it, and it is put back after.
        let lifetime = conn.deadline();
        let mut buf = Vec::new();
        // Zeroed once for the connection's life (see `read_more`); on the heap,
        // since a server may give its connection threads small stacks.
        let mut chunk = vec![0; READ_CHUNK];
        let mut served = 0;
        loop {
            let incoming = read_request(conn, &mut buf, &mut chunk, &self.config, lifetime);
            conn.set_deadline(lifetime);
            let request = match incoming? {
                Incoming::Request(request) => request,
                Incoming::Quiet => return Ok(()),
                Incoming::Refused(status, reason) => {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    let response = Response::text(status, format!("{reason}\n"));
                    self.count(status);
                    write_response(conn, "GET", Version::Http11, response, true)?;
                    linger_and_close(conn);
                    return Err(Error::new(
                        Step::Read,
                        ErrorKind::Http {
                            status,
                            reason: reason.to_string(),
                        },
                    )
                    .at(conn.peer_endpoint()));
                }
            };
            served += 1;
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            if served > 1 {
                self.counters.reused.fetch_add(1, Ordering::Relaxed);
            }
            let close = !self.config.keep_alive
                || wants_close(&request)
                || served >= self.config.max_requests;
            match self.respond(&request) {
                Action::Respond(response) => {
                    self.count(response.status);
                    write_response(conn, &request.method, request.version, response, close)?;
                }
                Action::Switch(response, then) => {
                    self.count(response.status);
                    self.counters.switched.fetch_add(1, Ordering::Relaxed);
                    write_response(conn, &request.method, request.version, response, false)?;
                    return then(conn, std::mem::take(&mut buf));
                }
            }
            if close {
                linger_and_close(conn);
                return Ok(());
            }
        }
    }
}

impl Router {
    fn count(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.counters.by_class[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// What [`read_request`] found on the connection.
enum Incoming {
    /// A whole request.
    Request(Request),
    /// The client closed, or stayed silent past the idle timeout, between requests.
    Quiet,
    /// The bytes cannot be a request we serve: answer this status and close.
    Refused(u16, &'static str),
}

/// Step 1 of a request: read until `buf` holds a whole request, under the three
/// deadlines of the [module docs](self), each cut short by `lifetime` (the TCP
/// server's deadline for the whole connection) if that comes first. Bytes past
/// the request stay in `buf` for the next one (a client may pipeline).
///
/// Most requests arrive whole in one read (a GET is one small write): once a
/// blank line has arrived, one parse of the whole request answers them. Only a
/// request whose body is still to come has its head parsed on its own, to start
/// the body's deadline and answer `Expect: 100-continue`.
fn read_request(
    conn: &mut Connection,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
    config: &HttpConfig,
    lifetime: Option<Instant>,
) -> Result<Incoming, Error> {
    let within = |d: Instant| lifetime.map_or(d, |l| l.min(d));
    let mut head_seen = false;
    // Each read looks only at what it brought: a request trickled in tiny
    // pieces must not cost time in proportion to the square of its size.
    let mut looked = 0;
    let mut progress = RequestProgress::default();
    let mut deadline = within(
        Instant::now()
            + if buf.is_empty() {
                config.idle_timeout
            } else {
                config.head_timeout
            },
    );
    loop {
        if !buf.is_empty() {
            let (blank_line, line_ended, limit_crossed) = news(buf, looked, &config.limits);
            looked = buf.len();
            if !head_seen && blank_line {
                match parse_request_resuming(buf, &config.limits, &mut progress) {
                    Err(e) => return Ok(refused(&e)),
                    Ok(Parsed::Complete { message, consumed }) if !expects_continue(&message) => {
                        note_head(conn, &message);
                        buf.drain(..consumed);
                        return Ok(Incoming::Request(message));
                    }
                    // A body still to come, or a client that may wait for 100 Continue.
                    Ok(_) => {}
                }
            }
            // A head's faults show when a line ends or a limit is crossed.
            if !head_seen && (blank_line || line_ended || limit_crossed) {
                match parse_request_head(buf, &config.limits) {
                    Err(e) => return Ok(refused(&e)),
                    Ok(None) => {}
                    Ok(Some((head, head_len))) => {
                        head_seen = true;
                        deadline = within(Instant::now() + config.body_timeout);
                        note_head(conn, &head);
                        if expects_continue(&head) && buf.len() == head_len {
                            // RFC 9110 §10.1.1: the client waits for this before the body.
                            conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
                        }
                    }
                }
            }
            if head_seen {
                match parse_request_resuming(buf, &config.limits, &mut progress) {
                    Err(e) => return Ok(refused(&e)),
                    Ok(Parsed::Partial) => {}
                    Ok(Parsed::Complete { message, consumed }) => {
                        buf.drain(..consumed);
                        return Ok(Incoming::Request(message));
                    }
                }
            }
        }
        conn.set_deadline(Some(deadline));
        let was_empty = buf.is_empty();
        let n = match read_more(conn, buf, chunk) {
            Ok(n) => n,
            Err(e) if *e.kind() == ErrorKind::TimedOut => {
                return Ok(if buf.is_empty() {
                    Incoming::Quiet
                } else {
                    Incoming::Refused(408, "the request did not arrive in time")
                });
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(if buf.is_empty() {
                Incoming::Quiet
            } else {
                Incoming::Refused(400, "the connection closed before the request was complete")
            });
        }
        if was_empty && !head_seen {
            // The first byte of a request: the head's own deadline starts now.
            deadline = within(Instant::now() + config.head_timeout);
        }
    }
}

/// Whether a blank line (the end of a head) has arrived.
/// What the bytes after `looked` brought: a blank line (the end of a head),
/// the end of some line, or a head limit crossed.
fn news(buf: &[u8], looked: usize, limits: &Limits) -> (bool, bool, bool) {
    // Three bytes back: a `\r\n\r\n` may straddle the old end.
    let fresh = &buf[looked.saturating_sub(3)..];
    let crossed = |limit: usize| looked <= limit && buf.len() > limit;
    (
        fresh.windows(4).any(|w| w == b"\r\n\r\n"),
        buf[looked..].contains(&b'\n'),
        crossed(limits.max_request_line.saturating_add(2)) || crossed(limits.max_header_bytes),
    )
}

/// Records the request line on the connection's trace (walkthroughs show it).
fn note_head(conn: &Connection, head: &Request) {
    conn.note(Step::Message, || {
        format!(
            "request head: {} {} {}",
            head.method, head.target, head.version
        )
    });
}

/// Appends one read's bytes to `buf`. Reads grow with the buffer — 8 KiB for a
/// head, up to [`MAX_READ`] for a large body — so a 1 MiB body that arrives
/// quickly takes a few reads, not one per 8 KiB (each read's bytes are looked
/// at once: [`parse_request_resuming`]).
///
/// Safe Rust reads only into initialised bytes. Growing `buf` by 8 KiB of zeros
/// before every read was 38 % of a kept-alive GET's instructions (callgrind), so
/// while `buf` holds less than `chunk` (a head, a small body) reads go through
/// `chunk`, zeroed once per connection, and only what arrived is copied.
fn read_more(conn: &mut Connection, buf: &mut Vec<u8>, chunk: &mut [u8]) -> Result<usize, Error> {
    let have = buf.len();
    if have < chunk.len() {
        let n = conn.read(chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        return Ok(n);
    }
    buf.resize(have + have.clamp(READ_CHUNK, MAX_READ), 0);
    let result = conn.read(&mut buf[have..]);
    buf.truncate(have + *result.as_ref().unwrap_or(&0));
    result
}

fn refused(e: &HttpError) -> Incoming {
    // HttpError's reasons are 'static; keep them so the reply can say what was wrong.
    Incoming::Refused(e.status(), e.static_reason())
}

/// `Expect: 100-continue` on an HTTP/1.1 request with a body still to come.
fn expects_continue(head: &Request) -> bool {
    head.version == Version::Http11
        && head
            .headers
            .get("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Whether the client asked for the connection to end after this request:
/// `Connection: close`, or HTTP/1.0 without `Connection: keep-alive`.
fn wants_close(request: &Request) -> bool {
    let has = |token: &str| {
        request
            .headers
            .get_all("connection")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    match request.version {
        Version::Http11 => has("close"),
        Version::Http10 => !has("keep-alive"),
    }
}

/// Step 3 of a request: the response's bytes on the connection.
///
/// Says `Connection: close` when the server will close after it (and
/// `Connection: keep-alive` to an HTTP/1.0 client it keeps), leaves the body out
/// for `HEAD`, and never sends chunked coding to an HTTP/1.0 client, which would
/// not understand it. A route's response that cannot be framed becomes a 500.
fn write_response(
    conn: &mut Connection,
    method: &str,
    version: Version,
    mut response: Response,
    close: bool,
) -> Result<(), Error> {
    if close {
        response.headers.insert("Connection", "close");
    } else if version == Version::Http10 && response.status != 101 {
        response.headers.insert("Connection", "keep-alive");
    }
    if version == Version::Http10 {
        response.headers.remove("transfer-encoding");
    }
    let status = response.status;
    let mut bytes = match response.to_bytes() {
        Ok(bytes) => bytes,
        Err(e) => {
            let fallback = Response::text(500, format!("the route's response is malformed: {e}\n"))
                .with_header("Connection", if close { "close" } else { "keep-alive" });
            // A response built here from constants always frames: status 500, ASCII text.
            return conn.write_all(&fallback.to_bytes().unwrap_or_default());
        }
    };
    if method == "HEAD" {
        // The head ends at its first blank line (no header value holds CR or LF);
        // cutting there drops a chunked body as well as a Content-Length one.
        let head_len = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(bytes.len(), |i| i + 4);
        bytes.truncate(head_len);
    }
    conn.note(Step::Message, || {
        format!("response: {status} {}", status_text(status))
    });
    conn.write_all(&bytes)
}

/// Step 4, when the server ends the connection: FIN first, then read and discard
/// until the client closes too, so no unread byte turns our close into an RST
/// that could destroy the response before the client reads it.
fn linger_and_close(conn: &mut Connection) {
    if conn.shutdown_write().is_err() {
        return;
    }
    conn.set_deadline(Some(Instant::now() + LINGER));
    let mut chunk = [0; READ_CHUNK];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    conn.set_deadline(None);
}

// ---------------------------------------------------------------------------
// Built-in routes.
// ---------------------------------------------------------------------------

/// A route that mirrors the request: the body is the request as it would be
/// written on the wire, `Content-Type: message/http` (RFC 9112 §10.1, the type
/// `TRACE` answers with). A client can check exactly what the server understood.
pub fn echo(request: &Request) -> Response {
    match request.to_bytes() {
        Ok(bytes) => Response::new(200).with_body("message/http", bytes),
        Err(e) => Response::text(500, format!("cannot re-serialise the request: {e}\n")),
    }
}

// ---------------------------------------------------------------------------
// Counting.
// ---------------------------------------------------------------------------

/// What an HTTP server's connections have done. A snapshot; see [`Router::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Connections that reached the HTTP loop.
    pub connections: u64,
    /// Whole requests read.
    pub requests: u64,
    /// Requests that arrived on a connection that had already carried one (keep-alive at work).
    pub reused: u64,
    /// Requests refused before routing (malformed, too large, too slow), each answered with its status.
    pub refused: u64,
    /// Responses by class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub by_class: [u64; 5],
    /// Connections handed to another protocol after `101 Switching Protocols`.
    pub switched: u64,
    /// Routes that panicked (each answered with 500).
    pub route_panics: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    reused: AtomicU64,
    refused: AtomicU64,
    by_class: [AtomicU64; 5],
    switched: AtomicU64,
    route_panics: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> HttpStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HttpStats {
            connections: get(&self.connections),
            requests: get(&self.requests),
            reused: get(&self.reused),
            refused: get(&self.refused),
            by_class: self.by_class.each_ref().map(get),
            switched: get(&self.switched),
            route_panics: get(&self.route_panics),
        }
    }
}

/// The status page's answer: the stats as one JSON object.
fn status_response(stats: &HttpStats, uptime: Duration) -> Response {
    let [c1, c2, c3, c4, c5] = stats.by_class;
    let json = format!(
        "{{\"server\": \"sockstep/{}\", \"uptime_ms\": {}, \"connections\": {}, \"requests\": {}, \
         \"reused\": {}, \"refused\": {}, \"responses\": {{\"1xx\": {c1}, \"2xx\": {c2}, \
         \"3xx\": {c3}, \"4xx\": {c4}, \"5xx\": {c5}}}, \"switched\": {}, \"route_panics\": {}}}\n",
        env!("CARGO_PKG_VERSION"),
        uptime.as_millis(),
        stats.connections,
        stats.requests,
        stats.reused,
        stats.refused,
        stats.switched,
        stats.route_panics,
    );
    Response::new(200)
        .with_body("application/json", json.into_bytes())
        .with_header("Cache-Control", "no-store")
}
