//! `sockstep walk udp`: the datagram socket's life on loopback, then a link that loses.
//!
//! **Part 1, the lifecycle**, runs both sides on this one thread, and can: with
//! no connection there is nothing to wait for, so a datagram the client sends
//! simply waits in the server's receive buffer until the server's
//! `recv_from()` takes it. The trace therefore prints in exactly the order
//! things happened. The server binds; the client binds too (port 0, said out
//! loud: every socket has a port); a datagram goes each way with `send_to()` and
//! `recv_from()`; the client `connect()`s — and the server, listening, hears
//! nothing, because nothing is sent; `send()`/`recv()` follow. Then the limits,
//! live: 65,507 bytes arrive whole, 65,508 are refused with an error that says
//! so, and a datagram larger than a deliberately small receive buffer is
//! reported as cut, never passed on short.
//!
//! **Part 2, the lossy link**, puts [`udp::relay`](crate::udp::relay) with a fixed
//! seed ([`lossy_link`]) between a client and a [`Recorder`] server, sends
//! [`DATAGRAMS`] numbered datagrams through it, and compares what arrived with
//! what was sent. Every `send_to()` returns `Ok`; a tenth of the datagrams
//! never arrive anyway. That is the seed's sentence — 데이터가 손실되도 오류가
//! 발생하지 않음, a loss raises no error — shown with numbers. Its trace is off
//! (it would be thousands of lines); a summary is printed instead.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::readable::grouped;
use crate::step::Side;
use crate::trace::{Event, Printer, Recorder as EventRecorder, Tee, Trace, Tracer};
use crate::udp::faults::{FaultConfig, REORDER_HOLD};
use crate::udp::handlers::Recorder;
use crate::udp::relay::{DirectionCounts, Relay, RelayCounts};
use crate::udp::socket::{self, MAX_PAYLOAD_V4};
use crate::walk::{SharedOut, WalkOptions};

/// How long any receive in part 1 may block. The datagram is always queued
/// before the call, so this only turns a bug into an error instead of a hang.
const WAIT: Duration = Duration::from_secs(5);

/// How long the server listens right after the client's `connect()`, to show
/// that nothing arrives: on loopback a datagram sent would be there in
/// microseconds, so a tenth of a second of silence is conclusive.
const QUIET: Duration = Duration::from_millis(100);

/// The deliberately small receive buffer of the truncation step …
const SMALL_BUFFER: usize = 16;

/// … and the datagram that does not fit it.
const TOO_LONG_FOR_IT: &[u8] = b"this datagram has 48 bytes; the buffer has 16..";

/// How many numbered datagrams part 2 sends through the relay.
pub const DATAGRAMS: u32 = 1_000;

/// Time between two sends in part 2. Unpaced, 1,000 datagrams would overflow a
/// receiver's kernel buffer (about 256 small datagrams fit; `shared/FACTS.md`)
/// and add the kernel's losses to the relay's; at this pace the relay and the
/// server read each datagram long before the next, so every loss counted is
/// one the relay chose. 1,000 × 200 µs is a fifth of a second.
pub const PACE: Duration = Duration::from_micros(200);

/// The longest part 2 waits, after its last send, for the relay to release
/// what it holds and for the server to receive it (the holds are about 11 ms).
const SETTLE: Duration = Duration::from_secs(3);

/// The lossy link of part 2: 10 % lost, 2 % duplicated, 5 % reordered, every
/// datagram held 1 ms, from seed 7 — so every run loses the same numbers.
///
/// The jitter is zero on purpose: jitter alone can swap two datagrams that
/// reach the relay close together, and then "arrived out of order" would count
/// more than the relay's reorder decisions. With none, only reordering
/// reorders, and the printed counts can be set side by side.
pub fn lossy_link() -> FaultConfig {
    FaultConfig {
        loss: 0.10,
        duplicate: 0.02,
        reorder: 0.05,
        delay: Duration::from_millis(1),
        jitter: Duration::ZERO,
        burst: None,
        seed: 7,
    }
}

/// What the UDP walkthrough did.
#[derive(Debug, Clone)]
pub struct UdpWalkReport {
    /// The trace of part 1, sorted by time (part 2 runs untraced).
    pub events: Vec<Event>,
    /// Whether the server, listening for 100 ms right after the client's
    /// `connect()`, received nothing — as it should: connect sends nothing.
    pub quiet_after_connect: bool,
    /// Bytes received of the 65,507-byte datagram: all of them.
    pub largest_received: usize,
    /// The error the 65,508-byte send got (`None` if the kernel took it).
    pub one_byte_more: Option<ErrorKind>,
    /// The error of the receive into a 16-byte buffer (`None` if it fit).
    pub truncated: Option<ErrorKind>,
    /// Part 2.
    pub loss: LossReport,
}

/// What part 2 sent, what arrived, and what the relay says it did.
#[derive(Debug, Clone)]
pub struct LossReport {
    /// The relay's faults (client → server; nothing comes back).
    pub faults: FaultConfig,
    /// `send_to()` calls made: [`DATAGRAMS`].
    pub sends: u32,
    /// Of those, how many returned an error: 0, loss or no loss.
    pub send_errors: u32,
    /// The numbers that arrived at the server, in arrival order, duplicates included.
    pub arrivals: Vec<u32>,
    /// Datagrams that arrived but were not one of the numbers sent: 0.
    pub strangers: usize,
    /// Numbers that never arrived, ascending.
    pub lost: Vec<u32>,
    /// Numbers that arrived more than once, ascending.
    pub duplicated: Vec<u32>,
    /// Numbers whose first copy arrived after a higher number's, ascending.
    pub out_of_order: Vec<u32>,
    /// The relay's own counts, exact (taken after it stopped).
    pub relay: RelayCounts,
}

/// Runs the UDP walkthrough, printing to `out`. `options.pause` applies to
/// part 1's steps only.
///
/// ```
/// use sockstep::walk::{udp, WalkOptions};
///
/// let report = udp::run(&WalkOptions::default(), Box::new(std::io::sink()))?;
/// assert_eq!(report.largest_received, 65_507);
/// assert_eq!(report.loss.send_errors, 0); // and yet…
/// assert!(!report.loss.lost.is_empty()); // …some never arrived
/// # Ok::<(), sockstep::Error>(())
/// ```
///
/// # Errors
/// Any step's error, for example if loopback is unavailable. The two errors
/// the walkthrough provokes on purpose (too large, truncated) are reported in
/// [`UdpWalkReport`], not returned.
pub fn run(options: &WalkOptions, out: Box<dyn Write + Send>) -> Result<UdpWalkReport, Error> {
    let out = SharedOut::new(out);
    let recorder = EventRecorder::new();
    let printer = Printer::to(Box::new(out.clone())).pausing(options.pause);
    let tracers: Vec<Arc<dyn Tracer>> = vec![Arc::new(printer), recorder.clone()];
    let trace = Trace::to(Arc::new(Tee(tracers)));

    out.line("sockstep walk udp — the datagram socket, for real, on loopback");
    out.line("Part 1 prints each step as it happens: time, side, step, socket, addresses;");
    out.line("below it, what std asked the kernel to do. Both sides run on this one");
    out.line("thread: a datagram waits in the receiver's buffer until it is taken.");
    out.line("");
    let part1 = lifecycle(&out, &trace)?;
    out.line("");
    let loss = lossy(&out)?;
    Ok(UdpWalkReport {
        events: recorder.events(),
        quiet_after_connect: part1.quiet_after_connect,
        largest_received: part1.largest_received,
        one_byte_more: part1.one_byte_more,
        truncated: part1.truncated,
        loss,
    })
}

/// Part 1's findings, before the report is assembled.
struct Lifecycle {
    quiet_after_connect: bool,
    largest_received: usize,
    one_byte_more: Option<ErrorKind>,
    truncated: Option<ErrorKind>,
}

fn lifecycle(out: &SharedOut, trace: &Trace) -> Result<Lifecycle, Error> {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    // One byte more than the largest datagram: nothing can be cut.
    let mut buf = vec![0u8; MAX_PAYLOAD_V4 + 1];

    out.line(
        "== 1. Server: socket() → bind(). No listen(), no accept(): nobody waits to be let in ==",
    );
    let server = socket::socket(loopback, Side::Server, trace).bind()?;
    server.set_read_timeout(Some(WAIT))?;
    let server_addr = server.local_addr();
    out.line(&format!("   clients send to udp://{server_addr}"));
    out.line("");

    out.line(
        "== 2. Client: socket() → bind() to port 0. Every socket has a port, a client's too ==",
    );
    let client = socket::socket(loopback, Side::Client, trace).bind()?;
    client.set_read_timeout(Some(WAIT))?;
    out.line(&format!(
        "   a TCP client gets its port silently inside connect(); a UDP client binds, so that\n   answers have an address to come back to: this one is udp://{}",
        client.local_addr()
    ));
    out.line("");

    out.line("== 3. Client send_to(): the destination is named on every datagram ==");
    client.send_to(b"hello", server_addr)?;
    out.line("   Ok means the kernel took it — not that it arrived");
    out.line("");

    out.line("== 4. Server recv_from(): one whole datagram, and who sent it ==");
    let (n, from) = server.recv_from(&mut buf)?;
    out.line(&format!(
        "   server got {:?} from udp://{from}: the client's address, port and all",
        text(&buf[..n])
    ));
    out.line("");

    out.line(
        "== 5. Server send_to() back, to the address the datagram came from; client recv_from() ==",
    );
    server.send_to(b"hello, client", from)?;
    let (n, from) = client.recv_from(&mut buf)?;
    out.line(&format!(
        "   client got {:?} from udp://{from}",
        text(&buf[..n])
    ));
    out.line("");

    out.line("== 6. Client connect(): no handshake, nothing sent ==");
    let client = client.connect(server_addr)?;
    out.line(
        "   connect() on UDP only changes the client's own kernel: a default peer for send(),",
    );
    out.line("   and a filter: from now on it receives only from that peer. Proof that nothing");
    out.line(&format!(
        "   was sent: the server now waits {} ms for a datagram…",
        QUIET.as_millis()
    ));
    server.set_read_timeout(Some(QUIET))?;
    let quiet_after_connect = match server.recv_from(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut) => true,
        Err(e) => return Err(e),
        Ok(_) => false,
    };
    server.set_read_timeout(Some(WAIT))?;
    out.line(if quiet_after_connect {
        "   …and none came."
    } else {
        "   …and one came, which connect() should never send: a bug."
    });
    out.line("");

    out.line("== 7. Client send() and recv(): the connected socket's calls name no address ==");
    client.send(b"again")?;
    let (n, from) = server.recv_from(&mut buf)?;
    server.send_to(&buf[..n], from)?;
    let n = client.recv(&mut buf)?;
    out.line(&format!(
        "   client sent \"again\" and got {:?} back",
        text(&buf[..n])
    ));
    out.line("");

    out.line(&format!(
        "== 8. The size limit: {} bytes = 65,535 − 20 (IPv4 header) − 8 (UDP header) ==",
        grouped(MAX_PAYLOAD_V4 as u64)
    ));
    client.send(&vec![b'x'; MAX_PAYLOAD_V4])?;
    // Received into exactly the largest size: the boundary where it must still fit.
    let (largest_received, _) = server.recv_from(&mut buf[..MAX_PAYLOAD_V4])?;
    out.line(&format!(
        "   {} bytes sent, {} received: one datagram, whole",
        grouped(MAX_PAYLOAD_V4 as u64),
        grouped(largest_received as u64)
    ));
    out.line(&format!(
        "   now {} bytes, one more:",
        grouped((MAX_PAYLOAD_V4 + 1) as u64)
    ));
    let one_byte_more = match client.send(&vec![b'x'; MAX_PAYLOAD_V4 + 1]) {
        Err(e) => {
            out.line(&indent(&e.to_string()));
            out.line(
                "   (sockstep checks before asking; the kernel would refuse it too, with EMSGSIZE)",
            );
            Some(e.kind().clone())
        }
        Ok(()) => {
            out.line("   the kernel took it, which IPv4 cannot carry: a bug");
            None
        }
    };
    out.line("");

    out.line(&format!(
        "== 9. A receive buffer too small: {} bytes arrive for a {SMALL_BUFFER}-byte buffer ==",
        TOO_LONG_FOR_IT.len()
    ));
    client.send(TOO_LONG_FOR_IT)?;
    let mut small = [0u8; SMALL_BUFFER];
    let truncated = match server.recv_from(&mut small) {
        Err(e) if matches!(e.kind(), ErrorKind::DatagramTruncated { .. }) => {
            out.line(&indent(&e.to_string()));
            out.line(
                "   (the kernel cut it and threw the rest away; sockstep reports that instead of",
            );
            out.line("   handing on 16 bytes as if they were the message)");
            Some(e.kind().clone())
        }
        Err(e) => return Err(e),
        Ok((n, _)) => {
            out.line(&format!(
                "   {n} bytes received whole, which cannot be: a bug"
            ));
            None
        }
    };
    out.line("");

    out.line("== 10. close(): nothing to tell the other side — there is no connection to end ==");
    drop(client);
    drop(server);
    Ok(Lifecycle {
        quiet_after_connect,
        largest_received,
        one_byte_more,
        truncated,
    })
}

/// Part 2: numbered datagrams through a relay that loses some.
fn lossy(out: &SharedOut) -> Result<LossReport, Error> {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let quiet = Trace::off();
    let faults = lossy_link();
    let recorder = Recorder::new();
    let server = socket::socket(loopback, Side::Server, &quiet)
        .bind()?
        .serve(recorder.clone())?;
    // Nothing comes back from a recorder, so the way back needs no faults.
    let relay = Relay::start(
        loopback,
        server.local_addr(),
        faults.clone(),
        FaultConfig::default(),
        &quiet,
    )?;
    let client = socket::socket(loopback, Side::Client, &quiet).bind()?;

    out.line(&format!(
        "== Part 2: a link that loses — {} numbered datagrams through udp::relay ==",
        grouped(u64::from(DATAGRAMS))
    ));
    out.line(&format!(
        "   client udp://{} → relay udp://{} → server udp://{}",
        client.local_addr(),
        relay.local_addr(),
        server.local_addr()
    ));
    out.line("   (the server records what arrives and answers nothing)");
    out.line(&format!("   the relay's faults: {faults}"));
    out.line(&format!(
        "   one datagram every {} µs, so no receive buffer overflows; no trace, a summary:",
        PACE.as_micros()
    ));

    let started = Instant::now();
    let mut send_errors = 0;
    for n in 1..=DATAGRAMS {
        // Paced against the clock, not by sleeping a fixed time after each
        // send, so oversleeping once does not slow every later send.
        let due = started + PACE * (n - 1);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        if client
            .send_to(n.to_string().as_bytes(), relay.local_addr())
            .is_err()
        {
            send_errors += 1;
        }
    }
    let settled = settle(&relay);
    let copies = usize::try_from(settled.client_to_upstream.sent).unwrap_or(usize::MAX);
    // A timeout here means fewer arrived than the relay sent; the summary shows it.
    let _ = recorder.wait_for(copies, SETTLE);
    let relay_counts = relay.shutdown();
    server.shutdown();

    let mut arrivals = Vec::new();
    let mut strangers = 0;
    for datagram in recorder.received() {
        match std::str::from_utf8(&datagram.payload)
            .ok()
            .and_then(|t| t.parse::<u32>().ok())
        {
            Some(n) if (1..=DATAGRAMS).contains(&n) => arrivals.push(n),
            _ => strangers += 1,
        }
    }
    let (lost, duplicated, out_of_order) = analyse(DATAGRAMS, &arrivals);
    let report = LossReport {
        faults,
        sends: DATAGRAMS,
        send_errors,
        arrivals,
        strangers,
        lost,
        duplicated,
        out_of_order,
        relay: relay_counts,
    };
    summarise(out, &report, started.elapsed());
    Ok(report)
}

/// Waits until the relay has decided on every datagram sent and released every
/// copy it held, or [`SETTLE`] has passed; returns its counts then.
fn settle(relay: &Relay) -> RelayCounts {
    let deadline = Instant::now() + SETTLE;
    loop {
        let counts = relay.counts();
        let d = &counts.client_to_upstream;
        let done = d.faults.received >= u64::from(DATAGRAMS)
            && d.held == 0
            && d.all_copies_accounted_for();
        if done || Instant::now() >= deadline {
            return counts;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Compares what arrived with `1..=sent`: the numbers never seen, the numbers
/// seen more than once, and the numbers whose first copy came after a higher
/// number's (some later datagram overtook them). Each list ascending.
/// Arrivals outside `1..=sent` are ignored.
///
/// ```
/// // 2 never came, 3 came twice, 4 came after 5.
/// let (lost, twice, late) = sockstep::walk::udp::analyse(5, &[1, 3, 5, 3, 4]);
/// assert_eq!((lost, twice, late), (vec![2], vec![3], vec![4]));
/// ```
pub fn analyse(sent: u32, arrivals: &[u32]) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let mut times = vec![0u32; sent as usize + 1];
    let mut out_of_order = Vec::new();
    let mut highest = 0;
    for &n in arrivals.iter().filter(|&&n| (1..=sent).contains(&n)) {
        let seen = &mut times[n as usize];
        if *seen == 0 && n < highest {
            out_of_order.push(n);
        }
        *seen += 1;
        highest = highest.max(n);
    }
    let numbers = || (1..=sent).zip(times.iter().skip(1).copied());
    let lost = numbers().filter(|&(_, t)| t == 0).map(|(n, _)| n).collect();
    let duplicated = numbers().filter(|&(_, t)| t > 1).map(|(n, _)| n).collect();
    out_of_order.sort_unstable();
    (lost, duplicated, out_of_order)
}

/// Ascending numbers as compact ranges.
///
/// ```
/// assert_eq!(sockstep::walk::udp::ranges(&[3, 4, 5, 9]), "3-5, 9");
/// ```
pub fn ranges(numbers: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// One direction of a relay's counts as one line, as `sockstep walk udp` and
/// `sockstep udp relay` print it: `received 10, dropped 1, forwarded 9, …;
/// copies sent 9`, followed by any count of trouble that is not zero.
pub fn direction_line(d: &DirectionCounts) -> String {
    let f = &d.faults;
    let mut line = format!(
        "received {}, dropped {}, forwarded {}, duplicated {}, reordered {}, delayed {}; copies sent {}",
        f.received, f.dropped, f.forwarded, f.duplicated, f.reordered, f.delayed, d.sent
    );
    // Counts that are 0 unless something went wrong are shown only when they are not.
    for (name, n) in [
        ("send errors", d.send_errors),
        ("overflowed", d.overflowed),
        ("still held", d.held),
        ("discarded at shutdown", d.discarded_at_shutdown),
    ] {
        if n > 0 {
            line.push_str(&format!(", {name} {n}"));
        }
    }
    line
}

fn summarise(out: &SharedOut, r: &LossReport, elapsed: Duration) {
    let relay = &r.relay.client_to_upstream;
    out.line(&format!(
        "   sender:   {} sends, {} errors{}",
        r.sends,
        r.send_errors,
        if r.send_errors == 0 {
            " — every send_to() returned Ok"
        } else {
            ""
        }
    ));
    out.line(&format!(
        "   server:   {} datagrams arrived, {} different numbers of {}",
        r.arrivals.len() + r.strangers,
        distinct(&r.arrivals),
        r.sends
    ));
    list(out, "never arrived", &r.lost);
    list(out, "came twice", &r.duplicated);
    list(
        out,
        "came out of order, after a higher number",
        &r.out_of_order,
    );
    out.line(&format!("   relay:    {}", direction_line(relay)));
    // Loss the relay did not choose: before it (its own receive buffer) or after
    // it (the server's). Both 0 when the pacing works; shown apart if not.
    let before = u64::from(r.sends).saturating_sub(relay.faults.received);
    let after = relay
        .sent
        .saturating_sub((r.arrivals.len() + r.strangers) as u64);
    if before > 0 || after > 0 || r.strangers > 0 {
        out.line(&format!(
            "   also lost, not by the relay's choice: {before} before it, {after} after it; {} strangers arrived",
            r.strangers
        ));
    }
    out.line("");
    out.line(&format!(
        "   {} datagrams vanished, and no call anywhere returned an error: that is UDP.",
        r.lost.len()
    ));
    out.line(&format!(
        "   The seed ({}) decides, so every run loses the same numbers. A reordered datagram is",
        r.faults.seed
    ));
    out.line(&format!(
        "   held {} ms longer, so any sent in that time overtake it. Finished in {:.2} s.",
        REORDER_HOLD.as_millis(),
        elapsed.as_secs_f64()
    ));
}

/// Prints `label (count): ranges`, wrapped to stay readable in a terminal.
fn list(out: &SharedOut, label: &str, numbers: &[u32]) {
    const WIDTH: usize = 78;
    const INDENT: &str = "             ";
    let head = format!("   {label} ({}):", numbers.len());
    if numbers.is_empty() {
        out.line(&format!("{head} none"));
        return;
    }
    out.line(&head);
    let mut line = String::from(INDENT);
    for part in ranges(numbers).split(", ") {
        if line.len() > INDENT.len() && line.len() + part.len() + 2 > WIDTH {
            out.line(line.trim_end());
            line = String::from(INDENT);
        }
        line.push_str(part);
        line.push_str(", ");
    }
    out.line(line.trim_end().trim_end_matches(','));
}

fn distinct(numbers: &[u32]) -> usize {
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len()
}

/// A payload as text for the trace (these are all ASCII).
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A multi-line error message, indented under the step that provoked it.
fn indent(message: &str) -> String {
    message
        .lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_compact() {
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[7]), "7");
        assert_eq!(ranges(&[3, 4, 5, 9, 11, 12]), "3-5, 9, 11-12");
    }

    #[test]
    fn a_duplicate_arriving_late_is_not_out_of_order_and_strangers_are_ignored() {
        let (lost, twice, late) = analyse(3, &[1, 2, 3, 1, 99, 0]);
        assert!(lost.is_empty() && late.is_empty());
        assert_eq!(twice, [1]);
    }
}
