//! A server leaves no thread behind.
//!
//! The server starts a thread per connection and one to accept. After
//! shutdown every one of them must be gone, not just counted as joined: the
//! kernel's own count of this process's threads (`Threads:` in
//! `/proc/self/status`) must come back to what it was before the server
//! started. This test is alone in its binary so that no other test's threads
//! come and go while it counts.

mod common;

use std::time::Duration;

use common::{connect, read_to_eof, wait_until};
use sockstep::tcp::handlers::Echo;
use sockstep::tcp::serve::ServeConfig;
use sockstep::trace::Trace;

/// How many threads this process has now, as the kernel counts them.
fn threads_now() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

#[test]
fn a_server_that_served_fifty_connections_leaves_no_thread_behind() {
    const CONNECTIONS: usize = 50;
    let before = threads_now();

    // Room for the ten connections that stay open, and for the others beside them.
    let config = ServeConfig {
        grace: Duration::from_millis(300),
        ..common::config(16)
    };
    let server = common::serve(4, config, Echo, &Trace::off());
    let mut open = Vec::new();
    for i in 0..CONNECTIONS {
        let mut conn = connect(server.local_addr(), &Trace::off());
        let msg = format!("connection {i}");
        conn.write_all(msg.as_bytes()).expect("write");
        if i % 5 == 0 {
            // Every fifth stays open and silent: shutdown has to cut it off.
            open.push(conn);
            continue;
        }
        conn.shutdown_write().expect("half-close");
        assert_eq!(read_to_eof(&mut conn).expect("echo"), msg.as_bytes());
    }
    assert!(threads_now() > before, "the server started no thread?");

    let stats = server.shutdown();
    assert_eq!(stats.cut_off, open.len() as u64, "{stats:?}");
    assert_eq!(stats.threads_started, stats.threads_joined, "{stats:?}");
    assert_eq!(stats.threads_abandoned, 0, "{stats:?}");
    drop(open);

    // A joined thread has exited, but give the kernel a moment to forget it.
    let back = wait_until(Duration::from_secs(1), || threads_now() == before);
    assert!(
        back,
        "{before} threads before the server, {} after its shutdown",
        threads_now()
    );
}
