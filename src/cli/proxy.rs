//! `sockstep proxy`: the fault-injecting TCP proxy
//! ([`testkit::proxy`](crate::testkit::proxy)) for a terminal.
//!
//! It listens on `--listen`, passes every connection on to `--to`, and does to
//! the bytes what the flags say: delay them, pace them, cut them into small
//! pieces, cut the connection after so many bytes, stall it, reset it, hold
//! its end back, or refuse new connections. The faults apply both ways unless
//! `--direction` picks one; the library can mix directions, the command line
//! keeps to one choice so that its flags stay few. It prints the address it
//! listens on, and its counts when it stops.

use std::time::Duration;

use crate::cli::Command;
use crate::cli::args::{self, Parsed, Spec, Usage};
use crate::cli::tcp::{print_line, wait_for_stop};
use crate::endpoint::{Endpoint, Protocol};
use crate::error::Error;
use crate::testkit::proxy::{
    Direction, DirectionCounts, Fault, MAX_DELAY, MAX_JITTER, MAX_SLICE, MAX_TIMEOUT, NamedFault,
    Proxy, ProxyConfig, ProxyCounts,
};

/// The longest pause after a slice when `--slice` is given without
/// `--slice-pause`: small, as the pauses between a real network's segments are.
pub const DEFAULT_SLICE_PAUSE: Duration = Duration::from_millis(1);

const PROXY: Spec = Spec {
    command: "sockstep proxy",
    positionals: &[],
    switches: &["--refuse", "--trace"],
    options: &[
        ("--listen", "ADDR"),
        ("--to", "ADDR"),
        ("--latency", "DUR"),
        ("--jitter", "DUR"),
        ("--bandwidth", "RATE"),
        ("--slice", "MIN-MAX"),
        ("--slice-pause", "DUR"),
        ("--limit-data", "N"),
        ("--reset-after", "N"),
        ("--timeout", "DUR|never"),
        ("--slow-close", "DUR"),
        ("--direction", "both|up|down"),
        ("--seed", "N"),
        ("--for", "SECS"),
    ],
};

/// `sockstep proxy --help`.
pub fn usage() -> String {
    format!(
        "\
Usage: sockstep proxy --listen ADDR --to ADDR [--latency DUR] [--jitter DUR]
                      [--bandwidth RATE] [--slice MIN-MAX] [--slice-pause DUR]
                      [--limit-data N] [--reset-after N] [--timeout DUR|never]
                      [--slow-close DUR] [--direction both|up|down] [--refuse]
                      [--seed N] [--for SECS] [--trace]

A TCP proxy that is a bad network on purpose. Clients connect to --listen
instead of the server; each connection is passed on to --to, and its bytes
go through the faults below on the way. With no faults it changes nothing:
the same bytes, in order, and each side's half-close passed on. It prints:
  proxying tcp://LISTEN -> tcp://TO (FAULTS; press Enter to stop)
and, when stopped (Enter, or --for), its counts on stderr.

Faults (DUR has a unit: 250us, 5ms, 2s; N is a number of bytes):
  --latency DUR        hold each chunk of bytes this long (at most {max_delay:?})
  --jitter DUR         and a further random 0..DUR per chunk (at most {max_jitter:?});
                       chunks are never reordered
  --bandwidth RATE     at most RATE: 500B/s, 64kB/s, 1MB/s, 1.5MiB/s (kB = 1000 B, KiB = 1024 B)
  --slice MIN-MAX      write in pieces of MIN to MAX bytes (e.g. 1-16; at most {max_slice}),
                       a random pause after each: finds code that takes one
                       read() for one message
  --slice-pause DUR    the longest of those pauses (default {slice_pause:?})
  --limit-data N       let a connection's first N bytes through, then close it
                       (each side reads what it got, then end of stream)
  --reset-after N      let a connection's first N bytes through; the side that
                       sends the next byte gets a reset (RST)
  --timeout DUR|never  forward nothing; close the connection after DUR, or never
  --slow-close DUR     pass a side's end of stream (FIN) on only after DUR
  --refuse             refuse new connections: the port is closed, so connect()
                       gets 'connection refused' (connections already open go on)

Options:
  --listen ADDR        where clients connect (required; port 0: the OS chooses)
  --to ADDR            the server connections are passed on to (required)
  --direction both|up|down
                       which way the faults apply: up is client -> server,
                       down is server -> client (default both)
  --seed N             where every random choice starts (default 0): the same
                       seed cuts and delays the same way again
  --for SECS           stop by itself after SECS, as if Enter were pressed
  --trace              print what the proxy does (accepts, faults, closes) on stdout
  -h, --help           show this help
",
        max_delay = MAX_DELAY,
        max_jitter = MAX_JITTER,
        max_slice = MAX_SLICE,
        slice_pause = DEFAULT_SLICE_PAUSE,
    )
}

/// `sockstep proxy`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpProxy {
    /// Where clients connect (`--listen`).
    pub listen: Endpoint,
    /// The server (`--to`).
    pub to: Endpoint,
    /// The faults, each named after its flag, on the `--direction` chosen.
    pub faults: Vec<NamedFault>,
    /// Start refusing (`--refuse`).
    pub refuse: bool,
    /// Where the random draws start (`--seed`).
    pub seed: u64,
    /// Stop by itself after this long (`--for`).
    pub run_for: Option<Duration>,
    /// Print what the proxy does (`--trace`).
    pub trace: bool,
}

/// Parses the words after `proxy`.
///
/// # Errors
/// A [`Usage`] error for a missing `--listen` or `--to`, an unknown flag, or a
/// value out of range, naming the flag.
pub fn parse(words: &[String]) -> Result<Command, Usage> {
    let parsed = args::parse(&PROXY, words)?;
    if parsed.help {
        return Ok(Command::Help(usage()));
    }
    let required = |flag: &str, what: &str| {
        parsed
            .value(flag)
            .ok_or_else(|| parsed.error(format!("missing {flag} ADDR ({what})")))
    };
    let listen = tcp_endpoint(
        &parsed,
        "--listen",
        required("--listen", "where clients connect")?,
    )?;
    let to = tcp_endpoint(
        &parsed,
        "--to",
        required("--to", "the server to pass connections on to")?,
    )?;
    let direction = match parsed.value("--direction") {
        None | Some("both") => Direction::Both,
        Some("up") => Direction::Upstream,
        Some("down") => Direction::Downstream,
        Some(other) => {
            return Err(parsed.error(format!(
                "--direction must be both, up or down, not '{other}'"
            )));
        }
    };
    let faults = faults(&parsed)?
        .into_iter()
        .map(|(name, fault)| NamedFault::new(name, direction, fault))
        .collect();
    Ok(Command::Proxy(TcpProxy {
        listen,
        to,
        faults,
        refuse: parsed.switch("--refuse"),
        seed: whole_number(&parsed, "--seed")?.unwrap_or(0),
        run_for: parsed.seconds("--for")?,
        trace: parsed.switch("--trace"),
    }))
}

/// The faults the flags ask for, each named after its flag, in a fixed order.
fn faults(parsed: &Parsed) -> Result<Vec<(&'static str, Fault)>, Usage> {
    let mut faults = Vec::new();
    let delay = parsed.duration("--latency", MAX_DELAY)?;
    let jitter = parsed.duration("--jitter", MAX_JITTER)?;
    if delay.is_some() || jitter.is_some() {
        faults.push((
            "latency",
            Fault::Latency {
                delay: delay.unwrap_or_default(),
                jitter: jitter.unwrap_or_default(),
            },
        ));
    }
    if let Some(text) = parsed.value("--bandwidth") {
        let bytes_per_second = parse_rate(text).ok_or_else(|| {
            parsed.error(format!(
                "--bandwidth must be a rate of at least 1 B/s with its unit (B/s, kB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s), as 64kB/s or 1MB/s, not '{text}'"
            ))
        })?;
        faults.push(("bandwidth", Fault::Bandwidth { bytes_per_second }));
    }
    let pause = parsed.duration("--slice-pause", MAX_DELAY)?;
    match (parsed.value("--slice"), pause) {
        (Some(text), pause) => {
            let (min, max) = parse_slice(text).ok_or_else(|| {
                parsed.error(format!(
                    "--slice must be MIN-MAX (or one size N) with 1 <= MIN <= MAX <= {MAX_SLICE}, as 1-16, not '{text}'"
                ))
            })?;
            let pause = pause.unwrap_or(DEFAULT_SLICE_PAUSE);
            faults.push(("slicer", Fault::Slicer { min, max, pause }));
        }
        (None, Some(_)) => return Err(parsed.error("--slice-pause needs --slice")),
        (None, None) => {}
    }
    if let Some(bytes) = whole_number(parsed, "--limit-data")? {
        faults.push(("limit-data", Fault::LimitData { bytes }));
    }
    if let Some(after_bytes) = whole_number(parsed, "--reset-after")? {
        faults.push(("reset-peer", Fault::ResetPeer { after_bytes }));
    }
    if let Some(text) = parsed.value("--timeout") {
        let close_after = match (text, args::parse_duration(text)) {
            ("never", _) => None,
            (_, Some(d)) if d <= MAX_TIMEOUT => Some(d),
            _ => {
                return Err(parsed.error(format!(
                    "--timeout must be 'never' or a duration from 0 to {MAX_TIMEOUT:?} with its unit (us, ms or s), as 500ms or 2s, not '{text}'"
                )));
            }
        };
        faults.push(("timeout", Fault::Timeout { close_after }));
    }
    if let Some(delay) = parsed.duration("--slow-close", MAX_DELAY)? {
        faults.push(("slow-close", Fault::SlowClose { delay }));
    }
    Ok(faults)
}

/// Option `name` as a whole number of 0 or more (a byte count, a seed).
fn whole_number(parsed: &Parsed, name: &str) -> Result<Option<u64>, Usage> {
    let Some(text) = parsed.value(name) else {
        return Ok(None);
    };
    match text.parse::<u64>() {
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(parsed.error(format!(
            "{name} must be a whole number from 0 to {}, not '{text}'",
            u64::MAX
        ))),
    }
}

/// The units a rate may be written in, with their size in bytes; longest
/// suffix first, so `KiB/s` is not read as `B/s`.
const RATE_UNITS: [(&str, u64); 10] = [
    ("KiB/s", 1 << 10),
    ("MiB/s", 1 << 20),
    ("GiB/s", 1 << 30),
    ("kB/s", 1_000),
    ("KB/s", 1_000),
    ("MB/s", 1_000_000),
    ("GB/s", 1_000_000_000),
    ("B/s", 1),
    // The same without "/s", as people often write a link's speed.
    ("MB", 1_000_000),
    ("kB", 1_000),
];

/// Reads a rate in bytes per second: a plain decimal and a unit, `500B/s`,
/// `64kB/s`, `1.5MiB/s`. A bare number is refused, as durations are: bytes or
/// kilobytes is not a guess anyone should have to make. The result is rounded
/// down to whole bytes and must be at least 1.
///
/// ```text
/// "1MB/s" → 1,000,000    "64KiB/s" → 65,536    "1.5kB/s" → 1,500    "100" → None
/// ```
pub fn parse_rate(text: &str) -> Option<u64> {
    let (number, scale) = RATE_UNITS
        .iter()
        .find_map(|(unit, scale)| text.strip_suffix(unit).map(|n| (n, *scale)))?;
    if !args::is_plain_decimal(number) || number.len() > 20 {
        return None;
    }
    let value = number.parse::<f64>().ok()? * scale as f64;
    // `as` saturates at u64::MAX; a rate of 1e20 B/s is "unlimited" anyway.
    let rate = value as u64;
    (rate >= 1).then_some(rate)
}

/// Reads `MIN-MAX` (or one size `N`) as slice sizes: 1 <= MIN <= MAX <= [`MAX_SLICE`].
pub fn parse_slice(text: &str) -> Option<(usize, usize)> {
    let (min, max) = text.split_once('-').unwrap_or((text, text));
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if !digits(min) || !digits(max) {
        return None;
    }
    let (min, max) = (min.parse::<usize>().ok()?, max.parse::<usize>().ok()?);
    (1 <= min && min <= max && max <= MAX_SLICE).then_some((min, max))
}

/// `text` (the value of `what`) as a TCP endpoint; `udp://` is a mistake here.
fn tcp_endpoint(parsed: &Parsed, what: &str, text: &str) -> Result<Endpoint, Usage> {
    let endpoint = Endpoint::parse_with_default(text, Protocol::Tcp)
        .map_err(|e| parsed.error(format!("bad {what}: {}", e.summary())))?;
    if endpoint.protocol() != Protocol::Tcp {
        return Err(parsed.error(format!(
            "{endpoint} is a {} endpoint; the proxy speaks TCP (write tcp://… or leave the scheme out)",
            endpoint.protocol()
        )));
    }
    Ok(endpoint)
}

/// Runs `sockstep proxy` until Enter is pressed or `--for` runs out.
///
/// # Errors
/// The step that failed: resolving either address, or starting the proxy
/// (binding `--listen`, or `--to` being the proxy's own address).
pub fn run(cmd: &TcpProxy) -> Result<(), Error> {
    let listen = super::resolve_first(&cmd.listen)?;
    let to = super::resolve_first(&cmd.to)?;
    let trace = super::traced(cmd.trace);
    let config = ProxyConfig {
        faults: cmd.faults.clone(),
        refuse: cmd.refuse,
        seed: cmd.seed,
        trace,
        ..ProxyConfig::default()
    };
    let proxy = Proxy::start(listen, to, config)?;
    print_line(&format!(
        "proxying {} -> {} ({}; press Enter to stop)",
        Endpoint::from_addr(Protocol::Tcp, proxy.local_addr()),
        Endpoint::from_addr(Protocol::Tcp, to),
        faults_summary(&cmd.faults, cmd.refuse, cmd.seed),
    ));
    wait_for_stop(cmd.run_for);
    for line in counts_lines(&proxy.shutdown()) {
        eprintln!("sockstep: {line}");
    }
    Ok(())
}

/// The faults in one phrase, for the "proxying" line.
pub fn faults_summary(faults: &[NamedFault], refuse: bool, seed: u64) -> String {
    let mut parts: Vec<String> = faults
        .iter()
        .map(|f| match f.direction {
            Direction::Both => f.fault.to_string(),
            Direction::Upstream => format!("{} client -> server", f.fault),
            Direction::Downstream => format!("{} server -> client", f.fault),
        })
        .collect();
    if refuse {
        parts.push("refusing new connections".into());
    }
    if parts.is_empty() {
        return "no faults: every byte passes unchanged".into();
    }
    if faults
        .iter()
        .any(|f| matches!(f.fault, Fault::Latency { .. } | Fault::Slicer { .. }))
    {
        parts.push(format!("seed {seed}"));
    }
    parts.join(", ")
}

/// What a proxy did, as the lines `sockstep proxy` prints when it stops.
pub fn counts_lines(counts: &ProxyCounts) -> Vec<String> {
    let mut connections = format!("stopped: connections {}", counts.connections);
    // Counts that are 0 unless something went wrong are shown only when they are not.
    for (name, n) in [
        ("closed while switching to refusing", counts.refused),
        ("over the connection limit", counts.over_limit),
        ("server unreachable", counts.upstream_failed),
    ] {
        if n > 0 {
            connections.push_str(&format!(", {name} {n}"));
        }
    }
    vec![
        connections,
        format!("client -> server: {}", direction_line(&counts.upstream)),
        format!("server -> client: {}", direction_line(&counts.downstream)),
    ]
}

/// One direction's counts: bytes and half-closes always, faults as they acted.
fn direction_line(c: &DirectionCounts) -> String {
    let mut line = format!(
        "{} bytes, {} ends of stream passed on",
        c.bytes, c.half_closes
    );
    for (name, n) in [
        ("chunks delayed", c.delayed),
        ("writes paced", c.throttled),
        ("slices", c.slices),
        ("stalls", c.stalls),
        ("closed at the data limit", c.limits),
        ("closed by timeout", c.timeouts),
        ("resets", c.resets),
        ("ends of stream held back", c.slow_closes),
        ("errors", c.errors),
    ] {
        if n > 0 {
            line.push_str(&format!(", {name} {n}"));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn proxy(line: &str) -> TcpProxy {
        match parse(&words(line)) {
            Ok(Command::Proxy(p)) => p,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn usage_error(line: &str) -> String {
        parse(&words(line)).expect_err(line).message
    }

    const BASE: &str = "--listen 127.0.0.1:0 --to 127.0.0.1:9";

    #[test]
    fn every_flag_the_parser_accepts_is_in_the_help() {
        let help = usage();
        let options = PROXY
            .options
            .iter()
            .map(|(name, metavar)| format!("{name} {metavar}"));
        for flag in PROXY.switches.iter().map(|s| s.to_string()).chain(options) {
            assert!(help.contains(&flag), "help lacks {flag}");
        }
        assert_eq!(parse(&words("--bogus -h")), Ok(Command::Help(usage())));
    }

    #[test]
    fn no_fault_flags_means_no_faults_both_ways_seed_0() {
        let p = proxy(BASE);
        assert_eq!(p.listen, "tcp://127.0.0.1:0".parse::<Endpoint>().unwrap());
        assert_eq!(p.to, "tcp://127.0.0.1:9".parse::<Endpoint>().unwrap());
        assert!(p.faults.is_empty());
        assert_eq!(
            (p.refuse, p.seed, p.run_for, p.trace),
            (false, 0, None, false)
        );
    }

    #[test]
    fn every_fault_flag_becomes_its_fault_on_the_chosen_direction() {
        let p = proxy(&format!(
            "{BASE} --latency 50ms --jitter 10ms --bandwidth 1MB/s --slice 1-16 \
             --limit-data 1000 --reset-after 20 --timeout 2s --slow-close 5ms \
             --direction down --seed 7 --for 1.5 --trace --refuse"
        ));
        let ms = Duration::from_millis;
        let expected = [
            (
                "latency",
                Fault::Latency {
                    delay: ms(50),
                    jitter: ms(10),
                },
            ),
            (
                "bandwidth",
                Fault::Bandwidth {
                    bytes_per_second: 1_000_000,
                },
            ),
            (
                "slicer",
                Fault::Slicer {
                    min: 1,
                    max: 16,
                    pause: DEFAULT_SLICE_PAUSE,
                },
            ),
            ("limit-data", Fault::LimitData { bytes: 1_000 }),
            ("reset-peer", Fault::ResetPeer { after_bytes: 20 }),
            (
                "timeout",
                Fault::Timeout {
                    close_after: Some(Duration::from_secs(2)),
                },
            ),
            ("slow-close", Fault::SlowClose { delay: ms(5) }),
        ]
        .map(|(name, fault)| NamedFault::new(name, Direction::Downstream, fault));
        assert_eq!(p.faults, expected);
        assert!(p.refuse && p.trace);
        assert_eq!((p.seed, p.run_for), (7, Some(ms(1_500))));
        assert_eq!(
            proxy(&format!("{BASE} --timeout never")).faults[0].fault,
            Fault::Timeout { close_after: None }
        );
        assert_eq!(
            proxy(&format!("{BASE} --jitter 3ms --direction up")).faults[0],
            NamedFault::new(
                "latency",
                Direction::Upstream,
                Fault::Latency {
                    delay: Duration::ZERO,
                    jitter: ms(3)
                }
            )
        );
        let sliced = proxy(&format!("{BASE} --slice 8 --slice-pause 0ms"));
        assert_eq!(
            sliced.faults[0].fault,
            Fault::Slicer {
                min: 8,
                max: 8,
                pause: Duration::ZERO
            }
        );
    }

    #[test]
    fn bad_values_are_named_with_what_was_wanted() {
        for (line, start) in [
            ("--to 127.0.0.1:9", "missing --listen ADDR"),
            ("--listen 127.0.0.1:0", "missing --to ADDR"),
            (
                "--listen udp://127.0.0.1:0 --to 127.0.0.1:9",
                "udp://127.0.0.1:0 is a udp endpoint",
            ),
            (
                &format!("{BASE} --bandwidth 100"),
                "--bandwidth must be a rate",
            ),
            (
                &format!("{BASE} --bandwidth 0B/s"),
                "--bandwidth must be a rate",
            ),
            (&format!("{BASE} --slice 16-1"), "--slice must be MIN-MAX"),
            (&format!("{BASE} --slice 0-4"), "--slice must be MIN-MAX"),
            (
                &format!("{BASE} --slice-pause 1ms"),
                "--slice-pause needs --slice",
            ),
            (
                &format!("{BASE} --latency 31s"),
                "--latency must be a duration",
            ),
            (
                &format!("{BASE} --timeout forever"),
                "--timeout must be 'never' or a duration",
            ),
            (
                &format!("{BASE} --limit-data -1"),
                "--limit-data must be a whole number",
            ),
            (&format!("{BASE} --seed x"), "--seed must be a whole number"),
            (
                &format!("{BASE} --direction sideways"),
                "--direction must be both, up or down",
            ),
        ] {
            let message = usage_error(line);
            assert!(message.starts_with(start), "{line:?}: {message}");
        }
    }

    #[test]
    fn rates_need_their_unit_and_sizes_their_order() {
        for (text, rate) in [
            ("1MB/s", 1_000_000),
            ("500B/s", 500),
            ("64kB/s", 64_000),
            ("64KB/s", 64_000),
            ("64KiB/s", 65_536),
            ("1.5MiB/s", 1_572_864),
            ("2GB/s", 2_000_000_000),
            ("10MB", 10_000_000),
        ] {
            assert_eq!(parse_rate(text), Some(rate), "{text}");
        }
        for bad in [
            "100",
            "MB/s",
            "-1MB/s",
            "1e3B/s",
            "0.1B/s",
            "1 MB/s",
            "1.2.3MB/s",
            "",
        ] {
            assert_eq!(parse_rate(bad), None, "{bad:?}");
        }
        assert_eq!(parse_slice("1-16"), Some((1, 16)));
        assert_eq!(parse_slice("4"), Some((4, 4)));
        for bad in ["0", "5-2", "1-", "-3", "a-b", "1-65537", ""] {
            assert_eq!(parse_slice(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_summary_and_the_counts_say_what_happened_and_hide_zeroes() {
        assert_eq!(
            faults_summary(&[], false, 0),
            "no faults: every byte passes unchanged"
        );
        let p = proxy(&format!(
            "{BASE} --latency 5ms --direction up --seed 3 --refuse"
        ));
        assert_eq!(
            faults_summary(&p.faults, p.refuse, p.seed),
            "latency 5ms client -> server, refusing new connections, seed 3"
        );
        let mut counts = ProxyCounts {
            connections: 3,
            upstream_failed: 1,
            ..ProxyCounts::default()
        };
        counts.upstream.bytes = 10;
        counts.upstream.half_closes = 2;
        counts.downstream.resets = 1;
        assert_eq!(
            counts_lines(&counts),
            [
                "stopped: connections 3, server unreachable 1",
                "client -> server: 10 bytes, 2 ends of stream passed on",
                "server -> client: 0 bytes, 0 ends of stream passed on, resets 1",
            ]
        );
    }
}
