//! `sockstep walk tcp|udp|http|push`: the walkthroughs, which run real sockets and print every step.

use std::io;

use crate::cli::Command;
use crate::cli::args::{self, Spec, Usage};
use crate::error::Error;
use crate::walk::{self, SLOW_PAUSE, WalkOptions};

/// `sockstep walk --help`.
pub const USAGE: &str = "\
Usage: sockstep walk tcp [--slow]
       sockstep walk udp [--slow]
       sockstep walk http [--slow]
       sockstep walk push [--slow]

Walkthroughs run the seed's socket flow for real, on loopback, in this one
process, and print every step as it happens. 'tcp' is the stream socket's
life; 'udp' the datagram socket's, then a link that loses datagrams; 'http'
requests that each open and close a connection, then HTTP/1.1 keep-alive;
'push' a kept connection per client, with the server pushing unasked.
'sockstep walk tcp --help' (or udp, http, push) says more.
";

/// `sockstep walk http --help`.
pub const USAGE_HTTP: &str = "\
Usage: sockstep walk http [--slow]

Runs an HTTP server and client in this process, on loopback, and prints every
socket step and every HTTP message as it happens:
  part 1, the seed's HTTP: two requests, each on its own connection —
    socket() → connect() → write the request → read the response → close()
  part 2, HTTP/1.1 keep-alive: three requests on one connection.
Then how many connections each part took. Finishes by itself.

Options:
  --slow       pause after each step so you can follow along
  -h, --help   show this help
";

/// `sockstep walk push --help`.
pub const USAGE_PUSH: &str = "\
Usage: sockstep walk push [--slow]

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
  --slow       pause after each step so you can follow along
  -h, --help   show this help
";

/// `sockstep walk tcp --help`.
pub const USAGE_TCP: &str = "\
Usage: sockstep walk tcp [--slow]

Runs a TCP server and a client in this process, on loopback, and prints each
step as it happens, numbered as in the seed:
  server 1 socket()  2 bind()  3 listen()  4 accept()
  client 1 socket()  2 connect()  3 (the server's accept)  4 read()/write()
with what std asked the kernel to do underneath. The client sends three lines,
the server echoes them, both close, the server shuts down. Finishes by itself.

Options:
  --slow       pause after each step so you can follow along
  -h, --help   show this help
";

/// `sockstep walk udp --help`.
pub const USAGE_UDP: &str = "\
Usage: sockstep walk udp [--slow]

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
  --slow       pause after each step of part 1 so you can follow along
  -h, --help   show this help
";

const TCP: Spec = Spec {
    command: "sockstep walk tcp",
    positionals: &[],
    switches: &["--slow"],
    options: &[],
};

const UDP: Spec = Spec {
    command: "sockstep walk udp",
    positionals: &[],
    switches: &["--slow"],
    options: &[],
};

const HTTP: Spec = Spec {
    command: "sockstep walk http",
    positionals: &[],
    switches: &["--slow"],
    options: &[],
};

const PUSH: Spec = Spec {
    command: "sockstep walk push",
    positionals: &[],
    switches: &["--slow"],
    options: &[],
};

/// Parses the words after `walk`.
///
/// # Errors
/// A [`Usage`] error for a missing or unknown walkthrough, or a bad flag.
pub fn parse(words: &[String]) -> Result<Command, Usage> {
    match words {
        [] => Err(Usage::new(
            "sockstep walk",
            "missing the walkthrough to run (there are: tcp, udp, http, push)",
        )),
        [first, ..] if args::is_help(first) => Ok(Command::Help(USAGE.to_string())),
        [first, rest @ ..] if first == "tcp" => {
            let parsed = args::parse(&TCP, rest)?;
            if parsed.help {
                return Ok(Command::Help(USAGE_TCP.to_string()));
            }
            Ok(Command::WalkTcp {
                slow: parsed.switch("--slow"),
            })
        }
        [first, rest @ ..] if first == "udp" => {
            let parsed = args::parse(&UDP, rest)?;
            if parsed.help {
                return Ok(Command::Help(USAGE_UDP.to_string()));
            }
            Ok(Command::WalkUdp {
                slow: parsed.switch("--slow"),
            })
        }
        [first, rest @ ..] if first == "http" => {
            let parsed = args::parse(&HTTP, rest)?;
            if parsed.help {
                return Ok(Command::Help(USAGE_HTTP.to_string()));
            }
            Ok(Command::WalkHttp {
                slow: parsed.switch("--slow"),
            })
        }
        [first, rest @ ..] if first == "push" => {
            let parsed = args::parse(&PUSH, rest)?;
            if parsed.help {
                return Ok(Command::Help(USAGE_PUSH.to_string()));
            }
            Ok(Command::WalkPush {
                slow: parsed.switch("--slow"),
            })
        }
        [other, ..] => Err(Usage::new(
            "sockstep walk",
            format!("unknown walkthrough '{other}' (there are: tcp, udp, http, push)"),
        )),
    }
}

/// Runs `sockstep walk tcp`, printing to standard output.
///
/// # Errors
/// Any step's error, for example if loopback is unavailable.
pub fn tcp(slow: bool) -> Result<(), Error> {
    walk::tcp::run(&options(slow), Box::new(io::stdout()))?;
    Ok(())
}

/// Runs `sockstep walk udp`, printing to standard output.
///
/// # Errors
/// Any step's error, for example if loopback is unavailable.
pub fn udp(slow: bool) -> Result<(), Error> {
    walk::udp::run(&options(slow), Box::new(io::stdout()))?;
    Ok(())
}

/// Runs `sockstep walk http`, printing to standard output.
///
/// # Errors
/// Any step's error, for example if loopback is unavailable.
pub fn http(slow: bool) -> Result<(), Error> {
    walk::http::run(&options(slow), Box::new(io::stdout()))?;
    Ok(())
}

/// Runs `sockstep walk push`, printing to standard output.
///
/// # Errors
/// Any step's error, for example if loopback is unavailable.
pub fn push(slow: bool) -> Result<(), Error> {
    walk::push::run(&options(slow), Box::new(io::stdout()))?;
    Ok(())
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
        for (spec, usage) in [
            (TCP, USAGE_TCP),
            (UDP, USAGE_UDP),
            (HTTP, USAGE_HTTP),
            (PUSH, USAGE_PUSH),
        ] {
            for flag in spec.switches {
                assert!(usage.contains(flag), "{} help lacks {flag}", spec.command);
            }
        }
    }
}
