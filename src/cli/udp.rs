//! `sockstep udp listen|send|relay`: a UDP server, a UDP client and a relay
//! that loses datagrams on purpose, for a terminal.
//!
//! `listen` is `udp::socket → bind → serve`: one socket and one thread for
//! every client, stopped by a line on standard input like `tcp listen`. `send`
//! is `socket → bind (port 0) → connect`, then one datagram per line of
//! standard input, each followed by a bounded wait for a reply — bounded
//! because with UDP silence is an answer too: the datagram or its reply may
//! have been lost, and nobody will say so. `relay` puts
//! [`udp::relay`](crate::udp::relay) between clients and a server, with the
//! faults given on the command line.

use std::io::{self, BufRead, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::cli::Command;
use crate::cli::args::{self, Parsed, Spec, Usage};
use crate::cli::tcp::{print_line, wait_for_stop};
use crate::endpoint::{Endpoint, Protocol};
use crate::error::{Error, ErrorKind};
use crate::step::Side;
use crate::trace::Trace;
use crate::udp::faults::{FaultConfig, GilbertElliott, MAX_DELAY, MAX_JITTER};
use crate::udp::handlers::Echo;
use crate::udp::relay::{Direction, Relay, RelayCounts};
use crate::udp::serve::UdpStats;
use crate::udp::socket::{self, MAX_PAYLOAD_V6};
use crate::walk::udp::direction_line;

/// `sockstep udp --help`.
pub const USAGE: &str = "\
Usage:
  sockstep udp listen ADDR [--echo|--record] [options]   run a UDP server
  sockstep udp send ADDR [--timeout SECS] [--trace]      send each line of stdin as a datagram
  sockstep udp relay --listen ADDR --to ADDR [faults]    pass datagrams on, losing some on purpose

ADDR is IP:PORT, [IPv6]:PORT or udp://HOST:PORT (port 0: the OS chooses).
'sockstep udp listen --help', 'sockstep udp send --help' and
'sockstep udp relay --help' say more.
";

/// How long `udp send` waits for a reply after each datagram by default: a
/// loopback or LAN round trip takes well under a millisecond, and a person
/// typing lines does not want to wait longer than this for a silence.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// `sockstep udp listen --help`.
pub fn listen_usage() -> String {
    "\
Usage: sockstep udp listen ADDR [--echo|--record] [--for SECS] [--trace]

Runs a UDP server on ADDR — 127.0.0.1:9000, [::1]:0 or udp://localhost:9000
(port 0: the OS chooses) — and prints one line:
  listening on udp://IP:PORT (echo; one socket for every client; press Enter to stop)
There is no listen() or accept() underneath: one socket receives every
client's datagrams, each labelled with its sender, and one thread handles them
in turn. Press Enter to stop it; it prints its counts on stderr. The end of
stdin is not a stop, so it runs fine with </dev/null.

What each datagram gets:
  --echo        sent back to its sender, unchanged (the default)
  --record      nothing back; printed on stdout as
                udp://PEER: N bytes: \"text\"  (quoted; long ones cut)

Options:
  --for SECS    stop by itself after SECS, as if Enter were pressed
  --trace       print every socket step on stdout
  -h, --help    show this help
"
    .to_string()
}

/// `sockstep udp send --help`.
pub fn send_usage() -> String {
    format!(
        "\
Usage: sockstep udp send ADDR [--timeout SECS] [--trace]

Binds a UDP socket to port 0 (the OS chooses; the port is shown on stderr),
connect()s it to ADDR — which sends nothing: it only fixes where send() goes
and whom replies may come from — then sends each line of stdin, without its
newline, as one datagram, and after each waits up to --timeout for a reply,
which it prints on stdout. No reply is not an error: UDP does not tell
whether the datagram or its reply was lost, so it says so on stderr and goes
on; it exits 0 at the end of stdin. It exits 1 if the kernel reports ICMP
'port unreachable' (nothing bound at ADDR) — the one loss UDP ever reports.

Options:
  --timeout SECS   how long to wait for a reply after each line (default {timeout})
  --trace          print every socket step on stderr (stdout carries the replies)
  -h, --help       show this help
",
        timeout = DEFAULT_REPLY_TIMEOUT.as_secs_f64(),
    )
}

/// `sockstep udp relay --help`.
pub fn relay_usage() -> String {
    format!(
        "\
Usage: sockstep udp relay --listen ADDR --to ADDR [--loss P] [--duplicate P]
                          [--reorder P] [--delay DUR] [--jitter DUR]
                          [--burst P,R] [--seed N] [--for SECS]

Receives datagrams on --listen, passes them on to --to, and passes the
replies back to whichever client sent the request — losing, duplicating,
reordering and delaying them on the way, both ways, as told. The senders are
never told of a loss: that is the point. It prints one line:
  relaying udp://LISTEN -> udp://TO (loss 10% dup 0% ...; press Enter to stop)
and, when stopped (Enter, or --for), what it did each way on stderr.

The faults are drawn from a random sequence that starts at --seed, so the
same seed loses the same datagrams (counted in arrival order, each way; the
way back starts at seed + 1, so a request and its reply are not always lost
together).

Faults (P is a probability per datagram: 0.1 or 10%; DUR has a unit: 250us, 5ms, 2s):
  --loss P         drop a datagram (default 0)
  --duplicate P    send a surviving datagram twice (default 0)
  --reorder P      hold a datagram back so that later ones overtake it (default 0)
  --delay DUR      hold every datagram this long (at most {max_delay:?}; default 0ms)
  --jitter DUR     hold each one a further random 0..DUR (at most {max_jitter:?}; default 0ms)
  --burst P,R      also lose in bursts (Gilbert's model): a burst starts after a
                   datagram with probability P and ends with probability R, so
                   bursts average 1/R datagrams, e.g. --burst 1%,25%
  --seed N         where the random sequence starts (default 0)

Options:
  --listen ADDR    where clients send to (required; port 0: the OS chooses)
  --to ADDR        the server datagrams are passed on to (required)
  --for SECS       stop by itself after SECS, as if Enter were pressed
  -h, --help       show this help
",
        max_delay = MAX_DELAY,
        max_jitter = MAX_JITTER,
    )
}

const LISTEN: Spec = Spec {
    command: "sockstep udp listen",
    positionals: &["ADDR"],
    switches: &["--echo", "--record", "--trace"],
    options: &[("--for", "SECS")],
};

const SEND: Spec = Spec {
    command: "sockstep udp send",
    positionals: &["ADDR"],
    switches: &["--trace"],
    options: &[("--timeout", "SECS")],
};

const RELAY: Spec = Spec {
    command: "sockstep udp relay",
    positionals: &[],
    switches: &[],
    options: &[
        ("--listen", "ADDR"),
        ("--to", "ADDR"),
        ("--loss", "P"),
        ("--duplicate", "P"),
        ("--reorder", "P"),
        ("--delay", "DUR"),
        ("--jitter", "DUR"),
        ("--burst", "P,R"),
        ("--seed", "N"),
        ("--for", "SECS"),
    ],
};

/// What `udp listen` does with each datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpHandlerChoice {
    /// [`Echo`]: send it back to its sender.
    Echo,
    /// Print it on stdout; send nothing back.
    Record,
}

impl UdpHandlerChoice {
    /// The name used on the command line and in the "listening on" line.
    pub fn name(self) -> &'static str {
        match self {
            UdpHandlerChoice::Echo => "echo",
            UdpHandlerChoice::Record => "record",
        }
    }
}

/// `sockstep udp listen`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpListen {
    /// Where to listen; a UDP endpoint, its host perhaps a name still to resolve.
    pub endpoint: Endpoint,
    /// What each datagram gets.
    pub handler: UdpHandlerChoice,
    /// Stop by itself after this long (`--for`).
    pub run_for: Option<Duration>,
    /// Print every step on stdout (`--trace`).
    pub trace: bool,
}

/// `sockstep udp send`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpSend {
    /// The server; its host perhaps a name still to resolve.
    pub endpoint: Endpoint,
    /// How long to wait for a reply after each datagram (`--timeout`).
    pub timeout: Duration,
    /// Print every step on standard error (`--trace`).
    pub trace: bool,
}

/// `sockstep udp relay`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpRelay {
    /// Where clients send to (`--listen`).
    pub listen: Endpoint,
    /// Where their datagrams go (`--to`).
    pub to: Endpoint,
    /// The faults, client → server; the way back gets the same with seed + 1.
    pub faults: FaultConfig,
    /// Stop by itself after this long (`--for`).
    pub run_for: Option<Duration>,
}

/// Parses the words after `udp`.
///
/// # Errors
/// A [`Usage`] error for a missing or unknown verb, a bad flag or value, or an
/// address that is not a UDP endpoint.
pub fn parse(words: &[String]) -> Result<Command, Usage> {
    args::verb(
        "sockstep udp",
        USAGE,
        words,
        &[
            ("listen", parse_listen),
            ("send", parse_send),
            ("relay", parse_relay),
        ],
    )
}

fn parse_listen(words: &[String]) -> Result<Command, Usage> {
    let parsed = args::parse(&LISTEN, words)?;
    if parsed.help {
        return Ok(Command::Help(listen_usage()));
    }
    let handler = match (parsed.switch("--echo"), parsed.switch("--record")) {
        (true, true) => return Err(parsed.error("choose one of --echo and --record")),
        (_, true) => UdpHandlerChoice::Record,
        _ => UdpHandlerChoice::Echo,
    };
    Ok(Command::UdpListen(UdpListen {
        endpoint: udp_endpoint(&parsed, "ADDR", parsed.positional(0))?,
        handler,
        run_for: parsed.seconds("--for")?,
        trace: parsed.switch("--trace"),
    }))
}

fn parse_send(words: &[String]) -> Result<Command, Usage> {
    let parsed = args::parse(&SEND, words)?;
    if parsed.help {
        return Ok(Command::Help(send_usage()));
    }
    Ok(Command::UdpSend(UdpSend {
        endpoint: udp_endpoint(&parsed, "ADDR", parsed.positional(0))?,
        timeout: parsed
            .seconds("--timeout")?
            .unwrap_or(DEFAULT_REPLY_TIMEOUT),
        trace: parsed.switch("--trace"),
    }))
}

fn parse_relay(words: &[String]) -> Result<Command, Usage> {
    let parsed = args::parse(&RELAY, words)?;
    if parsed.help {
        return Ok(Command::Help(relay_usage()));
    }
    let required = |flag: &str, what: &str| {
        parsed
            .value(flag)
            .ok_or_else(|| parsed.error(format!("missing {flag} ADDR ({what})")))
    };
    let listen = required("--listen", "where clients send to")?;
    let to = required("--to", "the server to pass datagrams on to")?;
    let seed = match parsed.value("--seed") {
        None => 0,
        Some(text) => text.parse::<u64>().map_err(|_| {
            parsed.error(format!(
                "--seed must be a whole number from 0 to {}, not '{text}'",
                u64::MAX
            ))
        })?,
    };
    let faults = FaultConfig {
        loss: parsed.probability("--loss")?.unwrap_or(0.0),
        duplicate: parsed.probability("--duplicate")?.unwrap_or(0.0),
        reorder: parsed.probability("--reorder")?.unwrap_or(0.0),
        delay: parsed.duration("--delay", MAX_DELAY)?.unwrap_or_default(),
        jitter: parsed.duration("--jitter", MAX_JITTER)?.unwrap_or_default(),
        burst: burst(&parsed)?,
        seed,
    };
    Ok(Command::UdpRelay(UdpRelay {
        listen: udp_endpoint(&parsed, "--listen", listen)?,
        to: udp_endpoint(&parsed, "--to", to)?,
        faults,
        run_for: parsed.seconds("--for")?,
    }))
}

/// `--burst P,R` as Gilbert's two-state model: a burst starts with
/// probability P after each datagram and ends with probability R.
fn burst(parsed: &Parsed) -> Result<Option<GilbertElliott>, Usage> {
    let Some(text) = parsed.value("--burst") else {
        return Ok(None);
    };
    let pair = text
        .split_once(',')
        .and_then(|(p, r)| Some((args::parse_probability(p)?, args::parse_probability(r)?)));
    match pair {
        Some((p, r)) => Ok(Some(GilbertElliott::simple(p, r))),
        None => Err(parsed.error(format!(
            "--burst must be two probabilities P,R (a burst starts, a burst ends), as 1%,25% or 0.01,0.25, not '{text}'"
        ))),
    }
}

/// `text` (the value of `what`) as a UDP endpoint; `tcp://` is a mistake here.
fn udp_endpoint(parsed: &Parsed, what: &str, text: &str) -> Result<Endpoint, Usage> {
    parsed.endpoint(what, text, Protocol::Udp)
}

// --- udp listen ---------------------------------------------------------------

/// Runs `sockstep udp listen` until Enter is pressed or `--for` runs out.
///
/// # Errors
/// The step that failed — resolve, bind, or starting the server — with its endpoint.
pub fn listen(cmd: &UdpListen) -> Result<(), Error> {
    let addr = super::resolve_first(&cmd.endpoint)?;
    let trace = super::traced(cmd.trace);
    let bound = socket::socket(addr, Side::Server, &trace).bind()?;
    let server = match cmd.handler {
        UdpHandlerChoice::Echo => bound.serve(Echo)?,
        UdpHandlerChoice::Record => bound.serve(record)?,
    };
    print_line(&format!(
        "listening on {} ({}; one socket for every client; press Enter to stop)",
        Endpoint::from_addr(Protocol::Udp, server.local_addr()),
        cmd.handler.name()
    ));
    wait_for_stop(cmd.run_for);
    eprintln!("sockstep: stopped: {}", stats_line(&server.shutdown()));
    Ok(())
}

/// The server's counts as the one line `udp listen` prints when it stops.
pub fn stats_line(stats: &UdpStats) -> String {
    format!(
        "received {}, replied {}, errors {}, panics {}",
        stats.received, stats.replied, stats.errors, stats.panics
    )
}

/// How much of a datagram `--record` prints: a screenful. A datagram can be 64 KiB.
const RECORD_SHOWN: usize = 1024;

/// The `--record` handler: one line per datagram, `udp://PEER: N bytes: "text"`,
/// quoted so a newline in the text cannot split it.
fn record(from: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
    let shown = &payload[..payload.len().min(RECORD_SHOWN)];
    let mut line = format!(
        "{}: {} bytes: {:?}",
        Endpoint::from_addr(Protocol::Udp, from),
        payload.len(),
        String::from_utf8_lossy(shown)
    );
    if shown.len() < payload.len() {
        line.push_str(&format!(" (the first {} shown)", shown.len()));
    }
    print_line(&line);
    None
}

// --- udp send -----------------------------------------------------------------

/// Runs `sockstep udp send` until the end of standard input.
///
/// # Errors
/// The step that failed: resolving, binding, a datagram too large to send, a
/// receive refused by ICMP "port unreachable", or another receive error.
pub fn send(cmd: &UdpSend) -> Result<(), Error> {
    // The replies own stdout; the trace goes where diagnostics go.
    let trace = super::traced_on_stderr(cmd.trace);
    let peer = super::resolve_first(&cmd.endpoint)?;
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let bound = socket::socket(any, Side::Client, &trace).bind()?;
    note(&format!(
        "bound {} (port 0 asked; the OS chose {}), sending to {}",
        Endpoint::from_addr(Protocol::Udp, bound.local_addr()),
        bound.local_addr().port(),
        Endpoint::from_addr(Protocol::Udp, peer)
    ));
    let conn = bound.connect(peer)?;
    conn.set_read_timeout(Some(cmd.timeout))?;
    // One byte more than any datagram, so a reply is never cut.
    let mut buf = vec![0u8; MAX_PAYLOAD_V6 + 1];
    for line in io::stdin().lock().split(b'\n') {
        let mut line = match line {
            Ok(line) => line,
            Err(e) => {
                note(&format!(
                    "reading stdin failed ({e}); taking it as the end of input"
                ));
                break;
            }
        };
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        conn.send(&line)?;
        match conn.recv(&mut buf) {
            Ok(n) => print_reply(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut) => note(&format!(
                "no reply within {} s (UDP does not tell whether it was lost)",
                cmd.timeout.as_secs_f64()
            )),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `sockstep: message` on stderr. Unlike `eprintln!`, which panics when
/// stderr is closed (`2>&1 | head`), a closed stderr only silences it: these
/// notes come once per line of input, and losing one is no reason to stop.
fn note(message: &str) {
    let _ = writeln!(io::stderr(), "sockstep: {message}");
}

/// Writes a reply on stdout, with a newline unless it ends with one, and
/// flushes, so replies show as they come. A closed stdout is not an error here.
fn print_reply(reply: &[u8]) {
    let mut out = io::stdout().lock();
    let newline: &[u8] = if reply.ends_with(b"\n") { b"" } else { b"\n" };
    let _ = out
        .write_all(reply)
        .and_then(|()| out.write_all(newline))
        .and_then(|()| out.flush());
}

// --- udp relay ----------------------------------------------------------------

/// Runs `sockstep udp relay` until Enter is pressed or `--for` runs out.
///
/// # Errors
/// The step that failed — resolving either address, or starting the relay
/// (binding `--listen`, or `--to` being the relay's own address).
pub fn relay(cmd: &UdpRelay) -> Result<(), Error> {
    let listen = super::resolve_first(&cmd.listen)?;
    let to = super::resolve_first(&cmd.to)?;
    let relay = Relay::start_symmetric(listen, to, cmd.faults.clone(), &Trace::off())?;
    print_line(&format!(
        "relaying {} -> {} ({}, both ways; press Enter to stop)",
        Endpoint::from_addr(Protocol::Udp, relay.local_addr()),
        Endpoint::from_addr(Protocol::Udp, to),
        cmd.faults
    ));
    wait_for_stop(cmd.run_for);
    for line in relay_lines(&relay.shutdown()) {
        eprintln!("sockstep: {line}");
    }
    Ok(())
}

/// What a relay did, as the lines `udp relay` prints when it stops.
pub fn relay_lines(counts: &RelayCounts) -> Vec<String> {
    let mut lines = vec!["stopped".to_string()];
    for d in Direction::BOTH {
        lines.push(format!("{d}: {}", direction_line(counts.direction(d))));
    }
    let mut clients = format!("clients {}", counts.clients);
    // Counts that are 0 unless something went wrong are shown only when they are not.
    for (name, n) in [
        ("refused for want of room", counts.clients_refused),
        ("expired", counts.clients_expired),
        ("receive errors", counts.recv_errors),
        (
            "ICMP port unreachable from the server (nothing bound there)",
            counts.upstream_refused,
        ),
    ] {
        if n > 0 {
            clients.push_str(&format!(", {name} {n}"));
        }
    }
    lines.push(clients);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udp::relay::DirectionCounts;

    #[test]
    fn every_flag_the_parser_accepts_is_in_the_help() {
        for (spec, usage) in [
            (LISTEN, listen_usage()),
            (SEND, send_usage()),
            (RELAY, relay_usage()),
        ] {
            let options = spec
                .options
                .iter()
                .map(|(name, metavar)| format!("{name} {metavar}"));
            for flag in spec.switches.iter().map(|s| s.to_string()).chain(options) {
                assert!(usage.contains(&flag), "{} help lacks {flag}", spec.command);
            }
        }
    }

    #[test]
    fn the_stats_line_names_every_count() {
        let stats = UdpStats {
            received: 1,
            replied: 2,
            errors: 3,
            panics: 4,
        };
        assert_eq!(
            stats_line(&stats),
            "received 1, replied 2, errors 3, panics 4"
        );
    }

    #[test]
    fn relay_lines_show_each_direction_and_trouble_only_when_there_is_some() {
        let mut counts = RelayCounts {
            clients: 2,
            ..RelayCounts::default()
        };
        counts.client_to_upstream = DirectionCounts {
            sent: 9,
            ..DirectionCounts::default()
        };
        let lines = relay_lines(&counts);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[0], "stopped");
        assert!(
            lines[1].starts_with("client → upstream: received 0, dropped 0"),
            "{lines:?}"
        );
        assert!(lines[1].ends_with("copies sent 9"), "{lines:?}");
        assert!(lines[2].starts_with("upstream → client: "), "{lines:?}");
        assert_eq!(lines[3], "clients 2");
        counts.upstream_refused = 3;
        assert!(relay_lines(&counts)[3].contains("ICMP port unreachable from the server"));
    }
}
