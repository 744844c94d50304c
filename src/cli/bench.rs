//! `sockstep bench loss`: raw UDP, the reliable channel and TCP through the
//! same packet loss, measured; the work is in [`crate::bench::loss`].

use std::io;

use crate::bench::loss::{self, LossOptions};
use crate::cli::Command;
use crate::cli::args::{self, Spec, Usage};
use crate::error::Error;

/// `sockstep bench --help`.
pub const USAGE: &str = "\
Usage: sockstep bench loss [--json] [--quick]

Benchmarks measure what the protocols cost and what they buy, with real
sockets, and quote medians of several passes. 'loss' is the one there is so
far; 'sockstep bench loss --help' says more.
";

/// `sockstep bench loss --help`.
pub const USAGE_LOSS: &str = "\
Usage: sockstep bench loss [--json] [--quick]

What does TCP's overhead buy? Sends the same payload as raw UDP datagrams,
through the reliable channel over UDP, and over TCP, with 0%, 1%, 5%, 10% and
20% of packets lost each way, and prints a table: how much was delivered, the
goodput, the bytes on the wire per payload byte, the retransmissions, and the
datagrams lost to a full receive buffer rather than to the link.

As root with 'ip' and 'nft' installed, the kernel loses the packets, in a
network namespace made for the run and deleted after it (this program starts
itself again inside it). Otherwise udp::relay loses them, from a fixed seed,
and TCP, which a user-space relay cannot make lose packets, is not measured.
Takes a minute or two (seconds with --quick); 'make bench' runs it built
with optimisations, which is how its numbers should be taken.

Options:
  --json       print the report as one JSON document, and nothing else
  --quick      one pass and small transfers: seconds, for a quick look or a test
  -h, --help   show this help
";

const LOSS: Spec = Spec {
    command: "sockstep bench loss",
    positionals: &[],
    switches: &["--json", "--quick"],
    options: &[],
};

/// Parses the words after `bench`.
///
/// # Errors
/// A [`Usage`] error for a missing or unknown benchmark, or a bad flag.
pub fn parse(words: &[String]) -> Result<Command, Usage> {
    match words {
        [] => Err(Usage::new(
            "sockstep bench",
            "missing the benchmark to run (there is: loss)",
        )),
        [first, ..] if args::is_help(first) => Ok(Command::Help(USAGE.to_string())),
        [first, rest @ ..] if first == "loss" => {
            let parsed = args::parse(&LOSS, rest)?;
            if parsed.help {
                return Ok(Command::Help(USAGE_LOSS.to_string()));
            }
            Ok(Command::BenchLoss {
                json: parsed.switch("--json"),
                quick: parsed.switch("--quick"),
            })
        }
        [other, ..] => Err(Usage::new(
            "sockstep bench",
            format!("unknown benchmark '{other}' (there is: loss)"),
        )),
    }
}

/// Runs `sockstep bench loss`, printing to standard output.
///
/// # Errors
/// As [`loss::run`]: writing the output, or the tools that make kernel loss.
pub fn loss(json: bool, quick: bool) -> Result<(), Error> {
    loss::run(&LossOptions { json, quick }, &mut io::stdout())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_the_parser_accepts_is_in_the_help() {
        for flag in LOSS.switches {
            assert!(USAGE_LOSS.contains(flag), "bench loss help lacks {flag}");
        }
    }
}
