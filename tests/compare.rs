//! `sockstep compare http-vs-socket` measures what it claims: every mode
//! delivers every update, and the counts differ the way the modes differ.
//! (Latencies are printed, never asserted: the machine is shared and noisy.)

use std::time::Duration;

use sockstep::compare::http_vs_socket::{self, CompareConfig, Row};

fn rows() -> Vec<Row> {
    let config = CompareConfig {
        updates: 30,
        every: Duration::from_millis(3),
        poll_interval: Duration::from_millis(15),
        long_poll_wait: Duration::from_secs(2),
    };
    let rows = http_vs_socket::run(&config, &mut std::io::sink()).expect("every mode runs");
    eprintln!("{}", http_vs_socket::table(&config, &rows));
    rows
}

fn row<'a>(rows: &'a [Row], starts: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.mode.starts_with(starts))
        .unwrap_or_else(|| panic!("no mode starting {starts:?} in {rows:?}"))
}

#[test]
fn every_mode_delivers_every_update_once_and_counts_its_cost() {
    let rows = rows();
    for r in &rows {
        assert_eq!(r.delivered, 30, "{r:?}");
        assert!(r.p50 <= r.p99, "{r:?}");
    }
    let poll_new = row(&rows, "HTTP polling, a connection");
    let poll_kept = row(&rows, "HTTP polling, keep-alive");
    let long_poll = row(&rows, "HTTP long polling");
    let push = row(&rows, "push over a kept TCP");
    let websocket = row(&rows, "push over WebSocket");

    // The seed's HTTP: one TCP connection per request.
    assert_eq!(poll_new.connections, poll_new.requests, "{poll_new:?}");
    assert!(poll_new.requests >= 2, "{poll_new:?}");
    // Keep-alive and long polling: one connection carries every request.
    assert_eq!(poll_kept.connections, 1, "{poll_kept:?}");
    assert_eq!(long_poll.connections, 1, "{long_poll:?}");
    // Long polling asks once per answer, and no answer is empty: at most one
    // request per update (fewer when updates bunch up), plus none wasted.
    assert!(long_poll.requests <= 30, "{long_poll:?}");
    // Push: one connection, no requests, and a handful of bytes up (`SUB`).
    assert_eq!((push.connections, push.requests), (1, 0), "{push:?}");
    assert!(push.bytes_up < 16, "{push:?}");
    // WebSocket: one request (the Upgrade), then the same kept connection.
    assert_eq!(
        (websocket.connections, websocket.requests),
        (1, 1),
        "{websocket:?}"
    );
    // Every HTTP request carries a head both ways: per update delivered, the
    // request/response modes move more bytes than push does.
    for http in [poll_new, poll_kept, long_poll] {
        assert!(
            http.bytes_up + http.bytes_down > push.bytes_up + push.bytes_down,
            "{http:?} vs {push:?}"
        );
    }
}
