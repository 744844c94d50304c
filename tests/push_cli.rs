//! `sockstep push serve` and `sockstep push connect`, run for real, and driven
//! by `nc` (netcat-openbsd) the way a person would.
//!
//! Every child runs under a deadline and is killed when dropped; its output is
//! read on threads, so a hung child fails its test instead of hanging the suite.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::process::{skipped, sockstep, wait_or_kill};

/// Longer than anything here should take, even on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// Whether OpenBSD's netcat is here (the tests rely on its `-N`).
fn have_openbsd_nc() -> bool {
    Command::new("nc")
        .arg("-h")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stderr).contains("OpenBSD netcat"))
}

/// A running child whose stdout lines arrive on a channel; killed when dropped.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    // Forwards stdout lines; ends at the child's end of output.
    reader: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
}

impl Running {
    fn start(mut command: Command) -> Running {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let (send, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let reader = thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped");
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Running {
            stdin: child.stdin.take(),
            child,
            lines,
            reader: Some(reader),
            stderr: Some(stderr),
        }
    }

    /// The next stdout line, within the deadline.
    fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(e) => {
                let _ = self.child.kill();
                let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
                panic!("no line ({e}); stderr: {stderr:?}");
            }
        }
    }

    /// Stdout lines up to and including the first that starts with `prefix`.
    fn lines_until(&mut self, prefix: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.next_line();
            let done = line.starts_with(prefix);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    fn write(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(text.as_bytes())
            .expect("write to the child");
        stdin.flush().expect("flush");
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for it to exit; returns its exit code, the rest of its stdout, and its stderr.
    fn wait(&mut self) -> (Option<i32>, Vec<String>, String) {
        let status = wait_or_kill(&mut self.child, DEADLINE);
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        assert!(
            status.is_some(),
            "did not exit within {DEADLINE:?}; stderr: {stderr}"
        );
        // The reader forwards what is left of stdout and ends at its end of
        // file, which comes with the exit: join it before taking the lines, or
        // lines still on their way would be missed.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let rest = self.lines.try_iter().collect();
        (status.and_then(|s| s.code()), rest, stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `sockstep push serve 127.0.0.1:0 <extra>`, and its port.
struct Hub {
    running: Running,
    port: u16,
}

impl Hub {
    fn start(extra: &[&str]) -> Hub {
        let mut args = vec!["push", "serve", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut running = Running::start(sockstep(&args));
        let line = running.next_line();
        let rest = line
            .strip_prefix("listening on tcp://127.0.0.1:")
            .unwrap_or_else(|| panic!("not the listening line: {line:?}"));
        let port = rest
            .split(' ')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        assert!(rest.ends_with("press Enter to stop)"), "{line:?}");
        Hub { running, port }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Presses Enter; returns the exit code, the rest of stdout, and stderr.
    fn stop(&mut self) -> (Option<i32>, Vec<String>, String) {
        self.running.write("\n");
        self.running.close_stdin();
        self.running.wait()
    }
}

fn nc(args: &[&str]) -> Running {
    let mut command = Command::new("nc");
    command.args(args);
    Running::start(command)
}

#[test]
fn nc_subscribes_publishes_pings_and_quits() {
    if !have_openbsd_nc() {
        skipped(
            "nc_subscribes_publishes_pings_and_quits",
            "OpenBSD nc is not on PATH (apt-get install netcat-openbsd)",
        );
        return;
    }
    let mut hub = Hub::start(&[]);
    let mut person = nc(&["127.0.0.1", &hub.port.to_string()]);
    // stdin stays open until the server has closed: OpenBSD's nc would
    // otherwise keep the connection, but without anyone typing.
    person.write("SUB\nPUB hello from nc\nping\nFROB\nQUIT\n");
    let seen = person.lines_until("BYE");
    assert_eq!(
        seen,
        [
            "HELLO 1",
            "OK SUB",
            "MSG 1 1 hello from nc",
            "OK PUB 1",
            "PONG",
            "ERR unknown command 'FROB'; try HELP",
            "BYE quit",
        ]
    );
    person.close_stdin();
    let _ = person.wait();
    let joined = hub.running.next_line();
    assert!(
        joined.starts_with("joined: member 1 (tcp://127.0.0.1:"),
        "{joined}"
    );
    let left = hub.running.next_line();
    assert!(
        left.starts_with("left: member 1 (") && left.ends_with("): quit"),
        "{left}"
    );
    let (code, _, stderr) = hub.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("joined 1, refused 0; left: quit 1,"),
        "{stderr}"
    );
    assert!(
        stderr.contains("published 1, delivered 1 of 1,"),
        "{stderr}"
    );
}

#[test]
fn nc_half_closing_gets_what_was_queued_and_bye_end_of_stream() {
    if !have_openbsd_nc() {
        skipped(
            "nc_half_closing_gets_what_was_queued_and_bye_end_of_stream",
            "OpenBSD nc is not on PATH",
        );
        return;
    }
    let mut hub = Hub::start(&[]);
    // -N: at the end of stdin, shutdown(SHUT_WR) — the server reads end of stream.
    let mut person = nc(&["-N", "127.0.0.1", &hub.port.to_string()]);
    person.write("SUB\nPUB one last thing\n");
    person.close_stdin();
    let (_, lines, _) = person.wait();
    assert_eq!(
        lines,
        [
            "HELLO 1",
            "OK SUB",
            "MSG 1 1 one last thing",
            "OK PUB 1",
            "BYE end of stream",
        ]
    );
    let (code, _, stderr) = hub.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("end of stream 1,"), "{stderr}");
}

#[test]
fn push_connect_publishes_stdin_and_prints_what_is_pushed() {
    let mut hub = Hub::start(&[]);
    // The listener subscribes first, so it cannot miss the talker's messages.
    let mut listener = Running::start(sockstep(&["push", "connect", &hub.addr(), "--count", "2"]));
    assert_eq!(listener.lines_until("OK SUB"), ["HELLO 1", "OK SUB"]);
    let mut talker = Running::start(sockstep(&["push", "connect", &hub.addr()]));
    talker.write("one\n\ntwo\n");
    talker.close_stdin();
    let (code, talked, stderr) = talker.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        talked,
        [
            "HELLO 2",
            "OK SUB",
            "MSG 1 2 one",
            "OK PUB 1",
            "MSG 2 2 two",
            "OK PUB 2",
            "BYE quit",
        ]
    );
    let (code, listened, stderr) = listener.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(listened, ["MSG 1 2 one", "MSG 2 2 two", "BYE quit"]);
    let (code, _, stderr) = hub.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("left: quit 2,"), "{stderr}");
    assert!(stderr.contains("threads joined 2 of 2 started"), "{stderr}");
}

#[test]
fn the_clock_pushes_ticks_with_nobody_publishing() {
    let mut hub = Hub::start(&["--tick", "50ms"]);
    let mut listener = Running::start(sockstep(&["push", "connect", &hub.addr(), "--count", "3"]));
    listener.close_stdin();
    let (code, lines, stderr) = listener.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(lines[..2], ["HELLO 1", "OK SUB"]);
    assert!(
        lines[2..5].iter().all(|l| l.starts_with("TICK ")),
        "{lines:?}"
    );
    assert_eq!(lines[5], "BYE quit");
    let (code, _, stderr) = hub.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_full_hub_turns_push_connect_away_with_exit_1_and_the_reason() {
    let mut hub = Hub::start(&["--max-members", "1"]);
    let mut first = Running::start(sockstep(&["push", "connect", &hub.addr(), "--for", "20"]));
    assert_eq!(first.lines_until("OK SUB"), ["HELLO 1", "OK SUB"]);
    let mut second = Running::start(sockstep(&["push", "connect", &hub.addr()]));
    second.close_stdin();
    let (code, _, stderr) = second.wait();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("hub full (1 members)"), "{stderr}");
    // Stopping the hub tells the first member, which then exits 0 by itself.
    let (code, _, stderr) = hub.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("refused 1;"), "{stderr}");
    let (code, rest, stderr) = first.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(rest, ["BYE server shutting down"]);
}

#[test]
fn push_help_and_usage_errors() {
    let mut help = Running::start(sockstep(&["--help"]));
    let (code, lines, _) = help.wait();
    assert_eq!(code, Some(0));
    let text = lines.join("\n");
    assert!(text.contains("sockstep push serve") && text.contains("sockstep push connect"));
    for (args, needles) in [
        (&["push", "--help"][..], &["push serve", "push connect"][..]),
        (
            &["push", "serve", "--help"],
            &[
                "--tick DUR",
                "--queue N",
                "--max-members N",
                "--idle-timeout SECS",
                "--for SECS",
                "--trace",
            ],
        ),
        (
            &["push", "connect", "-h"],
            &["--count N", "--for SECS", "--timeout SECS"],
        ),
    ] {
        let (code, lines, stderr) = Running::start(sockstep(args)).wait();
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        let text = lines.join("\n");
        for needle in needles {
            assert!(text.contains(needle), "{args:?} lacks {needle}: {text}");
        }
    }
    for (args, message) in [
        (
            &["push"][..],
            "missing the verb (there are: serve, connect)",
        ),
        (
            &["push", "serve", "127.0.0.1:0", "--queue", "0"],
            "--queue must be a whole number from 1",
        ),
        (
            &["push", "serve", "127.0.0.1:0", "--tick", "1"],
            "--tick must be a duration",
        ),
        (
            &["push", "connect", "udp://127.0.0.1:1"],
            "this verb speaks TCP",
        ),
    ] {
        let (code, _, stderr) = Running::start(sockstep(args)).wait();
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
