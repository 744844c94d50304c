//! The docs say what std asks the kernel to do at each step. These tests run the
//! walkthrough under strace and check that it really does, so the claims in
//! `docs/tcp.md` and in the step docs cannot drift from the truth.
//!
//! strace is installed by `.ci/run`; where it is missing or cannot trace (no
//! ptrace permission), the test says SKIPPED loudly and passes.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs `sockstep walk WALK` under strace, tracing the syscall classes in
/// `classes`, and returns the trace — or None, after a loud SKIPPED line, when
/// strace is missing or cannot trace here.
fn strace_walkthrough(walk: &str, classes: &str) -> Option<String> {
    // Tests run in parallel: each run gets its own folder.
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let run = RUN.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("sockstep-strace-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("trace.txt");
    let child = match Command::new("strace")
        .args(["-f", "-e", &format!("trace={classes}"), "-o"])
        .arg(&out)
        .arg(env!("CARGO_BIN_EXE_sockstep"))
        .args(["walk", walk])
        .stdout(std::process::Stdio::null())
        // Not piped: nobody reads it, and a full pipe would stall the walkthrough.
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("SKIPPED: strace is not installed here ({e}); .ci/run installs it");
            return None;
        }
    };
    let status = wait_bounded(child, &format!("strace sockstep walk {walk}"));
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() && text.is_empty() {
        eprintln!("SKIPPED: strace could not trace here (no ptrace permission?)");
        return None;
    }
    assert!(
        status.success(),
        "walk {walk} under strace failed: {status}"
    );
    Some(text)
}

/// Waits for `child` at most 60 s; kills it and fails the test after that.
fn wait_bounded(mut child: std::process::Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The classes the TCP checks need: the socket calls, plus connect_timeout's
/// ioctl(FIONBIO) and poll, and the half-close.
const TCP_CLASSES: &str = "network,ioctl,poll,shutdown";

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
    let Some(text) = strace_walkthrough("tcp", TCP_CLASSES) else {
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
    let Some(text) = strace_walkthrough("tcp", TCP_CLASSES) else {
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
    let Some(text) = strace_walkthrough("tcp", TCP_CLASSES) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let send = find(&lines, 0, &["sendto(", "hello\\n", "MSG_NOSIGNAL"]);
    find(&lines, send, &["recvfrom("]);
    find(&lines, send, &["shutdown(", "SHUT_WR"]);
}

// --- UDP ----------------------------------------------------------------------

/// The value a syscall on line `i` returned: from the line itself, or from the
/// `<... resumed>` line of the same thread when strace split the call.
fn returned(lines: &[&str], i: usize) -> Option<i64> {
    let value = |line: &str| {
        line.rsplit_once("= ")
            .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok())
    };
    if !lines[i].contains("<unfinished ...>") {
        return value(lines[i]);
    }
    let pid = lines[i].split_whitespace().next()?;
    lines[i + 1..]
        .iter()
        .find(|l| l.starts_with(pid) && l.contains("resumed>"))
        .and_then(|l| value(l))
}

/// Checks a trace of a UDP exchange: every socket std made for UDP
/// (SOCK_DGRAM|SOCK_CLOEXEC; the resolver's own sockets are non-blocking and
/// not ours) is bound, never gets SO_REUSEADDR and never listens; a datagram
/// goes out with sendto naming its destination, and one comes in with recvfrom.
fn assert_udp_bind_send_receive(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    let sockets: Vec<usize> = (0..lines.len())
        .filter(|&i| {
            lines[i].contains("SOCK_DGRAM|SOCK_CLOEXEC, ")
                && (lines[i].contains("socket(AF_INET, ") || lines[i].contains("socket(AF_INET6, "))
        })
        .collect();
    assert!(
        sockets
            .iter()
            .any(|&i| lines[i].contains("socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC")),
        "no socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC) in:\n{text}"
    );
    for &socket in &sockets {
        let fd = returned(&lines, socket)
            .unwrap_or_else(|| panic!("no descriptor from: {}", lines[socket]));
        let bind = format!("bind({fd}, ");
        let bind_line = find(&lines, socket, &[&bind]);
        // "close(3) = 0", or "close(3 <unfinished ...>" when strace split it.
        let (closed, closing) = (format!("close({fd})"), format!("close({fd} <"));
        let end = lines[socket..]
            .iter()
            .position(|l| l.contains(&closed) || l.contains(&closing))
            .map_or(lines.len(), |i| socket + i);
        assert!(bind_line < end, "fd {fd} was closed before its bind");
        let setsockopt = format!("setsockopt({fd}, ");
        let listen = format!("listen({fd}, ");
        for line in &lines[socket..end] {
            assert!(
                !(line.contains(&setsockopt) && line.contains("SO_REUSEADDR")),
                "a UDP bind sets no SO_REUSEADDR: {line}"
            );
            assert!(
                !line.contains(&listen),
                "a UDP socket never listens: {line}"
            );
        }
    }
    let first_bind = find(&lines, sockets[0], &["bind("]);
    let send = find(&lines, first_bind, &["sendto(", "{sa_family=AF_INET"]);
    find(&lines, send, &["recvfrom("]);
}

#[test]
fn udp_bind_is_socket_dgram_then_bind_without_reuseaddr_and_datagrams_are_sendto_recvfrom() {
    let Some(text) = strace_walkthrough("udp", "network,close") else {
        return;
    };
    assert_udp_bind_send_receive(&text);
}

/// A real trace (strace -f -e trace=network,close, Rust 1.95) of a small
/// exchange through `udp::socket`: bind, send_to, recv_from, an echo back.
/// It keeps the checker above honest while `walk udp` does not exist.
const UDP_EXCHANGE: &str = r#"29250 socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC, IPPROTO_IP) = 3
29250 bind(3, {sa_family=AF_INET, sin_port=htons(0), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
29250 getsockname(3, {sa_family=AF_INET, sin_port=htons(40166), sin_addr=inet_addr("127.0.0.1")}, [128 => 16]) = 0
29250 socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC, IPPROTO_IP) = 4
29250 bind(4, {sa_family=AF_INET, sin_port=htons(0), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
29250 sendto(4, "hello", 5, MSG_NOSIGNAL, {sa_family=AF_INET, sin_port=htons(40166), sin_addr=inet_addr("127.0.0.1")}, 16) = 5
29250 recvfrom(3, "hello", 1501, 0, {sa_family=AF_INET, sin_port=htons(55068), sin_addr=inet_addr("127.0.0.1")}, [128 => 16]) = 5
29250 sendto(3, "hello", 5, MSG_NOSIGNAL, {sa_family=AF_INET, sin_port=htons(55068), sin_addr=inet_addr("127.0.0.1")}, 16) = 5
29250 recvfrom(4, "hello", 17, 0, {sa_family=AF_INET, sin_port=htons(40166), sin_addr=inet_addr("127.0.0.1")}, [128 => 16]) = 5
29250 close(4) = 0
29250 close(3) = 0"#;

#[test]
fn the_udp_trace_check_accepts_a_real_udp_exchange() {
    assert_udp_bind_send_receive(UDP_EXCHANGE);
}

#[test]
#[should_panic(expected = "a UDP bind sets no SO_REUSEADDR")]
fn the_udp_trace_check_rejects_a_tcp_style_bind() {
    let tcp_style = UDP_EXCHANGE.replacen(
        "29250 bind(3,",
        "29250 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0\n29250 bind(3,",
        1,
    );
    assert_udp_bind_send_receive(&tcp_style);
}
