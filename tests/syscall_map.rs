//! The syscall map (`docs/syscalls.md`) checked against real runs: each
//! walkthrough runs under strace, and each step must make the system calls
//! that `Step::syscalls` and the docs say it makes — `bind` is where
//! socket(2), bind(2) and listen(2) happen, `connect` is a non-blocking
//! connect(2) and a poll(2), a read is recvfrom(2), and so on.
//!
//! `make syscalls` runs the ignored test at the end, which writes
//! `docs/syscalls.md` from the same runs. Where strace is missing or cannot
//! trace (no ptrace permission), every test here says SKIPPED and passes.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sockstep::diagram::syscalls::{self, MapRow, STRACE_CLASSES, SyscallMap, WALKS};
use sockstep::{Protocol, Side, Step};

/// The strace command line, as the generated page quotes it.
fn strace_command() -> String {
    format!("strace -f -s 256 -e trace={STRACE_CLASSES} sockstep walk WALK")
}

/// Runs `sockstep walk WALK` under strace and reads its map, or None after a
/// loud SKIPPED line when strace is missing or cannot trace here.
fn traced(walk: &str) -> Option<SyscallMap> {
    // Tests run in parallel: each run gets its own file.
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let run = RUN.fetch_add(1, Ordering::SeqCst);
    let log = std::env::temp_dir().join(format!(
        "sockstep-syscall-map-{}-{run}.txt",
        std::process::id()
    ));
    let child = Command::new("strace")
        .args([
            "-f",
            "-s",
            "256",
            "-e",
            &format!("trace={STRACE_CLASSES}"),
            "-o",
        ])
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_sockstep"))
        .args(["walk", walk])
        .stdin(Stdio::null())
        // The walkthrough's printed lines are in the log (write(1, …)); nobody reads these.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("SKIPPED: strace is not installed here ({e}); .ci/run installs it");
            return None;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for strace") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("strace sockstep walk {walk} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    if !status.success() && text.is_empty() {
        eprintln!("SKIPPED: strace could not trace here (no ptrace permission?)");
        return None;
    }
    assert!(
        status.success(),
        "walk {walk} under strace failed: {status}"
    );
    Some(SyscallMap::from_strace(walk, &text))
}

fn row(map: &SyscallMap, side: Side, step: Step) -> &MapRow {
    map.row(side, step).unwrap_or_else(|| {
        panic!(
            "walk {}: no {side} {} row in {:#?}",
            map.walk,
            step.name(),
            map.rows
        )
    })
}

/// Every variant of `row` (every time the step was taken) made `calls`, in this order.
fn each_time_in_order(row: &MapRow, calls: &[&str]) {
    for (seen, times) in &row.variants {
        let mut at = 0;
        for want in calls {
            let found = seen[at..]
                .iter()
                .position(|c| c.starts_with(want))
                .unwrap_or_else(|| {
                    panic!(
                        "{} ({times}×): no {want:?} after {:?} in {seen:?}",
                        row.seed_step(),
                        &seen[..at]
                    )
                });
            at += found + 1;
        }
    }
}

/// The system calls `Step::syscalls` names for `row`'s step, as call names.
fn claimed(row: &MapRow) -> Vec<&'static str> {
    const NAMES: [&str; 12] = [
        "socket",
        "setsockopt",
        "bind",
        "listen",
        "accept4",
        "connect",
        "ioctl",
        "poll",
        "sendto",
        "recvfrom",
        "shutdown",
        "close",
    ];
    let text = row.step.syscalls(row.protocol);
    // "none: listen(128) already ran inside bind" claims nothing for this step.
    if text.starts_with("none") {
        return Vec::new();
    }
    NAMES
        .into_iter()
        .filter(|name| {
            text.match_indices(name).any(|(i, _)| {
                let before = text[..i].chars().next_back();
                let after = text[i + name.len()..].chars().next();
                !before.is_some_and(char::is_alphanumeric)
                    && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
        .collect()
}

/// What `Step::syscalls` says for each step is what the step was seen doing.
fn claims_hold(map: &SyscallMap) {
    for row in &map.rows {
        for name in claimed(row) {
            // The refusal's write and close happen on the raw stream, untraced.
            if row.step == Step::Refuse {
                continue;
            }
            assert!(
                row.calls()
                    .iter()
                    .any(|c| c.split(['(', ' ']).next() == Some(name)),
                "walk {}: Step::syscalls says {} makes {name}, but strace saw {:?}",
                map.walk,
                row.seed_step(),
                row.variants
            );
        }
    }
}

#[test]
fn tcp_bind_is_where_socket_bind_and_listen_happen_and_each_step_makes_what_the_docs_say() {
    let Some(map) = traced("tcp") else { return };
    each_time_in_order(
        row(&map, Side::Server, Step::Bind),
        &[
            "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC)",
            "setsockopt(SO_REUSEADDR)",
            "bind",
            "listen(128)",
        ],
    );
    assert!(row(&map, Side::Server, Step::Socket).calls().is_empty());
    assert!(row(&map, Side::Server, Step::Listen).calls().is_empty());
    each_time_in_order(
        row(&map, Side::Server, Step::Accept),
        &["accept4(SOCK_CLOEXEC)"],
    );
    each_time_in_order(
        row(&map, Side::Client, Step::Connect),
        &[
            "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC)",
            "ioctl(FIONBIO, 1)",
            "connect → EINPROGRESS",
            "poll(POLLOUT)",
        ],
    );
    each_time_in_order(
        row(&map, Side::Client, Step::Write),
        &["sendto(MSG_NOSIGNAL)"],
    );
    each_time_in_order(row(&map, Side::Server, Step::Read), &["recvfrom"]);
    each_time_in_order(
        row(&map, Side::Client, Step::Shutdown),
        &["shutdown(SHUT_WR)"],
    );
    each_time_in_order(row(&map, Side::Client, Step::Close), &["close"]);
    claims_hold(&map);
}

#[test]
fn udp_bind_is_socket_and_bind_only_and_datagrams_name_their_address() {
    let Some(map) = traced("udp") else { return };
    for side in [Side::Server, Side::Client] {
        let bind = row(&map, side, Step::Bind);
        assert_eq!(bind.protocol, Protocol::Udp);
        each_time_in_order(bind, &["socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC)", "bind"]);
        assert!(
            !bind
                .calls()
                .iter()
                .any(|c| c.starts_with("listen") || c.contains("SO_REUSEADDR")),
            "a UDP bind neither listens nor reuses: {:?}",
            bind.variants
        );
    }
    let sends = row(&map, Side::Client, Step::SendTo);
    assert!(sends.calls().contains(&"sendto(MSG_NOSIGNAL, addr)"));
    assert!(
        sends.calls().contains(&"sendto(MSG_NOSIGNAL)"),
        "send() on a connected socket names no address"
    );
    each_time_in_order(row(&map, Side::Server, Step::RecvFrom), &["recvfrom(addr)"]);
    each_time_in_order(row(&map, Side::Client, Step::Connect), &["connect"]);
    claims_hold(&map);
}

#[test]
fn http_and_push_steps_make_what_the_docs_say() {
    for walk in ["http", "push"] {
        let Some(map) = traced(walk) else { return };
        each_time_in_order(
            row(&map, Side::Server, Step::Bind),
            &["socket", "setsockopt(SO_REUSEADDR)", "bind", "listen(128)"],
        );
        assert!(row(&map, Side::Server, Step::Accept).events >= 2);
        claims_hold(&map);
    }
}

/// The committed page says what these tests check (it is regenerated, not hand-written).
#[test]
fn the_committed_page_maps_bind_to_socket_bind_and_listen() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/syscalls.md"))
        .expect("docs/syscalls.md exists: make syscalls writes it");
    for walk in WALKS {
        assert!(
            page.contains(&format!("## sockstep walk {walk}")),
            "docs/syscalls.md lacks walk {walk}"
        );
    }
    let bind = page
        .lines()
        .find(|l| l.starts_with("| TCP server 2 bind()"))
        .expect("a TCP bind row");
    for call in [
        "`socket(AF_INET, SOCK_STREAM\\|SOCK_CLOEXEC)`",
        "`bind`",
        "`listen(128)`",
    ] {
        assert!(bind.contains(call), "the bind row lacks {call}: {bind}");
    }
}

/// `make syscalls`: writes docs/syscalls.md from fresh runs of every walkthrough.
#[test]
#[ignore = "writes docs/syscalls.md; run by make syscalls"]
fn regenerate_docs_syscalls_md() {
    let mut maps = Vec::new();
    for walk in WALKS {
        let Some(map) = traced(walk) else { return };
        claims_hold(&map);
        maps.push(map);
    }
    let page = syscalls::markdown(&maps, &strace_command());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/syscalls.md");
    std::fs::write(path, page).expect("write docs/syscalls.md");
    eprintln!("wrote {path}");
}
