//! Warm threads: a connection thread with nothing left to serve waits up to
//! `keep_warm` (off by default) for the next connection instead of exiting at once, so a
//! server busy with short connections does not start a thread for each.
//!
//! What must hold whatever the timing: every client is served, no more
//! threads are started than there were clients, every thread started is
//! joined at shutdown, and shutdown does not wait for `keep_warm` to run out.
//! A property test throws groups of clients at servers with different
//! `keep_warm`s, with pauses between the groups both shorter and longer than
//! it.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, config, connect, read_to_eof, wait_until};
use proptest::prelude::*;
use sockstep::tcp::handlers::Echo;
use sockstep::tcp::serve::{ServeConfig, Server};
use sockstep::trace::Trace;

fn server(keep_warm: Duration) -> Server {
    common::serve(
        8,
        ServeConfig {
            keep_warm,
            ..config(8)
        },
        Echo,
        &Trace::off(),
    )
}

/// One client: a few bytes, half-close, the echo back to the end.
fn echo_once(server: &Server, text: &[u8]) {
    let mut client = connect(server.local_addr(), &Trace::off());
    client.write_all(text).expect("write");
    client.shutdown_write().expect("half-close");
    assert_eq!(read_to_eof(&mut client).expect("echo"), text);
}

/// Until the thread that served the last client is warm (or gone): it
/// closes the connection before it gets there.
fn settle(server: &Server, warm: usize) {
    assert!(
        wait_until(IO_TIMEOUT, || server.serving() == 0
            && server.warm() == warm),
        "serving {}, warm {} (wanted {warm})",
        server.serving(),
        server.warm()
    );
}

#[test]
fn clients_one_after_another_share_one_warm_thread() {
    let server = server(Duration::from_secs(30));
    for i in 0..5 {
        echo_once(&server, format!("client {i}").as_bytes());
        settle(&server, 1);
    }
    let started = Instant::now();
    let stats = server.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited for keep_warm: {:?}",
        started.elapsed()
    );
    assert_eq!(
        (stats.served, stats.threads_started, stats.threads_joined),
        (5, 1, 1),
        "{stats:?}"
    );
}

#[test]
fn with_keep_warm_zero_every_connection_starts_a_thread() {
    let server = server(Duration::ZERO);
    for i in 0..5 {
        echo_once(&server, format!("client {i}").as_bytes());
        settle(&server, 0);
    }
    let stats = server.shutdown();
    assert_eq!(
        (stats.served, stats.threads_started, stats.threads_joined),
        (5, 5, 5),
        "{stats:?}"
    );
}

#[test]
fn a_warm_thread_leaves_when_keep_warm_runs_out() {
    let keep_warm = Duration::from_millis(100);
    let server = server(keep_warm);
    echo_once(&server, b"first");
    settle(&server, 1);
    let cooled = Instant::now();
    settle(&server, 0);
    assert!(
        cooled.elapsed() < keep_warm + Duration::from_secs(2),
        "still warm after {:?}",
        cooled.elapsed()
    );
    echo_once(&server, b"second");
    let stats = server.shutdown();
    assert_eq!(
        (stats.served, stats.threads_started, stats.threads_joined),
        (2, 2, 2),
        "{stats:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn every_client_is_served_and_every_thread_joined_whatever_the_timing(
        keep_warm_ms in prop::sample::select(vec![0u64, 5, 30, 1_000]),
        groups in prop::collection::vec((0u64..40, 1usize..5), 1..6),
    ) {
        let server = server(Duration::from_millis(keep_warm_ms));
        let mut total = 0;
        for (pause_ms, clients) in &groups {
            thread::sleep(Duration::from_millis(*pause_ms));
            thread::scope(|scope| {
                for c in 0..*clients {
                    let server = &server;
                    scope.spawn(move || echo_once(server, format!("group client {c}").as_bytes()));
                }
            });
            total += clients;
        }
        let stats = server.shutdown();
        prop_assert_eq!(stats.served, total as u64, "{:?}", stats);
        prop_assert_eq!((stats.errors, stats.refused), (0, 0), "{:?}", stats);
        prop_assert!(stats.threads_started <= total as u64, "{:?}", stats);
        prop_assert_eq!(stats.threads_joined, stats.threads_started, "{:?}", stats);
    }
}
