//! `sockstep walk hosts`: two computers on one machine — the IP address names
//! the host, the port names the process within it.
//!
//! On loopback, client and server are one computer with one address, so the
//! seed's sentences about IP (전 세계 컴퓨터에 부여된 고유의 식별 주소, the address
//! that names a computer) and ports (호스트 내부적으로 프로세스가 할당받아야 하는
//! 고유한 숫자, unique *within one host*) cannot be seen. This walkthrough builds
//! two hosts with [`TwoHosts`] — two network namespaces joined by a veth pair,
//! host A at 198.18.0.1 and host B at 198.18.0.2 — and runs this same program
//! on them as child processes (`ip netns exec NAME sockstep …`: std cannot move
//! a thread into a namespace, so each host gets a process of its own). Each
//! child runs a public verb with `--trace`, and its lines are printed as they
//! arrive, labelled with the host:
//!
//! 1. the commands that built the two hosts and the cable;
//! 2. host B: `tcp listen 198.18.0.2:7878` — socket, bind, listen;
//! 3. host A: `tcp connect 198.18.0.2:7878` — the kernel gives the client host
//!    A's address and a port of its choosing, and `accept()` on host B reports
//!    exactly that address and port as the peer;
//! 4. host A: `tcp listen 198.18.0.1:7878` while host B's server still runs —
//!    the same port on two hosts at once is fine;
//! 5. host B: `tcp listen 198.18.0.2:7878` again — the same port twice on one
//!    host is not: `bind()` fails with "address already in use", naming the
//!    endpoint;
//! 6. a UDP datagram from host A to host B and back, `recv_from()` on B
//!    naming the sender on A;
//! 7. the servers stop, the hosts are deleted, and `ip netns list` and `ip
//!    link` show nothing of them.
//!
//! Root only ([`can_run`] says why not). Everything is deleted on every exit
//! path, Ctrl-C included: see [`crate::testkit::hosts`] for how.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::endpoint::Protocol;
use crate::error::{Error, ErrorKind};
use crate::step::{Side, Step};
use crate::testkit::hosts::{self, Computer, HOST_A, HOST_B, HostProcess, TwoHosts};
use crate::trace::{Event, SocketId};
use crate::walk::{SharedOut, WalkOptions};

/// The port both hosts' TCP servers hold.
pub const TCP_PORT: u16 = 7878;

/// The port of the UDP exchange.
pub const UDP_PORT: u16 = 9000;

/// The line the TCP client sends, and the server echoes.
const TCP_LINE: &str = "hello from host A";

/// The datagram the UDP client sends, and the server echoes.
const UDP_LINE: &str = "a datagram from host A";

/// How long a child may take to start and say it is listening, or to show a
/// step it is known to reach: a process start, a bind, a round trip on the
/// cable — milliseconds, with room for a loaded machine.
const READY: Duration = Duration::from_secs(10);

/// How long a client may take to run to its end.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// What the walkthrough saw, each side's view.
#[derive(Debug, Clone)]
pub struct HostsWalkReport {
    /// The two namespaces, host A's then host B's.
    pub namespaces: [String; 2],
    /// Where host B's server listened: 198.18.0.2:7878.
    pub server: SocketAddr,
    /// The client's own address and port on host A, from its `connect()`.
    pub client_local: SocketAddr,
    /// The peer `accept()` on host B reported: the same as `client_local`.
    pub accept_peer: SocketAddr,
    /// What the client read back: the echo of its line.
    pub echoed: String,
    /// Where host A's own server listened while host B's ran: 198.18.0.1:7878.
    pub same_port_on_a: SocketAddr,
    /// The first line of the second bind's error on host B.
    pub second_bind: String,
    /// The sender `recv_from()` on host B reported for the datagram.
    pub udp_peer: SocketAddr,
    /// What the UDP client received back.
    pub udp_reply: String,
    /// What was left of the hosts after the teardown ([`hosts::leftovers`]): nothing.
    pub leftovers: Vec<String>,
    /// The children's traces read back into events, in the order their lines
    /// arrived, for `sockstep walk hosts --svg`. Each child numbers its sockets
    /// from #1, so they are numbered anew across the children, in order of
    /// first appearance; `at` is when the walkthrough received the line.
    pub events: Vec<Event>,
    /// The host each socket of `events` is on: `"host A"` or `"host B"`.
    pub hosts: Vec<(SocketId, &'static str)>,
}

/// Whether this walkthrough can run here; `Err` is the one line to print
/// when it cannot: that it needs root (and `ip` and `nft`), and what to run
/// instead.
///
/// # Errors
/// The line.
pub fn can_run() -> Result<(), String> {
    TwoHosts::prerequisites().map_err(|why| {
        format!(
            "walk hosts needs root, iproute2 and nftables to make two hosts from network \
             namespaces — here: {why}; run `make run` instead, the TCP walkthrough on loopback"
        )
    })
}

/// Runs the walkthrough, printing to `out`; `sockstep` is the program to run
/// on the hosts (this one: `std::env::current_exe()`). `options.pause`
/// applies between the parts.
///
/// # Errors
/// Building the hosts ([`TwoHosts::create`]); a child that does not do what
/// it should (named, with its last lines). The hosts are deleted either way.
pub fn run(
    options: &WalkOptions,
    out: Box<dyn Write + Send>,
    sockstep: &Path,
) -> Result<HostsWalkReport, Error> {
    let out = SharedOut::new(out);
    let traces = Traces::default();
    // Each part ends with a blank line, and with --slow a pause.
    let end_part = || {
        out.line("");
        if !options.pause.is_zero() {
            thread::sleep(options.pause);
        }
    };
    out.line("sockstep walk hosts — two computers on one machine: the IP address names the host,");
    out.line("the port names the process within it.");
    out.line("Two network namespaces (each a whole network stack of its own: interfaces,");
    out.line("addresses, ports) joined by a virtual cable are two hosts. This program runs on");
    out.line("each as a child process, and its trace is printed as it comes, labelled with the");
    out.line("host. Each process keeps its own clock, so times are left out; so are the std:");
    out.line("lines — `make run` shows both. The hosts' lines come through separate pipes, so a");
    out.line("line of one can print after a line of the other that happened later.");
    out.line("");

    out.line("== 1. Two hosts and a cable: namespaces, a veth pair, 198.18.0.0/15 addresses ==");
    let hosts = TwoHosts::create()?;
    for command in hosts.setup() {
        out.line(&format!("   $ {command}"));
    }
    for host in [hosts.a(), hosts.b()] {
        out.line(&format!(
            "   {}: namespace {}, interface {}, address {}",
            host.label(),
            host.name(),
            host.interface(),
            host.addr()
        ));
    }
    out.line("   (198.18.0.0/15 is reserved for test networks, RFC 2544: nothing real uses it,");
    out.line("   and neither host has a route anywhere else)");
    out.line(&format!("   (below, `sockstep` is {})", sockstep.display()));
    end_part();

    let server = SocketAddr::from((HOST_B, TCP_PORT));
    out.line(&format!(
        "== 2. Host B runs a server: socket() → bind({server}) → listen() =="
    ));
    let server_b = serve(
        &out,
        &traces,
        hosts.b(),
        sockstep,
        &["tcp", "listen", &server.to_string(), "--echo", "--trace"],
    )?;
    end_part();

    out.line(&format!(
        "== 3. Host A runs a client: socket() → connect({server}), one line each way =="
    ));
    let client = start(
        &out,
        &traces,
        hosts.a(),
        sockstep,
        &["tcp", "connect", &server.to_string(), "--trace"],
    )?;
    let client = finish_with_input(client, TCP_LINE)?;
    let connected = line_with(&client.stderr, " connected ")
        .ok_or_else(|| unexpected("the client's trace has no `connected` line"))?;
    let (client_local, _) = ends(&connected)?;
    let accepted = server_b.wait_for_line(" accept() ", READY)?;
    let (_, accept_peer) = ends(&accepted)?;
    // The server's side of the conversation ends with its close(); wait for
    // it, so that its lines are printed before what the walkthrough says next.
    let peer = format!("tcp://{client_local}");
    server_b.wait_for_line_where("the server's close() of the connection", READY, |l| {
        l.contains(" close() ") && l.contains(&peer)
    })?;
    let echoed = String::from_utf8_lossy(&client.stdout)
        .trim_end()
        .to_string();
    out.line(&format!(
        "   → the client is {client_local}: host A's address, and a port host A's kernel chose"
    ));
    out.line(&format!(
        "   → accept() on host B reports the peer {accept_peer}: the other computer, as it is"
    ));
    out.line("     (on loopback both ends are 127.0.0.1: one computer talking to itself)");
    end_part();

    let same_port_on_a = SocketAddr::from((HOST_A, TCP_PORT));
    out.line(&format!(
        "== 4. Host A binds port {TCP_PORT} too, while host B's server holds it =="
    ));
    let server_a = serve(
        &out,
        &traces,
        hosts.a(),
        sockstep,
        &["tcp", "listen", &same_port_on_a.to_string(), "--echo"],
    )?;
    out.line(&format!(
        "   → both hosts hold port {TCP_PORT} at once: a port is unique within one host, not across"
    ));
    out.line(&format!(
        "     the network — {same_port_on_a} and {server} are different places"
    ));
    end_part();

    out.line(&format!(
        "== 5. Host B binds port {TCP_PORT} a second time, while its server holds it =="
    ));
    let second = start(
        &out,
        &traces,
        hosts.b(),
        sockstep,
        &["tcp", "listen", &server.to_string(), "--echo"],
    )?
    .finish(CLIENT_TIMEOUT)?;
    if second.status.success() {
        return Err(unexpected(
            "the second bind on host B succeeded; it should have failed",
        ));
    }
    let second_bind = String::from_utf8_lossy(&second.stderr)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let code = second
        .status
        .code()
        .map_or_else(|| second.status.to_string(), |c| c.to_string());
    out.line(&format!(
        "   → it exits with status {code}: within one host, one port belongs to one process (같은 호스트"
    ));
    out.line("     내에서 서로 다른 프로세스가 같은 포트 넘버를 가질 수 없다)");
    end_part();

    let udp_server = SocketAddr::from((HOST_B, UDP_PORT));
    out.line(&format!(
        "== 6. UDP over the same cable: a datagram from host A to {udp_server}, and its echo =="
    ));
    let udp_b = serve(
        &out,
        &traces,
        hosts.b(),
        sockstep,
        &[
            "udp",
            "listen",
            &udp_server.to_string(),
            "--echo",
            "--trace",
        ],
    )?;
    let udp_client = start(
        &out,
        &traces,
        hosts.a(),
        sockstep,
        &["udp", "send", &udp_server.to_string(), "--trace"],
    )?;
    let udp_client = finish_with_input(udp_client, UDP_LINE)?;
    let received = udp_b.wait_for_line(" recv_from() ", READY)?;
    let (_, udp_peer) = ends(&received)?;
    udp_b.wait_for_line(" send_to() ", READY)?;
    let udp_reply = String::from_utf8_lossy(&udp_client.stdout)
        .trim_end()
        .to_string();
    out.line(
        "   → the client bound 0.0.0.0 (any of host A's addresses); recv_from() on host B names the",
    );
    out.line(&format!(
        "     sender {udp_peer}: the kernel put host A's address on the datagram. No connection,"
    ));
    out.line("     no accept(): every datagram carries its sender's address and port");
    end_part();

    out.line("== 7. The end: the servers stop (Enter on their stdin), the hosts are deleted ==");
    for (label, process) in [
        ("host A", server_a),
        ("host B", server_b),
        ("host B", udp_b),
    ] {
        let stopped = process.stop()?;
        if !stopped.status.success() {
            return Err(unexpected(&format!(
                "a server on {label} exited with {}",
                stopped.status
            )));
        }
    }
    let namespaces = hosts.names();
    drop(hosts);
    let leftovers = hosts::leftovers(&namespaces)?;
    for name in &namespaces {
        out.line(&format!("   $ ip netns del {name}"));
    }
    if leftovers.is_empty() {
        out.line("   → gone, and the cable with them: neither `ip netns list` nor `ip link` shows any of it");
    } else {
        out.line(&format!("   → still there: {}", leftovers.join(", ")));
    }
    let (events, hosts) = traces.events();
    Ok(HostsWalkReport {
        namespaces,
        server,
        client_local,
        accept_peer,
        echoed,
        same_port_on_a,
        second_bind,
        udp_peer,
        udp_reply,
        leftovers,
        events,
        hosts,
    })
}

/// Prints the command, then starts it on `host`, each line it prints shown
/// as it comes: `  host B │ server 2 bind() …`.
fn start<'a>(
    out: &SharedOut,
    traces: &Traces,
    host: &'a Computer,
    sockstep: &Path,
    args: &[&str],
) -> Result<HostProcess<'a>, Error> {
    out.line(&format!(
        "   $ ip netns exec {} sockstep {}",
        host.name(),
        args.join(" ")
    ));
    let shown = out.clone();
    let label = host.label();
    let kept = traces.clone();
    let process = traces.process();
    host.start_with(sockstep, args, move |line| {
        kept.keep(process, label, line);
        if let Some(line) = for_people(line) {
            shown.line(&format!("  {label} │ {line}"));
        }
    })
}

/// As [`start`], for a server: returns once it says it is listening.
fn serve<'a>(
    out: &SharedOut,
    traces: &Traces,
    host: &'a Computer,
    sockstep: &Path,
    args: &[&str],
) -> Result<HostProcess<'a>, Error> {
    let server = start(out, traces, host, sockstep, args)?;
    server.wait_for_line("listening on", READY)?;
    Ok(server)
}

/// Writes one line to a client's standard input, ends it, and waits for the
/// client to finish; a client that fails is an error.
fn finish_with_input(mut client: HostProcess<'_>, line: &str) -> Result<Output, Error> {
    client.write_stdin(format!("{line}\n").as_bytes())?;
    let output = client.finish(CLIENT_TIMEOUT)?;
    if !output.status.success() {
        return Err(unexpected(&format!(
            "a client exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output)
}

/// A child's line as the walkthrough shows it: the trace's `std:` lines
/// dropped, and its time column (each process's own clock) cut off.
fn for_people(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    if trimmed.starts_with("std: ") {
        return None;
    }
    match trimmed.split_once(" ms  ") {
        Some((time, rest)) if time.parse::<f64>().is_ok() => Some(rest),
        _ => Some(line),
    }
}

/// The first line of `output` containing `needle`.
fn line_with(output: &[u8], needle: &str) -> Option<String> {
    String::from_utf8_lossy(output)
        .lines()
        .find(|l| l.contains(needle))
        .map(str::to_string)
}

/// The two addresses of a trace line `… tcp://LOCAL <-> tcp://PEER …`.
fn ends(line: &str) -> Result<(SocketAddr, SocketAddr), Error> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let addr = |word: Option<&&str>| -> Option<SocketAddr> {
        let word = word?;
        word.split_once("://")
            .map_or(*word, |(_, a)| a)
            .parse()
            .ok()
    };
    let at = words.iter().position(|w| *w == "<->");
    at.and_then(|at| {
        Some((
            addr(words.get(at.checked_sub(1)?))?,
            addr(words.get(at + 1))?,
        ))
    })
    .ok_or_else(|| unexpected(&format!("no LOCAL <-> PEER in the trace line {line:?}")))
}

/// The children's trace lines, kept as they arrive, for the picture.
#[derive(Clone, Default)]
struct Traces(Arc<Mutex<Kept>>);

#[derive(Default)]
struct Kept {
    /// Children started so far.
    processes: usize,
    /// (child, its host, the line, when it arrived)
    lines: Vec<(usize, &'static str, String, Instant)>,
}

impl Traces {
    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panicking reader thread cannot leave the Vec half-written.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A number for the next child.
    fn process(&self) -> usize {
        let mut kept = self.lock();
        kept.processes += 1;
        kept.processes
    }

    fn keep(&self, process: usize, host: &'static str, line: &str) {
        self.lock()
            .lines
            .push((process, host, line.to_string(), Instant::now()));
    }

    /// The trace lines as events, the sockets numbered anew across the
    /// children (in the details too: `accept()` names the socket it made),
    /// and the host of each socket.
    fn events(&self) -> (Vec<Event>, Vec<(SocketId, &'static str)>) {
        let kept = self.lock();
        let mut numbers: HashMap<(usize, u64), SocketId> = HashMap::new();
        let mut hosts = Vec::new();
        let mut number = |process: usize, host: &'static str, theirs: u64| {
            let next = SocketId(numbers.len() as u64 + 1);
            *numbers.entry((process, theirs)).or_insert_with(|| {
                hosts.push((next, host));
                next
            })
        };
        let mut events = Vec::new();
        for &(process, host, ref line, at) in &kept.lines {
            let Some((theirs, mut event)) = traced(line) else {
                continue;
            };
            let socket = number(process, host, theirs);
            event.detail = event.detail.map(|detail| {
                detail
                    .split(' ')
                    .map(|word| match word.strip_prefix('#').map(str::parse::<u64>) {
                        Some(Ok(n)) => number(process, host, n).to_string(),
                        _ => word.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            events.push(Event {
                at,
                socket,
                ..event
            });
        }
        (events, hosts)
    }
}

/// A child's trace line read back into an event (the inverse of
/// [`Printer::line`](crate::trace::Printer::line)), with the child's own
/// number for the socket: `  0.2 ms  server 2 bind()  #1  tcp://198.18.0.2:7878  detail`.
fn traced(line: &str) -> Option<(u64, Event)> {
    let (time, rest) = line.split_once(" ms  ")?;
    time.trim().parse::<f64>().ok()?;
    let mut words = rest.split(' ').filter(|w| !w.is_empty()).peekable();
    let side = match words.next()? {
        "server" => Side::Server,
        "client" => Side::Client,
        _ => return None,
    };
    if words.peek()?.chars().all(|c| c.is_ascii_digit()) {
        words.next();
    }
    let name = words.next()?;
    let step = Step::named(name)?;
    let socket: u64 = words.next()?.strip_prefix('#')?.parse().ok()?;
    // What follows the socket: [LOCAL] [<-> PEER] [N bytes] [detail], the
    // parts apart by two spaces.
    let tail = rest.split_once(&format!("#{socket}"))?.1.trim_start();
    let address = |word: &str| -> Option<(Protocol, SocketAddr)> {
        let (scheme, addr) = word.split_once("://")?;
        let protocol = match scheme {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return None,
        };
        Some((protocol, addr.parse().ok()?))
    };
    let mut protocol = if tail.contains("SOCK_DGRAM") {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let mut parts = tail
        .split("  ")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .peekable();
    let (mut local, mut peer) = (None, None);
    if let Some(first) = parts.peek() {
        let (mine, theirs) = match first.split_once("<->") {
            Some((mine, theirs)) => (mine.trim(), Some(theirs.trim())),
            None => (first.trim(), None),
        };
        let mine_addr = address(mine);
        let theirs_addr = theirs.and_then(address);
        let all_addresses = (mine.is_empty() || mine_addr.is_some())
            && (theirs.is_none() || theirs_addr.is_some())
            && (mine_addr.is_some() || theirs_addr.is_some());
        if all_addresses {
            if let Some((p, _)) = mine_addr.or(theirs_addr) {
                protocol = p;
            }
            local = mine_addr.map(|(_, a)| a);
            peer = theirs_addr.map(|(_, a)| a);
            parts.next();
        }
    }
    let bytes = parts
        .peek()
        .and_then(|p| p.strip_suffix(" bytes")?.parse::<usize>().ok());
    if bytes.is_some() {
        parts.next();
    }
    let detail: Vec<&str> = parts.collect();
    let mut event = Event::new(SocketId(socket), side, step, protocol);
    event.local = local;
    event.peer = peer;
    event.bytes = bytes;
    if !detail.is_empty() {
        event.detail = Some(detail.join("  "));
    }
    Some((socket, event))
}

/// A child did not do what the walkthrough expects of it.
fn unexpected(what: &str) -> Error {
    Error::new(Step::Serve, ErrorKind::Os).with_io(std::io::Error::other(what.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_line_loses_its_clock_and_std_lines_go() {
        assert_eq!(
            for_people("    0.121 ms  server 2 bind()      #1   tcp://198.18.0.2:7878"),
            Some("server 2 bind()      #1   tcp://198.18.0.2:7878")
        );
        assert_eq!(
            for_people("                  std: accept4(SOCK_CLOEXEC)"),
            None
        );
        assert_eq!(
            for_people("listening on tcp://198.18.0.2:7878 (echo)"),
            Some("listening on tcp://198.18.0.2:7878 (echo)")
        );
    }

    #[test]
    fn both_ends_of_a_trace_line() {
        let line = "  303.508 ms  server 4 accept()    #1   tcp://198.18.0.2:7878 <-> tcp://198.18.0.1:57552  a new socket";
        assert_eq!(
            ends(line).unwrap(),
            (
                "198.18.0.2:7878".parse().unwrap(),
                "198.18.0.1:57552".parse().unwrap()
            )
        );
        assert!(ends("client 2 connect() #1 <-> tcp://198.18.0.2:7878").is_err());
    }

    #[test]
    fn a_childs_trace_line_reads_back_into_its_event() {
        let (socket, e) = traced("  303.508 ms  server 4 accept()    #1   tcp://198.18.0.2:7878 <-> tcp://198.18.0.1:57552  a new socket for this client: #2").unwrap();
        assert_eq!(
            (socket, e.side, e.step, e.protocol),
            (1, Side::Server, Step::Accept, Protocol::Tcp)
        );
        assert_eq!(e.local, Some("198.18.0.2:7878".parse().unwrap()));
        assert_eq!(e.peer, Some("198.18.0.1:57552".parse().unwrap()));
        assert_eq!(
            e.detail.as_deref(),
            Some("a new socket for this client: #2")
        );
        let (_, e) = traced("    1.0 ms  client 2 connect()   #1   <-> tcp://198.18.0.2:7878  SYN sent; waiting for the handshake").unwrap();
        assert_eq!(
            (e.local, e.peer),
            (None, Some("198.18.0.2:7878".parse().unwrap()))
        );
        let (_, e) = traced("    2.0 ms  client 4 send_to()   #1   udp://0.0.0.0:4000 <-> udp://198.18.0.2:9000  23 bytes").unwrap();
        assert_eq!(
            (e.protocol, e.bytes, e.detail),
            (Protocol::Udp, Some(23), None)
        );
        let (_, e) = traced(
            "    3.0 ms  server 1 socket()    #1    SOCK_DGRAM, AF_INET, for udp://198.18.0.2:9000",
        )
        .unwrap();
        assert_eq!((e.protocol, e.local), (Protocol::Udp, None));
        assert!(traced("                  std: accept4(SOCK_CLOEXEC)").is_none());
        assert!(traced("listening on tcp://198.18.0.2:7878 (echo)").is_none());
    }

    #[test]
    fn without_root_the_reason_is_one_line_that_says_what_to_run_instead() {
        if let Err(line) = can_run() {
            assert!(!line.contains('\n'));
            assert!(line.contains("needs root"));
            assert!(line.contains("make run"));
        }
    }
}
