//! `sockstep walk http`: HTTP on loopback, every socket step and every message printed.
//!
//! The run shows the seed's sentence — the client asks, the server answers,
//! then the connection ends — and then what HTTP/1.1 changed:
//!
//! 1. **The seed's HTTP** (HTTP/1.0's shape): two requests, each on a connection
//!    of its own: socket → connect → write request → read response → close.
//! 2. **Keep-alive** (HTTP/1.1's default): three requests on one connection; the
//!    handshake and the close happen once.
//!
//! Either way the server speaks only when asked: HTTP is one-way and on demand.
//! `sockstep walk push` shows the other mode, a kept socket both sides write on.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::http::client::Client;
use crate::http::server::{HttpStats, LINGER, Router};
use crate::http::wire::{Request, Response};
use crate::tcp::serve::{ServeConfig, Server, Stats};
use crate::tcp::server;
use crate::trace::{Event, Printer, Recorder, Tee, Trace, Tracer};
use crate::walk::{SharedOut, WalkOptions};

/// What the HTTP walkthrough did.
#[derive(Debug, Clone)]
pub struct HttpWalkReport {
    /// The trace of the run, sorted by time.
    pub events: Vec<Event>,
    /// TCP connections the client opened in part 1 (one per request) and part 2 (kept alive).
    pub connections: [u64; 2],
    /// Requests sent in part 1 and part 2.
    pub requests: [u64; 2],
    /// The HTTP server's counts at the end.
    pub http: HttpStats,
    /// The TCP server's counts at shutdown.
    pub tcp: Stats,
}

/// Paths the client asks for in each part.
const PART1: [&str; 2] = ["/hello", "/time"];
const PART2: [&str; 3] = ["/hello", "/time", "/hello"];

/// Runs the HTTP walkthrough, printing to `out`.
///
/// # Errors
/// Any step's error, for example if loopback is unavailable.
pub fn run(options: &WalkOptions, out: Box<dyn Write + Send>) -> Result<HttpWalkReport, Error> {
    let out = SharedOut::new(out);
    let recorder = Recorder::new();
    let printer = Printer::to(Box::new(out.clone())).pausing(options.pause);
    let tracers: Vec<Arc<dyn Tracer>> = vec![Arc::new(printer), recorder.clone()];
    let trace = Trace::to(Arc::new(Tee(tracers)));

    out.line("sockstep walk http — the client asks, the server answers, the connection ends");
    out.line("Every socket step prints as in 'walk tcp'; 'message' lines are HTTP's own:");
    out.line("a request or response made whole from (or cut into) the bytes around it.");
    out.line("");
    out.line("== Server: 1 socket() → 2 bind() → 3 listen(), then accept() per connection ==");
    let router = Router::new()
        .route("GET", "/hello", |_: &Request| {
            Response::text(200, "hello\n")
        })
        .route("GET", "/time", |_: &Request| {
            let since = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Response::text(200, format!("{} ms since 1970\n", since.as_millis()))
        });
    let listening = server::socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &trace)
        .bind()?
        .listen(4);
    let server = listening.serve(ServeConfig::default(), router.clone())?;
    let base = format!("http://{}", server.local_addr());
    out.line(&format!("   (serving GET /hello and GET /time at {base})"));

    out.line("");
    out.line("== Part 1 — the seed's HTTP: one connection per request (HTTP/1.0's shape) ==");
    out.line("   Each request: socket() → connect() → write the request → read the response");
    out.line("   → close(). The client says 'Connection: close'; the server answers, shuts");
    out.line("   down its side (FIN) and closes when the client has closed too.");
    let mut once = Client::new().without_keep_alive().with_trace(&trace);
    for path in PART1 {
        out.line("");
        out.line(&format!("-- GET {path} on a new connection --"));
        let response = once.get(&format!("{base}{path}"))?;
        out.line(&format!(
            "   answer: {} {:?}",
            response.status,
            body_text(&response)
        ));
        // The server's side ends after the client's close; wait for it so the
        // next request's lines do not mix with this connection's ending.
        wait_until_served(&server, once.connections_opened());
    }

    out.line("");
    out.line("== Part 2 — HTTP/1.1 keep-alive: one connection, several requests ==");
    out.line("   The handshake happens once; each request reuses the connection. Still");
    out.line("   one-way: the server writes only in answer to a request.");
    let mut kept = Client::new().with_trace(&trace);
    for path in PART2 {
        out.line("");
        out.line(&format!("-- GET {path} --"));
        let response = kept.get(&format!("{base}{path}"))?;
        out.line(&format!(
            "   answer: {} {:?}",
            response.status,
            body_text(&response)
        ));
    }
    out.line("");
    out.line("-- the client is done: it closes the kept connection --");
    let opened = [once.connections_opened(), kept.connections_opened()];
    drop(kept);

    out.line("");
    out.line("== Server shutdown ==");
    let tcp = server.shutdown();
    let http = router.stats();
    out.line("");
    out.line("== What it took ==");
    out.line(&format!(
        "   part 1: {} requests, {} TCP connections (a handshake and a close each)",
        PART1.len(),
        opened[0]
    ));
    out.line(&format!(
        "   part 2: {} requests, {} TCP connection ({} requests reused it)",
        PART2.len(),
        opened[1],
        http.reused
    ));
    Ok(HttpWalkReport {
        events: recorder.events(),
        connections: opened,
        requests: [PART1.len() as u64, PART2.len() as u64],
        http,
        tcp,
    })
}

fn body_text(response: &Response) -> String {
    String::from_utf8_lossy(&response.body)
        .trim_end()
        .to_string()
}

/// Waits until the server has finished `n` connections, or a lingering close's
/// worth of time has passed (then the output only interleaves a little).
fn wait_until_served(server: &Server, n: u64) {
    let deadline = Instant::now() + LINGER;
    while server.stats().served < n && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(2));
    }
}
