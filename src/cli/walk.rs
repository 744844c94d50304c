//! `sockstep walk …`: the walkthroughs, which run real sockets and print every step.

use std::io;

use crate::cli::Command;
use crate::cli::args::{self, Spec, Usage};
use crate::error::Error;
use crate::walk::{self, SLOW_PAUSE, WalkOptions};

/// `sockstep walk --help`.
pub const USAGE: &str = "\
Usage: sockstep walk tcp [--slow]

Walkthroughs run the seed's socket flow for real, on loopback, in this one
process, and print every step as it happens. 'tcp' is the one there is so far;
'sockstep walk tcp --help' says more.
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

const TCP: Spec = Spec {
    command: "sockstep walk tcp",
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
            "missing the walkthrough to run (there is: tcp)",
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
        [other, ..] => Err(Usage::new(
            "sockstep walk",
            format!("unknown walkthrough '{other}' (there is: tcp)"),
        )),
    }
}

/// Runs `sockstep walk tcp`, printing to standard output.
///
/// # Errors
/// Any step's error, for example if loopback is unavailable.
pub fn tcp(slow: bool) -> Result<(), Error> {
    let options = WalkOptions {
        pause: if slow {
            SLOW_PAUSE
        } else {
            WalkOptions::default().pause
        },
    };
    walk::tcp::run(&options, Box::new(io::stdout()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_the_parser_accepts_is_in_the_help() {
        for flag in TCP.switches {
            assert!(USAGE_TCP.contains(flag), "walk tcp help lacks {flag}");
        }
    }
}
