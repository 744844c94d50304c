//! `sockstep compare http-vs-socket`: the same updates by polling, long polling and push.

use std::io::{self, Write};
use std::time::Duration;

use crate::cli::Command;
use crate::cli::args::{self, Spec, Usage};
use crate::compare::http_vs_socket::{self, CompareConfig};
use crate::error::Error;

/// `sockstep compare --help`.
pub const USAGE: &str = "\
Usage: sockstep compare http-vs-socket [--updates N] [--every MS] [--poll MS]

Delivers the same stream of updates from a server to a client five ways —
HTTP polling with a new connection per request (the seed's HTTP), HTTP
polling on a kept-alive connection, HTTP long polling, push over a kept
TCP socket, and push over WebSocket — and prints, for each, the TCP connections the client opened,
its HTTP requests, the bytes it wrote and read, how many updates arrived, and
the delivery latency from publication to arrival (median and 99th percentile).
Everything runs in this process on loopback; it takes about 10 s.

Options:
  --updates N   updates per mode (default 200; 10 to 100000)
  --every MS    milliseconds between updates (default 10; 1 to 10000)
  --poll MS     milliseconds between polls (default 100; 1 to 60000)
  -h, --help    show this help
";

const SPEC: Spec = Spec {
    command: "sockstep compare http-vs-socket",
    positionals: &[],
    switches: &[],
    options: &[("--updates", "N"), ("--every", "MS"), ("--poll", "MS")],
};

/// Parses the words after `compare`.
///
/// # Errors
/// A [`Usage`] error for a missing or unknown comparison or a bad value.
pub fn parse(words: &[String]) -> Result<Command, Usage> {
    match words {
        [] => Err(Usage::new(
            "sockstep compare",
            "missing the comparison (there is: http-vs-socket)",
        )),
        [first, ..] if args::is_help(first) => Ok(Command::Help(USAGE.to_string())),
        [first, rest @ ..] if first == "http-vs-socket" => {
            let parsed = args::parse(&SPEC, rest)?;
            if parsed.help {
                return Ok(Command::Help(USAGE.to_string()));
            }
            let defaults = CompareConfig::default();
            let ms = |n: usize| Duration::from_millis(n as u64);
            Ok(Command::CompareHttpVsSocket(CompareConfig {
                updates: parsed.count("--updates", 10..=100_000, defaults.updates)?,
                every: ms(parsed.count(
                    "--every",
                    1..=10_000,
                    defaults.every.as_millis() as usize,
                )?),
                poll_interval: ms(parsed.count(
                    "--poll",
                    1..=60_000,
                    defaults.poll_interval.as_millis() as usize,
                )?),
                ..defaults
            }))
        }
        [other, ..] => Err(Usage::new(
            "sockstep compare",
            format!("unknown comparison '{other}' (there is: http-vs-socket)"),
        )),
    }
}

/// Runs the comparison and prints its table on stdout (progress on stderr).
///
/// # Errors
/// A socket step's error, or a mode that did not deliver every update.
pub fn http_vs_socket(config: &CompareConfig) -> Result<(), Error> {
    eprintln!("sockstep compare http-vs-socket: the same updates, five ways");
    let rows = http_vs_socket::run(config, &mut io::stderr())?;
    let mut out = io::stdout().lock();
    let _ = out
        .write_all(http_vs_socket::table(config, &rows).as_bytes())
        .and_then(|()| out.flush());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_is_in_the_help_and_values_are_bounded() {
        for (flag, _) in SPEC.options {
            assert!(USAGE.contains(flag), "help lacks {flag}");
        }
        let words =
            |line: &str| -> Vec<String> { line.split_whitespace().map(String::from).collect() };
        let Ok(Command::CompareHttpVsSocket(c)) =
            parse(&words("http-vs-socket --updates 50 --poll 20"))
        else {
            panic!("should parse");
        };
        assert_eq!(
            (c.updates, c.poll_interval),
            (50, Duration::from_millis(20))
        );
        assert!(parse(&words("http-vs-socket --updates 5")).is_err());
        assert!(parse(&words("ws-vs-sse")).is_err());
    }
}
