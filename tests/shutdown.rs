//! Graceful shutdown: what happens to every client when the server stops.
//!
//! `Server::shutdown` (or dropping the `Server`) stops accepting, refuses with
//! a reason whoever is still in the kernel's queue, lets the connections in
//! flight finish until the grace deadline, cuts off the rest, refuses whoever
//! is still in the waiting room, and joins every thread it started. Each test
//! here puts clients in one of those places when shutdown begins and checks
//! what they see: all their answers, an end of stream at the grace deadline,
//! or a refusal line — never silence, never a hang.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, config, connect, read_to_eof, wait_until};
use sockstep::tcp::client;
use sockstep::tcp::handlers::Echo;
use sockstep::tcp::serve::{REFUSAL_PREFIX, ServeConfig};
use sockstep::trace::{Event, Trace, Tracer};
use sockstep::{ErrorKind, Side, Step};

/// Reads what a refused client is told and checks it is one refusal line
/// saying the server is shutting down, then end of stream.
fn assert_refused_for_shutdown(name: &str, conn: &mut sockstep::tcp::Connection) {
    let text = read_to_eof(conn).unwrap_or_else(|(got, e)| panic!("{name}: {e} after {got:?}"));
    let text = String::from_utf8(text).expect("the reason is text");
    assert!(
        text.starts_with(REFUSAL_PREFIX)
            && text.contains("shutting down")
            && text.lines().count() == 1,
        "{name} was told {text:?}"
    );
}

/// Connects repeatedly until the port refuses, which happens once the accept
/// thread has stopped and closed the listener: from then on shutdown is only
/// waiting for the connections in flight. Returns how many probes got in
/// before that. The server refuses and counts each of them — except one that
/// lands in the kernel's queue in the instant between the server's last look
/// at the queue and the listener's close: the kernel resets that one.
fn wait_until_listener_closed(addr: SocketAddr) -> u64 {
    let mut got_in = 0;
    for _ in 0..2_000 {
        match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(_) => got_in += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return got_in,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => got_in += 1,
            Err(e) => panic!("probe connect: {e}"),
        }
        thread::sleep(Duration::from_millis(1));
    }
    panic!("the listener was still open after 2,000 probes");
}

#[test]
fn shutdown_answers_every_message_of_clients_in_mid_conversation() {
    const CLIENTS: usize = 8;
    const BEFORE: usize = 20;
    const AFTER: usize = 50;
    let grace = Duration::from_secs(5);
    // No waiting room: a probe that gets in while the server still accepts is
    // refused as "busy", so probes never count as served.
    let server = common::serve(
        0,
        ServeConfig {
            grace,
            ..config(CLIENTS)
        },
        Echo,
        &Trace::off(),
    );
    let addr = server.local_addr();
    let mid_conversation = Arc::new(Barrier::new(CLIENTS + 1));
    let listener_closed = Arc::new(AtomicBool::new(false));

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mid_conversation = mid_conversation.clone();
            let listener_closed = listener_closed.clone();
            thread::spawn(move || {
                let mut conn = connect(addr, &Trace::off());
                for i in 0..BEFORE {
                    let msg = format!("client {c} message {i} before\n");
                    conn.write_all(msg.as_bytes()).expect("write");
                    let mut echo = vec![0; msg.len()];
                    conn.read_exact(&mut echo).expect("echo before shutdown");
                    assert_eq!(echo, msg.as_bytes());
                }
                mid_conversation.wait();
                assert!(
                    wait_until(IO_TIMEOUT, || listener_closed.load(Ordering::SeqCst)),
                    "shutdown never closed the listener"
                );
                // Shutdown is under way and the listener is gone; keep talking,
                // pipelined, and expect every byte back before end of stream.
                let mut sent = Vec::new();
                for i in 0..AFTER {
                    let msg = format!("client {c} message {i} during shutdown\n");
                    conn.write_all(msg.as_bytes())
                        .expect("write during shutdown");
                    sent.extend_from_slice(msg.as_bytes());
                }
                conn.shutdown_write().expect("half-close");
                let echo = read_to_eof(&mut conn)
                    .unwrap_or_else(|(got, e)| panic!("client {c}: {e} after {} bytes", got.len()));
                assert_eq!(
                    String::from_utf8_lossy(&echo),
                    String::from_utf8_lossy(&sent),
                    "client {c}"
                );
            })
        })
        .collect();

    mid_conversation.wait();
    let started = Instant::now();
    let stopping = thread::spawn(move || server.shutdown());
    let probes_in = wait_until_listener_closed(addr);
    listener_closed.store(true, Ordering::SeqCst);

    for (c, client) in clients.into_iter().enumerate() {
        client
            .join()
            .unwrap_or_else(|_| panic!("client {c} failed"));
    }
    let stats = stopping.join().expect("shutdown panicked");
    assert!(
        started.elapsed() < grace,
        "shutdown waited for the deadline instead of the clients"
    );
    assert_eq!(stats.served, CLIENTS as u64, "{stats:?}");
    assert!(
        stats.refused <= probes_in,
        "refused more than connected: {stats:?}"
    );
    assert_eq!(
        (stats.errors, stats.panics, stats.cut_off),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.threads_started, stats.threads_joined, "{stats:?}");
    assert_eq!(stats.threads_abandoned, 0, "{stats:?}");
}

#[test]
fn shutdown_cuts_off_a_silent_client_at_the_grace_deadline() {
    let grace = Duration::from_millis(300);
    let server = common::serve(0, ServeConfig { grace, ..config(2) }, Echo, &Trace::off());
    let mut silent = connect(server.local_addr(), &Trace::off());
    assert!(
        wait_until(IO_TIMEOUT, || server.serving() == 1),
        "the client was never served"
    );

    let started = Instant::now();
    let stats = server.shutdown();
    let took = started.elapsed();
    assert!(
        took >= grace,
        "cut off before the grace period ended: {took:?}"
    );
    assert!(
        took < grace + Duration::from_millis(700),
        "shutdown overran the grace period: {took:?}"
    );

    // The server shut the socket: the client sees end of stream, not a hang.
    let got = read_to_eof(&mut silent).unwrap_or_else(|(_, e)| panic!("client after the cut: {e}"));
    assert!(got.is_empty());
    assert_eq!(stats.cut_off, 1, "{stats:?}");
    assert_eq!(stats.threads_started, 1, "{stats:?}");
    assert_eq!(stats.threads_joined, 1, "{stats:?}");
    assert_eq!(stats.threads_abandoned, 0, "{stats:?}");
}

#[test]
fn dropping_the_server_shuts_it_down_and_the_port_refuses() {
    let server = common::serve(1, config(2), Echo, &Trace::off());
    let addr = server.local_addr();
    let mut conn = connect(addr, &Trace::off());
    conn.write_all(b"are you there?").expect("write");
    conn.shutdown_write().expect("half-close");
    assert_eq!(read_to_eof(&mut conn).expect("echo"), b"are you there?");

    drop(server);

    let err = client::socket(addr, &Trace::off())
        .connect(IO_TIMEOUT)
        .expect_err("nothing may listen after the server is dropped");
    assert_eq!(err.kind(), &ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn clients_in_the_waiting_room_at_shutdown_get_a_refusal_line() {
    let grace = Duration::from_millis(200);
    let server = common::serve(2, ServeConfig { grace, ..config(1) }, Echo, &Trace::off());
    let mut served = connect(server.local_addr(), &Trace::off());
    let mut waiting: Vec<_> = (0..2)
        .map(|_| connect(server.local_addr(), &Trace::off()))
        .collect();
    assert!(
        wait_until(IO_TIMEOUT, || server.serving() == 1
            && server.waiting() == 2),
        "serving {}, waiting {}",
        server.serving(),
        server.waiting()
    );

    let stats = server.shutdown();

    for (i, conn) in waiting.iter_mut().enumerate() {
        assert_refused_for_shutdown(&format!("waiting client {i}"), conn);
    }
    let got = read_to_eof(&mut served).unwrap_or_else(|(_, e)| panic!("served client: {e}"));
    assert!(
        got.is_empty(),
        "the served client was cut off with end of stream"
    );
    assert_eq!(
        (stats.accepted, stats.refused, stats.cut_off),
        (3, 2, 1),
        "{stats:?}"
    );
    assert_eq!(stats.threads_started, stats.threads_joined, "{stats:?}");
}

/// A tracer that holds the accept thread inside its first `accept()` until the
/// test opens the gate, so later clients pile up in the kernel's queue.
#[derive(Default)]
struct AcceptGate {
    state: Mutex<(bool, bool)>, // (an accept reached the gate, the gate is open)
    changed: Condvar,
}

impl AcceptGate {
    fn wait(&self, what: impl Fn(&(bool, bool)) -> bool) -> bool {
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, IO_TIMEOUT, |s| !what(s))
            .unwrap_or_else(PoisonError::into_inner);
        what(&guard)
    }

    fn open(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.changed.notify_all();
    }
}

impl Tracer for AcceptGate {
    fn event(&self, event: &Event) {
        if event.side == Side::Server && event.step == Step::Accept {
            self.state.lock().unwrap_or_else(PoisonError::into_inner).0 = true;
            self.changed.notify_all();
            // Bounded: if the test never opens the gate, the server goes on.
            self.wait(|s| s.1);
        }
    }
}

/// How many connections wait in the kernel's accept queue of the IPv4
/// listener on `port`, from `/proc/net/tcp` (for a listening socket the
/// `rx_queue` column is the accept queue's length). `None` if unreadable.
fn kernel_accept_queue(port: u16) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = format!(":{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let listening = fields.get(3) == Some(&"0A");
        if !listening || !fields.get(1)?.ends_with(&port) {
            return None;
        }
        let (_tx, rx) = fields.get(4)?.split_once(':')?;
        usize::from_str_radix(rx, 16).ok()
    })
}

#[test]
fn clients_in_the_kernel_queue_at_shutdown_get_a_refusal_line() {
    const QUEUED: usize = 3;
    let gate = Arc::new(AcceptGate::default());
    let server = common::serve(4, config(4), Echo, &Trace::to(gate.clone()));
    let addr = server.local_addr();
    if kernel_accept_queue(addr.port()).is_none() {
        eprintln!(
            "SKIPPED clients_in_the_kernel_queue_at_shutdown_get_a_refusal_line: cannot read the accept queue from /proc/net/tcp"
        );
        gate.open();
        return;
    }

    // The first client is taken by accept(), which then stops at the gate; the
    // others complete their handshakes in the kernel and wait in its queue.
    let mut first = connect(addr, &Trace::off());
    assert!(
        gate.wait(|s| s.0),
        "the accept thread never reached the gate"
    );
    let mut queued: Vec<_> = (0..QUEUED).map(|_| connect(addr, &Trace::off())).collect();
    assert!(wait_until(IO_TIMEOUT, || kernel_accept_queue(addr.port())
        == Some(QUEUED)));

    let stopping = thread::spawn(move || server.shutdown());
    // Shutdown's wake-up call joins the queue only after the server has
    // decided to stop, so one more in the queue means "stopping" is set.
    let stop_decided = wait_until(IO_TIMEOUT, || {
        kernel_accept_queue(addr.port()) == Some(QUEUED + 1)
    });
    gate.open();
    assert!(stop_decided, "shutdown's wake-up call never arrived");

    assert_refused_for_shutdown("the client accept() had taken", &mut first);
    for (i, conn) in queued.iter_mut().enumerate() {
        assert_refused_for_shutdown(&format!("queued client {i}"), conn);
    }
    let stats = stopping.join().expect("shutdown panicked");
    assert_eq!(stats.refused, QUEUED as u64 + 1, "{stats:?}");
    assert_eq!(
        (stats.accepted, stats.served),
        (0, 0),
        "refusals at shutdown are not acceptances: {stats:?}"
    );
}

/// A race, so a statistical test: ignored by default because it needs many
/// tries: run `cargo test --release --test shutdown -- --ignored` (up to about
/// two minutes). Seen failing at try 9,613; a standalone version of the same
/// loop hit the race 7 times in 6,000 tries.
///
/// At the grace deadline shutdown takes, under the room lock, the streams of
/// the connections in flight (to cut them off) and the waiting room (to
/// refuse it). A connection thread that has just taken a client from the
/// waiting room holds it in neither place until `serve_one` registers it, a
/// few system calls later. If the deadline falls in between, that client is
/// neither cut off nor refused: it is served on, in silence, past shutdown.
#[test]
#[ignore = "statistical reproduction of a race; takes minutes"]
fn a_client_leaving_the_waiting_room_as_the_grace_period_ends_is_cut_off_or_refused() {
    let grace = Duration::from_millis(5);
    let timeouts = sockstep::tcp::Timeouts {
        read: Some(Duration::from_secs(1)),
        write: Some(Duration::from_secs(1)),
    };
    let after_shutdown = sockstep::tcp::Timeouts {
        read: Some(Duration::from_millis(200)),
        write: Some(IO_TIMEOUT),
    };
    for attempt in 0..10_000u32 {
        let server = common::serve(
            1,
            ServeConfig {
                grace,
                timeouts,
                ..config(1)
            },
            Echo,
            &Trace::off(),
        );
        let mut served = connect(server.local_addr(), &Trace::off());
        let mut waiting = connect(server.local_addr(), &Trace::off());
        assert!(wait_until(IO_TIMEOUT, || server.waiting() == 1));
        let started = Instant::now();
        let stopping = thread::spawn(move || server.shutdown());
        // Free the only thread close to the deadline, a little later each time,
        // so that it takes the waiting client just as the deadline passes.
        let offset = Duration::from_micros(u64::from(attempt * 7 % 2_500));
        let at = started + grace - Duration::from_micros(500) + offset;
        while Instant::now() < at {
            std::hint::spin_loop(); // a sleep is too coarse to aim at microseconds
        }
        let _ = served.shutdown_write();
        let stats = stopping.join().expect("shutdown panicked");

        // The waiting client is silent, so it cannot finish by itself: at the
        // deadline it is either still waiting (refused) or being served (cut off).
        assert!(
            stats.refused + stats.cut_off >= 1,
            "attempt {attempt}: nobody cut off or refused: {stats:?}"
        );
        // And once shutdown has returned it has been told: a refusal line or end of stream.
        waiting.set_timeouts(after_shutdown).expect("timeouts");
        if let Err((got, e)) = read_to_eof(&mut waiting) {
            panic!(
                "attempt {attempt}: the waiting client heard {got:?} and then {e} after shutdown returned: {stats:?}"
            );
        }
    }
}
