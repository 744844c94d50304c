//! The push hub over real loopback connections: everyone gets everything once,
//! in one order; a consumer that does not read is cut loose without holding
//! anyone up; every way a connection ends is cleaned up; the clock pushes on
//! its own; bad lines get their answers. Then properties of the hub alone.

mod common;

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, TIMEOUTS, any_port_v4, wait_until};
use proptest::prelude::*;
use sockstep::ErrorKind;
use sockstep::push::client::Client;
use sockstep::push::hub::{Hub, HubConfig, HubEvent, Kind, Leave, Member, MemberId, Next};
use sockstep::push::line::ServerLine;
use sockstep::push::serve::{self, PushServer};
use sockstep::tcp::{Timeouts, server};
use sockstep::trace::Trace;

/// A push server on an ephemeral loopback port.
fn start(config: HubConfig, timeouts: Timeouts) -> PushServer {
    let listening = server::socket(any_port_v4(), &Trace::off())
        .bind()
        .expect("bind 127.0.0.1:0")
        .listen(256);
    serve::serve(listening, Hub::new(config).expect("hub"), timeouts).expect("serve")
}

fn connect(push: &PushServer) -> Client {
    Client::connect(push.local_addr(), IO_TIMEOUT).expect("connect and HELLO")
}

/// This process's threads whose name (as the kernel keeps it: 15 bytes)
/// starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("read /proc/self/task");
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// The writer threads of the push server on `port` (named `push-PORT-ID`).
fn writers(push: &PushServer) -> usize {
    threads_named(&format!("push-{}-", push.local_addr().port()))
}

/// Keeps every hub event, for a test to look at.
fn record_events(push: &PushServer) -> Arc<Mutex<Vec<HubEvent>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let keep = events.clone();
    push.hub()
        .watch(move |e| keep.lock().expect("events").push(e.clone()));
    events
}

fn reason_of(events: &Mutex<Vec<HubEvent>>, member: u64) -> Option<Leave> {
    events.lock().expect("events").iter().find_map(|e| match e {
        HubEvent::Left { id, reason, .. } if id.0 == member => Some(reason.clone()),
        _ => None,
    })
}

/// Shuts `push` down and checks that every thread it started was joined.
fn shut_down_cleanly(push: PushServer) -> sockstep::push::serve::PushStats {
    let port = push.local_addr().port();
    let stats = push.shutdown();
    assert_eq!(
        stats.server.threads_started, stats.server.threads_joined,
        "{stats:?}"
    );
    assert_eq!(stats.server.threads_abandoned, 0, "{stats:?}");
    assert_eq!(stats.hub.members, 0, "{stats:?}");
    assert_eq!(
        threads_named(&format!("push-{port}-")),
        0,
        "writer threads left"
    );
    stats
}

// --- everyone gets everything ----------------------------------------------------

/// What one client heard: its member number, and every message as
/// (seq, from, publisher × EACH + index).
type Heard = (u64, Vec<(u64, u64, usize)>);

#[test]
fn a_hundred_clients_publishing_a_hundred_each_all_receive_every_message_once_in_one_order() {
    const CLIENTS: usize = 100;
    const EACH: usize = 100;
    const TOTAL: usize = CLIENTS * EACH;
    // Room for the whole burst in every queue: this test is about order and
    // completeness; slowness has its own test.
    let config = HubConfig {
        queue: TOTAL + EACH + 16,
        max_members: CLIENTS,
        tick: None,
    };
    // Once a client has published it only listens, sending nothing while ten
    // thousand lines come in: the idle timeout must outlast the whole burst.
    let listening_only = Timeouts {
        read: Some(Duration::from_secs(120)),
        write: Some(IO_TIMEOUT),
    };
    let push = start(config, listening_only);
    let events = record_events(&push);
    let addr = push.local_addr();
    let subscribed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let subscribed = subscribed.clone();
            thread::Builder::new()
                .name(format!("client-{i}"))
                .spawn(move || -> Result<Heard, String> {
                    let fail = |what: &str, e: sockstep::Error| format!("client {i}: {what}: {e}");
                    let mut c =
                        Client::connect(addr, IO_TIMEOUT).map_err(|e| fail("connect", e))?;
                    c.subscribe(IO_TIMEOUT).map_err(|e| fail("SUB", e))?;
                    // Nobody publishes before everyone listens, or some would miss the first.
                    subscribed.fetch_add(1, Ordering::SeqCst);
                    let all_in = wait_until(Duration::from_secs(60), || {
                        subscribed.load(Ordering::SeqCst) == CLIENTS
                    });
                    if !all_in {
                        return Err(format!("client {i}: not everyone subscribed"));
                    }
                    for j in 0..EACH {
                        c.publish(&format!("{i} {j}")).map_err(|e| fail("PUB", e))?;
                    }
                    let mut got = Vec::with_capacity(TOTAL);
                    while got.len() < TOTAL {
                        match c.next_published(IO_TIMEOUT).map_err(|e| fail("MSG", e))? {
                            Some(ServerLine::Msg { seq, from, text }) => {
                                let (publisher, j) = text
                                    .split_once(' ')
                                    .and_then(|(p, j)| {
                                        Some((p.parse::<usize>().ok()?, j.parse::<usize>().ok()?))
                                    })
                                    .ok_or_else(|| format!("client {i}: odd text {text:?}"))?;
                                got.push((seq, from, publisher * EACH + j));
                            }
                            other => return Err(format!("client {i}: got {other:?}")),
                        }
                    }
                    let id = c.id();
                    let rest = c.quit(IO_TIMEOUT).map_err(|e| fail("QUIT", e))?;
                    if rest.iter().any(|l| l.seq().is_some())
                        || rest.last() != Some(&ServerLine::Bye("quit".into()))
                    {
                        return Err(format!("client {i}: after the last message: {rest:?}"));
                    }
                    Ok((id, got))
                })
                .expect("spawn a client")
        })
        .collect();
    let results: Vec<Heard> = clients
        .into_iter()
        .map(|t| {
            t.join().expect("client thread").unwrap_or_else(|e| {
                let left: Vec<HubEvent> = events
                    .lock()
                    .expect("events")
                    .iter()
                    .filter(|e| matches!(e, HubEvent::Left { .. }))
                    .cloned()
                    .collect();
                panic!("{e}; members who left: {left:?}")
            })
        })
        .collect();
    let took = started.elapsed();

    // Which member each client was: its number is the `from` of its messages.
    let mut publisher_of = HashMap::new();
    for (i, (id, _)) in results.iter().enumerate() {
        assert!(publisher_of.insert(*id, i).is_none(), "member {id} twice");
    }
    let reference = &results[0].1;
    assert_eq!(reference.len(), TOTAL);
    // Every message exactly once, and each publisher's in the order published.
    let mut next_j = vec![0; CLIENTS];
    for &(_, from, n) in reference {
        let (publisher, j) = (n / EACH, n % EACH);
        assert_eq!(publisher_of[&from], publisher, "member {from} signed {n}");
        assert_eq!(next_j[publisher], j, "publisher {publisher} out of order");
        next_j[publisher] += 1;
    }
    assert!(next_j.iter().all(|&n| n == EACH));
    // One total order: numbered without a gap, and the same for everyone.
    let seqs: Vec<u64> = reference.iter().map(|m| m.0).collect();
    assert_eq!(seqs, (1..=TOTAL as u64).collect::<Vec<_>>());
    for (i, (_, got)) in results.iter().enumerate() {
        assert!(got == reference, "client {i} saw another order");
    }

    let stats = shut_down_cleanly(push);
    let hub = stats.hub;
    assert_eq!(hub.left.quit, CLIENTS as u64, "{hub:?}");
    assert_eq!(hub.published, TOTAL as u64);
    assert_eq!(hub.fanned_out, (TOTAL * CLIENTS) as u64);
    assert_eq!(hub.delivered, hub.fanned_out, "{hub:?}");
    assert_eq!(hub.dropped_slow + hub.discarded, 0, "{hub:?}");
    assert!(took < Duration::from_secs(100), "took {took:?}");
    eprintln!("100 x 100 over loopback: {took:?}");
}

// --- the slow consumer -----------------------------------------------------------

#[test]
fn a_client_that_never_reads_is_cut_loose_while_the_others_keep_receiving() {
    const QUEUE: usize = 64;
    /// More than a never-read socket's buffers and a queue can hold, with
    /// 3 KB messages, by far; the loop ends long before.
    const MOST: u64 = 20_000;
    let push = start(
        HubConfig {
            queue: QUEUE,
            ..HubConfig::default()
        },
        TIMEOUTS,
    );
    let events = record_events(&push);
    let mut slow = connect(&push);
    slow.subscribe(IO_TIMEOUT).expect("slow SUB");
    let mut good = connect(&push);
    good.subscribe(IO_TIMEOUT).expect("good SUB");
    let good_id = good.id();
    let mut publisher = connect(&push);

    // The good reader counts what it has, so the publisher can stay within its
    // queue: the test is that the slow one does not hold the good one up, not
    // that a reader can outrun any publisher.
    let received = Arc::new(AtomicU64::new(0));
    let reader = {
        let received = received.clone();
        thread::spawn(move || -> Result<(Vec<u64>, Client), sockstep::Error> {
            let mut seqs = Vec::new();
            loop {
                match good.next_published(IO_TIMEOUT)? {
                    Some(ServerLine::Msg { seq, text, .. }) => {
                        seqs.push(seq);
                        received.fetch_add(1, Ordering::SeqCst);
                        if text == "last" {
                            return Ok((seqs, good));
                        }
                    }
                    other => panic!("the good reader got {other:?}"),
                }
            }
        })
    };

    let text = "x".repeat(3_000);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut slowest_ack = Duration::ZERO;
    while sent < MOST && push.hub().stats().left.slow == 0 {
        let keeps_up = wait_until(IO_TIMEOUT, || {
            received.load(Ordering::SeqCst) + (QUEUE as u64) / 2 > sent
        });
        assert!(keeps_up, "the good reader stalled at {sent}");
        let asked = Instant::now();
        publisher.publish(&format!("{sent} {text}")).expect("PUB");
        publisher
            .expect(&ServerLine::Ok(format!("PUB {}", sent + 1)), IO_TIMEOUT)
            .expect("OK PUB");
        slowest_ack = slowest_ack.max(asked.elapsed());
        sent += 1;
    }
    let cut_after = started.elapsed();
    publisher.publish("last").expect("PUB last");
    let (seqs, _good) = reader.join().expect("reader").expect("the good reader");

    assert_eq!(
        reason_of(&events, slow.id()),
        Some(Leave::Slow { queue: QUEUE }),
        "after {sent} messages"
    );
    // The good reader got every message, none skipped, and was never cut.
    assert_eq!(seqs, (1..=sent + 1).collect::<Vec<_>>());
    assert_eq!(reason_of(&events, good_id), None);
    assert!(
        slowest_ack < Duration::from_secs(2),
        "a publish waited {slowest_ack:?} for an acknowledgement"
    );
    assert!(
        cut_after < Duration::from_secs(30),
        "cut after {cut_after:?}"
    );
    let stats = push.hub().stats();
    assert_eq!((stats.members, stats.left.slow), (2, 1), "{stats:?}");
    assert!(stats.dropped_slow >= 1, "{stats:?}");

    // What the slow client finds when it finally reads: what was in flight,
    // then the end — never a hang.
    let mut lines = 0u64;
    let end = loop {
        match slow.next(IO_TIMEOUT) {
            Ok(Some(_)) if lines < MOST + 10 => lines += 1,
            Ok(Some(line)) => panic!("still reading at {line:?}"),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    eprintln!(
        "slow consumer: cut after {sent} messages ({cut_after:?}); it read {lines} lines, then {:?}",
        end.as_ref().map(|e| e.summary())
    );
    if let Some(e) = end {
        assert!(
            matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::TruncatedFrame { .. }
            ),
            "{e}"
        );
    }
    shut_down_cleanly(push);
}

#[test]
fn a_client_sending_a_burst_before_reading_is_slowed_not_cut() {
    const QUEUE: usize = 8;
    const BURST: u64 = 500;
    let push = start(
        HubConfig {
            queue: QUEUE,
            ..HubConfig::default()
        },
        TIMEOUTS,
    );
    let mut c = connect(&push);
    c.subscribe(IO_TIMEOUT).unwrap();
    // Five hundred commands in one write, each answered twice (MSG and
    // OK PUB): far more than its queue of 8 holds, unless the server stops
    // reading commands while the answers wait.
    let burst: String = (1..=BURST).map(|i| format!("PUB {i}\n")).collect();
    c.connection()
        .stream()
        .write_all(burst.as_bytes())
        .expect("write the burst");
    for i in 1..=BURST {
        let msg = c.next(IO_TIMEOUT).unwrap();
        let ack = c.next(IO_TIMEOUT).unwrap();
        assert_eq!(
            (msg, ack),
            (
                Some(ServerLine::Msg {
                    seq: i,
                    from: 1,
                    text: i.to_string()
                }),
                Some(ServerLine::Ok(format!("PUB {i}")))
            )
        );
    }
    let stats = push.hub().stats();
    assert_eq!((stats.members, stats.left.slow), (1, 0), "{stats:?}");
    shut_down_cleanly(push);
}

// --- every way to leave ----------------------------------------------------------

/// Waits until `push` has no member and no writer thread, and returns how many
/// left for each reason.
fn settled(push: &PushServer) -> sockstep::push::hub::Left {
    let gone = wait_until(IO_TIMEOUT, || {
        push.hub().stats().members == 0 && writers(push) == 0
    });
    assert!(
        gone,
        "{:?}, {} writer threads",
        push.hub().stats(),
        writers(push)
    );
    push.hub().stats().left
}

/// Reads until the server closes; returns the lines.
fn read_to_end(client: &mut Client) -> Vec<ServerLine> {
    let mut lines = Vec::new();
    for _ in 0..1_000 {
        match client.next(IO_TIMEOUT) {
            Ok(Some(line)) => lines.push(line),
            Ok(None) => return lines,
            Err(e) => panic!("after {lines:?}: {e}"),
        }
    }
    panic!("no end after {lines:?}");
}

#[test]
fn quit_flushes_what_was_queued_then_says_bye() {
    let push = start(HubConfig::default(), TIMEOUTS);
    let mut c = connect(&push);
    c.subscribe(IO_TIMEOUT).unwrap();
    c.publish("one").unwrap();
    let lines = c.quit(IO_TIMEOUT).unwrap();
    assert_eq!(
        lines,
        [
            ServerLine::Msg {
                seq: 1,
                from: 1,
                text: "one".into()
            },
            ServerLine::Ok("PUB 1".into()),
            ServerLine::Bye("quit".into()),
        ]
    );
    assert_eq!(settled(&push).quit, 1);
    shut_down_cleanly(push);
}

#[test]
fn a_half_close_gets_the_rest_and_bye_end_of_stream() {
    let push = start(HubConfig::default(), TIMEOUTS);
    let mut c = connect(&push);
    c.subscribe(IO_TIMEOUT).unwrap();
    c.publish("last words").unwrap();
    c.publisher().shutdown_write().unwrap();
    let lines = read_to_end(&mut c);
    assert_eq!(
        lines.last(),
        Some(&ServerLine::Bye("end of stream".into())),
        "{lines:?}"
    );
    assert!(lines.contains(&ServerLine::Msg {
        seq: 1,
        from: 1,
        text: "last words".into()
    }));
    assert_eq!(settled(&push).eof, 1);
    shut_down_cleanly(push);
}

#[test]
fn a_client_that_closes_is_an_end_of_stream() {
    let push = start(HubConfig::default(), TIMEOUTS);
    let mut c = connect(&push);
    c.subscribe(IO_TIMEOUT).unwrap();
    drop(c);
    assert_eq!(settled(&push).eof, 1);
    shut_down_cleanly(push);
}

#[test]
fn a_client_dropped_with_unread_messages_resets_and_is_cleaned_up() {
    let push = start(HubConfig::default(), TIMEOUTS);
    let mut c = connect(&push);
    c.subscribe(IO_TIMEOUT).unwrap();
    for i in 0..3 {
        push.hub().announce(&format!("unread {i}"));
    }
    // Let them reach the client's socket, unread: closing it now makes its
    // kernel answer with RST instead of FIN.
    assert!(wait_until(IO_TIMEOUT, || push.hub().stats().delivered == 3));
    thread::sleep(Duration::from_millis(50));
    drop(c);
    let left = settled(&push);
    assert_eq!((left.reset, left.total()), (1, 1), "{left:?}");
    shut_down_cleanly(push);
}

#[test]
fn a_silent_client_is_told_it_timed_out() {
    let idle = Timeouts {
        read: Some(Duration::from_millis(200)),
        write: Some(IO_TIMEOUT),
    };
    let push = start(HubConfig::default(), idle);
    let mut c = connect(&push);
    assert_eq!(read_to_end(&mut c), [ServerLine::Bye("timed out".into())]);
    assert_eq!(settled(&push).timeout, 1);
    shut_down_cleanly(push);
}

#[test]
fn server_shutdown_says_bye_to_everyone_and_joins_every_thread() {
    let push = start(
        HubConfig {
            tick: Some(Duration::from_millis(10)),
            ..HubConfig::default()
        },
        TIMEOUTS,
    );
    let mut clients: Vec<Client> = (0..5).map(|_| connect(&push)).collect();
    for c in &mut clients {
        c.subscribe(IO_TIMEOUT).unwrap();
    }
    assert_eq!(writers(&push), 5);
    let stats = shut_down_cleanly(push);
    assert_eq!(stats.hub.left.shutdown, 5, "{stats:?}");
    for c in &mut clients {
        let lines = read_to_end(c);
        assert_eq!(
            lines.last(),
            Some(&ServerLine::Bye("server shutting down".into())),
            "{lines:?}"
        );
    }
}

// --- the server speaks first ------------------------------------------------------

#[test]
fn ticks_arrive_on_their_own() {
    let push = start(
        HubConfig {
            tick: Some(Duration::from_millis(20)),
            ..HubConfig::default()
        },
        TIMEOUTS,
    );
    let mut c = connect(&push);
    c.subscribe(IO_TIMEOUT).unwrap();
    let mut last = (0, 0);
    for _ in 0..3 {
        match c.next_published(IO_TIMEOUT).unwrap() {
            Some(ServerLine::Tick { seq, unix_ms }) => {
                assert!(
                    seq > last.0 && unix_ms >= last.1,
                    "{seq} {unix_ms} after {last:?}"
                );
                // After 2020: a wall clock, in milliseconds.
                assert!(unix_ms > 1_577_836_800_000, "{unix_ms}");
                last = (seq, unix_ms);
            }
            other => panic!("{other:?}"),
        }
    }
    shut_down_cleanly(push);
}

// --- bad lines --------------------------------------------------------------------

#[test]
fn unknown_commands_get_err_and_the_connection_goes_on() {
    let push = start(HubConfig::default(), TIMEOUTS);
    let mut c = connect(&push);
    for (line, answer) in [
        ("FROB", "ERR unknown command 'FROB'; try HELP"),
        ("PUB", "ERR PUB needs a text: PUB <text>"),
        ("SUB please", "ERR SUB takes nothing after it"),
        ("ping 7", "PONG 7"),
        ("", "PONG after the empty line"),
    ] {
        if line.is_empty() {
            c.send_line("").unwrap();
            c.send_line("PING after the empty line").unwrap();
        } else {
            c.send_line(line).unwrap();
        }
        let got = c.next(IO_TIMEOUT).unwrap().expect("an answer");
        assert_eq!(got.to_string(), answer);
    }
    assert_eq!(push.hub().stats().members, 1);
    shut_down_cleanly(push);
}

#[test]
fn a_line_over_the_limit_gets_bye_and_the_connection_closes() {
    let push = start(HubConfig::default(), TIMEOUTS);
    let mut c = connect(&push);
    let mut long = "PUB ".to_string() + &"y".repeat(5_000);
    long.push('\n');
    c.connection()
        .stream()
        .write_all(long.as_bytes())
        .expect("write a long line");
    assert_eq!(
        read_to_end(&mut c),
        [ServerLine::Bye("line longer than 4096 bytes".into())]
    );
    assert_eq!(settled(&push).error, 1);
    assert_eq!(push.hub().stats().published, 0);
    shut_down_cleanly(push);
}

#[test]
fn a_full_hub_says_so_and_counts_the_refusal() {
    let push = start(
        HubConfig {
            max_members: 2,
            ..HubConfig::default()
        },
        TIMEOUTS,
    );
    let _in = (connect(&push), connect(&push));
    let e = Client::connect(push.local_addr(), IO_TIMEOUT).expect_err("a third");
    assert_eq!(
        e.kind(),
        &ErrorKind::RefusedByServer("hub full (2 members)".into())
    );
    assert_eq!(push.hub().stats().refused, 1);
    drop(_in);
    shut_down_cleanly(push);
}

// --- the hub alone, as properties ------------------------------------------------

/// One step of a hub's life. Member indices wrap around the members joined so far.
#[derive(Debug, Clone)]
enum Op {
    Join,
    Sub(usize),
    Unsub(usize),
    Publish(usize),
    Announce,
    Reply(usize),
    Take(usize),
    Leave(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Join),
        2 => any::<usize>().prop_map(Op::Sub),
        1 => any::<usize>().prop_map(Op::Unsub),
        4 => any::<usize>().prop_map(Op::Publish),
        1 => Just(Op::Announce),
        1 => any::<usize>().prop_map(Op::Reply),
        4 => any::<usize>().prop_map(Op::Take),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, quit)| Op::Leave(i, quit)),
    ]
}

/// What a member should have, worked out the plain way.
#[derive(Debug, Default)]
struct Model {
    subscribed: bool,
    queue: VecDeque<(u64, Kind, Option<u64>, String)>,
    left: Option<Leave>,
}

/// The model hub: the same rules as `Hub`, without locks or threads.
struct ModelHub {
    capacity: usize,
    seq: u64,
    members: Vec<Model>,
}

impl ModelHub {
    fn cut(&mut self, i: usize, reason: Leave) {
        let m = &mut self.members[i];
        if !reason.is_voluntary() {
            m.queue.clear();
        }
        m.left = Some(reason);
    }

    fn reply(&mut self, i: usize, text: &str) -> bool {
        if self.members[i].left.is_some() {
            return false;
        }
        if self.members[i].queue.len() < self.capacity {
            let seq = self.seq;
            self.members[i]
                .queue
                .push_back((seq, Kind::Reply, None, text.into()));
            true
        } else {
            self.cut(
                i,
                Leave::Slow {
                    queue: self.capacity,
                },
            );
            false
        }
    }

    fn publish(&mut self, kind: Kind, from: Option<u64>, text: &str) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        let mut full = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            if m.left.is_none() && m.subscribed {
                if m.queue.len() < self.capacity {
                    m.queue.push_back((seq, kind, from, text.into()));
                } else {
                    full.push(i);
                }
            }
        }
        for i in full {
            self.cut(
                i,
                Leave::Slow {
                    queue: self.capacity,
                },
            );
        }
        seq
    }
}

fn as_tuple(m: &sockstep::push::hub::Message) -> (u64, Kind, Option<u64>, String) {
    (m.seq, m.kind, m.from.map(|id| id.0), m.text.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any interleaving of joins, subscriptions, publishes, replies, takes and
    /// leaves does exactly what the plain model says, message for message, and
    /// every copy is accounted for at the end.
    #[test]
    fn the_hub_does_what_the_model_says(
        capacity in 1usize..6,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let hub = Hub::new(HubConfig { queue: capacity, ..HubConfig::default() }).unwrap();
        let mut model = ModelHub { capacity, seq: 0, members: Vec::new() };
        let mut members: Vec<Member> = Vec::new();
        let mut n = 0;
        for op in ops {
            let pick = |i: usize| i % members.len().max(1);
            match op {
                Op::Join => {
                    n += 1;
                    let m = hub.join(&format!("m{n}")).unwrap();
                    prop_assert_eq!(m.id(), MemberId(n));
                    members.push(m);
                    model.members.push(Model::default());
                }
                _ if members.is_empty() => {}
                Op::Sub(i) | Op::Unsub(i) => {
                    let (i, on) = (pick(i), matches!(op, Op::Sub(_)));
                    let got = if on { members[i].subscribe("ack") } else { members[i].unsubscribe("ack") };
                    if model.members[i].left.is_none() {
                        model.members[i].subscribed = on;
                    }
                    prop_assert_eq!(got, model.reply(i, "ack"));
                }
                Op::Publish(i) => {
                    let i = pick(i);
                    let text = format!("from {i} #{}", model.seq + 1);
                    let got = members[i].publish(&text);
                    let want = model.members[i].left.is_none()
                        .then(|| model.publish(Kind::Msg, Some(i as u64 + 1), &text));
                    prop_assert_eq!(got, want);
                }
                Op::Announce => {
                    let text = format!("announce #{}", model.seq + 1);
                    prop_assert_eq!(hub.announce(&text), model.publish(Kind::System, None, &text));
                }
                Op::Reply(i) => {
                    let i = pick(i);
                    prop_assert_eq!(members[i].reply("pong"), model.reply(i, "pong"));
                }
                Op::Take(i) => {
                    let i = pick(i);
                    let got = members[i].try_next().map(|m| as_tuple(&m));
                    prop_assert_eq!(got, model.members[i].queue.pop_front());
                }
                Op::Leave(i, quit) => {
                    let i = pick(i);
                    let reason = if quit { Leave::Quit } else { Leave::Reset };
                    let first = model.members[i].left.is_none();
                    prop_assert_eq!(members[i].leave(reason.clone()), first);
                    if first {
                        model.cut(i, reason);
                    }
                }
            }
            for (m, want) in members.iter().zip(&model.members) {
                prop_assert_eq!(m.left(), want.left.clone());
            }
        }
        // Everyone's remaining queue, then the end.
        for (m, want) in members.iter().zip(&mut model.members) {
            while let Some(expected) = want.queue.pop_front() {
                match m.next(Duration::ZERO) {
                    Next::Message(got) => prop_assert_eq!(as_tuple(&got), expected),
                    other => prop_assert!(false, "{:?} instead of {:?}", other, expected),
                }
            }
            let end = match &want.left {
                Some(reason) => Next::Closed(reason.clone()),
                None => Next::Idle,
            };
            prop_assert_eq!(m.next(Duration::ZERO), end);
        }
        let live = model.members.iter().filter(|m| m.left.is_none()).count();
        prop_assert_eq!(hub.stats().members, live);
        drop(members);
        let stats = hub.shutdown();
        prop_assert_eq!(stats.members, 0);
        prop_assert_eq!(stats.left.total(), stats.joined);
        prop_assert_eq!(
            stats.fanned_out,
            stats.delivered + stats.dropped_slow + stats.discarded,
            "{:?}", stats
        );
    }

    /// Publishers on threads of their own, racing: every subscriber sees the
    /// same sequence, numbered without a gap, with each publisher's messages
    /// in the order it published them.
    #[test]
    fn concurrent_publishers_give_every_subscriber_one_order(
        publishers in 1usize..6,
        each in 1usize..60,
        subscribers in 1usize..5,
    ) {
        let hub = Hub::new(HubConfig { queue: publishers * each + 1, ..HubConfig::default() }).unwrap();
        let readers: Vec<Member> = (0..subscribers)
            .map(|i| {
                let m = hub.join(&format!("reader {i}")).unwrap();
                m.subscribe("ack");
                m
            })
            .collect();
        let threads: Vec<_> = (0..publishers)
            .map(|p| {
                let me = hub.join(&format!("publisher {p}")).unwrap();
                thread::spawn(move || {
                    for j in 0..each {
                        me.publish(&format!("{p} {j}")).expect("still in");
                    }
                    me.id()
                })
            })
            .collect();
        let ids: Vec<MemberId> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let mut reference = None;
        for reader in &readers {
            let seen: Vec<(u64, Option<MemberId>, String)> = std::iter::from_fn(|| reader.try_next())
                .filter(|m| m.kind == Kind::Msg)
                .map(|m| (m.seq, m.from, m.text.to_string()))
                .collect();
            prop_assert_eq!(seen.len(), publishers * each);
            let seqs: Vec<u64> = seen.iter().map(|m| m.0).collect();
            prop_assert_eq!(seqs, (1..=(publishers * each) as u64).collect::<Vec<_>>());
            let mut next = vec![0; publishers];
            for (_, from, text) in &seen {
                let (p, j) = text.split_once(' ').unwrap();
                let (p, j): (usize, usize) = (p.parse().unwrap(), j.parse().unwrap());
                prop_assert_eq!(*from, Some(ids[p]));
                prop_assert_eq!(j, next[p]);
                next[p] += 1;
            }
            match &reference {
                None => reference = Some(seen),
                Some(r) => prop_assert_eq!(r, &seen),
            }
        }
    }
}
