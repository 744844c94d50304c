//! `sockstep walk http` shows what it says: a connection per request, then one
//! connection for several requests — in the trace, not only in the summary.

use std::collections::BTreeMap;

use sockstep::trace::{Event, SocketId};
use sockstep::walk::{self, WalkOptions};
use sockstep::{Side, Step};

fn run() -> walk::http::HttpWalkReport {
    walk::http::run(&WalkOptions::default(), Box::new(std::io::sink()))
        .expect("the walkthrough runs on loopback")
}

fn client_sockets(events: &[Event]) -> BTreeMap<SocketId, Vec<&Event>> {
    let mut sockets: BTreeMap<SocketId, Vec<&Event>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.side == Side::Client) {
        sockets.entry(e.socket).or_default().push(e);
    }
    sockets
}

fn requests_on(events: &[&Event]) -> usize {
    events
        .iter()
        .filter(|e| {
            e.step == Step::Message
                && e.detail
                    .as_deref()
                    .is_some_and(|d| d.starts_with("request:"))
        })
        .count()
}

#[test]
fn part_one_opens_a_connection_per_request_and_part_two_keeps_one() {
    let report = run();
    assert_eq!(report.connections, [2, 1]);
    assert_eq!(report.requests, [2, 3]);
    assert_eq!(report.http.requests, 5);
    assert_eq!(report.http.reused, 2, "{:?}", report.http);
    assert_eq!(report.http.by_class[1], 5, "every answer a 2xx");

    let sockets = client_sockets(&report.events);
    let per_socket: Vec<usize> = sockets.values().map(|evs| requests_on(evs)).collect();
    assert_eq!(
        per_socket,
        [1, 1, 3],
        "requests per client socket, in order"
    );
    for (id, evs) in &sockets {
        let steps: Vec<Step> = evs.iter().map(|e| e.step).collect();
        assert_eq!(
            steps[..3],
            [Step::Socket, Step::Connect, Step::Established],
            "socket {id}: {steps:?}"
        );
        assert_eq!(steps.last(), Some(&Step::Close), "socket {id}: {steps:?}");
        // Each request goes out (message, write) before its response comes in.
        let first_request = steps.iter().position(|s| *s == Step::Message).unwrap();
        let first_read = steps.iter().position(|s| *s == Step::Read).unwrap();
        assert!(first_request < first_read, "socket {id}: {steps:?}");
    }
}

#[test]
fn the_server_says_close_in_part_one_and_closes_first() {
    let report = run();
    // The server's side of each part-1 connection: a half-close (FIN) after the
    // response, then end of stream when the client closes, then close().
    let mut server_conns: BTreeMap<SocketId, Vec<Step>> = BTreeMap::new();
    for e in report.events.iter().filter(|e| e.side == Side::Server) {
        server_conns.entry(e.socket).or_default().push(e.step);
    }
    let with_shutdown = server_conns
        .values()
        .filter(|steps| steps.contains(&Step::Shutdown))
        .count();
    assert_eq!(with_shutdown, 2, "{server_conns:?}");
    assert_eq!(report.tcp.accepted, 3, "{:?}", report.tcp);
    assert_eq!(report.tcp.errors, 0, "{:?}", report.tcp);
}
