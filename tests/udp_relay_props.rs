//! The relay loses, duplicates, reorders and delays datagrams — and does
//! nothing else.
//!
//! These properties send numbered datagrams through a real [`Relay`] on
//! loopback, with fault rates and seeds chosen by proptest, and check what
//! arrives at the far end:
//!
//! - every datagram that arrives is one that was sent, byte for byte (its
//!   payload is a function of its number and size, so the receiver can rebuild
//!   what it must be);
//! - each arrives exactly as many times as the fault engine decided — never
//!   more than twice per direction — which a [`Faults`] engine with the same
//!   config, run here without sockets, predicts datagram by datagram;
//! - the relay's counts agree with what arrived;
//! - with no faults, the received sequence is the sent one, in order;
//! - the same seed loses the same datagrams, through two different relays.
//!
//! # Not confusing our loss with the kernel's
//!
//! A UDP receiver that falls behind loses datagrams to its own full receive
//! buffer, silently, like any other loss (FACTS.md: 256 of 2,000 arrived from a
//! burst with nothing else dropping them). Here every receiver reads on a
//! thread of its own and the sender is paced ([`PACE`]), so this is rare — but
//! on a loaded two-core machine a receiving thread can be kept off the CPU
//! long enough for its buffer (208 KiB by default) to fill. Such losses are not
//! the relay's, and the tests count them apart: Linux reports, per socket, how
//! many datagrams it dropped on arrival (the `drops` column of
//! `/proc/net/udp`), and the properties check that
//!
//! ```text
//! copies the relay sent == copies that arrived + copies the receiving kernel dropped
//! ```
//!
//! and that each datagram arrived as often as decided, short by exactly the
//! kernel's count. When the kernel drops at the *relay's* own sockets, the
//! relay's engine sees a different sequence from the one sent and nothing
//! exact can be predicted: such a case is rejected (proptest tries another),
//! not failed.
//!
//! Every socket has a read timeout and every wait is bounded, so a bug fails a
//! case in seconds instead of hanging `cargo test`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use sockstep::Side;
use sockstep::trace::Trace;
use sockstep::udp::faults::{Fate, FaultConfig, Faults, GilbertElliott};
use sockstep::udp::relay::{Direction, Relay, RelayCounts};
use sockstep::udp::socket::{self, Bound};

/// Time between two sends: slow enough that a receiver that keeps reading
/// never lets its buffer fill, fast enough that a case sends its datagrams in
/// a few tens of milliseconds.
const PACE: Duration = Duration::from_micros(200);

/// Read timeout of every test socket: how often a reader checks whether to stop.
const READ_TIMEOUT: Duration = Duration::from_millis(20);

/// The longest a case waits for the relay to pass everything on before it fails.
const SETTLE: Duration = Duration::from_secs(5);

/// How long the relay may sit with nothing held and no count moving before a
/// case that is still waiting for datagrams gives up on them.
const QUIET: Duration = Duration::from_secs(2);

/// Bytes at the front of every test datagram: which client (u32), which number (u32).
const HEADER: usize = 8;

// --- datagrams that say what they must be ------------------------------------

/// Datagram `n` of client `client`, `len` bytes long (at least [`HEADER`]): the
/// header, then bytes that depend on all three, so a datagram cut, merged,
/// corrupted or mixed up with another is caught.
fn datagram(client: u32, n: u32, len: usize) -> Vec<u8> {
    let mut d = Vec::with_capacity(len);
    d.extend_from_slice(&client.to_be_bytes());
    d.extend_from_slice(&n.to_be_bytes());
    let salt = (client as usize) * 7_919 + (n as usize) * 131 + len;
    d.extend((HEADER..len).map(|i| (salt + i * 7 + (i >> 8)) as u8));
    d
}

/// Client and number from a datagram's header, if it has one.
fn header(d: &[u8]) -> Option<(u32, u32)> {
    let client = u32::from_be_bytes(d.get(0..4)?.try_into().ok()?);
    let n = u32::from_be_bytes(d.get(4..8)?.try_into().ok()?);
    Some((client, n))
}

/// Checks that `d` is exactly datagram `n` of `client` from `sizes`; returns `n`.
fn identify(d: &[u8], client: u32, sizes: &[usize]) -> Result<usize, TestCaseError> {
    let Some((c, n)) = header(d) else {
        return Err(TestCaseError::fail(format!(
            "a {}-byte datagram too short to be one of ours",
            d.len()
        )));
    };
    prop_assert_eq!(c, client, "a datagram of another client");
    let n = n as usize;
    prop_assert!(n < sizes.len(), "number {} was never sent", n);
    prop_assert!(
        d == datagram(client, n as u32, sizes[n]).as_slice(),
        "datagram {} arrived altered ({} bytes, sent {})",
        n,
        d.len(),
        sizes[n]
    );
    Ok(n)
}

/// Mostly small datagrams, some of a few kilobytes.
fn sizes(count: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<usize>> {
    vec(
        prop_oneof![4 => HEADER..=1_400usize, 1 => 1_400..=6_000usize],
        count,
    )
}

// --- sockets around the relay ------------------------------------------------

/// A socket on loopback that records every datagram it receives, on a thread
/// of its own, and (if `echo`) sends each straight back to its sender.
struct Peer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Peer {
    fn start(echo: bool) -> Peer {
        let socket = bound();
        Peer::reading(socket, echo)
    }

    /// Records on `socket`, which someone else may also be sending from.
    fn reading(socket: Bound, echo: bool) -> Peer {
        let addr = socket.local_addr();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                // Bounded even if nobody ever sets `stop`.
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue; // a read timeout: check whether to stop
                    };
                    seen.lock().unwrap().push(buf[..n].to_vec());
                    if echo {
                        socket.send_to(&buf[..n], from).expect("echo");
                    }
                }
            })
        };
        Peer {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> u64 {
        self.seen.lock().unwrap().len() as u64
    }

    /// Stops reading (after whatever is already in the socket's buffer) and
    /// returns everything received, in arrival order.
    fn finish(mut self) -> Vec<Vec<u8>> {
        // Anything the relay has sent is already in our receive buffer (loopback
        // delivers inside sendto); the reader takes it before its next timeout.
        thread::sleep(READ_TIMEOUT);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("reader thread");
        }
        std::mem::take(&mut self.seen.lock().unwrap())
    }
}

fn bound() -> Bound {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let socket = socket::socket(any, Side::Client, &Trace::off())
        .bind()
        .expect("bind 127.0.0.1:0");
    socket
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("read timeout");
    socket
}

/// Sends datagrams `0..sizes.len()` of `client` to `to`, paced.
fn send_all(from: &Bound, client: u32, sizes: &[usize], to: SocketAddr) {
    for (n, &len) in sizes.iter().enumerate() {
        from.send_to(&datagram(client, n as u32, len), to)
            .expect("send_to the relay");
        thread::sleep(PACE);
    }
}

/// Datagrams the kernel threw away on arrival at the UDP sockets of this
/// host for which `which(local port, remote port)` holds (mostly: receive
/// buffer full), from the `drops` column of `/proc/net/udp`. Zero where there is
/// no such file. A socket's line goes when it closes, so read this before.
fn kernel_drops(which: impl Fn(u16, u16) -> bool) -> u64 {
    let Ok(table) = std::fs::read_to_string("/proc/net/udp") else {
        return 0;
    };
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote) = (port(fields.get(1)?)?, port(fields.get(2)?)?);
            let drops: u64 = fields.last()?.parse().ok()?;
            which(local, remote).then_some(drops)
        })
        .sum()
}

/// The ports of one case, to tell the kernel's losses from the relay's.
struct Ports {
    relay: u16,
    upstream: u16,
    clients: Vec<u16>,
}

impl Ports {
    fn new(relay: &Relay, upstream: &Peer, clients: &[&Bound]) -> Ports {
        Ports {
            relay: relay.local_addr().port(),
            upstream: upstream.addr.port(),
            clients: clients.iter().map(|c| c.local_addr().port()).collect(),
        }
    }
}

/// Where the relay's copies ended up, per direction: arrived at the receiver,
/// or dropped by the receiver's kernel. Plus what the kernel dropped at the
/// relay's own sockets (its listening socket, and its upstream sockets, which
/// are the ones connected to the upstream's port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Arrivals {
    at_upstream: u64,
    dropped_at_upstream: u64,
    at_client: u64,
    dropped_at_client: u64,
    dropped_at_relay: u64,
}

impl Arrivals {
    fn read(ports: &Ports, at_upstream: u64, at_client: u64) -> Arrivals {
        Arrivals {
            at_upstream,
            dropped_at_upstream: kernel_drops(|local, _| local == ports.upstream),
            at_client,
            dropped_at_client: kernel_drops(|local, _| ports.clients.contains(&local)),
            dropped_at_relay: kernel_drops(|local, remote| {
                local == ports.relay || remote == ports.upstream
            }),
        }
    }

    /// Copies accounted for at the receiving end of `d`.
    fn placed(&self, d: Direction) -> u64 {
        match d {
            Direction::ClientToUpstream => self.at_upstream + self.dropped_at_upstream,
            Direction::UpstreamToClient => self.at_client + self.dropped_at_client,
        }
    }
}

/// Waits until the relay has passed everything on: `expect` holds, nothing is
/// held, every copy is accounted for, and each receiver has received (or its
/// kernel dropped) every copy the relay sent it; returns the arrivals then.
///
/// Fails the case at once when something is impossible — a direction that
/// placed more copies than its engine decided on, or a receiver with more
/// than that — and gives up when nothing has moved for [`QUIET`] with nothing
/// held, or after [`SETTLE`]. Rejects the case if the kernel dropped datagrams
/// at the relay's own sockets (see the module docs).
///
/// `received()` is read before the relay's counts: a copy is decided, then
/// sent, then received, so arrivals read first can never exceed the decisions
/// read after (though they may run ahead of `sent`, which is counted once the
/// send returns).
fn settle(
    relay: &Relay,
    ports: &Ports,
    received: impl Fn() -> (u64, u64),
    expect: impl Fn(&RelayCounts, &Arrivals) -> bool,
) -> Result<Arrivals, TestCaseError> {
    let deadline = Instant::now() + SETTLE;
    let mut last: Option<(Arrivals, RelayCounts, Instant)> = None;
    loop {
        let (at_upstream, at_client) = received();
        let arrived = Arrivals::read(ports, at_upstream, at_client);
        let counts = relay.counts();
        let fail = |why: String| {
            Err(TestCaseError::fail(format!(
                "{why}; {arrived:?}, relay {counts:#?}"
            )))
        };
        if arrived.dropped_at_relay > 0 {
            return Err(TestCaseError::reject(format!(
                "the kernel dropped {} datagrams at the relay's own sockets (a starved \
                 relay thread on a loaded machine), so its engine saw another sequence",
                arrived.dropped_at_relay
            )));
        }
        for d in Direction::BOTH {
            let c = counts.direction(d);
            let placed = c.sent + c.send_errors + c.overflowed + c.held + c.discarded_at_shutdown;
            if placed.max(arrived.placed(d)) > c.faults.copies() {
                return fail(format!(
                    "{d}: the relay placed {placed} copies and {} reached the receiver, \
                     but its engine decided on {}",
                    arrived.placed(d),
                    c.faults.copies()
                ));
            }
        }
        let settled = expect(&counts, &arrived)
            && Direction::BOTH.into_iter().all(|d| {
                let c = counts.direction(d);
                c.held == 0 && c.all_copies_accounted_for() && arrived.placed(d) == c.sent
            });
        if settled {
            return Ok(arrived);
        }
        match &last {
            Some((a, c, _)) if (*a, *c) == (arrived, counts) => {}
            _ => last = Some((arrived, counts, Instant::now())),
        }
        let nothing_held = Direction::BOTH
            .iter()
            .all(|&d| counts.direction(d).held == 0);
        if nothing_held && last.as_ref().is_some_and(|(_, _, at)| at.elapsed() > QUIET) {
            return fail(format!(
                "nothing moved for {QUIET:?} and it has not settled"
            ));
        }
        if Instant::now() > deadline {
            return fail(format!("not settled within {SETTLE:?}"));
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Checks that `got[n] <= expected[n]` for every datagram and that together
/// they fall short by exactly `dropped`, the copies the receiving kernel
/// dropped; with nothing dropped, that is `got == expected`.
fn as_decided(
    what: &str,
    got: &[usize],
    expected: &[usize],
    dropped: u64,
) -> Result<(), TestCaseError> {
    if dropped == 0 {
        prop_assert_eq!(got, expected, "copies per datagram at the {}", what);
        return Ok(());
    }
    for (n, (&g, &e)) in got.iter().zip(expected).enumerate() {
        prop_assert!(
            g <= e,
            "datagram {} arrived {} times at the {}, decided {}",
            n,
            g,
            what,
            e
        );
    }
    let short: usize = expected.iter().sum::<usize>() - got.iter().sum::<usize>();
    prop_assert_eq!(
        short as u64,
        dropped,
        "short at the {} by other than its kernel's drops",
        what
    );
    Ok(())
}

/// Whether `got` is `expected` with some elements left out, in the same order.
fn is_subsequence(got: &[Vec<u8>], expected: &[Vec<u8>]) -> bool {
    let mut rest = expected.iter();
    got.iter().all(|g| rest.any(|e| e == g))
}

/// How many copies of each datagram `config` sends, decided in order without
/// sockets: what the relay's engine must decide for the same arrivals.
fn predicted_copies(config: &FaultConfig, count: usize) -> Vec<usize> {
    let mut engine = Faults::new(config.clone()).expect("valid config");
    (0..count).map(|_| engine.decide().copies()).collect()
}

fn tally(numbers: impl IntoIterator<Item = usize>, count: usize) -> Vec<usize> {
    let mut times = vec![0; count];
    for n in numbers {
        times[n] += 1;
    }
    times
}

// --- fault configs -----------------------------------------------------------

fn faults() -> impl Strategy<Value = FaultConfig> {
    let rate = 0.0..=0.5f64;
    let small = (0u64..=5_000).prop_map(Duration::from_micros);
    let burst = proptest::option::weighted(
        0.25,
        (0.0..=0.2f64, 0.2..=1.0f64).prop_map(|(p, r)| GilbertElliott::simple(p, r)),
    );
    (
        any::<u64>(),
        rate.clone(),
        rate.clone(),
        rate,
        small.clone(),
        small,
        burst,
    )
        .prop_map(
            |(seed, loss, duplicate, reorder, delay, jitter, burst)| FaultConfig {
                loss,
                duplicate,
                reorder,
                delay,
                jitter,
                burst,
                seed,
            },
        )
}

/// Sends `sizes` from one client through a new relay with `config` on the way
/// to the upstream and none back, to a recording upstream; returns what the
/// upstream received, the copies its kernel dropped, and the relay's final counts.
fn one_way(
    config: &FaultConfig,
    sizes: &[usize],
) -> Result<(Vec<Vec<u8>>, u64, RelayCounts), TestCaseError> {
    let upstream = Peer::start(false);
    let relay = Relay::start(
        "127.0.0.1:0".parse().unwrap(),
        upstream.addr,
        config.clone(),
        FaultConfig::default(),
        &Trace::off(),
    )
    .expect("start the relay");
    let client = bound();
    let ports = Ports::new(&relay, &upstream, &[&client]);
    send_all(&client, 0, sizes, relay.local_addr());
    let sent = sizes.len() as u64;
    let arrived = settle(
        &relay,
        &ports,
        || (upstream.count(), 0),
        |c, _| c.client_to_upstream.faults.received == sent,
    )?;
    let counts = relay.shutdown();
    Ok((upstream.finish(), arrived.dropped_at_upstream, counts))
}

// --- the properties ----------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Both ways through the relay, to an upstream that echoes: every arrival,
    /// at the upstream and back at the client, is a datagram that was sent,
    /// whole, and arrives exactly as many times as the two engines decided.
    #[test]
    fn every_arrival_was_sent_whole_and_as_often_as_the_engines_decided(
        there in faults(),
        back in faults(),
        sizes in sizes(1..=80),
    ) {
        let count = sizes.len();
        let upstream = Peer::start(true);
        let relay = Relay::start(
            "127.0.0.1:0".parse().unwrap(),
            upstream.addr,
            there.clone(),
            back.clone(),
            &Trace::off(),
        )
        .expect("start the relay");
        let client = bound();
        let client_reader = Peer::reading(client.try_clone().expect("clone"), false);
        let ports = Ports::new(&relay, &upstream, &[&client]);
        send_all(&client, 0, &sizes, relay.local_addr());
        let arrived = settle(
            &relay,
            &ports,
            || (upstream.count(), client_reader.count()),
            // Every datagram sent reached the relay, and every one the upstream
            // received, and so echoed, came back to it.
            |c, a| {
                c.client_to_upstream.faults.received == count as u64
                    && c.upstream_to_client.faults.received == a.at_upstream
            },
        )?;
        let counts = relay.shutdown();
        let at_upstream = upstream.finish();
        let at_client = client_reader.finish();

        // Whole, and ours.
        let up_numbers = at_upstream
            .iter()
            .map(|d| identify(d, 0, &sizes))
            .collect::<Result<Vec<_>, _>>()?;
        let client_numbers = at_client
            .iter()
            .map(|d| identify(d, 0, &sizes))
            .collect::<Result<Vec<_>, _>>()?;

        // As often as decided: the way there in the order sent; the way back in
        // the order the upstream echoed, which is the order it received.
        let up_times = tally(up_numbers.iter().copied(), count);
        prop_assert!(up_times.iter().all(|&t| t <= 2), "more than 1 + 1 duplicate");
        as_decided("upstream", &up_times, &predicted_copies(&there, count), arrived.dropped_at_upstream)?;
        let back_copies = predicted_copies(&back, up_numbers.len());
        let mut expected_back = vec![0; count];
        for (k, &n) in up_numbers.iter().enumerate() {
            expected_back[n] += back_copies[k];
        }
        let client_times = tally(client_numbers.iter().copied(), count);
        prop_assert!(client_times.iter().all(|&t| t <= 4), "more than 2 × 2 copies");
        as_decided("client", &client_times, &expected_back, arrived.dropped_at_client)?;

        // The counts agree with what arrived, and nothing was lost elsewhere.
        for d in Direction::BOTH {
            let dc = counts.direction(d);
            prop_assert!(dc.all_copies_accounted_for(), "{}: {:?}", d, dc);
            prop_assert_eq!(dc.send_errors + dc.overflowed + dc.discarded_at_shutdown, 0);
            prop_assert_eq!(dc.faults.received, dc.faults.forwarded + dc.faults.dropped);
        }
        let (t, b) = (&counts.client_to_upstream, &counts.upstream_to_client);
        prop_assert_eq!(
            t.faults.forwarded + t.faults.duplicated,
            at_upstream.len() as u64 + arrived.dropped_at_upstream
        );
        prop_assert_eq!(
            b.faults.forwarded + b.faults.duplicated,
            at_client.len() as u64 + arrived.dropped_at_client
        );
        prop_assert_eq!(t.faults.received, count as u64);
        prop_assert_eq!(b.faults.received, at_upstream.len() as u64);
        prop_assert_eq!(counts.clients, 1);

        // Without reordering or jitter every copy is held the same time, so the
        // order is kept (a duplicate's copies arrive side by side).
        if there.reorder == 0.0 && there.jitter.is_zero() && arrived.dropped_at_upstream == 0 {
            prop_assert!(up_numbers.is_sorted(), "order changed: {:?}", up_numbers);
        }
    }

    /// The same seed loses, duplicates and delays the same datagrams — through
    /// two different relays, and as an engine without sockets predicts.
    #[test]
    fn the_same_seed_drops_the_same_datagrams_through_two_relays(
        config in faults(),
        loss in 0.05..=0.5f64,
        sizes in sizes(20..=80),
    ) {
        let config = FaultConfig { loss, ..config };
        let (first, dropped_first, _) = one_way(&config, &sizes)?;
        let (second, dropped_second, counts) = one_way(&config, &sizes)?;
        // The upstream's kernel dropping some copies would look like a different pattern.
        prop_assume!(dropped_first + dropped_second == 0, "the upstream's kernel dropped copies");
        let times = |arrived: &[Vec<u8>]| -> Result<Vec<usize>, TestCaseError> {
            let numbers = arrived
                .iter()
                .map(|d| identify(d, 0, &sizes))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(tally(numbers, sizes.len()))
        };
        let (a, b) = (times(&first)?, times(&second)?);
        let dropped = |t: &[usize]| -> Vec<usize> {
            (0..t.len()).filter(|&n| t[n] == 0).collect()
        };
        prop_assert_eq!(dropped(&a), dropped(&b), "different datagrams lost");
        prop_assert_eq!(&a, &b, "different datagrams duplicated");
        prop_assert_eq!(&a, &predicted_copies(&config, sizes.len()));
        prop_assert_eq!(counts.client_to_upstream.faults.dropped, dropped(&b).len() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// With no faults, several clients at once each get back exactly their own
    /// datagrams, in the order sent: the relay adds, removes, reorders and
    /// mixes up nothing, and replies find the client that asked.
    #[test]
    fn without_faults_each_client_gets_exactly_its_own_sequence_back_in_order(
        seed in any::<u64>(),
        per_client in vec(sizes(1..=40), 1..=3),
    ) {
        let upstream = Peer::start(true);
        let clean = FaultConfig { seed, ..FaultConfig::default() };
        let relay = Relay::start_symmetric(
            "127.0.0.1:0".parse().unwrap(),
            upstream.addr,
            clean,
            &Trace::off(),
        )
        .expect("start the relay");
        let clients: Vec<Bound> = per_client.iter().map(|_| bound()).collect();
        let readers: Vec<Peer> = clients
            .iter()
            .map(|c| Peer::reading(c.try_clone().expect("clone"), false))
            .collect();
        // Round robin, so the clients' datagrams interleave at the relay.
        let longest = per_client.iter().map(Vec::len).max().unwrap_or(0);
        for n in 0..longest {
            for (i, sizes) in per_client.iter().enumerate() {
                if let Some(&len) = sizes.get(n) {
                    clients[i]
                        .send_to(&datagram(i as u32, n as u32, len), relay.local_addr())
                        .expect("send_to the relay");
                    thread::sleep(PACE);
                }
            }
        }
        let total: u64 = per_client.iter().map(|s| s.len() as u64).sum();
        let ports = Ports::new(&relay, &upstream, &clients.iter().collect::<Vec<_>>());
        let arrived = settle(
            &relay,
            &ports,
            || (upstream.count(), readers.iter().map(Peer::count).sum()),
            |c, a| {
                c.client_to_upstream.faults.received == total
                    && c.upstream_to_client.faults.received == a.at_upstream
            },
        )?;
        let counts = relay.shutdown();
        let mut missing = 0;
        for (i, (reader, sizes)) in readers.into_iter().zip(&per_client).enumerate() {
            let got = reader.finish();
            let expected: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(n, &len)| datagram(i as u32, n as u32, len))
                .collect();
            // Exactly the sequence sent — less only what a kernel dropped on the way.
            prop_assert!(is_subsequence(&got, &expected), "client {} got a different sequence", i);
            missing += (expected.len() - got.len()) as u64;
        }
        let dropped = arrived.dropped_at_upstream + arrived.dropped_at_client;
        prop_assert_eq!(missing, dropped, "lost other than to a full receive buffer");
        prop_assert_eq!(counts.clients, per_client.len() as u64);
        let (t, b) = (&counts.client_to_upstream, &counts.upstream_to_client);
        prop_assert_eq!((t.faults.received, t.sent), (total, total));
        prop_assert_eq!(b.faults.received, total - arrived.dropped_at_upstream);
        prop_assert_eq!(b.sent, b.faults.received);
        for d in Direction::BOTH {
            let f = counts.direction(d).faults;
            prop_assert_eq!(f.dropped + f.duplicated + f.reordered + f.delayed, 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The engine alone, no sockets: over 100,000 decisions the fraction lost
    /// is the configured rate, within six standard deviations of a binomial
    /// (`6 · sqrt(p(1 − p) / n)`, at most 0.0095), and so is the fraction of
    /// survivors duplicated.
    #[test]
    fn the_engine_loses_the_configured_fraction(
        seed in any::<u64>(),
        loss in prop_oneof![Just(0.0), Just(1.0), 0.0..=1.0f64],
        duplicate in 0.0..=1.0f64,
    ) {
        const N: usize = 100_000;
        let mut engine = Faults::new(FaultConfig {
            loss,
            duplicate,
            seed,
            ..FaultConfig::default()
        })
        .expect("valid config");
        let lost = (0..N).filter(|_| engine.decide() == Fate::Drop).count();
        let observed = lost as f64 / N as f64;
        let tolerance = |p: f64, n: usize| 6.0 * (p * (1.0 - p) / n as f64).sqrt() + 1e-12;
        prop_assert!(
            (observed - loss).abs() <= tolerance(loss, N),
            "lost {} of {}: {} vs configured {}", lost, N, observed, loss
        );
        let c = engine.counts();
        prop_assert_eq!(c.received, N as u64);
        prop_assert_eq!(c.dropped, lost as u64);
        if c.forwarded > 1_000 {
            let dup = c.duplicated as f64 / c.forwarded as f64;
            prop_assert!(
                (dup - duplicate).abs() <= tolerance(duplicate, c.forwarded as usize),
                "duplicated {} of {}", c.duplicated, c.forwarded
            );
        }
    }
}

/// The largest datagram IPv4 can carry goes through whole, both ways.
#[test]
fn the_largest_datagram_is_relayed_whole_both_ways() {
    use sockstep::udp::socket::MAX_PAYLOAD_V4;
    let upstream = Peer::start(true);
    let relay = Relay::start_symmetric(
        "127.0.0.1:0".parse().unwrap(),
        upstream.addr,
        FaultConfig::default(),
        &Trace::off(),
    )
    .expect("start the relay");
    let client = bound();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; MAX_PAYLOAD_V4 + 1];
    for (n, len) in [MAX_PAYLOAD_V4, MAX_PAYLOAD_V4 - 1, HEADER]
        .into_iter()
        .enumerate()
    {
        let d = datagram(0, n as u32, len);
        client.send_to(&d, relay.local_addr()).unwrap();
        let (got, _) = client
            .recv_from(&mut buf)
            .expect("the echo through the relay");
        assert_eq!(&buf[..got], d.as_slice(), "datagram of {len} bytes");
    }
    let counts = relay.shutdown();
    assert_eq!(counts.upstream_to_client.sent, 3);
    assert_eq!(upstream.finish().len(), 3);
}

/// Datagrams from one client keep their numbers apart from another's: a
/// sanity check of the helpers the properties rely on.
#[test]
fn test_datagrams_identify_themselves_and_nothing_else() {
    let sizes = [8, 100, 3000];
    for (n, &len) in sizes.iter().enumerate() {
        let d = datagram(2, n as u32, len);
        assert_eq!(identify(&d, 2, &sizes).unwrap(), n);
        assert!(identify(&d, 1, &sizes).is_err());
        let mut altered = d.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(identify(&altered, 2, &sizes).is_err() || len == HEADER);
    }
    assert!(
        identify(&datagram(0, 7, 8), 0, &sizes).is_err(),
        "never sent"
    );
    assert!(identify(b"abc", 0, &sizes).is_err());
}
