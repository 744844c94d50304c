//! Python with the `websockets` library, as a real peer: found, run under a
//! deadline, its output drained so it never blocks on a full pipe.
//!
//! Looked for, in order: `$SOCKSTEP_VENV/bin/python3`, `/opt/sockstep-venv/bin/python3`,
//! `python3`. `.ci/run` creates the venv. A test that finds none prints
//! `SKIPPED: …` on stderr and passes.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::IO_TIMEOUT;
use super::process::wait_or_kill;

/// The longest any Python process may run.
pub const PYTHON_DEADLINE: Duration = Duration::from_secs(30);

/// Drains a child's pipe on a thread, so the child never blocks on a full
/// pipe; each line goes to the channel.
pub fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Everything left in a channel, without waiting.
pub fn rest(rx: &mpsc::Receiver<String>) -> String {
    rx.try_iter().collect::<Vec<_>>().join("\n")
}

/// A Python with `websockets` importable, or why there is none.
pub fn python() -> Result<PathBuf, String> {
    let mut candidates = Vec::new();
    if let Some(venv) = std::env::var_os("SOCKSTEP_VENV") {
        candidates.push(PathBuf::from(venv).join("bin/python3"));
    }
    candidates.push(PathBuf::from("/opt/sockstep-venv/bin/python3"));
    candidates.push(PathBuf::from("python3"));
    let mut tried = Vec::new();
    for python in candidates {
        let probe = Command::new(&python)
            .args([
                "-c",
                "import websockets, websockets.sync.client, websockets.sync.server; \
                 print(websockets.__version__)",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = probe else {
            tried.push(format!("{} (not found)", python.display()));
            continue;
        };
        let out = lines_of(child.stdout.take().expect("piped"));
        match wait_or_kill(&mut child, PYTHON_DEADLINE) {
            Some(status) if status.success() => {
                eprintln!(
                    "using {} with websockets {}",
                    python.display(),
                    out.recv_timeout(IO_TIMEOUT).unwrap_or_default()
                );
                return Ok(python);
            }
            _ => tried.push(format!(
                "{} (no websockets with its sync API)",
                python.display()
            )),
        }
    }
    Err(format!(
        "no Python with the websockets library: tried {}; install it with \
         `python3 -m venv /opt/sockstep-venv && /opt/sockstep-venv/bin/pip install websockets`",
        tried.join(", ")
    ))
}

/// The Python to use, or a loud skip.
pub fn python_or_skip(test: &str) -> Option<PathBuf> {
    match python() {
        Ok(python) => Some(python),
        Err(why) => {
            eprintln!("SKIPPED: {test} because {why}");
            None
        }
    }
}

/// Runs a Python script to the end (or the deadline): exit status, stdout, stderr.
pub fn run_script(
    python: &PathBuf,
    script: &str,
    args: &[&str],
) -> (Option<ExitStatus>, String, String) {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let out = lines_of(child.stdout.take().expect("piped"));
    let err = lines_of(child.stderr.take().expect("piped"));
    let status = wait_or_kill(&mut child, PYTHON_DEADLINE);
    // The drain threads end at the pipes' EOF, right after the exit.
    thread::sleep(Duration::from_millis(50));
    (status, rest(&out), rest(&err))
}
