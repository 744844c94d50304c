//! The HTTP client: resolve → connect → write the request → read the response →
//! close, or keep the connection for the next request.
//!
//! # The idea
//!
//! An HTTP request is the seed's client sequence with a message on top. Each step
//! is a function here, in the order it runs:
//!
//! ```text
//! resolve()                 URL's host name → IP addresses (getaddrinfo)
//! connect()                 socket() + connect() to the first address that answers
//! HttpConnection::send()    the request's bytes: write() until all are out
//! HttpConnection::receive() read() until the response is whole (framed by its head)
//! HttpConnection::close()   close(2) — or keep it: HTTP/1.1 reuses the connection
//! ```
//!
//! [`get`] and [`post`] run all five for one request and close, like the seed's
//! HTTP. A [`Client`] keeps the connection when the server allows it and sends
//! the next request on it, skipping resolve and connect (and the TCP handshake's
//! round trip); `Client::connections_opened` counts how often it could not.
//!
//! # Reuse has one race
//!
//! A server may close a kept connection at any moment (its idle timeout) — just
//! as the client sends the next request on it. The request then meets a closed
//! socket, or the response never comes. A client cannot tell that apart from a
//! server that crashed while working on the request, so it may only retry when
//! repeating the request is harmless: the idempotent methods (RFC 9110 §9.2.2).
//! [`Client`] retries those once, on a new connection, when a *reused* connection
//! was closed or reset before a single byte of the response arrived; anything
//! else is an error (a response timeout too: silence is not the race).
//!
//! # Redirects are the caller's choice
//!
//! A `3xx` with `Location` is returned as it is unless [`ClientConfig::follow_redirects`]
//! allows following: a test that checks a redirect must see it, and following
//! one silently can turn a `POST` into a different request. When following:
//! `303` (and `301`/`302` after a `POST`) become `GET` without a body or the
//! fields that described it, as browsers do; `307`/`308` repeat the request as
//! it was. `Authorization` and `Cookie` are not carried to another server.

use std::net::SocketAddr;
use std::time::Duration;

use crate::endpoint::{Endpoint, Protocol};
use crate::error::{Error, ErrorKind};
use crate::http::wire::{
    Headers, Limits, Parsed, Request, Response, ResponseProgress, Version, parse_response_resuming,
};
use crate::step::Step;
use crate::tcp::client;
use crate::tcp::connection::{Connection, Timeouts};
use crate::trace::Trace;

/// The smallest read of a response: a typical head in one call.
const READ_CHUNK: usize = 8 * 1024;

/// The largest read of a response: about what loopback's receive buffer holds,
/// and a bound on the room zeroed for each read.
const MAX_READ: usize = 4 << 20;

/// An `http://` URL, split into what the steps need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The server: host (name or IP) and port, as a TCP endpoint.
    pub endpoint: Endpoint,
    /// The request target: path and query, e.g. `/search?q=1`; at least `/`.
    pub target: String,
}

impl Url {
    /// Reads `http://host[:port][/path][?query]`; the port defaults to 80 and a
    /// `#fragment` is dropped (it never travels to the server).
    ///
    /// ```
    /// use sockstep::http::client::Url;
    ///
    /// let url = Url::parse("http://[::1]:8080/a?b=c#frag")?;
    /// assert_eq!((url.endpoint.port(), url.target.as_str()), (8080, "/a?b=c"));
    /// assert_eq!(url.authority(), "[::1]:8080");
    /// # Ok::<(), sockstep::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for another scheme (`https` needs TLS, which std
    /// does not have) or user info; [`ErrorKind::BadEndpoint`] for a bad host or port.
    pub fn parse(url: &str) -> Result<Url, Error> {
        let invalid = |why: &str| {
            Error::new(
                Step::Parse,
                ErrorKind::InvalidInput(format!("{url:?} is not a URL we can fetch: {why}")),
            )
        };
        // The scheme is case-insensitive (RFC 3986 §3.1): `HTTP://` is `http://`.
        let rest = url
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
            .map(|_| &url[7..])
            .ok_or_else(|| {
                invalid("only http:// is supported (https needs TLS, which std lacks)")
            })?;
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(invalid("user info in a URL is not supported"));
        }
        let has_port = match authority.rfind(']') {
            Some(bracket) => authority[bracket..].contains(':'),
            None => authority.contains(':'),
        };
        let with_port = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let endpoint = Endpoint::parse_with_default(&with_port, Protocol::Tcp)?;
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        Ok(Url { endpoint, target })
    }

    /// The `Host` header's value: host, and the port unless it is 80.
    pub fn authority(&self) -> String {
        match self.endpoint.port() {
            80 => self.endpoint.host().to_string(),
            port => format!("{}:{port}", self.endpoint.host()),
        }
    }

    /// Where a `Location` header points, seen from this URL (RFC 3986 §5.2):
    /// absolute (`http://…`), network-path (`//host/x`), absolute-path (`/x`),
    /// query-only (`?q`) or relative to this URL's directory (`x`). A `#fragment`
    /// is dropped, as in [`Url::parse`]: it never travels to the server.
    ///
    /// # Errors
    /// As [`Url::parse`], for an absolute or network-path location.
    pub fn join(&self, location: &str) -> Result<Url, Error> {
        let location = location.split_once('#').map_or(location, |(l, _)| l);
        // A scheme is letters, digits, `+ - .` before the first `:`; a `://`
        // later on, as in `/login?next=http://x`, belongs to a relative reference.
        let has_scheme = location.split_once(':').is_some_and(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        if has_scheme {
            return Url::parse(location);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Url::parse(&format!("http://{rest}"));
        }
        let path = self
            .target
            .split_once('?')
            .map_or(self.target.as_str(), |(p, _)| p);
        let target = if location.starts_with('/') {
            location.to_string()
        } else if location.is_empty() || location.starts_with('?') {
            format!("{path}{location}")
        } else {
            let dir = &path[..=path.rfind('/').unwrap_or(0)];
            format!("{dir}{location}")
        };
        Ok(Url {
            endpoint: self.endpoint.clone(),
            target,
        })
    }
}

/// How a client connects, waits and reads.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The most `connect()` may wait, per address.
    pub connect_timeout: Duration,
    /// Read and write timeouts on the connection.
    pub timeouts: Timeouts,
    /// The whole response must arrive within this, however steadily it trickles.
    pub response_timeout: Duration,
    /// What a response may not exceed. The body limit defaults to 16 MiB here,
    /// more than a server accepts, since clients fetch files.
    pub limits: Limits,
    /// How many redirects to follow; 0 (the default) returns every `3xx` as it is.
    pub follow_redirects: usize,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            timeouts: Timeouts::default(),
            response_timeout: Duration::from_secs(30),
            limits: Limits {
                max_body: 16 << 20,
                ..Limits::default()
            },
            follow_redirects: 0,
        }
    }
}

/// Step 1: the server's addresses. No system call for an IP; getaddrinfo for a name.
///
/// # Errors
/// [`ErrorKind::NameNotResolved`], naming the endpoint.
pub fn resolve(url: &Url) -> Result<Vec<SocketAddr>, Error> {
    url.endpoint.resolve()
}

/// Step 2: socket() and connect() to each address in turn until one answers.
///
/// # Errors
/// The last address's connect error (refused, timed out), naming its endpoint.
pub fn connect(
    addrs: &[SocketAddr],
    config: &ClientConfig,
    trace: &Trace,
) -> Result<HttpConnection, Error> {
    let mut last = None;
    for &addr in addrs {
        let attempt = client::socket(addr, trace)
            .timeouts(config.timeouts)
            .connect(config.connect_timeout);
        match attempt {
            Ok(conn) => {
                // Requests are small and wait for their answer: Nagle would only delay them.
                conn.set_nodelay(true)?;
                return Ok(HttpConnection {
                    conn,
                    buf: Vec::new(),
                    reusable: true,
                    limits: config.limits,
                    response_timeout: config.response_timeout,
                    requests: 0,
                    last_response_bytes: 0,
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::new(Step::Resolve, ErrorKind::NameNotResolved)))
}

/// One HTTP connection to one server, with the steps of a request explicit.
#[derive(Debug)]
pub struct HttpConnection {
    conn: Connection,
    /// Bytes read past the last response (a server should send none).
    buf: Vec<u8>,
    reusable: bool,
    limits: Limits,
    response_timeout: Duration,
    requests: u64,
    /// Bytes read so far of the response to the request last sent.
    last_response_bytes: usize,
}

impl HttpConnection {
    /// Step 3: writes the request's bytes.
    ///
    /// # Errors
    /// [`ErrorKind::Http`] with status 400 when the request cannot be framed (see
    /// [`Request::to_bytes`]); the write's error (broken pipe, reset, timeout).
    pub fn send(&mut self, request: &Request) -> Result<(), Error> {
        let bytes = request
            .to_bytes()
            .map_err(|e| Error::from(e).at(self.conn.peer_endpoint()))?;
        self.requests += 1;
        // From here on the count is this request's: a send that fails has seen
        // no byte of its response, whatever the last response was.
        self.last_response_bytes = 0;
        self.conn.note(Step::Message, || {
            format!(
                "request: {} {} {}",
                request.method, request.target, request.version
            )
        });
        if let Err(e) = self.conn.write_all(&bytes) {
            self.reusable = false;
            return Err(e);
        }
        Ok(())
    }

    /// Step 4: reads until the response to a `method` request is whole. `1xx`
    /// interim responses (`100 Continue`) are read and skipped; `101` is returned.
    ///
    /// # Errors
    /// [`ErrorKind::Http`] for a malformed or oversized response, or one cut off
    /// by the server's close; [`ErrorKind::TimedOut`] past the response timeout;
    /// the read's error (reset).
    pub fn receive(&mut self, method: &str) -> Result<Response, Error> {
        self.last_response_bytes = 0;
        let deadline = std::time::Instant::now() + self.response_timeout;
        self.conn.set_deadline(Some(deadline));
        let result = self.read_response(method);
        self.conn.set_deadline(None);
        if result.is_err() {
            self.reusable = false;
        }
        result
    }

    fn read_response(&mut self, method: &str) -> Result<Response, Error> {
        let mut eof = false;
        // Each read's bytes are looked at once, however the server trickles them.
        let mut progress = ResponseProgress::default();
        loop {
            let parsed =
                parse_response_resuming(&self.buf, method, &self.limits, eof, &mut progress)
                    .map_err(|e| Error::from(e).at(self.conn.peer_endpoint()))?;
            match parsed {
                Parsed::Complete { message, consumed } => {
                    self.buf.drain(..consumed);
                    if (100..200).contains(&message.status) && message.status != 101 {
                        progress = ResponseProgress::default();
                        continue;
                    }
                    // After `101` the connection speaks another protocol: no more HTTP on it.
                    self.reusable &= !eof && !closes(&message) && message.status != 101;
                    let (status, reason) = (message.status, message.reason.clone());
                    self.conn
                        .note(Step::Message, || format!("response: {status} {reason}"));
                    return Ok(message);
                }
                Parsed::Partial if eof => {
                    unreachable!("parse_response_at_eof never answers Partial")
                }
                Parsed::Partial => {}
            }
            // Reads grow with the buffer: a large body that arrives quickly
            // takes a few large reads instead of one per 8 KiB.
            let have = self.buf.len();
            self.buf.resize(have + have.clamp(READ_CHUNK, MAX_READ), 0);
            let n = match self.conn.read(&mut self.buf[have..]) {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(e);
                }
            };
            self.buf.truncate(have + n);
            self.last_response_bytes += n;
            eof = n == 0;
        }
    }

    /// Steps 3 and 4 together: one request, its response.
    ///
    /// # Errors
    /// As [`send`](HttpConnection::send) and [`receive`](HttpConnection::receive).
    pub fn exchange(&mut self, request: &Request) -> Result<Response, Error> {
        self.send(request)?;
        self.receive(&request.method)
    }

    /// Whether another request may go on this connection: nobody said
    /// `Connection: close`, the body did not end with the close, nothing failed.
    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// The connection underneath, e.g. to hand it to WebSocket after a `101`.
    pub fn into_parts(self) -> (Connection, Vec<u8>) {
        (self.conn, self.buf)
    }

    /// Step 5: close(2).
    pub fn close(self) {}
}

/// Whether a response ends its connection: `Connection: close`, or HTTP/1.0
/// without `keep-alive`.
fn closes(response: &Response) -> bool {
    let has = |token: &str| {
        response
            .headers
            .get_all("connection")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has("close") || (response.version == Version::Http10 && !has("keep-alive"))
}

/// A request for `url`, with `Host` set and `Connection: close` when `close`.
fn build(method: &str, url: &Url, headers: &Headers, body: Vec<u8>, close: bool) -> Request {
    let mut all = Headers::new();
    all.append("Host", url.authority());
    for (name, value) in headers.iter() {
        if !name.eq_ignore_ascii_case("host") {
            all.append(name, value);
        }
    }
    if close {
        all.insert("Connection", "close");
    }
    Request {
        method: method.to_string(),
        target: url.target.clone(),
        version: Version::Http11,
        headers: all,
        body,
    }
}

/// `GET url` on a new connection that is closed afterwards: all five steps.
///
/// # Errors
/// Any step's error; an HTTP error status is not an error (it is the response).
pub fn get(url: &str) -> Result<Response, Error> {
    let mut client = Client::new();
    client.keep_alive = false;
    client.get(url)
}

/// `POST url` with `body` of `content_type`, on a new connection closed afterwards.
///
/// # Errors
/// As [`get`].
pub fn post(url: &str, content_type: &str, body: &[u8]) -> Result<Response, Error> {
    let mut client = Client::new();
    client.keep_alive = false;
    client.post(url, content_type, body)
}

/// A client that keeps its connection to the last server it talked to.
///
/// ```
/// use sockstep::http::{client::Client, server::Router, Response};
/// use sockstep::tcp::{serve::ServeConfig, server};
/// use sockstep::trace::Trace;
///
/// let router = Router::new().route("GET", "/", |_: &_| Response::text(200, "hi"));
/// let listening = server::socket("127.0.0.1:0".parse().unwrap(), &Trace::off()).bind()?.listen(8);
/// let server = listening.serve(ServeConfig::default(), router)?;
///
/// let mut client = Client::new();
/// let url = format!("http://{}/", server.local_addr());
/// for _ in 0..3 {
///     assert_eq!(client.get(&url)?.status, 200);
/// }
/// assert_eq!(client.connections_opened(), 1); // keep-alive: one connection, three requests
/// # Ok::<(), sockstep::Error>(())
/// ```
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    trace: Trace,
    keep_alive: bool,
    kept: Option<(Endpoint, HttpConnection)>,
    opened: u64,
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

impl Client {
    /// A client with the default [`ClientConfig`] and no trace.
    pub fn new() -> Client {
        Client::with_config(ClientConfig::default())
    }

    /// A client with `config`.
    pub fn with_config(config: ClientConfig) -> Client {
        Client {
            config,
            trace: Trace::off(),
            keep_alive: true,
            kept: None,
            opened: 0,
        }
    }

    /// This client, reporting every socket step to `trace`.
    pub fn with_trace(mut self, trace: &Trace) -> Client {
        self.trace = trace.clone();
        self
    }

    /// This client with keep-alive off: every request says `Connection: close`
    /// and gets a connection of its own, as in HTTP/1.0.
    pub fn without_keep_alive(mut self) -> Client {
        self.keep_alive = false;
        self
    }

    /// TCP connections this client has opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.opened
    }

    /// `GET url`.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub fn get(&mut self, url: &str) -> Result<Response, Error> {
        self.request("GET", url, &Headers::new(), Vec::new())
    }

    /// `POST url` with `body` of `content_type`.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub fn post(&mut self, url: &str, content_type: &str, body: &[u8]) -> Result<Response, Error> {
        let mut headers = Headers::new();
        headers.append("Content-Type", content_type);
        self.request("POST", url, &headers, body.to_vec())
    }

    /// Sends `method url` with `headers` and `body` (add `Transfer-Encoding:
    /// chunked` to `headers` to send the body chunked), following redirects as
    /// the config allows.
    ///
    /// # Errors
    /// Any step's error; [`ErrorKind::LimitExceeded`] after too many redirects.
    /// An HTTP error status is not an error: it is the response.
    pub fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &Headers,
        body: Vec<u8>,
    ) -> Result<Response, Error> {
        let mut url = Url::parse(url)?;
        let mut method = method.to_string();
        let mut headers = headers.clone();
        let mut body = body;
        let mut redirects = 0;
        loop {
            let request = build(&method, &url, &headers, body.clone(), !self.keep_alive);
            let response = self.send_once(&url.endpoint, &request)?;
            let location = response.headers.get("location").map(str::to_string);
            let (true, Some(location)) = (is_redirect(response.status), location) else {
                return Ok(response);
            };
            if redirects == self.config.follow_redirects {
                if redirects == 0 {
                    return Ok(response);
                }
                return Err(Error::new(
                    Step::Read,
                    ErrorKind::LimitExceeded {
                        what: "redirects followed",
                        limit: redirects as u64,
                    },
                )
                .at(url.endpoint));
            }
            redirects += 1;
            let next = url.join(&location)?;
            if next.endpoint != url.endpoint {
                // Credentials were meant for the server they were given to, not
                // for whichever one it sends us on to (as curl and browsers do).
                for name in ["authorization", "proxy-authorization", "cookie"] {
                    headers.remove(name);
                }
            }
            url = next;
            if response.status == 303 || (matches!(response.status, 301 | 302) && method == "POST")
            {
                method = "GET".to_string();
                body = Vec::new();
                // The body is gone, so are the fields that framed or described it
                // (the Fetch standard's list, plus the framing).
                for name in [
                    "content-length",
                    "transfer-encoding",
                    "content-type",
                    "content-encoding",
                    "content-language",
                    "content-location",
                ] {
                    headers.remove(name);
                }
            }
        }
    }

    /// One request on the kept connection if there is one for this server, else a
    /// new one; retried once on a new connection under the rule in the [module docs](self).
    fn send_once(&mut self, server: &Endpoint, request: &Request) -> Result<Response, Error> {
        if let Some((kept_for, mut conn)) = self.kept.take()
            && &kept_for == server
        {
            match conn.exchange(request) {
                Ok(response) => return Ok(self.keep(server, conn, response)),
                // A closed or reset socket is the race; silence is a slow server,
                // and asking again would only double the wait.
                Err(e)
                    if !(idempotent(&request.method)
                        && conn.last_response_bytes == 0
                        && *e.kind() != ErrorKind::TimedOut) =>
                {
                    return Err(e);
                }
                Err(_) => {} // the server had closed the idle connection: go again
            }
        }
        let addrs = resolve(&Url {
            endpoint: server.clone(),
            target: String::new(),
        })?;
        let mut conn = connect(&addrs, &self.config, &self.trace)?;
        self.opened += 1;
        let response = conn.exchange(request)?;
        Ok(self.keep(server, conn, response))
    }

    fn keep(&mut self, server: &Endpoint, conn: HttpConnection, response: Response) -> Response {
        if self.keep_alive && conn.is_reusable() {
            self.kept = Some((server.clone(), conn));
        }
        response
    }
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// RFC 9110 §9.2.2: repeating these has the same effect as sending them once.
fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
    )
}
