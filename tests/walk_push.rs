//! `sockstep walk push` shows what it says: each client connects once, and on
//! those kept connections messages go both ways and the server speaks unasked —
//! checked in the trace and the counts, not in the printout.
//!
//! The walkthrough runs once (well under a second) and every test reads the
//! same report, so each test states one behaviour.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sockstep::push::line::ServerLine;
use sockstep::trace::{Event, SocketId};
use sockstep::walk::WalkOptions;
use sockstep::walk::push::{self, ClientReport, PushWalkReport};
use sockstep::{Side, Step};

/// How long the walkthrough may take here: it finishes in about a quarter of
/// a second; the rest is room for a loaded machine. (Every wait inside it has
/// its own timeout, so it cannot hang; this bounds the sum.)
const WITHIN: Duration = Duration::from_secs(30);

/// The one run every test reads, and how long it took.
fn report() -> &'static (PushWalkReport, Duration) {
    static REPORT: OnceLock<(PushWalkReport, Duration)> = OnceLock::new();
    REPORT.get_or_init(|| {
        let started = Instant::now();
        let report = push::run(&WalkOptions::default(), Box::new(std::io::sink()))
            .expect("the walkthrough runs on loopback");
        (report, started.elapsed())
    })
}

/// Each socket's events, in order.
fn by_socket(events: &[Event], side: Side) -> BTreeMap<SocketId, Vec<&Event>> {
    let mut sockets: BTreeMap<SocketId, Vec<&Event>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.side == side) {
        sockets.entry(e.socket).or_default().push(e);
    }
    sockets
}

fn steps(events: &[&Event]) -> Vec<Step> {
    events.iter().map(|e| e.step).collect()
}

fn got_message_from(client: &ClientReport, from: u64) -> bool {
    client
        .received
        .iter()
        .any(|r| matches!(&r.line, ServerLine::Msg { from: f, .. } if *f == from))
}

#[test]
fn it_finishes_by_itself_in_about_a_second() {
    let (_, took) = report();
    assert!(*took < WITHIN, "took {took:?}");
}

#[test]
fn each_client_opens_exactly_one_connection() {
    let (report, _) = report();
    let clients = by_socket(&report.events, Side::Client);
    // Every client socket of the run, established or not, is alice's or bob's.
    let opened: Vec<SocketId> = clients.keys().copied().collect();
    let mut theirs = [report.alice.sockets.clone(), report.bob.sockets.clone()].concat();
    theirs.sort();
    assert_eq!(opened, theirs, "client sockets in the trace");
    for client in [&report.alice, &report.bob] {
        assert_eq!(client.connections(), 1, "{}", client.name);
        let events = &clients[&client.sockets[0]];
        let established = events
            .iter()
            .filter(|e| e.step == Step::Established)
            .count();
        assert_eq!(established, 1, "{}: {:?}", client.name, steps(events));
        assert_eq!(
            steps(events)[..3],
            [Step::Socket, Step::Connect, Step::Established],
            "{}",
            client.name
        );
        assert_eq!(client.error, None, "{} stopped reading early", client.name);
    }
    assert_eq!(report.server.server.accepted, 2, "{:?}", report.server);
}

#[test]
fn both_receive_the_others_message_on_their_one_connection() {
    let (report, _) = report();
    let (alice, bob) = (&report.alice, &report.bob);
    assert_ne!(alice.member, bob.member);
    assert!(got_message_from(bob, alice.member), "{:?}", bob.received);
    assert!(got_message_from(alice, bob.member), "{:?}", alice.received);
    // The other's message is a push: nobody asked for it.
    for (client, other) in [(alice, bob), (bob, alice)] {
        let theirs = client
            .received
            .iter()
            .find(|r| matches!(&r.line, ServerLine::Msg { from, .. } if *from == other.member))
            .expect("checked above");
        assert!(theirs.unasked, "{}: {theirs:?}", client.name);
        assert!(
            client.sent.iter().any(|line| line.starts_with("PUB ")),
            "{} published: {:?}",
            client.name,
            client.sent
        );
    }
    assert!(report.server.hub.published >= 2, "{:?}", report.server.hub);
}

#[test]
fn the_server_pushes_ticks_nobody_asked_for() {
    let (report, _) = report();
    for client in [&report.alice, &report.bob] {
        let ticks: Vec<_> = client
            .received
            .iter()
            .filter(|r| matches!(r.line, ServerLine::Tick { .. }))
            .collect();
        assert!(!ticks.is_empty(), "{}: {:?}", client.name, client.received);
        assert!(ticks.iter().all(|r| r.unasked), "{}", client.name);
    }
    // Unasked: the other's message and the tick(s) each, and bob's BYE.
    assert!(report.unasked() >= 5, "{}", report.unasked());
    assert!(report.alice.unasked() < report.alice.received.len());
}

#[test]
fn alice_quits_and_her_connection_ends_with_a_close() {
    let (report, _) = report();
    let alice = &report.alice;
    assert_eq!(alice.sent.last().map(String::as_str), Some("QUIT"));
    assert_eq!(alice.bye(), Some("quit"));
    assert!(
        !alice.received.last().expect("lines").unasked,
        "BYE quit answers QUIT"
    );
    let clients = by_socket(&report.events, Side::Client);
    let events = &clients[&alice.sockets[0]];
    let quit = events
        .iter()
        .position(|e| e.step == Step::Message && e.detail.as_deref() == Some("alice sends: QUIT"))
        .expect("alice's QUIT is in the trace");
    let after: Vec<Step> = steps(&events[quit..]);
    assert!(after.contains(&Step::Close), "{after:?}");
    assert_eq!(after.last(), Some(&Step::Close), "{after:?}");
    // She read the server's end of stream before closing her end.
    let end_of_stream = events[quit..]
        .iter()
        .position(|e| e.step == Step::Read && e.bytes == Some(0))
        .expect("alice read end of stream");
    let first_close = after.iter().position(|s| *s == Step::Close).unwrap();
    assert!(end_of_stream < first_close, "{after:?}");
    assert_eq!(report.server.hub.left.quit, 1, "{:?}", report.server.hub);
}

#[test]
fn bob_is_disconnected_by_the_shutdown_that_joins_every_thread() {
    let (report, _) = report();
    let bob = &report.bob;
    assert_eq!(bob.bye(), Some("server shutting down"));
    assert!(!bob.sent.contains(&"QUIT".to_string()), "{:?}", bob.sent);
    let clients = by_socket(&report.events, Side::Client);
    assert_eq!(
        steps(&clients[&bob.sockets[0]]).last(),
        Some(&Step::Close),
        "bob closed his end"
    );

    let server = &report.server.server;
    assert_eq!(server.threads_started, 2, "{server:?}");
    assert_eq!(server.threads_joined, server.threads_started, "{server:?}");
    assert_eq!(server.threads_abandoned, 0, "{server:?}");
    assert_eq!(server.cut_off, 0, "{server:?}");
    assert_eq!(server.panics, 0, "{server:?}");
    let hub = &report.server.hub;
    assert_eq!(hub.members, 0, "{hub:?}");
    assert_eq!(hub.left.shutdown, 1, "{hub:?}");
    assert_eq!(hub.left.total(), 2, "{hub:?}");
}
