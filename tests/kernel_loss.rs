//! Real loss, by the kernel: packets dropped on a real network stack, and
//! what each transport makes of it.
//!
//! The relay (`udp::relay`) loses datagrams in user space; here the kernel
//! loses packets, the way a bad link does. The test makes a network namespace
//! of its own (a private network stack: its own loopback, counters and
//! firewall), and in it an nftables rule in the **input** hook drops 10 % of
//! the packets to each test port — so the sender sees nothing, as with real
//! loss. (An output-hook drop would make the sender's `send` fail with EPERM,
//! which is not loss.) Through that link:
//!
//! - **raw UDP** loses about 10 % of 2,000 paced datagrams, with no error at
//!   the sender — and exactly the datagrams the rule counted, once those lost
//!   to the receiver's own full buffer (`Udp: RcvbufErrors`) are set apart;
//! - **TCP** delivers 1 MiB intact and in order, with 10 % of its segments
//!   lost each way (the handshake is spared);
//! - **the reliable channel** (`udp::reliable` over our connected UDP
//!   sockets) delivers every message in order, with 10 % lost each way.
//!
//! # How the test gets inside the namespace
//!
//! A process enters a network namespace with setns(2), which std does not
//! offer. So `kernel_loss_or_skip` runs this same test binary again under `ip
//! netns exec NAME`, asking for only the ignored test `in_namespace_worker`;
//! an environment variable tells that copy it is the worker. The worker does
//! the socket work and prints one `kernel-loss:` line per part; the parent
//! checks them against the drop counts nftables kept. The namespace — and the
//! rules in it — is deleted when the parent's guard drops, on every path; a
//! namespace left by a killed run is deleted by the next run.
//!
//! Needs root, iproute2 (`ip`) and nftables (`nft`); `.ci/run` installs them.
//! Anywhere else the test says loudly that it skipped, and passes.

use std::collections::HashMap;
use std::env;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sockstep::netns::{NFT_CHAIN, NFT_TABLE, Namespace};
use sockstep::tcp::{Timeouts, client, server};
use sockstep::trace::Trace;
use sockstep::udp::reliable::{Config, ReliableReceiver, ReliableSender};
use sockstep::udp::socket;
use sockstep::{ErrorKind, Side};

/// Set (to the namespace's name) in the worker's environment.
const WORKER_ENV: &str = "SOCKSTEP_KERNEL_LOSS_WORKER";

/// The worker's test name, as `--exact` wants it.
const WORKER_TEST: &str = "in_namespace_worker";

/// Each result line of the worker starts with this.
const MARKER: &str = "kernel-loss:";

/// The namespaces' names: `sockstep-loss-PID-N`.
const PREFIX: &str = "sockstep-loss";

/// The drop probability of every rule, in percent.
const LOSS_PERCENT: u32 = 10;

/// Fixed ports: the namespace is new and private, so nothing else holds them,
/// and the nftables rules can name them before the worker starts.
const UDP_PORT: u16 = 5001;
const TCP_PORT: u16 = 5002;
const RELIABLE_RECEIVER_PORT: u16 = 5003;
const RELIABLE_SENDER_PORT: u16 = 5004;

const DATAGRAMS: usize = 2_000;
/// Under the 1,472 bytes of payload that fit a 1,500-byte packet: the
/// namespace's loopback has Ethernet's MTU, and a fragmented datagram would
/// be lost whenever any of its fragments is.
const DATAGRAM_BYTES: usize = 1_000;
/// Paced, so the receiver keeps up: a burst would overflow its receive
/// buffer, which is loss of another kind (counted apart below).
const DATAGRAMS_PER_SECOND: u32 = 5_000;

const TCP_BYTES: usize = 1 << 20;
const TCP_CHUNK: usize = 64 * 1024;

const MESSAGES: usize = 500;

/// The longest the worker may take; it needs a few seconds.
const WORKER_TIMEOUT: Duration = Duration::from_secs(50);

/// Every socket call in the worker waits at most this long.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn kernel_loss_or_skip() {
    if let Err(why) = Namespace::prerequisites() {
        let line = format!(
            "\n*** SKIPPED: kernel_loss_or_skip needs root, iproute2 and nftables ({why}); \
             .ci/run installs them ***\n\n"
        );
        // libtest captures `eprintln!` and shows it only with --nocapture or on
        // failure; a write to the stderr handle itself is not captured, so the
        // skip is seen in every run.
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    let started = Instant::now();

    // A namespace "left by a killed run": its process id cannot exist (above
    // the kernel's largest pid_max, 2^22), so creating ours must delete it.
    let stale = format!("{PREFIX}-{}-0", (1u32 << 22) + 1);
    ip(&["netns", "add", &stale]);

    let namespace = Namespace::create(PREFIX).expect("create the namespace");
    let name = namespace.name().to_string();
    assert!(
        !ip(&["netns", "list"]).contains(&stale),
        "the stale namespace {stale} was not removed"
    );
    namespace
        .nft(&drop_rules())
        .expect("install the drop rules");

    let results = run_worker(&namespace);
    let dropped = |rule: &str| -> u64 {
        let counters = namespace.counters().expect("read the rule counters");
        counters
            .iter()
            .find(|(text, _)| text.contains(rule))
            .unwrap_or_else(|| panic!("no counter for `{rule}` in {counters:?}"))
            .1
    };

    // Raw UDP: loss, silently, and all of it accounted for.
    let udp = &results["udp"];
    let (sent, received, overflow) = (udp["sent"], udp["received"], udp["overflow"]);
    assert_eq!(udp["send_errors"], 0, "a loss is no error at the sender");
    let udp_dropped = dropped(&format!("udp dport {UDP_PORT}"));
    assert_eq!(
        sent - received - overflow,
        udp_dropped,
        "every datagram that did not arrive was dropped by the rule or by the full buffer"
    );
    let lost = udp_dropped as f64 / sent as f64;
    assert!(
        (0.03..=0.20).contains(&lost),
        "{LOSS_PERCENT}% asked, {:.1}% lost",
        lost * 100.0
    );

    // TCP: everything, intact, in order, although segments were dropped.
    let tcp = &results["tcp"];
    assert_eq!(tcp["bytes"], TCP_BYTES as u64);
    assert_eq!(tcp["intact"], 1, "the bytes arrived as written");
    let tcp_dropped =
        dropped(&format!("tcp dport {TCP_PORT}")) + dropped(&format!("tcp sport {TCP_PORT}"));
    assert!(tcp_dropped > 0, "the rule dropped TCP segments");

    // The reliable channel: every message, in order, repaired by retransmission.
    let reliable = &results["reliable"];
    assert_eq!(reliable["delivered"], MESSAGES as u64);
    assert_eq!(reliable["in_order"], 1);
    assert!(reliable["retransmissions"] > 0);
    let reliable_dropped = dropped(&format!("udp dport {RELIABLE_RECEIVER_PORT}"))
        + dropped(&format!("udp dport {RELIABLE_SENDER_PORT}"));
    assert!(reliable_dropped > 0, "the rule dropped DATA and ACKs");

    drop(namespace);
    assert!(
        !ip(&["netns", "list"]).contains(&name),
        "the namespace {name} outlived its guard"
    );
    eprintln!(
        "kernel loss, {LOSS_PERCENT}% in the input hook of namespace {name}:\n\
         \x20 udp:      {sent} sent, {received} received, {udp_dropped} dropped by the rule \
         ({:.1}%), {overflow} lost to the receive buffer, 0 send errors\n\
         \x20 tcp:      {TCP_BYTES} bytes intact in {} ms; {tcp_dropped} segments dropped\n\
         \x20 reliable: {MESSAGES}/{MESSAGES} messages in order in {} ms; \
         {reliable_dropped} datagrams dropped, {} retransmissions\n\
         \x20 whole test: {:?}",
        lost * 100.0,
        tcp["millis"],
        reliable["millis"],
        reliable["retransmissions"],
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// One rule per port, 10 % each, with a counter. The TCP rules spare the
/// handshake (`tcp flags & syn == 0`): a lost SYN or SYN-ACK costs whole
/// seconds of connect(), which would make the test slow and, rarely, time
/// out, and is not what it is about.
fn drop_rules() -> String {
    let rules = [
        format!("udp dport {UDP_PORT}"),
        format!("tcp dport {TCP_PORT} tcp flags & syn == 0"),
        format!("tcp sport {TCP_PORT} tcp flags & syn == 0"),
        format!("udp dport {RELIABLE_RECEIVER_PORT}"),
        format!("udp dport {RELIABLE_SENDER_PORT}"),
    ];
    rules
        .iter()
        .map(|matches| {
            format!(
                "add rule {NFT_TABLE} {NFT_CHAIN} {matches} \
                 numgen random mod 100 < {LOSS_PERCENT} counter drop\n"
            )
        })
        .collect()
}

/// Runs `in_namespace_worker` inside the namespace and returns its results:
/// part → field → number.
fn run_worker(namespace: &Namespace) -> HashMap<String, HashMap<String, u64>> {
    let program = env::current_exe().expect("this test binary");
    let mut worker = namespace.command(program);
    worker
        .args(["--exact", WORKER_TEST, "--ignored", "--nocapture"])
        .env(WORKER_ENV, namespace.name());
    let (status, stdout, stderr) = run_within(&mut worker, WORKER_TIMEOUT);
    match status {
        Some(status) if status.success() => {}
        Some(status) => panic!("the worker failed ({status}):\n{stdout}\n{stderr}"),
        None => panic!("the worker ran over {WORKER_TIMEOUT:?}:\n{stdout}\n{stderr}"),
    }
    let mut results = HashMap::new();
    for line in stdout.lines() {
        let Some((_, said)) = line.split_once(MARKER) else {
            continue;
        };
        let mut words = said.split_whitespace();
        let Some(part) = words.next() else { continue };
        let fields = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().expect("a number")))
            .collect();
        results.insert(part.to_string(), fields);
    }
    for part in ["udp", "tcp", "reliable"] {
        assert!(
            results.contains_key(part),
            "no {part} result from the worker:\n{stdout}\n{stderr}"
        );
    }
    results
}

/// Runs a command to its end or for at most `timeout` (then kills it: `None`),
/// and returns its status, standard output and standard error.
fn run_within(command: &mut Command, timeout: Duration) -> (Option<ExitStatus>, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // Our own child, by its handle.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    (status, stdout, stderr)
}

/// Runs `ip ARGS` (which answers in milliseconds) and returns what it printed.
fn ip(args: &[&str]) -> String {
    // A root `PATH` has /usr/sbin; others may not.
    let sbin = std::path::Path::new("/usr/sbin/ip");
    let mut command = Command::new(if sbin.exists() { sbin } else { "ip".as_ref() });
    let (status, stdout, stderr) = run_within(command.args(args), Duration::from_secs(10));
    assert!(status.is_some(), "`ip {}` hung: {stderr}", args.join(" "));
    stdout
}

/// Reads a pipe to its end on a thread of its own.
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

// --- the worker, inside the namespace --------------------------------------------

#[test]
#[ignore = "the in-namespace half of kernel_loss_or_skip, which starts it"]
fn in_namespace_worker() {
    let Some(namespace) = env::var_os(WORKER_ENV) else {
        eprintln!("{WORKER_TEST} is run by kernel_loss_or_skip, inside its namespace");
        return;
    };
    assert_eq!(
        ip(&["netns", "identify"]).trim(),
        namespace.to_string_lossy(),
        "the worker must run inside the test's namespace"
    );
    udp_through_loss();
    tcp_through_loss();
    reliable_through_loss();
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn udp_through_loss() {
    let trace = Trace::off();
    let receiver = socket::socket(local(UDP_PORT), Side::Server, &trace)
        .bind()
        .expect("bind the receiver");
    receiver
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let overflow_before = udp_counter("RcvbufErrors");
    let done = Arc::new(AtomicBool::new(false));
    // The receiver reads while the sender sends, so its buffer does not fill.
    let receiving = {
        let done = done.clone();
        thread::spawn(move || {
            let mut buf = [0u8; DATAGRAM_BYTES];
            let mut received = 0u64;
            let mut heard = Instant::now();
            let give_up = Instant::now() + IO_TIMEOUT;
            loop {
                match receiver.recv_from(&mut buf) {
                    Ok(_) => {
                        received += 1;
                        heard = Instant::now();
                    }
                    Err(e) if *e.kind() == ErrorKind::TimedOut => {
                        let quiet = heard.elapsed() > Duration::from_millis(300);
                        if (done.load(Ordering::SeqCst) && quiet) || Instant::now() > give_up {
                            return received;
                        }
                    }
                    Err(e) => panic!("receive: {e}"),
                }
            }
        })
    };
    let sender = socket::socket(local(0), Side::Client, &trace)
        .bind()
        .unwrap()
        .connect(local(UDP_PORT))
        .unwrap();
    let interval = Duration::from_secs(1) / DATAGRAMS_PER_SECOND;
    let started = Instant::now();
    let mut datagram = [0u8; DATAGRAM_BYTES];
    let mut send_errors = 0;
    for i in 0..DATAGRAMS {
        let ahead = (started + interval * i as u32).saturating_duration_since(Instant::now());
        if ahead > Duration::from_millis(1) {
            thread::sleep(ahead);
        }
        datagram[..8].copy_from_slice(&(i as u64).to_be_bytes());
        if sender.send(&datagram).is_err() {
            send_errors += 1;
        }
    }
    done.store(true, Ordering::SeqCst);
    let received = receiving.join().expect("the receiver panicked");
    let overflow = udp_counter("RcvbufErrors") - overflow_before;
    println!(
        "{MARKER} udp sent={DATAGRAMS} received={received} overflow={overflow} \
         send_errors={send_errors}"
    );
}

/// A `Udp:` counter of this namespace, from `/proc/net/snmp`.
fn udp_counter(name: &str) -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").expect("/proc/net/snmp");
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == name)
        .expect("the counter exists");
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// The TCP stream's byte at `offset`: 251 is prime, so the pattern never lines
/// up with a write or read size.
fn pattern_from(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

fn tcp_through_loss() {
    let trace = Trace::off();
    let timeouts = Timeouts {
        read: Some(IO_TIMEOUT),
        write: Some(IO_TIMEOUT),
    };
    let listening = server::socket(local(TCP_PORT), &trace)
        .bind()
        .expect("bind")
        .listen(1);
    // The rules spare the handshake, so this is loopback-fast.
    let mut writer = client::socket(local(TCP_PORT), &trace)
        .timeouts(timeouts)
        .connect(IO_TIMEOUT)
        .expect("connect through the lossy link");
    // Connected, so the connection waits in the queue: accept returns at once.
    let mut reader = listening.accept().expect("accept");
    reader.set_timeouts(timeouts).unwrap();
    let started = Instant::now();
    let reading = thread::spawn(move || {
        let mut buf = vec![0u8; TCP_CHUNK];
        let (mut total, mut intact) = (0, true);
        loop {
            let n = reader.read(&mut buf).expect("read");
            if n == 0 {
                return (total, intact);
            }
            intact &= buf[..n] == pattern_from(total, n)[..];
            total += n;
        }
    });
    for offset in (0..TCP_BYTES).step_by(TCP_CHUNK) {
        writer
            .write_all(&pattern_from(offset, TCP_CHUNK))
            .expect("write");
    }
    writer.shutdown_write().expect("shutdown");
    let (bytes, intact) = reading.join().expect("the reader panicked");
    println!(
        "{MARKER} tcp bytes={bytes} intact={} millis={}",
        u8::from(intact),
        started.elapsed().as_millis()
    );
}

/// Message `i`: its number, then filler that depends on it.
fn message(i: usize) -> Vec<u8> {
    let mut m = vec![i as u8; DATAGRAM_BYTES];
    m[..8].copy_from_slice(&(i as u64).to_be_bytes());
    m
}

fn reliable_through_loss() {
    let trace = Trace::off();
    let receiving = socket::socket(local(RELIABLE_RECEIVER_PORT), Side::Server, &trace)
        .bind()
        .unwrap()
        .connect(local(RELIABLE_SENDER_PORT))
        .unwrap();
    let sending = socket::socket(local(RELIABLE_SENDER_PORT), Side::Client, &trace)
        .bind()
        .unwrap()
        .connect(local(RELIABLE_RECEIVER_PORT))
        .unwrap();
    // A short RTO (loopback's round trip is tens of microseconds) and enough
    // retransmissions that 10 % loss each way never exhausts them.
    let config = Config {
        window: 32,
        rto: Duration::from_millis(20),
        give_up: Duration::from_secs(10),
        max_retransmissions: 100,
        linger: Duration::from_millis(200),
    };
    let started = Instant::now();
    let sender = thread::spawn(move || {
        let mut sender = ReliableSender::new(sending, config).unwrap();
        for i in 0..MESSAGES {
            sender.send(&message(i)).expect("send");
        }
        sender.finish().expect("finish: everything acknowledged")
    });
    let mut receiver = ReliableReceiver::new(receiving, config).unwrap();
    let mut delivered = Vec::new();
    while let Some(m) = receiver.recv().expect("receive") {
        delivered.push(m);
    }
    let millis = started.elapsed().as_millis();
    receiver.close();
    let stats = sender.join().expect("the sender panicked");
    let in_order = delivered.iter().enumerate().all(|(i, m)| *m == message(i));
    println!(
        "{MARKER} reliable delivered={} in_order={} retransmissions={} millis={millis}",
        delivered.len(),
        u8::from(in_order),
        stats.retransmissions
    );
}
