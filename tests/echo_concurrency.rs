//! Many clients at once: every byte comes back, in order, to the client that sent it.
//!
//! 200 clients connect and are all served at the same time — one thread each,
//! which the test checks before anyone speaks — then each sends 200 messages
//! of different lengths and reads every echo back before sending the next.
//! The messages name their client and their number, so a byte crossing to the
//! wrong connection or arriving out of order is caught. At shutdown the
//! server's counts must say the same: 200 accepted, 200 served, nothing
//! refused, no errors, every thread joined.

mod common;

use std::io::Read;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{IO_TIMEOUT, config, connect, read_to_eof, wait_until};
use sockstep::tcp::handlers::Echo;
use sockstep::tcp::serve::ServeConfig;
use sockstep::trace::Trace;

const CLIENTS: usize = 200;
const MESSAGES: usize = 200;

/// Message `i` of client `c`: its name, then 0–63 bytes of padding so that the
/// messages have many lengths, then a newline.
fn message(c: usize, i: usize) -> Vec<u8> {
    let mut msg = format!("client {c} message {i} ").into_bytes();
    msg.extend(std::iter::repeat_n(
        b'a' + (i % 26) as u8,
        (c * 7 + i * 13) % 64,
    ));
    msg.push(b'\n');
    msg
}

#[test]
fn two_hundred_concurrent_clients_get_every_byte_back_in_order() {
    // No waiting room: a client that did not get its own thread would be refused.
    let server = common::serve(
        0,
        ServeConfig {
            stack_size: Some(64 * 1024),
            ..config(CLIENTS)
        },
        Echo,
        &Trace::off(),
    );
    let addr = server.local_addr();
    let all_connected = Arc::new(Barrier::new(CLIENTS + 1));
    let go = Arc::new(Barrier::new(CLIENTS + 1));

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (all_connected, go) = (all_connected.clone(), go.clone());
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut conn = connect(addr, &Trace::off());
                    all_connected.wait();
                    go.wait();
                    let mut bytes = 0;
                    for i in 0..MESSAGES {
                        let msg = message(c, i);
                        conn.write_all(&msg)
                            .unwrap_or_else(|e| panic!("client {c} message {i}: {e}"));
                        let mut echo = vec![0; msg.len()];
                        conn.read_exact(&mut echo)
                            .unwrap_or_else(|e| panic!("client {c} echo {i}: {e}"));
                        assert_eq!(echo, msg, "client {c} message {i} came back wrong");
                        bytes += msg.len();
                    }
                    conn.shutdown_write().expect("half-close");
                    let rest = read_to_eof(&mut conn)
                        .unwrap_or_else(|(_, e)| panic!("client {c} at the end: {e}"));
                    assert!(
                        rest.is_empty(),
                        "client {c} got {} bytes it never sent",
                        rest.len()
                    );
                    bytes
                })
                .expect("spawn a client thread")
        })
        .collect();

    all_connected.wait();
    let all_served_at_once = wait_until(IO_TIMEOUT, || server.serving() == CLIENTS);
    go.wait();
    assert!(
        all_served_at_once,
        "only {} of {CLIENTS} were served at once",
        server.serving()
    );

    let mut total = 0;
    for (c, client) in clients.into_iter().enumerate() {
        total += client
            .join()
            .unwrap_or_else(|_| panic!("client {c} failed"));
    }
    let expected: usize = (0..CLIENTS)
        .flat_map(|c| (0..MESSAGES).map(move |i| message(c, i).len()))
        .sum();
    assert_eq!(total, expected);

    assert!(
        wait_until(Duration::from_secs(2), || server.stats().served
            == CLIENTS as u64),
        "{:?}",
        server.stats()
    );
    let stats = server.shutdown();
    assert_eq!(
        (stats.accepted, stats.served),
        (CLIENTS as u64, CLIENTS as u64),
        "{stats:?}"
    );
    assert_eq!(
        (stats.refused, stats.errors, stats.panics, stats.cut_off),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.threads_started, CLIENTS as u64, "{stats:?}");
    assert_eq!(stats.threads_joined, stats.threads_started, "{stats:?}");
    assert_eq!(stats.threads_abandoned, 0, "{stats:?}");
}
