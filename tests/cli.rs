//! The `sockstep` binary, run for real: exit statuses, what goes to stdout and
//! stderr, and a listener driven by our own client, by Python and by `nc`.
//!
//! Every child runs under a deadline: it is polled with `try_wait` and killed
//! when the deadline passes, and its output is read on threads, so a hung
//! child fails its test instead of hanging the suite.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::process::{drain, skipped, sockstep, wait_or_kill};

/// Longer than anything here should take, even on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// A finished child: its exit code and everything it wrote.
#[derive(Debug)]
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `command` to the end with `input` on its stdin (then end of input).
fn run_command(mut command: Command, input: &[u8]) -> Finished {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    // Dropping stdin at the end of the thread is the end of input.
    let feeder = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let stdout = drain(child.stdout.take().expect("piped"));
    let stderr = drain(child.stderr.take().expect("piped"));
    let status = wait_or_kill(&mut child, DEADLINE);
    let _ = feeder.join();
    let finished = Finished {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    assert!(
        status.is_some(),
        "{command:?} did not finish within {DEADLINE:?}: {finished:?}"
    );
    finished
}

fn run(args: &[&str], input: &[u8]) -> Finished {
    run_command(sockstep(args), input)
}

/// A running `sockstep tcp listen`, killed when dropped.
struct Listener {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    /// The stdout lines before the "listening on" line (the trace, if any).
    before: Vec<String>,
    port: u16,
}

impl Listener {
    /// Starts `tcp listen 127.0.0.1:0 <extra>` and waits for its "listening on" line.
    fn start(extra: &[&str]) -> Listener {
        Listener::start_with_stdin(extra, Stdio::piped())
    }

    fn start_with_stdin(extra: &[&str], stdin: Stdio) -> Listener {
        let mut args = vec!["tcp", "listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let (listener, rest) = Listener::spawn(&args, stdin, "listening on tcp://127.0.0.1:");
        assert!(
            rest.ends_with("served, 64 waiting; press Enter to stop)"),
            "{rest:?}"
        );
        listener
    }

    /// Starts `udp listen 127.0.0.1:0 <extra>` and waits for its "listening on" line.
    fn start_udp(extra: &[&str]) -> Listener {
        let mut args = vec!["udp", "listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let (listener, rest) =
            Listener::spawn(&args, Stdio::piped(), "listening on udp://127.0.0.1:");
        assert!(rest.ends_with("; press Enter to stop)"), "{rest:?}");
        listener
    }

    /// Starts `sockstep <args>` and waits for the stdout line that starts with
    /// `announce` followed by the port; returns it and the rest of that line.
    fn spawn(args: &[&str], stdin: Stdio, announce: &str) -> (Listener, String) {
        let mut child = sockstep(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let (send, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut listener = Listener {
            stdin: child.stdin.take(),
            stderr: Some(drain(child.stderr.take().expect("piped"))),
            child,
            lines,
            before: Vec::new(),
            port: 0,
        };
        loop {
            let line = listener.next_line();
            if let Some(rest) = line.strip_prefix(announce) {
                let port = rest.split(' ').next().unwrap_or_default();
                listener.port = port
                    .parse()
                    .unwrap_or_else(|_| panic!("no port in {line:?}"));
                let rest = rest.to_string();
                return (listener, rest);
            }
            listener.before.push(line);
        }
    }

    /// The next line on its stdout, within the deadline.
    fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(e) => {
                let _ = self.child.kill();
                let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
                panic!("no line from the listener ({e}); stderr: {stderr:?}");
            }
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Presses Enter and waits for it to exit; returns its exit code and stderr.
    fn stop(&mut self) -> (Option<i32>, String) {
        let mut stdin = self.stdin.take().expect("the listener's stdin is piped");
        stdin.write_all(b"\n").expect("write Enter");
        drop(stdin);
        self.wait()
    }

    /// Waits for it to exit by itself; returns its exit code and stderr.
    fn wait(&mut self) -> (Option<i32>, String) {
        let status = wait_or_kill(&mut self.child, DEADLINE);
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        assert!(
            status.is_some(),
            "the listener did not stop within {DEADLINE:?}; stderr: {stderr}"
        );
        (status.and_then(|s| s.code()), stderr)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that `needles` appear in `haystack` in this order.
fn assert_in_order(haystack: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        match haystack[from..].find(needle) {
            Some(at) => from += at + needle.len(),
            None => panic!("{needle:?} missing, or out of order, in:\n{haystack}"),
        }
    }
}

/// Runs `program probe…` quietly; `None` when it cannot be started at all.
fn probe(program: &str, args: &[&str]) -> Option<ExitStatus> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
}

#[test]
fn walk_tcp_prints_the_seed_steps_in_order_and_finishes() {
    let done = run(&["walk", "tcp"], b"");
    assert_eq!(done.code, Some(0), "{done:?}");
    assert_in_order(
        &done.stdout,
        &[
            "server 1 socket()",
            "server 2 bind()",
            "server 3 listen()",
            "client 2 connect()",
            "server 4 accept()",
            "안녕하세요",
        ],
    );
}

#[test]
fn help_at_every_level_exits_0_and_names_the_flags() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--help"],
            &[
                "walk tcp",
                "walk udp",
                "tcp listen",
                "tcp connect",
                "udp listen",
                "udp send",
                "udp relay",
                "bench loss",
                "--version",
            ],
        ),
        (&["bench", "--help"], &["bench loss"]),
        (&["bench", "loss", "--help"], &["--json", "--quick"]),
        (&["-h"], &["walk tcp"]),
        (&["walk", "--help"], &["walk tcp", "walk udp"]),
        (&["walk", "tcp", "--help"], &["--slow"]),
        (&["walk", "udp", "--help"], &["--slow"]),
        (&["udp", "--help"], &["listen", "send", "relay"]),
        (
            &["udp", "listen", "--help"],
            &["--echo", "--record", "--for", "--trace"],
        ),
        (&["udp", "send", "-h"], &["--timeout", "--trace"]),
        (
            &["udp", "relay", "--help"],
            &[
                "--listen ADDR",
                "--to ADDR",
                "--loss P",
                "--duplicate P",
                "--reorder P",
                "--delay DUR",
                "--jitter DUR",
                "--burst P,R",
                "--seed N",
                "--for SECS",
            ],
        ),
        (&["tcp", "--help"], &["listen", "connect"]),
        (
            &["tcp", "listen", "--help"],
            &[
                "--echo",
                "--sink",
                "--record",
                "--max-connections",
                "--backlog",
                "--idle-timeout",
                "--for",
                "--trace",
            ],
        ),
        (&["tcp", "connect", "-h"], &["--timeout", "--trace"]),
    ];
    for (args, flags) in cases {
        let done = run(args, b"");
        assert_eq!(done.code, Some(0), "{args:?}: {done:?}");
        assert!(done.stderr.is_empty(), "{args:?}: {done:?}");
        for flag in *flags {
            assert!(
                done.stdout.contains(flag),
                "{args:?} help lacks {flag}:\n{}",
                done.stdout
            );
        }
    }
}

#[test]
fn version_prints_the_crate_version() {
    let done = run(&["--version"], b"");
    assert_eq!(done.code, Some(0));
    assert_eq!(
        done.stdout,
        format!("sockstep {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_usage_exits_2_with_one_line_and_where_to_read_more() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "missing a command"),
        (&["frobnicate"], "unknown command 'frobnicate'"),
        (&["walk", "tcp", "--fast"], "unknown option '--fast'"),
        (&["tcp", "listen"], "missing ADDR"),
        (
            &["tcp", "listen", "127.0.0.1:0", "--backlog"],
            "--backlog needs a value",
        ),
        (
            &["tcp", "listen", "127.0.0.1:0", "--backlog", "lots"],
            "--backlog must be a whole number from 0 to 4096",
        ),
        (
            &["tcp", "listen", "127.0.0.1:0", "--max-connections=10001"],
            "--max-connections must be a whole number from 1 to 10000",
        ),
        (
            &["tcp", "listen", "127.0.0.1:0", "--idle-timeout", "0"],
            "--idle-timeout must be a number of seconds above 0",
        ),
        (&["tcp", "listen", "udp://127.0.0.1:0"], "is a udp endpoint"),
        (
            &["tcp", "connect", "127.0.0.1:1", "127.0.0.1:2"],
            "unexpected argument '127.0.0.1:2'",
        ),
        (&["tcp", "connect", "127.0.0.1"], "bad ADDR"),
        (&["walk", "udp", "--fast"], "unknown option '--fast'"),
        (&["bench"], "missing the benchmark"),
        (&["bench", "loss", "--slow"], "unknown option '--slow'"),
        (&["udp"], "missing the verb"),
        (&["udp", "bind", "127.0.0.1:0"], "unknown verb 'bind'"),
        (&["udp", "listen", "tcp://127.0.0.1:0"], "is a tcp endpoint"),
        (
            &["udp", "listen", "127.0.0.1:0", "--echo", "--record"],
            "choose one of --echo and --record",
        ),
        (
            &["udp", "send", "127.0.0.1:9", "--timeout=0"],
            "--timeout must be a number of seconds above 0",
        ),
        (
            &["udp", "relay", "--listen", "127.0.0.1:0"],
            "missing --to ADDR",
        ),
        (
            &["udp", "relay", "--to", "127.0.0.1:9"],
            "missing --listen ADDR",
        ),
        (
            &[
                "udp",
                "relay",
                "--listen",
                "127.0.0.1:0",
                "--to",
                "127.0.0.1:9",
                "--loss",
                "1.5",
            ],
            "--loss must be a probability from 0 to 1",
        ),
        (
            &[
                "udp",
                "relay",
                "--listen",
                "127.0.0.1:0",
                "--to",
                "127.0.0.1:9",
                "--delay",
                "5parsecs",
            ],
            "--delay must be a duration",
        ),
        (
            &[
                "udp",
                "relay",
                "--listen=127.0.0.1:0",
                "--to=127.0.0.1:9",
                "--burst=0.5",
            ],
            "--burst must be two probabilities",
        ),
        (
            &[
                "udp",
                "relay",
                "--listen",
                "127.0.0.1:0",
                "--to",
                "127.0.0.1:9",
                "--seed",
                "-1",
            ],
            "--seed must be a whole number",
        ),
    ];
    for (args, message) in cases {
        let done = run(args, b"");
        assert_eq!(done.code, Some(2), "{args:?}: {done:?}");
        assert!(done.stdout.is_empty(), "{args:?}: {done:?}");
        let lines: Vec<&str> = done.stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {done:?}");
        assert!(
            lines[0].contains(message),
            "{args:?}: {:?} lacks {message:?}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("try 'sockstep") && lines[1].ends_with("--help'"),
            "{args:?}: {lines:?}"
        );
    }
}

#[test]
fn connect_where_nothing_listens_exits_1_with_the_reason_and_a_hint() {
    // A port that was just free: bind one, note it, let it go.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let done = run(&["tcp", "connect", &format!("127.0.0.1:{port}")], b"");
    assert_eq!(done.code, Some(1), "{done:?}");
    assert!(done.stderr.starts_with("sockstep: connect() "), "{done:?}");
    assert!(done.stderr.contains("connection refused"), "{done:?}");
    assert!(
        done.stderr.contains(&format!("tcp://127.0.0.1:{port}")),
        "{done:?}"
    );
    assert!(done.stderr.contains("hint: "), "{done:?}");
}

#[test]
fn connect_gets_its_echo_back_and_enter_stops_the_listener_with_its_counts() {
    let mut listener = Listener::start(&["--echo"]);
    let done = run(&["tcp", "connect", &listener.addr()], b"hello\n");
    assert_eq!(done.code, Some(0), "{done:?}");
    assert_eq!(done.stdout, "hello\n");
    let (code, stderr) = listener.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let stats: Vec<&str> = stderr.lines().filter(|l| l.contains("accepted")).collect();
    assert_eq!(stats.len(), 1, "{stderr}");
    assert!(
        stats[0].contains("accepted 1, served 1, refused 0, errors 0, panics 0"),
        "{stderr}"
    );
    assert!(
        stats[0].contains("threads joined 1 of 1 started"),
        "{stderr}"
    );
}

#[test]
fn connect_trace_goes_to_stderr_so_stdout_carries_only_the_data() {
    let mut listener = Listener::start(&["--echo"]);
    let done = run(&["tcp", "connect", &listener.addr(), "--trace"], b"ping\n");
    assert_eq!(done.code, Some(0), "{done:?}");
    assert_eq!(done.stdout, "ping\n");
    assert_in_order(&done.stderr, &["client 1 socket()", "client 2 connect()"]);
    // The two halves run on two threads, so their lines may print in either order.
    for step in ["client 4 write()", "client   shutdown()", "end of stream"] {
        assert!(
            done.stderr.contains(step),
            "{step} missing in:\n{}",
            done.stderr
        );
    }
    assert_eq!(listener.stop().0, Some(0));
}

#[test]
fn record_prints_what_each_connection_sent_when_it_ends() {
    let mut listener = Listener::start(&["--record"]);
    let done = run(
        &["tcp", "connect", &listener.addr()],
        "two lines\n안녕\n".as_bytes(),
    );
    assert_eq!(done.code, Some(0), "{done:?}");
    assert_eq!(done.stdout, "", "--record sends nothing back");
    let line = listener.next_line();
    assert!(line.starts_with("tcp://127.0.0.1:"), "{line}");
    assert!(
        line.ends_with(": 17 bytes: \"two lines\\n안녕\\n\""),
        "{line}"
    );
    assert_eq!(listener.stop().0, Some(0));
}

#[test]
fn trace_prints_the_server_steps_before_the_listening_line() {
    let mut listener = Listener::start(&["--sink", "--trace"]);
    assert_in_order(
        &listener.before.join("\n"),
        &["server 1 socket()", "server 2 bind()", "server 3 listen()"],
    );
    assert_eq!(listener.stop().0, Some(0));
}

#[test]
fn end_of_stdin_is_not_a_stop_but_for_secs_is() {
    let mut listener = Listener::start_with_stdin(&["--for", "2"], Stdio::null());
    thread::sleep(Duration::from_millis(300));
    assert!(
        listener.child.try_wait().unwrap().is_none(),
        "stdin at EOF stopped the listener"
    );
    let mut conn = TcpStream::connect(listener.addr()).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    conn.write_all(b"still here").unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    let mut echoed = String::new();
    conn.read_to_string(&mut echoed).unwrap();
    assert_eq!(echoed, "still here");
    let (code, stderr) = listener.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("accepted 1, served 1"), "{stderr}");
}

#[test]
fn a_second_listener_on_a_held_port_exits_1_naming_the_endpoint() {
    let mut first = Listener::start(&[]);
    let done = run(&["tcp", "listen", &first.addr()], b"");
    assert_eq!(done.code, Some(1), "{done:?}");
    assert!(done.stderr.contains("address already in use"), "{done:?}");
    assert!(
        done.stderr
            .contains(&format!("tcp://127.0.0.1:{}", first.port)),
        "{done:?}"
    );
    assert!(done.stderr.contains("hint: "), "{done:?}");
    assert_eq!(first.stop().0, Some(0));
}

const PYTHON_CLIENT: &str = r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
s.sendall("hello from python, 안녕\n".encode())
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
"#;

#[test]
fn python_socket_module_gets_its_echo_back() {
    // A version manager's shim may exist without a Python behind it: ask it to run.
    if !probe("python3", &["-c", "import socket"]).is_some_and(|s| s.success()) {
        skipped(
            "python_socket_module_gets_its_echo_back",
            "no working python3 on PATH",
        );
        return;
    }
    let mut listener = Listener::start(&["--echo"]);
    let mut python = Command::new("python3");
    python.args(["-c", PYTHON_CLIENT, &listener.port.to_string()]);
    python.env("PYTHONIOENCODING", "utf-8");
    let done = run_command(python, b"");
    assert_eq!(done.code, Some(0), "{done:?}");
    assert_eq!(done.stdout, "hello from python, 안녕\n");
    let (code, stderr) = listener.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("accepted 1, served 1"), "{stderr}");
}

#[test]
fn nc_gets_its_echo_back() {
    // `nc -h` exits non-zero on some variants; being able to start it is enough.
    if probe("nc", &["-h"]).is_none() {
        skipped("nc_gets_its_echo_back", "no nc on PATH");
        return;
    }
    // nc variants disagree on what to do at the end of stdin (OpenBSD's keeps
    // the connection open unless given -N), so stdin stays open until the echo
    // is seen, and the idle timeout closes the connection from our side after.
    let mut listener = Listener::start(&["--echo", "--idle-timeout", "1"]);
    let mut nc = Command::new("nc")
        .args(["127.0.0.1", &listener.port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nc");
    let mut stdin = nc.stdin.take().expect("piped");
    stdin.write_all(b"hello from nc\n").unwrap();
    let (send, lines) = mpsc::channel();
    let stdout = BufReader::new(nc.stdout.take().expect("piped"));
    thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    let echoed = lines.recv_timeout(DEADLINE);
    drop(stdin);
    // How nc exits varies by variant; only that the echo came back matters.
    let _ = wait_or_kill(&mut nc, Duration::from_secs(5));
    assert_eq!(echoed.as_deref(), Ok("hello from nc"));
    let (code, stderr) = listener.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("accepted 1"), "{stderr}");
}

// --- UDP -----------------------------------------------------------------------

/// A UDP port on 127.0.0.1 where nothing is bound (right now): bind port 0,
/// note the port, close the socket.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn walk_udp_prints_numbered_steps_then_the_loss_summary_and_finishes() {
    let done = run(&["walk", "udp"], b"");
    assert_eq!(done.code, Some(0), "{done:?}");
    assert!(done.stderr.is_empty(), "{done:?}");
    assert_in_order(
        &done.stdout,
        &[
            "== 1. Server",
            "server 1 socket()",
            "server 2 bind()",
            "== 2. Client",
            "client 1 socket()",
            "client   bind()",
            "port 0 asked",
            "== 3. Client send_to()",
            "client 4 send_to()",
            "== 4. Server recv_from()",
            "server   recv_from()",
            "client 2 connect()",
            "and none came",
            "65,507 bytes sent, 65,507 received",
            "a datagram of 65508 bytes is over the limit of 65507",
            "truncated: did not fit 16 bytes",
            "== 10. close()",
            "== Part 2",
            "1000 sends, 0 errors",
            "never arrived (",
            "came twice (",
            "came out of order",
            "relay:    received 1000, dropped ",
        ],
    );
}

#[test]
fn udp_send_prints_the_echo_and_enter_stops_the_listener_with_its_counts() {
    let mut listener = Listener::start_udp(&["--echo"]);
    let done = run(&["udp", "send", &listener.addr()], b"hello\n");
    assert_eq!(done.code, Some(0), "{done:?}");
    assert_eq!(done.stdout, "hello\n");
    assert!(
        done.stderr.contains("port 0 asked; the OS chose"),
        "{done:?}"
    );
    let (code, stderr) = listener.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("received 1, replied 1, errors 0, panics 0"),
        "{stderr}"
    );
}

#[test]
fn udp_send_without_a_reply_exits_0_and_record_prints_what_arrived() {
    let mut listener = Listener::start_udp(&["--record"]);
    let done = run(
        &["udp", "send", &listener.addr(), "--timeout", "0.2"],
        "quiet, 안녕\n".as_bytes(),
    );
    assert_eq!(done.code, Some(0), "{done:?}");
    assert_eq!(done.stdout, "", "--record answers nothing");
    assert!(
        done.stderr
            .contains("no reply within 0.2 s (UDP does not tell whether it was lost)"),
        "{done:?}"
    );
    let line = listener.next_line();
    assert!(line.starts_with("udp://"), "{line}");
    assert!(line.ends_with(": 13 bytes: \"quiet, 안녕\""), "{line}");
    assert_eq!(listener.stop().0, Some(0));
}

#[test]
fn udp_send_where_nothing_is_bound_exits_1_on_the_icmp_refusal() {
    let port = free_udp_port();
    let done = run(
        &["udp", "send", &format!("127.0.0.1:{port}"), "--timeout=2"],
        b"anyone?\n",
    );
    assert_eq!(done.code, Some(1), "{done:?}");
    assert!(done.stderr.contains("connection refused"), "{done:?}");
    assert!(
        done.stderr.contains(&format!("udp://127.0.0.1:{port}")),
        "{done:?}"
    );
}

#[test]
fn udp_listen_stops_by_itself_after_for_secs_even_with_stdin_closed() {
    let (mut listener, _) = Listener::spawn(
        &["udp", "listen", "127.0.0.1:0", "--for", "0.5"],
        Stdio::null(),
        "listening on udp://127.0.0.1:",
    );
    let (code, stderr) = listener.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("stopped: received 0"), "{stderr}");
}

#[test]
fn udp_relay_without_loss_passes_a_datagram_on_and_counts_it() {
    let mut server = Listener::start_udp(&["--record"]);
    let (mut relay, rest) = Listener::spawn(
        &[
            "udp",
            "relay",
            "--listen",
            "127.0.0.1:0",
            "--to",
            &server.addr(),
            "--loss",
            "0",
        ],
        Stdio::piped(),
        "relaying udp://127.0.0.1:",
    );
    assert!(
        rest.contains(&format!("-> udp://{} (loss 0%", server.addr())),
        "{rest}"
    );
    assert!(rest.ends_with("both ways; press Enter to stop)"), "{rest}");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .send_to(b"through the relay", ("127.0.0.1", relay.port))
        .unwrap();
    let line = server.next_line();
    assert!(
        line.ends_with(": 17 bytes: \"through the relay\""),
        "{line}"
    );
    let (code, stderr) = relay.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("client → upstream: received 1, dropped 0, forwarded 1"),
        "{stderr}"
    );
    assert!(stderr.contains("clients 1"), "{stderr}");
    assert_eq!(server.stop().0, Some(0));
}

const PYTHON_UDP_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(20)
s.sendto("hello from python, 안녕".encode(), ("127.0.0.1", int(sys.argv[1])))
data, sender = s.recvfrom(65535)
sys.stdout.write(data.decode() + "\n")
"#;

#[test]
fn python_udp_socket_gets_its_datagram_echoed() {
    if !probe("python3", &["-c", "import socket"]).is_some_and(|s| s.success()) {
        skipped(
            "python_udp_socket_gets_its_datagram_echoed",
            "no working python3 on PATH",
        );
        return;
    }
    let mut listener = Listener::start_udp(&["--echo"]);
    let mut python = Command::new("python3");
    python.args(["-c", PYTHON_UDP_CLIENT, &listener.port.to_string()]);
    python.env("PYTHONIOENCODING", "utf-8");
    let done = run_command(python, b"");
    assert_eq!(done.code, Some(0), "{done:?}");
    assert_eq!(done.stdout, "hello from python, 안녕\n");
    let (code, stderr) = listener.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("received 1, replied 1"), "{stderr}");
}
