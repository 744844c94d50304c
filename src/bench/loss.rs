//! `sockstep bench loss`: what does TCP's overhead buy?
//!
//! # The question
//!
//! TCP puts a 40-byte header (52 with the timestamp option Linux sends) on
//! every segment, sends a stream of acknowledgements back, keeps copies for
//! retransmission and waits when its window is full. UDP puts 28 bytes under
//! each datagram and does nothing else. So UDP is "cheaper" — until a packet
//! is lost. This benchmark puts numbers on the trade: the same payload goes
//! through the same loss three ways,
//!
//! - **udp** — raw datagrams, [`crate::udp::socket`]: nothing repaired;
//! - **reliable** — the reliable channel over UDP, [`crate::udp::reliable`]:
//!   TCP's promise (every message, once, in order) rebuilt by hand;
//! - **tcp** — the kernel's TCP, [`crate::tcp`],
//!
//! at 0 %, 1 %, 5 %, 10 % and 20 % of packets lost in each direction, and
//! for each reports
//!
//! | column | meaning |
//! |---|---|
//! | delivered | payload bytes that arrived ÷ payload bytes the application sent |
//! | goodput | payload bytes delivered per second, first send to last arrival |
//! | overhead | bytes put on the wire by both ends — IP and transport headers, acknowledgements, retransmissions, and packets that were then lost — per payload byte sent |
//! | resent | retransmitted packets per original data packet |
//! | overflow | UDP datagrams lost to a full receive buffer rather than to the link |
//!
//! What it shows (`docs/udp.md` has a full table): raw UDP is cheapest on
//! the wire and loses exactly what the link loses. The reliable channel and
//! TCP deliver everything at every rate, and pay in bytes about alike — a few
//! percent without loss, a third more at 20 % — but very differently in
//! time. TCP is by far the fastest at 0–1 % (SACK and fast retransmit repair a
//! loss within a round trip); from 5 % on it slows sharply, because it takes
//! loss for congestion and backs off, doubling its timeout each time the same
//! segment is lost again. The reliable channel, with a fixed timeout and no
//! congestion control, is slower on a clean link and steadier on a bad one —
//! which is also why it would be a bad citizen on a shared network.
//!
//! # How the loss is made
//!
//! Two mechanisms; the report says which one ran ([`Mechanism`]).
//!
//! **The kernel** ([`Mechanism::Kernel`], preferred; needs root, `ip` and
//! `nft`). The benchmark creates a network namespace of its own
//! ([`Namespace`]): a private network stack with its own loopback, so
//! nothing else on the machine is touched or counted. In it an nftables rule
//! in the **input** hook drops each TCP and UDP packet with the chosen
//! probability (`numgen random mod 10000 < rate·10000 drop`). On loopback
//! every packet passes the input hook once, at the receiving end, so both
//! directions lose at that rate — data and acknowledgements alike — and the
//! sender is told nothing, as with real loss. (An *output*-hook drop would not
//! do: the sender's `send` fails with EPERM, which is not loss.) All three
//! transports go through this same rule.
//!
//! The namespace's loopback has an Ethernet-sized MTU of 1,500 bytes and GSO
//! off, so that a packet is one TCP segment and "10 % of packets" means 10 %
//! of segments, not of 64 KB bursts; [`crate::netns`] says why it takes both.
//!
//! The socket code must run *inside* the namespace, and std cannot move a
//! thread into one (that is setns(2), which std does not wrap). So [`run`]
//! starts its own program again under `ip netns exec NAME`, with the same
//! arguments and an environment variable naming the namespace: the copy
//! reaches [`run`] the same way, sees the variable, measures, writes one line
//! per measurement to its standard output, and exits. The parent reads those
//! lines, forwards the progress, and deletes the namespace — which removes its
//! nftables rules with it — on every path, including errors (a `Drop`). A run
//! that was killed leaves its namespace behind; the next run removes it.
//!
//! **The relay** ([`Mechanism::Relay`], the fallback without root). Raw UDP
//! and the reliable channel go through [`crate::udp::relay`], which drops
//! each datagram, both ways, with the chosen probability from a seeded
//! generator (pass *p*, rate *i* uses seed `1000·p + i`, so a run can be
//! repeated exactly). TCP cannot be measured this way: a relay in user space
//! sees TCP only as a byte stream, after the kernel has already repaired every
//! loss, so there are no packets for it to lose. TCP's rows then say
//! "n/a (needs root for kernel loss)".
//!
//! # How each number is counted
//!
//! - **udp**: 2,000 datagrams (300 in a quick run) of 1,024 bytes, *paced*
//!   at 5,000 a second: raw UDP has no flow control, and a sender faster than
//!   its receiver loses datagrams to the receiver's own buffer, which is not
//!   what is measured here. Its goodput is therefore the
//!   pacing rate times what arrived — the column is there to show the loss,
//!   not a speed. Overhead is (1,024 + 28) ÷ 1,024 per datagram: IPv4 (20)
//!   and UDP (8) headers. Overflow comes from the kernel's own count
//!   (`Udp: RcvbufErrors` in `/proc/net/snmp`, inside the namespace) or, with
//!   the relay, from the relay's counts of what it received and sent.
//! - **reliable**: 1,000 messages (200 quick) of 1,024 bytes, window 64, retransmission timeout
//!   20 ms ([`reliable_config`]). The RTO is a tenth of Linux TCP's minimum
//!   (200 ms): the channel has no fast retransmit, so with TCP's RTO every
//!   loss would stall it for 200 ms and the comparison would be about timers,
//!   not overhead. Overhead comes from both ends' [`Stats`]: every byte
//!   either end sent (data, retransmissions, ACKs, FIN) plus 28 bytes of IPv4
//!   and UDP header per datagram.
//! - **tcp**: one connection, 1 MiB (128 KiB quick) of a pattern written in
//!   64 KiB pieces and checked on arrival, or as much as arrives in 15 s (5 s
//!   quick): at 20 % loss TCP can fall silent for tens of seconds (the
//!   comment on `measure_tcp` says why), and a pass stopped at the cap is
//!   marked `*`.
//!   The loss rule goes in after the handshake and comes out before the close,
//!   so a lost SYN (which costs a whole second) does not swamp the transfer. Overhead is the namespace's `IpExt: OutOctets`
//!   (`/proc/net/netstat`) over the transfer: every IP byte both ends sent —
//!   headers with options, ACKs, retransmissions — exact, since nothing else
//!   runs in the namespace. "resent" is `Tcp: RetransSegs` divided by the
//!   number of full segments the payload needs at an MSS of 1,448 (1,500 −
//!   20 IPv4 − 20 TCP − 12 timestamp option): an estimate, marked `≈`.
//!
//! Every cell is measured in several passes (three; one with
//! [`LossOptions::quick`]), interleaved — pass 1 runs every rate and
//! transport, then pass 2 — and the table quotes the median of each column.
//! The machine is shared, so a single pass can be off by 2×.
//!
//! # Example
//!
//! ```no_run
//! use sockstep::bench::loss::{self, LossOptions, Transport};
//!
//! let options = LossOptions { quick: true, ..LossOptions::default() };
//! let report = loss::run(&options, &mut std::io::stdout())?;
//! let row = report.row(0.10, Transport::Reliable).expect("every rate is measured");
//! assert_eq!(row.measured.as_ref().map(|m| m.delivered), Some(1.0));
//! # Ok::<(), sockstep::Error>(())
//! ```

use std::collections::HashMap;
use std::env;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::bench::harness::json_str;
use crate::error::{Error, ErrorKind};
use crate::netns::{
    COMMAND_TIMEOUT, NFT_CHAIN, NFT_TABLE, Namespace, collect, describe, ip, run_command, tail,
    tool_error, tool_path, wait_until,
};
use crate::readable::grouped;
use crate::step::{Side, Step};
use crate::tcp::{Timeouts, client, server};
use crate::trace::Trace;
use crate::udp::faults::FaultConfig;
use crate::udp::relay::Relay;
use crate::udp::reliable::{Config, FirstPeer, Link, ReliableReceiver, ReliableSender, Stats};
use crate::udp::socket::{self, Bound, Connected};

// --- what is measured ----------------------------------------------------------

/// The loss rates measured: the probability that one packet is dropped, in
/// each direction.
pub const LOSS_RATES: [f64; 5] = [0.0, 0.01, 0.05, 0.10, 0.20];

/// Payload bytes per UDP datagram and per reliable message: under the 1,472
/// that fit one Ethernet-sized packet (1,500 − 20 IPv4 − 8 UDP), so no
/// datagram is fragmented on the 1,500-byte link.
pub const PAYLOAD: usize = 1024;

/// IPv4 (20) and UDP (8) header bytes under every datagram.
const IP_UDP_HEADERS: u64 = 20 + 8;

/// TCP payload per full segment on the namespace's 1,500-byte link: 1,500 −
/// 20 IPv4 − 20 TCP − 12 for the timestamp option Linux sends by default.
const TCP_MSS: u64 = 1_448;

/// Raw UDP datagrams sent per second: slow enough that the receiver keeps up
/// on a busy two-core machine (a 10 ms stall is 50 datagrams; a receiver that
/// does not read at all holds 92 of these in its default 212,992-byte buffer,
/// measured), fast enough to finish 2,000 datagrams in 0.4 s.
const UDP_RATE: u32 = 5_000;

/// How long a receiver keeps listening after the sender is done and nothing
/// more arrives: far more than any datagram spends in flight on loopback or
/// in the relay.
const QUIET: Duration = Duration::from_millis(200);

/// How often a UDP receiver wakes to check whether the sender is done.
const RECV_POLL: Duration = Duration::from_millis(10);

/// TCP write size: 64 KiB pieces.
const TCP_CHUNK: usize = 64 * 1024;

/// TCP read and write timeouts. At 20 % loss each way a segment can be lost
/// several times in a row, and Linux doubles its RTO each time (0.2, 0.4,
/// 0.8, 1.6, 3.2 s…), so a healthy connection can be silent for seconds.
const TCP_TIMEOUTS: Timeouts = Timeouts {
    read: Some(Duration::from_secs(30)),
    write: Some(Duration::from_secs(30)),
};

/// TCP connect timeout (the loss rule is not yet in place at connect).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The reliable channel's settings for this benchmark; both ends use them.
///
/// Window 64 ([`crate::udp::reliable::MAX_WINDOW`]) and an RTO of 20 ms (see
/// the [module docs](self)); 100 retransmissions, so that at 20 % loss each
/// way (a round trip fails 36 % of the time) giving up is out of the
/// question (0.36¹⁰⁰); a 100 ms linger, five RTOs, for the last ACK.
pub fn reliable_config() -> Config {
    Config {
        window: 64,
        rto: Duration::from_millis(20),
        give_up: Duration::from_secs(10),
        max_retransmissions: 100,
        linger: Duration::from_millis(100),
    }
}

/// How much each measurement moves, full or quick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sizes {
    passes: usize,
    udp_datagrams: usize,
    reliable_messages: usize,
    tcp_bytes: usize,
    /// The longest one TCP transfer may take; see [`measure_tcp`].
    tcp_cap: Duration,
}

impl Sizes {
    fn of(options: &LossOptions) -> Sizes {
        if options.quick {
            Sizes {
                passes: 1,
                udp_datagrams: 300,
                reliable_messages: 200,
                tcp_bytes: 128 * 1024,
                tcp_cap: Duration::from_secs(5),
            }
        } else {
            Sizes {
                passes: 3,
                udp_datagrams: 2_000,
                reliable_messages: 1_000,
                tcp_bytes: 1024 * 1024,
                tcp_cap: Duration::from_secs(15),
            }
        }
    }

    fn describe(&self) -> String {
        let config = reliable_config();
        format!(
            "{passes} pass{es}, median of each column; udp {udp} × {payload} B paced at {pace}/s; \
             reliable {rel} × {payload} B (window {window}, RTO {rto:?}); \
             tcp {tcp} B or {cap:?}, whichever comes first",
            passes = self.passes,
            es = if self.passes == 1 { "" } else { "es" },
            udp = grouped(self.udp_datagrams as u64),
            rel = grouped(self.reliable_messages as u64),
            payload = grouped(PAYLOAD as u64),
            pace = grouped(u64::from(UDP_RATE)),
            window = config.window,
            rto = config.rto,
            tcp = grouped(self.tcp_bytes as u64),
            cap = self.tcp_cap,
        )
    }
}

// --- the public face: options, report, run -----------------------------------------

/// How `sockstep bench loss` runs.
#[derive(Debug, Clone, Default)]
pub struct LossOptions {
    /// Print the report as JSON (and nothing else) instead of progress and a table.
    pub json: bool,
    /// One pass and small transfers: seconds instead of a minute or two. For tests.
    pub quick: bool,
}

/// What carries the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Raw datagrams: nothing repaired.
    Udp,
    /// The reliable channel over UDP ([`crate::udp::reliable`]).
    Reliable,
    /// The kernel's TCP.
    Tcp,
}

impl Transport {
    /// All three, in table order.
    pub const ALL: [Transport; 3] = [Transport::Udp, Transport::Reliable, Transport::Tcp];

    /// The name in the table and the JSON: `udp`, `reliable`, `tcp`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Reliable => "reliable",
            Transport::Tcp => "tcp",
        }
    }

    fn from_name(name: &str) -> Option<Transport> {
        Transport::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// What loses the packets (see the [module docs](self#how-the-loss-is-made)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// nftables in a network namespace of the benchmark's own: every
    /// transport, TCP included. Needs root, `ip` and `nft`.
    Kernel,
    /// The user-space relay, seeded: UDP and the reliable channel only.
    Relay,
}

impl Mechanism {
    /// `kernel` or `relay`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Kernel => "kernel",
            Mechanism::Relay => "relay",
        }
    }

    /// One sentence: what drops the packets.
    pub fn describe(self) -> &'static str {
        match self {
            Mechanism::Kernel => {
                "kernel: a network namespace of its own, nftables drops each TCP and UDP packet \
                 in the input hook with the given probability (so both directions), \
                 lo MTU 1500 with GSO off"
            }
            Mechanism::Relay => {
                "relay: udp::relay between the ends, seeded, drops each datagram both ways \
                 with the given probability; TCP cannot be made to lose packets in user space"
            }
        }
    }
}

/// The medians of one cell of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Payload bytes that arrived ÷ payload bytes sent (1.0: everything).
    pub delivered: f64,
    /// Payload bytes delivered per second.
    pub goodput: f64,
    /// The slowest pass's goodput. TCP's passes can differ by 20× or more:
    /// one whose losses are all repaired by fast retransmit runs at loopback
    /// speed, one that meets a retransmission timeout waits 200 ms or more.
    pub goodput_min: f64,
    /// The fastest pass's goodput.
    pub goodput_max: f64,
    /// Bytes on the wire, both ends, headers included, per payload byte sent.
    pub overhead: f64,
    /// Retransmitted packets per original data packet; `None` for raw UDP,
    /// which retransmits nothing. For TCP an estimate (see the module docs).
    pub resent: Option<f64>,
    /// Raw UDP only: datagrams lost to a full receive buffer, summed over the
    /// passes. They count in `delivered` (they did not arrive) but were not
    /// lost by the link.
    pub overflow: Option<u64>,
    /// How many passes the medians are taken over.
    pub passes: usize,
    /// TCP only: how many of those passes were stopped at the time cap
    /// (their goodput counts what had arrived by then).
    pub cut: usize,
}

/// One row of the table: one loss rate, one transport.
#[derive(Debug, Clone, PartialEq)]
pub struct LossRow {
    /// The probability of losing a packet, each direction.
    pub loss: f64,
    /// What carried the payload.
    pub transport: Transport,
    /// The numbers, if the cell was measured and every pass succeeded.
    pub measured: Option<Measured>,
    /// Why there are no numbers: "n/a (…)", or the error of a failed pass.
    pub note: Option<String>,
}

/// Everything `sockstep bench loss` found.
#[derive(Debug, Clone, PartialEq)]
pub struct LossReport {
    /// What made the loss.
    pub mechanism: Mechanism,
    /// Why the relay was used instead of the kernel, if it was.
    pub fallback: Option<String>,
    /// Whether this was a quick run.
    pub quick: bool,
    /// Passes per cell.
    pub passes: usize,
    /// Raw UDP datagrams sent per pass, of [`PAYLOAD`] bytes each.
    pub udp_datagrams: usize,
    /// Transfer sizes and settings, in one line.
    pub setup: String,
    /// Cores and kernel, in one line.
    pub machine: String,
    /// One row per loss rate and transport: rates in [`LOSS_RATES`] order,
    /// transports in [`Transport::ALL`] order within each rate.
    pub rows: Vec<LossRow>,
}

/// Runs the benchmark: every loss rate, every transport, several passes;
/// prints progress and then the table to `out` (or, with `json`, only a JSON
/// document), and returns the report.
///
/// As root with `ip` and `nft` installed, the loss is the kernel's, in a
/// network namespace created for the run and deleted after it; otherwise the
/// relay's, and TCP is not measured. See the [module docs](self).
///
/// **This function starts the current program again.** With kernel loss it
/// runs `ip netns exec NAME <this program> <the same arguments>` with the
/// variable `SOCKSTEP_BENCH_LOSS_WORKER` set; in that copy, `run` measures,
/// prints its findings on standard output and ends the process. A program
/// calling `run` must therefore reach it again when started the same way —
/// as `sockstep bench loss` and a test that calls it do.
///
/// # Errors
/// A failure to write to `out`; with kernel loss, a failure of `ip` or `nft`
/// (named, with what it printed) or of the copy inside the namespace
/// ([`ErrorKind::TimedOut`] if it runs far over time). A measurement that
/// fails does not stop the run: its row says why.
pub fn run(options: &LossOptions, out: &mut dyn Write) -> Result<LossReport, Error> {
    if let Some(namespace) = env::var_os(WORKER_ENV) {
        // We are the copy inside the namespace: measure, report, and end here.
        let quick = env::var_os(QUICK_ENV).is_some_and(|v| v == "1");
        let code = match worker(&namespace, quick) {
            Ok(()) => 0,
            Err(e) => {
                emit(&format!("error {}", one_line(&e.to_string())));
                1
            }
        };
        std::process::exit(code);
    }
    let sizes = Sizes::of(options);
    let mut progress = |line: &str| -> Result<(), Error> {
        if !options.json {
            writeln!(out, "{line}").map_err(|e| Error::io(Step::Write, e))?;
        }
        Ok(())
    };
    let (mechanism, fallback) = match Namespace::prerequisites() {
        Ok(()) => (Mechanism::Kernel, None),
        Err(why) => (Mechanism::Relay, Some(why)),
    };
    progress(&format!("loss by {}", mechanism.describe()))?;
    if let Some(why) = &fallback {
        progress(&format!("(not the kernel: {why})"))?;
    }
    let samples = match mechanism {
        Mechanism::Kernel => run_in_namespace(options.quick, &mut progress)?,
        Mechanism::Relay => {
            let mut samples = Vec::new();
            let mut failed_to_print = None;
            measure_all(Mechanism::Relay, &sizes, |sample| {
                if failed_to_print.is_none() {
                    failed_to_print = progress(&sample.progress_line(sizes.passes)).err();
                }
                samples.push(sample);
            });
            if let Some(e) = failed_to_print {
                return Err(e);
            }
            samples
        }
    };
    let report = LossReport {
        mechanism,
        fallback,
        quick: options.quick,
        passes: sizes.passes,
        udp_datagrams: sizes.udp_datagrams,
        setup: sizes.describe(),
        machine: machine(),
        rows: rows(&samples, mechanism),
    };
    let text = if options.json {
        report.json()
    } else {
        format!("\n{}", report.table())
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io(Step::Write, e))?;
    Ok(report)
}

impl LossReport {
    /// The row for `loss` (one of [`LOSS_RATES`]) and `transport`.
    pub fn row(&self, loss: f64, transport: Transport) -> Option<&LossRow> {
        self.rows
            .iter()
            .find(|r| r.loss == loss && r.transport == transport)
    }

    /// The report as a table for people, with a legend.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "loss by: {}", self.mechanism.describe());
        if let Some(why) = &self.fallback {
            let _ = writeln!(t, "         (not the kernel: {why})");
        }
        let _ = writeln!(t, "setup:   {}", self.setup);
        let _ = writeln!(t, "machine: {}", self.machine);
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "{:>5}  {:<9} {:>9} {:>12} {:>7} {:>9} {:>8} {:>9}",
            "loss", "transport", "delivered", "goodput", "spread", "overhead", "resent", "overflow"
        );
        for row in &self.rows {
            let loss = format!("{}%", percent(row.loss, 0));
            let Some(m) = &row.measured else {
                let note = row.note.as_deref().unwrap_or("not measured");
                let _ = writeln!(t, "{loss:>5}  {:<9} {note}", row.transport.name());
                continue;
            };
            let resent = match (m.resent, row.transport) {
                (None, _) => "—".to_string(),
                (Some(r), Transport::Tcp) => format!("≈{}%", percent(r, 1)),
                (Some(r), _) => format!("{}%", percent(r, 1)),
            };
            let overflow = m.overflow.map_or("—".to_string(), |n| n.to_string());
            let cut = if m.cut > 0 { "*" } else { " " };
            let spread = if m.passes > 1 && m.goodput_min > 0.0 {
                format!("×{:.1}", m.goodput_max / m.goodput_min)
            } else {
                "—".to_string()
            };
            let _ = writeln!(
                t,
                "{loss:>5}  {:<9} {:>9} {:>12}{cut}{spread:>7} {:>9.3} {:>8} {:>9}",
                row.transport.name(),
                format!("{}%", percent(m.delivered, 1)),
                rate(m.goodput),
                m.overhead,
                resent,
                overflow,
            );
        }
        let _ = writeln!(t);
        t.push_str(LEGEND);
        if self
            .rows
            .iter()
            .flat_map(|r| &r.measured)
            .any(|m| m.cut > 0)
        {
            t.push_str(CUT_LEGEND);
        }
        t
    }

    /// The report as one JSON object (hand-written: the crate has no
    /// dependencies). Numbers are plain JSON numbers; `null` where a value
    /// does not apply.
    pub fn json(&self) -> String {
        let mut j = String::from("{\n");
        let _ = writeln!(j, "  \"benchmark\": \"loss\",");
        let _ = writeln!(j, "  \"mechanism\": {},", json_str(self.mechanism.name()));
        let _ = writeln!(
            j,
            "  \"mechanism_detail\": {},",
            json_str(self.mechanism.describe())
        );
        let _ = writeln!(
            j,
            "  \"fallback\": {},",
            self.fallback.as_deref().map_or("null".into(), json_str)
        );
        let _ = writeln!(j, "  \"quick\": {},", self.quick);
        let _ = writeln!(j, "  \"passes\": {},", self.passes);
        let _ = writeln!(j, "  \"udp_datagrams\": {},", self.udp_datagrams);
        let _ = writeln!(j, "  \"setup\": {},", json_str(&self.setup));
        let _ = writeln!(j, "  \"machine\": {},", json_str(&self.machine));
        j.push_str("  \"rows\": [\n");
        for (i, row) in self.rows.iter().enumerate() {
            let m = row.measured.as_ref();
            let _ = write!(
                j,
                "    {{\"loss\": {}, \"transport\": {}, \"delivered\": {}, \
                 \"goodput_bytes_per_second\": {}, \"goodput_min\": {}, \"goodput_max\": {}, \
                 \"overhead\": {}, \"resent\": {}, \
                 \"overflow\": {}, \"passes\": {}, \"cut\": {}, \"note\": {}}}",
                json_num(Some(row.loss)),
                json_str(row.transport.name()),
                json_num(m.map(|m| m.delivered)),
                json_num(m.map(|m| m.goodput)),
                json_num(m.map(|m| m.goodput_min)),
                json_num(m.map(|m| m.goodput_max)),
                json_num(m.map(|m| m.overhead)),
                json_num(m.and_then(|m| m.resent)),
                m.and_then(|m| m.overflow)
                    .map_or("null".into(), |n| n.to_string()),
                m.map_or(0, |m| m.passes),
                m.map_or(0, |m| m.cut),
                row.note.as_deref().map_or("null".into(), json_str),
            );
            j.push_str(if i + 1 < self.rows.len() { ",\n" } else { "\n" });
        }
        j.push_str("  ]\n}\n");
        j
    }
}

/// What the columns mean, under the table.
const LEGEND: &str = "\
delivered: payload that arrived / payload sent.  goodput: payload delivered per second,
median of the passes (udp: paced, so the pacing rate times what arrived).  spread: the
fastest pass's goodput / the slowest's.  overhead: bytes on the wire, both ends, IP
headers, ACKs and retransmissions included, per payload byte.  resent: retransmitted
packets per original data packet (tcp: estimated from RetransSegs).  overflow: udp
datagrams lost to a full receive buffer, not to the link (all passes).
";

/// Under the legend when a TCP transfer was stopped at the time cap.
const CUT_LEGEND: &str =
    "*: in some passes TCP was stopped at the time cap; its goodput counts what had arrived.
";

// --- kernel loss: a namespace, nftables, and a copy of this program inside ---------

/// The environment variable that makes [`run`] the worker inside a
/// namespace; its value is the namespace's name.
const WORKER_ENV: &str = "SOCKSTEP_BENCH_LOSS_WORKER";

/// `1` for a quick run, passed to the worker.
const QUICK_ENV: &str = "SOCKSTEP_BENCH_LOSS_QUICK";

/// Every line the worker writes for the parent starts with this, so that
/// whatever else the program prints (a test harness's "running 1 test") is
/// told apart.
const MARKER: &str = "sockstep-bench-loss:";

/// The names of the benchmark's namespaces: `sockstep-bench-PID-N`.
const NAMESPACE_PREFIX: &str = "sockstep-bench";

/// The longest the worker may run: far over the ~2 minutes of a full run on
/// two cores, and the 20 or so seconds of a quick one.
fn worker_timeout(quick: bool) -> Duration {
    Duration::from_secs(if quick { 180 } else { 900 })
}

/// The parent's half: makes the namespace, starts the worker in it, forwards
/// its progress, collects its samples.
fn run_in_namespace(
    quick: bool,
    progress: &mut dyn FnMut(&str) -> Result<(), Error>,
) -> Result<Vec<Sample>, Error> {
    let namespace = Namespace::create(NAMESPACE_PREFIX)?;
    let program = env::current_exe().map_err(|e| tool_error("find this program".into(), e))?;
    let mut command = namespace.command(&program);
    command
        .args(env::args_os().skip(1))
        .env(WORKER_ENV, namespace.name())
        .env(QUICK_ENV, if quick { "1" } else { "0" })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = describe(&command);
    let mut child = command
        .spawn()
        .map_err(|e| tool_error(format!("start `{what}`"), e))?;
    let stderr = collect(child.stderr.take());
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take();
    let reader = thread::Builder::new()
        .name("sockstep-bench-worker-out".into())
        .spawn(move || {
            if let Some(stdout) = stdout {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if lines_tx.send(line).is_err() {
                        break;
                    }
                }
            }
        })
        .map_err(|e| tool_error("start a thread".into(), e))?;

    let passes = Sizes::of(&LossOptions { quick, json: false }).passes;
    let deadline = Instant::now() + worker_timeout(quick);
    let mut samples = Vec::new();
    let mut done = false;
    let mut complaint = None;
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                // The marker may follow other output on the same line (a test
                // harness prints "test name ... " before the test's own output).
                let Some((_, said)) = line.split_once(MARKER) else {
                    continue;
                };
                let said = said.trim();
                if let Some(sample) = Sample::parse(said) {
                    progress(&sample.progress_line(passes))?;
                    samples.push(sample);
                } else if said == "done" {
                    done = true;
                } else if let Some(text) = said.strip_prefix("error ") {
                    complaint = Some(text.to_string());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                break Err(
                    Error::new(Step::Serve, ErrorKind::TimedOut).with_io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("`{what}` ran over {:?}; stopped it", worker_timeout(quick)),
                    )),
                );
            }
        }
    };
    if outcome.is_err() {
        // Our own child, by its handle.
        let _ = child.kill();
    }
    let status = wait_until(&mut child, Instant::now() + COMMAND_TIMEOUT);
    let _ = reader.join();
    let stderr = stderr.join().unwrap_or_default();
    outcome?;
    let status = status?;
    if done && status.success() {
        return Ok(samples);
    }
    let why = complaint.unwrap_or_else(|| {
        format!(
            "it exited with {status} without finishing; standard error ended: {}",
            tail(&stderr, 2_000)
        )
    });
    Err(tool_error(
        format!(
            "measure inside namespace {} with `{what}`",
            namespace.name()
        ),
        io::Error::other(why),
    ))
}

/// The worker's half, inside the namespace: checks where it is, measures
/// everything, prints a line per sample and `done`.
fn worker(namespace: &OsStr, quick: bool) -> Result<(), Error> {
    // Never add drop rules to a network stack that is not our namespace's.
    let here = run_command(ip().args(["netns", "identify"]), None)?;
    if OsStr::new(here.trim()) != namespace {
        return Err(tool_error(
            "check the namespace".into(),
            io::Error::other(format!(
                "this process is in namespace {:?}, not {namespace:?}; refusing to touch its firewall",
                here.trim()
            )),
        ));
    }
    let sizes = Sizes::of(&LossOptions { quick, json: false });
    measure_all(Mechanism::Kernel, &sizes, |sample| emit(&sample.to_line()));
    emit("done");
    Ok(())
}

/// Writes one marked line for the parent, at once.
fn emit(line: &str) {
    let mut stdout = io::stdout().lock();
    // The parent reading our output is gone only if it was killed; nothing to do then.
    let _ = writeln!(stdout, "{MARKER} {line}");
    let _ = stdout.flush();
}

/// An error's text on one line (its hint is on a second), for the worker's lines.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

// --- every cell, every pass ----------------------------------------------------------

/// One pass of one cell.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    pass: usize,
    loss: f64,
    transport: Transport,
    result: Result<Metrics, String>,
}

/// What one pass of one cell measured.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Metrics {
    delivered: f64,
    goodput: f64,
    overhead: f64,
    resent: Option<f64>,
    overflow: Option<u64>,
    /// TCP only: the transfer was stopped at the time cap.
    cut: bool,
}

/// Measures every cell `sizes.passes` times, pass after pass, and hands each
/// sample to `record` as soon as it is taken. TCP only with kernel loss.
fn measure_all(mechanism: Mechanism, sizes: &Sizes, mut record: impl FnMut(Sample)) {
    for pass in 0..sizes.passes {
        for (i, &loss) in LOSS_RATES.iter().enumerate() {
            for transport in Transport::ALL {
                let path = match mechanism {
                    Mechanism::Kernel => LossPath::Kernel { loss },
                    Mechanism::Relay if transport == Transport::Tcp => continue,
                    Mechanism::Relay => LossPath::Relay {
                        loss,
                        seed: 1000 * pass as u64 + i as u64,
                    },
                };
                let result = match transport {
                    Transport::Udp => measure_udp(&path, sizes.udp_datagrams),
                    Transport::Reliable => measure_reliable(&path, sizes.reliable_messages),
                    Transport::Tcp => measure_tcp(&path, sizes.tcp_bytes, sizes.tcp_cap),
                };
                // Whatever happened, the next measurement starts without loss.
                let stopped = path.stop();
                let result = result.and_then(|m| stopped.map(|()| m));
                record(Sample {
                    pass,
                    loss,
                    transport,
                    result: result.map_err(|e| one_line(&e.to_string())),
                });
            }
        }
    }
}

impl Sample {
    /// The line the worker sends: `sample pass=0 loss=0.1 transport=udp delivered=… …`
    /// or `failed pass=0 loss=0.1 transport=tcp error=…` (the error to the end of the line).
    fn to_line(&self) -> String {
        let head = format!(
            "pass={} loss={} transport={}",
            self.pass,
            self.loss,
            self.transport.name()
        );
        match &self.result {
            Ok(m) => format!(
                "sample {head} delivered={} goodput={} overhead={} resent={} overflow={} cut={}",
                m.delivered,
                m.goodput,
                m.overhead,
                m.resent.map_or("-".into(), |r| r.to_string()),
                m.overflow.map_or("-".into(), |n| n.to_string()),
                u8::from(m.cut),
            ),
            Err(e) => format!("failed {head} error={e}"),
        }
    }

    /// Reads a line written by [`Sample::to_line`]; `None` if it is not one.
    fn parse(line: &str) -> Option<Sample> {
        let (kind, rest) = line.split_once(' ')?;
        let (fields, error) = match kind {
            "sample" => (rest, None),
            "failed" => {
                let (fields, error) = rest.split_once(" error=")?;
                (fields, Some(error.to_string()))
            }
            _ => return None,
        };
        let fields: HashMap<&str, &str> = fields
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .collect();
        let number = |key: &str| fields.get(key)?.parse::<f64>().ok();
        let optional = |key: &str| match fields.get(key) {
            Some(&"-") => Some(None),
            Some(v) => v.parse::<f64>().ok().map(Some),
            None => None,
        };
        let result = match error {
            Some(e) => Err(e),
            None => Ok(Metrics {
                delivered: number("delivered")?,
                goodput: number("goodput")?,
                overhead: number("overhead")?,
                resent: optional("resent")?,
                overflow: optional("overflow")?.map(|n| n as u64),
                cut: number("cut")? != 0.0,
            }),
        };
        Some(Sample {
            pass: fields.get("pass")?.parse().ok()?,
            loss: number("loss")?,
            transport: Transport::from_name(fields.get("transport")?)?,
            result,
        })
    }

    /// One line of progress for people.
    fn progress_line(&self, passes: usize) -> String {
        let head = format!(
            "pass {}/{passes}  loss {:>3}%  {:<9}",
            self.pass + 1,
            percent(self.loss, 0),
            self.transport.name()
        );
        match &self.result {
            Ok(m) => format!(
                "{head} delivered {:>6}%  goodput {:>12}  overhead {:.3}{}",
                percent(m.delivered, 1),
                rate(m.goodput),
                m.overhead,
                if m.cut { "  (cut at the time cap)" } else { "" }
            ),
            Err(e) => format!("{head} failed: {e}"),
        }
    }
}

/// Groups samples into rows and takes medians.
fn rows(samples: &[Sample], mechanism: Mechanism) -> Vec<LossRow> {
    let mut rows = Vec::new();
    for &loss in &LOSS_RATES {
        for transport in Transport::ALL {
            let mut row = LossRow {
                loss,
                transport,
                measured: None,
                note: None,
            };
            if mechanism == Mechanism::Relay && transport == Transport::Tcp {
                row.note = Some("n/a (needs root for kernel loss)".into());
                rows.push(row);
                continue;
            }
            let mine: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.loss == loss && s.transport == transport)
                .collect();
            let failure = mine.iter().find_map(|s| {
                s.result
                    .as_ref()
                    .err()
                    .map(|e| format!("failed in pass {}: {e}", s.pass + 1))
            });
            let ok: Vec<&Metrics> = mine.iter().filter_map(|s| s.result.as_ref().ok()).collect();
            if let Some(failure) = failure {
                row.note = Some(failure);
            } else if ok.is_empty() {
                row.note = Some("not measured".into());
            } else {
                let resent: Vec<f64> = ok.iter().filter_map(|m| m.resent).collect();
                let goodputs: Vec<f64> = ok.iter().map(|m| m.goodput).collect();
                row.measured = Some(Measured {
                    delivered: median(ok.iter().map(|m| m.delivered).collect()),
                    goodput: median(goodputs.clone()),
                    goodput_min: goodputs.iter().copied().fold(f64::INFINITY, f64::min),
                    goodput_max: goodputs.iter().copied().fold(0.0, f64::max),
                    overhead: median(ok.iter().map(|m| m.overhead).collect()),
                    resent: (!resent.is_empty()).then(|| median(resent)),
                    overflow: ok
                        .iter()
                        .map(|m| m.overflow)
                        .sum::<Option<u64>>()
                        .filter(|_| transport == Transport::Udp),
                    passes: ok.len(),
                    cut: ok.iter().filter(|m| m.cut).count(),
                });
            }
            rows.push(row);
        }
    }
    rows
}

/// The median; of an even count, the mean of the middle two. 0 when empty.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

// --- what loses the packets of one measurement -----------------------------------

/// Where one measurement's loss comes from.
#[derive(Debug, Clone, Copy)]
enum LossPath {
    /// The namespace's nftables chain: [`LossPath::start`] adds the rule.
    Kernel { loss: f64 },
    /// A relay the measurement starts between its ends.
    Relay { loss: f64, seed: u64 },
}

impl LossPath {
    /// Kernel: from now on, drop every TCP and UDP packet in the namespace
    /// with the chosen probability. The relay loses from its start.
    fn start(&self) -> Result<(), Error> {
        let LossPath::Kernel { loss } = *self else {
            return Ok(());
        };
        // Basis points, so that any rate down to 0.01 % is exact.
        let basis_points = (loss * 10_000.0).round() as u32;
        let mut script = format!("flush chain {NFT_TABLE} {NFT_CHAIN}\n");
        if basis_points > 0 {
            let _ = writeln!(
                script,
                "add rule {NFT_TABLE} {NFT_CHAIN} meta l4proto {{ tcp, udp }} \
                 numgen random mod 10000 < {basis_points} drop"
            );
        }
        nft_here(&script)
    }

    /// Kernel: drop nothing any more. Safe to call twice.
    fn stop(&self) -> Result<(), Error> {
        match self {
            LossPath::Kernel { .. } => nft_here(&format!("flush chain {NFT_TABLE} {NFT_CHAIN}\n")),
            LossPath::Relay { .. } => Ok(()),
        }
    }

    /// A relay to `upstream` losing at this path's rate, or `None` for the kernel.
    /// `symmetric`: lose on the way back too (for ACKs); otherwise only on the way there.
    fn relay(&self, upstream: SocketAddr, symmetric: bool) -> Result<Option<Relay>, Error> {
        let LossPath::Relay { loss, seed } = *self else {
            return Ok(None);
        };
        let faults = FaultConfig {
            loss,
            seed,
            ..FaultConfig::default()
        };
        let relay = if symmetric {
            Relay::start_symmetric(any(), upstream, faults, &Trace::off())?
        } else {
            Relay::start(
                any(),
                upstream,
                faults,
                FaultConfig::default(),
                &Trace::off(),
            )?
        };
        Ok(Some(relay))
    }

    fn is_kernel(&self) -> bool {
        matches!(self, LossPath::Kernel { .. })
    }
}

/// Runs an nftables script in this process's own namespace (the worker's).
fn nft_here(script: &str) -> Result<(), Error> {
    let nft = tool_path("nft").unwrap_or_else(|| PathBuf::from("nft"));
    run_command(Command::new(nft).args(["-f", "-"]), Some(script)).map(drop)
}

// --- one measurement per transport ------------------------------------------------

/// Raw UDP: `count` paced datagrams one way; what arrives.
fn measure_udp(path: &LossPath, count: usize) -> Result<Metrics, Error> {
    let receiver = socket::socket(any(), Side::Server, &Trace::off()).bind()?;
    receiver.set_read_timeout(Some(RECV_POLL))?;
    let relay = path.relay(receiver.local_addr(), false)?;
    let target = relay
        .as_ref()
        .map_or(receiver.local_addr(), Relay::local_addr);
    let sender = socket::socket(any(), Side::Client, &Trace::off())
        .bind()?
        .connect(target)?;
    let before = path.is_kernel().then(NetCounters::read).transpose()?;
    path.start()?;

    let sending_done = Arc::new(AtomicBool::new(false));
    let receiving = {
        let sending_done = sending_done.clone();
        thread::Builder::new()
            .name("sockstep-bench-udp-recv".into())
            .spawn(move || receive_until_quiet(&receiver, &sending_done))
            .map_err(|e| tool_error("start a thread".into(), e))?
    };
    let started = Instant::now();
    let interval = Duration::from_secs(1) / UDP_RATE;
    let mut datagram = vec![0xA5u8; PAYLOAD];
    let mut sent = Ok(());
    for i in 0..count {
        // Keep to the schedule: datagram i leaves at started + i × interval,
        // sleeping only when more than a millisecond ahead (shorter sleeps
        // oversleep, and the schedule catches up after them).
        let due = started + interval * i as u32;
        let ahead = due.saturating_duration_since(Instant::now());
        if ahead > Duration::from_millis(1) {
            thread::sleep(ahead);
        }
        datagram[..8].copy_from_slice(&(i as u64).to_be_bytes());
        sent = sender.send(&datagram);
        if sent.is_err() {
            break;
        }
    }
    sending_done.store(true, Ordering::SeqCst);
    let received = receiving
        .join()
        .map_err(|_| tool_error("receive".into(), io::Error::other("the receiver panicked")))?;
    path.stop()?;
    sent?;
    let (arrived, last) = received?;

    let overflow = match (&relay, before) {
        (Some(relay), _) => {
            let counts = relay.counts();
            let way = counts.client_to_upstream;
            // Into the relay's listening socket's buffer, then into ours.
            (count as u64).saturating_sub(way.faults.received)
                + way.sent.saturating_sub(arrived as u64)
        }
        (None, Some(before)) => NetCounters::read()?.delta(&before, "Udp", "RcvbufErrors"),
        (None, None) => 0,
    };
    drop(relay);
    let seconds = last.map_or(0.0, |last| last.duration_since(started).as_secs_f64());
    Ok(Metrics {
        delivered: arrived as f64 / count as f64,
        goodput: per_second((arrived * PAYLOAD) as f64, seconds),
        overhead: (PAYLOAD as u64 + IP_UDP_HEADERS) as f64 / PAYLOAD as f64,
        resent: None,
        overflow: Some(overflow),
        cut: false,
    })
}

/// Receives datagrams until the sender is done and nothing has arrived for
/// [`QUIET`]; returns how many arrived and when the last one did.
fn receive_until_quiet(
    receiver: &Bound,
    sending_done: &AtomicBool,
) -> Result<(usize, Option<Instant>), Error> {
    let mut buf = vec![0u8; PAYLOAD];
    let mut arrived = 0;
    let mut last = None;
    let mut done_at = None;
    loop {
        match receiver.recv_from(&mut buf) {
            Ok(_) => {
                arrived += 1;
                last = Some(Instant::now());
            }
            Err(e) if *e.kind() == ErrorKind::TimedOut => {
                if sending_done.load(Ordering::SeqCst) {
                    let done_at = *done_at.get_or_insert_with(Instant::now);
                    let heard = last.map_or(done_at, |last: Instant| last.max(done_at));
                    if heard.elapsed() >= QUIET {
                        return Ok((arrived, last));
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The reliable channel: `count` messages, every one checked on arrival.
fn measure_reliable(path: &LossPath, count: usize) -> Result<Metrics, Error> {
    let a = socket::socket(any(), Side::Client, &Trace::off()).bind()?;
    let b = socket::socket(any(), Side::Server, &Trace::off()).bind()?;
    let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    match path.relay(b_addr, true)? {
        // The relay's socket for our sender has a port we learn only when its
        // first datagram arrives, so the receiving end learns its peer then.
        Some(relay) => {
            let sender = a.connect(relay.local_addr())?;
            let metrics = reliable_transfer(path, sender, FirstPeer::new(b), count);
            drop(relay);
            metrics
        }
        None => {
            let sender = a.connect(b_addr)?;
            reliable_transfer(path, sender, b.connect(a_addr)?, count)
        }
    }
}

/// Message `i`: its number, then a filler byte that depends on it.
fn message(i: usize) -> Vec<u8> {
    let mut m = vec![i as u8; PAYLOAD];
    m[..8].copy_from_slice(&(i as u64).to_be_bytes());
    m
}

fn reliable_transfer(
    path: &LossPath,
    sender_link: Connected,
    receiver_link: impl Link,
    count: usize,
) -> Result<Metrics, Error> {
    let config = reliable_config();
    let mut receiver = ReliableReceiver::new(receiver_link, config)?;
    path.start()?;
    let started = Instant::now();
    let sending = thread::Builder::new()
        .name("sockstep-bench-reliable-send".into())
        .spawn(move || -> Result<Stats, Error> {
            let mut sender = ReliableSender::new(sender_link, config)?;
            for i in 0..count {
                sender.send(&message(i))?;
            }
            sender.finish()
        })
        .map_err(|e| tool_error("start a thread".into(), e))?;
    let mut delivered = 0;
    let received = loop {
        match receiver.recv() {
            Ok(Some(m)) if m == message(delivered) => delivered += 1,
            Ok(Some(_)) => {
                break Err(Error::new(
                    Step::RecvFrom,
                    ErrorKind::InvalidInput(format!(
                        "message {delivered} arrived wrong or out of order"
                    )),
                ));
            }
            Ok(None) => break Ok(started.elapsed()),
            Err(e) => break Err(e),
        }
    };
    // Linger for a lost last ACK only if the stream ended.
    let receiver_stats = match &received {
        Ok(_) => receiver.close(),
        Err(_) => *receiver.stats(),
    };
    // Cannot hang: the sender gives up after `give_up` without progress.
    let sent = sending
        .join()
        .map_err(|_| tool_error("send".into(), io::Error::other("the sender panicked")))?;
    let elapsed = received?;
    let sender_stats = sent?;
    if delivered != count {
        return Err(Error::new(
            Step::RecvFrom,
            ErrorKind::InvalidInput(format!("{delivered} of {count} messages delivered")),
        ));
    }
    let datagrams =
        sender_stats.data_sent + sender_stats.retransmissions + receiver_stats.acks_sent;
    let wire =
        sender_stats.wire_bytes_sent + receiver_stats.wire_bytes_sent + IP_UDP_HEADERS * datagrams;
    Ok(Metrics {
        delivered: delivered as f64 / count as f64,
        goodput: per_second((delivered * PAYLOAD) as f64, elapsed.as_secs_f64()),
        overhead: wire as f64 / sender_stats.payload_bytes as f64,
        resent: Some(sender_stats.retransmissions as f64 / sender_stats.data_sent as f64),
        overflow: None,
        cut: false,
    })
}

/// TCP, kernel loss only: `bytes` of a pattern one way, checked on arrival,
/// or as much as arrives within `cap`.
///
/// Why a cap: at 20 % loss each way, a segment or its ACK is lost 36 % of the
/// time, and Linux doubles its retransmission timeout after each loss of the
/// same segment (0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8 s…). Over a megabyte,
/// one segment unlucky six or seven times in a row is likely enough, and the
/// connection then sits silent for tens of seconds — correct TCP, and the
/// most striking result of the benchmark, but not something to wait for
/// three times over. At the cap the reader stops; goodput is what arrived by
/// then, and the row is marked.
fn measure_tcp(path: &LossPath, bytes: usize, cap: Duration) -> Result<Metrics, Error> {
    let listening = server::socket(any(), &Trace::off()).bind()?.listen(1);
    let mut writer = client::socket(listening.local_addr(), &Trace::off())
        .timeouts(TCP_TIMEOUTS)
        .connect(CONNECT_TIMEOUT)?;
    // The connection is already in the queue: accept returns at once.
    let mut reader = listening.accept()?;
    reader.set_timeouts(TCP_TIMEOUTS)?;
    let before = NetCounters::read()?;
    path.start()?;
    let started = Instant::now();
    let expected = Arc::new(pattern_block());
    let writing = {
        let expected = expected.clone();
        thread::Builder::new()
            .name("sockstep-bench-tcp-write".into())
            .spawn(move || -> Result<(), Error> {
                let mut written = 0;
                while written < bytes {
                    let n = TCP_CHUNK.min(bytes - written);
                    writer.write_all(&expected[written % PATTERN_PERIOD..][..n])?;
                    written += n;
                }
                writer.shutdown_write()
            })
            .map_err(|e| tool_error("start a thread".into(), e))?
    };
    reader.set_deadline(Some(started + cap));
    let mut buf = vec![0u8; TCP_CHUNK];
    let mut arrived = 0;
    let read = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok((Instant::now(), false)),
            Ok(n) if buf[..n] == expected[arrived % PATTERN_PERIOD..][..n] => arrived += n,
            Ok(_) => {
                break Err(Error::new(
                    Step::Read,
                    ErrorKind::InvalidInput(format!(
                        "the stream differs from what was written near byte {arrived}"
                    )),
                ));
            }
            Err(e) if *e.kind() == ErrorKind::TimedOut && started.elapsed() >= cap => {
                break Ok((started + cap, true));
            }
            Err(e) => break Err(e),
        }
    };
    let after = NetCounters::read()?;
    // Stop the loss before closing, so the close is not lost: then the reader's
    // close (a reset, if it stopped early with data unread) reaches the writer
    // at once and ends its wait.
    path.stop()?;
    drop(reader);
    // Cannot hang: every write has a timeout.
    let wrote = writing
        .join()
        .map_err(|_| tool_error("write".into(), io::Error::other("the writer panicked")))?;
    let (finished, cut) = read?;
    if !cut {
        wrote?;
        if arrived != bytes {
            return Err(Error::new(
                Step::Read,
                ErrorKind::InvalidInput(format!("{arrived} of {bytes} bytes arrived")),
            ));
        }
    }
    let seconds = finished.duration_since(started).as_secs_f64();
    let segments = (arrived as u64).div_ceil(TCP_MSS).max(1);
    Ok(Metrics {
        // What arrived is intact and in order, and nothing is ever lost for
        // good: TCP delivers it all, or (cut) is still delivering the rest.
        delivered: 1.0,
        goodput: per_second(arrived as f64, seconds),
        overhead: after.delta(&before, "IpExt", "OutOctets") as f64 / arrived.max(1) as f64,
        resent: Some(after.delta(&before, "Tcp", "RetransSegs") as f64 / segments as f64),
        overflow: None,
        cut,
    })
}

/// The TCP stream repeats 0, 1, …, 250. 251 is prime, so the pattern never
/// lines up with a write or read size, and a byte out of place is caught.
const PATTERN_PERIOD: usize = 251;

/// The stream's bytes from any offset: a slice of this starting at `offset %
/// PATTERN_PERIOD` is the next [`TCP_CHUNK`] bytes. Writing and checking are
/// then slice copies and compares (memcmp), which cost nothing next to the
/// network even in a debug build.
fn pattern_block() -> Vec<u8> {
    (0..TCP_CHUNK + PATTERN_PERIOD)
        .map(|i| (i % PATTERN_PERIOD) as u8)
        .collect()
}

/// `amount` per second, 0 for no time at all.
fn per_second(amount: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { amount / seconds } else { 0.0 }
}

fn any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

// --- the kernel's counters: /proc/net/snmp and /proc/net/netstat --------------------

/// A snapshot of the network stack's counters, as `group.name` → value.
/// `/proc/net` shows the namespace of the process that reads it, so inside
/// the benchmark's namespace these count its traffic and nothing else.
struct NetCounters(HashMap<String, i64>);

impl NetCounters {
    fn read() -> Result<NetCounters, Error> {
        let mut counters = HashMap::new();
        for file in ["/proc/net/snmp", "/proc/net/netstat"] {
            let text =
                fs::read_to_string(file).map_err(|e| tool_error(format!("read {file}"), e))?;
            // Pairs of lines: "Tcp: RtoAlgorithm RtoMin …" then "Tcp: 1 200 …".
            let lines: Vec<&str> = text.lines().collect();
            for pair in lines.chunks(2) {
                let [names, values] = pair else { continue };
                let mut names = names.split_whitespace();
                let mut values = values.split_whitespace();
                let (Some(group), Some(_)) = (names.next(), values.next()) else {
                    continue;
                };
                let group = group.trim_end_matches(':');
                for (name, value) in names.zip(values) {
                    if let Ok(value) = value.parse() {
                        counters.insert(format!("{group}.{name}"), value);
                    }
                }
            }
        }
        Ok(NetCounters(counters))
    }

    /// How much `group.name` grew since `before` (0 if it is missing).
    fn delta(&self, before: &NetCounters, group: &str, name: &str) -> u64 {
        let key = format!("{group}.{name}");
        let get = |c: &NetCounters| c.0.get(&key).copied().unwrap_or(0);
        u64::try_from(get(self) - get(before)).unwrap_or(0)
    }
}

// --- numbers for people and for JSON ---------------------------------------------------

/// Cores and kernel, e.g. "2 cores, Linux 6.1.0-18-amd64".
fn machine() -> String {
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, Linux {}", kernel.trim())
}

/// `fraction` as a percentage with `decimals` decimals, trailing zeros kept
/// only when decimals are asked for: 0.1 → "10", 0.9995 → "100.0" (with 1).
fn percent(fraction: f64, decimals: usize) -> String {
    format!("{:.*}", decimals, fraction * 100.0)
}

/// Bytes per second as MB/s or kB/s (decimal units, like network speeds).
fn rate(bytes_per_second: f64) -> String {
    if bytes_per_second >= 1e6 {
        format!("{:.2} MB/s", bytes_per_second / 1e6)
    } else {
        format!("{:.1} kB/s", bytes_per_second / 1e3)
    }
}

/// A JSON number, or `null` for none (and for NaN or infinity, which JSON lacks).
fn json_num(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_survives_the_trip_through_the_workers_line() {
        let samples = [
            Sample {
                pass: 2,
                loss: 0.1,
                transport: Transport::Udp,
                result: Ok(Metrics {
                    delivered: 0.9015,
                    goodput: 4_612_345.25,
                    overhead: 1.02734375,
                    resent: None,
                    overflow: Some(3),
                    cut: false,
                }),
            },
            Sample {
                pass: 0,
                loss: 0.2,
                transport: Transport::Tcp,
                result: Err("read() failed: timed out hint: the peer went silent".into()),
            },
        ];
        for sample in samples {
            assert_eq!(Sample::parse(&sample.to_line()), Some(sample));
        }
        assert_eq!(Sample::parse("running 1 test"), None);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn a_failed_pass_makes_the_row_say_why() {
        let ok = Metrics {
            delivered: 1.0,
            goodput: 1e6,
            overhead: 1.05,
            resent: Some(0.1),
            overflow: None,
            cut: true,
        };
        let samples = [
            Sample {
                pass: 0,
                loss: 0.05,
                transport: Transport::Reliable,
                result: Ok(ok),
            },
            Sample {
                pass: 1,
                loss: 0.05,
                transport: Transport::Reliable,
                result: Err("timed out".into()),
            },
        ];
        let rows = rows(&samples, Mechanism::Relay);
        assert_eq!(rows.len(), LOSS_RATES.len() * Transport::ALL.len());
        let row = rows
            .iter()
            .find(|r| r.loss == 0.05 && r.transport == Transport::Reliable)
            .unwrap();
        assert_eq!(row.measured, None);
        assert_eq!(row.note.as_deref(), Some("failed in pass 2: timed out"));
        let tcp = rows.iter().find(|r| r.transport == Transport::Tcp).unwrap();
        assert!(tcp.note.as_deref().unwrap().contains("needs root"));
    }

    #[test]
    fn json_escapes_and_has_no_nan() {
        assert_eq!(json_str("a \"b\"\n\\"), r#""a \"b\"\n\\""#);
        assert_eq!(json_num(Some(f64::NAN)), "null");
        assert_eq!(json_num(Some(0.0)), "0");
        assert_eq!(json_num(Some(0.05)), "0.05");
    }

    #[test]
    fn relay_measurements_of_udp_and_the_reliable_channel() {
        let lossless = LossPath::Relay { loss: 0.0, seed: 1 };
        let udp = measure_udp(&lossless, 200).unwrap();
        assert_eq!(udp.delivered + udp.overflow.unwrap() as f64 / 200.0, 1.0);
        assert!((udp.overhead - 1052.0 / 1024.0).abs() < 1e-12);
        let lossy = LossPath::Relay { loss: 0.2, seed: 7 };
        let reliable = measure_reliable(&lossy, 100).unwrap();
        assert_eq!(reliable.delivered, 1.0);
        assert!(reliable.resent.unwrap() > 0.0, "{reliable:?}");
        assert!(reliable.overhead > 1.0);
    }
}
