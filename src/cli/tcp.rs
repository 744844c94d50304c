//! `sockstep tcp listen` and `sockstep tcp connect`: a TCP server and a TCP client
//! for a terminal, built from the library's explicit steps.
//!
//! `listen` is `server::socket → bind → listen → serve` with a built-in handler,
//! stopped by a line on standard input. `connect` is `client::socket → connect`
//! followed by what `nc` does: standard input to the socket on one thread, the
//! socket to standard output on this one, and a half-close at the end of input
//! so the server learns that nothing more is coming and can answer and close.

use std::io::{self, BufRead, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::Command;
use crate::cli::args::{self, Parsed, Spec, Usage};
use crate::endpoint::{Endpoint, Protocol};
use crate::error::{Error, ErrorKind};
use crate::step::Step;
use crate::tcp::connection::{Connection, DEFAULT_TIMEOUT, Timeouts};
use crate::tcp::handlers::{Echo, Sink};
use crate::tcp::serve::{BACKLOG_CEILING, MAX_CONNECTIONS_CEILING, ServeConfig, Stats};
use crate::tcp::{client, server};
use crate::trace::Trace;

/// `sockstep tcp --help`.
pub const USAGE: &str = "\
Usage:
  sockstep tcp listen ADDR [--echo|--sink|--record] [options]   run a TCP server
  sockstep tcp connect ADDR [--timeout SECS] [--trace]           talk to one, like nc

ADDR is IP:PORT, [IPv6]:PORT or tcp://HOST:PORT (port 0: the OS chooses).
'sockstep tcp listen --help' and 'sockstep tcp connect --help' say more.
";

/// How many clients may wait for a serving thread by default: enough to absorb a
/// burst of connects while every thread is busy, few enough that a client is told
/// \"busy\" within seconds rather than queueing behind thousands.
pub const DEFAULT_BACKLOG: usize = 64;

/// How long `tcp connect` waits for the handshake by default: ample for any
/// network that works, short enough that a dropped SYN is reported, not a hang.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `sockstep tcp listen --help`.
pub fn listen_usage() -> String {
    let config = ServeConfig::default();
    format!(
        "\
Usage: sockstep tcp listen ADDR [--echo|--sink|--record] [options]

Runs a thread-per-connection TCP server on ADDR — 127.0.0.1:7878, [::1]:0 or
tcp://localhost:7878 (port 0: the OS chooses) — and prints one line:
  listening on tcp://IP:PORT (echo; up to N served, B waiting; press Enter to stop)
Press Enter to stop it: it stops accepting, gives connections in flight up to
{grace} s to finish, and prints its counts on stderr. The end of stdin is not a
stop, so it runs fine with </dev/null. Ctrl-C ends it at once, without counts.

What each connection gets:
  --echo                every byte it sends, written back (the default)
  --sink                nothing: what it sends is read and thrown away
  --record              nothing; what it sent is printed on stdout when it ends

Options:
  --max-connections N   serve at most N at once, a thread each (1 to {max_ceiling}; default {max})
  --backlog N           let N more wait; past that, clients are told 'busy' and
                        closed (0 to {backlog_ceiling}; default {backlog})
  --idle-timeout SECS   drop a connection that sends, or takes, nothing for SECS
                        (default {idle})
  --for SECS            stop by itself after SECS, as if Enter were pressed
  --trace               print every socket step on stdout
  -h, --help            show this help
",
        grace = config.grace.as_secs_f64(),
        max_ceiling = MAX_CONNECTIONS_CEILING,
        max = config.max_connections,
        backlog_ceiling = BACKLOG_CEILING,
        backlog = DEFAULT_BACKLOG,
        idle = DEFAULT_TIMEOUT.as_secs_f64(),
    )
}

/// `sockstep tcp connect --help`.
pub fn connect_usage() -> String {
    format!(
        "\
Usage: sockstep tcp connect ADDR [--timeout SECS] [--trace]

Connects to ADDR — 127.0.0.1:7878, [::1]:7878 or tcp://localhost:7878 — and,
like nc, copies stdin to the socket and the socket to stdout. At the end of
stdin it half-closes (shutdown(SHUT_WR): 'nothing more from me') and goes on
reading; it exits 0 when the server closes. A name is resolved first, and each
of its addresses is tried in turn until one connects.

Options:
  --timeout SECS   give up on connect() after SECS (default {timeout})
  --trace          print every socket step on stderr (stdout carries the data)
  -h, --help       show this help
",
        timeout = DEFAULT_CONNECT_TIMEOUT.as_secs_f64(),
    )
}

const LISTEN: Spec = Spec {
    command: "sockstep tcp listen",
    positionals: &["ADDR"],
    switches: &["--echo", "--sink", "--record", "--trace"],
    options: &[
        ("--max-connections", "N"),
        ("--backlog", "N"),
        ("--idle-timeout", "SECS"),
        ("--for", "SECS"),
    ],
};

const CONNECT: Spec = Spec {
    command: "sockstep tcp connect",
    positionals: &["ADDR"],
    switches: &["--trace"],
    options: &[("--timeout", "SECS")],
};

/// What `tcp listen` does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerChoice {
    /// [`Echo`]: write back every byte.
    Echo,
    /// [`Sink`]: read and discard.
    Sink,
    /// Keep what the connection sent and print it when the connection ends.
    Record,
}

impl HandlerChoice {
    /// The name used on the command line and in the "listening on" line.
    pub fn name(self) -> &'static str {
        match self {
            HandlerChoice::Echo => "echo",
            HandlerChoice::Sink => "sink",
            HandlerChoice::Record => "record",
        }
    }
}

/// `sockstep tcp listen`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    /// Where to listen; a TCP endpoint, its host perhaps a name still to resolve.
    pub endpoint: Endpoint,
    /// What each connection gets.
    pub handler: HandlerChoice,
    /// Connections served at once (`--max-connections`).
    pub max_connections: usize,
    /// Connections that may wait for a thread (`--backlog`).
    pub backlog: usize,
    /// Read and write timeout of every connection (`--idle-timeout`).
    pub idle_timeout: Duration,
    /// Stop by itself after this long (`--for`).
    pub run_for: Option<Duration>,
    /// Print every step (`--trace`).
    pub trace: bool,
}

/// `sockstep tcp connect`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Connect {
    /// The server; its host perhaps a name still to resolve.
    pub endpoint: Endpoint,
    /// How long each connect attempt may take (`--timeout`).
    pub timeout: Duration,
    /// Print every step on standard error (`--trace`).
    pub trace: bool,
}

/// Parses the words after `tcp`.
///
/// # Errors
/// A [`Usage`] error for a missing or unknown verb, a bad flag or value, or an
/// address that is not a TCP endpoint.
pub fn parse(words: &[String]) -> Result<Command, Usage> {
    args::verb(
        "sockstep tcp",
        USAGE,
        words,
        &[("listen", parse_listen), ("connect", parse_connect)],
    )
}

fn parse_listen(words: &[String]) -> Result<Command, Usage> {
    let parsed = args::parse(&LISTEN, words)?;
    if parsed.help {
        return Ok(Command::Help(listen_usage()));
    }
    let chosen: Vec<HandlerChoice> = [
        HandlerChoice::Echo,
        HandlerChoice::Sink,
        HandlerChoice::Record,
    ]
    .into_iter()
    .filter(|h| parsed.switch(&format!("--{}", h.name())))
    .collect();
    let handler = match chosen[..] {
        [] => HandlerChoice::Echo,
        [one] => one,
        _ => return Err(parsed.error("choose one of --echo, --sink and --record")),
    };
    Ok(Command::TcpListen(Listen {
        endpoint: tcp_endpoint(&parsed)?,
        handler,
        max_connections: parsed.count(
            "--max-connections",
            1..=MAX_CONNECTIONS_CEILING,
            ServeConfig::default().max_connections,
        )?,
        backlog: parsed.count("--backlog", 0..=BACKLOG_CEILING, DEFAULT_BACKLOG)?,
        idle_timeout: parsed.seconds("--idle-timeout")?.unwrap_or(DEFAULT_TIMEOUT),
        run_for: parsed.seconds("--for")?,
        trace: parsed.switch("--trace"),
    }))
}

fn parse_connect(words: &[String]) -> Result<Command, Usage> {
    let parsed = args::parse(&CONNECT, words)?;
    if parsed.help {
        return Ok(Command::Help(connect_usage()));
    }
    Ok(Command::TcpConnect(Connect {
        endpoint: tcp_endpoint(&parsed)?,
        timeout: parsed
            .seconds("--timeout")?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        trace: parsed.switch("--trace"),
    }))
}

/// The ADDR positional as a TCP endpoint; `udp://` is a mistake for a TCP verb.
pub(super) fn tcp_endpoint(parsed: &Parsed) -> Result<Endpoint, Usage> {
    parsed.endpoint("ADDR", parsed.positional(0), Protocol::Tcp)
}

/// Runs `sockstep tcp listen` until Enter is pressed or `--for` runs out.
///
/// # Errors
/// The step that failed — resolve, bind, or starting the server — with its endpoint.
pub fn listen(cmd: &Listen) -> Result<(), Error> {
    let addr = super::resolve_first(&cmd.endpoint)?;
    let trace = super::traced(cmd.trace);
    let config = ServeConfig {
        max_connections: cmd.max_connections,
        timeouts: Timeouts {
            read: Some(cmd.idle_timeout),
            write: Some(cmd.idle_timeout),
        },
        ..ServeConfig::default()
    };
    let listening = server::socket(addr, &trace).bind()?.listen(cmd.backlog);
    let server = match cmd.handler {
        HandlerChoice::Echo => listening.serve(config, Echo)?,
        HandlerChoice::Sink => listening.serve(config, Sink)?,
        HandlerChoice::Record => listening.serve(config, record)?,
    };
    let announce = format!(
        "listening on {} ({}; up to {} served, {} waiting; press Enter to stop)",
        Endpoint::from_addr(Protocol::Tcp, server.local_addr()),
        cmd.handler.name(),
        cmd.max_connections,
        cmd.backlog
    );
    print_line(&announce);
    wait_for_stop(cmd.run_for);
    eprintln!("sockstep: stopped: {}", stats_line(&server.shutdown()));
    Ok(())
}

/// Writes one line on stdout and flushes it, so a script or test reading our
/// stdout through a pipe sees it now. A closed stdout is not the server's
/// failure; the lock is released at once because the tracer prints there too.
pub(super) fn print_line(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Blocks until a line arrives on stdin or `run_for` has passed.
///
/// Reading stdin blocks and cannot be interrupted, so it happens on a thread of
/// its own that reports the first line over a channel. When stdin ends instead
/// (`</dev/null`, a closed pipe), the thread ends and the channel disconnects:
/// nobody can press Enter any more, so only `run_for` can stop us.
pub(super) fn wait_for_stop(run_for: Option<Duration>) {
    let deadline = run_for.map(|d| Instant::now() + d);
    let (enter, pressed) = mpsc::channel();
    let reader = thread::Builder::new()
        .name("sockstep-stdin".into())
        .spawn(move || {
            let mut line = String::new();
            if matches!(io::stdin().lock().read_line(&mut line), Ok(n) if n > 0) {
                let _ = enter.send(());
            }
        });
    let mut stdin_open = reader.is_ok();
    loop {
        match (stdin_open, deadline) {
            (true, None) => match pressed.recv() {
                Ok(()) => return,
                Err(_) => stdin_open = false,
            },
            (true, Some(deadline)) => {
                match pressed.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => return,
                    Err(RecvTimeoutError::Disconnected) => stdin_open = false,
                }
            }
            (false, Some(deadline)) => {
                thread::sleep(deadline.saturating_duration_since(Instant::now()));
                return;
            }
            // Serve until the process is killed; park may wake spuriously, hence the loop.
            (false, None) => thread::park(),
        }
    }
}

/// The server's counts as the one line `tcp listen` prints when it stops.
pub fn stats_line(stats: &Stats) -> String {
    let mut line = format!(
        "accepted {}, served {}, refused {}, errors {}, panics {}; threads joined {} of {} started",
        stats.accepted,
        stats.served,
        stats.refused,
        stats.errors,
        stats.panics,
        stats.threads_joined,
        stats.threads_started
    );
    // Counts that are 0 unless a shutdown went badly are shown only when they are not.
    if stats.cut_off > 0 {
        line.push_str(&format!(
            "; cut off when the grace period ended: {}",
            stats.cut_off
        ));
    }
    if stats.threads_abandoned > 0 {
        line.push_str(&format!("; threads abandoned: {}", stats.threads_abandoned));
    }
    line
}

/// How much of a connection `--record` keeps to print: far more than a person
/// types or a test sends. Beyond it bytes are counted, not kept, so a client
/// streaming gigabytes cannot exhaust the server's memory.
const RECORD_KEPT: usize = 64 * 1024;

/// The `--record` handler: reads until the client is done, then prints one line,
/// `tcp://PEER: N bytes: "text"`, quoted so a newline in the text cannot split it.
fn record(conn: &mut Connection) -> Result<(), Error> {
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut buf = vec![0; RECORD_KEPT];
    let ended = loop {
        match conn.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                total += n as u64;
                let room = RECORD_KEPT - kept.len();
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) => break Err(e),
        }
    };
    let mut line = format!(
        "{}: {total} bytes: {:?}",
        conn.peer_endpoint(),
        String::from_utf8_lossy(&kept)
    );
    if total > kept.len() as u64 {
        line.push_str(&format!(" (the first {} shown)", kept.len()));
    }
    if let Err(e) = &ended {
        line.push_str(&format!(" (ended by: {})", e.summary()));
    }
    print_line(&line);
    ended
}

/// Runs `sockstep tcp connect` until the server closes.
///
/// # Errors
/// The step that failed: resolving the name, connecting (the last address's
/// error when several were tried), or reading from the connection.
pub fn connect(cmd: &Connect) -> Result<(), Error> {
    // The data owns stdout; the trace goes where diagnostics go.
    let trace = super::traced_on_stderr(cmd.trace);
    let addrs = cmd.endpoint.resolve()?;
    let mut conn = connect_first(&cmd.endpoint, &addrs, cmd.timeout, &trace)?;
    // A second handle on the same socket, for the writing half. A dup(2) shares
    // the socket and its options; closing one handle does not close the socket,
    // so the trace shows a close() for each.
    let writer = conn.try_clone()?;
    let input_ended = Arc::new(AtomicBool::new(false));
    let writing_half = {
        let input_ended = input_ended.clone();
        thread::Builder::new()
            .name("sockstep-stdin".into())
            .spawn(move || copy_stdin_to(writer, &input_ended))
            .map_err(|e| Error::io(Step::Write, e).at(conn.peer_endpoint()))?
    };
    let result = copy_to_stdout(&mut conn);
    // Once stdin has ended, the writing half has only its half-close left — often
    // the very thing that made the server close — so wait for it, and its trace
    // and errors are printed before we exit. Until then it may be blocked reading
    // stdin for good, and the process ends without it.
    if input_ended.load(Ordering::SeqCst) {
        let _ = writing_half.join();
    }
    result
}

/// Tries each address in the resolver's order; the first that connects wins.
fn connect_first(
    endpoint: &Endpoint,
    addrs: &[SocketAddr],
    timeout: Duration,
    trace: &Trace,
) -> Result<Connection, Error> {
    // No read timeout: a server may take as long as it likes to answer, and the
    // person at the terminal decides when to give up. Writes still time out, so
    // a server that stops reading cannot hang us forever.
    let timeouts = Timeouts {
        read: None,
        write: Some(DEFAULT_TIMEOUT),
    };
    let mut last_error = None;
    for (i, addr) in addrs.iter().enumerate() {
        match client::socket(*addr, trace)
            .timeouts(timeouts)
            .connect(timeout)
        {
            Ok(conn) => return Ok(conn),
            Err(e) => {
                if i + 1 < addrs.len() {
                    eprintln!(
                        "sockstep: {} failed ({}); trying the next address",
                        Endpoint::from_addr(Protocol::Tcp, *addr),
                        e.summary()
                    );
                }
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        Error::new(Step::Resolve, ErrorKind::NameNotResolved).at(endpoint.clone())
    }))
}

/// The read size for both directions: 64 KiB, a loopback segment's worth.
const CHUNK: usize = 64 * 1024;

/// The writing half: stdin to the socket, then a half-close at the end of stdin.
/// Its errors are printed, not returned: the reading half decides how we exit.
fn copy_stdin_to(mut writer: Connection, input_ended: &AtomicBool) {
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0; CHUNK];
    let copied = loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("sockstep: reading stdin failed ({e}); taking it as the end of input");
                break Ok(());
            }
        };
        if let Err(e) = writer.write_all(&buf[..n]) {
            break Err(e);
        }
    };
    input_ended.store(true, Ordering::SeqCst);
    if let Err(e) = copied.and_then(|()| writer.shutdown_write()) {
        report_unless_peer_gone(&e);
    }
}

/// When the server has closed or reset, the reading half sees it and reports
/// it (or exits 0); saying it twice would only confuse.
fn report_unless_peer_gone(e: &Error) {
    let peer_gone = matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)
        || e.io_error()
            .is_some_and(|io| io.kind() == io::ErrorKind::NotConnected);
    if !peer_gone {
        eprintln!("sockstep: {e}");
    }
}

/// The reading half: the socket to stdout until the server closes.
fn copy_to_stdout(conn: &mut Connection) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    let mut buf = vec![0; CHUNK];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        // Flushed chunk by chunk so replies show as they come. A closed stdout
        // (`| head -1`) ends the conversation quietly, as SIGPIPE would end nc.
        if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_the_parser_accepts_is_in_the_help() {
        for (spec, usage) in [(LISTEN, listen_usage()), (CONNECT, connect_usage())] {
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
        let stats = Stats {
            accepted: 1,
            served: 2,
            refused: 3,
            errors: 4,
            panics: 5,
            threads_joined: 6,
            threads_started: 7,
            ..Stats::default()
        };
        let line =
            "accepted 1, served 2, refused 3, errors 4, panics 5; threads joined 6 of 7 started";
        assert_eq!(stats_line(&stats), line);
        let stuck = Stats {
            cut_off: 2,
            threads_abandoned: 1,
            ..stats
        };
        assert_eq!(
            stats_line(&stuck),
            format!("{line}; cut off when the grace period ended: 2; threads abandoned: 1")
        );
    }
}
