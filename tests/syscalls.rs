//! The docs say what std asks the kernel to do at each step. These tests run the
//! walkthrough under strace and check that it really does, so the claims in
//! `docs/tcp.md` and in the step docs cannot drift from the truth.
//!
//! strace is installed by `.ci/run`; where it is missing or cannot trace (no
//! ptrace permission), the test says SKIPPED loudly and passes.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs `sockstep walk tcp` under strace and returns the trace, or None (after a
/// loud skip message) when strace cannot be used here.
fn strace_walkthrough() -> Option<String> {
    // Tests run in parallel: each run gets its own folder.
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let run = RUN.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("sockstep-strace-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("trace.txt");
    let mut child = match Command::new("strace")
        .args(["-f", "-e", "trace=network,ioctl,poll,shutdown", "-o"])
        .arg(&out)
        .arg(env!("CARGO_BIN_EXE_sockstep"))
        .args(["walk", "tcp"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("SKIPPED: strace is not installed here ({e}); .ci/run installs it");
            return None;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for strace") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("strace sockstep walk tcp did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() && text.is_empty() {
        eprintln!("SKIPPED: strace could not trace here (no ptrace permission?)");
        return None;
    }
    assert!(
        status.success(),
        "walkthrough under strace failed: {status}"
    );
    Some(text)
}

/// The index of the first line at or after `from` that contains every one of `needles`.
fn find(lines: &[&str], from: usize, needles: &[&str]) -> usize {
    lines[from..]
        .iter()
        .position(|l| needles.iter().all(|n| l.contains(n)))
        .map(|i| from + i)
        .unwrap_or_else(|| {
            panic!(
                "no line with {needles:?} after line {from} in:\n{}",
                lines.join("\n")
            )
        })
}

#[test]
fn bind_step_is_socket_setsockopt_bind_listen_128_in_that_order() {
    let Some(text) = strace_walkthrough() else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let socket = find(&lines, 0, &["socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC"]);
    let reuse = find(&lines, socket, &["setsockopt(", "SO_REUSEADDR", "[1]"]);
    let bind = find(&lines, reuse, &["bind(", "127.0.0.1"]);
    let listen = find(&lines, bind, &["listen(", ", 128)"]);
    assert!(socket < reuse && reuse < bind && bind < listen);
}

#[test]
fn connect_is_nonblocking_connect_then_poll_and_accept_is_accept4() {
    let Some(text) = strace_walkthrough() else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let listen = find(&lines, 0, &["listen("]);
    let socket = find(
        &lines,
        listen,
        &["socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC"],
    );
    let nonblocking = find(&lines, socket, &["ioctl(", "FIONBIO, [1]"]);
    let connect = find(&lines, nonblocking, &["connect("]);
    find(&lines, connect, &["poll(", "POLLOUT"]);
    find(&lines, listen, &["accept4(", "SOCK_CLOEXEC"]);
}

#[test]
fn read_write_and_half_close_are_recvfrom_sendto_nosignal_and_shut_wr() {
    let Some(text) = strace_walkthrough() else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let send = find(&lines, 0, &["sendto(", "hello\\n", "MSG_NOSIGNAL"]);
    find(&lines, send, &["recvfrom("]);
    find(&lines, send, &["shutdown(", "SHUT_WR"]);
}
