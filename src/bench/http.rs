//! `sockstep bench http`: requests per second and latency of our HTTP server,
//! beside nginx serving the same small file and beside the plainest HTTP
//! responder std allows, under the same load.
//!
//! # What runs
//!
//! Four servers on loopback, all started once and kept for the whole run:
//!
//! | variant | what answers `GET /index.html` |
//! |---|---|
//! | `raw` | std alone: accept loop, `thread::spawn` per connection, read until `\r\n\r\n`, write a response fixed in memory (`raw_respond` below) |
//! | `ours, from memory` | a [`Router`] route answering with the page held in memory, as raw does: what our HTTP machinery costs |
//! | `ours` | [`Router::files`]: the file found, opened and read per request, as nginx does |
//! | `nginx` | nginx, when installed, as a child process with a config written for the run ([`nginx_config`]): one process (`master_process off`, `worker_processes 1`), `access_log off`, the same file |
//!
//! Both of ours run on [`tcp::serve`](crate::tcp::serve) (a thread per
//! connection) with the default [`HttpConfig`](crate::http::HttpConfig) and
//! [`ServeConfig`] but for warm threads (`keep_warm:`
//! [`KEEP_WARM_SHORT`]), as `sockstep http serve` runs, and Trace off.
//!
//! The load is [wrk](https://github.com/wg/wrk) when it is installed: 1 second
//! per pass at 1, 16 and 64 connections (`-t1` for one connection, `-t2`
//! otherwise: on two cores wrk then takes one, and the server gets about the
//! other), first with keep-alive (every request on the connection it opened),
//! then with `Connection: close` on every request (wrk opens a connection
//! per request; each server closes after its answer). Each pass gives
//! requests per second, the p50 and p99 latency wrk measured, and — read from
//! `/proc/PID/stat` around the pass — the server process's CPU time per
//! request, which a busy neighbour disturbs far less than the rate.
//!
//! Without wrk, and in a `--quick` run, the load is our own
//! [`http::client`](crate::http::client), one thread per connection in this
//! process (`client_pass` below), and every row says so: it measures our client
//! as much as the servers, and shares the two cores with them.
//!
//! # Fair comparisons
//!
//! - **Interleaved passes** ([`Bench::interleave`]): pass *i* of each server,
//!   then pass *i* + 1, the order reversed every other pass.
//! - **The same bytes asked for and answered**: one page of [`PAGE`] bytes;
//!   ours and raw send the same head (`Content-Type`, `Content-Length`, and
//!   `Connection: close` when closing); nginx adds `Server`, `Date`,
//!   `Last-Modified`, `ETag` and `Accept-Ranges`. Before the first pass each
//!   server is asked once and must answer 200 with the page.
//! - **Like with like**: nginx and `ours` open, read and close the file on
//!   every request (nginx's `open_file_cache` is off by default); raw and
//!   `ours, from memory` answer from memory. Raw's row is the limit for a
//!   blocking thread-per-connection server that does no work at all.
//! - **One nginx process**: nginx is event-driven, and one worker is one
//!   thread. Ours and raw start a thread per connection and may use both
//!   cores (the one wrk leaves, and wrk's when it waits).
//!
//! # Reading the table
//!
//! Both of ours are compared with `raw` (ours ÷ raw), and `nginx` with
//! `ours` (nginx ÷ ours), as `tcp-throughput` compares iperf3 with ours. For a rate
//! above 1× is faster; for a latency or a CPU cost above 1× is slower or dearer.

use std::env;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::bench::harness::{
    Bench, BenchOptions, Measurement, Report, Samples, Unit, Variant, bench_error, find_tool,
    write_file,
};
use crate::bench::plot::{Chart, Point, Scale, Series};
use crate::bench::tcp::RawServer;
use crate::error::{Error, ErrorKind};
use crate::http::client::{self, ClientConfig, HttpConnection};
use crate::http::{Headers, Request, Response, Router, Version};
use crate::readable::grouped;
use crate::step::Step;
use crate::tcp::serve::{KEEP_WARM_SHORT, ServeConfig, Server};
use crate::tcp::server;
use crate::trace::Trace;

/// The small file every server sends: an HTML page of about 600 bytes, the
/// size of the welcome page an nginx install serves.
pub const PAGE: &str = "<!DOCTYPE html>
<html>
<head>
<title>sockstep</title>
<style>
body { width: 35em; margin: 0 auto; font-family: sans-serif; }
</style>
</head>
<body>
<h1>sockstep</h1>
<p>This page is served by four servers in turn: sockstep's own HTTP
server, from the disk and from memory, the plainest responder std allows,
and nginx. The same bytes go to every request, so that what differs
between them is the server and nothing else.</p>
<p>Every response says how long it is, and the client reads exactly that
many bytes before it asks again on the same connection.</p>
</body>
</html>
";

/// The page's name under each server's root, and the path wrk asks for.
const PAGE_NAME: &str = "index.html";

/// Connections of the three loads: one client at a time, a few, many.
pub const CONNECTIONS: [usize; 3] = [1, 16, 64];

/// How long one wrk pass lasts. wrk counts its duration in whole seconds.
const WRK_SECONDS: u64 = 1;

/// Timeouts wrk and our client give a request: long past any answer on an
/// unloaded loopback, so a timeout means something is wrong.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long nginx has to start listening.
const NGINX_START: Duration = Duration::from_secs(5);

/// The Linux clock tick of `/proc/PID/stat` times (`USER_HZ`): 100 on every
/// architecture Linux runs on, whatever the kernel's own tick.
const USER_HZ: f64 = 100.0;

/// How the client treats its connection: the two halves of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HTTP/1.1's default: every request on the connection already open.
    KeepAlive,
    /// `Connection: close` on every request: a new connection per request,
    /// which the server closes after its answer (the seed's HTTP).
    Close,
}

impl Mode {
    /// Both, in table order.
    pub const ALL: [Mode; 2] = [Mode::KeepAlive, Mode::Close];

    /// `keep-alive` or `Connection: close`, as the table's cases say.
    pub fn label(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keep-alive",
            Mode::Close => "Connection: close",
        }
    }
}

/// The table case of `mode` at `connections`: `keep-alive, 16 connections`.
pub fn case(mode: Mode, connections: usize) -> String {
    let noun = if connections == 1 {
        "connection"
    } else {
        "connections"
    };
    format!("{}, {connections} {noun}", mode.label())
}

/// One server under test: its row name, its address, and its process when
/// that is not this one.
#[derive(Debug, Clone, Copy)]
struct Target {
    name: &'static str,
    addr: SocketAddr,
    pid: Option<u32>,
}

impl Target {
    /// A server running in this process.
    fn here(name: &'static str, addr: SocketAddr) -> Target {
        Target {
            name,
            addr,
            pid: None,
        }
    }
}

/// What makes the load.
#[derive(Debug, Clone)]
enum Driver {
    /// wrk, at this path.
    Wrk(PathBuf),
    /// Our own client, one thread per connection in this process, for this long.
    OurClient(Duration),
}

/// `sockstep bench http`: see the [module docs](self).
///
/// # Errors
/// A server that does not start or does not serve the page; wrk failing or
/// printing no result; a socket step of our own client failing.
pub fn requests(options: &BenchOptions) -> Result<Report, Error> {
    let mut bench = Bench::new(
        "http",
        "GET of a small file: our HTTP server against nginx and a raw std responder",
        options,
    );
    let wrk = find_tool("wrk");
    let driver = match (&wrk, options.quick) {
        (Some(path), false) => Driver::Wrk(path.clone()),
        (_, quick) => Driver::OurClient(if quick {
            Duration::from_millis(50)
        } else {
            Duration::from_secs(WRK_SECONDS)
        }),
    };
    let (warmup, reps) = options.pick((1, 4), (0, 2));
    let site = Site::create()?;
    let ours = OurHttp::files(&site)?;
    let ours_memory = OurHttp::memory()?;
    let raw = raw_http()?;
    let nginx = match find_tool("nginx").map(|program| Nginx::start(&program, &site)) {
        Some(Ok(nginx)) => Some(nginx),
        Some(Err(e)) => {
            bench.note(format!(
                "nginx is installed but did not start ({e}): no nginx rows"
            ));
            None
        }
        None => {
            bench.note("nginx is not installed (apt-get install nginx-light): no nginx rows");
            None
        }
    };
    let mut targets = vec![
        Target::here("raw", raw.addr),
        Target::here("ours, from memory", ours_memory.addr()),
        Target::here("ours", ours.addr()),
    ];
    if let Some(n) = &nginx {
        targets.push(Target {
            name: "nginx",
            addr: n.addr,
            pid: Some(n.child.id()),
        });
    }

    let fallback_note = match (&driver, &wrk) {
        (Driver::Wrk(_), _) => None,
        (Driver::OurClient(_), None) => Some(
            "load from our own http::client, not wrk: wrk is not installed (apt-get install wrk); \
             the client shares this process and its cores with ours and raw",
        ),
        (Driver::OurClient(_), Some(_)) => Some(
            "load from our own http::client, not wrk (a quick run); \
             the client shares this process and its cores with ours and raw",
        ),
    };
    match &driver {
        Driver::Wrk(path) => bench.setup(format!(
            "load: {} -t1 (one connection) or -t2 -c N -d {WRK_SECONDS}s --latency --timeout {}s, \
             GET /{PAGE_NAME}; Connection: close rows add -H 'Connection: close'",
            path.display(),
            REQUEST_TIMEOUT.as_secs()
        )),
        Driver::OurClient(d) => bench.setup(format!(
            "load: our http::client, one thread and one connection per N, {d:?} per pass, \
             GET /{PAGE_NAME} (NOT wrk; see the note)"
        )),
    }
    bench.setup(format!(
        "{reps} interleaved passes per case (+{warmup} warm-up pass before the first case); \
         the page: {} bytes; servers: ours (Router::files: the file read per request), \
         ours, from memory (a route answering with the page held in memory), both with the \
         default HttpConfig and ServeConfig but keep_warm 1 s (as `sockstep http serve`); raw (std, thread per connection, fixed response); \
         nginx (one process, access_log off)",
        PAGE.len()
    ));
    if matches!(driver, Driver::Wrk(_)) {
        bench.setup(
            "server CPU per request: the server process's user + system time across the pass \
             (/proc/PID/stat; ours and raw run in this process, which is otherwise idle then) \
             ÷ requests",
        );
    }
    for target in &targets {
        check_serves_page(target.name, target.addr)?;
    }

    // One block of rows per metric, so that the table reads rate, p50, p99, CPU.
    let mut rows: [Vec<Measurement>; Metric::ALL.len()] = Default::default();
    let mut failures: Vec<String> = Vec::new();
    for (index, (mode, connections)) in Mode::ALL
        .into_iter()
        .flat_map(|m| CONNECTIONS.map(|c| (m, c)))
        .enumerate()
    {
        let case = case(mode, connections);
        let mut variants: Vec<Variant<'_, Load>> = targets
            .iter()
            .map(|target| {
                let driver = driver.clone();
                let (addr, pid) = (target.addr, target.pid);
                Variant::new(target.name, move || {
                    load_pass(&driver, addr, pid, mode, connections)
                })
            })
            .collect();
        let warmup = if index == 0 { warmup } else { 0 };
        let passes = bench.interleave(&case, warmup, reps, &mut variants, Load::show)?;
        for (target, loads) in targets.iter().zip(&passes) {
            let name = target.name;
            let failed: u64 = loads.iter().map(|l| l.failures).sum();
            if failed > 0 {
                failures.push(format!(
                    "{name}, {case}: {} failed requests",
                    grouped(failed)
                ));
            }
            for (slot, metric) in rows.iter_mut().zip(Metric::ALL) {
                let values: Vec<f64> = loads.iter().filter_map(|l| metric.of(l)).collect();
                if values.is_empty() {
                    continue;
                }
                let samples = Samples::new(values);
                let mut m = Measurement::new(metric.case(&case), name, metric.unit(), samples);
                m = match name {
                    "raw" => m,
                    "nginx" => m.vs("ours"),
                    _ => m.vs("raw"),
                };
                if let Some(note) = fallback_note {
                    m = m.note(note);
                }
                slot.push(m);
            }
        }
    }
    for row in rows.into_iter().flatten() {
        bench.record(row);
    }
    for failure in failures {
        bench.note(failure);
    }

    for (name, server) in [("ours", ours), ("ours, from memory", ours_memory)] {
        let served = server.router.stats();
        let stats = server.server.shutdown();
        bench.note(format!(
            "{name} served {} requests on {} connections; {} connections ended in an error \
             (a client gone mid-request at the end of a pass counts as one)",
            grouped(served.requests),
            grouped(served.connections),
            grouped(stats.errors)
        ));
    }
    drop(raw);
    drop(nginx);
    if let Some(dir) = &options.svg_dir {
        let files = ["bench-http-keep-alive.svg", "bench-http-close.svg"];
        for (mode, file) in Mode::ALL.into_iter().zip(files) {
            let path = write_file(dir, file, &chart(bench.report(), mode).svg())?;
            bench.plot_written(path);
        }
    }
    Ok(bench.finish())
}

/// One pass of `driver` against the server at `addr` (its process `pid`,
/// when it runs in a process of its own).
fn load_pass(
    driver: &Driver,
    addr: SocketAddr,
    pid: Option<u32>,
    mode: Mode,
    connections: usize,
) -> Result<Load, Error> {
    match driver {
        Driver::Wrk(program) => {
            let pid = pid.map_or_else(|| "self".to_string(), |p| p.to_string());
            let before = process_cpu(&pid);
            let summary = run_wrk(program, addr, mode, connections)?;
            let cpu = before.zip(process_cpu(&pid)).map(|(b, a)| a - b);
            Ok(Load {
                per_second: summary.per_second,
                p50: summary.p50,
                p99: summary.p99,
                cpu_per_request: cpu.map(|c| c / summary.requests.max(1) as f64),
                failures: summary.socket_errors + summary.non_2xx,
            })
        }
        Driver::OurClient(duration) => client_pass(addr, mode, connections, *duration),
    }
}

/// What one pass measured.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Load {
    /// Requests answered per second.
    per_second: f64,
    /// Median latency, seconds.
    p50: f64,
    /// 99th percentile latency, seconds.
    p99: f64,
    /// The server process's CPU seconds per request; `None` when the load
    /// ran in the same process.
    cpu_per_request: Option<f64>,
    /// Requests that failed: socket errors, timeouts, statuses other than 2xx/3xx.
    failures: u64,
}

impl Load {
    fn show(&self) -> String {
        format!(
            "{}, p50 {}, p99 {}",
            Unit::PerSecond("req").format(self.per_second),
            Unit::Seconds.format(self.p50),
            Unit::Seconds.format(self.p99)
        )
    }
}

/// What the table quotes of each pass, one block of rows each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Rate,
    P50,
    P99,
    CpuPerRequest,
}

impl Metric {
    const ALL: [Metric; 4] = [
        Metric::Rate,
        Metric::P50,
        Metric::P99,
        Metric::CpuPerRequest,
    ];

    /// Its table case: the load's case, and for all but the rate what of it.
    fn case(self, load: &str) -> String {
        match self {
            Metric::Rate => load.to_string(),
            Metric::P50 => format!("{load}, p50"),
            Metric::P99 => format!("{load}, p99"),
            Metric::CpuPerRequest => format!("{load}, server CPU per request"),
        }
    }

    fn unit(self) -> Unit {
        match self {
            Metric::Rate => Unit::PerSecond("req"),
            _ => Unit::Seconds,
        }
    }

    /// Its value in `load`, if that pass measured it.
    fn of(self, load: &Load) -> Option<f64> {
        match self {
            Metric::Rate => Some(load.per_second),
            Metric::P50 => Some(load.p50),
            Metric::P99 => Some(load.p99),
            Metric::CpuPerRequest => load.cpu_per_request,
        }
    }
}

/// User + system CPU time of process `pid` (or `self`) so far, in seconds,
/// from fields 14 and 15 of `/proc/PID/stat` — every thread's, the finished
/// ones' included. `None` where that file is missing.
fn process_cpu(pid: &str) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name, is in parentheses and may hold spaces:
    // count fields from the last ')'. After it come field 3 (state) on.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    Some((ticks(14)? + ticks(15)?) as f64 / USER_HZ)
}

// --- the file ----------------------------------------------------------------------

/// A temporary directory for the run: `www/` holds the page every server
/// serves, and nginx keeps its config, logs and temp files beside it.
/// Removed when dropped.
struct Site {
    dir: PathBuf,
}

impl Site {
    fn create() -> Result<Site, Error> {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let dir = env::temp_dir().join(format!(
            "sockstep-bench-http-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        write_file(&dir.join("www"), PAGE_NAME, PAGE)?;
        Ok(Site { dir })
    }

    fn www(&self) -> PathBuf {
        self.dir.join("www")
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // Only our own directory, made above; nothing to do if it is already gone.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Asks the server once, with our client, and insists on 200 and the page:
/// a server answering 404 quickly would otherwise top the table.
fn check_serves_page(name: &str, addr: SocketAddr) -> Result<(), Error> {
    let response = client::get(&format!("http://{addr}/{PAGE_NAME}"))?;
    if response.status == 200 && response.body == PAGE.as_bytes() {
        return Ok(());
    }
    Err(bench_error(
        &format!("check that {name} serves the page"),
        io::Error::other(format!(
            "GET /{PAGE_NAME} answered {} with {} bytes, not 200 with {}",
            response.status,
            response.body.len(),
            PAGE.len()
        )),
    ))
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

// --- ours ---------------------------------------------------------------------------

/// Our HTTP server on the thread-per-connection server, every setting at
/// its default, Trace off.
struct OurHttp {
    router: Router,
    server: Server,
}

impl OurHttp {
    /// Serving the site's directory with [`Router::files`]: the file is
    /// found, opened and read on every request, as nginx does.
    fn files(site: &Site) -> Result<OurHttp, Error> {
        OurHttp::start(Router::new().files("/", site.www())?)
    }

    /// A route that answers with the page held in memory, as the raw
    /// responder does: what our HTTP machinery costs without the file.
    fn memory() -> Result<OurHttp, Error> {
        OurHttp::start(
            Router::new().route("GET", &format!("/{PAGE_NAME}"), |_: &Request| {
                Response::new(200).with_body("text/html; charset=utf-8", PAGE.as_bytes().to_vec())
            }),
        )
    }

    fn start(router: Router) -> Result<OurHttp, Error> {
        let server = server::socket(loopback(), &Trace::off())
            .bind()?
            .listen(128)
            .serve(
                ServeConfig {
                    keep_warm: KEEP_WARM_SHORT,
                    ..ServeConfig::default()
                },
                router.clone(),
            )?;
        Ok(OurHttp { router, server })
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

// --- raw ----------------------------------------------------------------------------

/// The baseline: an HTTP responder written with std alone and as plainly as
/// possible — the benchmarks' raw accept loop ([`RawServer`]: a
/// `thread::spawn` per connection) running [`raw_respond`]. Stopped when
/// dropped.
fn raw_http() -> Result<RawServer, Error> {
    let answers = Arc::new(RawAnswers::new());
    RawServer::start(move |stream| raw_respond(stream, &answers), false)
}

/// The raw responder's two answers, built once: the same head ours sends.
struct RawAnswers {
    keep: Vec<u8>,
    close: Vec<u8>,
}

impl RawAnswers {
    fn new() -> RawAnswers {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n",
            PAGE.len()
        );
        RawAnswers {
            keep: format!("{head}\r\n{PAGE}").into_bytes(),
            close: format!("{head}Connection: close\r\n\r\n{PAGE}").into_bytes(),
        }
    }
}

/// One raw connection: read until a blank line ends a head, write the fixed
/// answer, and again; after a request that says `Connection: close`, answer
/// and close. Nagle off, as ours. No parsing, no limits, no timeouts.
fn raw_respond(mut stream: TcpStream, answers: &RawAnswers) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; 8192];
    let mut have = 0;
    loop {
        match stream.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
        while let Some(end) = find(&buf[..have], b"\r\n\r\n") {
            let close = find_ignoring_case(&buf[..end], b"\r\nconnection: close").is_some();
            let answer = if close { &answers.close } else { &answers.keep };
            if stream.write_all(answer).is_err() || close {
                return;
            }
            buf.copy_within(end + 4..have, 0);
            have -= end + 4;
        }
        if have == buf.len() {
            return;
        }
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Where `needle` (lower case) first occurs in `haystack`, in any case.
fn find_ignoring_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

// --- nginx --------------------------------------------------------------------------

/// nginx as our child process, serving the site. Killed when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Nginx {
    /// Writes the config into the site's directory, starts `program` on it,
    /// and waits until it accepts connections.
    fn start(program: &Path, site: &Site) -> Result<Nginx, Error> {
        // A port the kernel just handed out and took back: free, barring a race
        // with another program in the next millisecond.
        let addr = TcpListener::bind(loopback())
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::io(Step::Bind, e))?;
        let config = write_file(&site.dir, "nginx.conf", &nginx_config(&site.dir, addr))?;
        let error_log = site.dir.join("error.log");
        let child = Command::new(program)
            .arg("-p")
            .arg(&site.dir)
            .arg("-c")
            .arg(&config)
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| bench_error(&format!("start {}", program.display()), e))?;
        let mut nginx = Nginx { child, addr };
        let deadline = Instant::now() + NGINX_START;
        loop {
            if TcpStream::connect(addr).is_ok() {
                return Ok(nginx);
            }
            let exited = matches!(nginx.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() >= deadline {
                let log = fs::read_to_string(&error_log).unwrap_or_default();
                return Err(bench_error(
                    "start nginx",
                    io::Error::other(format!(
                        "it {} ({}): {}",
                        if exited {
                            "exited"
                        } else {
                            "did not listen in time"
                        },
                        error_log.display(),
                        log.trim()
                    )),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Our own child, by its handle. With `master_process off` it is the
        // only nginx process, so nothing is left behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config nginx runs with: one process in the foreground, everything it
/// writes kept in `dir`, the site's page served at `addr`.
pub fn nginx_config(dir: &Path, addr: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "# written by sockstep bench http; removed after the run
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    types {{
        text/html html;
    }}
    default_type application/octet-stream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {addr};
        root {d}/www;
    }}
}}
"
    )
}

// --- wrk ----------------------------------------------------------------------------

/// What wrk printed, the parts the table uses.
#[derive(Debug, Clone, Copy, PartialEq)]
struct WrkSummary {
    /// `N requests in …`.
    requests: u64,
    /// `Requests/sec:`.
    per_second: f64,
    /// The `50%` line of `--latency`, seconds.
    p50: f64,
    /// The `99%` line, seconds.
    p99: f64,
    /// `Socket errors: connect A, read B, write C, timeout D`: A + B + C + D.
    socket_errors: u64,
    /// `Non-2xx or 3xx responses: N`.
    non_2xx: u64,
}

/// One wrk pass against `addr`.
fn run_wrk(
    program: &Path,
    addr: SocketAddr,
    mode: Mode,
    connections: usize,
) -> Result<WrkSummary, Error> {
    let threads = connections.min(2);
    let mut command = Command::new(program);
    command.args([
        format!("-t{threads}"),
        format!("-c{connections}"),
        format!("-d{WRK_SECONDS}s"),
        "--latency".into(),
        "--timeout".into(),
        format!("{}s", REQUEST_TIMEOUT.as_secs()),
    ]);
    if mode == Mode::Close {
        command.args(["-H", "Connection: close"]);
    }
    let output = command
        .arg(format!("http://{addr}/{PAGE_NAME}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| bench_error("run wrk", e))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match parse_wrk(&text) {
        Some(summary) if output.status.success() && summary.requests > 0 => Ok(summary),
        _ => Err(bench_error(
            "run wrk",
            io::Error::other(format!(
                "it exited with {} and printed: {} {}",
                output.status,
                text.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        )),
    }
}

/// The summary in wrk's output, or `None` if the lines it needs are missing.
fn parse_wrk(text: &str) -> Option<WrkSummary> {
    let mut per_second = None;
    let mut requests = None;
    let (mut p50, mut p99) = (None, None);
    let (mut socket_errors, mut non_2xx) = (0, 0);
    for line in text.lines().map(str::trim) {
        if let Some(rate) = line.strip_prefix("Requests/sec:") {
            per_second = rate.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("50%") {
            p50 = wrk_duration(value.trim());
        } else if let Some(value) = line.strip_prefix("99%") {
            p99 = wrk_duration(value.trim());
        } else if let Some(counts) = line.strip_prefix("Socket errors:") {
            socket_errors = counts
                .split(',')
                .filter_map(|c| c.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = count.trim().parse().ok()?;
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            requests = count.trim().parse().ok();
        }
    }
    Some(WrkSummary {
        requests: requests?,
        per_second: per_second?,
        p50: p50?,
        p99: p99?,
        socket_errors,
        non_2xx,
    })
}

/// A duration as wrk prints it: `196.00us`, `1.23ms`, `2.00s`, `1.50m`.
fn wrk_duration(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(number * scale)
}

// --- our client as the load ------------------------------------------------------------

/// The request our client sends: what wrk sends, `GET /index.html` with a
/// `Host`, and `Connection: close` in that mode.
fn page_request(addr: SocketAddr, mode: Mode) -> Request {
    let mut headers = Headers::new();
    headers.append("Host", addr.to_string());
    if mode == Mode::Close {
        headers.append("Connection", "close");
    }
    Request {
        method: "GET".into(),
        target: format!("/{PAGE_NAME}"),
        version: Version::Http11,
        headers,
        body: Vec::new(),
    }
}

/// One pass with our own client as the load: `connections` threads, each
/// with a connection of its own, asking as fast as it is answered for
/// `duration` (a new connection per request in [`Mode::Close`]). Latency is
/// timed from writing the request to having the whole response, without the
/// connect, as wrk times it.
fn client_pass(
    addr: SocketAddr,
    mode: Mode,
    connections: usize,
    duration: Duration,
) -> Result<Load, Error> {
    let request = page_request(addr, mode);
    let config = ClientConfig {
        response_timeout: REQUEST_TIMEOUT,
        ..ClientConfig::default()
    };
    let started = Instant::now();
    let deadline = started + duration;
    let tallies: Vec<Result<Tally, Error>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|_| {
                thread::Builder::new()
                    .name("bench-http-client".into())
                    .spawn_scoped(scope, || {
                        client_loop(addr, &request, &config, mode, deadline)
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| match handle {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    Err(bench_error(
                        "run a client thread",
                        io::Error::other("it panicked"),
                    ))
                }),
                Err(e) => Err(bench_error("start a client thread", e)),
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut times = Vec::new();
    let mut failures = 0;
    for tally in tallies {
        let tally = tally?;
        times.extend(tally.times);
        failures += tally.failures;
    }
    if times.is_empty() {
        return Err(Error::new(
            Step::Read,
            ErrorKind::InvalidInput(format!("no request to {addr} was answered in {duration:?}")),
        ));
    }
    let per_second = times.len() as f64 / seconds;
    let latency = Samples::new(times);
    Ok(Load {
        per_second,
        p50: latency.median(),
        p99: latency.p99(),
        cpu_per_request: None,
        failures,
    })
}

/// One client thread's pass: each answered request's latency, and how many failed.
struct Tally {
    times: Vec<f64>,
    failures: u64,
}

fn client_loop(
    addr: SocketAddr,
    request: &Request,
    config: &ClientConfig,
    mode: Mode,
    deadline: Instant,
) -> Result<Tally, Error> {
    let mut tally = Tally {
        times: Vec::new(),
        failures: 0,
    };
    let mut open: Option<HttpConnection> = None;
    while Instant::now() < deadline {
        let conn = match &mut open {
            Some(conn) => conn,
            None => open.insert(client::connect(&[addr], config, &Trace::off())?),
        };
        let started = Instant::now();
        match conn.exchange(request) {
            Ok(response) if response.status == 200 && response.body.len() == PAGE.len() => {
                tally.times.push(started.elapsed().as_secs_f64());
            }
            Ok(_) | Err(_) => tally.failures += 1,
        }
        if mode == Mode::Close || !conn.is_reusable() {
            open = None;
        }
    }
    Ok(tally)
}

// --- the plot -------------------------------------------------------------------------

/// Requests per second against connections in `mode`, one line per server.
fn chart(report: &Report, mode: Mode) -> Chart {
    let series = ["raw", "ours, from memory", "ours", "nginx"]
        .into_iter()
        .filter_map(|variant| {
            let points: Vec<Point> = CONNECTIONS
                .iter()
                .filter_map(|&n| {
                    let m = report.find(&case(mode, n), variant)?;
                    let k = |v: f64| v / 1e3;
                    Some(Point::with_range(
                        n as f64,
                        k(m.samples.median()),
                        k(m.samples.min()),
                        k(m.samples.max()),
                    ))
                })
                .collect();
            (!points.is_empty()).then(|| Series::new(variant, points))
        })
        .collect();
    Chart {
        title: format!(
            "HTTP GET of a {}-byte file on loopback, {}",
            PAGE.len(),
            mode.label()
        ),
        x_label: "concurrent connections (log scale)".into(),
        y_label: "thousand requests/s (median; bars: slowest to fastest pass)".into(),
        x_scale: Scale::Log2,
        x_ticks: CONNECTIONS
            .iter()
            .map(|&n| (n as f64, n.to_string()))
            .collect(),
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "Running 1s test @ http://127.0.0.1:8080/index.html
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   226.47us  140.07us   4.46ms   93.41%
    Req/Sec    35.42k     2.90k   40.10k    75.00%
  Latency Distribution
     50%  196.00us
     75%  234.00us
     90%  305.00us
     99%    1.78ms
  70505 requests in 1.00s, 56.35MB read
  Socket errors: connect 0, read 2, write 1, timeout 0
  Non-2xx or 3xx responses: 5
Requests/sec:  70499.67
Transfer/sec:     56.35MB
";

    #[test]
    fn wrk_output_gives_rate_latency_and_failures() {
        let s = parse_wrk(WRK_OUTPUT).expect("a whole summary");
        assert_eq!(s.requests, 70_505);
        assert_eq!(s.per_second, 70_499.67);
        assert!((s.p50 - 196e-6).abs() < 1e-12);
        assert!((s.p99 - 1.78e-3).abs() < 1e-12);
        assert_eq!((s.socket_errors, s.non_2xx), (3, 5));
    }

    #[test]
    fn wrk_output_without_latency_lines_is_no_summary() {
        assert_eq!(
            parse_wrk("Requests/sec: 5\n  10 requests in 2.00s, 1KB read\n"),
            None
        );
        assert_eq!(
            parse_wrk("unable to connect to 127.0.0.1:1 Connection refused"),
            None
        );
    }

    #[test]
    fn wrk_durations_in_every_unit() {
        assert_eq!(wrk_duration("2.00s"), Some(2.0));
        assert_eq!(wrk_duration("1.50m"), Some(90.0));
        assert_eq!(wrk_duration("12.5"), None);
        assert_eq!(wrk_duration("3.00parsecs"), None);
    }

    #[test]
    fn raw_responder_answers_each_head_and_closes_when_asked() {
        let raw = raw_http().expect("raw starts");
        let mut stream = TcpStream::connect(raw.addr).expect("connects");
        let answers = RawAnswers::new();
        // Two pipelined requests, the second asking to close.
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n")
            .expect("writes");
        let mut got = Vec::new();
        stream.read_to_end(&mut got).expect("reads to the close");
        assert_eq!(got, [answers.keep, answers.close].concat());
    }

    #[test]
    fn process_cpu_reads_this_process() {
        if Path::new("/proc/self/stat").exists() {
            assert!(process_cpu("self").is_some_and(|s| s >= 0.0));
        }
    }

    #[test]
    fn the_nginx_config_keeps_everything_in_the_run_directory() {
        let config = nginx_config(Path::new("/tmp/x"), "127.0.0.1:8080".parse().unwrap());
        assert!(config.contains("listen 127.0.0.1:8080;"));
        assert!(config.contains("root /tmp/x/www;"));
        assert!(config.contains("worker_processes 1;"));
        assert!(config.contains("master_process off;"));
        assert!(config.contains("access_log off;"));
        for line in config
            .lines()
            .filter(|l| l.contains("_path ") || l.starts_with("pid "))
        {
            assert!(line.contains("/tmp/x/"), "{line}");
        }
    }
}
