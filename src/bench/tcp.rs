//! TCP benchmarks: our client and servers beside the plainest std loop that
//! does the same thing, measured in the same run.
//!
//! | name | what one pass does | compared with |
//! |---|---|---|
//! | `tcp-throughput` ([`throughput`]) | our client writes for a fixed time into our [`Sink`] server; bits per second, and CPU per MiB | a raw `TcpStream` → `TcpListener` loop; iperf3 when installed |
//! | `tcp-rr` ([`round_trip`]) | 64-byte round trips through our [`Echo`] server, Nagle off; p50 and p99 | a raw std ping-pong, round trip for round trip |
//! | `connect` ([`connect`]) | connect → accept → first byte → close, one client after another; per second | raw std, a thread per connection (and without one), connection for connection |
//! | `idle` ([`idle`]) | hold 1,000, 5,000, 10,000 idle connections on the thread-per-connection server; memory per connection and one active client's round trip | a twin server holding one client, at the same moment; the default stack against 64 KiB |
//! | `trace` ([`trace`]) | small writes through a [`Connection`] with tracing off, and with a no-op tracer | raw std writes |
//!
//! # The raw baselines
//!
//! Each baseline is what a person would write with std alone and no
//! thought for anything but the job — no timeouts, no limits, no trace, no
//! error types: `TcpListener::bind`, `incoming()`, `thread::spawn` per
//! connection, `read` into a 64 KiB buffer, `write_all`. That is the limit
//! for a blocking thread-per-connection design on this machine; the question
//! each benchmark answers is how close our code, with everything it adds, comes
//! to it. Ours and raw run in this process, with the same buffer sizes and
//! the same socket options (Nagle off for round trips).
//!
//! # Fair comparisons
//!
//! The machine is shared: other work takes a core for a second, and a round
//! trip costs 13 µs or 54 µs depending on whether the scheduler put both
//! ends on one core. Only measurements taken side by side compare, so they
//! are taken as close together as each benchmark allows:
//!
//! - **Round trips and connections alternate one by one** (ours, raw, raw,
//!   ours, …) within a pass; passes are many and short, with new connections
//!   — and so new server threads, placed afresh by the scheduler — each time.
//! - **Streams alternate pass by pass** ([`Bench::interleave`]), 60 ms each,
//!   and the ratio is the median of pass-by-pass ratios ([`Report::ratio`]).
//! - **CPU time beside wall time**: what the threads spent on a CPU per
//!   megabyte or per write ([`thread_cpu_time`]) is much less disturbed by
//!   the neighbours than a rate.
//! - **Write sizes stated and matched**: the loopback MSS is 65,483 bytes, and
//!   FACTS saw writes of a multiple of it run twice as fast as 65,536-byte
//!   ones on another kernel. Every throughput row names its write size, both
//!   sides use it, and both kinds of sizes are measured.
//!
//! [`Sink`]: crate::tcp::handlers::Sink
//! [`Echo`]: crate::tcp::handlers::Echo

use std::cell::RefCell;
use std::env;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::bench::harness::{
    Bench, BenchOptions, Goal, Latency, Measurement, Report, Samples, Unit, Variant, alternate,
    bench_error, find_tool, thread_cpu_time, write_file, write_size,
};
use crate::bench::plot::{Chart, Point, Scale, Series};
use crate::endpoint::Protocol;
use crate::error::{Error, ErrorKind};
use crate::readable::grouped;
use crate::step::{Side, Step};
use crate::tcp::handlers::{Echo, Handler, Sink};
use crate::tcp::serve::{KEEP_WARM_SHORT, MAX_CONNECTIONS_CEILING, ServeConfig, Server};
use crate::tcp::{Connection, Timeouts, client, server};
use crate::trace::{Event, SocketId, Trace, Tracer};

/// Read and write timeouts on every benchmark socket: generous (a loaded
/// machine can stall a thread for a second), but a hang still ends.
const TIMEOUTS: Timeouts = Timeouts {
    read: Some(Duration::from_secs(10)),
    write: Some(Duration::from_secs(10)),
};

/// The connect timeout of every benchmark client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The read buffer of every raw server: 64 KiB, the same as our handlers'.
const CHUNK: usize = 64 * 1024;

/// The loopback's maximum segment size: its MTU (65,536) less 20 IPv4 and 32
/// TCP header bytes (20 + 12 for the timestamp option). Writes of a multiple
/// of it fill segments exactly.
pub const LOOPBACK_MSS: usize = 65_483;

/// The bytes of a round trip: small, so the time is the round trip's.
pub const RR_MESSAGE: usize = 64;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

// --- servers -----------------------------------------------------------------

/// One of our servers on an ephemeral loopback port, Trace off.
fn our_server(config: ServeConfig, handler: impl Handler) -> Result<Server, Error> {
    server::socket(loopback(), &Trace::off())
        .bind()?
        .listen(128)
        .serve(config, handler)
}

/// Our server's configuration for benchmarks: the default, with timeouts that
/// outlast any pass.
fn bench_config() -> ServeConfig {
    ServeConfig {
        timeouts: TIMEOUTS,
        ..ServeConfig::default()
    }
}

/// The baseline's server: std's `TcpListener`, accepting on a thread of its
/// own; each connection runs `serve` on a plain `thread::spawn` (or, with
/// `inline`, on the accepting thread itself). Stopped when dropped.
pub(crate) struct RawServer {
    pub(crate) addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl RawServer {
    pub(crate) fn start(
        serve: impl Fn(TcpStream) + Send + Sync + 'static,
        inline: bool,
    ) -> Result<RawServer, Error> {
        let serve = Arc::new(serve);
        let listener = TcpListener::bind(loopback()).map_err(|e| Error::io(Step::Bind, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io(Step::Bind, e))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let acceptor = thread::Builder::new()
            .name("bench-raw-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    if inline {
                        serve(stream);
                    } else {
                        let serve = serve.clone();
                        thread::spawn(move || serve(stream));
                    }
                }
            })
            .map_err(|e| bench_error("start a thread", e))?;
        Ok(RawServer {
            addr,
            stopping,
            acceptor: Some(acceptor),
        })
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // A connection wakes the blocked accept; it then sees the flag.
        if TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT).is_ok()
            && let Some(acceptor) = self.acceptor.take()
        {
            let _ = acceptor.join();
        }
    }
}

/// Raw: read and throw away until end of stream.
fn raw_sink(mut stream: TcpStream) {
    let mut buf = vec![0; CHUNK];
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

/// Raw: write back what comes, Nagle off, until end of stream.
fn raw_echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0; CHUNK];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Raw: say one byte and close.
fn raw_hello(mut stream: TcpStream) {
    let _ = stream.write_all(b"!");
}

/// Our client, connected to `addr`, Trace off.
fn our_client(addr: SocketAddr) -> Result<Connection, Error> {
    client::socket(addr, &Trace::off())
        .timeouts(TIMEOUTS)
        .connect(CONNECT_TIMEOUT)
}

/// A raw client with the same timeouts as ours.
fn raw_client(addr: SocketAddr) -> Result<TcpStream, Error> {
    let stream = TcpStream::connect(addr).map_err(|e| Error::io(Step::Connect, e))?;
    stream
        .set_read_timeout(TIMEOUTS.read)
        .and_then(|()| stream.set_write_timeout(TIMEOUTS.write))
        .map_err(|e| Error::io(Step::Connect, e))?;
    Ok(stream)
}

// --- tcp-throughput -------------------------------------------------------------

/// Write sizes drawn in the throughput plot, powers of two: what programs
/// usually write.
const PLOT_SIZES: [usize; 6] = [1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20];

/// The same range in multiples of the loopback MSS: 1, 2, 4 and 16 segments.
const MSS_SIZES: [usize; 4] = [
    LOOPBACK_MSS,
    2 * LOOPBACK_MSS,
    4 * LOOPBACK_MSS,
    16 * LOOPBACK_MSS,
];

/// The write sizes whose goal is stated in the issue: 64 KiB and 1 MiB.
const GOAL_SIZES: [usize; 2] = [64 << 10, 1 << 20];

/// `sockstep bench tcp-throughput`: our client writing into our [`Sink`]
/// server, against a raw std loop and, when installed, iperf3.
///
/// One pass opens a connection, writes `size`-byte pieces for a fixed time
/// (60 ms; 20 ms quick), half-closes, and waits for the server's close —
/// which comes only after the server has read everything — so the bytes
/// counted are bytes delivered. Short passes and many of them (15), ours and
/// raw taking turns: on a shared machine the paired ratio of two passes taken
/// one after the other is far steadier than either rate. Both servers read
/// in 64 KiB pieces. Write sizes: the powers of two from 1 KiB to 1 MiB, and
/// multiples of the loopback MSS (65,483 × 1, 2, 4, 16). For 65,483 B, 64 KiB
/// and 1 MiB the table also gives the CPU time both threads spent per MiB
/// ([`thread_cpu_time`]) — what the code costs, nearly untouched by the
/// neighbours.
///
/// iperf3 (when installed, and not in a quick run) cannot run for less than
/// a second, so it has passes of its own: six one-second runs each of ours
/// and of `iperf3 -c … -t 1 -l SIZE`, taking turns, at 64 KiB and 1 MiB —
/// with both sides' CPU per MiB, iperf3's from its own report (getrusage of
/// its client and server processes). iperf3's two ends are two processes, and
/// the scheduler places two processes differently from two threads of one
/// (seen here: the same raw loop ran at 21 or at 33 Gbit/s with 1 MiB writes,
/// pass to pass, as placement went), so for these runs our Sink server runs
/// in a process of its own too (this program again, with
/// `SOCKSTEP_BENCH_SERVER=sink`).
///
/// Goal: ours ≥ 95 % of raw at 64 KiB and 1 MiB, and at least iperf3's
/// (its row shows iperf3 ÷ ours: ≤ 1.00 met).
///
/// [`Sink`]: crate::tcp::handlers::Sink
///
/// # Errors
/// A socket step that fails in any pass; an SVG that cannot be written.
pub fn throughput(options: &BenchOptions) -> Result<Report, Error> {
    serve_if_asked();
    let mut bench = Bench::new(
        "tcp-throughput",
        "our client → our Sink server, against a raw std loop and iperf3",
        options,
    );
    let duration = options.pick(Duration::from_millis(60), Duration::from_millis(20));
    let (warmup, reps) = options.pick((1, 15), (0, 2));
    let (ours_cpu, raw_cpu) = (CpuSlot::default(), CpuSlot::default());
    let ours = our_server(bench_config(), measured_sink(ours_cpu.clone()))?;
    let raw = RawServer::start(measured_raw_sink(raw_cpu.clone()), false)?;
    bench.setup(format!(
        "{reps} interleaved passes (+{warmup} warm-up) per write size, {duration:?} of writes each, \
         a new connection per pass; one client thread, one server thread; CPU: both threads' \
         time on a CPU (/proc/thread-self/schedstat) per MiB delivered"
    ));
    let mut sizes: Vec<usize> = PLOT_SIZES.iter().chain(&MSS_SIZES).copied().collect();
    sizes.sort_unstable();
    let mut cpu_rows = Vec::new();
    for size in sizes {
        let case = format!("{} writes", write_size(size));
        let (ours_addr, raw_addr) = (ours.local_addr(), raw.addr);
        let (ours_cpu, raw_cpu) = (ours_cpu.clone(), raw_cpu.clone());
        let mut variants = [
            Variant::new("raw", move || {
                raw_stream(raw_addr, size, duration, || take_cpu(&raw_cpu))
            }),
            Variant::new("ours", move || {
                our_stream(ours_addr, size, duration, || take_cpu(&ours_cpu))
            }),
        ];
        let passes = bench.interleave(&case, warmup, reps, &mut variants, |f: &Flow| {
            Unit::BitsPerSecond.format(f.bits_per_second)
        })?;
        for (name, flows) in ["raw", "ours"].into_iter().zip(passes) {
            let rates = Samples::new(flows.iter().map(|f| f.bits_per_second).collect());
            let m = Measurement::new(&case, name, Unit::BitsPerSecond, rates);
            bench.record(match name {
                "ours" if GOAL_SIZES.contains(&size) => m.vs("raw").goal(Goal::AtLeast(0.95)),
                "ours" => m.vs("raw"),
                _ => m,
            });
            if let Some(m) = cpu_row(&case, name, &flows).filter(|_| CPU_SIZES.contains(&size)) {
                cpu_rows.push(if name == "ours" { m.vs("raw") } else { m });
            }
        }
    }
    for row in cpu_rows {
        bench.record(row);
    }

    // iperf3 cannot run for less than a second, so it gets passes of its
    // own: one-second runs of ours and of iperf3, taking turns.
    let iperf3 = if options.quick {
        bench.note("iperf3 not run in a quick run");
        None
    } else {
        let found = find_tool("iperf3");
        if found.is_none() {
            bench.note("iperf3 is not installed (apt-get install iperf3): no peer-tool rows");
        }
        found
    };
    if let Some(program) = &iperf3 {
        let iperf3_reps = 6;
        let mut iperf3_cpu_rows = Vec::new();
        bench.setup(format!(
            "against iperf3: {iperf3_reps} interleaved one-second runs each of ours — our client \
             here, our Sink server in a process of its own, as iperf3's two ends are — and of \
             `iperf3 -c 127.0.0.1 -t 1 -l SIZE -J` (one stream, against `iperf3 -s -1`); CPU: \
             iperf3's own report (getrusage of both processes)"
        ));
        let this_program = options.program()?;
        for size in GOAL_SIZES {
            let case = format!("{} writes, 1 s runs", write_size(size));
            let this_program = &this_program;
            let mut variants = [
                Variant::new("ours", move || fresh_ours(this_program, size)),
                Variant::new("iperf3", move || run_iperf3(program, size)),
            ];
            let passes = bench.interleave(&case, 0, iperf3_reps, &mut variants, |f: &Flow| {
                Unit::BitsPerSecond.format(f.bits_per_second)
            })?;
            for (name, flows) in ["ours", "iperf3"].into_iter().zip(passes) {
                let rates = Samples::new(flows.iter().map(|f| f.bits_per_second).collect());
                let m = Measurement::new(&case, name, Unit::BitsPerSecond, rates);
                bench.record(if name == "iperf3" {
                    m.vs("ours").goal(Goal::AtMost(1.0))
                } else {
                    m
                });
                if let Some(m) = cpu_row(&case, name, &flows) {
                    iperf3_cpu_rows.push(if name == "iperf3" { m.vs("ours") } else { m });
                }
            }
        }
        for row in iperf3_cpu_rows {
            bench.record(row);
        }
    }
    let stats = ours.shutdown();
    if stats.errors > 0 {
        bench.note(format!("our server counted {} errors", stats.errors));
    }
    drop(raw);
    if let Some(dir) = &options.svg_dir {
        let path = write_file(
            dir,
            "bench-tcp-throughput.svg",
            &throughput_chart(bench.report()).svg(),
        )?;
        bench.plot_written(path);
    }
    Ok(bench.finish())
}

/// The write sizes whose CPU cost is tabled: the goal sizes and one MSS.
const CPU_SIZES: [usize; 3] = [LOOPBACK_MSS, 64 << 10, 1 << 20];

/// What one throughput pass found.
#[derive(Debug, Clone, Copy)]
struct Flow {
    /// Payload bits delivered per second.
    bits_per_second: f64,
    /// Both ends' CPU time per MiB delivered, seconds; `None` if unknown.
    cpu_per_mib: Option<f64>,
}

/// Where a sink leaves the CPU time its thread spent on the last connection,
/// before it closes the connection — so the client, which waits for that
/// close, always finds it there.
type CpuSlot = Arc<Mutex<Option<Duration>>>;

/// Our [`Sink`], timing its thread's CPU into `slot`.
fn measured_sink(
    slot: CpuSlot,
) -> impl Fn(&mut Connection) -> Result<(), Error> + Send + Sync + 'static {
    move |conn: &mut Connection| {
        let before = thread_cpu_time();
        let result = Sink.handle(conn);
        put_cpu(&slot, before);
        result
    }
}

/// The raw sink, timing its thread's CPU into `slot`. It reads in pieces of
/// the same size as our Sink ([`CHUNK`]).
fn measured_raw_sink(slot: CpuSlot) -> impl Fn(TcpStream) + Send + Sync + 'static {
    move |mut stream: TcpStream| {
        let before = thread_cpu_time();
        let mut buf = vec![0; CHUNK];
        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
        put_cpu(&slot, before);
    }
}

fn put_cpu(slot: &CpuSlot, before: Option<Duration>) {
    let spent = before
        .zip(thread_cpu_time())
        .map(|(b, a)| a.saturating_sub(b));
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = spent;
}

/// Both ends' CPU per MiB: the client's since `before`, and the sink's.
fn cpu_per_mib(before: Option<Duration>, server: Option<Duration>, bytes: u64) -> Option<f64> {
    let client = thread_cpu_time()?.checked_sub(before?)?;
    Some((client + server?).as_secs_f64() / (bytes as f64 / (1 << 20) as f64))
}

/// The `CPU per MiB (both ends)` row of a case, if its passes measured CPU.
fn cpu_row(case: &str, name: &str, flows: &[Flow]) -> Option<Measurement> {
    let cpu: Vec<f64> = flows.iter().filter_map(|f| f.cpu_per_mib).collect();
    (!cpu.is_empty()).then(|| {
        Measurement::new(
            format!("{case}, CPU per MiB (both ends)"),
            name,
            Unit::Seconds,
            Samples::new(cpu),
        )
    })
}

/// What the sink in this process spent on the last connection.
fn take_cpu(slot: &CpuSlot) -> Option<Duration> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// One pass of ours: our client into our Sink server; `server_cpu` then
/// says what the sink's thread spent.
fn our_stream(
    addr: SocketAddr,
    size: usize,
    duration: Duration,
    server_cpu: impl FnOnce() -> Option<Duration>,
) -> Result<Flow, Error> {
    let mut conn = our_client(addr)?;
    let piece = vec![0x5a; size];
    let mut sent = 0u64;
    let cpu_before = thread_cpu_time();
    let started = Instant::now();
    while started.elapsed() < duration {
        conn.write_all(&piece)?;
        sent += size as u64;
    }
    conn.shutdown_write()?;
    // The Sink returns at end of stream and the server closes: everything is in.
    let mut byte = [0; 1];
    if conn.read(&mut byte)? != 0 {
        return Err(Error::new(
            Step::Read,
            ErrorKind::InvalidInput("the sink answered".into()),
        ));
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Flow {
        bits_per_second: sent as f64 * 8.0 / seconds,
        cpu_per_mib: cpu_per_mib(cpu_before, server_cpu(), sent),
    })
}

/// One one-second run of ours placed as iperf3's run is: a Sink server in a
/// new process, our client on a new thread. New tasks are placed on the idlest
/// CPU; two that have run for a while tend to be woken onto the same one, and
/// then one core does both ends' copying — on this machine a long-lived pair
/// ran at two thirds of the rate a fresh pair reached. (`iperf3 -s -1` and
/// `iperf3 -c` are two new processes on every run.)
fn fresh_ours(program: &Path, size: usize) -> Result<Flow, Error> {
    let mut sink = ServerProcess::start(program, ServerKind::Sink)?;
    let addr = sink.addr;
    let flow = thread::scope(|scope| {
        scope
            .spawn(|| {
                our_stream(addr, size, Duration::from_secs(1), || {
                    let stats = sink.stats().ok()?;
                    stats.sink_cpu.map(Duration::from_nanos)
                })
            })
            .join()
            .unwrap_or_else(|_| Err(bench_error("our client", io::Error::other("it panicked"))))
    });
    sink.stop()?;
    flow
}

/// One pass of raw: the same with std alone.
fn raw_stream(
    addr: SocketAddr,
    size: usize,
    duration: Duration,
    server_cpu: impl FnOnce() -> Option<Duration>,
) -> Result<Flow, Error> {
    let mut stream = raw_client(addr)?;
    let piece = vec![0x5a; size];
    let mut sent = 0u64;
    let cpu_before = thread_cpu_time();
    let started = Instant::now();
    while started.elapsed() < duration {
        stream
            .write_all(&piece)
            .map_err(|e| Error::io(Step::Write, e))?;
        sent += size as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| Error::io(Step::Shutdown, e))?;
    let mut byte = [0; 1];
    stream
        .read(&mut byte)
        .map_err(|e| Error::io(Step::Read, e))?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Flow {
        bits_per_second: sent as f64 * 8.0 / seconds,
        cpu_per_mib: cpu_per_mib(cpu_before, server_cpu(), sent),
    })
}

/// One iperf3 run: a one-shot server on a free port, a one-second client with
/// `size`-byte writes; the receiver's bits per second from its JSON.
fn run_iperf3(program: &Path, size: usize) -> Result<Flow, Error> {
    let port = TcpListener::bind(loopback())
        .and_then(|l| l.local_addr())
        .map_err(|e| Error::io(Step::Bind, e))?
        .port()
        .to_string();
    let mut server = Command::new(program)
        .args(["-s", "-1", "-p", &port])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| bench_error("start iperf3 -s", e))?;
    let result = (|| {
        // The server needs a moment to listen; a refused client is retried.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let output = Command::new(program)
                .args([
                    "-c",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-t",
                    "1",
                    "-J",
                    "-l",
                    &size.to_string(),
                ])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| bench_error("run iperf3 -c", e))?;
            let json = String::from_utf8_lossy(&output.stdout);
            if let Some(flow) = parse_iperf3(&json) {
                return Ok(flow);
            }
            if Instant::now() >= deadline {
                return Err(bench_error(
                    "run iperf3",
                    io::Error::other(format!("no result in its output: {}", json.trim())),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// What iperf3's `-J` output says about a run, found without a JSON parser:
/// the receiver's `bits_per_second` (in `end.sum_received`), and both
/// processes' CPU time per MiB received — `host_total` + `remote_total` of
/// `end.cpu_utilization_percent` (iperf3's getrusage over the run, client and
/// server) × the run's `seconds` ÷ its MiB.
fn parse_iperf3(json: &str) -> Option<Flow> {
    let (_, received) = json.split_once("\"sum_received\"")?;
    let bits_per_second = json_number_after(received, "bits_per_second")?;
    let seconds = json_number_after(received, "seconds");
    let bytes = json_number_after(received, "bytes");
    let cpu = json
        .split_once("\"cpu_utilization_percent\"")
        .and_then(|(_, c)| {
            Some(json_number_after(c, "host_total")? + json_number_after(c, "remote_total")?)
        });
    let cpu_per_mib = match (cpu, seconds, bytes) {
        (Some(percent), Some(seconds), Some(bytes)) if bytes > 0.0 => {
            Some(percent / 100.0 * seconds / (bytes / f64::from(1 << 20)))
        }
        _ => None,
    };
    Some(Flow {
        bits_per_second,
        cpu_per_mib,
    })
}

/// The number after the first `"key":` in `text`.
fn json_number_after(text: &str, key: &str) -> Option<f64> {
    let (_, after) = text.split_once(&format!("\"{key}\""))?;
    let value = after.trim_start().strip_prefix(':')?.trim_start();
    let end = value
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')))
        .unwrap_or(value.len());
    value[..end].parse().ok()
}

/// Throughput against write size, from a throughput report: ours and raw at
/// the powers of two (solid), and at multiples of the MSS (dashed).
fn throughput_chart(report: &Report) -> Chart {
    let series = |variant: &str, sizes: &[usize], name: &str| {
        let points = sizes
            .iter()
            .filter_map(|&size| {
                let m = report.find(&format!("{} writes", write_size(size)), variant)?;
                Some(quartile_point(size as f64, &m.samples, 1e-9))
            })
            .collect();
        Series::new(name, points)
    };
    Chart {
        title: "Loopback TCP throughput against write size".into(),
        x_label: "bytes per write (log scale)".into(),
        y_label: "Gbit/s (median; bars: middle half of the passes)".into(),
        x_scale: Scale::Log2,
        x_ticks: PLOT_SIZES
            .iter()
            .map(|&s| {
                let label = if s >= 1 << 20 {
                    format!("{} MiB", s >> 20)
                } else {
                    format!("{} KiB", s >> 10)
                };
                (s as f64, label)
            })
            .collect(),
        series: vec![
            series("raw", &PLOT_SIZES, "raw std, 2ⁿ bytes").colour(0),
            series("ours", &PLOT_SIZES, "ours, 2ⁿ bytes").colour(1),
            series("raw", &MSS_SIZES, "raw std, k × 65,483 (the MSS)")
                .colour(0)
                .dashed(),
            series("ours", &MSS_SIZES, "ours, k × 65,483 (the MSS)")
                .colour(1)
                .dashed(),
        ],
    }
}

/// A plot point at `x`: the median, with a bar over the middle half of the
/// passes (p25 to p75) — a bar from the slowest to the fastest pass would let
/// one pass that lost its core draw the scale. Values are multiplied by `scale`.
fn quartile_point(x: f64, samples: &Samples, scale: f64) -> Point {
    Point::with_range(
        x,
        samples.median() * scale,
        samples.p25() * scale,
        samples.p75() * scale,
    )
}

// --- tcp-rr ---------------------------------------------------------------------

/// `sockstep bench tcp-rr`: 64-byte round trips through our [`Echo`]
/// server, Nagle off on both ends, against a raw std ping-pong.
///
/// Round-trip times here depend most on where the scheduler puts the two
/// ends: on one core ≈ 13 µs, on two ≈ 54 µs (FACTS). Passes a second apart
/// can land differently, so ours and raw are interleaved as finely as
/// possible: one pass opens a connection to each server, makes 100 round
/// trips on each unmeasured, then 1,000 (200 quick) on each, **alternating**
/// — ours, raw, raw, ours, … — each timed on its own. Both see the same
/// moment; but each server's connection thread lands where the scheduler
/// puts it, on a core of its own or beside a busy neighbour, and stays there
/// for the pass. So there are many short passes (31), each with new
/// connections and so new threads: placement is drawn afresh every pass, and
/// the median pass-by-pass ratio is not one lucky draw. The pass reports
/// each side's p50 and p99; the table, the median over passes. Goal: ≤ 1.05×
/// raw at p50 and p99.
///
/// [`Echo`]: crate::tcp::handlers::Echo
///
/// # Errors
/// A socket step that fails in any pass.
pub fn round_trip(options: &BenchOptions) -> Result<Report, Error> {
    let mut bench = Bench::new(
        "tcp-rr",
        "64 B round trips through our Echo server, against a raw std ping-pong",
        options,
    );
    let count = options.pick(1_000, 200);
    let (warmup, reps) = options.pick((1, 31), (0, 2));
    bench.setup(format!(
        "{reps} passes (+{warmup} warm-up), each a new connection to each server, 100 untimed \
         then {} timed {RR_MESSAGE}-byte round trips on each, alternating ours and raw one by \
         one; TCP_NODELAY on both ends; the table quotes the median over passes of each pass's \
         p50 and p99",
        grouped(count as u64)
    ));
    let ours = our_server(bench_config(), Echo)?;
    let raw = RawServer::start(raw_echo, false)?;
    let (ours_addr, raw_addr) = (ours.local_addr(), raw.addr);
    let case = format!("{RR_MESSAGE} B round trip");
    let mut variants = [Variant::new("ours and raw, alternating", move || {
        alternating_ping_pong(ours_addr, raw_addr, count)
    })];
    let passes = bench.interleave(&case, warmup, reps, &mut variants, |(o, r)| {
        format!("ours {}  raw {}", o.show(), r.show())
    })?;
    let (ours_passes, raw_passes): (Vec<Latency>, Vec<Latency>) =
        passes.into_iter().flatten().unzip();
    bench.record_latency(
        &case,
        &["raw", "ours"],
        &[raw_passes, ours_passes],
        Some(Goal::AtMost(1.05)),
    );
    drop(ours);
    drop(raw);
    Ok(bench.finish())
}

/// One pass: a connection to each server, round trips alternating between
/// them (ours first on even turns, raw first on odd ones); each side's
/// latencies.
fn alternating_ping_pong(
    ours: SocketAddr,
    raw: SocketAddr,
    count: usize,
) -> Result<(Latency, Latency), Error> {
    let mut conn = our_client(ours)?;
    conn.set_nodelay(true)?;
    let mut stream = raw_client(raw)?;
    stream
        .set_nodelay(true)
        .map_err(|e| Error::io(Step::Connect, e))?;
    let raw_rtt = || -> Result<f64, Error> {
        let (message, mut echoed) = ([0x42u8; RR_MESSAGE], [0u8; RR_MESSAGE]);
        let started = Instant::now();
        stream
            .write_all(&message)
            .map_err(|e| Error::io(Step::Write, e))?;
        stream
            .read_exact(&mut echoed)
            .map_err(|e| Error::io(Step::Read, e))?;
        Ok(started.elapsed().as_secs_f64())
    };
    alternate(100, count, || echo_once(&mut conn), raw_rtt)
}

/// One 64-byte round trip through our connection, in seconds.
fn echo_once(conn: &mut Connection) -> Result<f64, Error> {
    let (message, mut echoed) = ([0x42u8; RR_MESSAGE], [0u8; RR_MESSAGE]);
    let started = Instant::now();
    conn.write_all(&message)?;
    read_exact(conn, &mut echoed)?;
    Ok(started.elapsed().as_secs_f64())
}

/// Reads exactly `buf.len()` bytes through our `read` (and its errors).
fn read_exact(conn: &mut Connection, buf: &mut [u8]) -> Result<(), Error> {
    let mut filled = 0;
    while filled < buf.len() {
        match conn.read(&mut buf[filled..])? {
            0 => return Err(Error::new(Step::Read, ErrorKind::ConnectionReset)),
            n => filled += n,
        }
    }
    Ok(())
}

// --- connect ---------------------------------------------------------------------

/// `sockstep bench connect`: connection setup per second — connect, the
/// server accepts and writes one byte, the client reads it and closes.
///
/// One client, sequential. Ours: [`client::socket`] → `connect` against our
/// server, whose handler writes the byte (a thread per connection, as
/// always). The baseline: raw std with a `thread::spawn` per connection —
/// the same design, nothing added. A third row is ours with warm threads
/// ([`KEEP_WARM_SHORT`]): a thread per connection, but reused rather than
/// started for each. A fourth writes the byte on the accepting thread,
/// without a thread: what the thread per connection itself costs. Within a
/// pass the four take turns connection by connection (the
/// order rotating), each connection timed on its own, until the pass has
/// lasted 300 ms × 4 (40 ms × 4 quick); a variant's rate is its connections
/// ÷ the time spent in them.
///
/// Why the client waits for the byte: the kernel completes the handshake
/// before anyone calls accept, and its queue holds 128. A client that only
/// connected and closed would run ahead of the accept loop, and past 129
/// queued connections the kernel drops SYNs silently — each costing the
/// client a one-second retransmission (FACTS: 5–7 stalls per 1,000 for a fast
/// sequential client). Waiting for the byte keeps at most one connection
/// in the queue, so what is measured is setup, not the queue overflowing.
///
/// # Errors
/// A socket step that fails in any pass.
pub fn connect(options: &BenchOptions) -> Result<Report, Error> {
    let mut bench = Bench::new(
        "connect",
        "connect → accept → first byte → close, one sequential client, against raw std",
        options,
    );
    let duration = options.pick(Duration::from_millis(300), Duration::from_millis(40));
    let (warmup, reps) = options.pick((1, 9), (0, 2));
    bench.setup(format!(
        "{reps} passes (+{warmup} warm-up); in each the variants take turns connection by \
         connection for {duration:?} each; the client reads the server's first byte before \
         closing, so at most one connection waits in the kernel's queue"
    ));
    let hello = |conn: &mut Connection| conn.write_all(b"!");
    let ours = our_server(bench_config(), hello)?;
    let warm = our_server(
        ServeConfig {
            keep_warm: KEEP_WARM_SHORT,
            ..bench_config()
        },
        hello,
    )?;
    let raw = RawServer::start(raw_hello, false)?;
    let inline = RawServer::start(raw_hello, true)?;
    let (ours_addr, warm_addr, raw_addr, inline_addr) =
        (ours.local_addr(), warm.local_addr(), raw.addr, inline.addr);
    let raw_connection = |addr: SocketAddr| {
        move || -> Result<(), Error> {
            let mut stream = TcpStream::connect(addr).map_err(|e| Error::io(Step::Connect, e))?;
            stream
                .read_exact(&mut [0; 1])
                .map_err(|e| Error::io(Step::Read, e))
        }
    };
    let our_connection = |addr: SocketAddr| {
        move || -> Result<(), Error> {
            let mut conn = our_client(addr)?;
            read_exact(&mut conn, &mut [0; 1])
        }
    };
    let case = "connect, first byte, close";
    let names = ["raw", "ours", "ours, warm threads", "raw, no thread"];
    let mut variants = [Variant::new("all four, taking turns", move || {
        let mut one = [
            Box::new(raw_connection(raw_addr)) as Box<dyn FnMut() -> Result<(), Error>>,
            Box::new(our_connection(ours_addr)),
            Box::new(our_connection(warm_addr)),
            Box::new(raw_connection(inline_addr)),
        ];
        taking_turns(duration, &mut one)
    })];
    let unit = Unit::PerSecond("conn");
    let passes = bench.interleave(case, warmup, reps, &mut variants, |rates: &Vec<f64>| {
        let shown: Vec<String> = names
            .iter()
            .zip(rates)
            .map(|(n, r)| format!("{n} {}", unit.format(*r)))
            .collect();
        shown.join("  ")
    })?;
    let passes: Vec<Vec<f64>> = passes.into_iter().flatten().collect();
    let column = |i: usize| Samples::new(passes.iter().map(|p| p[i]).collect());
    bench.record(Measurement::new(case, names[0], unit, column(0)));
    bench.record(Measurement::new(case, names[1], unit, column(1)).vs("raw"));
    bench.record(
        Measurement::new(case, names[2], unit, column(2))
            .vs("raw")
            .note("keep_warm: KEEP_WARM_SHORT (1 s): a thread waits for the next connection"),
    );
    bench.record(
        Measurement::new(case, names[3], unit, column(3))
            .vs("raw")
            .note("no thread per connection: the accepting thread writes the byte itself"),
    );
    for (name, server) in [("ours", ours), ("ours, warm threads", warm)] {
        let stats = server.shutdown();
        if stats.errors > 0 {
            bench.note(format!(
                "{name}: our server counted {} errors",
                stats.errors
            ));
        }
    }
    Ok(bench.finish())
}

/// Runs the `variants` in turn, one call each, the first to go rotating
/// every round, until each has had about `duration`; returns each one's calls
/// per second of its own time.
fn taking_turns(
    duration: Duration,
    variants: &mut [Box<dyn FnMut() -> Result<(), Error>>],
) -> Result<Vec<f64>, Error> {
    let n = variants.len();
    let mut spent = vec![Duration::ZERO; n];
    let mut calls = vec![0u64; n];
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < duration * n as u32 {
        for k in 0..n {
            let i = (round + k) % n;
            let call = Instant::now();
            (variants[i])()?;
            spent[i] += call.elapsed();
            calls[i] += 1;
        }
        round += 1;
    }
    Ok(calls
        .iter()
        .zip(&spent)
        .map(|(c, s)| *c as f64 / s.as_secs_f64().max(f64::MIN_POSITIVE))
        .collect())
}

// --- idle ---------------------------------------------------------------------------

/// The variable that makes `sockstep bench idle` or `tcp-throughput` a
/// server process for its parent instead (see [`ServerKind`]).
const SERVER_ENV: &str = "SOCKSTEP_BENCH_SERVER";

/// Every line a server process writes for its parent starts with this.
const SERVER_MARKER: &str = "sockstep-bench-server:";

/// Connections held in a full run (the active client is one of them).
const IDLE_LEVELS: [usize; 3] = [1_000, 5_000, 10_000];

/// The small thread stack measured against std's default.
const SMALL_STACK: usize = 64 * 1024;

/// The longest the server half may take to answer one request.
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

/// `sockstep bench idle`: what a held, idle connection costs the
/// thread-per-connection server, and whether one active client notices them.
///
/// **Two processes, and a twin.** A process here may open 20,000 files;
/// 10,000 connections are 20,000 sockets when both ends live in one process.
/// So the server runs in a child process — this program again, `sockstep
/// bench idle` with `SOCKSTEP_BENCH_SERVER=echo STACK` —
/// which serves [`Echo`] with `max_connections` at its ceiling (10,000) and
/// answers the parent's `stats` requests (its VmRSS, VmPTE, VmSize and
/// thread count) on a pipe. This process holds the clients. A fresh server
/// per stack size, so that memory freed by one does not flatter the next;
/// and beside it a **twin** — the same server in a third process — that only
/// ever holds one client.
///
/// **Levels.** Connect one active client to the server and one to the twin;
/// measure; then open idle connections up to 1,000, 5,000 and 10,000 held in
/// all (20, 100 quick) — each sends one byte and waits for its echo, so it is
/// accepted and its thread is running — and at each level read the server's
/// memory and time 5 × 1,000 round trips of the active client, **alternating
/// one by one** with round trips to the twin. The ratio column compares the
/// two: the same moment, the same machine, with and without the idle crowd.
///
/// Memory per connection is the growth since the first level, divided by the
/// connections added: resident memory (VmRSS: touched stack pages, the
/// handler's buffer, allocator overhead), page tables (VmPTE) and address
/// space (VmSize, which is where the stack size shows: reserved, mostly never
/// touched). The kernel's share (socket buffers, the threads' kernel stacks:
/// `Slab` and `KernelStack` in /proc/meminfo) is machine-wide, counts both
/// ends' sockets, and moves with whatever else runs: reported, but rough.
/// Both std's default stack (2 MiB) and [`ServeConfig::stack_size`] = 64 KiB
/// are measured.
///
/// [`Echo`]: crate::tcp::handlers::Echo
///
/// # Errors
/// A socket step that fails; a server process failing to start or answer
/// (named, with what it printed).
pub fn idle(options: &BenchOptions) -> Result<Report, Error> {
    serve_if_asked();
    let mut bench = Bench::new(
        "idle",
        "idle connections held by the thread-per-connection server: memory, and one client's round trip",
        options,
    );
    let levels: Vec<usize> = options.pick(IDLE_LEVELS.to_vec(), vec![20, 100]);
    let (passes, count) = options.pick((9, 1_000), (2, 100));
    bench.setup(format!(
        "server in a child process (Echo, max_connections {}, a fresh process per stack size) and \
         its twin in another, holding one client; connections held: 1 (the active client alone), \
         {}; at each level the server's memory and {passes} × {} {RR_MESSAGE}-byte round trips of \
         the active client, alternating one by one with the twin's client",
        grouped(MAX_CONNECTIONS_CEILING as u64),
        levels
            .iter()
            .map(|l| grouped(*l as u64))
            .collect::<Vec<_>>()
            .join(", "),
        grouped(count as u64),
    ));
    let program = options.program()?;
    for stack in [None, Some(SMALL_STACK)] {
        let label = match stack {
            None => "default stack".to_string(),
            Some(s) => format!("{} KiB stack", s >> 10),
        };
        let found = hold_levels(&mut bench, &program, stack, &label, &levels, passes, count)?;
        record_idle(&mut bench, &label, &found);
        if let Some(dir) = &options.svg_dir {
            let file = match stack {
                None => "bench-idle.svg".to_string(),
                Some(s) => format!("bench-idle-{}k.svg", s >> 10),
            };
            let chart = idle_chart(&label, &levels, &found);
            let path = write_file(dir, &file, &chart.svg())?;
            bench.plot_written(path);
        }
    }
    Ok(bench.finish())
}

/// What one level of the idle benchmark found.
struct Level {
    held: usize,
    /// The active client's round trips on the loaded server, and on the twin
    /// at the same moment.
    p50: Samples,
    p99: Samples,
    twin_p50: Samples,
    twin_p99: Samples,
    stats: HelperStats,
    /// /proc/meminfo Slab + KernelStack, bytes, when readable.
    kernel: Option<u64>,
}

/// What the idle benchmark's twin is called in the table.
const TWIN: &str = "twin, 1 held";

/// Starts a server process with `stack` and a twin of it, holds each level of
/// connections on the first in turn, and measures at each (the first level is
/// the active client alone). At every level the active client's round trips
/// alternate, one by one, with those of a client of the twin, which holds only
/// that client: whatever else the machine is doing, both see it.
fn hold_levels(
    bench: &mut Bench,
    program: &Path,
    stack: Option<usize>,
    label: &str,
    levels: &[usize],
    passes: usize,
    count: usize,
) -> Result<Vec<Level>, Error> {
    let mut helper = ServerProcess::start(program, ServerKind::Echo(stack))?;
    let twin = ServerProcess::start(program, ServerKind::Echo(stack))?;
    // New active and twin connections for every pass, so that their server
    // threads are placed afresh (see `round_trip`); 100 round trips first, so
    // that both are accepted and served and their threads have run.
    let (server_addr, twin_addr) = (helper.addr, twin.addr);
    let fresh_pair = || -> Result<(Connection, Connection), Error> {
        let (mut active, mut twin_client) = (our_client(server_addr)?, our_client(twin_addr)?);
        active.set_nodelay(true)?;
        twin_client.set_nodelay(true)?;
        alternating(&mut active, &mut twin_client, 100)?;
        Ok((active, twin_client))
    };
    let (mut active, mut twin_client) = fresh_pair()?;
    let mut idle_conns: Vec<TcpStream> = Vec::new();
    let mut found = Vec::new();
    for &level in [1].iter().chain(levels) {
        while 1 + idle_conns.len() < level {
            idle_conns.push(hold_one(server_addr)?);
            if idle_conns.len().is_multiple_of(500) {
                bench.progress(&format!(
                    "{label}: opening idle connections, {} held",
                    grouped(1 + idle_conns.len() as u64)
                ));
            }
        }
        let held = 1 + idle_conns.len();
        let stats = helper.stats()?;
        if stats.serving != held || stats.threads != held + 2 {
            bench.note(format!(
                "{label}: with {held} held the server was serving {} on {} threads",
                stats.serving, stats.threads
            ));
        }
        let kernel = kernel_memory();
        let (mut loaded, mut alone) = (Vec::new(), Vec::new());
        for pass in 0..passes {
            bench.progress(&format!(
                "{label}, {} held: round trips, pass {}/{passes}",
                grouped(held as u64),
                pass + 1
            ));
            if pass > 0 {
                drop((active, twin_client));
                (active, twin_client) = fresh_pair()?;
            }
            let (l, t) = alternating(&mut active, &mut twin_client, count)?;
            loaded.push(l);
            alone.push(t);
        }
        let pick = |v: &[Latency], f: fn(&Latency) -> f64| Samples::new(v.iter().map(f).collect());
        found.push(Level {
            held,
            p50: pick(&loaded, |l| l.p50),
            p99: pick(&loaded, |l| l.p99),
            twin_p50: pick(&alone, |l| l.p50),
            twin_p99: pick(&alone, |l| l.p99),
            stats,
            kernel,
        });
    }
    bench.progress(&format!("{label}: closing the connections"));
    drop(idle_conns);
    drop(active);
    drop(twin_client);
    helper.stop()?;
    twin.stop()?;
    Ok(found)
}

/// Round trips on two connections of ours, alternating one by one; each
/// connection's latencies.
fn alternating(
    a: &mut Connection,
    b: &mut Connection,
    count: usize,
) -> Result<(Latency, Latency), Error> {
    alternate(0, count, || echo_once(a), || echo_once(b))
}

/// Round trip against connections held, for one stack size: the server
/// holding them (solid) and its twin holding one, measured at the same
/// moments (dashed) — so that what the machine was doing meanwhile shows as
/// both lines moving together, and the crowd's own effect as a gap.
fn idle_chart(label: &str, levels: &[usize], found: &[Level]) -> Chart {
    let line = |name: &str, colour: usize, pick: fn(&Level) -> &Samples| {
        let points = found
            .iter()
            .map(|l| quartile_point(l.held as f64, pick(l), 1e6))
            .collect();
        Series::new(name, points).colour(colour)
    };
    Chart {
        title: format!("One client's echo round trip while others sit idle ({label})"),
        x_label: "connections held by the server (a thread each)".into(),
        y_label: "round trip, µs (median; bars: middle half of the passes)".into(),
        x_scale: Scale::Linear,
        x_ticks: std::iter::once(1)
            .chain(levels.iter().copied())
            .map(|x| (x as f64, grouped(x as u64)))
            .collect(),
        series: vec![
            line("p50, the server holding them", 0, |l| &l.p50),
            line("p99, the server holding them", 1, |l| &l.p99),
            line("p50, its twin holding one", 0, |l| &l.twin_p50).dashed(),
            line("p99, its twin holding one", 1, |l| &l.twin_p99).dashed(),
        ],
    }
}

/// The idle benchmark's rows for one stack size, a case at a time.
fn record_idle(bench: &mut Bench, label: &str, levels: &[Level]) {
    let Some(base) = levels.first() else { return };
    let name = |l: &Level| format!("{} held", grouped(l.held as u64));
    for (p, pick) in [
        (
            "p50",
            (|l: &Level| (l.p50.clone(), l.twin_p50.clone())) as fn(&Level) -> (Samples, Samples),
        ),
        ("p99", |l| (l.p99.clone(), l.twin_p99.clone())),
    ] {
        for l in levels {
            let (loaded, twin) = pick(l);
            bench.record(
                Measurement::new(
                    format!("{label}, round trip {p}"),
                    name(l),
                    Unit::Seconds,
                    loaded,
                )
                .vs_alongside(TWIN, twin),
            );
        }
    }
    let added = |l: &Level| (l.held - base.held) as f64;
    let per_connection = |of: fn(&HelperStats) -> u64| {
        move |l: &Level| of(&l.stats).saturating_sub(of(&base.stats)) as f64 / added(l)
    };
    for (what, per) in [
        ("resident memory (VmRSS)", per_connection(|s| s.rss)),
        ("page tables (VmPTE)", per_connection(|s| s.pte)),
        ("address space (VmSize)", per_connection(|s| s.vsize)),
    ] {
        for l in &levels[1..] {
            bench.record(Measurement::new(
                format!("{label}, server {what} per connection"),
                name(l),
                Unit::Bytes,
                Samples::new(vec![per(l)]),
            ));
        }
    }
    for l in &levels[1..] {
        if let (Some(now), Some(before)) = (l.kernel, base.kernel) {
            let per = now.saturating_sub(before) as f64 / added(l);
            bench.record(
                Measurement::new(
                    format!("{label}, kernel memory per connection"),
                    name(l),
                    Unit::Bytes,
                    Samples::new(vec![per]),
                )
                .note(
                    "Slab + KernelStack from /proc/meminfo: machine-wide, both ends' sockets, \
                     moved by anything else running; rough",
                ),
            );
        }
    }
}

/// Opens one idle connection and makes sure the server is serving it: one
/// byte there and back. Raw std: these are load, not what is measured.
fn hold_one(addr: SocketAddr) -> Result<TcpStream, Error> {
    let mut stream = raw_client(addr)?;
    stream
        .write_all(b".")
        .map_err(|e| Error::io(Step::Write, e))?;
    stream
        .read_exact(&mut [0; 1])
        .map_err(|e| Error::io(Step::Read, e))?;
    Ok(stream)
}

/// /proc/meminfo's `Slab` + `KernelStack`, in bytes.
fn kernel_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some(field("Slab:")? + field("KernelStack:")?)
}

/// What the server half says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HelperStats {
    /// VmRSS, bytes.
    rss: u64,
    /// VmPTE (page tables), bytes.
    pte: u64,
    /// VmSize (address space mapped), bytes.
    vsize: u64,
    /// Threads in the process.
    threads: usize,
    /// Connections its server is serving.
    serving: usize,
    /// A Sink server: the CPU time its thread spent on the last connection
    /// that ended, nanoseconds (taken: reported once).
    sink_cpu: Option<u64>,
}

/// What a server process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerKind {
    /// [`Echo`] to as many as the ceiling allows, with this stack size (or
    /// std's default): the idle benchmark's server and its twin.
    Echo(Option<usize>),
    /// [`Sink`], timing each connection's CPU: our end of the comparison
    /// with iperf3, whose client and server are processes of their own too.
    Sink,
}

impl ServerKind {
    /// The value of [`SERVER_ENV`]: `echo default`, `echo 65536`, `sink`.
    fn to_env(self) -> String {
        match self {
            ServerKind::Echo(None) => "echo default".into(),
            ServerKind::Echo(Some(stack)) => format!("echo {stack}"),
            ServerKind::Sink => "sink".into(),
        }
    }

    fn from_env(text: &str) -> Option<ServerKind> {
        match text.split_whitespace().collect::<Vec<_>>()[..] {
            ["echo", "default"] => Some(ServerKind::Echo(None)),
            ["echo", stack] => stack.parse().ok().map(|s| ServerKind::Echo(Some(s))),
            ["sink"] => Some(ServerKind::Sink),
            _ => None,
        }
    }
}

/// If this process was started as a server process ([`SERVER_ENV`] set),
/// serves until the parent closes its stdin and exits; otherwise returns.
fn serve_if_asked() {
    let Some(kind) = env::var_os(SERVER_ENV) else {
        return;
    };
    let result = match ServerKind::from_env(&kind.to_string_lossy()) {
        Some(kind) => server_process(kind),
        None => Err(Error::new(
            Step::Serve,
            ErrorKind::InvalidInput(format!("{SERVER_ENV}={kind:?} is not a server kind")),
        )),
    };
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            println!("{SERVER_MARKER} error {}", e.to_string().replace('\n', " "));
            1
        }
    };
    std::process::exit(code);
}

/// A server process, as seen from the parent: a child process (this program
/// again, `sockstep bench idle` or `tcp-throughput` with [`SERVER_ENV`] set),
/// its stdin (closing it ends the child) and its stdout's lines.
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(program: &Path, kind: ServerKind) -> Result<ServerProcess, Error> {
        let bench = match kind {
            ServerKind::Echo(_) => "idle",
            ServerKind::Sink => "tcp-throughput",
        };
        let mut child = Command::new(program)
            .args(["bench", bench])
            .env(SERVER_ENV, kind.to_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| bench_error(&format!("start {} bench {bench}", program.display()), e))?;
        let stdin = child.stdin.take();
        let lines = forward_lines(child.stdout.take())?;
        let mut helper = ServerProcess {
            child,
            stdin,
            lines,
            addr: loopback(),
        };
        let said = helper.expect("listening")?;
        helper.addr = said.trim().parse().map_err(|_| {
            bench_error(
                "start the server process",
                io::Error::other(format!("it said {said:?}")),
            )
        })?;
        Ok(helper)
    }

    /// Waits for the child's next marked line starting with `word`; returns the rest.
    fn expect(&mut self, word: &str) -> Result<String, Error> {
        let deadline = Instant::now() + HELPER_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).map_err(|_| {
                bench_error(
                    &format!("hear '{word}' from the server process"),
                    io::Error::other("it ended or went silent"),
                )
            })?;
            let Some((_, said)) = line.split_once(SERVER_MARKER) else {
                continue;
            };
            let said = said.trim();
            if let Some(rest) = said.strip_prefix(word) {
                return Ok(rest.trim().to_string());
            }
            if let Some(why) = said.strip_prefix("error") {
                return Err(bench_error(
                    "run the server process",
                    io::Error::other(why.trim().to_string()),
                ));
            }
        }
    }

    fn stats(&mut self) -> Result<HelperStats, Error> {
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            bench_error(
                "ask the server process",
                io::Error::other("its stdin is closed"),
            )
        })?;
        writeln!(stdin, "stats")
            .and_then(|()| stdin.flush())
            .map_err(|e| bench_error("ask the server process", e))?;
        let said = self.expect("stats")?;
        parse_helper_stats(&said).ok_or_else(|| {
            bench_error(
                "read the server's stats",
                io::Error::other(format!("it said {said:?}")),
            )
        })
    }

    /// Closes its stdin — the server shuts down and exits — and waits for it.
    fn stop(mut self) -> Result<(), Error> {
        drop(self.stdin.take());
        let deadline = Instant::now() + HELPER_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(bench_error(
                        "stop the server process",
                        io::Error::other(format!("it exited with {status}")),
                    ));
                }
                Ok(None) if Instant::now() >= deadline => {
                    return Err(bench_error(
                        "stop the server process",
                        io::Error::other("it did not exit"),
                    ));
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(bench_error("wait for the server process", e)),
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Our own child, by its handle; a no-op if it already exited.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a child's stdout line by line on a thread, so a wait can time out.
fn forward_lines(stdout: Option<ChildStdout>) -> Result<std::sync::mpsc::Receiver<String>, Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::Builder::new()
        .name("bench-helper-out".into())
        .spawn(move || {
            if let Some(stdout) = stdout {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        })
        .map_err(|e| bench_error("start a thread", e))?;
    Ok(rx)
}

/// `rss=123 pte=8 vsize=456 threads=4 serving=1 [sink_cpu=789]` → stats.
fn parse_helper_stats(text: &str) -> Option<HelperStats> {
    let field = |name: &str| -> Option<u64> {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    Some(HelperStats {
        rss: field("rss")?,
        pte: field("pte")?,
        vsize: field("vsize")?,
        threads: usize::try_from(field("threads")?).ok()?,
        serving: usize::try_from(field("serving")?).ok()?,
        sink_cpu: field("sink_cpu"),
    })
}

/// A server process's life: our server of `kind`, on an ephemeral port it
/// announces; answers each `stats` line on stdin with its memory, threads and
/// connections (and, serving Sink, the last connection's CPU time); shuts
/// down when stdin ends.
fn server_process(kind: ServerKind) -> Result<(), Error> {
    let sink_cpu = CpuSlot::default();
    let server = match kind {
        ServerKind::Echo(stack) => our_server(
            ServeConfig {
                max_connections: MAX_CONNECTIONS_CEILING,
                // Idle is the point: no read timeout a run could reach.
                timeouts: Timeouts {
                    read: Some(Duration::from_secs(3_600)),
                    write: TIMEOUTS.write,
                },
                stack_size: stack,
                ..ServeConfig::default()
            },
            Echo,
        )?,
        ServerKind::Sink => our_server(bench_config(), measured_sink(sink_cpu.clone()))?,
    };
    let say = |line: String| {
        let mut out = io::stdout().lock();
        // The parent reading us is gone only if it was killed; nothing to do then.
        let _ = writeln!(out, "{SERVER_MARKER} {line}");
        let _ = out.flush();
    };
    say(format!("listening {}", server.local_addr()));
    for line in io::stdin().lock().lines().map_while(Result::ok) {
        if line.trim() == "stats" {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let field = |name: &str| -> u64 {
                status
                    .lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let cpu = sink_cpu
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .map_or(String::new(), |d| format!(" sink_cpu={}", d.as_nanos()));
            say(format!(
                "stats rss={} pte={} vsize={} threads={} serving={}{cpu}",
                field("VmRSS:") * 1024,
                field("VmPTE:") * 1024,
                field("VmSize:") * 1024,
                field("Threads:"),
                server.serving()
            ));
        }
    }
    server.shutdown();
    Ok(())
}

// --- trace ------------------------------------------------------------------------

/// The write size of the trace benchmark: small, so that the per-call cost
/// of our `write` — where the trace hook sits — is as large a share of the
/// time as it can be.
pub const TRACE_WRITE: usize = 64;

/// A tracer that looks at each event and does nothing: what tracing costs
/// before any tracer does work.
struct Discard;

impl Tracer for Discard {
    fn event(&self, event: &Event) {
        std::hint::black_box(event);
    }
}

/// `sockstep bench trace`: does the trace hook cost anything when off?
///
/// Three clients write 64-byte pieces for a fixed time into the same raw std
/// sink: raw std; our [`Connection`] with [`Trace::off`]; and ours with a
/// tracer that discards every event (so every write builds an [`Event`]).
/// Then, without any I/O, the cost of one [`Trace::emit`] call, off and on.
///
/// An off trace is an `Option` that is `None`: `emit` is one branch and the
/// closure that would build the event is never called. Goal: off ≥ 0.97×
/// raw — within the noise of interleaved medians on this machine.
///
/// # Errors
/// A socket step that fails in any pass.
pub fn trace(options: &BenchOptions) -> Result<Report, Error> {
    let mut bench = Bench::new(
        "trace",
        "the trace hook: writes with Trace::off and with a no-op tracer, against raw std",
        options,
    );
    let duration = options.pick(Duration::from_millis(60), Duration::from_millis(20));
    let (warmup, reps) = options.pick((1, 15), (0, 2));
    let emits = options.pick(2_000_000, 100_000);
    bench.setup(format!(
        "{reps} interleaved passes (+{warmup} warm-up), {duration:?} of {TRACE_WRITE}-byte writes \
         each (Nagle on), a new connection per pass, the same raw std sink for all; \
         emit alone: {} calls per pass",
        grouped(emits as u64)
    ));
    let sink = RawServer::start(raw_sink, false)?;
    let addr = sink.addr;
    let off = Trace::off();
    let on = Trace::to(Arc::new(Discard));
    let case = format!("{TRACE_WRITE} B writes");
    let writes = Unit::PerSecond("writes");
    let mut variants = [
        Variant::new("raw", move || {
            let stream = raw_client(addr)?;
            let piece = [0x5au8; TRACE_WRITE];
            writes_for(
                duration,
                || {
                    (&stream)
                        .write_all(&piece)
                        .map_err(|e| Error::io(Step::Write, e))
                },
                || {
                    stream
                        .shutdown(Shutdown::Write)
                        .map_err(|e| Error::io(Step::Shutdown, e))?;
                    (&stream)
                        .read(&mut [0; 1])
                        .map(drop)
                        .map_err(|e| Error::io(Step::Read, e))
                },
            )
        }),
        Variant::new("trace off", || traced_writes(addr, &off, duration)),
        Variant::new("no-op tracer", || traced_writes(addr, &on, duration)),
    ];
    let names = ["raw", "trace off", "no-op tracer"];
    let passes = bench.interleave(&case, warmup, reps, &mut variants, |w: &Writes| {
        writes.format(w.per_second)
    })?;
    let cpu_case = format!("{TRACE_WRITE} B writes, client CPU per write");
    let mut cpu_rows = Vec::new();
    for (name, found) in names.into_iter().zip(&passes) {
        let rates = Samples::new(found.iter().map(|w| w.per_second).collect());
        let cpu = Samples::new(found.iter().filter_map(|w| w.cpu_per_write).collect());
        let (m, c) = (
            Measurement::new(&case, name, writes, rates),
            Measurement::new(&cpu_case, name, Unit::Seconds, cpu),
        );
        match name {
            "raw" => {
                bench.record(m);
                cpu_rows.push(c);
            }
            "trace off" => {
                bench.record(m.vs("raw").goal(Goal::AtLeast(0.97)));
                cpu_rows.push(c.vs("raw").goal(Goal::AtMost(1.03)));
            }
            _ => {
                bench.record(m.vs("raw"));
                cpu_rows.push(c.vs("raw"));
            }
        }
    }
    for row in cpu_rows {
        bench.record(row);
    }
    drop(sink);

    let emit_case = "one emit() call, no I/O";
    let mut variants = [
        Variant::new("trace off", || Ok(emit_cost(&off, emits))),
        Variant::new("no-op tracer", || Ok(emit_cost(&on, emits))),
    ];
    let passes = bench.interleave(emit_case, warmup, reps, &mut variants, |s| {
        Unit::Seconds.format(*s)
    })?;
    for (name, values) in ["trace off", "no-op tracer"].into_iter().zip(passes) {
        bench.record(Measurement::new(
            emit_case,
            name,
            Unit::Seconds,
            Samples::new(values),
        ));
    }
    Ok(bench.finish())
}

/// What one pass of writes found.
#[derive(Debug, Clone, Copy)]
struct Writes {
    /// Writes per second, until the sink had them all.
    per_second: f64,
    /// The writing thread's CPU time per write, seconds.
    cpu_per_write: Option<f64>,
}

/// One pass of ours with `trace`.
fn traced_writes(addr: SocketAddr, trace: &Trace, duration: Duration) -> Result<Writes, Error> {
    let conn = RefCell::new(
        client::socket(addr, trace)
            .timeouts(TIMEOUTS)
            .connect(CONNECT_TIMEOUT)?,
    );
    let piece = [0x5au8; TRACE_WRITE];
    writes_for(
        duration,
        || conn.borrow_mut().write_all(&piece),
        || {
            let mut conn = conn.borrow_mut();
            conn.shutdown_write()?;
            conn.read(&mut [0; 1]).map(drop)
        },
    )
}

/// Calls `write` for `duration`, then `finish` (half-close and wait for the
/// sink's close): calls per second until the sink had them all, and this
/// thread's CPU time per call — read after `finish` blocked, where it is
/// exact (see [`thread_cpu_time`]). The clock is read after every call:
/// ~20 ns of a ~3 µs write, the same for every variant.
fn writes_for(
    duration: Duration,
    mut write: impl FnMut() -> Result<(), Error>,
    finish: impl FnOnce() -> Result<(), Error>,
) -> Result<Writes, Error> {
    let cpu_before = thread_cpu_time();
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < duration {
        write()?;
        done += 1;
    }
    finish()?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_before
        .zip(thread_cpu_time())
        .map(|(b, a)| a.saturating_sub(b).as_secs_f64() / done.max(1) as f64);
    Ok(Writes {
        per_second: done as f64 / seconds,
        cpu_per_write: cpu,
    })
}

/// Seconds per `emit` of a write's event on `trace`, over `n` calls.
fn emit_cost(trace: &Trace, n: usize) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        // black_box: the compiler may not know whether the trace is on.
        std::hint::black_box(trace)
            .emit(|| Event::new(SocketId(1), Side::Client, Step::Write, Protocol::Tcp).bytes(i));
    }
    started.elapsed().as_secs_f64() / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf3_json_gives_the_receivers_rate_and_both_ends_cpu() {
        let json = "{\"end\": {\"sum_sent\": {\"bits_per_second\":\t2e9},\n\
                    \"sum_received\":\t{\n\t\"seconds\":\t1.0,\n\t\"bytes\":\t2097152,\n\
                    \t\"bits_per_second\":\t14249058283.808987,\n},\n\
                    \"cpu_utilization_percent\":\t{\"host_total\":\t20.5, \"remote_total\": 49.5}}}";
        let flow = parse_iperf3(json).unwrap();
        assert_eq!(flow.bits_per_second, 14_249_058_283.808987);
        // 70 % of one second of CPU for 2 MiB.
        assert!((flow.cpu_per_mib.unwrap() - 0.35).abs() < 1e-12);
        assert!(parse_iperf3("{\"error\": \"unable to connect\"}").is_none());
    }

    #[test]
    fn helper_stats_parse() {
        assert_eq!(
            parse_helper_stats("rss=4096 pte=8 vsize=9 threads=3 serving=1"),
            Some(HelperStats {
                rss: 4096,
                pte: 8,
                vsize: 9,
                threads: 3,
                serving: 1,
                sink_cpu: None,
            })
        );
        assert_eq!(
            parse_helper_stats("rss=1 pte=2 vsize=3 threads=4 serving=0 sink_cpu=99")
                .and_then(|s| s.sink_cpu),
            Some(99)
        );
        for kind in [
            ServerKind::Echo(None),
            ServerKind::Echo(Some(65_536)),
            ServerKind::Sink,
        ] {
            assert_eq!(ServerKind::from_env(&kind.to_env()), Some(kind));
        }
        assert_eq!(parse_helper_stats("rss=1 threads=2"), None);
    }
}
