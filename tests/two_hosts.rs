//! Two computers on one machine: IP names the host, the port names the process.
//!
//! Each test builds two hosts with `sockstep::testkit::hosts::TwoHosts` — two
//! network namespaces joined by a veth pair, host A at 198.18.0.1 and host B at
//! 198.18.0.2 — and runs the sockstep binary on them (`ip netns exec`: std
//! cannot enter a namespace itself). Between them the tests show that:
//!
//! - `accept()` on host B reports host A's address as the peer, the same
//!   address and port host A's client was given;
//! - one port number is bound on both hosts at once, while a second bind of it
//!   on one host fails with `AddressInUse`, naming the endpoint;
//! - TCP and UDP both cross the cable;
//! - with 10 % of the packets into host B dropped, raw UDP loses about a tenth
//!   of its datagrams, exactly those the rule counted, with no error at the
//!   sender — while TCP delivers 1 MiB intact and in order;
//! - the walkthrough (`sockstep walk hosts`) shows all of that, and refuses,
//!   in one line, to run without root;
//! - nothing is left behind: not after a drop, not after a panic, not after
//!   the walkthrough is killed with SIGKILL (the janitor), and a namespace a
//!   dead run left is swept by the next.
//!
//! Every packet stays inside the namespaces the test built: they have no other
//! interface and no route anywhere else.
//!
//! Needs root, iproute2 (`ip`) and nftables (`nft`); `.ci/run` installs them.
//! Anywhere else each test says loudly that it skipped, and passes.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sockstep::testkit::hosts::{self, HOST_A, HOST_B, NAMESPACE_PREFIX, Traffic, TwoHosts};
use sockstep::walk::WalkOptions;

/// The sockstep binary Cargo built for this test.
const SOCKSTEP: &str = env!("CARGO_BIN_EXE_sockstep");

/// How long a server may take to say it is listening: a process start and a bind.
const READY: Duration = Duration::from_secs(10);

const TCP_PORT: u16 = 7878;
const UDP_PORT: u16 = 9000;

/// The loss rule's rate, in percent.
const LOSS_PERCENT: u8 = 10;

/// Datagrams sent through the loss. `udp send` waits for each one's echo, or
/// for [`REPLY_TIMEOUT`], before it sends the next: the sender is paced by
/// the receiver, so the receiver's buffer never overflows (`shared/FACTS.md`:
/// an unpaced burst loses most of its datagrams to the receiving socket's own
/// full buffer, which is not the link's loss).
const DATAGRAMS: usize = 500;

/// How long `udp send` waits for an echo: a round trip on the cable takes
/// well under a millisecond; a lost datagram costs this much.
const REPLY_TIMEOUT: &str = "0.03";

/// Bytes sent through the loss over TCP.
const TCP_BYTES: usize = 1 << 20;

/// Whether the test cannot run here; if so, it says loudly why.
fn skipped(test: &str) -> bool {
    let Err(why) = TwoHosts::prerequisites() else {
        return false;
    };
    let line = format!(
        "\n*** SKIPPED: {test} needs root, iproute2 and nftables ({why}); .ci/run installs them ***\n\n"
    );
    // A write to the stderr handle itself is not captured by libtest, so the skip is seen.
    let _ = std::io::stderr().write_all(line.as_bytes());
    true
}

/// The hosts, or `None` after saying loudly why the test cannot run here.
fn hosts_or_skip(test: &str) -> Option<TwoHosts> {
    (!skipped(test)).then(|| TwoHosts::create().expect("build the two hosts"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The two addresses of a trace line `… tcp://LOCAL <-> tcp://PEER …`.
fn ends(line: &str) -> (SocketAddr, SocketAddr) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "<->")
        .unwrap_or_else(|| panic!("no <-> in {line:?}"));
    let addr = |w: &str| -> SocketAddr {
        let (_, addr) = w.split_once("://").unwrap_or(("", w));
        addr.parse()
            .unwrap_or_else(|e| panic!("{w:?} in {line:?}: {e}"))
    };
    (addr(words[at - 1]), addr(words[at + 1]))
}

// --- an address names a host, a port names a process within it --------------------

#[test]
fn accept_on_host_b_reports_host_a_as_the_peer() {
    let Some(hosts) = hosts_or_skip("accept_on_host_b_reports_host_a_as_the_peer") else {
        return;
    };
    let listen = format!("{HOST_B}:{TCP_PORT}");
    let server = hosts
        .b()
        .start_server(
            SOCKSTEP,
            &["tcp", "listen", &listen, "--echo", "--trace"],
            "listening on",
        )
        .unwrap();
    let client = hosts
        .a()
        .run(
            SOCKSTEP,
            &["tcp", "connect", &listen, "--trace"],
            b"hello from A\n",
        )
        .unwrap();
    assert!(client.status.success(), "{}", text(&client.stderr));
    assert_eq!(client.stdout, b"hello from A\n", "the echo came back");

    // The client's view: its kernel gave it host A's address and a port.
    let connected = text(&client.stderr)
        .lines()
        .find(|l| l.contains(" connected "))
        .map(str::to_string)
        .expect("the client's trace has its connect");
    let (client_local, client_peer) = ends(&connected);
    assert_eq!(client_local.ip(), HOST_A);
    assert_eq!(client_peer, listen.parse().unwrap());

    // The server's view: accept() names exactly that address and port.
    let accepted = server.wait_for_line(" accept() ", READY).unwrap();
    let (server_local, server_peer) = ends(&accepted);
    assert_eq!(server_local, listen.parse().unwrap());
    assert_eq!(server_peer, client_local, "accept() on host B sees host A");
    assert!(server.stop().unwrap().status.success());
}

#[test]
fn one_port_is_bound_on_both_hosts_at_once_but_a_second_bind_on_one_host_fails_naming_it() {
    let Some(hosts) = hosts_or_skip(
        "one_port_is_bound_on_both_hosts_at_once_but_a_second_bind_on_one_host_fails_naming_it",
    ) else {
        return;
    };
    let on_b = format!("{HOST_B}:{TCP_PORT}");
    let on_a = format!("{HOST_A}:{TCP_PORT}");
    let server_b = hosts
        .b()
        .start_server(
            SOCKSTEP,
            &["tcp", "listen", &on_b, "--echo"],
            "listening on",
        )
        .unwrap();
    let server_a = hosts
        .a()
        .start(SOCKSTEP, &["tcp", "listen", &on_a, "--echo"])
        .unwrap();
    // Both listening, at the same time, on the same port number.
    assert_eq!(
        server_a.wait_for_line("listening on", READY).unwrap(),
        format!(
            "listening on tcp://{on_a} (echo; up to 256 served, 64 waiting; press Enter to stop)"
        )
    );
    assert!(server_b.lines()[0].starts_with(&format!("listening on tcp://{on_b} ")));

    // The same port again on host B, while its server holds it.
    let second = hosts
        .b()
        .run(SOCKSTEP, &["tcp", "listen", &on_b, "--echo"], b"")
        .unwrap();
    assert_eq!(second.status.code(), Some(1), "a runtime error: exit 1");
    let said = text(&second.stderr);
    assert!(
        said.starts_with(&format!(
            "sockstep: bind() tcp://{on_b} failed: address already in use (os error 98)\n"
        )),
        "{said}"
    );
    assert!(
        said.contains("hint: another socket on this host holds this port"),
        "{said}"
    );

    // Both servers were unharmed, and stop as asked.
    assert!(server_a.stop().unwrap().status.success());
    assert!(server_b.stop().unwrap().status.success());
}

#[test]
fn udp_crosses_the_link_and_recv_from_on_host_b_names_host_a() {
    let Some(hosts) = hosts_or_skip("udp_crosses_the_link_and_recv_from_on_host_b_names_host_a")
    else {
        return;
    };
    let listen = format!("{HOST_B}:{UDP_PORT}");
    let server = hosts
        .b()
        .start_server(
            SOCKSTEP,
            &["udp", "listen", &listen, "--echo", "--trace"],
            "listening on",
        )
        .unwrap();
    let client = hosts
        .a()
        .run(SOCKSTEP, &["udp", "send", &listen], b"one datagram\n")
        .unwrap();
    assert!(client.status.success(), "{}", text(&client.stderr));
    assert_eq!(client.stdout, b"one datagram\n", "the echo came back");
    let received = server.wait_for_line(" recv_from() ", READY).unwrap();
    let (local, sender) = ends(&received);
    assert_eq!(local, listen.parse().unwrap());
    assert_eq!(sender.ip(), HOST_A, "the datagram carries host A's address");
    let stopped = server.stop().unwrap();
    assert!(
        text(&stopped.stderr).contains("received 1, replied 1"),
        "{}",
        text(&stopped.stderr)
    );
}

// --- loss on the link --------------------------------------------------------------

#[test]
fn ten_percent_loss_into_host_b_loses_udp_datagrams_while_tcp_delivers_everything_in_order() {
    let Some(hosts) = hosts_or_skip(
        "ten_percent_loss_into_host_b_loses_udp_datagrams_while_tcp_delivers_everything_in_order",
    ) else {
        return;
    };
    let started = Instant::now();

    // Raw UDP: datagrams vanish, the sender is told nothing.
    hosts
        .lose_on_b(Traffic::Udp { port: UDP_PORT }, LOSS_PERCENT)
        .unwrap();
    let listen = format!("{HOST_B}:{UDP_PORT}");
    let server = hosts
        .b()
        .start_server(
            SOCKSTEP,
            &["udp", "listen", &listen, "--echo"],
            "listening on",
        )
        .unwrap();
    let datagrams: String = (0..DATAGRAMS).map(|i| format!("datagram {i}\n")).collect();
    let sender = hosts
        .a()
        .run(
            SOCKSTEP,
            &["udp", "send", &listen, "--timeout", REPLY_TIMEOUT],
            datagrams.as_bytes(),
        )
        .unwrap();
    assert!(sender.status.success(), "a loss is no error at the sender");
    let dropped = hosts.dropped_on_b().unwrap();
    // A server's stop sends itself a wake-up, which the rule must not eat.
    hosts.heal().unwrap();
    let stopped = server.stop().unwrap();
    // "sockstep: stopped: received N, replied M, …"
    let counts = text(&stopped.stderr);
    let received: u64 = counts
        .split("received ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {counts:?}"));
    assert_eq!(
        received + dropped,
        DATAGRAMS as u64,
        "every datagram arrived or was dropped by the rule: none lost to a full buffer"
    );
    let lost = dropped as f64 / DATAGRAMS as f64;
    assert!(
        (0.04..=0.18).contains(&lost),
        "{LOSS_PERCENT}% asked, {:.1}% lost",
        lost * 100.0
    );
    let replies = text(&sender.stdout);
    assert!(
        replies
            .lines()
            .all(|l| datagrams.contains(&format!("{l}\n")))
    );
    assert!(replies.lines().count() as u64 <= received);

    // TCP through the same loss: every byte, in order.
    hosts
        .lose_on_b(Traffic::Tcp { port: TCP_PORT }, LOSS_PERCENT)
        .unwrap();
    let listen = format!("{HOST_B}:{TCP_PORT}");
    let server = hosts
        .b()
        .start_server(
            SOCKSTEP,
            &["tcp", "listen", &listen, "--echo"],
            "listening on",
        )
        .unwrap();
    let sent: Vec<u8> = (0..TCP_BYTES).map(|i| (i % 251) as u8).collect();
    let echoed = hosts
        .a()
        .run(SOCKSTEP, &["tcp", "connect", &listen], &sent)
        .unwrap();
    assert!(echoed.status.success(), "{}", text(&echoed.stderr));
    assert_eq!(echoed.stdout.len(), TCP_BYTES, "every byte came back");
    assert!(echoed.stdout == sent, "in the order it was sent");
    let tcp_dropped = hosts.dropped_on_b().unwrap();
    assert!(
        tcp_dropped > 0,
        "the rule dropped TCP segments, and TCP resent them"
    );
    hosts.heal().unwrap();
    assert!(server.stop().unwrap().status.success());

    eprintln!(
        "{LOSS_PERCENT}% loss into host B: udp {DATAGRAMS} sent, {received} received, {dropped} dropped \
         ({:.1}%), 0 send errors; tcp {TCP_BYTES} bytes echoed intact, {tcp_dropped} segments dropped; {:?}",
        lost * 100.0,
        started.elapsed()
    );
}

// --- nothing left behind --------------------------------------------------------------

#[test]
fn nothing_is_left_after_a_drop_or_a_panic_and_a_dead_runs_hosts_are_swept() {
    if skipped("nothing_is_left_after_a_drop_or_a_panic_and_a_dead_runs_hosts_are_swept") {
        return;
    }
    let on_b = format!("{HOST_B}:{TCP_PORT}");
    // Hosts "left by a killed run": their process id cannot exist (above the
    // kernel's largest pid_max, 2^22), so the next create must delete them.
    let dead = (1u32 << 22) + 1;
    let stale = [
        format!("{NAMESPACE_PREFIX}-a-{dead}-0"),
        format!("{NAMESPACE_PREFIX}-b-{dead}-1"),
    ];
    for name in &stale {
        ip(&["netns", "add", name]);
    }
    let hosts = TwoHosts::create().unwrap();
    assert_eq!(
        hosts::leftovers(&stale).unwrap(),
        Vec::<String>::new(),
        "swept"
    );

    // A drop.
    let names = hosts.names();
    assert_eq!(
        hosts::leftovers(&names).unwrap(),
        names.to_vec(),
        "they exist…"
    );
    let server = hosts
        .b()
        .start_server(SOCKSTEP, &["tcp", "listen", &on_b], "listening on")
        .unwrap();
    drop(server);
    drop(hosts);
    assert_eq!(
        hosts::leftovers(&names).unwrap(),
        Vec::<String>::new(),
        "…and are gone"
    );

    // A panic while a test holds them, with a server running on host B.
    let mut names = Vec::new();
    let names_seen = std::sync::Mutex::new(&mut names);
    let unwound = std::panic::catch_unwind(|| {
        let hosts = TwoHosts::create().unwrap();
        names_seen.lock().unwrap().extend(hosts.names());
        // Held (not `_`, which would drop it at once) until the panic unwinds.
        let _server = hosts
            .b()
            .start_server(SOCKSTEP, &["tcp", "listen", &on_b], "listening on")
            .unwrap();
        panic!("(on purpose: a test failing while it holds two hosts)");
    });
    assert!(unwound.is_err());
    assert_eq!(names.len(), 2);
    assert_eq!(hosts::leftovers(&names).unwrap(), Vec::<String>::new());
}

#[test]
fn a_walkthrough_killed_with_sigkill_is_cleaned_up_by_its_janitor() {
    if skipped("a_walkthrough_killed_with_sigkill_is_cleaned_up_by_its_janitor") {
        return;
    }
    // --slow, so that it is still running when it is killed.
    let mut walk = Command::new(SOCKSTEP)
        .args(["walk", "hosts", "--slow"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(walk.stdout.take().unwrap()).lines();
    let mut names = Vec::new();
    let deadline = Instant::now() + READY;
    for line in lines.by_ref() {
        let line = line.unwrap();
        // "   host A: namespace sockstep-host-a-PID-0, interface veth-a, address 198.18.0.1"
        if let Some((_, rest)) = line.split_once(": namespace ") {
            names.push(rest.split(',').next().unwrap().to_string());
        }
        if line.contains("host B │ listening on") || Instant::now() > deadline {
            break;
        }
    }
    assert_eq!(names.len(), 2, "the walkthrough named its hosts");
    // The server it started on host B, seen from outside.
    let on_b: Vec<u32> = ip(&["netns", "pids", &names[1]])
        .split_whitespace()
        .map(|pid| pid.parse().unwrap())
        .collect();
    assert_eq!(on_b.len(), 1, "one server runs on host B");

    // SIGKILL: no Drop runs, nothing of the walkthrough gets a say. Our own child, by its handle.
    walk.kill().unwrap();
    walk.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hosts::leftovers(&names).unwrap().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(hosts::leftovers(&names).unwrap(), Vec::<String>::new());
    // The janitor ended the orphaned server too (it would otherwise keep host
    // B's network stack alive, unseen, holding its end of the cable).
    while on_b.iter().any(|pid| alive(*pid)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        on_b.iter().all(|pid| !alive(*pid)),
        "the server on host B still runs"
    );
}

// --- the walkthrough -----------------------------------------------------------------

#[test]
fn the_walkthrough_shows_each_sides_view_and_leaves_nothing() {
    if skipped("the_walkthrough_shows_each_sides_view_and_leaves_nothing") {
        return;
    }
    let printed = Printed::default();
    let report = sockstep::walk::hosts::run(
        &WalkOptions::default(),
        Box::new(printed.clone()),
        Path::new(SOCKSTEP),
    )
    .expect("the walkthrough runs");
    let printed = printed.text();
    eprintln!("{printed}");

    assert_eq!(report.server, SocketAddr::from((HOST_B, TCP_PORT)));
    assert_eq!(report.client_local.ip(), HOST_A);
    assert_eq!(
        report.accept_peer, report.client_local,
        "accept() on B sees A"
    );
    assert_eq!(report.echoed, "hello from host A");
    assert_eq!(report.same_port_on_a, SocketAddr::from((HOST_A, TCP_PORT)));
    assert_eq!(
        report.second_bind,
        format!(
            "sockstep: bind() tcp://{HOST_B}:{TCP_PORT} failed: address already in use (os error 98)"
        )
    );
    assert_eq!(report.udp_peer.ip(), HOST_A);
    assert_eq!(report.udp_reply, "a datagram from host A");
    assert_eq!(report.leftovers, Vec::<String>::new());
    assert_eq!(
        hosts::leftovers(&report.namespaces).unwrap(),
        Vec::<String>::new()
    );

    // Each side's view, as printed.
    for needle in [
        format!("host B │ server 2 bind()      #1   tcp://{HOST_B}:{TCP_PORT}"),
        format!(
            "host A │ client 3 connected   #1   tcp://{}",
            report.client_local
        ),
        format!(
            "host B │ server 4 accept()    #1   tcp://{HOST_B}:{TCP_PORT} <-> tcp://{}",
            report.client_local
        ),
        format!("host A │ listening on tcp://{HOST_A}:{TCP_PORT}"),
        format!(
            "host B │ sockstep: bind() tcp://{HOST_B}:{TCP_PORT} failed: address already in use"
        ),
        format!(
            "host B │ server   recv_from() #1   udp://{HOST_B}:{UDP_PORT} <-> udp://{}",
            report.udp_peer
        ),
        "→ gone, and the cable with them".to_string(),
    ] {
        assert!(
            printed.contains(&needle),
            "the walkthrough lacks {needle:?}"
        );
    }
    assert!(!printed.contains("std: "), "the std: lines are left out");
}

#[test]
fn without_root_the_walkthrough_says_so_in_one_line_and_exits_1() {
    // As root, drop to nobody with setpriv (util-linux); without root, we are already someone else.
    let as_root = TwoHosts::prerequisites().is_ok();
    let mut command = if as_root {
        let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"]
            .into_iter()
            .find(|p| Path::new(p).exists())
        else {
            let _ = std::io::stderr().write_all(
                b"\n*** SKIPPED: without_root_the_walkthrough_says_so_in_one_line_and_exits_1 \
                  needs setpriv (util-linux) to drop root ***\n\n",
            );
            return;
        };
        let mut command = Command::new(setpriv);
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        command
    } else {
        Command::new(SOCKSTEP)
    };
    // The build directory may sit under one only root may enter: nobody runs a copy.
    let copy = as_root.then(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sockstep-two-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(SOCKSTEP, dir.join("sockstep")).unwrap();
        command.arg(dir.join("sockstep"));
        dir
    });
    let output = command
        .args(["walk", "hosts"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if let Some(dir) = copy {
        std::fs::remove_dir_all(dir).unwrap();
    }
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(output.stdout, b"", "nothing is printed but the one line");
    let said = text(&output.stderr);
    assert_eq!(said.lines().count(), 1, "one line: {said:?}");
    assert!(
        said.starts_with("sockstep: walk hosts needs root"),
        "{said}"
    );
    assert!(said.contains("run `make run` instead"), "{said}");
}

// --- helpers -------------------------------------------------------------------------

/// Runs `ip ARGS` in the machine's own namespace and returns what it printed.
fn ip(args: &[&str]) -> String {
    let program = if Path::new("/usr/sbin/ip").exists() {
        "/usr/sbin/ip"
    } else {
        "ip"
    };
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Whether a process is still running: it exists and is not a zombie waiting
/// to be reaped (in a container, pid 1 may be slow to reap orphans).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // "PID (comm) STATE …": the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// What the walkthrough printed, shared with the test.
#[derive(Clone, Default)]
struct Printed(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Printed {
    fn text(&self) -> String {
        text(&self.0.lock().unwrap())
    }
}

impl Write for Printed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// The recipe of docs/testing-with-sockstep.md ("another computer, 10 % loss"),
// verbatim between the markers: tests/testing_recipes.rs checks that the guide
// shows exactly this body, so the recipe runs here (as root, in CI) and cannot rot.
#[test]
fn recipe_a_client_on_another_computer_gets_everything_through_ten_percent_loss() {
    // recipe: begin
    if let Err(why) = TwoHosts::prerequisites() {
        eprintln!("SKIPPED: two hosts need root, ip and nft: {why}");
        return;
    }
    let hosts = TwoHosts::create().unwrap(); // host A 198.18.0.1, host B 198.18.0.2
    hosts.lose_on_b(Traffic::Tcp { port: 7878 }, 10).unwrap(); // 10 % of what enters B's port 7878
    let server_addr = format!("{HOST_B}:7878");
    let _server = hosts
        .b()
        .start_server(
            SOCKSTEP,
            &["tcp", "listen", &server_addr, "--echo"],
            "listening on",
        )
        .unwrap();
    // The client under test is a program too: std cannot put a thread into host A.
    // Here it is sockstep's own; put yours in its place.
    let message = "all of it, in order\n".repeat(5_000);
    let out = hosts
        .a()
        .run(
            SOCKSTEP,
            &["tcp", "connect", &server_addr],
            message.as_bytes(),
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, message.as_bytes()); // the echo came back whole
    assert!(hosts.dropped_on_b().unwrap() > 0); // and the link really lost packets
    // recipe: end
}
