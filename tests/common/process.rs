//! Child processes for the tests: the `sockstep` binary and real peers (`nc`,
//! `curl`, Python, Chromium), each run under a deadline so a hung child fails
//! its test instead of hanging the suite.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The `sockstep` binary this test run built, with `args`.
pub fn sockstep(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sockstep"));
    command.args(args);
    command
}

/// Polls until `child` exits; kills it and returns `None` once `within` has passed.
pub fn wait_or_kill(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < until => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Reads all of `pipe` on a thread of its own, so the child never blocks on a full pipe.
pub fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Says loudly that a test did not run, straight to the stderr handle: the
/// harness captures `eprintln!` of passing tests, which would hide the skip.
pub fn skipped(test: &str, why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test} because {why} ***\n"
    );
}
