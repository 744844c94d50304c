//! Admission: who is served, who waits, who is refused.
//!
//! A server with `max_connections = M` and a waiting room of `backlog = B`
//! serves M clients at once, keeps B more waiting in arrival order, and turns
//! away everyone beyond that with one line starting with [`REFUSAL_PREFIX`]
//! followed by end of stream. So of N clients connected at the same time,
//! exactly min(N, M + B) are served and the rest are refused — nobody hangs and
//! nobody is dropped in silence.
//!
//! Technique: N clients connect and stay silent, so every admitted one stays
//! admitted. Every connection is taken from the kernel — `Stats::accepted`
//! counts the refused ones too — so the test waits until the server has
//! accepted all N and its room holds exactly what it should. The server's
//! trace names the refused clients (a `Refuse` event carries the client's
//! address); they read their reason, the others send a line, half-close and
//! read their echo.

mod common;

use std::collections::HashSet;
use std::thread;

use common::{IO_TIMEOUT, config, connect, read_to_eof, wait_until};
use proptest::prelude::*;
use sockstep::Step;
use sockstep::tcp::handlers::Echo;
use sockstep::tcp::serve::REFUSAL_PREFIX;
use sockstep::trace::{Recorder, Trace};

/// Connects `n` silent clients to an echo server with `max` threads and a
/// waiting room of `backlog`, and checks who is served and who is refused.
fn n_clients_get_exactly_max_plus_backlog_served(max: usize, backlog: usize, n: usize) {
    let recorder = Recorder::new();
    let server = common::serve(backlog, config(max), Echo, &recorder.trace());
    let clients: Vec<_> = (0..n)
        .map(|_| connect(server.local_addr(), &Trace::off()))
        .collect();

    let serving = n.min(max);
    let admitted = n.min(max + backlog);
    let refused = n - admitted;
    let refused_events = || {
        recorder
            .events()
            .iter()
            .filter(|e| e.step == Step::Refuse)
            .count()
    };
    let settled = wait_until(IO_TIMEOUT, || {
        let stats = server.stats();
        stats.accepted == n as u64
            && stats.refused == refused as u64
            && server.serving() == serving
            && server.waiting() == admitted - serving
            && refused_events() == refused
    });
    assert!(
        settled,
        "M={max} B={backlog} N={n}: stats {:?}, serving {}, waiting {}",
        server.stats(),
        server.serving(),
        server.waiting()
    );

    let refused_peers: HashSet<_> = recorder
        .events()
        .iter()
        .filter(|e| e.step == Step::Refuse)
        .filter_map(|e| e.peer)
        .collect();
    assert_eq!(refused_peers.len(), refused);

    let mut conversations = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        if refused_peers.contains(&client.local_addr()) {
            let text = read_to_eof(&mut client)
                .unwrap_or_else(|(got, e)| panic!("refused client {i}: {e} after {got:?}"));
            let text = String::from_utf8(text).expect("the reason is text");
            assert!(text.starts_with(REFUSAL_PREFIX), "client {i} read {text:?}");
            assert!(
                text.ends_with('\n') && text.lines().count() == 1,
                "one line, then end of stream: {text:?}"
            );
        } else {
            conversations.push(thread::spawn(move || {
                let line = format!("client {i} was admitted\n");
                client.write_all(line.as_bytes()).expect("write");
                client.shutdown_write().expect("half-close");
                let echo = read_to_eof(&mut client)
                    .unwrap_or_else(|(got, e)| panic!("client {i}: {e} after {got:?}"));
                assert_eq!(String::from_utf8_lossy(&echo), line);
            }));
        }
    }
    assert_eq!(conversations.len(), admitted);
    for conversation in conversations {
        conversation.join().expect("an admitted client failed");
    }

    let stats = server.shutdown();
    assert_eq!(stats.accepted, n as u64, "{stats:?}");
    assert_eq!(stats.served, admitted as u64, "{stats:?}");
    assert_eq!(stats.refused, refused as u64, "{stats:?}");
    assert_eq!((stats.errors, stats.panics), (0, 0), "{stats:?}");
    // Threads start on demand; a freed thread takes the next waiting client.
    assert_eq!(stats.threads_started, serving as u64, "{stats:?}");
    assert_eq!(stats.threads_joined, stats.threads_started, "{stats:?}");
    assert_eq!(stats.threads_abandoned, 0, "{stats:?}");
}

#[test]
fn nine_clients_for_two_threads_and_three_seats_five_served_four_refused() {
    n_clients_get_exactly_max_plus_backlog_served(2, 3, 9);
}

#[test]
fn fewer_clients_than_threads_plus_seats_are_all_served() {
    n_clients_get_exactly_max_plus_backlog_served(2, 3, 4);
}

#[test]
fn exactly_threads_plus_seats_clients_are_all_served() {
    n_clients_get_exactly_max_plus_backlog_served(2, 3, 5);
}

#[test]
fn without_a_waiting_room_everyone_beyond_the_threads_is_refused() {
    n_clients_get_exactly_max_plus_backlog_served(1, 0, 4);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn any_mix_of_threads_seats_and_clients_serves_min_of_n_and_m_plus_b(
        max in 1usize..=3,
        backlog in 0usize..=3,
        n in 0usize..=10,
    ) {
        n_clients_get_exactly_max_plus_backlog_served(max, backlog, n);
    }
}
