//! The `sockstep` command line: parse the words into a [`Command`], then run it.
//!
//! The two halves are apart on purpose. [`parse`] is pure — words in, a
//! `Command` or a [`Usage`] error out, no sockets — so every rule of the command
//! line is unit-tested. [`execute`] does the work with the library's own
//! steps. [`run`] joins them and turns the outcome into an exit status:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | done (for a server or relay: stopped as asked; for `udp send`: even if no reply came) |
//! | 1 ([`EXIT_FAILURE`]) | a socket step failed; stderr names it, the endpoint, and a hint |
//! | 2 ([`EXIT_USAGE`]) | the command line was not understood; stderr says why in one line |
//!
//! One file per verb group: `walk.rs` (`sockstep walk tcp|udp`), `tcp.rs`
//! (`sockstep tcp listen|connect`), `udp.rs` (`sockstep udp
//! listen|send|relay`), `push.rs` (`sockstep push serve|connect`), `proxy.rs`
//! (`sockstep proxy`), `bench.rs` (`sockstep bench NAME|all|loss`); `args.rs` is the
//! small parser they share.

mod args;
mod bench;
mod compare;
mod http;
mod proxy;
mod push;
mod tcp;
mod udp;
mod walk;

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;

pub use args::Usage;
pub use http::{HttpFetch, HttpServe};
pub use proxy::TcpProxy;
pub use push::{PushConnect, PushServe};
pub use tcp::{Connect, HandlerChoice, Listen};
pub use udp::{UdpHandlerChoice, UdpListen, UdpRelay, UdpSend};
pub use walk::Pictures;

use crate::error::Error;

/// A socket step failed at run time.
pub const EXIT_FAILURE: u8 = 1;

/// The command line was not understood (2 is the usual Unix status for misuse, as in bash's builtins).
pub const EXIT_USAGE: u8 = 2;

/// `sockstep --help`.
pub const USAGE: &str = "\
sockstep — socket communication, one step at a time

Usage:
  sockstep walk tcp [--slow]         watch a TCP server and client talk on loopback,
                                     every step printed as it happens
  sockstep walk udp [--slow]         the same for UDP, then 1,000 datagrams through
                                     a link that loses some without a word
  sockstep walk http [--slow]        HTTP: a connection per request, then keep-alive
  sockstep walk push [--slow]        a kept socket: two clients connect once, the
                                     server pushes to them unasked
  sockstep walk hosts [--slow]       two hosts on one machine (root): IP vs port
  sockstep walk tcp --svg FILE       draw the run: a sequence diagram, a column per
                                     socket (any walkthrough; also --mermaid FILE)
  sockstep tcp listen ADDR [...]     run a TCP server: --echo, --sink or --record
  sockstep tcp connect ADDR [...]    talk to a TCP server, like nc: stdin to it,
                                     its replies to stdout
  sockstep udp listen ADDR [...]     run a UDP server: --echo or --record
  sockstep udp send ADDR [...]       send each line of stdin as one datagram,
                                     print the replies
  sockstep udp relay --listen ADDR --to ADDR [...]
                                     pass datagrams on, losing, duplicating,
                                     reordering and delaying them on purpose
  sockstep proxy --listen ADDR --to ADDR [...]
                                     a TCP proxy that delays, slices, cuts, stalls
                                     or resets connections on purpose
  sockstep http serve ADDR [...]     run the HTTP/1.1 server: status, echo, files
  sockstep http get URL [...]        one HTTP request (also: http post URL --data ..)
  sockstep push serve ADDR [...]     run a push hub: a kept socket per client, every
                                     message published pushed to every subscriber
  sockstep push connect ADDR [...]   join one: stdin lines published, pushes printed
  sockstep compare http-vs-socket    the same updates by HTTP polling, long polling
                                     and push over a kept socket: connections,
                                     bytes and latency side by side
  sockstep bench NAME|all [--json]   our sockets against raw std and peer tools:
                                     tcp-throughput, tcp-rr, connect, udp, trace,
                                     idle, ... ('sockstep bench --help' lists them)
  sockstep bench loss [--json]       UDP, a reliable channel over UDP, and TCP
                                     through the same loss: what TCP buys, measured
  sockstep --help | --version

ADDR is IP:PORT, [IPv6]:PORT, tcp://HOST:PORT or udp://HOST:PORT; port 0 lets
the OS choose. Every verb has its own help: 'sockstep udp relay --help'.

Exit status: 0 done; 1 a socket step failed (the message names the step, the
endpoint and what to do); 2 the command line was not understood.
";

/// One command line, understood.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Print this usage text on stdout (`--help` or `-h`, at any level).
    Help(String),
    /// Print the crate's version (`--version`).
    Version,
    /// `sockstep walk tcp [--slow] [--svg FILE] [--mermaid FILE]`.
    WalkTcp {
        /// Pause after each step (`--slow`).
        slow: bool,
        /// Draw the run (`--svg FILE`, `--mermaid FILE`).
        pictures: Pictures,
    },
    /// `sockstep walk udp [--slow] [--svg FILE] [--mermaid FILE]`.
    WalkUdp {
        /// Pause after each step of the lifecycle part (`--slow`).
        slow: bool,
        /// Draw the run (`--svg FILE`, `--mermaid FILE`).
        pictures: Pictures,
    },
    /// `sockstep walk http [--slow] [--svg FILE] [--mermaid FILE]`.
    WalkHttp {
        /// Pause after each step (`--slow`).
        slow: bool,
        /// Draw the run (`--svg FILE`, `--mermaid FILE`).
        pictures: Pictures,
    },
    /// `sockstep walk push [--slow] [--svg FILE] [--mermaid FILE]`.
    WalkPush {
        /// Pause after each step (`--slow`).
        slow: bool,
        /// Draw the run (`--svg FILE`, `--mermaid FILE`).
        pictures: Pictures,
    },
    /// `sockstep walk hosts [--slow] [--svg FILE] [--mermaid FILE]` (root only).
    WalkHosts {
        /// Pause after each part (`--slow`).
        slow: bool,
        /// Draw the run (`--svg FILE`, `--mermaid FILE`).
        pictures: Pictures,
    },
    /// `sockstep compare http-vs-socket …`.
    CompareHttpVsSocket(crate::compare::http_vs_socket::CompareConfig),
    /// `sockstep http serve ADDR …`.
    HttpServe(HttpServe),
    /// `sockstep http get|post URL …`.
    HttpFetch(HttpFetch),
    /// `sockstep push serve ADDR …`.
    PushServe(PushServe),
    /// `sockstep push connect ADDR …`.
    PushConnect(PushConnect),
    /// `sockstep tcp listen ADDR …`.
    TcpListen(Listen),
    /// `sockstep tcp connect ADDR …`.
    TcpConnect(Connect),
    /// `sockstep udp listen ADDR …`.
    UdpListen(UdpListen),
    /// `sockstep udp send ADDR …`.
    UdpSend(UdpSend),
    /// `sockstep udp relay --listen ADDR --to ADDR …`.
    UdpRelay(UdpRelay),
    /// `sockstep proxy --listen ADDR --to ADDR …`.
    Proxy(TcpProxy),
    /// `sockstep bench NAME|all [--json] [--quick] [--svg DIR]`.
    Bench {
        /// A name from [`crate::bench::BENCHMARKS`], or `all`.
        name: String,
        /// How to run it.
        options: crate::bench::harness::BenchOptions,
    },
    /// `sockstep bench loss [--json] [--quick]`.
    BenchLoss {
        /// Print only a JSON document (`--json`).
        json: bool,
        /// One pass, small transfers (`--quick`).
        quick: bool,
    },
}

/// Understands the words after the program name.
///
/// # Errors
/// A [`Usage`] error naming the command and the first thing wrong with the line.
///
/// # Examples
/// ```
/// use sockstep::cli::{self, Command};
/// let words: Vec<String> = ["walk", "tcp", "--slow"].map(String::from).to_vec();
/// let walk_tcp = Command::WalkTcp { slow: true, pictures: cli::Pictures::default() };
/// assert_eq!(cli::parse(&words), Ok(walk_tcp));
/// ```
pub fn parse(words: &[String]) -> Result<Command, Usage> {
    match words {
        [] => Err(Usage::new(
            "sockstep",
            "missing a command (walk, tcp, udp, http, push, proxy, compare or bench)",
        )),
        [first, ..] if args::is_help(first) => Ok(Command::Help(USAGE.to_string())),
        [first] if first == "--version" || first == "-V" => Ok(Command::Version),
        [group, rest @ ..] if group == "walk" => walk::parse(rest),
        [group, rest @ ..] if group == "tcp" => tcp::parse(rest),
        [group, rest @ ..] if group == "udp" => udp::parse(rest),
        [group, rest @ ..] if group == "http" => http::parse(rest),
        [group, rest @ ..] if group == "push" => push::parse(rest),
        [group, rest @ ..] if group == "proxy" => proxy::parse(rest),
        [group, rest @ ..] if group == "compare" => compare::parse(rest),
        [group, rest @ ..] if group == "bench" => bench::parse(rest),
        [first, ..] if first.starts_with('-') => {
            Err(Usage::new("sockstep", format!("unknown option '{first}'")))
        }
        [other, ..] => Err(Usage::new(
            "sockstep",
            format!(
                "unknown command '{other}' (there are: walk, tcp, udp, http, push, proxy, compare, bench)"
            ),
        )),
    }
}

/// The trace of a verb's `--trace`: every step printed on stdout (a server's
/// verbs, whose stdout is their log), or nothing.
fn traced(on: bool) -> crate::trace::Trace {
    use crate::trace::{Printer, Trace};
    if on {
        Trace::to(std::sync::Arc::new(Printer::stdout()))
    } else {
        Trace::off()
    }
}

/// The same on stderr: for a client's verbs, whose stdout carries what they
/// received.
fn traced_on_stderr(on: bool) -> crate::trace::Trace {
    use crate::trace::{Printer, Trace};
    if on {
        Trace::to(std::sync::Arc::new(Printer::to(Box::new(io::stderr()))))
    } else {
        Trace::off()
    }
}

/// Resolves an endpoint given on the command line and picks its first address
/// (the resolver's preference), saying on stderr what a name resolved to — the
/// explicit, visible resolution step.
///
/// # Errors
/// [`ErrorKind::NameNotResolved`](crate::ErrorKind::NameNotResolved) from the resolver.
fn resolve_first(endpoint: &crate::Endpoint) -> Result<std::net::SocketAddr, Error> {
    let addrs = endpoint.resolve()?;
    // resolve() returns at least one address or an error.
    let addr = addrs[0];
    if let crate::Host::Name(name) = endpoint.host() {
        let chosen = crate::Endpoint::from_addr(endpoint.protocol(), addr);
        match addrs.len() {
            1 => eprintln!("sockstep: {name} resolved to {chosen}"),
            n => {
                let all: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                eprintln!(
                    "sockstep: {name} resolved to {n} addresses ({}); using the first, {chosen}",
                    all.join(", ")
                );
            }
        }
    }
    Ok(addr)
}

/// Runs a command that [`parse`] understood.
///
/// # Errors
/// The sockstep [`Error`] of the step that failed.
pub fn execute(command: Command) -> Result<(), Error> {
    match command {
        Command::Help(text) => print(&text),
        Command::Version => print(&format!("sockstep {}\n", env!("CARGO_PKG_VERSION"))),
        Command::WalkTcp { slow, pictures } => walk::tcp(slow, &pictures)?,
        Command::WalkUdp { slow, pictures } => walk::udp(slow, &pictures)?,
        Command::WalkHttp { slow, pictures } => walk::http(slow, &pictures)?,
        Command::WalkPush { slow, pictures } => walk::push(slow, &pictures)?,
        Command::WalkHosts { slow, pictures } => walk::hosts(slow, &pictures)?,
        Command::CompareHttpVsSocket(config) => compare::http_vs_socket(&config)?,
        Command::HttpServe(serve) => http::serve(&serve)?,
        Command::HttpFetch(fetch) => http::fetch(&fetch)?,
        Command::PushServe(serve) => push::serve(&serve)?,
        Command::PushConnect(connect) => push::connect(&connect)?,
        Command::TcpListen(listen) => tcp::listen(&listen)?,
        Command::TcpConnect(connect) => tcp::connect(&connect)?,
        Command::UdpListen(listen) => udp::listen(&listen)?,
        Command::UdpSend(send) => udp::send(&send)?,
        Command::UdpRelay(relay) => udp::relay(&relay)?,
        Command::Proxy(proxy) => proxy::run(&proxy)?,
        Command::Bench { name, options } => bench::run(&name, &options)?,
        Command::BenchLoss { json, quick } => bench::loss(json, quick)?,
    }
    Ok(())
}

/// The whole program: parse `words` (without the program name), execute,
/// report on stderr, and return the exit status (see the [module docs](self)).
pub fn run(words: impl IntoIterator<Item = OsString>) -> ExitCode {
    let words: Result<Vec<String>, OsString> =
        words.into_iter().map(OsString::into_string).collect();
    let command = words
        .map_err(|bad| Usage::new("sockstep", format!("argument {bad:?} is not valid UTF-8")))
        .and_then(|words| parse(&words));
    match command {
        Err(usage) => {
            eprintln!("{usage}");
            ExitCode::from(EXIT_USAGE)
        }
        Ok(command) => match execute(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sockstep: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
    }
}

/// Help goes to stdout so it can be paged; `sockstep --help | head` closing the
/// pipe early is not an error worth a panic.
fn print(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;
    use crate::tcp::connection::DEFAULT_TIMEOUT;
    use crate::tcp::serve::{BACKLOG_CEILING, MAX_CONNECTIONS_CEILING};
    use crate::udp::faults::{FaultConfig, GilbertElliott};
    use std::time::Duration;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn command(line: &str) -> Command {
        parse(&words(line)).unwrap_or_else(|e| panic!("{line:?} should parse: {e}"))
    }

    fn usage(line: &str) -> Usage {
        parse(&words(line)).expect_err(line)
    }

    fn listen(line: &str) -> Listen {
        match command(line) {
            Command::TcpListen(listen) => listen,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn help_text(line: &str) -> String {
        match command(line) {
            Command::Help(text) => text,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn every_level_has_help_even_after_other_words() {
        assert!(help_text("--help").contains("sockstep tcp listen"));
        assert_eq!(help_text("-h"), help_text("--help"));
        assert!(help_text("walk --help").contains("walk tcp"));
        assert!(help_text("walk tcp -h").contains("--slow"));
        assert!(help_text("tcp --help").contains("connect"));
        assert!(help_text("tcp listen --help").contains("Usage: sockstep tcp listen"));
        let connect = help_text("tcp connect 127.0.0.1:1 --help");
        assert!(connect.contains("--timeout") && connect.contains("--trace"));
    }

    #[test]
    fn version_is_its_own_command() {
        assert_eq!(command("--version"), Command::Version);
        assert_eq!(command("-V"), Command::Version);
    }

    #[test]
    fn walk_tcp_takes_slow() {
        let none = Pictures::default;
        assert_eq!(
            command("walk tcp"),
            Command::WalkTcp {
                slow: false,
                pictures: none()
            }
        );
        assert_eq!(
            command("walk tcp --slow"),
            Command::WalkTcp {
                slow: true,
                pictures: none()
            }
        );
        assert_eq!(usage("walk tcp --fast").message, "unknown option '--fast'");
        assert_eq!(
            command("walk udp --slow"),
            Command::WalkUdp {
                slow: true,
                pictures: none()
            }
        );
        assert_eq!(usage("walk sctp").command, "sockstep walk");
        assert_eq!(usage("walk").command, "sockstep walk");
    }

    #[test]
    fn nothing_or_an_unknown_command_is_a_usage_error_for_the_top_level() {
        for line in ["", "frobnicate", "--frob", "--version extra"] {
            assert_eq!(usage(line).command, "sockstep", "{line:?}");
        }
        assert_eq!(usage("tcp").command, "sockstep tcp");
        assert_eq!(usage("tcp bind 127.0.0.1:1").command, "sockstep tcp");
    }

    #[test]
    fn listen_has_the_documented_defaults() {
        assert_eq!(
            listen("tcp listen 127.0.0.1:7878"),
            Listen {
                endpoint: "tcp://127.0.0.1:7878".parse().unwrap(),
                handler: HandlerChoice::Echo,
                max_connections: 256,
                backlog: 64,
                idle_timeout: DEFAULT_TIMEOUT,
                run_for: None,
                trace: false,
            }
        );
    }

    #[test]
    fn listen_reads_every_flag_in_either_form() {
        let l = listen(
            "tcp listen [::1]:0 --record --max-connections=3 --backlog 0 --idle-timeout 0.5 --for=2 --trace",
        );
        assert_eq!(l.endpoint, "tcp://[::1]:0".parse::<Endpoint>().unwrap());
        assert_eq!(l.handler, HandlerChoice::Record);
        assert_eq!((l.max_connections, l.backlog), (3, 0));
        assert_eq!(l.idle_timeout, Duration::from_millis(500));
        assert_eq!(l.run_for, Some(Duration::from_secs(2)));
        assert!(l.trace);
        assert_eq!(
            listen("tcp listen tcp://localhost:1 --sink").handler,
            HandlerChoice::Sink
        );
    }

    #[test]
    fn listen_refuses_two_handlers() {
        assert_eq!(
            usage("tcp listen 127.0.0.1:1 --echo --sink").message,
            "choose one of --echo, --sink and --record"
        );
    }

    #[test]
    fn listen_limits_are_checked_against_the_library_ceilings() {
        let too_many = format!(
            "tcp listen 127.0.0.1:1 --max-connections {}",
            MAX_CONNECTIONS_CEILING + 1
        );
        let e = usage(&too_many);
        assert_eq!(e.command, "sockstep tcp listen");
        assert!(
            e.message
                .starts_with("--max-connections must be a whole number from 1 to 10000"),
            "{e}"
        );
        assert!(
            usage("tcp listen 127.0.0.1:1 --max-connections 0")
                .message
                .contains("from 1 to")
        );
        let e = usage(&format!(
            "tcp listen 127.0.0.1:1 --backlog {}",
            BACKLOG_CEILING + 1
        ));
        assert!(
            e.message
                .starts_with("--backlog must be a whole number from 0 to 4096"),
            "{e}"
        );
        assert!(
            usage("tcp listen 127.0.0.1:1 --idle-timeout 0")
                .message
                .starts_with("--idle-timeout must be")
        );
        assert!(
            usage("tcp listen 127.0.0.1:1 --for 0")
                .message
                .starts_with("--for must be")
        );
    }

    #[test]
    fn a_tcp_verb_refuses_a_udp_endpoint() {
        let e = usage("tcp listen udp://127.0.0.1:1");
        assert!(
            e.message.starts_with("udp://127.0.0.1:1 is a udp endpoint"),
            "{e}"
        );
        assert!(
            usage("tcp connect udp://127.0.0.1:1")
                .message
                .contains("speaks TCP")
        );
    }

    #[test]
    fn a_bad_addr_says_which_part_is_wrong() {
        let e = usage("tcp connect 127.0.0.1:http");
        assert!(e.message.starts_with("bad ADDR: the port of"), "{e}");
        assert!(usage("tcp listen 127.0.0.1").message.contains("port"));
        assert_eq!(usage("tcp connect").message, "missing ADDR");
        assert!(
            usage("tcp connect 127.0.0.1:1 127.0.0.1:2")
                .message
                .starts_with("unexpected argument")
        );
    }

    #[test]
    fn connect_has_a_five_second_default_and_reads_its_flags() {
        assert_eq!(
            command("tcp connect 127.0.0.1:7878"),
            Command::TcpConnect(Connect {
                endpoint: "tcp://127.0.0.1:7878".parse().unwrap(),
                timeout: Duration::from_secs(5),
                trace: false,
            })
        );
        let Command::TcpConnect(c) =
            command("tcp connect tcp://localhost:1 --timeout=0.25 --trace")
        else {
            panic!("not a connect");
        };
        assert_eq!((c.timeout, c.trace), (Duration::from_millis(250), true));
        assert!(
            usage("tcp connect 127.0.0.1:1 --timeout 0")
                .message
                .starts_with("--timeout must be")
        );
    }

    #[test]
    fn udp_listen_echoes_by_default_and_reads_its_flags() {
        assert_eq!(
            command("udp listen 127.0.0.1:9000"),
            Command::UdpListen(UdpListen {
                endpoint: "udp://127.0.0.1:9000".parse().unwrap(),
                handler: UdpHandlerChoice::Echo,
                run_for: None,
                trace: false,
            })
        );
        assert_eq!(
            command("udp listen udp://[::1]:0 --record --for=1.5 --trace"),
            Command::UdpListen(UdpListen {
                endpoint: "udp://[::1]:0".parse().unwrap(),
                handler: UdpHandlerChoice::Record,
                run_for: Some(Duration::from_millis(1_500)),
                trace: true,
            })
        );
        assert_eq!(
            usage("udp listen 127.0.0.1:1 --sink").message,
            "unknown option '--sink'"
        );
    }

    #[test]
    fn udp_send_waits_one_second_for_a_reply_by_default() {
        assert_eq!(
            command("udp send localhost:9000"),
            Command::UdpSend(UdpSend {
                endpoint: "udp://localhost:9000".parse().unwrap(),
                timeout: Duration::from_secs(1),
                trace: false,
            })
        );
        let Command::UdpSend(s) = command("udp send 127.0.0.1:1 --timeout 0.1 --trace") else {
            panic!("not a send");
        };
        assert_eq!((s.timeout, s.trace), (Duration::from_millis(100), true));
    }

    #[test]
    fn udp_relay_reads_every_fault_in_either_form() {
        let line = "udp relay --listen 127.0.0.1:0 --to=udp://[::1]:9 --loss 10% --duplicate=0.02 \
                    --reorder 5% --delay 5ms --jitter=250us --burst 1%,25% --seed 42 --for 3";
        let Command::UdpRelay(r) = command(line) else {
            panic!("not a relay");
        };
        assert_eq!(r.listen, "udp://127.0.0.1:0".parse::<Endpoint>().unwrap());
        assert_eq!(r.to, "udp://[::1]:9".parse::<Endpoint>().unwrap());
        assert_eq!(
            r.faults,
            FaultConfig {
                loss: 0.1,
                duplicate: 0.02,
                reorder: 0.05,
                delay: Duration::from_millis(5),
                jitter: Duration::from_micros(250),
                burst: Some(GilbertElliott::simple(0.01, 0.25)),
                seed: 42,
            }
        );
        assert_eq!(r.run_for, Some(Duration::from_secs(3)));
        let Command::UdpRelay(plain) = command("udp relay --to 127.0.0.1:9 --listen 127.0.0.1:0")
        else {
            panic!("not a relay");
        };
        assert_eq!(plain.faults, FaultConfig::default(), "no flag, no fault");
    }

    #[test]
    fn udp_relay_refuses_faults_out_of_range_naming_the_flag() {
        let base = "udp relay --listen 127.0.0.1:0 --to 127.0.0.1:9";
        for (extra, start) in [
            ("--loss 1.5", "--loss must be a probability"),
            ("--reorder=101%", "--reorder must be a probability"),
            ("--duplicate -0.1", "--duplicate must be a probability"),
            ("--delay 5parsecs", "--delay must be a duration"),
            ("--delay 31s", "--delay must be a duration from 0 to 30s"),
            ("--jitter 11s", "--jitter must be a duration from 0 to 10s"),
            ("--jitter 5", "--jitter must be a duration"),
            ("--burst 1%", "--burst must be two probabilities"),
            ("--burst 1%,2", "--burst must be two probabilities"),
            ("--seed lots", "--seed must be a whole number"),
            ("--listen 127.0.0.1:1", "--listen is given twice"),
        ] {
            let e = usage(&format!("{base} {extra}"));
            assert_eq!(e.command, "sockstep udp relay");
            assert!(e.message.starts_with(start), "{extra}: {e}");
        }
        assert_eq!(
            usage("udp relay --to 127.0.0.1:9").message,
            "missing --listen ADDR (where clients send to)"
        );
        assert!(
            usage("udp relay --listen 127.0.0.1:0 --to 127.0.0.1")
                .message
                .starts_with("bad --to: the port of")
        );
    }

    #[test]
    fn a_udp_verb_refuses_a_tcp_endpoint() {
        for line in [
            "udp listen tcp://127.0.0.1:1",
            "udp send tcp://127.0.0.1:1",
            "udp relay --listen tcp://127.0.0.1:0 --to 127.0.0.1:9",
        ] {
            let e = usage(line);
            assert!(e.message.contains("this verb speaks UDP"), "{line}: {e}");
        }
        assert_eq!(usage("udp").command, "sockstep udp");
        assert!(
            usage("udp connect 127.0.0.1:1")
                .message
                .starts_with("unknown verb 'connect'")
        );
    }

    #[test]
    fn bench_loss_takes_json_and_quick() {
        assert_eq!(
            command("bench loss"),
            Command::BenchLoss {
                json: false,
                quick: false
            }
        );
        assert_eq!(
            command("bench loss --quick --json"),
            Command::BenchLoss {
                json: true,
                quick: true
            }
        );
        assert!(help_text("bench --help").contains("bench loss"));
        assert!(help_text("bench loss -h").contains("--json"));
        assert_eq!(usage("bench").command, "sockstep bench");
        let unknown = usage("bench speed").message;
        assert!(
            unknown.starts_with("unknown benchmark 'speed' (there are: tcp-throughput, ")
                && unknown.ends_with(", all, loss)"),
            "{unknown}"
        );
        assert_eq!(
            usage("bench loss --fast").message,
            "unknown option '--fast'"
        );
    }

    #[test]
    fn a_usage_error_is_one_line_then_where_to_read_more() {
        let text = usage("tcp listen 127.0.0.1:1 --bogus").to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "sockstep tcp listen: unknown option '--bogus'",
                "try 'sockstep tcp listen --help'"
            ]
        );
    }
}
