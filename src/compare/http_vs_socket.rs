//! `sockstep compare http-vs-socket`: the same updates, delivered five ways.
//!
//! # The idea
//!
//! The seed contrasts HTTP — the client asks, the server answers, the
//! connection ends — with socket communication, where a kept connection lets
//! either side speak at any time. The difference shows when the *server* has
//! news: a stream of updates (a price, a score, a chat line) that a client wants
//! the moment each happens. HTTP cannot send what was not asked for, so a client
//! has to keep asking:
//!
//! - **Polling**: ask "anything new since N?" every `poll_interval`. An update
//!   waits, on average, half an interval before anyone asks for it, and most
//!   answers are "nothing". Shown twice: a new connection per request (the
//!   seed's HTTP) and one kept-alive connection.
//! - **Long polling**: ask, and the server holds the question until there is
//!   news (or a timeout), then answers; the client asks again at once. Latency
//!   drops to one round trip, but every update still costs a request and a
//!   response head.
//! - **Push over a kept socket**: subscribe once; the server writes each update
//!   when it happens — the hub's line protocol over TCP ([`crate::push`]) —
//!   and the same hub over WebSocket ([`crate::push::websocket`]): one HTTP
//!   request, the Upgrade, then the same kept connection.
//!
//! Every mode gets the same `updates`, published every `every` by a thread of
//! the server, each stamped with its publication time. The client notes when
//! each arrives; the difference is the delivery latency. A counting tracer on
//! the client's sockets counts the TCP connections it opened and the bytes it
//! wrote and read (TCP payload: the HTTP heads and bodies, or the lines).

use std::fmt::Write as _;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::http::client::{Client, ClientConfig};
use crate::http::server::Router;
use crate::http::wire::{Request, Response};
use crate::step::{Side, Step};
use crate::tcp::serve::{ServeConfig, Server};
use crate::tcp::server;
use crate::trace::{Event, Trace, Tracer};

/// What to compare. See [`CompareConfig::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareConfig {
    /// How many updates each mode delivers.
    pub updates: usize,
    /// The time between two updates.
    pub every: Duration,
    /// How often a polling client asks.
    pub poll_interval: Duration,
    /// How long the server holds a long-polling request that has no news.
    pub long_poll_wait: Duration,
}

impl Default for CompareConfig {
    /// 200 updates, one every 10 ms (2 s per mode); polling every 100 ms; long
    /// polls held up to 5 s.
    fn default() -> CompareConfig {
        CompareConfig {
            updates: 200,
            every: Duration::from_millis(10),
            // A dashboard polls every second or so; 100 ms keeps the run short
            // while leaving the shape of the result (latency ≈ half the interval).
            poll_interval: Duration::from_millis(100),
            long_poll_wait: Duration::from_secs(5),
        }
    }
}

/// One mode's costs, as the client saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The mode's name, as printed.
    pub mode: &'static str,
    /// TCP connections the client opened.
    pub connections: u64,
    /// HTTP requests it sent (0 for push: it sends one subscription line).
    pub requests: u64,
    /// Bytes it wrote (TCP payload).
    pub bytes_up: u64,
    /// Bytes it read (TCP payload).
    pub bytes_down: u64,
    /// Updates that arrived (each once).
    pub delivered: usize,
    /// Delivery latency from publication to arrival: median.
    pub p50: Duration,
    /// … 99th percentile.
    pub p99: Duration,
}

/// Runs every mode and returns one row each, printing progress to `progress`.
///
/// # Errors
/// Any socket step's error, or [`ErrorKind::TimedOut`] if a mode does not
/// receive every update within a generous deadline.
pub fn run(config: &CompareConfig, progress: &mut dyn Write) -> Result<Vec<Row>, Error> {
    let mut rows = Vec::new();
    for mode in Mode::ALL {
        let _ = writeln!(progress, "  running: {} …", mode.name());
        rows.push(run_mode(mode, config)?);
    }
    Ok(rows)
}

/// The rows as the table `sockstep compare http-vs-socket` prints.
pub fn table(config: &CompareConfig, rows: &[Row]) -> String {
    let mut out = format!(
        "{} updates, one every {} ms; polling every {} ms\n\n",
        config.updates,
        config.every.as_millis(),
        config.poll_interval.as_millis()
    );
    let _ = writeln!(
        out,
        "{:<40} {:>11} {:>8} {:>10} {:>10} {:>9} {:>11} {:>11}",
        "mode",
        "connections",
        "requests",
        "bytes up",
        "bytes down",
        "delivered",
        "latency p50",
        "p99"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<40} {:>11} {:>8} {:>10} {:>10} {:>9} {:>11} {:>11}",
            r.mode,
            r.connections,
            r.requests,
            r.bytes_up,
            r.bytes_down,
            r.delivered,
            millis(r.p50),
            millis(r.p99)
        );
    }
    out
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

// ---------------------------------------------------------------------------
// The modes.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    PollNew,
    PollKept,
    LongPoll,
    Push,
    WebSocket,
}

impl Mode {
    const ALL: [Mode; 5] = [
        Mode::PollNew,
        Mode::PollKept,
        Mode::LongPoll,
        Mode::Push,
        Mode::WebSocket,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::PollNew => "HTTP polling, a connection per request",
            Mode::PollKept => "HTTP polling, keep-alive",
            Mode::LongPoll => "HTTP long polling, keep-alive",
            Mode::Push => "push over a kept TCP socket",
            Mode::WebSocket => "push over WebSocket",
        }
    }
}

fn run_mode(mode: Mode, config: &CompareConfig) -> Result<Row, Error> {
    let feed = Arc::new(Feed::new());
    let tally = Arc::new(Tally::default());
    let trace = Trace::to(tally.clone());
    let arrivals = match mode {
        Mode::PollNew | Mode::PollKept | Mode::LongPoll => {
            let (server, addr) = http_server(&feed, config)?;
            let publisher = feed.start(config);
            let arrivals = http_client(mode, addr, &feed, config, &trace, &tally);
            feed.stop();
            join(publisher);
            server.shutdown();
            arrivals?
        }
        Mode::Push => push::run(&feed, config, &trace)?,
        Mode::WebSocket => push::run_websocket(&feed, config, &trace, &tally)?,
    };
    let mut latencies: Vec<Duration> = arrivals.iter().map(|a| a.latency).collect();
    latencies.sort();
    Ok(Row {
        mode: mode.name(),
        connections: tally.connections.load(Ordering::Relaxed),
        requests: tally.requests.load(Ordering::Relaxed),
        bytes_up: tally.up.load(Ordering::Relaxed),
        bytes_down: tally.down.load(Ordering::Relaxed),
        delivered: arrivals.len(),
        p50: percentile(&latencies, 50),
        p99: percentile(&latencies, 99),
    })
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    match sorted.len() {
        0 => Duration::ZERO,
        n => sorted[(n * p / 100).min(n - 1)],
    }
}

fn join(publisher: thread::JoinHandle<()>) {
    // The publisher only sleeps and pushes into a Vec; a panic there is a bug
    // worth seeing, not hiding.
    if let Err(panic) = publisher.join() {
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------------------
// The feed: updates stamped with their publication time.
// ---------------------------------------------------------------------------

/// One update as it travels: its number and when it was published, in
/// microseconds since the feed's epoch (both ends run in this process, so they
/// share the clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Update {
    seq: u64,
    at_us: u64,
}

impl Update {
    fn line(self) -> String {
        format!("{} {}", self.seq, self.at_us)
    }

    fn parse(line: &str) -> Option<Update> {
        let (seq, at) = line.trim().split_once(' ')?;
        Some(Update {
            seq: seq.parse().ok()?,
            at_us: at.parse().ok()?,
        })
    }
}

/// What a client noted about one update.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    latency: Duration,
}

/// The server's updates, kept so HTTP clients can ask for those after N, and
/// signalled so a long poll can wait for the next.
pub(crate) struct Feed {
    epoch: Instant,
    log: Mutex<FeedState>,
    changed: Condvar,
    subscribers: Mutex<Vec<Subscriber>>,
}

/// Someone told of every update as it is published.
type Subscriber = Box<dyn Fn(Update) + Send>;

#[derive(Default)]
struct FeedState {
    updates: Vec<Update>,
    stopped: bool,
}

impl Feed {
    fn new() -> Feed {
        Feed {
            epoch: Instant::now(),
            log: Mutex::default(),
            changed: Condvar::new(),
            subscribers: Mutex::default(),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Called for every update as it is published (push hands it to the hub here).
    fn on_update(&self, f: impl Fn(Update) + Send + 'static) {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(f));
    }

    /// Starts the publisher: `updates` updates, one every `every`, on a schedule
    /// (not sleep-after-work) so the stream's pace does not drift.
    fn start(self: &Arc<Feed>, config: &CompareConfig) -> thread::JoinHandle<()> {
        let feed = Arc::clone(self);
        let (count, every) = (config.updates, config.every);
        thread::spawn(move || {
            let start = Instant::now();
            for i in 1..=count {
                let due = start + every * u32::try_from(i).unwrap_or(u32::MAX);
                thread::sleep(due.saturating_duration_since(Instant::now()));
                let update = Update {
                    seq: i as u64,
                    at_us: feed.now_us(),
                };
                {
                    let mut state = feed.log.lock().unwrap_or_else(PoisonError::into_inner);
                    if state.stopped {
                        return;
                    }
                    state.updates.push(update);
                }
                feed.changed.notify_all();
                for subscriber in feed
                    .subscribers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                {
                    subscriber(update);
                }
            }
        })
    }

    fn stop(&self) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stopped = true;
        self.changed.notify_all();
    }

    /// The updates after `seq`, waiting up to `wait` for one if there are none.
    fn after(&self, seq: u64, wait: Duration) -> Vec<Update> {
        let deadline = Instant::now() + wait;
        let mut state = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            // Updates are numbered 1, 2, …, so those after `seq` start at index `seq`.
            let start = usize::try_from(seq).unwrap_or(usize::MAX);
            if state.updates.len() > start || state.stopped {
                return state.updates.get(start..).unwrap_or_default().to_vec();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Vec::new();
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Notes that `update` arrived now.
    fn arrival(&self, update: Update) -> Arrival {
        Arrival {
            latency: Duration::from_micros(self.now_us().saturating_sub(update.at_us)),
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP: polling and long polling.
// ---------------------------------------------------------------------------

/// `after` from a target such as `/updates?after=12`; 0 when absent.
fn after_param(target: &str) -> u64 {
    target
        .split_once('?')
        .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("after=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn updates_body(updates: &[Update]) -> Response {
    let mut body = String::new();
    for u in updates {
        body.push_str(&u.line());
        body.push('\n');
    }
    Response::text(200, body).with_header("Cache-Control", "no-store")
}

/// The HTTP side: `GET /updates?after=N` answers at once (polling);
/// `GET /wait?after=N` holds the request until there is news (long polling).
fn http_server(feed: &Arc<Feed>, config: &CompareConfig) -> Result<(Server, SocketAddr), Error> {
    let (poll_feed, wait_feed) = (Arc::clone(feed), Arc::clone(feed));
    let wait = config.long_poll_wait;
    let router = Router::new()
        .route("GET", "/updates", move |r: &Request| {
            updates_body(&poll_feed.after(after_param(&r.target), Duration::ZERO))
        })
        .route("GET", "/wait", move |r: &Request| {
            updates_body(&wait_feed.after(after_param(&r.target), wait))
        });
    let listening = server::socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &Trace::off())
        .bind()?
        .listen(64);
    let server = listening.serve(ServeConfig::default(), router)?;
    let addr = server.local_addr();
    Ok((server, addr))
}

/// The polling or long-polling client: asks until it has every update.
fn http_client(
    mode: Mode,
    addr: SocketAddr,
    feed: &Feed,
    config: &CompareConfig,
    trace: &Trace,
    tally: &Tally,
) -> Result<Vec<Arrival>, Error> {
    let client_config = ClientConfig {
        response_timeout: config.long_poll_wait + Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let mut client = Client::with_config(client_config).with_trace(trace);
    if mode == Mode::PollNew {
        client = client.without_keep_alive();
    }
    let path = if mode == Mode::LongPoll {
        "wait"
    } else {
        "updates"
    };
    let deadline = Instant::now() + give_up_after(config);
    let mut last = 0;
    let mut arrivals = Vec::with_capacity(config.updates);
    while last < config.updates as u64 {
        if Instant::now() > deadline {
            return Err(incomplete(mode, last, config));
        }
        let response = client.get(&format!("http://{addr}/{path}?after={last}"))?;
        tally.requests.fetch_add(1, Ordering::Relaxed);
        for update in String::from_utf8_lossy(&response.body)
            .lines()
            .filter_map(Update::parse)
        {
            if update.seq > last {
                arrivals.push(feed.arrival(update));
                last = update.seq;
            }
        }
        if mode != Mode::LongPoll {
            thread::sleep(config.poll_interval);
        }
    }
    Ok(arrivals)
}

/// Twice the stream's length plus a margin: a mode that has not got everything
/// by then is broken, not slow.
fn give_up_after(config: &CompareConfig) -> Duration {
    config.every * u32::try_from(config.updates).unwrap_or(u32::MAX) * 2
        + config.long_poll_wait
        + Duration::from_secs(5)
}

fn incomplete(mode: Mode, got: u64, config: &CompareConfig) -> Error {
    Error::new(Step::Read, ErrorKind::TimedOut).with_io(std::io::Error::other(format!(
        "{}: only {got} of {} updates arrived",
        mode.name(),
        config.updates
    )))
}

// ---------------------------------------------------------------------------
// Push over a kept socket.
// ---------------------------------------------------------------------------

mod push {
    use super::*;
    use crate::push::client::Client as HubClient;
    use crate::push::hub::{Hub, HubConfig, MAX_QUEUE};
    use crate::push::line::ServerLine;
    use crate::push::serve;
    use crate::push::websocket;
    use crate::tcp::client;
    use crate::tcp::connection::Timeouts;
    use crate::ws::{self, CloseCode, Message, WebSocket};

    /// How long the client waits for any one line before calling the run broken.
    const LINE_WAIT: Duration = Duration::from_secs(5);

    /// A hub with room for every update at once: the comparison is about
    /// latency, not about cutting a slow consumer loose.
    fn hub(config: &CompareConfig) -> Result<Hub, Error> {
        Hub::new(HubConfig {
            queue: config.updates.clamp(1, MAX_QUEUE),
            ..HubConfig::default()
        })
    }

    /// The hub on a kept TCP connection: the client connects and subscribes
    /// once; each update is announced by the server and pushed to it.
    pub(super) fn run(
        feed: &Arc<Feed>,
        config: &CompareConfig,
        trace: &Trace,
    ) -> Result<Vec<Arrival>, Error> {
        let hub = hub(config)?;
        let listening = server::socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &Trace::off())
            .bind()?
            .listen(8);
        let push_server = serve::serve(listening, hub.clone(), Timeouts::default())?;
        let conn = client::socket(push_server.local_addr(), trace).connect(LINE_WAIT)?;
        let mut hub_client = HubClient::over(conn, LINE_WAIT)?;
        hub_client.subscribe(LINE_WAIT)?;
        let announcer = hub.clone();
        feed.on_update(move |update| {
            announcer.announce(&update.line());
        });
        let publisher = feed.start(config);
        let mut arrivals = Vec::with_capacity(config.updates);
        let received = (|| {
            while arrivals.len() < config.updates {
                match hub_client.next_published(LINE_WAIT)? {
                    Some(ServerLine::Sys { text, .. }) => {
                        if let Some(update) = Update::parse(&text) {
                            arrivals.push(feed.arrival(update));
                        }
                    }
                    Some(_) => {}
                    None => return Err(incomplete(Mode::Push, arrivals.len() as u64, config)),
                }
            }
            Ok(())
        })();
        feed.stop();
        join(publisher);
        drop(hub_client);
        push_server.shutdown();
        received.map(|()| arrivals)
    }

    /// The same hub reached by WebSocket: one HTTP request (the upgrade), then
    /// one text message per update on the kept connection.
    pub(super) fn run_websocket(
        feed: &Arc<Feed>,
        config: &CompareConfig,
        trace: &Trace,
        tally: &Tally,
    ) -> Result<Vec<Arrival>, Error> {
        let hub = hub(config)?;
        let router = websocket::router(hub.clone(), ws::Config::default());
        let listening = server::socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &Trace::off())
            .bind()?
            .listen(8);
        let web = listening.serve(ServeConfig::default(), router)?;
        let mut socket =
            WebSocket::connect(web.local_addr(), "/hub", &ws::Config::default(), trace)?;
        tally.requests.fetch_add(1, Ordering::Relaxed);
        socket.send_text("SUB")?;
        while socket.recv()? != Message::Text("OK SUB".into()) {}
        let announcer = hub.clone();
        feed.on_update(move |update| {
            announcer.announce(&update.line());
        });
        let publisher = feed.start(config);
        let mut arrivals = Vec::with_capacity(config.updates);
        let received = (|| {
            while arrivals.len() < config.updates {
                match socket.recv()? {
                    Message::Text(line) => {
                        if let ServerLine::Sys { text, .. } = ServerLine::parse(&line)
                            && let Some(update) = Update::parse(&text)
                        {
                            arrivals.push(feed.arrival(update));
                        }
                    }
                    Message::Close { .. } => {
                        return Err(incomplete(Mode::WebSocket, arrivals.len() as u64, config));
                    }
                    _ => {}
                }
            }
            Ok(())
        })();
        feed.stop();
        join(publisher);
        let _ = socket.close(CloseCode::NORMAL, "done");
        hub.shutdown();
        web.shutdown();
        received.map(|()| arrivals)
    }
}

// ---------------------------------------------------------------------------
// Counting what went over the client's sockets.
// ---------------------------------------------------------------------------

/// A tracer that counts the client's connections and payload bytes.
#[derive(Debug, Default)]
struct Tally {
    connections: AtomicU64,
    requests: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
}

impl Tracer for Tally {
    fn event(&self, event: &Event) {
        if event.side != Side::Client {
            return;
        }
        let bytes = event.bytes.unwrap_or(0) as u64;
        match event.step {
            Step::Established => {
                self.connections.fetch_add(1, Ordering::Relaxed);
            }
            Step::Write => {
                self.up.fetch_add(bytes, Ordering::Relaxed);
            }
            Step::Read => {
                self.down.fetch_add(bytes, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}
