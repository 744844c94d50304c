//! Interoperability: our WebSocket server against Python's `websockets` client,
//! and our client against a `websockets` server — an implementation we did
//! not write, so both sides cannot share one misreading of RFC 6455.
//!
//! Needs Python 3 with `websockets` (13 or later, for its threaded `sync` API;
//! CI installs 17.x). Looked for, in order: `$SOCKSTEP_VENV/bin/python3`,
//! `/opt/sockstep-venv/bin/python3`, `python3`. To set it up:
//!
//! ```sh
//! python3 -m venv /opt/sockstep-venv && /opt/sockstep-venv/bin/pip install websockets
//! ```
//!
//! Without it each test prints `SKIPPED: …` to stderr and passes.
//!
//! Every Python process runs under a deadline and is killed past it; the Python
//! side sets its own timeouts on every call too.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use sockstep::trace::Trace;
use sockstep::ws::{CloseCode, Config, Echo, Message, WebSocket};

use common::process::wait_or_kill;
use common::python::{PYTHON_DEADLINE, lines_of, python_or_skip, rest, run_script};
use common::{IO_TIMEOUT, TIMEOUTS};

fn ws_config() -> Config {
    Config {
        timeouts: TIMEOUTS,
        connect_timeout: IO_TIMEOUT,
        handshake_timeout: IO_TIMEOUT,
        close_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------
// Python's client against our server
// ---------------------------------------------------------------------------

const PY_CLIENT: &str = r#"
import sys
from websockets.sync.client import connect

with connect(sys.argv[1], open_timeout=5, close_timeout=5) as ws:
    ws.send("hello ✓")
    assert ws.recv(timeout=5) == "hello ✓"
    ws.send(bytes(range(256)))
    assert ws.recv(timeout=5) == bytes(range(256))
    big = bytes(range(256)) * 2000
    ws.send(big)
    assert ws.recv(timeout=5) == big
    ws.send(["frag", "men", "ted ✓"])          # one message in three frames
    assert ws.recv(timeout=5) == "fragmented ✓"
    ws.send([b"\x00", b"", b"\x01\x02"])
    assert ws.recv(timeout=5) == b"\x00\x01\x02"
    ws.send("")
    assert ws.recv(timeout=5) == ""
    assert ws.ping(b"are you there").wait(5), "no pong"
print("OK", ws.close_code)
"#;

#[test]
fn python_client_talks_to_our_server() {
    let Some(python) = python_or_skip("python_client_talks_to_our_server") else {
        return;
    };
    let echo = Echo {
        config: ws_config(),
    };
    let server = common::serve(4, common::config(4), echo, &Trace::off());
    let uri = format!("ws://{}/echo", server.local_addr());
    let (status, out, err) = run_script(&python, PY_CLIENT, &[&uri]);
    assert!(
        status.is_some_and(|s| s.success()),
        "python client failed ({status:?}):\n{out}\n{err}"
    );
    // The close handshake finished with the code Python sent, 1000, echoed by us.
    assert_eq!(out.trim(), "OK 1000", "{err}");
    let stats = server.shutdown();
    assert_eq!((stats.served, stats.errors), (1, 0), "{stats:?}");
}

const PY_CLIENT_TOO_BIG: &str = r#"
import sys
from websockets.sync.client import connect
from websockets.exceptions import ConnectionClosedError

with connect(sys.argv[1], open_timeout=5, close_timeout=5) as ws:
    ws.send(b"x" * 1000)
    assert ws.recv(timeout=5) == b"x" * 1000
    ws.send(b"x" * 1001)
    try:
        ws.recv(timeout=5)
        print("NOT CLOSED")
    except ConnectionClosedError as e:
        print("CLOSED", e.rcvd.code, e.rcvd.reason)
"#;

#[test]
fn python_client_over_our_limit_gets_1009() {
    let Some(python) = python_or_skip("python_client_over_our_limit_gets_1009") else {
        return;
    };
    let echo = Echo {
        config: Config {
            max_message: 1000,
            ..ws_config()
        },
    };
    let server = common::serve(4, common::config(4), echo, &Trace::off());
    let uri = format!("ws://{}/", server.local_addr());
    let (status, out, err) = run_script(&python, PY_CLIENT_TOO_BIG, &[&uri]);
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{out}\n{err}"
    );
    assert_eq!(out.trim(), "CLOSED 1009 message over the maximum", "{err}");
    let stats = server.shutdown();
    assert_eq!(
        stats.errors, 1,
        "our handler reports the violation: {stats:?}"
    );
}

// ---------------------------------------------------------------------------
// Our client against Python's server
// ---------------------------------------------------------------------------

/// An echo server that pings every 0.1 s (so our client must answer pings
/// while it talks), sends "fragment me" back in three frames, prints its port,
/// and stops when its stdin closes.
const PY_SERVER: &str = r#"
import sys, threading
from websockets.exceptions import ConnectionClosedError
from websockets.sync.server import serve

def echo(ws):
    try:
        for message in ws:
            if message == "fragment me":
                ws.send(["frag", "ment", " me ✓"])
            else:
                ws.send(message)
    except ConnectionClosedError as e:
        # Any close code but 1000 and 1001 ends the loop with this exception.
        print("closed with", e.rcvd.code, file=sys.stderr, flush=True)

with serve(echo, "127.0.0.1", 0, ping_interval=0.1, ping_timeout=2, close_timeout=5) as server:
    print(server.socket.getsockname()[1], flush=True)
    def stop():
        sys.stdin.read()
        server.shutdown()
    threading.Thread(target=stop, daemon=True).start()
    server.serve_forever()
"#;

/// A running Python server; closing its stdin stops it.
struct PythonServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: mpsc::Receiver<String>,
    port: u16,
}

impl PythonServer {
    fn start(python: &PathBuf) -> PythonServer {
        let mut child = Command::new(python)
            .arg("-c")
            .arg(PY_SERVER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the python server");
        let stdin = child.stdin.take();
        let stdout = lines_of(child.stdout.take().expect("piped"));
        let stderr = lines_of(child.stderr.take().expect("piped"));
        let Ok(line) = stdout.recv_timeout(Duration::from_secs(10)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the python server printed no port:\n{}", rest(&stderr));
        };
        let port = line.trim().parse().expect("a port number");
        PythonServer {
            child,
            stdin,
            stderr,
            port,
        }
    }

    /// Closes stdin and waits for the exit; returns its status and stderr.
    fn stop(mut self) -> (Option<ExitStatus>, String) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let status = wait_or_kill(&mut self.child, PYTHON_DEADLINE);
        thread::sleep(Duration::from_millis(50));
        (status, rest(&self.stderr))
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        // A failed test must not leave a Python process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn our_client_talks_to_a_python_server() {
    let Some(python) = python_or_skip("our_client_talks_to_a_python_server") else {
        return;
    };
    let server = PythonServer::start(&python);
    let addr = ([127, 0, 0, 1], server.port).into();
    let mut ws = WebSocket::connect(addr, "/", &ws_config(), &Trace::off()).unwrap();

    ws.send_text("hello ✓").unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("hello ✓".into()));

    // Fragments of one byte cut every multi-byte character in two.
    let text = "ä日🦀".repeat(20);
    ws.send_fragmented(&Message::Text(text.clone()), 1).unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text(text));

    let big: Vec<u8> = (0..500_000u32).map(|i| (i % 251) as u8).collect();
    ws.send_fragmented(&Message::Binary(big.clone()), 65_536)
        .unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Binary(big));

    ws.send_text("fragment me").unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("fragment me ✓".into()));

    // Stay quiet while the server pings us; recv answers its pings as they come.
    thread::sleep(Duration::from_millis(500));
    ws.send_binary(b"").unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Binary(Vec::new()));

    ws.ping(b"ours").unwrap();
    let mut pongs = 0;
    for _ in 0..100 {
        match ws.recv().unwrap() {
            Message::Pong(payload) if payload == b"ours" => break,
            Message::Pong(_) => pongs += 1, // cannot happen: websockets sends no unasked pongs
            other => panic!("expected our pong, got {other:?}"),
        }
    }
    assert_eq!(pongs, 0);

    assert_eq!(
        ws.close(CloseCode::NORMAL, "done").unwrap(),
        (CloseCode::NORMAL, "done".to_string()),
        "websockets answers with the code and reason it got"
    );

    // A private-use code goes through too.
    let ws = WebSocket::connect(addr, "/", &ws_config(), &Trace::off()).unwrap();
    assert_eq!(
        ws.close(CloseCode(4000), "custom").unwrap().0,
        CloseCode(4000)
    );

    let (status, err) = server.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{err}");
    assert!(err.contains("closed with 4000"), "{err}");
    assert!(!err.contains("Traceback"), "{err}");
}
