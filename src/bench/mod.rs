//! Measurements: what the protocols cost and what they buy, in numbers.
//!
//! A benchmark here answers one question with a table a reader can check.
//! Each one runs real sockets through the public API (no private shortcuts,
//! so what is measured is what a user gets), repeats itself, and quotes
//! medians: these machines are shared, and a single pass can swing by 2×.
//! Every figure stands beside a baseline measured in the same run — the
//! plainest std loop that does the same job, and a peer tool when one is
//! installed — as a ratio.
//!
//! - [`harness`] — what every benchmark runs on: [`harness::Bench`]
//!   (interleaved passes, a progress line), [`harness::Samples`] (median,
//!   percentiles), [`harness::Measurement`] and [`harness::Report`] (the table
//!   with ratio and goal columns, `--json`), [`harness::run_repeated`].
//! - [`plot`] — SVG line charts drawn by our own code, for `docs/BENCHMARKS.md`.
//! - [`tcp`] — `tcp-throughput`, `tcp-rr`, `connect`, `idle`, `trace`: our
//!   TCP client and thread-per-connection server against raw std and iperf3.
//! - [`udp`] — `udp`: datagrams per second and round trips against raw std.
//! - [`http`] — `http`: GET of a small file under wrk, keep-alive and
//!   `Connection: close`, our HTTP server against nginx and a raw std responder.
//! - [`loss`] — `sockstep bench loss`: raw UDP, the reliable channel
//!   ([`crate::udp::reliable`]) and TCP through the same packet loss, from 0 %
//!   to 20 %. What does TCP's overhead buy? (It predates the harness and has
//!   its own report.)
//!
//! `docs/BENCHMARKS.md` has the tables of a full run and what they mean.
//!
//! # Adding a benchmark
//!
//! Write `fn(&BenchOptions) -> Result<Report, Error>` on [`harness::Bench`]
//! and add a line to [`BENCHMARKS`]; the command line (`sockstep bench
//! NAME`, `--json`, `--quick`, `--svg DIR`, `sockstep bench all`) picks it up.

pub mod harness;
pub mod http;
pub mod loss;
pub mod plot;
pub mod tcp;
pub mod udp;

use crate::error::{Error, ErrorKind};
use crate::step::Step;
use harness::{BenchOptions, Report};

/// A benchmark on the harness: its name on the command line, one line on
/// what it measures, and the function that runs it.
#[derive(Debug, Clone, Copy)]
pub struct Benchmark {
    /// `sockstep bench NAME`.
    pub name: &'static str,
    /// What it measures, for `sockstep bench --help`.
    pub about: &'static str,
    /// Runs it.
    pub run: fn(&BenchOptions) -> Result<Report, Error>,
}

/// Every benchmark on the harness, in the order `sockstep bench all` runs them
/// (`loss`, which has its own report, runs after these).
pub const BENCHMARKS: &[Benchmark] = &[
    Benchmark {
        name: "tcp-throughput",
        about: "our client into our Sink server, by write size, vs raw std and iperf3",
        run: tcp::throughput,
    },
    Benchmark {
        name: "tcp-rr",
        about: "64 B round trips through our Echo server (p50, p99) vs a raw std ping-pong",
        run: tcp::round_trip,
    },
    Benchmark {
        name: "connect",
        about: "connect → accept → first byte → close per second vs raw std",
        run: tcp::connect,
    },
    Benchmark {
        name: "udp",
        about: "datagrams per second one way, and round trips, vs raw std",
        run: udp::datagrams,
    },
    Benchmark {
        name: "trace",
        about: "writes with Trace::off and with a no-op tracer vs raw std",
        run: tcp::trace,
    },
    Benchmark {
        name: "idle",
        about: "1k/5k/10k idle connections held: memory per connection, one client's round trip",
        run: tcp::idle,
    },
    Benchmark {
        name: "http",
        about: "GET of a small file under wrk at 1/16/64 connections vs nginx and raw std",
        run: http::requests,
    },
];

/// The benchmark called `name`, if there is one on the harness.
pub fn find(name: &str) -> Option<&'static Benchmark> {
    BENCHMARKS.iter().find(|b| b.name == name)
}

/// Runs the benchmark called `name`.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] for a name not in [`BENCHMARKS`]; otherwise
/// whatever the benchmark returns.
pub fn run(name: &str, options: &BenchOptions) -> Result<Report, Error> {
    match find(name) {
        Some(benchmark) => (benchmark.run)(options),
        None => Err(Error::new(
            Step::Serve,
            ErrorKind::InvalidInput(format!("no benchmark called '{name}'")),
        )),
    }
}
