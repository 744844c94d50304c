//! `sockstep walk tcp|udp|http|push|hosts`: the walkthroughs, which run real sockets and print every step.

use std::path::{Path, PathBuf};
use std::{env, fs, io};

use crate::cli::Command;
use crate::cli::args::{self, Spec, Usage};
use crate::diagram::{self, Sequence};
use crate::error::{Error, ErrorKind};
use crate::walk::{self, SLOW_PAUSE, WalkOptions};

/// `sockstep walk --help`.
pub const USAGE: &str = "\
Usage: sockstep walk tcp [--slow] [--svg FILE] [--mermaid FILE]
       sockstep walk udp [--slow] [--svg FILE] [--mermaid FILE]
       sockstep walk http [--slow] [--svg FILE] [--mermaid FILE]
       sockstep walk push [--slow] [--svg FILE] [--mermaid FILE]
       sockstep walk hosts [--slow] [--svg FILE] [--mermaid FILE]

Walkthroughs run the seed's socket flow for real, on loopback, in this one
process, and print every step as it happens. 'tcp' is the stream socket's
life; 'udp' the datagram socket's, then a link that loses datagrams; 'http'
requests that each open and close a connection, then HTTP/1.1 keep-alive;
'push' a kept connection per client, with the server pushing unasked.
'hosts' (root only) builds two hosts on this machine and runs a server on one
and a client on the other: the address names the host, the port the process.
'sockstep walk tcp --help' (or udp, http, push, hosts) says more.
";

/// `sockstep walk http --help`.
pub const USAGE_HTTP: &str = "\
Usage: sockstep walk http [--slow] [--svg FILE] [--mermaid FILE]

Runs an HTTP server and client in this process, on loopback, and prints every
socket step and every HTTP message as it happens:
  part 1, the seed's HTTP: two requests, each on its own connection —
    socket() → connect() → write the request → read the response → close()
  part 2, HTTP/1.1 keep-alive: three requests on one connection.
Then how many connections each part took. Finishes by itself.

Options:
  --slow           pause after each step so you can follow along
  --svg FILE       also draw the run as a sequence diagram (SVG): a column per
                   socket, a row per step, an arrow per write and read
  --mermaid FILE   the same diagram as Mermaid text (sequenceDiagram)
  -h, --help       show this help
";

/// `sockstep walk push --help`.
pub const USAGE_PUSH: &str = "\
Usage: sockstep walk push [--slow] [--svg FILE] [--mermaid FILE]

Runs a push hub and two clients, alice and bob, in this process, on loopback,
and prints every socket step and every line each way as it happens:
  the server: socket() → bind() → listen(), its clock ticking every 200 ms;
  alice and bob connect once each — socket() → connect() → HELLO — and SUB;
  alice publishes and bob receives it without asking; bob answers, alice
    receives; the server pushes a TICK on its own; nobody reconnects;
  alice sends QUIT (BYE quit, close); the server shuts down (BYE to bob).
Then how many connections, lines each way, and lines nobody asked for.
The contrast is 'walk http', where the server speaks only when asked.
Finishes by itself in about a second.

Options:
  --slow           pause after each step so you can follow along
  --svg FILE       also draw the run as a sequence diagram (SVG): a column per
                   socket, a row per step, an arrow per write and read
  --mermaid FILE   the same diagram as Mermaid text (sequenceDiagram)
  -h, --help       show this help
";

/// `sockstep walk hosts --help`.
pub const USAGE_HOSTS: &str = "\
Usage: sockstep walk hosts [--slow] [--svg FILE] [--mermaid FILE]

Needs root, iproute2 (ip) and nftables (nft). Builds two hosts on this
machine — two network namespaces joined by a veth pair, host A at 198.18.0.1
and host B at 198.18.0.2 (a range reserved for test networks) — and runs this
program on each, printing each side's trace as it comes:
  host B listens on 198.18.0.2:7878; host A connects, from 198.18.0.1 and a
    port its kernel chose, and accept() on host B reports exactly that peer;
  host A listens on port 7878 too, at the same time: fine, another host;
  host B binds port 7878 again: 'address already in use', naming the endpoint;
  a UDP datagram from host A to host B and back;
  the hosts are deleted, and nothing of them is left.
The hosts are deleted on every exit, Ctrl-C included. Without root it says so
in one line and exits 1: 'make run' shows sockets on loopback instead.
Finishes by itself in about a second.

Options:
  --slow           pause after each part so you can follow along
  --svg FILE       also draw the run as a sequence diagram (SVG): a column per
                   socket, each named by its host, from the children's traces
  --mermaid FILE   the same diagram as Mermaid text (sequenceDiagram)
  -h, --help       show this help
";

/// `sockstep walk tcp --help`.
pub const USAGE_TCP: &str = "\
Usage: sockstep walk tcp [--slow] [--svg FILE] [--mermaid FILE]

Runs a TCP server and a client in this process, on loopback, and prints each
step as it happens, numbered as in the seed:
  server 1 socket()  2 bind()  3 listen()  4 accept()
  client 1 socket()  2 connect()  3 (the server's accept)  4 read()/write()
with what std asked the kernel to do underneath. The client sends three lines,
the server echoes them, both close, the server shuts down. Finishes by itself.

Options:
  --slow           pause after each step so you can follow along
  --svg FILE       also draw the run as a sequence diagram (SVG): a column per
                   socket, a row per step, an arrow per write and read
  --mermaid FILE   the same diagram as Mermaid text (sequenceDiagram)
  -h, --help       show this help
";

/// `sockstep walk udp --help`.
pub const USAGE_UDP: &str = "\
Usage: sockstep walk udp [--slow] [--svg FILE] [--mermaid FILE]

Part 1 runs a UDP server socket and a client socket in this process, on
loopback, and prints each step as it happens:
  both socket() → bind() (the client to port 0: every socket has a port),
  send_to() → recv_from() each way (the sender's address arrives with the data),
  the client's connect() (no handshake: nothing is sent), send()/recv(),
  65,507 bytes arriving whole and 65,508 refused, and a datagram cut by a
  receive buffer too small for it, reported as an error.
Part 2 sends 1,000 numbered datagrams through a relay that loses 10%,
duplicates 2% and reorders 5% of them, from a fixed seed, and prints which
never arrived, which came twice and which came out of order — while every
send_to() returned Ok. Finishes by itself in about a second.

Options:
  --slow           pause after each step of part 1 so you can follow along
  --svg FILE       also draw the run as a sequence diagram (SVG): part 1 whole,
                   and the first 20 datagrams of part 2, lost ones crossed out
  --mermaid FILE   the same diagram as Mermaid text (sequenceDiagram)
  -h, --help       show this help
";

/// The options every walkthrough that records its trace takes: the pictures.
const PICTURE_OPTIONS: &[(&str, &str)] = &[("--svg", "FILE"), ("--mermaid", "FILE")];

/// Every walkthrough takes the same flags: `--slow`, and the pictures.
const fn walk_spec(command: &'static str) -> Spec {
    Spec {
        command,
        positionals: &[],
        switches: &["--slow"],
        options: PICTURE_OPTIONS,
    }
}

const TCP: Spec = walk_spec("sockstep walk tcp");
const UDP: Spec = walk_spec("sockstep walk udp");
const HTTP: Spec = walk_spec("sockstep walk http");
const PUSH: Spec = walk_spec("sockstep walk push");
const HOSTS: Spec = walk_spec("sockstep walk hosts");

/// The walkthroughs, in the order the help lists them: the word after `walk`,
/// its flags, its help, and the command it becomes.
type Walk = (
    &'static str,
    &'static Spec,
    &'static str,
    fn(bool, Pictures) -> Command,
);

const WALKS: [Walk; 5] = [
    ("tcp", &TCP, USAGE_TCP, |slow, pictures| Command::WalkTcp {
        slow,
        pictures,
    }),
    ("udp", &UDP, USAGE_UDP, |slow, pictures| Command::WalkUdp {
        slow,
        pictures,
    }),
    ("http", &HTTP, USAGE_HTTP, |slow, pictures| {
        Command::WalkHttp { slow, pictures }
    }),
    ("push", &PUSH, USAGE_PUSH, |slow, pictures| {
        Command::WalkPush { slow, pictures }
    }),
    ("hosts", &HOSTS, USAGE_HOSTS, |slow, pictures| {
        Command::WalkHosts { slow, pictures }
    }),
];

/// Parses the words after `walk`.
///
/// # Errors
/// A [`Usage`] error for a missing or unknown walkthrough, or a bad flag.
pub fn parse(words: &[String]) -> Result<Command, Usage> {
    let names = || WALKS.map(|(name, ..)| name).join(", ");
    match words {
        [] => Err(Usage::new(
            "sockstep walk",
            format!("missing the walkthrough to run (there are: {})", names()),
        )),
        [first, ..] if args::is_help(first) => Ok(Command::Help(USAGE.to_string())),
        [first, rest @ ..] => {
            let Some((_, spec, usage, command)) = WALKS.iter().find(|(name, ..)| name == first)
            else {
                return Err(Usage::new(
                    "sockstep walk",
                    format!("unknown walkthrough '{first}' (there are: {})", names()),
                ));
            };
            let parsed = args::parse(spec, rest)?;
            if parsed.help {
                return Ok(Command::Help(usage.to_string()));
            }
            Ok(command(parsed.switch("--slow"), Pictures::from(&parsed)))
        }
    }
}

/// Runs `sockstep walk tcp`, printing to standard output, then draws the
/// pictures asked for.
///
/// # Errors
/// Any step's error, for example if loopback is unavailable.
pub fn tcp(slow: bool, pictures: &Pictures) -> Result<(), Error> {
    walk_and_draw(slow, pictures, walk::tcp::run, diagram::walks::tcp)
}

/// The same for `sockstep walk udp`.
///
/// # Errors
/// As for [`tcp`].
pub fn udp(slow: bool, pictures: &Pictures) -> Result<(), Error> {
    walk_and_draw(slow, pictures, walk::udp::run, diagram::walks::udp)
}

/// The same for `sockstep walk http`.
///
/// # Errors
/// As for [`tcp`].
pub fn http(slow: bool, pictures: &Pictures) -> Result<(), Error> {
    walk_and_draw(slow, pictures, walk::http::run, diagram::walks::http)
}

/// The same for `sockstep walk push`.
///
/// # Errors
/// As for [`tcp`].
pub fn push(slow: bool, pictures: &Pictures) -> Result<(), Error> {
    walk_and_draw(slow, pictures, walk::push::run, diagram::walks::push)
}

/// A walkthrough's run on standard output, then the pictures of its report
/// (checked first, so that a bad picture path fails before the walk runs).
fn walk_and_draw<R>(
    slow: bool,
    pictures: &Pictures,
    run: fn(&WalkOptions, Box<dyn io::Write + Send>) -> Result<R, Error>,
    draw: fn(&R) -> Sequence,
) -> Result<(), Error> {
    pictures.check()?;
    let report = run(&options(slow), Box::new(io::stdout()))?;
    pictures.write(|| draw(&report))
}

/// Runs `sockstep walk hosts`, printing to standard output. Without root (or
/// `ip`, or `nft`) it prints one line saying so and what to run instead, and
/// ends the process with status 1: an [`Error`] would add a hint line, and
/// this is the whole message.
///
/// # Errors
/// Building the hosts, or a child process on them that misbehaves.
pub fn hosts(slow: bool, pictures: &Pictures) -> Result<(), Error> {
    if let Err(line) = walk::hosts::can_run() {
        eprintln!("sockstep: {line}");
        std::process::exit(i32::from(super::EXIT_FAILURE));
    }
    pictures.check()?;
    // The children on the hosts are this program again.
    let program = env::current_exe().map_err(|e| Error::io(crate::Step::Serve, e))?;
    let report = walk::hosts::run(&options(slow), Box::new(io::stdout()), &program)?;
    pictures.write(|| diagram::walks::hosts(&report))
}

/// The pictures a walkthrough draws of its own run: `--svg FILE` and
/// `--mermaid FILE`. The walkthrough records its trace anyway; drawing it is
/// [`diagram`]'s work, after the run, so the printout is unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pictures {
    /// Where to write the sequence diagram as SVG (`--svg FILE`).
    pub svg: Option<PathBuf>,
    /// Where to write it as Mermaid text (`--mermaid FILE`).
    pub mermaid: Option<PathBuf>,
}

impl Pictures {
    fn from(parsed: &args::Parsed) -> Pictures {
        Pictures {
            svg: parsed.value("--svg").map(PathBuf::from),
            mermaid: parsed.value("--mermaid").map(PathBuf::from),
        }
    }

    /// Fails before the run, not after it, if a picture's folder does not exist.
    fn check(&self) -> Result<(), Error> {
        for path in [&self.svg, &self.mermaid].into_iter().flatten() {
            let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
            if folder.is_some_and(|f| !f.is_dir()) {
                return Err(picture_error(path, "its folder does not exist"));
            }
        }
        Ok(())
    }

    /// Draws the run (only if a picture was asked for) and writes each file.
    fn write(&self, draw: impl FnOnce() -> Sequence) -> Result<(), Error> {
        if self.svg.is_none() && self.mermaid.is_none() {
            return Ok(());
        }
        let sequence = draw();
        if let Some(path) = &self.svg {
            save(path, &diagram::svg(&sequence))?;
        }
        if let Some(path) = &self.mermaid {
            save(path, &diagram::mermaid(&sequence))?;
        }
        Ok(())
    }
}

fn save(path: &Path, text: &str) -> Result<(), Error> {
    fs::write(path, text).map_err(|e| picture_error(path, &e.to_string()))?;
    eprintln!("sockstep: drew {}", path.display());
    Ok(())
}

/// Writing a picture is no socket step: the error says which file, and why.
fn picture_error(path: &Path, why: &str) -> Error {
    Error::new(
        crate::Step::Message,
        ErrorKind::InvalidInput(format!("cannot write {}: {why}", path.display())),
    )
}

fn options(slow: bool) -> WalkOptions {
    WalkOptions {
        pause: if slow {
            SLOW_PAUSE
        } else {
            WalkOptions::default().pause
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_the_parser_accepts_is_in_the_help() {
        for (name, spec, usage, _) in WALKS {
            assert!(
                USAGE.contains(&format!("walk {name}")),
                "walk --help lacks {name}"
            );
            for flag in spec.switches {
                assert!(usage.contains(flag), "{} help lacks {flag}", spec.command);
            }
            for (flag, _) in spec.options {
                assert!(usage.contains(flag), "{} help lacks {flag}", spec.command);
            }
        }
    }

    #[test]
    fn every_walkthrough_takes_svg_and_mermaid_files() {
        for walk in WALKS.map(|(name, ..)| name) {
            let words: Vec<String> = [walk, "--svg", "a.svg", "--mermaid=a.mmd"]
                .map(String::from)
                .to_vec();
            let expected = Pictures {
                svg: Some(PathBuf::from("a.svg")),
                mermaid: Some(PathBuf::from("a.mmd")),
            };
            let pictures = match parse(&words) {
                Ok(
                    Command::WalkTcp { pictures, .. }
                    | Command::WalkUdp { pictures, .. }
                    | Command::WalkHttp { pictures, .. }
                    | Command::WalkPush { pictures, .. }
                    | Command::WalkHosts { pictures, .. },
                ) => pictures,
                other => panic!("walk {walk}: {other:?}"),
            };
            assert_eq!(pictures, expected, "walk {walk}");
        }
        let words: Vec<String> = ["tcp", "--svg"].map(String::from).to_vec();
        assert_eq!(
            parse(&words).unwrap_err().message,
            "--svg needs a value (--svg FILE)"
        );
    }
}
