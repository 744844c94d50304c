//! An HTTP mock server: canned answers per method and path, and a record of
//! every request, for testing HTTP clients against a real socket.
//!
//! # The idea
//!
//! An HTTP client under test needs a server that answers what the test says,
//! and a way to check afterwards what the client asked. [`HttpMock`] is
//! sockstep's own HTTP server ([`Router`] on a
//! [`tcp::serve`](crate::tcp::serve) server) with one route behind every path:
//!
//! 1. it records the request — method, target, headers, body, after the
//!    server has parsed it, so chunked bodies arrive decoded;
//! 2. it looks up the answer the test set for that method and path
//!    ([`respond`](HttpMock::respond)), or a sequence of answers given one per
//!    request ([`respond_in_turn`](HttpMock::respond_in_turn): `503` then `200`,
//!    for a client's retry); a sequence's last answer repeats once it runs out;
//! 3. a request nobody set an answer for gets `404`, saying so in its body.
//!
//! Answers can change while the server runs: setting the same method and path
//! again replaces the earlier answer and starts its sequence afresh.
//!
//! ```
//! use sockstep::http::{client, Response};
//! use sockstep::testkit::http_mock::HttpMock;
//! use std::time::Duration;
//!
//! let mock = HttpMock::start()?;
//! mock.respond_in_turn("GET", "/status", [Response::new(503), Response::text(200, "up")]);
//!
//! assert_eq!(client::get(&mock.url("/status"))?.status, 503);
//! assert_eq!(client::get(&mock.url("/status?again=1"))?.status, 200);
//! assert_eq!(client::get(&mock.url("/other"))?.status, 404);
//!
//! let seen = mock.wait_for_requests(3, Duration::from_secs(5))?;
//! assert_eq!(seen[1].target, "/status?again=1");
//! # Ok::<(), sockstep::Error>(())
//! ```
//!
//! # What it does not record
//!
//! Only requests that reach a route are recorded. A request the server refuses
//! before routing — malformed, over a [`Limits`](crate::http::Limits) size, too
//! slow — gets its status (400, 413, 408…) and is counted in
//! [`HttpStats::refused`](crate::http::server::HttpStats::refused) instead.
//! Routes exist for the methods of RFC 9110 and `PATCH` ([`METHODS`]); any
//! other method is answered `405` by the router and not recorded.
//!
//! Paths are compared as sent (before percent-decoding), without the `?query`;
//! a `HEAD` with no answer of its own gets the `GET` answer's head.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::Error;
use crate::http::server::{HttpConfig, HttpStats, Router};
use crate::http::wire::{Request, Response};
use crate::step::Step;
use crate::testkit::servers::{Options, TcpServer, Watched, wait_timed_out};

/// The methods the mock has routes for (every method of RFC 9110 that names a
/// path, and `PATCH`, RFC 5789). `CONNECT` names a host, not a path.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
];

/// A running HTTP mock server. Dropping it shuts it down and joins its threads.
/// See the [module docs](self).
#[derive(Debug)]
pub struct HttpMock {
    server: TcpServer,
    router: Router,
    state: Arc<MockState>,
}

#[derive(Debug)]
struct MockState {
    canned: Mutex<Vec<Canned>>,
    book: Watched<RequestBook>,
    max_kept: usize,
    max_bytes: usize,
}

/// The answers set for one method and path.
#[derive(Debug)]
struct Canned {
    method: String,
    path: String,
    responses: Vec<Response>,
    answered: usize,
}

#[derive(Debug, Default)]
struct RequestBook {
    kept: Vec<Request>,
    bytes: usize,
    not_kept: u64,
}

impl Options {
    /// An HTTP mock server with these options: its connections' idle timeout
    /// is `io_timeout`, and it keeps at most `max_recorded` requests and
    /// `max_recorded_bytes` of their targets, headers and bodies.
    ///
    /// # Errors
    /// As [`Options::tcp_handler`].
    pub fn http_mock(&self) -> Result<HttpMock, Error> {
        let state = Arc::new(MockState {
            canned: Mutex::new(Vec::new()),
            book: Watched::new(RequestBook::default()),
            max_kept: self.max_recorded,
            max_bytes: self.max_recorded_bytes,
        });
        let config = HttpConfig {
            idle_timeout: self.io_timeout,
            ..HttpConfig::default()
        };
        let mut router = Router::new().with_config(config);
        for method in METHODS {
            let state = state.clone();
            router = router.prefix(method, "/", move |request: &Request| {
                state.record(request);
                state.answer(request)
            });
        }
        let server = self.tcp_handler(router.clone())?;
        Ok(HttpMock {
            server,
            router,
            state,
        })
    }
}

impl HttpMock {
    /// An HTTP mock server on `127.0.0.1:0`, answering `404` to everything until
    /// told otherwise.
    ///
    /// # Errors
    /// As [`Options::tcp_handler`].
    pub fn start() -> Result<HttpMock, Error> {
        Options::default().http_mock()
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://ADDR` followed by `path_and_query`, for a client to fetch.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr())
    }

    /// Answers every `method` request for `path` with `response`, replacing any
    /// answer set before for the same method and path.
    pub fn respond(&self, method: &str, path: &str, response: Response) -> &HttpMock {
        self.respond_in_turn(method, path, [response])
    }

    /// Answers `method` requests for `path` with `responses` in turn, one per
    /// request; once they run out, the last one repeats. An empty list removes
    /// the answer (back to `404`).
    pub fn respond_in_turn(
        &self,
        method: &str,
        path: &str,
        responses: impl IntoIterator<Item = Response>,
    ) -> &HttpMock {
        let responses: Vec<Response> = responses.into_iter().collect();
        let mut canned = self.state.canned();
        canned.retain(|c| !(c.method == method && c.path == path));
        if !responses.is_empty() {
            canned.push(Canned {
                method: method.to_string(),
                path: path.to_string(),
                responses,
                answered: 0,
            });
        }
        self
    }

    /// Every request kept so far, in the order they were routed.
    pub fn requests(&self) -> Vec<Request> {
        self.state.book.read(|b| b.kept.clone())
    }

    /// The requests kept so far for `method` and `path` (without the query).
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Request> {
        self.state.book.read(|b| {
            b.kept
                .iter()
                .filter(|r| r.method == method && path_of(&r.target) == path)
                .cloned()
                .collect()
        })
    }

    /// Requests answered but not kept, once the recording limits were reached.
    pub fn requests_not_kept(&self) -> u64 {
        self.state.book.read(|b| b.not_kept)
    }

    /// Waits until `condition` holds for the requests kept, checking at each
    /// request, and returns them.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut) if it did not hold within `timeout`; the error's
    /// text lists the requests there were.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&[Request]) -> bool,
    ) -> Result<Vec<Request>, Error> {
        self.state
            .book
            .wait_until(timeout, |b| condition(&b.kept))
            .map(|b| b.kept.clone())
            .map_err(|b| {
                let seen: Vec<String> = b
                    .kept
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.target))
                    .collect();
                wait_timed_out(Step::Read, timeout, "the condition on the requests", &seen)
            })
    }

    /// Waits until at least `count` requests have been kept, and returns them.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut) if fewer arrived within `timeout`.
    pub fn wait_for_requests(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Request>, Error> {
        self.wait_until(timeout, |kept| kept.len() >= count)
    }

    /// What the server's connections have done: requests, refusals, responses by class.
    pub fn stats(&self) -> HttpStats {
        self.router.stats()
    }

    /// Stops the server, joins its threads, and returns every request kept.
    pub fn shutdown(self) -> Vec<Request> {
        let HttpMock { server, state, .. } = self;
        server.shutdown();
        state.book.read(|b| b.kept.clone())
    }
}

impl MockState {
    fn canned(&self) -> std::sync::MutexGuard<'_, Vec<Canned>> {
        // Entries are replaced whole and `answered` only counts up: a poisoned
        // lock still guards usable answers.
        self.canned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `request` if the limits leave room, counting it otherwise.
    fn record(&self, request: &Request) {
        let size = request.target.len()
            + request.body.len()
            + request
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>();
        self.book.update(|b| {
            if b.kept.len() < self.max_kept && b.bytes + size <= self.max_bytes {
                b.bytes += size;
                b.kept.push(request.clone());
            } else {
                b.not_kept += 1;
            }
        });
    }

    /// The answer set for this method and path (a `HEAD` falls back to `GET`), or `404`.
    fn answer(&self, request: &Request) -> Response {
        let path = path_of(&request.target);
        let mut canned = self.canned();
        let found = |method: &str| {
            canned
                .iter()
                .position(|c| c.method == method && c.path == path)
        };
        let index = found(&request.method)
            .or_else(|| (request.method == "HEAD").then(|| found("GET")).flatten());
        let Some(index) = index else {
            return Response::text(
                404,
                format!(
                    "sockstep http mock: no answer set for {} {path}\n",
                    request.method
                ),
            );
        };
        let entry = &mut canned[index];
        // `responses` is never empty: an empty list removes the entry instead.
        let turn = entry.answered.min(entry.responses.len().saturating_sub(1));
        entry.answered = entry.answered.saturating_add(1);
        entry
            .responses
            .get(turn)
            .cloned()
            .unwrap_or_else(|| Response::new(500))
    }
}

/// The path of a request target: `/a/b?q` → `/a/b`; the absolute form a proxy
/// client sends, `http://host/a/b`, → `/a/b` (an empty path is `/`).
fn path_of(target: &str) -> &str {
    let target = match target.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("http://") => {
            let rest = &target[7..];
            rest.find(['/', '?']).map_or("/", |i| &rest[i..])
        }
        _ => target,
    };
    match target.split_once('?') {
        Some(("", _)) => "/",
        Some((path, _)) => path,
        None => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_compared_without_query_or_authority() {
        assert_eq!(path_of("/a/b?q=1"), "/a/b");
        assert_eq!(path_of("/"), "/");
        assert_eq!(path_of("http://example.com/x?y"), "/x");
        assert_eq!(path_of("HTTP://example.com"), "/");
        assert_eq!(path_of("http://example.com?q"), "/");
    }
}
