//! The trace tells the lifecycle in the seed's order, on every run.
//!
//! A server (socket → bind → listen → serve with `Echo`) and several clients
//! (socket → connect → write/read → shutdown → close) share one trace, recorded
//! by `sockstep::trace::Recorder`; so does the walkthrough `sockstep walk tcp`.
//! Whatever the threads' interleaving, the recorded events must say:
//!
//! - server: `socket()` before `bind()` before `listen()` before every `accept()`;
//! - every server `accept()` comes after its client's `connect()` began;
//! - each client socket: `socket()`, `connect()`, connected — and only then
//!   reads and writes, ending with `close()`;
//! - each server-side connection: no read or write before the `accept()` that
//!   made it, and `close()` last;
//! - any other `accept()` is shutdown's wake-up call, and the trace says so.
//!
//! Events are grouped by `Event::socket`, the identity each socket gets at its
//! `socket()` step (or at `accept()`) and keeps to its `close()`.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::thread;

use common::{IO_TIMEOUT, TIMEOUTS, any_port_v4, config, read_to_eof};
use proptest::prelude::*;
use sockstep::tcp::handlers::Echo;
use sockstep::tcp::{client, server};
use sockstep::trace::{Event, Recorder, SocketId};
use sockstep::walk::{self, WalkOptions};
use sockstep::{Side, Step};

fn steps<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<Step> {
    events.into_iter().map(|e| e.step).collect()
}

/// Checks the lifecycle order of a recorded run with `clients` clients, each
/// having written at least `min_writes` times.
fn check_lifecycle_order(events: &[Event], clients: usize, min_writes: usize) {
    let all = steps(events);
    let mut sockets: BTreeMap<SocketId, Vec<&Event>> = BTreeMap::new();
    for e in events {
        sockets.entry(e.socket).or_default().push(e);
    }

    // The listening socket: its first three steps, once each and in order, then accepts.
    let (&listener, listening) = sockets
        .iter()
        .find(|(_, evs)| evs[0].side == Side::Server && evs[0].step == Step::Socket)
        .expect("a server socket() step");
    let seq = steps(listening.iter().copied());
    assert_eq!(
        seq[..3],
        [Step::Socket, Step::Bind, Step::Listen],
        "{all:?}"
    );
    assert!(
        seq[3..].iter().all(|s| *s == Step::Accept),
        "the listening socket only accepts after listen(): {seq:?}"
    );
    let server_addr = listening[1].local.expect("bind() names the address");
    let accepts: Vec<&Event> = listening[3..].to_vec();

    // Each client socket: socket, connect, connected, then I/O, then close.
    let client_sockets: Vec<&Vec<&Event>> = sockets
        .iter()
        .filter(|(_, evs)| evs[0].side == Side::Client)
        .map(|(_, evs)| evs)
        .collect();
    assert_eq!(client_sockets.len(), clients, "{all:?}");
    let mut client_addrs: Vec<SocketAddr> = Vec::new();
    for mine in client_sockets {
        let seq = steps(mine.iter().copied());
        assert_eq!(
            seq[..3],
            [Step::Socket, Step::Connect, Step::Established],
            "{seq:?}"
        );
        assert_eq!(
            mine[1].peer,
            Some(server_addr),
            "connect() names the server"
        );
        let local = mine[2].local.expect("connected names our port");
        for e in &mine[2..] {
            assert_eq!((e.local, e.peer), (Some(local), Some(server_addr)), "{e:?}");
        }
        let middle = &seq[3..seq.len() - 1];
        assert!(
            middle
                .iter()
                .all(|s| matches!(s, Step::Read | Step::Write | Step::Shutdown)),
            "client {local}: {seq:?}"
        );
        assert_eq!(seq.last(), Some(&Step::Close), "client {local}: {seq:?}");
        let writes = middle.iter().filter(|s| **s == Step::Write).count();
        assert!(writes >= min_writes, "client {local}: {seq:?}");
        let last_read = mine.iter().rev().find(|e| e.step == Step::Read);
        assert_eq!(
            last_read.and_then(|e| e.bytes),
            Some(0),
            "ends at end of stream"
        );

        // Its server side: accepted after our connect() began, no I/O before that.
        let accept = accepts
            .iter()
            .find(|a| a.peer == Some(local))
            .unwrap_or_else(|| panic!("no accept() for client {local}: {all:?}"));
        assert!(
            accept.at > mine[1].at,
            "accept() of {local} before its connect() began"
        );
        let theirs: Vec<&Event> = sockets
            .iter()
            .filter(|(id, evs)| evs[0].side == Side::Server && **id != listener)
            .flat_map(|(_, evs)| evs.iter().copied())
            .filter(|e| e.peer == Some(local))
            .collect();
        let seq = steps(theirs.iter().copied());
        assert!(
            theirs.iter().all(|e| e.at >= accept.at),
            "server side of {local} did I/O before accept(): {seq:?}"
        );
        assert_eq!(
            seq.last(),
            Some(&Step::Close),
            "server side of {local}: {seq:?}"
        );
        client_addrs.push(local);
    }

    // Any other accept is shutdown's wake-up call, and the trace says so.
    for a in &accepts {
        let peer = a.peer.expect("an accept names its peer");
        if client_addrs.contains(&peer) {
            continue;
        }
        let labelled = events.iter().any(|e| {
            e.step == Step::Serve
                && e.peer == Some(peer)
                && e.detail.as_deref().is_some_and(|d| d.contains("wake-up"))
        });
        assert!(
            labelled,
            "accept() of {peer}: no client, and not the wake-up call"
        );
    }
}

/// One run: `clients` concurrent clients, each sending `messages` echoed messages.
fn run_and_check_order(clients: usize, messages: usize) {
    let recorder = Recorder::new();
    let trace = recorder.trace();
    let server = server::socket(any_port_v4(), &trace)
        .bind()
        .expect("bind")
        .listen(clients)
        .serve(config(clients), Echo)
        .expect("serve");
    let addr = server.local_addr();

    let runs: Vec<_> = (0..clients)
        .map(|c| {
            let trace = trace.clone();
            thread::spawn(move || {
                let mut conn = client::socket(addr, &trace)
                    .timeouts(TIMEOUTS)
                    .connect(IO_TIMEOUT)
                    .expect("connect");
                for i in 0..messages {
                    let msg = format!("client {c} message {i}\n");
                    conn.write_all(msg.as_bytes()).expect("write");
                    let mut echo = vec![0; msg.len()];
                    conn.read_exact(&mut echo).expect("echo");
                    assert_eq!(echo, msg.as_bytes());
                }
                conn.shutdown_write().expect("half-close");
                assert!(read_to_eof(&mut conn).expect("end of stream").is_empty());
                conn.close();
            })
        })
        .collect();
    for run in runs {
        run.join().expect("a client failed");
    }
    let stats = server.shutdown();
    assert_eq!(stats.served, clients as u64, "{stats:?}");
    check_lifecycle_order(&recorder.events(), clients, messages);
}

#[test]
fn one_client_one_message_is_traced_in_lifecycle_order() {
    run_and_check_order(1, 1);
}

#[test]
fn the_walkthrough_is_traced_in_lifecycle_order_on_every_run() {
    for _ in 0..10 {
        let report = walk::tcp::run(&WalkOptions::default(), Box::new(std::io::sink()))
            .expect("walkthrough");
        assert_eq!(report.stats.served, 1, "{:?}", report.stats);
        check_lifecycle_order(&report.events, 1, 3);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, ..ProptestConfig::default() })]

    #[test]
    fn every_run_is_traced_in_lifecycle_order(clients in 1usize..=6, messages in 0usize..=4) {
        run_and_check_order(clients, messages);
    }
}
