//! The trace tells the lifecycle in the seed's order, on every run.
//!
//! A server (socket → bind → listen → serve with `Echo`) and several clients
//! (socket → connect → write/read → shutdown → close) share one trace, recorded
//! by `sockstep::trace::Recorder`. Whatever the threads' interleaving, the
//! recorded events must say:
//!
//! - server: `socket()` before `bind()` before `listen()` before every `accept()`;
//! - every server `accept()` comes after its client's `connect()` began;
//! - each client: `socket()`, `connect()`, connected — and only then reads and
//!   writes on that connection, ending with `close()`;
//! - each server-side connection: `accept()` first, then reads and writes, and
//!   `close()` last.
//!
//! A client's `socket()` and `connect()` events carry no local address yet (the
//! kernel picks the client's port during connect), so to know which client they
//! belong to, the test's tracer also notes the thread each event came from:
//! every client runs on a thread of its own.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, ThreadId};

use common::{IO_TIMEOUT, TIMEOUTS, any_port_v4, config, read_to_eof};
use proptest::prelude::*;
use sockstep::tcp::handlers::Echo;
use sockstep::tcp::{client, server};
use sockstep::trace::{Event, Recorder, Trace, Tracer};
use sockstep::{Side, Step};

/// Records into a [`Recorder`] and also notes which thread emitted each event.
struct ByThread {
    recorder: Arc<Recorder>,
    seen: Mutex<Vec<(ThreadId, Event)>>,
}

impl Tracer for ByThread {
    fn event(&self, event: &Event) {
        self.recorder.event(event);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.push((thread::current().id(), event.clone()));
    }
}

fn steps<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<Step> {
    events.into_iter().map(|e| e.step).collect()
}

/// One run: `clients` concurrent clients, each sending `messages` echoed messages.
fn run_and_check_order(clients: usize, messages: usize) {
    let recorder = Recorder::new();
    let by_thread = Arc::new(ByThread {
        recorder: recorder.clone(),
        seen: Mutex::new(Vec::new()),
    });
    let trace = Trace::to(by_thread.clone());

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
                let local = conn.local_addr();
                conn.close();
                (thread::current().id(), local)
            })
        })
        .collect();
    let client_threads: HashMap<ThreadId, SocketAddr> = runs
        .into_iter()
        .map(|r| r.join().expect("a client failed"))
        .collect();
    let stats = server.shutdown();
    assert_eq!(stats.served, clients as u64, "{stats:?}");

    let events = recorder.events();
    let by_thread = by_thread
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let position = |side: Side, step: Step| -> Vec<usize> {
        events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.side == side && e.step == step)
            .map(|(i, _)| i)
            .collect()
    };

    // The server's first three steps, once each and in order, before any accept.
    let (socket, bind, listen) = (
        position(Side::Server, Step::Socket),
        position(Side::Server, Step::Bind),
        position(Side::Server, Step::Listen),
    );
    assert_eq!((socket.len(), bind.len(), listen.len()), (1, 1, 1));
    assert!(
        socket[0] < bind[0] && bind[0] < listen[0],
        "{:?}",
        steps(&events)
    );
    let accepts = position(Side::Server, Step::Accept);
    assert!(
        accepts.iter().all(|&a| a > listen[0]),
        "accept() before listen(): {:?}",
        steps(&events)
    );

    // Each client, on its own thread: socket, connect, connected, then I/O, then close.
    let mut connect_began = HashMap::new();
    for (thread, local) in &client_threads {
        let mine: Vec<&Event> = by_thread
            .iter()
            .filter(|(t, _)| t == thread)
            .map(|(_, e)| e)
            .collect();
        let seq = steps(mine.iter().copied());
        assert!(mine.iter().all(|e| e.side == Side::Client), "{seq:?}");
        assert_eq!(
            seq[..3],
            [Step::Socket, Step::Connect, Step::Established],
            "client {local}: {seq:?}"
        );
        assert_eq!(mine[1].peer, Some(addr), "connect() names the server");
        for e in &mine[2..] {
            assert_eq!(
                (e.local, e.peer),
                (Some(*local), Some(addr)),
                "client {local}: {e:?}"
            );
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
        assert!(writes >= messages, "client {local}: {seq:?}");
        let last_read = mine
            .iter()
            .rev()
            .find(|e| e.step == Step::Read)
            .expect("a read");
        assert_eq!(
            last_read.bytes,
            Some(0),
            "the client's last read is end of stream"
        );
        connect_began.insert(*local, mine[1].at);
    }

    // Each server-side connection: accept after its client's connect began,
    // then reads and writes, then close.
    for (local, began) in &connect_began {
        let theirs: Vec<&Event> = events
            .iter()
            .filter(|e| e.side == Side::Server && e.peer == Some(*local))
            .collect();
        let seq = steps(theirs.iter().copied());
        assert_eq!(
            seq.first(),
            Some(&Step::Accept),
            "server side of {local}: {seq:?}"
        );
        assert!(
            theirs[0].at > *began,
            "accept() of {local} before its connect() began"
        );
        assert_eq!(
            seq.last(),
            Some(&Step::Close),
            "server side of {local}: {seq:?}"
        );
        let middle = &seq[1..seq.len() - 1];
        assert!(
            middle.iter().all(|s| matches!(s, Step::Read | Step::Write)),
            "server side of {local}: {seq:?}"
        );
    }

    // Any other accept is shutdown's wake-up call, and the trace says so.
    for &a in &accepts {
        let peer = events[a].peer.expect("an accept names its peer");
        if connect_began.contains_key(&peer) {
            continue;
        }
        let labelled = events.iter().any(|e| {
            e.side == Side::Server
                && e.step == Step::Serve
                && e.peer == Some(peer)
                && e.detail.as_deref().is_some_and(|d| d.contains("wake-up"))
        });
        assert!(
            labelled,
            "accept() of {peer}, which is no client and not labelled the wake-up call"
        );
    }
    assert!(
        accepts.len() >= clients,
        "{} accepts for {clients} clients",
        accepts.len()
    );
}

#[test]
fn one_client_one_message_is_traced_in_lifecycle_order() {
    run_and_check_order(1, 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, ..ProptestConfig::default() })]

    #[test]
    fn every_run_is_traced_in_lifecycle_order(clients in 1usize..=6, messages in 0usize..=4) {
        run_and_check_order(clients, messages);
    }
}
