//! `sockstep bench NAME|all|loss`: the benchmarks, measured and printed; the
//! work is in [`crate::bench`].

use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

use crate::bench::harness::{self, BenchOptions, Report};
use crate::bench::loss::{self, LossOptions};
use crate::bench::{self as benches, BENCHMARKS};
use crate::cli::Command;
use crate::cli::args::{self, Spec, Usage};
use crate::error::Error;

/// `sockstep bench --help`.
pub const USAGE: &str = "\
Usage: sockstep bench NAME [--json] [--quick] [--svg DIR]
       sockstep bench all [--json] [--quick] [--svg DIR]
       sockstep bench loss [--json] [--quick]

Benchmarks measure our sockets with real traffic on loopback, each beside a
baseline measured in the same run — the plainest std loop that does the same
job, and iperf3, wrk and nginx when they are installed — and print medians of interleaved passes,
their spread, and the ratio to the baseline. Build with optimisations
('make bench', or cargo run --release); a debug build's numbers mean nothing.

NAME is one of:
{list}
  all              every benchmark above, then loss: a few minutes on 2 cores
  loss             UDP, a reliable channel and TCP through 0-20% packet loss
                   ('sockstep bench loss --help')

Options:
  --json       print the report as JSON on stdout, and nothing else there
               (progress stays on stderr)
  --quick      few, short passes: seconds, for a smoke test, not for quoting
  --svg DIR    write the plots (tcp-throughput, idle, http) as SVG files into DIR
  -h, --help   show this help
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

const HARNESS: Spec = Spec {
    command: "sockstep bench",
    positionals: &[],
    switches: &["--json", "--quick"],
    options: &[("--svg", "DIR")],
};

/// The benchmark names, for messages: `tcp-throughput, …, all, loss`.
fn names() -> String {
    let mut names: Vec<&str> = BENCHMARKS.iter().map(|b| b.name).collect();
    names.extend(["all", "loss"]);
    names.join(", ")
}

/// `sockstep bench --help`, with the list of benchmarks filled in.
pub fn usage() -> String {
    let list: Vec<String> = BENCHMARKS
        .iter()
        .map(|b| format!("  {:<16} {}", b.name, b.about))
        .collect();
    USAGE.replace("{list}", &list.join("\n"))
}

/// Parses the words after `bench`.
///
/// # Errors
/// A [`Usage`] error for a missing or unknown benchmark, or a bad flag.
pub fn parse(words: &[String]) -> Result<Command, Usage> {
    match words {
        [] => Err(Usage::new(
            "sockstep bench",
            format!("missing the benchmark to run (there are: {})", names()),
        )),
        [first, ..] if args::is_help(first) => Ok(Command::Help(usage())),
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
        [first, rest @ ..] if first == "all" || benches::find(first).is_some() => {
            let parsed = args::parse(&HARNESS, rest)?;
            if parsed.help {
                return Ok(Command::Help(usage()));
            }
            Ok(Command::Bench {
                name: first.clone(),
                options: BenchOptions {
                    quick: parsed.switch("--quick"),
                    json: parsed.switch("--json"),
                    svg_dir: parsed.value("--svg").map(PathBuf::from),
                    ..BenchOptions::default()
                },
            })
        }
        [other, ..] => Err(Usage::new(
            "sockstep bench",
            format!("unknown benchmark '{other}' (there are: {})", names()),
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

/// Runs `sockstep bench NAME` (or `all`), printing the table or the JSON to
/// standard output.
///
/// # Errors
/// The benchmark's error; for `all`, the first benchmark that failed (the
/// others still run and print).
pub fn run(name: &str, options: &BenchOptions) -> Result<(), Error> {
    if name == "all" {
        return all(options);
    }
    let report = benches::run(name, options)?;
    print(&if options.json {
        report.json()
    } else {
        report.table()
    });
    Ok(())
}

/// Every benchmark in turn, each printed as it finishes, then `loss` in a
/// process of its own (it may start itself again inside a network namespace,
/// which needs its own command line).
fn all(options: &BenchOptions) -> Result<(), Error> {
    let peers = harness::peers_found();
    if options.json {
        eprintln!("{peers}");
    } else {
        print(&format!("{peers}\n\n"));
    }
    let mut reports: Vec<Report> = Vec::new();
    let mut first_failure = None;
    for benchmark in BENCHMARKS {
        match (benchmark.run)(options) {
            Ok(report) => {
                if !options.json {
                    print(&format!("{}\n", report.table()));
                }
                reports.push(report);
            }
            Err(e) => {
                eprintln!("sockstep bench {}: {e}", benchmark.name);
                first_failure.get_or_insert(e);
            }
        }
    }
    let loss_json = match run_loss_process(options) {
        Ok(json) => json,
        Err(e) => {
            eprintln!("sockstep bench loss: {e}");
            first_failure.get_or_insert(e);
            None
        }
    };
    if options.json {
        let mut documents: Vec<String> = reports.iter().map(|r| r.json()).collect();
        documents.extend(loss_json);
        let indented: Vec<String> = documents
            .iter()
            .map(|d| d.trim_end().replace('\n', "\n  "))
            .collect();
        print(&format!(
            "{{\n  \"peers\": {},\n  \"benchmarks\": [\n  {}\n  ]\n}}\n",
            harness::json_str(&peers),
            indented.join(",\n  ")
        ));
    }
    first_failure.map_or(Ok(()), Err)
}

/// Runs `sockstep bench loss` as a child of the same program. Without JSON
/// its output is passed through as it comes; with JSON it is returned.
fn run_loss_process(options: &BenchOptions) -> Result<Option<String>, Error> {
    let program = options.program()?;
    let mut command = Process::new(&program);
    command.args(["bench", "loss"]);
    if options.quick {
        command.arg("--quick");
    }
    if options.json {
        command.arg("--json");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| harness::bench_error("start sockstep bench loss", e))?;
    let mut captured = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if options.json {
                captured.push_str(&line);
                captured.push('\n');
            } else {
                print(&format!("{line}\n"));
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| harness::bench_error("wait for sockstep bench loss", e))?;
    if !status.success() {
        return Err(harness::bench_error(
            "run sockstep bench loss",
            io::Error::other(format!("it exited with {status}")),
        ));
    }
    Ok(options.json.then_some(captured))
}

fn print(text: &str) {
    let mut out = io::stdout().lock();
    // stdout closed (a pipe to `head`): nothing more to say to anyone.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_the_parser_accepts_is_in_the_help() {
        for flag in LOSS.switches {
            assert!(USAGE_LOSS.contains(flag), "bench loss help lacks {flag}");
        }
        let help = usage();
        for flag in HARNESS
            .switches
            .iter()
            .chain(HARNESS.options.iter().map(|(o, _)| o))
        {
            assert!(help.contains(flag), "bench help lacks {flag}");
        }
        for benchmark in BENCHMARKS {
            assert!(
                help.contains(benchmark.name),
                "bench help lacks {}",
                benchmark.name
            );
        }
    }

    #[test]
    fn harness_benchmarks_take_json_quick_and_svg() {
        let words: Vec<String> = ["tcp-rr", "--quick", "--json", "--svg", "out"]
            .map(String::from)
            .to_vec();
        let Ok(Command::Bench { name, options }) = parse(&words) else {
            panic!("tcp-rr parses");
        };
        assert_eq!(name, "tcp-rr");
        assert!(options.quick && options.json);
        assert_eq!(options.svg_dir, Some(PathBuf::from("out")));
        let all: Vec<String> = vec!["all".into()];
        assert!(matches!(parse(&all), Ok(Command::Bench { name, .. }) if name == "all"));
    }
}
