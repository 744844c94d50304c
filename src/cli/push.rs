//! `sockstep push serve` and `sockstep push connect`: the kept socket for a
//! terminal.
//!
//! `serve` is `server::socket → bind → listen` and then
//! [`push::serve::serve`](crate::push::serve::serve) with a hub, printing each
//! join and leave as it happens, stopped by a line on standard input as `tcp
//! listen` is. `connect` is a [`Client`]: it subscribes, publishes each line of
//! standard input (on a thread of its own), and prints every line the server
//! pushes, as it comes.

use std::io::{self, BufRead};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::Command;
use crate::cli::args::{self, Spec, Usage};
use crate::cli::tcp::{DEFAULT_CONNECT_TIMEOUT, print_line, tcp_endpoint, wait_for_stop};
use crate::endpoint::{Endpoint, Protocol};
use crate::error::{Error, ErrorKind};
use crate::push::client::{Client, Publisher};
use crate::push::hub::{
    DEFAULT_MAX_MEMBERS, DEFAULT_QUEUE, Hub, HubConfig, HubEvent, MAX_MEMBERS_CEILING, MAX_QUEUE,
    MIN_TICK,
};
use crate::push::line::Command as LineCommand;
use crate::push::serve::{self, DEFAULT_IDLE_TIMEOUT, PushStats};
use crate::push::websocket;
use crate::tcp::connection::{DEFAULT_TIMEOUT, Timeouts};
use crate::tcp::serve::ServeConfig;
use crate::tcp::{client, server};
use crate::trace::Trace;
use crate::ws;

/// `sockstep push --help`.
pub const USAGE: &str = "\
Usage:
  sockstep push serve ADDR [--tick DUR] [options]   run a push hub: every message
                                                    published goes to every subscriber
  sockstep push connect ADDR [options]              join one: stdin lines are published,
                                                    what the hub pushes is printed

ADDR is IP:PORT, [IPv6]:PORT or tcp://HOST:PORT (port 0: the OS chooses).
Talk to a hub with nc too: 'nc 127.0.0.1 7878', then SUB, PUB hello, QUIT.
'sockstep push serve --help' and 'sockstep push connect --help' say more.
";

/// The longest tick `--tick` accepts: an hour. A clock slower than that is
/// not a clock anyone watches.
const MAX_TICK: Duration = Duration::from_secs(3_600);

/// How many clients may wait for the server to take them: as `tcp listen`.
const BACKLOG: usize = crate::cli::tcp::DEFAULT_BACKLOG;

/// How often `push connect` looks at the clock while nothing arrives, so
/// `--for` ends it on time.
const POLL: Duration = Duration::from_millis(100);

/// How long `push connect` waits, after its `QUIT`, for the hub's `BYE` and close.
const QUIT_WAIT: Duration = Duration::from_secs(5);

/// `sockstep push serve --help`.
pub fn serve_usage() -> String {
    format!(
        "\
Usage: sockstep push serve ADDR [options]

Runs a push hub on ADDR — 127.0.0.1:7878, [::1]:0 or tcp://localhost:7878
(port 0: the OS chooses) — and prints one line:
  listening on tcp://IP:PORT (push hub; ...; press Enter to stop)
then a line for every member that joins or leaves, and why. Each connection is
a member; it speaks lines (try it with nc):
  SUB            receive every message published from now on (OK SUB)
  UNSUB          stop receiving (OK UNSUB)
  PUB <text>     publish to every subscriber (OK PUB <seq>)
  PING           PONG
  HELP           the commands
  QUIT           BYE quit, then the server closes
and receives HELLO <id> first, then MSG <seq> <from> <text>, TICK <seq> <unix-ms>,
and BYE <reason> before the server closes it (too slow, idle, shutting down, ...).
Press Enter to stop: every member is told BYE, and the counts go to stderr.
The end of stdin is not a stop, so it runs fine with </dev/null.

Options:
  --tick DUR            publish TICK every DUR, as 1s or 500ms (default: no clock)
  --queue N             messages that may wait for one member; a member whose
                        queue is full is too slow and is cut loose
                        (1 to {max_queue}; default {queue})
  --max-members N       members at once; one more is told 'BYE hub full'
                        (1 to {max_members}; default {members})
  --idle-timeout SECS   cut a member that sends nothing for SECS (default {idle})
  --web ADDR            also serve, over HTTP on ADDR, a page whose script joins
                        the hub by WebSocket (GET / the page, GET /hub the socket:
                        one line per text message); open it in a browser
  --for SECS            stop by itself after SECS, as if Enter were pressed
  --trace               print every socket step on stdout
  -h, --help            show this help
",
        max_queue = MAX_QUEUE,
        queue = DEFAULT_QUEUE,
        max_members = MAX_MEMBERS_CEILING,
        members = DEFAULT_MAX_MEMBERS,
        idle = DEFAULT_IDLE_TIMEOUT.as_secs_f64(),
    )
}

/// `sockstep push connect --help`.
pub fn connect_usage() -> String {
    format!(
        "\
Usage: sockstep push connect ADDR [options]

Joins the push hub at ADDR and subscribes; then publishes each line of stdin
(PUB <line>) and prints every line the hub sends, as it comes: HELLO, OK,
MSG <seq> <from> <text>, TICK <seq> <unix-ms>, BYE <reason>. At the end of
stdin it says QUIT and exits when the hub has closed — unless --count or --for
is given: then it goes on receiving until that is reached. It exits 0 when the
hub closes the connection, whatever the BYE says.

Options:
  --count N        QUIT after N published messages (MSG, TICK, SYS) have come
  --for SECS       QUIT after SECS
  --timeout SECS   give up on connect(), and on any write, after SECS (default {timeout})
  -h, --help       show this help
",
        timeout = DEFAULT_CONNECT_TIMEOUT.as_secs_f64(),
    )
}

const SERVE: Spec = Spec {
    command: "sockstep push serve",
    positionals: &["ADDR"],
    switches: &["--trace"],
    options: &[
        ("--tick", "DUR"),
        ("--queue", "N"),
        ("--max-members", "N"),
        ("--idle-timeout", "SECS"),
        ("--web", "ADDR"),
        ("--for", "SECS"),
    ],
};

const CONNECT: Spec = Spec {
    command: "sockstep push connect",
    positionals: &["ADDR"],
    switches: &[],
    options: &[("--count", "N"), ("--for", "SECS"), ("--timeout", "SECS")],
};

/// `sockstep push serve`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct PushServe {
    /// Where to listen; a TCP endpoint, its host perhaps a name still to resolve.
    pub endpoint: Endpoint,
    /// The hub's settings (`--tick`, `--queue`, `--max-members`).
    pub hub: HubConfig,
    /// How long a member may send nothing (`--idle-timeout`).
    pub idle_timeout: Duration,
    /// Also serve the hub's web page and WebSocket here (`--web`).
    pub web: Option<Endpoint>,
    /// Stop by itself after this long (`--for`).
    pub run_for: Option<Duration>,
    /// Print every step (`--trace`).
    pub trace: bool,
}

/// `sockstep push connect`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct PushConnect {
    /// The hub; its host perhaps a name still to resolve.
    pub endpoint: Endpoint,
    /// Quit after this many published messages (`--count`).
    pub count: Option<usize>,
    /// Quit after this long (`--for`).
    pub run_for: Option<Duration>,
    /// How long connecting, and each write, may take (`--timeout`).
    pub timeout: Duration,
}

/// Parses the words after `push`.
///
/// # Errors
/// A [`Usage`] error for a missing or unknown verb, a bad flag or value, or an
/// address that is not a TCP endpoint.
pub fn parse(words: &[String]) -> Result<Command, Usage> {
    args::verb(
        "sockstep push",
        USAGE,
        words,
        &[("serve", parse_serve), ("connect", parse_connect)],
    )
}

fn parse_serve(words: &[String]) -> Result<Command, Usage> {
    let parsed = args::parse(&SERVE, words)?;
    if parsed.help {
        return Ok(Command::Help(serve_usage()));
    }
    let tick = parsed.duration("--tick", MAX_TICK)?;
    if tick.is_some_and(|t| t < MIN_TICK) {
        return Err(parsed.error(format!(
            "--tick must be at least {MIN_TICK:?} (leave it out for no clock)"
        )));
    }
    Ok(Command::PushServe(PushServe {
        endpoint: tcp_endpoint(&parsed)?,
        hub: HubConfig {
            queue: parsed.count("--queue", 1..=MAX_QUEUE, DEFAULT_QUEUE)?,
            max_members: parsed.count(
                "--max-members",
                1..=MAX_MEMBERS_CEILING,
                DEFAULT_MAX_MEMBERS,
            )?,
            tick,
        },
        idle_timeout: parsed
            .seconds("--idle-timeout")?
            .unwrap_or(DEFAULT_IDLE_TIMEOUT),
        web: parsed
            .value("--web")
            .map(|web| {
                Endpoint::parse_with_default(web, Protocol::Tcp)
                    .ok()
                    .filter(|e| e.protocol() == Protocol::Tcp)
                    .ok_or_else(|| parsed.error("bad --web ADDR: write IP:PORT or HOST:PORT"))
            })
            .transpose()?,
        run_for: parsed.seconds("--for")?,
        trace: parsed.switch("--trace"),
    }))
}

fn parse_connect(words: &[String]) -> Result<Command, Usage> {
    let parsed = args::parse(&CONNECT, words)?;
    if parsed.help {
        return Ok(Command::Help(connect_usage()));
    }
    let count = match parsed.value("--count") {
        None => None,
        Some(_) => Some(parsed.count("--count", 1..=usize::MAX, 1)?),
    };
    Ok(Command::PushConnect(PushConnect {
        endpoint: tcp_endpoint(&parsed)?,
        count,
        run_for: parsed.seconds("--for")?,
        timeout: parsed
            .seconds("--timeout")?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
    }))
}

/// Runs `sockstep push serve` until Enter is pressed or `--for` runs out.
///
/// # Errors
/// The step that failed — resolve, bind, or starting the hub or the server.
pub fn serve(cmd: &PushServe) -> Result<(), Error> {
    let addr = super::resolve_first(&cmd.endpoint)?;
    let trace = super::traced(cmd.trace);
    let hub = Hub::new(cmd.hub)?;
    hub.watch(|event| print_line(&event_line(event)));
    let listening = server::socket(addr, &trace).bind()?.listen(BACKLOG);
    let timeouts = Timeouts {
        read: Some(cmd.idle_timeout),
        write: Some(DEFAULT_TIMEOUT),
    };
    let push = serve::serve(listening, hub.clone(), timeouts)?;
    let tick = cmd
        .hub
        .tick
        .map_or("no clock".to_string(), |t| format!("TICK every {t:?}"));
    print_line(&format!(
        "listening on {} (push hub; {tick}; queues of {}; up to {} members; press Enter to stop)",
        Endpoint::from_addr(Protocol::Tcp, push.local_addr()),
        cmd.hub.queue,
        cmd.hub.max_members,
    ));
    let web = match &cmd.web {
        None => None,
        Some(endpoint) => {
            let addr = super::resolve_first(endpoint)?;
            let config = ws::Config {
                timeouts,
                ..ws::Config::default()
            };
            let router = websocket::router(hub, config).status_page("/status");
            let listening = server::socket(addr, &trace).bind()?.listen(BACKLOG);
            let web = listening.serve(ServeConfig::default(), router)?;
            print_line(&format!(
                "web page on http://{}/ (WebSocket members at /hub)",
                web.local_addr()
            ));
            Some(web)
        }
    };
    wait_for_stop(cmd.run_for);
    let stats = push.shutdown();
    if let Some(web) = web {
        web.shutdown();
    }
    eprintln!("sockstep: stopped: {}", stats_line(&stats));
    Ok(())
}

/// One line for a join, a leave or a refusal.
fn event_line(event: &HubEvent) -> String {
    match event {
        HubEvent::Joined { id, name } => format!("joined: member {id} ({name})"),
        HubEvent::Left { id, name, reason } => format!("left: member {id} ({name}): {reason}"),
        HubEvent::Refused { name, reason } => format!("refused: {name}: {reason}"),
    }
}

/// The hub's and the server's counts as the one line `push serve` prints when it stops.
pub fn stats_line(stats: &PushStats) -> String {
    let hub = &stats.hub;
    let left = &hub.left;
    let mut line = format!(
        "joined {}, refused {}; left: quit {}, end of stream {}, reset {}, timeout {}, \
         too slow {}, shutdown {}, error {}; published {}, delivered {} of {}, \
         dropped (too slow) {}, discarded {}; connections {}, threads joined {} of {} started",
        hub.joined,
        hub.refused,
        left.quit,
        left.eof,
        left.reset,
        left.timeout,
        left.slow,
        left.shutdown,
        left.error,
        hub.published,
        hub.delivered,
        hub.fanned_out,
        hub.dropped_slow,
        hub.discarded,
        stats.server.accepted,
        stats.server.threads_joined,
        stats.server.threads_started,
    );
    if stats.server.threads_abandoned > 0 {
        line.push_str(&format!(
            "; threads abandoned: {}",
            stats.server.threads_abandoned
        ));
    }
    line
}

/// Runs `sockstep push connect` until the hub closes (after our `QUIT`, or
/// on its own).
///
/// # Errors
/// The step that failed: resolving, connecting (the hub full is
/// [`ErrorKind::RefusedByServer`]), or reading.
pub fn connect(cmd: &PushConnect) -> Result<(), Error> {
    let addr = super::resolve_first(&cmd.endpoint)?;
    // No read timeout of the socket's own: each wait below sets one.
    let conn = client::socket(addr, &Trace::off())
        .timeouts(Timeouts {
            read: None,
            write: Some(cmd.timeout),
        })
        .connect(cmd.timeout)?;
    let mut client = Client::over(conn, cmd.timeout)?;
    print_line(&format!("HELLO {}", client.id()));
    client.subscribe(cmd.timeout)?;
    print_line("OK SUB");
    let publisher = client.publisher();
    let ends_by_itself = cmd.count.is_some() || cmd.run_for.is_some();
    {
        let publisher = publisher.clone();
        // Reading stdin blocks and cannot be interrupted; if the session ends
        // first, the process exits without this thread, as `tcp connect` does.
        thread::Builder::new()
            .name("sockstep-stdin".into())
            .spawn(move || publish_stdin(&publisher, !ends_by_itself))
            .map_err(|e| Error::io(crate::step::Step::Write, e))?;
    }
    let deadline = cmd.run_for.map(|d| Instant::now() + d);
    let mut published = 0usize;
    let mut quit_sent = false;
    let mut quit_by = None;
    loop {
        let enough = cmd.count.is_some_and(|n| published >= n)
            || deadline.is_some_and(|d| Instant::now() >= d);
        if enough && !quit_sent {
            quit_sent = true;
            quit_by = Some(Instant::now() + QUIT_WAIT);
            // A hub that closed meanwhile is found by the next read.
            let _ = publisher.send(&LineCommand::Quit);
        }
        if quit_by.is_some_and(|by| Instant::now() >= by) {
            return Err(Error::new(crate::step::Step::Read, ErrorKind::TimedOut)
                .at(Endpoint::from_addr(Protocol::Tcp, addr)));
        }
        match client.next(POLL) {
            Ok(Some(line)) => {
                published += usize::from(line.seq().is_some());
                print_line(&line.to_string());
            }
            Ok(None) => return Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset) && quit_sent => {
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

/// The publishing half: each line of stdin as `PUB <line>` (empty lines are
/// skipped: there is nothing to publish); at the end of stdin, `QUIT` if asked.
fn publish_stdin(publisher: &Publisher, quit_at_end: bool) {
    for line in io::stdin().lock().lines() {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                eprintln!("sockstep: reading stdin failed ({e}); taking it as the end of input");
                break;
            }
        };
        let text = line.strip_suffix('\r').unwrap_or(&line);
        if text.is_empty() {
            continue;
        }
        if let Err(e) = publisher.publish(text) {
            // The reading half sees a closed hub and says so; a line we could
            // not send is worth a word of its own.
            if !matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) {
                eprintln!("sockstep: {e}");
            }
            if e.io_error().is_some() {
                return;
            }
        }
    }
    if quit_at_end {
        let _ = publisher.send(&LineCommand::Quit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn command(line: &str) -> Command {
        crate::cli::parse(&words(line)).unwrap_or_else(|e| panic!("{line:?} should parse: {e}"))
    }

    fn usage(line: &str) -> Usage {
        crate::cli::parse(&words(line)).expect_err(line)
    }

    #[test]
    fn every_flag_the_parser_accepts_is_in_the_help() {
        for (spec, usage) in [(SERVE, serve_usage()), (CONNECT, connect_usage())] {
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
    fn serve_has_the_documented_defaults() {
        assert_eq!(
            command("push serve 127.0.0.1:7878"),
            Command::PushServe(PushServe {
                endpoint: "tcp://127.0.0.1:7878".parse().unwrap(),
                hub: HubConfig::default(),
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                web: None,
                run_for: None,
                trace: false,
            })
        );
    }

    #[test]
    fn serve_reads_every_flag_in_either_form() {
        let Command::PushServe(s) = command(
            "push serve [::1]:0 --tick 250ms --queue=8 --max-members 3 --idle-timeout 0.5 --for=2 --trace",
        ) else {
            panic!("not a push serve");
        };
        assert_eq!(s.endpoint, "tcp://[::1]:0".parse::<Endpoint>().unwrap());
        assert_eq!(
            s.hub,
            HubConfig {
                queue: 8,
                max_members: 3,
                tick: Some(Duration::from_millis(250)),
            }
        );
        assert_eq!(s.idle_timeout, Duration::from_millis(500));
        assert_eq!(s.run_for, Some(Duration::from_secs(2)));
        assert!(s.trace);
    }

    #[test]
    fn serve_refuses_values_out_of_range_naming_the_flag() {
        let base = "push serve 127.0.0.1:0";
        for (extra, start) in [
            ("--tick 1", "--tick must be a duration"),
            ("--tick 0s", "--tick must be at least"),
            ("--tick 2h", "--tick must be a duration"),
            (
                "--queue 0",
                "--queue must be a whole number from 1 to 65536",
            ),
            (
                "--max-members 4097",
                "--max-members must be a whole number from 1 to 4096",
            ),
            ("--idle-timeout 0", "--idle-timeout must be"),
            ("--for 0", "--for must be"),
            ("--echo", "unknown option '--echo'"),
        ] {
            let e = usage(&format!("{base} {extra}"));
            assert_eq!(e.command, "sockstep push serve");
            assert!(e.message.starts_with(start), "{extra}: {e}");
        }
        assert!(
            usage("push serve udp://127.0.0.1:0")
                .message
                .contains("this verb speaks TCP")
        );
    }

    #[test]
    fn connect_reads_its_flags() {
        assert_eq!(
            command("push connect localhost:7878"),
            Command::PushConnect(PushConnect {
                endpoint: "tcp://localhost:7878".parse().unwrap(),
                count: None,
                run_for: None,
                timeout: DEFAULT_CONNECT_TIMEOUT,
            })
        );
        let Command::PushConnect(c) =
            command("push connect 127.0.0.1:1 --count 3 --for=1.5 --timeout 0.25")
        else {
            panic!("not a push connect");
        };
        assert_eq!(c.count, Some(3));
        assert_eq!(c.run_for, Some(Duration::from_millis(1_500)));
        assert_eq!(c.timeout, Duration::from_millis(250));
        assert!(
            usage("push connect 127.0.0.1:1 --count 0")
                .message
                .starts_with("--count must be a whole number from 1")
        );
    }

    #[test]
    fn push_has_help_at_every_level_and_names_its_verbs() {
        let help = |line: &str| match command(line) {
            Command::Help(text) => text,
            other => panic!("{line:?} gave {other:?}"),
        };
        assert!(help("push --help").contains("push serve"));
        assert!(help("push serve -h").contains("--max-members N"));
        assert!(help("push connect 127.0.0.1:1 --help").contains("--count N"));
        assert_eq!(
            usage("push").message,
            "missing the verb (there are: serve, connect)"
        );
        assert!(
            usage("push listen 127.0.0.1:1")
                .message
                .starts_with("unknown verb 'listen'")
        );
    }

    #[test]
    fn the_event_lines_say_who_and_why() {
        use crate::push::hub::{Leave, MemberId};
        let left = HubEvent::Left {
            id: MemberId(3),
            name: "tcp://127.0.0.1:5000".into(),
            reason: Leave::Slow { queue: 8 },
        };
        assert_eq!(
            event_line(&left),
            "left: member 3 (tcp://127.0.0.1:5000): too slow: queue of 8 full"
        );
    }
}
