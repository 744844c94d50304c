//! `sockstep walk udp`, checked from its report rather than its printout: the
//! lifecycle happened in the seed's order, the limits were met where the docs
//! say, and the lossy link lost — silently — exactly what its seed decided.
//!
//! The walkthrough runs once (about a second) and every test reads the same
//! report, so each test states one behaviour.

use std::collections::BTreeSet;
use std::io;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sockstep::trace::{Event, SocketId};
use sockstep::udp::faults::{Fate, Faults};
use sockstep::walk::WalkOptions;
use sockstep::walk::udp::{self, DATAGRAMS, UdpWalkReport};
use sockstep::{ErrorKind, Side, Step};

/// How long the walkthrough may take here: it finishes in about a second; the
/// rest is room for a loaded machine.
const WITHIN: Duration = Duration::from_secs(20);

/// How many datagrams the relay reorders that may still arrive in order. A
/// reordered datagram shows up late only if a later one reaches the relay
/// within `REORDER_HOLD` (10 ms) after it and overtakes it: never true of the
/// very last datagram, and not true if the sender is descheduled for over
/// 10 ms right after a reordered one (rare, but a shared 2-core machine does it).
const REORDER_SLACK: usize = 2;

/// The one run every test reads, and how long it took.
fn report() -> &'static (UdpWalkReport, Duration) {
    static REPORT: OnceLock<(UdpWalkReport, Duration)> = OnceLock::new();
    REPORT.get_or_init(|| {
        let started = Instant::now();
        let report = udp::run(&WalkOptions::default(), Box::new(io::sink()))
            .expect("the UDP walkthrough runs on loopback");
        (report, started.elapsed())
    })
}

fn events() -> &'static [Event] {
    &report().0.events
}

/// The sockets of part 1, in the order they were made, with their side.
fn sockets() -> Vec<(SocketId, Side)> {
    events()
        .iter()
        .filter(|e| e.step == Step::Socket)
        .map(|e| (e.socket, e.side))
        .collect()
}

fn of(socket: SocketId) -> Vec<&'static Event> {
    events().iter().filter(|e| e.socket == socket).collect()
}

fn count(side: Side, step: Step) -> usize {
    events()
        .iter()
        .filter(|e| e.side == side && e.step == step)
        .count()
}

#[test]
fn the_walkthrough_finishes_by_itself_within_seconds() {
    let elapsed = report().1;
    assert!(elapsed < WITHIN, "took {elapsed:?}");
}

#[test]
fn a_server_socket_and_a_client_socket_are_made_and_only_those() {
    let made = sockets();
    assert_eq!(made.len(), 2, "{made:?}");
    assert_eq!(made[0].1, Side::Server);
    assert_eq!(made[1].1, Side::Client);
}

#[test]
fn every_socket_goes_socket_then_bind_then_datagrams_then_close() {
    for (socket, side) in sockets() {
        let steps: Vec<Step> = of(socket).iter().map(|e| e.step).collect();
        assert_eq!(steps[..2], [Step::Socket, Step::Bind], "{side}: {steps:?}");
        assert_eq!(steps.last(), Some(&Step::Close), "{side}: {steps:?}");
        let middle = &steps[2..steps.len() - 1];
        assert!(
            middle
                .iter()
                .all(|s| matches!(s, Step::SendTo | Step::RecvFrom | Step::Connect)),
            "{side}: {steps:?}"
        );
        assert!(middle.contains(&Step::SendTo), "{side} never sent");
        assert!(middle.contains(&Step::RecvFrom), "{side} never received");
    }
}

#[test]
fn the_client_binds_too_and_is_given_a_real_port() {
    let (client, _) = sockets()[1];
    let bind = of(client)
        .into_iter()
        .find(|e| e.step == Step::Bind)
        .expect("a client bind() event");
    let local = bind.local.expect("bind() reports the address");
    assert_ne!(local.port(), 0);
    assert!(
        bind.detail.as_deref().is_some_and(|d| d.contains("port 0")),
        "{bind:?}"
    );
}

#[test]
fn udp_never_listens_or_accepts() {
    assert!(
        events()
            .iter()
            .all(|e| !matches!(e.step, Step::Listen | Step::Accept)),
        "{:?}",
        events()
    );
}

#[test]
fn the_server_learns_each_senders_address_from_recv_from() {
    let (client, _) = sockets()[1];
    let client_addr = of(client)[1].local.expect("bound");
    let server_receives: Vec<&Event> = events()
        .iter()
        .filter(|e| e.side == Side::Server && e.step == Step::RecvFrom)
        .collect();
    assert!(!server_receives.is_empty());
    for e in server_receives {
        assert_eq!(e.peer, Some(client_addr), "{e:?}");
    }
}

#[test]
fn connect_is_an_event_but_sends_no_datagram() {
    let (client, _) = sockets()[1];
    let client_events = of(client);
    let at = client_events
        .iter()
        .position(|e| e.step == Step::Connect)
        .expect("a connect() event");
    // Nothing happens on any socket between the connect and the client's own next send…
    let connect = client_events[at];
    let next = events()
        .iter()
        .find(|e| e.at > connect.at)
        .expect("events after connect");
    assert_eq!((next.socket, next.step), (client, Step::SendTo), "{next:?}");
    // …the server, waiting right after it, heard nothing…
    assert!(report().0.quiet_after_connect);
    // …and every datagram received is one sent: connect added none.
    assert_eq!(
        count(Side::Server, Step::RecvFrom),
        count(Side::Client, Step::SendTo)
    );
    assert_eq!(
        count(Side::Client, Step::RecvFrom),
        count(Side::Server, Step::SendTo)
    );
}

#[test]
fn the_largest_ipv4_datagram_arrives_whole_and_one_byte_more_is_refused() {
    let r = &report().0;
    assert_eq!(r.largest_received, 65_507);
    assert_eq!(
        r.one_byte_more,
        Some(ErrorKind::DatagramTooLarge {
            len: 65_508,
            max: 65_507
        })
    );
    let sizes: Vec<usize> = events()
        .iter()
        .filter(|e| e.step == Step::SendTo)
        .filter_map(|e| e.bytes)
        .collect();
    assert!(sizes.contains(&65_507), "{sizes:?}");
    assert!(
        !sizes.contains(&65_508),
        "the refused datagram was never sent"
    );
}

#[test]
fn a_datagram_longer_than_the_buffer_is_reported_cut_not_passed_on_short() {
    assert_eq!(
        report().0.truncated,
        Some(ErrorKind::DatagramTruncated { buffer: 16 })
    );
    assert!(events().iter().any(|e| {
        e.side == Side::Server
            && e.step == Step::RecvFrom
            && e.bytes.is_none()
            && e.detail.as_deref().is_some_and(|d| d.contains("truncated"))
    }));
}

#[test]
fn every_send_succeeds_while_a_tenth_of_the_datagrams_never_arrive() {
    let loss = &report().0.loss;
    assert_eq!(loss.sends, DATAGRAMS);
    assert_eq!(loss.send_errors, 0, "a loss is no error");
    let rate = loss.lost.len() as f64 / f64::from(DATAGRAMS);
    assert!((0.05..0.15).contains(&rate), "lost {rate}");
    assert_eq!(
        loss.lost.len() as u64,
        loss.relay.client_to_upstream.faults.dropped
    );
}

#[test]
fn arrived_and_lost_account_for_every_number_and_nothing_else_arrived() {
    let loss = &report().0.loss;
    assert_eq!(loss.strangers, 0);
    assert!(loss.arrivals.iter().all(|n| (1..=DATAGRAMS).contains(n)));
    let arrived: BTreeSet<u32> = loss.arrivals.iter().copied().collect();
    let lost: BTreeSet<u32> = loss.lost.iter().copied().collect();
    assert!(arrived.is_disjoint(&lost));
    let all: BTreeSet<u32> = arrived.union(&lost).copied().collect();
    assert_eq!(all, (1..=DATAGRAMS).collect());
    // Paced, so nothing is lost but what the relay chose: every copy it sent arrived.
    let relay = &loss.relay.client_to_upstream;
    assert_eq!(relay.faults.received, u64::from(DATAGRAMS));
    assert_eq!(loss.arrivals.len() as u64, relay.sent);
    assert!(relay.all_copies_accounted_for(), "{relay:?}");
}

#[test]
fn duplicates_are_exactly_the_relays_and_each_came_twice() {
    let loss = &report().0.loss;
    assert_eq!(
        loss.duplicated.len() as u64,
        loss.relay.client_to_upstream.faults.duplicated
    );
    for n in &loss.duplicated {
        let times = loss.arrivals.iter().filter(|a| *a == n).count();
        assert_eq!(times, 2, "{n} arrived {times} times");
    }
}

#[test]
fn the_seed_decided_in_advance_which_numbers_are_lost_doubled_and_held_back() {
    // The relay decides in arrival order, which on loopback is the send order,
    // so a fault engine with the same config, run here without sockets,
    // predicts every datagram's fate.
    let loss = &report().0.loss;
    let mut engine = Faults::new(loss.faults.clone()).expect("a valid config");
    let fates: Vec<(u32, Fate)> = (1..=DATAGRAMS).map(|n| (n, engine.decide())).collect();
    let which = |keep: fn(&Fate) -> bool| -> Vec<u32> {
        fates
            .iter()
            .filter(|(_, f)| keep(f))
            .map(|(n, _)| *n)
            .collect()
    };
    assert_eq!(loss.lost, which(|f| *f == Fate::Drop));
    assert_eq!(loss.duplicated, which(|f| f.copies() == 2));
    let held_back = which(Fate::is_reordered);
    assert_eq!(
        held_back.len() as u64,
        loss.relay.client_to_upstream.faults.reordered
    );
    for n in &loss.out_of_order {
        assert!(
            held_back.contains(n),
            "{n} arrived out of order but was not held back"
        );
    }
    assert!(
        held_back.len() - loss.out_of_order.len() <= REORDER_SLACK,
        "held back {held_back:?}, seen out of order {:?}",
        loss.out_of_order
    );
}
